#include "reconcile.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "ledger.h"
#include "log.h"
#include "source.h"

/* lsjson of a few thousand candidates is well under this; more means a broken listing. */
#define RECONCILE_OUTPUT_MAX ((size_t)256 << 20)
/* rclone's "no modification times": 100 years in ns. A precision this coarse is none. */
#define PRECISION_NONE_NS 3.0e18

enum read_end { READ_DONE, READ_FAILED, READ_TIMED_OUT, READ_STOPPED };

int reconcile_prepare(struct reconcile *rc, const struct rclone_cmd *features,
		      const struct rclone_cmd *lsjson, const char *files_from)
{
	memset(rc, 0, sizeof(*rc));
	rc->stop_fd = -1;
	rc->features.pid = -1;
	snprintf(rc->files_from, sizeof(rc->files_from), "%s", files_from);
	if (features) {
		if (rclone_proc_defer(features, STDOUT_FILENO, &rc->features) < 0)
			return -1;
		rc->features_prepared = true;
	}
	for (int i = 0; i < RECONCILE_ROUNDS; i++) {
		if (rclone_proc_defer(lsjson, STDOUT_FILENO, &rc->rounds[i]) < 0)
			return -1; /* the rounds forked so far stay usable */
		rc->prepared = i + 1;
	}
	return 0;
}

void reconcile_cancel(struct reconcile *rc)
{
	if (rc->features_prepared && rc->features.go_fd >= 0) {
		rclone_proc_cancel(&rc->features);
	} else if (rc->features_prepared) {
		kill(rc->features.pid, SIGKILL); /* asked early, its answer never needed */
		rclone_proc_wait(&rc->features, &(int){ 0 });
	}
	rc->features_prepared = false;
	for (int i = 0; i < rc->prepared; i++)
		if (rc->rounds[i].go_fd >= 0)
			rclone_proc_cancel(&rc->rounds[i]);
	rc->prepared = 0;
}

static int64_t time_left(struct reconcile *rc)
{
	if (rc->deadline_ms == 0)
		rc->deadline_ms = clock_mono_ms() + RECONCILE_DEADLINE_MS;
	return rc->deadline_ms - clock_mono_ms();
}

/* Waits up to ms, or less if the deadline comes first or a stop is asked for. */
static enum read_end pause_for(struct reconcile *rc, int64_t ms)
{
	for (;;) {
		int64_t left = time_left(rc);
		int64_t wait = ms < left ? ms : left;
		if (wait <= 0)
			return ms <= 0 ? READ_DONE : READ_TIMED_OUT;
		struct pollfd p = { rc->stop_fd, POLLIN, 0 };
		int64_t t0 = clock_mono_ms();
		int k = poll(&p, rc->stop_fd >= 0 ? 1 : 0, (int)wait);
		if (k > 0)
			return READ_STOPPED;
		ms -= clock_mono_ms() - t0;
	}
}

/* Reads the process's output to its end, unless the deadline or a stop comes first. */
static char *read_until(struct reconcile *rc, int fd, size_t *len_out, enum read_end *end)
{
	size_t cap = 65536, len = 0;
	char *buf = malloc(cap);
	*end = READ_FAILED;
	while (buf) {
		if (len + 1 >= cap) {
			char *p = cap < RECONCILE_OUTPUT_MAX ? realloc(buf, cap * 2) : NULL;
			if (!p)
				break;
			buf = p;
			cap *= 2;
		}
		int64_t left = time_left(rc);
		if (left <= 0) {
			*end = READ_TIMED_OUT;
			break;
		}
		struct pollfd p[2] = { { fd, POLLIN, 0 }, { rc->stop_fd, POLLIN, 0 } };
		int k = poll(p, rc->stop_fd >= 0 ? 2 : 1, left > 60000 ? 60000 : (int)left);
		if (k < 0 && errno != EINTR)
			break;
		if (k <= 0)
			continue;
		if (rc->stop_fd >= 0 && (p[1].revents & POLLIN)) {
			*end = READ_STOPPED;
			break;
		}
		ssize_t n = read(fd, buf + len, cap - len - 1);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n < 0)
			break;
		if (n == 0) {
			buf[len] = '\0';
			*len_out = len;
			*end = READ_DONE;
			return buf;
		}
		len += (size_t)n;
	}
	free(buf);
	return NULL;
}

/* Runs one deferred process to its end; NULL (and *end says why) unless it exited 0. A process
 * cut short by the deadline or a stop is killed. */
