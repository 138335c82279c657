#include <criterion/criterion.h>

#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "planner.h"

/* The account of an uploader that neither rotates remotes nor uses service accounts. */
static void account_is(const char *upload_remote, const char *want)
{
	struct config_remote r = { .name = "media", .upload_remote = (char *)upload_remote };
	struct config_uploader u = { .name = "media", .remote = &r };
	struct planner_accounts a;
	char err[256];
	cr_assert_eq(planner_accounts(&u, &a, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(a.count, 1);
	cr_assert_str_eq(a.v[0].name, want, "upload_remote %s", upload_remote);
	planner_accounts_free(&a);
}

Test(planner, a_single_account_is_the_remote_name)
{
	account_is("google:/Media", "google");
	account_is("gcrypt,password=secret:/Media", "gcrypt");
}

/* A name-less remote gave an empty account, which the ledger refuses: every stage failed. */
Test(planner, a_remote_made_on_the_command_line_is_its_own_account)
{
	account_is(":local:/backup", ":local:");
	account_is(":s3,provider=AWS,secret_access_key=k:bucket/tv", ":s3:");
}

/* ---- accounts shared between uploaders ---- */

Test(planner, a_rotate_remote_is_the_same_account_in_every_uploader)
{
	char *remotes_a[] = { "fake1", "fake2" }, *remotes_b[] = { "fake2" };
	struct config_remote r = { .name = "movies", .upload_remote = "fake1:/x" };
	struct config_uploader a = { .name = "movies", .remote = &r, .rotate_remotes = remotes_a,
				     .rotate_remote_count = 2 };
	struct config_uploader b = { .name = "tv", .remote = &r, .rotate_remotes = remotes_b,
				     .rotate_remote_count = 1 };
	struct config_uploader plain = { .name = "music", .remote = &r };
	struct planner_accounts pa, pb, pp;
	char err[256];
	cr_assert_eq(planner_accounts(&a, &pa, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(planner_accounts(&b, &pb, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(planner_accounts(&plain, &pp, err, sizeof(err)), 0, "%s", err);
	cr_assert_str_eq(pa.v[1].identity, "remote:fake2");
	cr_assert_str_eq(pa.v[1].identity, pb.v[0].identity);
	cr_assert_str_neq(pa.v[0].identity, pb.v[0].identity);
	/* An uploader without accounts shares nothing by name: its remote may hold many
	 * folders, uploaded side by side as cloudplow does. */
	cr_assert_null(pp.v[0].identity);
	planner_accounts_free(&pa);
	planner_accounts_free(&pb);
	planner_accounts_free(&pp);
}

Test(planner, a_key_file_reached_by_two_paths_is_one_account)
{
	char dir[] = "/tmp/cplow-planner-XXXXXX", keys[PATH_MAX], link[PATH_MAX], key[PATH_MAX + 16];
	cr_assert_not_null(mkdtemp(dir));
	snprintf(keys, sizeof(keys), "%s/keys", dir);
	snprintf(link, sizeof(link), "%s/link", dir);
	snprintf(key, sizeof(key), "%s/sa1.json", keys);
	cr_assert_eq(mkdir(keys, 0700), 0);
	cr_assert_eq(symlink(keys, link), 0);
	FILE *f = fopen(key, "w");
	cr_assert_not_null(f);
	fputs("{}", f);
	fclose(f);
	struct config_remote r = { .name = "media", .upload_remote = "gdrive:/x" };
	struct config_uploader a = { .name = "movies", .remote = &r, .service_account_path = keys };
	struct config_uploader b = { .name = "tv", .remote = &r, .service_account_path = link };
	struct planner_accounts pa, pb;
	char err[256];
	cr_assert_eq(planner_accounts(&a, &pa, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(planner_accounts(&b, &pb, err, sizeof(err)), 0, "%s", err);
	cr_assert_str_neq(pa.v[0].name, pb.v[0].name, "the ledger keys differ: the test needs that");
	cr_assert_str_eq(pa.v[0].identity, pb.v[0].identity);
	char want[PATH_MAX + 32];
	snprintf(want, sizeof(want), "key:%s", key);
	cr_assert_str_eq(pa.v[0].identity, want);
	planner_accounts_free(&pa);
	planner_accounts_free(&pb);
	unlink(key);
	unlink(link);
	rmdir(keys);
	rmdir(dir);
}

/* ---- the dry run's simulation ---- */

#define DAILY 1000000

static struct config_stage table[] = {
	{ "aggressive_fresh_sa", 0.80, 0.5, 0.8, 8, "size,desc", 2000 },
	{ "moderate_mid_sa", 0.50, 0.6, 0.5, 4, "size,desc", 1000 },
	{ "cautious_low_quota", 0.25, 0.7, 0.3, 6, NULL, 0 },
	{ "conservative_cleanup", 0.0, 0.8, 0.2, 8, NULL, 0 },
};

struct sim {
	char shm[64];
	struct ledger l;
	struct ledger_copy copy;
	struct config cfg;
	struct config_remote remote;
	struct config_uploader u;
	struct planner_accounts accounts;
};

/* Accounts fake1 (half used), fake2 (fresh), fake3 (banned). */
static void sim_start(struct sim *s)
{
	static char *remotes[] = { "fake1", "fake2", "fake3" };
	memset(s, 0, sizeof(*s));
	snprintf(s->shm, sizeof(s->shm), "/cplow-test-planner-%d", getpid());
	ledger_unlink(s->shm);
	struct ledger_options o = { .row_capacity = 16, .slot_capacity = 4, .daily_bytes = DAILY };
	cr_assert_eq(ledger_create(s->shm, &o, &s->l), LEDGER_OK);
	int64_t now = ledger_now_ms();
	int32_t row;
	cr_assert_eq(ledger_row_get(&s->l, "media", "fake1", &row), LEDGER_OK);
	cr_assert_eq(ledger_add(&s->l, row, DAILY / 2, now), LEDGER_OK);
	cr_assert_eq(ledger_row_get(&s->l, "media", "fake3", &row), LEDGER_OK);
	cr_assert_eq(ledger_ban(&s->l, row, now + 3600000, "test", now), LEDGER_OK);
	cr_assert_eq(ledger_copy_init(&s->l, &s->copy), LEDGER_OK);
	cr_assert_eq(ledger_read(&s->l, &s->copy, 2000), LEDGER_OK);
	s->cfg.quota = (struct config_quota){ .daily_bytes = DAILY, .min_free_bytes = 1000,
					      .continue_min_bytes = 10000 };
	s->cfg.stages = table;
	s->cfg.stage_count = 4;
	s->remote = (struct config_remote){ .name = "media", .upload_remote = "fake1:/m" };
	s->u = (struct config_uploader){ .name = "media", .remote = &s->remote,
					 .rotate_remotes = remotes, .rotate_remote_count = 3,
					 .quota_enabled = true };
	char err[256];
	cr_assert_eq(planner_accounts(&s->u, &s->accounts, err, sizeof(err)), 0, "%s", err);
}

static void sim_end(struct sim *s)
{
	planner_accounts_free(&s->accounts);
	ledger_copy_free(&s->copy);
	ledger_detach(&s->l);
	ledger_unlink(s->shm);
}

struct want_step {
	int account;
	const char *strategy;
	int64_t remaining, max_transfer, moved;
};

static void expect_steps(const struct planner_step *got, size_t n, const struct want_step *want,
			 size_t want_n)
{
	cr_assert_eq(n, want_n, "%zu stages planned, want %zu", n, want_n);
	for (size_t i = 0; i < n; i++) {
		cr_expect_eq(got[i].plan.account, want[i].account, "stage %zu", i + 1);
		cr_expect_str_eq(got[i].plan.strategy->name, want[i].strategy, "stage %zu", i + 1);
		cr_expect_eq(got[i].plan.remaining_bytes, want[i].remaining, "stage %zu", i + 1);
		cr_expect_eq(got[i].plan.max_transfer_bytes, want[i].max_transfer, "stage %zu", i + 1);
		cr_expect_eq(got[i].moved_bytes, want[i].moved, "stage %zu", i + 1);
	}
}

/* Each stage spends its --max-transfer of what is left on its account; the account goes on
 * while more than continue_min_bytes is left, its strategy following the share left, then the
 * next account takes over, until the source is covered. */
Test(planner, the_dry_run_plans_stages_until_the_source_is_covered)
{
	struct sim s;
	sim_start(&s);
	struct planner_step steps[32];
	struct plan stop;
	int64_t left = -1;
	size_t n = planner_simulate(&s.cfg, "media", &s.accounts, &s.l, &s.copy, ledger_now_ms(),
				    1200000, steps, 32, &left, &stop);
	const struct want_step want[] = {
		{ 0, "moderate_mid_sa", 500000, 300000, 300000 },
		{ 0, "conservative_cleanup", 200000, 160000, 160000 },
		{ 0, "conservative_cleanup", 40000, 32000, 32000 }, /* 8000 left: given up */
		{ 1, "aggressive_fresh_sa", 1000000, 500000, 500000 },
		{ 1, "moderate_mid_sa", 500000, 300000, 208000 },   /* the rest of the source */
	};
	expect_steps(steps, n, want, sizeof(want) / sizeof(want[0]));
	cr_assert_eq(left, 0);
	sim_end(&s);
}

Test(planner, the_dry_run_stops_when_no_account_has_room)
{
	struct sim s;
	sim_start(&s);
	struct planner_step steps[32];
	struct plan stop;
	int64_t left = -1;
	size_t n = planner_simulate(&s.cfg, "media", &s.accounts, &s.l, &s.copy, ledger_now_ms(),
				    5000000, steps, 32, &left, &stop);
	cr_assert_eq(n, 7);
	cr_assert_eq(steps[6].plan.account, 1);
	/* fake1 as above, then fake2 from fresh: 500000, 300000, 160000, 32000. */
	cr_assert_eq(left, 5000000 - (300000 + 160000 + 32000) - (500000 + 300000 + 160000 + 32000));
	cr_assert_eq(stop.account, -1);
	cr_assert(strstr(stop.why, "1 banned"), "%s", stop.why);
	/* A cap on the stages: the plan stops there, with no reason of its own. */
	n = planner_simulate(&s.cfg, "media", &s.accounts, &s.l, &s.copy, ledger_now_ms(), 5000000,
			     steps, 2, &left, &stop);
	cr_assert_eq(n, 2);
	cr_assert_eq(left, 5000000 - 300000 - 160000);
	cr_assert_str_eq(stop.why, "");
	/* An empty folder still gets its first stage (the real upload runs it and finds
	 * nothing): the command is shown. */
	n = planner_simulate(&s.cfg, "media", &s.accounts, &s.l, &s.copy, ledger_now_ms(), 0,
			     steps, 32, &left, &stop);
	cr_assert_eq(n, 1);
	cr_assert_eq(steps[0].moved_bytes, 0);
	cr_assert_eq(left, 0);
	sim_end(&s);
}

/* A lower --max-transfer in rclone_extras is what each stage passes (rclone_cmd_build): the
 * plan takes it, so the dry run shows the stages the upload will run. A higher one changes
 * nothing: the quota's wins. */
Test(planner, a_lower_max_transfer_in_rclone_extras_caps_every_planned_stage)
{
	struct sim s;
	sim_start(&s);
	static struct stage_flag lower[] = { { "--max-transfer", "100000B" } };
	static struct stage_flag higher[] = { { "--max-transfer", "1T" } };
	s.remote.rclone_extras = lower;
	s.remote.rclone_extra_count = 1;
	s.cfg.uploaders = &s.u;
	s.cfg.uploader_count = 1;
	struct planner_step steps[32];
	struct plan stop;
	int64_t left = -1;
	size_t n = planner_simulate(&s.cfg, "media", &s.accounts, &s.l, &s.copy, ledger_now_ms(),
				    250000, steps, 32, &left, &stop);
	const struct want_step want[] = {
		{ 0, "moderate_mid_sa", 500000, 100000, 100000 },
		{ 0, "cautious_low_quota", 400000, 100000, 100000 },
		{ 0, "cautious_low_quota", 300000, 100000, 50000 },
	};
	expect_steps(steps, n, want, sizeof(want) / sizeof(want[0]));
	s.remote.rclone_extras = higher;
	n = planner_simulate(&s.cfg, "media", &s.accounts, &s.l, &s.copy, ledger_now_ms(), 250000,
			     steps, 32, &left, &stop);
	cr_assert_eq(steps[0].plan.max_transfer_bytes, 300000);
	sim_end(&s);
}

/* An uploader whose quota is off (a local or S3 remote) uploads as cloudplow did: no stage
 * flags, no account skipped for its usage, one stage for the whole source. */
Test(planner, without_a_quota_a_full_account_still_uploads_everything_without_stage_flags)
{
	struct sim s;
	sim_start(&s);
	s.u.quota_enabled = false;
	s.cfg.uploaders = &s.u;
	s.cfg.uploader_count = 1;
	int32_t row;
	cr_assert_eq(ledger_row_get(&s.l, "media", "fake1", &row), LEDGER_OK);
	cr_assert_eq(ledger_add(&s.l, row, DAILY, ledger_now_ms()), LEDGER_OK); /* 1.5 x daily */
	cr_assert_eq(ledger_read(&s.l, &s.copy, 2000), LEDGER_OK);
	struct plan p;
	planner_choose(&s.cfg, "media", &s.accounts, &s.l, &s.copy, NULL, NULL, ledger_now_ms(),
		       &p);
	cr_assert_eq(p.account, 0, "a full account is not skipped without a quota");
	cr_assert_not(p.quota);
	cr_assert_eq(p.strategy, &planner_no_quota);
	cr_assert_eq(p.max_transfer_bytes, 0);
	cr_assert_eq(p.max_size_bytes, 0);
	cr_assert_eq(p.strategy->transfers, 0);
	cr_assert_null(p.strategy->order_by);
	cr_assert_eq(p.strategy->max_backlog, 0);
	struct planner_step steps[8];
	struct plan stop;
	int64_t left = -1;
	size_t n = planner_simulate(&s.cfg, "media", &s.accounts, &s.l, &s.copy, ledger_now_ms(),
				    5 * DAILY, steps, 8, &left, &stop);
	cr_assert_eq(n, 1);
	cr_assert_eq(steps[0].moved_bytes, 5 * DAILY);
	cr_assert_eq(left, 0);
	/* The same uploader with its quota on skips the full account. */
	s.u.quota_enabled = true;
	planner_choose(&s.cfg, "media", &s.accounts, &s.l, &s.copy, NULL, NULL, ledger_now_ms(),
		       &p);
	cr_assert_eq(p.account, 1);
	cr_assert(p.quota);
	cr_assert_gt(p.max_transfer_bytes, 0);
	sim_end(&s);
}

/* ---- once-only suspension lines ---- */

Test(planner, a_suspension_is_news_once_per_episode_and_reason)
{
	struct planner_suspension s = { 0 };
	const char *given_up = "2 accounts: 0 banned, 0 with less than 1 bytes left, 0 busy, 2 "
			       "given up on in this run";
	cr_assert(planner_suspension_note(&s, given_up));
	for (int interval = 0; interval < 5; interval++)
		cr_assert_not(planner_suspension_note(&s, given_up), "logged again at interval %d",
			      interval);
	cr_assert(planner_suspension_note(&s, "2 accounts: 1 banned, ..."), "a new reason is news");
	cr_assert_not(planner_suspension_note(&s, "2 accounts: 1 banned, ..."));
	planner_suspension_end(&s); /* an upload moved something */
	cr_assert(planner_suspension_note(&s, "2 accounts: 1 banned, ..."));
}
