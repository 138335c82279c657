#include "probe.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "account.h"

/* A key file path account_sa_env() accepts; nothing opens it. */
#define PROBE_KEY "/cplow-quota-probe.json"

/* spec (a remote name when bare, else an rclone path) must name a remote rclone knows. */
static void check_remote(const struct config *c, const struct account_remotes *known,
			 struct config_errors *errors, const char *path, const char *spec,
			 bool bare)
{
	char name[256], file[CONFIG_ERR_MAX / 2] = "";
	if (!spec || (bare ? snprintf(name, sizeof(name), "%s", spec) < 0
			   : !config_remote_name(spec, name, sizeof(name))))
		return;
	for (size_t i = 0; i < known->count; i++)
		if (strcmp(known->names[i], name) == 0)
			return;
	/* The message stays one line whatever the path holds. */
	snprintf(file, sizeof(file), "%s", c->core.rclone_config_path ? c->core.rclone_config_path
								      : "");
	for (char *f = file; *f; f++)
		*f = (unsigned char)*f < 0x20 ? '?' : *f;
	config_errors_add(errors, "%s: no remote \"%s\" in %s%s (rclone listremotes does not list "
			  "it, and no RCLONE_CONFIG_..._TYPE variable defines it)", path, name,
			  *file ? "rclone's config " : "rclone's default config", file);
}

static void check_remotes(const struct config *c, const struct account_remotes *known,
			  struct config_errors *errors)
{
	char p[CONFIG_PATH_MAX], q[CONFIG_PATH_MAX];
	for (size_t i = 0; i < c->uploader_count; i++) {
		const struct config_uploader *u = &c->uploaders[i];
		/* rotating, the accounts' remotes replace upload_remote's */
		config_key(p, config_key(q, "remotes", u->remote->name), "upload_remote");
		if (!u->rotate_remote_count)
			check_remote(c, known, errors, p, u->remote->upload_remote, false);
		config_key(q, config_key(p, "uploader", u->name), "rotate_remotes");
		for (size_t k = 0; k < u->rotate_remote_count; k++)
			if (snprintf(p, sizeof(p), "%s[%zu]", q, k) < (int)sizeof(p))
				check_remote(c, known, errors, p, u->rotate_remotes[k], true);
		config_key(q, config_key(p, "uploader", u->name), "mover");
		if (u->mover.enabled) {
			check_remote(c, known, errors, config_key(p, q, "move_from_remote"),
				     u->mover.move_from_remote, false);
			check_remote(c, known, errors, config_key(p, q, "move_to_remote"),
				     u->mover.move_to_remote, false);
		}
	}
	for (size_t i = 0; i < c->hidden_count; i++)
		for (size_t k = 0; k < c->hidden[i].remote_count; k++) {
			const struct config_remote *r = config_find_remote(c, c->hidden[i].remotes[k]);
			if (r)
				check_remote(c, known, errors,
					     config_key(p, config_key(q, "remotes", r->name),
							"hidden_remote"),
					     r->hidden_remote, false);
		}
}

static void settle(struct config_uploader *u, bool on, const char *why, const char *detail)
{
	char *reason = NULL;
	if (asprintf(&reason, "auto: %s%s%s%s", why, *detail ? " (" : "", detail,
		     *detail ? ")" : "") < 0)
		reason = NULL;
	free(u->quota_reason);
	u->quota_reason = reason;
	u->quota_enabled = on;
	u->quota_pending = false;
}

int probe_config(struct config *c, struct config_errors *errors)
{
	struct account_remotes known = { 0 };
	char err[CONFIG_ERR_MAX];
	size_t before = errors->count + errors->more;
	const char *binary = c->core.rclone_binary_path, *file = c->core.rclone_config_path;
	if (account_list_remotes(binary, file, &known, err, sizeof(err)) < 0)
		config_errors_add(errors, "core.rclone_binary_path: %s", err);
	else
		check_remotes(c, &known, errors);
	account_remotes_free(&known);
	for (size_t i = 0; i < c->uploader_count; i++) {
		struct config_uploader *u = &c->uploaders[i];
		struct account_env env = { 0 };
		if (!u->quota_pending)
			continue;
		int rc = account_sa_env(binary, file, u->remote->upload_remote, PROBE_KEY, &env, err,
					sizeof(err));
		account_env_free(&env);
		if (rc == 0 || rc == -ENOTSUP)
			settle(u, true, "upload_remote's chain ends in a drive backend", "");
		else if (rc == -ENODEV)
			settle(u, false, err, "");
		else
			settle(u, true, "on, since rclone could not tell what is behind upload_remote",
			       err);
	}
	return errors->count + errors->more > before ? -1 : 0;
}
