#include "source.h"
#include "rclone_name.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

/* Large enough that 350,000 paths take a few dozen mallocs, small enough that a small source
 * does not pay for a big block. */
#define ARENA_BLOCK_BYTES ((size_t)1 << 20)
#define ENTRIES_INITIAL 1024
#define DIRS_INITIAL 64
/* The slot stores entry index + 1 in 32 bits. */
#define FILES_MAX ((size_t)UINT32_MAX - 1)

#define FNV_OFFSET 14695981039346656037ULL
#define FNV_PRIME 1099511628211ULL

/* Opens, and what makes a listed size stale: a write or truncate (IN_MODIFY), another file put
 * under a listed name (IN_CREATE, IN_MOVED_TO). */
#define WATCH_MASK (IN_OPEN | IN_MODIFY | IN_CREATE | IN_MOVED_TO | IN_ONLYDIR)
#define WATCH_CHANGE (IN_MODIFY | IN_CREATE | IN_MOVED_TO)

struct source_arena_block {
    struct source_arena_block *next;
    size_t used;
    size_t cap;
    char data[];
};

struct source_dir {
    const char *path;       /* relative, rclone's form (what entry paths start with); "" = root */
    const char *disk_path;  /* relative, as on disk: for inotify_add_watch and messages */
    uint32_t path_len;
    uint32_t disk_len;
};

struct source_slot {
    uint32_t tag;        /* the hash's high half: most mismatches end without touching the entry */
    uint32_t entry;      /* index + 1; 0 = empty */
};

static void remember_fresh(struct source_index *idx, struct source_entry *e);

/* --- arena and hashing ------------------------------------------------------------------ */

static char *arena_alloc(struct source_index *idx, size_t len)
{
    struct source_arena_block *block = idx->arena;
    if (!block || block->cap - block->used < len) {
        /* The old block's tail is abandoned: at most one path's worth per megabyte. */
        size_t cap = len > ARENA_BLOCK_BYTES ? len : ARENA_BLOCK_BYTES;
        block = malloc(sizeof *block + cap);
        if (!block)
            return NULL;
        block->next = idx->arena;
        block->used = 0;
        block->cap = cap;
        idx->arena = block;
        idx->arena_bytes += sizeof *block + cap;
    }
    char *p = block->data + block->used;
    block->used += len;
    return p;
}

/* FNV-1a: short and streamable, so a directory and a name hash like their joined path.
 * Names come from whoever writes into the source folder, who could make them collide; that
 * costs the worker lookup time, never a wrong answer. */
static uint64_t hash_bytes(uint64_t h, const char *data, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)data[i];
        h *= FNV_PRIME;
    }
    return h;
}

static bool entry_is(const struct source_entry *e, const char *dir, size_t dir_len,
                     const char *name, size_t name_len)
{
    size_t len = dir_len ? dir_len + 1 + name_len : name_len;
    if (e->path_len != len || memcmp(e->path + len - name_len, name, name_len) != 0)
        return false;
    return dir_len == 0 || (memcmp(e->path, dir, dir_len) == 0 && e->path[dir_len] == '/');
}

/*
 * The entries whose path is dir + "/" + name (just name when dir_len is 0), one per call: the
 * first when `after` is NULL, else the one after `after` in probe order. Two entries share a
 * path only when rclone shows two names alike: names differing only in invalid UTF-8 bytes, or
 * "‛" and "‛‛".
 */
static struct source_entry *lookup(struct source_index *idx, const char *dir, size_t dir_len,
                                   const char *name, size_t name_len,
                                   const struct source_entry *after)
{
    if (!idx->slots)
        return NULL;
    uint64_t h = FNV_OFFSET;
    if (dir_len) {
        h = hash_bytes(h, dir, dir_len);
        h = hash_bytes(h, "/", 1);
    }
    h = hash_bytes(h, name, name_len);
    uint32_t tag = (uint32_t)(h >> 32);
    bool passed = after == NULL;
    /* At most 3/4 full, so the probe always meets an empty slot. */
    for (size_t i = (size_t)h & idx->slot_mask;; i = (i + 1) & idx->slot_mask) {
        const struct source_slot *slot = &idx->slots[i];
        if (slot->entry == 0)
            return NULL;
        struct source_entry *e = &idx->entries[slot->entry - 1];
        if (slot->tag != tag || !entry_is(e, dir, dir_len, name, name_len))
            continue;
        if (passed)
            return e;
        passed = e == after;
    }
}

