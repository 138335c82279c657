/*
 * sa_quota_cache.json: the ledger on disk, in the quota fork's shape so its users can migrate:
 *
 *   {"<uploader>": {"<account>": {"bytes": N, "reset_time": S, "first_upload": S, ...}},
 *    "_cplow": {"meta": {"bytes": 0, "reset_time": 0, "first_upload": 0, "format": 2,
 *                        "generation": G, "written_at": S, "window": "fixed", ...}}}
 *
 * Times are Unix seconds with a fraction, as the fork writes them. cplow adds per-row keys
 * ("files", "banned_until", "ban_cause", "updated_at", and "hours" for the rolling window) and
 * the "_cplow" pseudo-uploader; a file without "_cplow" is taken to be the fork's and loads as
 * is. The fork's loader takes every top-level key for an uploader and every value below it for
 * an account's row, so cplow's data is one such row, with the fork's keys, whose window ended
 * long ago: the fork drops it when it loads the file and keeps every real account's bytes.
 * (Format 1 put {"format": 1, ...} straight under "_cplow", where the fork's loader failed on
 * the number and started from zero; cplow still reads it.)
 */
#ifndef CPLOW_LEDGER_FILE_H
#define CPLOW_LEDGER_FILE_H

#include <stddef.h>
#include <stdbool.h>

#include "ledger.h"

#define LEDGER_FILE_FORMAT 2
#define LEDGER_FILE_META_KEY "_cplow"
#define LEDGER_FILE_META_ROW "meta"
#define LEDGER_FILE_ERR_MAX 512

struct ledger_file_row {
	char uploader[LEDGER_UPLOADER_MAX];
	char account[LEDGER_ACCOUNT_MAX];
	struct ledger_usage usage;
};

struct ledger_file {
	int from_fork;            /* no "_cplow" object: the quota fork wrote it */
	unsigned long long generation;
	long long written_at_ms;
	size_t count;
	struct ledger_file_row *rows;
};

/* For a process that renders snapshots again and again (the flusher, the dashboard): keeps
 * freed memory in the process instead of giving it back to the kernel after each render. */
void ledger_file_keep_heap(void);

/* The JSON text of a snapshot; the caller frees it. NULL when out of memory. */
char *ledger_file_render(const struct ledger_copy *c, long long written_at_ms);

/* Writes a snapshot atomically (temp file, fsync, keep the old one as .prev, rename, fsync
 * of the directory). On failure returns -1 with a message in err and leaves the last good file
 * in place. */
int ledger_file_write(const struct ledger_copy *c, const char *path, long long now_ms,
		      char *err, size_t err_len);

/* A reader that cannot get a consistent copy within this reports the ledger as stuck. */
#define LEDGER_FILE_READ_TIMEOUT_MS 1000

/*
 * Snapshots the ledger into c and writes it to path, holding the ledger's flush lock from the
 * read to the rename, so that of several writers (flusher, supervisor, a worker whose
 * supervisor is gone) the file's content never goes back to an older snapshot. Records the
 * flush (or its failure) in the header. -1 with a message in err on failure.
 */
int ledger_file_flush(struct ledger *l, struct ledger_copy *c, const char *path, int64_t now_ms,
		      char *err, size_t err_len);

/* Parses text into rows; strict: one bad value rejects the whole file (-1, message in err). */
int ledger_file_parse(const char *text, size_t len, struct ledger_file *out, char *err,
		      size_t err_len);
/* Reads and parses a file. Returns 0, -1 (bad: message in err) or -2 (missing). */
int ledger_file_load(const char *path, struct ledger_file *out, char *err, size_t err_len);
void ledger_file_free(struct ledger_file *f);

/*
 * A row's usage as a ledger of this window holds it at now_ms (what a restore and
 * import-cloudplow do to every row): a window that starts after now starts now, one that ends
 * more than a day from now ends a day from now, hour buckets ahead of now move to this hour
 * (the bytes always stay); under the rolling window, a row without hour buckets (the quota
 * fork's) gets its bytes in the one hour that keeps them until its reset time. Returns whether
 * a time in the future was moved.
 */
bool ledger_file_settle(struct ledger_usage *u, enum ledger_window window, int64_t now_ms);

/*
 * Fills a fresh ledger from path, falling back to path.prev when path is missing or bad.
 * Neither file present is a first start (0). Both unusable is -1 with a one-line message naming
 * the files in err: guessing zero usage is how quotas get exceeded, so the caller refuses to
 * start unless the user asked for a reset. *used_path gets the file that was loaded (or "").
 */
int ledger_file_restore(struct ledger *l, const char *path, char *used_path, size_t used_len,
			char *err, size_t err_len);

#endif
