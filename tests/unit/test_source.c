#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "source.h"
#include "test_util.h"

#ifndef CPLOW_SOURCE_DIR
#error "CPLOW_SOURCE_DIR must name the checkout"
#endif

/* Sparse: past 4 GiB so a 32-bit size anywhere would show, without using the disk. */
#define BIG_FILE_BYTES (5LL * 1024 * 1024 * 1024 + 123)

/* --- the tree --------------------------------------------------------------------------- */

static char tree[PATH_MAX];

/* "<tree>/<rel>" in one of a few rotating buffers, so a call may take two of them. */
static const char *at(const char *rel)
{
    static char paths[4][PATH_MAX * 2];
    static unsigned next;
    char *path = paths[next++ % 4];
    snprintf(path, sizeof paths[0], "%s/%s", tree, rel);
    return path;
}

static void put_dir(const char *rel)
{
    cr_assert_eq(mkdir(at(rel), 0755), 0, "mkdir %s: %s", rel, strerror(errno));
}

static void put_file(const char *rel, long long size)
{
    int fd = open(at(rel), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    cr_assert_geq(fd, 0, "create %s: %s", rel, strerror(errno));
    if (size > 0 && size <= 65536) {
        char block[65536];
        memset(block, 'x', sizeof block);
        cr_assert_eq(write(fd, block, (size_t)size), (ssize_t)size);
    } else if (size > 0) {
        cr_assert_eq(ftruncate(fd, (off_t)size), 0, "ftruncate %s: %s", rel, strerror(errno));
    }
    close(fd);
}

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    if (flag == FTW_DP)
        chmod(path, 0700); /* a locked directory from a test that failed half-way */
    remove(path);
    return 0;
}

static void setup(void)
{
    snprintf(tree, sizeof tree, "/tmp/cplow-test-source.XXXXXX");
    cr_assert_not_null(mkdtemp(tree), "mkdtemp: %s", strerror(errno));
    /* Readable by the unprivileged child of the permission test. */
    chmod(tree, 0755);
}

static void teardown(void)
{
    nftw(tree, remove_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* Every kind of name rclone may send back, and every kind of thing that is not a file. */
static void make_mixed_tree(void)
{
    put_file("a.txt", 5);
    put_file("empty", 0);
    put_dir("dir one");
    put_file("dir one/file with spaces.mkv", 1234);
    put_dir("dir one/nested");
    put_dir("dir one/nested/deeper");
    put_file("dir one/nested/deeper/x.bin", 70000);
    put_dir("ünïcødé");
    put_file("ünïcødé/日本語 ファイル.txt", 3);
    put_file("new\nline", 7);
    put_file("big.img", BIG_FILE_BYTES);
    put_dir("emptydir");
    cr_assert_eq(symlink("a.txt", at("link-to-file")), 0);
    cr_assert_eq(symlink("dir one", at("link-to-dir")), 0);
    cr_assert_eq(symlink("nowhere", at("dir one/dangling")), 0);
    cr_assert_eq(mkfifo(at("pipe"), 0644), 0);
}

struct expected_file {
    const char *path;
    long long size;
};

static const struct expected_file mixed_files[] = {
    { "a.txt", 5 },
    { "empty", 0 },
    { "dir one/file with spaces.mkv", 1234 },
    { "dir one/nested/deeper/x.bin", 70000 },
    { "ünïcødé/日本語 ファイル.txt", 3 },
    { "new\xE2\x90\x8Aline", 7 }, /* "new\nline" as rclone names it: new␊line */
    { "big.img", BIG_FILE_BYTES },
};
#define MIXED_FILE_COUNT (sizeof mixed_files / sizeof mixed_files[0])

static void list_ok(struct source_index *idx)
{
    char err[512] = "";
    int rc = source_list(tree, idx, err, sizeof err);
    cr_assert_eq(rc, 0, "source_list: %d %s", rc, err);
}

static struct source_entry *find(struct source_index *idx, const char *path)
{
    return source_find(idx, path, strlen(path));
}

static int wait_child(pid_t pid)
{
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status), "child died with status %d", status);
    return WEXITSTATUS(status);
}

/* --- listing ---------------------------------------------------------------------------- */

Test(source, lists_every_regular_file_with_its_exact_size, .init = setup, .fini = teardown,
     .timeout = 30)
{
    make_mixed_tree();
    struct source_index idx;
    list_ok(&idx);

    cr_assert_eq(idx.file_count, MIXED_FILE_COUNT);
    long long total = 0;
    for (size_t i = 0; i < MIXED_FILE_COUNT; i++) {
        struct source_entry *e = find(&idx, mixed_files[i].path);
        cr_assert_not_null(e, "not found: %s", mixed_files[i].path);
        cr_assert_eq(e->size, mixed_files[i].size, "%s: %lld", e->path, (long long)e->size);
        cr_assert_eq(e->path_len, strlen(mixed_files[i].path));
        cr_assert_str_eq(e->path, mixed_files[i].path);
        cr_assert_eq(e->flags, 0);
        total += mixed_files[i].size;
    }
    cr_assert_eq(idx.total_bytes, total);
    /* root, "dir one", nested, deeper, ünïcødé, emptydir: not the symlinked one */
    cr_assert_eq(idx.dir_count, 6);
    source_free(&idx);
}