static char *run_proc(struct reconcile *rc, struct rclone_proc *p, size_t *len,
		      enum read_end *end)
{
	if (p->go_fd >= 0 && rclone_proc_release(p) < 0) {
		*end = READ_FAILED;
		rclone_proc_cancel(p);
		return NULL;
	}
	char *out = read_until(rc, p->out_fd, len, end);
	if (*end != READ_DONE)
		kill(p->pid, SIGKILL);
	int status = 0;
	rclone_proc_wait(p, &status);
	if (out && (!WIFEXITED(status) || WEXITSTATUS(status) != 0)) {
		free(out);
		out = NULL;
		*end = READ_FAILED;
	}
	return out;
}

static const char *end_text(enum read_end end)
{
	return end == READ_TIMED_OUT ? "timed out" : end == READ_STOPPED ? "stopped" : "failed";
}

void reconcile_ask_features(struct reconcile *rc)
{
	if (rc->features_prepared && rc->features.go_fd >= 0 &&
	    rclone_proc_release(&rc->features) < 0) {
		rclone_proc_cancel(&rc->features);
		rc->features_prepared = false; /* reconcile_features reports it gone */
	}
}

int reconcile_features(struct reconcile *rc, char *err, size_t err_len)
{
	if (rc->window_ns)
		return 0;
	if (!rc->features_prepared) {
		snprintf(err, err_len, "the remote's features cannot be asked for");
		return -1;
	}
	rc->features_prepared = false;
	size_t len = 0;
	enum read_end end;
	char *out = run_proc(rc, &rc->features, &len, &end);
	if (!out) {
		snprintf(err, err_len, "rclone backend features %s", end_text(end));
		return -1;
	}
	cJSON *doc = cJSON_ParseWithLength(out, len);
	const cJSON *precision = cJSON_GetObjectItemCaseSensitive(doc, "Precision");
	int rc_code = -1;
	if (cJSON_IsNumber(precision) && precision->valuedouble >= 0) {
		double ns = precision->valuedouble;
		/* rclone's modify window: the coarser of the two sides (local: 1 ns). */
		rc->window_ns = ns >= PRECISION_NONE_NS ? RECONCILE_NO_MODTIME
			      : ns < 1 ? 1 : (int64_t)ns;
		rc_code = 0;
	} else {
		snprintf(err, err_len, "rclone backend features gave no Precision");
	}
	cJSON_Delete(doc);
	free(out);
	return rc_code;
}

static int64_t span(int64_t a, int64_t b)
{
	return a > b ? a - b : b - a;
}

bool reconcile_same_file(const struct reconcile_candidate *c, int64_t window_ns, int64_t size,
			 int64_t remote_mtime_ns, int64_t started_ms)
{
	if (c->size != RECONCILE_SIZE_ANY && size != c->size)
		return false;
	switch (c->kind) {
	case RECONCILE_LATE:
		return true; /* rclone said it copied it: what the remote holds is that copy */
	case RECONCILE_STARTED:
		if (window_ns == RECONCILE_NO_MODTIME)
			return true; /* the size is all rclone compares on such a remote */
		return c->mtime_ns > 0 && remote_mtime_ns > 0 &&
		       span(remote_mtime_ns, c->mtime_ns) < window_ns;
	case RECONCILE_OPENED:
		/* Not seen as rclone's: only a copy received since the stage began is its. */
		return window_ns == RECONCILE_NO_MODTIME && remote_mtime_ns > 0 &&
		       remote_mtime_ns / 1000000 >= started_ms - RECONCILE_CLOCK_SLACK_MS;
	case RECONCILE_UNCONFIRMED:
		/* Where the remote shows when it received a file, only a copy received since the
		 * stage began; elsewhere rclone's own test of the same file, or, for a file gone
		 * under move, the size its move found the same. */
		if (window_ns == RECONCILE_NO_MODTIME)
			return remote_mtime_ns > 0 &&
			       remote_mtime_ns / 1000000 >= started_ms - RECONCILE_CLOCK_SLACK_MS;
		return c->mtime_ns == 0 || (remote_mtime_ns > 0 &&
					    span(remote_mtime_ns, c->mtime_ns) < window_ns);
	}
	return false;
}

static int by_path(const void *a, const void *b)
{
	return strcmp(((const struct reconcile_candidate *)a)->path,
		      ((const struct reconcile_candidate *)b)->path);
}

/* Writes the candidates not arrived yet; returns how many, or -1. --files-from-raw takes one
 * path per line, so a name with a newline cannot be asked about (source.c never lists one:
 * rclone shows control characters as symbols). */
static int64_t write_missing(const char *path, const struct reconcile_candidate *c, size_t n)
{
	FILE *f = fopen(path, "w");
	if (!f)
		return -1;
	int64_t count = 0;
	for (size_t i = 0; i < n; i++) {
		if (c[i].state == RECONCILE_ARRIVED || strchr(c[i].path, '\n'))
			continue;
		fprintf(f, "%s\n", c[i].path);
		count++;
	}
	return fclose(f) == 0 ? count : -1;
}

