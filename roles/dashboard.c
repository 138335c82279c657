/*
 * The dashboard role (dashboard.h). One thread: libmicrohttpd in epoll mode with no thread of its
 * own, its epoll descriptor and a self-pipe for stop signals in this file's poll() loop. Threads
 * are not an option anyway: the seccomp filter loaded after binding forbids creating them.
 */
#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "dashboard.h"
#include "dashboard_page.h"
#include "lazy_mhd.h"
#include "ledger_file.h"
#include "log.h"
#include "procs.h"
#include "role.h"
#include "sandbox.h"

#define DASH_READ_TIMEOUT_MS 200
#define DASH_COPY_MAX_AGE_MS 1000  /* heartbeat and flush times live outside the generation */
#define DASH_CONNECTIONS_MAX 512
#define DASH_CONNECTION_TIMEOUT_S 10
#define DASH_LISTEN_BACKLOG 1024
#define DASH_GIB 1073741824.0
#define DASH_COMPLETE_PERCENT 95.0
#define DASH_SUPERVISOR_STALE_MS 10000

struct dash {
	const struct config *cfg;
	struct ledger ledger;
	struct ledger_copy copy;
	int have_copy;
	uint64_t copy_generation;
	int64_t copy_at_ms;
	int32_t *order;            /* row numbers by uploader, then account in natural order */
	int refresh_seconds;
	int port;                  /* bound: what Host must name without a token */
};

/* SIGTERM (the supervisor) or SIGINT: the loop ends at its next wake-up. */
static bool stop_requested(void)
{
	return *procs_signals_seen(SIGTERM) || *procs_signals_seen(SIGINT);
}

/* ---- the ledger copy ---- */

static int cmp_rows_ctx(const void *a, const void *b, void *ctx)
{
	const struct ledger_copy *c = ctx;
	const struct ledger_row *ra = &c->rows[*(const int32_t *)a];
	const struct ledger_row *rb = &c->rows[*(const int32_t *)b];
	int u = strcmp(ra->uploader, rb->uploader);
	return u ? u : strverscmp(ra->account, rb->account);
}

/* Re-reads only when a write happened (or the atomics outside the generation may have moved):
 * a thousand requests in one loop turn cost one copy. */
static int refresh(struct dash *d, int64_t now)
{
	uint64_t gen = atomic_load(&d->ledger.hdr->generation);
	if (d->have_copy && gen == d->copy_generation && now - d->copy_at_ms < DASH_COPY_MAX_AGE_MS)
		return LEDGER_OK;
	int rc = ledger_read(&d->ledger, &d->copy, DASH_READ_TIMEOUT_MS);
	if (rc != LEDGER_OK)
		return rc;
	d->have_copy = 1;
	d->copy_generation = d->copy.generation;
	d->copy_at_ms = now;
	for (uint32_t i = 0; i < d->copy.row_count; i++)
		d->order[i] = (int32_t)i;
	qsort_r(d->order, d->copy.row_count, sizeof(d->order[0]), cmp_rows_ctx, &d->copy);
	return LEDGER_OK;
}

static const struct ledger_row *stage_row(const struct ledger_copy *c, const struct ledger_stage *s)
{
	return s->row >= 0 && (uint32_t)s->row < c->row_count ? &c->rows[s->row] : NULL;
}

static int row_is_active(const struct ledger_copy *c, int32_t row)
{
	for (uint32_t i = 0; i < c->slot_capacity; i++)
		if (c->stages[i].state == LEDGER_STAGE_RUNNING && c->stages[i].row == row)
			return 1;
	return 0;
}

static const struct ledger_stage *first_running(const struct ledger_copy *c)
{
	for (uint32_t i = 0; i < c->slot_capacity; i++)
		if (c->stages[i].state == LEDGER_STAGE_RUNNING && stage_row(c, &c->stages[i]))
			return &c->stages[i];
	return NULL;
}

static const char *base_name(const char *path)
{
	const char *slash = strrchr(path, '/');
	return slash && slash[1] ? slash + 1 : path;
}

static double round2(double v)
{
	return round(v * 100.0) / 100.0;
}

static double percent(int64_t part, int64_t whole)
{
	return whole > 0 ? round2(100.0 * (double)part / (double)whole) : 0.0;
}

static void add_seconds_or_null(cJSON *o, const char *key, int64_t ms)
{
	if (ms > 0)
		cJSON_AddNumberToObject(o, key, (double)ms / 1000.0);
	else
		cJSON_AddNullToObject(o, key);
}

/* ---- the documents ---- */

static cJSON *doc_health(const struct dash *d, int ledger_rc, int64_t now)
{
	cJSON *o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "status", ledger_rc == LEDGER_OK ? "healthy" : "unhealthy");
	cJSON_AddStringToObject(o, "ledger", ledger_rc == LEDGER_OK ? "ok" : ledger_strerror(ledger_rc));
	if (ledger_rc != LEDGER_OK)
		return o;
	const struct ledger_copy *c = &d->copy;
	cJSON_AddNumberToObject(o, "generation", (double)c->generation);
	/* kill(pid, 0) is outside the sandbox; the supervisor's heartbeat says as much. */
	cJSON_AddBoolToObject(o, "supervisor_running",
			      c->supervisor_seen_ms > 0 &&
			      now - c->supervisor_seen_ms < DASH_SUPERVISOR_STALE_MS);
	add_seconds_or_null(o, "last_flush", c->flushed_at_ms);
	cJSON_AddNumberToObject(o, "time", (double)now / 1000.0);
	return o;
}