Test(source, skips_symlinks_and_special_files_and_counts_them, .init = setup,
     .fini = teardown, .timeout = 30)
{
    make_mixed_tree();
    struct source_index idx;
    list_ok(&idx);
    cr_assert_eq(idx.symlinks_skipped, 3);
    cr_assert_eq(idx.others_skipped, 1);
    cr_assert_eq(idx.vanished, 0);
    cr_assert_null(find(&idx, "link-to-file"));
    cr_assert_null(find(&idx, "link-to-dir/file with spaces.mkv"));
    cr_assert_null(find(&idx, "pipe"));
    source_free(&idx);
}

Test(source, finds_exact_paths_only, .init = setup, .fini = teardown, .timeout = 30)
{
    make_mixed_tree();
    struct source_index idx;
    list_ok(&idx);

    static const char *const misses[] = {
        "dir one/file with spaces",      /* prefix */
        "dir one/file with spaces.mkvx", /* longer */
        "file with spaces.mkv",          /* suffix: the name without its directory */
        "one/file with spaces.mkv",      /* suffix across a directory name */
        "./a.txt", "/a.txt", "a.txt/", "A.txt",
        "dir one",                       /* a directory is not a file */
        "emptydir",
        "dir one/nested/deeper",
        "new",                           /* the name up to its newline */
        "new\nline",                     /* the bytes on disk: rclone never prints them */
        "",
    };
    for (size_t i = 0; i < sizeof misses / sizeof misses[0]; i++)
        cr_assert_null(find(&idx, misses[i]), "found: \"%s\"", misses[i]);

    /* The length decides, not a NUL: rclone_log hands over (object, object_len). */
    const char *longer = "a.txtGARBAGE";
    struct source_entry *e = source_find(&idx, longer, 5);
    cr_assert_not_null(e);
    cr_assert_str_eq(e->path, "a.txt");
    cr_assert_null(source_find(&idx, "a.txt", 4));
    source_free(&idx);
}

/*
 * Each pair: a name on disk, and the name rclone 1.60.1 printed for it in its Copied line (run
 * against this very set). Control bytes, DEL and invalid UTF-8 change; rclone's quote
 * character and the symbols it substitutes get quoted; everything else is kept byte for byte.
 */
static const struct { const char *disk, *rclone; } rclone_names[] = {
    { "plain name.mkv", "plain name.mkv" },
    { " lead and trail ", " lead and trail " },
    { "back\\slash", "back\\slash" },
    { "tab\tname", "tab␉name" },
    { "ctl\x01\x1f", "ctl␁␟" },
    { "del\x7f", "del␡" },
    { "sym␊bol", "sym‛␊bol" },      /* a literal symbol is quoted */
    { "␀null", "␀null" },           /* decoded to NUL, encoded back */
    { "␡x", "‛␡x" },
    { "quote‛s", "quote‛‛s" },      /* rclone then cannot open it (its issue #6098) */
    { "‛‛", "‛‛" },
    { "a／b", "a／b" },               /* decoded to '/', encoded back */
    { "‛／", "‛／" },
    { "．", "．" },
    { "．．", "．．" },
    { "‛．", "‛．" },
    { "bad\xffutf8", "bad\xEF\xBF\xBDutf8" },
    { "cut\xe6\x97", "cut\xEF\xBF\xBD\xEF\xBF\xBD" },           /* one U+FFFD per byte */
    { "\xed\xa0\x80sur", "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBDsur" }, /* a surrogate */
    { "lit\xEF\xBF\xBD", "lit\xEF\xBF\xBD" },                      /* a real U+FFFD */
    { "日本 語.txt", "日本 語.txt" },
};
#define RCLONE_NAME_COUNT (sizeof rclone_names / sizeof rclone_names[0])

Test(source, paths_are_the_names_rclone_prints, .init = setup, .fini = teardown, .timeout = 30)
{
    put_dir("ctl\x01" "dir");
    put_file("ctl\x01" "dir/inner", 1);
    for (size_t i = 0; i < RCLONE_NAME_COUNT; i++)
        put_file(rclone_names[i].disk, (long long)i + 10);
    struct source_index idx;
    list_ok(&idx);
    cr_assert_eq(idx.file_count, RCLONE_NAME_COUNT + 1);
    for (size_t i = 0; i < RCLONE_NAME_COUNT; i++) {
        struct source_entry *e = find(&idx, rclone_names[i].rclone);
        cr_assert_not_null(e, "no entry for disk name #%zu under rclone's name", i);
        cr_assert_eq(e->size, (long long)i + 10, "#%zu found the wrong file", i);
        if (strcmp(rclone_names[i].disk, rclone_names[i].rclone) != 0)
            cr_assert_null(find(&idx, rclone_names[i].disk), "#%zu found by its disk name", i);
    }
    /* Directories too, and a path never holds a control byte. */
    cr_assert_not_null(find(&idx, "ctl␁dir/inner"));
    for (size_t i = 0; i < idx.file_count; i++)
        for (const char *c = idx.entries[i].path; *c; c++)
            cr_assert(*c != '\n' && *c != '\t', "a control byte in \"%s\"", idx.entries[i].path);
    cr_assert_eq(idx.shared_names, 0);
    source_free(&idx);
}

/* Two names that differ only in invalid bytes look the same in rclone's log; both are uploaded,
 * so each Copied line must count one of them. */
