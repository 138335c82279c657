#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rclone_cmd.h"

static int has_arg(const struct rclone_cmd *c, const char *arg)
{
	for (size_t i = 0; i < c->argc; i++)
		if (strcmp(c->argv[i], arg) == 0)
			return 1;
	return 0;
}

static int has_prefix(char **v, const char *prefix)
{
	for (; *v; v++)
		if (strncmp(*v, prefix, strlen(prefix)) == 0)
			return 1;
	return 0;
}

static const char *const excludes[] = { "*.partial~", "**/.grab/**" };
static const char *const env[] = { "RCLONE_CONFIG_GDRIVE_SERVICE_ACCOUNT_FILE=/sa/sa1.json" };
static const struct stage_flag extras[] = { { "--drive-chunk-size", "64M" },
					    { "--fast-list", NULL } };

static struct stage_spec spec(void)
{
	struct stage_spec s = {
		.uploader = "media", .account = "/sa/sa1.json", .rclone_binary = "/usr/bin/rclone",
		.rclone_config = "/config/rclone.conf", .command = "move", .source = "/data/media",
		.destination = "gdrive:/Media", .env = env, .env_count = 1, .extras = extras,
		.extra_count = 2, .excludes = excludes, .exclude_count = 2, .stage_number = 3,
		.max_transfer_bytes = 12345, .max_size_bytes = 999, .transfers = 8,
		.order_by = "size,desc", .max_backlog = 2000, .work_dir = "/tmp",
	};
	return s;
}

Test(rclone_cmd, builds_the_stage_command_with_exact_byte_limits)
{
	struct stage_spec s = spec();
	struct rclone_cmd c;
	char err[256];
	cr_assert_eq(rclone_cmd_build(&s, "user1", "secretpass", &c, err, sizeof(err)), 0, "%s", err);
	cr_assert_str_eq(c.argv[0], "/usr/bin/rclone");
	cr_assert_str_eq(c.argv[1], "move");
	cr_assert_str_eq(c.argv[2], "/data/media");
	cr_assert_str_eq(c.argv[3], "gdrive:/Media");
	const char *want[] = { "--config=/config/rclone.conf", "--use-json-log", "-v", "--rc",
			       "--rc-addr=127.0.0.1:0", "--max-transfer=12345B",
			       "--cutoff-mode=cautious", "--max-size=999B", "--transfers=8",
			       "--order-by=size,desc", "--max-backlog=2000",
			       "--drive-chunk-size=64M", "--fast-list" };
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
		cr_assert(has_arg(&c, want[i]), "missing %s", want[i]);
	cr_assert(!has_arg(&c, "--dry-run"));
	rclone_cmd_free(&c);
}

Test(rclone_cmd, the_rc_password_is_in_the_environment_not_argv)
{
	struct stage_spec s = spec();
	struct rclone_cmd c;
	char err[256], line[4096];
	cr_assert_eq(rclone_cmd_build(&s, "user1", "secretpass", &c, err, sizeof(err)), 0);
	cr_assert(has_prefix(c.envp, "RCLONE_RC_PASS=secretpass"));
	cr_assert(has_prefix(c.envp, "RCLONE_RC_USER=user1"));
	cr_assert(has_prefix(c.envp, "RCLONE_CONFIG_GDRIVE_SERVICE_ACCOUNT_FILE=/sa/sa1.json"));
	for (size_t i = 0; i < c.argc; i++)
		cr_assert_null(strstr(c.argv[i], "secretpass"));
	cr_assert_eq(rclone_cmd_render(&c, line, sizeof(line)), 0);
	cr_assert_null(strstr(line, "secretpass"));
	rclone_cmd_free(&c);
}

Test(rclone_cmd, the_stages_key_file_wins_over_an_inherited_one)
{
	setenv("RCLONE_CONFIG_GDRIVE_SERVICE_ACCOUNT_FILE", "/old/key.json", 1);
	struct stage_spec s = spec();
	struct rclone_cmd c;
	char err[256];
	cr_assert_eq(rclone_cmd_build(&s, "u", "p", &c, err, sizeof(err)), 0);
	cr_assert(!has_prefix(c.envp, "RCLONE_CONFIG_GDRIVE_SERVICE_ACCOUNT_FILE=/old/key.json"));
	cr_assert(has_prefix(c.envp, "RCLONE_CONFIG_GDRIVE_SERVICE_ACCOUNT_FILE=/sa/sa1.json"));
	rclone_cmd_free(&c);
	unsetenv("RCLONE_CONFIG_GDRIVE_SERVICE_ACCOUNT_FILE");
}

