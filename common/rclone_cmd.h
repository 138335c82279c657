/*
 * From a stage spec to one rclone command line and environment. Built fresh for every stage
 * and never shared, so nothing a stage adds can reach the next one.
 *
 * The RC password travels in the environment (RCLONE_RC_PASS), not in argv, where every user
 * of the machine could read it in /proc.
 *
 * rclone inherits cplow's environment, except its RCLONE_RC_* and RCLONE_CONFIG (the stage's
 * own win) and the variables that would do what rclone_cmd_check_extra refuses in
 * rclone_extras (RCLONE_LOG_FILE and the like: rclone reads every flag from RCLONE_<FLAG>).
 */
#ifndef CPLOW_RCLONE_CMD_H
#define CPLOW_RCLONE_CMD_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "stage.h"

struct rclone_cmd {
	char **argv;                   /* NULL-terminated; argv[0] is the binary */
	char **envp;                   /* NULL-terminated */
	char exclude_file[PATH_MAX];   /* "" when there are no excludes */
	char files_from[PATH_MAX];     /* a remote source's --files-from-raw, written by the
				       * worker after its listing; "" for a local source */
	size_t argc, envc;
	int nice;                      /* added to the nice value before the exec */
	/* What rclone_cmd_build made of the stage's limits and rclone_extras (0: not passed): */
	int64_t max_transfer_bytes;    /* --max-transfer, the quota's or the user's lower one */
	int64_t max_size_bytes;        /* --max-size, the stage's or the user's */
	bool dry_run;                  /* --dry-run: core.dry_run or rclone_extras */
	char note[256];                /* a user's value cplow changed, for the log; "" if none */
};

/*
 * Flags that belong to cplow and may not come from rclone_extras: they would break the log
 * parsing, the RC polling or the quota arithmetic (or log secrets, as -vv does).
 * Returns the flag's canonical name when `flag` is one, else NULL.
 */
const char *rclone_cmd_reserved_flag(const char *flag);

/*
 * Whether rclone_extras may carry `name` (with `value`, NULL for a bare flag) at all: 0 when
 * it may, -1 when it would move rclone's log off its stderr or reshape it, so that the
 * "Copied" lines cplow counts uploads from would not reach it (rclone would upload while the
 * ledger counted nothing), with the reason in why. The config loader calls it for every key of
 * rclone_extras and refuses the config, naming the key, on -1; flags it accepts may still be
 * ones cplow sets itself (rclone_cmd_reserved_flag).
 */
int rclone_cmd_check_extra(const char *name, const char *value, char *why, size_t why_len);

/*
 * The transfer: `rclone move|copy SRC DST` with the stage's flags, JSON log, RC on loopback,
 * the excludes through an --exclude-from file, and rclone_extras. One function builds what
 * runs and what `upload --dry-run` prints. Where the stage and rclone_extras both set a flag:
 *   - the user's --transfers, --order-by, --max-size, --max-backlog and --min-age replace the
 *     stage's (the user asked for them, as under cloudplow);
 *   - --max-transfer is the quota's: a lower value in the extras replaces it, a higher one (or
 *     "off") is clamped to it, and out->note says so; --cutoff-mode=cautious goes with it;
 *   - --dry-run (or -n) in the extras, or spec->dry_run (core.dry_run), passes --dry-run once
 *     (rclone_cmd_dry_run());
 *   - the user's --exclude-from file is passed beside cplow's own: rclone applies both.
 * An extras value rclone would refuse (--max-transfer=abc, --dry-run=yes) fails the build.
 */
int rclone_cmd_build(const struct stage_spec *spec, const char *rc_user, const char *rc_pass,
		     struct rclone_cmd *out, char *err, size_t err_len);

/*
 * A remote source (STAGE_SOURCE_REMOTE) differs: the excludes, --min-age and the extras that
 * choose files (selects_files) go to its listing (rclone_cmd_build_list), not to the transfer,
 * which gets --files-from-raw=out->files_from instead (rclone takes no other filter beside it).
 */

/*
 * `rclone size SRC --json` with what chooses the transfer's files: cplow's excludes, the
 * stage's --min-age and the filter flags of rclone_extras (--exclude-from, --include,
 * --min-size, --max-size, ...), not the per-stage limits. What the dry run counts as "bytes to
 * upload": what rclone would take.
 */
int rclone_cmd_build_size(const struct stage_spec *spec, struct rclone_cmd *out, char *err,
			  size_t err_len);

/* `rclone lsjson -R --files-only SRC` with what chooses the transfer's files, as for
 * rclone_cmd_build_size: a remote source's listing (path, size, modification time). */
int rclone_cmd_build_list(const struct stage_spec *spec, struct rclone_cmd *out, char *err,
			  size_t err_len);

/* `rclone delete PATH` (a file, or what a folder holds) or, for a folder, `rclone purge PATH`
 * (the folder and everything in it), with spec's rclone, config and environment and
 * --log-level=ERROR: the hidden cleaner's. */
int rclone_cmd_build_remove(const struct stage_spec *spec, const char *path, bool folder,
			    struct rclone_cmd *out, char *err, size_t err_len);

/* `rclone lsjson --stat PATH`, as rclone_cmd_build_remove: exit 3 when PATH is not there (a
 * purge of a missing folder on WebDAV fails with a 404 and exit 1 instead). */
int rclone_cmd_build_stat(const struct stage_spec *spec, const char *path,
			  struct rclone_cmd *out, char *err, size_t err_len);

/* Whether the stage runs rclone with --dry-run: spec->dry_run, or --dry-run/-n in the extras
 * (bare, or a value rclone reads as true). Nothing such a stage reports is counted, and nothing
 * local is deleted for it. */
bool rclone_cmd_dry_run(const struct stage_spec *spec);

/* rclone's size syntax (SizeSuffix, as rclone 1.60 reads it): "off" (*bytes = -1), or a
 * number with an optional suffix: b/B bytes, k m g t p e (any case, also "Ki", "KiB") binary
 * multiples; a bare number is KiB. Returns 0, or -1 for what rclone refuses. */
int rclone_cmd_parse_size(const char *text, int64_t *bytes);

/* The --max-transfer of rclone_extras: 1 with *bytes (-1 for "off"), 0 when not there, -1
 * when rclone would refuse its value. */
int rclone_cmd_extras_max_transfer(const struct stage_flag *extras, size_t n, int64_t *bytes);

/* The in-flight check: `rclone lsjson` of the destination for the paths in files_from, with
 * their sizes and modification times. */
int rclone_cmd_build_lsjson(const struct stage_spec *spec, const char *files_from,
			    struct rclone_cmd *out, char *err, size_t err_len);

/* The in-flight check's first question: `rclone backend features` of the destination, whose
 * Precision says whether (and how finely) the remote keeps modification times. */
int rclone_cmd_build_features(const struct stage_spec *spec, struct rclone_cmd *out, char *err,
			      size_t err_len);

/* The command as a shell-quoted line, for --dry-run and logs. Holds no secret. */
int rclone_cmd_render(const struct rclone_cmd *c, char *out, size_t len);

/* Frees everything and removes the exclude file and the files-from file. */
void rclone_cmd_free(struct rclone_cmd *c);

#endif
