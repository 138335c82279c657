#include <criterion/criterion.h>
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"

/*
 * Fixtures name their folders under "@TMP@": each test makes a temp dir with media/, tv/, sa/
 * (holding sa1.json) and file.txt, writes the fixture there with @TMP@ replaced, and loads that
 * copy; so relative paths in a fixture are relative to the temp dir.
 */

static char tmp[64]; /* "/tmp/cplow-config-XXXXXX": short, so every path built on it fits */

static void put_file(const char *path, const void *data, size_t len)
{
	FILE *f = fopen(path, "wb");
	cr_assert_not_null(f, "fopen %s: %s", path, strerror(errno));
	cr_assert_eq(fwrite(data, 1, len, f), len);
	cr_assert_eq(fclose(f), 0);
}

static void make_tmp(void)
{
	char p[PATH_MAX];
	snprintf(tmp, sizeof(tmp), "/tmp/cplow-config-XXXXXX");
	cr_assert_not_null(mkdtemp(tmp));
	const char *dirs[] = { "media", "tv", "sa" };
	for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
		snprintf(p, sizeof(p), "%s/%s", tmp, dirs[i]);
		cr_assert_eq(mkdir(p, 0700), 0);
	}
	snprintf(p, sizeof(p), "%s/sa/sa1.json", tmp);
	put_file(p, "{}", 2);
	snprintf(p, sizeof(p), "%s/file.txt", tmp);
	put_file(p, "x", 1);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void remove_tmp(void)
{
	if (tmp[0])
		nftw(tmp, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	tmp[0] = '\0';
}

static char *read_all(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	cr_assert_not_null(f, "fopen %s: %s", path, strerror(errno));
	char *buf = NULL;
	size_t cap = 0, n = 0, got;
	do {
		if (n + 4096 + 1 > cap) {
			cap = (n + 4096 + 1) * 2;
			buf = realloc(buf, cap);
			cr_assert_not_null(buf);
		}
		got = fread(buf + n, 1, cap - n - 1, f);
		n += got;
	} while (got > 0);
	fclose(f);
	buf[n] = '\0';
	*len = n;
	return buf;
}

/* text with every "@TMP@" replaced by the temp dir; byte-safe (a fixture may be bad UTF-8). */
static char *substitute(const char *text, size_t len, size_t *out_len)
{
	static const char mark[] = "@TMP@";
	size_t ml = sizeof(mark) - 1, tl = strlen(tmp), cap = len + 1, n = 0;
	for (const char *p = text; (p = memmem(p, len - (size_t)(p - text), mark, ml)); p += ml)
		cap += tl;
	char *out = malloc(cap);
	cr_assert_not_null(out);
	for (size_t i = 0; i < len;) {
		if (i + ml <= len && memcmp(text + i, mark, ml) == 0) {
			memcpy(out + n, tmp, tl);
			n += tl;
			i += ml;
		} else {
			out[n++] = text[i++];
		}
	}
	out[n] = '\0';
	*out_len = n;
	return out;
}

/* The fixture's substituted copy in the temp dir; returns its path (static). */
static const char *stage_fixture(const char *name)
{
	static char dst[PATH_MAX];
	char src[PATH_MAX];
	size_t len, sub_len;
	snprintf(src, sizeof(src), "%s/%s", CONFIG_FIXTURES, name);
	char *text = read_all(src, &len);
	char *sub = substitute(text, len, &sub_len);
	snprintf(dst, sizeof(dst), "%s/%s", tmp, name);
	put_file(dst, sub, sub_len);
	free(text);
	free(sub);
	return dst;
}

static void load_ok(const char *name, struct config *c)
{
	char err[CONFIG_ERR_MAX] = "";
	int rc = config_load(stage_fixture(name), c, err, sizeof(err));
	cr_assert_eq(rc, 0, "%s: %s", name, err);
}

static void load_text_ok(const char *text, struct config *c)
{
	char path[PATH_MAX], err[CONFIG_ERR_MAX] = "";
	size_t len;
	char *sub = substitute(text, strlen(text), &len);
	snprintf(path, sizeof(path), "%s/inline.json", tmp);
	put_file(path, sub, len);
	free(sub);
	cr_assert_eq(config_load(path, c, err, sizeof(err)), 0, "%s", err);
}

/* Loads a file expected to fail; checks *out is untouched and the message is one line. */
static const char *load_error(const char *path)
{
	static char err[CONFIG_ERR_MAX];
	struct config c, before;
	memset(&c, 0x5a, sizeof(c));
	before = c;
	err[0] = '\0';
	cr_assert_eq(config_load(path, &c, err, sizeof(err)), -1, "%s loaded", path);
	cr_assert_eq(memcmp(&c, &before, sizeof(c)), 0, "%s: a failed load touched *out", path);
	cr_assert_neq(err[0], '\0', "%s: no message", path);
	cr_assert_null(strchr(err, '\n'), "%s: not one line: %s", path, err);
	return err;
}

/*
 * A file holding `members` first, then a valid remote and uploader, so that the members' own
 * problem is the first one found; returns its path (static).
 */
static const char *with_uploader(const char *members)
{
	static char path[PATH_MAX];
	const char *uploader = strstr(members, "\"uploader\"") ? ""
							      : ", \"uploader\": {\"media\": {}}";
	char *text;
	cr_assert_geq(asprintf(&text,
			       "{%s, \"remotes\": {\"media\": {\"upload_folder\": \"%s/media\", "
			       "\"upload_remote\": \"gd:\"}}%s}",
			       members, tmp, uploader),
		      0);
	snprintf(path, sizeof(path), "%s/members.json", tmp);
	put_file(path, text, strlen(text));
	free(text);
	return path;
}

static char *expand(const char *expected)
{
	size_t len;
	return substitute(expected, strlen(expected), &len);
}

static bool has_warning(const struct config *c, const char *w)
{
	for (size_t i = 0; i < c->warning_count; i++)
		if (strcmp(c->warnings[i], w) == 0)
			return true;
	return false;
}

static const char *extra(const struct config_remote *r, const char *name, bool *found)
{
	*found = false;
	for (size_t i = 0; i < r->rclone_extra_count; i++)
		if (strcmp(r->rclone_extras[i].name, name) == 0) {
			*found = true;
			return r->rclone_extras[i].value;
		}
	return NULL;
}

TestSuite(config, .init = make_tmp, .fini = remove_tmp);

Test(config, full_cloudplow_config_loads_with_every_field_as_written)
{
	struct config c;
	char p[PATH_MAX];
	bool found;
	load_ok("good_full.json", &c);

	cr_assert_eq(c.core.dry_run, false);
	cr_assert_str_eq(c.core.rclone_binary_path, "/usr/bin/rclone");
	snprintf(p, sizeof(p), "%s/rclone.conf", tmp);
	cr_assert_str_eq(c.core.rclone_config_path, p);
	char *real = realpath(tmp, NULL);
	cr_assert_str_eq(c.dir, real);

	cr_assert_eq(c.remote_count, 3);
	const struct config_remote *g = config_find_remote(&c, "google");
	cr_assert_not_null(g);
	snprintf(p, sizeof(p), "%s/media", tmp);
	cr_assert_str_eq(g->upload_folder, p);
	cr_assert_str_eq(g->upload_remote, "google:/Media");
	cr_assert_eq(g->rclone_command, CONFIG_COMMAND_MOVE);
	cr_assert_eq(g->rclone_exclude_count, 5);
	cr_assert_str_eq(g->rclone_excludes[0], "**partial~");
	cr_assert_str_eq(g->rclone_excludes[4], "**.fuse_hidden**");
	cr_assert_eq(g->remove_empty_dir_depth, 2);
	/* 10 extras minus --verbose, which cplow sets itself. */
	cr_assert_eq(g->rclone_extra_count, 9);
	cr_assert_str_eq(g->rclone_extras[0].name, "--checkers");
	cr_assert_str_eq(g->rclone_extras[0].value, "16");
	cr_assert_str_eq(extra(g, "--drive-chunk-size", &found), "64M");
	cr_assert_null(extra(g, "--verbose", &found));
	cr_assert_not(found);
	cr_assert_eq(g->rclone_sleep_count, 2);
	cr_assert_str_eq(g->rclone_sleeps[0].pattern,
			 "Failed to copy: googleapi: Error 403: User rate limit exceeded");
	cr_assert_eq(g->rclone_sleeps[0].count, 5);
	cr_assert_float_eq(g->rclone_sleeps[0].sleep_hours, 25.0, 1e-12);
	cr_assert_eq(g->rclone_sleeps[0].timeout_s, 3600);
	cr_assert_str_eq(g->rclone_sleeps[1].pattern, " 0/s,");
	cr_assert_float_eq(g->rclone_sleeps[1].sleep_hours, 0.5, 1e-12);

	const struct config_remote *box = config_find_remote(&c, "box");
	cr_assert_eq(box->rclone_command, CONFIG_COMMAND_COPY);
	snprintf(p, sizeof(p), "%s/tv", real);
	cr_assert_str_eq(box->upload_folder, p, "relative to the config's directory");
	cr_assert_eq(box->rclone_exclude_count, 0);
	cr_assert_eq(box->remove_empty_dir_depth, -1);
	const struct config_remote *backup = config_find_remote(&c, "backup");
	cr_assert_null(backup->upload_folder, "a remote no uploader uses needs no folder");

	cr_assert_eq(c.uploader_count, 2);
	const struct config_uploader *u = config_find_uploader(&c, "google");
	cr_assert_eq(u, &c.uploaders[0]);
	cr_assert_eq(u->remote, g);
	cr_assert_eq(u->check_interval_min, 30);
	cr_assert_float_eq(u->max_size_gb, 200.0, 1e-12);
	cr_assert_eq(u->max_size_bytes, 200LL << 30);
	cr_assert(u->exclude_open_files);
	cr_assert_eq(u->opened_exclude_count, 1);
	cr_assert_str_eq(u->opened_excludes[0], "/downloads/");
	cr_assert_eq(u->size_exclude_count, 1);
	cr_assert_str_eq(u->size_excludes[0], "downloads/*");
	cr_assert(u->schedule.enabled);
	cr_assert_eq(u->schedule.allowed_from_min, 22 * 60 + 30);
	cr_assert_eq(u->schedule.allowed_until_min, 6 * 60 + 15);
	snprintf(p, sizeof(p), "%s/sa/", tmp);
	cr_assert_str_eq(u->service_account_path, p, "an absolute path keeps its spelling");
	cr_assert_eq(u->rotate_remote_count, 0);
	cr_assert_eq(u->check_type, CONFIG_CHECK_SIZE);

	const struct config_uploader *b = config_find_uploader(&c, "box");
	cr_assert_eq(b->remote, box);
	cr_assert_eq(b->check_interval_min, 15);
	cr_assert_eq(b->max_size_bytes, 3LL << 29);
	cr_assert_eq(b->rotate_remote_count, 3);
	cr_assert_str_eq(b->rotate_remotes[2], "box 3");
	cr_assert_null(b->service_account_path);
	cr_assert_eq(b->check_type, CONFIG_CHECK_AGE);
	cr_assert_eq(b->check_limit_minutes, 45);
	cr_assert_null(config_find_uploader(&c, "backup"));

	cr_assert_eq(c.quota.daily_bytes, 805306368000LL);
	cr_assert_eq(c.quota.window, LEDGER_WINDOW_ROLLING);
	cr_assert_eq(c.quota.min_free_bytes, 2147483648LL);
	cr_assert_eq(c.quota.continue_min_bytes, 5368709120LL);
	cr_assert_eq(c.quota.flush_interval_ms, 250);
	snprintf(p, sizeof(p), "%s/state/quota.json", real);
	cr_assert_str_eq(c.quota.cache_path, p);
	cr_assert_eq(c.quota.capacity, 4096);
	snprintf(p, sizeof(p), "%s/run/cplow.lock", tmp);
	cr_assert_str_eq(c.quota.lock_path, p);

	cr_assert_eq(c.stage_count, 2);
	cr_assert_str_eq(c.stages[0].name, "big_first");
	cr_assert_float_eq(c.stages[0].min_share, 0.6, 1e-12);
	cr_assert_float_eq(c.stages[0].max_transfer_share, 0.5, 1e-12);
	cr_assert_float_eq(c.stages[0].max_size_share, 0.8, 1e-12);
	cr_assert_eq(c.stages[0].transfers, 8);
	cr_assert_str_eq(c.stages[0].order_by, "size,desc");
	cr_assert_eq(c.stages[0].max_backlog, 2000);
	cr_assert_str_eq(c.stages[1].name, "rest");
	cr_assert_float_eq(c.stages[1].min_share, 0.0, 0);
	cr_assert_null(c.stages[1].order_by);
	cr_assert_eq(c.stages[1].max_backlog, 0);

	cr_assert(c.dashboard.enabled);
	cr_assert_str_eq(c.dashboard.host, "0.0.0.0");
	cr_assert_eq(c.dashboard.port, 8080);
	cr_assert_str_eq(c.dashboard.token, "s3cr3t-dashboard-token");
	cr_assert_eq(c.dashboard.refresh_seconds, 5);

	cr_assert(c.plex.enabled);
	cr_assert_str_eq(c.plex.url, "http://localhost:32400");
	cr_assert_str_eq(c.plex.token, "pLeXt0kEn-XXXXXXXXXX");
	cr_assert_eq(c.plex.poll_interval_s, 60);
	cr_assert_eq(c.plex.max_streams_before_throttle, 1);
	cr_assert(c.plex.ignore_local_streams);
	cr_assert_eq(c.plex.throttle_speed_count, 6);
	for (size_t i = 0; i < 6; i++)
		cr_assert_eq(c.plex.throttle_speeds[i].streams, (int)i);
	cr_assert_str_eq(c.plex.throttle_speeds[2].rate, "40M");
	cr_assert(c.nzbget.enabled);
	cr_assert_str_eq(c.nzbget.url, "https://nzbuser:nzbsecret@nzbget.example.com");
	cr_assert_not(c.sabnzbd.enabled);
	cr_assert_str_eq(c.sabnzbd.apikey, "0123456789abcdef0123456789abcdef");

	cr_assert_eq(c.notification_count, 3);
	const struct config_notification *apprise = &c.notifications[0];
	cr_assert_str_eq(apprise->name, "apprise");
	cr_assert_eq(apprise->service, CONFIG_NOTIFY_APPRISE);
	cr_assert_not(apprise->enabled, "an apprise library URL is skipped");
	cr_assert_str_eq(apprise->title, "Cloudplow");
	const struct config_notification *po = &c.notifications[1];
	cr_assert_eq(po->service, CONFIG_NOTIFY_PUSHOVER);
	cr_assert(po->enabled);
	cr_assert_str_eq(po->app_token, "aqxvnvfq42adpfpwk8xmcjxn9myx8");
	cr_assert_str_eq(po->user_token, "uQiRzpo4DXghDmr9QzzfQu27cmVRsG");
	cr_assert_eq(po->priority, 0);
	cr_assert_str_eq(po->url, CONFIG_NOTIFY_PUSHOVER_URL);
	cr_assert_not(po->url_set);
	const struct config_notification *sl = &c.notifications[2];
	cr_assert_eq(sl->service, CONFIG_NOTIFY_SLACK);
	cr_assert_str_eq(sl->url,
			 "https://hooks.slack.com/services/T000/B000/XXXXXXXXXXXXXXXXXXXXXXXX");
	cr_assert_str_eq(sl->sender_name, "cloudplow");
	cr_assert_str_eq(sl->sender_icon, ":heavy_exclamation_mark:");
	cr_assert_null(sl->channel, "cloudplow's \"channel\": \"\" means the webhook's own");

	/* cloudplow's own sections are read, not ignored (issue 14) */
	cr_assert_eq(c.ignored_section_count, 0);
	cr_assert_eq(c.hidden_count, 1);
	cr_assert_str_eq(c.hidden[0].folder, "/mnt/local/.unionfs-fuse");
	cr_assert_eq(c.hidden[0].remote_count, 1);
	cr_assert_str_eq(c.hidden[0].remotes[0], "google");
	cr_assert_str_eq(g->hidden_remote, "google:");
	cr_assert_eq(c.syncer_count, 0);
	cr_assert(u->can_be_throttled, "cloudplow's default");
	cr_assert_not(u->mover.enabled);
	cr_assert_str_eq(u->mover.move_from_remote, "staging:Media");
	cr_assert_str_eq(u->mover.move_to_remote, "gdrive:Media");
	cr_assert_eq(u->mover.rclone_extra_count, 1);
	cr_assert_str_eq(u->mover.rclone_extras[0].name, "--delete-empty-src-dirs");
	cr_assert_eq(u->quota, CONFIG_QUOTA_AUTO);
	cr_assert(u->quota_enabled, "service accounts rotate");
	free(real);
	config_free(&c);
}

Test(config, full_config_warns_once_for_each_key_it_ignores)
{
	struct config c;
	load_ok("good_full.json", &c);
	/* hidden_remote is read now; sync_remote means nothing without a syncer, in cloudplow
	 * too; the mover is off; verbose_notifications is false: none of them asks for anything
	 * cplow does not do (issue 14). */
	static const char *const expected[] = {
		"remotes.google.rclone_extras.--verbose: --verbose is set by cplow itself, ignored",
		"plex.rclone.url: ignored: cplow throttles each stage's own rclone through that "
		"rclone's remote control",
		"notifications.apprise.url: an apprise library URL (discord://...), which needs "
		"Python's apprise; cplow posts to an Apprise API server's http(s) URL: this "
		"notification is skipped",
	};
	for (size_t i = 0; i < sizeof(expected) / sizeof(expected[0]); i++)
		cr_expect(has_warning(&c, expected[i]), "missing warning: %s", expected[i]);
	cr_assert_eq(c.warning_count, sizeof(expected) / sizeof(expected[0]));
	config_free(&c);
}

Test(config, minimal_config_gets_every_default)
{
	struct config c;
	char p[PATH_MAX];
	load_ok("good_minimal.json", &c);
	char *real = realpath(tmp, NULL);

	cr_assert_eq(c.core.dry_run, false);
	cr_assert_str_eq(c.core.rclone_binary_path, "/usr/bin/rclone");
	cr_assert_null(c.core.rclone_config_path);
	cr_assert_eq(c.core.rclone_nice, 5, "rclone runs nicer than cplow by default");

	const struct config_uploader *u = config_find_uploader(&c, "media");
	cr_assert_not_null(u);
	const struct config_remote *r = u->remote;
	cr_assert_str_eq(r->name, "media");
	cr_assert_eq(r->rclone_command, CONFIG_COMMAND_MOVE);
	cr_assert_eq(r->rclone_exclude_count, 0);
	cr_assert_eq(r->rclone_extra_count, 0);
	cr_assert_eq(r->rclone_sleep_count, 0);
	cr_assert_eq(r->remove_empty_dir_depth, -1);
	cr_assert_eq(u->check_interval_min, 30);
	cr_assert_float_eq(u->max_size_gb, 200.0, 0);
	cr_assert_eq(u->size_exclude_count, 0);
	cr_assert_eq(u->exclude_open_files, false);
	cr_assert_eq(u->opened_exclude_count, 0);
	cr_assert_eq(u->schedule.enabled, false);
	cr_assert_eq(u->schedule.allowed_from_min, -1);
	cr_assert_eq(u->schedule.allowed_until_min, -1);
	cr_assert_null(u->service_account_path);
	cr_assert_eq(u->rotate_remote_count, 0);
	cr_assert_eq(u->check_type, CONFIG_CHECK_SIZE);

	cr_assert_eq(c.quota.daily_bytes, 805306368000LL);
	cr_assert_eq(c.quota.window, LEDGER_WINDOW_FIXED);
	cr_assert_eq(c.quota.min_free_bytes, 1073741824LL);
	cr_assert_eq(c.quota.continue_min_bytes, 10737418240LL);
	cr_assert_eq(c.quota.flush_interval_ms, 100);
	cr_assert_eq(c.quota.capacity, 1024);
	snprintf(p, sizeof(p), "%s/sa_quota_cache.json", real);
	cr_assert_str_eq(c.quota.cache_path, p);
	snprintf(p, sizeof(p), "%s/cplow.lock", real);
	cr_assert_str_eq(c.quota.lock_path, p);

	/* REFERENCE.md §2, row by row. */
	static const struct {
		const char *name;
		double min, transfer, size;
		int transfers;
		const char *order_by;
		int backlog;
	} want[] = {
		{ "aggressive_fresh_sa", 0.80, 0.5, 0.8, 8, "size,desc", 2000 },
		{ "moderate_mid_sa", 0.50, 0.6, 0.5, 4, "size,desc", 1000 },
		{ "cautious_low_quota", 0.25, 0.7, 0.3, 6, NULL, 0 },
		{ "conservative_cleanup", 0.0, 0.8, 0.2, 8, NULL, 0 },
	};
	cr_assert_eq(c.stage_count, 4);
	for (size_t i = 0; i < 4; i++) {
		const struct config_stage *s = &c.stages[i];
		cr_assert_str_eq(s->name, want[i].name);
		cr_assert_float_eq(s->min_share, want[i].min, 0);
		cr_assert_float_eq(s->max_transfer_share, want[i].transfer, 0);
		cr_assert_float_eq(s->max_size_share, want[i].size, 0);
		cr_assert_eq(s->transfers, want[i].transfers);
		if (want[i].order_by)
			cr_assert_str_eq(s->order_by, want[i].order_by);
		else
			cr_assert_null(s->order_by);
		cr_assert_eq(s->max_backlog, want[i].backlog);
	}

	cr_assert_eq(c.dashboard.enabled, false);
	cr_assert_str_eq(c.dashboard.host, "127.0.0.1");
	cr_assert_eq(c.dashboard.port, 47949);
	cr_assert_null(c.dashboard.token);
	cr_assert_eq(c.dashboard.refresh_seconds, 3);

	cr_assert_eq(c.ignored_section_count, 0);
	cr_assert_eq(c.warning_count, 0);
	free(real);
	config_free(&c);
}

Test(config, missing_rclone_excludes_is_an_empty_list)
{
	struct config c;
	load_ok("good_minimal.json", &c);
	const struct config_remote *r = config_find_remote(&c, "media");
	cr_assert_eq(r->rclone_exclude_count, 0);
	cr_assert_null(r->rclone_excludes);
	config_free(&c);

	load_text_ok("{\"remotes\": {\"media\": {\"upload_folder\": \"@TMP@/media\","
		     " \"upload_remote\": \"gd:\", \"rclone_excludes\": null}},"
		     " \"uploader\": {\"media\": {}}}",
		     &c);
	cr_assert_eq(c.remotes[0].rclone_exclude_count, 0);
	config_free(&c);
}

Test(config, plex_rates_rclone_takes_are_accepted_and_sorted_by_streams)
{
	struct config c;
	load_text_ok("{\"remotes\": {\"media\": {\"upload_folder\": \"@TMP@/media\","
		     " \"upload_remote\": \"gd:\"}}, \"uploader\": {\"media\": {}},"
		     " \"plex\": {\"enabled\": true, \"url\": \"https://plex.example.com/\","
		     " \"token\": \"t\", \"ignore_local_streams\": false, \"rclone\":"
		     " {\"throttle_speeds\": {\"10\": \"off\", \"3\": \"1M:2M\","
		     " \"0\": \"512Ki\", \"5\": \"1.5MiB\", \"7\": \"100\"}}},"
		     " \"nzbget\": {\"enabled\": false}, \"sabnzbd\": null}",
		     &c);
	cr_assert_eq(c.plex.poll_interval_s, 60, "cloudplow's default");
	cr_assert_eq(c.plex.max_streams_before_throttle, 1);
	cr_assert_not(c.plex.ignore_local_streams);
	static const struct {
		int streams;
		const char *rate;
	} want[] = { { 0, "512Ki" }, { 3, "1M:2M" }, { 5, "1.5MiB" }, { 7, "100" }, { 10, "off" } };
	cr_assert_eq(c.plex.throttle_speed_count, 5);
	for (size_t i = 0; i < 5; i++) {
		cr_assert_eq(c.plex.throttle_speeds[i].streams, want[i].streams);
		cr_assert_str_eq(c.plex.throttle_speeds[i].rate, want[i].rate);
	}
	cr_assert_not(c.nzbget.enabled);
	cr_assert_null(c.nzbget.url, "a disabled downloader needs no url");
	cr_assert_not(c.sabnzbd.enabled);
	cr_assert_eq(c.ignored_section_count, 0);
	config_free(&c);
}

/* fixture → its one line; @TMP@ is the temp dir. */
static const struct {
	const char *fixture;
	const char *message;
} bad[] = {
	{ "bad_empty.json", "@TMP@/bad_empty.json: empty file" },
	{ "bad_not_utf8.json", "@TMP@/bad_not_utf8.json: not UTF-8 at byte 29" },
	{ "bad_json_missing_comma.json",
	  "@TMP@/bad_json_missing_comma.json: not valid JSON at line 4, column 7: expected ',' or "
	  "'}'" },
	{ "bad_json_trailing_comma.json",
	  "@TMP@/bad_json_trailing_comma.json: not valid JSON at line 6, column 9: expected a key "
	  "in double quotes" },
	{ "bad_json_python_literals.json",
	  "@TMP@/bad_json_python_literals.json: not valid JSON at line 2, column 25: expected a "
	  "value (JSON writes true, false and null in lower case)" },
	{ "bad_json_leading_zero.json",
	  "@TMP@/bad_json_leading_zero.json: not valid JSON at line 1, column 43: invalid number: "
	  "leading zeros are not allowed" },
	{ "bad_json_nul_escape.json",
	  "@TMP@/bad_json_nul_escape.json: not valid JSON at line 1, column 52: \\u0000 in a "
	  "string is not supported" },
	{ "bad_top_level_list.json",
	  "@TMP@/bad_top_level_list.json: the top level must be a JSON object, got a list" },
	{ "bad_duplicate_uploader.json", "uploader: \"media\" appears twice" },
	{ "bad_duplicate_extras_flag.json",
	  "remotes.media.rclone_extras: \"--checkers\" appears twice" },
	{ "bad_unknown_key_near_miss.json",
	  "remotes.media.upload_fodler: unknown key (did you mean upload_folder?)" },
	{ "bad_unknown_key_case.json",
	  "uploader.media.Max_Size_GB: unknown key (did you mean max_size_gb?)" },
	{ "bad_unknown_section_near_miss.json",
	  "uploaders: unknown section (did you mean uploader?)" },
	{ "bad_no_uploader_section.json", "uploader: missing: configure at least one uploader" },
	{ "bad_core_dry_run_type.json", "core.dry_run: must be true or false, got \"no\"" },
	{ "bad_core_rclone_nice.json", "core.rclone_nice: must be an integer from 0 to 19, got 20" },
	{ "bad_upload_folder_not_dir.json",
	  "remotes.media.upload_folder: not a directory: @TMP@/file.txt" },
	{ "bad_upload_folder_missing.json",
	  "remotes.media.upload_folder: no such directory: @TMP@/missing" },
	{ "bad_remote_missing_upload_remote.json",
	  "remotes.media.upload_remote: missing: uploader.media needs it" },
	{ "bad_rclone_command_sync.json",
	  "remotes.media.rclone_command: must be \"move\" or \"copy\", got \"sync\" (cloudplow ran "
	  "move for it)" },
	{ "bad_rclone_excludes_not_list.json",
	  "remotes.media.rclone_excludes: must be a list of strings, got \"**partial~\"" },
	{ "bad_rclone_extras_list_value.json",
	  "remotes.media.rclone_extras.--exclude: must be a string, a number, true, false or null, "
	  "got a list" },
	{ "bad_rclone_sleeps_count_zero.json",
	  "remotes.media.rclone_sleeps[\"User rate limit exceeded\"].count: must be an integer "
	  "from 1 to 1000000, got 0" },
	{ "bad_rclone_sleeps_missing_sleep.json",
	  "remotes.media.rclone_sleeps[\"User rate limit exceeded\"].sleep: missing" },
	{ "bad_rclone_sleeps_bad_regex.json",
	  "remotes.media.rclone_sleeps[\"regex:User (rate\"]: invalid regex: Unmatched ( or \\(" },
	{ "bad_remove_empty_dir_depth.json",
	  "remotes.media.remove_empty_dir_depth: must be an integer from 0 to 1000, got -2" },
	{ "bad_max_size_gb_string.json",
	  "uploader.media.max_size_gb: must be a number >= 0, got \"abc\"" },
	{ "bad_max_size_gb_negative.json",
	  "uploader.media.max_size_gb: must be a number >= 0, got -1" },
	{ "bad_check_interval_fraction.json",
	  "uploader.media.check_interval: must be a whole number of minutes from 1 to 525600, got "
	  "2.5" },
	{ "bad_uploader_without_remote.json",
	  "uploader.tv: no remotes.tv section for this uploader" },
	{ "bad_uploader_reserved_name.json",
	  "uploader._cplow: reserved name: the ledger file keeps cplow's own data under "
	  "\"_cplow\"" },
	{ "bad_uploader_name_too_long.json",
	  "uploader.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa: name longer "
	  "than 63 bytes" },
	{ "bad_uploader_name_empty.json", "uploader[\"\"]: empty uploader name" },
	{ "bad_rotate_remotes_empty.json",
	  "uploader.media.rotate_remotes: empty list: give at least one remote, or remove the "
	  "key" },
	{ "bad_rotate_remotes_and_service_accounts.json",
	  "uploader.media.rotate_remotes: cannot be combined with service_account_path: choose one "
	  "kind of account" },
	{ "bad_rotate_remotes_bad_name.json",
	  "uploader.media.rotate_remotes[1]: not an rclone remote name (letters, digits, '_', '-', "
	  "'.' and spaces, without a ':'): \"gd2:\"" },
	{ "bad_rotate_remotes_duplicate.json",
	  "uploader.media.rotate_remotes[2]: \"gd1\" appears twice" },
	{ "bad_rotate_remotes_local_destination.json",
	  "remotes.media.upload_remote: must be an rclone remote (\"name:path\") for "
	  "rotate_remotes, got \"/mnt/remote/Media\"" },
	{ "bad_service_account_path_missing.json",
	  "uploader.media.service_account_path: no such directory: @TMP@/no-such-dir" },
	{ "bad_schedule_time.json",
	  "uploader.media.schedule.allowed_from: must be a time \"HH:MM\" from 00:00 to 23:59, got "
	  "\"25:00\"" },
	{ "bad_schedule_same_times.json",
	  "uploader.media.schedule.allowed_until: equals allowed_from: the window would be empty, "
	  "or the whole day; to upload at any time, set enabled to false" },
	{ "bad_check_type.json",
	  "uploader.media.check.type: must be \"age\" or \"size\", got \"time\"" },
	{ "bad_check_age_without_limit.json",
	  "uploader.media.check.limit_minutes: missing: an age check needs it" },
	{ "bad_quota_window.json",
	  "quota.window: must be \"fixed\" or \"rolling\", got \"daily\"" },
	{ "bad_quota_daily_bytes_fraction.json",
	  "quota.daily_bytes: must be a whole number of bytes from 1 to 9007199254740992, got "
	  "1.5" },
	{ "bad_quota_min_free_above_daily.json",
	  "quota.min_free_bytes: must be less than quota.daily_bytes (1048576), got 1073741824" },
	{ "bad_stages_out_of_order.json",
	  "stages[2].min_share: rows must go from the highest min_share to the lowest: 0.9 follows "
	  "0.5" },
	{ "bad_stages_share_above_one.json",
	  "stages[0].max_transfer_share: must be a number > 0 and <= 1, got 1.5" },
	{ "bad_stages_last_not_zero.json",
	  "stages[1].min_share: the last row's must be 0, so that every remaining quota has a "
	  "strategy, got 0.1" },
	{ "bad_stages_order_by.json",
	  "stages[0].order_by: must be like \"size,desc\" (size|name|modtime[,asc|desc|mixed[,N]]) "
	  "or null, got \"biggest\"" },
	{ "bad_dashboard_port.json",
	  "dashboard.port: must be an integer from 1 to 65535, got 70000" },
	{ "bad_plex_enabled_without_token.json", "plex.token: missing: plex.enabled needs it" },
	{ "bad_plex_poll_interval.json",
	  "plex.poll_interval: must be a whole number of seconds from 1 to 86400, got 0.5" },
	{ "bad_plex_throttle_speed_key.json",
	  "plex.rclone.throttle_speeds.two: the key must be a number of streams from 0 to 999999, "
	  "like \"2\"" },
	{ "bad_plex_throttle_speed_rate.json",
	  "plex.rclone.throttle_speeds.2: must be an rclone bandwidth like \"10M\", \"512k\", "
	  "\"1M:2M\" or \"off\" (no timetable), got \"08:00,512k\"" },
	{ "bad_plex_url.json",
	  "plex.url: must be an http:// or https:// URL with a host, got \"plex.local:32400\"" },
	{ "bad_nzbget_url_type.json", "nzbget.url: must be a string, got 6789" },
	{ "bad_sabnzbd_enabled_without_apikey.json",
	  "sabnzbd.apikey: missing: sabnzbd.enabled needs it" },
	{ "bad_notifications_not_object.json", "notifications: must be an object, got a list" },
	{ "bad_notifications_service_missing.json",
	  "notifications.chat.service: missing: \"slack\", \"discord\", \"google_chat\", "
	  "\"pushover\", \"apprise\" or \"webhook\"" },
	{ "bad_notifications_service_unknown.json",
	  "notifications.tg.service: must be \"slack\", \"discord\", \"google_chat\", "
	  "\"pushover\", \"apprise\" or \"webhook\", got \"telegram\"" },
	{ "bad_notifications_slack_without_webhook_url.json",
	  "notifications.slack.webhook_url: missing: a slack notification needs it" },
	{ "bad_notifications_url_not_http.json",
	  "notifications.hook.url: must be an http:// or https:// URL with a host, got one "
	  "starting with ftp:// (the rest is not shown: webhook URLs hold tokens)" },
	{ "bad_notifications_pushover_priority.json",
	  "notifications.pushover.priority: must be an integer from -2 to 2, got 3" },
	{ "bad_notifications_pushover_without_user_token.json",
	  "notifications.pushover.user_token: missing: a pushover notification needs it" },
	{ "bad_notifications_key_near_miss.json",
	  "notifications.discord.webhook_ulr: unknown key (did you mean webhook_url?)" },
	{ "bad_notifications_header_control_character.json",
	  "notifications.hook.headers.Authorization: a header value holds no control characters "
	  "(the value is not shown: it may be a secret)" },
};

Test(config, every_bad_fixture_gives_its_exact_one_line_message)
{
	size_t n = sizeof(bad) / sizeof(bad[0]);
	cr_assert_geq(n, 20);
	for (size_t i = 0; i < n; i++) {
		const char *err = load_error(stage_fixture(bad[i].fixture));
		char *want = expand(bad[i].message);
		cr_expect_str_eq(err, want, "%s:\n got  %s\n want %s", bad[i].fixture, err, want);
		free(want);
	}
}

/* A fixture nobody checks is a claim nobody makes. */
Test(config, every_bad_fixture_file_is_in_the_table)
{
	DIR *d = opendir(CONFIG_FIXTURES);
	cr_assert_not_null(d);
	struct dirent *e;
	size_t files = 0;
	while ((e = readdir(d))) {
		if (strncmp(e->d_name, "bad_", 4) != 0)
			continue;
		files++;
		bool listed = false;
		for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
			listed = listed || strcmp(bad[i].fixture, e->d_name) == 0;
		cr_expect(listed, "%s has no expected message", e->d_name);
	}
	closedir(d);
	cr_assert_eq(files, sizeof(bad) / sizeof(bad[0]));
}

Test(config, an_11_mb_file_is_refused_before_it_is_read)
{
	char path[PATH_MAX], want[PATH_MAX + 64];
	snprintf(path, sizeof(path), "%s/huge.json", tmp);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	cr_assert_geq(fd, 0);
	/* Sparse: every byte reads as NUL, which the UTF-8 and JSON checks would also refuse,
	 * so only the size check can give this message. */
	cr_assert_eq(ftruncate(fd, 11 * 1000 * 1000), 0);
	close(fd);
	snprintf(want, sizeof(want), "%s: larger than 1 MiB", path);
	cr_assert_str_eq(load_error(path), want);
}

Test(config, one_byte_over_1_mib_is_refused_and_1_mib_exactly_loads)
{
	char path[PATH_MAX], want[PATH_MAX + 64];
	const char *json = "{\"remotes\": {\"media\": {\"upload_folder\": \"@TMP@/media\", "
			   "\"upload_remote\": \"gd:\"}}, \"uploader\": {\"media\": {}}}";
	size_t len;
	char *sub = substitute(json, strlen(json), &len);
	char *big = malloc(CONFIG_FILE_MAX + 1);
	cr_assert_not_null(big);
	memset(big, ' ', CONFIG_FILE_MAX + 1);
	memcpy(big, sub, len);
	snprintf(path, sizeof(path), "%s/big.json", tmp);

	put_file(path, big, CONFIG_FILE_MAX + 1);
	snprintf(want, sizeof(want), "%s: larger than 1 MiB", path);
	cr_assert_str_eq(load_error(path), want);

	put_file(path, big, CONFIG_FILE_MAX);
	struct config c;
	char err[CONFIG_ERR_MAX] = "";
	cr_assert_eq(config_load(path, &c, err, sizeof(err)), 0, "%s", err);
	config_free(&c);
	free(big);
	free(sub);
}

Test(config, bad_utf8_is_refused_at_its_first_byte)
{
	static const struct {
		const char *bytes;
		size_t offset;
	} cases[] = {
		{ "{\"a\": \"\xc0\xaf\"}", 7 },          /* overlong '/' */
		{ "{\"a\": \"\xed\xa0\x80\"}", 7 },      /* a UTF-16 surrogate */
		{ "{\"a\": \"\xf4\x90\x80\x80\"}", 7 },  /* above U+10FFFF */
		{ "{\"a\": \"ok \xe2\x82\"}", 10 },      /* cut short */
		{ "{\"a\": \"\xe2\x82\xac\xff\"}", 10 }, /* after a valid euro sign */
		{ "{\"a\": 1}\x80", 8 },                 /* a stray continuation byte */
	};
	char path[PATH_MAX], want[PATH_MAX + 64];
	snprintf(path, sizeof(path), "%s/utf8.json", tmp);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		put_file(path, cases[i].bytes, strlen(cases[i].bytes));
		snprintf(want, sizeof(want), "%s: not UTF-8 at byte %zu", path, cases[i].offset);
		cr_expect_str_eq(load_error(path), want, "case %zu", i);
	}
}

