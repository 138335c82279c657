#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rclone_log.h"

#ifndef FIXTURE_DIR
#error "FIXTURE_DIR must name tests/fixtures/rclone_log"
#endif

/* The capture script writes this many runs; fewer found means the directory is wrong. */
#define FIXTURE_COUNT_MIN 15

/* --- helpers ---------------------------------------------------------------------------- */

static char *read_whole_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "open %s: %s", path, strerror(errno));
    size_t cap = 1 << 16, used = 0;
    char *data = malloc(cap);
    cr_assert_not_null(data);
    size_t n;
    while ((n = fread(data + used, 1, cap - used, f)) > 0) {
        used += n;
        if (used == cap) {
            cap *= 2;
            data = realloc(data, cap);
            cr_assert_not_null(data);
        }
    }
    cr_assert_eq(ferror(f), 0);
    fclose(f);
    *len = used;
    return data;
}

static char *fixture_path(const char *name)
{
    static char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", FIXTURE_DIR, name);
    return path;
}

static char *read_fixture(const char *name, size_t *len)
{
    return read_whole_file(fixture_path(name), len);
}

static int compare_strings(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Every *.log in the fixture directory, sorted; the caller frees each name and the array. */
static char **list_fixture_logs(size_t *count)
{
    DIR *dir = opendir(FIXTURE_DIR);
    cr_assert_not_null(dir, "opendir %s: %s", FIXTURE_DIR, strerror(errno));
    char **names = NULL;
    size_t n = 0;
    struct dirent *entry;
    while ((entry = readdir(dir)) != NULL) {
        size_t len = strlen(entry->d_name);
        if (len < 5 || strcmp(entry->d_name + len - 4, ".log") != 0)
            continue;
        names = realloc(names, (n + 1) * sizeof *names);
        cr_assert_not_null(names);
        names[n++] = strdup(entry->d_name);
    }
    closedir(dir);
    cr_assert_geq(n, FIXTURE_COUNT_MIN, "only %zu fixture logs in %s", n, FIXTURE_DIR);
    qsort(names, n, sizeof *names, compare_strings);
    *count = n;
    return names;
}

static void free_strings(char **items, size_t count)
{
    for (size_t i = 0; i < count; i++)
        free(items[i]);
    free(items);
}

/* One recorded event: every field, serialised so two runs compare with memcmp. */
struct record {
    char *bytes;
    size_t len;
};

struct collector {
    struct rclone_log_event event;
    struct record *records;
    size_t count;
    size_t kinds[RCLONE_LOG_MALFORMED + 1];
};

static void append(char **buf, size_t *len, const void *data, size_t n)
{
    *buf = realloc(*buf, *len + n);
    cr_assert_not_null(*buf);
    memcpy(*buf + *len, data, n);
    *len += n;
}

static void record_event(struct collector *c, const struct rclone_log_event *ev)
{
    char *buf = NULL;
    size_t len = 0;
    char head[512];
    int n = snprintf(head, sizeof head,
                     "%d|%d|%d|%d|%d|%zu|%u|%s|%lld|%lld|%.17g|%lld|%lld|%lld|%lld|%.17g|",
                     ev->kind, ev->level, ev->json, ev->suspicious_path, ev->message_truncated,
                     ev->error_offset, ev->rc_port, ev->rc_url, (long long)ev->stats.bytes,
                     (long long)ev->stats.total_bytes, ev->stats.speed_bps,
                     (long long)ev->stats.eta_s, (long long)ev->stats.transfers,
                     (long long)ev->stats.total_transfers, (long long)ev->stats.errors,
                     ev->stats.elapsed_s);
    cr_assert(n > 0 && (size_t)n < sizeof head);
    append(&buf, &len, head, (size_t)n);
    append(&buf, &len, ev->object, ev->object_len);
    append(&buf, &len, "|", 1);
    append(&buf, &len, ev->message, ev->message_len);

    c->records = realloc(c->records, (c->count + 1) * sizeof *c->records);
    cr_assert_not_null(c->records);
    c->records[c->count++] = (struct record){ .bytes = buf, .len = len };
    c->kinds[ev->kind]++;
}

static void collect_line(void *ctx, const char *line, size_t len)
{
    struct collector *c = ctx;
    enum rclone_log_kind kind = rclone_log_parse(line, len, &c->event);
    cr_assert_eq(kind, c->event.kind);
    record_event(c, &c->event);
}

static struct collector *collector_new(void)
{
    struct collector *c = calloc(1, sizeof *c);
    cr_assert_not_null(c);
    return c;
}

static void collector_free(struct collector *c)
{
    for (size_t i = 0; i < c->count; i++)
        free(c->records[i].bytes);
    free(c->records);
    free(c);
}

/* Feeds `data` `chunk` bytes at a time (0: all at once), then finishes the stream. */
static void feed_in_chunks(struct rclone_log_reader *reader, const char *data, size_t len,
                           size_t chunk, rclone_log_line_fn on_line, void *ctx)
{
    if (chunk == 0)
        chunk = len ? len : 1;
    for (size_t off = 0; off < len; off += chunk) {
        size_t n = len - off < chunk ? len - off : chunk;
        cr_assert_eq(rclone_log_feed(reader, data + off, n, on_line, ctx), 0);
    }
    rclone_log_finish(reader, on_line, ctx);
}

static struct collector *events_of(const char *data, size_t len, size_t chunk)
{
    struct rclone_log_reader reader;
    cr_assert_eq(rclone_log_reader_init(&reader, 0), 0);
    struct collector *c = collector_new();
    feed_in_chunks(&reader, data, len, chunk, collect_line, c);
    cr_assert_eq(reader.lines, c->count);
    rclone_log_reader_free(&reader);
    return c;
}

/* Objects of every `kind` event, sorted and de-duplicated. */
static char **objects_of_kind(const char *data, size_t len, enum rclone_log_kind kind,
                              size_t *count)
{
    char **items = NULL;
    size_t n = 0;
    const char *p = data, *end = data + len;
    struct rclone_log_event *ev = malloc(sizeof *ev);
    cr_assert_not_null(ev);
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t line_len = (size_t)((nl ? nl : end) - p);
        if (rclone_log_parse(p, line_len, ev) == kind) {
            items = realloc(items, (n + 1) * sizeof *items);
            cr_assert_not_null(items);
            items[n++] = strdup(ev->object);
        }
        p = nl ? nl + 1 : end;
    }
    free(ev);
    if (n > 0)
        qsort(items, n, sizeof *items, compare_strings);
    size_t unique = 0;
    for (size_t i = 0; i < n; i++) {
        if (unique > 0 && strcmp(items[unique - 1], items[i]) == 0)
            free(items[i]);
        else
            items[unique++] = items[i];
    }
    *count = unique;
    return items;
}

