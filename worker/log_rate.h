#ifndef CPLOW_LOG_RATE_H
#define CPLOW_LOG_RATE_H

#include <stddef.h>
#include <stdint.h>

/*
 * When to read rclone's log in batches. At full speed rclone writes a line every few hundred
 * microseconds, and a wake-up per line cost the worker more CPU than the accounting itself
 * (2 cores, ~40 us a wake-up on a VM). While the log comes faster than about a line a
 * millisecond (LOG_RATE_BURST_BYTES_PER_MS), the pipe is read at most every LOG_RATE_BATCH_US
 * instead: a few files per read, each counted at most that much later.
 *
 * The rate is measured over windows of LOG_RATE_WINDOW_US, not between two reads: a file's
 * Copied and Deleted lines come microseconds apart even at a remote's pace (tens of files a
 * second), and a rate taken from that gap called it a burst, holding the next file back up to
 * LOG_RATE_BATCH_US (the p99 of a paced upload was 2.4 ms for that alone).
 */
#define LOG_RATE_BATCH_US 2000
#define LOG_RATE_BURST_BYTES_PER_MS 200
#define LOG_RATE_WINDOW_US 10000

struct log_rate {
	int64_t last_read_us;     /* when the last read that got data returned */
	int64_t window_start_us;  /* the current window, and its bytes so far */
	int64_t window_bytes;
	int64_t bytes_per_ms;     /* in the last whole window */
};

/* A read of n bytes at now_us (a monotonic clock). */
void log_rate_note(struct log_rate *r, size_t n, int64_t now_us);
/* Microseconds to wait before the next read, 0 = read as soon as there is data. */
int64_t log_rate_batch_wait_us(const struct log_rate *r, int64_t now_us);

#endif
