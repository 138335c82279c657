/*
 * The files a worker left pending in its stage slot (it died, or its own in-flight check could
 * not settle them), checked on the remote off the supervisor's loop: in a child of its own,
 * with the in-flight check's rules (reconcile.h) and its deadline, so that a remote that hangs
 * leaves the supervisor answering signals and beating its heart.
 *
 * The child takes the slot over (its pid there), so the account stays busy, to this cplow and
 * any other, until the check ends; the supervisor frees the slot when it reaps the child.
 *
 * A check that cannot finish (the deadline passed, a stop signal, the child killed, a fork that
 * failed) counts what it could not settle at its listed size, without asking the remote, and
 * says so: a file that may have arrived is charged to its account (at worst a file too many,
 * and it stays in the source for a later stage), never left uncounted. Nothing is removed from
 * the source without the remote's answer.
 */
#ifndef CPLOW_DEAD_CHECK_H
#define CPLOW_DEAD_CHECK_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "ledger.h"
#include "stage.h"

struct dead_check {
	struct ledger *ledger;
	int32_t slot;
	const struct stage_spec *spec; /* destination, rclone, its config and environment,
					* the local folder, the work directory */
	const char *who;               /* for the log: the uploader's name */
};

/* How many files the slot holds pending, read under the lock (which recovers a writer that died
 * holding it: a file its logged write counted is not pending). */
size_t dead_check_pending(struct ledger *l, int32_t slot);

/* Forks the check and gives the slot to the child. Returns its pid, or -1 (errno). close_fd is
 * closed in the child (the instance lock). */
pid_t dead_check_start(const struct dead_check *d, int close_fd);

/* Counts the slot's pending files at their listed sizes without asking the remote (a late
 * file's from the local copy, if there is one); why is logged. Returns the files counted. */
size_t dead_check_charge(struct ledger *l, int32_t slot, const char *source, const char *who,
			 const char *why);

#endif