/* Paths the capture script measured for `kind` ("copied", "moved", "deleted"), sorted. */
static char **expected_paths(const char *log_name, const char *kind, size_t *count)
{
    char name[NAME_MAX + 1];
    size_t base = strlen(log_name) - strlen(".log");
    snprintf(name, sizeof name, "%.*s.expect", (int)base, log_name);
    size_t len;
    char *data = read_fixture(name, &len);
    char **items = NULL;
    size_t n = 0;
    size_t kind_len = strlen(kind);
    const char *p = data, *end = data + len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t line_len = (size_t)((nl ? nl : end) - p);
        if (line_len > kind_len && memcmp(p, kind, kind_len) == 0 && p[kind_len] == '\t') {
            items = realloc(items, (n + 1) * sizeof *items);
            cr_assert_not_null(items);
            items[n++] = strndup(p + kind_len + 1, line_len - kind_len - 1);
        }
        p = nl ? nl + 1 : end;
    }
    free(data);
    if (n > 0)
        qsort(items, n, sizeof *items, compare_strings);
    *count = n;
    return items;
}

static void assert_kind_matches_expect(const char *log_name, enum rclone_log_kind kind,
                                       const char *expect_kind)
{
    size_t len, got_n, want_n;
    char *data = read_fixture(log_name, &len);
    char **got = objects_of_kind(data, len, kind, &got_n);
    char **want = expected_paths(log_name, expect_kind, &want_n);
    cr_assert_eq(got_n, want_n, "%s: %zu %s events, %zu files %s", log_name, got_n,
                 rclone_log_kind_name(kind), want_n, expect_kind);
    for (size_t i = 0; i < got_n; i++)
        cr_assert_str_eq(got[i], want[i], "%s: %s", log_name, expect_kind);
    free_strings(got, got_n);
    free_strings(want, want_n);
    free(data);
}

/* The first line of a fixture that contains `needle`, as a malloc'd copy without '\n'. */
static char *fixture_line(const char *name, const char *needle, size_t *line_len)
{
    size_t len;
    char *data = read_fixture(name, &len);
    const char *hit = memmem(data, len, needle, strlen(needle));
    cr_assert_not_null(hit, "%s has no line with %s", name, needle);
    const char *start = hit;
    while (start > data && start[-1] != '\n')
        start--;
    const char *nl = memchr(hit, '\n', len - (size_t)(hit - data));
    size_t n = (size_t)((nl ? nl : data + len) - start);
    char *line = strndup(start, n);
    cr_assert_not_null(line);
    free(data);
    *line_len = n;
    return line;
}

static struct rclone_log_event *new_event(void)
{
    struct rclone_log_event *ev = malloc(sizeof *ev);
    cr_assert_not_null(ev);
    return ev;
}

static enum rclone_log_kind parse_str(const char *line, struct rclone_log_event *ev)
{
    return rclone_log_parse(line, strlen(line), ev);
}

/* --- fixtures --------------------------------------------------------------------------- */

Test(rclone_log, fixtures_give_identical_events_for_reads_of_1_7_4096_bytes_and_all_at_once)
{
    static const size_t chunks[] = { 1, 7, 4096 };
    size_t count;
    char **names = list_fixture_logs(&count);
    for (size_t f = 0; f < count; f++) {
        size_t len;
        char *data = read_fixture(names[f], &len);
        struct collector *whole = events_of(data, len, 0);
        cr_assert_gt(whole->count, 0, "%s gave no events", names[f]);
        for (size_t k = 0; k < sizeof chunks / sizeof chunks[0]; k++) {
            struct collector *split = events_of(data, len, chunks[k]);
            cr_assert_eq(split->count, whole->count, "%s in %zu-byte reads: %zu events, not %zu",
                         names[f], chunks[k], split->count, whole->count);
            for (size_t i = 0; i < whole->count; i++) {
                cr_assert(split->records[i].len == whole->records[i].len
                              && memcmp(split->records[i].bytes, whole->records[i].bytes,
                                        whole->records[i].len) == 0,
                          "%s in %zu-byte reads: event %zu differs", names[f], chunks[k], i);
            }
            collector_free(split);
        }
        collector_free(whole);
        free(data);
    }
    free_strings(names, count);
}

Test(rclone_log, fixtures_copied_events_equal_the_files_copied)
{
    size_t count;
    char **names = list_fixture_logs(&count);
    for (size_t f = 0; f < count; f++)
        assert_kind_matches_expect(names[f], RCLONE_LOG_COPIED, "copied");
    free_strings(names, count);
}

Test(rclone_log, fixtures_deleted_and_moved_events_equal_the_files_that_left_the_source)
{
    size_t count;
    char **names = list_fixture_logs(&count);
    for (size_t f = 0; f < count; f++) {
        assert_kind_matches_expect(names[f], RCLONE_LOG_DELETED, "deleted");
        assert_kind_matches_expect(names[f], RCLONE_LOG_MOVED_SERVER_SIDE, "moved");
    }
    free_strings(names, count);
}

Test(rclone_log, fixtures_hold_no_malformed_or_suspicious_line)
{
    size_t count;
    char **names = list_fixture_logs(&count);
    for (size_t f = 0; f < count; f++) {
        size_t len;
        char *data = read_fixture(names[f], &len);
        struct collector *c = events_of(data, len, 0);
        cr_assert_eq(c->kinds[RCLONE_LOG_MALFORMED], 0, "%s", names[f]);
        for (size_t i = 0; i < c->count; i++) {
            /* field 4 of the record is suspicious_path */
            int kind, level, json, suspicious;
            cr_assert_eq(sscanf(c->records[i].bytes, "%d|%d|%d|%d|", &kind, &level, &json,
                                &suspicious), 4);
            cr_assert_eq(suspicious, 0, "%s event %zu", names[f], i);
        }
        collector_free(c);
        free(data);
    }
    free_strings(names, count);
}

Test(rclone_log, every_json_fixture_line_has_a_level_and_every_stats_line_its_counters)
{
    size_t count;
    char **names = list_fixture_logs(&count);
    struct rclone_log_event *ev = new_event();
    size_t stats_lines = 0;
    for (size_t f = 0; f < count; f++) {
        size_t len;
        char *data = read_fixture(names[f], &len);
        const char *p = data, *end = data + len;
        while (p < end) {
            const char *nl = memchr(p, '\n', (size_t)(end - p));
            size_t line_len = (size_t)((nl ? nl : end) - p);
            rclone_log_parse(p, line_len, ev);
            if (ev->json)
                cr_assert_neq(ev->level, RCLONE_LOG_LEVEL_UNKNOWN, "%s: %.*s", names[f],
                              (int)line_len, p);
            if (ev->kind == RCLONE_LOG_STATS) {
                stats_lines++;
                cr_assert_geq(ev->stats.bytes, 0);
                cr_assert_geq(ev->stats.total_bytes, ev->stats.bytes);
                cr_assert_geq(ev->stats.speed_bps, 0);
                cr_assert_geq(ev->stats.transfers, 0);
                cr_assert_geq(ev->stats.errors, 0);
                cr_assert_geq(ev->stats.elapsed_s, 0);
            }
            p = nl ? nl + 1 : end;
        }
        free(data);
    }
    cr_assert_geq(stats_lines, count - 1, "only the usage run ends without stats");
    free(ev);
    free_strings(names, count);
}

/* --- the reader ------------------------------------------------------------------------- */

struct line_log {
    size_t count;
    size_t last_len;
    char *last;
    struct rclone_log_event event;
    enum rclone_log_kind last_kind;
};

