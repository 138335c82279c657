/*
 * rc_client against the real rclone 1.60: "rclone rcd", or a bandwidth-limited "rclone copy"
 * to a :local: destination so that transfers stay in flight for seconds. Each rclone is
 * SIGKILLed when the test process dies (test_fork), and every wait has a deadline.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "rc_client.h"
#include "rclone_log.h"
#include "test_util.h"

#ifndef CPLOW_SOURCE_DIR
#error "CPLOW_SOURCE_DIR must name the repository root"
#endif

#define RCLONE_BINARY "/usr/bin/rclone"
#define START_DEADLINE_MS 15000
/* Generous for calls that should succeed: a slow, sanitised build must not fail them. */
#define TEST_TIMEOUT_MS 3000

extern char **environ;

/* --- helpers ---------------------------------------------------------------------------- */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void pause_ms(long ms)
{
    struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

struct rclone_proc {
    pid_t pid;
    int stderr_fd;
    char url[RCLONE_LOG_URL_MAX];
};

/* Per test: the rclone it runs, its credentials, a private directory. */
static struct rclone_proc rclone = { .pid = -1, .stderr_fd = -1 };
static char user[RC_CLIENT_USER_LEN + 1];
static char pass[RC_CLIENT_PASS_LEN + 1];
static char tmp_root[64]; /* short, so paths built on it always fit PATH_MAX */
static struct rc_client client;
static struct rc_stats *stats;

static void setup(void)
{
    snprintf(tmp_root, sizeof tmp_root, "/tmp/cplow-rc-XXXXXX");
    cr_assert_not_null(mkdtemp(tmp_root), "mkdtemp: %s", strerror(errno));
    cr_assert_eq(rc_client_make_credentials(user, sizeof user, pass, sizeof pass), 0);
    stats = calloc(1, sizeof *stats);
    cr_assert_not_null(stats);
}

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st;
    (void)type;
    (void)ftw;
    remove(path);
    return 0;
}

static void stop_rclone(struct rclone_proc *p)
{
    if (p->pid > 0) {
        kill(p->pid, SIGCONT); /* a stopped process takes SIGKILL too, but be plain about it */
        kill(p->pid, SIGKILL);
        waitpid(p->pid, NULL, 0);
        p->pid = -1;
    }
    if (p->stderr_fd >= 0) {
        close(p->stderr_fd);
        p->stderr_fd = -1;
    }
}

