#include "mover.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "planner.h"

static void account_of(const struct config_uploader *u, char *out, size_t len)
{
	char *name = planner_remote_name(u->mover.move_to_remote);
	snprintf(out, len, "%s", name ? name : "");
	free(name);
}

void mover_identity(const struct config_uploader *u, char *out, size_t len)
{
	char account[LEDGER_ACCOUNT_MAX];
	account_of(u, account, sizeof(account));
	/* An on-the-fly ":backend:" has no name another uploader could share. */
	if (account[0] && account[0] != ':')
		snprintf(out, len, "remote:%s", account);
	else if (len)
		out[0] = '\0';
}

void mover_plan(const struct config *c, const struct config_uploader *u, const struct ledger *l,
		const struct ledger_copy *lc, bool busy, int64_t now_ms, struct mover_plan *out)
{
	memset(out, 0, sizeof(*out));
	account_of(u, out->account, sizeof(out->account));
	mover_identity(u, out->identity, sizeof(out->identity));
	out->quota = u->quota_enabled;
	if (!out->account[0]) {
		snprintf(out->why, sizeof(out->why), "out of memory");
		return;
	}
	struct ledger_usage none = { 0 };
	const struct ledger_usage *usage = &none;
	int32_t row;
	if (ledger_row_find(l, u->name, out->account, &row) == LEDGER_OK &&
	    (uint32_t)row < lc->row_count)
		usage = &lc->rows[row].usage;
	out->remaining_bytes = ledger_usage_remaining(usage, c->quota.daily_bytes, c->quota.window,
						      now_ms);
	if (usage->banned_until_ms > now_ms) {
		time_t t = (time_t)(usage->banned_until_ms / 1000);
		char when[64];
		strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S UTC", gmtime(&t));
		snprintf(out->why, sizeof(out->why), "its account %.60s is banned until %s",
			 out->account, when);
		return;
	}
	if (busy) {
		snprintf(out->why, sizeof(out->why), "another stage uses its account %.60s",
			 out->account);
		return;
	}
	if (out->quota && out->remaining_bytes < c->quota.min_free_bytes) {
		snprintf(out->why, sizeof(out->why), "its account %.60s has %lld bytes left, less "
			 "than quota.min_free_bytes", out->account, (long long)out->remaining_bytes);
		return;
	}
	out->budget_bytes = out->quota ? out->remaining_bytes : 0;
	out->run = true;
}

void mover_spec(const struct config *c, const struct config_uploader *u,
		const struct mover_plan *p, const char *ledger_name, const char *work_dir,
		struct stage_spec *spec)
{
	const struct config_mover *m = &u->mover;
	memset(spec, 0, sizeof(*spec));
	spec->uploader = u->name;
	spec->account = p->account;
	spec->ledger_name = ledger_name;
	spec->rclone_binary = c->core.rclone_binary_path;
	spec->rclone_nice = c->core.rclone_nice;
	spec->rclone_config = c->core.rclone_config_path;
	spec->command = "move";
	spec->source = m->move_from_remote;
	spec->source_kind = STAGE_SOURCE_REMOTE;
	spec->destination = m->move_to_remote;
	spec->extras = m->rclone_extras;
	spec->extra_count = m->rclone_extra_count;
	spec->excludes = (const char *const *)m->rclone_excludes;
	spec->exclude_count = m->rclone_exclude_count;
	spec->strategy = "mover";
	spec->max_transfer_bytes = p->budget_bytes;
	spec->triggers = u->remote->rclone_sleeps;
	spec->trigger_count = u->remote->rclone_sleep_count;
	spec->dry_run = c->core.dry_run;
	spec->work_dir = work_dir;
	spec->sandbox = 1;
}