static int count_uploader_rows(const struct ledger_copy *c, const int32_t *order,
			       const char *uploader, int32_t row, int *index)
{
	int n = 0;
	for (uint32_t i = 0; i < c->row_count; i++) {
		if (strcmp(c->rows[order[i]].uploader, uploader) != 0)
			continue;
		n++;
		if (order[i] == row)
			*index = n;
	}
	return n;
}

/* The session the supervisor started (ledger_session_start); without one (a ledger no
 * supervisor of this version ran on), the oldest stage still held. */
static int64_t session_start_ms(const struct ledger_copy *c)
{
	if (c->session.started_ms > 0)
		return c->session.started_ms;
	int64_t start = 0;
	for (uint32_t i = 0; i < c->slot_capacity; i++) {
		const struct ledger_stage *s = &c->stages[i];
		if (s->state != LEDGER_STAGE_FREE && s->started_at_ms > 0 &&
		    (start == 0 || s->started_at_ms < start))
			start = s->started_at_ms;
	}
	return start;
}

static cJSON *doc_status(const struct dash *d)
{
	const struct ledger_copy *c = &d->copy;
	cJSON *o = cJSON_CreateObject();
	const struct ledger_stage *s = first_running(c);
	if (!s) {
		cJSON_AddBoolToObject(o, "active", 0);
		cJSON_AddStringToObject(o, "message", "No upload is running");
		return o;
	}
	const struct ledger_row *r = stage_row(c, s);
	int index = 0;
	int total = count_uploader_rows(c, d->order, r->uploader, s->row, &index);
	const struct config_uploader *u = config_find_uploader(d->cfg, r->uploader);
	cJSON_AddBoolToObject(o, "active", 1);
	cJSON_AddStringToObject(o, "uploader", r->uploader);
	cJSON_AddStringToObject(o, "current_sa", base_name(r->account));
	cJSON_AddNumberToObject(o, "sa_index", index);
	cJSON_AddNumberToObject(o, "total_sas", total);
	cJSON_AddNumberToObject(o, "stage", s->stage_number);
	cJSON_AddNumberToObject(o, "total_stages", total);
	cJSON_AddStringToObject(o, "strategy", s->strategy);
	add_seconds_or_null(o, "session_start", session_start_ms(c));
	if (u && u->remote && u->remote->upload_folder)
		cJSON_AddStringToObject(o, "upload_folder", u->remote->upload_folder);
	else
		cJSON_AddNullToObject(o, "upload_folder");
	return o;
}

static void format_reset_in(int64_t ms, char *out, size_t len)
{
	int64_t m = (ms + 59999) / 60000;
	snprintf(out, len, "%lldh %lldm", (long long)(m / 60), (long long)(m % 60));
}

static cJSON *doc_accounts(const struct dash *d, int64_t now)
{
	const struct ledger_copy *c = &d->copy;
	cJSON *a = cJSON_CreateArray();
	for (uint32_t i = 0; i < c->row_count; i++) {
		int32_t row = d->order[i];
		const struct ledger_row *r = &c->rows[row];
		const struct ledger_usage *u = &r->usage;
		int64_t used = ledger_usage_used(u, (enum ledger_window)c->window, now);
		double pct = percent(used, c->daily_bytes);
		int banned = u->banned_until_ms > now;
		/* On the exact bytes: 94.999 % rounds to 95.00 for show but is not complete. */
		int complete = c->daily_bytes > 0 && (double)used * 100.0 >=
			       DASH_COMPLETE_PERCENT * (double)c->daily_bytes;
		cJSON *o = cJSON_CreateObject();
		cJSON_AddStringToObject(o, "sa_file", base_name(r->account));
		cJSON_AddStringToObject(o, "sa_file_full", r->account);
		cJSON_AddStringToObject(o, "uploader", r->uploader);
		cJSON_AddStringToObject(o, "status", row_is_active(c, row) ? "active" :
					complete ? "complete" : "ready");
		cJSON_AddNumberToObject(o, "used_bytes", (double)used);
		cJSON_AddNumberToObject(o, "quota_bytes", (double)c->daily_bytes);
		cJSON_AddNumberToObject(o, "used_gb", round2((double)used / DASH_GIB));
		cJSON_AddNumberToObject(o, "quota_gb", round2((double)c->daily_bytes / DASH_GIB));
		cJSON_AddNumberToObject(o, "percentage", pct);
		cJSON_AddNumberToObject(o, "files", (double)(used ? u->files : 0));
		cJSON_AddBoolToObject(o, "banned", banned);
		if (banned)
			cJSON_AddStringToObject(o, "ban_cause", u->ban_cause);
		else
			cJSON_AddNullToObject(o, "ban_cause");
		int resets = used > 0 && u->reset_at_ms > now;
		add_seconds_or_null(o, "reset_time", resets ? u->reset_at_ms : 0);
		char in[32] = "Ready";
		if (resets)
			format_reset_in(u->reset_at_ms - now, in, sizeof(in));
		cJSON_AddStringToObject(o, "reset_in", in);
		cJSON_AddItemToArray(a, o);
	}
	return a;
}

