/*
 * rclone's stderr as the worker reads it: the input is cut into reads of sizes taken from its
 * first bytes, fed to rclone_log_feed with a small or the default line limit, and every line
 * delivered goes through rclone_log_parse and the accessors; then the whole input is parsed
 * once more as one line (bytes rclone_log_parse may see from any caller).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rclone_log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct rclone_log_event event; /* 8.5 KiB: not on the stack per line */

static void check_event(enum rclone_log_kind kind)
{
	size_t len = 0;
	const char *t = rclone_log_trigger_text(&event, &len);
	if (!t || len > RCLONE_LOG_MESSAGE_MAX || event.object_len >= PATH_MAX ||
	    event.message_len >= RCLONE_LOG_MESSAGE_MAX || event.object[event.object_len] != '\0' ||
	    event.error_offset > event.message_len || event.kind != kind)
		abort();
	const char *e = rclone_log_error_text(&event);
	if (!e || strlen(e) > RCLONE_LOG_MESSAGE_MAX || !rclone_log_kind_name(kind))
		abort();
	if (kind == RCLONE_LOG_RC_SERVING && strnlen(event.rc_url, RCLONE_LOG_URL_MAX) == RCLONE_LOG_URL_MAX)
		abort();
}

static void on_line(void *ctx, const char *line, size_t len)
{
	size_t *count = ctx;
	(*count)++;
	check_event(rclone_log_parse(line, len, &event));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	/* data[0]: line limit (0: the 1 MiB default, else 1..127 bytes, to reach the oversized
	 * path); data[1]: the read size pattern. */
	size_t max_line = data[0] & 0x80 ? 0 : (size_t)(data[0] & 0x7f) + 1;
	unsigned pattern = data[1];
	data += 2;
	size -= 2;

	struct rclone_log_reader reader;
	if (rclone_log_reader_init(&reader, max_line) != 0)
		abort();
	size_t lines = 0, off = 0, step = 0;
	while (off < size) {
		size_t chunk = pattern == 0 ? size - off : (size_t)((pattern * (step + 7)) % 61) + 1;
		if (chunk > size - off)
			chunk = size - off;
		rclone_log_feed(&reader, data + off, chunk, on_line, &lines);
		off += chunk;
		step++;
	}
	rclone_log_finish(&reader, on_line, &lines);
	if (reader.lines != lines)
		abort();
	rclone_log_reader_free(&reader);

	check_event(rclone_log_parse((const char *)data, size, &event));
	return 0;
}