Test(source, files_sharing_a_name_count_once_each, .init = setup, .fini = teardown,
     .timeout = 30)
{
    put_file("x\xfe", 100);
    put_file("x\xff", 200);
    struct source_index idx;
    list_ok(&idx);
    cr_assert_eq(idx.file_count, 2);
    cr_assert_eq(idx.shared_names, 1);
    const char *shown = "x\xEF\xBF\xBD";
    struct source_entry *first = find(&idx, shown);
    cr_assert_not_null(first);
    cr_assert_eq(source_mark_counted(first), false);
    struct source_entry *second = find(&idx, shown);
    cr_assert_not_null(second);
    cr_assert_neq(first, second);
    cr_assert_eq(source_mark_counted(second), false);
    cr_assert_eq(first->size + second->size, 300);
    /* A third line for the name finds a counted one: nothing more is counted. */
    cr_assert_eq(source_mark_counted(find(&idx, shown)), true);
    source_free(&idx);
}

Test(source, finds_every_file_of_a_few_thousand, .init = setup, .fini = teardown,
     .timeout = 60)
{
    /* Enough to fill many arena blocks' worth of probes and make the table resize its plan. */
    enum { DIRS = 40, FILES_PER_DIR = 75 };
    char rel[128];
    for (int d = 0; d < DIRS; d++) {
        snprintf(rel, sizeof rel, "Show %02d", d);
        put_dir(rel);
        for (int f = 0; f < FILES_PER_DIR; f++) {
            snprintf(rel, sizeof rel, "Show %02d/Episode %03d.mkv", d, f);
            put_file(rel, d * 1000 + f);
        }
    }
    struct source_index idx;
    list_ok(&idx);
    cr_assert_eq(idx.file_count, DIRS * FILES_PER_DIR);
    cr_assert_eq(idx.dir_count, DIRS + 1);
    for (int d = 0; d < DIRS; d++) {
        for (int f = 0; f < FILES_PER_DIR; f++) {
            snprintf(rel, sizeof rel, "Show %02d/Episode %03d.mkv", d, f);
            struct source_entry *e = find(&idx, rel);
            cr_assert_not_null(e, "not found: %s", rel);
            cr_assert_eq(e->size, d * 1000 + f);
            snprintf(rel, sizeof rel, "Show %02d/Episode %03d.mk", d, f);
            cr_assert_null(find(&idx, rel));
        }
    }
    cr_assert_gt(source_memory_bytes(&idx), 0);
    source_free(&idx);
}

Test(source, empty_source_lists_nothing, .init = setup, .fini = teardown, .timeout = 30)
{
    struct source_index idx;
    list_ok(&idx);
    cr_assert_eq(idx.file_count, 0);
    cr_assert_eq(idx.total_bytes, 0);
    cr_assert_eq(idx.dir_count, 1);
    cr_assert_null(find(&idx, "anything"));
    cr_assert_null(find(&idx, ""));
    source_free(&idx);
}

Test(source, root_may_be_a_symlink_to_a_directory, .init = setup, .fini = teardown,
     .timeout = 30)
{
    put_dir("real");
    put_file("real/f", 9);
    cr_assert_eq(symlink("real", at("via-link")), 0);
    struct source_index idx;
    char err[256] = "";
    cr_assert_eq(source_list(at("via-link"), &idx, err, sizeof err), 0, "%s", err);
    cr_assert_eq(idx.file_count, 1);
    cr_assert_not_null(find(&idx, "f"));
    source_free(&idx);
}

/* --- errors ----------------------------------------------------------------------------- */

static void assert_untouched(const struct source_index *idx)
{
    const unsigned char *bytes = (const unsigned char *)idx;
    for (size_t i = 0; i < sizeof *idx; i++)
        cr_assert_eq(bytes[i], 0xA5, "byte %zu of the out-parameter changed", i);
}

Test(source, root_that_is_a_file_is_an_error_naming_it, .init = setup, .fini = teardown,
     .timeout = 30)
{
    put_file("plain", 1);
    struct source_index idx;
    memset(&idx, 0xA5, sizeof idx);
    char err[512] = "";
    cr_assert_eq(source_list(at("plain"), &idx, err, sizeof err), -ENOTDIR);
    cr_assert_not_null(strstr(err, at("plain")), "%s", err);
    cr_assert_null(strchr(err, '\n'));
    assert_untouched(&idx);
}

Test(source, missing_root_is_an_error_naming_it, .init = setup, .fini = teardown,
     .timeout = 30)
{
    struct source_index idx;
    memset(&idx, 0xA5, sizeof idx);
    char err[512] = "";
    cr_assert_eq(source_list(at("absent"), &idx, err, sizeof err), -ENOENT);
    cr_assert_not_null(strstr(err, at("absent")), "%s", err);
    assert_untouched(&idx);
}

Test(source, error_message_fits_a_tiny_buffer, .init = setup, .fini = teardown, .timeout = 30)
{
    struct source_index idx;
    char err[8];
    memset(err, 'Z', sizeof err);
    cr_assert_eq(source_list(at("absent"), &idx, err, sizeof err), -ENOENT);
    cr_assert_eq(strlen(err), sizeof err - 1);
    cr_assert_eq(source_list(at("absent"), &idx, NULL, 0), -ENOENT);
}

/*
 * Root reads every directory whatever its mode, and the tests run as root here, so the refusal
 * is tested in a child that gives up root first. The directory's name holds a newline: the
 * message must still be one line.
 */
