#include <criterion/criterion.h>
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "import.h"
#include "ledger.h"
#include "ledger_file.h"
#include "lock.h"

#define H LEDGER_HOUR_MS
#define DAY LEDGER_DAY_MS

/* ---- the merge rules, as pure functions ---- */

static struct ledger_usage fixed_usage(int64_t bytes, int64_t reset_at_ms)
{
	struct ledger_usage u = { 0 };
	u.used_bytes = bytes;
	u.reset_at_ms = reset_at_ms;
	u.first_upload_ms = reset_at_ms ? reset_at_ms - DAY : 0;
	return u;
}

Test(import_merge, an_account_the_ledger_lacks_is_added_as_the_file_has_it)
{
	int64_t now = 1000 * DAY;
	struct ledger_usage file = fixed_usage(5000, now + H), out;
	cr_assert_eq(import_merge(NULL, &file, LEDGER_WINDOW_FIXED, now, &out), IMPORT_ADDED);
	cr_assert_eq(out.used_bytes, 5000);
	cr_assert_eq(out.reset_at_ms, now + H);
	cr_assert_eq(out.updated_at_ms, now);
}

Test(import_merge, more_bytes_in_the_ledger_are_kept_unchanged)
{
	int64_t now = 1000 * DAY;
	struct ledger_usage live = fixed_usage(9000, now + 2 * H), file = fixed_usage(3000, now + 5 * H);
	live.files = 7;
	struct ledger_usage out;
	cr_assert_eq(import_merge(&live, &file, LEDGER_WINDOW_FIXED, now, &out), IMPORT_KEPT);
	cr_assert_eq(memcmp(&out, &live, sizeof(out)), 0);
}

Test(import_merge, more_bytes_in_the_file_raise_the_row_and_keep_the_later_reset)
{
	int64_t now = 1000 * DAY;
	struct ledger_usage live = fixed_usage(9000, now + 2 * H), file = fixed_usage(20000, now + H);
	struct ledger_usage out;
	cr_assert_eq(import_merge(&live, &file, LEDGER_WINDOW_FIXED, now, &out), IMPORT_RAISED);
	cr_assert_eq(out.used_bytes, 20000);
	/* Never below either at any moment: the ledger's 9000 counted until now + 2 h. */
	cr_assert_eq(out.reset_at_ms, now + 2 * H);
	for (int64_t t = now; t < now + 3 * H; t += H / 4) {
		int64_t merged = ledger_usage_used(&out, LEDGER_WINDOW_FIXED, t);
		cr_assert_geq(merged, ledger_usage_used(&live, LEDGER_WINDOW_FIXED, t));
		cr_assert_geq(merged, ledger_usage_used(&file, LEDGER_WINDOW_FIXED, t));
	}
}

Test(import_merge, an_ended_window_in_the_ledger_counts_nothing)
{
	int64_t now = 1000 * DAY;
	struct ledger_usage live = fixed_usage(90000, now - H), file = fixed_usage(100, now + H);
	struct ledger_usage out;
	cr_assert_eq(import_merge(&live, &file, LEDGER_WINDOW_FIXED, now, &out), IMPORT_RAISED);
	cr_assert_eq(out.used_bytes, 100);
	cr_assert_eq(out.reset_at_ms, now + H);
}

Test(import_merge, a_later_ban_in_the_file_is_taken_an_earlier_one_is_not)
{
	int64_t now = 1000 * DAY;
	struct ledger_usage live = fixed_usage(9000, now + H), file = fixed_usage(10, now + H), out;
	live.banned_until_ms = now + 2 * H;
	snprintf(live.ban_cause, sizeof(live.ban_cause), "ledger's");
	file.banned_until_ms = now + 25 * H;
	snprintf(file.ban_cause, sizeof(file.ban_cause), "rate limit");
	cr_assert_eq(import_merge(&live, &file, LEDGER_WINDOW_FIXED, now, &out), IMPORT_RAISED);
	cr_assert_eq(out.used_bytes, 9000);
	cr_assert_eq(out.banned_until_ms, now + 25 * H);
	cr_assert_str_eq(out.ban_cause, "rate limit");
	file.banned_until_ms = now + H;
	cr_assert_eq(import_merge(&live, &file, LEDGER_WINDOW_FIXED, now, &out), IMPORT_KEPT);
	cr_assert_eq(out.banned_until_ms, now + 2 * H);
}

