/*
 * bench_rclone_wrap: stands in for rclone (core.rclone_binary_path, or run directly) so that
 * scripts/bench can see what happens around rclone without changing cplow. Not a test.
 *
 * It forks the real rclone, waits for it, exits with its status, and appends one JSON line per
 * invocation to $BENCH_WRAP_LOG:
 *   {"argv1", "pid", "ppid", "start_ns" (CLOCK_REALTIME on entering main), "end_ns", "exit",
 *    "self_us" (this wrapper's own user+sys CPU), "rclone_us" (the real rclone's user+sys CPU,
 *    from wait4), "rclone_maxrss_kb", "parent_hwm_kb" (VmHWM of the process that ran us, read
 *    just before we exit), "copied" (relay mode: Copied lines seen)}
 *
 * $BENCH_WRAP_MODE:
 *   exec   (default) rclone inherits our stdin/stdout/stderr: nothing is relayed.
 *   relay  rclone's stderr comes through a pipe; each read() is stamped with CLOCK_REALTIME right
 *          after it returns, then written on to our stderr in one write(). The stamp of every
 *          `"msg":"Copied (` line goes to $BENCH_WRAP_STAMPS, one line "<ns> <ns after the
 *          write>" each, in rclone's order.
 *   noop   no rclone at all: sleeps $BENCH_WRAP_NOOP_MS (default 200) and exits 0 having
 *          copied nothing (a listing benchmark's stage).
 * $BENCH_WRAP_REAL is the real rclone (default /usr/bin/rclone). $BENCH_WRAP_NICE=N runs rclone
 * at nice N (an experiment: does a nicer rclone let the worker run sooner?).
 *
 * $BENCH_WRAP_RT=1 makes the wrapper itself (not rclone) SCHED_FIFO in relay mode, so that its
 * stamp and write() follow rclone's write() at once; off by default: at full speed a real-time
 * relay, woken for every line, pushes the worker and the flusher off the CPU and makes the
 * latency worse, not truer. "rt" in the log line says which it got.
 *
 * SIGINT, SIGTERM and SIGHUP are passed on to rclone; rclone gets PR_SET_PDEATHSIG(SIGKILL) as
 * the worker gives its own child.
 */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static volatile pid_t child = -1;

static int64_t real_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void forward(int sig)
{
	if (child > 0)
		kill(child, sig);
}

static long tv_us(struct timeval tv)
{
	return (long)tv.tv_sec * 1000000L + (long)tv.tv_usec;
}

static long status_kb(pid_t pid, const char *field)
{
	char path[64], line[256];
	snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	long kb = -1;
	size_t n = strlen(field);
	while (fgets(line, sizeof line, f))
		if (strncmp(line, field, n) == 0 && line[n] == ':')
			kb = strtol(line + n + 1, NULL, 10);
	fclose(f);
	return kb;
}

static int write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

struct stamps {
	int64_t *v; /* pairs: read stamp, after-write stamp */
	size_t n, cap;
};

static void stamp(struct stamps *s, int64_t at)
{
	if (s->n + 2 > s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 8192;
		int64_t *v = realloc(s->v, cap * sizeof *v);
		if (!v)
			return;
		s->v = v;
		s->cap = cap;
	}
	s->v[s->n++] = at;
	s->v[s->n++] = 0;
}

/* Reads rclone's stderr, stamps Copied lines, passes everything on. Returns Copied lines. */
static long relay(int fd, struct stamps *s)
{
	static const char needle[] = "\"msg\":\"Copied (";
	char buf[1 << 16];
	/* rclone writes a line in one write(), so a needle split across reads is rare; the last
	 * bytes of each read are carried over so that it is still found once. */
	char tail[sizeof needle];
	size_t carry = 0;
	long copied = 0;
	for (;;) {
		ssize_t n = read(fd, buf, sizeof buf);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		int64_t at = real_ns();
		size_t first = s->n;
		static char scan[sizeof tail + sizeof buf];
		memcpy(scan, tail, carry);
		memcpy(scan + carry, buf, (size_t)n);
		size_t len = carry + (size_t)n;
		const char *p = scan, *end = scan + len;
		while ((p = memmem(p, (size_t)(end - p), needle, sizeof needle - 1))) {
			/* Skip a match that lies wholly in the carried tail: it was counted. */
			if ((size_t)(p - scan) + sizeof needle - 1 > carry) {
				stamp(s, at);
				copied++;
			}
			p += sizeof needle - 1;
		}
		carry = len < sizeof needle - 1 ? len : sizeof needle - 1;
		memcpy(tail, scan + len - carry, carry);
		if (write_all(STDERR_FILENO, buf, (size_t)n) < 0)
			break;
		int64_t after = real_ns();
		for (size_t i = first; i < s->n; i += 2)
			s->v[i + 1] = after;
	}
	return copied;
}