static void remember_line(void *ctx, const char *line, size_t len)
{
    struct line_log *log = ctx;
    free(log->last);
    log->last = malloc(len + 1);
    cr_assert_not_null(log->last);
    memcpy(log->last, line, len);
    log->last[len] = '\0';
    log->last_len = len;
    log->count++;
    log->last_kind = rclone_log_parse(line, len, &log->event);
}

static struct line_log *line_log_new(void)
{
    struct line_log *log = calloc(1, sizeof *log);
    cr_assert_not_null(log);
    return log;
}

static void line_log_free(struct line_log *log)
{
    free(log->last);
    free(log);
}

/* A Copied line whose object is `path_len` bytes of 'a' under "big/". */
static char *copied_line_with_path(size_t path_len, size_t *len)
{
    static const char head[] = "{\"level\":\"info\",\"msg\":\"Copied (new)\",\"object\":\"big/";
    static const char tail[] = "\",\"objectType\":\"*local.Object\"}";
    size_t n = strlen(head) + path_len + strlen(tail);
    char *line = malloc(n + 1);
    cr_assert_not_null(line);
    memcpy(line, head, strlen(head));
    memset(line + strlen(head), 'a', path_len);
    memcpy(line + strlen(head) + path_len, tail, strlen(tail) + 1);
    *len = n;
    return line;
}

/* A Copied line of `total` bytes plus '\n': the object stays short, a field rclone does not
 * write carries the bulk, as the "transferring" list does in a stats line. */
static char *padded_copied_line(size_t total)
{
    static const char head[] = "{\"level\":\"info\",\"msg\":\"Copied (new)\","
                               "\"object\":\"sub/f.bin\",\"pad\":\"";
    static const char tail[] = "\"}";
    size_t fixed = strlen(head) + strlen(tail);
    cr_assert_gt(total, fixed);
    char *line = malloc(total + 1);
    cr_assert_not_null(line);
    memcpy(line, head, strlen(head));
    memset(line + strlen(head), 'p', total - fixed);
    memcpy(line + total - strlen(tail), tail, strlen(tail));
    line[total] = '\n';
    return line;
}

Test(rclone_log, line_of_100_kib_split_across_reads_is_delivered_whole)
{
    size_t len = 100 * 1024;
    char *stream = padded_copied_line(len);

    static const size_t chunks[] = { 1, 7, 4096, 65536, 0 };
    for (size_t k = 0; k < sizeof chunks / sizeof chunks[0]; k++) {
        struct rclone_log_reader reader;
        cr_assert_eq(rclone_log_reader_init(&reader, 0), 0);
        struct line_log *log = line_log_new();
        feed_in_chunks(&reader, stream, len + 1, chunks[k], remember_line, log);
        cr_assert_eq(log->count, 1, "%zu-byte reads", chunks[k]);
        cr_assert_eq(log->last_len, len);
        cr_assert_eq(memcmp(log->last, stream, len), 0);
        cr_assert_eq(reader.oversized_lines, 0);
        cr_assert_eq(log->last_kind, RCLONE_LOG_COPIED);
        cr_assert_str_eq(log->event.object, "sub/f.bin");
        line_log_free(log);
        rclone_log_reader_free(&reader);
    }
    free(stream);
}

Test(rclone_log, stats_line_of_100_kib_split_across_reads_parses)
{
    /* a real stats line with its "transferring" list padded to 100 KiB */
    size_t real_len;
    char *real = fixture_line("copy_stats_periodic.log", "\"transferring\":[", &real_len);
    const char *list = strstr(real, "\"transferring\":[") + strlen("\"transferring\":[");
    size_t head_len = (size_t)(list - real);
    static const char entry[] = "{\"bytes\":1,\"eta\":null,\"group\":\"global_stats\","
                                "\"name\":\"pad/padding file.bin\",\"percentage\":1,"
                                "\"size\":100,\"speed\":1,\"speedAvg\":0},";
    size_t entries = 100 * 1024 / strlen(entry) + 1;
    size_t len = real_len + entries * strlen(entry);
    char *stream = malloc(len + 1);
    cr_assert_not_null(stream);
    memcpy(stream, real, head_len);
    for (size_t i = 0; i < entries; i++)
        memcpy(stream + head_len + i * strlen(entry), entry, strlen(entry));
    memcpy(stream + head_len + entries * strlen(entry), list, real_len - head_len);
    stream[len] = '\n';
    cr_assert_gt(len, 100 * 1024);

    struct rclone_log_event *direct = new_event();
    cr_assert_eq(rclone_log_parse(real, real_len, direct), RCLONE_LOG_STATS);

    static const size_t chunks[] = { 1, 7, 4096, 0 };
    for (size_t k = 0; k < sizeof chunks / sizeof chunks[0]; k++) {
        struct rclone_log_reader reader;
        cr_assert_eq(rclone_log_reader_init(&reader, 0), 0);
        struct line_log *log = line_log_new();
        feed_in_chunks(&reader, stream, len + 1, chunks[k], remember_line, log);
        cr_assert_eq(log->count, 1);
        cr_assert_eq(log->last_len, len);
        cr_assert_eq(log->last_kind, RCLONE_LOG_STATS);
        cr_assert_eq(log->event.stats.bytes, direct->stats.bytes);
        cr_assert_eq(log->event.stats.total_bytes, direct->stats.total_bytes);
        line_log_free(log);
        rclone_log_reader_free(&reader);
    }
    free(direct);
    free(stream);
    free(real);
}

Test(rclone_log, line_of_2_mib_is_skipped_counted_and_the_next_line_parses)
{
    size_t next_len;
    char *next = fixture_line("copy_new.log", "\"Copied (new)\"", &next_len);
    size_t long_len = 2 * 1024 * 1024;
    char *long_line = padded_copied_line(long_len);

    size_t len = long_len + 1 + next_len + 1;
    char *stream = malloc(len);
    cr_assert_not_null(stream);
    memcpy(stream, long_line, long_len + 1);
    memcpy(stream + long_len + 1, next, next_len);
    stream[len - 1] = '\n';

    static const size_t chunks[] = { 1, 7, 4096, 0 };
    for (size_t k = 0; k < sizeof chunks / sizeof chunks[0]; k++) {
        struct rclone_log_reader reader;
        cr_assert_eq(rclone_log_reader_init(&reader, 0), 0);
        struct line_log *log = line_log_new();
        feed_in_chunks(&reader, stream, len, chunks[k], remember_line, log);
        cr_assert_eq(reader.oversized_lines, 1, "%zu-byte reads", chunks[k]);
        cr_assert_eq(log->count, 1, "only the short line is delivered");
        cr_assert_eq(log->last_kind, RCLONE_LOG_COPIED);
        cr_assert_eq(log->last_len, next_len);
        cr_assert_leq(reader.buf_cap, RCLONE_LOG_LINE_MAX_DEFAULT, "memory stays bounded");
        line_log_free(log);
        rclone_log_reader_free(&reader);
    }
    free(stream);
    free(long_line);
    free(next);
}

Test(rclone_log, line_of_exactly_the_limit_is_kept_and_one_byte_more_is_skipped)
{
    for (size_t chunk = 1; chunk <= 12; chunk++) {
        struct rclone_log_reader reader;
        cr_assert_eq(rclone_log_reader_init(&reader, 10), 0);
        struct line_log *log = line_log_new();
        const char stream[] = "0123456789\n0123456789A\nok\n";
        feed_in_chunks(&reader, stream, strlen(stream), chunk, remember_line, log);
        cr_assert_eq(log->count, 2);
        cr_assert_eq(reader.oversized_lines, 1);
        cr_assert_str_eq(log->last, "ok");
        line_log_free(log);
        rclone_log_reader_free(&reader);
    }
}

