#include "rclone_log.h"

#include <errno.h>
#include <float.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cjson/cJSON.h>

#include "utf8.h"

/* A reader's buffer starts here rather than at the exact need: most partial lines are short
 * JSON lines split by a pipe read, and this size absorbs them without regrowth. */
#define READER_INITIAL_CAP 4096

/* --- lines ------------------------------------------------------------------------------ */

int rclone_log_reader_init(struct rclone_log_reader *reader, size_t max_line_bytes)
{
    if (max_line_bytes == 0)
        max_line_bytes = RCLONE_LOG_LINE_MAX_DEFAULT;
    if (max_line_bytes > RCLONE_LOG_LINE_MAX_LIMIT)
        return -EINVAL;
    *reader = (struct rclone_log_reader){ .max_line_bytes = max_line_bytes };
    return 0;
}

void rclone_log_reader_free(struct rclone_log_reader *reader)
{
    free(reader->buf);
    reader->buf = NULL;
    reader->buf_len = 0;
    reader->buf_cap = 0;
    reader->skipping = false;
}

static int reader_append(struct rclone_log_reader *reader, const char *data, size_t len)
{
    if (len == 0)
        return 0;
    /* The caller has checked buf_len + len <= max_line_bytes, so need cannot overflow and
     * the buffer never outgrows the limit. */
    size_t need = reader->buf_len + len;
    if (need > reader->buf_cap) {
        size_t cap = reader->buf_cap ? reader->buf_cap : READER_INITIAL_CAP;
        while (cap < need)
            cap *= 2;
        if (cap > reader->max_line_bytes)
            cap = reader->max_line_bytes;
        char *grown = realloc(reader->buf, cap);
        if (!grown)
            return -ENOMEM;
        reader->buf = grown;
        reader->buf_cap = cap;
    }
    memcpy(reader->buf + reader->buf_len, data, len);
    reader->buf_len = need;
    return 0;
}

static void reader_deliver(struct rclone_log_reader *reader, const char *line, size_t len,
                           rclone_log_line_fn on_line, void *ctx)
{
    reader->lines++;
    on_line(ctx, line, len);
}

static void reader_start_skipping(struct rclone_log_reader *reader)
{
    /* Counted now, once, so the count does not depend on how many reads the line spans. */
    reader->skipping = true;
    reader->oversized_lines++;
    reader->buf_len = 0;
}

int rclone_log_feed(struct rclone_log_reader *reader, const void *data, size_t len,
                    rclone_log_line_fn on_line, void *ctx)
{
    const char *p = data;
    const char *end = p + len;
    int rc = 0;

    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t piece = (size_t)((nl ? nl : end) - p);

        if (reader->skipping) {
            /* the rest of an oversized line: dropped up to its newline */
        } else if (reader->buf_len == 0 && nl) {
            /* A whole line inside this read, the common case: no copy. */
            if (piece > reader->max_line_bytes) {
                reader->oversized_lines++;
            } else {
                reader_deliver(reader, p, piece, on_line, ctx);
            }
        } else if (piece > reader->max_line_bytes - reader->buf_len) {
            reader_start_skipping(reader);
        } else if (reader_append(reader, p, piece) < 0) {
            /* Dropping the line keeps the stream in step: the next line still starts at the
             * next newline, and the caller learns of the loss from the return value. */
            reader_start_skipping(reader);
            rc = -ENOMEM;
        } else if (nl) {
            reader_deliver(reader, reader->buf, reader->buf_len, on_line, ctx);
            reader->buf_len = 0;
        }

        if (nl)
            reader->skipping = false;
        p = nl ? nl + 1 : end;
    }
    return rc;
}

void rclone_log_finish(struct rclone_log_reader *reader, rclone_log_line_fn on_line, void *ctx)
{
    if (!reader->skipping && reader->buf_len > 0)
        reader_deliver(reader, reader->buf, reader->buf_len, on_line, ctx);
    reader->buf_len = 0;
    reader->skipping = false;
}

/* --- events ----------------------------------------------------------------------------- */

#define SERVING_PREFIX "Serving remote control on "