Test(config, json_errors_count_columns_in_characters_and_skip_a_bom)
{
	char path[PATH_MAX], want[PATH_MAX + 128];
	snprintf(path, sizeof(path), "%s/col.json", tmp);
	/* "é" is two bytes and one column; the error is at the '}' after the comma. */
	const char *text = "\xef\xbb\xbf{\"caf\xc3\xa9\": 1,}";
	put_file(path, text, strlen(text));
	snprintf(want, sizeof(want),
		 "%s: not valid JSON at line 1, column 12: expected a key in double quotes", path);
	cr_assert_str_eq(load_error(path), want);
}

Test(config, rclone_extras_render_as_rclone_flags)
{
	struct config c;
	bool found;
	load_text_ok("{\"remotes\": {\"media\": {\"upload_folder\": \"@TMP@/media\", "
		     "\"upload_remote\": \"gd:\", \"rclone_extras\": {"
		     "\"--transfers\": 8, \"--bwlimit-file\": 0.5, \"--tpslimit\": 12.0,"
		     " \"--skip-links\": null, \"--drive-use-trash\": false, \"--fast-list\": true,"
		     " \"checkers\": 16, \"--user-agent\": \"a b\","
		     " \"--drive-chunk-size\": \"64M\","
		     " \"-v\": null, \"--cutoff-mode\": \"soft\", \"--size-only\": \"\","
		     " \"--max-age\": 1e3, \"--min-size\": -0.25}}},"
		     " \"uploader\": {\"media\": {}}}",
		     &c);
	const struct config_remote *r = &c.remotes[0];
	cr_assert_str_eq(extra(r, "--transfers", &found), "8");
	cr_assert_str_eq(extra(r, "--bwlimit-file", &found), "0.5");
	cr_assert_str_eq(extra(r, "--tpslimit", &found), "12");
	cr_assert_null(extra(r, "--skip-links", &found));
	cr_assert(found, "null is a bare flag, not a missing one");
	cr_assert_str_eq(extra(r, "--drive-use-trash", &found), "false");
	cr_assert_str_eq(extra(r, "--fast-list", &found), "true");
	cr_assert_str_eq(extra(r, "--checkers", &found), "16", "dashes prepended");
	cr_assert_str_eq(extra(r, "--user-agent", &found), "a b");
	cr_assert_str_eq(extra(r, "--drive-chunk-size", &found), "64M");
	cr_assert_str_eq(extra(r, "--size-only", &found), "");
	cr_assert_str_eq(extra(r, "--max-age", &found), "1000");
	cr_assert_str_eq(extra(r, "--min-size", &found), "-0.25");
	extra(r, "-v", &found);
	cr_assert_not(found, "cplow's own flags are dropped");
	extra(r, "--cutoff-mode", &found);
	cr_assert_not(found);
	cr_assert_eq(r->rclone_extra_count, 12);
	/* File order is kept: rclone sees the flags as the user wrote them. */
	cr_assert_str_eq(r->rclone_extras[0].name, "--transfers");
	cr_assert_str_eq(r->rclone_extras[6].name, "--checkers");
	cr_assert(has_warning(&c, "remotes.media.rclone_extras.checkers: no leading dashes: "
				  "passed as --checkers"));
	cr_assert(has_warning(&c, "remotes.media.rclone_extras.-v: -v is set by cplow itself, "
				  "ignored"));
	cr_assert(has_warning(&c, "remotes.media.rclone_extras.--cutoff-mode: --cutoff-mode is "
				  "set by cplow itself, ignored"));
	cr_assert_eq(c.warning_count, 3);
	config_free(&c);
}

