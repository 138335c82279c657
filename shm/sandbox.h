/*
 * Seccomp filters for the long-running roles. Each role enters its sandbox once its setup is
 * done (files open, sockets bound, children forked); from then on a call outside its list kills
 * the process (SCMP_ACT_KILL_PROCESS), so a compromised role can do no more than its job.
 * It lives in shm/ because every role links this library; it knows nothing of their code.
 */
#ifndef CPLOW_SANDBOX_H
#define CPLOW_SANDBOX_H

#include <stddef.h>
#include <sys/types.h>

enum sandbox_role {
	SANDBOX_WORKER,   /* reads rclone's log, polls its RC over loopback, writes the ledger */
	SANDBOX_FLUSHER,  /* reads the ledger, writes files */
	SANDBOX_DASHBOARD, /* serves HTTP on an already bound socket, reads the ledger */
	SANDBOX_NOTIFIER  /* posts to webhooks by name: a deny list (sandbox.c says why) */
};

/*
 * Loads the role's filter. `signal_pids` are the only processes the role may signal (the
 * worker's rclone); kill() of anything else is outside the list like any other call.
 * Returns 0, or -1 with a message in err and errno set: ENOSYS or EINVAL when the kernel (or
 * valgrind, which runs the process) has no seccomp filters at all.
 */
int sandbox_enter(enum sandbox_role role, const pid_t *signal_pids, size_t n_pids, char *err,
		  size_t err_len);

#endif
