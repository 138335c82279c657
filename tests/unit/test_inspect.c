/*
 * cplow-inspect's human output (shm/inspect_view.c) against a ledger these tests fill with
 * the widest values a ledger can hold: every line must fit 100 columns, a ban's cause must be
 * readable whole, and a dead supervisor must be reported as such, with when it was last alive.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "inspect_view.h"
#include "ledger.h"

static char shm_name[64];
static struct ledger L;
static int64_t now;

static void setup(void)
{
	snprintf(shm_name, sizeof(shm_name), "/cplow-test-inspect-%d", getpid());
	ledger_unlink(shm_name);
	struct ledger_options o = { .row_capacity = 64, .slot_capacity = 8, .daily_bytes = 1000 };
	cr_assert_eq(ledger_create(shm_name, &o, &L), LEDGER_OK);
	now = ledger_now_ms();
}

static void teardown(void)
{
	ledger_detach(&L);
	ledger_unlink(shm_name);
}

/* The human output of the ledger as it is now; the caller frees it. */
static char *render(void)
{
	struct ledger_copy c;
	cr_assert_eq(ledger_copy_init(&L, &c), LEDGER_OK);
	cr_assert_eq(ledger_read(&L, &c, 1000), LEDGER_OK);
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	cr_assert(f);
	inspect_write_human(f, shm_name, &c, now);
	cr_assert_eq(fclose(f), 0);
	ledger_copy_free(&c);
	cr_log_info("%s", text);
	return text;
}

/* Terminal columns of a line: UTF-8 code points (the test's names are one column each). */
static size_t columns(const char *line, size_t bytes)
{
	size_t n = 0;
	for (size_t i = 0; i < bytes; i++)
		n += ((unsigned char)line[i] & 0xc0) != 0x80;
	return n;
}

static void assert_every_line_fits(const char *text)
{
	for (const char *p = text; *p;) {
		size_t len = strcspn(p, "\n");
		cr_assert_leq(columns(p, len), 100, "%zu columns: \"%.*s\"", columns(p, len), (int)len, p);
		for (size_t i = 0; i < len; i++)
			cr_assert((unsigned char)p[i] >= 0x20 && p[i] != 0x7f,
				  "a control character in \"%.*s\"", (int)len, p);
		p += len + (p[len] == '\n');
	}
}

static void fill_name(char *out, size_t max, const char *unit)
{
	out[0] = '\0';
	while (strlen(out) + strlen(unit) < max)
		strcat(out, unit);
}

Test(inspect, human_output_fits_100_columns_for_extreme_values, .init = setup, .fini = teardown)
{
	char uploader[LEDGER_UPLOADER_MAX], account[LEDGER_ACCOUNT_MAX], cause[LEDGER_CAUSE_MAX];
	fill_name(uploader, sizeof(uploader), "upload\xc3\xa9r-");       /* "é": 2 bytes */
	fill_name(account, sizeof(account), "/keys/s\xc3\xa5\n-");     /* a newline in it too */
	fill_name(cause, sizeof(cause), "User rate limit exceeded\t");
	int32_t big, small, plain;
	cr_assert_eq(ledger_row_get(&L, uploader, account, &big), LEDGER_OK);
	cr_assert_eq(ledger_row_get(&L, uploader, "sa2", &small), LEDGER_OK);
	cr_assert_eq(ledger_row_get(&L, "media", "/k/ok.json", &plain), LEDGER_OK);
	struct ledger_usage u = { .used_bytes = INT64_MAX / 2, .files = INT64_MAX / 3,
				  .first_upload_ms = now - 1000, .reset_at_ms = INT64_MAX / 4,
				  .banned_until_ms = INT64_MAX / 4, .updated_at_ms = now };
	snprintf(u.ban_cause, sizeof(u.ban_cause), "%s", cause);
	cr_assert_eq(ledger_set_usage(&L, big, &u), LEDGER_OK);
	struct ledger_usage v = { .used_bytes = 1023 * 1024 + 1000, .files = 999999,
				  .first_upload_ms = now - 1000, .reset_at_ms = now + 99 * 3600000LL,
				  .banned_until_ms = now + 30 * 86400000LL, .updated_at_ms = now };
	snprintf(v.ban_cause, sizeof(v.ban_cause), "x");
	cr_assert_eq(ledger_set_usage(&L, small, &v), LEDGER_OK);
	cr_assert_eq(ledger_add(&L, plain, 500, now), LEDGER_OK);

	/* Stages: a 7-digit PID with the widths the audit found (500.0 KiB/s, 120m ETA), an
	 * ETA of 16666m39s, and absurd numbers everywhere else. */
	struct ledger_stage s = { .row = plain, .pid = 4194303, .stage_number = 1,
				  .strategy = "conservative_cleanup", .files_done = 99999,
				  .files_total = 100000, .bytes_done = 500 * 1024 * 1023,
				  .bytes_total = 1023LL * 1024 * 1024 * 1024, .rc_speed = 500 * 1024,
				  .rc_eta_s = 7200 };
	int32_t slot;
	cr_assert_eq(ledger_stage_claim(&L, &s, &slot), LEDGER_OK);
	s = (struct ledger_stage){ .row = big, .pid = 1234567, .stage_number = 99,
				   .files_done = INT64_MAX, .files_total = INT64_MAX,
				   .bytes_done = INT64_MAX, .bytes_total = INT64_MAX,
				   .rc_speed = INT64_MAX, .rc_eta_s = 16666 * 60 + 39 };
	memset(s.strategy, 'w', sizeof(s.strategy) - 1);
	cr_assert_eq(ledger_stage_claim(&L, &s, &slot), LEDGER_OK);
	s = (struct ledger_stage){ .row = small, .pid = -1, .files_done = -5, .bytes_done = -5,
				   .rc_speed = -1, .rc_eta_s = INT64_MAX };
	cr_assert_eq(ledger_stage_claim(&L, &s, &slot), LEDGER_OK);
	atomic_store(&L.hdr->generation, UINT64_MAX - 1);
	ledger_note_flush(&L, UINT64_MAX - 2, 1000, 1); /* 1970: an age of decades */
	atomic_store(&L.hdr->supervisor_pid, 2147483647);
	atomic_store(&L.hdr->supervisor_seen_ms, 1000);

	char *text = render();
	assert_every_line_fits(text);
	cr_assert(strstr(text, "\n  4194303 "), "the 7-digit PID is not shown whole");
	cr_assert(strstr(text, "1234567"));
	cr_assert(strstr(text, " 500.0K/s 2h00m\n"), "speed and ETA of the first stage");
	cr_assert(strstr(text, " 11d13h\n"), "16666m39s is not shown as 11d13h");
	cr_assert_null(strstr(text, "16666m"), "a minutes-only ETA");
	cr_assert(strstr(text, "conservative_cleanup"));
	cr_assert(strstr(text, " 1.0 MiB "), "1023.98 KiB rounds to 1.0 MiB, not 1024.0 KiB");
	free(text);
}

