#include "folder.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "err.h"
#include "utf8.h"

/* readlink() of a /proc fd link is at most a page (the kernel's d_path buffer); anything
 * larger means the path is not one we can use. */
#define LINK_MAX_BYTES ((size_t)64 * 1024)

static void clear_err(char *err, size_t err_len)
{
    if (err && err_len > 0)
        err[0] = '\0';
}

static bool is_dot_or_dotdot(const char *name)
{
    return name[0] == '.' && (name[1] == '\0' || (name[1] == '.' && name[2] == '\0'));
}

/* --- a growing path --------------------------------------------------------------------- */

struct pathbuf {
    char *s;
    size_t len;
    size_t cap;
};

static int pathbuf_reserve(struct pathbuf *p, size_t more)
{
    if (p->len + more + 1 <= p->cap)
        return 0;
    size_t cap = p->cap ? p->cap : 256;
    while (cap < p->len + more + 1)
        cap *= 2;
    char *s = realloc(p->s, cap);
    if (!s)
        return -ENOMEM;
    p->s = s;
    p->cap = cap;
    return 0;
}

static int pathbuf_set(struct pathbuf *p, const char *str, size_t len)
{
    p->len = 0;
    if (pathbuf_reserve(p, len) < 0)
        return -ENOMEM;
    memcpy(p->s, str, len);
    p->len = len;
    p->s[len] = '\0';
    return 0;
}

/* Appends "/name"; the caller restores the old length with pathbuf_cut(). */
static int pathbuf_push(struct pathbuf *p, const char *name)
{
    size_t n = strlen(name);
    if (pathbuf_reserve(p, n + 1) < 0)
        return -ENOMEM;
    p->s[p->len++] = '/';
    memcpy(p->s + p->len, name, n + 1);
    p->len += n;
    return 0;
}

static void pathbuf_cut(struct pathbuf *p, size_t len)
{
    p->len = len;
    p->s[len] = '\0';
}

/* --- an owned string list --------------------------------------------------------------- */

struct strlist {
    char **items;
    size_t count;
    size_t cap;
};

/* Takes ownership of str, freeing it on failure. */
static int strlist_add(struct strlist *l, char *str)
{
    if (!str)
        return -ENOMEM;
    if (l->count == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        char **items = realloc(l->items, cap * sizeof *items);
        if (!items) {
            free(str);
            return -ENOMEM;
        }
        l->items = items;
        l->cap = cap;
    }
    l->items[l->count++] = str;
    return 0;
}

static void strlist_free(struct strlist *l)
{
    for (size_t i = 0; i < l->count; i++)
        free(l->items[i]);
    free(l->items);
    l->items = NULL;
    l->count = l->cap = 0;
}

/* --- size ------------------------------------------------------------------------------- */

/*
 * GNU du hands each --exclude to gnulib's exclude module with EXCLUDE_WILDCARDS and without
 * EXCLUDE_ANCHORED: fnmatch with no flags against the whole path, then against the rest after
 * every '/' not followed by another '/'.
 */
static bool du_excluded(const char *const *patterns, size_t n, const char *path)
{
    for (size_t i = 0; i < n; i++) {
        const char *pattern = patterns[i];
        if (fnmatch(pattern, path, 0) == 0)
            return true;
        for (const char *p = path; *p; p++)
            if (*p == '/' && p[1] != '/' && fnmatch(pattern, p + 1, 0) == 0)
                return true;
    }
    return false;
}

struct size_walk {
    const char *const *excludes;
    size_t n_excludes;
    int64_t min_age_s;
    int64_t now_s;
    struct folder_usage usage;
    struct pathbuf path;       /* du's view: "<root>/<rel>" */
    char *err;
    size_t err_len;
};

/* Something below the root could not be read: counted, the first one described. */
static void size_unreadable(struct size_walk *w, const char *what, int errnum)
{
    if (w->usage.unreadable_count++ == 0)
        err_set(w->err, w->err_len, -errnum, "%s %s: %s", what, w->path.s, strerror(errnum));
}

static void size_count_file(struct size_walk *w, const struct stat *st)
{
    int64_t mtime = (int64_t)st->st_mtim.tv_sec;
    struct folder_usage *u = &w->usage;
    if (w->min_age_s > 0 && w->now_s - mtime < w->min_age_s) {
        u->young_count++;
        u->young_bytes += (int64_t)st->st_size;
        return;
    }
    if (u->file_count == 0 || mtime < u->oldest_mtime_s)
        u->oldest_mtime_s = mtime;
    if (u->file_count == 0 || mtime > u->newest_mtime_s)
        u->newest_mtime_s = mtime;
    u->file_count++;
    u->total_bytes += (int64_t)st->st_size;
}

