#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ledger.h"
#include "rclone_log.h"
#include "triggers.h"

/* cloudplow's default rclone_sleeps key. */
#define DEFAULT_PATTERN "User rate limit exceeded"

/* The fake remote's refusal as rclone 1.60.1 logs it in text mode, from
 * tests/fixtures/README.md (the part after "ERROR : q7: "). */
#define FAKE_403_TEXT                                                                           \
	"Failed to copy: {\"error\":{\"errors\":[{\"domain\":\"usageLimits\",\"reason\":"        \
	"\"userRateLimitExceeded\",\"message\":\"User rate limit exceeded.\"}],\"code\":403,"    \
	"\"message\":\"User rate limit exceeded.\"}}: 403 Forbidden"

/* The same error as a --use-json-log line, the form the worker actually reads. */
#define FAKE_403_JSON_LINE                                                                      \
	"{\"level\":\"error\",\"msg\":\"Failed to copy: {\\\"error\\\":{\\\"errors\\\":[{"        \
	"\\\"domain\\\":\\\"usageLimits\\\",\\\"reason\\\":\\\"userRateLimitExceeded\\\","          \
	"\\\"message\\\":\\\"User rate limit exceeded.\\\"}],\\\"code\\\":403,\\\"message\\\":"    \
	"\\\"User rate limit exceeded.\\\"}}: 403 Forbidden\",\"object\":\"q7\",\"objectType\":"  \
	"\"*local.Object\",\"source\":\"operations/operations.go:538\","                           \
	"\"time\":\"2026-11-28T15:06:07.000000+00:00\"}"

#define MIB ((size_t)1 << 20)

static struct stage_trigger def(const char *pattern, int count, double sleep_hours, int timeout_s)
{
	return (struct stage_trigger){ .pattern = pattern, .count = count,
				       .sleep_hours = sleep_hours, .timeout_s = timeout_s };
}

static void init_ok(struct triggers *t, const struct stage_trigger *defs, size_t n)
{
	char err[TRIGGERS_ERR_MAX] = "";
	int rc = triggers_init(t, defs, n, err, sizeof(err));
	cr_assert_eq(rc, 0, "triggers_init: %s", err);
}

/* Runs init expecting failure; returns the message (static). */
static const char *init_error(const struct stage_trigger *defs, size_t n)
{
	static char err[TRIGGERS_ERR_MAX];
	struct triggers t;
	memset(&t, 0xa5, sizeof(t));
	struct triggers before = t;
	err[0] = '\0';
	cr_assert_eq(triggers_init(&t, defs, n, err, sizeof(err)), -1, "init accepted it");
	cr_assert_eq(memcmp(&t, &before, sizeof(t)), 0, "a failed init touched *t");
	cr_assert_neq(err[0], '\0', "no message");
	cr_assert_null(strchr(err, '\n'), "message is not one line: %s", err);
	return err;
}

static int feed(struct triggers *t, const char *text, int64_t now_ms)
{
	return triggers_feed(t, text, strlen(text), now_ms);
}

/* --- matching --------------------------------------------------------------------------- */

Test(triggers, substring_is_case_insensitive)
{
	struct stage_trigger d = def("User Rate LIMIT exceeded", 1, 1, 60);
	const char *lines[] = { "user rate limit exceeded", "USER RATE LIMIT EXCEEDED",
				"x: uSeR rAtE lImIt ExCeEdEd." };
	for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
		struct triggers t;
		init_ok(&t, &d, 1);
		cr_expect_eq(feed(&t, lines[i], 0), 0, "no hit on \"%s\"", lines[i]);
		triggers_free(&t);
	}
	struct triggers t;
	init_ok(&t, &d, 1);
	cr_expect_eq(feed(&t, "User rate limit exceede", 0), -1, "a prefix of the needle hit");
	cr_expect_eq(feed(&t, "User rate  limit exceeded", 0), -1, "a near miss hit");
	triggers_free(&t);
}

