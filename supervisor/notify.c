#include "notify.h"

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "lazy_curl.h"
#include "log.h"
#include "procs.h"
#include "sandbox.h"
#include "stage.h"

_Static_assert(sizeof(struct notify_event) <= PIPE_BUF, "an event must fit one atomic write");

#define NOTIFY_POLL_MAX_MS 200          /* the notifier's longest wait: stop flags, due retries */
#define NOTIFY_PIPE_BYTES (1 << 20)     /* asked of the kernel; 64 KiB holds ~40 events */
#define NOTIFY_PROBLEM_EVERY_MS (10LL * 60 * 1000)   /* one "cannot write" per 10 minutes */
#define NOTIFY_RETIRED_MAX 4

/* ---- names and words ---- */

const char *notify_kind_name(enum notify_kind kind)
{
	switch (kind) {
	case NOTIFY_UPLOAD_STARTED: return "upload_started";
	case NOTIFY_ACCOUNT_ROTATED: return "account_rotated";
	case NOTIFY_UPLOADER_SUSPENDED: return "uploader_suspended";
	case NOTIFY_UPLOAD_FINISHED: return "upload_finished";
	case NOTIFY_LEDGER_PROBLEM: return "ledger_problem";
	}
	return "unknown";
}

const char *notify_rotation_name(enum notify_rotation why)
{
	switch (why) {
	case NOTIFY_ROTATED_MAX_TRANSFER: return "max_transfer";
	case NOTIFY_ROTATED_BAN: return "ban";
	case NOTIFY_ROTATED_QUOTA: return "quota";
	case NOTIFY_ROTATED_FAILURES: return "failures";
	case NOTIFY_ROTATED_OTHER: break;
	}
	return "other";
}

const char *notify_status_name(enum notify_status status)
{
	switch (status) {
	case NOTIFY_STATUS_DONE: return "done";
	case NOTIFY_STATUS_NO_ACCOUNT: return "no_account";
	case NOTIFY_STATUS_FAILED: return "failed";
	case NOTIFY_STATUS_STOPPED: return "stopped";
	}
	return "unknown";
}

/* 1536 → "1.5 KiB"; below 1 KiB exact bytes. */
static void human_bytes(int64_t b, char *out, size_t len)
{
	static const char *const units[] = { "KiB", "MiB", "GiB", "TiB", "PiB", "EiB" };
	if (b < 1024) {
		snprintf(out, len, "%lld B", (long long)(b < 0 ? 0 : b));
		return;
	}
	double v = (double)b;
	int u = -1;
	while (v >= 1024 && u < 5) {
		v /= 1024;
		u++;
	}
	snprintf(out, len, "%.1f %s", v, units[u]);
}

static void human_duration(int64_t ms, char *out, size_t len)
{
	long long s = (long long)((ms < 0 ? 0 : ms) + 500) / 1000;
	if (s < 60)
		snprintf(out, len, "%lld s", s);
	else if (s < 3600)
		snprintf(out, len, "%lld min %lld s", s / 60, s % 60);
	else
		snprintf(out, len, "%lld h %lld min", s / 3600, s / 60 % 60);
}

static void utc_time(int64_t ms, char *out, size_t len)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;
	if (!gmtime_r(&t, &tm) || !strftime(out, len, "%Y-%m-%d %H:%M:%S UTC", &tm))
		snprintf(out, len, "%lld", (long long)(ms / 1000));
}

/* The record's strings as C strings whatever the pipe carried (notify_event_check also
 * checks, but formatting must never read past an array). */
#define FIELD(e, f) ((int)strnlen((e)->f, sizeof((e)->f))), (e)->f

static void accounts_text(const struct notify_event *e, char *out, size_t len)
{
	size_t o = 0;
	int named = e->account_count < NOTIFY_ACCOUNTS_MAX ? e->account_count : NOTIFY_ACCOUNTS_MAX;
	out[0] = '\0';
	for (int i = 0; i < named && o < len; i++) {
		int n = snprintf(out + o, len - o, "%s%.*s", i ? ", " : "", FIELD(e, accounts[i]));
		o += n > 0 ? (size_t)n : 0;
	}
	if (e->account_count > named && o < len)
		snprintf(out + o, len - o, " and %d more", e->account_count - named);
}

void notify_format_text(const struct notify_event *e, char *title, size_t title_len, char *text,
			size_t text_len)
{
	char a[32], b[32], c[32], d[80], when[48], list[NOTIFY_ACCOUNTS_MAX * 50 + 32];
	switch ((enum notify_kind)e->kind) {
	case NOTIFY_UPLOAD_STARTED:
		snprintf(title, title_len, "Upload started: %.*s", FIELD(e, uploader));
		human_bytes(e->bytes, a, sizeof(a));
		human_bytes(e->planned_bytes, b, sizeof(b));
		human_bytes(e->remaining_bytes, c, sizeof(c));
		if (e->planned_bytes < e->bytes)
			snprintf(d, sizeof(d), "moves at most %s of them (its --max-transfer)", b);
		else
			snprintf(d, sizeof(d), "can move them all");
		snprintf(text, text_len,
			 "Upload of %.*s started: %lld files (%s) to upload; stage %d on %.*s "
			 "(%.*s) %s, with %s of the account's daily quota left.",
			 FIELD(e, uploader), (long long)e->files, a, e->stage, FIELD(e, account),
			 FIELD(e, strategy), d, c);
		return;
	case NOTIFY_ACCOUNT_ROTATED:
		snprintf(title, title_len, "Account rotated: %.*s", FIELD(e, uploader));
		human_bytes(e->bytes, a, sizeof(a));
		snprintf(text, text_len,
			 "Uploader %.*s moved on from %.*s to %.*s (%s): %.*s. %.*s moved %lld "
			 "files (%s) in this upload.",
			 FIELD(e, uploader), FIELD(e, account), FIELD(e, account_to),
			 notify_rotation_name((enum notify_rotation)e->why), FIELD(e, detail),
			 FIELD(e, account), (long long)e->files, a);
		return;
	case NOTIFY_UPLOADER_SUSPENDED:
		snprintf(title, title_len, "Uploader suspended: %.*s", FIELD(e, uploader));
		utc_time(e->until_ms, when, sizeof(when));
		snprintf(text, text_len, "Uploader %.*s is suspended until %s: %.*s.",
			 FIELD(e, uploader), when, FIELD(e, detail));
		return;
	case NOTIFY_UPLOAD_FINISHED: {
		static const char *const heads[] = {
			[NOTIFY_STATUS_DONE] = "finished",
			[NOTIFY_STATUS_NO_ACCOUNT] = "ended with files left",
			[NOTIFY_STATUS_FAILED] = "failed",
			[NOTIFY_STATUS_STOPPED] = "stopped",
		};
		enum notify_status st = e->why >= 0 && e->why <= NOTIFY_STATUS_STOPPED
						? (enum notify_status)e->why
						: NOTIFY_STATUS_FAILED;
		snprintf(title, title_len, "Upload %s: %.*s",
			 st == NOTIFY_STATUS_NO_ACCOUNT ? "ended" : heads[st], FIELD(e, uploader));
		human_bytes(e->bytes, a, sizeof(a));
		human_duration(e->duration_ms, b, sizeof(b));
		human_bytes(e->duration_ms > 0 ? e->bytes * 1000 / e->duration_ms : e->bytes, c,
			    sizeof(c));
		accounts_text(e, list, sizeof(list));
		snprintf(d, sizeof(d), "%d account%s", e->account_count,
			 e->account_count == 1 ? "" : "s");
		char why[sizeof(e->detail) + 8] = "";
		if (e->detail[0])
			snprintf(why, sizeof(why), " (%.*s)", FIELD(e, detail));
		snprintf(text, text_len,
			 "Upload of %.*s %s%s: %lld files (%s) in %s (%s/s), %d stage%s on "
			 "%s%s%s%s.",
			 FIELD(e, uploader), heads[st], why, (long long)e->files, a, b, c,
			 e->stages, e->stages == 1 ? "" : "s", d, list[0] ? " (" : "", list,
			 list[0] ? ")" : "");
		return;
	}
	case NOTIFY_LEDGER_PROBLEM:
		snprintf(title, title_len, "Ledger problem");
		snprintf(text, text_len, "%.*s", FIELD(e, detail));
		return;
	}
	snprintf(title, title_len, "cplow");
	snprintf(text, text_len, "unknown event %d", e->kind);
}

