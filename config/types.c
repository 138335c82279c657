/*
 * The values one row type cannot say: their own reading, printing and freeing (ck_custom), for
 * the rows of schema.c that name them.
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "account_names.h"
#include "internal.h"
#include "rclone_cmd.h"

#define NOTIFY_HEADERS_MAX 32
#define STAGES_MAX 16

static bool want_object(struct ctx *x, const cJSON *v, const char *path)
{
	if (!cJSON_IsObject(v))
		return ck_must(x, path, v, "an object") == 0;
	return ck_check_dups(x, v, path) == 0 && v->child;
}

/* --- rclone_extras: flag → value ------------------------------------------------------- */

/* A flag whose value config_print shows as "***". */
static bool secret_key(const char *key)
{
	static const char *const words[] = { "pass", "token", "secret", "key", "credential",
					     "auth", "webhook", NULL };
	char low[256];
	if (!key)
		return false;
	ck_normalise(low, sizeof(low), key);
	for (const char *const *w = words; *w; w++)
		if (strstr(low, *w))
			return true;
	return false;
}


static void extras_parse(struct ctx *x, struct walk *w, const struct ck_row *r, const cJSON *o,
			 const char *path)
{
	char pk[PATH_LEN], name[512], value[64];
	size_t *count = ck_count(w->base, r);
	struct stage_flag *flags = NULL;
	if (!o || !want_object(x, o, path) ||
	    !(flags = ck_calloc(x, (size_t)cJSON_GetArraySize(o), sizeof(*flags))))
		return;
	*(struct stage_flag **)ck_at(w->base, r->offset) = flags;
	for (const cJSON *i = o->child; i && !x->stop; i = i->next) {
		const char *key = i->string, *reserved;
		bool bad = false, twice = false;
		for (const char *c = key; *c; c++)
			bad = bad || *c == '=' || (unsigned char)*c <= ' ' || *c == 0x7f;
		snprintf(name, sizeof(name), "%s%s", key[0] == '-' ? "" : "--", key);
		for (size_t k = 0; k < *count; k++)
			twice = twice || strcmp(flags[k].name, name) == 0;
		config_key(pk, path, key);
		if (!*key || key[strspn(key, "-")] == '\0') {
			ck_fail(x, pk, "not a flag name");
			continue;
		}
		if (strlen(key) > 200 || bad) {
			ck_fail(x, pk, bad ? "a flag name holds no '=', spaces or control characters: "
					     "put the value on the right"
					   : "flag name longer than 200 bytes");
			continue;
		}
		if (key[0] != '-')
			ck_warn(x, pk, "no leading dashes: passed as %s", name);
		/* The value as rclone gets it; NULL for a bare flag (null) or a refused type. */
		const char *shown = cJSON_IsString(i) ? i->valuestring : cJSON_IsTrue(i) ? "true"
				  : cJSON_IsFalse(i) ? "false" : NULL;
		if (cJSON_IsNumber(i) && isfinite(i->valuedouble)) {
			ck_number(value, sizeof(value), i->valuedouble);
			shown = value;
		}
		/* Which flags cplow owns or refuses is rclone_cmd's to say; config reports it. */
		char why[300];
		if (rclone_cmd_check_extra(name, shown, why, sizeof(why)) < 0) {
			ck_fail(x, pk, "%s; remove the key", why);
			continue;
		}
		if ((reserved = rclone_cmd_reserved_flag(name))) {
			ck_warn(x, pk, "%s is set by cplow itself, ignored", reserved);
			continue;
		}
		if (twice) {
			ck_fail(x, pk, "the same flag as an earlier key (%s)", name);
			continue;
		}
		if (!shown && !cJSON_IsNull(i)) {
			ck_must(x, pk, i, "a string, a number, true, false or null");
			continue;
		}
		struct stage_flag *f = &flags[*count];
		if (!(f->name = ck_strdup(x, name)))
			return;
		(*count)++;
		if (shown)
			f->value = ck_strdup(x, shown);
	}
}