Test(import_merge, rolling_takes_the_larger_bucket_hour_by_hour)
{
	int64_t now = 1000 * DAY + 10 * H + 5, hour = now / H;
	struct ledger_usage live = { 0 }, file = { 0 }, out;
	live.hour_index[(hour - 3) % LEDGER_HOURS] = hour - 3;
	live.hour_bytes[(hour - 3) % LEDGER_HOURS] = 100;
	live.hour_index[hour % LEDGER_HOURS] = hour;
	live.hour_bytes[hour % LEDGER_HOURS] = 50;
	file.hour_index[(hour - 3) % LEDGER_HOURS] = hour - 3;
	file.hour_bytes[(hour - 3) % LEDGER_HOURS] = 40;
	file.hour_index[hour % LEDGER_HOURS] = hour;
	file.hour_bytes[hour % LEDGER_HOURS] = 70;
	file.hour_index[(hour - 30) % LEDGER_HOURS] = hour - 30; /* out of the window: ignored */
	file.hour_bytes[(hour - 30) % LEDGER_HOURS] = 1000000;
	cr_assert_eq(import_merge(&live, &file, LEDGER_WINDOW_ROLLING, now, &out), IMPORT_RAISED);
	cr_assert_eq(ledger_usage_used(&out, LEDGER_WINDOW_ROLLING, now), 170);
	cr_assert_eq(out.used_bytes, 170);
	cr_assert_eq(out.reset_at_ms, (hour - 3 + LEDGER_HOURS) * H);
	/* Each hour as it leaves the window: never below either side. */
	for (int64_t t = now; t < now + DAY + H; t += H)
		cr_assert_geq(ledger_usage_used(&out, LEDGER_WINDOW_ROLLING, t),
			      ledger_usage_used(&live, LEDGER_WINDOW_ROLLING, t));
	cr_assert_eq(import_merge(&out, &file, LEDGER_WINDOW_ROLLING, now, &live), IMPORT_KEPT);
}

Test(import_prepare, a_fork_row_under_the_rolling_window_counts_until_its_reset_time)
{
	int64_t now = 1000 * DAY + 10 * H + 123, reset = now + 5 * H + 17;
	struct ledger_usage u = fixed_usage(123456, reset);
	import_prepare(&u, LEDGER_WINDOW_ROLLING, now);
	cr_assert_eq(ledger_usage_used(&u, LEDGER_WINDOW_ROLLING, now), 123456);
	cr_assert_eq(ledger_usage_used(&u, LEDGER_WINDOW_ROLLING, reset - 1), 123456,
		     "dropped before the fork's reset time");
	cr_assert_eq(ledger_usage_used(&u, LEDGER_WINDOW_ROLLING, reset + H), 0,
		     "held more than an hour past the fork's reset time");
}

Test(import_prepare, a_window_in_the_future_starts_now_and_ends_within_a_day)
{
	int64_t now = 1000 * DAY;
	struct ledger_usage u = fixed_usage(777, now + 10 * DAY);
	import_prepare(&u, LEDGER_WINDOW_FIXED, now);
	cr_assert_eq(u.used_bytes, 777);
	cr_assert_eq(u.first_upload_ms, now);
	cr_assert_eq(u.reset_at_ms, now + DAY);
}

/* ---- the command, with real files ---- */

static char tmp[64];       /* "/tmp/cplow-import-XXXXXX" */
static char config[128];
static char lock_path[128];
static char cache[128];

static void put(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	cr_assert_not_null(f, "fopen %s: %s", path, strerror(errno));
	fputs(text, f);
	cr_assert_eq(fclose(f), 0);
}

static void write_config(const char *quota)
{
	char text[2048];
	snprintf(text, sizeof(text),
		 "{\"remotes\": {\"media\": {\"upload_folder\": \"%s/media\", "
		 "\"upload_remote\": \"gd:/Media\"}},\n"
		 " \"uploader\": {\"media\": {\"service_account_path\": \"%s/sa\"}}%s%s%s}\n",
		 tmp, tmp, quota ? ", \"quota\": " : "", quota ? quota : "", "");
	put(config, text);
}