Test(triggers, substring_search_survives_self_overlapping_needles)
{
	/* The case where a naive restart after a partial match misses a hit. */
	struct stage_trigger d = def("aab", 1, 1, 60);
	struct triggers t;
	init_ok(&t, &d, 1);
	cr_expect_eq(feed(&t, "AAAB", 0), 0);
	triggers_free(&t);
}

Test(triggers, regex_prefix_works_and_is_case_insensitive)
{
	struct stage_trigger d = def("regex:rate ?limit (exceeded|reached)", 1, 1, 60);
	struct triggers t;

	init_ok(&t, &d, 1);
	cr_expect_eq(feed(&t, "nothing to see", 0), -1);
	cr_expect_eq(feed(&t, "user RATELIMIT REACHED", 0), 0, "regex did not hit, ignoring case");
	triggers_free(&t);

	init_ok(&t, &d, 1);
	cr_expect_eq(feed(&t, "Rate limit Exceeded", 0), 0);
	triggers_free(&t);

	/* Without the prefix the same text is a literal substring. */
	struct stage_trigger literal = def("rate ?limit", 1, 1, 60);
	init_ok(&t, &literal, 1);
	cr_expect_eq(feed(&t, "rate limit", 0), -1, "an unprefixed pattern was read as a regex");
	cr_expect_eq(feed(&t, "RATE ?LIMIT", 0), 0);
	triggers_free(&t);
}

Test(triggers, regex_is_extended_and_anchored_per_line)
{
	struct stage_trigger d = def("regex:^Failed to (copy|move): .*403", 1, 1, 60);
	struct triggers t;
	init_ok(&t, &d, 1);
	cr_expect_eq(feed(&t, "Attempt 1/3: Failed to copy: 403", 0), -1, "^ ignored");
	cr_expect_eq(feed(&t, "failed to MOVE: x 403 Forbidden", 0), 0);
	triggers_free(&t);
}

Test(triggers, one_line_counts_for_every_trigger_it_hits)
{
	struct stage_trigger d[] = { def("rate limit", 3, 1, 60), def("regex:exceed", 2, 1, 60) };
	struct triggers t;
	init_ok(&t, d, 2);
	cr_expect_eq(feed(&t, "rate limit exceeded", 0), -1);
	/* The second trigger reaches its count first, so it fires though listed second. */
	cr_expect_eq(feed(&t, "rate limit exceeded", 1), 1);
	triggers_free(&t);
}

Test(triggers, first_in_config_order_fires_when_two_reach_count_on_one_line)
{
	struct stage_trigger d[] = { def("limit", 2, 1, 60), def("rate", 2, 7, 60) };
	struct triggers t;
	init_ok(&t, d, 2);
	cr_expect_eq(feed(&t, "rate limit", 0), -1);
	cr_expect_eq(feed(&t, "rate limit", 1), 0);
	const struct triggers_fire *f = triggers_fired(&t);
	cr_assert_not_null(f);
	cr_expect_str_eq(f->pattern, "limit");
	cr_expect_eq(f->index, 0);
	triggers_free(&t);
}

/* --- the window ------------------------------------------------------------------------- */

Test(triggers, fires_exactly_at_the_count_th_hit_within_timeout)
{
	struct stage_trigger d = def(DEFAULT_PATTERN, 5, 25, 60);
	struct triggers t;
	init_ok(&t, &d, 1);
	for (int i = 0; i < 4; i++) {
		cr_assert_eq(feed(&t, DEFAULT_PATTERN, 1000 + i * 10000), -1, "fired at hit %d", i + 1);
		cr_assert_null(triggers_fired(&t));
		/* Lines that do not hit change nothing in between. */
		cr_assert_eq(feed(&t, "Copied (new)", 1000 + i * 10000 + 1), -1);
	}
	cr_expect_eq(feed(&t, DEFAULT_PATTERN, 1000 + 59999), 0, "did not fire at the 5th hit");
	const struct triggers_fire *f = triggers_fired(&t);
	cr_assert_not_null(f);
	cr_expect_eq(f->hits, 5);
	cr_expect_eq(f->first_hit_ms, 1000);
	cr_expect_eq(f->fired_at_ms, 60999);
	triggers_free(&t);
}