static cJSON *extras_print(const void *base, const struct ck_row *r)
{
	const struct stage_flag *f = *(struct stage_flag *const *)ck_at(base, r->offset);
	cJSON *o = cJSON_CreateObject();
	for (size_t i = 0; o && i < *ck_count(base, r); i++) {
		const char *v = f[i].value && secret_key(f[i].name) ? "***" : f[i].value;
		o = ck_add(o, f[i].name, v ? cJSON_CreateString(v) : cJSON_CreateNull());
	}
	return o;
}

static void extras_free(void *base, const struct ck_row *r)
{
	struct stage_flag *f = *(struct stage_flag **)ck_at(base, r->offset);
	for (size_t i = 0; i < *ck_count(base, r); i++) {
		free((void *)f[i].name);
		free((void *)f[i].value);
	}
	free(f);
}

const struct ck_custom ck_extras = { extras_parse, extras_print, extras_free, "{flag: value}" };

/* --- rclone_command, quota: a word, with what cloudplow made of others ------------------- */

static void command_parse(struct ctx *x, struct walk *w, const struct ck_row *r, const cJSON *v,
			  const char *path)
{
	const char *s = cJSON_IsString(v) ? v->valuestring : "";
	int *out = ck_at(w->base, r->offset);
	for (int i = 0; v && r->words[i]; i++)
		if (strcmp(s, r->words[i]) == 0) {
			*out = i;
			return;
		}
	if (v && strcasecmp(s, "sync") == 0)
		ck_fail(x, path, "must be \"move\" or \"copy\", got \"sync\" (cloudplow ran move for "
			"it)");
	else if (v)
		ck_must(x, path, v, "\"move\" or \"copy\"");
}

/* An int field holding an index into .words. */
static cJSON *word_print(const void *base, const struct ck_row *r)
{
	return cJSON_CreateString(r->words[*(const int *)ck_at(base, r->offset)]);
}

const struct ck_custom ck_command = { command_parse, word_print, NULL, "\"move\"|\"copy\"" };

static void quota_parse(struct ctx *x, struct walk *w, const struct ck_row *r, const cJSON *v,
			const char *path)
{
	enum config_quota_mode *mode = ck_at(w->base, r->offset);
	if (cJSON_IsBool(v))
		*mode = cJSON_IsTrue(v) ? CONFIG_QUOTA_ON : CONFIG_QUOTA_OFF;
	else if (v && !(cJSON_IsString(v) && strcmp(v->valuestring, "auto") == 0))
		ck_must(x, path, v, "\"auto\", true or false");
}

static cJSON *quota_print(const void *base, const struct ck_row *r)
{
	enum config_quota_mode mode = *(const enum config_quota_mode *)ck_at(base, r->offset);
	return mode == CONFIG_QUOTA_AUTO ? cJSON_CreateString("auto")
					 : cJSON_CreateBool(mode == CONFIG_QUOTA_ON);
}

const struct ck_custom ck_quota_mode = { quota_parse, quota_print, NULL, "\"auto\"|true|false" };

/* --- rotate_remotes -------------------------------------------------------------------- */