static bool has_prefix(const char *s, size_t len, const char *prefix)
{
    size_t n = strlen(prefix);
    return len >= n && memcmp(s, prefix, n) == 0;
}

/* Copies at most cap - 1 bytes and NUL-terminates. A cut never splits a UTF-8 sequence, so a
 * truncated message stays valid text for logs and notifications. */
static size_t copy_bounded(char *dst, size_t cap, const char *src, size_t len, bool *truncated)
{
    if (len >= cap) {
        len = utf8_cut(src, cap - 1);
        *truncated = true;
    }
    memcpy(dst, src, len);
    dst[len] = '\0';
    return len;
}

static void event_reset(struct rclone_log_event *out)
{
    /* Field by field rather than memset: the arrays are 8 KiB, and a terminator is enough. */
    out->kind = RCLONE_LOG_OTHER;
    out->level = RCLONE_LOG_LEVEL_UNKNOWN;
    out->json = false;
    out->object[0] = '\0';
    out->object_len = 0;
    out->suspicious_path = false;
    out->message[0] = '\0';
    out->message_len = 0;
    out->message_truncated = false;
    out->error_offset = 0;
    out->rc_url[0] = '\0';
    out->rc_port = 0;
    out->stats = (struct rclone_log_stats){
        .bytes = -1, .total_bytes = -1, .speed_bps = -1, .eta_s = -1,
        .transfers = -1, .total_transfers = -1, .errors = -1, .elapsed_s = -1,
    };
}

/* A MALFORMED line keeps its raw text for triggers: a quota error must not slip past a
 * trigger because the line around it was damaged. */
static enum rclone_log_kind malformed(const char *line, size_t len, struct rclone_log_event *out)
{
    event_reset(out);
    out->kind = RCLONE_LOG_MALFORMED;
    out->json = true;
    out->message_len = copy_bounded(out->message, sizeof out->message, line, len,
                                    &out->message_truncated);
    return RCLONE_LOG_MALFORMED;
}

static enum rclone_log_level level_from_name(const char *name, size_t len)
{
    static const struct {
        const char *name;
        enum rclone_log_level level;
    } names[] = {
        { "debug", RCLONE_LOG_LEVEL_DEBUG },       { "trace", RCLONE_LOG_LEVEL_DEBUG },
        { "info", RCLONE_LOG_LEVEL_INFO },         { "notice", RCLONE_LOG_LEVEL_NOTICE },
        { "warning", RCLONE_LOG_LEVEL_WARNING },   { "warn", RCLONE_LOG_LEVEL_WARNING },
        { "error", RCLONE_LOG_LEVEL_ERROR },       { "critical", RCLONE_LOG_LEVEL_CRITICAL },
        { "alert", RCLONE_LOG_LEVEL_CRITICAL },    { "emergency", RCLONE_LOG_LEVEL_CRITICAL },
        { "fatal", RCLONE_LOG_LEVEL_CRITICAL },    { "panic", RCLONE_LOG_LEVEL_CRITICAL },
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (strlen(names[i].name) == len && strncasecmp(names[i].name, name, len) == 0)
            return names[i].level;
    }
    return RCLONE_LOG_LEVEL_UNKNOWN;
}

static bool path_is_suspicious(const char *path, size_t len)
{
    if (len > 0 && path[0] == '/')
        return true;
    size_t start = 0;
    while (start <= len) {
        const char *slash = memchr(path + start, '/', len - start);
        size_t stop = slash ? (size_t)(slash - path) : len;
        if (stop - start == 2 && path[start] == '.' && path[start + 1] == '.')
            return true;
        start = stop + 1;
    }
    return false;
}

/* "http://127.0.0.1:33001/" → 33001. Also takes "https://" and "[::1]:5572". A URL that
 * would not fit rc_url is refused rather than cut: a cut URL would point somewhere else. */
