#include "rclone_cmd.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

extern char **environ;

struct strvec {
	char **v;
	size_t n, cap;
	int failed;
};

static void push(struct strvec *s, char *str)
{
	if (s->failed || !str) {
		free(str);
		s->failed = 1;
		return;
	}
	if (s->n + 2 > s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 32;
		char **v = realloc(s->v, cap * sizeof(*v));
		if (!v) {
			free(str);
			s->failed = 1;
			return;
		}
		s->v = v;
		s->cap = cap;
	}
	s->v[s->n++] = str;
	s->v[s->n] = NULL;
}

static void pushf(struct strvec *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void pushf(struct strvec *s, const char *fmt, ...)
{
	va_list ap;
	char *str = NULL;
	va_start(ap, fmt);
	if (vasprintf(&str, fmt, ap) < 0)
		str = NULL;
	va_end(ap);
	push(s, str);
}

/* An rclone_extras entry as cloudplow rendered it: --flag=value, or a bare --flag. */
static void push_extra(struct strvec *s, const struct stage_flag *f)
{
	if (f->value)
		pushf(s, "%s=%s", f->name, f->value);
	else
		push(s, strdup(f->name));
}

static bool selects_files(const char *name);

static void strvec_free(char **v)
{
	if (!v)
		return;
	for (char **p = v; *p; p++)
		free(*p);
	free(v);
}

const char *rclone_cmd_reserved_flag(const char *flag)
{
	static const char *const reserved[] = {
		"--rc", "--rc-addr", "--rc-user", "--rc-pass", "--rc-no-auth", "--rc-htpasswd",
		"--use-json-log", "--log-level", "--verbose", "-v", "-vv", "-q", "--quiet",
		"--log-file", "--cutoff-mode", "--config", "--stats-log-level",
		/* would override the per-stage service account of every Drive remote */
		"--drive-service-account-file", "--drive-service-account-credentials",
	};
	size_t len = strcspn(flag, "=");
	for (size_t i = 0; i < sizeof(reserved) / sizeof(reserved[0]); i++)
		if (strlen(reserved[i]) == len && strncmp(flag, reserved[i], len) == 0)
			return reserved[i];
	return NULL;
}

/*
 * The flags that decide where rclone logs, and at which level and in which shape. Checked
 * against rclone 1.60 (--use-json-log -v, as cplow runs it), one run per flag:
 *   refused (below): --log-file (every line goes to the file), --use-json-log=false (plain
 *     lines: cplow reads per-file events from JSON only), --verbose=0 (no INFO line: rclone
 *     uploads all and logs no Copied), --log-level and -q/--quiet (rclone refuses them beside
 *     -v, so every stage fails; and they would hide INFO).
 *   kept, shown harmless: --log-format (any value: JSON lines carry their own fields),
 *     --syslog and --syslog-facility (with --use-json-log, 1.60 keeps writing JSON to stderr,
 *     with or without a syslog socket; without one it fails at start, exit 1, before any
 *     transfer), --log-systemd (the same: JSON still on stderr), --stats, --stats-one-line,
 *     --stats-one-line-date, --stats-one-line-date-format, --stats-unit,
 *     --stats-file-name-length, --stats-log-level (only the stats line moves), -P/--progress
 *     and --progress-terminal-title (JSON bypasses the progress printer), --dump (debug lines).
 *   cplow's own: -v, --verbose[=1], --use-json-log[=true] (rclone_cmd_reserved_flag drops a
 *     repeat: a second -v is debug level, which logs secrets).
 * `value_ok` lists the values that do no harm ("" a bare flag); NULL: none.
 */
static const struct log_flag {
	const char *name, *alias;
	const char *const *value_ok;
	const char *why;
} log_flags[] = {
	{ "--log-file", NULL, NULL,
	  "rclone would write its log, and so every \"Copied\" line cplow counts uploads from, to "
	  "that file instead of its stderr: it would upload while nothing was counted" },
	{ "--use-json-log", NULL, (const char *const[]){ "", "true", NULL },
	  "rclone would log plain text, and cplow reads which files were uploaded from its JSON "
	  "lines only: nothing would be counted" },
	{ "--verbose", "-v", (const char *const[]){ "", "1", "2", NULL },
	  "at this level rclone logs no \"Copied\" line: it would upload while nothing was "
	  "counted" },
	{ "--log-level", NULL, NULL,
	  "cplow runs rclone at -v (INFO), where its \"Copied\" lines are; rclone refuses "
	  "--log-level beside it, and a higher level would hide them" },
	{ "--quiet", "-q", NULL,
	  "rclone would log no \"Copied\" line (and it refuses -q beside cplow's -v)" },
};

int rclone_cmd_check_extra(const char *name, const char *value, char *why, size_t why_len)
{
	size_t len = strcspn(name, "=");
	const char *v = value ? value : name[len] == '=' ? name + len + 1 : "";
	for (size_t i = 0; i < sizeof(log_flags) / sizeof(log_flags[0]); i++) {
		const struct log_flag *f = &log_flags[i];
		if (!((strlen(f->name) == len && strncmp(name, f->name, len) == 0) ||
		      (f->alias && strlen(f->alias) == len && strncmp(name, f->alias, len) == 0)))
			continue;
		for (const char *const *ok = f->value_ok; ok && *ok; ok++)
			if (strcasecmp(v, *ok) == 0)
				return 0;
		snprintf(why, why_len, "%s", f->why);
		return -1;
	}
	return 0;
}

/* ---- flags a stage and rclone_extras may both set ---- */

/* rclone's SizeSuffix (fs/sizesuffix.go): the binary multiplier of a suffix letter. */
static int64_t size_multiplier(char c)
{
	static const char letters[] = "kmgtpe";
	const char *p = c ? strchr(letters, c | 0x20) : NULL;
	return p ? (int64_t)1 << (10 * (p - letters + 1)) : 0;
}

int rclone_cmd_parse_size(const char *text, int64_t *bytes)
{
	size_t len = strlen(text);
	if (len == 3 && strncasecmp(text, "off", 3) == 0) {
		*bytes = -1;
		return 0;
	}
	if (len == 0)
		return -1;
	/* As rclone 1.60 reads it: a bare number is KiB; "b"/"B" bytes; "k".."e" (any case),
	 * also as "Ki"/"KiB", binary multiples. */
	int64_t mult;
	size_t suffix = 1;
	char last = text[len - 1];
	if ((last >= '0' && last <= '9') || last == '.') {
		mult = 1024;
		suffix = 0;
	} else if ((last | 0x20) == 'b' && len > 2 && text[len - 2] == 'i') {
		mult = size_multiplier(text[len - 3]);
		suffix = 3;
	} else if ((last | 0x20) == 'b') {
		mult = 1;
	} else if ((last | 0x20) == 'i' && len > 1) {
		mult = size_multiplier(text[len - 2]);
		suffix = 2;
	} else {
		mult = size_multiplier(last);
	}
	if (mult == 0 || suffix >= len)
		return -1;
	/* Go's ParseFloat: digits, a point, an exponent, a sign; strtod alone would also take
	 * spaces, hex, "inf" and "nan". */
	char number[64];
	size_t n = len - suffix;
	if (n >= sizeof(number) || strspn(text, "0123456789.eE+-") < n)
		return -1;
	memcpy(number, text, n);
	number[n] = '\0';
	char *end;
	errno = 0;
	double v = strtod(number, &end);
	if (*end || errno || v < 0 || v * (double)mult >= 9.2e18)
		return -1;
	*bytes = (int64_t)(v * (double)mult);
	return 0;
}

static const struct stage_flag *user_flag(const struct stage_spec *spec, const char *name,
					  const char *alias)
{
	for (size_t i = 0; i < spec->extra_count; i++)
		if (strcmp(spec->extras[i].name, name) == 0 ||
		    (alias && strcmp(spec->extras[i].name, alias) == 0))
			return &spec->extras[i];
	return NULL;
}

/* Go's strconv.ParseBool, which rclone's boolean flags use: 1 true, 0 false, -1 neither. */
static int parse_bool(const char *v)
{
	static const char *const truths[] = { "1", "t", "T", "TRUE", "true", "True" };
	static const char *const lies[] = { "0", "f", "F", "FALSE", "false", "False" };
	for (size_t i = 0; i < sizeof(truths) / sizeof(truths[0]); i++) {
		if (strcmp(v, truths[i]) == 0)
			return 1;
		if (strcmp(v, lies[i]) == 0)
			return 0;
	}
	return -1;
}

bool rclone_cmd_dry_run(const struct stage_spec *spec)
{
	const struct stage_flag *f = user_flag(spec, "--dry-run", "-n");
	/* A value rclone would refuse counts as a dry run here: the stage fails to build anyway,
	 * and nothing that asks must ever delete. */
	return spec->dry_run || (f && (!f->value || parse_bool(f->value) != 0));
}

int rclone_cmd_extras_max_transfer(const struct stage_flag *extras, size_t n, int64_t *bytes)
{
	struct stage_spec s = { .extras = extras, .extra_count = n };
	const struct stage_flag *f = user_flag(&s, "--max-transfer", NULL);
	if (!f)
		return 0;
	return f->value && rclone_cmd_parse_size(f->value, bytes) == 0 ? 1 : -1;
}

/*
 * The stage's limits after rclone_extras, pushed onto argv. The user's --transfers,
 * --order-by, --max-size, --max-backlog and --min-age replace the stage's (cloudplow's meaning:
 * the user asked for them; they are passed where the extras are). --max-transfer is the
 * quota's: a user's lower value replaces it, a higher one is clamped to it (out->note says
 * so). --dry-run is passed once when core.dry_run or the extras ask.
 */
static int stage_limits(const struct stage_spec *spec, struct strvec *argv, struct rclone_cmd *out,
			char *err, size_t err_len)
{
	const struct stage_flag *f = user_flag(spec, "--max-transfer", NULL);
	int64_t quota = spec->max_transfer_bytes > 0 ? spec->max_transfer_bytes : -1, limit = quota;
	if (f) {
		int64_t asked;
		if (rclone_cmd_extras_max_transfer(f, 1, &asked) < 0) {
			snprintf(err, err_len, "rclone_extras: --max-transfer: %s%s%s is not a size "
				 "rclone reads", f->value ? "\"" : "", f->value ? f->value : "no value",
				 f->value ? "\"" : "");
			return -1;
		}
		if (quota < 0 || (asked >= 0 && asked <= quota))
			limit = asked;
		else
			snprintf(out->note, sizeof(out->note),
				 "rclone_extras: --max-transfer=%s is more than this stage's quota "
				 "allows: clamped to %lld bytes", f->value, (long long)quota);
	}
	if (limit >= 0) {
		/* Exact bytes: a bare number means KiB to rclone, and the fork's whole-GiB
		 * rounding turned a remainder under 2 GiB into "0G". */
		pushf(argv, "--max-transfer=%lldB", (long long)limit);
		push(argv, strdup("--cutoff-mode=cautious"));
		out->max_transfer_bytes = limit;
	}
	if ((f = user_flag(spec, "--max-size", NULL))) {
		int64_t size;
		if (!f->value || rclone_cmd_parse_size(f->value, &size) < 0) {
			snprintf(err, err_len, "rclone_extras: --max-size: \"%s\" is not a size rclone "
				 "reads", f->value ? f->value : "");
			return -1;
		}
		out->max_size_bytes = size > 0 ? size : 0;
	} else if (spec->max_size_bytes > 0) {
		pushf(argv, "--max-size=%lldB", (long long)spec->max_size_bytes);
		out->max_size_bytes = spec->max_size_bytes;
	}
	if (spec->transfers > 0 && !user_flag(spec, "--transfers", NULL))
		pushf(argv, "--transfers=%d", spec->transfers);
	if (spec->order_by && *spec->order_by && !user_flag(spec, "--order-by", NULL))
		pushf(argv, "--order-by=%s", spec->order_by);
	if (spec->max_backlog > 0 && !user_flag(spec, "--max-backlog", NULL))
		pushf(argv, "--max-backlog=%d", spec->max_backlog);
	/* A remote source's listing applied it (rclone_cmd_build_list). */
	if (spec->min_age && *spec->min_age && !user_flag(spec, "--min-age", NULL) &&
	    spec->source_kind == STAGE_SOURCE_LOCAL)
		pushf(argv, "--min-age=%s", spec->min_age);
	f = user_flag(spec, "--dry-run", "-n");
	if (f && f->value && parse_bool(f->value) < 0) {
		snprintf(err, err_len, "rclone_extras: %s=%s: rclone takes true or false", f->name,
			 f->value);
		return -1;
	}
	out->dry_run = rclone_cmd_dry_run(spec);
	if (out->dry_run)
		push(argv, strdup("--dry-run"));
	return 0;
}

/* Extras the stage's own flags above took in: passing them again would undo the clamp. */
static bool absorbed(const char *name)
{
	return strcmp(name, "--max-transfer") == 0 || strcmp(name, "--dry-run") == 0 ||
	       strcmp(name, "-n") == 0;
}

/* Inherited RCLONE_RC_* would fight the per-stage credentials and address; the variables of
 * the log flags above would do what rclone_cmd_check_extra refuses (RCLONE_LOG_FILE alone
 * sends every line to a file). */
static int inherited_ok(const char *var)
{
	static const char *const log_vars[] = { "RCLONE_LOG_FILE=", "RCLONE_USE_JSON_LOG=",
						"RCLONE_VERBOSE=", "RCLONE_LOG_LEVEL=",
						"RCLONE_QUIET=" };
	for (size_t i = 0; i < sizeof(log_vars) / sizeof(log_vars[0]); i++)
		if (strncmp(var, log_vars[i], strlen(log_vars[i])) == 0)
			return 0;
	return strncmp(var, "RCLONE_RC_", 10) != 0 && strncmp(var, "RCLONE_CONFIG=", 14) != 0;
}

/* rclone keeps the first of two copies of a variable: the stage's must be the only one. */
static int set_by_spec(const char *var, const struct stage_spec *spec)
{
	size_t n = strcspn(var, "=");
	for (size_t i = 0; i < spec->env_count; i++)
		if (strncmp(spec->env[i], var, n) == 0 && spec->env[i][n] == '=')
			return 1;
	return 0;
}

static void common_env(struct strvec *env, const struct stage_spec *spec)
{
	for (char **e = environ; e && *e; e++)
		if (inherited_ok(*e) && !set_by_spec(*e, spec))
			push(env, strdup(*e));
	for (size_t i = 0; i < spec->env_count; i++)
		push(env, strdup(spec->env[i]));
}

static void common_flags(struct strvec *argv, const struct stage_spec *spec)
{
	if (spec->rclone_config)
		pushf(argv, "--config=%s", spec->rclone_config);
	/* -v (INFO) is where the per-file lines are; -vv would log obscured passwords. */
	push(argv, strdup("--use-json-log"));
	push(argv, strdup("-v"));
}

/* "<work_dir>/<what>-<pid>-<stage>.txt", private to this stage's process. */
static int work_file(const struct stage_spec *spec, const char *what, char *path, size_t len,
		     char *err, size_t err_len)
{
	int n = snprintf(path, len, "%s/%s-%d-%d.txt", spec->work_dir ? spec->work_dir : "/tmp",
			 what, (int)getpid(), spec->stage_number);
	if (n < 0 || (size_t)n >= len) {
		snprintf(err, err_len, "%s file path too long", what);
		path[0] = '\0';
		return -1;
	}
	return 0;
}

static int write_excludes(const struct stage_spec *spec, char *path, size_t len, char *err,
			  size_t err_len)
{
	if (work_file(spec, "excludes", path, len, err, err_len) < 0)
		return -1;
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		snprintf(err, err_len, "cannot create %s: %s", path, strerror(errno));
		path[0] = '\0';
		return -1;
	}
	FILE *f = fdopen(fd, "w");
	if (!f) {
		close(fd);
		snprintf(err, err_len, "cannot write %s: %s", path, strerror(errno));
		return -1;
	}
	for (size_t i = 0; i < spec->exclude_count; i++) {
		if (strchr(spec->excludes[i], '\n')) {
			fclose(f);
			snprintf(err, err_len, "exclude pattern %zu contains a newline", i + 1);
			return -1;
		}
		fprintf(f, "%s\n", spec->excludes[i]);
	}
	if (fclose(f) != 0) {
		snprintf(err, err_len, "cannot write %s: %s", path, strerror(errno));
		return -1;
	}
	return 0;
}

