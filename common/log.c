#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static char log_tag[96] = "cplow";
static enum log_level log_level = LOG_LEVEL_INFO;
static void (*log_sink)(const char *line, size_t len);

/* The log file: its path, this process's descriptor, and the generation it was opened at. */
static char log_file_path[PATH_MAX];
static int log_file_fd = -1;
static _Atomic unsigned *log_file_generation; /* MAP_SHARED: bumped by log_reopen_file() */
static unsigned log_file_seen;
static bool log_file_pinned;

void log_set_sink(void (*sink)(const char *line, size_t len))
{
	log_sink = sink;
}

void log_set_tag(const char *tag)
{
	snprintf(log_tag, sizeof(log_tag), "%s", tag);
}

void log_set_level(enum log_level level)
{
	log_level = level;
}

/* cplow's names and cloudplow's (Python logging's, which its --loglevel and CLOUDPLOW_LOGLEVEL
 * take), in any case. */
static const struct {
	const char *name;
	enum log_level level;
} level_names[] = {
	{ "debug", LOG_LEVEL_DEBUG },   { "info", LOG_LEVEL_INFO },
	{ "warning", LOG_LEVEL_WARN },  { "warn", LOG_LEVEL_WARN },
	{ "error", LOG_LEVEL_ERROR },   { "critical", LOG_LEVEL_ERROR },
};

const char log_level_names[] = "DEBUG, INFO, WARNING (WARN), ERROR or CRITICAL, in any case";

int log_parse_level(const char *name, enum log_level *out)
{
	for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
		if (strcasecmp(name, level_names[i].name) == 0) {
			*out = level_names[i].level;
			return 0;
		}
	}
	return -1;
}

static int open_log_file(void)
{
	return open(log_file_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0640);
}

int log_open_file(const char *path, char *err, size_t err_len)
{
	if (strlen(path) >= sizeof(log_file_path)) {
		snprintf(err, err_len, "log file %.200s...: path too long", path);
		return -1;
	}
	snprintf(log_file_path, sizeof(log_file_path), "%s", path);
	int fd = open_log_file();
	if (fd < 0) {
		snprintf(err, err_len, "cannot open the log file %s: %s", path, strerror(errno));
		return -1;
	}
	void *page = mmap(NULL, sizeof(*log_file_generation), PROT_READ | PROT_WRITE,
			  MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (page == MAP_FAILED) {
		snprintf(err, err_len, "cannot map the log file's generation: %s", strerror(errno));
		close(fd);
		return -1;
	}
	log_file_generation = page;
	log_file_fd = fd;
	return 0;
}

/* Here: the descriptor number changes (dup2 is not in every role's seccomp filter). */
static int reopen_here(void)
{
	int fd = open_log_file();
	if (fd < 0)
		return -1;
	close(log_file_fd);
	log_file_fd = fd;
	return 0;
}

int log_reopen_file(void)
{
	if (log_file_fd < 0)
		return 1;
	/* Opened before the others are told, so that they find the new file in place. */
	int rc = reopen_here();
	log_file_seen = atomic_fetch_add(log_file_generation, 1) + 1;
	return rc;
}

void log_file_pin(void)
{
	log_file_pinned = true;
}

static void write_log_file(const char *line, size_t len)
{
	unsigned generation = atomic_load_explicit(log_file_generation, memory_order_relaxed);
	if (generation != log_file_seen && !log_file_pinned) {
		log_file_seen = generation; /* tried once per rotation, not once per line */
		int saved = errno;
		reopen_here();
		errno = saved;
	}
	ssize_t w = write(log_file_fd, line, len);
	(void)w;
}

static void log_line(enum log_level level, const char *fmt, va_list ap)
{
	static const char *const marks[] = { "ERROR", "WARN", "INFO", "DEBUG" };
	if (level > log_level)
		return;
	char line[2048];
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	int n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %-5s %s: ",
			 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
			 tm.tm_sec, ts.tv_nsec / 1000000, marks[level], log_tag);
	if (n < 0)
		return;
	if ((size_t)n < sizeof(line)) {
		int m = vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
		if (m > 0)
			n += m;
	}
	if ((size_t)n >= sizeof(line) - 1)
		n = (int)sizeof(line) - 2;
	line[n++] = '\n';
	if (log_file_fd >= 0)
		write_log_file(line, (size_t)n);
	if (log_sink) {
		log_sink(line, (size_t)n);
		return;
	}
	/* One write per line so lines of several processes sharing stderr never interleave. */
	ssize_t w = write(STDERR_FILENO, line, (size_t)n);
	(void)w;
}

#define LOG_FN(name, level)                   \
	void name(const char *fmt, ...)       \
	{                                     \
		va_list ap;                   \
		va_start(ap, fmt);            \
		log_line(level, fmt, ap);     \
		va_end(ap);                   \
	}

LOG_FN(log_error, LOG_LEVEL_ERROR)
LOG_FN(log_warn, LOG_LEVEL_WARN)
LOG_FN(log_info, LOG_LEVEL_INFO)
LOG_FN(log_debug, LOG_LEVEL_DEBUG)
