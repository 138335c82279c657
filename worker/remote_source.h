/*
 * A stage whose source is an rclone path (STAGE_SOURCE_REMOTE: the mover's move_from_remote).
 *
 * Its listing (path → size, modification time) comes from the remote, with `rclone lsjson -R`
 * (rclone_cmd_build_list) before the stage's rclone starts, instead of from a walk of a local
 * folder: rclone's "Moved (server-side)" line carries no size either, and the moved file is
 * gone from the source right after. The listing goes into a source_index (source_add), so the
 * worker counts, reconciles and reports a remote source's files as it does a local folder's.
 *
 * Then the files the stage hands rclone (--files-from-raw): every listed file, or, under a
 * byte budget (the account's quota), the ones that fit it. rclone 1.60's --max-transfer stops
 * uploads and server-side copies at the limit, but not server-side moves (it moved 7000 bytes
 * past --max-transfer=2500B against WebDAV here): only choosing the files keeps a mover inside
 * the quota.
 */
#ifndef CPLOW_REMOTE_SOURCE_H
#define CPLOW_REMOTE_SOURCE_H

#include <stddef.h>
#include <stdint.h>

#include "rclone_cmd.h"
#include "source.h"

/* A listing's output larger than this is refused (about 4 million files). */
#define REMOTE_SOURCE_OUTPUT_MAX ((size_t)1 << 30)

/* remote_source_list()'s return when stop_fd became readable: it gave up (a stop signal). */
#define REMOTE_SOURCE_STOPPED 1

/*
 * Runs the listing `cmd` and fills idx (zeroed on entry; free it with source_free) and
 * *mtime_ns (malloc'd, one per entry, ns since the epoch, 0 when lsjson showed none; free it).
 * A readable stop_fd ends it early (rclone is stopped): REMOTE_SOURCE_STOPPED. Returns 0, or -1
 * with a one-line message in err (rclone failed, printed no list, or ran out of memory).
 */
int remote_source_list(const struct rclone_cmd *cmd, int stop_fd, struct source_index *idx,
		       int64_t **mtime_ns, char *err, size_t err_len);

/*
 * Writes the paths rclone takes, one per line, to path: every listed file when budget_bytes is
 * 0, else, in listing order, each file that still fits in what the budget has left (a file too
 * big is skipped, and a later smaller one may fit). The files left out are marked SOURCE_HELD
 * and counted in *held_files and *held_bytes. Returns 0, or -1 with a message in err.
 */
int remote_source_choose(struct source_index *idx, int64_t budget_bytes, const char *path,
			 int64_t *held_files, int64_t *held_bytes, char *err, size_t err_len);

#endif