static int build_slots(struct source_index *idx)
{
    size_t count = 8;
    while (count / 4 * 3 < idx->file_count)
        count *= 2;
    struct source_slot *slots = calloc(count, sizeof *slots);
    if (!slots)
        return -ENOMEM;
    size_t mask = count - 1;
    for (size_t n = 0; n < idx->file_count; n++) {
        const struct source_entry *e = &idx->entries[n];
        uint64_t h = hash_bytes(FNV_OFFSET, e->path, e->path_len);
        uint32_t tag = (uint32_t)(h >> 32);
        bool duplicate = false;
        size_t i = (size_t)h & mask;
        for (; slots[i].entry != 0; i = (i + 1) & mask) {
            const struct source_entry *other = &idx->entries[slots[i].entry - 1];
            if (slots[i].tag == tag && !duplicate &&
                entry_is(other, "", 0, e->path, e->path_len))
                duplicate = true;
        }
        if (duplicate)
            idx->shared_names++;
        slots[i].tag = tag;
        slots[i].entry = (uint32_t)(n + 1);
    }
    idx->slots = slots;
    idx->slot_mask = mask;
    return 0;
}

/* --- messages --------------------------------------------------------------------------- */

struct message {
    char *buf;
    size_t cap;
    size_t len;
};

/* Appends up to the buffer's end; control bytes become '?' when they come from a name, so a
 * name holding a newline still makes a one-line message. */
static void message_put(struct message *m, const char *s, size_t n, bool from_name)
{
    if (m->cap == 0)
        return;
    for (size_t i = 0; i < n && m->len + 1 < m->cap; i++) {
        unsigned char c = (unsigned char)s[i];
        m->buf[m->len++] = from_name && (c < 0x20 || c == 0x7f) ? '?' : (char)c;
    }
    m->buf[m->len] = '\0';
}

static void message_str(struct message *m, const char *s)
{
    message_put(m, s, strlen(s), false);
}

/* "<what> <root>/<dir>/<name>: <errno text>"; dir and name may be empty. */
static void format_error(char *err, size_t err_len, const char *what, const char *root,
                         const char *dir, size_t dir_len, const char *name, int errnum)
{
    struct message m = { .buf = err, .cap = err_len };
    message_str(&m, what);
    message_str(&m, " ");
    size_t root_len = strlen(root);
    while (root_len > 1 && root[root_len - 1] == '/')
        root_len--;
    message_put(&m, root, root_len, true);
    if (dir_len) {
        message_str(&m, "/");
        message_put(&m, dir, dir_len, true);
    }
    if (name && *name) {
        message_str(&m, "/");
        message_put(&m, name, strlen(name), true);
    }
    message_str(&m, ": ");
    message_str(&m, strerror(errnum));
}

/* --- the walk --------------------------------------------------------------------------- */

struct walk {
    struct source_index *idx;
    const char *root;
    char *err;
    size_t err_len;
};

/* The directories from the root down to the one being read, on the walk's own stack. */
struct ancestor {
    dev_t dev;
    ino_t ino;
    const struct ancestor *parent;
};

static int walk_fail(struct walk *w, size_t dir_index, const char *name, const char *what,
                     int errnum)
{
    const struct source_dir *dir = &w->idx->dirs[dir_index];
    format_error(w->err, w->err_len, what, w->root, dir->disk_path, dir->disk_len, name, errnum);
    return -errnum;
}

/* Copies "<dir>/<name>" into the arena. */
static int join_path(struct source_index *idx, const char *dir, size_t dir_len,
                     const char *name, size_t name_len, const char **path, uint32_t *path_len)
{
    size_t len = dir_len ? dir_len + 1 + name_len : name_len;
    if (len >= UINT32_MAX)
        return -ENAMETOOLONG;
    char *p = arena_alloc(idx, len + 1);
    if (!p)
        return -ENOMEM;
    if (dir_len) {
        memcpy(p, dir, dir_len);
        p[dir_len] = '/';
    }
    memcpy(p + len - name_len, name, name_len);
    p[len] = '\0';
    *path = p;
    *path_len = (uint32_t)len;
    return 0;
}