Test(config, extras_that_would_hide_rclones_copied_lines_are_refused_naming_the_key)
{
	static const struct {
		const char *json, *key;
	} cases[] = {
		{ "\"--log-file\": \"/var/log/rclone.log\"", "--log-file" },
		{ "\"--use-json-log\": false", "--use-json-log" },
		{ "\"--verbose\": 0", "--verbose" },
		{ "\"log-level\": \"INFO\"", "log-level" },
		{ "\"-q\": null", "-q" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char path[PATH_MAX], text[512], want[128];
		snprintf(path, sizeof(path), "%s/hide%zu.json", tmp, i);
		snprintf(text, sizeof(text), "{\"remotes\": {\"media\": {\"rclone_extras\": {%s}}}, "
			 "\"uploader\": {}}", cases[i].json);
		put_file(path, text, strlen(text));
		snprintf(want, sizeof(want), "remotes.media.rclone_extras.%s: ", cases[i].key);
		const char *got = load_error(path);
		cr_assert(strncmp(got, want, strlen(want)) == 0 && strstr(got, "remove the key"),
			  "%s", got);
	}
	/* cloudplow's own sample has "--verbose": 1, which is what cplow runs: still accepted. */
	struct config c;
	load_text_ok("{\"remotes\": {\"media\": {\"upload_folder\": \"@TMP@/media\", "
		     "\"upload_remote\": \"gd:\", \"rclone_extras\": {\"--verbose\": 1, "
		     "\"--stats\": \"60s\", \"--log-format\": \"pid\"}}}, \"uploader\": {\"media\": {}}}",
		     &c);
	config_free(&c);
}

Test(config, a_flag_written_with_and_without_dashes_is_refused)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/twice.json", tmp);
	const char *text = "{\"remotes\": {\"media\": {\"rclone_extras\": {\"--checkers\": 1, "
			   "\"checkers\": 2}}}, \"uploader\": {}}";
	put_file(path, text, strlen(text));
	cr_assert_str_eq(load_error(path), "remotes.media.rclone_extras.checkers: the same flag "
					   "as an earlier key (--checkers)");
}