static int finish(struct strvec *argv, struct strvec *env, struct rclone_cmd *out, char *err,
		  size_t err_len)
{
	if (argv->failed || env->failed) {
		strvec_free(argv->v);
		strvec_free(env->v);
		if (out->exclude_file[0])
			unlink(out->exclude_file);
		out->exclude_file[0] = out->files_from[0] = '\0';
		snprintf(err, err_len, "out of memory building the rclone command");
		return -1;
	}
	out->argv = argv->v;
	out->argc = argv->n;
	out->envp = env->v;
	out->envc = env->n;
	return 0;
}

int rclone_cmd_build(const struct stage_spec *spec, const char *rc_user, const char *rc_pass,
		     struct rclone_cmd *out, char *err, size_t err_len)
{
	struct strvec argv = { 0 }, env = { 0 };
	memset(out, 0, sizeof(*out));
	out->nice = spec->rclone_nice; /* the stage's rclone; its lsjson checks keep ours */
	if (!spec->command || (strcmp(spec->command, "move") != 0 && strcmp(spec->command, "copy") != 0)) {
		snprintf(err, err_len, "rclone command must be move or copy, not %s",
			 spec->command ? spec->command : "(none)");
		return -1;
	}
	if (!spec->source || !spec->destination) {
		snprintf(err, err_len, "a stage needs a source and a destination");
		return -1;
	}
	for (size_t i = 0; i < spec->extra_count; i++) {
		const char *r = rclone_cmd_reserved_flag(spec->extras[i].name);
		if (r) {
			snprintf(err, err_len, "rclone_extras: %s is set by cplow itself", r);
			return -1;
		}
	}
	bool remote = spec->source_kind == STAGE_SOURCE_REMOTE;
	if (!remote && spec->exclude_count &&
	    write_excludes(spec, out->exclude_file, sizeof(out->exclude_file), err, err_len) < 0)
		return -1;
	if (remote && work_file(spec, "files", out->files_from, sizeof(out->files_from), err,
				err_len) < 0)
		return -1;

