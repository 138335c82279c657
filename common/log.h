/*
 * One line per event on stderr, tagged with the process's role: "worker[media/sa3]: ...".
 * Every process sets its tag once after fork; nothing here allocates, so it is safe right up to
 * exit.
 *
 * With a log file (--logfile), every line also goes there, as cloudplow's did. The file is
 * opened with O_APPEND (a line is one write, so processes sharing it never interleave, and
 * logrotate's copytruncate works). log_reopen_file() (the supervisor, on SIGHUP) opens the path
 * again, for logrotate's rename-and-signal; every process forked after log_open_file() follows
 * at its next line (a generation counter on a page they share), so a worker in the middle of a
 * stage does not go on writing into the renamed file. A process whose sandbox refuses opening
 * files for writing (the dashboard, notifier, Plex roles) pins its descriptor when the filter
 * goes on (log_file_pin): an open there would kill it or fail; the supervisor starts those roles
 * again after a rotation instead.
 */
#ifndef CPLOW_LOG_H
#define CPLOW_LOG_H

#include <stddef.h>

enum log_level { LOG_LEVEL_ERROR = 0, LOG_LEVEL_WARN, LOG_LEVEL_INFO, LOG_LEVEL_DEBUG };

void log_set_tag(const char *tag);
/* Where whole lines go instead of stderr (the terminal view); NULL: back to stderr. A forked
 * child must reset it. The log file gets every line either way. */
void log_set_sink(void (*sink)(const char *line, size_t len));
void log_set_level(enum log_level level);
/*
 * A level's name, in any case: cplow's "error", "warn", "info", "debug", and cloudplow's
 * (Python logging's) "WARNING" and "CRITICAL" (cplow's error: it has no level above it).
 * Returns 0, or -1 for anything else.
 */
int log_parse_level(const char *name, enum log_level *out);
/* The names log_parse_level() takes, for a message: "DEBUG, INFO, WARNING (WARN), ...". */
extern const char log_level_names[];

/* Sends every line to path too (created 0640 when missing, appended to). Returns 0, or -1 with
 * a one-line message in err. Call once, before forking. */
int log_open_file(const char *path, char *err, size_t err_len);
/* Opens the log file's path again (after logrotate renamed it), here and, at their next line,
 * in every process forked since log_open_file(). Returns 0, -1 (the old file stays; errno
 * set), or 1 when there is no log file. */
int log_reopen_file(void);
/* This process keeps the log file it has: later rotations are not followed here (a sandbox that
 * may not open files for writing). */
void log_file_pin(void);

void log_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
