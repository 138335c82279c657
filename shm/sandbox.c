#include "sandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <seccomp.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>

/* What every role needs: memory, time, signals, its own descriptors, and exiting. */
static const int common_calls[] = {
	SCMP_SYS(read), SCMP_SYS(write), SCMP_SYS(readv), SCMP_SYS(writev), SCMP_SYS(pread64),
	SCMP_SYS(pwrite64), SCMP_SYS(close), SCMP_SYS(poll), SCMP_SYS(ppoll), SCMP_SYS(futex),
	SCMP_SYS(mmap), SCMP_SYS(munmap), SCMP_SYS(mremap), SCMP_SYS(mprotect), SCMP_SYS(brk),
	SCMP_SYS(madvise), SCMP_SYS(clock_gettime), SCMP_SYS(clock_nanosleep),
	SCMP_SYS(nanosleep), SCMP_SYS(gettimeofday), SCMP_SYS(rt_sigaction),
	SCMP_SYS(rt_sigprocmask), SCMP_SYS(rt_sigreturn), SCMP_SYS(exit), SCMP_SYS(exit_group),
	SCMP_SYS(getpid), SCMP_SYS(gettid), SCMP_SYS(getppid), SCMP_SYS(getuid),
	SCMP_SYS(geteuid), SCMP_SYS(getrandom), SCMP_SYS(fstat), SCMP_SYS(newfstatat),
	SCMP_SYS(statx), SCMP_SYS(lseek), SCMP_SYS(fcntl), SCMP_SYS(sched_yield), SCMP_SYS(rseq),
	SCMP_SYS(faccessat2), SCMP_SYS(restart_syscall), SCMP_SYS(sigaltstack),
	SCMP_SYS(getrusage), SCMP_SYS(prlimit64), SCMP_SYS(sysinfo), SCMP_SYS(uname),
};

/* Writing files: the flusher's ledger file, the worker's in-flight list. */
static const int file_calls[] = {
	SCMP_SYS(openat), SCMP_SYS(unlink), SCMP_SYS(unlinkat), SCMP_SYS(rename),
	SCMP_SYS(renameat), SCMP_SYS(renameat2), SCMP_SYS(link), SCMP_SYS(linkat),
	SCMP_SYS(fsync), SCMP_SYS(fdatasync), SCMP_SYS(ftruncate), SCMP_SYS(getdents64),
};

/* A client or server on sockets the role already has, or makes to loopback. */
static const int socket_calls[] = {
	SCMP_SYS(connect), SCMP_SYS(getsockopt), SCMP_SYS(setsockopt), SCMP_SYS(getsockname),
	SCMP_SYS(getpeername), SCMP_SYS(sendto), SCMP_SYS(recvfrom), SCMP_SYS(sendmsg),
	SCMP_SYS(recvmsg), SCMP_SYS(shutdown), SCMP_SYS(accept), SCMP_SYS(accept4),
	SCMP_SYS(epoll_create1), SCMP_SYS(epoll_ctl), SCMP_SYS(epoll_wait), SCMP_SYS(epoll_pwait),
	SCMP_SYS(eventfd2), SCMP_SYS(pipe2), SCMP_SYS(select), SCMP_SYS(pselect6),
};

/* Allows `call` when argument `arg` equals `value`. The comparison is spelled out: libseccomp's
 * SCMP_A0() macros leave fields unset, which clang's -Wextra reports. */
static int allow_if(scmp_filter_ctx ctx, int call, unsigned arg, scmp_datum_t value)
{
	struct scmp_arg_cmp cmp = { .arg = arg, .op = SCMP_CMP_EQ, .datum_a = value, .datum_b = 0 };
	return seccomp_rule_add_array(ctx, SCMP_ACT_ALLOW, call, 1, &cmp);
}

static int allow_all(scmp_filter_ctx ctx, const int *calls, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (seccomp_rule_add(ctx, SCMP_ACT_ALLOW, calls[i], 0) < 0)
			return -1;
	return 0;
}

int sandbox_enter(enum sandbox_role role, const pid_t *signal_pids, size_t n_pids, char *err,
		  size_t err_len)
{
	const char *what = "init";
	int rc = -1;
	scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_KILL_PROCESS);
	if (!ctx)
		goto out;
	what = "rules";
	if (allow_all(ctx, common_calls, sizeof(common_calls) / sizeof(common_calls[0])) < 0 ||
	    allow_all(ctx, file_calls, sizeof(file_calls) / sizeof(file_calls[0])) < 0)
		goto out;
	/* glibc tries clone3 first and falls back to clone on ENOSYS; answering ENOSYS keeps a
	 * library's thread attempt an error instead of a kill, and clone stays forbidden. */
	if (seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0) < 0)
		goto out;
	if (role == SANDBOX_WORKER || role == SANDBOX_DASHBOARD) {
		if (allow_all(ctx, socket_calls, sizeof(socket_calls) / sizeof(socket_calls[0])) < 0)
			goto out;
		/* New sockets: IP only (curl to 127.0.0.1); no raw or packet sockets. */
		if (allow_if(ctx, SCMP_SYS(socket), 0, AF_INET) < 0 ||
		    allow_if(ctx, SCMP_SYS(socket), 0, AF_INET6) < 0 ||
		    /* libcurl's multi handle (behind curl_easy_perform) makes a wake-up pair. */
		    allow_if(ctx, SCMP_SYS(socketpair), 0, AF_UNIX) < 0)
			goto out;
		if (allow_if(ctx, SCMP_SYS(ioctl), 1, FIONREAD) < 0 ||
		    allow_if(ctx, SCMP_SYS(ioctl), 1, FIONBIO) < 0)
			goto out;
	}
	if (role == SANDBOX_WORKER) {
		if (seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(wait4), 0) < 0 ||
		    seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(waitid), 0) < 0)
			goto out;
		for (size_t i = 0; i < n_pids; i++)
			if (allow_if(ctx, SCMP_SYS(kill), 0, (scmp_datum_t)signal_pids[i]) < 0)
				goto out;
	}
	what = "load";
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 || seccomp_load(ctx) < 0)
		goto out;
	rc = 0;
out:
	if (rc < 0)
		snprintf(err, err_len, "seccomp %s failed: %s", what, strerror(errno));
	if (ctx)
		seccomp_release(ctx);
	return rc;
}