/* ---- payloads ---- */

int notify_event_check(const struct notify_event *e)
{
	if (e->magic != NOTIFY_EVENT_MAGIC || e->version != NOTIFY_EVENT_VERSION ||
	    e->size != sizeof(*e) || e->kind < NOTIFY_UPLOAD_STARTED ||
	    e->kind > NOTIFY_LEDGER_PROBLEM)
		return -1;
	return 0;
}

/* application/x-www-form-urlencoded, as Pushover takes it: unreserved bytes as they are,
 * every other byte %XX (a space too: both forms are valid). */
static int form_put(char **buf, size_t *len, size_t *cap, const char *key, const char *value)
{
	size_t need = *len + strlen(key) + 2 + strlen(value) * 3 + 1;
	if (need > *cap) {
		size_t cap2 = need * 2;
		char *grown = realloc(*buf, cap2);
		if (!grown)
			return -1;
		*buf = grown;
		*cap = cap2;
	}
	char *o = *buf + *len;
	if (*len)
		*o++ = '&';
	o += sprintf(o, "%s=", key);
	for (const unsigned char *p = (const unsigned char *)value; *p; p++) {
		bool plain = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
			     (*p >= '0' && *p <= '9') || *p == '-' || *p == '.' || *p == '_' ||
			     *p == '~';
		if (plain)
			*o++ = (char)*p;
		else
			o += sprintf(o, "%%%02X", *p);
	}
	*o = '\0';
	*len = (size_t)(o - *buf);
	return 0;
}

static const char *apprise_type(const struct notify_event *e)
{
	switch ((enum notify_kind)e->kind) {
	case NOTIFY_UPLOADER_SUSPENDED: return "warning";
	case NOTIFY_LEDGER_PROBLEM: return "failure";
	case NOTIFY_UPLOAD_FINISHED:
		if (e->why == NOTIFY_STATUS_DONE)
			return "success";
		return e->why == NOTIFY_STATUS_FAILED ? "failure" : "warning";
	default: return "info";
	}
}

static cJSON *add_string(cJSON *o, const char *key, const char *value, size_t max)
{
	char buf[NOTIFY_TEXT_MAX];
	snprintf(buf, sizeof(buf), "%.*s", (int)strnlen(value, max), value);
	return cJSON_AddStringToObject(o, key, buf);
}

#define ADD_FIELD(o, key, e, f) add_string(o, key, (e)->f, sizeof((e)->f))

/* An integer as JSON text: cJSON prints numbers with 15 significant digits, too few for a
 * byte count above 10^15. */
static cJSON *add_int(cJSON *o, const char *key, int64_t v)
{
	char digits[24];
	snprintf(digits, sizeof(digits), "%lld", (long long)v);
	return cJSON_AddRawToObject(o, key, digits);
}

/* The generic webhook's object: the event's fields by kind, integers exact. */
static bool webhook_fields(cJSON *o, const struct notify_event *e)
{
	bool ok = true;
#define NUM(k, v) ok = ok && add_int(o, k, (int64_t)(v))
	switch ((enum notify_kind)e->kind) {
	case NOTIFY_UPLOAD_STARTED:
		ok = ok && ADD_FIELD(o, "account", e, account) &&
		     ADD_FIELD(o, "strategy", e, strategy);
		NUM("stage", e->stage);
		NUM("files", e->files);
		NUM("bytes", e->bytes);
		NUM("planned_bytes", e->planned_bytes);
		NUM("max_transfer_bytes", e->max_transfer_bytes);
		NUM("remaining_bytes", e->remaining_bytes);
		break;
	case NOTIFY_ACCOUNT_ROTATED:
		ok = ok && ADD_FIELD(o, "from_account", e, account) &&
		     ADD_FIELD(o, "to_account", e, account_to) &&
		     cJSON_AddStringToObject(o, "reason",
					     notify_rotation_name((enum notify_rotation)e->why)) &&
		     ADD_FIELD(o, "detail", e, detail);
		NUM("files", e->files);
		NUM("bytes", e->bytes);
		NUM("remaining_bytes", e->remaining_bytes);
		if (e->until_ms > 0)
			NUM("banned_until", e->until_ms / 1000);
		break;
	case NOTIFY_UPLOADER_SUSPENDED:
		NUM("until", e->until_ms / 1000);
		ok = ok && ADD_FIELD(o, "detail", e, detail);
		break;
	case NOTIFY_UPLOAD_FINISHED: {
		ok = ok &&
		     cJSON_AddStringToObject(o, "status",
					     notify_status_name((enum notify_status)e->why)) &&
		     ADD_FIELD(o, "detail", e, detail);
		NUM("files", e->files);
		NUM("bytes", e->bytes);
		ok = ok && cJSON_AddNumberToObject(o, "duration_seconds",
						   (double)e->duration_ms / 1000.0);
		NUM("bytes_per_second", e->duration_ms > 0 ? e->bytes * 1000 / e->duration_ms : 0);
		NUM("stages", e->stages);
		NUM("account_count", e->account_count);
		cJSON *list = cJSON_AddArrayToObject(o, "accounts");
		ok = ok && list;
		for (int i = 0; ok && i < e->account_count && i < NOTIFY_ACCOUNTS_MAX; i++) {
			char name[sizeof(e->accounts[i]) + 1];
			snprintf(name, sizeof(name), "%.*s", FIELD(e, accounts[i]));
			cJSON *s = cJSON_CreateString(name);
			ok = s && cJSON_AddItemToArray(list, s);
		}
		break;
	}
	case NOTIFY_LEDGER_PROBLEM:
		ok = ok && ADD_FIELD(o, "detail", e, detail);
		break;
	}
#undef NUM
	return ok;
}

