/*
 * Seccomp filters for the long-running roles. Each role enters its sandbox once its setup is
 * done (files open, sockets bound, children forked); from then on it may make only the calls of
 * its allow list, so a compromised role can do no more than its job. A call outside the list
 * kills the worker, the flusher or the dashboard (SCMP_ACT_KILL_PROCESS); the notifier and the
 * Plex throttle, whose name resolution needs what the machine's NSS set-up needs, get EPERM for
 * it instead, and are killed for the calls sandbox.c lists as `never` (exec, ptrace, signals to
 * other processes, pidfds, io_uring, mounts, namespaces, modules, BPF, ...).
 * It lives in shm/ because every role links this library; it knows nothing of their code.
 */
#ifndef CPLOW_SANDBOX_H
#define CPLOW_SANDBOX_H

#include <stddef.h>
#include <sys/types.h>

enum sandbox_role {
	SANDBOX_WORKER,    /* reads rclone's log, polls its RC over loopback, writes the ledger,
			    * files in its work directory, signals the pids it is given */
	SANDBOX_FLUSHER,   /* reads the ledger, writes files */
	SANDBOX_DASHBOARD, /* serves HTTP on an already bound socket, reads the ledger (mapped
			    * read-only) and files read-only: no new sockets, no file changes */
	SANDBOX_NOTIFIER,  /* posts to webhooks by name (threads, NSS); opens files read-only */
	SANDBOX_PLEX,      /* asks Plex by name, as the notifier; writes the ledger's requests */
	SANDBOX_DOWNLOADERS, /* asks NZBGet and SABnzbd by name, as the notifier; writes its
			      * marker file beside the lock */
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
