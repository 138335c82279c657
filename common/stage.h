/*
 * A stage spec: everything one rclone run needs, built by the supervisor's planner, and what
 * the supervisor and the worker exchange. The worker never reads the config file: this struct
 * is its whole input, and it is never modified, so a stage's flags cannot leak into the next
 * stage (the quota fork mutates its global config).
 *
 * The worker process's entry is declared here too (worker/ defines it): the supervisor forks,
 * and its child calls it with the spec.
 */
#ifndef CPLOW_STAGE_H
#define CPLOW_STAGE_H

#include <stddef.h>
#include <stdint.h>

/* One rclone_sleeps entry. */
struct stage_trigger {
	const char *pattern;  /* case-insensitive substring, or "regex:<POSIX ERE>" */
	int count;            /* hits within the window that fire it */
	double sleep_hours;   /* how long the account is banned when it fires */
	int timeout_s;        /* the window, from its first hit */
};

/* One rclone_extras entry: value NULL renders a bare --flag. */
struct stage_flag {
	const char *name;     /* with its dashes: "--drive-chunk-size" */
	const char *value;
};

/* Where a stage's files come from. */
enum stage_source {
	STAGE_SOURCE_LOCAL = 0,  /* a local folder: walked before rclone starts (source.h), its
				  * opens watched */
	/* An rclone path (the mover's move_from_remote, for a server-side move): listed with
	 * `rclone lsjson -R` before rclone starts, with the stage's excludes, --min-age and the
	 * filter flags of its extras (rclone_cmd_build_list); rclone then gets the listed files,
	 * and only those, through --files-from-raw (rclone refuses other filters beside it), so
	 * it never moves a whole directory unseen. rclone's --max-transfer does not stop
	 * server-side moves (1.60 moves past it): with max_transfer_bytes set, the worker hands
	 * rclone only listed files whose sizes add up to no more. "Moved (server-side)" counts
	 * as "Copied": Google counts server-side copies against the daily quota. Nothing local
	 * is ever removed for such a stage. */
	STAGE_SOURCE_REMOTE = 1,
};

struct stage_spec {
	const char *uploader;         /* ledger row: (uploader, account) */
	const char *account;          /* key file's absolute path, or an rclone remote name */
	const char *ledger_name;      /* shm object */

	const char *rclone_binary;    /* /usr/bin/rclone */
	int rclone_nice;              /* added to rclone's nice value before its exec */
	const char *rclone_config;    /* passed as --config=; NULL: rclone's default */
	const char *command;          /* "move" or "copy" */
	const char *source;           /* local folder, or an rclone path (source_kind) */
	enum stage_source source_kind;
	const char *destination;      /* "remote:path", already the account's */

	const char *const *env;       /* extra "NAME=value" for rclone (service account files) */
	size_t env_count;
	const struct stage_flag *extras;
	size_t extra_count;
	const char *const *excludes;  /* patterns, passed through an --exclude-from file */
	size_t exclude_count;

	/* The planner's parameters for this stage; 0 or NULL = flag not passed. */
	const char *strategy;         /* "aggressive_fresh_sa", ... (shown, not passed) */
	int stage_number;
	int64_t max_transfer_bytes;   /* --max-transfer=NB --cutoff-mode=cautious; a remote
				       * source's files are chosen to fit it too */
	int64_t max_size_bytes;       /* --max-size=NB */
	int transfers;
	const char *order_by;
	int max_backlog;
	const char *min_age;          /* --min-age, e.g. "30m" */

	const struct stage_trigger *triggers;
	size_t trigger_count;

	int dry_run;                  /* --dry-run: nothing moves, nothing is counted */
	const char *work_dir;         /* private directory for the exclude file */
	int rc_poll_ms;               /* core/stats poll period; 0 = default */
	int sandbox;                  /* load the seccomp filter after spawning rclone */
};

enum stage_result {
	STAGE_DONE = 0,          /* rclone exit 0 */
	STAGE_MAX_TRANSFER = 1,  /* exit 8: the account has room for less than the next file */
	STAGE_FATAL = 2,         /* exit 7 */
	STAGE_NOTHING = 3,       /* exit 9 */
	STAGE_TRIGGERED = 4,     /* an rclone_sleeps trigger fired: account banned */
	STAGE_INTERRUPTED = 5,   /* the worker was told to stop */
	STAGE_FAILED = 6,        /* any other exit, or rclone killed from outside */
	STAGE_ERROR = 7,         /* the worker could not run the stage at all */
};

const char *stage_result_name(enum stage_result r);

struct stage_outcome {
	enum stage_result result;
	int rclone_exit;              /* exit code, or 128 + signal */
	int64_t files;                /* counted from Copied lines */
	int64_t bytes;
	int64_t reconciled_files;     /* counted by the in-flight check after an abnormal end */
	int64_t reconciled_bytes;
	int64_t failed_lines;
	int64_t malformed_lines;
	int64_t unknown_files;        /* Copied for a path not in the listing: not counted */
	int64_t held_files;           /* a remote source's listed files left out: they did not
				       * fit max_transfer_bytes */
	int64_t held_bytes;
	char trigger[128];            /* the pattern that fired */
};

/* Runs the stage; fills *out; returns out->result. The caller's process becomes the leader of
 * a new process group shared with rclone, so one kill of the group ends both (worker.h). */
enum stage_result worker_run(const struct stage_spec *spec, struct stage_outcome *out);

#endif