Test(source, unreadable_directory_is_an_error_naming_it, .init = setup, .fini = teardown,
     .timeout = 30)
{
    put_dir("ok");
    put_file("ok/f", 1);
    put_dir("ok/locked\ndir");
    put_file("ok/locked\ndir/hidden", 1);
    cr_assert_eq(chmod(at("ok/locked\ndir"), 0), 0);

    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    pid_t pid = test_fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        close(fds[0]);
        if (geteuid() == 0 &&
            (setgroups(0, NULL) < 0 || setgid(65534) < 0 || setuid(65534) < 0))
            _exit(77);
        struct source_index idx;
        char err[512] = "";
        int rc = source_list(tree, &idx, err, sizeof err);
        if (write(fds[1], err, strlen(err)) < 0)
            _exit(3);
        _exit(rc == -EACCES ? 0 : 1);
    }
    close(fds[1]);
    char msg[512] = "";
    ssize_t n = read(fds[0], msg, sizeof msg - 1);
    close(fds[0]);
    msg[n > 0 ? n : 0] = '\0';
    int code = wait_child(pid);
    if (code == 77)
        cr_skip_test("cannot drop root privileges here");
    cr_assert_eq(code, 0, "source_list did not return -EACCES: %s", msg);
    cr_assert_not_null(strstr(msg, "ok/locked?dir"), "%s", msg);
    cr_assert_not_null(strstr(msg, strerror(EACCES)), "%s", msg);
    cr_assert_null(strchr(msg, '\n'), "%s", msg);
}

/* A bind mount of an ancestor below itself is the one way a tree without symlinks loops; it
 * needs a private mount namespace, so it runs in a child and skips where that is refused. */
Test(source, directory_that_contains_itself_is_an_error, .init = setup, .fini = teardown,
     .timeout = 30)
{
    put_dir("a");
    put_dir("a/loop");
    put_file("a/f", 1);
    pid_t pid = test_fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
            mount(at("a"), at("a/loop"), NULL, MS_BIND, NULL) < 0)
            _exit(77);
        struct source_index idx;
        char err[512] = "";
        int rc = source_list(tree, &idx, err, sizeof err);
        _exit(rc == -ELOOP && strstr(err, "a/loop") ? 0 : 1);
    }
    int code = wait_child(pid);
    if (code == 77)
        cr_skip_test("no private mount namespace here");
    cr_assert_eq(code, 0);
}

/* --- counting and iteration ------------------------------------------------------------- */

Test(source, counts_a_file_once, .init = setup, .fini = teardown, .timeout = 30)
{
    make_mixed_tree();
    struct source_index idx;
    list_ok(&idx);
    struct source_entry *e = find(&idx, "dir one/file with spaces.mkv");
    cr_assert_not_null(e);
    /* A Failed line changes nothing; the success after it counts; a repeated Copied does not. */
    cr_assert_eq(source_mark_counted(e), false);
    cr_assert_eq(source_mark_counted(e), true);
    cr_assert_eq(source_mark_counted(find(&idx, "dir one/file with spaces.mkv")), true);
    cr_assert_eq(e->flags, SOURCE_COUNTED);
    cr_assert_eq(source_mark_counted(find(&idx, "a.txt")), false);
    source_mark_in_flight(e);
    cr_assert_eq(e->flags, SOURCE_COUNTED | SOURCE_IN_FLIGHT);
    cr_assert_eq(source_mark_counted(e), true);
    source_free(&idx);
}

struct collected {
    char paths[16][64];
    size_t count;
    size_t stop_after;
};

static int collect(void *ctx, struct source_entry *e)
{
    struct collected *c = ctx;
    cr_assert_lt(c->count, 16);
    snprintf(c->paths[c->count++], sizeof c->paths[0], "%s", e->path);
    return c->stop_after && c->count == c->stop_after ? 42 : 0;
}

static bool collected_has(const struct collected *c, const char *path)
{
    for (size_t i = 0; i < c->count; i++)
        if (strcmp(c->paths[i], path) == 0)
            return true;
    return false;
}

Test(source, foreach_selects_by_flags, .init = setup, .fini = teardown, .timeout = 30)
{
    make_mixed_tree();
    struct source_index idx;
    list_ok(&idx);
    find(&idx, "a.txt")->flags |= SOURCE_OPENED;                      /* opened, lost */
    find(&idx, "empty")->flags |= SOURCE_OPENED | SOURCE_COUNTED;     /* done */
    source_mark_in_flight(find(&idx, "big.img"));                    /* in flight, lost */
    source_mark_counted(find(&idx, "new␊line"));                     /* done, never opened */

    struct collected c = { 0 };
    cr_assert_eq(source_foreach(&idx, SOURCE_OPENED | SOURCE_IN_FLIGHT, SOURCE_COUNTED,
                                collect, &c), 0);
    cr_assert_eq(c.count, 2);
    cr_assert(collected_has(&c, "a.txt"));
    cr_assert(collected_has(&c, "big.img"));

    c = (struct collected){ 0 };
    cr_assert_eq(source_foreach(&idx, 0, SOURCE_COUNTED, collect, &c), 0);
    cr_assert_eq(c.count, MIXED_FILE_COUNT - 2);
    cr_assert(!collected_has(&c, "empty"));
    cr_assert(!collected_has(&c, "new␊line"));

    c = (struct collected){ 0 };
    cr_assert_eq(source_foreach(&idx, 0, 0, collect, &c), 0);
    cr_assert_eq(c.count, MIXED_FILE_COUNT);

    c = (struct collected){ .stop_after = 3 };
    cr_assert_eq(source_foreach(&idx, 0, 0, collect, &c), 42);
    cr_assert_eq(c.count, 3);
    source_free(&idx);
}