Test(config, unknown_keys_far_from_known_ones_are_warnings)
{
	struct config c;
	load_text_ok("{\"_comment\": \"mine\", \"remotes\": {\"media\": {\"upload_folder\": "
		     "\"@TMP@/media\", \"upload_remote\": \"gd:\", \"my_note\": 1}},"
		     " \"uploader\": {\"media\": {\"notes\": \"x\", \"schedule\": {\"enabled\": "
		     "false, \"weekdays\": []}}}, \"quota\": {\"colour\": \"blue\"}}",
		     &c);
	cr_assert(has_warning(&c, "remotes.media.my_note: unknown key, ignored"));
	cr_assert(has_warning(&c, "uploader.media.notes: unknown key, ignored"));
	cr_assert(has_warning(&c, "uploader.media.schedule.weekdays: unknown key, ignored"));
	cr_assert(has_warning(&c, "quota.colour: unknown key, ignored"));
	cr_assert_eq(c.warning_count, 4);
	cr_assert_eq(c.ignored_section_count, 1);
	cr_assert_str_eq(c.ignored_sections[0], "_comment");
	config_free(&c);
}

Test(config, near_misses_of_known_keys_are_errors)
{
	static const struct {
		const char *json;
		const char *message;
	} cases[] = {
		{ "\"core\": {\"dryrun\": true}",
		  "core.dryrun: unknown key (did you mean dry_run?)" },
		{ "\"core\": {\"dry-run\": true}",
		  "core.dry-run: unknown key (did you mean dry_run?)" },
		{ "\"quota\": {\"daily_byte\": 1}",
		  "quota.daily_byte: unknown key (did you mean daily_bytes?)" },
		{ "\"dashboard\": {\"enabled\": true, \"prot\": 1}",
		  "dashboard.prot: unknown key (did you mean port?)" },
		{ "\"remote\": {}", "remote: unknown section (did you mean remotes?)" },
		{ "\"stages\": [{\"nam\": \"x\"}]",
		  "stages[0].nam: unknown key (did you mean name?)" },
		{ "\"uploader\": {\"media\": {\"schedule\": {\"enable\": true}}}",
		  "uploader.media.schedule.enable: unknown key (did you mean enabled?)" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		cr_expect_str_eq(load_error(with_uploader(cases[i].json)), cases[i].message,
				 "case %zu", i);
}

Test(config, quota_defaults_keep_their_share_of_a_small_daily_quota)
{
	struct config c;
	load_text_ok("{\"remotes\": {\"media\": {\"upload_folder\": \"@TMP@/media\", "
		     "\"upload_remote\": \"gd:\"}}, \"uploader\": {\"media\": {}},"
		     " \"quota\": {\"daily_bytes\": 75000000}}",
		     &c);
	cr_assert_eq(c.quota.daily_bytes, 75000000);
	cr_assert_eq(c.quota.min_free_bytes, 100000);
	cr_assert_eq(c.quota.continue_min_bytes, 1000000);
	config_free(&c);
}

static char *print_to_string(const struct config *c)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	cr_assert_not_null(f);
	cr_assert_eq(config_print(c, f), 0);
	fclose(f);
	return text;
}

Test(config, effective_config_is_valid_json_with_secrets_masked)
{
	struct config c;
	load_ok("good_full.json", &c);
	char *text = print_to_string(&c);
	static const char *const secrets[] = {
		"s3cr3t-dashboard-token", "GOCSPX-notarealsecret", "pLeXt0kEn",
		"aqxvnvfq42adpfpwk8xmcjxn9myx8", "uQiRzpo4DXghDmr9QzzfQu27cmVRsG",
		"hooks.slack.com", "discord://", "nzbsecret", "0123456789abcdef0123456789abcdef",
	};
	for (size_t i = 0; i < sizeof(secrets) / sizeof(secrets[0]); i++)
		cr_expect_null(strstr(text, secrets[i]), "%s is in the output", secrets[i]);

	cJSON *root = cJSON_Parse(text);
	cr_assert_not_null(root, "not JSON:\n%s", text);
	cr_assert_str_eq(cJSON_GetStringValue(cJSON_GetObjectItem(
				 cJSON_GetObjectItem(root, "dashboard"), "token")),
			 "***");
	cJSON *google_remote =
		cJSON_GetObjectItem(cJSON_GetObjectItem(root, "remotes"), "google");
	cJSON *extras = cJSON_GetObjectItem(google_remote, "rclone_extras");
	cr_assert_str_eq(cJSON_GetStringValue(cJSON_GetObjectItem(extras,
								    "--drive-client-secret")),
			 "***");
	cr_assert_str_eq(cJSON_GetStringValue(cJSON_GetObjectItem(extras, "--drive-chunk-size")),
			 "64M");
	cr_assert(cJSON_IsNull(cJSON_GetObjectItem(extras, "--skip-links")));
	cJSON *plex = cJSON_GetObjectItem(root, "plex");
	cr_assert_str_eq(cJSON_GetStringValue(cJSON_GetObjectItem(plex, "token")), "***");
	cr_assert_str_eq(cJSON_GetStringValue(cJSON_GetObjectItem(plex, "url")),
			 "http://localhost:32400", "a URL without credentials is no secret");
	cJSON *notifications = cJSON_GetObjectItem(root, "notifications");
	cr_assert_str_eq(cJSON_GetStringValue(cJSON_GetObjectItem(
				 cJSON_GetObjectItem(notifications, "apprise"), "url")),
			 "***");
	cr_assert_str_eq(cJSON_GetStringValue(cJSON_GetObjectItem(
				 cJSON_GetObjectItem(notifications, "slack"), "webhook_url")),
			 "***");
	cr_assert_str_eq(cJSON_GetStringValue(cJSON_GetObjectItem(
				 cJSON_GetObjectItem(notifications, "slack"), "sender_name")),
			 "cloudplow");
	cr_assert_str_eq(cJSON_GetStringValue(cJSON_GetObjectItem(
				 cJSON_GetObjectItem(root, "nzbget"), "url")),
			 "***");
	cr_assert_str_eq(cJSON_GetStringValue(cJSON_GetObjectItem(
				 cJSON_GetObjectItem(root, "sabnzbd"), "apikey")),
			 "***");
	cr_assert_str_eq(cJSON_GetStringValue(cJSON_GetObjectItem(
				 cJSON_GetObjectItem(cJSON_GetObjectItem(plex, "rclone"),
						     "throttle_speeds"),
				 "2")),
			 "40M");
	cr_assert_eq(cJSON_GetNumberValue(cJSON_GetObjectItem(plex, "poll_interval")), 60);
	/* Defaults and resolved values appear too: it is the effective config. */
	cJSON *quota = cJSON_GetObjectItem(root, "quota");
	cr_assert_eq(cJSON_GetNumberValue(cJSON_GetObjectItem(quota, "daily_bytes")),
		     805306368000.0);
	cr_assert_str_eq(cJSON_GetStringValue(cJSON_GetObjectItem(quota, "window")), "rolling");
	cJSON *box = cJSON_GetObjectItem(cJSON_GetObjectItem(root, "uploader"), "box");
	cr_assert_str_eq(cJSON_GetStringValue(cJSON_GetObjectItem(
				 cJSON_GetObjectItem(box, "check"), "type")),
			 "age");
	cr_assert_eq(cJSON_GetArraySize(cJSON_GetObjectItem(box, "rotate_remotes")), 3);
	cJSON *google = cJSON_GetObjectItem(cJSON_GetObjectItem(root, "uploader"), "google");
	cr_assert_str_eq(cJSON_GetStringValue(cJSON_GetObjectItem(
				 cJSON_GetObjectItem(google, "schedule"), "allowed_from")),
			 "22:30");
	cr_assert_eq(cJSON_GetArraySize(cJSON_GetObjectItem(root, "stages")), 2);
	cJSON_Delete(root);
	free(text);
	config_free(&c);
}

Test(config, effective_config_of_a_minimal_file_shows_the_defaults)
{
	struct config c;
	load_ok("good_minimal.json", &c);
	char *text = print_to_string(&c);
	cJSON *root = cJSON_Parse(text);
	cr_assert_not_null(root);
	cJSON *d = cJSON_GetObjectItem(root, "dashboard");
	cr_assert(cJSON_IsNull(cJSON_GetObjectItem(d, "token")));
	cr_assert_eq(cJSON_GetNumberValue(cJSON_GetObjectItem(d, "port")), 47949);
	cJSON *stages = cJSON_GetObjectItem(root, "stages");
	cr_assert_eq(cJSON_GetArraySize(stages), 4);
	cr_assert_str_eq(cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetArrayItem(stages, 0),
								   "name")),
			 "aggressive_fresh_sa");
	cJSON *r = cJSON_GetObjectItem(cJSON_GetObjectItem(root, "remotes"), "media");
	cr_assert_eq(cJSON_GetArraySize(cJSON_GetObjectItem(r, "rclone_excludes")), 0);
	cr_assert_str_eq(cJSON_GetStringValue(cJSON_GetObjectItem(r, "rclone_command")), "move");
	cJSON_Delete(root);
	free(text);
	config_free(&c);
}