	push(&argv, strdup(spec->rclone_binary ? spec->rclone_binary : "/usr/bin/rclone"));
	push(&argv, strdup(spec->command));
	push(&argv, strdup(spec->source));
	push(&argv, strdup(spec->destination));
	common_flags(&argv, spec);
	/* A free port on loopback; rclone logs which one it took. */
	push(&argv, strdup("--rc"));
	push(&argv, strdup("--rc-addr=127.0.0.1:0"));
	if (stage_limits(spec, &argv, out, err, err_len) < 0) {
		strvec_free(argv.v);
		if (out->exclude_file[0])
			unlink(out->exclude_file);
		out->exclude_file[0] = '\0';
		return -1;
	}
	/* The user's --exclude-from files come with the extras: rclone applies every one. */
	if (out->exclude_file[0])
		pushf(&argv, "--exclude-from=%s", out->exclude_file);
	if (remote)
		pushf(&argv, "--files-from-raw=%s", out->files_from);
	for (size_t i = 0; i < spec->extra_count; i++)
		if (!absorbed(spec->extras[i].name) &&
		    !(remote && selects_files(spec->extras[i].name)))
			push_extra(&argv, &spec->extras[i]);

	common_env(&env, spec);
	pushf(&env, "RCLONE_RC_USER=%s", rc_user);
	pushf(&env, "RCLONE_RC_PASS=%s", rc_pass);
	return finish(&argv, &env, out, err, err_len);
}

