/*
 * The mover (uploader.<name>.mover, cloudplow's staging pattern): once an uploader's upload
 * has ended (all its stages, when none failed or some file was uploaded), a server-side
 * `rclone move <move_from_remote> <move_to_remote>` with the mover's rclone_extras and
 * rclone_excludes, as cloudplow ran it. A worker runs it like any stage (worker.h: sandbox,
 * signals, its own process group, the in-flight check after a cut, per-file counting), its
 * source listed on the remote (STAGE_SOURCE_REMOTE).
 *
 * Its account. cloudplow ran the mover with no service account: rclone used the credentials
 * rclone.conf gives the remotes, and for a server-side copy or move the destination's remote
 * does the work (rclone's Copy/Move are the destination's). That is the account Google charges,
 * so cplow runs it the same way and books the bytes to the ledger account named after
 * move_to_remote's remote ("gdrive:Media" → "gdrive", under the uploader): the same row as
 * the uploader's own account of that name (a rotate_remotes entry, or the upload_remote of an
 * uploader without accounts), another row beside service accounts, which are other Google
 * identities. A service account of the uploader's would do a copy Google charges to that
 * account, needing access to both remotes, which cloudplow's users never had to give it.
 *
 * With the uploader's quota on, the mover runs only while that account is not banned, has at
 * least quota.min_free_bytes left and is not used by another stage, and it moves at most what
 * is left (the files that fit: remote_source.h); the rest waits for the next upload's mover.
 * rclone_sleeps of the uploader's remote apply to it as to the uploader's stages. Quota off,
 * it moves everything, counted all the same.
 *
 * Limit: an rclone.conf remote whose own service_account_file is one of the uploader's keys
 * is the same Google account under two ledger rows; each is held to the daily quota alone.
 */
#ifndef CPLOW_MOVER_H
#define CPLOW_MOVER_H

#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "ledger.h"
#include "stage.h"

struct mover_plan {
	bool run;                        /* false: why says why not now */
	bool quota;                      /* the uploader's quota applies */
	char account[LEDGER_ACCOUNT_MAX];/* the ledger's account: move_to_remote's remote */
	char identity[LEDGER_ACCOUNT_MAX + 8]; /* "remote:<account>": what a rotate_remotes
					  * account of another uploader is, when it is this
					  * one (planner_account_identity); "" for ":backend:" */
	int64_t remaining_bytes;         /* of the daily quota */
	int64_t budget_bytes;            /* quota on: what it may move; 0: no limit */
	char why[160];
};

/* Decides whether u's mover may run now (its account not banned, with room; busy: another
 * stage uses its account) and with which budget. */
void mover_plan(const struct config *c, const struct config_uploader *u, const struct ledger *l,
		const struct ledger_copy *lc, bool busy, int64_t now_ms, struct mover_plan *out);

/* The account's identity alone (mover_plan's .identity), for the busy check; "" when none. */
void mover_identity(const struct config_uploader *u, char *out, size_t len);

/* The mover's stage spec: everything it points to lives in the config, p, or the caller's
 * (work_dir, ledger_name). */
void mover_spec(const struct config *c, const struct config_uploader *u,
		const struct mover_plan *p, const char *ledger_name, const char *work_dir,
		struct stage_spec *spec);

#endif