static void teardown(void)
{
    rc_client_free(&client);
    stop_rclone(&rclone);
    free(stats);
    stats = NULL;
    if (tmp_root[0])
        nftw(tmp_root, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

struct serving_watch {
    struct rclone_log_event *event;
    char url[RCLONE_LOG_URL_MAX];
    char last_line[256];
};

static void on_stderr_line(void *ctx, const char *line, size_t len)
{
    struct serving_watch *w = ctx;
    snprintf(w->last_line, sizeof w->last_line, "%.*s", (int)len, line);
    if (!w->url[0] && rclone_log_parse(line, len, w->event) == RCLONE_LOG_RC_SERVING)
        snprintf(w->url, sizeof w->url, "%s", w->event->rc_url);
}

/*
 * Starts rclone with `args` (NULL-terminated, without the program name), its RC credentials in
 * the environment (not on the command line, as the worker does), and waits, with a deadline,
 * for its "Serving remote control on" line.
 */
static void start_rclone(struct rclone_proc *p, const char *const *args)
{
    const char *argv[32];
    size_t argc = 0;
    argv[argc++] = RCLONE_BINARY;
    for (size_t i = 0; args[i]; i++) {
        cr_assert_lt(argc, sizeof argv / sizeof argv[0] - 1);
        argv[argc++] = args[i];
    }
    argv[argc] = NULL;

    /* Built before fork: the child only calls async-signal-safe functions. */
    size_t env_count = 0;
    while (environ[env_count])
        env_count++;
    char **envp = calloc(env_count + 3, sizeof *envp);
    cr_assert_not_null(envp);
    size_t e = 0;
    for (size_t i = 0; i < env_count; i++) {
        if (strncmp(environ[i], "RCLONE_", 7) != 0)
            envp[e++] = environ[i];
    }
    char user_env[64], pass_env[64];
    snprintf(user_env, sizeof user_env, "RCLONE_RC_USER=%s", user);
    snprintf(pass_env, sizeof pass_env, "RCLONE_RC_PASS=%s", pass);
    envp[e++] = user_env;
    envp[e++] = pass_env;
    envp[e] = NULL;

    int fds[2];
    cr_assert_eq(pipe2(fds, O_CLOEXEC), 0);
    pid_t pid = test_fork();
    cr_assert_geq(pid, 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        int null_fd = open("/dev/null", O_RDWR);
        if (null_fd < 0 || dup2(null_fd, 0) < 0 || dup2(null_fd, 1) < 0 || dup2(fds[1], 2) < 0)
            _exit(126);
        execve(RCLONE_BINARY, (char *const *)argv, envp);
        _exit(127);
    }
    free(envp);
    close(fds[1]);
    p->pid = pid;
    p->stderr_fd = fds[0];

    struct serving_watch watch = { .event = malloc(sizeof *watch.event) };
    cr_assert_not_null(watch.event);
    struct rclone_log_reader reader;
    cr_assert_eq(rclone_log_reader_init(&reader, 0), 0);
    int64_t deadline = now_ms() + START_DEADLINE_MS;
    while (!watch.url[0]) {
        int64_t left = deadline - now_ms();
        if (left <= 0)
            break;
        struct pollfd pfd = { .fd = p->stderr_fd, .events = POLLIN };
        int n = poll(&pfd, 1, (int)left);
        if (n < 0 && errno == EINTR)
            continue;
        cr_assert_geq(n, 0, "poll: %s", strerror(errno));
        if (n == 0)
            continue;
        char buf[4096];
        ssize_t got = read(p->stderr_fd, buf, sizeof buf);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            break; /* rclone exited */
        rclone_log_feed(&reader, buf, (size_t)got, on_stderr_line, &watch);
    }
    rclone_log_reader_free(&reader);
    free(watch.event);
    cr_assert(watch.url[0], "rclone never said where it serves RC; last line: %s",
              watch.last_line);
    snprintf(p->url, sizeof p->url, "%s", watch.url);
}

static void start_rcd(void)
{
    const char *args[] = { "rcd", "--rc-addr", "127.0.0.1:0", "--config", "/dev/null", NULL };
    start_rclone(&rclone, args);
}

/* Waits for the child to exit; returns its wait status, or -1 past the deadline. */
static int wait_exit(pid_t pid, int64_t deadline_ms)
{
    for (;;) {
        int status;
        pid_t got = waitpid(pid, &status, WNOHANG);
        if (got == pid)
            return status;
        if (now_ms() >= deadline_ms)
            return -1;
        pause_ms(10);
    }
}

static void write_file(const char *path, size_t size)
{
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f, "fopen %s: %s", path, strerror(errno));
    char block[4096];
    for (size_t i = 0; i < sizeof block; i++)
        block[i] = (char)(i * 131 + 7);
    for (size_t done = 0; done < size;) {
        size_t n = size - done < sizeof block ? size - done : sizeof block;
        cr_assert_eq(fwrite(block, 1, n, f), n);
        done += n;
    }
    cr_assert_eq(fclose(f), 0);
}

static void make_dir(const char *path)
{
    cr_assert_eq(mkdir(path, 0700), 0, "mkdir %s: %s", path, strerror(errno));
}

/* Network sockets this process holds without close-on-exec. (libcurl's own wake-up
 * socketpair is inheritable and out of the client's reach: Unix sockets are not counted.) */
static int count_inheritable_sockets(void)
{
    int count = 0;
    DIR *dir = opendir("/proc/self/fd");
    cr_assert_not_null(dir);
    struct dirent *entry;
    while ((entry = readdir(dir)) != NULL) {
        int fd = atoi(entry->d_name);
        if (entry->d_name[0] == '.' || fd == dirfd(dir))
            continue;
        struct stat st;
        int domain = 0;
        socklen_t len = sizeof domain;
        if (fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode) &&
            getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) == 0 &&
            (domain == AF_INET || domain == AF_INET6) && !(fcntl(fd, F_GETFD) & FD_CLOEXEC))
            count++;
    }
    closedir(dir);
    return count;
}

static bool utf8_starts_on_boundary(const char *s)
{
    return ((unsigned char)s[0] & 0xc0) != 0x80;
}

/* --- a bandwidth-limited copy ------------------------------------------------------------ */

#define BIG_FILE_BYTES (3 * 1024 * 1024)
#define SMALL_FILE_BYTES 1000

static const char *const copy_names[] = { "sub/a.bin", "sub/b.bin", "c.txt" };

static int64_t copy_name_size(const char *name)
{
    if (strcmp(name, "c.txt") == 0)
        return SMALL_FILE_BYTES;
    for (size_t i = 0; i < 2; i++) {
        if (strcmp(name, copy_names[i]) == 0)
            return BIG_FILE_BYTES;
    }
    return -2;
}

