/*
 * The source listing: every regular file below a stage's source folder (relative path → size),
 * taken before rclone starts, and a watcher that records which of those files anything opened
 * while rclone ran.
 *
 * Why: rclone's "Copied (new)" line names a file but carries no size, and under `move` the file
 * is deleted right after its copy. So the worker lists the source first, looks each Copied path
 * up (source_find), adds entry->size to the ledger at once and marks the entry counted
 * (source_mark_counted), which makes a second Copied line for the same path, or a success after
 * a failure, count once. After an abnormal end, the entries opened or seen in flight but never
 * counted are the ones the reconcile step checks on the remote (source_foreach with
 * source_reconcile_flags()).
 *
 * What is listed mirrors rclone's local backend with its defaults:
 *   - regular files only, with st_size at listing time;
 *   - symbolic links (to files or directories) are skipped and counted, as rclone skips them
 *     with a NOTICE unless -L/--copy-links or -l/--links is given: a stage that passes either
 *     flag gets Copied lines for paths not in the listing (source_find returns NULL);
 *   - fifos, sockets and devices are skipped and counted;
 *   - mount points below the root are entered, as rclone does without --one-file-system.
 * An entry's path is the file's name as rclone prints it in its JSON log, core/stats and lsjson,
 * which is not always its bytes on disk: rclone 1.60 turns control bytes 0x01-0x1F into the
 * symbols U+2401-U+241F ("new\nline" is logged as "new␊line") and DEL into U+2421, doubles its
 * quote character '‛' (U+201B) and quotes the symbols it uses, and JSON shows each invalid UTF-8
 * byte as U+FFFD. Every other name, spaces and any valid UTF-8 included, is its bytes as on
 * disk, joined by '/' with no leading "./" or '/'. Names rclone shows alike (differing only in
 * invalid UTF-8 bytes, say) get the same path, counted in shared_names; source_find() hands
 * such files out one per Copied line, uncounted first.
 *
 * The listing is fixed when source_list() returns: a file created after it is not in it even if
 * rclone uploads it, and a file written to after it keeps its listed size, marked
 * SOURCE_CHANGED by the watch (rclone uploads the size it finds when it reaches the file).
 *
 * Memory: one entry (24 bytes) per file, every path string in one arena (the path's bytes plus
 * its NUL), and a hash index of 8-byte slots kept at most 3/4 full: about 40 bytes per file
 * besides the path. Directories are held open one per level while the tree is walked, so a
 * tree nested deeper than the open-file limit fails with EMFILE.
 */
#ifndef CPLOW_SOURCE_H
#define CPLOW_SOURCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

/* Bits of struct source_entry.flags. */
enum source_flag {
    SOURCE_COUNTED = 1u << 0,    /* its size is in the ledger */
    SOURCE_OPENED = 1u << 1,     /* the watcher saw something open it */
    SOURCE_IN_FLIGHT = 1u << 2,  /* rclone's stats listed it as transferring */
    SOURCE_NOTED = 1u << 3,      /* the worker's: recorded in its stage slot's open files */
    SOURCE_CONFIRMED = 1u << 4,  /* the worker's: rclone itself had it open (its descriptors,
                                  * or its transferring list), not only some process */
    SOURCE_HELD = 1u << 5,       /* the worker's: a remote source's file left out of the
                                  * stage (it did not fit the stage's byte budget) */
    SOURCE_CHANGED = 1u << 6,    /* written to, or another file put under its name, since the
                                  * watch began: its listed size is no evidence of what rclone
                                  * uploads (rclone stats a file when it reaches it) */
};

struct source_entry {
    const char *path;    /* relative, rclone's form (see the top); NUL-terminated; lives as
                          * long as the index */
    int64_t size;        /* st_size when listed */
    uint32_t path_len;
    uint32_t flags;      /* enum source_flag bits */
};

struct source_dir;
struct source_slot;
struct source_arena_block;

/*
 * Callers read the totals, the watcher's state and entries[0 .. file_count); everything else is
 * the index's own. A zero-initialised index is empty and may be passed to source_free().
 */
struct source_index {
    size_t file_count;          /* regular files listed */
    int64_t total_bytes;        /* the sum of their sizes */
    size_t dir_count;           /* directories walked, the root included */
    size_t symlinks_skipped;
    size_t others_skipped;      /* fifos, sockets, devices */
    size_t vanished;            /* names gone between readdir() and stat/open: skipped */
    size_t shared_names;        /* files whose path an earlier-listed file already has */
    struct source_entry *entries;  /* in the order the walk met them */