Test(config, config_free_twice_is_harmless)
{
	struct config c;
	load_ok("good_full.json", &c);
	config_free(&c);
	config_free(&c);
	cr_assert_eq(c.uploader_count, 0);
	cr_assert_null(c.uploaders);
}

Test(config, a_missing_file_or_a_directory_names_the_path)
{
	char path[PATH_MAX], want[PATH_MAX + 64];
	snprintf(path, sizeof(path), "%s/nope.json", tmp);
	snprintf(want, sizeof(want), "%s: cannot open: No such file or directory", path);
	cr_assert_str_eq(load_error(path), want);
	snprintf(want, sizeof(want), "%s: is a directory", tmp);
	cr_assert_str_eq(load_error(tmp), want);
	snprintf(path, sizeof(path), "%s/new\nline.json", tmp);
	snprintf(want, sizeof(want), "%s/new\\nline.json: cannot open: No such file or directory",
		 tmp);
	cr_assert_str_eq(load_error(path), want, "the path is escaped, the message one line");
}

Test(config, keys_and_values_with_control_characters_stay_on_one_line)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/ctl.json", tmp);
	const char *text = "{\"core\": {\"dry_run\": \"a\\nb\\u001b\"}}";
	put_file(path, text, strlen(text));
	cr_assert_str_eq(load_error(path), "core.dry_run: must be true or false, got "
					   "\"a\\nb\\u001b\"");
	text = "{\"remotes\": {\"media\": {\"rclone_sleeps\": "
	       "{\"line\\nbreak\": {\"count\": 0}}}}}";
	put_file(path, text, strlen(text));
	cr_assert_str_eq(load_error(path), "remotes.media.rclone_sleeps[\"line\\nbreak\"].count: "
					   "must be an integer from 1 to 1000000, got 0");
}

