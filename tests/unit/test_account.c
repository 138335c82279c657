#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "account.h"
#include "test_util.h"

#define RCLONE "/usr/bin/rclone"
#define KEY "/keys/sa1.json"

/* --- the temporary directory ------------------------------------------------------------ */

static char tmp[PATH_MAX];

/* "<tmp>/<rel>" in one of a few rotating buffers, so a call may take two of them. */
static const char *at(const char *rel)
{
	static char paths[4][PATH_MAX * 2];
	static unsigned next;
	char *path = paths[next++ % 4];
	snprintf(path, sizeof paths[0], "%s/%s", tmp, rel);
	return path;
}

static void put_file(const char *rel, const char *content)
{
	int fd = open(at(rel), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0755);
	cr_assert_geq(fd, 0, "create %s: %s", rel, strerror(errno));
	size_t len = strlen(content);
	cr_assert_eq(write(fd, content, len), (ssize_t)len);
	close(fd);
}

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	remove(path);
	return 0;
}

static void setup(void)
{
	snprintf(tmp, sizeof tmp, "/tmp/cplow-test-account.XXXXXX");
	cr_assert_not_null(mkdtemp(tmp), "mkdtemp: %s", strerror(errno));
}

static void teardown(void)
{
	nftw(tmp, remove_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* --- remote accounts: the destination ---------------------------------------------------- */

static void dest_is(const char *upload_remote, const char *account, const char *expected)
{
	char out[256];
	int rc = account_destination(upload_remote, account, out, sizeof out);
	cr_assert_eq(rc, 0, "%s + %s: %d", upload_remote, account, rc);
	cr_assert_str_eq(out, expected, "%s + %s", upload_remote, account);
}

static void dest_fails(const char *upload_remote, const char *account, int expected_rc)
{
	char out[256] = "untouched";
	int rc = account_destination(upload_remote, account, out, sizeof out);
	cr_assert_eq(rc, expected_rc, "\"%s\" + \"%s\": %d, expected %d", upload_remote, account, rc,
		     expected_rc);
	cr_assert_str_eq(out, "untouched", "output written on failure");
}

Test(account, destination_swaps_the_remote_and_keeps_the_path, .timeout = 10)
{
	dest_is("google:/Media", "google2", "google2:/Media");
	dest_is("google:Media", "google2", "google2:Media");
	dest_is("google:", "google2", "google2:");
	dest_is("google:/Media/TV Shows/a:b", "google2", "google2:/Media/TV Shows/a:b");
}

Test(account, destination_accepts_every_name_rclone_1_60_does, .timeout = 10)
{
	dest_is("my-remote_1.x:/a b", "acc 2", "acc 2:/a b");
	dest_is("gd.backup:/M", "gd-sa_07.b", "gd-sa_07.b:/M");
	dest_is("My Drive:x", "other drive", "other drive:x");
	dest_is(".hidden:x", "_under", "_under:x");
}

Test(account, destination_keeps_connection_string_parameters, .timeout = 10)
{
	dest_is("gd,shared_with_me:/M", "gd2", "gd2,shared_with_me:/M");
	dest_is("gd,root_folder_id='a:b',x=1:/M", "gd2", "gd2,root_folder_id='a:b',x=1:/M");
	dest_is("gd,v=\"q\"\"x:y\":/M", "gd2", "gd2,v=\"q\"\"x:y\":/M");
}

Test(account, destination_refuses_what_has_no_remote_to_swap, .timeout = 10)
{
	dest_fails("/mnt/local/Media", "google2", -EINVAL);
	dest_fails("relative/path", "google2", -EINVAL);
	dest_fails("dir/sub:name", "google2", -EINVAL);   /* '/' before ':' is a local path */
	dest_fails(":drive:/Media", "google2", -EINVAL);  /* on the fly: no account to swap */
	dest_fails(":local,x=1:/M", "google2", -EINVAL);
	dest_fails("", "google2", -EINVAL);
	dest_fails(":", "google2", -EINVAL);
	dest_fails("::", "google2", -EINVAL);
	dest_fails("a+b:/M", "google2", -EINVAL);  /* 1.60 rejects '+' and '@' */
	dest_fails("a@b:/M", "google2", -EINVAL);
	dest_fails("-gd:/M", "google2", -EINVAL);
	dest_fails("gd,:/M", "google2", -EINVAL);  /* empty parameter */
	dest_fails("gd,a='x:/M", "google2", -EINVAL); /* unterminated quote */
}

Test(account, destination_refuses_a_bad_account_name, .timeout = 10)
{
	dest_fails("google:/Media", "", -EINVAL);
	dest_fails("google:/Media", "google2:", -EINVAL);
	dest_fails("google:/Media", "g+2", -EINVAL);
	dest_fails("google:/Media", "g@2", -EINVAL);
	dest_fails("google:/Media", "gööd", -EINVAL);
	dest_fails("google:/Media", "-g2", -EINVAL);
	dest_fails("google:/Media", " g2", -EINVAL);
	dest_fails("google:/Media", "g2 ", -EINVAL);
	dest_fails("google:/Media", "g/2", -EINVAL);
	dest_fails("google:/Media", "g,2", -EINVAL);
}

Test(account, destination_that_does_not_fit_is_an_error, .timeout = 10)
{
	char out[14] = "untouched"; /* one short of "google2:/Media" and its NUL */
	cr_assert_eq(account_destination("google:/Media", "google2", out, sizeof out),
		     -ENAMETOOLONG);
	cr_assert_str_eq(out, "untouched");
	char exact[15]; /* "google2:/Media" + NUL */
	cr_assert_eq(account_destination("google:/Media", "google2", exact, sizeof exact), 0);
	cr_assert_str_eq(exact, "google2:/Media");
}

/* --- natural order ---------------------------------------------------------------------- */

static int sign(int x)
{
	return (x > 0) - (x < 0);
}

static int cmp_strings(const void *x, const void *y)
{
	return account_natural_cmp(*(const char *const *)x, *(const char *const *)y);
}

Test(account, natural_order_puts_sa2_before_sa10, .timeout = 10)
{
	const char *names[] = {"sa7.json", "sa12.json", "sa1.json", "sa10.json", "sa3.json",
			       "sa11.json", "sa2.json", "sa9.json", "sa5.json", "sa4.json",
			       "sa8.json", "sa6.json"};
	size_t n = sizeof names / sizeof names[0];
	qsort(names, n, sizeof names[0], cmp_strings);
	for (size_t i = 0; i < n; i++) {
		char expected[32];
		snprintf(expected, sizeof expected, "sa%zu.json", i + 1);
		cr_assert_str_eq(names[i], expected, "position %zu", i);
	}
}

Test(account, natural_order_of_mixed_names_and_leading_zeros, .timeout = 10)
{
	const char *names[] = {"x", "sa10.json", "a1b10", "sa001.json", "sa2.json", "SA3.json",
			       "sa.json", "sa01.json", "a1b2", "sa1.json", "sa0.json", "sa",
			       "sa1b.json"};
	const char *expected[] = {"SA3.json", "a1b2", "a1b10", "sa", "sa.json", "sa0.json",
				  "sa1.json", "sa01.json", "sa001.json", "sa1b.json", "sa2.json",
				  "sa10.json", "x"};
	size_t n = sizeof names / sizeof names[0];
	cr_assert_eq(n, sizeof expected / sizeof expected[0]);
	qsort(names, n, sizeof names[0], cmp_strings);
	for (size_t i = 0; i < n; i++)
		cr_assert_str_eq(names[i], expected[i], "position %zu", i);
	/* A total order: antisymmetric, and equal only to itself. */
	for (size_t i = 0; i < n; i++)
		for (size_t k = 0; k < n; k++) {
			int ik = account_natural_cmp(names[i], names[k]);
			cr_assert_eq(sign(ik), -sign(account_natural_cmp(names[k], names[i])));
			cr_assert_eq(ik == 0, i == k, "%s vs %s", names[i], names[k]);
		}
}

Test(account, natural_order_compares_numbers_by_value, .timeout = 10)
{
	cr_assert_lt(account_natural_cmp("a1b2", "a1b10"), 0);
	cr_assert_gt(account_natural_cmp("sa10", "sa9"), 0);
	cr_assert_eq(account_natural_cmp("sa1", "sa1"), 0);
	/* Leading zeros only break a tie; the numbers after them decide first. */
	cr_assert_gt(account_natural_cmp("sa01", "sa1"), 0);
	cr_assert_lt(account_natural_cmp("sa01b1", "sa1b2"), 0);
	cr_assert_lt(account_natural_cmp("sa0", "sa00"), 0);
	/* Far past 64 bits, without overflow. */
	cr_assert_lt(account_natural_cmp("sa99999999999999999999999", "sa100000000000000000000000"),
		     0);
	/* Case-sensitive, byte order: 'S' < 'a' < 's'. */
	cr_assert_lt(account_natural_cmp("SA2", "sa1"), 0);
	cr_assert_lt(account_natural_cmp("sa", "sa0"), 0);
}

/* --- key files -------------------------------------------------------------------------- */

Test(account, keys_are_the_json_files_in_natural_order, .init = setup, .fini = teardown,
     .timeout = 10)
{
	put_file("sa10.json", "{}");
	put_file("sa2.json", "{}");
	put_file("sa1.json", "{}");
	put_file("notes.txt", "x");
	put_file("sa3.json.bak", "{}");
	put_file("sa4.JSON", "{}");           /* *.json is case-sensitive, as glob is */
	put_file(".hidden.json", "{}");
	cr_assert_eq(mkdir(at("x.json"), 0755), 0);
	cr_assert_eq(mkfifo(at("fifo.json"), 0644), 0);
	cr_assert_eq(symlink("sa1.json", at("link.json")), 0);
	cr_assert_eq(symlink("nowhere.json", at("dead.json")), 0);

	struct account_keys keys;
	char err[256] = "";
	cr_assert_eq(account_list_keys(tmp, &keys, err, sizeof err), 0, "%s", err);
	const char *expected[] = {"link.json", "sa1.json", "sa2.json", "sa10.json"};
	cr_assert_eq(keys.count, 4, "count %zu", keys.count);
	for (size_t i = 0; i < keys.count; i++)
		cr_assert_str_eq(keys.paths[i], at(expected[i]), "position %zu", i);
	account_keys_free(&keys);
	cr_assert_eq(keys.count, 0);
}

Test(account, keys_are_absolute_whatever_the_spelling, .init = setup, .fini = teardown,
     .timeout = 10)
{
	cr_assert_eq(mkdir(at("sa"), 0755), 0);
	put_file("sa/sa1.json", "{}");
	char err[256] = "";
	struct account_keys keys;

	char slashed[PATH_MAX + 8];
	snprintf(slashed, sizeof slashed, "%s/sa//", tmp);
	cr_assert_eq(account_list_keys(slashed, &keys, err, sizeof err), 0, "%s", err);
	cr_assert_eq(keys.count, 1);
	cr_assert_str_eq(keys.paths[0], at("sa/sa1.json"));
	account_keys_free(&keys);

	cr_assert_eq(chdir(tmp), 0);
	cr_assert_eq(account_list_keys("sa", &keys, err, sizeof err), 0, "%s", err);
	cr_assert_eq(keys.count, 1);
	char real_tmp[PATH_MAX];
	cr_assert_not_null(realpath(tmp, real_tmp));
	char expected[PATH_MAX + 32];
	snprintf(expected, sizeof expected, "%s/sa/sa1.json", real_tmp);
	cr_assert_str_eq(keys.paths[0], expected);
	account_keys_free(&keys);
}

Test(account, an_empty_key_dir_is_not_an_error, .init = setup, .fini = teardown, .timeout = 10)
{
	struct account_keys keys = {.paths = (char **)1, .count = 99};
	char err[256] = "";
	cr_assert_eq(account_list_keys(tmp, &keys, err, sizeof err), 0, "%s", err);
	cr_assert_eq(keys.count, 0);
	account_keys_free(&keys);
}

Test(account, a_missing_key_dir_is_an_error_naming_it, .init = setup, .fini = teardown,
     .timeout = 10)
{
	struct account_keys keys = {.paths = NULL, .count = 99};
	char err[512] = "";
	cr_assert_eq(account_list_keys(at("no-such-dir"), &keys, err, sizeof err), -ENOENT);
	cr_assert_not_null(strstr(err, at("no-such-dir")), "err: %s", err);
	cr_assert_eq(keys.count, 99, "output touched on failure");

	put_file("file", "x");
	cr_assert_eq(account_list_keys(at("file"), &keys, err, sizeof err), -ENOTDIR);
	cr_assert_not_null(strstr(err, at("file")), "err: %s", err);
}

/* --- service-account environment, through the real rclone ------------------------------- */

/* Drive remotes need neither network nor token for `config dump`. */
static const char rclone_conf[] =
	"[gd]\n"
	"type = drive\n"
	"scope = drive\n"
	"service_account_file = /placeholder/sa.json\n"
	"\n"
	"[gd2]\n"
	"type = drive\n"
	"scope = drive\n"
	"service_account_file = /placeholder/sa.json\n"
	"\n"
	"[my-gd]\n"
	"type = drive\n"
	"scope = drive\n"
	"service_account_file = /placeholder/sa.json\n"
	"\n"
	"[secret]\n"
	"type = crypt\n"
	"remote = gd:encrypted\n"
	"password = not-a-real-obscured-password\n"
	"\n"
	"[both]\n"
	"type = union\n"
	"upstreams = gd:media gd2:media:ro\n"
	"\n"
	"[quoted]\n"
	"type = union\n"
	"upstreams = \"gd:with space:ro\" gd2:x:nc\n"
	"\n"
	"[chunked]\n"
	"type = chunker\n"
	"remote = secret:chunks\n"
	"\n"
	"[diamond]\n"
	"type = union\n"
	"upstreams = secret: gd:plain chunked:\n"
	"\n"
	"[comb]\n"
	"type = combine\n"
	"upstreams = \"a dir=gd:x\" b=my-gd:y\n"
	"\n"
	"[loop-a]\n"
	"type = alias\n"
	"remote = loop-b:x\n"
	"\n"
	"[loop-b]\n"
	"type = alias\n"
	"remote = loop-a:y\n"
	"\n"
	"[self]\n"
	"type = hasher\n"
	"remote = self:x\n"
	"\n"
	"[dashed]\n"
	"type = crypt\n"
	"remote = my-gd:enc\n"
	"password = x\n"
	"\n"
	"[dangling]\n"
	"type = crypt\n"
	"remote = nowhere:path\n"
	"password = x\n"
	"\n"
	"[localcrypt]\n"
	"type = crypt\n"
	"remote = /srv/local/enc\n"
	"password = x\n"
	"\n"
	"[disk]\n"
	"type = local\n"
	"\n"
	"[ondisk]\n"
	"type = compress\n"
	"remote = disk:/srv\n"
	"\n"
	"[envcrypt]\n"
	"type = crypt\n"
	"remote = envgd:enc\n"
	"password = x\n"
	"\n"
	"[inline]\n"
	"type = drive\n"
	"scope = drive\n"
	"service_account_credentials = {\"type\": \"service_account\"}\n"
	"\n"
	"[notype]\n"
	"remote = gd:x\n"
	"\n"
	"[badquote]\n"
	"type = union\n"
	"upstreams = gd:a \"gd2:b\n";

static int sa_env(const char *upload_remote, struct account_env *env, char *err, size_t err_len)
{
	put_file("rclone.conf", rclone_conf);
	return account_sa_env(RCLONE, at("rclone.conf"), upload_remote, KEY, env, err, err_len);
}

static bool has_var(const struct account_env *env, const char *var)
{
	for (size_t i = 0; i < env->count; i++)
		if (strcmp(env->vars[i], var) == 0)
			return true;
	return false;
}

static void env_is(const char *upload_remote, const char *const *vars, size_t count)
{
	struct account_env env;
	char err[512] = "";
	int rc = sa_env(upload_remote, &env, err, sizeof err);
	cr_assert_eq(rc, 0, "%s: %d %s", upload_remote, rc, err);
	cr_assert_eq(env.count, count, "%s: %zu variables", upload_remote, env.count);
	for (size_t i = 0; i < count; i++)
		cr_assert(has_var(&env, vars[i]), "%s: %s missing (first: %s)", upload_remote,
			  vars[i], env.vars[0]);
	account_env_free(&env);
}

static void env_fails(const char *upload_remote, int expected_rc, const char *in_err)
{
	struct account_env env = {.count = 99};
	char err[512] = "";
	int rc = sa_env(upload_remote, &env, err, sizeof err);
	cr_assert_eq(rc, expected_rc, "%s: %d, expected %d: %s", upload_remote, rc, expected_rc,
		     err);
	cr_assert_eq(env.count, 99, "output touched on failure");
	cr_assert_not_null(strstr(err, in_err), "%s: \"%s\" not in \"%s\"", upload_remote, in_err,
			   err);
	cr_assert_null(strchr(err, '\n'), "not one line: %s", err);
}

#define GD_VAR "RCLONE_CONFIG_GD_SERVICE_ACCOUNT_FILE=" KEY
#define GD2_VAR "RCLONE_CONFIG_GD2_SERVICE_ACCOUNT_FILE=" KEY
#define MY_GD_VAR "RCLONE_CONFIG_MY-GD_SERVICE_ACCOUNT_FILE=" KEY

Test(account, sa_env_for_a_drive_remote, .init = setup, .fini = teardown, .timeout = 30)
{
	env_is("gd:/Media", (const char *[]){GD_VAR}, 1);
}

Test(account, sa_env_reaches_the_drive_behind_a_crypt, .init = setup, .fini = teardown,
     .timeout = 30)
{
	env_is("secret:/Media", (const char *[]){GD_VAR}, 1);
}

Test(account, sa_env_covers_both_drives_of_a_union, .init = setup, .fini = teardown,
     .timeout = 30)
{
	env_is("both:", (const char *[]){GD_VAR, GD2_VAR}, 2);
	env_is("quoted:/x", (const char *[]){GD_VAR, GD2_VAR}, 2);
}

Test(account, sa_env_follows_chunker_then_crypt_then_drive, .init = setup, .fini = teardown,
     .timeout = 30)
{
	env_is("chunked:/Media", (const char *[]){GD_VAR}, 1);
}

Test(account, sa_env_names_each_drive_once, .init = setup, .fini = teardown, .timeout = 30)
{
	env_is("diamond:", (const char *[]){GD_VAR}, 1);
}

Test(account, sa_env_follows_combine_upstreams, .init = setup, .fini = teardown, .timeout = 30)
{
	env_is("comb:", (const char *[]){GD_VAR, MY_GD_VAR}, 2);
}

Test(account, sa_env_keeps_the_dash_of_a_remote_name, .init = setup, .fini = teardown,
     .timeout = 30)
{
	env_is("dashed:/Media", (const char *[]){MY_GD_VAR}, 1);
}

/* rclone 1.60.1 itself, offline: a drive remote whose key file does not exist fails before it
 * touches the network, naming the file it tried. The variable account_sa_env made must be the
 * one rclone read, and the underscore spelling must not be. */
static void run_rclone_lsf(const char *conf, const char *remote, const char *env_var,
			   char *stderr_text, size_t len)
{
	int pipefd[2];
	cr_assert_eq(pipe(pipefd), 0);
	pid_t pid = test_fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		dup2(pipefd[1], STDERR_FILENO);
		int null_fd = open("/dev/null", O_RDWR);
		dup2(null_fd, STDIN_FILENO);
		dup2(null_fd, STDOUT_FILENO);
		char config_flag[PATH_MAX + 16];
		snprintf(config_flag, sizeof config_flag, "--config=%s", conf);
		char *argv[] = {RCLONE, config_flag, "lsf", (char *)remote, NULL};
		char *envp[] = {(char *)env_var, "HOME=/nonexistent", NULL};
		execve(RCLONE, argv, envp);
		_exit(127);
	}
	close(pipefd[1]);
	size_t used = 0;
	ssize_t n;
	while (used + 1 < len && (n = read(pipefd[0], stderr_text + used, len - 1 - used)) > 0)
		used += (size_t)n;
	stderr_text[used] = '\0';
	close(pipefd[0]);
	int status;
	cr_assert_eq(waitpid(pid, &status, 0), pid);
}

Test(account, sa_env_variable_is_the_one_rclone_reads, .init = setup, .fini = teardown,
     .timeout = 60)
{
	put_file("rclone.conf", rclone_conf);
	struct account_env env;
	char err[512] = "";
	const char *missing_key = "/nonexistent/cplow-test-key.json";
	cr_assert_eq(account_sa_env(RCLONE, at("rclone.conf"), "my-gd:", missing_key, &env, err,
				    sizeof err), 0, "%s", err);
	cr_assert_eq(env.count, 1);

	char out[4096];
	run_rclone_lsf(at("rclone.conf"), "my-gd:", env.vars[0], out, sizeof out);
	cr_assert_not_null(strstr(out, missing_key), "rclone ignored %s: %s", env.vars[0], out);

	run_rclone_lsf(at("rclone.conf"), "my-gd:",
		       "RCLONE_CONFIG_MY_GD_SERVICE_ACCOUNT_FILE=/nonexistent/cplow-test-key.json",
		       out, sizeof out);
	cr_assert_null(strstr(out, missing_key), "the '_' spelling reached rclone: %s", out);
	cr_assert_not_null(strstr(out, "/placeholder/sa.json"), "%s", out);
	account_env_free(&env);
}

Test(account, sa_env_cycle_is_an_error_not_a_hang, .init = setup, .fini = teardown,
     .timeout = 30)
{
	env_fails("loop-a:", -ELOOP, "loop-a → loop-b → loop-a");
	env_fails("self:", -ELOOP, "self → self");
}

Test(account, sa_env_missing_remote_is_named, .init = setup, .fini = teardown, .timeout = 30)
{
	env_fails("dangling:", -ENOENT, "\"nowhere\"");
	env_fails("nosuch:/Media", -ENOENT, "\"nosuch\"");
	env_fails("notype:", -ENOENT, "no type");
}

Test(account, sa_env_without_a_drive_behind_is_an_error, .init = setup, .fini = teardown,
     .timeout = 30)
{
	env_fails("localcrypt:", -ENODEV, "localcrypt (crypt) → /srv/local/enc (local path)");
	env_fails("ondisk:", -ENODEV, "ondisk (compress) → disk (local)");
	env_fails(":local:/srv", -ENODEV, "no drive remote behind it");
}

Test(account, sa_env_refuses_what_a_key_file_cannot_change, .init = setup, .fini = teardown,
     .timeout = 30)
{
	env_fails("inline:", -ENOTSUP, "service_account_credentials");
	env_fails(":drive:/Media", -ENOTSUP, "on-the-fly drive");
	env_fails("gd,service_account_file=/x.json:/M", -EINVAL, "connection string");
	env_fails("badquote:", -EINVAL, "badly quoted upstreams");
}

Test(account, sa_env_refuses_local_paths_and_bad_keys, .init = setup, .fini = teardown,
     .timeout = 30)
{
	env_fails("/mnt/local", -EINVAL, "not an rclone remote");
	struct account_env env = {.count = 99};
	char err[512] = "";
	put_file("rclone.conf", rclone_conf);
	cr_assert_eq(account_sa_env(RCLONE, at("rclone.conf"), "gd:", "keys/sa1.json", &env, err,
				    sizeof err), -EINVAL);
	cr_assert_eq(account_sa_env(RCLONE, at("rclone.conf"), "gd:", "/keys/$HOME.json", &env,
				    err, sizeof err), -EINVAL);
	cr_assert_not_null(strstr(err, "'$'"), "%s", err);
	cr_assert_eq(env.count, 99);
}

/* `rclone config dump` shows only the file: a remote defined in the environment is not in it,
 * which is why account_sa_env reads the environment as a second source. */
Test(account, config_dump_omits_remotes_defined_in_the_environment, .init = setup,
     .fini = teardown, .timeout = 30)
{
	put_file("rclone.conf", "[filed]\ntype = alias\nremote = /tmp\n");
	char cmd[PATH_MAX * 2];
	snprintf(cmd, sizeof cmd,
		 "RCLONE_CONFIG_ENVGD_TYPE=drive %s --config=%s config dump 2>/dev/null", RCLONE,
		 at("rclone.conf"));
	FILE *p = popen(cmd, "r");
	cr_assert_not_null(p);
	char dump[4096];
	size_t n = fread(dump, 1, sizeof dump - 1, p);
	dump[n] = '\0';
	cr_assert_eq(pclose(p), 0);
	cr_assert_not_null(strstr(dump, "\"filed\""), "%s", dump);
	cr_assert_null(strcasestr(dump, "envgd"), "%s", dump);
}

Test(account, sa_env_finds_drives_defined_in_the_environment, .init = setup, .fini = teardown,
     .timeout = 30)
{
	cr_assert_eq(setenv("RCLONE_CONFIG_ENVGD_TYPE", "drive", 1), 0);
	env_is("envcrypt:/Media", (const char *[]){"RCLONE_CONFIG_ENVGD_SERVICE_ACCOUNT_FILE=" KEY},
	       1);
	/* Env-defined names are case-insensitive to rclone: one variable either way. */
	env_is("ENVGD:/x", (const char *[]){"RCLONE_CONFIG_ENVGD_SERVICE_ACCOUNT_FILE=" KEY}, 1);
}

Test(account, sa_env_honours_environment_overrides_of_the_file, .init = setup, .fini = teardown,
     .timeout = 30)
{
	/* The file's ondisk → disk (local) is redirected by the variables rclone would read. */
	cr_assert_eq(setenv("RCLONE_CONFIG_ONDISK_REMOTE", "gd2:z", 1), 0);
	env_is("ondisk:", (const char *[]){GD2_VAR}, 1);
	cr_assert_eq(setenv("RCLONE_CONFIG_DISK_TYPE", "drive", 1), 0);
	cr_assert_eq(unsetenv("RCLONE_CONFIG_ONDISK_REMOTE"), 0);
	env_is("ondisk:", (const char *[]){"RCLONE_CONFIG_DISK_SERVICE_ACCOUNT_FILE=" KEY}, 1);
	/* A backend-wide variable overrides every crypt's remote. */
	cr_assert_eq(setenv("RCLONE_CRYPT_REMOTE", "gd2:all", 1), 0);
	env_is("secret:", (const char *[]){GD2_VAR}, 1);
}

/* --- running rclone --------------------------------------------------------------------- */

Test(account, sa_env_reports_what_rclone_said, .init = setup, .fini = teardown, .timeout = 30)
{
	put_file("broken.conf", "[x]\ntype = alias\nremote\n");
	struct account_env env = {.count = 99};
	char err[512] = "";
	cr_assert_eq(account_sa_env(RCLONE, at("broken.conf"), "x:", KEY, &env, err, sizeof err),
		     -EIO);
	cr_assert_not_null(strstr(err, "could not parse line"), "%s", err);
	cr_assert_null(strchr(err, '\n'), "%s", err);

	cr_assert_eq(account_sa_env(at("no-rclone"), at("broken.conf"), "x:", KEY, &env, err,
				    sizeof err), -EIO);
	cr_assert_not_null(strstr(err, "No such file"), "%s", err);

	put_file("not-json", "#!/bin/sh\necho 'this is not json'\n");
	cr_assert_eq(account_sa_env(at("not-json"), NULL, "x:", KEY, &env, err, sizeof err), -EIO);
	cr_assert_not_null(strstr(err, "no JSON object"), "%s", err);
	cr_assert_eq(env.count, 99);
}

Test(account, sa_env_kills_an_rclone_that_hangs, .init = setup, .fini = teardown, .timeout = 60)
{
	char script[PATH_MAX * 2];
	snprintf(script, sizeof script, "#!/bin/sh\necho $$ > %s\nexec sleep 120\n", at("pid"));
	put_file("slow-rclone", script);
	struct account_env env = {.count = 99};
	char err[512] = "";
	cr_assert_eq(account_sa_env(at("slow-rclone"), NULL, "gd:", KEY, &env, err, sizeof err),
		     -ETIMEDOUT, "%s", err);
	cr_assert_not_null(strstr(err, "did not finish"), "%s", err);

	FILE *f = fopen(at("pid"), "r");
	cr_assert_not_null(f);
	int pid = 0;
	cr_assert_eq(fscanf(f, "%d", &pid), 1);
	fclose(f);
	cr_assert_eq(kill(pid, 0), -1, "rclone %d still running", pid);
	cr_assert_eq(errno, ESRCH);
}
