#include "procs.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "proc.h"

#define BACKOFF_MIN_MS 1000
#define BACKOFF_MAX_MS 60000
#define BACKOFF_HEALTHY_MS 60000

static int signal_pipe[2] = { -1, -1 };
static volatile sig_atomic_t seen[NSIG];
static void (*signal_wake)(void);
static sigset_t installed;   /* what procs_fork resets in a child */
static int child_stderr = -1;
static int close_in_children[8];
static size_t close_in_children_count;

static void on_signal(int sig)
{
	int saved = errno;
	if (sig > 0 && sig < NSIG)
		seen[sig]++;
	if (signal_wake)
		signal_wake();
	ssize_t w = write(signal_pipe[1], "s", 1);
	(void)w; /* a full pipe already holds a wake-up */
	errno = saved;
}

int procs_signals_install(const int *caught, size_t n_caught, const int *ignored, size_t n_ignored,
			  unsigned flags, void (*wake)(void))
{
	if (signal_pipe[0] < 0 && pipe2(signal_pipe, O_CLOEXEC | O_NONBLOCK) < 0)
		return -1;
	signal_wake = wake;
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = (flags & PROCS_NO_RESTART) ? 0 : SA_RESTART;
	sigset_t set;
	sigemptyset(&set);
	for (size_t i = 0; i < n_caught; i++) {
		if (sigaction(caught[i], &sa, NULL) < 0)
			return -1;
		sigaddset(&set, caught[i]);
		sigaddset(&installed, caught[i]);
	}
	sa.sa_handler = SIG_IGN;
	for (size_t i = 0; i < n_ignored; i++) {
		sigaction(ignored[i], &sa, NULL);
		sigaddset(&installed, ignored[i]);
	}
	/* A parent may have started us with these blocked (some init systems do). */
	sigprocmask(SIG_UNBLOCK, &set, NULL);
	return signal_pipe[0];
}

const volatile sig_atomic_t *procs_signals_seen(int sig)
{
	return &seen[sig > 0 && sig < NSIG ? sig : 0];
}

void procs_signals_take(const int *sigs, size_t n, int *counts)
{
	char drain[64];
	while (signal_pipe[0] >= 0 && read(signal_pipe[0], drain, sizeof(drain)) > 0)
		;
	/* Blocked while the counters are read and cleared, so none is lost in between. */
	sigset_t set, old;
	sigemptyset(&set);
	for (size_t i = 0; i < n; i++)
		sigaddset(&set, sigs[i]);
	sigprocmask(SIG_BLOCK, &set, &old);
	for (size_t i = 0; i < n; i++) {
		counts[i] = seen[sigs[i]];
		seen[sigs[i]] = 0;
	}
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
	for (int sig = 1; sig < NSIG; sig++)
		if (sig == SIGPIPE || sigismember(&installed, sig) == 1)
			sigaction(sig, &sa, NULL);
	sigemptyset(&installed);
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	for (int sig = 0; sig < NSIG; sig++)
		seen[sig] = 0;
	signal_wake = NULL;
	for (int i = 0; i < 2; i++) {
		if (signal_pipe[i] >= 0)
			close(signal_pipe[i]);
		signal_pipe[i] = -1;
	}
	if (close_fd >= 0)
		close(close_fd);
	for (size_t i = 0; i < close_in_children_count; i++)
		close(close_in_children[i]);
	close_in_children_count = 0;
	if (child_stderr >= 0) {
		dup2(child_stderr, STDERR_FILENO);
		log_set_sink(NULL);
	}
	if (death_signal) {
		prctl(PR_SET_PDEATHSIG, death_signal);
		if (getppid() != parent)
			raise(death_signal); /* the parent died before prctl took hold */
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

int procs_wait(pid_t pid, int timeout_ms, int *status)
{
	int64_t deadline = clock_mono_ms() + timeout_ms;
	for (;;) {
		pid_t r = waitpid(pid, status, WNOHANG);
		if (r == pid)
			return 0;
		if (r < 0 && errno != EINTR)
			return -1;
		if (clock_mono_ms() >= deadline)
			break;
		struct timespec ts = { 0, 10 * 1000000L };
		nanosleep(&ts, NULL);
	}
	kill(pid, SIGKILL);
	while (waitpid(pid, status, 0) < 0 && errno == EINTR)
		;
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