int rclone_cmd_build_lsjson(const struct stage_spec *spec, const char *files_from,
			    struct rclone_cmd *out, char *err, size_t err_len)
{
	struct strvec argv = { 0 }, env = { 0 };
	memset(out, 0, sizeof(*out));
	push(&argv, strdup(spec->rclone_binary ? spec->rclone_binary : "/usr/bin/rclone"));
	push(&argv, strdup("lsjson"));
	push(&argv, strdup(spec->destination));
	if (spec->rclone_config)
		pushf(&argv, "--config=%s", spec->rclone_config);
	/* Its stderr is the caller's log: errors only, not notices such as a missing config. */
	push(&argv, strdup("--log-level=ERROR"));
	push(&argv, strdup("-R")); /* --files-from names files in subdirectories */
	push(&argv, strdup("--files-only"));
	/* ModTime stays: it tells a copy rclone made of this file from another version. */
	push(&argv, strdup("--no-mimetype"));
	pushf(&argv, "--files-from-raw=%s", files_from);
	common_env(&env, spec);
	return finish(&argv, &env, out, err, err_len);
}

int rclone_cmd_build_features(const struct stage_spec *spec, struct rclone_cmd *out, char *err,
			      size_t err_len)
{
	struct strvec argv = { 0 }, env = { 0 };
	memset(out, 0, sizeof(*out));
	push(&argv, strdup(spec->rclone_binary ? spec->rclone_binary : "/usr/bin/rclone"));
	push(&argv, strdup("backend"));
	push(&argv, strdup("features"));
	push(&argv, strdup(spec->destination));
	if (spec->rclone_config)
		pushf(&argv, "--config=%s", spec->rclone_config);
	push(&argv, strdup("--log-level=ERROR"));
	common_env(&env, spec);
	return finish(&argv, &env, out, err, err_len);
}