Test(triggers, count_one_fires_at_the_first_hit)
{
	struct stage_trigger d = def(DEFAULT_PATTERN, 1, 1, 0);
	struct triggers t;
	init_ok(&t, &d, 1);
	cr_expect_eq(feed(&t, DEFAULT_PATTERN, 0), 0);
	triggers_free(&t);
}

Test(triggers, hits_spread_wider_than_timeout_never_fire)
{
	struct stage_trigger d = def(DEFAULT_PATTERN, 3, 1, 60);
	struct triggers t;
	init_ok(&t, &d, 1);
	/* Two hits per window, forever: the third always opens a new window. */
	int64_t now = 0;
	for (int i = 0; i < 1000; i++) {
		cr_assert_eq(feed(&t, DEFAULT_PATTERN, now), -1, "fired at hit %d", i + 1);
		now += (i % 2 == 0) ? 59000 : 1000;
	}
	cr_expect_null(triggers_fired(&t));
	triggers_free(&t);
}

Test(triggers, window_restarts_exactly_at_first_hit_plus_timeout)
{
	struct stage_trigger d = def(DEFAULT_PATTERN, 2, 1, 60);
	struct triggers t;

	/* One millisecond before the boundary: still the same window. */
	init_ok(&t, &d, 1);
	cr_expect_eq(feed(&t, DEFAULT_PATTERN, 5000), -1);
	cr_expect_eq(feed(&t, DEFAULT_PATTERN, 5000 + 59999), 0);
	triggers_free(&t);

	/* At the boundary: a new window, with a count of 1... */
	init_ok(&t, &d, 1);
	cr_expect_eq(feed(&t, DEFAULT_PATTERN, 5000), -1);
	cr_expect_eq(feed(&t, DEFAULT_PATTERN, 5000 + 60000), -1);
	/* ...that is measured from the hit that opened it. */
	cr_expect_eq(feed(&t, DEFAULT_PATTERN, 5000 + 60000 + 59999), 0);
	cr_expect_eq(triggers_fired(&t)->first_hit_ms, 65000);
	triggers_free(&t);
}

Test(triggers, clock_stepping_back_opens_a_new_window)
{
	struct stage_trigger d = def(DEFAULT_PATTERN, 2, 1, 60);
	struct triggers t;
	init_ok(&t, &d, 1);
	cr_expect_eq(feed(&t, DEFAULT_PATTERN, 100000), -1);
	cr_expect_eq(feed(&t, DEFAULT_PATTERN, 99000), -1);
	cr_expect_eq(feed(&t, DEFAULT_PATTERN, 99500), 0);
	triggers_free(&t);
}

Test(triggers, extreme_clock_values_do_not_overflow)
{
	struct stage_trigger d = def(DEFAULT_PATTERN, 2, 1, INT32_MAX);
	struct triggers t;
	init_ok(&t, &d, 1);
	cr_expect_eq(feed(&t, DEFAULT_PATTERN, INT64_MIN), -1);
	/* Far more than INT32_MAX s later: a new window, computed without signed overflow. */
	cr_expect_eq(feed(&t, DEFAULT_PATTERN, INT64_MAX), -1);
	cr_expect_eq(feed(&t, DEFAULT_PATTERN, INT64_MAX), 0);
	triggers_free(&t);
}

Test(triggers, fires_once_only)
{
	struct stage_trigger d[] = { def("first", 1, 1, 60), def("second", 1, 1, 60) };
	struct triggers t;
	init_ok(&t, d, 2);
	cr_expect_eq(feed(&t, "first", 0), 0);
	const struct triggers_fire *f = triggers_fired(&t);
	cr_assert_not_null(f);
	struct triggers_fire saved = *f;
	cr_expect_eq(feed(&t, "first", 1), -1, "fired twice");
	cr_expect_eq(feed(&t, "second", 2), -1, "another trigger fired after the first");
	f = triggers_fired(&t);
	cr_assert_not_null(f);
	cr_expect_eq(f->index, 0);
	cr_expect_eq(f->hits, saved.hits);
	cr_expect_eq(f->fired_at_ms, saved.fired_at_ms);
	triggers_free(&t);
}