/* "<dir>/<name>" in rclone's form. */
static int join_rclone_path(struct source_index *idx, size_t dir_index, const char *name,
                            const char **path, uint32_t *path_len)
{
    size_t name_len = strlen(name);
    if (name_len > NAME_MAX)
        return -ENAMETOOLONG; /* no filesystem rclone can read hands these out */
    char buf[RCLONE_NAME_MAX];
    size_t encoded_len;
    const char *encoded = rclone_name_of(name, name_len, buf, &encoded_len);
    const struct source_dir *dir = &idx->dirs[dir_index];
    return join_path(idx, dir->path, dir->path_len, encoded, encoded_len, path, path_len);
}

static int add_file(struct walk *w, size_t dir_index, const char *name, int64_t size)
{
    struct source_index *idx = w->idx;
    if (idx->file_count == idx->entry_cap) {
        if (idx->entry_cap >= FILES_MAX)
            return walk_fail(w, dir_index, name, "too many files at", EOVERFLOW);
        size_t cap = idx->entry_cap ? idx->entry_cap * 2 : ENTRIES_INITIAL;
        if (cap > FILES_MAX)
            cap = FILES_MAX;
        struct source_entry *grown = realloc(idx->entries, cap * sizeof *grown);
        if (!grown)
            return walk_fail(w, dir_index, name, "out of memory listing", ENOMEM);
        idx->entries = grown;
        idx->entry_cap = cap;
    }
    struct source_entry *e = &idx->entries[idx->file_count];
    int rc = join_rclone_path(idx, dir_index, name, &e->path, &e->path_len);
    if (rc < 0)
        return walk_fail(w, dir_index, name, "cannot record", -rc);
    e->size = size;
    e->flags = 0;
    idx->file_count++;
    idx->total_bytes += size;
    return 0;
}

static int add_dir(struct walk *w, size_t parent, const char *name, size_t *index)
{
    struct source_index *idx = w->idx;
    if (idx->dir_count == idx->dir_cap) {
        size_t cap = idx->dir_cap * 2;
        struct source_dir *grown = realloc(idx->dirs, cap * sizeof *grown);
        if (!grown)
            return walk_fail(w, parent, name, "out of memory listing", ENOMEM);
        idx->dirs = grown;
        idx->dir_cap = cap;
    }
    struct source_dir *d = &idx->dirs[idx->dir_count];
    const struct source_dir *p = &idx->dirs[parent];
    int rc = join_rclone_path(idx, parent, name, &d->path, &d->path_len);
    if (rc == 0)
        rc = join_path(idx, p->disk_path, p->disk_len, name, strlen(name), &d->disk_path,
                       &d->disk_len);
    if (rc < 0)
        return walk_fail(w, parent, name, "cannot record", -rc);
    *index = idx->dir_count++;
    return 0;
}

/* The root's record: its paths are "" and it has no parent to join with. */
static int add_root(struct source_index *idx)
{
    idx->dirs = malloc(DIRS_INITIAL * sizeof *idx->dirs);
    if (!idx->dirs)
        return -ENOMEM;
    idx->dir_cap = DIRS_INITIAL;
    idx->dirs[0] = (struct source_dir){ .path = "", .disk_path = "" };
    idx->dir_count = 1;
    return 0;
}

static int walk_dir(struct walk *w, int fd, size_t dir_index, const struct ancestor *self);

static int enter_dir(struct walk *w, int parent_fd, size_t parent, const char *name,
                     const struct ancestor *ancestors)
{
    /* O_NOFOLLOW: a directory swapped for a symlink since readdir is not followed. */
    int fd = openat(parent_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT || errno == ENOTDIR || errno == ELOOP) {
            w->idx->vanished++;
            return 0;
        }
        return walk_fail(w, parent, name, "cannot read directory", errno);
    }
    struct stat st;
    if (fstat(fd, &st) < 0) {
        int saved = errno;
        close(fd);
        return walk_fail(w, parent, name, "cannot stat directory", saved);
    }
    for (const struct ancestor *a = ancestors; a; a = a->parent) {
        if (a->dev == st.st_dev && a->ino == st.st_ino) {
            close(fd);
            return walk_fail(w, parent, name, "directory contains itself:", ELOOP);
        }
    }
    size_t index = 0; /* gcc cannot see that add_dir sets it whenever it returns 0 */
    int rc = add_dir(w, parent, name, &index);
    if (rc < 0) {
        close(fd);
        return rc;
    }
    struct ancestor self = { .dev = st.st_dev, .ino = st.st_ino, .parent = ancestors };
    return walk_dir(w, fd, index, &self);
}

