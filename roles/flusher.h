/*
 * The flusher role: makes the shared ledger durable. It never takes the ledger's lock: it waits
 * for the generation counter to move, takes a consistent copy the seqlock way, and writes it with
 * ledger_file_write at most once per flush_interval_ms. Its input is one consistent copy of the
 * ledger, so a second sink (a Redis sync between hosts) can sit beside the file later.
 */
#ifndef CPLOW_FLUSHER_H
#define CPLOW_FLUSHER_H

#include <sys/types.h>

#define FLUSHER_DEFAULT_INTERVAL_MS 100

struct flusher_options {
	const char *ledger_name;  /* shm object to read */
	const char *cache_path;   /* sa_quota_cache.json */
	int flush_interval_ms;    /* 0 = FLUSHER_DEFAULT_INTERVAL_MS */
	pid_t parent_pid;         /* the supervisor; 0 = none to outlive (see flusher_run) */
};

/* Runs until SIGTERM or SIGINT, then flushes once more. SIGUSR1 flushes at once. If its parent
 * dies instead (a supervisor killed: no SIGTERM), it goes on until no live process holds a
 * stage slot or another cplow runs on the ledger, then flushes once more: what the dead
 * supervisor's workers count after it is gone still reaches the file. Enters the
 * SANDBOX_FLUSHER seccomp filter once set up: the caller must leave with _exit().
 * Returns a process exit code: 0 after a final flush that succeeded, 1 otherwise. */
int flusher_run(const struct flusher_options *opt);

#endif
