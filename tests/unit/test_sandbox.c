/*
 * Each role's seccomp filter, loaded for real (sandbox_enter) in a forked child that then makes
 * one call: every call a role must not make is tried, alone, and must get the role's answer (a
 * SIGSYS death, or the errno the filter gives); and what each role does all day must still
 * work. The calls are made with syscall() and arguments that would be harmless if a filter
 * let them through, so a regression fails a test instead of harming the machine.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/io_uring.h>
#include <linux/openat2.h>
#include <linux/perf_event.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ledger.h"
#include "sandbox.h"
#include "test_util.h"

#define FILE_IN_TMP "/tmp/cplow-sandbox-test-file"

/* What a call made inside a sandbox got. */
enum answer {
	KILLED,    /* SIGSYS */
	REFUSED,   /* -1 with EPERM */
	NOSYS,     /* -1 with ENOSYS: "this kernel has no such call", so callers fall back */
	ALLOWED,   /* anything else: the call reached the kernel */
};

static const char *const answer_names[] = { "killed", "refused (EPERM)", "ENOSYS",
					    "something else (it reached the kernel, or another errno)" };

/* Runs body in a child inside the role's sandbox; the child's signal list is itself (as a
 * worker's is its rclone). Returns the child's wait status. */
static int in_sandbox(enum sandbox_role role, void (*body)(void))
{
	pid_t pid = test_fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		char err[256];
		pid_t self = getpid();
		if (sandbox_enter(role, &self, 1, err, sizeof(err)) < 0)
			_exit(190);
		body();
		_exit(0);
	}
	int st;
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	return st;
}

/* ---- the forbidden calls ---- */

/* Each returns what the call returned; errno as it left it. */
typedef long (*call_fn)(void);

static long c_execve(void)
{
	char *const argv[] = { "/bin/true", NULL };
	return syscall(SYS_execve, "/bin/true", argv, NULL);
}

static long c_execveat(void)
{
	char *const argv[] = { "/bin/true", NULL };
	return syscall(SYS_execveat, AT_FDCWD, "/bin/true", argv, NULL, 0);
}

static long c_ptrace(void) { return syscall(SYS_ptrace, PTRACE_TRACEME, 0, NULL, NULL); }
/* A new process would _exit(200) at once, as the caller does after any allowed call. */
static long c_fork(void) { return syscall(SYS_fork); }
static long c_clone_process(void) { return syscall(SYS_clone, SIGCHLD, 0, NULL, NULL, 0); }
static long c_kill_other(void) { return kill(getppid(), 0); }
static long c_tgkill_other(void) { return syscall(SYS_tgkill, getppid(), getppid(), 0); }
static long c_tkill_other(void) { return syscall(SYS_tkill, getppid(), 0); }

static long c_rt_sigqueueinfo(void)
{
	siginfo_t si;
	memset(&si, 0, sizeof(si));
	si.si_code = SI_QUEUE;
	return syscall(SYS_rt_sigqueueinfo, getppid(), 0, &si);
}

static long c_rt_tgsigqueueinfo(void)
{
	siginfo_t si;
	memset(&si, 0, sizeof(si));
	si.si_code = SI_QUEUE;
	return syscall(SYS_rt_tgsigqueueinfo, getppid(), getppid(), 0, &si);
}

static long c_pidfd_open(void) { return syscall(SYS_pidfd_open, getppid(), 0); }
static long c_pidfd_send_signal(void) { return syscall(SYS_pidfd_send_signal, -1, 0, NULL, 0); }
static long c_pidfd_getfd(void) { return syscall(SYS_pidfd_getfd, -1, 0, 0); }

static long c_process_vm_readv(void)
{
	char buf[8];
	struct iovec local = { buf, sizeof(buf) }, remote = { buf, sizeof(buf) };
	return syscall(SYS_process_vm_readv, getppid(), &local, 1, &remote, 1, 0);
}

static long c_io_uring_setup(void)
{
	struct io_uring_params p;
	memset(&p, 0, sizeof(p));
	return syscall(SYS_io_uring_setup, 1, &p);
}

