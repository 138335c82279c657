/*
 * What only rclone can tell (config_probe in config.h): whether the remotes the config names
 * exist, and whether an uploader's remote chain ends in Google Drive, for quota "auto". The
 * loader never runs rclone: unit tests, the fuzzer and every SIGHUP would. check-config and the
 * supervisor's start call config_probe; what is known without rclone is settled at load.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "account.h"
#include "internal.h"

/* A key file path account_sa_env() accepts; nothing opens it. */
#define PROBE_KEY "/cplow-quota-probe.json"

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

/* The remote's name in "name:path" or "name,param=v:path" (into out), or false for a local
 * path or an on-the-fly ":backend:" remote. */
static bool remote_name(const char *spec, char *out, size_t len)
{
	size_t n = strcspn(spec, ":/");
	if (n == 0 || spec[n] != ':')
		return false;
	size_t params = strcspn(spec, ",");
	snprintf(out, len, "%.*s", (int)(params < n ? params : n), spec);
	return true;
}

bool ck_quota_local(struct ctx *x, struct config_uploader *u)
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
	} else if (dest && !remote_name(dest, name, sizeof(name))) {
		decide(x, u, false, "auto: upload_remote is a local path");
	} else {
		/* The safe side until rclone has said what is behind the remote. */
		decide(x, u, true, "auto: on until rclone tells what is behind upload_remote "
		       "(cplow check-config asks it)");
		return false;
	}
	return true;
}

static void check_remote(struct ctx *x, const struct account_remotes *known, const char *path,
			 const char *spec, bool bare)
{
	char name[256], shown[GOT_LEN], config[GOT_LEN];
	const char *file = x->c->core.rclone_config_path;
	if (bare)
		snprintf(name, sizeof(name), "%s", spec);
	else if (!spec || !remote_name(spec, name, sizeof(name)))
		return;
	for (size_t i = 0; i < known->count; i++)
		if (strcmp(known->names[i], name) == 0)
			return;
	ck_show(shown, sizeof(shown), name, SHOW_VALUE_MAX, true);
	ck_show(config, sizeof(config), file ? file : "", SHOW_VALUE_MAX, false);
	ck_fail(x, path, "no remote %s in %s%s (rclone listremotes does not list it, and no "
		"RCLONE_CONFIG_..._TYPE variable defines it)", shown,
		file ? "rclone's config " : "rclone's default config", config);
}

static void check_remotes(struct ctx *x, const struct account_remotes *known)
{
	const struct config *c = x->c;
	char p[PATH_LEN], q[PATH_LEN];
	for (size_t i = 0; i < c->uploader_count; i++) {
		const struct config_uploader *u = &c->uploaders[i];
		/* rotating, the accounts' remotes replace upload_remote's */
		ck_key(p, ck_key(q, "remotes", u->remote->name), "upload_remote");
		if (!u->rotate_remote_count)
			check_remote(x, known, p, u->remote->upload_remote, false);
		ck_key(q, ck_key(p, "uploader", u->name), "rotate_remotes");
		for (size_t k = 0; k < u->rotate_remote_count; k++)
			check_remote(x, known, ck_index(p, q, k), u->rotate_remotes[k], true);
		ck_key(q, ck_key(p, "uploader", u->name), "mover");
		if (u->mover.enabled) {
			check_remote(x, known, ck_key(p, q, "move_from_remote"),
				     u->mover.move_from_remote, false);
			check_remote(x, known, ck_key(p, q, "move_to_remote"),
				     u->mover.move_to_remote, false);
		}
	}
	for (size_t i = 0; i < c->hidden_count; i++)
		for (size_t k = 0; k < c->hidden[i].remote_count; k++) {
			const struct config_remote *r = config_find_remote(c, c->hidden[i].remotes[k]);
			if (r)
				check_remote(x, known, ck_key(p, ck_key(q, "remotes", r->name),
							      "hidden_remote"),
					     r->hidden_remote, false);
		}
}

int config_probe(struct config *c, struct config_errors *errors)
{
	struct ctx x = { .c = c, .errs = errors, .file = c->path };
	struct account_remotes known = { 0 };
	char err[CONFIG_ERR_MAX];
	size_t before = ck_errors(&x);
	const char *binary = c->core.rclone_binary_path, *file = c->core.rclone_config_path;
	if (account_list_remotes(binary, file, &known, err, sizeof(err)) < 0)
		ck_fail(&x, "core.rclone_binary_path", "%s", err);
	else
		check_remotes(&x, &known);
	account_remotes_free(&known);
	for (size_t i = 0; i < c->uploader_count && !x.stop; i++) {
		struct config_uploader *u = &c->uploaders[i];
		struct account_env env = { 0 };
		if (ck_quota_local(&x, u))
			continue;
		int rc = account_sa_env(binary, file, u->remote->upload_remote, PROBE_KEY, &env, err,
					sizeof(err));
		account_env_free(&env);
		if (rc == 0 || rc == -ENOTSUP)
			decide(&x, u, true, "auto: upload_remote's chain ends in a drive backend");
		else if (rc == -ENODEV)
			decide(&x, u, false, "auto: %s", err);
		else
			decide(&x, u, true, "auto: on, since rclone could not tell what is behind "
			       "upload_remote (%s)", err);
	}
	return ck_errors(&x) > before ? -1 : 0;
}