/* --- the open-watcher ------------------------------------------------------------------- */

static int watch_ok(struct source_index *idx)
{
    int fd = -1;
    char err[512] = "";
    int rc = source_watch_start(idx, tree, &fd, err, sizeof err);
    cr_assert_eq(rc, 0, "source_watch_start: %d %s", rc, err);
    cr_assert_geq(fd, 0);
    cr_assert(fcntl(fd, F_GETFL) & O_NONBLOCK);
    cr_assert(fcntl(fd, F_GETFD) & FD_CLOEXEC);
    return fd;
}

static void wait_readable(int fd)
{
    struct pollfd p = { .fd = fd, .events = POLLIN };
    cr_assert_eq(poll(&p, 1, 10000), 1, "no inotify event within 10 s");
}

Test(source, watcher_marks_the_files_a_child_opened, .init = setup, .fini = teardown,
     .timeout = 30)
{
    make_mixed_tree();
    struct source_index idx;
    list_ok(&idx);
    int fd = watch_ok(&idx);

    pid_t pid = test_fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        static const char *const opened[] = { "a.txt", "dir one/nested/deeper/x.bin",
                                              "new\nline" };
        for (size_t i = 0; i < 3; i++) {
            int f = open(at(opened[i]), O_RDONLY);
            if (f < 0)
                _exit(1);
            close(f);
        }
        _exit(0);
    }
    cr_assert_eq(wait_child(pid), 0);
    /* A program that is not us, as rclone is not. */
    pid = test_fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        int null = open("/dev/null", O_WRONLY);
        if (null < 0 || dup2(null, STDOUT_FILENO) < 0)
            _exit(2);
        execlp("cat", "cat", at("ünïcødé/日本語 ファイル.txt"), (char *)NULL);
        _exit(3);
    }
    cr_assert_eq(wait_child(pid), 0);

    wait_readable(fd);
    cr_assert_eq(source_watch_drain(&idx), 0);
    cr_assert_eq(idx.opened_files, 4);
    struct collected c = { 0 };
    source_foreach(&idx, SOURCE_OPENED, 0, collect, &c);
    cr_assert_eq(c.count, 4);
    cr_assert(collected_has(&c, "a.txt"));
    cr_assert(collected_has(&c, "dir one/nested/deeper/x.bin"));
    cr_assert(collected_has(&c, "new␊line"));
    cr_assert(collected_has(&c, "ünïcødé/日本語 ファイル.txt"));
    cr_assert_eq(find(&idx, "dir one/file with spaces.mkv")->flags, 0);
    cr_assert_eq(find(&idx, "big.img")->flags, 0);
    /* Nothing pending is not an error. */
    cr_assert_eq(source_watch_drain(&idx), 0);
    cr_assert_eq(source_reconcile_flags(&idx), SOURCE_OPENED | SOURCE_IN_FLIGHT);
    source_free(&idx);
}

/* rclone stats a file when it reaches it, long after the listing: a listed file written to
 * since, or replaced under its name, is marked, so its Copied line is not counted at the
 * listed size. Reading a file is no change. */
Test(source, watcher_marks_listed_files_written_or_replaced_after_the_listing, .init = setup,
     .fini = teardown, .timeout = 30)
{
    make_mixed_tree();
    struct source_index idx;
    list_ok(&idx);
    int fd = watch_ok(&idx);

    pid_t pid = test_fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        int a = open(at("a.txt"), O_WRONLY | O_APPEND);
        int n = open(at("dir one/replacement"), O_WRONLY | O_CREAT, 0644);
        int r = open(at("dir one/nested/deeper/x.bin"), O_RDONLY);
        if (a < 0 || n < 0 || r < 0 || write(a, "more", 4) != 4 || write(n, "x", 1) != 1)
            _exit(1);
        close(a);
        close(n);
        close(r);
        if (rename(at("dir one/replacement"), at("dir one/file with spaces.mkv")) < 0 ||
            truncate(at("empty"), 0) < 0)
            _exit(2);
        _exit(0);
    }
    cr_assert_eq(wait_child(pid), 0);
    wait_readable(fd);
    cr_assert_eq(source_watch_drain(&idx), 0);
    cr_assert(source_watch_complete(&idx));
    cr_assert(find(&idx, "a.txt")->flags & SOURCE_CHANGED);
    cr_assert(find(&idx, "dir one/file with spaces.mkv")->flags & SOURCE_CHANGED);
    cr_assert(find(&idx, "empty")->flags & SOURCE_CHANGED, "a truncate is a change");
    cr_assert_eq(find(&idx, "dir one/nested/deeper/x.bin")->flags & SOURCE_CHANGED, 0);
    cr_assert_eq(find(&idx, "big.img")->flags, 0);
    /* A change is no open: only what was opened is an in-flight candidate. */
    cr_assert_eq(find(&idx, "dir one/file with spaces.mkv")->flags & SOURCE_OPENED, 0);
    source_free(&idx);
}