static void rotate_parse(struct ctx *x, struct walk *w, const struct ck_row *r, const cJSON *o,
			 const char *path)
{
	char pi[PATH_LEN], got[GOT_LEN], dest[PATH_MAX], rp[PATH_LEN];
	struct config_uploader *u = w->base;
	const char *remote = u->remote->upload_remote;
	size_t k = 0, *count = ck_count(w->base, r);
	if (!o)
		return;
	config_key(rp, config_key(pi, "remotes", u->remote->name), "upload_remote");
	ck_show(got, sizeof(got), remote ? remote : "", SHOW_VALUE_MAX, true);
	if (!cJSON_IsArray(o)) {
		ck_must(x, path, o, "a list of rclone remote names");
		return;
	} else if (!o->child) {
		ck_fail(x, path, "empty list: give at least one remote, or remove the key");
		return;
	} else if (u->service_account_path) {
		ck_fail(x, path, "cannot be combined with service_account_path: choose one kind of "
			"account");
		return;
	} else if (remote && account_destination(remote, "a", dest, sizeof(dest)) == -EINVAL) {
		/* account_destination() is what the planner will call: it must work for each. */
		ck_fail(x, rp, "must be an rclone remote (\"name:path\") for rotate_remotes, got %s",
			got);
		return;
	}
	char **names = ck_calloc(x, (size_t)cJSON_GetArraySize(o), sizeof(*names));
	u->rotate_remotes = names;
	for (const cJSON *i = names ? o->child : NULL; i && !x->stop; i = i->next, k++) {
		const char *name = cJSON_IsString(i) ? i->valuestring : "";
		int rc = remote ? account_destination(remote, name, dest, sizeof(dest)) : 0;
		bool twice = false;
		for (size_t j = 0; j < *count; j++)
			twice = twice || strcmp(names[j], name) == 0;
		ck_index(pi, path, k);
		ck_describe(got, sizeof(got), i);
		if (!cJSON_IsString(i))
			ck_must(x, pi, i, "an rclone remote name");
		else if (rc == -ENAMETOOLONG)
			ck_fail(x, pi, "too long for upload_remote's path: %s", got);
		else if (rc < 0 || strlen(name) > LEDGER_ACCOUNT_MAX - 1)
			ck_fail(x, pi, "not an rclone remote name (letters, digits, '_', '-', '.' and "
				"spaces, without a ':'): %s", got);
		else if (twice)
			ck_fail(x, pi, "%s appears twice", got);
		else if ((names[*count] = ck_strdup(x, name)))
			(*count)++;
	}
}

static cJSON *rotate_print(const void *base, const struct ck_row *r)
{
	size_t n = *ck_count(base, r);
	return n ? ck_strings(*(char **const *)ck_at(base, r->offset), n) : cJSON_CreateNull();
}

static void rotate_free(void *base, const struct ck_row *r)
{
	ck_free_list(*(char ***)ck_at(base, r->offset), *ck_count(base, r));
}

const struct ck_custom ck_rotate = { rotate_parse, rotate_print, rotate_free, "[remote name]" };

/* --- stages ---------------------------------------------------------------------------- */

/* REFERENCE.md §2, the quota fork's table. */
static const struct config_stage default_stages[] = {
	{ "aggressive_fresh_sa", 0.80, 0.5, 0.8, 8, "size,desc", 2000 },
	{ "moderate_mid_sa", 0.50, 0.6, 0.5, 4, "size,desc", 1000 },
	{ "cautious_low_quota", 0.25, 0.7, 0.3, 6, NULL, 0 },
	{ "conservative_cleanup", 0.0, 0.8, 0.2, 8, NULL, 0 },
};

static void stages_parse(struct ctx *x, struct walk *w, const struct ck_row *r, const cJSON *o,
			 const char *path)
{
	char p[PATH_LEN], pk[PATH_LEN], got[GOT_LEN], now[64], before[64];
	struct config *c = w->base;
	size_t n = o ? (size_t)cJSON_GetArraySize(o) : sizeof(default_stages) / sizeof(*c->stages);
	size_t start = ck_errors(x);
	(void)r;
	if (o && !cJSON_IsArray(o)) {
		ck_must(x, path, o, "a list of rows, highest min_share first");
		return;
	}
	if (n == 0 || n > STAGES_MAX) {
		ck_fail(x, path, n ? "more than %d rows" : "empty list: give at least one row, or "
			"remove the key", STAGES_MAX);
		return;
	}
	if (!(c->stages = ck_calloc(x, n, sizeof(*c->stages))))
		return;
	if (!o) {
		for (size_t i = 0; i < n; i++) {
			c->stages[i] = default_stages[i];
			c->stages[i].name = ck_strdup(x, default_stages[i].name);
			c->stages[i].order_by = default_stages[i].order_by
							? ck_strdup(x, default_stages[i].order_by)
							: NULL;
			c->stage_count = i + 1;
		}
		return;
	}
	size_t k = 0;
	for (const cJSON *i = o->child; i && !x->stop; i = i->next, k++) {
		struct config_stage *s = &c->stages[k];
		struct walk row;
		size_t errors = ck_errors(x);
		c->stage_count = k + 1;
		ck_child(&row, w, &ck_stage_section, i, s, ck_index(p, path, k));
		ck_walk(x, &row);
		if (ck_errors(x) > errors || (k > 0 && !c->stages[k - 1].name))
			continue;
		for (size_t j = 0; j < k; j++)
			if (c->stages[j].name && strcmp(c->stages[j].name, s->name) == 0) {
				ck_show(got, sizeof(got), s->name, SHOW_VALUE_MAX, true);
				ck_fail(x, config_key(pk, p, "name"), "%s appears twice", got);
			}
		if (k > 0 && s->min_share >= c->stages[k - 1].min_share) {
			ck_number(now, sizeof(now), s->min_share);
			ck_number(before, sizeof(before), c->stages[k - 1].min_share);
			ck_fail(x, config_key(pk, p, "min_share"), "rows must go from the highest "
				"min_share to the lowest: %s follows %s", now, before);
		}
	}
	struct config_stage *last = &c->stages[c->stage_count - 1];
	if (ck_errors(x) == start && last->min_share != 0) {
		ck_number(now, sizeof(now), last->min_share);
		ck_fail(x, config_key(pk, ck_index(p, path, c->stage_count - 1), "min_share"),
			"the last row's must be 0, so that every remaining quota has a strategy, "
			"got %s", now);
	}
}