static long c_io_uring_enter(void) { return syscall(SYS_io_uring_enter, -1, 0, 0, 0, NULL, 0); }
static long c_io_uring_register(void) { return syscall(SYS_io_uring_register, -1, 0, NULL, 0); }

static long c_openat2(void)
{
	struct open_how how = { .flags = O_RDONLY };
	return syscall(SYS_openat2, AT_FDCWD, "/etc/hosts", &how, sizeof(how));
}

static long c_bpf(void) { return syscall(SYS_bpf, -1, NULL, 0); }
static long c_perf_event_open(void) { return syscall(SYS_perf_event_open, NULL, 0, -1, -1, 0); }
static long c_userfaultfd(void) { return syscall(SYS_userfaultfd, 0); }
static long c_unshare(void) { return syscall(SYS_unshare, 0); }
static long c_setns(void) { return syscall(SYS_setns, -1, 0); }
static long c_mount(void) { return syscall(SYS_mount, "none", "/nonexistent-cplow", "tmpfs", 0, NULL); }
static long c_open_by_handle_at(void) { return syscall(SYS_open_by_handle_at, -1, NULL, 0); }
static long c_keyctl(void) { return syscall(SYS_keyctl, -1, 0, 0, 0, 0); }
static long c_init_module(void) { return syscall(SYS_init_module, NULL, 0, ""); }
static long c_reboot(void) { return syscall(SYS_reboot, 0, 0, 0, NULL); } /* bad magic: EINVAL */
static long c_packet_socket(void) { return socket(AF_PACKET, SOCK_RAW, 0); }
static long c_raw_socket(void) { return socket(AF_INET, SOCK_RAW, IPPROTO_ICMP); }
static long c_clone3(void) { return syscall(SYS_clone3, NULL, 0); }

