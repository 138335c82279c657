/*
 * bench_source: what listing a large source costs the worker before rclone starts, in time and
 * memory, and what a lookup and the open-watcher's setup cost. Not a test: it prints numbers.
 *
 * usage: bench_source [--files N] [--dirs D] [--dir PATH] [--runs R] [--keep] [--json]
 *
 * Builds a tree of N files in D directories two levels deep ("Show 0012/Season 07/..."), with
 * names as long as a media library's, and sparse sizes (no disk used), in PATH/tree, unless
 * PATH already holds the tree of an earlier --keep run. Each run lists it in a fresh child, so the child's
 * peak RSS is the listing's own; the page cache is warm after the first run (dropping it is
 * global, so the bench does not: a cold listing is bound by the disk's metadata reads).
 * --json adds one line of JSON with each run's figures (scripts/bench reads it).
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "source.h"

#define DEFAULT_FILES 350000L
#define DEFAULT_DIRS 3500L
#define SEASONS_PER_SHOW 50
#define MARKER ".bench_source_tree"
#define ROOT_MAX 1024 /* leaves room in PATH_MAX for the tree's own names */

struct run_result {
    double list_s;
    double list_user_s;      /* CPU time of the listing: steadier than wall time on a busy box */
    double list_sys_s;
    double lookup_ns;        /* per lookup, every path once in shuffled order */
    double watch_s;          /* source_watch_start over every directory; < 0: failed */
    long rss_before_kb;      /* the child before listing */
    long rss_peak_kb;        /* the child's high-water mark right after listing */
    size_t index_bytes;      /* source_memory_bytes */
    size_t path_bytes;       /* sum of path lengths with their NULs */
    size_t files;
    size_t dirs;
    int64_t total_bytes;
    char watch_err[256];
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* VmRSS or VmHWM from /proc/self/status, in KiB. */
static long status_kb(const char *field)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return -1;
    char line[256];
    long kb = -1;
    size_t n = strlen(field);
    while (fgets(line, sizeof line, f))
        if (strncmp(line, field, n) == 0 && line[n] == ':')
            kb = strtol(line + n + 1, NULL, 10);
    fclose(f);
    return kb;
}

static int make_tree(const char root[ROOT_MAX], long files, long dirs)
{
    long shows = (dirs + SEASONS_PER_SHOW - 1) / SEASONS_PER_SHOW;
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/tree", root);
    if (mkdir(path, 0755) < 0 && errno != EEXIST)
        return -1;
    uint64_t seed = 0x9e3779b97f4a7c15ULL;
    double start = now_s();
    for (long d = 0; d < dirs; d++) {
        long show = d % shows, season = d / shows;
        snprintf(path, sizeof path, "%s/tree/Show Name Number %04ld", root, show);
        if (mkdir(path, 0755) < 0 && errno != EEXIST)
            return -1;
        snprintf(path, sizeof path, "%s/tree/Show Name Number %04ld/Season %02ld", root, show,
                 season);
        if (mkdir(path, 0755) < 0 && errno != EEXIST)
            return -1;
    }
    for (long i = 0; i < files; i++) {
        long d = i % dirs, show = d % shows, season = d / shows, episode = i / dirs;
        snprintf(path, sizeof path,
                 "%s/tree/Show Name Number %04ld/Season %02ld/Show Name Number %04ld - S%02ldE%03ld"
                 " - An Episode Title of Ordinary Length.mkv",
                 root, show, season, show, season, episode);
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0)
            return -1;
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        /* 100 MB to 4 GB, sparse */
        if (ftruncate(fd, (off_t)(100000000 + seed % 3900000000ULL)) < 0) {
            close(fd);
            return -1;
        }
        close(fd);
        if (i % 50000 == 49999)
            fprintf(stderr, "  created %ld files (%.1f s)\n", i + 1, now_s() - start);
    }
    snprintf(path, sizeof path, "%s/" MARKER, root);
    FILE *m = fopen(path, "w");
    if (!m)
        return -1;
    fprintf(m, "%ld %ld\n", files, dirs);
    fclose(m);
    fprintf(stderr, "  tree created in %.1f s\n", now_s() - start);
    return 0;
}

static int tree_matches(const char root[ROOT_MAX], long files, long dirs)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/" MARKER, root);
    FILE *m = fopen(path, "r");
    if (!m)
        return 0;
    long f = -1, d = -1;
    int ok = fscanf(m, "%ld %ld", &f, &d) == 2 && f == files && d == dirs;
    fclose(m);
    return ok;
}

