/*
 * One line per event on stderr, tagged with the process's role: "worker[media/sa3]: ...".
 * Every process sets its tag once after fork; nothing here allocates, so it is safe right up to
 * exit.
 */
#ifndef CPLOW_LOG_H
#define CPLOW_LOG_H

#include <stddef.h>

enum log_level { LOG_LEVEL_ERROR = 0, LOG_LEVEL_WARN, LOG_LEVEL_INFO, LOG_LEVEL_DEBUG };

void log_set_tag(const char *tag);
/* Where whole lines go instead of stderr (the terminal view); NULL: back to stderr. A forked
 * child must reset it. */
void log_set_sink(void (*sink)(const char *line, size_t len));
void log_set_level(enum log_level level);
/* "error", "warn", "info", "debug" → 0; anything else → -1. */
int log_parse_level(const char *name, enum log_level *out);

void log_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
