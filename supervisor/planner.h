/*
 * The planner: from an uploader's accounts and the ledger, the next stage.
 *
 * An uploader whose quota is off (uploader.<name>.quota, resolved into quota_enabled) uploads
 * as cloudplow did: its accounts are taken in order, skipped only when banned or given up on,
 * never for their usage (which is still counted), and its stages carry no strategy flags.
 *
 * Accounts come in a fixed order: rotate_remotes as listed, or the key files of
 * service_account_path in natural order (sa2 before sa10); an uploader with neither has one
 * account, its upload_remote's remote. The first account that is not banned, not busy with
 * another stage, not given up on in this run and has at least min_free_bytes left is chosen, and
 * the stage's parameters follow from the share of the daily quota it has left (the strategy
 * table, REFERENCE.md §2), in exact bytes; a lower --max-transfer in the uploader's
 * rclone_extras takes the strategy's place (rclone_cmd_build() passes it).
 */
#ifndef CPLOW_PLANNER_H
#define CPLOW_PLANNER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "ledger.h"

struct planner_account {
	char *name;          /* the ledger's account key: key file path or remote name */
	char *remote;        /* rotate_remotes: the remote that replaces upload_remote's */
	char *key_path;      /* service accounts: the key file */
	char *identity;      /* what another uploader's account must equal to be this one
			      * (planner_account_identity); NULL: the upload_remote as it is */
};

struct planner_accounts {
	struct planner_account *v;
	size_t count;
};

/* The account of an rclone path used as it is (an uploader without accounts, the mover): its
 * remote's name without connection-string parameters ("google:/Media" → "google"), or for an
 * on-the-fly remote its backend (":local:"). malloc'd; NULL when out of memory. */
char *planner_remote_name(const char *rclone_path);

/* The uploader's accounts, in the order they are used. */
int planner_accounts(const struct config_uploader *u, struct planner_accounts *out, char *err,
		     size_t err_len);
void planner_accounts_free(struct planner_accounts *a);

/*
 * An account's identity across uploaders, so that two uploaders naming one account never run
 * stages on it at once: "remote:<name>" for a rotate_remotes entry, "key:<real path>" for a
 * service-account key file (symbolic links and "/sa/../sa" resolved; the path as given when it
 * cannot be resolved). `account` is the ledger's account name under uploader u. Returns 0, or
 * -1 when the account has no identity beyond its uploader (an uploader without accounts, whose
 * one account is its upload_remote) or out does not hold it.
 */
int planner_account_identity(const struct config_uploader *u, const char *account, char *out,
			     size_t out_len);

struct plan {
	int account;                     /* index into the accounts; -1: none can take a stage */
	bool quota;                      /* the uploader's quota applies (quota_enabled): else
					  * strategy is planner_no_quota, no account is skipped
					  * for its usage, and only rclone_extras' --max-transfer
					  * limits a stage */
	int64_t remaining_bytes;
	const struct config_stage *strategy;
	int64_t max_transfer_bytes;      /* the strategy's, or rclone_extras' lower one */
	int64_t max_size_bytes;          /* 0: not passed */
	int64_t wait_until_ms;           /* account -1: when the first one frees up; 0: never */
	size_t busy_count;               /* account -1: accounts skipped as busy (worth waiting) */
	char why[160];                   /* account -1: why, for one log line */
};

/*
 * Chooses the next stage for `uploader`. busy[i] and given_up[i] (may be NULL) mark accounts in
 * use by another stage and accounts this run has given up on. The ledger finds an account's
 * row (O(1)); the copy, taken just before, supplies its usage and ban as of now_ms.
 */
void planner_choose(const struct config *c, const char *uploader,
		    const struct planner_accounts *a, const struct ledger *l,
		    const struct ledger_copy *lc,
		    const bool *busy, const bool *given_up, int64_t now_ms, struct plan *out);

/* One stage of a simulated upload (planner_simulate). */
struct planner_step {
	struct plan plan;                /* as planner_choose plans it at that point */
	int64_t moved_bytes;             /* what the simulation assumes the stage moves */
};

/*
 * `upload --dry-run`: the stages an upload of source_bytes would run, planned as planner_choose
 * plans them, from each account's remaining quota in the ledger. Each stage is assumed to move
 * min(its --max-transfer, the source bytes left) (without a quota and a --max-transfer: all of
 * them) and to take that from its account; another
 * stage follows on the same account while more than quota.continue_min_bytes is left, then the
 * next account, as the supervisor does (file sizes, --max-size and failures are not
 * simulated). The first stage is planned even for an empty source; planning stops when the
 * source is covered, when no account can take a stage (*stop says why) or after max steps.
 * Returns the number of steps written; *left_bytes is what no stage covers.
 */
size_t planner_simulate(const struct config *c, const char *uploader,
			const struct planner_accounts *a, const struct ledger *l,
			const struct ledger_copy *lc, int64_t now_ms, int64_t source_bytes,
			struct planner_step *steps, size_t max, int64_t *left_bytes,
			struct plan *stop);

/*
 * Whether a suspension is news worth a log line: the first of an episode, or one for another
 * reason than the last. An episode lasts until planner_suspension_end() (an upload that moved
 * something); its deadline may move on without news (accounts given up on are tried again
 * every check_interval).
 */
struct planner_suspension {
	bool active;
	char why[sizeof(((struct plan *)0)->why)];
};
bool planner_suspension_note(struct planner_suspension *s, const char *why);
void planner_suspension_end(struct planner_suspension *s);

/* The strategy of a stage whose uploader's quota is off: named "quota_off", and every flag
 * "not passed". */
extern const struct config_stage planner_no_quota;

/* The strategy row for a share of the quota left. */
const struct config_stage *planner_strategy(const struct config *c, double share_left);

#endif
