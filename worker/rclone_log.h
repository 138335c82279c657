/*
 * rclone 1.60's stderr, run with --use-json-log -v, turned into events.
 *
 * Two independent halves:
 *   - struct rclone_log_reader cuts the byte stream from a pipe into lines, whatever the read
 *     sizes, with bounded memory;
 *   - rclone_log_parse() turns one line into one struct rclone_log_event.
 *
 * Per-file events come only from JSON lines: a plain-text "path: Copied (new)" line cannot be
 * split reliably (a path may itself contain ": "), and cplow always asks for JSON. The plain
 * lines rclone still writes in JSON mode (the final "Failed to copy: ...", "Failed to move with
 * N errors: ...", start-up errors, usage text) are OTHER, except the RC serving line.
 */

#ifndef CPLOW_RCLONE_LOG_H
#define CPLOW_RCLONE_LOG_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#ifndef PATH_MAX
#include <linux/limits.h> /* strict ISO C without _GNU_SOURCE hides it in <limits.h> */
#endif

/* --- lines ------------------------------------------------------------------------------ */

/* Longest line kept by default. rclone's stats lines grow with the files in flight (about
 * 300 bytes each) and pass 4 KiB with a dozen transfers; 1 MiB leaves room for thousands. */
#define RCLONE_LOG_LINE_MAX_DEFAULT ((size_t)1 << 20)
/* Largest limit rclone_log_reader_init() accepts: a bound on what one reader may allocate. */
#define RCLONE_LOG_LINE_MAX_LIMIT ((size_t)1 << 30)

/* Called once per complete line. `line` excludes the '\n', is not NUL-terminated, may hold
 * any bytes (NULs included), and is valid only during the call. */
typedef void (*rclone_log_line_fn)(void *ctx, const char *line, size_t len);

/* One per pipe. The fields are the reader's own; callers read the counters and touch nothing
 * else. */
struct rclone_log_reader {
    char *buf;              /* the unfinished line carried over between feeds */
    size_t buf_len;
    size_t buf_cap;
    size_t max_line_bytes;  /* longer lines are dropped, not delivered */
    bool skipping;          /* inside a line already known to be too long */
    uint64_t lines;         /* lines delivered to the callback */
    uint64_t oversized_lines;
};

/* max_line_bytes 0 means RCLONE_LOG_LINE_MAX_DEFAULT. Allocates nothing.
 * Returns 0, or -EINVAL when max_line_bytes exceeds RCLONE_LOG_LINE_MAX_LIMIT. */
int rclone_log_reader_init(struct rclone_log_reader *reader, size_t max_line_bytes);

/* Feeds the next `len` bytes of the stream; calls `on_line` for every line they complete.
 * A line longer than max_line_bytes is counted in oversized_lines and never delivered, the
 * same whether it arrived in one read or many.
 * Returns 0, or -ENOMEM when the line being assembled could not be buffered: that line is then
 * dropped (counted as oversized) and every other line in `data` is still delivered. */
int rclone_log_feed(struct rclone_log_reader *reader, const void *data, size_t len,
                    rclone_log_line_fn on_line, void *ctx);

/* End of stream: delivers a last line that had no '\n' (if any, and not oversized), and
 * leaves the reader ready for a new stream. */
void rclone_log_finish(struct rclone_log_reader *reader, rclone_log_line_fn on_line, void *ctx);

/* Frees the buffer; the reader may be initialised again afterwards. */
void rclone_log_reader_free(struct rclone_log_reader *reader);

/* --- events ----------------------------------------------------------------------------- */

enum rclone_log_kind {
    RCLONE_LOG_OTHER = 0,          /* a valid line nothing in cplow acts on */
    RCLONE_LOG_COPIED,             /* msg "Copied (...": new, replaced existing, server-side copy, Rcat */
    RCLONE_LOG_FAILED,             /* msg "Failed to copy", "Failed to move" or "Couldn't move" */
    RCLONE_LOG_DELETED,            /* msg "Deleted": under move, the source after its copy */
    RCLONE_LOG_MOVED_SERVER_SIDE,  /* msg "Moved (server-side)" (optionally " to: NEW") */
    RCLONE_LOG_RC_SERVING,         /* "Serving remote control on URL", JSON or plain */
    RCLONE_LOG_STATS,              /* the periodic and final JSON line carrying "stats" */
    RCLONE_LOG_MALFORMED,          /* starts with '{' but is not a usable rclone JSON line */
};