Test(rclone_log, final_line_without_newline_is_delivered_by_finish)
{
    size_t len;
    char *data = read_fixture("copy_new.log", &len);
    cr_assert_eq(data[len - 1], '\n');
    len--; /* the stats line now ends the stream without its newline */

    struct rclone_log_reader reader;
    cr_assert_eq(rclone_log_reader_init(&reader, 0), 0);
    struct line_log *log = line_log_new();
    cr_assert_eq(rclone_log_feed(&reader, data, len, remember_line, log), 0);
    size_t before_finish = log->count;
    rclone_log_finish(&reader, remember_line, log);
    cr_assert_eq(log->count, before_finish + 1);
    cr_assert_eq(log->last_kind, RCLONE_LOG_STATS);

    /* finishing again delivers nothing: the reader is ready for a new stream */
    rclone_log_finish(&reader, remember_line, log);
    cr_assert_eq(log->count, before_finish + 1);
    line_log_free(log);
    rclone_log_reader_free(&reader);
    free(data);
}

Test(rclone_log, many_lines_in_one_read_are_each_delivered_in_order)
{
    size_t len;
    char *data = read_fixture("move_copy.log", &len);
    size_t newlines = 0;
    for (size_t i = 0; i < len; i++)
        newlines += data[i] == '\n';
    struct collector *c = events_of(data, len, 0);
    cr_assert_eq(c->count, newlines);
    cr_assert_eq(c->kinds[RCLONE_LOG_COPIED], 5);
    cr_assert_eq(c->kinds[RCLONE_LOG_DELETED], 5);
    cr_assert_eq(c->kinds[RCLONE_LOG_STATS], 1);
    collector_free(c);
    free(data);
}

Test(rclone_log, reader_rejects_a_limit_above_the_maximum_and_keeps_the_reader)
{
    struct rclone_log_reader reader = { .max_line_bytes = 77 };
    cr_assert_eq(rclone_log_reader_init(&reader, RCLONE_LOG_LINE_MAX_LIMIT + 1), -EINVAL);
    cr_assert_eq(reader.max_line_bytes, 77);
    cr_assert_eq(rclone_log_reader_init(&reader, 0), 0);
    cr_assert_eq(reader.max_line_bytes, RCLONE_LOG_LINE_MAX_DEFAULT);
}

/* --- the 4 KiB boundary ----------------------------------------------------------------- */

/* The reader's buffer starts at 4 KiB and doubles; a line of 4095, 4096 or 4097 bytes split by
 * a read fills it one short, exactly, or one past. Lines are recorded whole, as delivered. */
struct line_list {
    size_t count;
    char *lines[4];
    size_t lens[4];
};

static void keep_line(void *ctx, const char *line, size_t len)
{
    struct line_list *l = ctx;
    cr_assert_lt(l->count, 4, "more lines than the stream holds");
    l->lines[l->count] = malloc(len ? len : 1);
    cr_assert_not_null(l->lines[l->count]);
    memcpy(l->lines[l->count], line, len);
    l->lens[l->count++] = len;
}

static void line_list_clear(struct line_list *l)
{
    for (size_t i = 0; i < l->count; i++)
        free(l->lines[i]);
    l->count = 0;
}

static void assert_line_is(const struct line_list *got, size_t i, const char *want,
                           size_t want_len, const char *what)
{
    cr_assert_eq(got->lens[i], want_len, "%s: line %zu is %zu bytes, not %zu", what, i,
                 got->lens[i], want_len);
    cr_assert_eq(memcmp(got->lines[i], want, want_len), 0, "%s: line %zu differs", what, i);
}

/* Feeds stream in up to three reads: [0, a), [a, b), [b, len). */
static void feed_split(struct rclone_log_reader *reader, const char *stream, size_t len,
                       size_t a, size_t b, struct line_list *got)
{
    const size_t cut[] = { 0, a, b, len };
    for (int i = 0; i < 3; i++)
        if (cut[i + 1] > cut[i])
            cr_assert_eq(rclone_log_feed(reader, stream + cut[i], cut[i + 1] - cut[i],
                                         keep_line, got), 0);
    rclone_log_finish(reader, keep_line, got);
}

Test(rclone_log, lines_at_the_4_kib_boundary_are_whole_at_every_split_near_it)
{
    static const char lead[] = "{\"level\":\"info\",\"msg\":\"Copied (new)\",\"object\":\"lead.bin\"}\n";
    static const char next[] = "{\"level\":\"info\",\"msg\":\"Copied (new)\",\"object\":\"next.bin\"}\n";
    struct rclone_log_event *ev = new_event();
    size_t checked = 0;
    /* 4095..4097 bytes without the newline, and 4094..4096 without it (4095..4097 with). */
    for (size_t size = 4094; size <= 4097; size++)
    for (int json = 0; json <= 1; json++)
    for (int with_lead = 0; with_lead <= 1; with_lead++) {
        char *target = json ? padded_copied_line(size) : malloc(size + 1);
        cr_assert_not_null(target);
        if (!json) {
            memset(target, 'x', size);
            target[size] = '\n';
        }
        size_t lead_len = with_lead ? strlen(lead) : 0;
        size_t len = lead_len + size + 1 + strlen(next);
        char *stream = malloc(len);
        cr_assert_not_null(stream);
        memcpy(stream, lead, lead_len);
        memcpy(stream + lead_len, target, size + 1);
        memcpy(stream + lead_len + size + 1, next, strlen(next));
        const size_t target_end = lead_len + size; /* offset of its newline */

        /* Limits: the default, and one of exactly 4 KiB (the cap never outgrows it). */
        static const size_t limits[] = { 0, 4096 };
        for (size_t k = 0; k < 2; k++) {
            size_t limit = limits[k] ? limits[k] : RCLONE_LOG_LINE_MAX_DEFAULT;
            bool kept = size <= limit;
            /* One cut at every offset within 40 bytes of the line's end and of 4096 bytes
             * into the stream, alone and followed by a second cut 1..3 bytes later. */
            for (size_t centre = 0; centre < 2; centre++)
            for (size_t a = (centre ? 4096 : target_end) - 40;
                 a <= (centre ? 4096 : target_end) + 40 && a < len; a++)
            for (size_t gap = 0; gap <= 3; gap++) {
                size_t b = a + gap < len ? a + gap : len;
                char what[128];
                snprintf(what, sizeof(what), "%zu-byte %s line%s, limit %zu, cuts %zu/%zu",
                         size, json ? "Copied" : "plain", with_lead ? " after another" : "",
                         limit, a, b);
                struct rclone_log_reader reader;
                cr_assert_eq(rclone_log_reader_init(&reader, limits[k]), 0);
                struct line_list got = { 0 };
                feed_split(&reader, stream, len, a, b, &got);
                size_t want = (size_t)with_lead + kept + 1, i = 0;
                cr_assert_eq(got.count, want, "%s: %zu lines, not %zu", what, got.count, want);
                cr_assert_eq(reader.lines, want, "%s", what);
                cr_assert_eq(reader.oversized_lines, kept ? 0 : 1, "%s", what);
                cr_assert_leq(reader.buf_cap, limit, "%s: buffer of %zu", what, reader.buf_cap);
                if (with_lead)
                    assert_line_is(&got, i++, lead, strlen(lead) - 1, what);
                if (kept) {
                    assert_line_is(&got, i, target, size, what);
                    enum rclone_log_kind kind = rclone_log_parse(got.lines[i], got.lens[i], ev);
                    cr_assert_eq(kind, json ? RCLONE_LOG_COPIED : RCLONE_LOG_OTHER, "%s", what);
                    if (json)
                        cr_assert_str_eq(ev->object, "sub/f.bin", "%s", what);
                    i++;
                }
                assert_line_is(&got, i, next, strlen(next) - 1, what);
                cr_assert_eq(rclone_log_parse(got.lines[i], got.lens[i], ev), RCLONE_LOG_COPIED);
                cr_assert_str_eq(ev->object, "next.bin", "%s", what);
                line_list_clear(&got);
                rclone_log_reader_free(&reader);
                checked++;
            }
        }
        free(stream);
        free(target);
    }
    cr_assert_gt(checked, 4000);
    free(ev);
}

