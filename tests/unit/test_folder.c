#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "folder.h"
#include "test_util.h"

#define RCLONE "/usr/bin/rclone"

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

static void put_file(const char *rel, size_t size)
{
    int fd = open(at(rel), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    cr_assert_geq(fd, 0, "create %s: %s", rel, strerror(errno));
    char block[4096];
    memset(block, 'x', sizeof block);
    while (size > 0) {
        size_t n = size < sizeof block ? size : sizeof block;
        cr_assert_eq(write(fd, block, n), (ssize_t)n);
        size -= n;
    }
    close(fd);
}

static void set_mtime(const char *rel, time_t mtime_s)
{
    struct timespec times[2] = { { .tv_sec = mtime_s }, { .tv_sec = mtime_s } };
    cr_assert_eq(utimensat(AT_FDCWD, at(rel), times, AT_SYMLINK_NOFOLLOW), 0, "utimensat %s: %s",
                 rel, strerror(errno));
}

static bool exists(const char *rel)
{
    struct stat st;
    return lstat(at(rel), &st) == 0;
}

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

static void setup(void)
{
    snprintf(tree, sizeof tree, "/tmp/cplow-test-folder.XXXXXX");
    cr_assert_not_null(mkdtemp(tree), "mkdtemp: %s", strerror(errno));
}

/* Set by the tests that lower the open-file limit, which nftw needs raised again. */
static struct rlimit saved_nofile;
static bool nofile_lowered;

static void teardown(void)
{
    if (nofile_lowered)
        setrlimit(RLIMIT_NOFILE, &saved_nofile);
    nftw(tree, remove_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* --- size ------------------------------------------------------------------------------- */

static struct folder_usage size_of(const char *rel_root, const char *const *excludes, size_t n,
                                   int64_t min_age_s, int64_t now_s)
{
    struct folder_usage u;
    char err[512] = "unset";
    int rc = folder_size(at(rel_root), excludes, n, min_age_s, now_s, &u, err, sizeof err);
    cr_assert_eq(rc, 0, "folder_size: %d %s", rc, err);
    cr_assert_eq(u.unreadable_count, 0, "unreadable: %s", err);
    cr_assert_str_empty(err);
    return u;
}

/*
 * root/
 *   top.part 100         a/keep 200          a/b/g 300        a/b/f.part 400
 *   a/b/c/deep 500       downloads/x/big 600 downloads/y 700  .hidden 800
 */
static void make_size_tree(void)
{
    put_dir("root");
    put_dir("root/a");
    put_dir("root/a/b");
    put_dir("root/a/b/c");
    put_dir("root/downloads");
    put_dir("root/downloads/x");
    put_file("root/top.part", 100);
    put_file("root/a/keep", 200);
    put_file("root/a/b/g", 300);
    put_file("root/a/b/f.part", 400);
    put_file("root/a/b/c/deep", 500);
    put_file("root/downloads/x/big", 600);
    put_file("root/downloads/y", 700);
    put_file("root/.hidden", 800);
}

#define SIZE_TREE_BYTES (100 + 200 + 300 + 400 + 500 + 600 + 700 + 800)

Test(folder, size_sums_every_regular_file_in_nested_dirs, .init = setup, .fini = teardown,
     .timeout = 10)
{
    make_size_tree();
    cr_assert_eq(symlink("a/keep", at("root/link-to-file")), 0);
    cr_assert_eq(symlink("a", at("root/link-to-dir")), 0);
    cr_assert_eq(mkfifo(at("root/a/pipe"), 0644), 0);

    struct folder_usage u = size_of("root", NULL, 0, 0, 0);
    cr_assert_eq(u.total_bytes, SIZE_TREE_BYTES);
    cr_assert_eq(u.file_count, 8);
    cr_assert_eq(u.dir_count, 6, "root, a, a/b, a/b/c, downloads, downloads/x: %zu", u.dir_count);
    cr_assert_eq(u.other_count, 3, "two symlinks (not followed) and a fifo");
    cr_assert_eq(u.excluded_count, 0);
    cr_assert_eq(u.young_count, 0);
    cr_assert_not(u.root_excluded);
}

Test(folder, size_excludes_match_base_names, .init = setup, .fini = teardown, .timeout = 10)
{
    make_size_tree();
    const char *by_glob[] = { "*.part" };
    struct folder_usage u = size_of("root", by_glob, 1, 0, 0);
    cr_assert_eq(u.total_bytes, SIZE_TREE_BYTES - 100 - 400);
    cr_assert_eq(u.excluded_count, 2);

    const char *by_name[] = { "g", ".hid*" };
    u = size_of("root", by_name, 2, 0, 0);
    cr_assert_eq(u.total_bytes, SIZE_TREE_BYTES - 300 - 800);
    cr_assert_eq(u.file_count, 6);
}

Test(folder, size_excludes_match_path_globs_and_their_tails, .init = setup, .fini = teardown,
     .timeout = 10)
{
    make_size_tree();
    /* cloudplow's sample: what is inside downloads, not downloads itself */
    const char *downloads[] = { "downloads/*" };
    struct folder_usage u = size_of("root", downloads, 1, 0, 0);
    cr_assert_eq(u.total_bytes, SIZE_TREE_BYTES - 600 - 700);
    cr_assert_eq(u.excluded_count, 2, "downloads/x and downloads/y");

    /* '*' crosses '/', and a pattern matches any tail of the path, as in du */
    const char *tail[] = { "b/*" };
    u = size_of("root", tail, 1, 0, 0);
    cr_assert_eq(u.total_bytes, SIZE_TREE_BYTES - 300 - 400 - 500);

    const char *crossing[] = { "a*g" };
    u = size_of("root", crossing, 1, 0, 0);
    cr_assert_eq(u.total_bytes, SIZE_TREE_BYTES - 300, "a/b/g matches a*g");

    /* a trailing slash matches nothing, as in du */
    const char *slash[] = { "downloads/" };
    u = size_of("root", slash, 1, 0, 0);
    cr_assert_eq(u.total_bytes, SIZE_TREE_BYTES);
}

Test(folder, size_excluded_directory_is_skipped_entirely, .init = setup, .fini = teardown,
     .timeout = 10)
{
    make_size_tree();
    const char *skip[] = { "downloads" };
    struct folder_usage u = size_of("root", skip, 1, 0, 0);
    cr_assert_eq(u.total_bytes, SIZE_TREE_BYTES - 600 - 700);
    cr_assert_eq(u.excluded_count, 1, "only the directory itself is matched");
    cr_assert_eq(u.dir_count, 4, "downloads and downloads/x are never opened: %zu", u.dir_count);
}

Test(folder, size_root_matching_an_exclude_counts_nothing, .init = setup, .fini = teardown,
     .timeout = 10)
{
    make_size_tree();
    const char *root_itself[] = { "root" };
    struct folder_usage u = size_of("root", root_itself, 1, 0, 0);
    cr_assert(u.root_excluded);
    cr_assert_eq(u.total_bytes, 0);
    cr_assert_eq(u.file_count, 0);
}

/* Sum of the regular files GNU du lists with the same exclude (du also lists directories). */
static long long du_file_bytes(const char *pattern)
{
    char cmd[PATH_MAX * 3];
    snprintf(cmd, sizeof cmd, "du -a -b --apparent-size --exclude='%s' '%s'", pattern,
             at("root"));
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    long long sum = 0;
    char line[PATH_MAX * 2];
    while (fgets(line, sizeof line, p)) {
        line[strcspn(line, "\n")] = '\0';
        char *tab = strchr(line, '\t');
        cr_assert_not_null(tab, "du line %s", line);
        struct stat st;
        cr_assert_eq(lstat(tab + 1, &st), 0, "lstat %s", tab + 1);
        if (S_ISREG(st.st_mode))
            sum += strtoll(line, NULL, 10);
    }
    cr_assert_eq(pclose(p), 0);
    return sum;
}

Test(folder, size_excludes_agree_with_gnu_du, .init = setup, .fini = teardown, .timeout = 30)
{
    make_size_tree();
    char abs_pattern[PATH_MAX];
    snprintf(abs_pattern, sizeof abs_pattern, "%s/a", at("root"));
    const char *patterns[] = { "*.part", "downloads/*", "downloads", "b/*", "a/b", "a*g",
                               "x/big", "/a/b/g", "[d]own*", "\\downloads", ".*",
                               "root/a", abs_pattern, "c" };
    for (size_t i = 0; i < sizeof patterns / sizeof patterns[0]; i++) {
        struct folder_usage u = size_of("root", &patterns[i], 1, 0, 0);
        cr_expect_eq(u.total_bytes, du_file_bytes(patterns[i]), "pattern %s: %lld", patterns[i],
                     (long long)u.total_bytes);
    }
}

Test(folder, size_min_age_counts_only_files_old_enough, .init = setup, .fini = teardown,
     .timeout = 10)
{
    const int64_t now = 1700000000, min_age = 600;
    put_dir("root");
    put_dir("root/sub");
    put_file("root/old", 1000);
    put_file("root/sub/older", 2000);
    put_file("root/exactly", 3000);
    put_file("root/young", 4000);
    put_file("root/sub/future", 5000);
    set_mtime("root/old", now - 601);
    set_mtime("root/sub/older", now - 7200);
    set_mtime("root/exactly", now - min_age);
    set_mtime("root/young", now - min_age + 1);
    set_mtime("root/sub/future", now + 100);

    struct folder_usage u = size_of("root", NULL, 0, min_age, now);
    cr_assert_eq(u.file_count, 3);
    cr_assert_eq(u.total_bytes, 1000 + 2000 + 3000);
    cr_assert_eq(u.young_count, 2);
    cr_assert_eq(u.young_bytes, 4000 + 5000);
    cr_assert_eq(u.oldest_mtime_s, now - 7200);
    cr_assert_eq(u.newest_mtime_s, now - min_age);

    u = size_of("root", NULL, 0, 0, now);
    cr_assert_eq(u.file_count, 5, "min_age 0 counts everything, future files included");
    cr_assert_eq(u.newest_mtime_s, now + 100);
}

/* A chain root/d0/d1/.../d9 with a file at the bottom, and an open-file limit that lets a walk
 * hold the root and `levels` directories: the next level fails with EMFILE. */
static void make_deep_chain_and_limit_fds(int levels)
{
    char rel[PATH_MAX] = "root";
    put_dir(rel);
    for (int i = 0; i < 10; i++) {
        size_t len = strlen(rel);
        snprintf(rel + len, sizeof rel - len, "/d%d", i);
        put_dir(rel);
    }
    strcat(rel, "/bottom");
    put_file(rel, 5);
    /* Descriptors are handed out lowest first: the walk will get these numbers. */
    int probes[16], highest = -1;
    for (int i = 0; i <= levels; i++) {
        probes[i] = dup(0);
        cr_assert_geq(probes[i], 0);
        if (probes[i] > highest)
            highest = probes[i];
    }
    for (int i = 0; i <= levels; i++)
        close(probes[i]);
    cr_assert_eq(getrlimit(RLIMIT_NOFILE, &saved_nofile), 0);
    struct rlimit lim = saved_nofile;
    lim.rlim_cur = (rlim_t)highest + 1;
    cr_assert_eq(setrlimit(RLIMIT_NOFILE, &lim), 0, "setrlimit: %s", strerror(errno));
    nofile_lowered = true;
}

Test(folder, size_counts_an_unreadable_directory_and_names_it, .init = setup, .fini = teardown,
     .timeout = 10)
{
    put_dir("other");
    put_file("other/f", 1);
    make_deep_chain_and_limit_fds(4);
    struct folder_usage u;
    char err[512] = "";
    int rc = folder_size(at("root"), NULL, 0, 0, 0, &u, err, sizeof err);
    cr_assert_eq(rc, 0, "the walk goes on: %d %s", rc, err);
    cr_assert_eq(u.unreadable_count, 1);
    cr_assert_eq(u.file_count, 0, "the bottom file lies past the unreadable level");
    cr_assert_not_null(strstr(err, "/root/d0/d1/d2/d3/d4"), "%s", err);
    cr_assert_not_null(strstr(err, strerror(EMFILE)), "%s", err);
}

Test(folder, size_of_missing_root_fails_naming_it, .init = setup, .fini = teardown,
     .timeout = 10)
{
    struct folder_usage u = { .total_bytes = 42 };
    char err[512] = "";
    int rc = folder_size(at("nowhere"), NULL, 0, 0, 0, &u, err, sizeof err);
    cr_assert_eq(rc, -ENOENT);
    cr_assert_eq(u.total_bytes, 42, "out untouched on failure");
    cr_assert_not_null(strstr(err, at("nowhere")), "%s", err);
}

/* --- open files ------------------------------------------------------------------------- */

/* A child that opens files, says so, closes them when told (any byte), and exits at EOF.
 * Dies with the test. */
struct holder {
    pid_t pid;
    int from_child;   /* 'o' once the files are open, 'c' once closed */
    int to_child;     /* a byte: close them; EOF: exit */
};

static void read_byte(int fd, char expected)
{
    char c = 0;
    cr_assert_eq(read(fd, &c, 1), 1, "read from the child: %s", strerror(errno));
    cr_assert_eq(c, expected);
}

static struct holder hold_open(const char *const *paths, size_t n, unsigned copies)
{
    int up[2], down[2];
    cr_assert_eq(pipe2(up, O_CLOEXEC), 0);
    cr_assert_eq(pipe2(down, O_CLOEXEC), 0);
    pid_t pid = test_fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        /* Our copy of the parent's ends would keep the pipes from ever reaching EOF. */
        close(up[0]);
        close(down[1]);
        int fds[64];
        size_t count = 0;
        for (size_t i = 0; i < n; i++)
            for (unsigned c = 0; c < copies && count < 64; c++) {
                int fd = open(paths[i], O_RDONLY | O_CLOEXEC);
                if (fd < 0)
                    _exit(2);
                fds[count++] = fd;
            }
        char b = 'o';
        if (write(up[1], &b, 1) != 1)
            _exit(3);
        ssize_t told = read(down[0], &b, 1);
        for (size_t i = 0; i < count; i++)
            close(fds[i]);
        if (told != 1)
            _exit(0); /* EOF: the test is done with us */
        b = 'c';
        if (write(up[1], &b, 1) != 1)
            _exit(4);
        while (read(down[0], &b, 1) > 0)
            ;
        _exit(0);
    }
    close(up[1]);
    close(down[0]);
    struct holder h = { .pid = pid, .from_child = up[0], .to_child = down[1] };
    read_byte(h.from_child, 'o');
    return h;
}

static void holder_close_files(struct holder *h)
{
    char b = 'x';
    cr_assert_eq(write(h->to_child, &b, 1), 1);
    read_byte(h->from_child, 'c');
}

static void holder_end(struct holder *h)
{
    close(h->to_child);
    int status;
    cr_assert_eq(waitpid(h->pid, &status, 0), h->pid);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %d", status);
    close(h->from_child);
}

static struct folder_open open_set(const char *rel_root)
{
    struct folder_open o;
    char err[512] = "unset";
    int rc = folder_open_files(at(rel_root), &o, err, sizeof err);
    cr_assert_eq(rc, 0, "folder_open_files: %d %s", rc, err);
    cr_assert_str_empty(err);
    return o;
}

Test(folder, open_file_of_a_child_is_seen_until_it_closes, .init = setup, .fini = teardown,
     .timeout = 20)
{
    put_dir("root");
    put_dir("root/sub");
    put_file("root/sub/writing.mkv", 10);
    put_file("root/idle.mkv", 10);
    put_file("outside", 10);
    char abs_open[PATH_MAX], abs_outside[PATH_MAX];
    snprintf(abs_open, sizeof abs_open, "%s", at("root/sub/writing.mkv"));
    snprintf(abs_outside, sizeof abs_outside, "%s", at("outside"));
    const char *paths[] = { abs_open, abs_outside };
    struct holder h = hold_open(paths, 2, 3); /* three descriptors each */

    struct folder_open o = open_set("root");
    cr_assert_eq(o.count, 1, "once, though open three times; outside not listed: %zu", o.count);
    cr_assert_str_eq(o.paths[0], abs_open);
    cr_assert(folder_open_contains(&o, abs_open));
    cr_assert(folder_open_contains(&o, "sub/writing.mkv"), "relative to the root");
    cr_assert_not(folder_open_contains(&o, "idle.mkv"));
    cr_assert(folder_open_excluded(&o, "sub/writing.mkv", NULL, 0));
    cr_assert_not(folder_open_excluded(&o, "idle.mkv", NULL, 0));
    cr_assert_geq(o.procs_scanned, 2, "this process and the child at least");
    folder_open_free(&o);

    holder_close_files(&h);
    o = open_set("root");
    cr_assert_eq(o.count, 0, "closed: %zu", o.count);
    cr_assert_not(folder_open_excluded(&o, "sub/writing.mkv", NULL, 0));
    folder_open_free(&o);
    holder_end(&h);
}

Test(folder, open_file_deleted_while_open_is_not_listed, .init = setup, .fini = teardown,
     .timeout = 20)
{
    put_dir("root");
    put_file("root/gone", 10);
    char abs[PATH_MAX];
    snprintf(abs, sizeof abs, "%s", at("root/gone"));
    const char *paths[] = { abs };
    struct holder h = hold_open(paths, 1, 1);
    cr_assert_eq(unlink(abs), 0);
    struct folder_open o = open_set("root");
    cr_assert_eq(o.count, 0, "listed: %s", o.count ? o.paths[0] : "");
    folder_open_free(&o);
    holder_end(&h);
}

Test(folder, opened_excludes_keep_an_open_file_in_the_upload, .init = setup, .fini = teardown,
     .timeout = 20)
{
    put_dir("root");
    put_dir("root/downloads");
    put_dir("root/movies");
    put_file("root/downloads/seeding.mkv", 10);
    put_file("root/movies/writing.mkv", 10);
    char a[PATH_MAX], b[PATH_MAX];
    snprintf(a, sizeof a, "%s", at("root/downloads/seeding.mkv"));
    snprintf(b, sizeof b, "%s", at("root/movies/writing.mkv"));
    const char *paths[] = { a, b };
    struct holder h = hold_open(paths, 2, 1);

    struct folder_open o = open_set("root");
    cr_assert_eq(o.count, 2);
    /* cloudplow compares lower-cased: "/Downloads/" keeps /…/downloads/… in */
    const char *keep[] = { "/Downloads/" };
    cr_assert_not(folder_open_excluded(&o, a, keep, 1));
    cr_assert(folder_open_excluded(&o, b, keep, 1));
    cr_assert(folder_open_excluded(&o, a, NULL, 0), "without opened_excludes it is left out");

    struct folder_patterns p = {0};
    cr_assert_eq(folder_open_exclude_patterns(&o, keep, 1, &p), 0);
    cr_assert_eq(p.count, 1);
    cr_assert_str_eq(p.items[0], "/movies/writing.mkv");
    folder_patterns_free(&p);

    cr_assert_eq(folder_open_exclude_patterns(&o, NULL, 0, &p), 0);
    cr_assert_eq(p.count, 2);
    cr_assert_str_eq(p.items[0], "/downloads/seeding.mkv");
    cr_assert_str_eq(p.items[1], "/movies/writing.mkv");
    folder_patterns_free(&p);
    folder_open_free(&o);
    holder_end(&h);
}

Test(folder, open_files_of_a_missing_root_fail_naming_it, .init = setup, .fini = teardown,
     .timeout = 10)
{
    struct folder_open o = { .count = 7 };
    char err[512] = "";
    cr_assert_eq(folder_open_files(at("nowhere"), &o, err, sizeof err), -ENOENT);
    cr_assert_eq(o.count, 7, "out untouched on failure");
    cr_assert_not_null(strstr(err, at("nowhere")), "%s", err);
}

/* --- rclone patterns -------------------------------------------------------------------- */

Test(folder, patterns_escape_glob_characters_and_anchor_at_the_root, .timeout = 10)
{
    static const struct {
        const char *rel;
        const char *pattern;
    } table[] = {
        { "plain.mkv", "/plain.mkv" },
        { "dir/with space.mkv", "/dir/with space.mkv" },
        { "[brackets] x.mkv", "/\\[brackets\\] x.mkv" },
        { "star*q?.txt", "/star\\*q\\?.txt" },
        { "brace{a,b}.txt", "/brace\\{a,b\\}.txt" },
        { "back\\slash", "/back\\\\slash" },
        { "dots.+()|^$", "/dots.+()|^$" },               /* rclone escapes these itself */
        { "new\nline", "/new\xE2\x90\x8Aline" },         /* rclone's name: new␊line */
        { "del\x7f", "/del\xE2\x90\xA1" },               /* ␡ */
        { "trail ", "/trail[ ]" },                       /* rclone trims line ends */
        { "mid space", "/mid space" },
        { "nbsp\xC2\xA0", "/nbsp[\xC2\xA0]" },
        { "q\xE2\x80\x9Bx", "/q*x" },                    /* ‛ is quoted by rclone */
        { "bad\xFF\xFE" "byte", "/bad*byte" },           /* one star for a run */
        { "\xFF/\xFE", "/*/*" },
        { "ünïcødé/日本語.txt", "/ünïcødé/日本語.txt" },
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        char *pattern = NULL;
        cr_assert_eq(folder_rclone_pattern(table[i].rel, &pattern), 0);
        cr_expect_str_eq(pattern, table[i].pattern, "for %s", table[i].rel);
        free(pattern);
    }
    char *pattern = NULL;
    cr_assert_eq(folder_rclone_pattern("", &pattern), -EINVAL);
    cr_assert_null(pattern);
}

static bool in_list(const char *const *list, size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(list[i], s) == 0)
            return true;
    return false;
}

Test(folder, patterns_make_real_rclone_exclude_exactly_the_open_files, .init = setup,
     .fini = teardown, .timeout = 60)
{
    cr_assert_eq(access(RCLONE, X_OK), 0, RCLONE " is needed");
    put_dir("root");
    put_dir("root/sub dir");
    put_dir("root/deeper");
    /* open ones, each next to a decoy its pattern would catch if it were not escaped/anchored */
    const char *open_rel[] = {
        "with space.mkv", "[brackets] x.mkv", "sub dir/[b] y.mkv", "star*.txt", "q?.txt",
        "brace{a,b}.txt", "back\\slash.txt", "new\nline.txt", "trail ",
    };
    const char *listed[] = {
        "deeper/with space.mkv", "s x.mkv", "sub dir/b y.mkv", "starXYZ.txt", "qZ.txt",
        "bracea.txt", "backslash.txt", "new-line.txt", "trail", "plain.bin",
    };
    const size_t n_open = sizeof open_rel / sizeof open_rel[0];
    const size_t n_listed = sizeof listed / sizeof listed[0];
    char open_abs[sizeof open_rel / sizeof open_rel[0]][PATH_MAX];
    const char *open_paths[sizeof open_rel / sizeof open_rel[0]];
    char rel[PATH_MAX];
    for (size_t i = 0; i < n_open; i++) {
        snprintf(rel, sizeof rel, "root/%s", open_rel[i]);
        put_file(rel, 1);
        snprintf(open_abs[i], sizeof open_abs[i], "%s", at(rel));
        open_paths[i] = open_abs[i];
    }
    for (size_t i = 0; i < n_listed; i++) {
        snprintf(rel, sizeof rel, "root/%s", listed[i]);
        put_file(rel, 1);
    }
    struct holder h = hold_open(open_paths, n_open, 1);
    struct folder_open o = open_set("root");
    cr_assert_eq(o.count, n_open);
    struct folder_patterns p = {0};
    cr_assert_eq(folder_open_exclude_patterns(&o, NULL, 0, &p), 0);
    cr_assert_eq(p.count, n_open);

    FILE *f = fopen(at("excludes"), "w");
    cr_assert_not_null(f);
    for (size_t i = 0; i < p.count; i++)
        fprintf(f, "%s\n", p.items[i]);
    cr_assert_eq(fclose(f), 0);

    char cmd[PATH_MAX * 4];
    snprintf(cmd, sizeof cmd,
             RCLONE " lsf -R --files-only --config /dev/null --exclude-from '%s' '%s' 2>&1",
             at("excludes"), at("root"));
    FILE *ls = popen(cmd, "r");
    cr_assert_not_null(ls);
    char line[PATH_MAX];
    size_t seen = 0;
    while (fgets(line, sizeof line, ls)) {
        line[strcspn(line, "\n")] = '\0';
        cr_expect(in_list(listed, n_listed, line), "rclone lists \"%s\": open or unknown", line);
        seen++;
    }
    cr_assert_eq(pclose(ls), 0, "rclone failed");
    cr_assert_eq(seen, n_listed, "rclone listed %zu of the %zu closed files", seen, n_listed);

    folder_patterns_free(&p);
    folder_open_free(&o);
    holder_end(&h);
}

/* --- schedule --------------------------------------------------------------------------- */

#define HM(hours, minutes) ((hours) * 60 + (minutes))

Test(folder, schedule_table, .timeout = 10)
{
    static const struct {
        const char *from, *until;
        int now;
        bool allowed;
    } table[] = {
        /* normal window: [from, until) */
        { "04:00", "08:00", HM(4, 0), true },
        { "04:00", "08:00", HM(7, 59), true },
        { "04:00", "08:00", HM(8, 0), false },
        { "04:00", "08:00", HM(3, 59), false },
        { "04:00", "08:00", HM(12, 0), false },
        /* wrapping past midnight */
        { "22:00", "06:00", HM(22, 0), true },
        { "22:00", "06:00", HM(23, 59), true },
        { "22:00", "06:00", 0, true },
        { "22:00", "06:00", HM(5, 59), true },
        { "22:00", "06:00", HM(6, 0), false },
        { "22:00", "06:00", HM(21, 59), false },
        { "22:00", "06:00", HM(12, 0), false },
        { "23:59", "00:00", HM(23, 59), true },
        { "23:59", "00:00", 0, false },
        /* equal: always */
        { "00:00", "00:00", 0, true },
        { "00:00", "00:00", HM(23, 59), true },
        { "13:30", "13:30", HM(13, 29), true },
        { "13:30", "13:30", HM(2, 0), true },
        /* whole day but the last minute */
        { "00:00", "23:59", HM(23, 58), true },
        { "00:00", "23:59", HM(23, 59), false },
        /* minutes outside the day, bad times: nothing */
        { "00:00", "00:00", -1, false },
        { "00:00", "00:00", HM(24, 0), false },
        { "4:00", "08:00", HM(5, 0), false },
        { "04:00", "24:00", HM(5, 0), false },
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        cr_expect_eq(folder_schedule_allows(table[i].from, table[i].until, table[i].now),
                     table[i].allowed, "%s-%s at %02d:%02d", table[i].from, table[i].until,
                     table[i].now / 60, table[i].now % 60);
        /* The minutes form is what `cplow run` calls, with the config's parsed times: the
         * same table holds for it. */
        int from, until;
        if (folder_parse_hhmm(table[i].from, &from) == 0 &&
            folder_parse_hhmm(table[i].until, &until) == 0)
            cr_expect_eq(folder_schedule_allows_minutes(from, until, table[i].now),
                         table[i].allowed, "minutes %d-%d at %d", from, until, table[i].now);
    }
}

Test(folder, schedule_minutes_outside_the_day_allow_nothing, .timeout = 10)
{
    /* -1 is the config's "not given"; the supervisor asks only for an enabled schedule,
     * which the config refuses without both times. */
    cr_expect_not(folder_schedule_allows_minutes(-1, HM(6, 0), HM(5, 0)));
    cr_expect_not(folder_schedule_allows_minutes(HM(22, 0), -1, HM(23, 0)));
    cr_expect_not(folder_schedule_allows_minutes(HM(22, 0), HM(24, 0), HM(23, 0)));
    cr_expect_not(folder_schedule_allows_minutes(HM(22, 0), HM(6, 0), -1));
}

/* `cplow run` turns its clock into the local minute of the day: a window that wraps past
 * midnight in local time, with a zone whose offset is not whole hours. */
Test(folder, the_minute_of_day_is_local_time, .timeout = 10)
{
    setenv("TZ", "UTC0", 1);
    tzset();
    const int64_t t = 1767225600 - 60; /* 2025-12-31 23:59:00 UTC */
    cr_assert_eq(folder_minute_of_day(t), HM(23, 59));
    cr_assert_eq(folder_minute_of_day(t + 60), 0);
    setenv("TZ", "IST-5:30", 1); /* POSIX form: UTC+5:30 */
    tzset();
    cr_assert_eq(folder_minute_of_day(t), HM(5, 29));
    cr_assert(folder_schedule_allows_minutes(HM(22, 0), HM(6, 0), folder_minute_of_day(t)));
    cr_assert_not(folder_schedule_allows_minutes(HM(22, 0), HM(6, 0),
                                                 folder_minute_of_day(t + 3600)));
}

Test(folder, hhmm_parses_strictly, .timeout = 10)
{
    int minutes = -7;
    cr_assert_eq(folder_parse_hhmm("00:00", &minutes), 0);
    cr_assert_eq(minutes, 0);
    cr_assert_eq(folder_parse_hhmm("23:59", &minutes), 0);
    cr_assert_eq(minutes, HM(23, 59));
    cr_assert_eq(folder_parse_hhmm("07:05", &minutes), 0);
    cr_assert_eq(minutes, HM(7, 5));

    static const char *const bad[] = {
        "", "0", "4:00", "04:0", "24:00", "23:60", "99:99", "04:00 ", " 04:00", "04-00",
        "04:00:00", "0400", "+4:00", "-4:00", "04:+0", "ab:cd", "04 00", "04:00\n", "１２:００",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        minutes = -7;
        cr_expect_eq(folder_parse_hhmm(bad[i], &minutes), -EINVAL, "\"%s\" parsed", bad[i]);
        cr_expect_eq(minutes, -7, "\"%s\" wrote the out-parameter", bad[i]);
    }
    cr_assert_eq(folder_parse_hhmm(NULL, &minutes), -EINVAL);
}

/* --- empty directories ------------------------------------------------------------------ */

static struct folder_removed remove_empty(const char *rel_root, int min_depth)
{
    struct folder_removed r;
    char err[512] = "unset";
    int rc = folder_remove_empty_dirs(at(rel_root), min_depth, &r, err, sizeof err);
    cr_assert_eq(rc, 0, "folder_remove_empty_dirs: %d %s", rc, err);
    cr_assert_eq(r.failed_count, 0, "failed: %s", err);
    cr_assert_str_empty(err);
    return r;
}

static size_t index_of(const struct folder_removed *r, const char *rel)
{
    for (size_t i = 0; i < r->count; i++)
        if (strcmp(r->paths[i], rel) == 0)
            return i;
    cr_assert_fail("%s not reported as removed", rel);
    return 0;
}

Test(folder, remove_depth_1_removes_empty_chains_deepest_first, .init = setup,
     .fini = teardown, .timeout = 10)
{
    put_dir("root");
    put_dir("root/a");
    put_dir("root/b");
    put_dir("root/b/c");
    put_dir("root/b/c/d");
    put_dir("root/e");
    put_file("root/e/file", 1);
    put_dir("root/e/empty");

    struct folder_removed r = remove_empty("root", 1);
    cr_assert_eq(r.count, 5, "a, b/c/d, b/c, b, e/empty: %zu", r.count);
    cr_assert_lt(index_of(&r, "b/c/d"), index_of(&r, "b/c"));
    cr_assert_lt(index_of(&r, "b/c"), index_of(&r, "b"));
    index_of(&r, "a");
    index_of(&r, "e/empty");
    cr_assert_not(exists("root/a"));
    cr_assert_not(exists("root/b"));
    cr_assert_not(exists("root/e/empty"));
    cr_assert(exists("root/e/file"));
    cr_assert(exists("root"), "the root is never removed");
    folder_removed_free(&r);

    /* Now empty of directories, the root still stays, even at min_depth 0. */
    cr_assert_eq(unlink(at("root/e/file")), 0);
    r = remove_empty("root", 0);
    cr_assert_eq(r.count, 1);
    cr_assert_str_eq(r.paths[0], "e");
    cr_assert(exists("root"));
    folder_removed_free(&r);
}

Test(folder, remove_depth_2_keeps_the_first_level, .init = setup, .fini = teardown,
     .timeout = 10)
{
    put_dir("root");
    put_dir("root/a");
    put_dir("root/b");
    put_dir("root/b/c");
    put_dir("root/b/d");
    put_dir("root/b/d/e");
    put_dir("root/b/d/e/f");

    struct folder_removed r = remove_empty("root", 2);
    cr_assert_eq(r.count, 4, "b/c, b/d/e/f, b/d/e, b/d: %zu", r.count);
    cr_assert_lt(index_of(&r, "b/d/e/f"), index_of(&r, "b/d/e"));
    cr_assert_lt(index_of(&r, "b/d/e"), index_of(&r, "b/d"));
    index_of(&r, "b/c");
    cr_assert(exists("root/a"), "depth 1 stays at min_depth 2");
    cr_assert(exists("root/b"));
    cr_assert_not(exists("root/b/c"));
    cr_assert_not(exists("root/b/d"));
    folder_removed_free(&r);
}

Test(folder, remove_hidden_file_keeps_its_directory_and_ancestors, .init = setup,
     .fini = teardown, .timeout = 10)
{
    put_dir("root");
    put_dir("root/a");
    put_dir("root/a/b");
    put_file("root/a/b/.hidden", 0);
    put_dir("root/a/c");

    struct folder_removed r = remove_empty("root", 1);
    cr_assert_eq(r.count, 1);
    cr_assert_str_eq(r.paths[0], "a/c");
    cr_assert(exists("root/a/b/.hidden"));
    folder_removed_free(&r);
}

Test(folder, remove_does_not_follow_or_remove_a_symlink_to_a_directory, .init = setup,
     .fini = teardown, .timeout = 10)
{
    put_dir("root");
    put_dir("root/a");
    put_dir("root/b");
    put_dir("outside");
    put_dir("outside/empty");
    cr_assert_eq(symlink(at("outside"), at("root/a/link")), 0);
    cr_assert_eq(symlink(at("outside"), at("root/link")), 0);

    struct folder_removed r = remove_empty("root", 1);
    cr_assert_eq(r.count, 1, "only b: %zu", r.count);
    cr_assert_str_eq(r.paths[0], "b");
    cr_assert(exists("root/a/link"), "the link keeps its directory");
    cr_assert(exists("root/link"));
    cr_assert(exists("outside/empty"), "the link's target is not walked");
    folder_removed_free(&r);
}

/* The same tree twice: one cleaned here, one by cloudplow's find command; what is left must be
 * the same. */
Test(folder, remove_agrees_with_find_mindepth_empty_delete, .init = setup, .fini = teardown,
     .timeout = 30)
{
    static const char *const dirs[] = {
        "x", "x/a", "x/a/b", "x/a/b/c", "x/d", "x/d/.h", "x/e", "x/e/f", "x/g", "x/g/h",
        "x/g/h/i", "x/j",
    };
    static const char *const files[] = { "x/d/.h/.keep", "x/e/file", "x/g/top" };
    for (int depth = 1; depth <= 3; depth++) {
        char ours[64], theirs[64], rel[PATH_MAX];
        snprintf(ours, sizeof ours, "ours%d", depth);
        snprintf(theirs, sizeof theirs, "theirs%d", depth);
        const char *roots[] = { ours, theirs };
        for (int t = 0; t < 2; t++) {
            put_dir(roots[t]);
            for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
                snprintf(rel, sizeof rel, "%s/%s", roots[t], dirs[i]);
                put_dir(rel);
            }
            for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
                snprintf(rel, sizeof rel, "%s/%s", roots[t], files[i]);
                put_file(rel, 1);
            }
        }
        struct folder_removed r = remove_empty(ours, depth);
        folder_removed_free(&r);

        char cmd[PATH_MAX * 4];
        snprintf(cmd, sizeof cmd, "find '%s' -mindepth %d -type d -empty -delete", at(theirs),
                 depth);
        cr_assert_eq(system(cmd), 0);
        snprintf(cmd, sizeof cmd,
                 "cd '%s' && find . | sort > ../%s.list && cd '%s' && find . | sort > ../%s.list"
                 " && cmp -s ../%s.list ../%s.list",
                 at(ours), ours, at(theirs), theirs, ours, theirs);
        cr_expect_eq(system(cmd), 0, "trees differ at min_depth %d", depth);
    }
}

