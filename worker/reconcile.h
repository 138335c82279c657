/*
 * The in-flight check after a stage that was cut short (stopped by cplow, a trigger, or rclone
 * killed): a file rclone had opened but never reported as Copied may still have arrived whole.
 * Each such file is looked up on the remote with `rclone lsjson`; one whose remote size equals
 * its listed size is counted, so the ledger neither misses an upload nor counts one that
 * did not finish. A file the remote already held before the stage would look the same, but
 * rclone only opens a file to upload it (no --checksum on a local source), so a file it opened
 * was not already there whole.
 */
#ifndef CPLOW_RECONCILE_H
#define CPLOW_RECONCILE_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>

#include "ledger.h"
#include "rclone_proc.h"
#include "source.h"

/* Checks after the stop, in ms: a file whose last bytes were still in the kernel's socket
 * buffers when rclone died arrives after it, so a file not yet there is looked for again. */
#define RECONCILE_ROUNDS 4
#define RECONCILE_SCHEDULE_MS { 0, 1000, 2500, 5000 }

struct reconcile {
	struct rclone_proc rounds[RECONCILE_ROUNDS]; /* forked before the sandbox, one per check */
	int prepared;
	char files_from[PATH_MAX];
};

struct reconcile_result {
	int64_t candidates;   /* files that may have been in flight */
	int64_t files;        /* found whole on the remote and counted */
	int64_t bytes;
	int rounds;           /* checks it took */
};

/* Forks the rounds' `rclone lsjson --files-from-raw files_from` processes, idle until used. */
int reconcile_prepare(struct reconcile *rc, const struct rclone_cmd *lsjson,
		      const char *files_from);

/*
 * Checks the candidates (opened or seen in flight, and not counted) on the remote, counting
 * through the stage's slot each one whose remote size equals its listed size, and checks again
 * on the schedule while some are missing. A file still missing at the last check is taken to
 * have been cut short; one that arrives later still is not counted (the dangerous direction, so
 * the schedule errs long: a 4 MiB socket buffer drains in 5 s at 0.8 MB/s).
 * `since_ms` is when rclone stopped. Returns 0, or -1 with a message in err (what was counted
 * before stays counted).
 */
int reconcile_in_flight(struct reconcile *rc, struct source_index *src, struct ledger *l,
			int32_t slot, int64_t since_ms, struct reconcile_result *r, char *err,
			size_t err_len);

/* Ends the rounds not used. */
void reconcile_cancel(struct reconcile *rc);

#endif
