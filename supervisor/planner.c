#include "planner.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "account.h"
#include "rclone_cmd.h"

static char *dup_or_null(const char *s)
{
	return s ? strdup(s) : NULL;
}

/* An uploader without accounts uploads as its remote: "google:/Media" → "google", without
 * connection-string parameters (they may hold secrets, and the account is shown everywhere).
 * A remote made on the command line (":local:/backup", ":s3,provider=AWS:bucket") has no name:
 * its backend is the account then (":local:", ":s3:"). */
char *planner_remote_name(const char *upload_remote)
{
	bool inline_remote = upload_remote[0] == ':';
	const char *start = upload_remote + inline_remote;
	size_t n = strcspn(start, ",:");
	char *name = malloc(n + 3);
	if (name)
		snprintf(name, n + 3, "%s%.*s%s", inline_remote ? ":" : "", (int)n, start,
			 inline_remote ? ":" : "");
	return name;
}

int planner_accounts(const struct config_uploader *u, struct planner_accounts *out, char *err,
		     size_t err_len)
{
	struct planner_accounts a = { 0 };
	struct account_keys keys = { 0 };
	size_t n = 1;
	if (u->rotate_remote_count) {
		n = u->rotate_remote_count;
	} else if (u->service_account_path) {
		if (account_list_keys(u->service_account_path, &keys, err, err_len) < 0)
			return -1;
		if (keys.count == 0) {
			snprintf(err, err_len, "uploader.%s.service_account_path: no *.json key in %s",
				 u->name, u->service_account_path);
			account_keys_free(&keys);
			return -1;
		}
		n = keys.count;
	}
	a.v = calloc(n, sizeof(*a.v));
	if (!a.v)
		goto nomem;
	a.count = n;
	for (size_t i = 0; i < n; i++) {
		struct planner_account *p = &a.v[i];
		if (u->rotate_remote_count) {
			p->name = strdup(u->rotate_remotes[i]);
			p->remote = dup_or_null(u->rotate_remotes[i]);
		} else if (keys.count) {
			p->name = strdup(keys.paths[i]);
			p->key_path = strdup(keys.paths[i]);
		} else {
			p->name = planner_remote_name(u->remote->upload_remote);
		}
		if (!p->name)
			goto nomem;
		char id[PATH_MAX + 8];
		if (planner_account_identity(u, p->name, id, sizeof(id)) == 0 &&
		    !(p->identity = strdup(id)))
			goto nomem;
	}
	account_keys_free(&keys);
	*out = a;
	return 0;
nomem:
	account_keys_free(&keys);
	planner_accounts_free(&a);
	snprintf(err, err_len, "out of memory");
	return -1;
}

void planner_accounts_free(struct planner_accounts *a)
{
	for (size_t i = 0; a->v && i < a->count; i++) {
		free(a->v[i].name);
		free(a->v[i].remote);
		free(a->v[i].key_path);
		free(a->v[i].identity);
	}
	free(a->v);
	memset(a, 0, sizeof(*a));
}

int planner_account_identity(const struct config_uploader *u, const char *account, char *out,
			     size_t out_len)
{
	int n;
	if (u->rotate_remote_count) {
		n = snprintf(out, out_len, "remote:%s", account);
	} else if (u->service_account_path) {
		/* Two uploaders may reach one key file by different paths (a symlinked directory,
		 * a relative path from another working directory). */
		char real[PATH_MAX];
		n = snprintf(out, out_len, "key:%s", realpath(account, real) ? real : account);
	} else {
		return -1;
	}
	return n >= 0 && (size_t)n < out_len ? 0 : -1;
}

const struct config_stage *planner_strategy(const struct config *c, double share_left)
{
	for (size_t i = 0; i < c->stage_count; i++)
		if (share_left >= c->stages[i].min_share)
			return &c->stages[i];
	return &c->stages[c->stage_count - 1]; /* the last row's min_share is 0 */
}

/* The "strategy" of an uploader whose quota is off (uploader.<name>.quota): no stage flags, no
 * limit; it uploads as cloudplow did. */
static char no_quota_name[] = "quota_off";
const struct config_stage planner_no_quota = { .name = no_quota_name };

static void earliest(int64_t *at, int64_t t)
{
	if (t > 0 && (*at == 0 || t < *at))
		*at = t;
}

/* planner_choose, with moved[i] (may be NULL) bytes taken off account i's remaining quota:
 * what a simulated stage has spent. */