/* Walks the directory open at dfd (consumed) whose du path is in w->path. Only running out of
 * memory stops the walk. */
static int size_dir(struct size_walk *w, int dfd)
{
    DIR *dir = fdopendir(dfd);
    if (!dir) {
        size_unreadable(w, "opendir", errno);
        close(dfd);
        return 0;
    }
    w->usage.dir_count++;
    int rc = 0;
    size_t dir_len = w->path.len;
    for (;;) {
        errno = 0;
        struct dirent *ent = readdir(dir);
        if (!ent) {
            if (errno != 0)
                size_unreadable(w, "readdir", errno);
            break;
        }
        if (is_dot_or_dotdot(ent->d_name))
            continue;
        if ((rc = pathbuf_push(&w->path, ent->d_name)) < 0)
            break;
        if (du_excluded(w->excludes, w->n_excludes, w->path.s)) {
            w->usage.excluded_count++;
            pathbuf_cut(&w->path, dir_len);
            continue;
        }

        enum { KIND_FILE, KIND_DIR, KIND_OTHER } kind =
            ent->d_type == DT_DIR ? KIND_DIR : ent->d_type == DT_REG ? KIND_FILE : KIND_OTHER;
        struct stat st;
        if (ent->d_type == DT_REG || ent->d_type == DT_UNKNOWN) {
            if (fstatat(dirfd(dir), ent->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
                if (errno == ENOENT)
                    w->usage.vanished_count++;
                else
                    size_unreadable(w, "stat", errno);
                pathbuf_cut(&w->path, dir_len);
                continue;
            }
            kind = S_ISDIR(st.st_mode) ? KIND_DIR : S_ISREG(st.st_mode) ? KIND_FILE : KIND_OTHER;
        }

        if (kind == KIND_FILE) {
            size_count_file(w, &st);
        } else if (kind == KIND_DIR) {
            int fd = openat(dirfd(dir), ent->d_name,
                            O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (fd < 0) {
                /* ELOOP/ENOTDIR: replaced by a symlink or a file since readdir */
                if (errno == ENOENT || errno == ELOOP || errno == ENOTDIR)
                    w->usage.vanished_count++;
                else
                    size_unreadable(w, "open", errno);
            } else if ((rc = size_dir(w, fd)) < 0) {
                break;
            }
        } else {
            w->usage.other_count++;
        }
        pathbuf_cut(&w->path, dir_len);
    }
    closedir(dir);
    return rc;
}

/* root as du prints it: trailing slashes dropped ("/" becomes "", children then "/x"). */
static size_t root_display_len(const char *root)
{
    size_t len = strlen(root);
    while (len > 0 && root[len - 1] == '/')
        len--;
    return len;
}

int folder_size(const char *root, const char *const *excludes, size_t n_excludes,
                int64_t min_age_s, int64_t now_s, struct folder_usage *out, char *err,
                size_t err_len)
{
    struct size_walk w = {
        .excludes = excludes,
        .n_excludes = excludes ? n_excludes : 0,
        .min_age_s = min_age_s,
        .now_s = now_s,
        .err = err,
        .err_len = err_len,
    };
    clear_err(err, err_len);
    int fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        int rc = -errno;
        err_set(err, err_len, -errno, "open %s: %s", root, strerror(errno));
        return rc;
    }
    size_t len = root_display_len(root);
    int rc = pathbuf_set(&w.path, len ? root : "/", len ? len : 1);
    if (rc < 0)
        goto out;
    if (du_excluded(w.excludes, w.n_excludes, w.path.s)) {
        w.usage.root_excluded = true;
        goto done;
    }
    pathbuf_cut(&w.path, len); /* children are "<root>/<name>"; for "/" that is "/<name>" */
    rc = size_dir(&w, fd);
    fd = -1;
    if (rc < 0)
        goto out;
done:
    *out = w.usage;
    rc = 0;
out:
    if (rc == -ENOMEM)
        err_set(err, err_len, -ENOMEM, "walking %s: %s", root, strerror(ENOMEM));
    if (fd >= 0)
        close(fd);
    free(w.path.s);
    return rc;
}

/* --- open files ------------------------------------------------------------------------- */

static bool all_digits(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if (*s < '0' || *s > '9')
            return false;
    return true;
}

/* Whether abs (an absolute path) lies strictly below root (canonical, no trailing '/' except
 * for "/"). */
static bool below_root(const char *root, size_t root_len, const char *abs)
{
    if (root_len == 1 && root[0] == '/')
        return abs[0] == '/' && abs[1] != '\0';
    return strncmp(abs, root, root_len) == 0 && abs[root_len] == '/' && abs[root_len + 1] != '\0';
}

/* readlinkat into *buf (grown as needed); returns the length or -errno. */
static ssize_t read_link(int dfd, const char *name, char **buf, size_t *cap)
{
    for (;;) {
        ssize_t n = readlinkat(dfd, name, *buf, *cap);
        if (n < 0)
            return -errno;
        if ((size_t)n < *cap) {
            (*buf)[n] = '\0';
            return n;
        }
        if (*cap >= LINK_MAX_BYTES)
            return -ENAMETOOLONG;
        char *bigger = realloc(*buf, *cap * 2);
        if (!bigger)
            return -ENOMEM;
        *buf = bigger;
        *cap *= 2;
    }
}

/* Adds the open regular files below root of one process. Returns 0, or -ENOMEM. */
static int scan_process(int proc_fd, const char *pid, const char *root, size_t root_len,
                        struct strlist *found, struct folder_open *o, char **link, size_t *cap)
{
    char fd_dir[NAME_MAX + sizeof "/fd"];
    snprintf(fd_dir, sizeof fd_dir, "%s/fd", pid);
    int dfd = openat(proc_fd, fd_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) {
        if (errno == EACCES || errno == EPERM)
            o->procs_denied++;
        return 0; /* otherwise the process is gone */
    }
    DIR *dir = fdopendir(dfd);
    if (!dir) {
        close(dfd);
        return 0;
    }
    int rc = 0;
    bool denied = false;
    struct dirent *ent;
    while ((ent = readdir(dir)) != NULL) {
        if (!all_digits(ent->d_name))
            continue;
        ssize_t n = read_link(dirfd(dir), ent->d_name, link, cap);
        if (n == -ENOMEM) {
            rc = -ENOMEM;
            break;
        }
        if (n < 0) {
            /* ENOENT: the descriptor was closed meanwhile; EACCES: ptrace rules said no */
            if (n == -EACCES || n == -EPERM)
                denied = true;
            continue;
        }
        if (!below_root(root, root_len, *link))
            continue;
        /* Follows the magic link to the file itself: its type, and whether it still has a
         * name (a deleted file reads back as "<path> (deleted)"). */
        struct stat st;
        if (fstatat(dirfd(dir), ent->d_name, &st, 0) < 0 || !S_ISREG(st.st_mode) ||
            st.st_nlink == 0)
            continue;
        if ((rc = strlist_add(found, strdup(*link))) < 0)
            break;
    }
    closedir(dir);
    if (denied)
        o->procs_denied++;
    else
        o->procs_scanned++;
    return rc;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int folder_open_files(const char *root, struct folder_open *out, char *err, size_t err_len)
{
    struct folder_open o = {0};
    struct strlist found = {0};
    DIR *proc = NULL;
    size_t cap = PATH_MAX;
    char *link = malloc(cap);
    int rc = -ENOMEM;

    clear_err(err, err_len);
    if (!link) {
        err_set(err, err_len, -ENOMEM, "scanning /proc: %s", strerror(ENOMEM));
        goto out;
    }
    o.root = realpath(root, NULL);
    if (!o.root) {
        rc = -errno;
        err_set(err, err_len, -errno, "realpath %s: %s", root, strerror(errno));
        goto out;
    }
    size_t root_len = strlen(o.root);
    proc = opendir("/proc");
    if (!proc) {
        rc = -errno;
        err_set(err, err_len, -errno, "opendir /proc: %s", strerror(errno));
        goto out;
    }
    for (;;) {
        errno = 0;
        struct dirent *ent = readdir(proc);
        if (!ent) {
            if (errno != 0) {
                rc = -errno;
                err_set(err, err_len, -errno, "readdir /proc: %s", strerror(errno));
                goto out;
            }
            break;
        }
        if (!all_digits(ent->d_name))
            continue;
        rc = scan_process(dirfd(proc), ent->d_name, o.root, root_len, &found, &o, &link, &cap);
        if (rc < 0) {
            err_set(err, err_len, rc, "scanning /proc: %s", strerror(-rc));
            goto out;
        }
    }

    /* One file open in several descriptors or processes is one entry. */
    if (found.count > 0)
        qsort(found.items, found.count, sizeof *found.items, cmp_str);
    size_t kept = 0;
    for (size_t i = 0; i < found.count; i++) {
        if (kept > 0 && strcmp(found.items[kept - 1], found.items[i]) == 0) {
            free(found.items[i]);
            continue;
        }
        found.items[kept++] = found.items[i];
    }
    o.paths = found.items;
    o.count = kept;
    found = (struct strlist){0};
    *out = o;
    o.root = NULL;
    rc = 0;
out:
    if (proc)
        closedir(proc);
    free(link);
    free(o.root);
    strlist_free(&found);
    return rc;
}

/* path as stored in o: absolute paths stand as they are, relative ones are joined to root.
 * Returns path itself, or *joined (malloc'd), or NULL when memory runs out. */
static const char *absolute_path(const struct folder_open *o, const char *path, char **joined)
{
    *joined = NULL;
    if (path[0] == '/')
        return path;
    size_t root_len = strlen(o->root);
    bool slash = !(root_len == 1 && o->root[0] == '/');
    size_t n = root_len + slash + strlen(path) + 1;
    if (!(*joined = malloc(n)))
        return NULL;
    snprintf(*joined, n, "%s%s%s", o->root, slash ? "/" : "", path);
    return *joined;
}

static bool contains_abs(const struct folder_open *o, const char *abs)
{
    return o->count > 0 &&
           bsearch(&abs, o->paths, o->count, sizeof *o->paths, cmp_str) != NULL;
}

bool folder_open_contains(const struct folder_open *o, const char *path)
{
    if (!o->root)
        return false;
    char *joined;
    const char *abs = absolute_path(o, path, &joined);
    bool found = abs && contains_abs(o, abs);
    free(joined);
    return found;
}

static bool kept_by_opened_excludes(const char *abs, const char *const *opened_excludes,
                                    size_t n)
{
    for (size_t i = 0; opened_excludes && i < n; i++)
        if (strcasestr(abs, opened_excludes[i]) != NULL)
            return true;
    return false;
}

bool folder_open_excluded(const struct folder_open *o, const char *path,
                          const char *const *opened_excludes, size_t n)
{
    if (!o->root)
        return false;
    char *joined;
    const char *abs = absolute_path(o, path, &joined);
    /* Out of memory: answer "excluded", the side that never uploads a file being written. */
    bool excluded = !abs || (contains_abs(o, abs) &&
                             !kept_by_opened_excludes(abs, opened_excludes, n));
    free(joined);
    return excluded;
}

void folder_open_free(struct folder_open *o)
{
    if (!o)
        return;
    for (size_t i = 0; i < o->count; i++)
        free(o->paths[i]);
    free(o->paths);
    free(o->root);
    memset(o, 0, sizeof *o);
}

/* --- rclone exclude patterns ------------------------------------------------------------ */

/* Go's unicode.IsSpace, which strings.TrimSpace uses on each filter-file line. */
static bool go_is_space(uint32_t r)
{
    switch (r) {
    case '\t': case '\n': case '\v': case '\f': case '\r': case ' ':
    case 0x85: case 0xA0: case 0x1680: case 0x2028: case 0x2029: case 0x202F: case 0x205F:
    case 0x3000:
        return true;
    default:
        return r >= 0x2000 && r <= 0x200A;
    }
}

int folder_rclone_pattern(const char *rel_path, char **out)
{
    size_t n = strlen(rel_path);
    if (n == 0)
        return -EINVAL;
    /* Worst cases per input byte: a control byte's 3-byte symbol, "\x" for a glob character;
     * plus '/', the final "[ ]" brackets and NUL. */
    char *pattern = malloc(3 * n + 4);
    if (!pattern)
        return -ENOMEM;
    size_t o = 0;
    pattern[o++] = '/';
    const unsigned char *s = (const unsigned char *)rel_path;
    bool last_was_star = false;
    for (size_t i = 0; i < n;) {
        uint32_t r;
        size_t len = utf8_decode_go(s + i, n - i, &r);
        bool invalid = r == UTF8_RUNE_ERROR && len == 1;
        if (invalid || r == 0x201B || (r >= 0x2400 && r <= 0x2421)) {
            /* one '*' for a run of them: "**" would let the match cross a '/' */
            if (!last_was_star)
                pattern[o++] = '*';
            last_was_star = true;
            i += len;
            continue;
        }
        last_was_star = false;
        if (r < 0x20) {
            o += utf8_encode(0x2400 + r, pattern + o);
        } else if (r == 0x7F) {
            o += utf8_encode(0x2421, pattern + o);
        } else if (r < 0x80 && strchr("*?[]{}\\", (int)r)) {
            pattern[o++] = '\\';
            pattern[o++] = (char)r;
        } else if (i + len == n && go_is_space(r)) {
            pattern[o++] = '[';
            o += utf8_encode(r, pattern + o);
            pattern[o++] = ']';
        } else {
            memcpy(pattern + o, s + i, len);
            o += len;
        }
        i += len;
    }
    pattern[o] = '\0';
    *out = pattern;
    return 0;
}

int folder_open_exclude_patterns(const struct folder_open *o,
                                 const char *const *opened_excludes, size_t n,
                                 struct folder_patterns *out)
{
    struct strlist list = {0};
    size_t root_len = o->root ? strlen(o->root) : 0;
    /* below "/", the relative path starts right after the root's only '/' */
    size_t skip = root_len == 1 ? 1 : root_len + 1;
    for (size_t i = 0; i < o->count; i++) {
        const char *abs = o->paths[i];
        if (kept_by_opened_excludes(abs, opened_excludes, n))
            continue;
        char *pattern;
        int rc = folder_rclone_pattern(abs + skip, &pattern);
        if (rc == 0)
            rc = strlist_add(&list, pattern);
        if (rc < 0) {
            strlist_free(&list);
            return rc;
        }
    }
    out->items = list.items;
    out->count = list.count;
    return 0;
}

void folder_patterns_free(struct folder_patterns *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->count; i++)
        free(p->items[i]);
    free(p->items);
    p->items = NULL;
    p->count = 0;
}

/* --- schedule --------------------------------------------------------------------------- */

int folder_parse_hhmm(const char *s, int *minutes)
{
    if (!s)
        return -EINVAL;
    for (int i = 0; i < 5; i++) {
        bool digit = s[i] >= '0' && s[i] <= '9';
        if (i == 2 ? s[i] != ':' : !digit)
            return -EINVAL; /* also stops at a NUL before the fifth character */
    }
    if (s[5] != '\0')
        return -EINVAL;
    int hours = (s[0] - '0') * 10 + (s[1] - '0');
    int mins = (s[3] - '0') * 10 + (s[4] - '0');
    if (hours > 23 || mins > 59)
        return -EINVAL;
    *minutes = hours * 60 + mins;
    return 0;
}

bool folder_schedule_allows(const char *from_hhmm, const char *to_hhmm, int minutes_of_day_now)
{
    int from, until;
    if (folder_parse_hhmm(from_hhmm, &from) < 0 || folder_parse_hhmm(to_hhmm, &until) < 0)
        return false;
    return folder_schedule_allows_minutes(from, until, minutes_of_day_now);
}

bool folder_schedule_allows_minutes(int from_min, int until_min, int minutes_of_day_now)
{
    const int day = 24 * 60;
    if (from_min < 0 || from_min >= day || until_min < 0 || until_min >= day ||
        minutes_of_day_now < 0 || minutes_of_day_now >= day)
        return false;
    if (from_min == until_min)
        return true;
    if (from_min < until_min)
        return minutes_of_day_now >= from_min && minutes_of_day_now < until_min;
    return minutes_of_day_now >= from_min || minutes_of_day_now < until_min;
}

int folder_minute_of_day(int64_t now_s)
{
    time_t t = (time_t)now_s;
    struct tm tm;
    if (!localtime_r(&t, &tm))
        return -1;
    return tm.tm_hour * 60 + tm.tm_min;
}

/* --- empty directories ------------------------------------------------------------------ */

struct rm_walk {
    const char *root;
    int min_depth;
    struct pathbuf path;       /* relative to root; "" at the root */
    struct strlist removed;
    size_t failed_count;
    char *err;
    size_t err_len;
};

/* Something could not be read or removed: counted, the first one described as
 * "<what> <root>/<rel>[/<name>]". */
static void rm_failed(struct rm_walk *w, const char *what, const char *name, int errnum)
{
    if (w->failed_count++ == 0)
        err_set(w->err, w->err_len, -errnum, "%s %s%s%s%s%s: %s", what, w->root,
                w->path.len ? "/" : "", w->path.s, *name ? "/" : "", name, strerror(errnum));
}

/* Pushes name onto the relative path (no leading '/' at the root). */
static int rm_push(struct rm_walk *w, const char *name)
{
    if (w->path.len == 0)
        return pathbuf_set(&w->path, name, strlen(name));
    return pathbuf_push(&w->path, name);
}

/*
 * Empties the directory open at dfd (consumed, at `depth`) of the empty directories below it,
 * deepest first, and says whether it is now empty itself. Returns 0, or -ENOMEM.
 */
static int rm_dir(struct rm_walk *w, int dfd, int depth, bool *now_empty)
{
    DIR *dir = fdopendir(dfd);
    *now_empty = false;
    if (!dir) {
        rm_failed(w, "opendir", "", errno);
        close(dfd);
        return 0;
    }
    bool holds = false; /* something here stays */
    int rc = 0;
    size_t dir_len = w->path.len;
    for (;;) {
        errno = 0;
        struct dirent *ent = readdir(dir);
        if (!ent) {
            if (errno != 0) {
                rm_failed(w, "readdir", "", errno);
                holds = true;
            }
            break;
        }
        if (is_dot_or_dotdot(ent->d_name))
            continue;
        bool is_dir = ent->d_type == DT_DIR;
        if (ent->d_type == DT_UNKNOWN) {
            struct stat st;
            if (fstatat(dirfd(dir), ent->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
                if (errno != ENOENT) {
                    rm_failed(w, "stat", ent->d_name, errno);
                    holds = true;
                }
                continue;
            }
            is_dir = S_ISDIR(st.st_mode);
        }
        if (!is_dir) {
            holds = true; /* a file, hidden or not, a symlink, a fifo... */
            continue;
        }
        int fd = openat(dirfd(dir), ent->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0) {
            if (errno == ELOOP || errno == ENOTDIR)
                holds = true; /* replaced by a symlink or a file since readdir */
            else if (errno != ENOENT) {
                rm_failed(w, "open", ent->d_name, errno);
                holds = true;
            }
            continue;
        }
        if ((rc = rm_push(w, ent->d_name)) < 0) {
            close(fd);
            break;
        }
        bool child_empty;
        rc = rm_dir(w, fd, depth + 1, &child_empty);
        if (rc < 0)
            break;
        if (!child_empty || depth + 1 < w->min_depth) {
            holds = true;
        } else if (unlinkat(dirfd(dir), ent->d_name, AT_REMOVEDIR) == 0) {
            if ((rc = strlist_add(&w->removed, strdup(w->path.s))) < 0)
                break;
        } else if (errno != ENOENT) {
            holds = true;
            /* ENOTEMPTY/EEXIST: something arrived meanwhile; EBUSY: a mount point. Both are
             * meant to stay. */
            if (errno != ENOTEMPTY && errno != EEXIST && errno != EBUSY)
                rm_failed(w, "rmdir", "", errno);
        }
        pathbuf_cut(&w->path, dir_len);
    }
    closedir(dir);
    *now_empty = rc == 0 && !holds;
    return rc;
}

int folder_remove_empty_dirs(const char *root, int min_depth, struct folder_removed *out,
                             char *err, size_t err_len)
{
    struct rm_walk w = {
        .root = root,
        .min_depth = min_depth < 1 ? 1 : min_depth,
        .err = err,
        .err_len = err_len,
    };
    clear_err(err, err_len);
    int fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        int rc = -errno;
        err_set(err, err_len, -errno, "open %s: %s", root, strerror(errno));
        return rc;
    }
    int rc = pathbuf_set(&w.path, "", 0);
    if (rc < 0) {
        close(fd);
        goto out;
    }
    bool root_empty;
    rc = rm_dir(&w, fd, 0, &root_empty);
    if (rc < 0)
        goto out;
    out->paths = w.removed.items;
    out->count = w.removed.count;
    out->failed_count = w.failed_count;
    w.removed.items = NULL;
    w.removed.count = 0;
out:
    if (rc == -ENOMEM)
        err_set(err, err_len, -ENOMEM, "removing empty directories below %s: %s", root,
                strerror(ENOMEM));
    strlist_free(&w.removed);
    free(w.path.s);
    return rc;
}

void folder_removed_free(struct folder_removed *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->count; i++)
        free(r->paths[i]);
    free(r->paths);
    memset(r, 0, sizeof *r);
}