static cJSON *stages_print(const void *base, const struct ck_row *r)
{
	const struct config *c = base;
	cJSON *a = cJSON_CreateArray();
	(void)r;
	for (size_t i = 0; a && i < c->stage_count; i++)
		a = ck_add(a, NULL, ck_print(&ck_stage_section, &c->stages[i], 0));
	return a;
}

static void stages_free(void *base, const struct ck_row *r)
{
	struct config *c = base;
	(void)r;
	for (size_t i = 0; i < c->stage_count; i++)
		ck_free(&ck_stage_section, &c->stages[i]);
	free(c->stages);
}

const struct ck_custom ck_stages = { stages_parse, stages_print, stages_free, "[row]" };

/* --- plex.rclone.throttle_speeds ------------------------------------------------------- */

/* One side of an rclone --bwlimit value, as rclone 1.60's SizeSuffix reads it: "off", or a
 * number of KiB without a suffix, else with b/B (bytes), k, M, G, T, P or E, which may be
 * followed by "i" or "iB". */
static bool bwlimit_side(const char *s, size_t n)
{
	size_t digits = 0, dots = 0, i = 0;
	if (n == 3 && strncasecmp(s, "off", 3) == 0)
		return true;
	for (; i < n && ((s[i] >= '0' && s[i] <= '9') || s[i] == '.'); i++) {
		digits += s[i] != '.';
		dots += s[i] == '.';
	}
	const char *suf = s + i;
	size_t sl = n - i;
	if (digits == 0 || dots > 1)
		return false;
	if (sl == 0 || (sl == 1 && (*suf == 'b' || *suf == 'B')))
		return true;
	return strchr("kKmMgGtTpPeE", *suf) &&
	       (sl == 1 || (sl == 2 && (suf[1] == 'i' || suf[1] == 'I')) ||
		(sl == 3 && suf[1] == 'i' && (suf[2] == 'b' || suf[2] == 'B')));
}

/* "10M", "512k", "off" or "UP:DOWN"; rclone's core/bwlimit takes no timetable. */
static bool bwlimit_rate(const char *s)
{
	const char *colon = strchr(s, ':');
	if (strlen(s) >= LEDGER_BWLIMIT_MAX)
		return false;
	if (!colon)
		return bwlimit_side(s, strlen(s));
	return bwlimit_side(s, (size_t)(colon - s)) && bwlimit_side(colon + 1, strlen(colon + 1));
}

static int speed_cmp(const void *a, const void *b)
{
	const struct config_throttle_speed *sa = a, *sb = b;
	return (sa->streams > sb->streams) - (sa->streams < sb->streams);
}