/*
 * Each service's shape (the message is notify_format_text's, the title the config's, then the
 * event's):
 *   slack        {"text", "username", "icon_emoji", "channel" when set}   (cloudplow's)
 *   discord      {"content"}
 *   google_chat  {"text"}
 *   apprise      {"title", "body", "type": info|success|warning|failure}  (Apprise API)
 *   pushover     token, user, priority, title, message as a form (cloudplow's, plus title; an
 *                emergency priority 2 also sends retry=60 and expire=3600, which it needs)
 *   webhook      {"id", "event", "time", "uploader", "title", "message", ...the event's fields}
 */
int notify_build_request(const struct config_notification *t, const struct notify_event *e,
			 struct notify_request *out)
{
	char title[256], text[NOTIFY_TEXT_MAX], full_title[320];
	notify_format_text(e, title, sizeof(title), text, sizeof(text));
	snprintf(full_title, sizeof(full_title), "%s: %s", t->title ? t->title : "cplow", title);
	memset(out, 0, sizeof(*out));
	out->content_type = "application/json";
	if (t->service == CONFIG_NOTIFY_PUSHOVER) {
		char prio[8];
		size_t len = 0, cap = 0;
		snprintf(prio, sizeof(prio), "%d", t->priority);
		out->content_type = "application/x-www-form-urlencoded";
		const char *app = t->app_token ? t->app_token : "";
		const char *user = t->user_token ? t->user_token : "";
		if (form_put(&out->body, &len, &cap, "token", app) < 0 ||
		    form_put(&out->body, &len, &cap, "user", user) < 0 ||
		    form_put(&out->body, &len, &cap, "priority", prio) < 0 ||
		    form_put(&out->body, &len, &cap, "title", full_title) < 0 ||
		    form_put(&out->body, &len, &cap, "message", text) < 0 ||
		    (t->priority == 2 &&
		     (form_put(&out->body, &len, &cap, "retry", "60") < 0 ||
		      form_put(&out->body, &len, &cap, "expire", "3600") < 0))) {
			notify_request_free(out);
			return -1;
		}
		return 0;
	}
	cJSON *o = cJSON_CreateObject();
	bool ok = o != NULL;
	switch (t->service) {
	case CONFIG_NOTIFY_SLACK:
		ok = ok && cJSON_AddStringToObject(o, "text", text) &&
		     cJSON_AddStringToObject(o, "username",
					     t->sender_name ? t->sender_name : "cplow") &&
		     (!t->sender_icon ||
		      cJSON_AddStringToObject(o, "icon_emoji", t->sender_icon)) &&
		     (!t->channel || cJSON_AddStringToObject(o, "channel", t->channel));
		break;
	case CONFIG_NOTIFY_DISCORD:
		ok = ok && cJSON_AddStringToObject(o, "content", text);
		break;
	case CONFIG_NOTIFY_GOOGLE_CHAT:
		ok = ok && cJSON_AddStringToObject(o, "text", text);
		break;
	case CONFIG_NOTIFY_APPRISE:
		ok = ok && cJSON_AddStringToObject(o, "title", full_title) &&
		     cJSON_AddStringToObject(o, "body", text) &&
		     cJSON_AddStringToObject(o, "type", apprise_type(e));
		break;
	case CONFIG_NOTIFY_WEBHOOK:
		ok = ok && ADD_FIELD(o, "id", e, id) &&
		     cJSON_AddStringToObject(o, "event",
					     notify_kind_name((enum notify_kind)e->kind)) &&
		     cJSON_AddNumberToObject(o, "time", (double)e->at_ms / 1000.0);
		if (ok && e->kind == NOTIFY_LEDGER_PROBLEM)
			ok = cJSON_AddNullToObject(o, "uploader") != NULL;
		else if (ok)
			ok = ADD_FIELD(o, "uploader", e, uploader) != NULL;
		ok = ok && cJSON_AddStringToObject(o, "title", title) &&
		     cJSON_AddStringToObject(o, "message", text) && webhook_fields(o, e);
		break;
	case CONFIG_NOTIFY_PUSHOVER:
		break;
	}
	if (ok)
		out->body = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	return out->body ? 0 : -1;
}

/* cJSON's printer allocates with malloc (cplow sets no hooks), as form_put does. */
void notify_request_free(struct notify_request *r)
{
	free(r->body);
	memset(r, 0, sizeof(*r));
}

enum notify_outcome notify_classify(int curl_code, long http_status, bool sent)
{
	if (curl_code == CURLE_OK) {
		if (http_status >= 200 && http_status < 300)
			return NOTIFY_DELIVERED;
		if (http_status == 408 || http_status == 429 || http_status >= 500)
			return NOTIFY_RETRY;
		return NOTIFY_REFUSED;
	}
	switch (curl_code) {
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
	case CURLE_COULDNT_CONNECT:
	case CURLE_SSL_CONNECT_ERROR:
		return NOTIFY_RETRY;
	case CURLE_UNSUPPORTED_PROTOCOL:
	case CURLE_URL_MALFORMAT:
	case CURLE_OUT_OF_MEMORY:
		return NOTIFY_REFUSED;
	default:
		/* A timeout or a broken connection: resent only if nothing of it left. */
		return sent ? NOTIFY_UNANSWERED : NOTIFY_RETRY;
	}
}

int notify_backoff_ms(int attempt)
{
	if (attempt < 2)
		return 0;
	if (attempt > NOTIFY_ATTEMPTS)
		attempt = NOTIFY_ATTEMPTS;
	return 1000 << (attempt - 2);
}

/* ---- the notifier: the role that sends ---- */

struct delivery {
	struct notify_event ev;
	int attempts;                 /* made so far */
	int64_t due_ms;
};

struct target {
	const struct config_notification *cfg;
	struct delivery *queue;       /* a ring of NOTIFY_QUEUE_MAX */
	size_t head, count;
	CURL *easy;                   /* the head's request, while one is under way */
	struct curl_slist *headers;
	struct notify_request req;
};

static volatile sig_atomic_t notifier_stop;

static void on_stop(int sig)
{
	(void)sig;
	notifier_stop = 1;
}

static size_t discard_body(char *data, size_t size, size_t n, void *ctx)
{
	(void)data;
	(void)ctx;
	return size * n;
}

static void pop(struct target *t)
{
	t->head = (t->head + 1) % NOTIFY_QUEUE_MAX;
	t->count--;
}

static void enqueue(struct target *t, const struct notify_event *e, int64_t now)
{
	if (t->count == NOTIFY_QUEUE_MAX) {
		log_warn("%s: %zu events wait already; %s %s dropped", t->cfg->name, t->count,
			 notify_kind_name((enum notify_kind)e->kind), e->id);
		return;
	}
	struct delivery *d = &t->queue[(t->head + t->count) % NOTIFY_QUEUE_MAX];
	d->ev = *e;
	d->attempts = 0;
	d->due_ms = now;
	t->count++;
}