struct judge {
	struct reconcile *rc;
	struct reconcile_candidate *c;
	size_t n;
	int64_t started_ms;
	reconcile_count_fn count;
	void *ctx;
	struct reconcile_result *r;
};

static void count_found(struct judge *j, const cJSON *items)
{
	const cJSON *item;
	cJSON_ArrayForEach(item, items)
	{
		const cJSON *path = cJSON_GetObjectItemCaseSensitive(item, "Path");
		const cJSON *size = cJSON_GetObjectItemCaseSensitive(item, "Size");
		const cJSON *mtime = cJSON_GetObjectItemCaseSensitive(item, "ModTime");
		if (!cJSON_IsString(path) || !cJSON_IsNumber(size) ||
		    cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(item, "IsDir")))
			continue;
		struct reconcile_candidate key = { .path = path->valuestring };
		struct reconcile_candidate *hit = bsearch(&key, j->c, j->n, sizeof(*j->c), by_path);
		int64_t remote_ns = 0;
		if (cJSON_IsString(mtime) && reconcile_parse_time(mtime->valuestring, &remote_ns) < 0)
			remote_ns = 0;
		/* Not asked about, already counted, or not (yet) this file whole. */
		if (!hit || hit->state == RECONCILE_ARRIVED ||
		    !reconcile_same_file(hit, j->rc->window_ns, (int64_t)size->valuedouble,
					 remote_ns, j->started_ms))
			continue;
		hit->state = RECONCILE_ARRIVED;
		hit->remote_mtime_ns = remote_ns;
		if (hit->size == RECONCILE_SIZE_ANY)
			hit->size = (int64_t)size->valuedouble;
		if (j->count(j->ctx, hit) != 0)
			continue; /* counted already (a dead writer's redone intent), or not countable */
		log_info("in-flight check: %s arrived whole (%lld bytes); counted", hit->path,
			 (long long)hit->size);
		j->r->files++;
		j->r->bytes += hit->size;
	}
}

/* One check. Returns the candidates still missing (>= 0), or the read's end when it failed. */
static int64_t check_round(struct judge *j, int round, enum read_end *end, char *err,
			   size_t err_len)
{
	struct reconcile *rc = j->rc;
	int64_t asked = write_missing(rc->files_from, j->c, j->n);
	if (asked < 0) {
		snprintf(err, err_len, "cannot write %s: %s", rc->files_from, strerror(errno));
		*end = READ_FAILED;
		return -1;
	}
	if (asked == 0)
		return 0;
	log_info("in-flight check %d: looking for %lld unfinished files on the remote", round + 1,
		 (long long)asked);
	size_t len = 0;
	char *out = run_proc(rc, &rc->rounds[round], &len, end);
	if (!out) {
		snprintf(err, err_len, "rclone lsjson %s", end_text(*end));
		return -1;
	}
	cJSON *items = cJSON_ParseWithLength(out, len);
	int64_t left = -1;
	if (!cJSON_IsArray(items)) {
		snprintf(err, err_len, "rclone lsjson gave no list");
		*end = READ_FAILED;
	} else {
		count_found(j, items);
		left = 0;
		for (size_t i = 0; i < j->n; i++)
			left += j->c[i].state != RECONCILE_ARRIVED;
	}
	cJSON_Delete(items);
	free(out);
	return left;
}