/* A stage's bytes, once: completed files (the ledger's count) plus what rclone reports of the
 * files still in flight, never more than the stage's listing. */
static int64_t stage_bytes(const struct ledger_stage *s)
{
	int64_t b = s->bytes_done;
	int n = s->inflight_count < LEDGER_INFLIGHT_MAX ? s->inflight_count : LEDGER_INFLIGHT_MAX;
	for (int i = 0; i < n; i++)
		if (s->inflight[i].bytes > 0)
			b += s->inflight[i].bytes;
	return s->bytes_total > 0 && b > s->bytes_total ? s->bytes_total : b;
}

static cJSON *unavailable(const char *message)
{
	cJSON *o = cJSON_CreateObject();
	cJSON_AddBoolToObject(o, "available", 0);
	cJSON_AddStringToObject(o, "message", message);
	cJSON_AddNullToObject(o, "data");
	return o;
}

struct session_totals {
	int64_t files_total, files_done, bytes_total, bytes_done, speed;
	int held;                  /* stage slots of the session still held */
};

/* The released stages' totals (the ledger's session, folded in when each slot was freed: an
 * earlier stage's listing is what it moved, the rest is the next stage's listing) plus the
 * slots still held, each stage once: a release moves its counts in the same write. */
static struct session_totals session_totals(const struct ledger_copy *c)
{
	struct session_totals t = { .files_total = c->session.files, .files_done = c->session.files,
				    .bytes_total = c->session.bytes, .bytes_done = c->session.bytes };
	for (uint32_t i = 0; i < c->slot_capacity; i++) {
		const struct ledger_stage *s = &c->stages[i];
		if (s->state == LEDGER_STAGE_FREE || s->started_at_ms < c->session.started_ms)
			continue;
		t.held++;
		t.files_total += s->files_total;
		t.files_done += s->files_done;
		t.bytes_total += s->bytes_total;
		t.bytes_done += stage_bytes(s);
		if (s->state == LEDGER_STAGE_RUNNING && s->rc_speed > 0)
			t.speed += s->rc_speed;
	}
	return t;
}

static cJSON *doc_session(const struct dash *d, int64_t now)
{
	const struct ledger_copy *c = &d->copy;
	int64_t start = session_start_ms(c);
	struct session_totals t = session_totals(c);
	if (!start || (!t.held && c->session.stages == 0))
		return unavailable("No upload session is running");
	int64_t files_total = t.files_total, files_done = t.files_done;
	int64_t bytes_total = t.bytes_total, bytes_done = t.bytes_done, speed = t.speed;
	int sas_used = 0;
	for (uint32_t i = 0; i < c->row_count; i++) {
		const struct ledger_usage *u = &c->rows[i].usage;
		if (row_is_active(c, (int32_t)i) ||
		    (ledger_usage_used(u, (enum ledger_window)c->window, now) > 0 &&
		     u->updated_at_ms >= start))
			sas_used++;
	}
	int64_t files_left = files_total > files_done ? files_total - files_done : 0;
	int64_t bytes_left = bytes_total > bytes_done ? bytes_total - bytes_done : 0;
	double duration = now > start ? (double)(now - start) / 1000.0 : 0.0;
	cJSON *o = cJSON_CreateObject();
	cJSON_AddBoolToObject(o, "available", 1);
	cJSON *data = cJSON_AddObjectToObject(o, "data");
	cJSON_AddNumberToObject(data, "total_files", (double)files_total);
	cJSON_AddNumberToObject(data, "transferred_files", (double)files_done);
	cJSON_AddNumberToObject(data, "remaining_files", (double)files_left);
	cJSON_AddNumberToObject(data, "file_percentage", percent(files_done, files_total));
	cJSON_AddNumberToObject(data, "total_bytes", (double)bytes_total);
	cJSON_AddNumberToObject(data, "transferred_bytes", (double)bytes_done);
	cJSON_AddNumberToObject(data, "remaining_bytes", (double)bytes_left);
	cJSON_AddNumberToObject(data, "byte_percentage", percent(bytes_done, bytes_total));
	cJSON_AddNumberToObject(data, "duration_seconds", round2(duration));
	cJSON_AddNumberToObject(data, "avg_speed", duration > 0 ? round2((double)bytes_done / duration) : 0);
	cJSON_AddNumberToObject(data, "current_speed", (double)speed);
	if (speed > 0)
		cJSON_AddNumberToObject(data, "eta_seconds", (double)((bytes_left + speed - 1) / speed));
	else
		cJSON_AddNullToObject(data, "eta_seconds");
	cJSON_AddNumberToObject(data, "session_start", (double)start / 1000.0);
	cJSON_AddNumberToObject(data, "sas_used", sas_used);
	cJSON_AddNumberToObject(data, "stages_done", (double)c->session.stages);
	return o;
}

