/*
 * The config's keys: one row each (internal.h says what a row holds), and each section's hooks:
 * what one row cannot check alone. A bound, a default and a unit are written here once; walk.c
 * makes the messages, the printed config, the key list and the freeing from them. Rows are read
 * in order: a row whose check looks at another key comes after it (rotate_remotes after
 * service_account_path, uploader after remotes).
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "account_names.h"
#include "internal.h"
#include "ledger_file.h"
#include "triggers.h"

/* --- remotes --------------------------------------------------------------------------- */

/* A remote no uploader uses (cloudplow's syncer and hidden cleaner have them) is read for
 * types only. */
static bool remote_begin(struct ctx *x, struct walk *w)
{
	const struct config_remote *r = w->base;
	char uploader[PATH_LEN];
	w->active = cJSON_GetObjectItemCaseSensitive(ck_get(x->root, "uploader"), r->name) != NULL;
	snprintf(w->needs, sizeof(w->needs), "%.380s needs it",
		 config_key(uploader, "uploader", r->name));
	return true;
}

static void remote_rule(struct ctx *x, struct walk *w)
{
	const struct config_remote *r = w->base;
	char p[PATH_LEN];
	if (w->active && r->upload_folder)
		ck_check_directory(x, config_key(p, w->path, "upload_folder"), r->upload_folder);
}

static bool sleep_begin(struct ctx *x, struct walk *w)
{
	if (*((const struct stage_trigger *)w->base)->pattern)
		return true;
	ck_fail(x, w->path, "empty pattern: it would match every line");
	return false;
}

/* triggers_init()'s message without its own `rclone_sleeps "<pattern>": `, which the key path
 * already says; the whole message when it does not start that way. */
static const char *trigger_reason(const char *msg)
{
	static const char head[] = "rclone_sleeps \"";
	if (strncmp(msg, head, sizeof(head) - 1) != 0)
		return msg;
	for (const char *p = msg + sizeof(head) - 1; *p; p++) {
		if (*p == '\\' && p[1])
			p++;
		else if (*p == '"')
			return strncmp(p, "\": ", 3) == 0 ? p + 3 : msg;
	}
	return msg;
}

/* The worker compiles them again; doing it here puts a bad regex in check-config's output
 * instead of in the middle of an upload. */
static void sleep_rule(struct ctx *x, struct walk *w)
{
	const struct stage_trigger *t = w->base;
	char p[PATH_LEN], terr[TRIGGERS_ERR_MAX];
	struct triggers compiled;
	if (w->row_errors)
		return;
	if (t->timeout_s == 0 && t->count > 1)
		ck_fail(x, config_key(p, w->path, "timeout"), "must be above 0 when count is above 1: "
			"no window of 0 seconds holds two hits");
	else if (triggers_init(&compiled, t, 1, terr, sizeof(terr)) < 0)
		ck_fail(x, w->path, "%s", trigger_reason(terr));
	else
		triggers_free(&compiled);
}

/* --- uploaders ------------------------------------------------------------------------- */

/* uploader.<n>.quota as far as it is known without rclone (config.h); "auto" for a named
 * remote is the supervisor's to settle (probe.c). */