Test(rclone_cmd, inherited_rc_variables_are_dropped)
{
	setenv("RCLONE_RC_ADDR", "0.0.0.0:5572", 1);
	struct stage_spec s = spec();
	struct rclone_cmd c;
	char err[256];
	cr_assert_eq(rclone_cmd_build(&s, "u", "p", &c, err, sizeof(err)), 0);
	cr_assert(!has_prefix(c.envp, "RCLONE_RC_ADDR="));
	rclone_cmd_free(&c);
	unsetenv("RCLONE_RC_ADDR");
}

Test(rclone_cmd, excludes_go_through_a_private_file_removed_afterwards)
{
	struct stage_spec s = spec();
	struct rclone_cmd c;
	char err[256], flag[PATH_MAX + 32];
	cr_assert_eq(rclone_cmd_build(&s, "u", "p", &c, err, sizeof(err)), 0);
	snprintf(flag, sizeof(flag), "--exclude-from=%s", c.exclude_file);
	cr_assert(has_arg(&c, flag));
	FILE *f = fopen(c.exclude_file, "r");
	cr_assert_not_null(f);
	char text[256] = "";
	size_t n = fread(text, 1, sizeof(text) - 1, f);
	text[n] = '\0';
	fclose(f);
	cr_assert_str_eq(text, "*.partial~\n**/.grab/**\n");
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s", c.exclude_file);
	rclone_cmd_free(&c);
	cr_assert_eq(access(path, F_OK), -1, "exclude file left behind");
}

Test(rclone_cmd, a_stage_without_limits_carries_none_from_an_earlier_one)
{
	struct stage_spec first = spec();
	struct rclone_cmd a, b;
	char err[256];
	cr_assert_eq(rclone_cmd_build(&first, "u", "p", &a, err, sizeof(err)), 0);
	struct stage_spec second = spec();
	second.max_transfer_bytes = 0;
	second.max_size_bytes = 0;
	second.transfers = 0;
	second.order_by = NULL;
	second.max_backlog = 0;
	second.exclude_count = 0;
	cr_assert_eq(rclone_cmd_build(&second, "u", "p", &b, err, sizeof(err)), 0);
	for (size_t i = 0; i < b.argc; i++) {
		cr_assert_null(strstr(b.argv[i], "--max-transfer"), "%s", b.argv[i]);
		cr_assert_null(strstr(b.argv[i], "--cutoff-mode"), "%s", b.argv[i]);
		cr_assert_null(strstr(b.argv[i], "--order-by"), "%s", b.argv[i]);
		cr_assert_null(strstr(b.argv[i], "--exclude-from"), "%s", b.argv[i]);
	}
	cr_assert_eq(first.max_transfer_bytes, 12345, "the spec was changed");
	rclone_cmd_free(&a);
	rclone_cmd_free(&b);
}

/* How many arguments are `flag` or start with `flag=`. */
static int count_flag(const struct rclone_cmd *c, const char *flag)
{
	int n = 0;
	size_t len = strlen(flag);
	for (size_t i = 0; i < c->argc; i++)
		n += strncmp(c->argv[i], flag, len) == 0 &&
		     (c->argv[i][len] == '\0' || c->argv[i][len] == '=');
	return n;
}

/* cloudplow's meaning: what the user put in rclone_extras is what rclone gets. Before, both
 * were passed (the stage's first) and the dry run showed the stage's. */