static int begin(CURLM *multi, struct target *t)
{
	struct delivery *d = &t->queue[t->head];
	char line[128];
	if (notify_build_request(t->cfg, &d->ev, &t->req) < 0)
		return -1;
	snprintf(line, sizeof(line), "Content-Type: %s", t->req.content_type);
	struct curl_slist *h = curl_slist_append(NULL, line);
	snprintf(line, sizeof(line), "Idempotency-Key: %.40s", d->ev.id);
	struct curl_slist *h2 = h ? curl_slist_append(h, line) : NULL;
	/* No "Expect: 100-continue" for a body over 1 KiB: a server that ignores it costs a
	 * second per request. */
	h2 = h2 ? curl_slist_append(h2, "Expect:") : NULL;
	h = h2 ? h2 : h;
	for (size_t i = 0; h2 && i < t->cfg->header_count; i++) {
		const struct config_notify_header *x = &t->cfg->headers[i];
		size_t n = strlen(x->name) + strlen(x->value) + 3;
		char *hl = malloc(n);
		if (!hl) {
			h2 = NULL;
			break;
		}
		/* "Name:" with an empty value would make curl drop the header: "Name;" sends it. */
		if (*x->value)
			snprintf(hl, n, "%s: %s", x->name, x->value);
		else
			snprintf(hl, n, "%s;", x->name);
		h2 = curl_slist_append(h, hl);
		free(hl);
	}
	t->headers = h;
	CURL *c = curl_easy_init();
	if (!h2 || !c) {
		curl_easy_cleanup(c);
		return -1;
	}
	t->easy = c;
	CURLcode e = CURLE_OK;
#define SET(opt, val) if (e == CURLE_OK) e = curl_easy_setopt(c, opt, val)
	SET(CURLOPT_URL, t->cfg->url);
	SET(CURLOPT_PROTOCOLS_STR, "http,https");
	SET(CURLOPT_FOLLOWLOCATION, 0L);
	SET(CURLOPT_NOSIGNAL, 1L);
	SET(CURLOPT_CONNECTTIMEOUT_MS, (long)NOTIFY_CONNECT_TIMEOUT_MS);
	SET(CURLOPT_TIMEOUT_MS, (long)NOTIFY_TIMEOUT_MS);
	SET(CURLOPT_USERAGENT, "cplow");
	SET(CURLOPT_HTTPHEADER, t->headers);
	SET(CURLOPT_POSTFIELDSIZE, (long)strlen(t->req.body));
	SET(CURLOPT_POSTFIELDS, t->req.body);
	SET(CURLOPT_WRITEFUNCTION, discard_body);
	SET(CURLOPT_PRIVATE, (void *)t);
#undef SET
	if (e != CURLE_OK || curl_multi_add_handle(multi, c) != CURLM_OK)
		return -1;
	d->attempts++;
	return 0;
}

static void end_request(CURLM *multi, struct target *t)
{
	if (t->easy) {
		curl_multi_remove_handle(multi, t->easy);
		curl_easy_cleanup(t->easy);
	}
	t->easy = NULL;
	curl_slist_free_all(t->headers);
	t->headers = NULL;
	notify_request_free(&t->req);
}

/* One request ended: deliver, retry later, or give up. */
static void finished(CURLM *multi, struct target *t, CURLcode code, int64_t now)
{
	long status = 0, sent = 0;
	curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_getinfo(t->easy, CURLINFO_REQUEST_SIZE, &sent);
	end_request(multi, t);
	struct delivery *d = &t->queue[t->head];
	const char *kind = notify_kind_name((enum notify_kind)d->ev.kind);
	char what[160];
	if (code != CURLE_OK)
		snprintf(what, sizeof(what), "%s", curl_easy_strerror(code));
	else
		snprintf(what, sizeof(what), "HTTP %ld", status);
	switch (notify_classify(code, status, sent > 0)) {
	case NOTIFY_DELIVERED:
		log_info("%s: %s %s sent", t->cfg->name, kind, d->ev.id);
		pop(t);
		return;
	case NOTIFY_RETRY:
		if (d->attempts < NOTIFY_ATTEMPTS) {
			int wait = notify_backoff_ms(d->attempts + 1);
			log_warn("%s: %s %s not delivered (%s); attempt %d of %d in %d s",
				 t->cfg->name, kind, d->ev.id, what, d->attempts + 1,
				 NOTIFY_ATTEMPTS, wait / 1000);
			d->due_ms = now + wait;
			return;
		}
		log_warn("%s: %s %s not delivered (%s); given up after %d attempts", t->cfg->name,
			 kind, d->ev.id, what, d->attempts);
		break;
	case NOTIFY_UNANSWERED:
		log_warn("%s: %s %s got no answer (%s) after it was sent; not sent again, since it "
			 "may have arrived", t->cfg->name, kind, d->ev.id, what);
		break;
	case NOTIFY_REFUSED:
		log_warn("%s: %s %s refused (%s); not sent again", t->cfg->name, kind, d->ev.id,
			 what);
		break;
	}
	pop(t);
}

/* Whole records from the pipe; a record torn by a short read waits in `carry`. Returns -1 at
 * EOF (every writer is gone). */
static int read_events(int fd, struct target *targets, size_t n_targets, char *carry,
		       size_t *carried, int64_t now)
{
	for (;;) {
		ssize_t r = read(fd, carry + *carried, sizeof(struct notify_event) * 8 - *carried);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return 0; /* EAGAIN: nothing more for now */
		if (r == 0)
			return -1;
		*carried += (size_t)r;
		size_t whole = *carried / sizeof(struct notify_event);
		for (size_t i = 0; i < whole; i++) {
			struct notify_event e;
			memcpy(&e, carry + i * sizeof(e), sizeof(e));
			if (notify_event_check(&e) < 0) {
				log_error("a malformed event record in the pipe; dropped");
				continue;
			}
			e.id[sizeof(e.id) - 1] = '\0';
			for (size_t k = 0; k < n_targets; k++)
				enqueue(&targets[k], &e, now);
		}
		*carried -= whole * sizeof(struct notify_event);
		memmove(carry, carry + whole * sizeof(struct notify_event), *carried);
	}
}