Test(config, numbers_cjson_would_accept_are_refused)
{
	static const struct {
		const char *json;
		const char *why;
	} cases[] = {
		{ "\"quota\": {\"capacity\": 1.}",
		  "not valid JSON at line 1, column 26: invalid number: a digit must follow '.'" },
		{ "\"quota\": {\"capacity\": 1e999}", NULL },
		{ "\"quota\": {\"capacity\": NaN}",
		  "not valid JSON at line 1, column 24: expected a value (JSON writes true, false "
		  "and null in lower case)" },
		{ "\"quota\": {\"capacity\": -Infinity}",
		  "not valid JSON at line 1, column 25: invalid number" },
	};
	char want[PATH_MAX + 256];
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *path = with_uploader(cases[i].json);
		if (cases[i].why)
			snprintf(want, sizeof(want), "%s: %s", path, cases[i].why);
		else
			snprintf(want, sizeof(want), "quota.capacity: must be an integer from 1 to "
						     "1048576, got a number too large to hold");
		cr_expect_str_eq(load_error(path), want, "case %zu", i);
	}
}

Test(config, notifications_of_every_service_load_and_print_without_their_secrets)
{
	struct config c;
	load_text_ok("{\"remotes\": {\"media\": {\"upload_folder\": \"@TMP@/media\","
		     " \"upload_remote\": \"gd:\"}}, \"uploader\": {\"media\": {}},"
		     " \"notifications\": {"
		     "  \"team\": {\"service\": \"slack\", \"channel\": \"#uploads\","
		     "   \"webhook_url\": \"https://hooks.slack.com/services/T1/B1/slacksecret\"},"
		     "  \"dc\": {\"service\": \"discord\","
		     "   \"webhook_url\": \"https://discord.com/api/webhooks/1/discordsecret\"},"
		     "  \"gc\": {\"service\": \"google_chat\","
		     "   \"webhook_url\": \"https://chat.googleapis.com/v1/X?key=gcsecret\"},"
		     "  \"po\": {\"service\": \"pushover\", \"app_token\": \"appsecret\","
		     "   \"user_token\": \"usersecret\", \"priority\": 2, \"title\": \"NAS\","
		     "   \"url\": \"http://127.0.0.1:9/po\"},"
		     "  \"ap\": {\"service\": \"apprise\","
		     "   \"url\": \"http://apprise:8000/notify/apsecret\"},"
		     "  \"hook\": {\"service\": \"webhook\","
		     "   \"url\": \"https://h.example.com/hooksecret\","
		     "   \"headers\": {\"Authorization\": \"Bearer headersecret\","
		     "    \"X-Empty\": \"\"}}}}",
		     &c);
	cr_assert_eq(c.notification_count, 6);
	cr_assert_eq(c.ignored_section_count, 0);
	cr_assert_eq(c.warning_count, 0);
	const struct config_notification *n = c.notifications;
	cr_assert_eq(n[0].service, CONFIG_NOTIFY_SLACK);
	cr_assert_str_eq(n[0].sender_name, CONFIG_NOTIFY_SENDER_DEFAULT);
	cr_assert_str_eq(n[0].sender_icon, CONFIG_NOTIFY_ICON_DEFAULT);
	cr_assert_str_eq(n[0].channel, "#uploads");
	cr_assert_eq(n[1].service, CONFIG_NOTIFY_DISCORD);
	cr_assert_eq(n[2].service, CONFIG_NOTIFY_GOOGLE_CHAT);
	cr_assert_str_eq(n[2].url, "https://chat.googleapis.com/v1/X?key=gcsecret");
	cr_assert_eq(n[3].service, CONFIG_NOTIFY_PUSHOVER);
	cr_assert_eq(n[3].priority, 2);
	cr_assert_str_eq(n[3].title, "NAS");
	cr_assert(n[3].url_set);
	cr_assert_str_eq(n[3].url, "http://127.0.0.1:9/po");
	cr_assert_eq(n[4].service, CONFIG_NOTIFY_APPRISE);
	cr_assert(n[4].enabled);
	cr_assert_str_eq(n[4].title, CONFIG_NOTIFY_TITLE_DEFAULT);
	cr_assert_eq(n[5].service, CONFIG_NOTIFY_WEBHOOK);
	cr_assert_eq(n[5].header_count, 2);
	cr_assert_str_eq(n[5].headers[0].name, "Authorization");
	cr_assert_str_eq(n[5].headers[1].value, "");

	char *text = print_to_string(&c);
	static const char *const secrets[] = { "slacksecret", "discordsecret", "gcsecret",
					       "appsecret", "usersecret", "apsecret", "hooksecret",
					       "headersecret", "127.0.0.1:9" };
	for (size_t i = 0; i < sizeof(secrets) / sizeof(secrets[0]); i++)
		cr_expect_null(strstr(text, secrets[i]), "%s is in the output", secrets[i]);
	cJSON *root = cJSON_Parse(text);
	cr_assert_not_null(root, "not JSON:\n%s", text);
	cJSON *no = cJSON_GetObjectItem(root, "notifications");
	cJSON *team = cJSON_GetObjectItem(no, "team");
	cr_assert_str_eq(cJSON_GetStringValue(cJSON_GetObjectItem(team, "service")), "slack");
	cr_assert_str_eq(cJSON_GetStringValue(cJSON_GetObjectItem(team, "webhook_url")), "***");
	cr_assert_str_eq(cJSON_GetStringValue(cJSON_GetObjectItem(team, "channel")), "#uploads");
	cJSON *po = cJSON_GetObjectItem(no, "po");
	cr_assert_str_eq(cJSON_GetStringValue(cJSON_GetObjectItem(po, "app_token")), "***");
	cr_assert_eq(cJSON_GetNumberValue(cJSON_GetObjectItem(po, "priority")), 2);
	cJSON *hook = cJSON_GetObjectItem(no, "hook");
	cr_assert_str_eq(cJSON_GetStringValue(cJSON_GetObjectItem(
				 cJSON_GetObjectItem(hook, "headers"), "Authorization")),
			 "***");
	cJSON_Delete(root);
	free(text);
	config_free(&c);
}

Test(config, pushover_without_url_posts_to_its_api_and_shows_it)
{
	struct config c;
	load_text_ok("{\"remotes\": {\"media\": {\"upload_folder\": \"@TMP@/media\","
		     " \"upload_remote\": \"gd:\"}}, \"uploader\": {\"media\": {}},"
		     " \"notifications\": {\"po\": {\"service\": \"pushover\","
		     " \"app_token\": \"a\", \"user_token\": \"u\"}}}",
		     &c);
	cr_assert_str_eq(c.notifications[0].url, CONFIG_NOTIFY_PUSHOVER_URL);
	cr_assert_eq(c.notifications[0].priority, 0);
	char *text = print_to_string(&c);
	cr_assert_not_null(strstr(text, CONFIG_NOTIFY_PUSHOVER_URL), "%s", text);
	free(text);
	config_free(&c);
}

/* ---- issue 14: cloudplow's configs as they are ------------------------------------------ */

/* A remote and an uploader that load, for the members before them. */
#define MEDIA                                                                                  \
	"\"remotes\": {\"media\": {\"upload_folder\": \"@TMP@/media\", \"upload_remote\": "    \
	"\"gd:\"}}, \"uploader\": {\"media\": {}}"

/* Loads text expected to fail: every error in *errors (the caller frees it). */
static void load_text_errors(const char *text, struct config_errors *errors)
{
	char path[PATH_MAX], err[CONFIG_ERR_MAX];
	struct config c;
	size_t len;
	char *sub = substitute(text, strlen(text), &len);
	snprintf(path, sizeof(path), "%s/inline.json", tmp);
	put_file(path, sub, len);
	free(sub);
	cr_assert_eq(config_load_all(path, &c, errors), -1, "loaded");
	cr_assert_gt(errors->count, 0);
	/* config_load gives the first of them */
	cr_assert_eq(config_load(path, &c, err, sizeof(err)), -1);
	cr_assert_str_eq(err, errors->lines[0]);
}

static void expect_errors(const char *text, const char *const *want, size_t n)
{
	struct config_errors errors;
	load_text_errors(text, &errors);
	for (size_t i = 0; i < n && i < errors.count; i++) {
		char *line = expand(want[i]);
		cr_expect_str_eq(errors.lines[i], line, "error %zu", i);
		free(line);
	}
	cr_expect_eq(errors.count, n, "%zu errors, the first: %s", errors.count, errors.lines[0]);
	config_errors_free(&errors);
}

Test(config, every_error_in_a_file_is_reported_one_line_each_in_file_order)
{
	static const char *const want[] = {
		"core.dry_run: must be true or false, got \"no\"",
		"core.rclone_nice: must be an integer from 0 to 19, got 20",
		"remotes.media.rclone_command: must be \"move\" or \"copy\", got \"sync\" (cloudplow "
		"ran move for it)",
		"remotes.media.upload_folder: no such directory: @TMP@/missing",
		"uploader.media.check_interval: must be a whole number of minutes from 1 to 525600, "
		"got 2.5",
		"uploader.media.max_size_gb: must be a number >= 0, got -1",
		"quota.window: must be \"fixed\" or \"rolling\", got \"daily\"",
		"dashboard.port: must be an integer from 1 to 65535, got 70000",
	};
	expect_errors("{\"core\": {\"dry_run\": \"no\", \"rclone_nice\": 20}, \"remotes\": "
		      "{\"media\": {\"upload_folder\": \"@TMP@/missing\", \"upload_remote\": \"gd:\","
		      " \"rclone_command\": \"sync\"}}, \"uploader\": {\"media\": {\"max_size_gb\": "
		      "-1, \"check_interval\": 2.5}}, \"quota\": {\"window\": \"daily\"}, "
		      "\"dashboard\": {\"enabled\": true, \"port\": 70000}}",
		      want, sizeof(want) / sizeof(want[0]));
}

Test(config, errors_beyond_the_cap_are_counted_not_kept)
{
	struct config_errors errors;
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	fputs("{\"remotes\": {", f);
	for (int i = 0; i < 150; i++)
		fprintf(f, "%s\"r%d\": {\"rclone_command\": 1}", i ? ", " : "", i);
	fputs("}, \"uploader\": {}}", f);
	fclose(f);
	load_text_errors(text, &errors);
	cr_assert_eq(errors.count, CONFIG_ERRORS_MAX);
	cr_assert_eq(errors.more, 51, "150 commands and the empty uploader section");
	cr_assert_str_eq(errors.lines[99], "remotes.r99.rclone_command: must be \"move\" or "
					    "\"copy\", got 1");
	config_errors_free(&errors);
	free(text);
}