Test(source, watcher_ignores_directory_opens_stats_and_unlisted_files, .init = setup,
     .fini = teardown, .timeout = 30)
{
    make_mixed_tree();
    struct source_index idx;
    list_ok(&idx);
    int fd = watch_ok(&idx);

    pid_t pid = test_fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        struct stat st;
        if (stat(at("dir one/file with spaces.mkv"), &st) < 0)
            _exit(1);
        int d = open(at("dir one"), O_RDONLY | O_DIRECTORY);
        int r = open(tree, O_RDONLY | O_DIRECTORY);
        /* Created after the listing, then opened: not an entry, and no harm done. */
        int n = open(at("dir one/late.mkv"), O_WRONLY | O_CREAT, 0644);
        if (d < 0 || r < 0 || n < 0)
            _exit(2);
        close(d);
        close(r);
        close(n);
        _exit(0);
    }
    cr_assert_eq(wait_child(pid), 0);
    wait_readable(fd);
    cr_assert_eq(source_watch_drain(&idx), 0);
    cr_assert_eq(idx.opened_files, 0);
    struct collected c = { 0 };
    cr_assert_eq(source_foreach(&idx, SOURCE_OPENED, 0, collect, &c), 0);
    cr_assert_eq(c.count, 0);
    source_free(&idx);
}

Test(source, watcher_survives_directories_that_go_away, .init = setup, .fini = teardown,
     .timeout = 30)
{
    put_dir("gone-before");
    put_file("gone-before/f", 1);
    put_dir("gone-during");
    put_file("gone-during/g", 2);
    put_file("stays", 3);
    struct source_index idx;
    list_ok(&idx);
    /* Moved away between listing and watching: skipped, not an error. */
    cr_assert_eq(unlink(at("gone-before/f")), 0);
    cr_assert_eq(rmdir(at("gone-before")), 0);
    int fd = watch_ok(&idx);

    /* What rclone move does: read the file, delete it, remove the emptied directory. */
    pid_t pid = test_fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        int f = open(at("gone-during/g"), O_RDONLY);
        if (f < 0)
            _exit(1);
        close(f);
        if (unlink(at("gone-during/g")) < 0 || rmdir(at("gone-during")) < 0)
            _exit(2);
        f = open(at("stays"), O_RDONLY);
        if (f < 0)
            _exit(3);
        close(f);
        _exit(0);
    }
    cr_assert_eq(wait_child(pid), 0);
    wait_readable(fd);
    cr_assert_eq(source_watch_stop(&idx), 0);
    cr_assert(find(&idx, "gone-during/g")->flags & SOURCE_OPENED);
    cr_assert(find(&idx, "stays")->flags & SOURCE_OPENED);
    cr_assert_eq(find(&idx, "gone-before/f")->flags, 0);
    cr_assert_eq(idx.opened_files, 2);
    /* Stopped, the flags stay and the state still says the watch was complete. */
    cr_assert_eq(source_watch_drain(&idx), -EBADF);
    cr_assert_eq(source_reconcile_flags(&idx), SOURCE_OPENED | SOURCE_IN_FLIGHT);
    source_free(&idx);
}

Test(source, watcher_maps_disk_names_to_rclone_names, .init = setup, .fini = teardown,
     .timeout = 30)
{
    put_dir("ctl\x01" "dir");
    put_file("ctl\x01" "dir/tab\tname", 1);
    put_file("x\xfe", 2);
    put_file("x\xff", 3);
    put_file("untouched", 4);
    struct source_index idx;
    list_ok(&idx);
    int fd = watch_ok(&idx);
    pid_t pid = test_fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        int a = open(at("ctl\x01" "dir/tab\tname"), O_RDONLY);
        int b = open(at("x\xfe"), O_RDONLY);
        _exit(a >= 0 && b >= 0 ? 0 : 1);
    }
    cr_assert_eq(wait_child(pid), 0);
    wait_readable(fd);
    cr_assert_eq(source_watch_drain(&idx), 0);
    cr_assert(find(&idx, "ctl␁dir/tab␉name")->flags & SOURCE_OPENED);
    /* The kernel names one of two files rclone cannot tell apart: both become candidates. */
    cr_assert_eq(idx.opened_files, 3);
    cr_assert_eq(find(&idx, "untouched")->flags, 0);
    source_free(&idx);
}

static long read_long(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    long value = -1;
    if (fscanf(f, "%ld", &value) != 1)
        value = -1;
    fclose(f);
    return value;
}

/*
 * A real overflow, without touching the system's limits: a child opens two files in turn more
 * times than the queue holds (alternating, because the kernel merges an event identical to the
 * one before it) while nobody drains.
 */