Test(rc_client, stats_follow_a_bandwidth_limited_copy, .init = setup, .fini = teardown,
     .timeout = 60)
{
    char src[128], path[PATH_MAX], dst[PATH_MAX];
    snprintf(src, sizeof src, "%s/src", tmp_root);
    make_dir(src);
    snprintf(path, sizeof path, "%s/sub", src);
    make_dir(path);
    snprintf(path, sizeof path, "%s/sub/a.bin", src);
    write_file(path, BIG_FILE_BYTES);
    snprintf(path, sizeof path, "%s/sub/b.bin", src);
    write_file(path, BIG_FILE_BYTES);
    snprintf(path, sizeof path, "%s/c.txt", src);
    write_file(path, SMALL_FILE_BYTES);
    const int64_t tree_bytes = 2 * BIG_FILE_BYTES + SMALL_FILE_BYTES;
    snprintf(dst, sizeof dst, ":local:%s/dst", tmp_root);

    /* 6 MiB at 1 MiB/s: about six seconds with both big files in flight. */
    const char *args[] = { "copy", src, dst, "--rc", "--rc-addr", "127.0.0.1:0",
                           "--bwlimit", "1M", "--transfers", "4", "--config", "/dev/null",
                           NULL };
    start_rclone(&rclone, args);
    cr_assert_eq(rc_client_init(&client, rclone.url, user, pass, TEST_TIMEOUT_MS), 0, "%s",
                 client.error);

    /* Listing finishes almost at once; wait for it and for both big files to be in flight.
     * totalTransfers is waited for too: for a moment after the small file ends, rclone 1.60
     * counts it neither in transfers nor in totalTransfers (seen: 0 done, 2 total). */
    int64_t deadline = now_ms() + 5000;
    for (;;) {
        int rc = rc_client_stats(&client, stats);
        cr_assert_eq(rc, 0, "core/stats: %s: %s", rc_client_strerror(rc), client.error);
        if (stats->total_bytes == tree_bytes && stats->total_transfers == 3 &&
            stats->transferring_count >= 2 && stats->bytes > 0)
            break;
        cr_assert_lt(now_ms(), deadline, "totalBytes %lld, totalTransfers %lld, %zu in flight",
                     (long long)stats->total_bytes, (long long)stats->total_transfers,
                     stats->transferring_count);
        pause_ms(20);
    }
    struct rc_stats *first = malloc(sizeof *first);
    cr_assert_not_null(first);
    memcpy(first, stats, sizeof *first);

    cr_assert_eq(first->errors, 0);
    cr_assert_geq(first->elapsed_s, 0.0);
    cr_assert_not(first->fatal_error);
    cr_assert_eq(first->transferring_total, first->transferring_count);
    cr_assert_leq(first->transferring_count, 3);
    for (size_t i = 0; i < first->transferring_count; i++) {
        const struct rc_transfer *t = &first->transferring[i];
        cr_assert_eq(t->size, copy_name_size(t->name), "in flight: %s, %lld bytes", t->name,
                     (long long)t->size);
        cr_assert_geq(t->bytes, 0);
        cr_assert_leq(t->bytes, t->size);
        cr_assert_geq(t->percentage, 0);
        cr_assert_leq(t->percentage, 100);
        cr_assert_not(t->name_truncated);
    }

    /* Bytes rise between polls while the copy runs. */
    deadline = now_ms() + 5000;
    for (;;) {
        int rc = rc_client_stats(&client, stats);
        cr_assert_eq(rc, 0, "core/stats: %s: %s", rc_client_strerror(rc), client.error);
        if (stats->bytes > first->bytes)
            break;
        cr_assert_lt(now_ms(), deadline, "bytes stuck at %lld", (long long)stats->bytes);
        pause_ms(50);
    }
    cr_assert_gt(stats->elapsed_s, first->elapsed_s);
    cr_assert_leq(stats->bytes, tree_bytes);
    cr_assert_geq(stats->speed_bps, 0.0);
    /* 1 MiB/s, plus the limiter's initial burst: far below an unlimited local copy. */
    cr_assert_lt(stats->speed_bps, 4.0 * 1024 * 1024, "speed %.0f", stats->speed_bps);

    /* What a stage slot shows of it. */
    struct ledger_stage stage;
    memset(&stage, 0x5a, sizeof stage);
    rc_client_stats_to_stage(stats, &stage);
    cr_assert_eq(stage.rc_bytes, stats->bytes);
    cr_assert_eq(stage.rc_errors, 0);
    cr_assert_eq(stage.rc_eta_s, stats->eta_s);
    cr_assert_eq((size_t)stage.inflight_count, stats->transferring_count);
    for (int i = 0; i < stage.inflight_count; i++) {
        cr_assert_str_eq(stage.inflight[i].name, stats->transferring[i].name);
        cr_assert_eq(stage.inflight[i].size, stats->transferring[i].size);
        cr_assert_eq(stage.inflight[i].bytes, stats->transferring[i].bytes);
    }
    for (int i = stage.inflight_count; i < LEDGER_INFLIGHT_MAX; i++)
        cr_assert_eq(stage.inflight[i].name[0], '\0');
    free(first);
}