Test(rclone_cmd, the_users_transfers_order_by_max_size_and_max_backlog_replace_the_stages)
{
	static const struct stage_flag user[] = { { "--transfers", "2" },
						  { "--order-by", "name,asc" },
						  { "--max-size", "10M" },
						  { "--max-backlog", "50" },
						  { "--min-age", "1h" } };
	struct stage_spec s = spec();
	s.extras = user;
	s.extra_count = 5;
	s.min_age = "30m";
	struct rclone_cmd c;
	char err[256];
	cr_assert_eq(rclone_cmd_build(&s, "u", "p", &c, err, sizeof(err)), 0, "%s", err);
	const char *want[] = { "--transfers=2", "--order-by=name,asc", "--max-size=10M",
			       "--max-backlog=50", "--min-age=1h" };
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		cr_assert(has_arg(&c, want[i]), "missing %s", want[i]);
		char name[32];
		snprintf(name, sizeof(name), "%.*s", (int)strcspn(want[i], "="), want[i]);
		cr_assert_eq(count_flag(&c, name), 1, "%s passed more than once", name);
	}
	cr_assert_eq(c.max_size_bytes, 10 << 20);
	cr_assert(has_arg(&c, "--max-transfer=12345B"), "the quota's limit stays");
	cr_assert_str_eq(c.note, "");
	rclone_cmd_free(&c);
}

Test(rclone_cmd, a_lower_max_transfer_in_the_extras_wins_a_higher_one_is_clamped_with_a_note)
{
	static const struct stage_flag lower[] = { { "--max-transfer", "10K" } };
	static const struct stage_flag higher[] = { { "--max-transfer", "1T" } };
	static const struct stage_flag off[] = { { "--max-transfer", "off" } };
	struct stage_spec s = spec();
	struct rclone_cmd c;
	char err[256];
	s.extras = lower;
	s.extra_count = 1;
	cr_assert_eq(rclone_cmd_build(&s, "u", "p", &c, err, sizeof(err)), 0, "%s", err);
	cr_assert(has_arg(&c, "--max-transfer=10240B"));
	cr_assert_eq(count_flag(&c, "--max-transfer"), 1);
	cr_assert_eq(count_flag(&c, "--cutoff-mode"), 1);
	cr_assert_eq(c.max_transfer_bytes, 10240);
	cr_assert_str_eq(c.note, "");
	rclone_cmd_free(&c);
	s.extras = higher;
	cr_assert_eq(rclone_cmd_build(&s, "u", "p", &c, err, sizeof(err)), 0, "%s", err);
	cr_assert(has_arg(&c, "--max-transfer=12345B"));
	cr_assert_eq(count_flag(&c, "--max-transfer"), 1);
	cr_assert_str_eq(c.note, "rclone_extras: --max-transfer=1T is more than this stage's "
				 "quota allows: clamped to 12345 bytes");
	rclone_cmd_free(&c);
	s.extras = off;
	cr_assert_eq(rclone_cmd_build(&s, "u", "p", &c, err, sizeof(err)), 0, "%s", err);
	cr_assert(has_arg(&c, "--max-transfer=12345B"));
	cr_assert_neq(c.note[0], '\0');
	rclone_cmd_free(&c);
	/* Without a quota limit the user's value is the limit, with cplow's cutoff mode. */
	s.extras = higher;
	s.max_transfer_bytes = 0;
	cr_assert_eq(rclone_cmd_build(&s, "u", "p", &c, err, sizeof(err)), 0, "%s", err);
	cr_assert(has_arg(&c, "--max-transfer=1099511627776B"));
	cr_assert(has_arg(&c, "--cutoff-mode=cautious"));
	cr_assert_str_eq(c.note, "");
	rclone_cmd_free(&c);
}

/* Before, the config dropped --dry-run from rclone_extras ("set by cplow itself") and a user
 * testing a config got a real move. */