Test(folder, remove_keeps_what_it_cannot_read_and_its_ancestors, .init = setup,
     .fini = teardown, .timeout = 10)
{
    make_deep_chain_and_limit_fds(4);
    put_dir("root/empty");
    cr_assert_eq(unlink(at("root/d0/d1/d2/d3/d4/d5/d6/d7/d8/d9/bottom")), 0);
    struct folder_removed r;
    char err[512] = "";
    int rc = folder_remove_empty_dirs(at("root"), 1, &r, err, sizeof err);
    cr_assert_eq(rc, 0, "%d %s", rc, err);
    cr_assert_eq(r.failed_count, 1);
    cr_assert_not_null(strstr(err, "/root/d0/d1/d2/d3/d4"), "%s", err);
    cr_assert_eq(r.count, 1, "only root/empty: %zu", r.count);
    cr_assert_str_eq(r.paths[0], "empty");
    cr_assert(exists("root/d0/d1/d2/d3/d4/d5/d6/d7/d8/d9"), "never looked at: kept");
    folder_removed_free(&r);
}

Test(folder, remove_below_missing_root_fails_naming_it, .init = setup, .fini = teardown,
     .timeout = 10)
{
    struct folder_removed r = { .count = 3 };
    char err[512] = "";
    cr_assert_eq(folder_remove_empty_dirs(at("nowhere"), 1, &r, err, sizeof err), -ENOENT);
    cr_assert_eq(r.count, 3, "out untouched on failure");
    cr_assert_not_null(strstr(err, at("nowhere")), "%s", err);
}