static void choose(const struct config *c, const char *uploader,
		   const struct planner_accounts *a, const struct ledger *l,
		   const struct ledger_copy *lc, const bool *busy, const bool *given_up,
		   const int64_t *moved, int64_t now_ms, struct plan *out)
{
	memset(out, 0, sizeof(*out));
	out->account = -1;
	int64_t daily = c->quota.daily_bytes;
	/* Off, usage is still counted (and shown), but never stops or skips an account. */
	const struct config_uploader *cu = config_find_uploader(c, uploader);
	out->quota = !cu || cu->quota_enabled;
	size_t banned = 0, full = 0, taken = 0;
	for (size_t i = 0; i < a->count; i++) {
		if (busy && busy[i]) {
			taken++;
			continue;
		}
		if (given_up && given_up[i])
			continue;
		struct ledger_usage empty = { 0 };
		const struct ledger_usage *u = &empty;
		int32_t row;
		if (ledger_row_find(l, uploader, a->v[i].name, &row) == LEDGER_OK &&
		    (uint32_t)row < lc->row_count)
			u = &lc->rows[row].usage;
		if (u->banned_until_ms > now_ms) {
			banned++;
			earliest(&out->wait_until_ms, u->banned_until_ms);
			continue;
		}
		int64_t left = ledger_usage_remaining(u, daily, c->quota.window, now_ms);
		if (moved)
			left = left > moved[i] ? left - moved[i] : 0;
		if (out->quota && left < c->quota.min_free_bytes) {
			full++;
			earliest(&out->wait_until_ms, u->reset_at_ms);
			continue;
		}
		out->account = (int)i;
		out->remaining_bytes = left;
		int64_t asked = -1;
		if (cu && rclone_cmd_extras_max_transfer(cu->remote->rclone_extras,
							 cu->remote->rclone_extra_count, &asked) != 1)
			asked = -1;
		if (!out->quota) {
			/* Only the user's own --max-transfer, as rclone_cmd_build passes it. */
			out->strategy = &planner_no_quota;
			out->max_transfer_bytes = asked > 0 ? asked : 0;
			return;
		}
		out->strategy = planner_strategy(c, (double)left / (double)daily);
		out->max_transfer_bytes =
			(int64_t)floor(out->strategy->max_transfer_share * (double)left);
		/* A lower --max-transfer in rclone_extras is what the stage will pass
		 * (rclone_cmd_build): plan with it, so the dry run's stages are the upload's. */
		if (asked >= 0 && asked < out->max_transfer_bytes)
			out->max_transfer_bytes = asked;
		out->max_size_bytes = out->strategy->max_size_share > 0
					      ? (int64_t)floor(out->strategy->max_size_share *
							       (double)left)
					      : 0;
		return;
	}
	out->busy_count = taken;
	snprintf(out->why, sizeof(out->why),
		 "%zu accounts: %zu banned, %zu with less than %lld bytes left, %zu busy, %zu given "
		 "up on in this run",
		 a->count, banned, full, (long long)c->quota.min_free_bytes, taken,
		 a->count - banned - full - taken);
}

void planner_choose(const struct config *c, const char *uploader,
		    const struct planner_accounts *a, const struct ledger *l,
		    const struct ledger_copy *lc, const bool *busy, const bool *given_up,
		    int64_t now_ms, struct plan *out)
{
	choose(c, uploader, a, l, lc, busy, given_up, NULL, now_ms, out);
}

size_t planner_simulate(const struct config *c, const char *uploader,
			const struct planner_accounts *a, const struct ledger *l,
			const struct ledger_copy *lc, int64_t now_ms, int64_t source_bytes,
			struct planner_step *steps, size_t max, int64_t *left_bytes,
			struct plan *stop)
{
	size_t n = 0, count = a->count ? a->count : 1;
	int64_t left = source_bytes > 0 ? source_bytes : 0;
	int64_t *moved = calloc(count, sizeof(*moved));
	bool *given_up = calloc(count, sizeof(*given_up));
	memset(stop, 0, sizeof(*stop));
	stop->account = -1;
	if (!moved || !given_up) {
		snprintf(stop->why, sizeof(stop->why), "out of memory");
		goto out;
	}
	while (n < max) {
		struct plan p;
		choose(c, uploader, a, l, lc, NULL, given_up, moved, now_ms, &p);
		if (p.account < 0) {
			*stop = p;
			break;
		}
		/* Without a quota, a stage without --max-transfer takes everything. */
		int64_t cap = p.quota || p.max_transfer_bytes > 0 ? p.max_transfer_bytes : left;
		int64_t m = cap < left ? cap : left;
		steps[n].plan = p;
		steps[n].moved_bytes = m;
		n++;
		moved[p.account] += m;
		left -= m;
		if (left == 0)
			break;
		/* The supervisor's rule after a stage that moved something (stage_finished): go on
		 * while the account has more than continue_min_bytes left. One that moved nothing
		 * (--max-transfer 0) is given up on, so the plan cannot loop. */
		if (m == 0 || (p.quota && p.remaining_bytes - m <= c->quota.continue_min_bytes))
			given_up[p.account] = true;
	}
out:
	free(moved);
	free(given_up);
	*left_bytes = left;
	return n;
}

bool planner_suspension_note(struct planner_suspension *s, const char *why)
{
	if (s->active && strcmp(s->why, why) == 0)
		return false;
	s->active = true;
	snprintf(s->why, sizeof(s->why), "%s", why);
	return true;
}

void planner_suspension_end(struct planner_suspension *s)
{
	s->active = false;
	s->why[0] = '\0';
}