static void setup(void)
{
	char p[PATH_MAX];
	snprintf(tmp, sizeof(tmp), "/tmp/cplow-import-XXXXXX");
	cr_assert_not_null(mkdtemp(tmp));
	snprintf(p, sizeof(p), "%s/media", tmp);
	cr_assert_eq(mkdir(p, 0700), 0);
	snprintf(p, sizeof(p), "%s/sa", tmp);
	cr_assert_eq(mkdir(p, 0700), 0);
	for (int i = 1; i <= 3; i++) {
		snprintf(p, sizeof(p), "%s/sa/sa%d.json", tmp, i);
		put(p, "{}");
	}
	snprintf(config, sizeof(config), "%s/config.json", tmp);
	snprintf(lock_path, sizeof(lock_path), "%s/cplow.lock", tmp);
	snprintf(cache, sizeof(cache), "%s/sa_quota_cache.json", tmp);
	write_config(NULL);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void teardown(void)
{
	char name[128];
	if (ledger_name_for(config, name, sizeof(name)) == LEDGER_OK)
		ledger_unlink(name);
	nftw(tmp, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

TestSuite(import, .init = setup, .fini = teardown, .timeout = 60);

struct result {
	int code;
	char *out, *err;
	size_t out_len, err_len;
};

static struct result run_import(const char *from, bool dry_run)
{
	struct result r = { 0 };
	FILE *out = open_memstream(&r.out, &r.out_len), *err = open_memstream(&r.err, &r.err_len);
	struct import_options o = { .config_path = config, .from = from, .dry_run = dry_run };
	r.code = import_cloudplow(&o, out, err);
	fclose(out);
	fclose(err);
	return r;
}

static void free_result(struct result *r)
{
	free(r->out);
	free(r->err);
}

/* Bytes the live ledger counts for media/account now; -1 when it has no such row. */
static int64_t ledger_used(const char *account, struct ledger_usage *usage)
{
	char name[128];
	struct ledger l;
	struct ledger_copy c;
	cr_assert_eq(ledger_name_for(config, name, sizeof(name)), LEDGER_OK);
	cr_assert_eq(ledger_attach(name, 0, &l), LEDGER_OK);
	cr_assert_eq(ledger_copy_init(&l, &c), LEDGER_OK);
	cr_assert_eq(ledger_read(&l, &c, 2000), LEDGER_OK);
	int64_t used = -1;
	int32_t row;
	if (ledger_row_find(&l, "media", account, &row) == LEDGER_OK) {
		used = ledger_usage_used(&c.rows[row].usage, (enum ledger_window)c.window,
					 ledger_now_ms());
		if (usage)
			*usage = c.rows[row].usage;
	}
	ledger_copy_free(&c);
	ledger_detach(&l);
	return used;
}

static char *sa(int i)
{
	static char buf[4][128];
	snprintf(buf[i % 4], sizeof(buf[0]), "%s/sa/sa%d.json", tmp, i);
	return buf[i % 4];
}

/* The quota fork's shape: {uploader: {key path: {bytes, reset_time, first_upload}}}. */
static void write_fork_file(const char *path, const char *rows)
{
	char text[8192];
	snprintf(text, sizeof(text), "{%s}\n", rows);
	put(path, text);
}

static int count_lines(const char *s)
{
	int n = 0;
	for (; *s; s++)
		n += *s == '\n';
	return n;
}

Test(import, a_fork_file_is_imported_and_reported_account_by_account)
{
	double now = (double)time(NULL);
	char rows[4096], from[160];
	snprintf(from, sizeof(from), "%s/fork.json", tmp);
	snprintf(rows, sizeof(rows),
		 "\"media\": {\"%s\": {\"bytes\": 745487360000, \"reset_time\": %.1f, "
		 "\"first_upload\": %.1f},\n"
		 "  \"/opt/cloudplow/sa/sa2.json\": {\"bytes\": 1000, \"reset_time\": %.1f},\n"
		 "  \"%s\": {\"bytes\": 5000, \"reset_time\": %.1f},\n"
		 "  \"/opt/cloudplow/sa/sa9.json\": {\"bytes\": 77, \"reset_time\": %.1f}},\n"
		 "\"tv\": {\"/opt/cloudplow/sa/sa1.json\": {\"bytes\": 9, \"reset_time\": %.1f}}",
		 sa(1), now + 3600, now + 3600 - 86400, now + 7200, sa(3), now - 60, now + 60,
		 now + 60);
	write_fork_file(from, rows);
	struct result r = run_import(from, false);
	cr_assert_eq(r.code, 0, "exit %d: %s", r.code, r.err);
	cr_assert_str_empty(r.err);
	char want[1024];
	snprintf(want, sizeof(want), "added    media / %s: 745487360000 bytes (694.3 GiB), 92.6 %%",
		 sa(1));
	cr_assert_not_null(strstr(r.out, want), "%s", r.out);
	snprintf(want, sizeof(want),
		 "added    media / %s (the file's /opt/cloudplow/sa/sa2.json, matched by file "
		 "name): 1000 bytes",
		 sa(2));
	cr_assert_not_null(strstr(r.out, want), "%s", r.out);
	snprintf(want, sizeof(want), "skipped  media / %s: its window ended at ", sa(3));
	cr_assert_not_null(strstr(r.out, want), "%s", r.out);
	snprintf(want, sizeof(want),
		 "skipped  media / /opt/cloudplow/sa/sa9.json: no key file named sa9.json in %s/sa",
		 tmp);
	cr_assert_not_null(strstr(r.out, want), "%s", r.out);
	cr_assert_not_null(strstr(r.out, "skipped  tv / /opt/cloudplow/sa/sa1.json: no uploader \"tv\""),
			   "%s", r.out);
	cr_assert_not_null(strstr(r.out, "total: 5 accounts in "), "%s", r.out);
	cr_assert_not_null(strstr(r.out, "2 added, 0 raised, 0 kept, 3 skipped; the ledger counts "
					 "745487361000 bytes for the imported accounts (0 before)"),
			   "%s", r.out);
	cr_assert_not_null(strstr(r.out, "(the quota fork's format)"), "%s", r.out);
	/* The live ledger and its file hold it, with the fork's reset time. */
	struct ledger_usage u;
	cr_assert_eq(ledger_used(sa(1), &u), 745487360000LL);
	cr_assert_eq(u.reset_at_ms, (int64_t)((now + 3600) * 1000));
	cr_assert_eq(ledger_used(sa(2), NULL), 1000);
	cr_assert_eq(ledger_used(sa(3), NULL), -1);
	struct ledger_file f;
	char err[LEDGER_FILE_ERR_MAX];
	cr_assert_eq(ledger_file_load(cache, &f, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(f.from_fork, 0);
	cr_assert_eq(f.count, 2);
	ledger_file_free(&f);
	free_result(&r);
}

Test(import, never_lowers_a_usage_the_ledger_already_has)
{
	double now = (double)time(NULL);
	char rows[4096], a[160], b[160];
	snprintf(a, sizeof(a), "%s/a.json", tmp);
	snprintf(b, sizeof(b), "%s/b.json", tmp);
	snprintf(rows, sizeof(rows),
		 "\"media\": {\"%s\": {\"bytes\": 5000, \"reset_time\": %.3f},"
		 " \"%s\": {\"bytes\": 9000, \"reset_time\": %.3f}}",
		 sa(1), now + 7200, sa(2), now + 3600);
	write_fork_file(a, rows);
	snprintf(rows, sizeof(rows),
		 "\"media\": {\"%s\": {\"bytes\": 3000, \"reset_time\": %.3f},"
		 " \"%s\": {\"bytes\": 20000, \"reset_time\": %.3f}}",
		 sa(1), now + 5 * 3600, sa(2), now + 1800);
	write_fork_file(b, rows);
	struct result r = run_import(a, false);
	cr_assert_eq(r.code, 0, "%s", r.err);
	free_result(&r);
	r = run_import(b, false);
	cr_assert_eq(r.code, 0, "%s", r.err);
	char want[1024];
	snprintf(want, sizeof(want), "kept     media / %s: the ledger's 5000 bytes", sa(1));
	cr_assert_not_null(strstr(r.out, want), "%s", r.out);
	snprintf(want, sizeof(want), "raised   media / %s: 20000 bytes", sa(2));
	cr_assert_not_null(strstr(r.out, want), "%s", r.out);
	cr_assert_not_null(strstr(r.out, "the ledger had 9000 bytes"), "%s", r.out);
	struct ledger_usage u;
	cr_assert_eq(ledger_used(sa(1), NULL), 5000);
	cr_assert_eq(ledger_used(sa(2), &u), 20000);
	cr_assert_eq(u.reset_at_ms, (int64_t)((now + 3600) * 1000), "the later reset is kept");
	free_result(&r);
}

Test(import, importing_the_same_file_twice_changes_nothing)
{
	double now = (double)time(NULL);
	char rows[4096], from[160];
	snprintf(from, sizeof(from), "%s/fork.json", tmp);
	snprintf(rows, sizeof(rows), "\"media\": {\"%s\": {\"bytes\": 4242, \"reset_time\": %.3f}}",
		 sa(2), now + 600);
	write_fork_file(from, rows);
	struct result r = run_import(from, false);
	cr_assert_eq(r.code, 0, "%s", r.err);
	free_result(&r);
	struct ledger_usage before, after;
	cr_assert_eq(ledger_used(sa(2), &before), 4242);
	r = run_import(from, false);
	cr_assert_eq(r.code, 0, "%s", r.err);
	cr_assert_not_null(strstr(r.out, "0 added, 0 raised, 1 kept, 0 skipped"), "%s", r.out);
	cr_assert_eq(ledger_used(sa(2), &after), 4242);
	cr_assert_eq(memcmp(&before, &after, sizeof(before)), 0);
	free_result(&r);
}

Test(import, a_bad_file_is_exit_2_with_one_line_and_touches_nothing)
{
	static const char *const bad[] = {
		"{\"media\": {\"/sa/sa1.json\": {\"bytes\": -5, \"reset_time\": 1}}}",
		"{\"media\": {\"/sa/sa1.json\": {\"bytes\": 1.5, \"reset_time\": 1}}}",
		"{\"media\": {\"/sa/sa1.json\": {\"bytes\": \"1000\"}}}",
		"{\"media\": {\"/sa/sa1.json\": {\"bytes\": 1}, \"/sa/sa1.json\": {\"bytes\": 2}}}",
		"{\"media\": {\"/sa/sa1.json\": {\"bytes\": 1000, \"reset_ti",
		"[1, 2, 3]",
		"",
	};
	char from[160], name[128];
	snprintf(from, sizeof(from), "%s/bad.json", tmp);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		put(from, bad[i]);
		struct result r = run_import(from, false);
		cr_assert_eq(r.code, 2, "file %zu: exit %d", i, r.code);
		cr_assert_eq(count_lines(r.err), 1, "file %zu: %s", i, r.err);
		cr_assert_not_null(strstr(r.err, from), "file %zu: %s", i, r.err);
		cr_assert_str_empty(r.out);
		free_result(&r);
	}
	snprintf(from, sizeof(from), "%s/missing.json", tmp);
	struct result r = run_import(from, false);
	cr_assert_eq(r.code, 2);
	cr_assert_eq(count_lines(r.err), 1, "%s", r.err);
	cr_assert_not_null(strstr(r.err, "No such file"), "%s", r.err);
	free_result(&r);
	/* Nothing touched: no ledger, no ledger file, no lock taken. */
	struct ledger l;
	cr_assert_eq(ledger_name_for(config, name, sizeof(name)), LEDGER_OK);
	cr_assert_eq(ledger_attach(name, 0, &l), LEDGER_ERR_SYS);
	cr_assert_eq(access(cache, F_OK), -1);
	cr_assert_eq(access(lock_path, F_OK), -1);
}

Test(import, refuses_with_exit_3_while_cplow_holds_the_lock)
{
	char from[160], rows[4096];
	snprintf(from, sizeof(from), "%s/fork.json", tmp);
	snprintf(rows, sizeof(rows), "\"media\": {\"%s\": {\"bytes\": 1}}", sa(1));
	write_fork_file(from, rows);
	int fd = -1;
	pid_t holder;
	cr_assert_eq(lock_take(lock_path, &fd, &holder), LOCK_TAKEN);
	struct result r = run_import(from, false);
	cr_assert_eq(r.code, 3);
	char want[1024];
	snprintf(want, sizeof(want), "cplow (pid %d) is running with this config", (int)getpid());
	cr_assert_not_null(strstr(r.err, want), "%s", r.err);
	cr_assert_eq(count_lines(r.err), 1, "%s", r.err);
	free_result(&r);
	close(fd);
}

Test(import, refuses_with_exit_3_while_a_worker_of_an_earlier_cplow_uploads)
{
	double now = (double)time(NULL);
	char from[160], rows[4096], name[128];
	snprintf(from, sizeof(from), "%s/fork.json", tmp);
	snprintf(rows, sizeof(rows), "\"media\": {\"%s\": {\"bytes\": 10, \"reset_time\": %.3f}}",
		 sa(1), now + 600);
	write_fork_file(from, rows);
	struct result r = run_import(from, false);
	cr_assert_eq(r.code, 0, "%s", r.err);
	free_result(&r);
	/* A stage slot held by a live process (this one) with no cplow around: an orphan. */
	struct ledger l;
	int32_t row, slot;
	cr_assert_eq(ledger_name_for(config, name, sizeof(name)), LEDGER_OK);
	cr_assert_eq(ledger_attach(name, 1, &l), LEDGER_OK);
	cr_assert_eq(ledger_row_find(&l, "media", sa(1), &row), LEDGER_OK);
	struct ledger_stage st = { .pid = (int32_t)getpid(), .row = row };
	cr_assert_eq(ledger_stage_claim(&l, &st, &slot), LEDGER_OK);
	r = run_import(from, false);
	cr_assert_eq(r.code, 3, "%s", r.out);
	cr_assert_not_null(strstr(r.err, "is still uploading into this ledger"), "%s", r.err);
	free_result(&r);
	cr_assert_eq(ledger_stage_release(&l, slot), LEDGER_OK);
	ledger_detach(&l);
}

Test(import, dry_run_changes_neither_the_ledger_nor_its_file)
{
	double now = (double)time(NULL);
	char from[160], rows[4096];
	snprintf(from, sizeof(from), "%s/fork.json", tmp);
	snprintf(rows, sizeof(rows), "\"media\": {\"%s\": {\"bytes\": 10, \"reset_time\": %.3f}}",
		 sa(1), now + 600);
	write_fork_file(from, rows);
	struct result r = run_import(from, true);
	cr_assert_eq(r.code, 0, "%s", r.err);
	char want[1024];
	snprintf(want, sizeof(want), "added    media / %s: 10 bytes", sa(1));
	cr_assert_not_null(strstr(r.out, want), "%s", r.out);
	cr_assert_not_null(strstr(r.out, "dry run: neither the ledger nor"), "%s", r.out);
	cr_assert_eq(ledger_used(sa(1), NULL), -1);
	cr_assert_eq(access(cache, F_OK), -1);
	free_result(&r);
}

Test(import, more_new_accounts_than_the_ledger_holds_is_exit_2)
{
	write_config("{\"capacity\": 1}");
	double now = (double)time(NULL);
	char from[160], rows[4096];
	snprintf(from, sizeof(from), "%s/fork.json", tmp);
	snprintf(rows, sizeof(rows),
		 "\"media\": {\"%s\": {\"bytes\": 10, \"reset_time\": %.3f},"
		 " \"%s\": {\"bytes\": 10, \"reset_time\": %.3f}}",
		 sa(1), now + 600, sa(2), now + 600);
	write_fork_file(from, rows);
	struct result r = run_import(from, false);
	cr_assert_eq(r.code, 2);
	cr_assert_not_null(strstr(r.err, "raise quota.capacity"), "%s", r.err);
	cr_assert_eq(count_lines(r.err), 1, "%s", r.err);
	cr_assert_eq(ledger_used(sa(1), NULL), -1, "a partial import");
	free_result(&r);
}

Test(import, by_default_reads_the_quota_cache_next_to_the_config)
{
	double now = (double)time(NULL);
	char rows[4096];
	/* The fork's file where cplow keeps its own: the ledger is restored from it as named,
	 * and the import adds the row whose key folder moved under cplow's name. */
	snprintf(rows, sizeof(rows),
		 "\"media\": {\"%s\": {\"bytes\": 300, \"reset_time\": %.3f},"
		 " \"/old/place/sa3.json\": {\"bytes\": 600, \"reset_time\": %.3f}}",
		 sa(1), now + 600, now + 600);
	write_fork_file(cache, rows);
	struct result r = run_import(NULL, false);
	cr_assert_eq(r.code, 0, "%s", r.err);
	char want[1024];
	snprintf(want, sizeof(want), "kept     media / %s: the ledger's 300 bytes", sa(1));
	cr_assert_not_null(strstr(r.out, want), "%s", r.out);
	snprintf(want, sizeof(want), "added    media / %s (the file's /old/place/sa3.json", sa(3));
	cr_assert_not_null(strstr(r.out, want), "%s", r.out);
	cr_assert_eq(ledger_used(sa(3), NULL), 600);
	free_result(&r);
}

Test(import, a_fork_file_under_the_rolling_window_keeps_its_bytes)
{
	write_config("{\"window\": \"rolling\"}");
	double now = (double)time(NULL);
	char from[160], rows[4096];
	snprintf(from, sizeof(from), "%s/fork.json", tmp);
	snprintf(rows, sizeof(rows),
		 "\"media\": {\"%s\": {\"bytes\": 123456789, \"reset_time\": %.3f}}", sa(2),
		 now + 5 * 3600);
	write_fork_file(from, rows);
	struct result r = run_import(from, false);
	cr_assert_eq(r.code, 0, "%s", r.err);
	cr_assert_not_null(strstr(r.out, "rolling window"), "%s", r.out);
	cr_assert_eq(ledger_used(sa(2), NULL), 123456789);
	free_result(&r);
}
