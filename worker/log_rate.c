#include "log_rate.h"

void log_rate_note(struct log_rate *r, size_t n, int64_t now_us)
{
	int64_t span = now_us - r->window_start_us;
	r->window_bytes += (int64_t)n;
	if (span >= LOG_RATE_WINDOW_US) {
		r->bytes_per_ms = r->window_bytes * 1000 / span;
		r->window_start_us = now_us;
		r->window_bytes = 0;
	}
	r->last_read_us = now_us;
}

int64_t log_rate_batch_wait_us(const struct log_rate *r, int64_t now_us)
{
	/* A window that has not closed for two lengths means the log went quiet since. */
	if (r->bytes_per_ms < LOG_RATE_BURST_BYTES_PER_MS ||
	    now_us - r->window_start_us > 2 * LOG_RATE_WINDOW_US)
		return 0;
	int64_t left = r->last_read_us + LOG_RATE_BATCH_US - now_us;
	return left > 0 ? left : 0;
}
