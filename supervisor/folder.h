/*
 * What the planner asks about an upload folder: how much waits in it (cloudplow's max_size_gb
 * check, minus size_excludes, optionally only files old enough), which files some process has
 * open (exclude_open_files / opened_excludes), whether the schedule allows an upload now, and,
 * after a move, which empty directories to delete (remove_empty_dir_depth).
 *
 * Every function is a pure function of the filesystem, /proc and its arguments (the clock is
 * passed in): nothing here logs, and nothing keeps state between calls. A function that can
 * fail returns 0 or a negative errno, writes a one-line message naming the path to err (when
 * err_len > 0), and leaves *out untouched.
 *
 * Walks open each directory relative to its parent's descriptor and never follow a symbolic
 * link below the root (the root itself is followed, as rclone and du follow it). They hold one
 * descriptor per level, so a tree nested deeper than the open-file limit is reported as
 * unreadable below that depth.
 */
#ifndef CPLOW_FOLDER_H
#define CPLOW_FOLDER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* --- size ------------------------------------------------------------------------------- */

/*
 * Owns no memory, so it has no free function: a caller may copy it or drop it.
 */
struct folder_usage {
    int64_t total_bytes;       /* the st_size of every counted file */
    size_t file_count;         /* regular files counted */
    int64_t oldest_mtime_s;    /* among counted files; 0 when none */
    int64_t newest_mtime_s;
    size_t young_count;        /* regular files left out as younger than min_age_s */
    int64_t young_bytes;
    size_t excluded_count;     /* files and directories matched by an exclude (a directory's
                                * contents are not walked, so not counted here) */
    size_t other_count;        /* symlinks, fifos, sockets, devices: never counted */
    size_t dir_count;          /* directories walked, the root included */
    size_t vanished_count;     /* entries gone (or turned into another type) between readdir
                                * and stat/open: rclone moving files away as we walk */
    size_t unreadable_count;   /* directories or entries that could not be read; err describes
                                * the first */
    bool root_excluded;        /* the root itself matched an exclude: nothing counted */
};

/*
 * Sums the sizes of the regular files below root, as cloudplow's `du -s --exclude=P...` check
 * does, without running du.
 *
 * Exclude patterns follow GNU du's --exclude exactly (checked against du 9.1): each pattern is
 * an fnmatch(3) glob with no flags ('*' and '?' match '/' and a leading '.', '\' escapes), and
 * an entry is excluded when the pattern matches its whole path as du sees it ("<root>/<rel>",
 * root as given with trailing slashes removed) or any suffix of that path starting after a '/'.
 * So the path relative to root and the base name are both matched, and so is any tail that
 * reaches into root's own components: with root /mnt/local/Media, the pattern "local/" + "*"
 * excludes everything, in du as here. A matching directory is skipped whole: "downloads/" +
 * "*" (cloudplow's sample) skips what is inside downloads, "downloads" skips it as well, and
 * "downloads/" matches nothing. If root itself matches, du prints nothing and cloudplow reads
 * 0: the result is empty with root_excluded set.
 *
 * With min_age_s > 0, a regular file counts only if now_s - mtime >= min_age_s (whole seconds,
 * the test rclone's --min-age applies), so files still being written wait; the others go to
 * young_count/young_bytes.
 *
 * Differences from du, on purpose: sizes are st_size (what rclone uploads), not allocated
 * blocks rounded up to GiB; directories and symlinks add nothing; a file with several hard
 * links counts once per path, as rclone uploads it once per path. Comparing the result with
 * max_size_gb is the caller's job.
 *
 * Errors below the root do not fail the walk: a vanished entry is counted in vanished_count, an
 * unreadable one in unreadable_count with the first described in err (err is "" when there is
 * none). Returns 0, or a negative errno when root cannot be opened or memory runs out.
 */
int folder_size(const char *root, const char *const *excludes, size_t n_excludes,
                int64_t min_age_s, int64_t now_s, struct folder_usage *out, char *err,
                size_t err_len);

/* --- open files ------------------------------------------------------------------------- */

struct folder_open {
    char *root;             /* realpath(3) of the scanned root, without a trailing '/' except
                             * for "/" itself */
    char **paths;           /* absolute paths of regular files below root that some process has
                             * open, sorted by strcmp, each once */
    size_t count;
    size_t procs_scanned;   /* processes whose descriptor table was read */
    size_t procs_denied;    /* processes whose /proc/<pid>/fd could not be read: another user's
                             * without the privilege to look; their open files are unknown */
};

/*
 * Reads /proc/<pid>/fd/<n> of every visible process (readlink, not lsof) and keeps the regular
 * files below realpath(root). A process or descriptor that goes away mid-scan is skipped; a
 * file deleted while open is skipped (it cannot be uploaded anyway). Only descriptors are seen:
 * a file only mapped into memory is not. Processes in another PID namespace are invisible, and
 * ones in another mount namespace may show paths that mean something else here.
 * A zero-initialised struct may be passed to folder_open_free().
 */
int folder_open_files(const char *root, struct folder_open *out, char *err, size_t err_len);

/* Whether path is in the set. path is absolute (as stored), or relative to o->root. */
bool folder_open_contains(const struct folder_open *o, const char *path);