static bool parse_serving_url(const char *url, size_t len, uint16_t *port_out)
{
    if (len >= RCLONE_LOG_URL_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)url[i];
        if (c <= ' ' || c == 0x7f)
            return false;
    }
    size_t host = 0;
    if (has_prefix(url, len, "http://"))
        host = strlen("http://");
    else if (has_prefix(url, len, "https://"))
        host = strlen("https://");
    else
        return false;

    const char *slash = memchr(url + host, '/', len - host);
    size_t host_end = slash ? (size_t)(slash - url) : len;
    /* The port follows the authority's last ':', unless that ':' sits inside "[::1]". */
    size_t port_start = 0;
    for (size_t i = host_end; i > host; i--) {
        if (url[i - 1] == ']')
            break;
        if (url[i - 1] == ':') {
            port_start = i;
            break;
        }
    }
    if (port_start == 0 || port_start - 1 == host)
        return false;
    size_t digits = host_end - port_start;
    if (digits == 0 || digits > 5)
        return false;
    unsigned long port = 0;
    for (size_t i = port_start; i < host_end; i++) {
        if (url[i] < '0' || url[i] > '9')
            return false;
        port = port * 10 + (unsigned long)(url[i] - '0');
    }
    if (port == 0 || port > 65535)
        return false;

    *port_out = (uint16_t)port;
    return true;
}

static void set_serving(struct rclone_log_event *out, const char *url, size_t len, uint16_t port)
{
    memcpy(out->rc_url, url, len);
    out->rc_url[len] = '\0';
    out->rc_port = port;
}

/* cJSON keeps numbers as double; valueint is an int and saturates at 2 GiB, so byte counts
 * must be read from valuedouble. */
static int64_t stats_int(const cJSON *stats, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(stats, key);
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= 0 && v->valuedouble < 9.0e18))
        return -1;
    return (int64_t)v->valuedouble;
}

static double stats_double(const cJSON *stats, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(stats, key);
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= 0 && v->valuedouble <= DBL_MAX))
        return -1;
    return v->valuedouble;
}

static void read_stats(const cJSON *stats, struct rclone_log_stats *out)
{
    out->bytes = stats_int(stats, "bytes");
    out->total_bytes = stats_int(stats, "totalBytes");
    out->speed_bps = stats_double(stats, "speed");
    out->eta_s = stats_int(stats, "eta");
    out->transfers = stats_int(stats, "transfers");
    out->total_transfers = stats_int(stats, "totalTransfers");
    out->errors = stats_int(stats, "errors");
    out->elapsed_s = stats_double(stats, "elapsedTime");
}

/* Go escapes every control character, so raw ones mean the line is not rclone's JSON; cJSON
 * would accept most of them. A "\u0000" escape decodes to a NUL that silently cuts cJSON's C
 * string ("a\u0000b" would read as the path "a"); no file name holds a NUL, so such a line is
 * refused too. One pass over the line checks both. */
static bool json_bytes_acceptable(const char *line, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)line[i];
        if (c < 0x20 && c != '\t' && c != '\r')
            return false;
        if (c == '\\') {
            if (len - i >= 6 && memcmp(line + i + 1, "u0000", 5) == 0)
                return false;
            /* the escaped character is not an escape itself: "\\u0000" is text, not a NUL */
            i++;
        }
    }
    return true;
}

static enum rclone_log_kind classify_msg(const char *msg, size_t msg_len)
{
    /* "Multi-thread Copied (new)": a file rclone wrote in parallel chunks (--multi-thread-streams
     * to a destination that takes writes at offsets, such as a local or mounted path). */
    if (has_prefix(msg, msg_len, "Copied (") || has_prefix(msg, msg_len, "Multi-thread Copied ("))
        return RCLONE_LOG_COPIED;
    if (msg_len == strlen("Deleted") && memcmp(msg, "Deleted", msg_len) == 0)
        return RCLONE_LOG_DELETED;
    if ((msg_len == strlen("Moved (server-side)")
         && memcmp(msg, "Moved (server-side)", msg_len) == 0)
        || has_prefix(msg, msg_len, "Moved (server-side) to: "))
        return RCLONE_LOG_MOVED_SERVER_SIDE;
    /* "Couldn't move" is how 1.60 reports a failed server-side move: no "Failed to copy"
     * follows it, so without it that file's failure would go unseen. */
    if (has_prefix(msg, msg_len, "Failed to copy") || has_prefix(msg, msg_len, "Failed to move")
        || has_prefix(msg, msg_len, "Couldn't move"))
        return RCLONE_LOG_FAILED;
    if (has_prefix(msg, msg_len, SERVING_PREFIX))
        return RCLONE_LOG_RC_SERVING;
    return RCLONE_LOG_OTHER;
}