/* xorshift64: the same garbage on every run, so a failure can be replayed */
static uint64_t next_random(uint64_t *state)
{
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    return *state;
}

struct garbage_check {
    struct rclone_log_event event;
    size_t lines;
};

static void check_garbage_line(void *ctx, const char *line, size_t len)
{
    struct garbage_check *check = ctx;
    enum rclone_log_kind kind = rclone_log_parse(line, len, &check->event);
    check->lines++;
    cr_assert(kind == RCLONE_LOG_MALFORMED || kind == RCLONE_LOG_OTHER,
              "garbage line %zu parsed as %s", check->lines, rclone_log_kind_name(kind));
    size_t skip = 0;
    while (skip < len && (line[skip] == ' ' || line[skip] == '\t'))
        skip++;
    if (skip < len && line[skip] == '{')
        cr_assert_eq(kind, RCLONE_LOG_MALFORMED);
    cr_assert_leq(check->event.message_len, RCLONE_LOG_MESSAGE_MAX - 1);
}

Test(rclone_log, binary_garbage_and_nuls_give_malformed_or_other)
{
    size_t len = 512 * 1024;
    char *garbage = malloc(len);
    cr_assert_not_null(garbage);
    uint64_t state = 0x9e3779b97f4a7c15u;
    for (size_t i = 0; i < len; i++) {
        uint64_t r = next_random(&state);
        /* bias towards the bytes that steer a JSON parser, NULs and line ends */
        static const char steer[] = "{}[]\":,\\\n\0 u0";
        garbage[i] = (r & 3) == 0 ? steer[(r >> 8) % (sizeof steer - 1)] : (char)(r >> 16);
    }
    /* a line that starts as rclone JSON and then turns into garbage */
    static const char prefix[] = "\n{\"level\":\"info\",\"msg\":\"Copied (new)\",\"object\":\"";
    memcpy(garbage + len / 2, prefix, sizeof prefix - 1);

    static const size_t limits[] = { 0, 100 };
    static const size_t chunks[] = { 1, 7, 4096, 0 };
    for (size_t l = 0; l < sizeof limits / sizeof limits[0]; l++) {
        for (size_t k = 0; k < sizeof chunks / sizeof chunks[0]; k++) {
            struct rclone_log_reader reader;
            cr_assert_eq(rclone_log_reader_init(&reader, limits[l]), 0);
            struct garbage_check *check = calloc(1, sizeof *check);
            cr_assert_not_null(check);
            feed_in_chunks(&reader, garbage, len, chunks[k], check_garbage_line, check);
            cr_assert_gt(check->lines, 0);
            free(check);
            rclone_log_reader_free(&reader);
        }
    }
    free(garbage);
}

Test(rclone_log, nul_bytes_inside_a_json_line_make_it_malformed)
{
    struct rclone_log_event *ev = new_event();
    static const char raw_nul[] = "{\"level\":\"info\",\"msg\":\"Copied (new)\",\"object\":\"a\0b\"}";
    cr_assert_eq(rclone_log_parse(raw_nul, sizeof raw_nul - 1, ev), RCLONE_LOG_MALFORMED);
    cr_assert_eq(ev->message_len, sizeof raw_nul - 1, "the raw line is kept for triggers");

    static const char escaped_nul[] =
        "{\"level\":\"info\",\"msg\":\"Copied (new)\",\"object\":\"a\\u0000b\"}";
    cr_assert_eq(parse_str(escaped_nul, ev), RCLONE_LOG_MALFORMED);

    /* a literal backslash followed by "u0000" is text, not a NUL */
    static const char backslash[] =
        "{\"level\":\"info\",\"msg\":\"Copied (new)\",\"object\":\"a\\\\u0000b\"}";
    cr_assert_eq(parse_str(backslash, ev), RCLONE_LOG_COPIED);
    cr_assert_str_eq(ev->object, "a\\u0000b");
    free(ev);
}

/* --- the parser ------------------------------------------------------------------------- */

Test(rclone_log, truncated_json_line_is_malformed)
{
    size_t len;
    char *line = fixture_line("copy_new.log", "\"Copied (new)\"", &len);
    struct rclone_log_event *ev = new_event();
    cr_assert_eq(rclone_log_parse(line, len, ev), RCLONE_LOG_COPIED);
    for (size_t cut = 1; cut < len; cut++)
        cr_assert_eq(rclone_log_parse(line, cut, ev), RCLONE_LOG_MALFORMED, "cut at %zu", cut);

    /* and in a stream, the line after a truncated one still parses */
    struct rclone_log_reader reader;
    cr_assert_eq(rclone_log_reader_init(&reader, 0), 0);
    struct collector *c = collector_new();
    cr_assert_eq(rclone_log_feed(&reader, line, len / 2, collect_line, c), 0);
    cr_assert_eq(rclone_log_feed(&reader, "\n", 1, collect_line, c), 0);
    cr_assert_eq(rclone_log_feed(&reader, line, len, collect_line, c), 0);
    rclone_log_finish(&reader, collect_line, c);
    cr_assert_eq(c->count, 2);
    cr_assert_eq(c->kinds[RCLONE_LOG_MALFORMED], 1);
    cr_assert_eq(c->kinds[RCLONE_LOG_COPIED], 1);
    collector_free(c);
    rclone_log_reader_free(&reader);
    free(ev);
    free(line);
}

Test(rclone_log, trailing_garbage_after_the_json_object_is_malformed)
{
    struct rclone_log_event *ev = new_event();
    cr_assert_eq(parse_str("{\"level\":\"info\",\"msg\":\"Deleted\",\"object\":\"a\"} x", ev),
                 RCLONE_LOG_MALFORMED);
    cr_assert_eq(parse_str("{\"level\":\"info\",\"msg\":\"Deleted\",\"object\":\"a\"} \r", ev),
                 RCLONE_LOG_DELETED);
    free(ev);
}

