#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <seccomp.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "ledger.h"
#include "ledger_file.h"

#define T0 1734556800000LL

static char dir[256], path[300], prev[320], shm_name[64];
static struct ledger L;

static void setup(void)
{
	snprintf(dir, sizeof(dir), "/tmp/cplow-file-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/sa_quota_cache.json", dir);
	snprintf(prev, sizeof(prev), "%s.prev", path);
	snprintf(shm_name, sizeof(shm_name), "/cplow-test-file-%d", getpid());
	ledger_unlink(shm_name);
	struct ledger_options o = { .row_capacity = 16 };
	cr_assert_eq(ledger_create(shm_name, &o, &L), LEDGER_OK);
}

static void teardown(void)
{
	ledger_detach(&L);
	ledger_unlink(shm_name);
	char cmd[PATH_MAX + 16];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	cr_assert_eq(system(cmd), 0);
}

static void put(const char *file, const char *text)
{
	FILE *f = fopen(file, "w");
	cr_assert_not_null(f);
	fputs(text, f);
	fclose(f);
}

static int64_t bytes_of(const char *uploader, const char *account)
{
	int32_t row;
	cr_assert_eq(ledger_row_find(&L, uploader, account, &row), LEDGER_OK, "%s/%s missing",
		     uploader, account);
	return L.rows[row].usage.used_bytes;
}

static int restore(char *err, size_t len)
{
	char used[PATH_MAX];
	return ledger_file_restore(&L, path, used, sizeof(used), err, len);
}

static const char *FORK_FILE =
	"{\"media\": {\"/config/sa/sa1.json\": {\"bytes\": 745487360000, "
	"\"reset_time\": 1734643200.0, \"first_upload\": 1734556800.0},"
	" \"/config/sa/sa2.json\": {\"bytes\": 12, \"reset_time\": 1734643200.5}}}";