int notify_run(const struct config *c, int read_fd)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_stop;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL); /* OpenSSL writes without MSG_NOSIGNAL */
	char why[256];
	if (lazy_curl_load(why, sizeof(why)) < 0) {
		log_error("%s", why);
		return 1;
	}
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		log_error("cannot initialise libcurl");
		return 1;
	}
	int rc = 1;
	size_t n = 0;
	struct target *targets = calloc(c->notification_count + 1, sizeof(*targets));
	char *carry = malloc(sizeof(struct notify_event) * 8);
	CURLM *multi = curl_multi_init();
	if (!targets || !carry || !multi)
		goto out;
	for (size_t i = 0; i < c->notification_count; i++) {
		if (!c->notifications[i].enabled)
			continue;
		targets[n].cfg = &c->notifications[i];
		if (!(targets[n++].queue = calloc(NOTIFY_QUEUE_MAX, sizeof(struct delivery))))
			goto out;
	}
	char err[256];
	if (sandbox_enter(SANDBOX_NOTIFIER, NULL, 0, err, sizeof(err)) < 0)
		log_warn("running without a sandbox: %s", err);
	size_t carried = 0;
	bool reading = true;
	int64_t drain_until = 0;
	for (;;) {
		int64_t now = ledger_now_ms();
		if (notifier_stop)
			reading = false; /* SIGTERM: what is in the pipe is the next notifier's */
		if (!reading && drain_until == 0)
			drain_until = now + NOTIFY_DRAIN_MS;
		size_t pending = 0;
		for (size_t i = 0; i < n; i++)
			pending += targets[i].count;
		if (!reading && (pending == 0 || now >= drain_until))
			break;
		int64_t next_due = now + NOTIFY_POLL_MAX_MS;
		for (size_t i = 0; i < n; i++) {
			struct target *t = &targets[i];
			if (t->easy || t->count == 0)
				continue;
			struct delivery *d = &t->queue[t->head];
			if (d->due_ms > now) {
				if (d->due_ms < next_due)
					next_due = d->due_ms;
				continue;
			}
			if (begin(multi, t) < 0) {
				log_error("%s: cannot make the request for %s (out of memory?); "
					  "dropped", t->cfg->name, d->ev.id);
				end_request(multi, t);
				pop(t);
			}
		}
		int running = 0;
		curl_multi_perform(multi, &running);
		CURLMsg *m;
		int left;
		while ((m = curl_multi_info_read(multi, &left))) {
			if (m->msg != CURLMSG_DONE)
				continue;
			char *t = NULL;
			curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, &t);
			if (t)
				finished(multi, (struct target *)(void *)t, m->data.result,
					 ledger_now_ms());
		}
		long wait = (long)(next_due - ledger_now_ms()), curl_wait = -1;
		curl_multi_timeout(multi, &curl_wait);
		if (curl_wait >= 0 && curl_wait < wait)
			wait = curl_wait;
		if (wait < 0)
			wait = 0;
		struct curl_waitfd wfd = { .fd = read_fd, .events = CURL_WAIT_POLLIN };
		curl_multi_poll(multi, reading ? &wfd : NULL, reading ? 1 : 0, (int)wait, NULL);
		if (reading && !notifier_stop &&
		    read_events(read_fd, targets, n, carry, &carried, ledger_now_ms()) < 0)
			reading = false; /* EOF: the supervisor is done; drain */
	}
	for (size_t i = 0; i < n; i++)
		if (targets[i].count)
			log_warn("%s: %zu events not delivered before the notifier stopped",
				 targets[i].cfg->name, targets[i].count);
	rc = 0;
out:
	for (size_t i = 0; targets && i < n; i++) {
		end_request(multi, &targets[i]);
		free(targets[i].queue);
	}
	if (rc)
		log_error("out of memory");
	curl_multi_cleanup(multi);
	free(carry);
	free(targets);
	close(read_fd);
	curl_global_cleanup();
	return rc;
}

/* ---- the supervisor's half ---- */

/* One uploader's upload, as far as its notifications go. */
struct cycle {
	char uploader[LEDGER_UPLOADER_MAX];
	bool active;
	bool started_sent;
	int64_t started_ms;
	int stages;
	int64_t files, bytes;
	int account_count;
	char accounts[NOTIFY_ACCOUNTS_MAX][48];
	/* The account of the last stage and what it did in this upload. */
	char account[LEDGER_ACCOUNT_MAX];
	int64_t account_files, account_bytes;
	int last_result;              /* enum stage_result; -1: none yet */
	int64_t last_remaining;       /* -1: unknown */
	int64_t banned_until_ms;
	char ban_cause[LEDGER_CAUSE_MAX];
	/* The stage whose listing upload_started waits for. */
	pid_t pending_pid;
	int pending_stage;
	char pending_strategy[LEDGER_STRATEGY_MAX];
	int64_t pending_max_transfer, pending_remaining;
};

static struct {
	bool on;                      /* targets configured: the hooks work */
	const struct config *cfg;
	int close_fd;
	int read_fd, write_fd;
	pid_t pid;
	struct procs_backoff backoff;
	pid_t retired[NOTIFY_RETIRED_MAX];   /* replaced on reload, still sending */
	int64_t retired_kill_ms[NOTIFY_RETIRED_MAX];
	const struct ledger *ledger;  /* unmapped in the notifier */
	char run_id[24];
	uint64_t seq;
	uint64_t dropped;
	int64_t continue_min_bytes;
	struct cycle *cycles;
	size_t cycle_count;
	uint64_t flush_errors_seen, flush_count_seen;
	uint64_t flush_count_failing;     /* flush_count when the failures began */
	bool flush_failing;
	int64_t flush_problem_ms;
	uint64_t flush_problems_unsent;
} N = { .read_fd = -1, .write_fd = -1 };

static bool has_targets(const struct config *c)
{
	for (size_t i = 0; i < c->notification_count; i++)
		if (c->notifications[i].enabled)
			return true;
	return false;
}

/* src into dst, cut to fit without splitting a UTF-8 sequence. */
static void copy_str(char *dst, size_t size, const char *src)
{
	size_t n = strlen(src);
	if (n >= size) {
		n = size - 1;
		while (n > 0 && ((unsigned char)src[n] & 0xC0) == 0x80)
			n--;
	}
	memcpy(dst, src, n);
	dst[n] = '\0';
}

/* Short names for messages: a key file's name without its directory. */
static const char *short_name(const char *account)
{
	const char *slash = strrchr(account, '/');
	return slash && slash[1] ? slash + 1 : account;
}

static void new_event(struct notify_event *e, enum notify_kind kind, const char *uploader)
{
	memset(e, 0, sizeof(*e));
	e->magic = NOTIFY_EVENT_MAGIC;
	e->version = NOTIFY_EVENT_VERSION;
	e->size = sizeof(*e);
	e->kind = kind;
	e->at_ms = ledger_now_ms();
	snprintf(e->id, sizeof(e->id), "%s-%llu", N.run_id, (unsigned long long)++N.seq);
	if (uploader)
		copy_str(e->uploader, sizeof(e->uploader), uploader);
}

/* Never blocks: a full pipe drops the event. */
static void post(const struct notify_event *e)
{
	if (N.write_fd < 0 || !has_targets(N.cfg))
		return; /* none left after a reload */
	ssize_t w;
	do
		w = write(N.write_fd, e, sizeof(*e));
	while (w < 0 && errno == EINTR);
	if (w == (ssize_t)sizeof(*e))
		return;
	N.dropped++;
	log_warn("notify: %s %s dropped (%s); %llu dropped so far",
		 notify_kind_name((enum notify_kind)e->kind), e->id,
		 w < 0 && errno == EAGAIN ? "the notifier is behind: its pipe is full"
					  : strerror(errno),
		 (unsigned long long)N.dropped);
}