static cJSON *doc_rclone(const struct dash *d)
{
	const struct ledger_copy *c = &d->copy;
	if (!first_running(c))
		return unavailable("No rclone is running");
	int64_t bytes = 0, speed = 0, transfers = 0, errors = 0, eta = -1;
	cJSON *o = cJSON_CreateObject();
	cJSON_AddBoolToObject(o, "available", 1);
	cJSON *data = cJSON_AddObjectToObject(o, "data");
	cJSON *list = cJSON_CreateArray();
	for (uint32_t i = 0; i < c->slot_capacity; i++) {
		const struct ledger_stage *s = &c->stages[i];
		if (s->state != LEDGER_STAGE_RUNNING)
			continue;
		bytes += s->rc_bytes;
		speed += s->rc_speed;
		transfers += s->files_done;
		errors += s->rc_errors;
		if (s->rc_eta_s > eta)
			eta = s->rc_eta_s;
		int n = s->inflight_count < LEDGER_INFLIGHT_MAX ? s->inflight_count : LEDGER_INFLIGHT_MAX;
		for (int k = 0; k < n; k++) {
			const struct ledger_inflight *f = &s->inflight[k];
			cJSON *t = cJSON_CreateObject();
			cJSON_AddStringToObject(t, "name", f->name);
			cJSON_AddNumberToObject(t, "size", (double)f->size);
			cJSON_AddNumberToObject(t, "bytes", (double)f->bytes);
			cJSON_AddNumberToObject(t, "speed", (double)f->speed);
			if (f->speed > 0 && f->size >= f->bytes)
				cJSON_AddNumberToObject(t, "eta", (double)((f->size - f->bytes + f->speed - 1) / f->speed));
			else
				cJSON_AddNullToObject(t, "eta");
			cJSON_AddNumberToObject(t, "percentage", percent(f->bytes, f->size));
			cJSON_AddItemToArray(list, t);
		}
	}
	cJSON_AddNumberToObject(data, "bytes", (double)bytes);
	cJSON_AddNumberToObject(data, "speed", (double)speed);
	if (eta >= 0)
		cJSON_AddNumberToObject(data, "eta", (double)eta);
	else
		cJSON_AddNullToObject(data, "eta");
	cJSON_AddNumberToObject(data, "transfers", (double)transfers);
	cJSON_AddItemToObject(data, "transferring", list);
	/* The ledger keeps no checker list: rclone's checks are not quota. */
	cJSON_AddItemToObject(data, "checking", cJSON_CreateArray());
	cJSON_AddNumberToObject(data, "errors", (double)errors);
	return o;
}

static cJSON *doc_queue(const struct dash *d)
{
	const struct ledger_copy *c = &d->copy;
	const struct ledger_stage *s = first_running(c);
	if (!s)
		return unavailable("No stage is running");
	cJSON *o = cJSON_CreateObject();
	cJSON_AddBoolToObject(o, "available", 1);
	cJSON *data = cJSON_AddObjectToObject(o, "data");
	cJSON *p = cJSON_AddObjectToObject(data, "stage_params");
	cJSON_AddStringToObject(p, "strategy", s->strategy);
	cJSON_AddNumberToObject(p, "max_transfer", (double)s->max_transfer_bytes);
	if (s->max_size_bytes > 0)
		cJSON_AddNumberToObject(p, "max_size", (double)s->max_size_bytes);
	else
		cJSON_AddNullToObject(p, "max_size");
	cJSON_AddNumberToObject(p, "transfers", s->transfers);
	if (s->order_by[0])
		cJSON_AddStringToObject(p, "order_by", s->order_by);
	else
		cJSON_AddNullToObject(p, "order_by");
	if (s->max_backlog > 0)
		cJSON_AddNumberToObject(p, "max_backlog", s->max_backlog);
	else
		cJSON_AddNullToObject(p, "max_backlog");
	int64_t running = 0, ft = 0, fd = 0, bt = 0, bd = 0;
	for (uint32_t i = 0; i < c->slot_capacity; i++) {
		const struct ledger_stage *t = &c->stages[i];
		if (t->state != LEDGER_STAGE_RUNNING)
			continue;
		running++;
		ft += t->files_total;
		fd += t->files_done;
		bt += t->bytes_total;
		bd += t->bytes_done;
	}
	cJSON *q = cJSON_AddObjectToObject(data, "queue_stats");
	cJSON_AddNumberToObject(q, "running_stages", (double)running);
	cJSON_AddNumberToObject(q, "files_total", (double)ft);
	cJSON_AddNumberToObject(q, "files_done", (double)fd);
	cJSON_AddNumberToObject(q, "files_remaining", (double)(ft > fd ? ft - fd : 0));
	cJSON_AddNumberToObject(q, "bytes_total", (double)bt);
	cJSON_AddNumberToObject(q, "bytes_done", (double)bd);
	cJSON_AddNumberToObject(q, "bytes_remaining", (double)(bt > bd ? bt - bd : 0));
	return o;
}

static cJSON *doc_stages(const struct dash *d, int64_t now)
{
	const struct ledger_copy *c = &d->copy;
	cJSON *a = cJSON_CreateArray();
	for (uint32_t i = 0; i < c->slot_capacity; i++) {
		const struct ledger_stage *s = &c->stages[i];
		const struct ledger_row *r = stage_row(c, s);
		if (s->state != LEDGER_STAGE_RUNNING || !r)
			continue;
		int64_t used = ledger_usage_used(&r->usage, (enum ledger_window)c->window, now);
		cJSON *o = cJSON_CreateObject();
		cJSON_AddNumberToObject(o, "slot", i);
		cJSON_AddStringToObject(o, "uploader", r->uploader);
		cJSON_AddStringToObject(o, "account", base_name(r->account));
		cJSON_AddNumberToObject(o, "stage", s->stage_number);
		cJSON_AddStringToObject(o, "strategy", s->strategy);
		cJSON_AddNumberToObject(o, "files_done", (double)s->files_done);
		cJSON_AddNumberToObject(o, "files_total", (double)s->files_total);
		cJSON_AddNumberToObject(o, "bytes_done", (double)stage_bytes(s));
		cJSON_AddNumberToObject(o, "bytes_total", (double)s->bytes_total);
		cJSON_AddNumberToObject(o, "speed", (double)s->rc_speed);
		if (s->rc_eta_s >= 0)
			cJSON_AddNumberToObject(o, "eta_seconds", (double)s->rc_eta_s);
		else
			cJSON_AddNullToObject(o, "eta_seconds");
		cJSON_AddNumberToObject(o, "quota_left_bytes",
					(double)(c->daily_bytes > used ? c->daily_bytes - used : 0));
		cJSON_AddItemToArray(a, o);
	}
	return a;
}

