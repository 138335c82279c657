/*
 * rclone does not print a local name as it is on disk. Its local backend decodes the name from
 * the backend's encoding (lib/encoder Base on Linux: NUL, slash and dot names), encodes it in
 * rclone's Standard encoding (which adds control characters and DEL), and Go's JSON encoder
 * then turns each invalid UTF-8 byte into U+FFFD. rclone 1.60 logs "new\nline" as "new␊line".
 * Every name rclone writes (Copied lines, core/stats, lsjson) has that form, so the index is
 * keyed on it. A name without control bytes, DEL, invalid UTF-8, '‛' (U+201B, rclone's quote
 * character), '／', '．' or the symbols U+2400-U+2421 comes out unchanged.
 */
#ifndef CPLOW_RCLONE_NAME_H
#define CPLOW_RCLONE_NAME_H

#include <limits.h>
#include <stddef.h>

/* rclone's form of a name is at most three times as long (a control byte becomes a
 * three-byte symbol), plus room for the few whole-name replacements. */
#define RCLONE_NAME_MAX (3 * NAME_MAX + 16)

/* rclone_name_disk_path: rclone's form holds a rewritten name, whose bytes on disk cannot be
 * told from it. */
#define RCLONE_NAME_ENCODED 1

/* rclone's form of one on-disk name of at most NAME_MAX bytes: the name itself when rclone
 * keeps it, else its rewrite in buf (RCLONE_NAME_MAX bytes). */
const char *rclone_name_of(const char *name, size_t len, char *buf, size_t *out_len);

/* root/path on disk for a path in rclone's form: 0 with full set, RCLONE_NAME_ENCODED, or
 * -ENAMETOOLONG. */
int rclone_name_disk_path(const char *root, const char *path, char *full, size_t len);

#endif
