/*
 * bench_ledger: what one completed file costs the ledger, and what a snapshot costs the
 * flusher. Not a test: it prints numbers (scripts/bench-ledger runs it on a release build).
 *
 * usage: bench_ledger [--adds N] [--dir DIR]
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ledger.h"
#include "ledger_file.h"

#define ACCOUNTS 1024
#define MAX_WRITERS 2

struct result {
	double p50_ns, p99_ns, max_ns;
	double wall_s;
};

static int64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return (x > y) - (x < y);
}

/* The cost of reading the clock twice, subtracted from each sample. */
static int64_t clock_overhead_ns(void)
{
	int64_t best = INT64_MAX;
	for (int i = 0; i < 100000; i++) {
		int64_t a = mono_ns(), b = mono_ns();
		if (b - a < best)
			best = b - a;
	}
	return best;
}

static int writer(const char *name, int index, long adds, int64_t overhead, struct result *out)
{
	struct ledger l;
	if (ledger_attach(name, 1, &l) != LEDGER_OK)
		return 1;
	int64_t *lat = malloc(sizeof(int64_t) * (size_t)adds);
	if (!lat)
		return 1;
	int64_t now = ledger_now_ms();
	int64_t start = mono_ns();
	for (long i = 0; i < adds; i++) {
		int32_t row = (int32_t)((i * 7 + index) % ACCOUNTS);
		int64_t t = mono_ns();
		if (ledger_add(&l, row, 4096, now) != LEDGER_OK)
			return 1;
		lat[i] = mono_ns() - t - overhead;
	}
	out->wall_s = (double)(mono_ns() - start) / 1e9;
	qsort(lat, (size_t)adds, sizeof(*lat), cmp_i64);
	out->p50_ns = (double)lat[adds / 2];
	out->p99_ns = (double)lat[adds * 99 / 100];
	out->max_ns = (double)lat[adds - 1];
	free(lat);
	ledger_detach(&l);
	return 0;
}

static double median(double *v, int n)
{
	for (int i = 1; i < n; i++)
		for (int j = i; j > 0 && v[j - 1] > v[j]; j--) {
			double t = v[j];
			v[j] = v[j - 1];
			v[j - 1] = t;
		}
	return v[n / 2];
}

int main(int argc, char **argv)
{
	long adds = 2000000;
	const char *dir = "/tmp";
	for (int i = 1; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--adds"))
			adds = atol(argv[i + 1]);
		else if (!strcmp(argv[i], "--dir"))
			dir = argv[i + 1];
	}
	char name[64];
	snprintf(name, sizeof(name), "/cplow-bench-%d", getpid());
	struct ledger l;
	struct ledger_options o = { .row_capacity = ACCOUNTS };
	if (ledger_create(name, &o, &l) != LEDGER_OK) {
		perror("ledger_create");
		return 1;
	}
	for (int a = 0; a < ACCOUNTS; a++) {
		char acct[96];
		int32_t row;
		snprintf(acct, sizeof(acct), "/config/service_accounts/project-%04d-sa.json", a);
		if (ledger_row_get(&l, "media", acct, &row) != LEDGER_OK)
			return 1;
	}
	int64_t overhead = clock_overhead_ns();
	printf("ledger bench: %d accounts, %ld adds per writer, clock overhead %lld ns "
	       "(subtracted)\n\n",
	       ACCOUNTS, adds, (long long)overhead);
	printf("%-8s %14s %10s %10s %10s\n", "writers", "adds/s", "p50 ns", "p99 ns", "max ns");
	struct result *res = mmap(NULL, sizeof(struct result) * MAX_WRITERS, PROT_READ | PROT_WRITE,
				  MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	for (int w = 1; w <= MAX_WRITERS; w++) {
		pid_t kids[MAX_WRITERS];
		int64_t start = mono_ns();
		for (int k = 0; k < w; k++) {
			kids[k] = fork();
			if (kids[k] == 0)
				_exit(writer(name, k, adds, overhead, &res[k]));
		}
		for (int k = 0; k < w; k++) {
			int st;
			waitpid(kids[k], &st, 0);
			if (!WIFEXITED(st) || WEXITSTATUS(st)) {
				fprintf(stderr, "writer failed\n");
				return 1;
			}
		}
		double wall = (double)(mono_ns() - start) / 1e9;
		double p50 = 0, p99 = 0, mx = 0;
		for (int k = 0; k < w; k++) {
			p50 = res[k].p50_ns > p50 ? res[k].p50_ns : p50;
			p99 = res[k].p99_ns > p99 ? res[k].p99_ns : p99;
			mx = res[k].max_ns > mx ? res[k].max_ns : mx;
		}
		printf("%-8d %14.0f %10.0f %10.0f %10.0f\n", w, (double)adds * w / wall, p50, p99, mx);
	}

	struct ledger_copy c;
	ledger_copy_init(&l, &c);
	char path[PATH_MAX], err[LEDGER_FILE_ERR_MAX];
	snprintf(path, sizeof(path), "%s/bench_sa_quota_cache_%d.json", dir, getpid());
	double read_ms[51], render_ms[51], write_ms[51];
	for (int i = 0; i < 51; i++) {
		int64_t t0 = mono_ns();
		if (ledger_read(&l, &c, 1000) != LEDGER_OK)
			return 1;
		int64_t t1 = mono_ns();
		char *text = ledger_file_render(&c, ledger_now_ms());
		int64_t t2 = mono_ns();
		free(text);
		int64_t t3 = mono_ns();
		if (ledger_file_write(&c, path, ledger_now_ms(), err, sizeof(err)) < 0) {
			fprintf(stderr, "%s\n", err);
			return 1;
		}
		int64_t t4 = mono_ns();
		read_ms[i] = (double)(t1 - t0) / 1e6;
		render_ms[i] = (double)(t2 - t1) / 1e6;
		write_ms[i] = (double)(t4 - t3) / 1e6;
	}
	printf("\nsnapshot of %d accounts (median of 51):\n", ACCOUNTS);
	printf("  consistent copy (seqlock)      %8.3f ms\n", median(read_ms, 51));
	printf("  render JSON                    %8.3f ms\n", median(render_ms, 51));
	printf("  render + write + fsync + rename %7.3f ms  (%s)\n", median(write_ms, 51), dir);
	printf("\ntargets: one uncontended add < 200 ns; snapshot of 1,024 accounts < 5 ms\n");
	char prevp[PATH_MAX + 8];
	snprintf(prevp, sizeof(prevp), "%s.prev", path);
	unlink(path);
	unlink(prevp);
	ledger_copy_free(&c);
	ledger_detach(&l);
	ledger_unlink(name);
	return 0;
}
