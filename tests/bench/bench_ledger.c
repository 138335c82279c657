/*
 * bench_ledger: what one completed file costs the ledger, what a snapshot costs the flusher,
 * and what cplow-inspect costs, at a given scale. Not a test: it prints numbers
 * (scripts/bench-ledger and scripts/bench run it).
 *
 * usage: bench_ledger [--adds N] [--dir DIR] [--uploaders U] [--accounts A] [--writers 1,2,..]
 *                     [--op add|stage] [--snapshots N] [--inspect PATH] [--inspect-runs N]
 *                     [--json]
 *
 * The ledger holds U x A rows (uploader u's accounts are "project-NNNN-sa.json"). Writer k
 * (a forked process, as each uploader's worker is) is uploader k % U:
 *   --op add    ledger_add() on its uploader's rows in turn (the row-only path);
 *   --op stage  ledger_add_for_stage_file() on a stage slot of its own, as the worker counts a
 *               completed file (the row and the slot's counters in one write).
 * Each add is timed on CLOCK_MONOTONIC, the cost of reading the clock twice subtracted.
 * Snapshots: a consistent copy (ledger_read), rendering the file's JSON, and render + write +
 * fsync + rename + directory fsync (ledger_file_write) into DIR. With --inspect, the wall time
 * of `cplow-inspect --shm NAME --json` and of its text view (fork, exec, map, render, print to
 * /dev/null). --json adds one line of JSON with every figure.
 */
#include <fcntl.h>
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

#define MAX_WRITERS 64
#define MAX_WRITER_SETS 8
#define MAX_RUNS 201

struct result {
	double p50_ns, p99_ns, p999_ns, max_ns;
	double wall_s;
	int failed;
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

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
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

static const char *uploader_name(int u, char *buf, size_t len)
{
	if (u == 0)
		snprintf(buf, len, "media");
	else
		snprintf(buf, len, "media%d", u);
	return buf;
}

static void account_name(int a, char *buf, size_t len)
{
	snprintf(buf, len, "/config/service_accounts/project-%04d-sa.json", a);
}

static int writer(const char *name, int index, int uploaders, int accounts, int stage_op,
		  long adds, int64_t overhead, struct result *out)
{
	struct ledger l;
	if (ledger_attach(name, 1, &l) != LEDGER_OK)
		return 1;
	int64_t *lat = malloc(sizeof(int64_t) * (size_t)adds);
	if (!lat)
		return 1;
	int u = index % uploaders;
	int32_t first_row = (int32_t)(u * accounts); /* rows were made uploader by uploader */
	int32_t slot = -1;
	if (stage_op) {
		struct ledger_stage init;
		memset(&init, 0, sizeof init);
		init.pid = getpid();
		init.row = first_row + (index / uploaders) % accounts;
		init.stage_number = 1;
		snprintf(init.strategy, sizeof init.strategy, "bench");
		if (ledger_stage_claim(&l, &init, &slot) != LEDGER_OK)
			return 1;
	}
	int64_t now = ledger_now_ms();
	int64_t start = mono_ns();
	for (long i = 0; i < adds; i++) {
		int64_t t = mono_ns();
		int rc;
		if (stage_op)
			rc = ledger_add_for_stage_file(&l, slot, NULL, 4096, now);
		else
			rc = ledger_add(&l, first_row + (int32_t)((i * 7 + index) % accounts), 4096,
					now);
		if (rc != LEDGER_OK)
			return 1;
		lat[i] = mono_ns() - t - overhead;
	}
	out->wall_s = (double)(mono_ns() - start) / 1e9;
	qsort(lat, (size_t)adds, sizeof(*lat), cmp_i64);
	out->p50_ns = (double)lat[adds / 2];
	out->p99_ns = (double)lat[adds * 99 / 100];
	out->p999_ns = (double)lat[adds * 999 / 1000];
	out->max_ns = (double)lat[adds - 1];
	free(lat);
	if (stage_op)
		ledger_stage_release(&l, slot);
	ledger_detach(&l);
	return 0;
}

struct stats {
	double median, min, max;
};

static struct stats stats_of(double *v, int n)
{
	qsort(v, (size_t)n, sizeof *v, cmp_double);
	return (struct stats){ v[n / 2], v[0], v[n - 1] };
}

/* Wall time of one `inspect --shm name [--json]` with its output thrown away; < 0 on failure. */
static double time_inspect(const char *inspect, const char *name, int json)
{
	int64_t t0 = mono_ns();
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		int fd = open("/dev/null", O_WRONLY);
		if (fd >= 0)
			dup2(fd, STDOUT_FILENO);
		if (json)
			execl(inspect, inspect, "--shm", name, "--json", (char *)NULL);
		else
			execl(inspect, inspect, "--shm", name, (char *)NULL);
		_exit(127);
	}
	int st;
	if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
		return -1;
	return (double)(mono_ns() - t0) / 1e6;
}

