#include "progress.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

#define PROGRESS_PENDING_MAX 8192

static int progress_tty = -1;
static int progress_pipe[2] = { -1, -1 };
static int progress_lines;        /* lines the block occupies now */
static int64_t progress_drawn_ms;
static char progress_block[LEDGER_DEFAULT_SLOTS * 160];
static size_t progress_block_len;
static char progress_pending[PROGRESS_PENDING_MAX]; /* a child's line not ended yet */
static size_t progress_pending_len;

static void put(const char *s, size_t n)
{
	while (n > 0) {
		ssize_t w = write(progress_tty, s, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return;
		s += w;
		n -= (size_t)w;
	}
}

/* Moves up over the block and clears it: the next output takes its place. */
static void erase_block(void)
{
	char seq[32];
	if (progress_lines > 0) {
		int n = snprintf(seq, sizeof(seq), "\033[%dF\033[J", progress_lines);
		put(seq, (size_t)n);
	}
	progress_lines = 0;
}

static void show_block(void)
{
	put(progress_block, progress_block_len);
	progress_lines = 0;
	for (size_t i = 0; i < progress_block_len; i++)
		progress_lines += progress_block[i] == '\n';
}

/* A log line of anyone's: above the block. */
static void print_line(const char *line, size_t len)
{
	erase_block();
	put(line, len);
	if (len == 0 || line[len - 1] != '\n')
		put("\n", 1);
	show_block();
}

int progress_start(int tty_fd)
{
	if (pipe2(progress_pipe, O_CLOEXEC | O_NONBLOCK) < 0)
		return -1;
	progress_tty = tty_fd;
	log_set_sink(print_line);
	return progress_pipe[1];
}

int progress_input_fd(void)
{
	return progress_pipe[0];
}

void progress_on_input(void)
{
	for (;;) {
		ssize_t n = read(progress_pipe[0], progress_pending + progress_pending_len,
				 sizeof(progress_pending) - progress_pending_len);
		if (n <= 0)
			return;
		progress_pending_len += (size_t)n;
		size_t start = 0;
		for (size_t i = 0; i < progress_pending_len; i++) {
			if (progress_pending[i] == '\n') {
				print_line(progress_pending + start, i + 1 - start);
				start = i + 1;
			}
		}
		if (start == 0 && progress_pending_len == sizeof(progress_pending)) {
			print_line(progress_pending, progress_pending_len); /* an over-long line */
			start = progress_pending_len;
		}
		memmove(progress_pending, progress_pending + start, progress_pending_len - start);
		progress_pending_len -= start;
	}
}

static void human(double v, char *out, size_t len)
{
	static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	int u = 0;
	while (v >= 1024 && u < 4) {
		v /= 1024;
		u++;
	}
	snprintf(out, len, u ? "%.1f %s" : "%.0f %s", v, units[u]);
}

void progress_draw(const struct ledger_copy *c, int64_t now_ms)
{
	if (progress_tty < 0 || now_ms - progress_drawn_ms < PROGRESS_INTERVAL_MS)
		return;
	progress_drawn_ms = now_ms;
	size_t o = 0;
	for (uint32_t i = 0; i < c->slot_capacity; i++) {
		const struct ledger_stage *s = &c->stages[i];
		if (s->state != LEDGER_STAGE_RUNNING || (uint32_t)s->row >= c->row_count)
			continue;
		const struct ledger_row *r = &c->rows[s->row];
		const char *acct = strrchr(r->account, '/') ? strrchr(r->account, '/') + 1 : r->account;
		char done[24], total[24], speed[24], left[24], eta[48];
		human((double)s->bytes_done, done, sizeof(done));
		human((double)s->bytes_total, total, sizeof(total));
		human((double)s->rc_speed, speed, sizeof(speed));
		human((double)ledger_usage_remaining(&r->usage, c->daily_bytes,
						     (enum ledger_window)c->window, now_ms),
		      left, sizeof(left));
		if (s->rc_eta_s >= 0)
			snprintf(eta, sizeof(eta), "%lldm%02llds", (long long)(s->rc_eta_s / 60),
				 (long long)(s->rc_eta_s % 60));
		else
			snprintf(eta, sizeof(eta), "-");
		char line[512];
		int n = snprintf(line, sizeof(line),
				 "%.16s %.24s: %lld/%lld files, %s/%s, %s/s, ETA %s, quota left %s\n",
				 r->uploader, acct, (long long)s->files_done, (long long)s->files_total,
				 done, total, speed, eta, left);
		if (n < 0 || (size_t)n >= sizeof(line) || (size_t)n >= sizeof(progress_block) - o)
			break;
		memcpy(progress_block + o, line, (size_t)n);
		o += (size_t)n;
	}
	erase_block();
	progress_block_len = o;
	show_block();
}

void progress_finish(void)
{
	if (progress_tty < 0)
		return;
	progress_on_input();
	if (progress_pending_len)
		print_line(progress_pending, progress_pending_len);
	progress_pending_len = 0;
	erase_block();
	progress_block_len = 0;
	log_set_sink(NULL);
	progress_tty = -1;
}