Test(triggers, sleep_hours_carried_through)
{
	struct stage_trigger d[] = { def("a", 1, 25, 60), def("b", 1, 2.5, 60) };
	struct triggers t;
	init_ok(&t, d, 2);
	cr_expect_eq(feed(&t, "b", 0), 1);
	const struct triggers_fire *f = triggers_fired(&t);
	cr_assert_not_null(f);
	cr_expect_eq(f->sleep_hours, 2.5, "sleep %g h, not the configured 2.5", f->sleep_hours);
	cr_expect_eq(f->sleep_ms, 9000000, "ban of %lld ms", (long long)f->sleep_ms);
	cr_expect_eq(f->timeout_s, 60);
	triggers_free(&t);

	/* A sleep shorter than a millisecond still bans, for the 1 ms it rounds up to. */
	struct stage_trigger tiny = def("a", 1, 1e-9, 60);
	init_ok(&t, &tiny, 1);
	cr_expect_eq(feed(&t, "a", 0), 0);
	cr_expect_eq(triggers_fired(&t)->sleep_ms, 1);
	triggers_free(&t);
}

/* --- describe --------------------------------------------------------------------------- */

Test(triggers, describe_text)
{
	struct stage_trigger d[] = { def(DEFAULT_PATTERN, 5, 25, 60), def("regex:quota", 3, 1, 60) };
	struct triggers t;
	char out[LEDGER_CAUSE_MAX];
	init_ok(&t, d, 2);

	triggers_describe(&t, 0, out, sizeof(out));
	cr_expect_str_eq(out, "\"User rate limit exceeded\" not seen");
	feed(&t, DEFAULT_PATTERN " quota", 0);
	triggers_describe(&t, 0, out, sizeof(out));
	cr_expect_str_eq(out, "\"User rate limit exceeded\" seen once");
	for (int i = 1; i < 4; i++)
		feed(&t, DEFAULT_PATTERN, i * 10000);
	cr_expect_eq(feed(&t, DEFAULT_PATTERN, 59999), 0);
	triggers_describe(&t, triggers_fired(&t)->index, out, sizeof(out));
	/* 59.999 s between first and last hit, rounded up. */
	cr_expect_str_eq(out, "\"User rate limit exceeded\" seen 5 times in 60 s");
	triggers_describe(&t, 1, out, sizeof(out));
	cr_expect_str_eq(out, "\"regex:quota\" seen once");

	triggers_describe(&t, 2, out, sizeof(out));
	cr_expect_str_eq(out, "", "an index out of range gave \"%s\"", out);
	triggers_describe(&t, -1, out, sizeof(out));
	cr_expect_str_eq(out, "");
	triggers_free(&t);
}

Test(triggers, describe_escapes_and_shortens_long_patterns_keeping_the_counts)
{
	/* Slide a run of "é" (2 bytes each) across where the cut falls, so that some runs put a
	 * character across it. */
	for (size_t at = 88; at < 108; at++) {
		char pattern[400];
		memset(pattern, 'x', sizeof(pattern) - 1);
		pattern[sizeof(pattern) - 1] = '\0';
		memcpy(pattern, "say \"hi\"\t", 9);
		for (size_t k = 0; k < 8; k++)
			memcpy(pattern + at + 2 * k, "\xc3\xa9", 2);

		struct stage_trigger d = def(pattern, 2, 1, 60);
		struct triggers t;
		char out[LEDGER_CAUSE_MAX];
		init_ok(&t, &d, 1);
		feed(&t, pattern, 0);
		cr_assert_eq(feed(&t, pattern, 3000), 0);
		triggers_describe(&t, 0, out, sizeof(out));

		const char *head = "\"say \\\"hi\\\"\\x09xxx";
		cr_assert_eq(strncmp(out, head, strlen(head)), 0, "escaping: %s", out);
		const char *tail = "...\" seen 2 times in 3 s";
		size_t n = strlen(out), tail_len = strlen(tail);
		cr_assert_lt(n, sizeof(out));
		cr_assert_geq(n, tail_len);
		cr_assert_str_eq(out + n - tail_len, tail, "counts lost: %s", out);
		/* Every lead byte kept still has its continuation byte: no character was split. */
		for (size_t i = 0; i < n - tail_len; i++) {
			if ((unsigned char)out[i] == 0xc3)
				cr_assert_eq((unsigned char)out[i + 1], 0xa9, "split at %zu (run at %zu)",
					     i, at);
		}

		/* Smaller buffers: still terminated, still in bounds. */
		for (size_t len = 1; len < 40; len++) {
			char small[40];
			memset(small, '#', sizeof(small));
			triggers_describe(&t, 0, small, len);
			cr_assert_lt(strlen(small), len);
			cr_assert_eq(small[len], '#', "wrote past len %zu", len);
		}
		triggers_free(&t);
	}
}

