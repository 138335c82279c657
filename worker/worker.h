/*
 * The worker role: runs one stage (one rclone move/copy with one account) and puts every file
 * that completes into the shared ledger at once.
 *
 *   listing ─→ rclone ─stderr→ rclone_log_parse() ─Copied→ worker_on_copied() ─→ ledger
 *                     ─RC────→ core/stats every rc_poll_ms ─→ the stage slot (live progress)
 *
 * SIGINT/SIGTERM: rclone is stopped, the files it had in flight are checked on the remote, the
 * ones that arrived whole are counted, and worker_run returns STAGE_INTERRUPTED.
 */
#ifndef CPLOW_WORKER_H
#define CPLOW_WORKER_H

#include "stage.h"

/* Runs the stage; fills *out; returns out->result. The caller's process becomes the leader of
 * a new process group shared with rclone, so one kill of the group ends both. */
enum stage_result worker_run(const struct stage_spec *spec, struct stage_outcome *out);

#endif