/* cloudplow's own defaults carry "token": "" and "apikey": "" in disabled sections. */
Test(config, empty_strings_in_sections_that_are_off_mean_not_set)
{
	struct config c;
	load_text_ok("{\"remotes\": {\"media\": {\"upload_folder\": \"@TMP@/media\", "
		     "\"upload_remote\": \"gd:\"}, \"backup\": {\"upload_folder\": \"\", "
		     "\"upload_remote\": \"\", \"hidden_remote\": \"\", \"sync_remote\": \"\"}}, "
		     "\"uploader\": {\"media\": {\"schedule\": {\"enabled\": false, "
		     "\"allowed_from\": \"\", \"allowed_until\": \"\"}, \"mover\": {\"enabled\": "
		     "false, \"move_from_remote\": \"\", \"move_to_remote\": \"\"}}}, "
		     "\"plex\": {\"enabled\": false, \"url\": \"\", \"token\": \"\"}, "
		     "\"nzbget\": {\"enabled\": false, \"url\": \"\"}, \"sabnzbd\": {\"enabled\": "
		     "false, \"url\": \"\", \"apikey\": \"\"}, \"dashboard\": {\"host\": \"\", "
		     "\"token\": \"\"}}",
		     &c);
	cr_assert_null(c.plex.url);
	cr_assert_null(c.plex.token);
	cr_assert_null(c.nzbget.url);
	cr_assert_null(c.sabnzbd.apikey);
	cr_assert_str_eq(c.dashboard.host, "127.0.0.1", "the default stays");
	cr_assert_null(c.dashboard.token);
	const struct config_remote *backup = config_find_remote(&c, "backup");
	cr_assert_null(backup->upload_folder);
	cr_assert_null(backup->upload_remote);
	cr_assert_null(backup->hidden_remote);
	cr_assert_eq(c.uploaders[0].schedule.allowed_from_min, -1);
	cr_assert_null(c.uploaders[0].mover.move_to_remote);
	cr_assert_eq(c.warning_count, 0, "%s", c.warning_count ? c.warnings[0] : "");
	config_free(&c);
}

Test(config, an_empty_string_a_section_needs_names_the_key)
{
	static const struct {
		const char *json, *message;
	} cases[] = {
		{ "{\"plex\": {\"enabled\": true, \"url\": \"http://127.0.0.1:32400\", \"token\": "
		  "\"\", \"rclone\": {\"throttle_speeds\": {\"1\": \"1M\"}}}, " MEDIA "}",
		  "plex.token: empty: plex.enabled needs it" },
		{ "{\"sabnzbd\": {\"enabled\": true, \"url\": \"http://127.0.0.1:8080\", "
		  "\"apikey\": \"\"}, " MEDIA "}",
		  "sabnzbd.apikey: empty: sabnzbd.enabled needs it" },
		{ "{\"remotes\": {\"media\": {\"upload_folder\": \"@TMP@/media\", "
		  "\"upload_remote\": \"\"}}, \"uploader\": {\"media\": {}}}",
		  "remotes.media.upload_remote: empty: uploader.media needs it" },
		{ "{\"remotes\": {\"media\": {\"upload_folder\": \"@TMP@/media\", "
		  "\"upload_remote\": \"gd:\"}}, \"uploader\": {\"media\": {\"mover\": "
		  "{\"enabled\": true, \"move_from_remote\": \"a:\", \"move_to_remote\": \"\"}}}}",
		  "uploader.media.mover.move_to_remote: empty: uploader.media.mover.enabled needs "
		  "it" },
		{ "{\"core\": {\"rclone_binary_path\": \"\"}, " MEDIA "}",
		  "core.rclone_binary_path: empty: give a value, or remove the key" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		expect_errors(cases[i].json, &cases[i].message, 1);
}

Test(config, near_misses_in_a_section_that_is_off_are_warnings)
{
	struct config c;
	/* The fork's README spells it "api-key" in a disabled sabnzbd section. */
	load_text_ok("{\"sabnzbd\": {\"enabled\": false, \"api-key\": \"1314234234\"}, " MEDIA "}",
		     &c);
	cr_assert(has_warning(&c, "sabnzbd.api-key: unknown key (did you mean apikey?), ignored: "
				  "the section is not in use"));
	config_free(&c);
	static const char *const want[] = {
		"dashboard.enable: unknown key (did you mean enabled?)",
	};
	expect_errors("{\"dashboard\": {\"enable\": true}, " MEDIA "}", want, 1);
	static const char *const enabled[] = {
		"sabnzbd.api-key: unknown key (did you mean apikey?)",
		"sabnzbd.apikey: missing: sabnzbd.enabled needs it",
	};
	expect_errors("{\"sabnzbd\": {\"enabled\": true, \"url\": \"http://127.0.0.1:8080\", "
		      "\"api-key\": \"k\"}, " MEDIA "}",
		      enabled, 2);
}

Test(config, googlechat_is_google_chat_and_its_thread_key_goes_into_the_url)
{
	struct config c;
	load_text_ok("{\"notifications\": {\"gc\": {\"service\": \"googlechat\", \"webhook_url\": "
		     "\"https://chat.googleapis.com/v1/spaces/S/messages?key=k&token=t\", "
		     "\"thread_key\": \"uploads 1/2\"}}, " MEDIA "}",
		     &c);
	cr_assert_eq(c.notifications[0].service, CONFIG_NOTIFY_GOOGLE_CHAT);
	cr_assert(c.notifications[0].enabled);
	cr_assert_str_eq(c.notifications[0].url, "https://chat.googleapis.com/v1/spaces/S/messages"
						 "?key=k&token=t&threadKey=uploads%201%2F2");
	char *text = print_to_string(&c);
	cr_assert_not_null(strstr(text, "\"google_chat\""), "%s", text);
	cr_assert_null(strstr(text, "token=t"), "the URL is a secret");
	free(text);
	config_free(&c);
}

Test(config, pushover_priority_may_be_a_numeric_string_as_cloudplow_passed_it_on)
{
	static const struct {
		const char *priority;
		int want;
	} ok[] = { { "\"0\"", 0 }, { "\"-1\"", -1 }, { "\"2\"", 2 }, { "-2", -2 } };
	char text[512];
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		struct config c;
		snprintf(text, sizeof(text), "{\"notifications\": {\"po\": {\"service\": "
			 "\"pushover\", \"app_token\": \"a\", \"user_token\": \"u\", \"priority\": "
			 "%s}}, %s}", ok[i].priority, MEDIA);
		load_text_ok(text, &c);
		cr_expect_eq(c.notifications[0].priority, ok[i].want, "%s", ok[i].priority);
		config_free(&c);
	}
	static const char *const refused[] = { "\"3\"", "\"x\"", "\"1.5\"", "1.5", "\"\"" };
	for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
		char want[128];
		const char *w = want;
		snprintf(text, sizeof(text), "{\"notifications\": {\"po\": {\"service\": "
			 "\"pushover\", \"app_token\": \"a\", \"user_token\": \"u\", \"priority\": "
			 "%s}}, %s}", refused[i], MEDIA);
		snprintf(want, sizeof(want), "notifications.po.priority: must be an integer from -2 "
			 "to 2, got %s", refused[i]);
		expect_errors(text, &w, 1);
	}
}

/* The fork's README sample: every notification there is a placeholder. */
Test(config, a_notification_whose_needed_values_are_all_empty_is_skipped_with_a_warning)
{
	struct config c;
	load_text_ok("{\"notifications\": {\"Pushover\": {\"app_token\": \"\", \"service\": "
		     "\"pushover\", \"user_token\": \"\", \"priority\": \"0\"}, \"Slack\": "
		     "{\"webhook_url\": \"\", \"sender_name\": \"cloudplow\", \"sender_icon\": "
		     "\":heavy_exclamation_mark:\", \"channel\": \"\", \"service\": \"slack\"}, "
		     "\"apprise\": {\"service\": \"apprise\", \"url\": \"\", \"title\": \"\"}}, "
		     MEDIA "}",
		     &c);
	cr_assert_eq(c.notification_count, 3);
	for (size_t i = 0; i < 3; i++)
		cr_expect_not(c.notifications[i].enabled, "%s", c.notifications[i].name);
	static const char *const warnings[] = {
		"notifications.Pushover: app_token and user_token empty: this notification is not "
		"sent until it is filled in",
		"notifications.Slack: webhook_url empty: this notification is not sent until it is "
		"filled in",
		"notifications.apprise: url empty: this notification is not sent until it is filled "
		"in",
	};
	for (size_t i = 0; i < 3; i++)
		cr_expect(has_warning(&c, warnings[i]), "missing: %s", warnings[i]);
	cr_assert_eq(c.warning_count, 3);
	cr_assert_str_eq(c.notifications[2].title, CONFIG_NOTIFY_TITLE_DEFAULT);
	config_free(&c);
	static const char *const half[] = {
		"notifications.po.user_token: empty: a pushover notification needs it",
	};
	expect_errors("{\"notifications\": {\"po\": {\"service\": \"pushover\", \"app_token\": "
		      "\"a\", \"user_token\": \"\"}}, " MEDIA "}",
		      half, 1);
}

Test(config, a_public_dashboard_without_token_stays_off_with_one_warning)
{
	struct config c;
	static const char off[] =
		"dashboard.token: missing while dashboard.host is \"0.0.0.0\", not a loopback "
		"address: the dashboard stays off (uploads run); add \"token\": \"<a long random "
		"secret>\" to dashboard, or \"allow_unauthenticated\": true on a trusted network";
	/* the fork's dashboard section */
	load_text_ok("{\"dashboard\": {\"enabled\": true, \"host\": \"0.0.0.0\", \"port\": 47949, "
		     "\"refresh_interval\": 5, \"debug\": true, \"rc_url\": "
		     "\"http://localhost:7949\"}, " MEDIA "}",
		     &c);
	cr_assert_not(c.dashboard.enabled);
	cr_assert_str_eq(c.dashboard.off_reason, off);
	cr_assert_eq(c.dashboard.refresh_seconds, 5, "refresh_interval is refresh_seconds");
	cr_assert(has_warning(&c, off));
	cr_assert(has_warning(&c, "dashboard.debug: ignored: cplow's dashboard has no debug mode"));
	cr_assert(has_warning(&c, "dashboard.rc_url: ignored: the dashboard reads every stage's "
				  "progress from the ledger, where each stage's own rclone reports "
				  "it"));
	cr_assert_eq(c.warning_count, 3);
	config_free(&c);

	load_text_ok("{\"dashboard\": {\"enabled\": true, \"host\": \"0.0.0.0\", "
		     "\"allow_unauthenticated\": true}, " MEDIA "}",
		     &c);
	cr_assert(c.dashboard.enabled, "a trusted network, said so");
	cr_assert_null(c.dashboard.off_reason);
	cr_assert_eq(c.warning_count, 0);
	config_free(&c);
	load_text_ok("{\"dashboard\": {\"enabled\": true, \"host\": \"0.0.0.0\", \"token\": "
		     "\"t\"}, " MEDIA "}",
		     &c);
	cr_assert(c.dashboard.enabled);
	config_free(&c);
	static const char *const both[] = {
		"dashboard.refresh_interval: the same setting as refresh_seconds: keep one of them",
	};
	expect_errors("{\"dashboard\": {\"refresh_seconds\": 3, \"refresh_interval\": 5}, " MEDIA
		      "}",
		      both, 1);
}

