/*
 * cloudplow's rclone_sleeps: patterns counted over rclone's output lines; when one is seen
 * `count` times within `timeout` seconds it fires, and the worker stops rclone and bans the
 * account for `sleep` hours (cloudplow always banned for 25 h whatever `sleep` said; cplow
 * honours it).
 *
 * Matching, per line (the text from rclone_log_trigger_text()):
 *   - a plain pattern is a substring, compared with ASCII case folding (bytes >= 0x80 compare
 *     exactly, as the C locale's REG_ICASE does). The whole text is searched, NUL bytes
 *     included, in O(text + pattern) time, whatever the pattern.
 *   - "regex:<ERE>" (the prefix is case-sensitive) is a POSIX extended regex, compiled with
 *     REG_EXTENDED|REG_ICASE|REG_NOSUB. regexec() cannot see past a NUL, so a text with NUL
 *     bytes is matched piece by piece: each run of bytes between NULs is tried on its own, and
 *     ^ and $ match at the NULs as they would at line ends. Only the first
 *     TRIGGERS_REGEX_TEXT_MAX bytes of a text are given to regexes (rclone_log's trigger texts
 *     are at most 4 KiB).
 * Every trigger a line hits counts that hit, even when several hit the same line.
 *
 * Window rule: a trigger's window opens at the hit that finds no window open, and covers the
 * half-open interval [first hit, first hit + timeout). A hit exactly `timeout` seconds (to the
 * millisecond) after the window's first hit, or later, opens a new window with a count of 1;
 * so does a hit whose clock reads earlier than the first hit (a clock stepped back). This is
 * cloudplow's `time.time() >= expires` reset. A trigger fires at the hit that brings its
 * window's count to `count`: with count 1 at the first hit (cloudplow needed a second hit).
 *
 * The set fires once: the first trigger, in config order, to reach its count on a line fires,
 * and every later triggers_feed() is a no-op returning -1, since the caller is stopping rclone
 * and the lines still draining from its pipe must not change the ban's cause.
 *
 * Time is always the caller's: every call that needs it takes now_ms (any consistent
 * millisecond clock), so tests drive windows without sleeping. Not thread-safe; one set per
 * worker.
 */
#ifndef CPLOW_TRIGGERS_H
#define CPLOW_TRIGGERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "stage.h"

#define TRIGGERS_REGEX_PREFIX "regex:"
/* Bytes of one text that regexes see; longer texts are cut (substrings see everything). */
#define TRIGGERS_REGEX_TEXT_MAX ((size_t)1 << 20)
/* Longest accepted `sleep`: about 114 years, far below where hours → ms loses precision. */
#define TRIGGERS_SLEEP_HOURS_MAX 1e6
/* Fits every triggers_init() message: the pattern in it is shortened to fit. */
#define TRIGGERS_ERR_MAX 256

/* The trigger that fired, and why. Valid until triggers_free(). */
struct triggers_fire {
	int index;              /* in config order */
	const char *pattern;    /* as configured, "regex:" included; the set's own copy */
	int hits;               /* hits in the window that fired: the trigger's count */
	int timeout_s;
	double sleep_hours;     /* as configured */
	int64_t sleep_ms;       /* the ban's length, rounded up to a whole millisecond */
	int64_t first_hit_ms;   /* the window's first hit */
	int64_t fired_at_ms;    /* the hit that fired it */
};

struct triggers_entry;      /* one compiled trigger and its window; private to triggers.c */

/* Callers read nothing here directly: use the functions below. */
struct triggers {
	struct triggers_entry *entries;
	size_t entry_count;
	char *regex_text;       /* where a text is copied to be NUL-terminated for regexec() */
	size_t regex_text_cap;
	bool fired;
	struct triggers_fire fire;
};

/*
 * Copies and compiles `n` definitions (defs may be NULL when n is 0: a set that never fires).
 * Returns 0, or -1 with a one-line message in err naming the offending pattern:
 * no or empty pattern, a regex that does not compile or that matches the empty string (it would
 * hit every line), count < 1, sleep not a finite number in (0, TRIGGERS_SLEEP_HOURS_MAX],
 * timeout < 0, timeout 0 with count > 1 (no window could ever hold two hits), or out of memory.
 * On failure *t is untouched and there is nothing to free. Allocates only here: feeding lines
 * never allocates.
 */
int triggers_init(struct triggers *t, const struct stage_trigger *defs, size_t n, char *err,
		  size_t err_len);

/*
 * Counts one line's hits at now_ms. `text` need not be NUL-terminated and may hold NUL bytes;
 * len 0 (rclone's stats lines) hits nothing. Returns the index of the trigger that fired on
 * this line, or -1 (nothing fired, or the set fired earlier).
 */
int triggers_feed(struct triggers *t, const char *text, size_t len, int64_t now_ms);

/* The trigger that fired, or NULL while none has. */
const struct triggers_fire *triggers_fired(const struct triggers *t);

/*
 * The ban cause for trigger `index`, from the hits of its latest window, e.g.
 *   "User rate limit exceeded" seen 5 times in 42 s
 * where the seconds are those between the window's first and last hit, rounded up; a single hit
 * reads `seen once`, none `not seen`. Control bytes, '"' and '\' in the pattern are escaped, and
 * a pattern too long for `len` is shortened with "..." so that the counts always fit in
 * LEDGER_CAUSE_MAX (128). Always NUL-terminates when len > 0; an index out of range gives "".
 */
void triggers_describe(const struct triggers *t, int index, char *out, size_t len);

/* Frees everything; *t is left empty, so a second call (or one after a failed init of a zeroed
 * struct) is harmless. */
void triggers_free(struct triggers *t);

#endif