int reconcile_run(struct reconcile *rc, struct reconcile_candidate *c, size_t n,
		  int64_t since_ms, int64_t started_ms, reconcile_count_fn count, void *ctx,
		  struct reconcile_result *r, char *err, size_t err_len)
{
	static const int64_t schedule[RECONCILE_ROUNDS] = RECONCILE_SCHEDULE_MS;
	memset(r, 0, sizeof(*r));
	r->candidates = (int64_t)n;
	for (size_t i = 0; i < n; i++)
		c[i].state = RECONCILE_UNKNOWN;
	if (n) /* c may be NULL then, and qsort(NULL, 0) is undefined */
		qsort(c, n, sizeof(*c), by_path);
	int status = 0;
	struct judge j = { rc, c, n, started_ms, count, ctx, r };
	bool final_answered = false;
	enum read_end end = READ_DONE;
	if (n > 0 && reconcile_features(rc, err, err_len) < 0) {
		status = -1;
		n = 0; /* nothing can be judged: all stay unknown */
	}
	for (int round = 0; n > 0 && round < rc->prepared; round++) {
		end = pause_for(rc, since_ms + schedule[round] - ledger_now_ms());
		if (end != READ_DONE)
			break;
		r->rounds = round + 1;
		int64_t left = check_round(&j, round, &end, err, err_len);
		if (left < 0) {
			status = -1;
			if (end == READ_TIMED_OUT || end == READ_STOPPED)
				break;
			continue; /* a failed round is no answer: the next one asks again */
		}
		err[0] = '\0';
		status = 0;
		if (left == 0 || round == rc->prepared - 1) {
			final_answered = true;
			break;
		}
	}
	if (n > 0 && !final_answered && status == 0) {
		snprintf(err, err_len, "no lsjson process was there to ask");
		status = -1;
	}
	r->timed_out = end == READ_TIMED_OUT;
	r->stopped = end == READ_STOPPED;
	if (r->timed_out || r->stopped) {
		snprintf(err, err_len, "the in-flight check %s", r->timed_out
			 ? "timed out: the remote did not answer in time" : "was stopped");
		status = -1;
	}
	for (size_t i = 0; i < (size_t)r->candidates; i++) {
		if (c[i].state == RECONCILE_ARRIVED)
			continue;
		c[i].state = final_answered ? RECONCILE_ABSENT : RECONCILE_UNKNOWN;
		r->unknown += c[i].state == RECONCILE_UNKNOWN;
	}
	reconcile_cancel(rc);
	unlink(rc->files_from);
	return status;
}

void reconcile_remove_arrived(const char *root, const struct reconcile *rc,
			      const struct reconcile_candidate *c)
{
	/* The evidence rclone's move would want: the local file is still the one that arrived. */
	int64_t mtime = 0, tolerance = 0;
	if (c->kind == RECONCILE_LATE) {
		if (rc->window_ns != RECONCILE_NO_MODTIME) {
			mtime = c->remote_mtime_ns;
			tolerance = rc->window_ns;
		}
	} else if (c->mtime_ns > 0) {
		mtime = c->mtime_ns; /* unchanged since rclone had it open */
		tolerance = 1;
	}
	int rc_code = source_remove_arrived(root, c->path, c->size, mtime, tolerance);
	if (rc_code == 0)
		log_info("in-flight check: removed %s from the source, as move would have", c->path);
	else if (rc_code == SOURCE_REMOVE_CHANGED)
		log_warn("in-flight check: %s changed locally since it arrived; kept", c->path);
	else if (rc_code == SOURCE_REMOVE_ENCODED)
		log_warn("in-flight check: %s arrived but its local name has bytes rclone renames; "
			 "kept, and a later stage may upload it again", c->path);
	else if (rc_code != -ENOENT)
		log_warn("in-flight check: cannot remove %s from the source: %s", c->path,
			 strerror(-rc_code));
}

/* Days from 1970-01-01 to y-m-d (proleptic Gregorian; Howard Hinnant's days_from_civil). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	unsigned yoe = (unsigned)(y - era * 400);
	unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (int64_t)doe - 719468;
}

static int digits(const char **p, int n, int *out)
{
	int v = 0;
	for (int i = 0; i < n; i++, (*p)++) {
		if (**p < '0' || **p > '9')
			return -1;
		v = v * 10 + (**p - '0');
	}
	*out = v;
	return 0;
}

int reconcile_parse_time(const char *text, int64_t *ns)
{
	const char *p = text;
	int y, mo, d, h, mi, s;
	if (digits(&p, 4, &y) || *p++ != '-' || digits(&p, 2, &mo) || *p++ != '-' ||
	    digits(&p, 2, &d) || (*p != 'T' && *p != 't') || !*p++ || digits(&p, 2, &h) ||
	    *p++ != ':' || digits(&p, 2, &mi) || *p++ != ':' || digits(&p, 2, &s))
		return -1;
	if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || s > 60)
		return -1;
	int64_t frac = 0;
	if (*p == '.') {
		p++;
		int k = 0;
		for (; *p >= '0' && *p <= '9'; p++, k++)
			if (k < 9)
				frac = frac * 10 + (*p - '0');
		if (k == 0)
			return -1;
		for (; k < 9; k++)
			frac *= 10;
	}
	int64_t offset_s = 0;
	if (*p == 'Z' || *p == 'z') {
		p++;
	} else if (*p == '+' || *p == '-') {
		int sign = *p++ == '-' ? -1 : 1, oh, om;
		if (digits(&p, 2, &oh) || *p++ != ':' || digits(&p, 2, &om))
			return -1;
		offset_s = sign * (oh * 3600 + om * 60);
	} else {
		return -1;
	}
	if (*p)
		return -1;
	int64_t secs = days_from_civil(y, (unsigned)mo, (unsigned)d) * 86400 + h * 3600 +
		       mi * 60 + s - offset_s;
	*ns = secs * 1000000000 + frac;
	return 0;
}