Test(source, watcher_reports_a_real_queue_overflow, .init = setup, .fini = teardown,
     .timeout = 60)
{
    long queued_max = read_long("/proc/sys/fs/inotify/max_queued_events");
    if (queued_max < 0 || queued_max > (1L << 20))
        cr_skip_test("max_queued_events is %ld: too slow to overflow", queued_max);
    put_file("one", 1);
    put_file("two", 2);
    put_file("never", 3);
    struct source_index idx;
    list_ok(&idx);
    int fd = watch_ok(&idx);

    pid_t pid = test_fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        char one[PATH_MAX * 2], two[PATH_MAX * 2];
        snprintf(one, sizeof one, "%s", at("one"));
        snprintf(two, sizeof two, "%s", at("two"));
        for (long i = 0; i < queued_max + 100; i++) {
            int f = open(i % 2 ? two : one, O_RDONLY);
            if (f < 0)
                _exit(1);
            close(f);
        }
        _exit(0);
    }
    cr_assert_eq(wait_child(pid), 0);
    wait_readable(fd);
    cr_assert_eq(source_watch_drain(&idx), SOURCE_WATCH_OVERFLOW);
    cr_assert(idx.watch_overflowed);
    /* The events before the gap still count. */
    cr_assert(find(&idx, "one")->flags & SOURCE_OPENED);
    cr_assert(find(&idx, "two")->flags & SOURCE_OPENED);
    /* The fallback: every uncounted file is a candidate, "never" included. */
    cr_assert_eq(source_reconcile_flags(&idx), 0);
    source_mark_counted(find(&idx, "one"));
    struct collected c = { 0 };
    source_foreach(&idx, source_reconcile_flags(&idx), SOURCE_COUNTED, collect, &c);
    cr_assert_eq(c.count, 2);
    cr_assert(collected_has(&c, "two"));
    cr_assert(collected_has(&c, "never"));
    /* The queue is empty again: later drains are quiet, the flag stays. */
    cr_assert_eq(source_watch_drain(&idx), 0);
    cr_assert(idx.watch_overflowed);
    cr_assert_eq(source_reconcile_flags(&idx), 0);
    source_free(&idx);
}

/* Appends one inotify record as the kernel lays it out (name NUL-padded to len). */
static size_t put_event(char *buf, size_t at_offset, int wd, uint32_t mask, const char *name,
                        uint32_t padded_len)
{
    struct inotify_event ev = { .wd = wd, .mask = mask, .len = padded_len };
    memcpy(buf + at_offset, &ev, sizeof ev);
    memset(buf + at_offset + sizeof ev, 0, padded_len);
    if (name)
        memcpy(buf + at_offset + sizeof ev, name, strlen(name));
    return at_offset + sizeof ev + padded_len;
}

/* The overflow path without the kernel: the record IN_Q_OVERFLOW arrives as (wd -1, no name),
 * fed at an odd offset to show records need no alignment. */
Test(source, feed_of_a_synthetic_overflow_sets_the_fallback, .init = setup, .fini = teardown,
     .timeout = 30)
{
    put_file("f", 1);
    struct source_index idx;
    list_ok(&idx);
    watch_ok(&idx);
    cr_assert_eq(source_reconcile_flags(&idx), SOURCE_OPENED | SOURCE_IN_FLIGHT);

    char storage[512];
    char *buf = storage + 1;
    size_t len = put_event(buf, 0, -1, IN_Q_OVERFLOW, NULL, 0);
    cr_assert_eq(source_watch_feed(&idx, buf, len), SOURCE_WATCH_OVERFLOW);
    cr_assert(idx.watch_overflowed);
    cr_assert_eq(source_reconcile_flags(&idx), 0);
    source_free(&idx);
}

Test(source, feed_rejects_truncated_records_and_ignores_unknown_watches, .init = setup,
     .fini = teardown, .timeout = 30)
{
    put_file("f", 1);
    struct source_index idx;
    list_ok(&idx);
    watch_ok(&idx);

    char buf[512];
    /* A descriptor this index never got, and one far past its table. */
    size_t len = put_event(buf, 0, 9999, IN_OPEN, "f", 16);
    len = put_event(buf, len, 0, IN_OPEN, "f", 16);
    cr_assert_eq(source_watch_feed(&idx, buf, len), 0);
    cr_assert_eq(idx.opened_files, 0);

    /* Header cut short, then a name cut short. */
    cr_assert_eq(source_watch_feed(&idx, buf, 10), -EINVAL);
    cr_assert_eq(source_watch_feed(&idx, buf, sizeof(struct inotify_event) + 8), -EINVAL);
    cr_assert_eq(source_watch_feed(&idx, buf, 0), 0);
    cr_assert_eq(idx.watch_overflowed, false);
    source_free(&idx);
}

/*
 * fs.inotify.max_user_watches is global; a user namespace has its own limit
 * (/proc/sys/user/max_inotify_watches) that its owner may lower, so the child lowers that.
 */
Test(source, watch_start_reports_too_few_inotify_watches, .init = setup, .fini = teardown,
     .timeout = 30)
{
    put_dir("d1");
    put_dir("d2");
    put_dir("d3");
    put_file("d3/f", 1);
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    pid_t pid = test_fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        close(fds[0]);
        if (unshare(CLONE_NEWUSER) < 0)
            _exit(77);
        int limit = open("/proc/sys/user/max_inotify_watches", O_WRONLY);
        if (limit < 0 || write(limit, "2", 1) != 1)
            _exit(77);
        close(limit);
        struct source_index idx;
        char err[512] = "";
        if (source_list(tree, &idx, err, sizeof err) != 0)
            _exit(1);
        int fd = -1;
        int rc = source_watch_start(&idx, tree, &fd, err, sizeof err);
        if (write(fds[1], err, strlen(err)) < 0)
            _exit(3);
        /* Nothing half-watched is left behind. */
        bool clean = fd == -1 && !idx.watching && !idx.watch_started &&
                     source_reconcile_flags(&idx) == 0 && source_watch_drain(&idx) == -EBADF;
        source_free(&idx);
        _exit(rc == -ENOSPC && clean ? 0 : 1);
    }
    close(fds[1]);
    char msg[512] = "";
    ssize_t n = read(fds[0], msg, sizeof msg - 1);
    close(fds[0]);
    msg[n > 0 ? n : 0] = '\0';
    int code = wait_child(pid);
    if (code == 77)
        cr_skip_test("no user namespace here");
    cr_assert_eq(code, 0, "%s", msg);
    cr_assert_not_null(strstr(msg, "fs.inotify.max_user_watches"), "%s", msg);
    cr_assert_not_null(strstr(msg, "4 directories"), "%s", msg);
}

