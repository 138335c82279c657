#include "sandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/netlink.h>
#include <sched.h>
#include <seccomp.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"

/*
 * Every role runs on an allow list: a deny list misses the calls nobody thought of, and every
 * kernel brings new ones (openat2, io_uring, pidfd_getfd were missing from the notifier's). A
 * role's list is made of the groups below (the table at the end says which), and a call outside
 * it gets the role's `otherwise` action:
 *   - the worker, the flusher and the dashboard know every call their code makes: anything else
 *     kills the process (SCMP_ACT_KILL_PROCESS), the loudest answer;
 *   - the notifier and the Plex throttle resolve host names, and glibc's NSS may read files,
 *     load modules and open UNIX or netlink sockets to do it while libcurl resolves in a thread
 *     of its own: what they need differs between machines, so a call outside their list fails
 *     with EPERM (a library copes with an error; it cannot cope with being killed), and the
 *     calls no library of theirs makes by accident (`never` below) kill them.
 * SCMP_SYS() is negative for a call this architecture lacks (open on arm64): such rows are
 * skipped.
 */

/* What every role needs: memory, time, signals to itself, its own descriptors, exiting. */
static const int base_calls[] = {
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

/* Creating, replacing and removing files: the flusher's ledger file, the worker's lists. */
static const int write_calls[] = {
	SCMP_SYS(openat), SCMP_SYS(unlink), SCMP_SYS(unlinkat), SCMP_SYS(rename),
	SCMP_SYS(renameat), SCMP_SYS(renameat2), SCMP_SYS(link), SCMP_SYS(linkat),
	SCMP_SYS(fsync), SCMP_SYS(fdatasync), SCMP_SYS(ftruncate), SCMP_SYS(getdents64),
};

/* Talking on sockets the role has: accepted ones (the dashboard) or its own (a client). */
static const int socket_calls[] = {
	SCMP_SYS(getsockopt), SCMP_SYS(setsockopt), SCMP_SYS(getsockname),
	SCMP_SYS(getpeername), SCMP_SYS(sendto), SCMP_SYS(recvfrom), SCMP_SYS(sendmsg),
	SCMP_SYS(recvmsg), SCMP_SYS(shutdown), SCMP_SYS(epoll_ctl), SCMP_SYS(epoll_wait),
	SCMP_SYS(epoll_pwait),
};

/* A server on a socket bound before the filter: the dashboard. */
static const int serve_calls[] = { SCMP_SYS(accept), SCMP_SYS(accept4) };

/* An HTTP client (libcurl's easy and multi handles): new sockets are checked apart. */
static const int client_calls[] = {
	SCMP_SYS(connect), SCMP_SYS(epoll_create1), SCMP_SYS(eventfd2), SCMP_SYS(pipe2),
	SCMP_SYS(select), SCMP_SYS(pselect6),
};

/* What NSS and libcurl's resolver thread add: netlink (AI_ADDRCONFIG), UDP batches, threads'
 * set-up, and the older file calls some libraries still make. */
static const int resolve_calls[] = {
	SCMP_SYS(bind), SCMP_SYS(sendmmsg), SCMP_SYS(recvmmsg), SCMP_SYS(set_robust_list),
	SCMP_SYS(sched_getaffinity), SCMP_SYS(getgid), SCMP_SYS(getegid),
	SCMP_SYS(clock_getres), SCMP_SYS(readlink), SCMP_SYS(readlinkat), SCMP_SYS(access),
	SCMP_SYS(faccessat), SCMP_SYS(stat), SCMP_SYS(lstat), SCMP_SYS(getcwd),
	SCMP_SYS(getdents64),
};

/* Killed in the roles whose other refusals are an error: running or tracing programs, other
 * processes (signals, pidfds, memory), io_uring (its requests bypass this filter), mounts,
 * namespaces, file handles, modules, kexec, keys, BPF, perf, userfaultfd, swap, reboot, I/O
 * ports. The roles whose refusals kill die on these anyway. */
static const int never_calls[] = {
	SCMP_SYS(execve), SCMP_SYS(execveat), SCMP_SYS(ptrace), SCMP_SYS(process_vm_readv),
	SCMP_SYS(process_vm_writev), SCMP_SYS(process_madvise), SCMP_SYS(kcmp), SCMP_SYS(fork),
	SCMP_SYS(vfork), SCMP_SYS(tkill), SCMP_SYS(rt_sigqueueinfo), SCMP_SYS(rt_tgsigqueueinfo),
	SCMP_SYS(pidfd_open), SCMP_SYS(pidfd_send_signal), SCMP_SYS(pidfd_getfd),
	SCMP_SYS(io_uring_setup), SCMP_SYS(io_uring_enter), SCMP_SYS(io_uring_register),
	SCMP_SYS(mount), SCMP_SYS(umount2), SCMP_SYS(pivot_root), SCMP_SYS(chroot),
	SCMP_SYS(fsopen), SCMP_SYS(fsconfig), SCMP_SYS(fsmount), SCMP_SYS(fspick),
	SCMP_SYS(move_mount), SCMP_SYS(open_tree), SCMP_SYS(unshare), SCMP_SYS(setns),
	SCMP_SYS(name_to_handle_at), SCMP_SYS(open_by_handle_at), SCMP_SYS(init_module),
	SCMP_SYS(finit_module), SCMP_SYS(delete_module), SCMP_SYS(kexec_load),
	SCMP_SYS(kexec_file_load), SCMP_SYS(bpf), SCMP_SYS(perf_event_open),
	SCMP_SYS(userfaultfd), SCMP_SYS(keyctl), SCMP_SYS(add_key), SCMP_SYS(request_key),
	SCMP_SYS(reboot), SCMP_SYS(swapon), SCMP_SYS(swapoff), SCMP_SYS(iopl), SCMP_SYS(ioperm),
};

enum group {
	G_WRITE = 1 << 0,    /* write_calls; without it openat is allowed read-only */
	G_SERVE = 1 << 1,    /* socket_calls + serve_calls */
	G_CLIENT = 1 << 2,   /* socket_calls + client_calls, IP stream sockets, a socketpair */
	G_RESOLVE = 1 << 3,  /* G_CLIENT + resolve_calls, UDP, UNIX and netlink sockets, threads */
	G_CHILDREN = 1 << 4, /* waiting for children, signalling the pids it was given */
};

struct policy {
	uint32_t otherwise;  /* the action for a call outside the groups */
	unsigned groups;
};

static const struct policy policies[] = {
	[SANDBOX_WORKER] = { SCMP_ACT_KILL_PROCESS, G_WRITE | G_CLIENT | G_CHILDREN },
	[SANDBOX_FLUSHER] = { SCMP_ACT_KILL_PROCESS, G_WRITE },
	[SANDBOX_DASHBOARD] = { SCMP_ACT_KILL_PROCESS, G_SERVE },
	[SANDBOX_NOTIFIER] = { SCMP_ACT_ERRNO(EPERM), G_CLIENT | G_RESOLVE },
	[SANDBOX_PLEX] = { SCMP_ACT_ERRNO(EPERM), G_CLIENT | G_RESOLVE },
	[SANDBOX_DOWNLOADERS] = { SCMP_ACT_ERRNO(EPERM), G_CLIENT | G_RESOLVE | G_WRITE },
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* `action` for `call` when every comparison holds (none: always). The comparisons are spelled
 * out: libseccomp's SCMP_A0() macros leave fields unset, which clang's -Wextra reports. */
struct cmp {
	unsigned arg;
	enum scmp_compare op;
	scmp_datum_t a, b;
};

static int rule(scmp_filter_ctx ctx, uint32_t action, int call, const struct cmp *cmps,
		unsigned n)
{
	if (call < 0)
		return 0;
	struct scmp_arg_cmp c[3];
	for (unsigned i = 0; i < n && i < 3; i++)
		c[i] = (struct scmp_arg_cmp){ .arg = cmps[i].arg, .op = cmps[i].op,
					      .datum_a = cmps[i].a, .datum_b = cmps[i].b };
	int rc = seccomp_rule_add_array(ctx, action, call, n < 3 ? n : 3, c);
	if (rc < 0)
		errno = -rc; /* libseccomp returns the error instead of setting errno */
	return rc < 0 ? -1 : 0;
}

static int rule1(scmp_filter_ctx ctx, uint32_t action, int call, unsigned arg,
		 enum scmp_compare op, scmp_datum_t a, scmp_datum_t b)
{
	struct cmp c = { arg, op, a, b };
	return rule(ctx, action, call, &c, 1);
}

static int all(scmp_filter_ctx ctx, uint32_t action, const int *calls, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (rule(ctx, action, calls[i], NULL, 0) < 0)
			return -1;
	return 0;
}

/* New sockets: IP stream ones (and datagram ones for a resolver), never raw or packet ones. */
static int socket_rules(scmp_filter_ctx ctx, unsigned groups)
{
	const uint32_t allow = SCMP_ACT_ALLOW;
	const scmp_datum_t families[] = { AF_INET, AF_INET6 };
	for (size_t i = 0; i < COUNT(families); i++) {
		struct cmp stream[2] = { { 0, SCMP_CMP_EQ, families[i], 0 },
					 { 1, SCMP_CMP_MASKED_EQ, 0xf, SOCK_STREAM } };
		struct cmp dgram[2] = { { 0, SCMP_CMP_EQ, families[i], 0 },
					{ 1, SCMP_CMP_MASKED_EQ, 0xf, SOCK_DGRAM } };
		if (rule(ctx, allow, SCMP_SYS(socket), stream, 2) < 0 ||
		    ((groups & G_RESOLVE) && rule(ctx, allow, SCMP_SYS(socket), dgram, 2) < 0))
			return -1;
	}
	/* libcurl's multi handle (behind curl_easy_perform) makes a wake-up pair. */
	if (rule1(ctx, allow, SCMP_SYS(socketpair), 0, SCMP_CMP_EQ, AF_UNIX, 0) < 0)
		return -1;
	if (groups & G_RESOLVE) {
		/* nscd, systemd-resolved and mDNS answer on UNIX sockets; glibc asks the kernel
		 * for the host's addresses over route netlink. */
		struct cmp route[2] = { { 0, SCMP_CMP_EQ, AF_NETLINK, 0 },
					{ 2, SCMP_CMP_EQ, NETLINK_ROUTE, 0 } };
		if (rule1(ctx, allow, SCMP_SYS(socket), 0, SCMP_CMP_EQ, AF_UNIX, 0) < 0 ||
		    rule(ctx, allow, SCMP_SYS(socket), route, 2) < 0)
			return -1;
	}
	return 0;
}

/* Raw IP sockets (netlink's raw ones are how glibc asks for the host's addresses). */
static int raw_ip_sockets(scmp_filter_ctx ctx, uint32_t action)
{
	const scmp_datum_t families[] = { AF_INET, AF_INET6 };
	for (size_t i = 0; i < COUNT(families); i++) {
		struct cmp raw[2] = { { 0, SCMP_CMP_EQ, families[i], 0 },
				      { 1, SCMP_CMP_MASKED_EQ, 0xf, SOCK_RAW } };
		if (rule(ctx, action, SCMP_SYS(socket), raw, 2) < 0)
			return -1;
	}
	return 0;
}

/* Opening read-only: none of the flags that write, create or truncate. open's flags are its
 * second argument, openat's its third. */
static int read_only_opens(scmp_filter_ctx ctx)
{
	const scmp_datum_t writes = O_WRONLY | O_RDWR | O_CREAT | O_TRUNC;
	if (rule1(ctx, SCMP_ACT_ALLOW, SCMP_SYS(openat), 2, SCMP_CMP_MASKED_EQ, writes, 0) < 0 ||
	    rule1(ctx, SCMP_ACT_ALLOW, SCMP_SYS(open), 1, SCMP_CMP_MASKED_EQ, writes, 0) < 0)
		return -1;
	return 0;
}

static int role_rules(scmp_filter_ctx ctx, const struct policy *p, const pid_t *signal_pids,
		      size_t n_pids)
{
	const uint32_t allow = SCMP_ACT_ALLOW, kill = SCMP_ACT_KILL_PROCESS;
	const int refuses = p->otherwise != kill;
	if (all(ctx, allow, base_calls, COUNT(base_calls)) < 0)
		return -1;
	/* glibc tries clone3 first and falls back to clone on ENOSYS; openat2 has no user in
	 * glibc and every caller must cope with kernels older than it. ENOSYS keeps a library's
	 * attempt an error instead of a kill, and the fallback is what the filter judges. */
	if (rule(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), NULL, 0) < 0 ||
	    rule(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(openat2), NULL, 0) < 0)
		return -1;
	/* Signals to itself (abort() and raise() use tgkill on their own pid). */
	scmp_datum_t self = (scmp_datum_t)getpid();
	if (rule1(ctx, allow, SCMP_SYS(kill), 0, SCMP_CMP_EQ, self, 0) < 0 ||
	    rule1(ctx, allow, SCMP_SYS(tgkill), 0, SCMP_CMP_EQ, self, 0) < 0)
		return -1;
	if (refuses && (all(ctx, kill, never_calls, COUNT(never_calls)) < 0 ||
			rule1(ctx, kill, SCMP_SYS(kill), 0, SCMP_CMP_NE, self, 0) < 0 ||
			rule1(ctx, kill, SCMP_SYS(tgkill), 0, SCMP_CMP_NE, self, 0) < 0 ||
			rule1(ctx, kill, SCMP_SYS(socket), 0, SCMP_CMP_EQ, AF_PACKET, 0) < 0 ||
			raw_ip_sockets(ctx, kill) < 0))
		return -1;
	if (p->groups & G_WRITE) {
		if (all(ctx, allow, write_calls, COUNT(write_calls)) < 0)
			return -1;
	} else if (read_only_opens(ctx) < 0) {
		return -1;
	}
	if ((p->groups & (G_SERVE | G_CLIENT)) &&
	    (all(ctx, allow, socket_calls, COUNT(socket_calls)) < 0 ||
	     rule1(ctx, allow, SCMP_SYS(ioctl), 1, SCMP_CMP_EQ, FIONREAD, 0) < 0 ||
	     rule1(ctx, allow, SCMP_SYS(ioctl), 1, SCMP_CMP_EQ, FIONBIO, 0) < 0))
		return -1;
	if ((p->groups & G_SERVE) && all(ctx, allow, serve_calls, COUNT(serve_calls)) < 0)
		return -1;
	if ((p->groups & G_CLIENT) &&
	    (all(ctx, allow, client_calls, COUNT(client_calls)) < 0 ||
	     socket_rules(ctx, p->groups) < 0))
		return -1;
	if (p->groups & G_RESOLVE) {
		/* Threads (clone with CLONE_THREAD), never a new process. */
		if (all(ctx, allow, resolve_calls, COUNT(resolve_calls)) < 0 ||
		    rule1(ctx, allow, SCMP_SYS(clone), 0, SCMP_CMP_MASKED_EQ, CLONE_THREAD,
			  CLONE_THREAD) < 0 ||
		    rule1(ctx, kill, SCMP_SYS(clone), 0, SCMP_CMP_MASKED_EQ, CLONE_THREAD, 0) < 0)
			return -1;
	}
	if (p->groups & G_CHILDREN) {
		if (rule(ctx, allow, SCMP_SYS(wait4), NULL, 0) < 0 ||
		    rule(ctx, allow, SCMP_SYS(waitid), NULL, 0) < 0)
			return -1;
		for (size_t i = 0; i < n_pids; i++)
			if ((scmp_datum_t)signal_pids[i] != self &&
			    rule1(ctx, allow, SCMP_SYS(kill), 0, SCMP_CMP_EQ,
				  (scmp_datum_t)signal_pids[i], 0) < 0)
				return -1;
	}
	return 0;
}

int sandbox_enter(enum sandbox_role role, const pid_t *signal_pids, size_t n_pids, char *err,
		  size_t err_len)
{
	const char *what = "init";
	int rc = -1;
	if ((size_t)role >= COUNT(policies)) {
		errno = EINVAL;
		goto out_noctx;
	}
	const struct policy *p = &policies[role];
	scmp_filter_ctx ctx = seccomp_init(p->otherwise);
	if (!ctx)
		goto out_noctx;
	what = "rules";
	if (role_rules(ctx, p, signal_pids, n_pids) < 0)
		goto out;
	what = "load";
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		goto out;
	int lrc = seccomp_load(ctx);
	if (lrc < 0) {
		errno = -lrc;
		goto out;
	}
	/* Opening the log file again after a rotation would be refused here (or kill). */
	if (!(p->groups & G_WRITE))
		log_file_pin();
	rc = 0;
out:;
	int saved = errno;
	seccomp_release(ctx);
	errno = saved;
out_noctx:
	if (rc < 0)
		snprintf(err, err_len, "seccomp %s failed: %s", what, strerror(errno));
	return rc;
}