static cJSON *doc_state(const struct dash *d, int64_t now)
{
	cJSON *o = cJSON_CreateObject();
	cJSON_AddItemToObject(o, "health", doc_health(d, LEDGER_OK, now));
	cJSON_AddItemToObject(o, "status", doc_status(d));
	cJSON_AddItemToObject(o, "service_accounts", doc_accounts(d, now));
	cJSON_AddItemToObject(o, "session_stats", doc_session(d, now));
	cJSON_AddItemToObject(o, "rclone_stats", doc_rclone(d));
	cJSON_AddItemToObject(o, "queue_status", doc_queue(d));
	cJSON_AddItemToObject(o, "stages", doc_stages(d, now));
	cJSON_AddNumberToObject(o, "refresh_seconds", d->refresh_seconds);
	cJSON_AddNumberToObject(o, "now", (double)now / 1000.0);
	return o;
}

/* ---- /metrics ---- */

/* A label value as the exposition format wants it: backslash, quote and newline escaped. */
static void put_label(FILE *f, const char *v)
{
	for (; *v; v++) {
		if (*v == '\\')
			fputs("\\\\", f);
		else if (*v == '"')
			fputs("\\\"", f);
		else if (*v == '\n')
			fputs("\\n", f);
		else
			fputc(*v, f);
	}
}

static void put_series(FILE *f, const char *name, const struct ledger_row *r, long long value)
{
	fprintf(f, "%s{uploader=\"", name);
	put_label(f, r->uploader);
	fputs("\",account=\"", f);
	put_label(f, r->account);
	fprintf(f, "\"} %lld\n", value);
}

static void put_header(FILE *f, const char *name, const char *type, const char *help)
{
	fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

enum account_metric { M_USED, M_QUOTA, M_FILES, M_BANNED, M_STAGE_BYTES, M_STAGE_SPEED };

static long long account_value(const struct ledger_copy *c, int32_t row, enum account_metric m,
			       int64_t now)
{
	const struct ledger_usage *u = &c->rows[row].usage;
	int64_t used = ledger_usage_used(u, (enum ledger_window)c->window, now);
	long long sum = 0;
	switch (m) {
	case M_USED: return used;
	case M_QUOTA: return c->daily_bytes;
	case M_FILES: return used ? u->files : 0;
	case M_BANNED: return u->banned_until_ms > now;
	case M_STAGE_BYTES:
	case M_STAGE_SPEED:
		/* Summed per account: two stages on one account would otherwise be one series twice. */
		for (uint32_t i = 0; i < c->slot_capacity; i++) {
			const struct ledger_stage *s = &c->stages[i];
			if (s->state == LEDGER_STAGE_RUNNING && s->row == row)
				sum += m == M_STAGE_BYTES ? stage_bytes(s) : s->rc_speed;
		}
		return sum;
	}
	return 0;
}

static char *metrics_text(const struct dash *d, int64_t now, size_t *len)
{
	static const struct {
		const char *name, *help;
		enum account_metric m;
		int stages_only;
	} account_metrics[] = {
		{ "cplow_account_used_bytes", "Bytes uploaded in the account's current quota window.", M_USED, 0 },
		{ "cplow_account_quota_bytes", "The account's daily upload quota in bytes.", M_QUOTA, 0 },
		{ "cplow_account_files", "Files uploaded in the account's current quota window.", M_FILES, 0 },
		{ "cplow_account_banned", "1 while the account is banned after a trigger, else 0.", M_BANNED, 0 },
		{ "cplow_stage_bytes_done", "Bytes the running stages on the account have uploaded.", M_STAGE_BYTES, 1 },
		{ "cplow_stage_speed_bytes", "Upload speed of the running stages on the account, bytes per second.", M_STAGE_SPEED, 1 },
	};
	const struct ledger_copy *c = &d->copy;
	char *buf = NULL;
	FILE *f = open_memstream(&buf, len);
	if (!f)
		return NULL;
	for (size_t k = 0; k < sizeof(account_metrics) / sizeof(account_metrics[0]); k++) {
		put_header(f, account_metrics[k].name, "gauge", account_metrics[k].help);
		for (uint32_t i = 0; i < c->row_count; i++) {
			int32_t row = d->order[i];
			if (account_metrics[k].stages_only && !row_is_active(c, row))
				continue;
			put_series(f, account_metrics[k].name, &c->rows[row],
				   account_value(c, row, account_metrics[k].m, now));
		}
	}
	put_header(f, "cplow_ledger_last_flush_age_seconds", "gauge",
		   "Seconds since the ledger was last written to disk (NaN: never).");
	if (c->flushed_at_ms > 0)
		fprintf(f, "cplow_ledger_last_flush_age_seconds %.3f\n",
			(double)(now - c->flushed_at_ms) / 1000.0);
	else
		fputs("cplow_ledger_last_flush_age_seconds NaN\n", f);
	/* Gauges, not counters: a new cplow run starts a new session at zero. */
	struct session_totals t = session_totals(c);
	put_header(f, "cplow_session_files", "gauge",
		   "Files this cplow run's stages have uploaded, finished stages included.");
	fprintf(f, "cplow_session_files %lld\n", (long long)t.files_done);
	put_header(f, "cplow_session_bytes", "gauge",
		   "Bytes this cplow run's stages have uploaded, finished stages included.");
	fprintf(f, "cplow_session_bytes %lld\n", (long long)t.bytes_done);
	put_header(f, "cplow_process_restarts_total", "counter",
		   "Processes the supervisor restarted after they died.");
	fprintf(f, "cplow_process_restarts_total %llu\n", (unsigned long long)c->restarts);
	if (fclose(f) != 0) {
		free(buf);
		return NULL;
	}
	return buf;
}

/* ---- HTTP ---- */

/* Constant time in the candidate's content: the loop runs over the whole candidate whatever
 * matches, and a length mismatch is folded into the same accumulator. */
static int token_matches(const char *given, const char *token)
{
	size_t n = strlen(token), m = strlen(given);
	unsigned char diff = (unsigned char)(n != m);
	for (size_t i = 0; i < m; i++)
		diff |= (unsigned char)given[i] ^ (unsigned char)token[i % (n ? n : 1)];
	return n > 0 && diff == 0;
}

static int authorized(struct MHD_Connection *conn, const char *token, int page)
{
	if (!token || !*token)
		return 1;
	const char *h = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
	if (h && strncasecmp(h, "Bearer ", 7) == 0 && token_matches(h + 7, token))
		return 1;
	if (page) {
		const char *q = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "token");
		if (q && token_matches(q, token))
			return 1;
	}
	return 0;
}

