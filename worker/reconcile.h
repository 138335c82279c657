/*
 * The in-flight check after a stage that rclone did not end cleanly (cut by cplow or a trigger,
 * rclone killed or crashed, or its own fatal exit; anything but exit 0, 8 or 9), or that
 * copied files the listing lacked: a file rclone had started but never reported as Copied may
 * still have arrived whole. The candidates are looked up on the remote with `rclone lsjson`,
 * and one is counted (and, under `move`, its local file removed) only on the evidence rclone
 * itself uses to call two files the same:
 *
 *   - the remote keeps modification times (`rclone backend features`: its Precision): the same
 *     size, and a modification time within that precision of the local file's as it was while
 *     rclone had it open. rclone sets it on upload, so an older version of the file, or
 *     another file of that size, does not match;
 *   - the remote keeps none (it shows when it received the file): the same size, which is all
 *     rclone's own `move` compares there; a file rclone was never seen to have open must also
 *     have been received since the stage began, or it was there before.
 *
 * The candidates: files rclone itself had open (its descriptors, seen when the open-watch
 * reported an open, or its RC transferring list), and files it reported Copied that the
 * listing lacked (late files: whatever the remote holds is what it uploaded). Files only some
 * other process opened (Plex, a checksum pass) are asked about where the remote's times can
 * tell a new copy from an old one, and nowhere else.
 *
 * A killed worker leaves every file it saw opened in its stage slot, the ones not known to be
 * rclone's marked unconfirmed (RECONCILE_UNCONFIRMED to the supervisor's check): rclone may
 * have opened, uploaded and closed a small one before the worker's look. One counts where the
 * remote shows it received the file since the stage began; on a remote with modification
 * times, with rclone's own test of the same file (or, under move, for a file already gone when
 * its open was read, the same size); under copy, one a look found missing among rclone's
 * open files is taken as another process's (RECONCILE_OPENED).
 *
 * Limits: a file rclone opened and closed between two looks at its descriptors (its whole
 * upload inside WORKER_LOOK_MS, 100 ms) whose Copied line was lost to a crash in the
 * moment after the remote took it is counted by the worker only on a remote without
 * modification times, and by a killed worker's check except under copy on a remote that keeps
 * them once a look found it closed; a file another process opened in the moment before a worker was
 * killed, before any look, that the remote already held the same is counted again (over,
 * never under);
 * a file rclone only hashed (a touched file the remote already holds) in flight at a cut is
 * counted though nothing was uploaded (over, never under, and its removal is what rclone's
 * move would do); --modify-window in rclone_extras is not applied.
 *
 * The worker checks its own stage; the supervisor checks the files a worker left pending in
 * its stage slot (it died, or the check could not finish), in a child of its own.
 */
#ifndef CPLOW_RECONCILE_H
#define CPLOW_RECONCILE_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rclone_proc.h"

/* Checks after the stop, in ms: a file whose last bytes were still in the kernel's socket
 * buffers when rclone died arrives after it, so a file not yet there is looked for again. A
 * file still missing at the last check is taken to have been cut short; one that arrives later
 * still is not counted (the dangerous direction, so the schedule errs long: a 4 MiB socket
 * buffer drains in 5 s at 0.8 MB/s). A round that fails is not an answer: the next one asks
 * again. */
#define RECONCILE_ROUNDS 4
#define RECONCILE_SCHEDULE_MS { 0, 1000, 2500, 5000 }
/* The whole check, from its start: a remote that hangs (a stalled server keeps connections
 * open, and rclone waits 5 minutes for them) must not hold up the stage's end, or the
 * supervisor. What is not known by then stays unknown. */
#define RECONCILE_DEADLINE_MS 60000
/* A remote without modification times stamps a file with its own clock, in whole seconds: a
 * copy stamped this long before the stage began is still taken as the stage's. */
#define RECONCILE_CLOCK_SLACK_MS 2000
/* rclone's Precision for "no modification times" is 100 years; anything near it means none. */
#define RECONCILE_NO_MODTIME INT64_MAX

struct reconcile {
	struct rclone_proc features; /* `rclone backend features`, forked before the sandbox */
	bool features_prepared;
	struct rclone_proc rounds[RECONCILE_ROUNDS]; /* lsjson, one per check */
	int prepared;
	char files_from[PATH_MAX];
	int stop_fd;            /* readable: give up now (a stop signal); -1: none */
	int64_t deadline_ms;    /* absolute: the check gives up then; 0: RECONCILE_DEADLINE_MS
				 * from the first question */
	int64_t window_ns;      /* reconcile_features' answer: rclone's modify window, or
				 * RECONCILE_NO_MODTIME; 0 before */
};

