/*
 * bench_ledger_watch: timestamps, with CLOCK_REALTIME, every completed file as it appears in the
 * shared ledger and in the durable ledger file, for scripts/bench's latency figures. Not a test.
 *
 * usage: bench_ledger_watch --config PATH --cache PATH --out FILE [--timeout-s N] [--no-rt]
 *
 * Shared memory: it waits on the ledger's own change futex (ledger_wait_change, as the flusher
 * does; the writer's wake-up is a FUTEX_WAKE of every waiter), and after each wake-up reads the
 * sum of `files` over all rows under the ledger's sequence counter. A file count that rises from
 * a to b is recorded as "shm <ns> <b>": files a+1..b were in shared memory by then. Waiting on
 * the futex makes every ledger write wake this process too, which is one futex syscall per write
 * that a run without the watcher makes only while the flusher waits.
 *
 * The file: an inotify watch on the cache file's directory sees each rename onto the cache
 * path (IN_MOVED_TO); the watcher opens the renamed file at once, then waits for the ledger's
 * flush_count to move (the flusher bumps it after the rename and the directory's fsync), stamps
 * that moment, and sums the `"files":` values in the file it opened: "file <ns> <files>
 * <rename ns>".
 *
 * It attaches (read-write, for the futex flag only: it never takes the lock nor writes a row)
 * as soon as the ledger exists, and stops on SIGTERM/SIGINT or after --timeout-s.
 *
 * The shared-memory thread runs SCHED_FIFO when it may (--no-rt: not), so that its stamp is
 * taken when the writer's futex wake-up happens rather than when a CPU comes free: otherwise
 * the watcher's own wait for a CPU would be counted as cplow's latency. The file thread stays
 * SCHED_OTHER (it polls every 100 us while the flusher fsyncs the directory). The first line of
 * the output says which: "rt 1" or "rt 0".
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <time.h>
#include <unistd.h>

#include "ledger.h"

struct rec {
	char kind;          /* 's' shared memory, 'f' file */
	int64_t at_ns;
	int64_t files;
	int64_t renamed_ns; /* 'f' only */
};

static struct rec *recs;
static size_t rec_n, rec_cap;
static pthread_mutex_t rec_lock = PTHREAD_MUTEX_INITIALIZER;
static volatile sig_atomic_t stop;
static struct ledger led;
static const char *cache_path;

static int64_t real_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static void record(char kind, int64_t at, int64_t files, int64_t renamed)
{
	pthread_mutex_lock(&rec_lock);
	if (rec_n == rec_cap) {
		size_t cap = rec_cap ? rec_cap * 2 : 65536;
		struct rec *r = realloc(recs, cap * sizeof *r);
		if (!r) {
			pthread_mutex_unlock(&rec_lock);
			return;
		}
		recs = r;
		rec_cap = cap;
	}
	recs[rec_n++] = (struct rec){ kind, at, files, renamed };
	pthread_mutex_unlock(&rec_lock);
}

/* Sum of files over every row, consistent under the sequence counter; -1 when it keeps moving. */
static int64_t files_now(void)
{
	const struct ledger_header *h = led.hdr;
	for (int attempt = 0; attempt < 100000; attempt++) {
		uint64_t s1 = atomic_load_explicit(&h->seq, memory_order_acquire);
		if (s1 & 1)
			continue;
		uint32_t n = atomic_load_explicit(&h->row_count, memory_order_acquire);
		int64_t sum = 0;
		for (uint32_t i = 0; i < n && i < h->row_capacity; i++)
			sum += ((volatile const struct ledger_row *)&led.rows[i])->usage.files;
		atomic_thread_fence(memory_order_acquire);
		if (atomic_load_explicit(&h->seq, memory_order_relaxed) == s1)
			return sum;
	}
	return -1;
}

static int64_t sum_files_in(int fd)
{
	static char buf[1 << 22];
	size_t len = 0;
	ssize_t n;
	while (len < sizeof buf - 1 && (n = read(fd, buf + len, sizeof buf - 1 - len)) > 0)
		len += (size_t)n;
	buf[len] = '\0';
	int64_t sum = 0;
	for (const char *p = buf; (p = strstr(p, "\"files\"")); ) {
		p += 7;
		while (*p == ' ' || *p == ':')
			p++;
		sum += strtoll(p, NULL, 10);
	}
	return sum;
}

