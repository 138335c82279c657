#include "procs.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "proc.h"

#define BACKOFF_MIN_MS 1000
#define BACKOFF_MAX_MS 60000
#define BACKOFF_HEALTHY_MS 60000

static int signal_pipe[2] = { -1, -1 };
static int child_stderr = -1;
static int close_in_children[8];
static size_t close_in_children_count;
static volatile sig_atomic_t seen_int, seen_term, seen_hup, seen_usr1, seen_chld;

static const int handled[] = { SIGINT, SIGTERM, SIGHUP, SIGUSR1, SIGCHLD };

static void on_signal(int sig)
{
	int saved = errno;
	switch (sig) {
	case SIGINT: seen_int++; break;
	case SIGTERM: seen_term++; break;
	case SIGHUP: seen_hup++; break;
	case SIGUSR1: seen_usr1++; break;
	case SIGCHLD: seen_chld++; break;
	}
	ssize_t w = write(signal_pipe[1], "s", 1);
	(void)w; /* a full pipe already holds a wake-up */
	errno = saved;
}

int procs_signals_install(void)
{
	if (pipe2(signal_pipe, O_CLOEXEC | O_NONBLOCK) < 0)
		return -1;
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_RESTART;
	sigset_t set;
	sigemptyset(&set);
	for (size_t i = 0; i < sizeof(handled) / sizeof(handled[0]); i++) {
		if (sigaction(handled[i], &sa, NULL) < 0)
			return -1;
		sigaddset(&set, handled[i]);
	}
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);
	/* A parent may have started us with these blocked (some init systems do). */
	sigprocmask(SIG_UNBLOCK, &set, NULL);
	return signal_pipe[0];
}

void procs_take_signals(struct procs_signals *out)
{
	char drain[64];
	while (read(signal_pipe[0], drain, sizeof(drain)) > 0)
		;
	/* Blocked while the counters are read and cleared, so none is lost in between. */
	sigset_t set, old;
	sigemptyset(&set);
	for (size_t i = 0; i < sizeof(handled) / sizeof(handled[0]); i++)
		sigaddset(&set, handled[i]);
	sigprocmask(SIG_BLOCK, &set, &old);
	out->interrupt = seen_int;
	out->terminate = seen_term;
	out->hangup = seen_hup;
	out->flush = seen_usr1;
	out->child = seen_chld;
	seen_int = seen_term = seen_hup = seen_usr1 = seen_chld = 0;
	sigprocmask(SIG_SETMASK, &old, NULL);
}

pid_t procs_fork(int close_fd, int death_signal)
{
	pid_t parent = getpid();
	pid_t pid = fork();
	if (pid != 0)
		return pid;
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_DFL;
	sigemptyset(&sa.sa_mask);
	for (size_t i = 0; i < sizeof(handled) / sizeof(handled[0]); i++)
		sigaction(handled[i], &sa, NULL);
	sigaction(SIGPIPE, &sa, NULL);
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	close(signal_pipe[0]);
	close(signal_pipe[1]);
	if (close_fd >= 0)
		close(close_fd);
	for (size_t i = 0; i < close_in_children_count; i++)
		close(close_in_children[i]);
	if (child_stderr >= 0) {
		dup2(child_stderr, STDERR_FILENO);
		log_set_sink(NULL);
	}
	if (death_signal) {
		prctl(PR_SET_PDEATHSIG, death_signal);
		if (getppid() != parent)
			raise(death_signal); /* the supervisor died before prctl took hold */
	}
	return 0;
}

void procs_close_in_children(int fd)
{
	if (fd >= 0 && close_in_children_count < sizeof(close_in_children) / sizeof(int))
		close_in_children[close_in_children_count++] = fd;
}

void procs_forget_in_children(int fd)
{
	for (size_t i = 0; i < close_in_children_count; i++) {
		if (close_in_children[i] != fd)
			continue;
		close_in_children[i] = close_in_children[--close_in_children_count];
		return;
	}
}

void procs_set_child_stderr(int fd)
{
	child_stderr = fd;
}

void procs_become_reaper(void)
{
	if (getpid() != 1)
		prctl(PR_SET_CHILD_SUBREAPER, 1);
}

bool procs_alive(pid_t pid)
{
	return proc_alive(pid, 0);
}

static int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int procs_stop(pid_t pid, int sig, int wait_ms, bool *killed)
{
	int st = 0;
	if (killed)
		*killed = false;
	kill(pid, sig);
	int64_t deadline = mono_ms() + wait_ms;
	for (;;) {
		pid_t r = waitpid(pid, &st, WNOHANG);
		if (r == pid || (r < 0 && errno != EINTR))
			return st;
		if (mono_ms() >= deadline)
			break;
		struct timespec ts = { 0, 10 * 1000000L };
		nanosleep(&ts, NULL);
	}
	if (killed)
		*killed = true;
	kill(pid, SIGKILL);
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	return st;
}

int procs_reap(pid_t *pid, int *status)
{
	pid_t p;
	do
		p = waitpid(-1, status, WNOHANG);
	while (p < 0 && errno == EINTR);
	if (p <= 0)
		return 0;
	*pid = p;
	return 1;
}

void procs_backoff_started(struct procs_backoff *b, int64_t now_ms)
{
	if (b->delay_ms == 0)
		b->delay_ms = BACKOFF_MIN_MS;
	b->started_ms = now_ms;
	b->restart_at_ms = 0;
}

void procs_backoff_died(struct procs_backoff *b, int64_t now_ms)
{
	if (now_ms - b->started_ms >= BACKOFF_HEALTHY_MS)
		b->delay_ms = BACKOFF_MIN_MS;
	b->restart_at_ms = now_ms + b->delay_ms;
	b->delay_ms = b->delay_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : b->delay_ms * 2;
}
