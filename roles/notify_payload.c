/*
 * What a notification says, and in which shape each service takes it (notify.h): pure functions
 * of the event and the target, so the tests check every payload without a network.
 */
#include "notify.h"

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fmt.h"

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
		fmt_bytes(e->bytes, a, sizeof(a));
		fmt_bytes(e->planned_bytes, b, sizeof(b));
		fmt_bytes(e->remaining_bytes, c, sizeof(c));
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
		fmt_bytes(e->bytes, a, sizeof(a));
		snprintf(text, text_len,
			 "Uploader %.*s moved on from %.*s to %.*s (%s): %.*s. %.*s moved %lld "
			 "files (%s) in this upload.",
			 FIELD(e, uploader), FIELD(e, account), FIELD(e, account_to),
			 notify_rotation_name((enum notify_rotation)e->why), FIELD(e, detail),
			 FIELD(e, account), (long long)e->files, a);
		return;
	case NOTIFY_UPLOADER_SUSPENDED:
		snprintf(title, title_len, "Uploader suspended: %.*s", FIELD(e, uploader));
		fmt_utc(e->until_ms, when, sizeof(when));
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
		fmt_bytes(e->bytes, a, sizeof(a));
		fmt_duration(e->duration_ms, b, sizeof(b));
		fmt_bytes(e->duration_ms > 0 ? e->bytes * 1000 / e->duration_ms : e->bytes, c,
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