/* rclone 1.60's flags that choose which files a transfer takes (`rclone help flags`: the
 * filter flags, and the local backend's way with links and mount points). Global flags all, so
 * `rclone size` takes them; the rest of rclone_extras may be move's own (--delete-empty-src-dirs),
 * which size refuses. */
static bool selects_files(const char *name)
{
	static const char *const flags[] = {
		"--exclude", "--exclude-from", "--exclude-if-present", "--filter", "-f",
		"--filter-from", "--files-from", "--files-from-raw", "--ignore-case", "--include",
		"--include-from", "--max-age", "--min-age", "--max-depth", "--max-size",
		"--min-size", "--copy-links", "-L", "--links", "-l", "--skip-links",
		"--one-file-system", "-x",
	};
	for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]); i++)
		if (strcmp(name, flags[i]) == 0)
			return true;
	return false;
}

/* `rclone <words> SRC` with what chooses the transfer's files (rclone_cmd_build_size). */
static int build_selection(const struct stage_spec *spec, const char *const *words,
			   size_t word_count, struct rclone_cmd *out, char *err, size_t err_len)
{
	struct strvec argv = { 0 }, env = { 0 };
	memset(out, 0, sizeof(*out));
	if (!spec->source) {
		snprintf(err, err_len, "a stage needs a source");
		return -1;
	}
	if (spec->exclude_count &&
	    write_excludes(spec, out->exclude_file, sizeof(out->exclude_file), err, err_len) < 0)
		return -1;
	push(&argv, strdup(spec->rclone_binary ? spec->rclone_binary : "/usr/bin/rclone"));
	push(&argv, strdup(words[0]));
	push(&argv, strdup(spec->source));
	for (size_t i = 1; i < word_count; i++)
		push(&argv, strdup(words[i]));
	if (spec->rclone_config)
		pushf(&argv, "--config=%s", spec->rclone_config);
	push(&argv, strdup("--log-level=ERROR"));
	if (out->exclude_file[0])
		pushf(&argv, "--exclude-from=%s", out->exclude_file);
	if (spec->min_age && *spec->min_age && !user_flag(spec, "--min-age", NULL))
		pushf(&argv, "--min-age=%s", spec->min_age);
	for (size_t i = 0; i < spec->extra_count; i++)
		if (selects_files(spec->extras[i].name))
			push_extra(&argv, &spec->extras[i]);
	common_env(&env, spec);
	return finish(&argv, &env, out, err, err_len);
}

