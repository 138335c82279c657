#include "sandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <seccomp.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

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

/*
 * The notifier resolves host names, and glibc's NSS may read files, load modules, and open
 * netlink or UNIX sockets (nscd, systemd-resolved) to do it, while libcurl resolves in a thread
 * of its own: an allow list that works here would kill it on another machine. So its filter
 * names what it must never do instead (everything else is allowed): run or trace programs,
 * fork (threads are allowed), signal other processes, open raw or packet sockets, touch
 * mounts, namespaces, modules, keys or BPF, and change files (those calls fail with EACCES
 * rather than kill: a library's stray attempt is not an attack).
 */
static const int notifier_killed[] = {
	SCMP_SYS(execve), SCMP_SYS(execveat), SCMP_SYS(ptrace), SCMP_SYS(process_vm_readv),
	SCMP_SYS(process_vm_writev), SCMP_SYS(fork), SCMP_SYS(vfork), SCMP_SYS(tkill),
	SCMP_SYS(mount), SCMP_SYS(umount2), SCMP_SYS(pivot_root), SCMP_SYS(chroot),
	SCMP_SYS(unshare), SCMP_SYS(setns), SCMP_SYS(init_module), SCMP_SYS(finit_module),
	SCMP_SYS(delete_module), SCMP_SYS(kexec_load), SCMP_SYS(bpf), SCMP_SYS(perf_event_open),
	SCMP_SYS(userfaultfd), SCMP_SYS(keyctl), SCMP_SYS(add_key), SCMP_SYS(request_key),
	SCMP_SYS(reboot), SCMP_SYS(swapon), SCMP_SYS(swapoff), SCMP_SYS(iopl), SCMP_SYS(ioperm),
};

static const int notifier_refused[] = {
	SCMP_SYS(unlink), SCMP_SYS(unlinkat), SCMP_SYS(rename), SCMP_SYS(renameat),
	SCMP_SYS(renameat2), SCMP_SYS(mkdir), SCMP_SYS(mkdirat), SCMP_SYS(rmdir), SCMP_SYS(chmod),
	SCMP_SYS(fchmod), SCMP_SYS(fchmodat), SCMP_SYS(chown), SCMP_SYS(fchown), SCMP_SYS(lchown),
	SCMP_SYS(fchownat), SCMP_SYS(truncate), SCMP_SYS(ftruncate), SCMP_SYS(link),
	SCMP_SYS(linkat), SCMP_SYS(symlink), SCMP_SYS(symlinkat), SCMP_SYS(mknod),
	SCMP_SYS(mknodat), SCMP_SYS(creat),
};

/* `action` for `call` when (argument `arg` & mask) == value; op NE: when it differs. */
static int rule_if(scmp_filter_ctx ctx, uint32_t action, int call, unsigned arg,
		   enum scmp_compare op, scmp_datum_t a, scmp_datum_t b)
{
	struct scmp_arg_cmp cmp = { .arg = arg, .op = op, .datum_a = a, .datum_b = b };
	return seccomp_rule_add_array(ctx, action, call, 1, &cmp);
}

static int notifier_rules(scmp_filter_ctx ctx)
{
	const uint32_t kill = SCMP_ACT_KILL_PROCESS, refuse = SCMP_ACT_ERRNO(EACCES);
	/* SCMP_SYS() is negative for a call this architecture lacks (open on arm64): skip it. */
	for (size_t i = 0; i < sizeof(notifier_killed) / sizeof(notifier_killed[0]); i++)
		if (notifier_killed[i] >= 0 &&
		    seccomp_rule_add(ctx, kill, notifier_killed[i], 0) < 0)
			return -1;
	for (size_t i = 0; i < sizeof(notifier_refused) / sizeof(notifier_refused[0]); i++)
		if (notifier_refused[i] >= 0 &&
		    seccomp_rule_add(ctx, refuse, notifier_refused[i], 0) < 0)
			return -1;
	/* Opening for writing: open's flags are its second argument, openat's its third. */
	static const scmp_datum_t write_flags[] = { O_WRONLY, O_RDWR, O_CREAT, O_TRUNC, O_APPEND };
	for (size_t i = 0; i < sizeof(write_flags) / sizeof(write_flags[0]); i++) {
		scmp_datum_t f = write_flags[i];
		if (rule_if(ctx, refuse, SCMP_SYS(openat), 2, SCMP_CMP_MASKED_EQ, f, f) < 0 ||
		    (SCMP_SYS(open) >= 0 &&
		     rule_if(ctx, refuse, SCMP_SYS(open), 1, SCMP_CMP_MASKED_EQ, f, f) < 0))
			return -1;
	}
	/* Threads (clone with CLONE_THREAD), never a new process; clone3 as in the other roles. */
	if (rule_if(ctx, kill, SCMP_SYS(clone), 0, SCMP_CMP_MASKED_EQ, CLONE_THREAD, 0) < 0 ||
	    seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0) < 0)
		return -1;
	/* Signals to itself only (abort() and raise() use tgkill on their own pid). */
	scmp_datum_t self = (scmp_datum_t)getpid();
	if (rule_if(ctx, kill, SCMP_SYS(kill), 0, SCMP_CMP_NE, self, 0) < 0 ||
	    rule_if(ctx, kill, SCMP_SYS(tgkill), 0, SCMP_CMP_NE, self, 0) < 0)
		return -1;
	/* No packet or raw sockets. */
	if (rule_if(ctx, kill, SCMP_SYS(socket), 0, SCMP_CMP_EQ, AF_PACKET, 0) < 0 ||
	    rule_if(ctx, kill, SCMP_SYS(socket), 1, SCMP_CMP_MASKED_EQ, 0xf, SOCK_RAW) < 0)
		return -1;
	return 0;
}

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
	scmp_filter_ctx ctx = seccomp_init(role == SANDBOX_NOTIFIER ? SCMP_ACT_ALLOW
								  : SCMP_ACT_KILL_PROCESS);
	if (!ctx)
		goto out;
	what = "rules";
	if (role == SANDBOX_NOTIFIER) {
		if (notifier_rules(ctx) < 0)
			goto out;
		goto load;
	}
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
load:
	what = "load";
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 || seccomp_load(ctx) < 0)
		goto out;
	rc = 0;
out:;
	int saved = errno;
	if (rc < 0)
		snprintf(err, err_len, "seccomp %s failed: %s", what, strerror(saved));
	if (ctx)
		seccomp_release(ctx);
	errno = saved;
	return rc;
}