static void fork_notifier(void)
{
	/* procs_fork closes both ends in every child; the notifier keeps a copy of its end. */
	int keep = fcntl(N.read_fd, F_DUPFD_CLOEXEC, 3);
	if (keep < 0) {
		log_error("cannot start the notifier: %s", strerror(errno));
		procs_backoff_died(&N.backoff, ledger_now_ms());
		return;
	}
	pid_t pid = procs_fork(N.close_fd, SIGTERM);
	if (pid < 0) {
		log_error("cannot fork the notifier: %s", strerror(errno));
		close(keep);
		procs_backoff_died(&N.backoff, ledger_now_ms());
		return;
	}
	if (pid == 0) {
		log_set_tag("notifier");
		if (N.ledger && N.ledger->hdr) {
			struct ledger mine = *N.ledger;
			ledger_detach(&mine); /* it never needs the ledger */
		}
		/* _exit: exit-time handlers are the supervisor's, and the filter is on. */
		_exit(notify_run(N.cfg, keep));
	}
	close(keep);
	N.pid = pid;
	procs_backoff_started(&N.backoff, ledger_now_ms());
}

static void make_run_id(void)
{
	unsigned char r[8] = { 0 };
	int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
	if (fd < 0 || read(fd, r, sizeof(r)) != (ssize_t)sizeof(r)) {
		uint64_t t = (uint64_t)ledger_now_ms() ^ ((uint64_t)getpid() << 40);
		memcpy(r, &t, sizeof(r));
	}
	if (fd >= 0)
		close(fd);
	snprintf(N.run_id, sizeof(N.run_id), "%02x%02x%02x%02x%02x%02x%02x%02x", r[0], r[1], r[2],
		 r[3], r[4], r[5], r[6], r[7]);
}

static uint64_t fingerprint(const struct config *c);
static uint64_t running_fingerprint;

void notify_start(const struct config *c, int close_fd)
{
	N.cfg = c;
	N.close_fd = close_fd;
	N.continue_min_bytes = c->quota.continue_min_bytes;
	if (!has_targets(c) || N.on)
		return;
	int fds[2];
	if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) < 0) {
		log_error("notifications are off: cannot make the notifier's pipe: %s",
			  strerror(errno));
		return;
	}
	/* More room than the default 64 KiB, when the system allows it. */
	(void)fcntl(fds[1], F_SETPIPE_SZ, NOTIFY_PIPE_BYTES);
	N.read_fd = fds[0];
	N.write_fd = fds[1];
	procs_close_in_children(N.read_fd);
	procs_close_in_children(N.write_fd);
	if (!N.run_id[0])
		make_run_id();
	N.on = true;
	running_fingerprint = fingerprint(c);
	/* Forked at the first notify_tick (after the terminal view has taken children's stderr),
	 * or by notify_stop if events wait and no tick came (cplow refused to start). */
}

/* FNV-1a over s and a separator; NULL differs from "". */
static uint64_t mix(uint64_t h, const char *s)
{
	for (const char *p = s ? s : "\x01"; *p; p++)
		h = (h ^ (unsigned char)*p) * 1099511628211ULL;
	return (h ^ 0xff) * 1099511628211ULL;
}

/* Everything a notifier is forked with: a change means a new notifier. */
static uint64_t fingerprint(const struct config *c)
{
	uint64_t h = 1469598103934665603ULL;
#define MIX_STR(s) h = mix(h, s)
	for (size_t i = 0; i < c->notification_count; i++) {
		const struct config_notification *n = &c->notifications[i];
		char num[32];
		snprintf(num, sizeof(num), "%d/%d/%d", (int)n->service, n->enabled, n->priority);
		MIX_STR(num);
		MIX_STR(n->name);
		MIX_STR(n->url);
		MIX_STR(n->title);
		MIX_STR(n->sender_name);
		MIX_STR(n->sender_icon);
		MIX_STR(n->channel);
		MIX_STR(n->app_token);
		MIX_STR(n->user_token);
		for (size_t k = 0; k < n->header_count; k++) {
			MIX_STR(n->headers[k].name);
			MIX_STR(n->headers[k].value);
		}
	}
#undef MIX_STR
	return h;
}

static void retire(void)
{
	if (N.pid <= 0)
		return;
	for (int i = 0; i < NOTIFY_RETIRED_MAX; i++) {
		if (N.retired[i] > 0)
			continue;
		kill(N.pid, SIGTERM);
		N.retired[i] = N.pid;
		N.retired_kill_ms[i] = ledger_now_ms() + NOTIFY_DRAIN_MS + 1000;
		N.pid = 0;
		return;
	}
	kill(N.pid, SIGKILL); /* four reloads within seconds: no time to drain */
	N.retired[0] = N.pid;
	N.retired_kill_ms[0] = ledger_now_ms();
	N.pid = 0;
}

void notify_reload(const struct config *c)
{
	uint64_t before = running_fingerprint;
	N.cfg = c;
	N.continue_min_bytes = c->quota.continue_min_bytes;
	running_fingerprint = fingerprint(c);
	if (N.on && before == running_fingerprint)
		return;
	if (!N.on) {
		notify_start(c, N.close_fd);
		return;
	}
	retire();
	memset(&N.backoff, 0, sizeof(N.backoff));
	if (has_targets(c))
		fork_notifier();
	else
		log_info("notifications are off: the new config has none");
}

void notify_restart(void)
{
	if (!N.on || N.pid <= 0)
		return;
	retire();
	fork_notifier();
}

bool notify_reaped(pid_t pid, int status)
{
	for (int i = 0; i < NOTIFY_RETIRED_MAX; i++) {
		if (N.retired[i] == pid) {
			N.retired[i] = 0;
			return true;
		}
	}
	if (pid <= 0 || pid != N.pid)
		return false;
	N.pid = 0;
	log_error("the notifier died (status %d); restarting it", status);
	procs_backoff_died(&N.backoff, ledger_now_ms());
	return true;
}

static struct cycle *cycle_of(const char *uploader)
{
	for (size_t i = 0; i < N.cycle_count; i++)
		if (strcmp(N.cycles[i].uploader, uploader) == 0)
			return &N.cycles[i];
	struct cycle *grown = realloc(N.cycles, (N.cycle_count + 1) * sizeof(*grown));
	if (!grown)
		return NULL;
	N.cycles = grown;
	struct cycle *cy = &N.cycles[N.cycle_count++];
	memset(cy, 0, sizeof(*cy));
	copy_str(cy->uploader, sizeof(cy->uploader), uploader);
	return cy;
}

/*
 * The slot of worker pid and its row's usage, copied under ledger.h's readers' rule: the
 * sequence even and unchanged around the copy. 0, or -1 when there is no such slot (or writers
 * kept the ledger busy: the next tick tries again).
 */
static int read_stage(const struct ledger *l, pid_t pid, struct ledger_stage *st,
		      struct ledger_usage *usage)
{
	if (!l || !l->hdr || pid <= 0)
		return -1;
	struct ledger_header *h = l->hdr;
	for (int attempt = 0; attempt < 1000; attempt++) {
		uint64_t s1 = atomic_load_explicit(&h->seq, memory_order_acquire);
		if (s1 & 1)
			continue;
		int found = -1;
		for (uint32_t i = 0; i < h->slot_capacity; i++) {
			if (l->stages[i].state != LEDGER_STAGE_FREE && l->stages[i].pid == pid) {
				memcpy(st, &l->stages[i], sizeof(*st));
				found = (int)i;
				break;
			}
		}
		uint32_t rows = atomic_load_explicit(&h->row_count, memory_order_acquire);
		bool row_ok = found >= 0 && st->row >= 0 && (uint32_t)st->row < rows;
		if (row_ok)
			memcpy(usage, &l->rows[st->row].usage, sizeof(*usage));
		else
			memset(usage, 0, sizeof(*usage));
		atomic_thread_fence(memory_order_acquire);
		if (atomic_load_explicit(&h->seq, memory_order_relaxed) != s1)
			continue;
		return found >= 0 ? 0 : -1;
	}
	return -1;
}