int main(int argc, char **argv)
{
	long adds = 2000000;
	const char *dir = "/tmp", *inspect = NULL;
	int uploaders = 1, accounts = 1024, stage_op = 0, snapshots = 51, inspect_runs = 11;
	int json = 0;
	int writer_sets[MAX_WRITER_SETS] = { 1, 2 }, n_sets = 2;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(a, "--json")) {
			json = 1;
			continue;
		}
		if (!v)
			goto usage;
		i++;
		if (!strcmp(a, "--adds"))
			adds = atol(v);
		else if (!strcmp(a, "--dir"))
			dir = v;
		else if (!strcmp(a, "--uploaders"))
			uploaders = atoi(v);
		else if (!strcmp(a, "--accounts"))
			accounts = atoi(v);
		else if (!strcmp(a, "--snapshots"))
			snapshots = atoi(v);
		else if (!strcmp(a, "--inspect"))
			inspect = v;
		else if (!strcmp(a, "--inspect-runs"))
			inspect_runs = atoi(v);
		else if (!strcmp(a, "--op") && (!strcmp(v, "add") || !strcmp(v, "stage")))
			stage_op = !strcmp(v, "stage");
		else if (!strcmp(a, "--writers")) {
			n_sets = 0;
			for (const char *p = v; *p && n_sets < MAX_WRITER_SETS;) {
				writer_sets[n_sets++] = atoi(p);
				p = strchr(p, ',');
				if (!p)
					break;
				p++;
			}
		} else
			goto usage;
	}
	if (adds < 100 || uploaders < 1 || accounts < 1 || snapshots < 1 ||
	    snapshots > MAX_RUNS || inspect_runs < 1 || inspect_runs > MAX_RUNS)
		goto usage;
	for (int s = 0; s < n_sets; s++)
		if (writer_sets[s] < 1 || writer_sets[s] > MAX_WRITERS)
			goto usage;

	char name[64];
	snprintf(name, sizeof(name), "/cplow-bench-%d", getpid());
	struct ledger l;
	struct ledger_options o = { .row_capacity = (uint32_t)(uploaders * accounts),
				    .slot_capacity = MAX_WRITERS };
	if (ledger_create(name, &o, &l) != LEDGER_OK) {
		perror("ledger_create");
		return 1;
	}
	int64_t now = ledger_now_ms();
	for (int u = 0; u < uploaders; u++)
		for (int a = 0; a < accounts; a++) {
			char up[32], acct[96];
			int32_t row;
			uploader_name(u, up, sizeof up);
			account_name(a, acct, sizeof acct);
			if (ledger_row_get(&l, up, acct, &row) != LEDGER_OK ||
			    ledger_add(&l, row, 1 + a, now) != LEDGER_OK) {
				fprintf(stderr, "bench_ledger: cannot fill row %d/%d\n", u, a);
				return 1;
			}
		}
	int64_t overhead = clock_overhead_ns();
	const char *op_name = stage_op ? "ledger_add_for_stage_file" : "ledger_add";
	printf("ledger bench: %d uploaders x %d accounts = %d rows, %s, %ld adds per writer, "
	       "clock overhead %lld ns (subtracted)\n\n",
	       uploaders, accounts, uploaders * accounts, op_name, adds, (long long)overhead);
	printf("%-8s %14s %10s %10s %10s %10s\n", "writers", "adds/s", "p50 ns", "p99 ns",
	       "p99.9 ns", "max ns");
	struct result *res = mmap(NULL, sizeof(struct result) * MAX_WRITERS, PROT_READ | PROT_WRITE,
				  MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (res == MAP_FAILED)
		return 1;
	char json_writers[4096] = "";
	size_t jw = 0;
	for (int s = 0; s < n_sets; s++) {
		int w = writer_sets[s];
		pid_t kids[MAX_WRITERS];
		int64_t start = mono_ns();
		for (int k = 0; k < w; k++) {
			kids[k] = fork();
			if (kids[k] == 0)
				_exit(writer(name, k, uploaders, accounts, stage_op, adds, overhead,
					     &res[k]));
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
		double p50 = 0, p99 = 0, p999 = 0, mx = 0;
		for (int k = 0; k < w; k++) {
			p50 = res[k].p50_ns > p50 ? res[k].p50_ns : p50;
			p99 = res[k].p99_ns > p99 ? res[k].p99_ns : p99;
			p999 = res[k].p999_ns > p999 ? res[k].p999_ns : p999;
			mx = res[k].max_ns > mx ? res[k].max_ns : mx;
		}
		printf("%-8d %14.0f %10.0f %10.0f %10.0f %10.0f\n", w, (double)adds * w / wall, p50,
		       p99, p999, mx);
		jw += (size_t)snprintf(json_writers + jw, sizeof json_writers - jw,
				       "%s{\"writers\": %d, \"adds_per_s\": %.0f, \"p50_ns\": %.0f, "
				       "\"p99_ns\": %.0f, \"p999_ns\": %.0f, \"max_ns\": %.0f}",
				       s ? ", " : "", w, (double)adds * w / wall, p50, p99, p999, mx);
		if (jw >= sizeof json_writers)
			jw = sizeof json_writers - 1;
	}
	printf("(with several writers: the worst writer's percentile)\n");

	struct ledger_copy c;
	ledger_copy_init(&l, &c);
	ledger_file_keep_heap(); /* as the flusher runs */
	char path[PATH_MAX], err[LEDGER_FILE_ERR_MAX];
	snprintf(path, sizeof(path), "%s/bench_sa_quota_cache_%d.json", dir, getpid());
	static double read_ms[MAX_RUNS], render_ms[MAX_RUNS], write_ms[MAX_RUNS];
	size_t file_bytes = 0;
	for (int i = 0; i < snapshots; i++) {
		int64_t t0 = mono_ns();
		if (ledger_read(&l, &c, 1000) != LEDGER_OK)
			return 1;
		int64_t t1 = mono_ns();
		char *text = ledger_file_render(&c, ledger_now_ms());
		int64_t t2 = mono_ns();
		if (text)
			file_bytes = strlen(text);
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
	struct stats sr = stats_of(read_ms, snapshots), sn = stats_of(render_ms, snapshots),
		     sw = stats_of(write_ms, snapshots);
	printf("\nsnapshot of %d rows, %zu bytes of JSON (median of %d, [min, max]):\n",
	       uploaders * accounts, file_bytes, snapshots);
	printf("  consistent copy (seqlock)       %8.3f ms  [%.3f, %.3f]\n", sr.median, sr.min,
	       sr.max);
	printf("  render JSON                     %8.3f ms  [%.3f, %.3f]\n", sn.median, sn.min,
	       sn.max);
	printf("  render + write + fsync + rename %8.3f ms  [%.3f, %.3f]  (%s)\n", sw.median,
	       sw.min, sw.max, dir);

	struct stats sij = { -1, -1, -1 }, sit = { -1, -1, -1 };
	if (inspect) {
		static double ij[MAX_RUNS], it[MAX_RUNS];
		for (int i = 0; i < inspect_runs; i++) {
			ij[i] = time_inspect(inspect, name, 1);
			it[i] = time_inspect(inspect, name, 0);
			if (ij[i] < 0 || it[i] < 0) {
				fprintf(stderr, "bench_ledger: %s --shm %s failed\n", inspect, name);
				return 1;
			}
		}
		sij = stats_of(ij, inspect_runs);
		sit = stats_of(it, inspect_runs);
		printf("\ncplow-inspect of %d rows, whole process (median of %d, [min, max]):\n",
		       uploaders * accounts, inspect_runs);
		printf("  --json                          %8.3f ms  [%.3f, %.3f]\n", sij.median,
		       sij.min, sij.max);
		printf("  text                            %8.3f ms  [%.3f, %.3f]\n", sit.median,
		       sit.min, sit.max);
	}
	printf("\ntargets: one uncontended add < 200 ns; snapshot of 1,024 accounts < 5 ms\n");
	if (json)
		printf("{\"rows\": %d, \"uploaders\": %d, \"accounts\": %d, \"op\": \"%s\", "
		       "\"adds\": %ld, \"writers\": [%s], \"file_bytes\": %zu, "
		       "\"copy_ms\": [%.4f, %.4f, %.4f], \"render_ms\": [%.4f, %.4f, %.4f], "
		       "\"write_ms\": [%.4f, %.4f, %.4f], \"inspect_json_ms\": [%.3f, %.3f, %.3f], "
		       "\"inspect_text_ms\": [%.3f, %.3f, %.3f], \"snapshots\": %d, "
		       "\"inspect_runs\": %d}\n",
		       uploaders * accounts, uploaders, accounts, op_name, adds, json_writers,
		       file_bytes, sr.median, sr.min, sr.max, sn.median, sn.min, sn.max, sw.median,
		       sw.min, sw.max, sij.median, sij.min, sij.max, sit.median, sit.min, sit.max,
		       snapshots, inspect ? inspect_runs : 0);
	char prevp[PATH_MAX + 8];
	snprintf(prevp, sizeof(prevp), "%s.prev", path);
	unlink(path);
	unlink(prevp);
	ledger_copy_free(&c);
	ledger_detach(&l);
	ledger_unlink(name);
	return 0;

usage:
	fprintf(stderr, "usage: bench_ledger [--adds N] [--dir DIR] [--uploaders U] "
			"[--accounts A] [--writers 1,2,..] [--op add|stage] [--snapshots N] "
			"[--inspect PATH] [--inspect-runs N] [--json]\n");
	return 2;
}