/* --- rcd ---------------------------------------------------------------------------------- */

Test(rc_client, stats_of_an_idle_rcd_have_no_eta_and_nothing_in_flight, .init = setup,
     .fini = teardown, .timeout = 30)
{
    start_rcd();
    cr_assert_eq(rc_client_init(&client, rclone.url, user, pass, TEST_TIMEOUT_MS), 0);
    int rc = rc_client_stats(&client, stats);
    cr_assert_eq(rc, 0, "%s: %s", rc_client_strerror(rc), client.error);
    cr_assert_eq(client.http_status, 200);
    cr_assert_eq(stats->bytes, 0);
    cr_assert_eq(stats->total_bytes, 0);
    cr_assert_eq(stats->eta_s, -1, "rclone writes eta null before it has a speed");
    cr_assert_eq(stats->transferring_total, 0);
    cr_assert_eq(stats->transferring_count, 0);
    cr_assert_eq(stats->errors, 0);
    cr_assert_eq(stats->checks, 0);

    /* The same connection serves the next calls, and is not inherited by children. */
    for (int i = 0; i < 20; i++)
        cr_assert_eq(rc_client_stats(&client, stats), 0);
    cr_assert_eq(count_inheritable_sockets(), 0);

    /* "localhost" (::1 first, where rcd does not listen, then 127.0.0.1) works as well. */
    char url[RCLONE_LOG_URL_MAX];
    const char *port = strrchr(rclone.url, ':');
    cr_assert_not_null(port);
    snprintf(url, sizeof url, "http://localhost%s", port);
    rc_client_free(&client);
    cr_assert_eq(rc_client_init(&client, url, user, pass, TEST_TIMEOUT_MS), 0);
    int rc2 = rc_client_stats(&client, stats);
    cr_assert_eq(rc2, 0, "%s: %s: %s", url, rc_client_strerror(rc2), client.error);
}

Test(rc_client, bwlimit_is_set_read_back_and_turned_off, .init = setup, .fini = teardown,
     .timeout = 30)
{
    start_rcd();
    cr_assert_eq(rc_client_init(&client, rclone.url, user, pass, TEST_TIMEOUT_MS), 0);
    int64_t bps = 0;
    int rc = rc_client_bwlimit(&client, NULL, &bps);
    cr_assert_eq(rc, 0, "%s: %s", rc_client_strerror(rc), client.error);
    cr_assert_eq(bps, -1, "rcd starts unlimited");

    cr_assert_eq(rc_client_bwlimit(&client, "10M", &bps), 0, "%s", client.error);
    cr_assert_eq(bps, 10 * 1024 * 1024);
    bps = 0;
    cr_assert_eq(rc_client_bwlimit(&client, NULL, &bps), 0);
    cr_assert_eq(bps, 10 * 1024 * 1024, "the limit stays set");

    cr_assert_eq(rc_client_bwlimit(&client, "1M:2M", &bps), 0);
    cr_assert_eq(bps, 2 * 1024 * 1024, "rclone reports the larger side of UP:DOWN");

    cr_assert_eq(rc_client_bwlimit(&client, "off", &bps), 0);
    cr_assert_eq(bps, -1);
    bps = 0;
    cr_assert_eq(rc_client_bwlimit(&client, NULL, &bps), 0);
    cr_assert_eq(bps, -1);

    bps = 12345;
    rc = rc_client_bwlimit(&client, "garbage", &bps);
    cr_assert_eq(rc, RC_CLIENT_ERR_HTTP, "%s", rc_client_strerror(rc));
    cr_assert_eq(client.http_status, 500);
    cr_assert(strstr(client.error, "bad bwlimit"), "error: %s", client.error);
    cr_assert_eq(bps, 12345, "the out-parameter is untouched on failure");

    cr_assert_eq(rc_client_bwlimit(&client, "512k", NULL), 0, "the out-parameter is optional");
}