/* A candidate's size when rclone said it copied the file but cplow never listed it: whatever
 * the remote holds is whole, and the size is set to it when found. */
#define RECONCILE_SIZE_ANY (-1)

enum reconcile_kind {
	RECONCILE_STARTED = 0, /* rclone had it open, or listed it transferring */
	RECONCILE_OPENED,      /* some process opened it during the stage; not seen as rclone's */
	RECONCILE_LATE,        /* rclone reported it Copied, and the listing lacked it */
	RECONCILE_UNCONFIRMED, /* some process opened it in the moments before its worker died;
				* rclone may have uploaded it (mtime_ns 0: under move, the file
				* is gone, as rclone's move leaves it) */
};

enum reconcile_state {
	RECONCILE_UNKNOWN = 0, /* no check could say (failed, timed out, stopped) */
	RECONCILE_ARRIVED,     /* on the remote, the same file: counted */
	RECONCILE_ABSENT,      /* not on the remote, or not this file, at the last check */
};

struct reconcile_candidate {
	const char *path;     /* as rclone names it, below the destination */
	int64_t size;         /* what a whole upload has, or RECONCILE_SIZE_ANY */
	int64_t mtime_ns;     /* the local file's while rclone had it open; 0 = unknown */
	enum reconcile_kind kind;
	void *user;           /* the caller's, for its count function */
	enum reconcile_state state;
	int64_t remote_mtime_ns; /* the remote copy's, once it arrived; 0 = none shown */
};

/* Counts one candidate that arrived; returns 0 when it counted it. */
typedef int (*reconcile_count_fn)(void *ctx, struct reconcile_candidate *c);

struct reconcile_result {
	int64_t candidates;   /* files that may have been in flight */
	int64_t files;        /* found whole on the remote and counted */
	int64_t bytes;
	int64_t unknown;      /* left RECONCILE_UNKNOWN */
	int rounds;           /* checks it took */
	bool timed_out;       /* the deadline ended it */
	bool stopped;         /* stop_fd ended it */
};

/* Forks the `rclone backend features` process and the rounds' `rclone lsjson --files-from-raw
 * files_from` processes, idle until used; features may be NULL (reconcile_features is then
 * told the window). -1 with errno if a fork failed; what was forked stays usable. */
int reconcile_prepare(struct reconcile *rc, const struct rclone_cmd *features,
		      const struct rclone_cmd *lsjson, const char *files_from);

/* Starts `rclone backend features` now, when a check is likely (a stop was sent), so that its
 * answer is there when the check begins; reconcile_features reads it. */
void reconcile_ask_features(struct reconcile *rc);

/* Asks the remote whether it keeps modification times (rc->window_ns). 0, or -1 with a message
 * in err: then no candidate can be judged, and reconcile_run leaves them all unknown. */
int reconcile_features(struct reconcile *rc, char *err, size_t err_len);

/*
 * Checks the candidates (their order may change) on the schedule from since_ms, calling count
 * for each that arrived, until none is missing or the rounds run out; started_ms is when the
 * stage began (for files rclone was not seen to have open). Sets every candidate's state.
 * Returns 0, or -1 with a message in err (what was counted stays counted). Ends the unused
 * processes.
 */
int reconcile_run(struct reconcile *rc, struct reconcile_candidate *c, size_t n,
		  int64_t since_ms, int64_t started_ms, reconcile_count_fn count, void *ctx,
		  struct reconcile_result *r, char *err, size_t err_len);

/* Whether a remote copy (size, modification time; 0 = none shown) is the candidate's file, by
 * the rules at the top, for a remote with this window. */
bool reconcile_same_file(const struct reconcile_candidate *c, int64_t window_ns, int64_t size,
			 int64_t remote_mtime_ns, int64_t started_ms);

/* Under `move`, deletes an arrived candidate's source file (source_remove_arrived()) if it is
 * still what arrived, as rclone's move would judge it, logging what it did; root is the
 * stage's local folder. */
void reconcile_remove_arrived(const char *root, const struct reconcile *rc,
			      const struct reconcile_candidate *c);

/* "2024-01-02T03:04:05.123456789+01:00" (rclone's lsjson ModTime) in ns since the epoch;
 * -1 when it is not one. */
int reconcile_parse_time(const char *text, int64_t *ns);

/* Ends the processes not used. */
void reconcile_cancel(struct reconcile *rc);

#endif