/* What a read-only server or a client must not do to files. */
static long c_open_for_writing(void)
{
	return syscall(SYS_openat, AT_FDCWD, FILE_IN_TMP, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
}

static long c_open_read_write(void) { return syscall(SYS_openat, AT_FDCWD, "/etc/hosts", O_RDWR); }
static long c_open_truncate(void) { return syscall(SYS_openat, AT_FDCWD, FILE_IN_TMP, O_RDONLY | O_TRUNC); }
static long c_unlink(void) { return syscall(SYS_unlink, "/nonexistent-cplow"); }
static long c_unlinkat(void) { return syscall(SYS_unlinkat, AT_FDCWD, "/nonexistent-cplow", 0); }
static long c_rename(void) { return syscall(SYS_rename, "/nonexistent-cplow", "/nonexistent-cplow2"); }
static long c_renameat2(void)
{
	return syscall(SYS_renameat2, AT_FDCWD, "/nonexistent-cplow", AT_FDCWD, "/nonexistent-cplow2", 0);
}
static long c_link(void) { return syscall(SYS_link, "/nonexistent-cplow", "/nonexistent-cplow2"); }
static long c_symlink(void) { return syscall(SYS_symlink, "/nonexistent-cplow", "/nonexistent-cplow2/x"); }
static long c_mkdir(void) { return syscall(SYS_mkdir, "/nonexistent-cplow/x", 0700); }
static long c_ftruncate(void) { return syscall(SYS_ftruncate, -1, 0); }
static long c_chmod(void) { return syscall(SYS_chmod, "/nonexistent-cplow", 0600); }

/* What a role without its own sockets must not do to the network. */
static long c_inet_socket(void) { return socket(AF_INET, SOCK_STREAM, 0); }
static long c_udp_socket(void) { return socket(AF_INET, SOCK_DGRAM, 0); }
static long c_unix_socket(void) { return socket(AF_UNIX, SOCK_STREAM, 0); }

static long c_socketpair(void)
{
	int sv[2];
	return socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
}

static long c_connect(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(9),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	return syscall(SYS_connect, -1, &a, sizeof(a));
}

static long c_listen(void) { return syscall(SYS_listen, -1, 1); }
static long c_accept4(void) { return syscall(SYS_accept4, -1, NULL, NULL, 0); }
static long c_wait4(void) { return syscall(SYS_wait4, -1, NULL, WNOHANG, NULL); }

/* A call a role must not make, by name. */
struct forbidden {
	const char *name;
	call_fn call;
};

/* Every role, whatever its other answers: killed. */
static const struct forbidden never[] = {
	{ "execve", c_execve },
	{ "execveat", c_execveat },
	{ "ptrace", c_ptrace },
	{ "fork", c_fork },
	{ "clone of a process", c_clone_process },
	{ "kill of another process", c_kill_other },
	{ "tgkill of another process", c_tgkill_other },
	{ "tkill", c_tkill_other },
	{ "rt_sigqueueinfo", c_rt_sigqueueinfo },
	{ "rt_tgsigqueueinfo", c_rt_tgsigqueueinfo },
	{ "pidfd_open", c_pidfd_open },
	{ "pidfd_send_signal", c_pidfd_send_signal },
	{ "pidfd_getfd", c_pidfd_getfd },
	{ "process_vm_readv", c_process_vm_readv },
	{ "io_uring_setup", c_io_uring_setup },
	{ "io_uring_enter", c_io_uring_enter },
	{ "io_uring_register", c_io_uring_register },
	{ "bpf", c_bpf },
	{ "perf_event_open", c_perf_event_open },
	{ "userfaultfd", c_userfaultfd },
	{ "unshare", c_unshare },
	{ "setns", c_setns },
	{ "mount", c_mount },
	{ "open_by_handle_at", c_open_by_handle_at },
	{ "keyctl", c_keyctl },
	{ "init_module", c_init_module },
	{ "reboot", c_reboot },
	{ "socket(AF_PACKET)", c_packet_socket },
	{ "socket(AF_INET, SOCK_RAW)", c_raw_socket },
};

/* Every role: "no such call here", so that a library falls back to the older call. */
static const struct forbidden fallback[] = {
	{ "openat2", c_openat2 },
	{ "clone3", c_clone3 },
};

/* Changing files: not for a read-only server or a client. */
static const struct forbidden file_changes[] = {
	{ "openat for writing", c_open_for_writing },
	{ "openat O_RDWR", c_open_read_write },
	{ "openat O_TRUNC", c_open_truncate },
	{ "unlink", c_unlink },
	{ "unlinkat", c_unlinkat },
	{ "rename", c_rename },
	{ "renameat2", c_renameat2 },
	{ "link", c_link },
	{ "symlink", c_symlink },
	{ "mkdir", c_mkdir },
	{ "ftruncate", c_ftruncate },
	{ "chmod", c_chmod },
};

/* Sockets of its own: not for the flusher and the dashboard. */
static const struct forbidden new_sockets[] = {
	{ "socket(AF_INET)", c_inet_socket },
	{ "socket(AF_UNIX)", c_unix_socket },
	{ "socketpair", c_socketpair },
	{ "connect", c_connect },
};

/* What only a server does: not for a client. */
static const struct forbidden serving[] = {
	{ "listen", c_listen },
	{ "accept4", c_accept4 },
};

/* The worker's client is TCP to loopback; its files are made, not their modes or folders. */
static const struct forbidden worker_extra[] = {
	{ "socket(AF_INET, SOCK_DGRAM)", c_udp_socket },
	{ "socket(AF_UNIX)", c_unix_socket },
	{ "chmod", c_chmod },
	{ "mkdir", c_mkdir },
};

static const struct forbidden waiting[] = { { "wait4", c_wait4 } };
static const struct forbidden chmod_only[] = { { "chmod", c_chmod } };

static call_fn current_call;

static void make_current_call(void)
{
	errno = 0;
	long r = current_call();
	_exit(r == -1 && errno > 0 && errno < 190 ? errno : 200);
}

static enum answer answer_of(int st)
{
	if (WIFSIGNALED(st) && WTERMSIG(st) == SIGSYS)
		return KILLED;
	if (WIFEXITED(st) && WEXITSTATUS(st) == EPERM)
		return REFUSED;
	if (WIFEXITED(st) && WEXITSTATUS(st) == ENOSYS)
		return NOSYS;
	return ALLOWED;
}

/* The calls of a table, and what each must get. */
struct expectation {
	const struct forbidden *calls;
	size_t n;
	enum answer answer;
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))
#define ALL(table, answer) { table, COUNT(table), answer }