/* Whether `given` (a Host header's value, or an Origin's authority) is `name` on this port:
 * "name:port", or a bare "name" when the port is HTTP's default. An IPv6 literal is bracketed
 * there, "::1" or "[::1]" in dashboard.host. */
static int names_us(const char *given, const char *name, int port)
{
	char want[300];
	int bracket = strchr(name, ':') && name[0] != '[';
	snprintf(want, sizeof(want), "%s%s%s", bracket ? "[" : "", name, bracket ? "]" : "");
	size_t n = strlen(want);
	if (strncasecmp(given, want, n) != 0)
		return 0;
	if (given[n] == '\0')
		return port == 80;
	char digits[16];
	snprintf(digits, sizeof(digits), "%d", port); /* as browsers write it: no leading zero */
	return given[n] == ':' && strcmp(given + n + 1, digits) == 0;
}

/*
 * DNS rebinding: a web page the operator opens can point its own name at 127.0.0.1 and read
 * this dashboard as same-origin, unless the dashboard refuses Hosts that are not its own names.
 * Without a token (only on loopback: the config refuses otherwise) Host must be dashboard.host
 * or a loopback literal, with the port; a request without Host (HTTP/1.0) comes from no browser
 * and passes. With a token any Host passes (a proxy may rename it; a rebinding page has no token).
 */
static int host_allowed(const struct dash *d, struct MHD_Connection *conn)
{
	const char *token = d->cfg->dashboard.token;
	if (token && *token)
		return 1;
	const char *host = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_HOST);
	if (!host)
		return 1;
	static const char *const loopback[] = { "127.0.0.1", "localhost", "::1" };
	const char *configured = d->cfg->dashboard.host ? d->cfg->dashboard.host :
			       CONFIG_DASHBOARD_HOST_DEFAULT;
	if (names_us(host, configured, d->port))
		return 1;
	for (size_t i = 0; i < sizeof(loopback) / sizeof(loopback[0]); i++)
		if (names_us(host, loopback[i], d->port))
			return 1;
	return 0;
}

/* A browser names the page that made a request in Origin when it is another site's (and for
 * some same-site ones): allowed only when it is this very origin, whatever the token. */
static int origin_allowed(struct MHD_Connection *conn)
{
	const char *origin = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Origin");
	if (!origin)
		return 1;
	const char *host = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_HOST);
	const char *authority = strncasecmp(origin, "http://", 7) == 0 ? origin + 7 :
				strncasecmp(origin, "https://", 8) == 0 ? origin + 8 : NULL;
	return host && authority && strcasecmp(authority, host) == 0;
}