Test(rclone_log, json_without_level_msg_or_a_needed_object_is_malformed)
{
    struct rclone_log_event *ev = new_event();
    cr_assert_eq(parse_str("{\"msg\":\"Copied (new)\",\"object\":\"a\"}", ev),
                 RCLONE_LOG_MALFORMED);
    cr_assert_eq(parse_str("{\"level\":\"info\",\"object\":\"a\"}", ev), RCLONE_LOG_MALFORMED);
    cr_assert_eq(parse_str("{\"level\":\"info\",\"msg\":7,\"object\":\"a\"}", ev),
                 RCLONE_LOG_MALFORMED);
    cr_assert_eq(parse_str("{\"level\":\"info\",\"msg\":\"Copied (new)\"}", ev),
                 RCLONE_LOG_MALFORMED);
    cr_assert_eq(parse_str("{\"level\":\"info\",\"msg\":\"Copied (new)\",\"object\":\"\"}", ev),
                 RCLONE_LOG_MALFORMED);
    cr_assert_eq(parse_str("{\"level\":\"info\",\"msg\":\"Deleted\",\"object\":5}", ev),
                 RCLONE_LOG_MALFORMED);
    cr_assert_eq(parse_str("{\"level\":\"info\",\"msg\":\"x\",\"stats\":[]}", ev),
                 RCLONE_LOG_MALFORMED);
    cr_assert_eq(parse_str("{", ev), RCLONE_LOG_MALFORMED);
    cr_assert_eq(parse_str("{}", ev), RCLONE_LOG_MALFORMED);
    /* a JSON line we do not act on needs only level and msg */
    cr_assert_eq(parse_str("{\"level\":\"info\",\"msg\":\"There was nothing to transfer\"}", ev),
                 RCLONE_LOG_OTHER);
    cr_assert(ev->json);
    free(ev);
}

Test(rclone_log, copied_replaced_existing_is_copied)
{
    size_t len;
    char *line = fixture_line("copy_replaced.log", "\"Copied (replaced existing)\"", &len);
    struct rclone_log_event *ev = new_event();
    cr_assert_eq(rclone_log_parse(line, len, ev), RCLONE_LOG_COPIED);
    cr_assert_str_eq(ev->object, "small.bin");
    cr_assert_eq(ev->object_len, strlen("small.bin"));
    cr_assert_eq(ev->level, RCLONE_LOG_LEVEL_INFO);
    cr_assert_str_eq(ev->message, "Copied (replaced existing)");
    cr_assert_not(ev->suspicious_path);
    free(ev);
    free(line);
}

Test(rclone_log, other_copied_variants_rclone_1_60_emits_are_copied)
{
    /* the strings rclone 1.60.1's binary holds besides "new" and "replaced existing" */
    static const char *const msgs[] = {
        "Copied (server-side copy)",
        "Copied (Rcat, new)",
        "Copied (Rcat, replaced existing)",
        "Copied (new) to: renamed.bin",
        /* a copy in parallel chunks (--multi-thread-streams, a destination written at
         * offsets): left out, such files were never counted */
        "Multi-thread Copied (new)",
        "Multi-thread Copied (replaced existing)",
    };
    struct rclone_log_event *ev = new_event();
    char line[256];
    for (size_t i = 0; i < sizeof msgs / sizeof msgs[0]; i++) {
        snprintf(line, sizeof line, "{\"level\":\"info\",\"msg\":\"%s\",\"object\":\"d/f.bin\"}",
                 msgs[i]);
        cr_assert_eq(parse_str(line, ev), RCLONE_LOG_COPIED, "%s", msgs[i]);
        cr_assert_str_eq(ev->object, "d/f.bin");
    }
    /* a message that only mentions copying is not a completion */
    cr_assert_eq(parse_str("{\"level\":\"info\",\"msg\":\"Copied\",\"object\":\"a\"}", ev),
                 RCLONE_LOG_OTHER);
    free(ev);
}

Test(rclone_log, moved_server_side_and_deleted_carry_the_object)
{
    struct rclone_log_event *ev = new_event();
    size_t len;
    char *moved = fixture_line("move_server_side.log", "\"Moved (server-side)\"", &len);
    cr_assert_eq(rclone_log_parse(moved, len, ev), RCLONE_LOG_MOVED_SERVER_SIDE);
    cr_assert_gt(ev->object_len, 0);
    char *deleted = fixture_line("move_copy.log", "\"msg\":\"Deleted\"", &len);
    cr_assert_eq(rclone_log_parse(deleted, len, ev), RCLONE_LOG_DELETED);
    cr_assert_gt(ev->object_len, 0);
    cr_assert_eq(parse_str("{\"level\":\"info\",\"msg\":\"Moved (server-side) to: b\","
                           "\"object\":\"a\"}", ev),
                 RCLONE_LOG_MOVED_SERVER_SIDE);
    cr_assert_str_eq(ev->object, "a");
    free(deleted);
    free(moved);
    free(ev);
}

Test(rclone_log, failed_line_carries_the_object_and_the_error_text)
{
    size_t len;
    /* rclone's order of failures varies from run to run; pick small.bin's by its object */
    char *line = fixture_line("copy_failed.log", "small.bin: is a directory\",\"object\":\"small.bin\"",
                              &len);
    /* the error text, read from the raw line independently of the parser */
    const char *start = strstr(line, "\"msg\":\"Failed to copy: ") + strlen("\"msg\":\"Failed to copy: ");
    const char *stop = strchr(start, '"');
    char *want_error = strndup(start, (size_t)(stop - start));

    struct rclone_log_event *ev = new_event();
    cr_assert_eq(rclone_log_parse(line, len, ev), RCLONE_LOG_FAILED);
    cr_assert_eq(ev->level, RCLONE_LOG_LEVEL_ERROR);
    cr_assert_str_eq(ev->object, "small.bin");
    cr_assert_str_eq(rclone_log_error_text(ev), want_error);
    cr_assert(strstr(want_error, "small.bin: is a directory"));
    size_t text_len;
    const char *text = rclone_log_trigger_text(ev, &text_len);
    cr_assert_eq(text_len, strlen("Failed to copy: ") + strlen(want_error));
    cr_assert_eq(strncmp(text, "Failed to copy: ", strlen("Failed to copy: ")), 0);

    /* the unicode object of the same run */
    char *unicode = fixture_line("copy_failed.log", "grüße – 日本.bin: is a directory", &len);
    cr_assert_eq(rclone_log_parse(unicode, len, ev), RCLONE_LOG_FAILED);
    cr_assert_str_eq(ev->object, "dir with space/grüße – 日本.bin");

    free(unicode);
    free(want_error);
    free(line);
    free(ev);
}