Test(rc_client, stat_tells_a_file_from_nothing_and_from_an_error, .init = setup,
     .fini = teardown, .timeout = 30)
{
    char path[PATH_MAX], fs[PATH_MAX];
    snprintf(path, sizeof path, "%s/dir", tmp_root);
    make_dir(path);
    snprintf(path, sizeof path, "%s/dir/f.bin", tmp_root);
    write_file(path, 12345);
    /* Quotes, spaces and non-ASCII must survive the JSON request. */
    snprintf(path, sizeof path, "%s/dir/\xc3\xa4 \"q\" b.bin", tmp_root);
    write_file(path, 7);
    snprintf(path, sizeof path, "%s/dir/empty", tmp_root);
    write_file(path, 0);
    snprintf(fs, sizeof fs, ":local:%s", tmp_root);

    start_rcd();
    cr_assert_eq(rc_client_init(&client, rclone.url, user, pass, TEST_TIMEOUT_MS), 0);

    int64_t size = -5;
    int rc = rc_client_stat(&client, fs, "dir/f.bin", &size);
    cr_assert_eq(rc, 0, "%s: %s", rc_client_strerror(rc), client.error);
    cr_assert_eq(size, 12345);
    cr_assert_eq(rc_client_stat(&client, fs, "dir/\xc3\xa4 \"q\" b.bin", &size), 0, "%s",
                 client.error);
    cr_assert_eq(size, 7);
    cr_assert_eq(rc_client_stat(&client, fs, "dir/empty", &size), 0);
    cr_assert_eq(size, 0);

    size = -5;
    cr_assert_eq(rc_client_stat(&client, fs, "dir/missing.bin", &size), RC_CLIENT_ERR_NOTFOUND);
    cr_assert_eq(size, -5, "the out-parameter is untouched when nothing is there");
    cr_assert_eq(rc_client_stat(&client, fs, "nodir/missing.bin", &size),
                 RC_CLIENT_ERR_NOTFOUND);
    cr_assert_eq(rc_client_stat(&client, fs, "dir", &size), RC_CLIENT_ERR_NOTFOUND,
                 "a directory is not the file asked about");

    rc = rc_client_stat(&client, "nosuchremote:", "x", &size);
    cr_assert_eq(rc, RC_CLIENT_ERR_HTTP, "%s", rc_client_strerror(rc));
    cr_assert_eq(client.http_status, 500);
    cr_assert_eq(size, -5);
    cr_assert_eq(rc_client_stat(&client, NULL, "x", &size), RC_CLIENT_ERR_INVALID);
}

Test(rc_client, wrong_password_is_http_401_and_never_quoted, .init = setup, .fini = teardown,
     .timeout = 30)
{
    start_rcd();
    char wrong_user[RC_CLIENT_USER_LEN + 1], wrong_pass[RC_CLIENT_PASS_LEN + 1];
    cr_assert_eq(rc_client_make_credentials(wrong_user, sizeof wrong_user, wrong_pass,
                                            sizeof wrong_pass), 0);
    cr_assert_eq(rc_client_init(&client, rclone.url, user, wrong_pass, TEST_TIMEOUT_MS), 0);

    int rc = rc_client_stats(&client, stats);
    cr_assert_eq(rc, RC_CLIENT_ERR_HTTP, "%s: %s", rc_client_strerror(rc), client.error);
    cr_assert_eq(client.http_status, 401);
    cr_assert_null(strstr(client.error, wrong_pass), "error: %s", client.error);
    cr_assert_null(strstr(client.error, pass), "error: %s", client.error);
    cr_assert(strstr(client.error, "401"), "error: %s", client.error);
    int64_t bps;
    cr_assert_eq(rc_client_bwlimit(&client, "1M", &bps), RC_CLIENT_ERR_HTTP);
    cr_assert_eq(client.http_status, 401);
    cr_assert_eq(rc_client_quit(&client, 0), RC_CLIENT_ERR_HTTP);
    cr_assert_eq(wait_exit(rclone.pid, now_ms() + 2000), -1, "an unauthorised quit is ignored");

    /* The right pair still works on a new client. */
    rc_client_free(&client);
    cr_assert_eq(rc_client_init(&client, rclone.url, user, pass, TEST_TIMEOUT_MS), 0);
    cr_assert_eq(rc_client_stats(&client, stats), 0, "%s", client.error);
}

Test(rc_client, urls_off_loopback_or_not_http_are_refused, .init = setup, .fini = teardown,
     .timeout = 10)
{
    static const char *const refused[] = {
        "http://10.0.0.1:5572/",
        "http://192.168.1.1/",
        "http://example.com:5572/",
        "http://localhost.example.com:5572/",
        "http://127.0.0.1.example.com/",
        "http://127.0.0.1@example.com:5572/",
        "http://u:secretpw@127.0.0.1:5572/",
        "https://127.0.0.1:5572/",
        "ftp://127.0.0.1/",
        "file:///etc/passwd",
        "127.0.0.1:5572",
        "http://127.0.0.1:5572/?x=1",
        "http://[::2]:5572/",
        "",
    };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        int rc = rc_client_init(&client, refused[i], user, pass, 0);
        cr_assert_eq(rc, RC_CLIENT_ERR_INVALID, "%s accepted (%d)", refused[i], rc);
        cr_assert_null(strstr(client.error, "secretpw"), "error: %s", client.error);
        cr_assert_null(strstr(client.error, pass), "error: %s", client.error);
        /* A failed init leaves nothing that a call could use. */
        cr_assert_eq(rc_client_stats(&client, stats), RC_CLIENT_ERR_INVALID);
        rc_client_free(&client);
    }
    cr_assert_eq(rc_client_init(&client, NULL, user, pass, 0), RC_CLIENT_ERR_INVALID);
    cr_assert_eq(rc_client_init(&client, "http://127.0.0.1:1/", user, "", 0),
                 RC_CLIENT_ERR_INVALID);

    static const char *const accepted[] = {
        "http://127.0.0.1:5572/",
        "http://127.0.0.1:5572",
        "http://localhost:5572/",
        "http://LOCALHOST:5572/",
        "http://[::1]:5572/",
        "http://127.0.0.1:5572/rc/",
    };
    for (size_t i = 0; i < sizeof accepted / sizeof accepted[0]; i++) {
        int rc = rc_client_init(&client, accepted[i], user, pass, 0);
        cr_assert_eq(rc, 0, "%s refused: %s", accepted[i], client.error);
        cr_assert_eq(client.timeout_ms, RC_CLIENT_TIMEOUT_MS_DEFAULT);
        cr_assert_eq(client.url[client.base_len - 1], '/');
        rc_client_free(&client);
    }
}