static int walk_entry(struct walk *w, int dir_fd, size_t dir_index, const char *name,
                      unsigned char type, const struct ancestor *self)
{
    struct stat st;
    /* d_type spares a stat for directories and symlinks; files need one for their size, and
     * filesystems that leave d_type unknown need one for everything. */
    if (type == DT_REG || type == DT_UNKNOWN) {
        if (fstatat(dir_fd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
            if (errno == ENOENT) {
                w->idx->vanished++;
                return 0;
            }
            return walk_fail(w, dir_index, name, "cannot stat", errno);
        }
        type = S_ISREG(st.st_mode) ? DT_REG : S_ISDIR(st.st_mode) ? DT_DIR
             : S_ISLNK(st.st_mode) ? DT_LNK : DT_UNKNOWN;
    }
    switch (type) {
    case DT_REG:
        return add_file(w, dir_index, name, (int64_t)st.st_size);
    case DT_DIR:
        return enter_dir(w, dir_fd, dir_index, name, self);
    case DT_LNK:
        w->idx->symlinks_skipped++;
        return 0;
    default:
        w->idx->others_skipped++;
        return 0;
    }
}

/* Reads one directory, descending into subdirectories as they come; takes ownership of fd. */
static int walk_dir(struct walk *w, int fd, size_t dir_index, const struct ancestor *self)
{
    DIR *dir = fdopendir(fd);
    if (!dir) {
        int saved = errno;
        close(fd);
        return walk_fail(w, dir_index, NULL, "cannot read directory", saved);
    }
    int rc = 0;
    for (;;) {
        errno = 0;
        struct dirent *de = readdir(dir);
        if (!de) {
            if (errno)
                rc = walk_fail(w, dir_index, NULL, "cannot read directory", errno);
            break;
        }
        const char *name = de->d_name;
        if (name[0] == '.' && (name[1] == '\0' || (name[1] == '.' && name[2] == '\0')))
            continue;
        rc = walk_entry(w, dirfd(dir), dir_index, name, de->d_type, self);
        if (rc < 0)
            break;
    }
    closedir(dir);
    return rc;
}

int source_list(const char *root, struct source_index *out, char *err, size_t err_len)
{
    struct source_index idx = { .watch_fd = -1 };
    struct walk w = { .idx = &idx, .root = root, .err = err, .err_len = err_len };
    const char *what = NULL;
    int fd = -1, rc;
    struct stat st;

    rc = add_root(&idx);
    if (rc < 0) {
        what = "out of memory listing";
        goto out;
    }
    /* The root alone may be a symlink: rclone follows it too. */
    fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        rc = -errno;
        what = "cannot read source directory";
        goto out;
    }
    if (fstat(fd, &st) < 0) {
        rc = -errno;
        what = "cannot stat source directory";
        close(fd);
        goto out;
    }
    struct ancestor top = { .dev = st.st_dev, .ino = st.st_ino, .parent = NULL };
    rc = walk_dir(&w, fd, 0, &top);
    if (rc < 0)
        goto out; /* walk_dir wrote the message */

    if (idx.file_count > 0 && idx.file_count < idx.entry_cap) {
        /* Give back the doubling's slack: up to half the array. */
        struct source_entry *fit = realloc(idx.entries, idx.file_count * sizeof *fit);
        if (fit) {
            idx.entries = fit;
            idx.entry_cap = idx.file_count;
        }
    }
    rc = build_slots(&idx);
    if (rc < 0) {
        what = "out of memory indexing";
        goto out;
    }
    *out = idx;
    return 0;
out:
    if (what)
        format_error(err, err_len, what, root, "", 0, NULL, -rc);
    source_free(&idx);
    return rc;
}

int source_add(struct source_index *idx, const char *path, size_t len, int64_t size)
{
    if (idx->slots || size < 0 || len >= UINT32_MAX)
        return -EINVAL;
    if (idx->file_count == idx->entry_cap) {
        if (idx->entry_cap >= FILES_MAX)
            return -EOVERFLOW;
        size_t cap = idx->entry_cap ? idx->entry_cap * 2 : ENTRIES_INITIAL;
        if (cap > FILES_MAX)
            cap = FILES_MAX;
        struct source_entry *grown = realloc(idx->entries, cap * sizeof *grown);
        if (!grown)
            return -ENOMEM;
        idx->entries = grown;
        idx->entry_cap = cap;
    }
    struct source_entry *e = &idx->entries[idx->file_count];
    int rc = join_path(idx, "", 0, path, len, &e->path, &e->path_len);
    if (rc < 0)
        return rc;
    e->size = size;
    e->flags = 0;
    idx->file_count++;
    idx->total_bytes += size;
    return 0;
}