static void decide(struct ctx *x, struct config_uploader *u, bool on, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void decide(struct ctx *x, struct config_uploader *u, bool on, const char *fmt, ...)
{
	char why[CONFIG_ERR_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	free(u->quota_reason);
	u->quota_reason = ck_strdup(x, why);
	u->quota_enabled = on;
}

static void quota_local(struct ctx *x, struct config_uploader *u)
{
	const char *dest = u->remote->upload_remote;
	char name[256];
	if (u->quota != CONFIG_QUOTA_AUTO) {
		decide(x, u, u->quota == CONFIG_QUOTA_ON, "%s in the config",
		       u->quota == CONFIG_QUOTA_ON ? "true" : "false");
	} else if (u->rotate_remote_count) {
		decide(x, u, true, "auto: it rotates accounts (rotate_remotes)");
	} else if (u->service_account_path) {
		decide(x, u, true, "auto: it rotates service accounts (service_account_path)");
	} else if (dest && dest[0] == ':') {
		size_t n = strcspn(dest + 1, ":,");
		bool drive = n == 5 && strncmp(dest + 1, "drive", 5) == 0;
		decide(x, u, drive, "auto: upload_remote is an on-the-fly %.*s remote%s", (int)n,
		       dest + 1, drive ? "" : ", not drive");
	} else if (dest && !config_remote_name(dest, name, sizeof(name))) {
		decide(x, u, false, "auto: upload_remote is a local path");
	} else {
		/* The safe side until rclone has said what is behind the remote. */
		decide(x, u, true, "auto: on until rclone tells what is behind upload_remote "
		       "(cplow check-config asks it)");
		u->quota_pending = true;
	}
}

static bool uploader_begin(struct ctx *x, struct walk *w)
{
	struct config_uploader *u = w->base;
	const char *name = u->name;
	char rp[PATH_LEN];
	bool bad_char = false;
	for (const char *c = name; *c; c++)
		bad_char = bad_char || (unsigned char)*c < 0x20 || *c == 0x7f || *c == '/';
	if (!*name)
		ck_fail(x, w->path, "empty uploader name");
	else if (strcmp(name, LEDGER_FILE_META_KEY) == 0)
		ck_fail(x, w->path, "reserved name: the ledger file keeps cplow's own data under "
			"\"_cplow\"");
	else if (strlen(name) > LEDGER_UPLOADER_MAX - 1)
		ck_fail(x, w->path, "name longer than %d bytes", LEDGER_UPLOADER_MAX - 1);
	else if (bad_char)
		ck_fail(x, w->path, "a name holds no '/' and no control characters");
	else if (!(u->remote = config_find_remote(x->c, name)))
		ck_fail(x, w->path, "no %s section for this uploader",
			config_key(rp, "remotes", name));
	return u->remote != NULL;
}

static void uploader_rule(struct ctx *x, struct walk *w)
{
	struct config_uploader *u = w->base;
	char p[PATH_LEN], err[PATH_MAX + 128], shown[PATH_MAX * 2];
	u->max_size_bytes = (int64_t)llround(u->max_size_gb * 1073741824.0);
	config_key(p, w->path, "service_account_path");
	if (u->service_account_path && ck_check_directory(x, p, u->service_account_path) == 0) {
		struct account_keys keys = { 0 };
		ck_show(shown, sizeof(shown), u->service_account_path, PATH_MAX, false);
		if (account_list_keys(u->service_account_path, &keys, err, sizeof(err)) < 0)
			ck_fail(x, p, "%s", err);
		else if (keys.count == 0)
			ck_fail(x, p, "no key files (*.json) in %s", shown);
		account_keys_free(&keys);
	}
	quota_local(x, u);
}

static bool schedule_begin(struct ctx *x, struct walk *w)
{
	(void)x;
	snprintf(w->needs, sizeof(w->needs), "an enabled schedule needs it");
	return true;
}

static void schedule_rule(struct ctx *x, struct walk *w)
{
	const struct config_schedule *s = w->base;
	char p[PATH_LEN];
	if (w->active && !w->row_errors && s->allowed_from_min >= 0 &&
	    s->allowed_from_min == s->allowed_until_min)
		ck_fail(x, config_key(p, w->path, "allowed_until"),
			"equals allowed_from: the window would be empty, or the whole day; to upload "
			"at any time, set enabled to false");
}

/* `check` is read into the uploader itself. */
static void check_rule(struct ctx *x, struct walk *w)
{
	const struct config_uploader *u = w->base;
	char p[PATH_LEN];
	if (!w->obj || w->row_errors)
		return;
	config_key(p, w->path, "limit_minutes");
	if (u->check_type == CONFIG_CHECK_AGE && u->check_limit_minutes == 0)
		ck_fail(x, p, "missing: an age check needs it");
	else if (u->check_type == CONFIG_CHECK_SIZE && u->check_limit_minutes > 0)
		ck_fail(x, p, "only used with \"type\": \"age\" (a size check uses max_size_gb)");
}

/* --- quota, dashboard, plex ------------------------------------------------------------ */

static void quota_rule(struct ctx *x, struct walk *w)
{
	struct config_quota *q = w->base;
	char p[PATH_LEN];
	bool daily_set = ck_get(w->obj, "daily_bytes") != NULL;
	bool min_set = ck_get(w->obj, "min_free_bytes") != NULL;
	bool cont_set = ck_get(w->obj, "continue_min_bytes") != NULL;
	long long daily = q->daily_bytes;
	if (w->row_errors)
		return;
	if (min_set && q->min_free_bytes >= daily)
		ck_fail(x, config_key(p, w->path, "min_free_bytes"),
			"must be less than quota.daily_bytes (%lld), got %lld", daily,
			(long long)q->min_free_bytes);
	if (cont_set && q->continue_min_bytes >= daily)
		ck_fail(x, config_key(p, w->path, "continue_min_bytes"),
			"must be less than quota.daily_bytes (%lld), got %lld", daily,
			(long long)q->continue_min_bytes);
	/* The defaults are shares of the default quota (see config.h). */
	if (!min_set && daily_set)
		q->min_free_bytes = daily / 750;
	if (!cont_set && daily_set)
		q->continue_min_bytes = daily / 75;
}

static bool loopback_host(const char *h)
{
	return strncmp(h, "127.", 4) == 0 || strcmp(h, "::1") == 0 || strcmp(h, "[::1]") == 0 ||
	       strcmp(h, "localhost") == 0;
}

/* The fork's sample serves its dashboard to the network without a password. cplow keeps it
 * off rather than refusing the whole config, and says which line to add. */
static void dashboard_rule(struct ctx *x, struct walk *w)
{
	struct config_dashboard *d = w->base;
	char p[PATH_LEN], host[GOT_LEN];
	if (!d->enabled || d->token || d->allow_unauthenticated || loopback_host(d->host))
		return;
	ck_show(host, sizeof(host), d->host, SHOW_VALUE_MAX, true);
	ck_warn(x, config_key(p, w->path, "token"), "missing while dashboard.host is %s, not a "
		"loopback address: the dashboard stays off (uploads run); add \"token\": \"<a long "
		"random secret>\" to dashboard, or \"allow_unauthenticated\": true on a trusted "
		"network", host);
	d->enabled = false;
	if (x->c->warning_count && !x->stop)
		d->off_reason = ck_strdup(x, x->c->warnings[x->c->warning_count - 1]);
}

static void plex_rule(struct ctx *x, struct walk *w)
{
	const cJSON *speeds = ck_get(ck_get(w->obj, "rclone"), "throttle_speeds");
	if (w->active && (!speeds || (cJSON_IsObject(speeds) && !speeds->child)))
		ck_fail(x, "plex.rclone.throttle_speeds",
			"missing: plex.enabled needs at least one \"<streams>\": \"<rate>\"");
}

/* --- notifications --------------------------------------------------------------------- */

#define NOTIFY_NAME_MAX 63

static unsigned notify_variant(const void *base)
{
	return 1u << ((const struct config_notification *)base)->service;
}

/* The service first, since it decides which keys the target has; then whether the target is
 * a placeholder: every value it needs empty (the fork's sample has "app_token": ""). */
static bool notify_begin(struct ctx *x, struct walk *w)
{
	struct config_notification *n = w->base;
	char p[PATH_LEN], words[128], empty[128] = "";
	bool control = false, filled = false;
	for (const char *c = n->name; *c; c++)
		control = control || (unsigned char)*c < 0x20 || *c == 0x7f;
	if (!*n->name || strlen(n->name) > NOTIFY_NAME_MAX || control) {
		if (!*n->name)
			ck_fail(x, w->path, "empty notification name");
		else if (control)
			ck_fail(x, w->path, "a name holds no control characters");
		else
			ck_fail(x, w->path, "name longer than %d bytes", NOTIFY_NAME_MAX);
		return false;
	}
	const cJSON *service = ck_get(w->obj, "service");
	const char *s = cJSON_IsString(service) ? service->valuestring : "";
	int k = 0;
	while (ck_service_words[k] && strcmp(s, ck_service_words[k]) != 0)
		k++;
	if (strcmp(s, "googlechat") == 0) /* the fork's spelling */
		k = CONFIG_NOTIFY_GOOGLE_CHAT;
	ck_words(words, sizeof(words), ck_service_words);
	config_key(p, w->path, "service");
	if (!service || !ck_service_words[k]) {
		if (service)
			ck_must(x, p, service, words);
		else
			ck_fail(x, p, "missing: %s", words);
		return false;
	}
	n->service = (enum config_notify_service)k;
	n->enabled = true;
	w->variant = notify_variant(n);
	snprintf(w->needs, sizeof(w->needs), "a %s notification needs it", ck_service_words[k]);
	for (const struct ck_row *r = w->sec->rows; r->name; r++) {
		const cJSON *v = ck_get(w->obj, r->name);
		if (!(r->flags & CK_NEEDED) || !(r->only & w->variant) || !v)
			continue;
		if (!cJSON_IsString(v) || *v->valuestring)
			filled = true;
		else
			snprintf(empty + strlen(empty), sizeof(empty) - strlen(empty), "%s%s",
				 *empty ? " and " : "", r->name);
	}
	if (!filled && *empty) {
		w->active = n->enabled = false;
		ck_warn(x, w->path, "%s empty: this notification is not sent until it is filled in",
			empty);
	}
	return true;
}

/* The fork's Google Chat thread_key, added to the URL as the fork adds it. */
static void notify_rule(struct ctx *x, struct walk *w)
{
	struct config_notification *n = w->base;
	char *url = NULL;
	if (n->service != CONFIG_NOTIFY_GOOGLE_CHAT || !n->thread_key || !n->url)
		return;
	size_t len = strlen(n->url), o = 0;
	if (!(url = malloc(len + 12 + 3 * strlen(n->thread_key) + 1))) {
		ck_fail(x, x->file, "out of memory");
		x->stop = true;
		return;
	}
	o = (size_t)sprintf(url, "%s%sthreadKey=", n->url, strchr(n->url, '?') ? "&" : "?");
	for (const unsigned char *c = (const unsigned char *)n->thread_key; *c; c++)
		o += (size_t)sprintf(url + o, strchr("-_.~", *c) || (*c >= '0' && *c <= '9') ||
							  ((*c | 0x20) >= 'a' && (*c | 0x20) <= 'z')
						      ? "%c"
						      : "%%%02X",
				     *c);
	free(n->url);
	n->url = url;
}

/* --- hidden, syncer -------------------------------------------------------------------- */

static bool hidden_begin(struct ctx *x, struct walk *w)
{
	struct config_hidden *h = w->base;
	if (!*h->folder) {
		ck_fail(x, w->path, "empty folder: give the UnionFS folder that holds the *_HIDDEN~ "
			"markers");
		return false;
	}
	char *folder = ck_resolve(x, h->folder);
	free(h->folder);
	h->folder = folder;
	return folder != NULL;
}

static void hidden_rule(struct ctx *x, struct walk *w)
{
	const struct config_hidden *h = w->base;
	char p[PATH_LEN], rp[PATH_LEN];
	for (size_t i = 0; i < h->remote_count; i++) {
		const struct config_remote *r = config_find_remote(x->c, h->remotes[i]);
		ck_index(p, config_key(rp, w->path, "hidden_remotes"), i);
		if (!r)
			ck_fail(x, p, "no %s section", config_key(rp, "remotes", h->remotes[i]));
		else if (!r->hidden_remote)
			ck_fail(x, p, "%s has no hidden_remote: the cleaner would not know where to "
				"delete", config_key(rp, "remotes", h->remotes[i]));
	}
	/* The cleaner (supervisor/hidden.h) runs before uploads and as `cplow clean`; a folder
	 * that is not there holds no markers, and check-config says which is which. */
}

static void syncer_rule(struct ctx *x, struct walk *w)
{
	ck_warn(x, w->path, "cplow runs no syncer (cloudplow's drove Scaleway's old command-line "
		"tool, which is gone): nothing is synced");
}

/* --- across sections ------------------------------------------------------------------- */

/* The ledger counts quota per (uploader, account) and names a key-file account by its path:
 * two uploaders on one account each spend its whole daily quota. The same spelling is legal
 * (Google may count differently for shared drives) and worth a line: their stages on it take
 * turns (supervisor.c, account_busy), which the line says too. The same folder under another
 * spelling (a symbolic link, "..") would be two accounts to cplow: an error. */
/* Whether two key folders hold the same keys: 0 no; 1 under one spelling (account_list_keys
 * drops trailing slashes: "sa/" and "sa" give the same ledger keys); 2 under two. */
static int same_key_folder(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	char *ra = realpath(a, NULL), *rb = realpath(b, NULL);
	bool same = ra && rb && strcmp(ra, rb) == 0;
	free(ra);
	free(rb);
	while (la > 1 && a[la - 1] == '/')
		la--;
	while (lb > 1 && b[lb - 1] == '/')
		lb--;
	return !same ? 0 : la == lb && memcmp(a, b, la) == 0 ? 1 : 2;
}

static void shared_accounts(struct ctx *x)
{
	const struct config *c = x->c;
	char pu[PATH_LEN], pe[PATH_LEN], p[PATH_LEN], pl[PATH_LEN], pi[PATH_LEN], real[PATH_MAX];
	char shown[GOT_LEN];
	for (size_t i = 0; i < c->uploader_count; i++) {
		const struct config_uploader *u = &c->uploaders[i];
		config_key(p, config_key(pu, "uploader", u->name), "service_account_path");
		config_key(pl, pu, "rotate_remotes");
		for (size_t j = 0; j < i; j++) {
			const struct config_uploader *e = &c->uploaders[j];
			int same = u->service_account_path && e->service_account_path
					   ? same_key_folder(u->service_account_path,
							     e->service_account_path)
					   : 0;
			config_key(pe, "uploader", e->name);
			if (same == 2 && realpath(u->service_account_path, real))
				ck_show(shown, sizeof(shown), real, SHOW_VALUE_MAX, true);
			if (same == 1)
				ck_warn(x, p, "the same directory as %s's: stages on one account take "
					"turns, and each uploader counts the accounts' daily quota on "
					"its own",
					pe);
			else if (same == 2)
				ck_fail(x, p, "the same key files as %s's (%s) under another path: "
					"cplow would count each account twice; write both paths the "
					"same way",
					pe, shown);
			for (size_t k = 0; k < u->rotate_remote_count; k++)
				for (size_t l = 0; l < e->rotate_remote_count; l++)
					if (strcmp(u->rotate_remotes[k], e->rotate_remotes[l]) == 0)
						ck_warn(x, ck_index(pi, pl, k),
							"also in %s's rotate_remotes: stages on it "
							"take turns, and each uploader counts the "
							"account's daily quota on its own",
							pe);
		}
	}
}

static void top_rule(struct ctx *x, struct walk *w)
{
	(void)w;
	shared_accounts(x);
}

/* --- the table -------------------------------------------------------------------------- */

/* a row's key and type; the offset and size of its field */
#define K(key, kind) .name = key, .type = kind
#define F(type, field) \
	.offset = offsetof(struct type, field), .size = sizeof(((struct type *)0)->field)
#define END { .name = NULL }
/* a map's elements: their size, and where their key goes */
#define ELEMS(type, key_field) \
	.elem_size = sizeof(struct type), .name_offset = offsetof(struct type, key_field)

#define NOTIFY(s) (1u << CONFIG_NOTIFY_##s)
#define WEBHOOKS (NOTIFY(SLACK) | NOTIFY(DISCORD) | NOTIFY(GOOGLE_CHAT))

#define MINUTES_MAX 525600              /* a year */
#define SECONDS_MAX 31536000            /* a year */

static const char *const command_words[] = { "move", "copy", NULL };
static const char *const check_words[] = { "size", "age", NULL };
static const char *const window_words[] = { "fixed", "rolling", NULL };
static const char *const syncer_words[] = { "local", "scaleway", NULL };

static const struct ck_row core_rows[] = {
	{ K("dry_run", CK_BOOL), F(config_core, dry_run) },
	{ K("rclone_binary_path", CK_STRING), F(config_core, rclone_binary_path),
	  .def_str = "/usr/bin/rclone" },
	{ K("rclone_config_path", CK_PATH), F(config_core, rclone_config_path) },
	{ K("rclone_nice", CK_INT), F(config_core, rclone_nice), .lo = 0, .hi = 19, .def = 5 },
	END,
};

static const struct ck_section core_section = { .name = "core", .rows = core_rows };

static const struct ck_row sleep_rows[] = {
	{ K("count", CK_INT), F(stage_trigger, count), .flags = CK_REQUIRED, .lo = 1,
	  .hi = 1000000 },
	{ K("sleep", CK_NUMBER), F(stage_trigger, sleep_hours), .flags = CK_REQUIRED | CK_LO_OPEN,
	  .lo = 0, .hi = TRIGGERS_SLEEP_HOURS_MAX, .unit = "hours" },
	{ K("timeout", CK_INT), F(stage_trigger, timeout_s), .flags = CK_REQUIRED, .lo = 0,
	  .hi = SECONDS_MAX, .unit = "seconds" },
	END,
};

static const struct ck_section sleep_section = {
	.name = "remotes.<name>.rclone_sleeps.<pattern>", .rows = sleep_rows,
	ELEMS(stage_trigger, pattern), .begin = sleep_begin, .rule = sleep_rule,
};

static const struct ck_row remote_rows[] = {
	{ K("upload_folder", CK_PATH), F(config_remote, upload_folder), .flags = CK_NEEDED },
	{ K("upload_remote", CK_STRING), F(config_remote, upload_remote), .flags = CK_NEEDED },
	{ K("rclone_command", CK_CUSTOM), F(config_remote, rclone_command), .words = command_words,
	  .custom = &ck_command },
	{ K("rclone_excludes", CK_LIST), F(config_remote, rclone_excludes) },
	{ K("rclone_extras", CK_CUSTOM), F(config_remote, rclone_extras), .custom = &ck_extras },
	{ K("rclone_sleeps", CK_MAP), F(config_remote, rclone_sleeps), .sub = &sleep_section },
	{ K("remove_empty_dir_depth", CK_INT), F(config_remote, remove_empty_dir_depth), .lo = 0,
	  .hi = 1000, .def = -1 },
	{ K("hidden_remote", CK_STRING), F(config_remote, hidden_remote), .flags = CK_EMPTY_UNSET },
	/* cloudplow's syncer reads it, and only when a syncer names this remote */
	{ K("sync_remote", CK_IGNORED) },
	END,
};

static const struct ck_section remote_section = {
	.name = "remotes.<name>", .rows = remote_rows, ELEMS(config_remote, name),
	.begin = remote_begin, .rule = remote_rule,
};

static const struct ck_row schedule_rows[] = {
	{ K("enabled", CK_BOOL), F(config_schedule, enabled), .flags = CK_ENABLE },
	{ K("allowed_from", CK_TIME), F(config_schedule, allowed_from_min), .flags = CK_NEEDED,
	  .def = -1 },
	{ K("allowed_until", CK_TIME), F(config_schedule, allowed_until_min), .flags = CK_NEEDED,
	  .def = -1 },
	END,
};

static const struct ck_section schedule_section = {
	.name = "uploader.<name>.schedule", .rows = schedule_rows, .begin = schedule_begin,
	.rule = schedule_rule,
};

static const struct ck_row check_rows[] = {
	{ K("type", CK_ENUM), F(config_uploader, check_type), .flags = CK_REQUIRED,
	  .words = check_words, .expect = "\"age\" or \"size\"",
	  .missing = "\"age\" or \"size\"" },
	{ K("limit_minutes", CK_INT), F(config_uploader, check_limit_minutes), .lo = 1,
	  .hi = MINUTES_MAX, .unit = "minutes" },
	END,
};

static const struct ck_section check_section = {
	.name = "uploader.<name>.check", .rows = check_rows, .rule = check_rule,
};

static const struct ck_row mover_rows[] = {
	{ K("enabled", CK_BOOL), F(config_mover, enabled), .flags = CK_ENABLE },
	{ K("move_from_remote", CK_STRING), F(config_mover, move_from_remote), .flags = CK_NEEDED },
	{ K("move_to_remote", CK_STRING), F(config_mover, move_to_remote), .flags = CK_NEEDED },
	{ K("rclone_extras", CK_CUSTOM), F(config_mover, rclone_extras), .custom = &ck_extras },
	{ K("rclone_excludes", CK_LIST), F(config_mover, rclone_excludes) },
	END,
};

/* An enabled mover runs after each upload (supervisor/mover.h); check-config says so. */
static const struct ck_section mover_section = {
	.name = "uploader.<name>.mover", .rows = mover_rows,
};

static const struct ck_row uploader_rows[] = {
	{ K("check_interval", CK_INT), F(config_uploader, check_interval_min), .lo = 1,
	  .hi = MINUTES_MAX, .def = 30, .unit = "minutes" },
	{ K("max_size_gb", CK_NUMBER), F(config_uploader, max_size_gb), .flags = CK_NO_MAX, .lo = 0,
	  .hi = 1000000000, .def = 200 },
	{ K("size_excludes", CK_LIST), F(config_uploader, size_excludes) },
	{ K("exclude_open_files", CK_BOOL), F(config_uploader, exclude_open_files) },
	{ K("opened_excludes", CK_LIST), F(config_uploader, opened_excludes) },
	{ K("schedule", CK_SECTION), F(config_uploader, schedule), .sub = &schedule_section },
	{ K("service_account_path", CK_PATH), F(config_uploader, service_account_path) },
	{ K("rotate_remotes", CK_CUSTOM), F(config_uploader, rotate_remotes), .custom = &ck_rotate },
	{ K("check", CK_SECTION), .sub = &check_section },
	{ K("can_be_throttled", CK_BOOL), F(config_uploader, can_be_throttled), .def = 1 },
	{ K("mover", CK_SECTION), F(config_uploader, mover), .sub = &mover_section },
	{ K("quota", CK_CUSTOM), F(config_uploader, quota), .custom = &ck_quota_mode },
	/* the quota fork's */
	{ K("chunked_upload", CK_IGNORED), .instead = "cplow lists the upload folder once and hands "
	  "each stage its own files (--files-from-raw), which is what chunking was for" },
	END,
};

static const struct ck_section uploader_section = {
	.name = "uploader.<name>", .rows = uploader_rows, ELEMS(config_uploader, name),
	.begin = uploader_begin, .rule = uploader_rule,
};

static const struct ck_row quota_rows[] = {
	{ K("daily_bytes", CK_INT), F(config_quota, daily_bytes), .lo = 1, .hi = EXACT_INT_MAX,
	  .def = LEDGER_DAILY_BYTES_DEFAULT, .unit = "bytes" },
	{ K("window", CK_ENUM), F(config_quota, window), .words = window_words },
	{ K("min_free_bytes", CK_INT), F(config_quota, min_free_bytes), .flags = CK_NO_MAX, .lo = 0,
	  .hi = EXACT_INT_MAX, .def = 1073741824, .unit = "bytes" },
	{ K("continue_min_bytes", CK_INT), F(config_quota, continue_min_bytes), .flags = CK_NO_MAX,
	  .lo = 0, .hi = EXACT_INT_MAX, .def = 10737418240.0, .unit = "bytes" },
	{ K("flush_interval_ms", CK_INT), F(config_quota, flush_interval_ms), .lo = 1, .hi = 60000,
	  .def = 100 },
	{ K("cache_path", CK_PATH), F(config_quota, cache_path), .def_str = "sa_quota_cache.json" },
	{ K("capacity", CK_INT), F(config_quota, capacity), .lo = 1, .hi = 1 << 20,
	  .def = LEDGER_DEFAULT_ROWS },
	{ K("lock_path", CK_PATH), F(config_quota, lock_path), .def_str = "cplow.lock" },
	END,
};

static const struct ck_section quota_section = {
	.name = "quota", .rows = quota_rows, .rule = quota_rule,
};

/* rclone's --order-by: size|name|modtime[,ascending|asc|descending|desc|mixed[,N]]. */
static bool valid_order_by(const char *s)
{
	static const char *const keys[] = { "size", "name", "modtime", NULL };
	static const char *const dirs[] = { "ascending", "asc", "descending", "desc", "mixed",
					    NULL };
	char buf[LEDGER_STRATEGY_MAX];
	bool key_ok = false, dir_ok;
	if (strlen(s) >= sizeof(buf))
		return false;
	strcpy(buf, s);
	char *dir = strchr(buf, ','), *num = NULL;
	if (dir) {
		*dir++ = '\0';
		if ((num = strchr(dir, ',')))
			*num++ = '\0';
	}
	dir_ok = !dir;
	for (size_t i = 0; keys[i]; i++)
		key_ok = key_ok || strcmp(buf, keys[i]) == 0;
	for (size_t i = 0; dir && dirs[i]; i++)
		dir_ok = dir_ok || strcmp(dir, dirs[i]) == 0;
	return key_ok && dir_ok &&
	       (!num || (strcmp(dir, "mixed") == 0 && *num && strlen(num) <= 3 &&
			 strspn(num, "0123456789") == strlen(num) && atoi(num) <= 100));
}

/* The message below says "1 to 31 bytes". */
_Static_assert(LEDGER_STRATEGY_MAX == 32, "stage names: the row's message");

static bool valid_stage_name(const char *s)
{
	return *s && strlen(s) <= LEDGER_STRATEGY_MAX - 1;
}

static const struct ck_row stage_rows[] = {
	{ K("name", CK_STRING), F(config_stage, name), .flags = CK_REQUIRED,
	  .valid = valid_stage_name, .expect = "a name of 1 to 31 bytes" },
	{ K("min_share", CK_NUMBER), F(config_stage, min_share), .flags = CK_REQUIRED, .lo = 0,
	  .hi = 1 },
	{ K("max_transfer_share", CK_NUMBER), F(config_stage, max_transfer_share),
	  .flags = CK_REQUIRED | CK_LO_OPEN, .lo = 0, .hi = 1 },
	{ K("max_size_share", CK_NUMBER), F(config_stage, max_size_share), .flags = CK_REQUIRED,
	  .lo = 0, .hi = 1 },
	{ K("transfers", CK_INT), F(config_stage, transfers), .flags = CK_REQUIRED, .lo = 1,
	  .hi = 256 },
	{ K("order_by", CK_STRING), F(config_stage, order_by), .valid = valid_order_by,
	  .expect = "like \"size,desc\" (size|name|modtime[,asc|desc|mixed[,N]]) or null" },
	{ K("max_backlog", CK_INT), F(config_stage, max_backlog), .lo = 0, .hi = 10000000 },
	END,
};

/* Read by ck_stages, element by element. */
const struct ck_section ck_stage_section = {
	.name = "stages[]", .rows = stage_rows, .elem_size = sizeof(struct config_stage),
};


static const struct ck_row dashboard_rows[] = {
	{ K("enabled", CK_BOOL), F(config_dashboard, enabled), .flags = CK_ENABLE },
	{ K("host", CK_STRING), F(config_dashboard, host), .def_str = CONFIG_DASHBOARD_HOST_DEFAULT },
	{ K("port", CK_INT), F(config_dashboard, port), .lo = 1, .hi = 65535, .def = 47949 },
	{ K("token", CK_STRING), F(config_dashboard, token), .flags = CK_SECRET },
	{ K("refresh_seconds", CK_INT), F(config_dashboard, refresh_seconds), .lo = 1, .hi = 3600,
	  .def = CONFIG_DASHBOARD_REFRESH_DEFAULT },
	{ K("allow_unauthenticated", CK_BOOL), F(config_dashboard, allow_unauthenticated) },
	/* the quota fork's */
	{ K("refresh_interval", CK_BOOL), .alias = "refresh_seconds" },
	{ K("rc_url", CK_IGNORED), .instead = "the dashboard reads every stage's progress from the "
	  "ledger, where each stage's own rclone reports it" },
	{ K("debug", CK_IGNORED), .instead = "cplow's dashboard has no debug mode" },
	END,
};

static const struct ck_section dashboard_section = {
	.name = "dashboard", .rows = dashboard_rows, .rule = dashboard_rule,
};

static const struct ck_row plex_rclone_rows[] = {
	{ K("throttle_speeds", CK_CUSTOM), F(config_plex, throttle_speeds), .custom = &ck_speeds },
	{ K("url", CK_IGNORED), .instead = "cplow throttles each stage's own rclone "
	  "through that rclone's remote control" },
	END,
};

static const struct ck_section plex_rclone_section = {
	.name = "plex.rclone", .rows = plex_rclone_rows,
};

static const char plex_notify_instead[] = "cplow sends no notification when it throttles";

static const struct ck_row plex_rows[] = {
	{ K("enabled", CK_BOOL), F(config_plex, enabled), .flags = CK_ENABLE },
	{ K("url", CK_URL), F(config_plex, url), .flags = CK_NEEDED | CK_MASK_USERINFO },
	{ K("token", CK_STRING), F(config_plex, token), .flags = CK_NEEDED | CK_SECRET },
	{ K("poll_interval", CK_INT), F(config_plex, poll_interval_s), .lo = 1, .hi = 86400,
	  .def = 60, .unit = "seconds" },
	{ K("max_streams_before_throttle", CK_INT), F(config_plex, max_streams_before_throttle),
	  .lo = 0, .hi = 100000, .def = 1 },
	{ K("ignore_local_streams", CK_BOOL), F(config_plex, ignore_local_streams), .def = 1 },
	{ K("rclone", CK_SECTION), .sub = &plex_rclone_section },
	{ K("notifications", CK_IGNORED), .instead = plex_notify_instead },
	{ K("verbose_notifications", CK_IGNORED), .instead = plex_notify_instead },
	END,
};

static const struct ck_section plex_section = {
	.name = "plex", .rows = plex_rows, .rule = plex_rule,
};

static const struct ck_row nzbget_rows[] = {
	{ K("enabled", CK_BOOL), F(config_nzbget, enabled), .flags = CK_ENABLE },
	{ K("url", CK_URL), F(config_nzbget, url), .flags = CK_NEEDED | CK_MASK_USERINFO },
	END,
};

static const struct ck_section nzbget_section = { .name = "nzbget", .rows = nzbget_rows };

static const struct ck_row sabnzbd_rows[] = {
	{ K("enabled", CK_BOOL), F(config_sabnzbd, enabled), .flags = CK_ENABLE },
	{ K("url", CK_URL), F(config_sabnzbd, url), .flags = CK_NEEDED | CK_MASK_USERINFO },
	{ K("apikey", CK_STRING), F(config_sabnzbd, apikey), .flags = CK_NEEDED | CK_SECRET },
	END,
};

static const struct ck_section sabnzbd_section = { .name = "sabnzbd", .rows = sabnzbd_rows };

static const struct ck_row notify_rows[] = {
	{ K("service", CK_CUSTOM), F(config_notification, service), .words = ck_service_words,
	  .custom = &ck_service },
	{ K("webhook_url", CK_CUSTOM), F(config_notification, url), .flags = CK_NEEDED,
	  .only = WEBHOOKS, .custom = &ck_notify_url },
	{ K("sender_name", CK_STRING), F(config_notification, sender_name),
	  .flags = CK_EMPTY_UNSET, .only = NOTIFY(SLACK), .def_str = CONFIG_NOTIFY_SENDER_DEFAULT },
	{ K("sender_icon", CK_STRING), F(config_notification, sender_icon),
	  .flags = CK_EMPTY_UNSET, .only = NOTIFY(SLACK), .def_str = CONFIG_NOTIFY_ICON_DEFAULT },
	{ K("channel", CK_STRING), F(config_notification, channel), .flags = CK_EMPTY_UNSET,
	  .only = NOTIFY(SLACK) },
	{ K("thread_key", CK_STRING), F(config_notification, thread_key), .flags = CK_EMPTY_UNSET,
	  .only = NOTIFY(GOOGLE_CHAT) },
	{ K("app_token", CK_STRING), F(config_notification, app_token),
	  .flags = CK_NEEDED | CK_SECRET, .only = NOTIFY(PUSHOVER) },
	{ K("user_token", CK_STRING), F(config_notification, user_token),
	  .flags = CK_NEEDED | CK_SECRET, .only = NOTIFY(PUSHOVER) },
	{ K("priority", CK_INT), F(config_notification, priority), .flags = CK_NUM_STRING,
	  .only = NOTIFY(PUSHOVER), .lo = -2, .hi = 2 },
	{ K("url", CK_CUSTOM), F(config_notification, url), .only = NOTIFY(PUSHOVER),
	  .def_str = CONFIG_NOTIFY_PUSHOVER_URL, .custom = &ck_notify_url },
	{ K("url", CK_CUSTOM), F(config_notification, url), .flags = CK_NEEDED,
	  .only = NOTIFY(APPRISE) | NOTIFY(WEBHOOK), .custom = &ck_notify_url },
	{ K("title", CK_STRING), F(config_notification, title), .flags = CK_EMPTY_UNSET,
	  .only = NOTIFY(PUSHOVER) | NOTIFY(APPRISE), .def_str = CONFIG_NOTIFY_TITLE_DEFAULT },
	{ K("headers", CK_CUSTOM), F(config_notification, headers), .only = NOTIFY(WEBHOOK),
	  .custom = &ck_headers },
	END,
};

static const struct ck_section notify_section = {
	.name = "notifications.<name>", .rows = notify_rows, ELEMS(config_notification, name),
	.begin = notify_begin, .rule = notify_rule, .variant = notify_variant,
};

static const struct ck_row hidden_rows[] = {
	{ K("hidden_remotes", CK_LIST), F(config_hidden, remotes), .flags = CK_REQUIRED },
	END,
};

static const struct ck_section hidden_section = {
	.name = "hidden.<folder>", .rows = hidden_rows, ELEMS(config_hidden, folder),
	.begin = hidden_begin, .rule = hidden_rule,
};

static const struct ck_row syncer_rows[] = {
	{ K("service", CK_ENUM), F(config_syncer, service), .words = syncer_words },
	{ K("sync_from", CK_STRING), F(config_syncer, sync_from) },
	{ K("sync_to", CK_STRING), F(config_syncer, sync_to) },
	{ K("sync_interval", CK_NUMBER), F(config_syncer, sync_interval_hours), .flags = CK_LO_OPEN,
	  .lo = 0, .hi = 1000000, .unit = "hours" },
	{ K("tool_path", CK_STRING), F(config_syncer, tool_path), .flags = CK_EMPTY_UNSET },
	{ K("use_copy", CK_BOOL), F(config_syncer, use_copy) },
	{ K("instance_destroy", CK_BOOL), F(config_syncer, instance_destroy) },
	{ K("rclone_extras", CK_IGNORED) },
	END,
};

static const struct ck_section syncer_section = {
	.name = "syncer.<name>", .rows = syncer_rows, ELEMS(config_syncer, name),
	.rule = syncer_rule,
};

/* In the order they are read: remotes before the uploaders that name them. */
static const struct ck_row top_rows[] = {
	{ K("core", CK_SECTION), F(config, core), .sub = &core_section },
	{ K("remotes", CK_MAP), F(config, remotes), .sub = &remote_section },
	{ K("uploader", CK_MAP), F(config, uploaders),
	  .flags = CK_REQUIRED | CK_NONEMPTY, .missing = "configure at least one uploader",
	  .sub = &uploader_section },
	{ K("quota", CK_SECTION), F(config, quota), .sub = &quota_section },
	{ K("stages", CK_CUSTOM), F(config, stages),
	  .sub = &ck_stage_section, .custom = &ck_stages },
	{ K("dashboard", CK_SECTION), F(config, dashboard), .sub = &dashboard_section },
	{ K("plex", CK_SECTION), F(config, plex), .sub = &plex_section },
	{ K("nzbget", CK_SECTION), F(config, nzbget), .sub = &nzbget_section },
	{ K("sabnzbd", CK_SECTION), F(config, sabnzbd), .sub = &sabnzbd_section },
	{ K("notifications", CK_MAP), F(config, notifications), .sub = &notify_section },
	{ K("hidden", CK_MAP), F(config, hidden), .sub = &hidden_section },
	{ K("syncer", CK_MAP), F(config, syncers), .sub = &syncer_section },
	END,
};

const struct ck_section ck_top = { .name = "", .rows = top_rows, .rule = top_rule, .top = true };