Test(rc_client, killed_rclone_is_a_connect_error_within_the_timeout, .init = setup,
     .fini = teardown, .timeout = 30)
{
    start_rcd();
    cr_assert_eq(rc_client_init(&client, rclone.url, user, pass, 0), 0);
    cr_assert_eq(rc_client_stats(&client, stats), 0, "%s", client.error);
    stats->bytes = 4242;

    kill(rclone.pid, SIGKILL);
    cr_assert_neq(wait_exit(rclone.pid, now_ms() + 5000), -1);
    rclone.pid = -1;

    int64_t start = now_ms();
    int rc = rc_client_stats(&client, stats);
    int64_t took = now_ms() - start;
    cr_assert_eq(rc, RC_CLIENT_ERR_CONNECT, "%s: %s", rc_client_strerror(rc), client.error);
    cr_assert_leq(took, RC_CLIENT_TIMEOUT_MS_DEFAULT, "took %lld ms", (long long)took);
    cr_assert_eq(client.http_status, 0);
    cr_assert_eq(stats->bytes, 4242, "*out untouched on failure");
    cr_assert_null(strstr(client.error, pass));
    /* And again, now without a kept-alive connection to find broken. */
    cr_assert_eq(rc_client_stats(&client, stats), RC_CLIENT_ERR_CONNECT);
}

Test(rc_client, stopped_rclone_is_a_timeout_and_recovers, .init = setup, .fini = teardown,
     .timeout = 30)
{
    const int timeout_ms = 300;
    start_rcd();
    cr_assert_eq(rc_client_init(&client, rclone.url, user, pass, timeout_ms), 0);
    cr_assert_eq(rc_client_stats(&client, stats), 0, "%s", client.error);

    /* kill() returns before every thread of the Go process has stopped, and a thread still
     * running could answer: wait for the stop to be reported. */
    cr_assert_eq(kill(rclone.pid, SIGSTOP), 0);
    int64_t deadline = now_ms() + 5000;
    int status = 0;
    while (waitpid(rclone.pid, &status, WNOHANG | WUNTRACED) != rclone.pid) {
        cr_assert_lt(now_ms(), deadline, "rcd never reported stopped");
        pause_ms(5);
    }
    cr_assert(WIFSTOPPED(status), "status %#x", status);
    int64_t start = now_ms();
    int rc = rc_client_stats(&client, stats);
    int64_t took = now_ms() - start;
    cr_assert_eq(rc, RC_CLIENT_ERR_TIMEOUT, "%s: %s", rc_client_strerror(rc), client.error);
    cr_assert_geq(took, timeout_ms - 10, "took %lld ms", (long long)took);
    cr_assert_lt(took, timeout_ms + 700, "took %lld ms", (long long)took);

    cr_assert_eq(kill(rclone.pid, SIGCONT), 0);
    rc = rc_client_stats(&client, stats);
    cr_assert_eq(rc, 0, "after SIGCONT: %s: %s", rc_client_strerror(rc), client.error);
}

Test(rc_client, quit_makes_rcd_exit_with_the_code_asked, .init = setup, .fini = teardown,
     .timeout = 30)
{
    start_rcd();
    cr_assert_eq(rc_client_init(&client, rclone.url, user, pass, TEST_TIMEOUT_MS), 0);
    int rc = rc_client_quit(&client, 42);
    cr_assert_eq(rc, 0, "%s: %s", rc_client_strerror(rc), client.error);
    int64_t asked = now_ms();
    int status = wait_exit(rclone.pid, asked + 10000);
    cr_assert_neq(status, -1, "rcd still running 10 s after core/quit");
    rclone.pid = -1;
    cr_assert(WIFEXITED(status), "status %#x", status);
    cr_assert_eq(WEXITSTATUS(status), 42);
    cr_log_info("rcd exited %lld ms after core/quit", (long long)(now_ms() - asked));
    cr_assert_eq(rc_client_stats(&client, stats), RC_CLIENT_ERR_CONNECT);
}