int source_index_done(struct source_index *idx)
{
    return idx->slots ? -EINVAL : build_slots(idx);
}

/* --- lookups and flags ------------------------------------------------------------------ */

struct source_entry *source_find(struct source_index *idx, const char *path, size_t len)
{
    struct source_entry *first = lookup(idx, "", 0, path, len, NULL);
    /* Files sharing rclone's name are each copied, each under that name: hand out an uncounted
     * one while there is one, so each Copied line counts one of them. */
    for (struct source_entry *e = first; e; e = lookup(idx, "", 0, path, len, e))
        if (!(e->flags & SOURCE_COUNTED))
            return e;
    return first;
}

bool source_mark_counted(struct source_entry *entry)
{
    bool was = (entry->flags & SOURCE_COUNTED) != 0;
    entry->flags |= SOURCE_COUNTED;
    return was;
}

void source_mark_in_flight(struct source_entry *entry)
{
    entry->flags |= SOURCE_IN_FLIGHT;
}

int source_foreach(struct source_index *idx, uint32_t any_of, uint32_t none_of,
                   source_entry_fn fn, void *ctx)
{
    for (size_t i = 0; i < idx->file_count; i++) {
        struct source_entry *e = &idx->entries[i];
        if (any_of && !(e->flags & any_of))
            continue;
        if (e->flags & none_of)
            continue;
        int rc = fn(ctx, e);
        if (rc)
            return rc;
    }
    return 0;
}

/* root/path on disk, or SOURCE_REMOVE_ENCODED. */
static int disk_path(const char *root, const char *path, char *full, size_t len)
{
    int rc = rclone_name_disk_path(root, path, full, len);
    return rc == RCLONE_NAME_ENCODED ? SOURCE_REMOVE_ENCODED : rc;
}

int source_stat(const char *root, const char *path, struct stat *st)
{
    char full[PATH_MAX];
    int rc = disk_path(root, path, full, sizeof(full));
    if (rc != 0)
        return rc;
    return lstat(full, st) < 0 ? -errno : 0;
}

int source_remove_arrived(const char *root, const char *path, int64_t size, int64_t mtime_ns,
                          int64_t mtime_tolerance_ns)
{
    char full[PATH_MAX];
    int rc = disk_path(root, path, full, sizeof(full));
    if (rc != 0)
        return rc;
    struct stat st;
    if (lstat(full, &st) < 0)
        return -errno;
    if (!S_ISREG(st.st_mode) || st.st_size != size)
        return SOURCE_REMOVE_CHANGED;
    if (mtime_tolerance_ns > 0) {
        int64_t local = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
        int64_t apart = local > mtime_ns ? local - mtime_ns : mtime_ns - local;
        if (apart >= mtime_tolerance_ns)
            return SOURCE_REMOVE_CHANGED;
    }
    return unlink(full) < 0 ? -errno : 0;
}

bool source_watch_complete(const struct source_index *idx)
{
    return idx->watch_started && !idx->watch_overflowed && !idx->watch_ambiguous;
}

uint32_t source_reconcile_flags(const struct source_index *idx)
{
    if (!idx->watch_started || idx->watch_overflowed || idx->watch_ambiguous)
        return 0;
    return SOURCE_OPENED | SOURCE_IN_FLIGHT;
}

/* --- the open-watcher ------------------------------------------------------------------- */

static int map_wd(struct source_index *idx, int wd, size_t dir_index)
{
    /* The kernel hands out descriptors counting up from 1, so the array stays about as long
     * as the directory list. */
    size_t slot = (size_t)wd;
    if (slot >= idx->wd_cap) {
        size_t cap = idx->wd_cap ? idx->wd_cap : idx->dir_count + 1;
        while (cap <= slot)
            cap *= 2;
        uint32_t *grown = realloc(idx->dir_of_wd, cap * sizeof *grown);
        if (!grown)
            return -ENOMEM;
        memset(grown + idx->wd_cap, 0, (cap - idx->wd_cap) * sizeof *grown);
        idx->dir_of_wd = grown;
        idx->wd_cap = cap;
    }
    /* The same directory watched again (a bind mount below the root) gets its first
     * descriptor back, and events would name it by one path only. */
    if (idx->dir_of_wd[slot] != 0 && idx->dir_of_wd[slot] != dir_index + 1)
        idx->watch_ambiguous = true;
    idx->dir_of_wd[slot] = (uint32_t)(dir_index + 1);
    return 0;
}