int rclone_cmd_build_size(const struct stage_spec *spec, struct rclone_cmd *out, char *err,
			  size_t err_len)
{
	static const char *const words[] = { "size", "--json" };
	return build_selection(spec, words, 2, out, err, err_len);
}

int rclone_cmd_build_list(const struct stage_spec *spec, struct rclone_cmd *out, char *err,
			  size_t err_len)
{
	/* ModTime stays: the in-flight check compares it with the moved copy's. */
	static const char *const words[] = { "lsjson", "-R", "--files-only", "--no-mimetype" };
	return build_selection(spec, words, 4, out, err, err_len);
}

/* `rclone <words> PATH` for the hidden cleaner. */
static int build_on_path(const struct stage_spec *spec, const char *const *words, size_t n,
			 const char *path, struct rclone_cmd *out, char *err, size_t err_len)
{
	struct strvec argv = { 0 }, env = { 0 };
	memset(out, 0, sizeof(*out));
	push(&argv, strdup(spec->rclone_binary ? spec->rclone_binary : "/usr/bin/rclone"));
	for (size_t i = 0; i < n; i++)
		push(&argv, strdup(words[i]));
	push(&argv, strdup(path));
	if (spec->rclone_config)
		pushf(&argv, "--config=%s", spec->rclone_config);
	push(&argv, strdup("--log-level=ERROR"));
	/* A marker whose deletion failed stays for the next clean: that is the retry. */
	push(&argv, strdup("--retries=1"));
	common_env(&env, spec);
	return finish(&argv, &env, out, err, err_len);
}

