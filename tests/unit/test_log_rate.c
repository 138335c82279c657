/*
 * When the worker reads rclone's log in batches (worker/log_rate.c), on synthetic timelines of
 * reads: the shapes of a remote's pace, of rclone at full speed, and of a burst that stops.
 */
#include <criterion/criterion.h>

#include "log_rate.h"

#define LINE 175 /* bytes of a Copied or Deleted line */

/* Reads every period_us from start_us for count reads of n bytes; returns the last time. */
static int64_t steady(struct log_rate *r, int64_t start_us, int64_t period_us, int count,
		      size_t n)
{
	int64_t t = start_us;
	for (int i = 0; i < count; i++, t += period_us)
		log_rate_note(r, n, t);
	return t - period_us;
}

Test(log_rate, a_remotes_pace_never_batches_even_when_two_lines_come_together)
{
	struct log_rate r = { 0 };
	int64_t t = 1000000;
	/* 33 files a second: each a Copied and a Deleted line 40 us apart; every tenth second
	 * eight transfers end within 4 ms. */
	for (int file = 0; file < 330; file++) {
		log_rate_note(&r, LINE, t);
		cr_assert_eq(log_rate_batch_wait_us(&r, t + 40), 0, "file %d, after its Copied", file);
		log_rate_note(&r, LINE, t + 40);
		cr_assert_eq(log_rate_batch_wait_us(&r, t + 41), 0, "file %d, after its Deleted", file);
		t += file % 33 < 8 ? 500 : 30000;
	}
}

Test(log_rate, full_speed_batches_after_one_window_and_waits_at_most_the_batch_period)
{
	struct log_rate r = { 0 };
	/* A line every 130 us, as 20,000 small local files go. */
	int64_t t = steady(&r, 1000000, 130, 200, LINE);
	int64_t wait = log_rate_batch_wait_us(&r, t + 1);
	cr_assert_gt(wait, 0, "a line every 130 us is a burst");
	cr_assert_leq(wait, LOG_RATE_BATCH_US);
	cr_assert_eq(log_rate_batch_wait_us(&r, t + LOG_RATE_BATCH_US), 0,
		     "the batch period is over: read");
	/* The first window is read line by line. */
	struct log_rate fresh = { 0 };
	t = steady(&fresh, 1000000, 130, LOG_RATE_WINDOW_US / 130 - 1, LINE);
	cr_assert_eq(log_rate_batch_wait_us(&fresh, t + 1), 0);
}

Test(log_rate, a_burst_that_stops_stops_batching)
{
	struct log_rate r = { 0 };
	int64_t t = steady(&r, 1000000, 130, 400, LINE);
	cr_assert_gt(log_rate_batch_wait_us(&r, t + 1), 0);
	/* Quiet since: two window lengths later the next line is read at once. */
	cr_assert_eq(log_rate_batch_wait_us(&r, t + 2 * LOG_RATE_WINDOW_US + 1), 0);
	/* And a slow trickle after the burst ends it at the next window. */
	t = steady(&r, t + 5000, 5000, 4, LINE);
	cr_assert_eq(log_rate_batch_wait_us(&r, t + 1), 0);
}