/* Tries each call alone; fails listing every call that got another answer than its table's. */
static void expect_answers(enum sandbox_role role, const char *role_name,
			   const struct expectation *e, size_t n)
{
	char wrong[8192] = "";
	size_t len = 0;
	for (size_t k = 0; k < n; k++) {
		for (size_t i = 0; i < e[k].n; i++) {
			current_call = e[k].calls[i].call;
			int st = in_sandbox(role, make_current_call);
			cr_assert(!(WIFEXITED(st) && WEXITSTATUS(st) == 190),
				  "%s: sandbox_enter failed", role_name);
			enum answer got = answer_of(st);
			if (got != e[k].answer && len < sizeof(wrong) - 200)
				len += (size_t)snprintf(wrong + len, sizeof(wrong) - len,
							"\n  %s: %s, not %s (status %#x)",
							e[k].calls[i].name, answer_names[got],
							answer_names[e[k].answer], st);
		}
	}
	unlink(FILE_IN_TMP);
	cr_assert(len == 0, "in the %s's sandbox:%s", role_name, wrong);
}

#define EXPECT(role, name, ...)                                                              \
	do {                                                                                  \
		const struct expectation e[] = { ALL(never, KILLED), ALL(fallback, NOSYS),    \
						 __VA_ARGS__ };                               \
		expect_answers(role, name, e, COUNT(e));                                      \
	} while (0)

Test(sandbox, worker_kills_or_refuses_every_forbidden_call, .timeout = 60)
{
	EXPECT(SANDBOX_WORKER, "worker", ALL(worker_extra, KILLED), ALL(serving, KILLED));
}

Test(sandbox, flusher_kills_or_refuses_every_forbidden_call, .timeout = 60)
{
	EXPECT(SANDBOX_FLUSHER, "flusher", ALL(new_sockets, KILLED), ALL(serving, KILLED),
	       ALL(waiting, KILLED), ALL(chmod_only, KILLED));
}

Test(sandbox, dashboard_kills_every_call_a_read_only_server_does_not_need, .timeout = 60)
{
	EXPECT(SANDBOX_DASHBOARD, "dashboard", ALL(file_changes, KILLED),
	       ALL(new_sockets, KILLED), { serving, 1, KILLED } /* listen */,
	       ALL(waiting, KILLED));
}

/* The notifier and the Plex throttle: file changes and serving are refused, not killed. */
Test(sandbox, notifier_kills_or_refuses_every_forbidden_call, .timeout = 60)
{
	EXPECT(SANDBOX_NOTIFIER, "notifier", ALL(file_changes, REFUSED), ALL(serving, REFUSED),
	       ALL(waiting, REFUSED));
}

Test(sandbox, plex_kills_or_refuses_every_forbidden_call, .timeout = 60)
{
	EXPECT(SANDBOX_PLEX, "plex", ALL(file_changes, REFUSED), ALL(serving, REFUSED),
	       ALL(waiting, REFUSED));
}

/* The downloaders' role writes its marker file: only serving and waiting are refused. */
Test(sandbox, downloaders_kill_or_refuse_every_forbidden_call, .timeout = 60)
{
	EXPECT(SANDBOX_DOWNLOADERS, "downloaders", ALL(serving, REFUSED), ALL(waiting, REFUSED));
}

/* ---- what each role does all day ---- */

static void do_inet_socket(void)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		_exit(91);
	close(fd);
}