Test(config, mover_quota_hidden_and_syncer_are_read_into_the_config)
{
	struct config c;
	char *real = realpath(tmp, NULL), want[PATH_MAX];
	load_text_ok("{\"remotes\": {\"media\": {\"upload_folder\": \"@TMP@/media\", "
		     "\"upload_remote\": \"gd:\", \"hidden_remote\": \"gd:\"}}, \"uploader\": "
		     "{\"media\": {\"can_be_throttled\": false, \"quota\": false, \"mover\": "
		     "{\"enabled\": true, \"move_from_remote\": \"staging:M\", \"move_to_remote\": "
		     "\"gd:M\", \"rclone_extras\": {\"--no-traverse\": null, \"--verbose\": 1}, "
		     "\"rclone_excludes\": [\"*.tmp\"]}}}, \"hidden\": {\"unionfs\": "
		     "{\"hidden_remotes\": [\"media\"]}, \"@TMP@/tv\": {\"hidden_remotes\": "
		     "[\"media\"]}}, \"syncer\": {\"s\": {\"service\": \"scaleway\", \"sync_from\": "
		     "\"media\", \"sync_to\": \"media\", \"sync_interval\": 24, \"tool_path\": "
		     "\"/bin/scw\", \"use_copy\": true, \"instance_destroy\": false, "
		     "\"rclone_extras\": {}}}}",
		     &c);
	const struct config_uploader *u = &c.uploaders[0];
	cr_assert_not(u->can_be_throttled);
	cr_assert_eq(u->quota, CONFIG_QUOTA_OFF);
	cr_assert_not(u->quota_enabled);
	cr_assert(u->mover.enabled);
	cr_assert_str_eq(u->mover.move_from_remote, "staging:M");
	cr_assert_str_eq(u->mover.move_to_remote, "gd:M");
	cr_assert_eq(u->mover.rclone_extra_count, 1);
	cr_assert_str_eq(u->mover.rclone_extras[0].name, "--no-traverse");
	cr_assert_null(u->mover.rclone_extras[0].value);
	cr_assert_eq(u->mover.rclone_exclude_count, 1);
	cr_assert_eq(c.hidden_count, 2);
	snprintf(want, sizeof(want), "%s/unionfs", real);
	cr_assert_str_eq(c.hidden[0].folder, want, "relative to the config's directory");
	cr_assert_str_eq(c.hidden[0].remotes[0], "media");
	cr_assert_str_eq(c.remotes[0].hidden_remote, "gd:");
	cr_assert_eq(c.syncer_count, 1);
	cr_assert_eq(c.syncers[0].service, CONFIG_SYNCER_SCALEWAY);
	cr_assert_str_eq(c.syncers[0].sync_to, "media");
	cr_assert_float_eq(c.syncers[0].sync_interval_hours, 24, 0);
	cr_assert(c.syncers[0].use_copy);
	cr_assert(has_warning(&c, "uploader.media.mover.rclone_extras.--verbose: --verbose is set "
				  "by cplow itself, ignored"));
	cr_assert(has_warning(&c, "syncer.s: cplow runs no syncer (cloudplow's drove Scaleway's "
				  "old command-line tool, which is gone): nothing is synced"));
	/* the mover and the hidden cleaner run now: no warning says they do not */
	cr_assert_eq(c.warning_count, 2);
	free(real);
	config_free(&c);

	static const char *const errors[] = {
		"uploader.media.mover.move_to_remote: missing: uploader.media.mover.enabled needs it",
		"uploader.media.quota: must be \"auto\", true or false, got \"yes\"",
		"hidden.unionfs.hidden_remotes[0]: no remotes.nope section",
		"hidden.unionfs.hidden_remotes[1]: remotes.media has no hidden_remote: the cleaner "
		"would not know where to delete",
		"syncer.s.service: must be \"local\" or \"scaleway\", got \"aws\"",
	};
	expect_errors("{\"remotes\": {\"media\": {\"upload_folder\": \"@TMP@/media\", "
		      "\"upload_remote\": \"gd:\"}}, \"uploader\": {\"media\": {\"quota\": \"yes\", "
		      "\"mover\": {\"enabled\": true, \"move_from_remote\": \"a:\"}}}, \"hidden\": "
		      "{\"unionfs\": {\"hidden_remotes\": [\"nope\", \"media\"]}}, \"syncer\": "
		      "{\"s\": {\"service\": \"aws\"}}}",
		      errors, sizeof(errors) / sizeof(errors[0]));
}

Test(config, quota_auto_is_settled_without_rclone_where_it_can)
{
	struct config c;
	load_text_ok("{\"remotes\": {\"sa\": {\"upload_folder\": \"@TMP@/media\", "
		     "\"upload_remote\": \"gd:\"}, \"rot\": {\"upload_folder\": \"@TMP@/media\", "
		     "\"upload_remote\": \"gd:\"}, \"local\": {\"upload_folder\": \"@TMP@/media\", "
		     "\"upload_remote\": \"@TMP@/tv\"}, \"fly\": {\"upload_folder\": "
		     "\"@TMP@/media\", \"upload_remote\": \":local:/x\"}, \"flydrive\": "
		     "{\"upload_folder\": \"@TMP@/media\", \"upload_remote\": "
		     "\":drive,scope=drive:x\"}, \"named\": {\"upload_folder\": \"@TMP@/media\", "
		     "\"upload_remote\": \"gd:/M\"}, \"on\": {\"upload_folder\": \"@TMP@/media\", "
		     "\"upload_remote\": \"@TMP@/tv\"}}, "
		     "\"uploader\": {\"sa\": {\"service_account_path\": \"@TMP@/sa\"}, \"rot\": "
		     "{\"rotate_remotes\": [\"gd1\"]}, \"local\": {}, \"fly\": {}, \"flydrive\": {}, "
		     "\"named\": {}, \"on\": {\"quota\": true}}}",
		     &c);
	static const struct {
		const char *uploader;
		bool on;
		const char *why;
	} want[] = {
		{ "sa", true, "auto: it rotates service accounts (service_account_path)" },
		{ "rot", true, "auto: it rotates accounts (rotate_remotes)" },
		{ "local", false, "auto: upload_remote is a local path" },
		{ "fly", false, "auto: upload_remote is an on-the-fly local remote, not drive" },
		{ "flydrive", true, "auto: upload_remote is an on-the-fly drive remote" },
		{ "named", true, "auto: on until rclone tells what is behind upload_remote (cplow "
				 "check-config asks it)" },
		{ "on", true, "true in the config" },
	};
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		const struct config_uploader *u = config_find_uploader(&c, want[i].uploader);
		cr_expect_eq(u->quota_enabled, want[i].on, "%s", u->name);
		cr_expect_str_eq(u->quota_reason, want[i].why, "%s", u->name);
	}
	config_free(&c);
}

Test(config, a_key_folder_without_json_files_is_refused)
{
	char dir[PATH_MAX], key[PATH_MAX + 16];
	snprintf(dir, sizeof(dir), "%s/no-keys", tmp);
	cr_assert_eq(mkdir(dir, 0700), 0);
	snprintf(key, sizeof(key), "%s/.hidden.json", dir);
	put_file(key, "{}", 2);
	static const char *const want[] = {
		"uploader.media.service_account_path: no key files (*.json) in @TMP@/no-keys",
	};
	expect_errors("{\"remotes\": {\"media\": {\"upload_folder\": \"@TMP@/media\", "
		      "\"upload_remote\": \"gd:\"}}, \"uploader\": {\"media\": "
		      "{\"service_account_path\": \"@TMP@/no-keys\"}}}",
		      want, 1);
}

Test(config, two_uploaders_on_the_same_key_files_however_written)
{
	struct config c;
	char link[PATH_MAX];
	snprintf(link, sizeof(link), "%s/sa-link", tmp);
	cr_assert_eq(symlink("sa", link), 0);
	static const char two[] = "{\"remotes\": {\"a\": {\"upload_folder\": \"@TMP@/media\", "
				  "\"upload_remote\": \"gd:\"}, \"b\": {\"upload_folder\": "
				  "\"@TMP@/tv\", \"upload_remote\": \"gd:\"}}, \"uploader\": {\"a\": "
				  "{\"service_account_path\": \"@TMP@/sa\"}, \"b\": "
				  "{\"service_account_path\": \"%s\"}}}";
	char text[1024];
	/* a trailing slash names the same ledger keys: the stages take turns */
	snprintf(text, sizeof(text), two, "@TMP@/sa/");
	load_text_ok(text, &c);
	cr_assert(has_warning(&c, "uploader.b.service_account_path: the same directory as "
				  "uploader.a's: stages on one account take turns, and each uploader "
				  "counts the accounts' daily quota on its own"));
	config_free(&c);
	/* another spelling of the same folder would be other accounts to the ledger */
	static const char *const spellings[] = { "@TMP@/sa-link", "@TMP@/media/../sa" };
	char *real = realpath(tmp, NULL), want[PATH_MAX * 2];
	snprintf(want, sizeof(want), "uploader.b.service_account_path: the same key files as "
		 "uploader.a's (\"%s/sa\") under another path: cplow would count each account "
		 "twice; write both paths the same way", real);
	for (size_t i = 0; i < 2; i++) {
		const char *w = want;
		snprintf(text, sizeof(text), two, spellings[i]);
		expect_errors(text, &w, 1);
	}
	free(real);
}

Test(config, keys_cplow_does_not_use_warn_only_when_they_ask_for_something)
{
	struct config c;
	static const char plex[] = "\"plex\": {\"enabled\": %s, \"url\": \"http://127.0.0.1:1\", "
				   "\"token\": \"t\", \"notifications\": %s, \"rclone\": "
				   "{\"throttle_speeds\": {\"1\": \"1M\"}}}, \"remotes\": "
				   "{\"media\": {\"upload_folder\": \"@TMP@/media\", "
				   "\"upload_remote\": \"gd:\"}}, \"uploader\": {\"media\": "
				   "{\"chunked_upload\": {\"enabled\": %s, \"chunk_size\": 1000}}}";
	char text[1024], members[900];
	snprintf(members, sizeof(members), plex, "true", "true", "true");
	snprintf(text, sizeof(text), "{%s}", members);
	load_text_ok(text, &c);
	cr_assert(has_warning(&c, "plex.notifications: ignored: cplow sends no notification when "
				  "it throttles"));
	cr_assert(has_warning(&c, "uploader.media.chunked_upload: ignored: cplow lists the upload "
				  "folder once and hands each stage its own files "
				  "(--files-from-raw), which is what chunking was for"));
	cr_assert_eq(c.warning_count, 2);
	config_free(&c);
	/* off, or asking for nothing: nothing to say */
	snprintf(members, sizeof(members), plex, "false", "true", "false");
	snprintf(text, sizeof(text), "{%s}", members);
	load_text_ok(text, &c);
	cr_assert_eq(c.warning_count, 0, "%s", c.warning_count ? c.warnings[0] : "");
	config_free(&c);
}

Test(config, the_key_table_prints_every_key)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	cr_assert_eq(config_keys_print(f), 0);
	fclose(f);
	static const char *const lines[] = {
		"\ncore.rclone_nice\tinteger\t5\tan integer from 0 to 19\t\n",
		"\nquota.daily_bytes\tinteger\t805306368000\ta whole number of bytes from 1 to "
		"9007199254740992\t\n",
		"\ndashboard.refresh_interval\talias\t\t\tanother spelling of refresh_seconds\n",
		"\nnotifications.<name>.priority\tinteger\t0\tan integer from -2 to 2\tservice "
		"pushover; a numeric string is taken as the number\n",
		"\nuploader.<name>.chunked_upload\tany\t\t\taccepted, not used: cplow lists",
		"\nstages[].transfers\tinteger\t",
		"\nremotes.<name>.rclone_sleeps.<pattern>.sleep\tnumber\t",
	};
	for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++)
		cr_expect_not_null(strstr(text, lines[i]), "no line %s in:\n%s", lines[i], text);
	free(text);
}