int rclone_cmd_build_remove(const struct stage_spec *spec, const char *path, bool folder,
			    struct rclone_cmd *out, char *err, size_t err_len)
{
	const char *word = folder ? "purge" : "delete";
	return build_on_path(spec, &word, 1, path, out, err, err_len);
}

int rclone_cmd_build_stat(const struct stage_spec *spec, const char *path,
			  struct rclone_cmd *out, char *err, size_t err_len)
{
	static const char *const words[] = { "lsjson", "--stat" };
	return build_on_path(spec, words, 2, path, out, err, err_len);
}

/* Single quotes unless the word is plainly safe; a quote inside becomes '\''. */
static size_t quote(const char *word, char *out, size_t len)
{
	size_t n = 0;
	int plain = *word != '\0' && strspn(word, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
						  "0123456789-_=./:,@%+") == strlen(word);
#define PUT(c)                      \
	do {                        \
		if (n + 1 < len)    \
			out[n] = (c); \
		n++;                \
	} while (0)
	if (!plain)
		PUT('\'');
	for (const char *p = word; *p; p++) {
		if (*p == '\'' && !plain) {
			PUT('\'');
			PUT('\\');
			PUT('\'');
			PUT('\'');
		} else {
			PUT(*p);
		}
	}
	if (!plain)
		PUT('\'');
#undef PUT
	return n;
}

int rclone_cmd_render(const struct rclone_cmd *c, char *out, size_t len)
{
	size_t n = 0;
	for (size_t i = 0; i < c->argc; i++) {
		if (i && n + 1 < len)
			out[n] = ' ';
		if (i)
			n++;
		n += quote(c->argv[i], n < len ? out + n : out + len, n < len ? len - n : 0);
	}
	if (len)
		out[n < len ? n : len - 1] = '\0';
	return n < len ? 0 : -1;
}

void rclone_cmd_free(struct rclone_cmd *c)
{
	strvec_free(c->argv);
	strvec_free(c->envp);
	if (c->exclude_file[0])
		unlink(c->exclude_file);
	if (c->files_from[0])
		unlink(c->files_from);
	memset(c, 0, sizeof(*c));
}