/*
 * Whether path must be left out of the upload: it is open, and no opened_excludes entry is a
 * substring of its absolute path. cloudplow's semantics: opened_excludes name paths whose open
 * files are still uploaded (a download client's folder, say), compared case-insensitively on
 * the absolute path; here case folding is ASCII only. An empty entry matches every path, as in
 * cloudplow. path is absolute, or relative to o->root.
 */
bool folder_open_excluded(const struct folder_open *o, const char *path,
                          const char *const *opened_excludes, size_t n);

void folder_open_free(struct folder_open *o);

/* --- rclone exclude patterns ------------------------------------------------------------ */

/* An owned list of strings. A zero-initialised list may be passed to folder_patterns_free(). */
struct folder_patterns {
    char **items;
    size_t count;
};

/*
 * One rclone filter pattern matching exactly the file at rel_path (relative to the root rclone
 * is given, no leading '/'), for a --exclude-from file (one pattern per line):
 *   - a leading '/' anchors it at the root, so it cannot match a same-named file deeper down;
 *   - the glob characters * ? [ ] { } and \ get a backslash, as rclone's filter syntax wants;
 *   - a control byte becomes the symbol rclone names it by (U+2401-U+241F, DEL U+2421), since
 *     rclone matches filters against its own form of a name;
 *   - where rclone's form is a quoted sequence ('‛' U+201B, the symbols U+2400-U+2421 already in
 *     the name) or an invalid UTF-8 byte, a '*' stands in: it may also match a sibling that
 *     differs only there, which then waits for the next run rather than being uploaded open;
 *   - a final whitespace character is written as "[ ]": rclone trims whitespace off the ends
 *     of each line it reads, and a class keeps it.
 * Checked against rclone 1.60.1 (`lsf --exclude-from`). Returns 0 or -ENOMEM/-EINVAL (an
 * empty path); *out is malloc'd.
 */
int folder_rclone_pattern(const char *rel_path, char **out);

/*
 * The exclude patterns for every file of o that folder_open_excluded() says to leave out, in
 * o's order. Returns 0 or -ENOMEM.
 */
int folder_open_exclude_patterns(const struct folder_open *o,
                                 const char *const *opened_excludes, size_t n,
                                 struct folder_patterns *out);

void folder_patterns_free(struct folder_patterns *p);

/* --- schedule --------------------------------------------------------------------------- */

/*
 * Strict "HH:MM", 00:00 to 23:59, two digits each, nothing before or after. Returns 0 and
 * *minutes (minutes after midnight), or -EINVAL leaving *minutes untouched.
 */
int folder_parse_hhmm(const char *s, int *minutes);

/*
 * Whether an upload may start at minutes_of_day_now (0-1439): inside [from, until), wrapping
 * past midnight when until < from ("22:00"-"06:00" allows 22:00 to 05:59). from == until allows
 * every minute: a user who writes "00:00"-"00:00" means all day. Not cloudplow's rule, which
 * also allows the until minute itself and, for equal times, only that one minute. A time that
 * does not parse, or a minute outside 0-1439, allows nothing; the config module rejects bad
 * times before they get here.
 */
bool folder_schedule_allows(const char *from_hhmm, const char *to_hhmm, int minutes_of_day_now);

/* The same rule for times already parsed (minutes after midnight, as the config keeps them):
 * what `cplow run` asks. A minute outside 0-1439, in any argument, allows nothing. */
bool folder_schedule_allows_minutes(int from_min, int until_min, int minutes_of_day_now);

/* The local time's minutes after midnight (0-1439) at now_s: schedules are local time, as
 * cloudplow's are (a container sets TZ). -1, which no schedule allows, if it cannot tell. */
int folder_minute_of_day(int64_t now_s);

/* --- empty directories ------------------------------------------------------------------ */

struct folder_removed {
    char **paths;          /* relative to root, in removal order: each after everything below */
    size_t count;
    size_t failed_count;   /* directories that could not be read or removed; err describes the
                            * first */
};

/*
 * cloudplow runs `find <folder> -mindepth <depth> -type d -empty -delete` after an upload; this
 * does the same without find. root is depth 0, its children depth 1. Directories at depth >=
 * min_depth that are empty are removed, deepest first (find's -delete implies -depth), so a
 * directory holding only directories that were removed is removed too. Any entry that is not a
 * directory (a file, a hidden file, a symlink, a fifo) keeps its directory and every ancestor;
 * symbolic links are never followed. root itself is never removed: min_depth < 1 counts as 1,
 * where find -mindepth 0 would delete an empty upload folder the downloader writes into.
 * The kernel's rmdir is the last check, so a file created meanwhile keeps its directory; a
 * mount point (EBUSY) is kept without counting a failure.
 *
 * Returns 0 when the walk completed, even if some directories could not be removed (counted
 * in failed_count, the first described in err, otherwise err is ""); a negative errno when
 * root cannot be opened or memory runs out (what was removed by then stays removed).
 * A zero-initialised struct may be passed to folder_removed_free().
 */
int folder_remove_empty_dirs(const char *root, int min_depth, struct folder_removed *out,
                             char *err, size_t err_len);

void folder_removed_free(struct folder_removed *r);

#endif
