/*
 * The terminal view of `cplow upload` on a TTY: one live line per running stage, redrawn in
 * place at most every 500 ms below the log, as rclone's -P does. cplow's processes all log to
 * the same terminal, so while the view is on, the children's stderr comes through a pipe to the
 * supervisor, which prints each line above the block and redraws it.
 */
#ifndef CPLOW_PROGRESS_H
#define CPLOW_PROGRESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ledger.h"

#define PROGRESS_INTERVAL_MS 500

/* Starts the view on `tty_fd`; returns the write end of the pipe children must use as their
 * stderr (procs_set_child_stderr), or -1. The supervisor's own log lines go through it too. */
int progress_start(int tty_fd);
/* The read end, for the supervisor's poll(); -1 when the view is off. */
int progress_input_fd(void);
/* Prints what the children wrote, above the block. */
void progress_on_input(void);
/* Redraws the block from a ledger copy if PROGRESS_INTERVAL_MS has passed. */
void progress_draw(const struct ledger_copy *c, int64_t now_ms);
/* Prints what is left of the children's output and removes the block. */
void progress_finish(void);

#endif