static void post_started(struct cycle *cy, const struct ledger_stage *st)
{
	cy->pending_pid = 0;
	if (st->files_total <= 0)
		return; /* nothing listed: a silent upload, unless something moves later */
	struct notify_event e;
	new_event(&e, NOTIFY_UPLOAD_STARTED, cy->uploader);
	copy_str(e.account, sizeof(e.account), short_name(cy->account));
	copy_str(e.strategy, sizeof(e.strategy), cy->pending_strategy);
	e.stage = cy->pending_stage;
	e.files = st->files_total;
	e.bytes = st->bytes_total;
	e.max_transfer_bytes = cy->pending_max_transfer;
	e.planned_bytes = e.max_transfer_bytes > 0 && e.max_transfer_bytes < e.bytes
				  ? e.max_transfer_bytes
				  : e.bytes;
	e.remaining_bytes = cy->pending_remaining;
	cy->started_sent = true;
	post(&e);
}

static void post_rotated(struct cycle *cy, const char *to, int64_t now)
{
	struct notify_event e;
	char left[32], when[48];
	new_event(&e, NOTIFY_ACCOUNT_ROTATED, cy->uploader);
	copy_str(e.account, sizeof(e.account), short_name(cy->account));
	copy_str(e.account_to, sizeof(e.account_to), short_name(to));
	e.files = cy->account_files;
	e.bytes = cy->account_bytes;
	e.remaining_bytes = cy->last_remaining;
	human_bytes(cy->last_remaining, left, sizeof(left));
	bool low = cy->last_remaining >= 0 && cy->last_remaining <= N.continue_min_bytes;
	if (cy->banned_until_ms > now || cy->last_result == STAGE_TRIGGERED) {
		e.why = NOTIFY_ROTATED_BAN;
		e.until_ms = cy->banned_until_ms;
		utc_time(cy->banned_until_ms, when, sizeof(when));
		snprintf(e.detail, sizeof(e.detail), "banned until %s: %s", when,
			 cy->ban_cause[0] ? cy->ban_cause : "an rclone_sleeps trigger fired");
	} else if (cy->last_result == STAGE_FATAL) {
		e.why = NOTIFY_ROTATED_QUOTA;
		snprintf(e.detail, sizeof(e.detail), "rclone stopped with a fatal error (exit 7), "
						     "its upload limit");
	} else if ((cy->last_result == STAGE_DONE || cy->last_result == STAGE_MAX_TRANSFER) &&
		   low) {
		e.why = NOTIFY_ROTATED_QUOTA;
		snprintf(e.detail, sizeof(e.detail), "%s of its daily quota left, not worth "
			 "another stage (quota.continue_min_bytes)", left);
	} else if (cy->last_result == STAGE_MAX_TRANSFER) {
		e.why = NOTIFY_ROTATED_MAX_TRANSFER;
		snprintf(e.detail, sizeof(e.detail), "its stage stopped at --max-transfer with %s "
			 "of its daily quota left, too little for the next file", left);
	} else if (cy->last_result == STAGE_FAILED || cy->last_result == STAGE_ERROR) {
		e.why = NOTIFY_ROTATED_FAILURES;
		snprintf(e.detail, sizeof(e.detail), "its stages failed");
	} else {
		e.why = NOTIFY_ROTATED_OTHER;
		if (cy->last_remaining >= 0)
			snprintf(e.detail, sizeof(e.detail), "its last stage ended (%s) with %s of "
				 "its daily quota left", stage_result_name(cy->last_result), left);
		else
			snprintf(e.detail, sizeof(e.detail), "its last stage ended (%s)",
				 cy->last_result >= 0 ? stage_result_name(cy->last_result)
						      : "none");
	}
	post(&e);
}

void notify_stage_started(const char *uploader, const char *account, int stage,
			  const char *strategy, int64_t max_transfer_bytes, int64_t remaining_bytes,
			  pid_t worker)
{
	if (!N.on)
		return;
	struct cycle *cy = cycle_of(uploader);
	if (!cy)
		return;
	int64_t now = ledger_now_ms();
	if (!cy->active) {
		char name[sizeof(cy->uploader)];
		memcpy(name, cy->uploader, sizeof(name));
		memset(cy, 0, sizeof(*cy));
		memcpy(cy->uploader, name, sizeof(name));
		cy->active = true;
		cy->started_ms = now;
		cy->last_result = -1;
		cy->last_remaining = -1;
	} else if (cy->account[0] && strcmp(cy->account, account) != 0) {
		post_rotated(cy, account, now);
	}
	if (strcmp(cy->account, account) != 0) {
		copy_str(cy->account, sizeof(cy->account), account);
		cy->account_files = cy->account_bytes = 0;
		char shown[sizeof(cy->accounts[0])];
		bool known = false;
		copy_str(shown, sizeof(shown), short_name(account));
		for (int i = 0; i < cy->account_count && i < NOTIFY_ACCOUNTS_MAX; i++)
			known = known || strcmp(cy->accounts[i], shown) == 0;
		if (!known) {
			if (cy->account_count < NOTIFY_ACCOUNTS_MAX)
				memcpy(cy->accounts[cy->account_count], shown, sizeof(shown));
			cy->account_count++;
		}
	}
	cy->stages++;
	if (!cy->started_sent) {
		cy->pending_pid = worker;
		cy->pending_stage = stage;
		snprintf(cy->pending_strategy, sizeof(cy->pending_strategy), "%s",
			 strategy ? strategy : "");
		cy->pending_max_transfer = max_transfer_bytes;
		cy->pending_remaining = remaining_bytes;
	}
}

void notify_stage_finished(const struct ledger *l, pid_t worker, const char *uploader,
			   const char *account, int result)
{
	if (!N.on)
		return;
	struct cycle *cy = cycle_of(uploader);
	if (!cy || !cy->active)
		return;
	(void)account;
	struct ledger_stage *st = calloc(1, sizeof(*st));
	struct ledger_usage usage;
	bool seen = st && read_stage(l, worker, st, &usage) == 0;
	if (seen && cy->pending_pid == worker)
		post_started(cy, st);
	if (cy->pending_pid == worker)
		cy->pending_pid = 0;
	cy->last_result = result;
	cy->last_remaining = -1;
	cy->banned_until_ms = 0;
	cy->ban_cause[0] = '\0';
	if (seen) {
		cy->files += st->files_done;
		cy->bytes += st->bytes_done;
		cy->account_files += st->files_done;
		cy->account_bytes += st->bytes_done;
		int64_t now = ledger_now_ms();
		cy->last_remaining = ledger_usage_remaining(
			&usage, l->hdr->daily_bytes, (enum ledger_window)l->hdr->window, now);
		cy->banned_until_ms = usage.banned_until_ms > now ? usage.banned_until_ms : 0;
		snprintf(cy->ban_cause, sizeof(cy->ban_cause), "%.*s",
			 (int)strnlen(usage.ban_cause, sizeof(usage.ban_cause)), usage.ban_cause);
	}
	free(st);
}