Test(rclone_log, failed_variants_and_their_error_text)
{
    struct rclone_log_event *ev = new_event();
    cr_assert_eq(parse_str("{\"level\":\"error\",\"msg\":\"Couldn't move: googleapi: Error 403: "
                           "User rate limit exceeded., userRateLimitExceeded\",\"object\":\"m/a.mkv\"}",
                           ev),
                 RCLONE_LOG_FAILED);
    cr_assert_str_eq(rclone_log_error_text(ev),
                     "googleapi: Error 403: User rate limit exceeded., userRateLimitExceeded");
    cr_assert_str_eq(ev->object, "m/a.mkv");

    cr_assert_eq(parse_str("{\"level\":\"error\",\"msg\":\"Failed to move: x\"}", ev),
                 RCLONE_LOG_FAILED);
    cr_assert_eq(ev->object_len, 0, "a failure need not name a file");
    cr_assert_str_eq(rclone_log_error_text(ev), "x");

    cr_assert_eq(parse_str("{\"level\":\"error\",\"msg\":\"Failed to copy\",\"object\":\"a\"}", ev),
                 RCLONE_LOG_FAILED);
    cr_assert_str_eq(rclone_log_error_text(ev), "");

    /* copy failures under move are followed by this line: counting it would count twice */
    size_t len;
    char *line = fixture_line("move_failed.log", "Not deleting source as copy failed", &len);
    cr_assert_eq(rclone_log_parse(line, len, ev), RCLONE_LOG_OTHER);
    cr_assert_str_eq(rclone_log_error_text(ev), "");
    free(line);
    free(ev);
}

Test(rclone_log, plain_final_failure_lines_are_other_and_matchable)
{
    static const char *const fixtures[][2] = {
        { "move_failed.log", " Failed to move: " },
        { "copy_missing_source.log", " Failed to copy: directory not found" },
        { "max_transfer_move.log", " Failed to move with 3 errors: " },
        { "copy_failed.log", " Failed to copy with 2 errors: " },
    };
    struct rclone_log_event *ev = new_event();
    for (size_t i = 0; i < sizeof fixtures / sizeof fixtures[0]; i++) {
        size_t len;
        char *line = fixture_line(fixtures[i][0], fixtures[i][1], &len);
        cr_assert_eq(rclone_log_parse(line, len, ev), RCLONE_LOG_OTHER, "%s", fixtures[i][0]);
        cr_assert_not(ev->json);
        size_t text_len;
        const char *text = rclone_log_trigger_text(ev, &text_len);
        cr_assert_eq(text_len, len, "plain lines are matched whole");
        cr_assert_eq(memcmp(text, line, len), 0);
        free(line);
    }
    free(ev);
}

Test(rclone_log, usage_text_is_other)
{
    size_t len;
    char *data = read_fixture("usage.log", &len);
    struct collector *c = events_of(data, len, 0);
    cr_assert_gt(c->count, 3);
    cr_assert_eq(c->kinds[RCLONE_LOG_OTHER], c->count);
    collector_free(c);
    free(data);
}

Test(rclone_log, dotdot_component_or_leading_slash_is_flagged_suspicious)
{
    static const struct {
        const char *path;
        bool suspicious;
    } cases[] = {
        { "..", true },          { "../etc/passwd", true }, { "a/../b", true },
        { "a/..", true },        { "/abs/path", true },     { "/", true },
        { "a..b", false },       { "..a/b", false },        { "a/b..", false },
        { "a/.../b", false },    { "./a", false },          { "dir with space/grüße.bin", false },
    };
    struct rclone_log_event *ev = new_event();
    char line[256];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(line, sizeof line, "{\"level\":\"info\",\"msg\":\"Copied (new)\",\"object\":\"%s\"}",
                 cases[i].path);
        cr_assert_eq(parse_str(line, ev), RCLONE_LOG_COPIED, "%s", cases[i].path);
        cr_assert_eq(ev->suspicious_path, cases[i].suspicious, "%s", cases[i].path);
        cr_assert_str_eq(ev->object, cases[i].path, "the path is kept as written");
    }
    snprintf(line, sizeof line, "{\"level\":\"error\",\"msg\":\"Failed to copy: x\",\"object\":\"../x\"}");
    cr_assert_eq(parse_str(line, ev), RCLONE_LOG_FAILED);
    cr_assert(ev->suspicious_path);
    free(ev);
}

Test(rclone_log, object_needing_path_max_bytes_is_malformed)
{
    struct rclone_log_event *ev = new_event();
    size_t len;
    /* "big/" plus n bytes: PATH_MAX - 1 bytes of path fit with their NUL, PATH_MAX do not */
    char *fits = copied_line_with_path(PATH_MAX - 1 - strlen("big/"), &len);
    cr_assert_eq(rclone_log_parse(fits, len, ev), RCLONE_LOG_COPIED);
    cr_assert_eq(ev->object_len, PATH_MAX - 1);
    char *too_long = copied_line_with_path(PATH_MAX - strlen("big/"), &len);
    cr_assert_eq(rclone_log_parse(too_long, len, ev), RCLONE_LOG_MALFORMED);
    free(too_long);
    free(fits);
    free(ev);
}

Test(rclone_log, unicode_paths_are_kept_exactly_whether_escaped_or_not)
{
    struct rclone_log_event *ev = new_event();
    size_t len;
    char *line = fixture_line("copy_new.log", "grüße – 日本.bin", &len);
    cr_assert_eq(rclone_log_parse(line, len, ev), RCLONE_LOG_COPIED);
    cr_assert_str_eq(ev->object, "dir with space/grüße – 日本.bin");
    cr_assert_eq(parse_str("{\"level\":\"info\",\"msg\":\"Copied (new)\","
                           "\"object\":\"Gr\\u00f6\\u00dfe \\ud83c\\udfac \\\"q\\\".mkv\"}", ev),
                 RCLONE_LOG_COPIED);
    cr_assert_str_eq(ev->object, "Größe 🎬 \"q\".mkv");
    /* a lone surrogate is not text */
    cr_assert_eq(parse_str("{\"level\":\"info\",\"msg\":\"Copied (new)\",\"object\":\"\\ud83c\"}",
                           ev),
                 RCLONE_LOG_MALFORMED);
    free(line);
    free(ev);
}

Test(rclone_log, rc_serving_line_gives_the_port)
{
    size_t len;
    char *line = fixture_line("rc_serving.log", "Serving remote control on ", &len);
    unsigned want_port = 0;
    const char *url = strstr(line, "http://127.0.0.1:");
    cr_assert_eq(sscanf(url, "http://127.0.0.1:%u/", &want_port), 1);

    struct rclone_log_event *ev = new_event();
    cr_assert_eq(rclone_log_parse(line, len, ev), RCLONE_LOG_RC_SERVING);
    cr_assert(ev->json);
    cr_assert_eq(ev->rc_port, want_port);
    char want_url[64];
    snprintf(want_url, sizeof want_url, "http://127.0.0.1:%u/", want_port);
    cr_assert_str_eq(ev->rc_url, want_url);
    free(line);

    line = fixture_line("rc_serving_plain.log", "Serving remote control on ", &len);
    url = strstr(line, "http://127.0.0.1:");
    cr_assert_eq(sscanf(url, "http://127.0.0.1:%u/", &want_port), 1);
    cr_assert_eq(rclone_log_parse(line, len, ev), RCLONE_LOG_RC_SERVING);
    cr_assert_not(ev->json);
    cr_assert_eq(ev->level, RCLONE_LOG_LEVEL_NOTICE);
    cr_assert_eq(ev->rc_port, want_port);
    free(line);
    free(ev);
}