static void speeds_parse(struct ctx *x, struct walk *w, const struct ck_row *r, const cJSON *o,
			 const char *path)
{
	char pk[PATH_LEN];
	struct config_plex *pl = w->base;
	(void)r;
	if (!o || !want_object(x, o, path) ||
	    !(pl->throttle_speeds = ck_calloc(x, (size_t)cJSON_GetArraySize(o),
					      sizeof(*pl->throttle_speeds))))
		return;
	for (const cJSON *i = o->child; i && !x->stop; i = i->next) {
		const char *key = i->string;
		size_t len = strlen(key);
		struct config_throttle_speed *sp = &pl->throttle_speeds[pl->throttle_speed_count];
		config_key(pk, path, key);
		if (!(len > 0 && len <= 6 && strspn(key, "0123456789") == len &&
		      (key[0] != '0' || len == 1)))
			ck_fail(x, pk, "the key must be a number of streams from 0 to 999999, like "
				"\"2\"");
		else if (!cJSON_IsString(i) || !bwlimit_rate(i->valuestring))
			ck_must(x, pk, i, "an rclone bandwidth like \"10M\", \"512k\", \"1M:2M\" or "
				"\"off\" (no timetable)");
		else if ((sp->rate = ck_strdup(x, i->valuestring)))
			sp->streams = atoi(key);
		pl->throttle_speed_count += sp->rate != NULL;
	}
	qsort(pl->throttle_speeds, pl->throttle_speed_count, sizeof(*pl->throttle_speeds),
	      speed_cmp);
}

static cJSON *speeds_print(const void *base, const struct ck_row *r)
{
	const struct config_plex *pl = base;
	cJSON *o = cJSON_CreateObject();
	char key[16];
	(void)r;
	for (size_t i = 0; o && i < pl->throttle_speed_count; i++) {
		snprintf(key, sizeof(key), "%d", pl->throttle_speeds[i].streams);
		o = ck_add(o, key, cJSON_CreateString(pl->throttle_speeds[i].rate));
	}
	return o;
}

static void speeds_free(void *base, const struct ck_row *r)
{
	struct config_plex *pl = base;
	(void)r;
	for (size_t i = 0; i < pl->throttle_speed_count; i++)
		free(pl->throttle_speeds[i].rate);
	free(pl->throttle_speeds);
}

const struct ck_custom ck_speeds = { speeds_parse, speeds_print, speeds_free,
				     "{\"<streams>\": \"<rate>\"}" };

/* --- notifications --------------------------------------------------------------------- */

/* By enum config_notify_service; the section's begin hook reads the service. */
const char *const ck_service_words[] = { "slack", "discord", "google_chat", "pushover",
					 "apprise", "webhook", NULL };

/* read by the notification section's begin hook, which needs it before the other keys */
const struct ck_custom ck_service = { NULL, word_print, NULL, "word" };

/*
 * A notification's URL. Never shown in a message: a webhook URL is its own password. An
 * apprise target with another scheme is an apprise library URL, which only Python's apprise
 * can send to: a warning, and the target is skipped (its URL kept, for check-config's "***").
 */
static void notify_url_parse(struct ctx *x, struct walk *w, const struct ck_row *r,
			     const cJSON *v, const char *path)
{
	struct config_notification *n = w->base;
	const char *s = cJSON_IsString(v) ? v->valuestring : "";
	size_t scheme = strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+.-");
	/* "discord://", to say what kind of URL it got without showing the token */
	if (scheme == 0 || scheme > 20 || strncmp(s + scheme, "://", 3) != 0)
		scheme = 0;
	if (!v || (!*s && !w->active))
		return;
	if (!cJSON_IsString(v)) {
		ck_must(x, path, v, "an http:// or https:// URL");
	} else if (!*s) {
		if (r->flags & CK_NEEDED)
			ck_fail(x, path, "empty: %s", w->needs);
	} else if (ck_http_url(s) || (n->service == CONFIG_NOTIFY_APPRISE && scheme &&
				      strncasecmp(s, "http", 4) != 0)) {
		if (!ck_http_url(s)) {
			n->enabled = false;
			ck_warn(x, path, "an apprise library URL (%.*s://...), which needs Python's "
				"apprise; cplow posts to an Apprise API server's http(s) URL: this "
				"notification is skipped", (int)scheme, s);
		}
		char *url = ck_strdup(x, s);
		if (url) {
			free(n->url);
			n->url = url;
			n->url_set = true;
		}
	} else if (scheme) {
		ck_fail(x, path, "must be an http:// or https:// URL with a host, got one starting "
			"with %.*s:// (the rest is not shown: webhook URLs hold tokens)", (int)scheme,
			s);
	} else {
		ck_fail(x, path, "must be an http:// or https:// URL with a host (the value is not "
			"shown: webhook URLs hold tokens)");
	}
}