/* --- a server that is not rclone ------------------------------------------------------ */

/* Reads one HTTP request (headers and Content-Length body) so that closing the socket
 * afterwards does not reset the connection under the client. Returns the request line. */
static void read_request(int fd, char *line, size_t line_size)
{
    char buf[8192];
    size_t used = 0;
    char *end = NULL;
    while (!end && used < sizeof buf - 1) {
        ssize_t n = read(fd, buf + used, sizeof buf - 1 - used);
        if (n <= 0)
            _exit(3);
        used += (size_t)n;
        buf[used] = '\0';
        end = strstr(buf, "\r\n\r\n");
    }
    if (!end)
        _exit(4);
    size_t body = 0;
    const char *cl = strcasestr(buf, "\r\ncontent-length:");
    if (cl)
        body = strtoul(cl + 17, NULL, 10);
    size_t have = used - (size_t)(end + 4 - buf);
    while (have < body) {
        char skip[4096];
        ssize_t n = read(fd, skip, sizeof skip);
        if (n <= 0)
            _exit(5);
        have += (size_t)n;
    }
    snprintf(line, line_size, "%.*s", (int)strcspn(buf, "\r"), buf);
}

/* A client that hangs up early (as it should on an oversized answer) only ends this answer. */
static bool write_all(int fd, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, data, len);
        if (n <= 0)
            return false;
        data += n;
        len -= (size_t)n;
    }
    return true;
}

static void answer(int fd, const char *body, size_t body_len)
{
    char head[256];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\nConnection: close\r\n\r\n", body_len);
    if (write_all(fd, head, (size_t)n))
        write_all(fd, body, body_len);
}

/* Answers every request with 200 and a body rclone would never send. */
static void serve_nonsense(int listen_fd)
{
    signal(SIGPIPE, SIG_IGN);
    for (;;) {
        int fd = accept(listen_fd, NULL, NULL);
        if (fd < 0)
            _exit(2);
        char line[512];
        read_request(fd, line, sizeof line);
        if (strstr(line, "/core/stats ")) {
            answer(fd, "not json!", 9);
        } else if (strstr(line, "/core/bwlimit ")) {
            answer(fd, "{\"rate\":\"off\"}", 14);
        } else if (strstr(line, "/operations/stat ")) {
            answer(fd, "{\"item\":5}", 10);
        } else {
            size_t big = RC_CLIENT_BODY_MAX + 4096;
            char *body = malloc(big);
            if (!body)
                _exit(7);
            memset(body, ' ', big);
            answer(fd, body, big);
            free(body);
        }
        close(fd);
    }
}

Test(rc_client, answers_that_are_not_rclone_s_are_parse_errors, .init = setup,
     .fini = teardown, .timeout = 30)
{
    int listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(listen_fd, 0);
    struct sockaddr_in addr = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    cr_assert_eq(bind(listen_fd, (struct sockaddr *)&addr, sizeof addr), 0);
    cr_assert_eq(listen(listen_fd, 8), 0);
    socklen_t len = sizeof addr;
    cr_assert_eq(getsockname(listen_fd, (struct sockaddr *)&addr, &len), 0);
    pid_t pid = test_fork();
    cr_assert_geq(pid, 0);
    if (pid == 0)
        serve_nonsense(listen_fd);
    close(listen_fd);
    rclone.pid = pid; /* teardown kills it */

    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%u/", (unsigned)ntohs(addr.sin_port));
    cr_assert_eq(rc_client_init(&client, url, user, pass, TEST_TIMEOUT_MS), 0);

    stats->bytes = 4242;
    int rc = rc_client_stats(&client, stats);
    cr_assert_eq(rc, RC_CLIENT_ERR_PARSE, "%s: %s", rc_client_strerror(rc), client.error);
    cr_assert_eq(stats->bytes, 4242);
    int64_t out = 99;
    cr_assert_eq(rc_client_bwlimit(&client, "1M", &out), RC_CLIENT_ERR_PARSE);
    cr_assert_eq(out, 99);
    cr_assert_eq(rc_client_stat(&client, ":local:/", "x", &out), RC_CLIENT_ERR_PARSE);
    cr_assert_eq(out, 99);
    rc = rc_client_quit(&client, 0);
    cr_assert_eq(rc, RC_CLIENT_ERR_PARSE, "%s: %s", rc_client_strerror(rc), client.error);
    cr_assert(strstr(client.error, "larger"), "error: %s", client.error);
    /* The client is still usable after an oversized answer. */
    cr_assert_eq(rc_client_stats(&client, stats), RC_CLIENT_ERR_PARSE);
}