    bool watch_started;         /* source_watch_start() succeeded; stays true after a stop */
    bool watch_overflowed;      /* the kernel dropped events: SOURCE_OPENED is incomplete */
    bool watch_ambiguous;       /* a directory reached by two paths (a bind mount): the
                                 * kernel names only one, so SOURCE_OPENED is incomplete */
    size_t opened_files;        /* entries marked SOURCE_OPENED so far */

    struct source_slot *slots;  /* open addressing, linear probing; a power of two of them */
    size_t slot_mask;
    size_t entry_cap;
    struct source_dir *dirs;
    size_t dir_cap;
    struct source_arena_block *arena;
    size_t arena_bytes;
    bool watching;
    int watch_fd;
    uint32_t *dir_of_wd;        /* watch descriptor → directory index + 1; 0 = none */
    struct source_entry **fresh;   /* newly opened, for source_take_opened() */
    size_t fresh_count, fresh_cap, fresh_taken;
    size_t wd_cap;
};

/*
 * Lists every regular file below root (a directory, or a symlink to one). Returns 0, or a
 * negative errno with a one-line message in err naming the directory or file concerned (control
 * bytes in names shown as '?'):
 *   -ENOENT, -ENOTDIR  root is missing or not a directory;
 *   -EACCES            a directory cannot be read (root's processes are never refused);
 *   -ELOOP             a directory contains itself (a bind mount of an ancestor);
 *   -EMFILE            the tree is nested deeper than the open-file limit;
 *   -ENAMETOOLONG      a name longer than NAME_MAX (no filesystem rclone reads has one);
 *   -ENOMEM, -EOVERFLOW (more than 4 billion files), or whatever readdir/stat reported.
 * A name that vanishes during the walk is skipped and counted in `vanished`. On failure *out is
 * untouched and nothing needs freeing.
 */
int source_list(const char *root, struct source_index *out, char *err, size_t err_len);

/*
 * A listing made elsewhere (a remote source: rclone lsjson's paths, already in rclone's form),
 * into a zeroed index: source_add() once per file, then source_index_done(), after which
 * source_find() and the rest work as on a listed folder (the open-watch excepted). 0, or
 * -EINVAL (done already, a negative size), -ENOMEM, -EOVERFLOW.
 */
int source_add(struct source_index *idx, const char *path, size_t len, int64_t size);
int source_index_done(struct source_index *idx);

/* The entry whose path is exactly these len bytes (no NUL needed), or NULL. O(1). When files
 * share the path, an uncounted one while there is one. */
struct source_entry *source_find(struct source_index *idx, const char *path, size_t len);

/* Marks the entry counted; returns whether it already was, i.e. whether the caller must not
 * add its size again. */
bool source_mark_counted(struct source_entry *entry);

/* Records that rclone's stats listed the file as transferring. */
void source_mark_in_flight(struct source_entry *entry);

/* Called per entry; a nonzero return stops the iteration and is returned by source_foreach. */
typedef int (*source_entry_fn)(void *ctx, struct source_entry *entry);

/*
 * Calls fn for every entry, in listing order, that has at least one of the any_of flags (any_of
 * 0: every entry) and none of the none_of flags. Returns 0, or fn's first nonzero return.
 * The reconcile step's candidates:
 *   source_foreach(idx, source_reconcile_flags(idx), SOURCE_COUNTED, check_on_remote, ctx);
 */
int source_foreach(struct source_index *idx, uint32_t any_of, uint32_t none_of,
                   source_entry_fn fn, void *ctx);

/* Whether the watch has seen every open and change since it started (it started, never
 * overflowed, and watches no directory reached by two paths). */
bool source_watch_complete(const struct source_index *idx);

/*
 * The any_of flags that select the files that may have been in flight: SOURCE_OPENED |
 * SOURCE_IN_FLIGHT when the watcher ran and missed nothing; 0 (every entry) when it never
 * started, overflowed, or watched a directory reached by two paths.
 */
uint32_t source_reconcile_flags(const struct source_index *idx);