/* Every URL masked (a webhook URL is its own password) but Pushover's default API. */
static cJSON *notify_url_print(const void *base, const struct ck_row *r)
{
	const struct config_notification *n = base;
	(void)r;
	if (n->service == CONFIG_NOTIFY_PUSHOVER && !n->url_set)
		return cJSON_CreateString(n->url);
	return n->url ? cJSON_CreateString("***") : cJSON_CreateNull();
}

static void notify_url_free(void *base, const struct ck_row *r)
{
	free(*(char **)ck_at(base, r->offset));
}

const struct ck_custom ck_notify_url = { notify_url_parse, notify_url_print, notify_url_free,
					 "url" };

static void headers_parse(struct ctx *x, struct walk *w, const struct ck_row *r, const cJSON *o,
			  const char *path)
{
	static const char token[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
				    "!#$%&'*+-.^_`|~";
	static const char *const reserved[] = { "content-length", "transfer-encoding", "host",
						"content-type", "idempotency-key", "expect",
						NULL };
	char pk[PATH_LEN], low[128];
	struct config_notification *n = w->base;
	size_t count = (size_t)cJSON_GetArraySize(o);
	(void)r;
	if (!o || !want_object(x, o, path))
		return;
	if (count > NOTIFY_HEADERS_MAX) {
		ck_fail(x, path, "more than %d headers", NOTIFY_HEADERS_MAX);
		return;
	}
	if (!(n->headers = ck_calloc(x, count, sizeof(*n->headers))))
		return;
	for (const cJSON *i = o->child; i && !x->stop; i = i->next) {
		size_t len = strlen(i->string);
		bool set_by_cplow = false, control = false;
		ck_normalise(low, sizeof(low), i->string);
		for (char *c = low; *c; c++)
			*c = *c == '_' ? '-' : *c;
		for (size_t k = 0; reserved[k]; k++)
			set_by_cplow = set_by_cplow || strcmp(low, reserved[k]) == 0;
		for (const char *c = cJSON_IsString(i) ? i->valuestring : ""; *c; c++)
			control = control || (unsigned char)*c < 0x20 || *c == 0x7f;
		config_key(pk, path, i->string);
		if (!len || len > 100 || strspn(i->string, token) != len) {
			ck_fail(x, pk, "not an HTTP header name (letters, digits and "
				"!#$%%&'*+-.^_`|~)");
		} else if (set_by_cplow) {
			ck_fail(x, pk, "set by cplow itself");
		} else if (!cJSON_IsString(i)) {
			ck_must(x, pk, i, "a string");
		} else if (control) {
			ck_fail(x, pk, "a header value holds no control characters (the value is not "
				"shown: it may be a secret)");
		} else {
			struct config_notify_header *h = &n->headers[n->header_count];
			if (!(h->name = ck_strdup(x, i->string)))
				return;
			n->header_count++;
			h->value = ck_strdup(x, i->valuestring);
		}
	}
}

static cJSON *headers_print(const void *base, const struct ck_row *r)
{
	const struct config_notification *n = base;
	cJSON *o = cJSON_CreateObject();
	(void)r;
	for (size_t k = 0; o && k < n->header_count; k++)
		o = ck_add(o, n->headers[k].name, cJSON_CreateString("***"));
	return o;
}

static void headers_free(void *base, const struct ck_row *r)
{
	struct config_notification *n = base;
	(void)r;
	for (size_t k = 0; k < n->header_count; k++) {
		free(n->headers[k].name);
		free(n->headers[k].value);
	}
	free(n->headers);
}

const struct ck_custom ck_headers = { headers_parse, headers_print, headers_free,
				      "{name: string}" };