Test(rclone_log, rc_serving_urls_rclone_may_print_and_ones_it_cannot)
{
    static const struct {
        const char *line;
        enum rclone_log_kind kind;
        unsigned port;
    } cases[] = {
        { "Serving remote control on http://[::]:5572/", RCLONE_LOG_RC_SERVING, 5572 },
        { "Serving remote control on https://localhost:1/", RCLONE_LOG_RC_SERVING, 1 },
        { "2026/11/28 15:03:40.123456 NOTICE: Serving remote control on http://h:65535/",
          RCLONE_LOG_RC_SERVING, 65535 },
        { "Serving remote control on http://127.0.0.1:65536/", RCLONE_LOG_OTHER, 0 },
        { "Serving remote control on http://127.0.0.1/", RCLONE_LOG_OTHER, 0 },
        { "Serving remote control on http://[::1]/", RCLONE_LOG_OTHER, 0 },
        { "Serving remote control on ftp://127.0.0.1:21/", RCLONE_LOG_OTHER, 0 },
        { "ERROR : Failed to copy: Serving remote control on http://x:1/", RCLONE_LOG_OTHER, 0 },
        { "{\"level\":\"warning\",\"msg\":\"Serving remote control on http://127.0.0.1:0/\"}",
          RCLONE_LOG_MALFORMED, 0 },
    };
    struct rclone_log_event *ev = new_event();
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cr_assert_eq(parse_str(cases[i].line, ev), cases[i].kind, "%s", cases[i].line);
        cr_assert_eq(ev->rc_port, cases[i].port, "%s", cases[i].line);
    }
    free(ev);
}

Test(rclone_log, stats_lines_give_bytes_total_speed_eta_transfers_and_errors)
{
    struct rclone_log_event *ev = new_event();
    size_t len;

    /* the capture script copies 20 × 400000 + 2000000 bytes in 21 files */
    size_t data_len;
    char *data = read_fixture("copy_stats_periodic.log", &data_len);
    const char *last = NULL, *p = data, *end = data + data_len;
    size_t last_len = 0, longest_stats = 0, stats_lines = 0;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t line_len = (size_t)((nl ? nl : end) - p);
        if (rclone_log_parse(p, line_len, ev) == RCLONE_LOG_STATS) {
            stats_lines++;
            last = p;
            last_len = line_len;
            if (line_len > longest_stats)
                longest_stats = line_len;
            cr_assert_eq(ev->stats.total_bytes, 10000000);
            cr_assert_eq(ev->stats.total_transfers, 21);
        }
        p = nl ? nl + 1 : end;
    }
    cr_assert_geq(stats_lines, 2, "--stats 1s over a slow run gives periodic lines");
    cr_assert_gt(longest_stats, 4096, "stats lines pass 4 KiB");
    cr_assert_eq(rclone_log_parse(last, last_len, ev), RCLONE_LOG_STATS);
    cr_assert_eq(ev->stats.bytes, 10000000);
    cr_assert_eq(ev->stats.transfers, 21);
    cr_assert_eq(ev->stats.errors, 0);
    cr_assert_gt(ev->stats.speed_bps, 0);
    cr_assert_geq(ev->stats.eta_s, 0);
    free(data);

    char *failed = fixture_line("copy_failed.log", "\"stats\":{", &len);
    cr_assert_eq(rclone_log_parse(failed, len, ev), RCLONE_LOG_STATS);
    cr_assert_eq(ev->stats.errors, 2);
    cr_assert_eq(ev->stats.eta_s, -1, "eta is null when nothing is left to estimate");
    cr_assert_eq(ev->level, RCLONE_LOG_LEVEL_INFO);
    free(failed);

    /* byte counts past 2 GiB survive (cJSON's valueint would saturate) */
    cr_assert_eq(parse_str("{\"level\":\"info\",\"msg\":\"\",\"stats\":{\"bytes\":805306368000,"
                           "\"totalBytes\":805306368001,\"speed\":1.5e8,\"eta\":12,\"transfers\":3,"
                           "\"errors\":\"x\"}}", ev),
                 RCLONE_LOG_STATS);
    cr_assert_eq(ev->stats.bytes, 805306368000);
    cr_assert_eq(ev->stats.total_bytes, 805306368001);
    cr_assert_eq(ev->stats.speed_bps, 1.5e8);
    cr_assert_eq(ev->stats.eta_s, 12);
    cr_assert_eq(ev->stats.transfers, 3);
    cr_assert_eq(ev->stats.errors, -1, "a field of the wrong type reads as absent");
    cr_assert_eq(ev->stats.elapsed_s, -1);
    free(ev);
}

Test(rclone_log, stats_lines_give_triggers_no_text)
{
    size_t len;
    char *line = fixture_line("copy_stats_periodic.log", "\"transferring\":[", &len);
    struct rclone_log_event *ev = new_event();
    cr_assert_eq(rclone_log_parse(line, len, ev), RCLONE_LOG_STATS);
    size_t text_len = 99;
    const char *text = rclone_log_trigger_text(ev, &text_len);
    cr_assert_eq(text_len, 0);
    cr_assert_str_eq(text, "");
    free(line);
    free(ev);
}

Test(rclone_log, json_trigger_text_is_the_unescaped_message)
{
    struct rclone_log_event *ev = new_event();
    cr_assert_eq(parse_str("{\"level\":\"error\",\"msg\":\"Failed to copy: \\u003chtml\\u003e "
                           "User rate limit exceeded \\u0026 more: 403 Forbidden\","
                           "\"object\":\"a\"}", ev),
                 RCLONE_LOG_FAILED);
    size_t len;
    const char *text = rclone_log_trigger_text(ev, &len);
    cr_assert_str_eq(text, "Failed to copy: <html> User rate limit exceeded & more: 403 Forbidden");
    cr_assert_eq(len, strlen(text));
    free(ev);
}

Test(rclone_log, message_past_the_bound_is_cut_at_a_character_boundary_and_flagged)
{
    /* "Failed to copy: " then 3-byte characters, so the bound falls inside one */
    size_t chars = RCLONE_LOG_MESSAGE_MAX;
    size_t cap = 128 + chars * 3;
    char *line = malloc(cap);
    cr_assert_not_null(line);
    size_t n = (size_t)snprintf(line, cap, "{\"level\":\"error\",\"msg\":\"Failed to copy: ");
    for (size_t i = 0; i < chars; i++) {
        memcpy(line + n, "日", 3);
        n += 3;
    }
    n += (size_t)snprintf(line + n, cap - n, "\",\"object\":\"a\"}");

    struct rclone_log_event *ev = new_event();
    cr_assert_eq(rclone_log_parse(line, n, ev), RCLONE_LOG_FAILED);
    cr_assert(ev->message_truncated);
    cr_assert_lt(ev->message_len, RCLONE_LOG_MESSAGE_MAX);
    cr_assert_gt(ev->message_len, RCLONE_LOG_MESSAGE_MAX - 4);
    cr_assert_eq((ev->message_len - strlen("Failed to copy: ")) % 3, 0, "whole characters only");
    cr_assert_eq(ev->message[ev->message_len], '\0');
    cr_assert_str_eq(ev->object, "a");
    free(ev);
    free(line);
}

Test(rclone_log, kind_names_are_distinct)
{
    for (int a = RCLONE_LOG_OTHER; a <= RCLONE_LOG_MALFORMED; a++) {
        for (int b = a + 1; b <= RCLONE_LOG_MALFORMED; b++)
            cr_assert_str_neq(rclone_log_kind_name(a), rclone_log_kind_name(b));
    }
}