enum rclone_log_level {
    RCLONE_LOG_LEVEL_UNKNOWN = 0,  /* absent (most plain lines) or not a level rclone uses */
    RCLONE_LOG_LEVEL_DEBUG,
    RCLONE_LOG_LEVEL_INFO,
    RCLONE_LOG_LEVEL_NOTICE,       /* plain only: JSON mode writes NOTICE as "warning" */
    RCLONE_LOG_LEVEL_WARNING,
    RCLONE_LOG_LEVEL_ERROR,
    RCLONE_LOG_LEVEL_CRITICAL,     /* critical, alert, emergency, fatal, panic */
};

/* Bound on the copied message text; rclone's error messages (server bodies included) fit in
 * it, and a longer one is cut at a UTF-8 character boundary and flagged. */
#define RCLONE_LOG_MESSAGE_MAX 4096
#define RCLONE_LOG_URL_MAX 256

/* From the "stats" object. A field rclone left out, wrote as null (eta before the first
 * speed sample) or wrote with the wrong type reads -1. */
struct rclone_log_stats {
    int64_t bytes;             /* bytes read so far, failed attempts included */
    int64_t total_bytes;
    double speed_bps;          /* bytes per second */
    int64_t eta_s;
    int64_t transfers;         /* files completed */
    int64_t total_transfers;
    int64_t errors;
    double elapsed_s;
};

/* Everything is copied into the event, so it outlives the line. The struct is about 8.5 KiB:
 * keep one per reader, not one per line on a deep stack. */
struct rclone_log_event {
    enum rclone_log_kind kind;
    enum rclone_log_level level;
    bool json;                 /* the line was a JSON object (MALFORMED lines included) */

    /* COPIED, DELETED, MOVED_SERVER_SIDE always; FAILED when rclone named one. Exactly as
     * rclone wrote it (JSON-unescaped UTF-8): the file's path below the transfer's root, the
     * same below the source and the destination. Copied into the event (JSON escapes rule out
     * pointing into the line); NUL-terminated. A path needing PATH_MAX bytes or more, with its
     * NUL, makes the line MALFORMED. */
    char object[PATH_MAX];
    size_t object_len;
    /* Absolute, or with a ".." component: the event is still returned, and the worker must
     * not count it. */
    bool suspicious_path;

    /* The text triggers match against (see rclone_log_trigger_text()). For JSON lines the
     * unescaped "msg", for plain and MALFORMED lines the raw line, empty for STATS.
     * NUL-terminated, but a plain or MALFORMED line may carry NUL bytes of its own: use
     * message_len. */
    char message[RCLONE_LOG_MESSAGE_MAX];
    size_t message_len;
    bool message_truncated;
    /* FAILED: where the error text starts in message ("Failed to copy: " skipped). */
    size_t error_offset;

    /* RC_SERVING */
    char rc_url[RCLONE_LOG_URL_MAX];
    uint16_t rc_port;

    /* STATS */
    struct rclone_log_stats stats;
};

/* Classifies one line (as delivered by the reader: no '\n') into *out, resetting every
 * field. Never fails: anything unusable becomes MALFORMED (JSON-looking) or OTHER; the kind is
 * also the return value. Costs at most one cJSON parse; lines that cannot be JSON cost none.
 * cJSON cannot tell running out of memory from bad input, so the former also reads MALFORMED. */
enum rclone_log_kind rclone_log_parse(const char *line, size_t len, struct rclone_log_event *out);

/* The text a rclone_sleeps trigger should be matched against, and its length. Stats lines
 * give "": their human summary repeats the names of files in flight, and a file called
 * "User rate limit exceeded.mkv" must not suspend an account. */
const char *rclone_log_trigger_text(const struct rclone_log_event *event, size_t *len);

/* FAILED: the error part of the message (may be empty). Other kinds: "". */
const char *rclone_log_error_text(const struct rclone_log_event *event);

/* "copied", "failed", ... for log lines and test output. */
const char *rclone_log_kind_name(enum rclone_log_kind kind);

#endif
