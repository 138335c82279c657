#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "sandbox.h"
#include "test_util.h"

/* Runs body in a child inside the role's sandbox; returns the child's wait status. */
static int in_sandbox(enum sandbox_role role, void (*body)(void))
{
	pid_t pid = test_fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		char err[256];
		pid_t self = getpid();
		if (sandbox_enter(role, &self, 1, err, sizeof(err)) < 0)
			_exit(90);
		body();
		_exit(0);
	}
	int st;
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	return st;
}

static void killed_by_sigsys(int st, const char *what)
{
	cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGSYS, "%s was not killed with SIGSYS (%d)",
		  what, st);
}

static void do_execve(void)
{
	char *const argv[] = { "/bin/true", NULL };
	execve("/bin/true", argv, NULL);
}

static void do_ptrace(void)
{
	ptrace(PTRACE_TRACEME, 0, NULL, NULL);
}

static void do_packet_socket(void)
{
	socket(AF_PACKET, SOCK_RAW, 0);
}

static void do_inet_socket(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0)
		_exit(91);
	close(fd);
}

static void do_fork(void)
{
	fork();
}

static void do_job(void)
{
	/* What a worker does all day: memory, time, pipes, a loopback socket. */
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
	if (syscall(SYS_clone3, NULL, 0) != -1 || errno != ENOSYS)
		_exit(94);
}

Test(sandbox, worker_filter_kills_execve, .timeout = 20)
{
	killed_by_sigsys(in_sandbox(SANDBOX_WORKER, do_execve), "execve");
}

Test(sandbox, worker_filter_kills_ptrace, .timeout = 20)
{
	killed_by_sigsys(in_sandbox(SANDBOX_WORKER, do_ptrace), "ptrace");
}

Test(sandbox, worker_filter_kills_a_packet_socket, .timeout = 20)
{
	killed_by_sigsys(in_sandbox(SANDBOX_WORKER, do_packet_socket), "socket(AF_PACKET)");
}

Test(sandbox, worker_filter_kills_fork, .timeout = 20)
{
	killed_by_sigsys(in_sandbox(SANDBOX_WORKER, do_fork), "fork");
}

Test(sandbox, worker_filter_allows_its_job_and_answers_clone3_with_enosys, .timeout = 20)
{
	int st = in_sandbox(SANDBOX_WORKER, do_job);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status %d", st);
}

Test(sandbox, flusher_filter_kills_a_socket, .timeout = 20)
{
	killed_by_sigsys(in_sandbox(SANDBOX_FLUSHER, do_inet_socket), "socket in the flusher");
}

Test(sandbox, flusher_filter_kills_execve, .timeout = 20)
{
	killed_by_sigsys(in_sandbox(SANDBOX_FLUSHER, do_execve), "execve in the flusher");
}

static void do_kill_parent(void)
{
	kill(getppid(), 0);
}

Test(sandbox, dashboard_filter_kills_execve, .timeout = 20)
{
	killed_by_sigsys(in_sandbox(SANDBOX_DASHBOARD, do_execve), "execve in the dashboard");
}

Test(sandbox, dashboard_filter_kills_a_signal_to_another_process, .timeout = 20)
{
	killed_by_sigsys(in_sandbox(SANDBOX_DASHBOARD, do_kill_parent), "kill in the dashboard");
}

Test(sandbox, dashboard_filter_kills_a_packet_socket, .timeout = 20)
{
	killed_by_sigsys(in_sandbox(SANDBOX_DASHBOARD, do_packet_socket),
			 "socket(AF_PACKET) in the dashboard");
}

static void *thread_body(void *arg)
{
	return arg;
}

static void do_notifier_job(void)
{
	/* What the notifier needs: libcurl's resolver thread, a name resolved, a socket, reads. */
	pthread_t t;
	if (pthread_create(&t, NULL, thread_body, NULL) != 0 || pthread_join(t, NULL) != 0)
		_exit(91);
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *ai = NULL;
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
	/* Changing files is refused, not killed: a library's stray attempt is no attack. */
	if (open("/tmp/cplow-notifier-sandbox", O_WRONLY | O_CREAT | O_CLOEXEC, 0600) != -1 ||
	    errno != EACCES)
		_exit(95);
	if (unlink("/tmp/cplow-notifier-sandbox") != -1 || errno != EACCES)
		_exit(96);
	if (syscall(SYS_clone3, NULL, 0) != -1 || errno != ENOSYS)
		_exit(97);
}

Test(sandbox, notifier_filter_allows_threads_name_resolution_and_sockets, .timeout = 20)
{
	int st = in_sandbox(SANDBOX_NOTIFIER, do_notifier_job);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status %d", st);
}

Test(sandbox, notifier_filter_kills_execve_fork_and_ptrace, .timeout = 20)
{
	killed_by_sigsys(in_sandbox(SANDBOX_NOTIFIER, do_execve), "execve in the notifier");
	killed_by_sigsys(in_sandbox(SANDBOX_NOTIFIER, do_fork), "fork in the notifier");
	killed_by_sigsys(in_sandbox(SANDBOX_NOTIFIER, do_ptrace), "ptrace in the notifier");
}

Test(sandbox, notifier_filter_kills_a_signal_to_another_process_and_a_packet_socket,
     .timeout = 20)
{
	killed_by_sigsys(in_sandbox(SANDBOX_NOTIFIER, do_kill_parent), "kill in the notifier");
	killed_by_sigsys(in_sandbox(SANDBOX_NOTIFIER, do_packet_socket),
			 "socket(AF_PACKET) in the notifier");
}