int main(int argc, char **argv)
{
	int64_t start_ns = real_ns();
	const char *mode = getenv("BENCH_WRAP_MODE");
	const char *real = getenv("BENCH_WRAP_REAL");
	const char *log_path = getenv("BENCH_WRAP_LOG");
	const char *stamps_path = getenv("BENCH_WRAP_STAMPS");
	if (!mode)
		mode = "exec";
	if (!real)
		real = "/usr/bin/rclone";
	int relaying = strcmp(mode, "relay") == 0;
	int noop = strcmp(mode, "noop") == 0;
	pid_t parent = getppid();

	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = forward;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);

	int status = 0;
	struct rusage ru;
	memset(&ru, 0, sizeof ru);
	struct stamps st = { 0 };
	long copied = 0;
	int rt = 0;
	if (noop) {
		const char *ms = getenv("BENCH_WRAP_NOOP_MS");
		long wait_ms = ms ? atol(ms) : 200;
		struct timespec ts = { wait_ms / 1000, (wait_ms % 1000) * 1000000L };
		while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
			;
	} else {
		int pipefd[2] = { -1, -1 };
		if (relaying && pipe2(pipefd, O_CLOEXEC) < 0) {
			perror("bench_rclone_wrap: pipe");
			return 127;
		}
		pid_t me = getpid();
		pid_t pid = fork();
		if (pid < 0) {
			perror("bench_rclone_wrap: fork");
			return 127;
		}
		if (pid == 0) {
			signal(SIGINT, SIG_DFL);
			signal(SIGTERM, SIG_DFL);
			signal(SIGHUP, SIG_DFL);
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			if (getppid() != me)
				_exit(127);
			if (relaying && dup2(pipefd[1], STDERR_FILENO) < 0)
				_exit(127);
			const char *nice_env = getenv("BENCH_WRAP_NICE");
			if (nice_env && atoi(nice_env) != 0)
				setpriority(PRIO_PROCESS, 0, atoi(nice_env));
			argv[0] = (char *)real;
			execv(real, argv);
			_exit(127);
		}
		child = pid;
		const char *rt_env = getenv("BENCH_WRAP_RT");
		if (relaying && rt_env && !strcmp(rt_env, "1")) {
			struct sched_param sp = { .sched_priority = 10 };
			rt = sched_setscheduler(0, SCHED_FIFO, &sp) == 0;
		}
		if (relaying) {
			close(pipefd[1]);
			copied = relay(pipefd[0], &st);
			close(pipefd[0]);
		}
		while (wait4(pid, &status, 0, &ru) < 0)
			if (errno != EINTR) {
				perror("bench_rclone_wrap: wait4");
				return 127;
			}
	}
	int64_t end_ns = real_ns();
	struct rusage self;
	getrusage(RUSAGE_SELF, &self);
	if (stamps_path && relaying) {
		FILE *f = fopen(stamps_path, "a");
		if (f) {
			for (size_t i = 0; i < st.n; i += 2)
				fprintf(f, "%lld %lld\n", (long long)st.v[i], (long long)st.v[i + 1]);
			fclose(f);
		}
	}
	int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
	if (log_path) {
		char line[1024];
		int n = snprintf(line, sizeof line,
				 "{\"argv1\": \"%s\", \"mode\": \"%s\", \"pid\": %d, \"ppid\": %d, "
				 "\"start_ns\": %lld, \"end_ns\": %lld, \"exit\": %d, "
				 "\"self_us\": %ld, \"rclone_us\": %ld, \"rclone_maxrss_kb\": %ld, "
				 "\"parent_hwm_kb\": %ld, \"copied\": %ld, \"rt\": %d}\n",
				 argc > 1 && strlen(argv[1]) < 32 && !strpbrk(argv[1], "\"\\")
					 ? argv[1] : "?",
				 mode, (int)getpid(), (int)parent, (long long)start_ns,
				 (long long)end_ns, code, tv_us(self.ru_utime) + tv_us(self.ru_stime),
				 tv_us(ru.ru_utime) + tv_us(ru.ru_stime), ru.ru_maxrss,
				 status_kb(parent, "VmHWM"), copied, rt);
		int fd = open(log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
		if (fd >= 0) {
			if (n > 0)
				write_all(fd, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
			close(fd);
		}
	}
	if (WIFSIGNALED(status)) {
		signal(WTERMSIG(status), SIG_DFL);
		raise(WTERMSIG(status));
	}
	return code;
}