static void finish_cycle(struct cycle *cy, enum notify_status status, const char *detail)
{
	if (!cy->active)
		return;
	cy->active = false;
	cy->pending_pid = 0;
	if (!cy->started_sent && cy->files == 0 && status != NOTIFY_STATUS_FAILED)
		return; /* nothing listed, nothing moved: it was never announced */
	struct notify_event e;
	new_event(&e, NOTIFY_UPLOAD_FINISHED, cy->uploader);
	e.why = status;
	copy_str(e.detail, sizeof(e.detail), detail ? detail : "");
	e.files = cy->files;
	e.bytes = cy->bytes;
	e.duration_ms = e.at_ms - cy->started_ms;
	e.stages = cy->stages;
	e.account_count = cy->account_count;
	memcpy(e.accounts, cy->accounts, sizeof(e.accounts));
	post(&e);
}

void notify_upload_finished(const char *uploader, const char *why_no_account, bool failed)
{
	if (!N.on)
		return;
	struct cycle *cy = cycle_of(uploader);
	if (!cy)
		return;
	finish_cycle(cy, failed ? NOTIFY_STATUS_FAILED
				: why_no_account ? NOTIFY_STATUS_NO_ACCOUNT : NOTIFY_STATUS_DONE,
		     why_no_account);
}

void notify_suspended(const char *uploader, int64_t until_ms, const char *why)
{
	if (!N.on)
		return;
	struct notify_event e;
	new_event(&e, NOTIFY_UPLOADER_SUSPENDED, uploader);
	e.until_ms = until_ms;
	copy_str(e.detail, sizeof(e.detail), why ? why : "");
	post(&e);
}

void notify_problem(const char *fmt, ...)
{
	if (!N.on)
		return;
	struct notify_event e;
	new_event(&e, NOTIFY_LEDGER_PROBLEM, NULL);
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(e.detail, sizeof(e.detail), fmt, ap);
	va_end(ap);
	post(&e);
}

/* The flusher counts its failed and its good writes in the ledger's header: one event when
 * writing starts to fail (at most every 10 minutes while it keeps failing), one when it works
 * again. A failing flusher retries every flush interval, so a tick without a new failure after
 * a good write since the failures began means the file is written again (a good write and the
 * last failure can share a tick, and after a good write an idle flusher writes nothing). */
static void watch_flushes(const struct ledger *l, int64_t now)
{
	if (!l || !l->hdr)
		return;
	uint64_t errors = atomic_load(&l->hdr->flush_errors);
	uint64_t count = atomic_load(&l->hdr->flush_count);
	if (errors > N.flush_errors_seen) {
		uint64_t more = errors - N.flush_errors_seen;
		if (!N.flush_failing)
			N.flush_count_failing = N.flush_count_seen;
		if (!N.flush_failing || now - N.flush_problem_ms >= NOTIFY_PROBLEM_EVERY_MS) {
			notify_problem(
				"the ledger file %s cannot be written (%llu failed writes; the "
				"flusher's log says why): the shared ledger still counts every "
				"file, but a crash of the machine now would lose what the file "
				"misses",
				N.cfg ? N.cfg->quota.cache_path : "?",
				(unsigned long long)(more + N.flush_problems_unsent));
			N.flush_problem_ms = now;
			N.flush_problems_unsent = 0;
		} else {
			N.flush_problems_unsent += more;
		}
		N.flush_failing = true;
	} else if (N.flush_failing && count > N.flush_count_failing) {
		notify_problem("the ledger file %s is written again",
			       N.cfg ? N.cfg->quota.cache_path : "?");
		N.flush_failing = false;
		N.flush_problems_unsent = 0;
	}
	N.flush_errors_seen = errors;
	N.flush_count_seen = count;
}

void notify_tick(const struct ledger *l)
{
	if (!N.on)
		return;
	int64_t now = ledger_now_ms();
	if (!N.ledger && l && l->hdr) {
		N.ledger = l;
		N.flush_errors_seen = atomic_load(&l->hdr->flush_errors);
		N.flush_count_seen = atomic_load(&l->hdr->flush_count);
	}
	if (N.pid == 0 && has_targets(N.cfg) && now >= N.backoff.restart_at_ms)
		fork_notifier();
	for (int i = 0; i < NOTIFY_RETIRED_MAX; i++)
		if (N.retired[i] > 0 && now >= N.retired_kill_ms[i])
			kill(N.retired[i], SIGKILL);
	for (size_t i = 0; i < N.cycle_count; i++) {
		struct cycle *cy = &N.cycles[i];
		if (!cy->active || cy->started_sent || cy->pending_pid <= 0)
			continue;
		struct ledger_stage *st = calloc(1, sizeof(*st));
		struct ledger_usage usage;
		if (st && read_stage(l, cy->pending_pid, st, &usage) == 0)
			post_started(cy, st);
		free(st);
	}
	watch_flushes(l, now);
}

static void wait_for(pid_t pid, int64_t deadline)
{
	int st;
	while (ledger_now_ms() < deadline) {
		pid_t r = waitpid(pid, &st, WNOHANG);
		if (r == pid || (r < 0 && errno == ECHILD))
			return;
		struct timespec ts = { 0, 10 * 1000000L };
		nanosleep(&ts, NULL);
	}
	log_warn("the notifier did not stop in time; killing it");
	kill(pid, SIGKILL);
	waitpid(pid, &st, 0);
}

void notify_stop(int stop_signal)
{
	if (!N.on)
		return;
	const char *how = stop_signal == SIGINT ? "SIGINT" : "";
	if (stop_signal == SIGTERM)
		how = "SIGTERM";
	for (size_t i = 0; i < N.cycle_count; i++)
		finish_cycle(&N.cycles[i], NOTIFY_STATUS_STOPPED, how);
	procs_forget_in_children(N.write_fd);
	close(N.write_fd);
	N.write_fd = -1;
	int queued = 0;
	if (N.pid <= 0 && ioctl(N.read_fd, FIONREAD, &queued) == 0 && queued > 0 &&
	    has_targets(N.cfg))
		fork_notifier(); /* none runs (dead, or no tick yet) and events wait: send them */
	int64_t deadline = ledger_now_ms() + NOTIFY_DRAIN_MS + 1000;
	if (N.pid > 0)
		wait_for(N.pid, deadline);
	for (int i = 0; i < NOTIFY_RETIRED_MAX; i++)
		if (N.retired[i] > 0)
			wait_for(N.retired[i], deadline);
	procs_forget_in_children(N.read_fd);
	close(N.read_fd);
	free(N.cycles);
	memset(&N, 0, sizeof(N));
	N.read_fd = N.write_fd = -1;
	running_fingerprint = 0;
}
