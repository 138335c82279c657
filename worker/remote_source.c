#include "remote_source.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "rclone_proc.h"
#include "reconcile.h"

/* Reads fd to its end into *out (NUL-terminated), unless stop_fd becomes readable first.
 * 0, REMOTE_SOURCE_STOPPED, or -1 with a message. */
static int read_all(int fd, int stop_fd, char **out, size_t *len_out, char *err, size_t err_len)
{
	size_t cap = 65536, len = 0;
	char *buf = malloc(cap);
	for (;;) {
		if (!buf) {
			snprintf(err, err_len, "out of memory reading the listing");
			return -1;
		}
		if (len + 1 >= cap) {
			char *p = cap < REMOTE_SOURCE_OUTPUT_MAX ? realloc(buf, cap * 2) : NULL;
			if (!p) {
				free(buf);
				snprintf(err, err_len, "the listing is larger than %zu bytes, or there "
					 "is no memory for it", REMOTE_SOURCE_OUTPUT_MAX);
				return -1;
			}
			buf = p;
			cap *= 2;
		}
		struct pollfd p[2] = { { fd, POLLIN, 0 }, { stop_fd, POLLIN, 0 } };
		if (poll(p, stop_fd >= 0 ? 2 : 1, -1) < 0) {
			if (errno == EINTR)
				continue;
			free(buf);
			snprintf(err, err_len, "poll: %s", strerror(errno));
			return -1;
		}
		if (stop_fd >= 0 && (p[1].revents & POLLIN)) {
			free(buf);
			return REMOTE_SOURCE_STOPPED;
		}
		ssize_t n = read(fd, buf + len, cap - len - 1);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n < 0) {
			free(buf);
			snprintf(err, err_len, "reading the listing: %s", strerror(errno));
			return -1;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	buf[len] = '\0';
	*out = buf;
	*len_out = len;
	return 0;
}

/* lsjson's items into idx and mtimes; 0 or -1 with a message. */
static int index_items(const cJSON *items, struct source_index *idx, int64_t **mtime_ns,
		       char *err, size_t err_len)
{
	int n = cJSON_GetArraySize(items);
	int64_t *mt = calloc(n > 0 ? (size_t)n : 1, sizeof(*mt));
	if (!mt) {
		snprintf(err, err_len, "out of memory indexing the listing");
		return -1;
	}
	const cJSON *item;
	cJSON_ArrayForEach(item, items)
	{
		const cJSON *path = cJSON_GetObjectItemCaseSensitive(item, "Path");
		const cJSON *size = cJSON_GetObjectItemCaseSensitive(item, "Size");
		const cJSON *mtime = cJSON_GetObjectItemCaseSensitive(item, "ModTime");
		if (!cJSON_IsString(path) || cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(item,
											   "IsDir")))
			continue;
		/* -1: a size the remote does not know (Google Docs); moved, it costs nothing. */
		int64_t bytes = cJSON_IsNumber(size) && size->valuedouble > 0
					? (int64_t)size->valuedouble : 0;
		int64_t ns = 0;
		if (cJSON_IsString(mtime) && reconcile_parse_time(mtime->valuestring, &ns) < 0)
			ns = 0;
		size_t at = idx->file_count;
		int rc = source_add(idx, path->valuestring, strlen(path->valuestring), bytes);
		if (rc < 0) {
			free(mt);
			snprintf(err, err_len, "cannot index the listing: %s", strerror(-rc));
			return -1;
		}
		mt[at] = ns;
	}
	int rc = source_index_done(idx);
	if (rc < 0) {
		free(mt);
		snprintf(err, err_len, "cannot index the listing: %s", strerror(-rc));
		return -1;
	}
	*mtime_ns = mt;
	return 0;
}

int remote_source_list(const struct rclone_cmd *cmd, int stop_fd, struct source_index *idx,
		       int64_t **mtime_ns, char *err, size_t err_len)
{
	struct rclone_proc p = { .pid = -1, .out_fd = -1, .go_fd = -1 };
	char *text = NULL;
	size_t len = 0;
	int status = 0;
	if (rclone_proc_defer(cmd, STDOUT_FILENO, &p) < 0 || rclone_proc_release(&p) < 0) {
		snprintf(err, err_len, "cannot run %s: %s", cmd->argv[0], strerror(errno));
		if (p.pid > 0)
			rclone_proc_cancel(&p);
		return -1;
	}
	int rc = read_all(p.out_fd, stop_fd, &text, &len, err, err_len);
	if (rc != 0)
		kill(p.pid, SIGTERM); /* it dies with us anyway (rclone_proc) */
	rclone_proc_wait(&p, &status);
	if (rc != 0)
		return rc;
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		free(text);
		snprintf(err, err_len, "`rclone lsjson` of the source failed (%s %d; its error is "
			 "above)", WIFEXITED(status) ? "exit" : "signal",
			 WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
		return -1;
	}
	cJSON *items = cJSON_ParseWithLength(text, len);
	free(text);
	if (!cJSON_IsArray(items)) {
		cJSON_Delete(items);
		snprintf(err, err_len, "`rclone lsjson` of the source printed no list");
		return -1;
	}
	rc = index_items(items, idx, mtime_ns, err, err_len);
	cJSON_Delete(items);
	if (rc < 0)
		source_free(idx);
	return rc;
}

int remote_source_choose(struct source_index *idx, int64_t budget_bytes, const char *path,
			 int64_t *held_files, int64_t *held_bytes, char *err, size_t err_len)
{
	FILE *f = fopen(path, "we");
	if (!f) {
		snprintf(err, err_len, "cannot create %s: %s", path, strerror(errno));
		return -1;
	}
	int64_t left = budget_bytes;
	*held_files = *held_bytes = 0;
	for (size_t i = 0; i < idx->file_count; i++) {
		struct source_entry *e = &idx->entries[i];
		/* --files-from-raw reads one path per line: rclone shows control characters as
		 * symbols, so no listed path holds a newline, but none may break the list. */
		if ((budget_bytes > 0 && e->size > left) || memchr(e->path, '\n', e->path_len)) {
			e->flags |= SOURCE_HELD;
			(*held_files)++;
			*held_bytes += e->size;
			continue;
		}
		left -= e->size;
		fprintf(f, "%s\n", e->path);
	}
	if (fclose(f) != 0) {
		snprintf(err, err_len, "cannot write %s: %s", path, strerror(errno));
		return -1;
	}
	return 0;
}