static void do_worker_job(void)
{
	/* Memory, time, pipes, a loopback socket, a file in its work directory, its rclone. */
	char *p = malloc(1 << 20);
	if (!p)
		_exit(92);
	p[0] = 1;
	free(p);
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	int fds[2];
	if (pipe2(fds, 0) < 0 || write(fds[1], "x", 1) != 1)
		_exit(93);
	do_inet_socket();
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		_exit(94);
	int f = open(FILE_IN_TMP, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (f < 0 || write(f, "x", 1) != 1 || close(f) < 0 || unlink(FILE_IN_TMP) < 0)
		_exit(95);
	if (kill(getpid(), 0) < 0 || waitpid(-1, NULL, WNOHANG) != -1 || errno != ECHILD)
		_exit(96);
}

Test(sandbox, worker_does_its_job, .timeout = 20)
{
	int st = in_sandbox(SANDBOX_WORKER, do_worker_job);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status %#x", st);
}

static char flusher_dir[64];

static void do_flusher_job(void)
{
	/* The ledger file's dance: a temp file, fsync, .prev by link, rename, the directory. */
	char tmp[128], path[128], prev[128];
	snprintf(tmp, sizeof(tmp), "%s/f.tmp", flusher_dir);
	snprintf(path, sizeof(path), "%s/f.json", flusher_dir);
	snprintf(prev, sizeof(prev), "%s/f.json.prev", flusher_dir);
	for (int i = 0; i < 2; i++) {
		int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		if (fd < 0 || write(fd, "{}", 2) != 2 || fsync(fd) < 0 || close(fd) < 0)
			_exit(91);
		unlink(prev);
		if ((i && link(path, prev) < 0) || rename(tmp, path) < 0)
			_exit(92);
		int dir = open(flusher_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (dir < 0 || fsync(dir) < 0 || close(dir) < 0)
			_exit(93);
	}
	struct stat st;
	if (stat(path, &st) < 0 || stat(prev, &st) < 0)
		_exit(94);
}

Test(sandbox, flusher_does_its_job, .timeout = 20)
{
	snprintf(flusher_dir, sizeof(flusher_dir), "/tmp/cplow-sandbox-flusher-XXXXXX");
	cr_assert_not_null(mkdtemp(flusher_dir));
	int st = in_sandbox(SANDBOX_FLUSHER, do_flusher_job);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", flusher_dir);
	cr_expect_eq(system(cmd), 0);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status %#x", st);
}

static int listen_fd = -1, client_fd = -1, epoll_fd = -1;

static void do_dashboard_job(void)
{
	/* What libmicrohttpd does between epoll_wait calls: accept, read, answer, close. */
	struct epoll_event ev;
	if (epoll_wait(epoll_fd, &ev, 1, 5000) != 1)
		_exit(91);
	int c = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (c < 0)
		_exit(92);
	int one = 1;
	if (setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0)
		_exit(93);
	char buf[64];
	if (recvfrom(c, buf, sizeof(buf), 0, NULL, NULL) <= 0)
		_exit(94);
	struct iovec iov = { "HTTP/1.1 200 OK\r\n\r\n", 19 };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1 };
	if (sendmsg(c, &m, MSG_NOSIGNAL) != 19 || shutdown(c, SHUT_WR) < 0 || close(c) < 0)
		_exit(95);
	/* Reading a file (glibc's time zone, once). */
	int f = open("/etc/hosts", O_RDONLY | O_CLOEXEC);
	if (f < 0 || read(f, buf, sizeof(buf)) < 0 || close(f) < 0)
		_exit(96);
}

Test(sandbox, dashboard_serves_a_connection, .timeout = 20)
{
	listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t al = sizeof(a);
	cr_assert_eq(bind(listen_fd, (struct sockaddr *)&a, sizeof(a)), 0);
	cr_assert_eq(listen(listen_fd, 4), 0);
	cr_assert_eq(getsockname(listen_fd, (struct sockaddr *)&a, &al), 0);
	epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	struct epoll_event ev = { .events = EPOLLIN };
	cr_assert_eq(epoll_ctl(epoll_fd, EPOLL_CTL_ADD, listen_fd, &ev), 0);
	client_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	cr_assert_eq(connect(client_fd, (struct sockaddr *)&a, sizeof(a)), 0);
	cr_assert_eq(write(client_fd, "GET / HTTP/1.1\r\n\r\n", 18), 18);
	int st = in_sandbox(SANDBOX_DASHBOARD, do_dashboard_job);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status %#x", st);
	char buf[64] = { 0 };
	cr_assert_gt(read(client_fd, buf, sizeof(buf) - 1), 0);
	cr_assert_str_eq(buf, "HTTP/1.1 200 OK\r\n\r\n");
	close(client_fd);
	close(epoll_fd);
	close(listen_fd);
}

static void *thread_body(void *arg)
{
	return arg;
}

static void do_client_job(void)
{
	/* What a client by name needs: libcurl's resolver thread, a name resolved, sockets, reads
	 * of files, signals to itself. */
	pthread_t t;
	if (pthread_create(&t, NULL, thread_body, NULL) != 0 || pthread_join(t, NULL) != 0)
		_exit(91);
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_ADDRCONFIG }, *ai = NULL;
	if (getaddrinfo("localhost", "80", &hints, &ai) != 0)
		_exit(92);
	freeaddrinfo(ai);
	do_inet_socket();
	int fd = open("/etc/hosts", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		_exit(93);
	close(fd);
	if (kill(getpid(), 0) != 0)
		_exit(94);
}

Test(sandbox, notifier_allows_threads_name_resolution_and_sockets, .timeout = 20)
{
	int st = in_sandbox(SANDBOX_NOTIFIER, do_client_job);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status %#x", st);
}

static char marker_dir[64];

static void do_downloaders_job(void)
{
	do_client_job();
	/* Its marker beside the lock: written, renamed into place, removed. */
	char tmp[96], marker[96];
	snprintf(tmp, sizeof(tmp), "%s/cplow.lock.paused.tmp", marker_dir);
	snprintf(marker, sizeof(marker), "%s/cplow.lock.paused", marker_dir);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || write(fd, "nzbget\n", 7) != 7 || fsync(fd) < 0 || close(fd) < 0)
		_exit(95);
	if (rename(tmp, marker) < 0 || unlink(marker) < 0)
		_exit(96);
}

