/*
 * The Plex throttle: a role the supervisor forks (and restarts with backoff) while
 * plex.enabled. While a stage runs, it asks Plex for its sessions every plex.poll_interval
 * seconds (GET <url>/status/sessions, X-Plex-Token, Accept: application/json: Plex answers XML
 * without it) and counts the streams that are playing or buffering (paused ones do not count;
 * with plex.ignore_local_streams, neither do those whose Player.local is true or whose
 * Session.location is "lan").
 *
 * Above plex.max_streams_before_throttle streams, every running stage (but those of an uploader
 * with can_be_throttled false, as cloudplow spared them) is limited to the rate
 * plex.rclone.throttle_speeds gives for that count: the rate of the largest key <= the count,
 * or, when every key is larger, of the smallest key. At or below it the limit is lifted (to the
 * remote's own rclone_extras --bwlimit when it has a plain one, else "off").
 *
 * The request goes into each running stage's ledger slot (ledger_stage_request_bwlimit); the
 * stage's worker passes it to its rclone's core/bwlimit. A stage that starts while a limit
 * holds gets it at once; a stage that ends takes its limit with it.
 *
 * Hysteresis: the first answer after a quiet spell applies at once; after that, a new rate
 * (or the lift) applies only once two polls in a row have asked for it. A failed poll changes
 * nothing. On SIGTERM (the supervisor stopping, or a reload) the role lifts what it set; a role
 * restarted after a crash takes over the limits its predecessor left in the slots.
 */
#ifndef CPLOW_PLEX_H
#define CPLOW_PLEX_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"

/* Consecutive polls a changed rate must hold before it applies. */
#define PLEX_HOLD_POLLS 2

/* What one /status/sessions answer holds. */
struct plex_sessions {
	int sessions;         /* every session listed */
	int active;           /* playing or buffering, local ones included */
	int active_local;     /* of those, local ones */
};

/* Parses Plex's JSON answer (MediaContainer.Metadata[], or .Video[] of older servers).
 * 0 with *out set, or -1 with one line in err. */
int plex_parse_sessions(const char *json, size_t len, struct plex_sessions *out, char *err,
			size_t err_len);

/* The streams that count: active ones, less the local ones when ignore_local. */
int plex_stream_count(const struct plex_sessions *s, bool ignore_local);

/* The rate for `streams` streams, or NULL for no limit (streams <= max_streams_before_throttle,
 * or no throttle_speeds). The string belongs to the config. */
const char *plex_rate_for(const struct config_plex *c, int streams);

/* The throttle's state across polls. Zeroed: nothing known, no limit. */
struct plex_throttle {
	bool known;               /* a poll has set `rate` */
	const char *rate;         /* in force; NULL = no limit */
	const char *pending;      /* asked for by the last polls, not in force yet */
	int pending_polls;
};

/* Feeds one poll's wanted rate (NULL: none); true when the rate in force changed. */
bool plex_throttle_feed(struct plex_throttle *t, const char *wanted);

/* The role: runs until SIGTERM (SIGINT and SIGHUP are ignored: they reach the whole process
 * group from a terminal), then lifts the limits it set; returns an exit code. */
int plex_run(const struct config *c, const char *ledger_name);

#endif