static void unwatch_all(struct source_index *idx)
{
    if (idx->watching)
        close(idx->watch_fd);
    idx->watching = false;
    idx->watch_fd = -1;
    free(idx->dir_of_wd);
    idx->dir_of_wd = NULL;
    idx->wd_cap = 0;
}

int source_watch_start(struct source_index *idx, const char *root, int *fd_out, char *err,
                       size_t err_len)
{
    int fd = -1, rc;
    char *path = NULL;
    bool ambiguous_before = idx->watch_ambiguous;

    if (idx->watching) {
        format_error(err, err_len, "already watching", root, "", 0, NULL, EBUSY);
        return -EBUSY;
    }
    if (idx->dir_count > (size_t)UINT32_MAX - 1) {
        format_error(err, err_len, "cannot watch", root, "", 0, NULL, EOVERFLOW);
        return -EOVERFLOW;
    }
    fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (fd < 0) {
        rc = -errno;
        /* EMFILE is either limit; the sysctl is the one users do not think of. */
        snprintf(err, err_len, "cannot watch the source for opens: inotify_init1: %s%s",
                 strerror(errno), errno == EMFILE ? " (fs.inotify.max_user_instances, or "
                 "the open-file limit)" : "");
        return rc;
    }
    idx->watching = true;
    idx->watch_fd = fd;

    /* One buffer for every "<root>/<dir>": inotify_add_watch has no *at form. */
    size_t root_len = strlen(root), longest = 0;
    for (size_t i = 0; i < idx->dir_count; i++)
        if (idx->dirs[i].disk_len > longest)
            longest = idx->dirs[i].disk_len;
    path = malloc(root_len + 1 + longest + 1);
    if (!path) {
        rc = -ENOMEM;
        format_error(err, err_len, "out of memory watching", root, "", 0, NULL, ENOMEM);
        goto fail;
    }
    memcpy(path, root, root_len);
    for (size_t i = 0; i < idx->dir_count; i++) {
        const struct source_dir *d = &idx->dirs[i];
        uint32_t mask = WATCH_MASK;
        size_t len = root_len;
        if (d->disk_len) {
            path[len++] = '/';
            memcpy(path + len, d->disk_path, d->disk_len);
            len += d->disk_len;
            /* Below the root, a name swapped for a symlink is not followed; the root itself
             * may be a symlink, as in the listing. */
            mask |= IN_DONT_FOLLOW;
        }
        path[len] = '\0';
        int wd = inotify_add_watch(fd, path, mask);
        if (wd < 0) {
            /* Gone since the listing: so are its files, which rclone cannot open. */
            if (errno == ENOENT || errno == ENOTDIR)
                continue;
            rc = -errno;
            if (errno == ENOSPC)
                snprintf(err, err_len, "cannot watch the source for opens: "
                         "fs.inotify.max_user_watches is below the %zu directories to watch",
                         idx->dir_count);
            else
                format_error(err, err_len, "cannot watch", root, d->disk_path, d->disk_len,
                             NULL, errno);
            goto fail;
        }
        rc = map_wd(idx, wd, i);
        if (rc < 0) {
            format_error(err, err_len, "out of memory watching", root, "", 0, NULL, ENOMEM);
            goto fail;
        }
    }
    free(path);
    idx->watch_started = true;
    *fd_out = fd;
    return 0;
fail:
    free(path);
    unwatch_all(idx);
    idx->watch_ambiguous = ambiguous_before;
    return rc;
}