Test(inspect, a_ban_cause_is_shown_whole_under_its_account, .init = setup, .fini = teardown)
{
	int32_t row, other;
	cr_assert_eq(ledger_row_get(&L, "media", "/keys/sa3.json", &row), LEDGER_OK);
	cr_assert_eq(ledger_row_get(&L, "media", "/keys/sa4.json", &other), LEDGER_OK);
	cr_assert_eq(ledger_add(&L, row, 100, now), LEDGER_OK);
	cr_assert_eq(ledger_ban(&L, row, now + 25 * 3600000LL,
				"User rate limit exceeded (seen 5 times in 60 s)", now), LEDGER_OK);
	/* A cause as long as the ledger holds: it wraps, and no word of it is lost. */
	char cause[LEDGER_CAUSE_MAX] = "";
	for (int i = 0; strlen(cause) + 12 < sizeof(cause); i++)
		snprintf(cause + strlen(cause), sizeof(cause) - strlen(cause), "word%02d ", i);
	cause[strlen(cause) - 1] = '\0';
	cr_assert_eq(ledger_ban(&L, other, now + 3600000LL, cause, now), LEDGER_OK);

	char *text = render();
	assert_every_line_fits(text);
	const char *sa3 = strstr(text, "  /keys/sa3.json");
	cr_assert(sa3);
	const char *line2 = strchr(sa3, '\n') + 1;
	cr_assert(strncmp(line2, "    ban cause: User rate limit exceeded (seen 5 times in 60 s)\n",
			  62) == 0, "no cause line under the account: %.100s", line2);
	cr_assert(strstr(sa3, " in 25h 00m\n") || strstr(sa3, " in 24h 59m\n"), "the ban's end");

	/* The long cause: its wrapped pieces, joined, are the cause. */
	const char *sa4 = strstr(text, "  /keys/sa4.json");
	cr_assert(sa4);
	const char *p = strchr(sa4, '\n') + 1;
	cr_assert(strncmp(p, "    ban cause: ", 15) == 0, "%.100s", p);
	p += 15;
	char joined[512] = "";
	while (*p && *p != '\n') {
		size_t len = strcspn(p, "\n");
		snprintf(joined + strlen(joined), sizeof(joined) - strlen(joined), "%s%.*s",
			 joined[0] ? " " : "", (int)len, p);
		p += len + 1;
		if (strncmp(p, "               ", 15) != 0) /* continuation lines are indented */
			break;
		p += 15;
	}
	cr_assert_str_eq(joined, cause);
	free(text);
}

Test(inspect, a_dead_supervisor_is_stale_since_it_was_last_seen_alive, .init = setup,
     .fini = teardown)
{
	int32_t row;
	cr_assert_eq(ledger_row_get(&L, "media", "sa1", &row), LEDGER_OK);
	/* The last change was long before the supervisor was last seen. */
	cr_assert_eq(ledger_add(&L, row, 100, now - 5 * 3600000LL), LEDGER_OK);
	/* Our own PID stands for a PID the kernel gave to another process: it answers kill(). */
	atomic_store(&L.hdr->supervisor_pid, (int32_t)getpid());
	atomic_store(&L.hdr->supervisor_seen_ms, now - 2 * 3600000LL);
	char *text = render();
	assert_every_line_fits(text);
	time_t seen = (time_t)((now - 2 * 3600000LL) / 1000);
	struct tm tm;
	gmtime_r(&seen, &tm);
	char want[160], stamp[64];
	strftime(stamp, sizeof(stamp), "%Y-%m-%d %H:%M:%S UTC", &tm);
	snprintf(want, sizeof(want),
		 "\ncplow is not running: stale since it was last seen alive, %s (2h00m ago)\n", stamp);
	cr_assert(strstr(text, want), "wanted %s", want);
	free(text);

	/* A fresh heartbeat from a live PID: running, nothing stale. */
	atomic_store(&L.hdr->supervisor_seen_ms, now - 1000);
	text = render();
	cr_assert_null(strstr(text, "not running"));
	free(text);

	/* Never seen at all. */
	atomic_store(&L.hdr->supervisor_pid, 0);
	atomic_store(&L.hdr->supervisor_seen_ms, 0);
	text = render();
	cr_assert(strstr(text, "\ncplow is not running: this data is stale (cplow was never seen "
				"running on it)\n"));
	free(text);
}