static enum MHD_Result send_buffer(struct MHD_Connection *conn, unsigned status,
				   const char *type, void *body, size_t len,
				   enum MHD_ResponseMemoryMode mode)
{
	struct MHD_Response *r = MHD_create_response_from_buffer(len, body, mode);
	if (!r) {
		if (mode == MHD_RESPMEM_MUST_FREE)
			free(body);
		return MHD_NO;
	}
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
	if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
		MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
	if (status == MHD_HTTP_UNAUTHORIZED)
		MHD_add_response_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer realm=\"cplow\"");
	if (strncmp(type, "text/html", 9) == 0)
		MHD_add_response_header(r, "Content-Security-Policy",
					"default-src 'none'; script-src 'unsafe-inline'; "
					"style-src 'unsafe-inline'; connect-src 'self'; img-src data:");
	enum MHD_Result ret = MHD_queue_response(conn, status, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result send_json(struct MHD_Connection *conn, unsigned status, cJSON *doc)
{
	char *text = doc ? cJSON_PrintUnformatted(doc) : NULL;
	cJSON_Delete(doc);
	if (!text)
		return MHD_NO;
	return send_buffer(conn, status, "application/json", text, strlen(text), MHD_RESPMEM_MUST_FREE);
}

static enum MHD_Result send_error(struct MHD_Connection *conn, unsigned status, const char *msg)
{
	cJSON *o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "error", msg);
	return send_json(conn, status, o);
}

enum route { R_PAGE, R_HEALTH, R_STATUS, R_ACCOUNTS, R_SESSION, R_RCLONE, R_QUEUE, R_STATE,
	     R_METRICS, R_NONE };

static enum route find_route(const char *url)
{
	static const char *const paths[] = { "/", "/api/health", "/api/status",
		"/api/service_accounts", "/api/session_stats", "/api/rclone_stats",
		"/api/queue_status", "/api/state", "/metrics" };
	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++)
		if (strcmp(url, paths[i]) == 0)
			return (enum route)i;
	return R_NONE;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
				  const char *method, const char *version,
				  const char *upload_data, size_t *upload_data_size, void **state)
{
	(void)version;
	(void)upload_data;
	(void)upload_data_size;
	(void)state;
	struct dash *d = cls;
	enum route route = find_route(url);
	/* Before anything else: a refusal here tells nothing about the paths either. */
	if (!host_allowed(d, conn))
		return send_error(conn, MHD_HTTP_MISDIRECTED_REQUEST,
				  "unknown Host: without dashboard.token this dashboard answers only "
				  "to dashboard.host, 127.0.0.1, localhost and [::1] on its port");
	if (!origin_allowed(conn))
		return send_error(conn, MHD_HTTP_FORBIDDEN, "cross-origin request refused");
	/* Authentication first: without the token nobody learns even which paths exist. */
	if (!authorized(conn, d->cfg->dashboard.token, route == R_PAGE)) {
		static const char denied[] = "{\"error\":\"unauthorized\"}";
		return send_buffer(conn, MHD_HTTP_UNAUTHORIZED, "application/json", (void *)denied,
				   sizeof(denied) - 1, MHD_RESPMEM_PERSISTENT);
	}
	if (route == R_NONE)
		return send_error(conn, MHD_HTTP_NOT_FOUND, "not found");
	if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
		return send_error(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed");
	if (route == R_PAGE)
		return send_buffer(conn, MHD_HTTP_OK, "text/html; charset=utf-8",
				   (void *)dashboard_page_html, sizeof(dashboard_page_html) - 1,
				   MHD_RESPMEM_PERSISTENT);
	int64_t now = ledger_now_ms();
	int rc = refresh(d, now);
	if (route == R_HEALTH)
		return send_json(conn, rc == LEDGER_OK ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE,
				 doc_health(d, rc, now));
	if (rc != LEDGER_OK)
		return send_error(conn, MHD_HTTP_SERVICE_UNAVAILABLE, ledger_strerror(rc));
	if (route == R_METRICS) {
		size_t len = 0;
		char *text = metrics_text(d, now, &len);
		if (!text)
			return MHD_NO;
		return send_buffer(conn, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8",
				   text, len, MHD_RESPMEM_MUST_FREE);
	}
	cJSON *doc = route == R_STATUS ? doc_status(d) :
		     route == R_ACCOUNTS ? doc_accounts(d, now) :
		     route == R_SESSION ? doc_session(d, now) :
		     route == R_RCLONE ? doc_rclone(d) :
		     route == R_QUEUE ? doc_queue(d) : doc_state(d, now);
	return send_json(conn, MHD_HTTP_OK, doc);
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	(void)cls;
	char line[512];
	vsnprintf(line, sizeof(line), fmt, ap);
	line[strcspn(line, "\n")] = '\0';
	log_debug("http: %s", line); /* per-connection noise a flood could turn into a log flood */
}

/* ---- the role ---- */

static int listen_on(const char *host, int port, int *port_out)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_PASSIVE | AI_NUMERICSERV };
	struct addrinfo *res = NULL;
	char service[16];
	snprintf(service, sizeof(service), "%d", port);
	int gai = getaddrinfo(host, service, &hints, &res);
	if (gai != 0) {
		log_error("cannot resolve dashboard.host %s: %s", host, gai_strerror(gai));
		return -1;
	}
	int fd = -1, one = 1;
	for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0)
			continue;
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, DASH_LISTEN_BACKLOG) == 0)
			break;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0) {
		log_error("cannot listen on %s:%d: %s", host, port, strerror(errno));
		return -1;
	}
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
		*port_out = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port :
				  ((struct sockaddr_in *)&ss)->sin_port);
	return fd;
}

/* Connections: as many as the descriptor limit leaves room for; past that MHD stops accepting
 * and the rest wait in the kernel's backlog instead of being refused. */
