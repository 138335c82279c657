#include <criterion/criterion.h>
#include <errno.h>
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
