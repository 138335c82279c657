#include "reconcile.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ledger.h"
#include "log.h"
#include "source.h"

/* lsjson of a few thousand candidates is well under this; more means a broken listing. */
#define RECONCILE_OUTPUT_MAX ((size_t)256 << 20)

int reconcile_prepare(struct reconcile *rc, const struct rclone_cmd *lsjson,
		      const char *files_from)
{
	memset(rc, 0, sizeof(*rc));
	snprintf(rc->files_from, sizeof(rc->files_from), "%s", files_from);
	for (int i = 0; i < RECONCILE_ROUNDS; i++) {
		if (rclone_proc_defer(lsjson, STDOUT_FILENO, &rc->rounds[i]) < 0)
			return -1; /* the rounds forked so far stay usable */
		rc->prepared = i + 1;
	}
	return 0;
}

void reconcile_limit(struct reconcile *rc, int n)
{
	for (int i = n; i < rc->prepared; i++)
		if (rc->rounds[i].go_fd >= 0)
			rclone_proc_cancel(&rc->rounds[i]);
	if (n < rc->prepared)
		rc->prepared = n;
}

void reconcile_cancel(struct reconcile *rc)
{
	for (int i = 0; i < rc->prepared; i++)
		if (rc->rounds[i].go_fd >= 0)
			rclone_proc_cancel(&rc->rounds[i]);
	rc->prepared = 0;
}

static char *read_all(int fd, size_t *len_out)
{
	size_t cap = 65536, len = 0;
	char *buf = malloc(cap);
	while (buf) {
		if (len + 1 >= cap) {
			char *p = cap < RECONCILE_OUTPUT_MAX ? realloc(buf, cap * 2) : NULL;
			if (!p) {
				free(buf);
				return NULL;
			}
			buf = p;
			cap *= 2;
		}
		ssize_t n = read(fd, buf + len, cap - len - 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			free(buf);
			return NULL;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	if (buf) {
		buf[len] = '\0';
		*len_out = len;
	}
	return buf;
}

static int by_path(const void *a, const void *b)
{
	return strcmp(((const struct reconcile_candidate *)a)->path,
		      ((const struct reconcile_candidate *)b)->path);
}

/* Writes the candidates not found yet; returns how many, or -1. --files-from-raw takes one
 * path per line, so a name with a newline cannot be asked about (source.c never lists one:
 * rclone shows control characters as symbols). */
static int64_t write_missing(const char *path, const struct reconcile_candidate *c, size_t n)
{
	FILE *f = fopen(path, "w");
	if (!f)
		return -1;
	int64_t count = 0;
	for (size_t i = 0; i < n; i++) {
		if (c[i].found || strchr(c[i].path, '\n'))
			continue;
		fprintf(f, "%s\n", c[i].path);
		count++;
	}
	return fclose(f) == 0 ? count : -1;
}

static void count_found(const cJSON *items, struct reconcile_candidate *c, size_t n,
			reconcile_count_fn count, void *ctx, struct reconcile_result *r)
{
	const cJSON *item;
	cJSON_ArrayForEach(item, items)
	{
		const cJSON *path = cJSON_GetObjectItemCaseSensitive(item, "Path");
		const cJSON *size = cJSON_GetObjectItemCaseSensitive(item, "Size");
		if (!cJSON_IsString(path) || !cJSON_IsNumber(size) ||
		    cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(item, "IsDir")))
			continue;
		struct reconcile_candidate key = { .path = path->valuestring };
		struct reconcile_candidate *hit = bsearch(&key, c, n, sizeof(*c), by_path);
		/* Not asked about, already counted, or arrived in part. */
		if (!hit || hit->found ||
		    (hit->size != RECONCILE_SIZE_ANY && (int64_t)size->valuedouble != hit->size))
			continue;
		hit->found = true;
		if (hit->size == RECONCILE_SIZE_ANY)
			hit->size = (int64_t)size->valuedouble;
		if (count(ctx, hit) != 0)
			continue;
		log_info("in-flight check: %s arrived whole (%lld bytes); counted", hit->path,
			 (long long)hit->size);
		r->files++;
		r->bytes += hit->size;
	}
}

/* One check; returns the candidates still missing, or -1. */
static int64_t check_round(struct reconcile *rc, int round, struct reconcile_candidate *c,
			   size_t n, reconcile_count_fn count, void *ctx,
			   struct reconcile_result *r, char *err, size_t err_len)
{
	int64_t asked = write_missing(rc->files_from, c, n);
	if (asked < 0) {
		snprintf(err, err_len, "cannot write %s: %s", rc->files_from, strerror(errno));
		return -1;
	}
	if (asked == 0)
		return 0;
	log_info("in-flight check %d: looking for %lld unfinished files on the remote", round + 1,
		 (long long)asked);
	struct rclone_proc *ls = &rc->rounds[round];
	if (rclone_proc_release(ls) < 0) {
		snprintf(err, err_len, "the lsjson process is gone");
		rclone_proc_cancel(ls);
		return -1;
	}
	size_t len = 0;
	char *out = read_all(ls->out_fd, &len);
	int status = 0;
	rclone_proc_wait(ls, &status);
	if (!out) {
		snprintf(err, err_len, "cannot read rclone lsjson's output");
		return -1;
	}
	int64_t left = -1;
	cJSON *items = cJSON_ParseWithLength(out, len);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || !cJSON_IsArray(items)) {
		snprintf(err, err_len, "rclone lsjson failed (status %d)", status);
	} else {
		int64_t before = r->files;
		count_found(items, c, n, count, ctx, r);
		left = asked - (r->files - before);
	}
	cJSON_Delete(items);
	free(out);
	return left;
}

int reconcile_run(struct reconcile *rc, struct reconcile_candidate *c, size_t n,
		  int64_t since_ms, reconcile_count_fn count, void *ctx,
		  struct reconcile_result *r, char *err, size_t err_len)
{
	static const int64_t schedule[RECONCILE_ROUNDS] = RECONCILE_SCHEDULE_MS;
	memset(r, 0, sizeof(*r));
	r->candidates = (int64_t)n;
	if (n) /* c may be NULL then, and qsort(NULL, 0) is undefined */
		qsort(c, n, sizeof(*c), by_path);
	int status = 0;
	for (int round = 0; n > 0 && round < rc->prepared; round++) {
		int64_t wait = since_ms + schedule[round] - ledger_now_ms();
		if (wait > 0) {
			struct timespec ts = { (time_t)(wait / 1000), (long)(wait % 1000) * 1000000L };
			while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
				;
		}
		r->rounds = round + 1;
		int64_t left = check_round(rc, round, c, n, count, ctx, r, err, err_len);
		if (left < 0)
			status = -1;
		if (left <= 0)
			break;
	}
	reconcile_cancel(rc);
	unlink(rc->files_from);
	return status;
}

void reconcile_remove_arrived(const char *root, const struct reconcile_candidate *c)
{
	int rc = source_remove_arrived(root, c->path, c->size);
	if (rc == 0)
		log_info("in-flight check: removed %s from the source, as move would have", c->path);
	else if (rc == SOURCE_REMOVE_CHANGED)
		log_warn("in-flight check: %s changed locally since it arrived; kept", c->path);
	else if (rc == SOURCE_REMOVE_ENCODED)
		log_warn("in-flight check: %s arrived but its local name has bytes rclone renames; "
			 "kept, and a later stage may upload it again", c->path);
	else if (rc != -ENOENT)
		log_warn("in-flight check: cannot remove %s from the source: %s", c->path,
			 strerror(-rc));
}