/* The rclone fields of a parsed line. Returns MALFORMED, leaving *out alone, when a field the
 * kind needs is missing or unusable. */
static enum rclone_log_kind classify_json(const cJSON *root, struct rclone_log_event *out)
{
    const cJSON *level = cJSON_GetObjectItemCaseSensitive(root, "level");
    const cJSON *msg = cJSON_GetObjectItemCaseSensitive(root, "msg");
    if (!cJSON_IsString(level) || !level->valuestring || !cJSON_IsString(msg) || !msg->valuestring)
        return RCLONE_LOG_MALFORMED;
    const char *msg_text = msg->valuestring;
    size_t msg_len = strlen(msg_text);

    const cJSON *stats = cJSON_GetObjectItemCaseSensitive(root, "stats");
    if (stats && !cJSON_IsObject(stats))
        return RCLONE_LOG_MALFORMED;
    enum rclone_log_kind kind = stats ? RCLONE_LOG_STATS : classify_msg(msg_text, msg_len);

    const cJSON *object = cJSON_GetObjectItemCaseSensitive(root, "object");
    const char *object_text = NULL;
    size_t object_len = 0;
    switch (kind) {
    case RCLONE_LOG_COPIED:
    case RCLONE_LOG_DELETED:
    case RCLONE_LOG_MOVED_SERVER_SIDE:
    case RCLONE_LOG_FAILED:
        if (object) {
            if (!cJSON_IsString(object) || !object->valuestring)
                return RCLONE_LOG_MALFORMED;
            object_text = object->valuestring;
            object_len = strlen(object_text);
        }
        if (object_len >= sizeof out->object)
            return RCLONE_LOG_MALFORMED;
        /* a failure may concern no file (a listing, the whole run); the others always do */
        if (object_len == 0 && kind != RCLONE_LOG_FAILED)
            return RCLONE_LOG_MALFORMED;
        break;
    default:
        /* Other lines name non-file objects ("Local file system at /x"): context, not paths. */
        break;
    }

    uint16_t rc_port = 0;
    size_t url_skip = strlen(SERVING_PREFIX);
    if (kind == RCLONE_LOG_RC_SERVING
        && !parse_serving_url(msg_text + url_skip, msg_len - url_skip, &rc_port))
        return RCLONE_LOG_MALFORMED;

    event_reset(out);
    out->kind = kind;
    out->json = true;
    out->level = level_from_name(level->valuestring, strlen(level->valuestring));
    if (kind == RCLONE_LOG_STATS) {
        read_stats(stats, &out->stats);
    } else {
        out->message_len = copy_bounded(out->message, sizeof out->message, msg_text, msg_len,
                                        &out->message_truncated);
    }
    if (kind == RCLONE_LOG_FAILED) {
        const char *sep = strstr(out->message, ": ");
        out->error_offset = sep ? (size_t)(sep - out->message) + 2 : out->message_len;
    }
    if (kind == RCLONE_LOG_RC_SERVING)
        set_serving(out, msg_text + url_skip, msg_len - url_skip, rc_port);
    if (object_text) {
        memcpy(out->object, object_text, object_len + 1);
        out->object_len = object_len;
        out->suspicious_path = path_is_suspicious(object_text, object_len);
    }
    return kind;
}

/* The one cJSON parse a line costs. Every JSON line is parsed, not only the interesting ones:
 * MALFORMED must be counted and triggers need the unescaped message of every line. */
static enum rclone_log_kind parse_json(const char *line, size_t len, struct rclone_log_event *out)
{
    if (!json_bytes_acceptable(line, len))
        return malformed(line, len, out);

