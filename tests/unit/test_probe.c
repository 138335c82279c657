#include <criterion/criterion.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "probe.h"

/* probe_config asks the real rclone (/usr/bin/rclone) about an rclone.conf of the test's. */

static char tmp[64];

static void put(const char *dir, const char *name, const char *text)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FILE *f = fopen(path, "w");
	cr_assert_not_null(f);
	cr_assert_eq(fputs(text, f) < 0, 0);
	cr_assert_eq(fclose(f), 0);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st, (void)flag, (void)ftw;
	return remove(path);
}

static void make_tmp(void)
{
	snprintf(tmp, sizeof(tmp), "/tmp/cplow-probe-XXXXXX");
	cr_assert_not_null(mkdtemp(tmp));
}

static void remove_tmp(void)
{
	nftw(tmp, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

TestSuite(probe, .init = make_tmp, .fini = remove_tmp, .timeout = 60);

Test(probe, finds_remotes_rclone_does_not_know_and_settles_quota_auto)
{
	struct config c;
	struct config_errors errors;
	char err[CONFIG_ERR_MAX], path[PATH_MAX], text[4096], conf[PATH_MAX + 16];
	put(tmp, "rclone.conf", "[gd]\ntype = drive\n[cr]\ntype = crypt\nremote = gd:x\n"
				"[web]\ntype = webdav\nurl = http://127.0.0.1:9\n");
	/* a remote the environment defines counts as present */
	cr_assert_eq(setenv("RCLONE_CONFIG_ENVR_TYPE", "local", 1), 0);
	snprintf(text, sizeof(text),
		 "{\"core\": {\"rclone_config_path\": \"rclone.conf\"}, \"remotes\": "
		 "{\"crypt\": {\"upload_folder\": \"%1$s\", \"upload_remote\": \"cr:/M\"}, \"web\": "
		 "{\"upload_folder\": \"%1$s\", \"upload_remote\": \"web:/M\"}, \"envr\": "
		 "{\"upload_folder\": \"%1$s\", \"upload_remote\": \"envr:/x\"}, \"lost\": "
		 "{\"upload_folder\": \"%1$s\", \"upload_remote\": \"nosuch,team_drive=x:/M\"}, "
		 "\"rot\": {\"upload_folder\": \"%1$s\", \"upload_remote\": \"unused:/M\"}, \"fly\": "
		 "{\"upload_folder\": \"%1$s\", \"upload_remote\": \":local:/x\"}}, \"uploader\": "
		 "{\"crypt\": {}, \"web\": {}, \"envr\": {}, \"lost\": {}, \"rot\": "
		 "{\"rotate_remotes\": [\"gd\", \"ghost\"]}, \"fly\": {}}}",
		 tmp);
	put(tmp, "config.json", text);
	snprintf(path, sizeof(path), "%s/config.json", tmp);
	cr_assert_eq(config_load(path, &c, err, sizeof(err)), 0, "%s", err);
	cr_assert(c.uploaders[0].quota_pending);
	cr_assert_eq(probe_config(&c, &errors), -1);
	char *real = realpath(tmp, NULL);
	snprintf(conf, sizeof(conf), "%s/rclone.conf", real);
	char want[2][PATH_MAX * 2];
	snprintf(want[0], sizeof(want[0]), "remotes.lost.upload_remote: no remote \"nosuch\" in "
		 "rclone's config %s (rclone listremotes does not list it, and no "
		 "RCLONE_CONFIG_..._TYPE variable defines it)", conf);
	snprintf(want[1], sizeof(want[1]), "uploader.rot.rotate_remotes[1]: no remote \"ghost\" in "
		 "rclone's config %s (rclone listremotes does not list it, and no "
		 "RCLONE_CONFIG_..._TYPE variable defines it)", conf);
	cr_assert_eq(errors.count, 2, "%s", errors.lines[0]);
	cr_assert_str_eq(errors.lines[0], want[0]);
	cr_assert_str_eq(errors.lines[1], want[1]);
	static const struct {
		const char *uploader;
		bool on;
		const char *why;
	} quota[] = {
		{ "crypt", true, "auto: upload_remote's chain ends in a drive backend" },
		{ "web", false, "auto: upload_remote \"web:/M\" has no drive remote behind it" },
		{ "envr", false, "auto: upload_remote \"envr:/x\" has no drive remote behind it" },
		{ "lost", true, "auto: on, since rclone could not tell what is behind upload_remote" },
		{ "rot", true, "auto: it rotates accounts (rotate_remotes)" },
		{ "fly", false, "auto: upload_remote is an on-the-fly local remote, not drive" },
	};
	for (size_t i = 0; i < sizeof(quota) / sizeof(quota[0]); i++) {
		const struct config_uploader *u = config_find_uploader(&c, quota[i].uploader);
		cr_expect_eq(u->quota_enabled, quota[i].on, "%s", u->name);
		cr_expect_not(u->quota_pending, "%s", u->name);
		cr_expect_eq(strncmp(u->quota_reason, quota[i].why, strlen(quota[i].why)), 0,
			     "%s: %s", u->name, u->quota_reason);
	}
	free(real);
	config_errors_free(&errors);
	config_free(&c);
}
