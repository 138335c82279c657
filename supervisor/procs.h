/*
 * The supervisor's process duties: signals into its poll() loop, forking roles with a clean
 * signal state, reaping every child (orphans included: cplow may be PID 1 in a container, and is
 * a child subreaper elsewhere), and restart backoff.
 */
#ifndef CPLOW_PROCS_H
#define CPLOW_PROCS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

/* Signals seen since the last procs_take_signals(). */
struct procs_signals {
	int interrupt;   /* SIGINT */
	int terminate;   /* SIGTERM */
	int hangup;      /* SIGHUP: reload */
	int flush;       /* SIGUSR1: flush now */
	int child;       /* SIGCHLD */
};

/* Installs flag-and-pipe handlers; returns the fd that becomes readable on any of them. */
int procs_signals_install(void);
void procs_take_signals(struct procs_signals *out);

/*
 * fork() for a role: the child gets default dispositions for the supervisor's signals, an empty
 * mask, `close_fd` closed (the instance lock stays with the supervisor alone) and `death_signal`
 * from the kernel when the supervisor dies (0: none). Returns as fork() does.
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

/* Stops a child: `sig`, then SIGKILL if it has not ended within wait_ms (a child that is
 * stopped, or stuck, must not hold the caller's loop), and reaps it. Returns its wait status;
 * *killed (may be NULL) says whether it took the SIGKILL. */
int procs_stop(pid_t pid, int sig, int wait_ms, bool *killed);

/* One exited child, without waiting: 1 with *pid and *status, 0 when none is left to reap. */
int procs_reap(pid_t *pid, int *status);

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