/* source_remove_arrived()'s and source_stat()'s returns besides 0 and a negative errno. */
enum source_remove {
    SOURCE_REMOVE_CHANGED = 1,   /* not a regular file of the expected size (and modification
                                  * time) any more: kept */
    SOURCE_REMOVE_ENCODED = 2,   /* rclone's name differs from the bytes on disk: kept */
};

/* lstat of root/path, path in rclone's form: SOURCE_REMOVE_ENCODED when that form holds a
 * symbol rclone substitutes for other bytes (the name on disk cannot be told from it). */
int source_stat(const char *root, const char *path, struct stat *st);

/*
 * Deletes root/path, a file the remote holds whole although rclone never said so (it was
 * stopped between the upload and its own delete), as `move` would have: left in place, the
 * next stage, maybe on another remote, would upload it again. It must still be a regular file
 * of `size` bytes and, when mtime_tolerance_ns > 0, modified less than that far from mtime_ns:
 * the evidence rclone's own move needs to call the remote copy the same file. path is in
 * rclone's form; one holding a symbol rclone substitutes for other bytes is not mapped back,
 * and is kept.
 */
int source_remove_arrived(const char *root, const char *path, int64_t size, int64_t mtime_ns,
                          int64_t mtime_tolerance_ns);

/* --- the open-watcher ------------------------------------------------------------------- */

/* source_watch_drain()'s and source_watch_feed()'s return when the kernel dropped events. */
#define SOURCE_WATCH_OVERFLOW 1

/*
 * Watches every listed directory for opens (inotify IN_OPEN, SOURCE_OPENED) and for changes to
 * listed files (writes, a file put under a listed name: SOURCE_CHANGED) and stores the inotify fd
 * (non-blocking, close-on-exec) in *fd_out for the caller's poll(); POLLIN means "call
 * source_watch_drain()". Call it after source_list() and before rclone starts: the kernel queues
 * every open from then on, so no open is missed however late the queue is drained, up to
 * fs.inotify.max_queued_events (then SOURCE_WATCH_OVERFLOW). The index keeps the fd; it is
 * closed by source_watch_stop() or source_free().
 * root must be the root given to source_list(). A directory gone since the listing is skipped.
 * Returns 0, or a negative errno with a one-line message in err, and then nothing is watched:
 *   -ENOSPC  fs.inotify.max_user_watches is lower than the number of directories;
 *   -EMFILE  fs.inotify.max_user_instances, or the open-file limit, reached;
 *   -EBUSY   already watching.
 * Every failure can be downgraded to a warning: source_reconcile_flags() then selects every
 * uncounted file.
 */
int source_watch_start(struct source_index *idx, const char *root, int *fd_out, char *err,
                       size_t err_len);

/*
 * Reads every pending event and marks the files opened. Returns 0, SOURCE_WATCH_OVERFLOW when
 * the kernel reported dropped events (watch_overflowed stays set; the events around the gap are
 * still applied), -EBADF when not watching, or another negative errno from read().
 */
int source_watch_drain(struct source_index *idx);

/*
 * Applies a buffer of struct inotify_event records as read() from the watch fd (any alignment).
 * source_watch_drain() feeds what it reads through here; tests feed crafted records. Returns 0,
 * SOURCE_WATCH_OVERFLOW when the buffer holds IN_Q_OVERFLOW, or -EINVAL for a truncated record
 * (the records before it are applied).
 */
int source_watch_feed(struct source_index *idx, const void *events, size_t len);

/*
 * The entries opened since the last call (newly, or again while neither SOURCE_CONFIRMED nor
 * SOURCE_COUNTED: a file some other process opened first may be rclone's later), in the order
 * the opens were seen; *count of them. The array is the index's own and valid until the next
 * drain or free. The worker looks for each among rclone's open files, and records the ones it
 * finds in its stage slot, where they outlive the worker.
 */
struct source_entry *const *source_take_opened(struct source_index *idx, size_t *count);

/* Drains what is pending, then closes the watch fd. Returns what the drain returned (0 when not
 * watching). The flags and the watch_* fields stay for the reconcile step. */
int source_watch_stop(struct source_index *idx);

/* --- the rest --------------------------------------------------------------------------- */

/* Bytes the index holds on the heap (arena, entries, slots, directories). */
size_t source_memory_bytes(const struct source_index *idx);

/* Stops the watcher and frees everything; the index is left empty, safe to free again. */
void source_free(struct source_index *idx);

#endif