Test(sandbox, downloaders_ask_by_name_and_write_their_marker, .timeout = 20)
{
	snprintf(marker_dir, sizeof(marker_dir), "/tmp/cplow-test-sandbox-XXXXXX");
	cr_assert_not_null(mkdtemp(marker_dir));
	int st = in_sandbox(SANDBOX_DOWNLOADERS, do_downloaders_job);
	rmdir(marker_dir);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status %#x", st);
}

static struct ledger plex_ledger;
static int32_t plex_slot;

static void do_plex_job(void)
{
	do_client_job();
	/* Its requests go into the stage slots, under the ledger's lock. */
	if (ledger_stage_request_bwlimit(&plex_ledger, plex_slot, "10M") != LEDGER_OK)
		_exit(95);
}

Test(sandbox, plex_asks_by_name_and_writes_its_requests_into_the_ledger, .timeout = 20)
{
	char name[64];
	snprintf(name, sizeof(name), "/cplow-test-sandbox-%d", (int)getpid());
	ledger_unlink(name);
	struct ledger_options o = { .row_capacity = 4, .slot_capacity = 2 };
	cr_assert_eq(ledger_create(name, &o, &plex_ledger), LEDGER_OK);
	ledger_unlink(name);
	int32_t row;
	cr_assert_eq(ledger_row_get(&plex_ledger, "media", "sa1", &row), LEDGER_OK);
	struct ledger_stage s = { .row = row, .pid = getpid(), .stage_number = 1 };
	cr_assert_eq(ledger_stage_claim(&plex_ledger, &s, &plex_slot), LEDGER_OK);
	int st = in_sandbox(SANDBOX_PLEX, do_plex_job);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status %#x", st);
	uint32_t seen = 0;
	char rate[LEDGER_BWLIMIT_MAX];
	cr_assert_eq(ledger_stage_take_bwlimit(&plex_ledger, plex_slot, &seen, rate, sizeof(rate)), 1);
	cr_assert_str_eq(rate, "10M");
	ledger_detach(&plex_ledger);
}