static unsigned connection_limit(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
	    rl.rlim_cur < DASH_CONNECTIONS_MAX + 64)
		return rl.rlim_cur > 96 ? (unsigned)rl.rlim_cur - 64 : 32;
	return DASH_CONNECTIONS_MAX;
}

static int serve_loop(struct MHD_Daemon *mhd, int wake_fd)
{
	const union MHD_DaemonInfo *info = MHD_get_daemon_info(mhd, MHD_DAEMON_INFO_EPOLL_FD);
	if (!info) {
		log_error("libmicrohttpd has no epoll descriptor");
		return 1;
	}
	struct pollfd pfd[2] = { { .fd = info->epoll_fd, .events = POLLIN },
				 { .fd = wake_fd, .events = POLLIN } };
	while (!stop_requested()) {
		MHD_UNSIGNED_LONG_LONG timeout_ms = 0;
		int wait_ms = 1000;
		if (MHD_get_timeout(mhd, &timeout_ms) == MHD_YES && timeout_ms < (MHD_UNSIGNED_LONG_LONG)wait_ms)
			wait_ms = (int)timeout_ms;
		if (poll(pfd, 2, wait_ms) < 0 && errno != EINTR) {
			log_error("poll failed: %s", strerror(errno));
			return 1;
		}
		if (stop_requested())
			break;
		if (MHD_run(mhd) != MHD_YES) {
			log_error("libmicrohttpd failed; stopping the dashboard");
			return 1;
		}
	}
	return 0;
}

int dashboard_serve(const struct config *c, const char *ledger_name, int ready_fd)
{
	struct dash d = { .cfg = c };
	struct MHD_Daemon *mhd = NULL;
	int listen_fd = -1, port = 0, rc = 1, attached = 0, wake_fd;
	char err[256];
	/* Its nice value is its row's (roles.c): people and scrapers are never worth a moment of
	 * an upload. */
	ledger_file_keep_heap(); /* every /api/state renders the whole ledger again */
	const char *host = c->dashboard.host ? c->dashboard.host : CONFIG_DASHBOARD_HOST_DEFAULT;
	d.refresh_seconds = c->dashboard.refresh_seconds > 0 ? c->dashboard.refresh_seconds :
			    CONFIG_DASHBOARD_REFRESH_DEFAULT;

	int lrc = ledger_attach(ledger_name, 0, &d.ledger);
	if (lrc != LEDGER_OK) {
		log_error("cannot attach the ledger %s: %s", ledger_name, ledger_strerror(lrc));
		goto out;
	}
	attached = 1;
	if (ledger_copy_init(&d.ledger, &d.copy) != LEDGER_OK ||
	    !(d.order = calloc(d.copy.row_capacity ? d.copy.row_capacity : 1, sizeof(*d.order)))) {
		log_error("cannot allocate the ledger copy: %s", strerror(errno));
		goto out;
	}
	static const int caught[] = { SIGTERM, SIGINT };
	static const int ignored[] = { SIGPIPE };
	if ((wake_fd = procs_signals_install(caught, 2, ignored, 1, PROCS_NO_RESTART, NULL)) < 0) {
		log_error("cannot make the wake-up pipe: %s", strerror(errno));
		goto out;
	}

	listen_fd = listen_on(host, c->dashboard.port, &port);
	if (listen_fd < 0)
		goto out;
	d.port = port;
	if (lazy_mhd_load(err, sizeof(err)) < 0) {
		log_error("%s", err);
		goto out;
	}
	mhd = MHD_start_daemon(MHD_USE_EPOLL | MHD_USE_ERROR_LOG | MHD_USE_TURBO, 0, NULL, NULL,
			       on_request, &d,
			       MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL, /* first, or MHD warns */
			       MHD_OPTION_LISTEN_SOCKET, listen_fd,
			       MHD_OPTION_CONNECTION_LIMIT, connection_limit(),
			       MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)DASH_CONNECTION_TIMEOUT_S,
			       MHD_OPTION_PER_IP_CONNECTION_LIMIT, 0u, /* every client is 127.0.0.1 */
			       MHD_OPTION_END);
	if (!mhd) {
		log_error("cannot start the HTTP server on %s:%d", host, port);
		goto out;
	}
	listen_fd = -1; /* MHD's now */
	if (sandbox_enter(role_table[ROLE_DASHBOARD].sandbox, NULL, 0, err, sizeof(err)) < 0) {
		log_error("%s", err);
		goto out;
	}
	log_info("serving http://%s:%d/%s", host, port,
		 c->dashboard.token ? " (a token is required)" : "");
	if (ready_fd >= 0) {
		char text[16];
		int n = snprintf(text, sizeof(text), "%d\n", port);
		if (write(ready_fd, text, (size_t)n) != n)
			log_warn("cannot report the port: %s", strerror(errno));
		close(ready_fd);
		ready_fd = -1;
	}
	rc = serve_loop(mhd, wake_fd);
out:
	if (ready_fd >= 0)
		close(ready_fd);
	if (mhd)
		MHD_stop_daemon(mhd);
	if (listen_fd >= 0)
		close(listen_fd);
	free(d.order);
	if (attached) {
		ledger_copy_free(&d.copy);
		ledger_detach(&d.ledger);
	}
	return rc;
}

int dashboard_run(const struct config *c, const char *ledger_name)
{
	return dashboard_serve(c, ledger_name, -1);
}
