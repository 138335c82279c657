/*
 * The in-flight check after a stage that was cut short (stopped by cplow, a trigger, rclone
 * killed, or its worker killed): a file rclone had started but never reported as Copied may
 * still have arrived whole. The candidates are looked up on the remote with `rclone lsjson`;
 * one whose remote size equals its listed size is counted, so the ledger neither misses an
 * upload nor counts one that did not finish. A file the remote already held before the stage
 * would look the same, but rclone only opens a file to upload it (no --checksum on a local
 * source), so a file it opened was not already there whole.
 *
 * The worker checks its own stage; the supervisor checks the stage of a worker that died, from
 * the open files the worker recorded in its stage slot.
 */
#ifndef CPLOW_RECONCILE_H
#define CPLOW_RECONCILE_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rclone_proc.h"

/* Checks after the stop, in ms: a file whose last bytes were still in the kernel's socket
 * buffers when rclone died arrives after it, so a file not yet there is looked for again. A
 * file still missing at the last check is taken to have been cut short; one that arrives later
 * still is not counted (the dangerous direction, so the schedule errs long: a 4 MiB socket
 * buffer drains in 5 s at 0.8 MB/s). */
#define RECONCILE_ROUNDS 4
#define RECONCILE_SCHEDULE_MS { 0, 1000, 2500, 5000 }

struct reconcile {
	struct rclone_proc rounds[RECONCILE_ROUNDS]; /* forked before the sandbox, one per check */
	int prepared;
	char files_from[PATH_MAX];
};

/* A candidate's size when rclone said it copied the file but cplow never listed it: whatever
 * the remote holds is whole, and the size is set to it when found. */
#define RECONCILE_SIZE_ANY (-1)

struct reconcile_candidate {
	const char *path;     /* as rclone names it, below the destination */
	int64_t size;         /* what a whole upload has, or RECONCILE_SIZE_ANY */
	void *user;           /* the caller's, for its count function */
	bool found;
};

/* Counts one candidate found whole; returns 0 when it counted it. */
typedef int (*reconcile_count_fn)(void *ctx, struct reconcile_candidate *c);

struct reconcile_result {
	int64_t candidates;   /* files that may have been in flight */
	int64_t files;        /* found whole on the remote and counted */
	int64_t bytes;
	int rounds;           /* checks it took */
};

/* Forks the rounds' `rclone lsjson --files-from-raw files_from` processes, idle until used.
 * -1 with errno if a fork failed; rc->prepared says how many are there. */
int reconcile_prepare(struct reconcile *rc, const struct rclone_cmd *lsjson,
		      const char *files_from);

/*
 * Checks the candidates (their order may change) on the schedule from since_ms, calling count
 * for each found whole, until none is missing or the rounds run out. Returns 0, or -1 with a
 * message in err (what was counted before stays counted). Ends the unused rounds.
 */
int reconcile_run(struct reconcile *rc, struct reconcile_candidate *c, size_t n,
		  int64_t since_ms, reconcile_count_fn count, void *ctx,
		  struct reconcile_result *r, char *err, size_t err_len);

/* Under `move`, deletes a counted candidate's source file (source_remove_arrived()), logging
 * what it did; root is the stage's local folder. */
void reconcile_remove_arrived(const char *root, const struct reconcile_candidate *c);

/* Keeps only the first n rounds (ends the others). */
void reconcile_limit(struct reconcile *rc, int n);

/* Ends the rounds not used. */
void reconcile_cancel(struct reconcile *rc);

#endif