static double tv_s(struct timeval tv)
{
    return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

static void run_once(const char *root, struct run_result *r)
{
    memset(r, 0, sizeof *r);
    r->rss_before_kb = status_kb("VmRSS");
    struct source_index idx;
    char err[512];
    struct rusage before, after;
    getrusage(RUSAGE_SELF, &before);
    double t = now_s();
    if (source_list(root, &idx, err, sizeof err) != 0) {
        fprintf(stderr, "bench_source: %s\n", err);
        _exit(1);
    }
    r->list_s = now_s() - t;
    getrusage(RUSAGE_SELF, &after);
    r->list_user_s = tv_s(after.ru_utime) - tv_s(before.ru_utime);
    r->list_sys_s = tv_s(after.ru_stime) - tv_s(before.ru_stime);
    r->rss_peak_kb = status_kb("VmHWM");
    r->files = idx.file_count;
    r->dirs = idx.dir_count;
    r->total_bytes = idx.total_bytes;
    r->index_bytes = source_memory_bytes(&idx);
    for (size_t i = 0; i < idx.file_count; i++)
        r->path_bytes += idx.entries[i].path_len + 1;

    /* Lookups of copies of every path in a shuffled order, as rclone's lines would come. */
    size_t n = idx.file_count;
    size_t *order = malloc(n * sizeof *order);
    char **copies = malloc(n * sizeof *copies);
    if (!order || !copies)
        _exit(1);
    for (size_t i = 0; i < n; i++) {
        order[i] = i;
        copies[i] = strdup(idx.entries[i].path);
        if (!copies[i])
            _exit(1);
    }
    uint64_t seed = 88172645463325252ULL;
    for (size_t i = n; i > 1; i--) {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        size_t j = (size_t)(seed % i), tmp = order[i - 1];
        order[i - 1] = order[j];
        order[j] = tmp;
    }
    t = now_s();
    size_t found = 0;
    for (size_t i = 0; i < n; i++) {
        const char *p = copies[order[i]];
        if (source_find(&idx, p, strlen(p)))
            found++;
    }
    r->lookup_ns = n ? (now_s() - t) * 1e9 / (double)n : 0;
    if (found != n) {
        fprintf(stderr, "bench_source: found %zu of %zu\n", found, n);
        _exit(1);
    }
    for (size_t i = 0; i < n; i++)
        free(copies[i]);
    free(copies);
    free(order);

    int fd;
    t = now_s();
    if (source_watch_start(&idx, root, &fd, r->watch_err, sizeof r->watch_err) == 0)
        r->watch_s = now_s() - t;
    else
        r->watch_s = -1;
    source_free(&idx);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

int main(int argc, char **argv)
{
    long files = DEFAULT_FILES, dirs = DEFAULT_DIRS;
    int runs = 5, keep = 0, json = 0;
    const char *dir = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--files") == 0 && i + 1 < argc)
            files = atol(argv[++i]);
        else if (strcmp(argv[i], "--dirs") == 0 && i + 1 < argc)
            dirs = atol(argv[++i]);
        else if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc)
            dir = argv[++i];
        else if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc)
            runs = atoi(argv[++i]);
        else if (strcmp(argv[i], "--keep") == 0)
            keep = 1;
        else if (strcmp(argv[i], "--json") == 0)
            json = 1;
        else {
            fprintf(stderr, "usage: bench_source [--files N] [--dirs D] [--dir PATH] "
                            "[--runs R] [--keep] [--json]\n");
            return 2;
        }
    }
    if (files < 1 || dirs < 1 || runs < 1 || runs > 100) {
        fprintf(stderr, "bench_source: --files, --dirs and --runs must be positive\n");
        return 2;
    }
    char root[ROOT_MAX];
    if (dir) {
        if (strlen(dir) >= sizeof root) {
            fprintf(stderr, "bench_source: --dir is longer than %d bytes\n", ROOT_MAX - 1);
            return 2;
        }
        snprintf(root, sizeof root, "%s", dir);
        if (mkdir(root, 0755) < 0 && errno != EEXIST) {
            fprintf(stderr, "bench_source: mkdir %s: %s\n", root, strerror(errno));
            return 1;
        }
    } else {
        snprintf(root, sizeof root, "/tmp/bench_source.XXXXXX");
        if (!mkdtemp(root)) {
            fprintf(stderr, "bench_source: mkdtemp: %s\n", strerror(errno));
            return 1;
        }
    }
    if (!tree_matches(root, files, dirs)) {
        fprintf(stderr, "bench_source: creating %ld files in %ld directories under %s\n", files,
                dirs, root);
        if (make_tree(root, files, dirs) < 0) {
            fprintf(stderr, "bench_source: creating the tree: %s\n", strerror(errno));
            return 1;
        }
    }

    struct run_result *results = mmap(NULL, sizeof *results * (size_t)runs,
                                      PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (results == MAP_FAILED)
        return 1;
    char listed[ROOT_MAX + 8];
    snprintf(listed, sizeof listed, "%s/tree", root);
    double list_s[100], lookup_ns[100], watch_s[100], user_s[100], sys_s[100];
    for (int i = 0; i < runs; i++) {
        pid_t pid = fork();
        if (pid < 0)
            return 1;
        if (pid == 0) {
            run_once(listed, &results[i]);
            _exit(0);
        }
        int status;
        if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            fprintf(stderr, "bench_source: run %d failed\n", i + 1);
            return 1;
        }
        list_s[i] = results[i].list_s;
        lookup_ns[i] = results[i].lookup_ns;
        watch_s[i] = results[i].watch_s;
        user_s[i] = results[i].list_user_s;
        sys_s[i] = results[i].list_sys_s;
        fprintf(stderr, "  run %d: list %.3f s (user %.3f, sys %.3f), lookup %.0f ns, watch %.3f s,"
                " peak RSS %ld KiB\n", i + 1, list_s[i], user_s[i], sys_s[i], lookup_ns[i],
                watch_s[i], results[i].rss_peak_kb);
    }
    if (json) {
        printf("{\"files\": %zu, \"dirs\": %zu, \"runs\": [", results[0].files,
               results[0].dirs);
        for (int i = 0; i < runs; i++)
            printf("%s{\"list_s\": %.4f, \"user_s\": %.4f, \"sys_s\": %.4f, "
                   "\"lookup_ns\": %.1f, \"watch_s\": %.4f, \"rss_before_kb\": %ld, "
                   "\"rss_peak_kb\": %ld, \"index_bytes\": %zu}", i ? ", " : "",
                   results[i].list_s, results[i].list_user_s, results[i].list_sys_s,
                   results[i].lookup_ns, results[i].watch_s, results[i].rss_before_kb,
                   results[i].rss_peak_kb, results[i].index_bytes);
        printf("]}\n");
    }
    qsort(list_s, (size_t)runs, sizeof list_s[0], cmp_double);
    qsort(lookup_ns, (size_t)runs, sizeof lookup_ns[0], cmp_double);
    qsort(watch_s, (size_t)runs, sizeof watch_s[0], cmp_double);
    qsort(user_s, (size_t)runs, sizeof user_s[0], cmp_double);
    qsort(sys_s, (size_t)runs, sizeof sys_s[0], cmp_double);
    const struct run_result *r = &results[runs - 1];
    long peak = 0;
    for (int i = 0; i < runs; i++)
        if (results[i].rss_peak_kb > peak)
            peak = results[i].rss_peak_kb;

    printf("source tree:        %zu files, %zu directories, %.1f TB listed\n", r->files, r->dirs,
           (double)r->total_bytes / 1e12);
    printf("listing (warm):     median %.3f s, first run %.3f s (%d runs)\n",
           list_s[runs / 2], results[0].list_s, runs);
    printf("listing CPU:        median user %.3f s, sys %.3f s\n", user_s[runs / 2],
           sys_s[runs / 2]);
    printf("lookup:             median %.0f ns per path\n", lookup_ns[runs / 2]);
    if (watch_s[runs / 2] >= 0)
        printf("watch start:        median %.3f s for %zu directories\n", watch_s[runs / 2],
               r->dirs);
    else
        printf("watch start:        failed: %s\n", r->watch_err);
    printf("peak RSS:           %ld KiB (child before listing: %ld KiB; listing adds %ld KiB)\n",
           peak, r->rss_before_kb, peak - r->rss_before_kb);
    printf("index heap:         %zu bytes = %.1f per file, of which paths %.1f (with NUL), "
           "the rest %.1f\n", r->index_bytes, (double)r->index_bytes / (double)r->files,
           (double)r->path_bytes / (double)r->files,
           (double)(r->index_bytes - r->path_bytes) / (double)r->files);

    if (!keep && !dir)
        nftw(root, remove_one, 64, FTW_DEPTH | FTW_PHYS);
    else
        printf("tree kept at %s\n", root);
    return 0;
}