static void *file_watch(void *arg)
{
	(void)arg;
	char dir[PATH_MAX];
	snprintf(dir, sizeof dir, "%s", cache_path);
	char *slash = strrchr(dir, '/');
	const char *base = slash ? slash + 1 : cache_path;
	if (slash)
		*slash = '\0';
	else
		snprintf(dir, sizeof dir, ".");
	int in = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
	if (in < 0 || inotify_add_watch(in, dir, IN_MOVED_TO) < 0) {
		perror("bench_ledger_watch: inotify");
		return NULL;
	}
	uint64_t flushes = atomic_load(&led.hdr->flush_count);
	char ev[8192] __attribute__((aligned(__alignof__(struct inotify_event))));
	while (!stop) {
		struct pollfd p = { in, POLLIN, 0 };
		if (poll(&p, 1, 50) <= 0)
			continue;
		ssize_t n = read(in, ev, sizeof ev);
		if (n <= 0)
			continue;
		int64_t renamed = real_ns();
		int ours = 0;
		for (char *q = ev; q < ev + n;) {
			struct inotify_event *e = (struct inotify_event *)q;
			if (e->len && strcmp(e->name, base) == 0)
				ours = 1;
			q += sizeof *e + e->len;
		}
		if (!ours)
			continue;
		int fd = open(cache_path, O_RDONLY | O_CLOEXEC);
		/* Durable once the flusher counts the flush: after the directory's fsync. */
		int64_t deadline = renamed + 2000000000LL;
		uint64_t now_flushes;
		while ((now_flushes = atomic_load(&led.hdr->flush_count)) == flushes &&
		       real_ns() < deadline && !stop) {
			struct timespec ts = { 0, 100000 };
			nanosleep(&ts, NULL);
		}
		int64_t durable = real_ns();
		flushes = now_flushes;
		if (fd >= 0) {
			record('f', durable, sum_files_in(fd), renamed);
			close(fd);
		}
	}
	close(in);
	return NULL;
}

int main(int argc, char **argv)
{
	const char *config = NULL, *out = NULL;
	int timeout_s = 1800, want_rt = 1;
	for (int i = 1; i < argc; i++) {
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(argv[i], "--no-rt"))
			want_rt = 0;
		else if (v && !strcmp(argv[i], "--config"))
			config = argv[++i];
		else if (v && !strcmp(argv[i], "--cache"))
			cache_path = argv[++i];
		else if (v && !strcmp(argv[i], "--out"))
			out = argv[++i];
		else if (v && !strcmp(argv[i], "--timeout-s"))
			timeout_s = atoi(argv[++i]);
		else
			config = NULL, i = argc; /* unknown: the usage below */
	}
	if (!config || !cache_path || !out) {
		fprintf(stderr, "usage: bench_ledger_watch --config PATH --cache PATH --out FILE "
				"[--timeout-s N] [--no-rt]\n");
		return 2;
	}
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	char name[256];
	if (ledger_name_for(config, name, sizeof name) < 0) {
		fprintf(stderr, "bench_ledger_watch: no ledger name for %s\n", config);
		return 1;
	}
	int64_t end = real_ns() + (int64_t)timeout_s * 1000000000LL;
	while (ledger_attach(name, 1, &led) != LEDGER_OK) {
		if (stop || real_ns() > end)
			return 1;
		struct timespec ts = { 0, 200000 };
		nanosleep(&ts, NULL);
	}
	pthread_t watcher;
	int watching = pthread_create(&watcher, NULL, file_watch, NULL) == 0;
	int rt = 0;
	if (want_rt) {
		struct sched_param sp = { .sched_priority = 20 };
		rt = pthread_setschedparam(pthread_self(), SCHED_FIFO, &sp) == 0;
	}
	int64_t last = 0;
	while (!stop && real_ns() < end) {
		uint64_t gen = atomic_load(&led.hdr->row_generation);
		int64_t files = files_now();
		int64_t at = real_ns();
		if (files > last) {
			record('s', at, files, 0);
			last = files;
		}
		ledger_wait_change(&led, gen, 50);
	}
	stop = 1;
	if (watching)
		pthread_join(watcher, NULL);
	FILE *f = fopen(out, "w");
	if (!f)
		return 1;
	fprintf(f, "rt %d\n", rt);
	for (size_t i = 0; i < rec_n; i++) {
		if (recs[i].kind == 's')
			fprintf(f, "shm %lld %lld\n", (long long)recs[i].at_ns, (long long)recs[i].files);
		else
			fprintf(f, "file %lld %lld %lld\n", (long long)recs[i].at_ns,
				(long long)recs[i].files, (long long)recs[i].renamed_ns);
	}
	fclose(f);
	ledger_detach(&led);
	return 0;
}