    const char *parse_end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(line, len, &parse_end, false);
    enum rclone_log_kind kind = RCLONE_LOG_MALFORMED;
    if (cJSON_IsObject(root)) {
        /* cJSON's own trailing-garbage check wants a NUL inside the length; a line has none. */
        const char *p = parse_end;
        while (p < line + len && (*p == ' ' || *p == '\t' || *p == '\r'))
            p++;
        if (p == line + len)
            kind = classify_json(root, out);
    }
    cJSON_Delete(root);
    if (kind == RCLONE_LOG_MALFORMED)
        return malformed(line, len, out);
    return kind;
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* Checks `text` against a pattern where '9' stands for a digit and other bytes for themselves. */
static bool matches_shape(const char *text, size_t len, const char *shape)
{
    size_t n = strlen(shape);
    if (len < n)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (shape[i] == '9' ? !is_digit(text[i]) : text[i] != shape[i])
            return false;
    }
    return true;
}

/* Plain lines: "2026/11/28 15:03:40 NOTICE: Serving remote control on http://...". The date,
 * the optional microseconds and the level are each optional, as rclone's --log-format allows. */
static enum rclone_log_kind parse_plain(const char *line, size_t len, struct rclone_log_event *out)
{
    event_reset(out);
    out->message_len = copy_bounded(out->message, sizeof out->message, line, len,
                                    &out->message_truncated);

    size_t at = 0;
    if (matches_shape(line, len, "9999/99/99 "))
        at += strlen("9999/99/99 ");
    if (matches_shape(line + at, len - at, "99:99:99")) {
        at += strlen("99:99:99");
        if (at < len && line[at] == '.') {
            at++;
            while (at < len && is_digit(line[at]))
                at++;
        }
        if (at < len && line[at] == ' ')
            at++;
    }

    size_t word = at;
    while (word < len && line[word] >= 'A' && line[word] <= 'Z')
        word++;
    size_t colon = word;
    while (colon < len && line[colon] == ' ')
        colon++;
    if (word > at && colon + 1 < len && line[colon] == ':' && line[colon + 1] == ' ') {
        enum rclone_log_level level = level_from_name(line + at, word - at);
        if (level != RCLONE_LOG_LEVEL_UNKNOWN) {
            out->level = level;
            at = colon + 2;
        }
    }

    const char *body = line + at;
    size_t body_len = len - at;
    if (has_prefix(body, body_len, SERVING_PREFIX)) {
        size_t skip = strlen(SERVING_PREFIX);
        size_t url_len = body_len - skip;
        while (url_len > 0 && (body[skip + url_len - 1] == ' ' || body[skip + url_len - 1] == '\r'))
            url_len--;
        uint16_t port = 0;
        if (parse_serving_url(body + skip, url_len, &port)) {
            set_serving(out, body + skip, url_len, port);
            out->kind = RCLONE_LOG_RC_SERVING;
        }
    }
    return out->kind;
}

enum rclone_log_kind rclone_log_parse(const char *line, size_t len, struct rclone_log_event *out)
{
    size_t at = 0;
    while (at < len && (line[at] == ' ' || line[at] == '\t'))
        at++;
    if (at < len && line[at] == '{')
        return parse_json(line, len, out);
    return parse_plain(line, len, out);
}

const char *rclone_log_trigger_text(const struct rclone_log_event *event, size_t *len)
{
    /* STATS already carries an empty message; the check states the rule where it is used. */
    if (event->kind == RCLONE_LOG_STATS) {
        *len = 0;
        return "";
    }
    *len = event->message_len;
    return event->message;
}

const char *rclone_log_error_text(const struct rclone_log_event *event)
{
    if (event->kind != RCLONE_LOG_FAILED)
        return "";
    return event->message + event->error_offset;
}

const char *rclone_log_kind_name(enum rclone_log_kind kind)
{
    switch (kind) {
    case RCLONE_LOG_OTHER: return "other";
    case RCLONE_LOG_COPIED: return "copied";
    case RCLONE_LOG_FAILED: return "failed";
    case RCLONE_LOG_DELETED: return "deleted";
    case RCLONE_LOG_MOVED_SERVER_SIDE: return "moved_server_side";
    case RCLONE_LOG_RC_SERVING: return "rc_serving";
    case RCLONE_LOG_STATS: return "stats";
    case RCLONE_LOG_MALFORMED: return "malformed";
    }
    return "unknown";
}