/* A directory reachable by two paths gets one watch descriptor, so events would name it by one
 * path only: the watcher says it is incomplete instead of missing opens. */
Test(source, watcher_flags_a_directory_reached_by_two_paths, .init = setup, .fini = teardown,
     .timeout = 30)
{
    put_dir("a");
    put_file("a/f", 1);
    put_dir("b");
    pid_t pid = test_fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
            mount(at("a"), at("b"), NULL, MS_BIND, NULL) < 0)
            _exit(77);
        struct source_index idx;
        char err[512] = "";
        int fd;
        if (source_list(tree, &idx, err, sizeof err) != 0 || idx.file_count != 2 ||
            source_watch_start(&idx, tree, &fd, err, sizeof err) != 0)
            _exit(1);
        bool ok = idx.watch_ambiguous && source_reconcile_flags(&idx) == 0;
        source_free(&idx);
        _exit(ok ? 0 : 2);
    }
    int code = wait_child(pid);
    if (code == 77)
        cr_skip_test("no private mount namespace here");
    cr_assert_eq(code, 0);
}

Test(source, watcher_state_before_during_and_after, .init = setup, .fini = teardown,
     .timeout = 30)
{
    put_file("f", 1);
    struct source_index idx;
    list_ok(&idx);
    /* Never started: every uncounted file is a candidate. */
    cr_assert_eq(source_reconcile_flags(&idx), 0);
    cr_assert_eq(source_watch_drain(&idx), -EBADF);
    cr_assert_eq(source_watch_stop(&idx), 0);

    int fd = watch_ok(&idx);
    int again = -1;
    char err[256] = "";
    cr_assert_eq(source_watch_start(&idx, tree, &again, err, sizeof err), -EBUSY);
    cr_assert_eq(again, -1);
    cr_assert(idx.watching);
    cr_assert_eq(source_watch_stop(&idx), 0);
    cr_assert_eq(fcntl(fd, F_GETFD), -1, "the watch fd is still open");
    cr_assert_eq(source_reconcile_flags(&idx), SOURCE_OPENED | SOURCE_IN_FLIGHT);
    source_free(&idx);
}

Test(source, free_is_safe_on_zeroed_and_freed_indexes, .timeout = 30)
{
    struct source_index idx = { 0 };
    source_free(&idx);
    source_free(&idx);
    cr_assert_eq(idx.file_count, 0);
    cr_assert_null(source_find(&idx, "x", 1));
    cr_assert_eq(source_memory_bytes(&idx), 0);
}

Test(source, an_arrived_file_is_removed_only_when_its_name_and_size_still_match, .init = setup,
     .fini = teardown, .timeout = 30)
{
    put_dir("d");
    put_file("d/whole.mkv", 1000);
    put_file("d/grew.mkv", 1200);
    put_file("d/ctl\001name.mkv", 10);
    cr_assert_eq(source_remove_arrived(tree, "d/whole.mkv", 1000, 0, 0), 0);
    struct stat st;
    cr_assert_eq(lstat(at("d/whole.mkv"), &st), -1, "the arrived file is still there");

    cr_assert_eq(source_remove_arrived(tree, "d/grew.mkv", 1000, 0, 0), SOURCE_REMOVE_CHANGED);
    cr_assert_eq(lstat(at("d/grew.mkv"), &st), 0, "a file of another size was removed");

    /* rclone names byte 0x01 U+2401; that symbol could also be the file's real name. */
    cr_assert_eq(source_remove_arrived(tree, "d/ctl\xe2\x90\x81name.mkv", 10, 0, 0),
                 SOURCE_REMOVE_ENCODED);
    cr_assert_eq(lstat(at("d/ctl\001name.mkv"), &st), 0);

    cr_assert_eq(source_remove_arrived(tree, "d/gone.mkv", 5, 0, 0), -ENOENT);
    cr_assert_eq(source_remove_arrived(tree, "d", 4096, 0, 0), SOURCE_REMOVE_CHANGED,
                 "a directory is never removed");
}

Test(source, an_arrived_file_is_removed_only_while_its_modification_time_still_matches,
     .init = setup, .fini = teardown, .timeout = 30)
{
    put_file("new.mkv", 1000);
    struct stat st;
    cr_assert_eq(lstat(at("new.mkv"), &st), 0);
    int64_t mtime = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
    /* The remote's copy is a year older (another version of the same size): kept. */
    int64_t year = 365LL * 24 * 3600 * 1000000000;
    cr_assert_eq(source_remove_arrived(tree, "new.mkv", 1000, mtime - year, 1000000000),
                 SOURCE_REMOVE_CHANGED);
    cr_assert_eq(lstat(at("new.mkv"), &st), 0, "a file of another version was removed");
    /* Within the remote's precision (a second): the same file, removed as move would. */
    cr_assert_eq(source_remove_arrived(tree, "new.mkv", 1000, mtime - 400000000, 1000000000), 0);
    cr_assert_eq(lstat(at("new.mkv"), &st), -1);
}