Test(rclone_cmd, dry_run_from_the_extras_or_the_core_reaches_rclone_once)
{
	static const struct stage_flag bare[] = { { "--dry-run", NULL } };
	static const struct stage_flag yes[] = { { "--dry-run", "true" } };
	static const struct stage_flag no[] = { { "--dry-run", "false" } };
	static const struct stage_flag short_form[] = { { "-n", NULL } };
	static const struct stage_flag bad[] = { { "--dry-run", "yes" } };
	const struct {
		const struct stage_flag *extras;
		int core, want;
	} cases[] = { { bare, 0, 1 }, { yes, 0, 1 }, { no, 0, 0 }, { short_form, 0, 1 },
		      { NULL, 1, 1 }, { bare, 1, 1 }, { NULL, 0, 0 } };
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct stage_spec s = spec();
		s.extras = cases[i].extras;
		s.extra_count = cases[i].extras ? 1 : 0;
		s.dry_run = cases[i].core;
		struct rclone_cmd c;
		char err[256];
		cr_assert_eq(rclone_cmd_build(&s, "u", "p", &c, err, sizeof(err)), 0, "%s", err);
		cr_assert_eq(count_flag(&c, "--dry-run"), cases[i].want, "case %zu", i);
		cr_assert_eq(count_flag(&c, "-n"), 0, "case %zu", i);
		cr_assert_eq(c.dry_run, cases[i].want, "case %zu", i);
		cr_assert_eq(rclone_cmd_dry_run(&s), cases[i].want, "case %zu", i);
		rclone_cmd_free(&c);
	}
	struct stage_spec s = spec();
	s.extras = bad;
	s.extra_count = 1;
	struct rclone_cmd c;
	char err[256];
	cr_assert_eq(rclone_cmd_build(&s, "u", "p", &c, err, sizeof(err)), -1);
	cr_assert_str_eq(err, "rclone_extras: --dry-run=yes: rclone takes true or false");
	cr_assert(rclone_cmd_dry_run(&s), "a value rclone refuses must never mean a real run");
}

Test(rclone_cmd, the_users_exclude_from_file_is_passed_beside_cplows_own)
{
	static const struct stage_flag user[] = { { "--exclude-from", "/config/excludes.txt" } };
	struct stage_spec s = spec();
	s.extras = user;
	s.extra_count = 1;
	struct rclone_cmd c;
	char err[256], ours[PATH_MAX + 32];
	cr_assert_eq(rclone_cmd_build(&s, "u", "p", &c, err, sizeof(err)), 0, "%s", err);
	snprintf(ours, sizeof(ours), "--exclude-from=%s", c.exclude_file);
	cr_assert(has_arg(&c, ours));
	cr_assert(has_arg(&c, "--exclude-from=/config/excludes.txt"));
	cr_assert_eq(count_flag(&c, "--exclude-from"), 2);
	rclone_cmd_free(&c);
}

Test(rclone_cmd, an_extras_size_rclone_would_refuse_fails_the_build)
{
	static const struct stage_flag mt[] = { { "--max-transfer", "10KB" } };
	static const struct stage_flag ms[] = { { "--max-size", "lots" } };
	struct stage_spec s = spec();
	struct rclone_cmd c;
	char err[256];
	s.extras = mt;
	s.extra_count = 1;
	cr_assert_eq(rclone_cmd_build(&s, "u", "p", &c, err, sizeof(err)), -1);
	cr_assert_str_eq(err, "rclone_extras: --max-transfer: \"10KB\" is not a size rclone reads");
	s.extras = ms;
	cr_assert_eq(rclone_cmd_build(&s, "u", "p", &c, err, sizeof(err)), -1);
	cr_assert_str_eq(err, "rclone_extras: --max-size: \"lots\" is not a size rclone reads");
}

