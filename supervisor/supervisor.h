/*
 * The supervisor role: `cplow upload` and `cplow run`. It owns the instance lock, opens (or
 * rebuilds) the shared ledger, keeps the flusher alive, plans stages and forks one worker per
 * running stage, rotates accounts, and turns signals into a clean stop, a reload or a flush.
 */
#ifndef CPLOW_SUPERVISOR_H
#define CPLOW_SUPERVISOR_H

#include <stdbool.h>
#include <stddef.h>

/* Exit codes (docs/operations.md, "Exit codes"). */
#define SUPERVISOR_EXIT_OK 0
#define SUPERVISOR_EXIT_FAILED 1     /* an upload failed */
#define SUPERVISOR_EXIT_CONFIG 2     /* bad config, bad arguments or an unusable ledger file */
#define SUPERVISOR_EXIT_LOCKED 3     /* another cplow holds this config's lock */

enum supervisor_mode {
	SUPERVISOR_UPLOAD,  /* every (or the named) uploader now, then exit */
	SUPERVISOR_RUN,     /* the daemon: checks each uploader every check_interval */
};

struct supervisor_options {
	const char *config_path;
	enum supervisor_mode mode;
	const char *const *uploaders;   /* upload -u NAME...; none = every uploader */
	size_t uploader_count;
	bool dry_run;                   /* plan and print the first stages; move nothing */
	bool reset_ledger;              /* start from zero when both ledger files are unusable */
	int progress;                   /* the terminal view: 1 on, 0 off, -1 on a TTY only */
};

/* Runs until done or stopped; returns the process exit code (130/143 after SIGINT/SIGTERM). */
int supervisor_main(const struct supervisor_options *opt);

/* Opens this config's ledger: attaches the live one, or creates it and fills it from the ledger
 * file (honouring reset). Shared by the supervisor and `cplow reset-quota`. Returns 0, or -1
 * with one line in err. */
struct config;
struct ledger;
int supervisor_open_ledger(const struct config *c, const char *name, bool reset,
			   struct ledger *out, char *err, size_t err_len);

#endif
