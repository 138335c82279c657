/*
 * The planner: from an uploader's accounts and the ledger, the next stage.
 *
 * Accounts come in a fixed order: rotate_remotes as listed, or the key files of
 * service_account_path in natural order (sa2 before sa10); an uploader with neither has one
 * account, its upload_remote's remote. The first account that is not banned, not busy with
 * another stage, not given up on in this run and has at least min_free_bytes left is chosen, and
 * the stage's parameters follow from the share of the daily quota it has left (the strategy
 * table, REFERENCE.md §2), in exact bytes.
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
};

struct planner_accounts {
	struct planner_account *v;
	size_t count;
};

/* The uploader's accounts, in the order they are used. */
int planner_accounts(const struct config_uploader *u, struct planner_accounts *out, char *err,
		     size_t err_len);
void planner_accounts_free(struct planner_accounts *a);

struct plan {
	int account;                     /* index into the accounts; -1: none can take a stage */
	int64_t remaining_bytes;
	const struct config_stage *strategy;
	int64_t max_transfer_bytes;
	int64_t max_size_bytes;          /* 0: not passed */
	int64_t wait_until_ms;           /* account -1: when the first one frees up; 0: never */
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

/* The strategy row for a share of the quota left. */
const struct config_stage *planner_strategy(const struct config *c, double share_left);

#endif