/* --- no rclone ---------------------------------------------------------------------------- */

Test(rc_client, stage_keeps_the_tail_of_long_names_and_clears_stale_entries)
{
    struct rc_stats *s = calloc(1, sizeof *s);
    cr_assert_not_null(s);
    s->bytes = 1000;
    s->speed_bps = 1234.9;
    s->eta_s = -1;
    s->errors = 2;
    s->transferring_total = 70;
    s->transferring_count = RC_CLIENT_INFLIGHT_MAX;
    for (size_t i = 0; i < RC_CLIENT_INFLIGHT_MAX; i++) {
        snprintf(s->transferring[i].name, sizeof s->transferring[i].name, "f%zu.bin", i);
        s->transferring[i].size = (int64_t)i * 10;
        s->transferring[i].bytes = (int64_t)i;
        s->transferring[i].speed_bps = 1.5;
    }
    /* 300 bytes of two-byte characters, so the cut falls inside one, then a tail. */
    char *long_name = s->transferring[0].name;
    size_t n = 0;
    n += (size_t)sprintf(long_name + n, "Shows/");
    for (int i = 0; i < 150; i++)
        n += (size_t)sprintf(long_name + n, "\xc3\xa9");
    n += (size_t)sprintf(long_name + n, "/Season 01/S01E01.mkv");

    struct ledger_stage stage;
    memset(&stage, 0x5a, sizeof stage);
    rc_client_stats_to_stage(s, &stage);
    cr_assert_eq(stage.inflight_count, LEDGER_INFLIGHT_MAX);
    cr_assert_eq(stage.rc_bytes, 1000);
    cr_assert_eq(stage.rc_speed, 1234);
    cr_assert_eq(stage.rc_eta_s, -1);
    cr_assert_eq(stage.rc_errors, 2);
    const char *name = stage.inflight[0].name;
    size_t len = strnlen(name, sizeof stage.inflight[0].name);
    cr_assert_lt(len, sizeof stage.inflight[0].name);
    cr_assert_eq(strncmp(name, "...", 3), 0, "name: %s", name);
    cr_assert(utf8_starts_on_boundary(name + 3), "cut inside a character: %s", name);
    cr_assert_str_eq(name + len - strlen("/Season 01/S01E01.mkv"), "/Season 01/S01E01.mkv");
    cr_assert_str_eq(stage.inflight[7].name, "f7.bin");
    cr_assert_eq(stage.inflight[7].size, 70);
    cr_assert_eq(stage.inflight[7].speed, 1);

    /* Fewer in flight on the next poll: the slots they left are cleared, not stale. */
    s->transferring_count = 2;
    rc_client_stats_to_stage(s, &stage);
    cr_assert_eq(stage.inflight_count, 2);
    for (int i = 2; i < LEDGER_INFLIGHT_MAX; i++) {
        cr_assert_eq(stage.inflight[i].name[0], '\0');
        cr_assert_eq(stage.inflight[i].size, 0);
    }
    free(s);
}

Test(rc_client, credentials_are_fresh_and_url_safe)
{
    char u1[RC_CLIENT_USER_LEN + 1], p1[RC_CLIENT_PASS_LEN + 1];
    char u2[RC_CLIENT_USER_LEN + 1], p2[RC_CLIENT_PASS_LEN + 1];
    cr_assert_eq(rc_client_make_credentials(u1, sizeof u1, p1, sizeof p1), 0);
    cr_assert_eq(rc_client_make_credentials(u2, sizeof u2, p2, sizeof p2), 0);
    cr_assert_eq(strlen(u1), RC_CLIENT_USER_LEN);
    cr_assert_eq(strlen(p1), RC_CLIENT_PASS_LEN);
    cr_assert_str_neq(p1, p2);
    cr_assert_str_neq(u1, u2);
    const char *all[] = { u1, p1, u2, p2 };
    for (size_t i = 0; i < 4; i++) {
        cr_assert(all[i][0] != '-' && all[i][0] != '_' && !(all[i][0] >= '0' && all[i][0] <= '9'),
                  "leading character of %s", all[i]);
        cr_assert_eq(strspn(all[i], "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                    "0123456789-_"), strlen(all[i]), "%s", all[i]);
    }

    char small[RC_CLIENT_USER_LEN];
    memset(small, 'x', sizeof small);
    cr_assert_eq(rc_client_make_credentials(small, sizeof small, p1, sizeof p1),
                 RC_CLIENT_ERR_INVALID);
    cr_assert_eq(small[0], 'x', "nothing written on failure");
    cr_assert_eq(rc_client_make_credentials(u1, sizeof u1, p1, RC_CLIENT_PASS_LEN),
                 RC_CLIENT_ERR_INVALID);
}