/* --- init errors ------------------------------------------------------------------------ */

Test(triggers, bad_regex_message_names_the_pattern)
{
	struct stage_trigger d[] = { def("fine", 1, 1, 60), def("regex:(unclosed", 1, 1, 60) };
	const char *err = init_error(d, 2);
	cr_expect(strstr(err, "\"regex:(unclosed\"") != NULL, "pattern not named: %s", err);
	cr_expect(strstr(err, "invalid regex") != NULL, "%s", err);
}

Test(triggers, regex_hitting_every_line_is_refused)
{
	const char *patterns[] = { "regex:", "regex:x*", "regex:^", "" };
	for (size_t i = 0; i < sizeof(patterns) / sizeof(patterns[0]); i++) {
		struct stage_trigger d = def(patterns[i], 1, 1, 60);
		const char *err = init_error(&d, 1);
		cr_expect(strstr(err, "every line") != NULL, "%s: %s", patterns[i], err);
	}
	struct stage_trigger none = def(NULL, 1, 1, 60);
	cr_expect(strstr(init_error(&none, 1), "entry 1") != NULL);
}

Test(triggers, invalid_count_sleep_timeout_messages)
{
	struct {
		struct stage_trigger def;
		const char *expect;
	} cases[] = {
		{ def("p", 0, 1, 60), "rclone_sleeps \"p\": count must be at least 1 (got 0)" },
		{ def("p", -3, 1, 60), "rclone_sleeps \"p\": count must be at least 1 (got -3)" },
		{ def("p", 1, 0, 60),
		  "rclone_sleeps \"p\": sleep must be more than 0 and at most 1e+06 hours (got 0)" },
		{ def("p", 1, -2, 60),
		  "rclone_sleeps \"p\": sleep must be more than 0 and at most 1e+06 hours (got -2)" },
		{ def("p", 1, NAN, 60),
		  "rclone_sleeps \"p\": sleep must be more than 0 and at most 1e+06 hours (got nan)" },
		{ def("p", 1, 2e6, 60),
		  "rclone_sleeps \"p\": sleep must be more than 0 and at most 1e+06 hours (got 2e+06)" },
		{ def("p", 1, 1, -1), "rclone_sleeps \"p\": timeout must be 0 or more seconds (got -1)" },
		{ def("p", 2, 1, 0),
		  "rclone_sleeps \"p\": timeout 0 s closes every window at its first hit, so count 2 "
		  "is never reached" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		cr_expect_str_eq(init_error(&cases[i].def, 1), cases[i].expect);
}

Test(triggers, error_message_fits_and_stays_one_line_for_hostile_patterns)
{
	char pattern[1000];
	memset(pattern, 'y', sizeof(pattern) - 1);
	pattern[sizeof(pattern) - 1] = '\0';
	pattern[3] = '\n';
	struct stage_trigger d = def(pattern, 0, 1, 60);
	const char *err = init_error(&d, 1);
	cr_expect(strstr(err, "yyy\\x0ay") != NULL, "%s", err);
	cr_expect(strstr(err, "...\": count must be at least 1") != NULL, "reason cut: %s", err);

	/* A too-small err buffer is still terminated. */
	char small[8];
	struct triggers t;
	cr_expect_eq(triggers_init(&t, &d, 1, small, sizeof(small)), -1);
	cr_expect_eq(strlen(small), sizeof(small) - 1);
	cr_expect_eq(triggers_init(&t, &d, 1, NULL, 0), -1);
}

/* --- untrusted text --------------------------------------------------------------------- */

Test(triggers, megabyte_line_with_the_needle_at_the_end_matches, .timeout = 60)
{
	char *line = malloc(MIB);
	cr_assert_not_null(line);
	memset(line, 'u', MIB);
	const size_t needle_len = strlen(DEFAULT_PATTERN);
	memcpy(line + MIB - needle_len, "USER RATE LIMIT EXCEEDED", needle_len);

	struct stage_trigger d[] = { def(DEFAULT_PATTERN, 1, 1, 60),
				     def("regex:limit exceeded$", 1, 1, 60) };
	struct triggers t;
	init_ok(&t, &d[0], 1);
	cr_expect_eq(triggers_feed(&t, line, MIB - 1, 0), -1, "hit with the last byte cut off");
	cr_expect_eq(triggers_feed(&t, line, MIB, 0), 0, "substring missed at the end");
	triggers_free(&t);

	init_ok(&t, &d[1], 1);
	cr_expect_eq(triggers_feed(&t, line, MIB, 0), 0, "regex missed at the end");
	triggers_free(&t);
	free(line);
}

Test(triggers, nuls_before_the_needle_still_match_for_substring, .timeout = 60)
{
	char *line = calloc(1, MIB); /* all NULs */
	cr_assert_not_null(line);
	const size_t needle_len = strlen(DEFAULT_PATTERN);
	memcpy(line + MIB - needle_len, DEFAULT_PATTERN, needle_len);
	line[10] = 'U'; /* a partial start that the NULs must break */

	struct stage_trigger d = def(DEFAULT_PATTERN, 1, 1, 60);
	struct triggers t;
	init_ok(&t, &d, 1);
	cr_expect_eq(triggers_feed(&t, line, MIB, 0), 0);
	triggers_free(&t);
	free(line);

	/* A NUL inside the needle's span is not a match. */
	const char split[] = "User rate\0limit exceeded";
	init_ok(&t, &d, 1);
	cr_expect_eq(triggers_feed(&t, split, sizeof(split) - 1, 0), -1);
	triggers_free(&t);
}

Test(triggers, regexes_try_each_piece_between_nuls)
{
	const char text[] = "first\0Failed to copy: 403\0last";
	struct stage_trigger d[] = { def("regex:^failed to copy: [0-9]+$", 1, 1, 60),
				     def("regex:last", 1, 1, 60), def("regex:first.last", 1, 1, 60) };
	struct triggers t;
	for (size_t i = 0; i < 2; i++) {
		init_ok(&t, &d[i], 1);
		cr_expect_eq(triggers_feed(&t, text, sizeof(text) - 1, 0), 0, "%s", d[i].pattern);
		triggers_free(&t);
	}
	init_ok(&t, &d[2], 1);
	cr_expect_eq(triggers_feed(&t, text, sizeof(text) - 1, 0), -1, "matched across a NUL");
	triggers_free(&t);
}

Test(triggers, worst_case_needle_is_linear, .timeout = 30)
{
	/* "aaa...ab" against megabytes of "a": quadratic search would take minutes. */
	char needle[4097];
	memset(needle, 'a', sizeof(needle) - 2);
	needle[sizeof(needle) - 2] = 'b';
	needle[sizeof(needle) - 1] = '\0';
	char *line = malloc(MIB);
	cr_assert_not_null(line);
	memset(line, 'A', MIB);

	struct stage_trigger d = def(needle, 1, 1, 60);
	struct triggers t;
	init_ok(&t, &d, 1);
	for (int i = 0; i < 20; i++)
		cr_assert_eq(triggers_feed(&t, line, MIB, i), -1);
	line[MIB - 1] = 'B';
	cr_expect_eq(triggers_feed(&t, line, MIB, 99), 0);
	triggers_free(&t);
	free(line);
}

Test(triggers, empty_text_hits_nothing)
{
	struct stage_trigger d[] = { def("a", 1, 1, 60), def("regex:a|b", 1, 1, 60) };
	struct triggers t;
	init_ok(&t, d, 2);
	cr_expect_eq(triggers_feed(&t, "", 0, 0), -1);
	cr_expect_eq(triggers_feed(&t, NULL, 0, 0), -1);
	cr_expect_null(triggers_fired(&t));
	triggers_free(&t);
}

Test(triggers, no_trigger_defs_never_fire)
{
	struct triggers t;
	init_ok(&t, NULL, 0);
	for (int i = 0; i < 100; i++)
		cr_assert_eq(feed(&t, FAKE_403_TEXT, i), -1);
	cr_expect_null(triggers_fired(&t));
	char out[16] = "unchanged";
	triggers_describe(&t, 0, out, sizeof(out));
	cr_expect_str_eq(out, "");
	triggers_free(&t);
	triggers_free(&t); /* harmless twice */
}

/* --- the real line ---------------------------------------------------------------------- */

/*
 * cloudplow's default pattern hits the fake remote's 403, in both forms rclone writes it. The
 * pattern many cloudplow configs carry, "Failed to copy: googleapi: Error 403: User rate limit
 * exceeded", is written for Drive's own error text ("googleapi: Error 403: ..."); the fake
 * answers like a WebDAV server, rclone prints its JSON body instead, and that pattern must NOT
 * hit: integration tests against the fake have to use the default pattern (or a regex).
 */
Test(triggers, fake_remote_403_line_matches_the_default_pattern_not_the_googleapi_one)
{
	static struct rclone_log_event ev; /* 8.5 KiB: keep it off the stack */
	cr_assert_eq(rclone_log_parse(FAKE_403_JSON_LINE, strlen(FAKE_403_JSON_LINE), &ev),
		     RCLONE_LOG_FAILED);
	size_t json_len;
	const char *json_text = rclone_log_trigger_text(&ev, &json_len);
	cr_assert_eq(json_len, strlen(FAKE_403_TEXT));
	cr_assert_eq(memcmp(json_text, FAKE_403_TEXT, json_len), 0, "parser gave: %.*s",
		     (int)json_len, json_text);

	const char *plain = "2026/11/28 15:06:07 ERROR : q7: " FAKE_403_TEXT;
	struct {
		const char *text;
		size_t len;
	} forms[] = { { json_text, json_len }, { plain, strlen(plain) } };

	for (size_t i = 0; i < 2; i++) {
		struct stage_trigger d[] = {
			def("Failed to copy: googleapi: Error 403: User rate limit exceeded", 1, 1, 60),
			def(DEFAULT_PATTERN, 1, 25, 60),
		};
		struct triggers t;
		init_ok(&t, d, 2);
		cr_expect_eq(triggers_feed(&t, forms[i].text, forms[i].len, 0), 1, "form %zu", i);
		triggers_free(&t);

		init_ok(&t, &d[0], 1);
		cr_expect_eq(triggers_feed(&t, forms[i].text, forms[i].len, 0), -1,
			     "the googleapi pattern hit the fake's line (form %zu)", i);
		triggers_free(&t);
	}

	/* ...while it does hit Drive's own wording (REFERENCE.md §3). */
	struct stage_trigger g =
		def("Failed to copy: googleapi: Error 403: User rate limit exceeded", 1, 1, 60);
	struct triggers t;
	init_ok(&t, &g, 1);
	cr_expect_eq(feed(&t, "Failed to copy: googleapi: Error 403: User rate limit exceeded., "
			      "userRateLimitExceeded", 0), 0);
	triggers_free(&t);
}