Test(ledger_file, snapshot_round_trips_through_the_file, .init = setup, .fini = teardown)
{
	int32_t a, b;
	cr_assert_eq(ledger_row_get(&L, "media", "/config/sa/sa1.json", &a), LEDGER_OK);
	cr_assert_eq(ledger_row_get(&L, "tv", "remote2", &b), LEDGER_OK);
	cr_assert_eq(ledger_add(&L, a, 805306368000LL - 5, T0), LEDGER_OK);
	cr_assert_eq(ledger_add(&L, b, 17, T0 + 1500), LEDGER_OK);
	cr_assert_eq(ledger_ban(&L, b, T0 + 3600000, "User rate limit exceeded", T0), LEDGER_OK);
	struct ledger_copy c;
	cr_assert_eq(ledger_copy_init(&L, &c), LEDGER_OK);
	cr_assert_eq(ledger_read(&L, &c, 100), LEDGER_OK);
	char err[LEDGER_FILE_ERR_MAX];
	cr_assert_eq(ledger_file_write(&c, path, T0, err, sizeof(err)), 0, "%s", err);
	struct ledger_file f;
	cr_assert_eq(ledger_file_load(path, &f, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(f.count, 2);
	cr_assert_eq(f.from_fork, 0);
	cr_assert_eq(f.generation, c.generation);
	cr_assert_str_eq(f.rows[0].account, "/config/sa/sa1.json");
	cr_assert_eq(f.rows[0].usage.used_bytes, 805306368000LL - 5);
	cr_assert_eq(f.rows[0].usage.reset_at_ms, T0 + LEDGER_DAY_MS);
	cr_assert_eq(f.rows[1].usage.banned_until_ms, T0 + 3600000);
	cr_assert_str_eq(f.rows[1].usage.ban_cause, "User rate limit exceeded");
	cr_assert_eq(f.rows[1].usage.updated_at_ms, T0);
	struct stat st;
	cr_assert_eq(stat(path, &st), 0);
	cr_assert_eq(st.st_mode & 0777, 0600);
	ledger_file_free(&f);
	ledger_copy_free(&c);
}

Test(ledger_file, each_write_keeps_the_previous_generation_as_prev, .init = setup,
     .fini = teardown)
{
	int32_t a;
	cr_assert_eq(ledger_row_get(&L, "media", "sa1", &a), LEDGER_OK);
	struct ledger_copy c;
	cr_assert_eq(ledger_copy_init(&L, &c), LEDGER_OK);
	char err[LEDGER_FILE_ERR_MAX];
	for (int i = 1; i <= 3; i++) {
		cr_assert_eq(ledger_add(&L, a, 10, T0), LEDGER_OK);
		cr_assert_eq(ledger_read(&L, &c, 100), LEDGER_OK);
		cr_assert_eq(ledger_file_write(&c, path, T0, err, sizeof(err)), 0, "%s", err);
	}
	struct ledger_file cur, old;
	cr_assert_eq(ledger_file_load(path, &cur, err, sizeof(err)), 0);
	cr_assert_eq(ledger_file_load(prev, &old, err, sizeof(err)), 0);
	cr_assert_eq(cur.rows[0].usage.used_bytes, 30);
	cr_assert_eq(old.rows[0].usage.used_bytes, 20);
	cr_assert_eq(old.generation + 1, cur.generation);
	ledger_file_free(&cur);
	ledger_file_free(&old);
	ledger_copy_free(&c);
	char tmp[PATH_MAX + 8];
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	cr_assert_eq(access(tmp, F_OK), -1, "temp file left behind");
}

/* vfat, exFAT and many SMB and FUSE mounts refuse link() (EPERM): the kernel's own refusal,
 * through a seccomp filter on this test's process. The .prev promise holds all the same (by a
 * copy), and one line says so, not one per write. */
Test(ledger_file, where_links_are_refused_each_write_still_keeps_the_previous_generation,
     .init = setup, .fini = teardown)
{
	char log_path[PATH_MAX];
	snprintf(log_path, sizeof(log_path), "%s/log", dir);
	int log_fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	cr_assert_geq(log_fd, 0);
	cr_assert_geq(dup2(log_fd, STDERR_FILENO), 0);
	scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
	cr_assert_not_null(ctx);
	cr_assert_eq(seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(link), 0), 0);
	cr_assert_eq(seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(linkat), 0), 0);
	cr_assert_eq(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
	cr_assert_eq(seccomp_load(ctx), 0);
	seccomp_release(ctx);
	cr_assert_eq(link(dir, log_path), -1);
	cr_assert_eq(errno, EPERM, "the filter does not refuse link()");

	int32_t a;
	cr_assert_eq(ledger_row_get(&L, "media", "sa1", &a), LEDGER_OK);
	struct ledger_copy c;
	cr_assert_eq(ledger_copy_init(&L, &c), LEDGER_OK);
	char err[LEDGER_FILE_ERR_MAX];
	for (int i = 1; i <= 4; i++) {
		cr_assert_eq(ledger_add(&L, a, 10, T0), LEDGER_OK);
		cr_assert_eq(ledger_read(&L, &c, 100), LEDGER_OK);
		cr_assert_eq(ledger_file_write(&c, path, T0, err, sizeof(err)), 0, "write %d: %s", i,
			     err);
		if (i == 1)
			cr_assert_eq(access(prev, F_OK), -1, "a .prev before a previous generation");
	}
	struct ledger_file cur, old;
	cr_assert_eq(ledger_file_load(path, &cur, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(ledger_file_load(prev, &old, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(cur.rows[0].usage.used_bytes, 40);
	cr_assert_eq(old.rows[0].usage.used_bytes, 30);
	cr_assert_eq(old.generation + 1, cur.generation);
	ledger_file_free(&cur);
	ledger_file_free(&old);
	ledger_copy_free(&c);
	struct stat st;
	cr_assert_eq(stat(prev, &st), 0);
	cr_assert_eq(st.st_mode & 0777, 0600);
	char leftover[PATH_MAX + 16];
	snprintf(leftover, sizeof(leftover), "%s.prev.tmp", path);
	cr_assert_eq(access(leftover, F_OK), -1, "the copy's temp file left behind");
	FILE *f = fopen(log_path, "r");
	cr_assert_not_null(f);
	char line[1024];
	int said = 0, errors = 0;
	while (fgets(line, sizeof(line), f)) {
		said += strstr(line, "refuses hard links") != NULL;
		errors += strstr(line, "ERROR") != NULL;
	}
	fclose(f);
	cr_assert_eq(said, 1, "the refusal is said once, not per write");
	cr_assert_eq(errors, 0);
}

/* The quota fork's loader (cloudplow.py, init_sa_quota_tracking and cleanup_expired_quotas):
 * json.load, then for every top-level key and every key below it, row.get("reset_time", 0),
 * dropping the rows whose time has come. So every top-level value must be an object of objects:
 * format 1's {"_cplow": {"format": 1}} made it fail on the number and start from zero. */
Test(ledger_file, every_top_level_value_is_what_the_forks_loader_takes_for_an_uploader,
     .init = setup, .fini = teardown)
{
	int32_t a;
	cr_assert_eq(ledger_row_get(&L, "media", "/config/sa/sa1.json", &a), LEDGER_OK);
	cr_assert_eq(ledger_add(&L, a, 1234, T0), LEDGER_OK);
	struct ledger_copy c;
	cr_assert_eq(ledger_copy_init(&L, &c), LEDGER_OK);
	cr_assert_eq(ledger_read(&L, &c, 100), LEDGER_OK);
	char *text = ledger_file_render(&c, T0);
	cr_assert_not_null(text);
	cJSON *root = cJSON_Parse(text);
	cr_assert_not_null(root);
	const cJSON *up, *row;
	int meta_rows = 0;
	cJSON_ArrayForEach(up, root)
	{
		cr_assert(cJSON_IsObject(up), "%s is not an object of rows", up->string);
		cJSON_ArrayForEach(row, up)
		{
			cr_assert(cJSON_IsObject(row), "%s → %s is not a row", up->string,
				  row->string);
			const cJSON *reset = cJSON_GetObjectItemCaseSensitive(row, "reset_time");
			if (strcmp(up->string, LEDGER_FILE_META_KEY) != 0)
				continue;
			/* The fork drops it at once: its window ended at the epoch. */
			cr_assert(cJSON_IsNumber(reset) && reset->valuedouble == 0);
			cr_assert_eq(cJSON_GetObjectItemCaseSensitive(row, "bytes")->valuedouble, 0);
			meta_rows++;
		}
	}
	cr_assert_eq(meta_rows, 1);
	cr_assert_eq(cJSON_GetObjectItemCaseSensitive(
			     cJSON_GetObjectItemCaseSensitive(
				     cJSON_GetObjectItemCaseSensitive(root, "media"),
				     "/config/sa/sa1.json"),
			     "bytes")->valuedouble,
		     1234);
	/* And cplow reads its own data back from there. */
	struct ledger_file f;
	char err[LEDGER_FILE_ERR_MAX];
	cr_assert_eq(ledger_file_parse(text, strlen(text), &f, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(f.from_fork, 0);
	cr_assert_eq(f.count, 1);
	cr_assert_eq(f.written_at_ms, T0);
	ledger_file_free(&f);
	cJSON_Delete(root);
	free(text);
	ledger_copy_free(&c);
}

Test(ledger_file, restore_reads_format_1_as_cplow_wrote_it_before, .init = setup, .fini = teardown)
{
	put(path, "{\"media\":{\"sa1\":{\"bytes\":500,\"reset_time\":1734643200,"
		  "\"first_upload\":1734556800,\"files\":3,\"banned_until\":0,\"ban_cause\":\"\","
		  "\"updated_at\":1734556900}},\"_cplow\":{\"format\":1,\"generation\":9}}");
	char err[LEDGER_FILE_ERR_MAX];
	cr_assert_eq(restore(err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(bytes_of("media", "sa1"), 500);
	int32_t row;
	cr_assert_eq(ledger_row_find(&L, "media", "sa1", &row), LEDGER_OK);
	cr_assert_eq(L.rows[row].usage.files, 3);
	cr_assert_eq(L.rows[row].usage.first_upload_ms, 1734556800000LL);
}

Test(ledger_file, restore_loads_the_quota_forks_file_as_is, .init = setup, .fini = teardown)
{
	put(path, FORK_FILE);
	char err[LEDGER_FILE_ERR_MAX];
	cr_assert_eq(restore(err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(bytes_of("media", "/config/sa/sa1.json"), 745487360000LL);
	cr_assert_eq(bytes_of("media", "/config/sa/sa2.json"), 12);
	int32_t row;
	cr_assert_eq(ledger_row_find(&L, "media", "/config/sa/sa2.json", &row), LEDGER_OK);
	/* The fork's window is 24 h: the start follows from the reset time. */
	cr_assert_eq(L.rows[row].usage.first_upload_ms, 1734643200500LL - LEDGER_DAY_MS);
	struct ledger_file f;
	cr_assert_eq(ledger_file_load(path, &f, err, sizeof(err)), 0);
	cr_assert_eq(f.from_fork, 1);
	ledger_file_free(&f);
}

Test(ledger_file, restore_with_no_file_at_all_is_a_first_start, .init = setup, .fini = teardown)
{
	char err[LEDGER_FILE_ERR_MAX];
	cr_assert_eq(restore(err, sizeof(err)), 0);
	cr_assert_eq(atomic_load(&L.hdr->row_count), 0);
}

/* Each bad main file, with a good .prev beside it: the .prev loads. */
static void check_fallback(const char *bad, const char *expect_in_err)
{
	put(prev, FORK_FILE);
	if (bad)
		put(path, bad);
	char used[PATH_MAX], err[LEDGER_FILE_ERR_MAX] = "";
	cr_assert_eq(ledger_file_restore(&L, path, used, sizeof(used), err, sizeof(err)), 0,
		     "%s", err);
	cr_assert_str_eq(used, prev);
	cr_assert_eq(bytes_of("media", "/config/sa/sa1.json"), 745487360000LL);
	/* And the same bad file alone is refused with a message naming both files. */
	cr_assert_eq(unlink(prev), 0);
	ledger_detach(&L);
	ledger_unlink(shm_name);
	cr_assert_eq(ledger_create(shm_name, NULL, &L), LEDGER_OK);
	put(prev, "{");
	cr_assert_eq(ledger_file_restore(&L, path, used, sizeof(used), err, sizeof(err)), -1);
	cr_assert(strstr(err, path) && strstr(err, prev), "message does not name the files: %s",
		  err);
	cr_assert(strstr(err, expect_in_err), "message lacks \"%s\": %s", expect_in_err, err);
	cr_assert_null(strchr(err, '\n'), "not one line: %s", err);
	cr_assert_eq(atomic_load(&L.hdr->row_count), 0, "a refused file loaded rows");
}

Test(ledger_file, truncated_file_falls_back_to_prev, .init = setup, .fini = teardown)
{
	char half[64];
	snprintf(half, sizeof(half), "%.40s", FORK_FILE);
	check_fallback(half, "ends early");
}

Test(ledger_file, garbage_falls_back_to_prev, .init = setup, .fini = teardown)
{
	check_fallback("\x7f" "ELF\x01garbage\n", "not valid JSON at line 1");
}

Test(ledger_file, empty_file_falls_back_to_prev, .init = setup, .fini = teardown)
{
	check_fallback("", "file is empty");
}

Test(ledger_file, missing_file_with_prev_loads_prev, .init = setup, .fini = teardown)
{
	check_fallback(NULL, "No such file or directory");
}

Test(ledger_file, wrong_types_are_refused_with_the_key_path, .init = setup, .fini = teardown)
{
	static const struct {
		const char *text, *message;
	} cases[] = {
		{ "[1,2]", "top level must be an object of uploaders" },
		{ "{\"media\": 3}", "\"media\": must be an object of accounts" },
		{ "{\"media\": {\"sa1\": {\"bytes\": \"12\"}}}",
		  "\"media\" → \"sa1\" → bytes: must be a whole number of bytes >= 0" },
		{ "{\"media\": {\"sa1\": {\"bytes\": -5}}}",
		  "\"media\" → \"sa1\" → bytes: must be a whole number of bytes >= 0" },
		{ "{\"media\": {\"sa1\": {\"bytes\": 1.5}}}",
		  "\"media\" → \"sa1\" → bytes: must be a whole number of bytes >= 0" },
		{ "{\"media\": {\"sa1\": {}}}",
		  "\"media\" → \"sa1\" → bytes: must be a whole number of bytes >= 0" },
		{ "{\"media\": {\"sa1\": {\"bytes\": 1, \"reset_time\": \"x\"}}}",
		  "\"media\" → \"sa1\" → reset_time: must be Unix seconds >= 0" },
		{ "{\"media\": {\"sa1\": {\"bytes\": 1, \"ban_cause\": 3}}}",
		  "\"media\" → \"sa1\" → ban_cause: must be a string" },
		{ "{\"_cplow\": {\"format\": 7}}",
		  "_cplow.format: 7 is not a format this cplow reads there (1)" },
		{ "{\"_cplow\": {\"meta\": {\"format\": 1}}}",
		  "_cplow.meta.format: 1 is not a format this cplow reads there (2)" },
		{ "{\"_cplow\": {\"generation\": 3}}",
		  "_cplow.meta: must be an object with a format number" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct ledger_file f;
		char err[LEDGER_FILE_ERR_MAX];
		cr_assert_eq(ledger_file_parse(cases[i].text, strlen(cases[i].text), &f, err,
					       sizeof(err)),
			     -1, "case %zu accepted", i);
		cr_assert_str_eq(err, cases[i].message, "case %zu", i);
	}
}

Test(ledger_file, more_accounts_than_the_ledger_holds_is_refused, .init = setup,
     .fini = teardown)
{
	FILE *f = fopen(path, "w");
	cr_assert_not_null(f);
	fputs("{\"media\":{", f);
	for (int i = 0; i < 100; i++)
		fprintf(f, "%s\"sa%d\":{\"bytes\":%d}", i ? "," : "", i, i);
	fputs("}}", f);
	fclose(f);
	char err[LEDGER_FILE_ERR_MAX];
	cr_assert_eq(restore(err, sizeof(err)), -1);
	cr_assert(strstr(err, "it has 100 accounts, more than the ledger holds (16)"), "%s", err);
}

Test(ledger_file, a_window_in_the_future_keeps_its_bytes_and_restarts_now, .init = setup,
     .fini = teardown)
{
	long long now_s = (long long)(ledger_now_ms() / 1000), hour = now_s / 3600;
	char text[512];
	/* Ten days ahead: a clock that was set back since the file was written. */
	snprintf(text, sizeof(text),
		 "{\"media\":{\"sa1\":{\"bytes\":5000000000,\"first_upload\":%lld,"
		 "\"reset_time\":%lld,\"banned_until\":%lld},"
		 "\"sa2\":{\"bytes\":70,\"hours\":{\"%lld\":30,\"%lld\":40}}}}",
		 now_s + 10 * 86400, now_s + 11 * 86400, now_s + 10 * 86400, hour,
		 hour + 245);
	put(path, text);
	char err[LEDGER_FILE_ERR_MAX];
	int64_t before = ledger_now_ms();
	cr_assert_eq(restore(err, sizeof(err)), 0, "%s", err);
	int64_t after = ledger_now_ms();
	int32_t r1, r2;
	cr_assert_eq(ledger_row_find(&L, "media", "sa1", &r1), LEDGER_OK);
	cr_assert_eq(ledger_row_find(&L, "media", "sa2", &r2), LEDGER_OK);
	const struct ledger_usage *u = &L.rows[r1].usage;
	cr_assert_eq(u->used_bytes, 5000000000LL, "the bytes must stay counted");
	cr_assert(u->first_upload_ms >= before && u->first_upload_ms <= after, "%lld",
		  (long long)u->first_upload_ms);
	cr_assert(u->reset_at_ms <= after + LEDGER_DAY_MS, "reset %lld is more than a day away",
		  (long long)u->reset_at_ms);
	cr_assert_eq(u->banned_until_ms, (now_s + 10 * 86400) * 1000LL, "a ban keeps its end");
	const struct ledger_usage *v = &L.rows[r2].usage;
	int64_t in_hour = 0, later = 0;
	for (int i = 0; i < LEDGER_HOURS; i++) {
		if (v->hour_index[i] == hour)
			in_hour += v->hour_bytes[i];
		else if (v->hour_index[i] > hour)
			later += v->hour_bytes[i];
	}
	cr_assert_eq(later, 0, "an hour bucket stayed in the future");
	cr_assert_eq(in_hour, 70, "the future hour's bytes must move to the current hour");
}

/* 100,000 accounts: a ledger sized for them restores every one exactly; the default one
 * refuses the file with the count and the key to raise, and nothing half-loaded is used. */
Test(ledger_file, a_file_of_100k_accounts_loads_exactly_or_is_refused_whole, .init = setup,
     .fini = teardown, .timeout = 120)
{
	enum { N = 100000 };
	FILE *f = fopen(path, "w");
	cr_assert_not_null(f);
	fputs("{\"media\":{", f);
	long long sum = 0;
	for (int i = 0; i < N; i++) {
		fprintf(f, "%s\"/config/sa/sa%06d.json\":{\"bytes\":%d,\"files\":1}", i ? "," : "",
			i, i * 7);
		sum += i * 7LL;
	}
	fputs("}}", f);
	fclose(f);
	char err[LEDGER_FILE_ERR_MAX];
	cr_assert_eq(restore(err, sizeof(err)), -1);
	cr_assert(strstr(err, "it has 100000 accounts, more than the ledger holds (16): raise "
			      "quota.capacity"), "%s", err);

	struct ledger big;
	char name[80];
	snprintf(name, sizeof(name), "%s-big", shm_name);
	ledger_unlink(name);
	struct ledger_options o = { .row_capacity = N };
	cr_assert_eq(ledger_create(name, &o, &big), LEDGER_OK);
	char used[PATH_MAX];
	cr_assert_eq(ledger_file_restore(&big, path, used, sizeof(used), err, sizeof(err)), 0, "%s",
		     err);
	cr_assert_eq(big.hdr->row_count, N);
	long long got = 0;
	for (uint32_t i = 0; i < big.hdr->row_count; i++)
		got += big.rows[i].usage.used_bytes;
	cr_assert_eq(got, sum);
	int32_t row;
	cr_assert_eq(ledger_row_find(&big, "media", "/config/sa/sa099999.json", &row), LEDGER_OK);
	cr_assert_eq(big.rows[row].usage.used_bytes, 99999LL * 7);
	ledger_detach(&big);
	ledger_unlink(name);
}

/* The quota fork's rows carry no hours: a rolling-window ledger must still count their bytes,
 * until 24 h after the window they were uploaded in began. */
Test(ledger_file, a_fork_file_restored_into_a_rolling_ledger_keeps_its_bytes, .init = setup,
     .fini = teardown)
{
	long long now_s = (long long)(ledger_now_ms() / 1000);
	char text[256];
	snprintf(text, sizeof(text),
		 "{\"media\":{\"sa1.json\":{\"bytes\":5000000,\"reset_time\":%lld.0},"
		 "\"sa2.json\":{\"bytes\":7,\"reset_time\":%lld.0}}}",
		 now_s + 20 * 3600, now_s - 3600);
	put(path, text);
	struct ledger rolling;
	char name[80], used[PATH_MAX], err[LEDGER_FILE_ERR_MAX];
	snprintf(name, sizeof(name), "%s-rolling", shm_name);
	ledger_unlink(name);
	struct ledger_options o = { .row_capacity = 16, .window = LEDGER_WINDOW_ROLLING };
	cr_assert_eq(ledger_create(name, &o, &rolling), LEDGER_OK);
	cr_assert_eq(ledger_file_restore(&rolling, path, used, sizeof(used), err, sizeof(err)), 0,
		     "%s", err);
	int32_t r1, r2;
	cr_assert_eq(ledger_row_find(&rolling, "media", "sa1.json", &r1), LEDGER_OK);
	cr_assert_eq(ledger_row_find(&rolling, "media", "sa2.json", &r2), LEDGER_OK);
	int64_t now = ledger_now_ms();
	cr_assert_eq(ledger_usage_used(&rolling.rows[r1].usage, LEDGER_WINDOW_ROLLING, now),
		     5000000, "a window 4 h old still counts its bytes");
	cr_assert_eq(ledger_usage_used(&rolling.rows[r2].usage, LEDGER_WINDOW_ROLLING, now), 0,
		     "a window that ended an hour ago counts nothing");
	ledger_detach(&rolling);
	ledger_unlink(name);
}