/* Checked against rclone 1.60.1: `rclone size --max-transfer=X` accepts or refuses each. */
Test(rclone_cmd, sizes_are_read_as_rclone_reads_them)
{
	const struct {
		const char *text;
		int64_t bytes; /* -2: refused */
	} cases[] = {
		{ "1.5G", 1610612736 }, { "10", 10240 }, { "10k", 10240 }, { "10Ki", 10240 },
		{ "10KiB", 10240 }, { "10KB", -2 }, { "10kb", -2 }, { "off", -1 }, { "OFF", -1 },
		{ "-1", -2 }, { "1e3", 1024000 }, { "1e3M", 1048576000 }, { "0x10", -2 },
		{ " 5M", -2 }, { "5M,", -2 }, { "1.5", 1536 }, { ".5G", 536870912 },
		{ "5g", 5368709120 }, { "5t", 5497558138880 }, { "5Z", -2 }, { "inf", -2 },
		{ "NaN", -2 }, { "+5M", 5242880 }, { "5b", 5 }, { "5iB", -2 }, { "5B", 5 },
		{ "", -2 }, { "B", -2 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int64_t got = -3;
		int rc = rclone_cmd_parse_size(cases[i].text, &got);
		if (cases[i].bytes == -2) {
			cr_expect_eq(rc, -1, "\"%s\" accepted as %lld", cases[i].text, (long long)got);
		} else {
			cr_expect_eq(rc, 0, "\"%s\" refused", cases[i].text);
			cr_expect_eq(got, cases[i].bytes, "\"%s\": %lld", cases[i].text,
				     (long long)got);
		}
	}
}

/* The dry run's count: what selects files, not the per-stage limits nor move's own flags
 * (which `rclone size` refuses). */
Test(rclone_cmd, the_size_command_takes_the_filters_and_nothing_else)
{
	static const struct stage_flag user[] = { { "--exclude-from", "/config/x.txt" },
						  { "--min-size", "1k" },
						  { "--delete-empty-src-dirs", NULL },
						  { "--transfers", "4" },
						  { "--dry-run", NULL } };
	struct stage_spec s = spec();
	s.extras = user;
	s.extra_count = 5;
	s.min_age = "30m";
	struct rclone_cmd c;
	char err[256], ours[PATH_MAX + 32];
	cr_assert_eq(rclone_cmd_build_size(&s, &c, err, sizeof(err)), 0, "%s", err);
	cr_assert_str_eq(c.argv[1], "size");
	cr_assert_str_eq(c.argv[2], "/data/media");
	snprintf(ours, sizeof(ours), "--exclude-from=%s", c.exclude_file);
	const char *want[] = { "--json", "--config=/config/rclone.conf", ours,
			       "--exclude-from=/config/x.txt", "--min-size=1k", "--min-age=30m" };
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
		cr_assert(has_arg(&c, want[i]), "missing %s", want[i]);
	const char *never[] = { "--delete-empty-src-dirs", "--transfers", "--dry-run",
				"--max-transfer", "--max-size", "--order-by", "--rc" };
	for (size_t i = 0; i < sizeof(never) / sizeof(never[0]); i++)
		cr_assert_eq(count_flag(&c, never[i]), 0, "%s passed", never[i]);
	rclone_cmd_free(&c);
}

Test(rclone_cmd, extras_may_not_take_over_cplows_own_flags)
{
	static const struct stage_flag bad[] = { { "-vv", NULL } };
	static const struct stage_flag bad2[] = { { "--rc-addr", "0.0.0.0:5572" } };
	struct stage_spec s = spec();
	struct rclone_cmd c;
	char err[256];
	s.extras = bad;
	s.extra_count = 1;
	cr_assert_eq(rclone_cmd_build(&s, "u", "p", &c, err, sizeof(err)), -1);
	cr_assert_str_eq(err, "rclone_extras: -vv is set by cplow itself");
	s.extras = bad2;
	cr_assert_eq(rclone_cmd_build(&s, "u", "p", &c, err, sizeof(err)), -1);
	cr_assert_str_eq(err, "rclone_extras: --rc-addr is set by cplow itself");
}

Test(rclone_cmd, render_quotes_what_a_shell_would_split)
{
	static const struct stage_flag none[] = { { "--fast-list", NULL } };
	struct stage_spec s = spec();
	s.source = "/data/my media's";
	s.extras = none;
	s.extra_count = 1;
	s.exclude_count = 0;
	s.rclone_config = NULL;
	s.max_transfer_bytes = 0;
	s.max_size_bytes = 0;
	s.transfers = 0;
	s.order_by = NULL;
	s.max_backlog = 0;
	struct rclone_cmd c;
	char err[256], line[1024];
	cr_assert_eq(rclone_cmd_build(&s, "u", "p", &c, err, sizeof(err)), 0);
	cr_assert_eq(rclone_cmd_render(&c, line, sizeof(line)), 0);
	cr_assert_str_eq(line, "/usr/bin/rclone move '/data/my media'\\''s' gdrive:/Media "
			       "--use-json-log -v --rc --rc-addr=127.0.0.1:0 --fast-list");
	rclone_cmd_free(&c);
}

Test(rclone_cmd, extras_that_would_hide_rclones_copied_lines_are_refused_the_harmless_kept)
{
	static const struct {
		const char *name, *value;
		int ok;
	} cases[] = {
		/* Checked against rclone 1.60 (--use-json-log -v): these lose the Copied lines. */
		{ "--log-file", "/var/log/rclone.log", 0 },
		{ "--log-file=/x", NULL, 0 },
		{ "--use-json-log", "false", 0 },
		{ "--use-json-log=false", NULL, 0 },
		{ "--verbose", "0", 0 },
		{ "-v", "0", 0 },
		{ "--log-level", "INFO", 0 },
		{ "--log-level", "ERROR", 0 },
		{ "-q", NULL, 0 },
		{ "--quiet", NULL, 0 },
		/* Shown to leave them on stderr, in JSON. */
		{ "--use-json-log", NULL, 1 },
		{ "--use-json-log", "true", 1 },
		{ "--verbose", "1", 1 },
		{ "--verbose", NULL, 1 },
		{ "-vv", NULL, 1 },
		{ "--syslog", NULL, 1 },
		{ "--syslog-facility", "LOCAL0", 1 },
		{ "--log-systemd", NULL, 1 },
		{ "--log-format", "date,time,microseconds,shortfile,pid", 1 },
		{ "--stats-one-line", NULL, 1 },
		{ "--stats-one-line-date-format", "XX", 1 },
		{ "--stats", "0", 1 },
		{ "--stats-log-level", "DEBUG", 1 },
		{ "-P", NULL, 1 },
		{ "--progress", NULL, 1 },
		{ "--dump", "headers", 1 },
		{ "--drive-chunk-size", "64M", 1 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char why[300] = "";
		int rc = rclone_cmd_check_extra(cases[i].name, cases[i].value, why, sizeof(why));
		cr_assert_eq(rc, cases[i].ok ? 0 : -1, "%s %s: %d", cases[i].name,
			     cases[i].value ? cases[i].value : "(bare)", rc);
		if (!cases[i].ok)
			cr_assert(strstr(why, "Copied") || strstr(why, "JSON"), "%s: %s",
				  cases[i].name, why);
	}
}

Test(rclone_cmd, inherited_variables_that_would_move_rclones_log_are_dropped)
{
	setenv("RCLONE_LOG_FILE", "/tmp/rclone.log", 1);
	setenv("RCLONE_USE_JSON_LOG", "false", 1);
	setenv("RCLONE_LOG_LEVEL", "ERROR", 1);
	setenv("RCLONE_LOG_FORMAT", "pid", 1);
	struct stage_spec s = spec();
	struct rclone_cmd c;
	char err[256];
	cr_assert_eq(rclone_cmd_build(&s, "u", "p", &c, err, sizeof(err)), 0, "%s", err);
	cr_assert(!has_prefix(c.envp, "RCLONE_LOG_FILE="));
	cr_assert(!has_prefix(c.envp, "RCLONE_USE_JSON_LOG="));
	cr_assert(!has_prefix(c.envp, "RCLONE_LOG_LEVEL="));
	cr_assert(has_prefix(c.envp, "RCLONE_LOG_FORMAT=pid"), "a harmless one stays");
	rclone_cmd_free(&c);
	unsetenv("RCLONE_LOG_FILE");
	unsetenv("RCLONE_USE_JSON_LOG");
	unsetenv("RCLONE_LOG_LEVEL");
	unsetenv("RCLONE_LOG_FORMAT");
}

Test(rclone_cmd, the_in_flight_check_asks_for_modification_times_and_the_remotes_features)
{
	struct stage_spec s = spec();
	struct rclone_cmd c;
	char err[256];
	cr_assert_eq(rclone_cmd_build_lsjson(&s, "/tmp/list", &c, err, sizeof(err)), 0, "%s", err);
	cr_assert(!has_arg(&c, "--no-modtime"), "lsjson must show ModTime");
	cr_assert(has_arg(&c, "--files-from-raw=/tmp/list"));
	rclone_cmd_free(&c);
	cr_assert_eq(rclone_cmd_build_features(&s, &c, err, sizeof(err)), 0, "%s", err);
	cr_assert_str_eq(c.argv[1], "backend");
	cr_assert_str_eq(c.argv[2], "features");
	cr_assert_str_eq(c.argv[3], "gdrive:/Media");
	cr_assert(has_arg(&c, "--config=/config/rclone.conf"));
	rclone_cmd_free(&c);
}
