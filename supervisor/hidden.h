/*
 * The hidden cleaner (the `hidden` section, `cplow clean`): cloudplow's UnionFS cleanup. A file
 * or folder whose name ends in "_HIDDEN~" below a hidden folder marks a path deleted in the
 * union; for each marker, that path (the marker's path below the hidden folder, the suffix
 * removed) is deleted below the hidden_remote of each remote in hidden_remotes (`rclone
 * delete` for a file marker, which also empties a folder of that name, `rclone purge` for a
 * folder marker), and when every remote has it gone (deleted, or not there: rclone's exit 3),
 * the marker is removed. A marker whose deletion failed on some remote stays, with a log line,
 * for the next clean. Then empty folders below the hidden folder are removed (depth 1 and
 * deeper), as cloudplow did.
 *
 * Never outside the remote path named: a marker whose path would be empty, absolute, hold a
 * "." or ".." component or a control character is refused (logged, kept). Symbolic links are
 * not followed, and a folder marker's contents are not searched.
 *
 * `cplow upload` runs it before its uploads and `cplow run` before each upload that comes due,
 * as cloudplow's did: in a child of the supervisor (hidden_start), whose rclone calls each have
 * a deadline, and no stage starts until it ends. core.dry_run makes it a dry run: what it would
 * delete is logged, nothing is deleted, no marker removed.
 */
#ifndef CPLOW_HIDDEN_H
#define CPLOW_HIDDEN_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "config.h"

#define HIDDEN_SUFFIX "_HIDDEN~"
/* One rclone delete or purge: past this it is killed, and the marker stays. */
#define HIDDEN_CALL_TIMEOUT_MS 300000

struct hidden_options {
	bool dry_run;          /* log what would be deleted; delete nothing, keep the markers */
	int call_timeout_ms;   /* 0: HIDDEN_CALL_TIMEOUT_MS */
	int stop_fd;           /* readable: stop now (the running rclone is killed); -1: none */
};

struct hidden_result {
	size_t markers;        /* found */
	size_t cleaned;        /* gone from every remote, marker removed (or would be) */
	size_t kept;           /* a deletion failed, or the marker was refused: kept */
	size_t deletions;      /* rclone calls that succeeded */
	bool stopped;
};

/* Cleans every hidden folder of c. Returns 0 when every marker was cleaned, 1 when some stay
 * (logged each), -1 when stopped. */
int hidden_clean(const struct config *c, const struct hidden_options *o,
		 struct hidden_result *r);

/*
 * The path a marker stands for, relative to its hidden folder (rel: the marker's own path
 * below it), into out; 0, or -1 with why set when it is refused (empty, absolute, ".", "..",
 * a control character, no suffix).
 */
int hidden_target(const char *rel, char *out, size_t len, const char **why);

/* hidden_remote + "/" + target, as rclone reads it ("google:" + "a/b" → "google:a/b",
 * "google:/Media" + "a" → "google:/Media/a"). 0, or -1 when it does not fit. */
int hidden_remote_path(const char *hidden_remote, const char *target, char *out, size_t len);

/* Forks the cleaner (core.dry_run applies); returns its pid, or -1 (errno). close_fd is closed
 * in the child (the instance lock). The child ends with hidden_clean's result (0, 1; 2 when
 * stopped) and stops at SIGTERM, killing its rclone. */
pid_t hidden_start(const struct config *c, int close_fd);

#endif
