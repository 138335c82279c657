/*
 * What every cplow process does with processes and signals, written once: signals into a
 * poll() loop through a self-pipe, forking a child with a clean signal state, reaping every
 * child (orphans included: cplow may be PID 1 in a container, and is a child subreaper
 * elsewhere), and the restart backoff of a role that keeps dying. The role table (role.h)
 * starts and stops the supervisor's long-running children with these; workers and checks are
 * forked with procs_fork() too.
 */
#ifndef CPLOW_PROCS_H
#define CPLOW_PROCS_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* procs_signals_install's flags. */
#define PROCS_NO_RESTART 1u  /* no SA_RESTART: a sleep or a futex wait ends at the signal */

/*
 * The one signal set-up of every process: a signal of `caught` only counts (procs_signals_seen)
 * and writes a byte to a self-pipe, whose read end is returned for the process's poll(); the
 * signals of `ignored` are ignored; the caught ones are unblocked (a parent may have started
 * us with them blocked). `wake`, when not NULL, is called by the handler too, and must be
 * async-signal-safe (the flusher's wake of its futex wait). Returns the pipe's read end, or -1
 * (errno). Called again, it keeps the pipe and the counts.
 */
int procs_signals_install(const int *caught, size_t n_caught, const int *ignored, size_t n_ignored,
			  unsigned flags, void (*wake)(void));

/* How many times sig came since the last procs_signals_take() of it: readable at any time (an
 * HTTP request's abort flag points here), written only by the handler. */
const volatile sig_atomic_t *procs_signals_seen(int sig);

/* The counts of sigs into counts[], then zero, read with those signals blocked so that none is
 * lost in between; the pipe is drained. */
void procs_signals_take(const int *sigs, size_t n, int *counts);

/*
 * fork() for a role, a worker or a check: the child gets default dispositions for the signals
 * this process installed and for SIGPIPE, an empty mask, `close_fd` closed (the instance lock
 * stays with the supervisor alone) and `death_signal` from the kernel when this process dies
 * (0: none). Returns as fork() does.
 */
pid_t procs_fork(int close_fd, int death_signal);

/* Descriptors no forked role may keep (the notifier's pipe, whose reader needs to see every
 * writer gone): closed in every procs_fork child until forgotten. At most 8. */
void procs_close_in_children(int fd);
void procs_forget_in_children(int fd);

/* Children's stderr from now on (the terminal view's pipe); -1: the supervisor's own. */
void procs_set_child_stderr(int fd);

/* PID 1 reaps by nature; anywhere else, become the reaper of our orphaned descendants. */
void procs_become_reaper(void);

/* Whether pid runs: it exists and is not a zombie. A dead process that nobody has reaped yet
 * (an orphan waiting for a slow init) still answers kill(pid, 0). */
bool procs_alive(pid_t pid);

/* One exited child, without waiting: 1 with *pid and *status, 0 when none is left to reap. */
int procs_reap(pid_t *pid, int *status);

/* Waits up to timeout_ms for child pid to end, then SIGKILLs it and waits for it. Returns 0
 * with *status when it ended in time, 1 when it was killed, -1 when it is not ours to wait for
 * (already reaped). */
int procs_wait(pid_t pid, int timeout_ms, int *status);

/* Capped exponential backoff for a role that keeps dying: 1 s doubling to 60 s, back to 1 s
 * once it has run for a healthy minute. */
struct procs_backoff {
	int delay_ms;
	int64_t started_ms;
	int64_t restart_at_ms;
};
void procs_backoff_started(struct procs_backoff *b, int64_t now_ms);
void procs_backoff_died(struct procs_backoff *b, int64_t now_ms);

#endif
