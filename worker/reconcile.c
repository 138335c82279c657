#include "reconcile.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

/* lsjson of a few thousand candidates is well under this; more means a broken listing. */
#define RECONCILE_OUTPUT_MAX ((size_t)256 << 20)

struct candidates {
	FILE *f;
	int64_t count;
	int64_t unlistable;
};

static int write_candidate(void *ctx, struct source_entry *e)
{
	struct candidates *c = ctx;
	/* --files-from-raw is one path per line: a name with a newline cannot be asked about. */
	if (memchr(e->path, '\n', e->path_len)) {
		c->unlistable++;
		return 0;
	}
	if (fprintf(c->f, "%s\n", e->path) < 0)
		return -1;
	c->count++;
	return 0;
}

static char *read_all(int fd, size_t *len_out)
{
	size_t cap = 65536, len = 0;
	char *buf = malloc(cap);
	while (buf) {
		if (len + 1 >= cap) {
			if (cap >= RECONCILE_OUTPUT_MAX) {
				free(buf);
				return NULL;
			}
			char *p = realloc(buf, cap * 2);
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

static void count_found(const cJSON *items, struct source_index *src, struct ledger *l,
			int32_t slot, uint32_t any_of, struct reconcile_result *r)
{
	const cJSON *item;
	cJSON_ArrayForEach(item, items)
	{
		const cJSON *path = cJSON_GetObjectItemCaseSensitive(item, "Path");
		const cJSON *size = cJSON_GetObjectItemCaseSensitive(item, "Size");
		const cJSON *dir = cJSON_GetObjectItemCaseSensitive(item, "IsDir");
		if (!cJSON_IsString(path) || !cJSON_IsNumber(size) || cJSON_IsTrue(dir))
			continue;
		struct source_entry *e = source_find(src, path->valuestring, strlen(path->valuestring));
		if (!e || (any_of && !(e->flags & any_of)) || (int64_t)size->valuedouble != e->size)
			continue; /* absent from the listing, not in flight, or arrived in part */
		if (source_mark_counted(e))
			continue;
		int rc = ledger_add_for_stage(l, slot, e->size, ledger_now_ms());
		if (rc != LEDGER_OK) {
			log_error("cannot record %s in the ledger: %s", e->path, ledger_strerror(rc));
			continue;
		}
		log_info("in-flight check: %s arrived whole (%lld bytes); counted", e->path,
			 (long long)e->size);
		r->files++;
		r->bytes += e->size;
	}
}

int reconcile_prepare(struct reconcile *rc, const struct rclone_cmd *lsjson,
		      const char *files_from)
{
	memset(rc, 0, sizeof(*rc));
	snprintf(rc->files_from, sizeof(rc->files_from), "%s", files_from);
	for (int i = 0; i < RECONCILE_ROUNDS; i++) {
		if (rclone_proc_defer(lsjson, &rc->rounds[i]) < 0) {
			reconcile_cancel(rc);
			return -1;
		}
		rc->prepared = i + 1;
	}
	return 0;
}

void reconcile_cancel(struct reconcile *rc)
{
	for (int i = 0; i < rc->prepared; i++)
		if (rc->rounds[i].go_fd >= 0)
			rclone_proc_cancel(&rc->rounds[i]);
	rc->prepared = 0;
}

/* One check: writes the candidates, runs one lsjson, counts what arrived whole. Returns the
 * candidates left, or -1. */
static int64_t check_round(struct reconcile *rc, int round, struct source_index *src,
			   struct ledger *l, int32_t slot, uint32_t any_of,
			   struct reconcile_result *r, char *err, size_t err_len)
{
	struct candidates c = { .f = fopen(rc->files_from, "w") };
	if (!c.f) {
		snprintf(err, err_len, "cannot write %s: %s", rc->files_from, strerror(errno));
		return -1;
	}
	int wrc = source_foreach(src, any_of, SOURCE_COUNTED, write_candidate,
				 &c);
	if (fclose(c.f) != 0 || wrc != 0) {
		snprintf(err, err_len, "cannot write %s", rc->files_from);
		return -1;
	}
	if (round == 0) {
		r->candidates = c.count;
		if (c.unlistable)
			log_warn("in-flight check: %lld files with a newline in their name cannot "
				 "be checked", (long long)c.unlistable);
	}
	if (c.count == 0)
		return 0;
	log_info("in-flight check %d: looking for %lld unfinished files on the remote", round + 1,
		 (long long)c.count);
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
		count_found(items, src, l, slot, any_of, r);
		left = c.count - (r->files - before);
	}
	cJSON_Delete(items);
	free(out);
	return left;
}

int reconcile_in_flight(struct reconcile *rc, struct source_index *src, struct ledger *l,
			int32_t slot, int64_t since_ms, struct reconcile_result *r, char *err,
			size_t err_len)
{
	static const int64_t schedule[RECONCILE_ROUNDS] = RECONCILE_SCHEDULE_MS;
	memset(r, 0, sizeof(*r));
	uint32_t any_of = source_reconcile_flags(src);
	int rc_status = 0;
	for (int round = 0; round < rc->prepared; round++) {
		int64_t wait = since_ms + schedule[round] - ledger_now_ms();
		if (wait > 0) {
			struct timespec ts = { (time_t)(wait / 1000), (long)(wait % 1000) * 1000000L };
			while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
				;
		}
		r->rounds = round + 1;
		int64_t left = check_round(rc, round, src, l, slot, any_of, r, err, err_len);
		if (left < 0)
			rc_status = -1;
		if (left <= 0)
			break;
	}
	reconcile_cancel(rc);
	return rc_status;
}