int source_watch_feed(struct source_index *idx, const void *events, size_t len)
{
    const char *p = events;
    const char *end = p + len;
    int result = 0;
    while (p < end) {
        struct inotify_event ev;
        if ((size_t)(end - p) < sizeof ev)
            return -EINVAL;
        memcpy(&ev, p, sizeof ev);
        if ((size_t)(end - p) - sizeof ev < ev.len)
            return -EINVAL;
        const char *name = p + sizeof ev;
        p += sizeof ev + ev.len;

        if (ev.mask & IN_Q_OVERFLOW) {
            idx->watch_overflowed = true;
            result = SOURCE_WATCH_OVERFLOW;
            continue;
        }
        if (ev.wd < 1 || (size_t)ev.wd >= idx->wd_cap || idx->dir_of_wd[ev.wd] == 0)
            continue;
        if (ev.mask & IN_IGNORED) {
            /* The directory is gone (rclone removes emptied ones under move). */
            idx->dir_of_wd[ev.wd] = 0;
            continue;
        }
        /* An open of the watched directory itself has no name; a subdirectory's has IN_ISDIR. */
        if (!(ev.mask & (IN_OPEN | WATCH_CHANGE)) || (ev.mask & IN_ISDIR) || ev.len == 0)
            continue;
        size_t name_len = strnlen(name, ev.len);
        if (name_len == 0 || name_len > NAME_MAX)
            continue;
        char buf[RCLONE_NAME_MAX];
        size_t encoded_len;
        const char *encoded = rclone_name_of(name, name_len, buf, &encoded_len);
        const struct source_dir *dir = &idx->dirs[idx->dir_of_wd[ev.wd] - 1];
        /* Files sharing rclone's name are all marked: the reconcile step wants a superset. */
        struct source_entry *e = NULL;
        while ((e = lookup(idx, dir->path, dir->path_len, encoded, encoded_len, e))) {
            if (ev.mask & WATCH_CHANGE) {
                e->flags |= SOURCE_CHANGED;
                continue;
            }
            if (!(e->flags & SOURCE_OPENED)) {
                e->flags |= SOURCE_OPENED;
                idx->opened_files++;
            }
            /* Again while not known to be rclone's: another process may have been first. */
            if (!(e->flags & (SOURCE_CONFIRMED | SOURCE_COUNTED)))
                remember_fresh(idx, e);
        }
    }
    return result;
}

/* Out of memory only loses the early record in the stage slot; the flag above is kept. */
static void remember_fresh(struct source_index *idx, struct source_entry *e)
{
    if (idx->fresh_taken) {
        idx->fresh_count = 0;
        idx->fresh_taken = 0;
    }
    if (idx->fresh_count && idx->fresh[idx->fresh_count - 1] == e)
        return; /* opened again in a row: once is enough */
    if (idx->fresh_count == idx->fresh_cap) {
        size_t cap = idx->fresh_cap ? idx->fresh_cap * 2 : 64;
        struct source_entry **p = realloc(idx->fresh, cap * sizeof(*p));
        if (!p)
            return;
        idx->fresh = p;
        idx->fresh_cap = cap;
    }
    idx->fresh[idx->fresh_count++] = e;
}

struct source_entry *const *source_take_opened(struct source_index *idx, size_t *count)
{
    *count = idx->fresh_taken ? 0 : idx->fresh_count;
    idx->fresh_taken = 1;
    return idx->fresh;
}

int source_watch_drain(struct source_index *idx)
{
    if (!idx->watching)
        return -EBADF;
    _Alignas(struct inotify_event) char buf[16384];
    int result = 0;
    for (;;) {
        ssize_t n = read(idx->watch_fd, buf, sizeof buf);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN)
                return result;
            return -errno;
        }
        if (n == 0)
            return result;
        int rc = source_watch_feed(idx, buf, (size_t)n);
        if (rc < 0)
            return rc;
        if (rc == SOURCE_WATCH_OVERFLOW)
            result = rc;
    }
}

int source_watch_stop(struct source_index *idx)
{
    if (!idx->watching)
        return 0;
    int rc = source_watch_drain(idx);
    unwatch_all(idx);
    return rc;
}

/* --- the rest --------------------------------------------------------------------------- */

size_t source_memory_bytes(const struct source_index *idx)
{
    size_t slots = idx->slots ? idx->slot_mask + 1 : 0;
    return idx->arena_bytes + idx->entry_cap * sizeof *idx->entries
         + slots * sizeof *idx->slots + idx->dir_cap * sizeof *idx->dirs
         + idx->wd_cap * sizeof *idx->dir_of_wd;
}

void source_free(struct source_index *idx)
{
    unwatch_all(idx);
    struct source_arena_block *block = idx->arena;
    while (block) {
        struct source_arena_block *next = block->next;
        free(block);
        block = next;
    }
    free(idx->entries);
    free(idx->slots);
    free(idx->dirs);
    free(idx->fresh);
    *idx = (struct source_index){ .watch_fd = -1 };
}
