/*
 * cplow: the command line. Parses arguments, then hands over to the supervisor (upload, run),
 * the ledger view (status), the config checker or the quota reset. Exit codes:
 * docs/operations.md. README.md shows --help as it is: tests/integration/test_docs.py holds
 * the two together.
 *
 * cloudplow's habits work as they did under Python's argparse: options before or after the
 * command, "--opt value" and "--opt=value", and cloudplow's own options, commands and
 * environment variables (CLOUDPLOW_CONFIG, ...; cplow's CPLOW_* twins win where both are set).
 */
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "hidden.h"
#include "import.h"
#include "inspect_view.h"
#include "ledger.h"
#include "ledger_file.h"
#include "lock.h"
#include "log.h"
#include "planner.h"
#include "probe.h"
#include "supervisor.h"
#include "version.h"

#define MAX_UPLOADERS 64

/* The commands, as bits: which options each one takes. */
enum {
	CMD_UPLOAD = 1 << 0,
	CMD_RUN = 1 << 1,
	CMD_STATUS = 1 << 2,
	CMD_CHECK_CONFIG = 1 << 3,
	CMD_RESET_QUOTA = 1 << 4,
	CMD_IMPORT = 1 << 5,
	CMD_UPDATE_CONFIG = 1 << 6,
	CMD_SYNC = 1 << 7,
	CMD_CLEAN = 1 << 8,
	CMD_ALL = 0x1ff,
};

enum opt {
	OPT_CONFIG, OPT_LOGLEVEL, OPT_LOGFILE, OPT_CACHEFILE, OPT_HELP, OPT_VERSION,
	OPT_UPLOADER, OPT_ACCOUNT, OPT_FROM, OPT_DRY_RUN, OPT_RESET_LEDGER, OPT_PROGRESS,
	OPT_QUIET, OPT_JSON, OPT_WATCH, OPT_KEYS, OPT_UPLOADERS, OPT_COUNT
};

/* One row per option. The first four are cloudplow's, with its environment variables as
 * defaults (cplow's own name first: it wins where both are set). */
static const struct option_row {
	const char *name;
	const char *short_name;
	bool takes_value;
	unsigned commands;
	const char *cplow_env, *cloudplow_env;
} option_rows[OPT_COUNT] = {
	[OPT_CONFIG] = { "--config", NULL, true, CMD_ALL, "CPLOW_CONFIG", "CLOUDPLOW_CONFIG" },
	[OPT_LOGLEVEL] = { "--loglevel", NULL, true, CMD_ALL, "CPLOW_LOGLEVEL",
			   "CLOUDPLOW_LOGLEVEL" },
	[OPT_LOGFILE] = { "--logfile", NULL, true, CMD_ALL, "CPLOW_LOGFILE", "CLOUDPLOW_LOGFILE" },
	[OPT_CACHEFILE] = { "--cachefile", NULL, true, CMD_ALL, "CPLOW_CACHEFILE",
			    "CLOUDPLOW_CACHEFILE" },
	[OPT_HELP] = { "--help", "-h", false, CMD_ALL, NULL, NULL },
	[OPT_VERSION] = { "--version", NULL, false, CMD_ALL, NULL, NULL },
	[OPT_UPLOADER] = { "--uploader", "-u", true, CMD_UPLOAD | CMD_RESET_QUOTA, NULL, NULL },
	[OPT_ACCOUNT] = { "--account", NULL, true, CMD_RESET_QUOTA, NULL, NULL },
	[OPT_FROM] = { "--from", NULL, true, CMD_IMPORT, NULL, NULL },
	[OPT_DRY_RUN] = { "--dry-run", NULL, false, CMD_UPLOAD | CMD_IMPORT | CMD_CLEAN, NULL,
			  NULL },
	[OPT_RESET_LEDGER] = { "--reset-ledger", NULL, false, CMD_UPLOAD | CMD_RUN, NULL, NULL },
	[OPT_PROGRESS] = { "--progress", NULL, false, CMD_UPLOAD | CMD_RUN, NULL, NULL },
	[OPT_QUIET] = { "--quiet", NULL, false, CMD_UPLOAD | CMD_RUN, NULL, NULL },
	[OPT_JSON] = { "--json", NULL, false, CMD_STATUS, NULL, NULL },
	[OPT_WATCH] = { "--watch", NULL, true, CMD_STATUS, NULL, NULL },
	[OPT_KEYS] = { "--keys", NULL, false, CMD_CHECK_CONFIG, NULL, NULL },
	[OPT_UPLOADERS] = { "--uploaders", NULL, false, CMD_CHECK_CONFIG, NULL, NULL },
};

/* The command line, parsed. */
struct cli {
	const char *value[OPT_COUNT];   /* the last one given; "" for an option without value */
	const char *from[OPT_COUNT];    /* where it came from, for messages: "--config", or the
					 * environment variable's name */
	int last_given[OPT_COUNT];      /* argv index of the last one given (--progress/--quiet) */
	const char *uploaders[MAX_UPLOADERS];
	size_t uploader_count;
	const struct command_row *command;
	const char *config;             /* the config's path, defaults applied */
};

struct command_row {
	const char *name;
	unsigned bit;
	int (*run)(const struct cli *cli);
};

static int usage(FILE *out)
{
	fprintf(out,
		"usage: cplow [--config PATH] [--loglevel LEVEL] [--logfile PATH] COMMAND [OPTIONS]\n"
		"       cplow --help | --version (release, git commit, ledger layout)\n"
		"  upload [-u NAME]... [--dry-run] [--reset-ledger] [--progress|--quiet]\n"
		"                        upload now (every uploader, or the named ones)\n"
		"  run [--reset-ledger] [--progress|--quiet]\n"
		"                        the daemon: upload each uploader when it is due\n"
		"A live line per stage is shown on a terminal (--progress: always; --quiet: never).\n"
		"  status [--json] [--watch SECONDS]\n"
		"                        show the live quota ledger (as cplow-inspect)\n"
		"  check-config [--keys|--uploaders]\n"
		"                        validate the config (every error, then exit 2) and print it\n"
		"                        with defaults; --keys: every key, its type and default;\n"
		"                        --uploaders: the uploaders' names, one a line\n"
		"  reset-quota [--uploader NAME] [--account NAME]\n"
		"                        forget the usage of the matching accounts\n"
		"  import-cloudplow [--from FILE] [--dry-run]\n"
		"                        add a cloudplow quota fork's sa_quota_cache.json to the\n"
		"                        ledger (never lowering a usage); cplow must not be running\n"
		"  clean [--dry-run]     delete on the remotes what the hidden folders' *_HIDDEN~\n"
		"                        markers name, then the markers (cloudplow's UnionFS\n"
		"                        cleaner; upload and run do it before uploading)\n"
		"  update_config, sync   cloudplow's: each says why cplow does not (sync exits 2)\n"
		"Options go before or after the command, as --opt VALUE or --opt=VALUE.\n"
		"LEVEL: debug, info, warn, error, or cloudplow's DEBUG, INFO, WARNING, ERROR,\n"
		"CRITICAL (any case). --logfile: every line goes there too (reopened on SIGHUP).\n"
		"--cachefile (cloudplow's) is accepted and unused: cplow keeps no such cache.\n"
		"Defaults: $CPLOW_CONFIG, else $CLOUDPLOW_CONFIG, else ./config.json; likewise\n"
		"CPLOW_/CLOUDPLOW_LOGLEVEL (else info), _LOGFILE (else none) and _CACHEFILE.\n");
	return out == stderr ? SUPERVISOR_EXIT_CONFIG : SUPERVISOR_EXIT_OK;
}

static int bad_argument(const char *command, const char *arg)
{
	fprintf(stderr, "cplow %s: unexpected argument %s (see cplow --help)\n", command, arg);
	return SUPERVISOR_EXIT_CONFIG;
}

/* The row for an argument ("--config=x" is --config), or NULL. *value: what follows its '='. */
static const struct option_row *find_option(const char *arg, const char **value)
{
	size_t len = strcspn(arg, "=");
	*value = arg[len] == '=' ? arg + len + 1 : NULL;
	for (size_t i = 0; i < OPT_COUNT; i++) {
		const struct option_row *o = &option_rows[i];
		if ((strlen(o->name) == len && strncmp(arg, o->name, len) == 0) ||
		    (o->short_name && strlen(o->short_name) == len &&
		     strncmp(arg, o->short_name, len) == 0))
			return o;
	}
	return NULL;
}

static void print_errors(const struct config_errors *e)
{
	for (size_t i = 0; i < e->count; i++)
		fprintf(stderr, "cplow: %s\n", e->lines[i]);
	if (e->more)
		fprintf(stderr, "cplow: and %zu more errors\n", e->more);
}

/* What the mover and the hidden cleaner will do, one line each. */
static void print_movers_and_hidden(const struct config *c)
{
	for (size_t i = 0; i < c->uploader_count; i++) {
		const struct config_uploader *u = &c->uploaders[i];
		if (!u->mover.enabled)
			continue;
		char *account = planner_remote_name(u->mover.move_to_remote);
		fprintf(stderr, "cplow: uploader %s: mover on: after each upload, a server-side "
			"rclone move %s %s, its bytes counted on account %s%s\n", u->name,
			u->mover.move_from_remote, u->mover.move_to_remote, account ? account : "?",
			u->quota_enabled ? " within its daily quota" : " (quota off: no limit)");
		free(account);
	}
	for (size_t i = 0; i < c->hidden_count; i++) {
		const struct config_hidden *h = &c->hidden[i];
		fprintf(stderr, "cplow: hidden %s: its *_HIDDEN~ markers are cleaned before each "
			"upload and by cplow clean, on %zu remote%s\n", h->folder, h->remote_count,
			h->remote_count == 1 ? "" : "s");
	}
}

/* Every error, then exit 2; else the warnings, what rclone says (probe.h), which quota
 * applies to each uploader and why, what the movers and hidden cleaner do, and the effective
 * config. --keys: the key table. */
static int check_config(const struct cli *cli)
{
	struct config c;
	struct config_errors errors;
	if (cli->value[OPT_KEYS])
		return config_keys_print(stdout) < 0 ? SUPERVISOR_EXIT_FAILED : SUPERVISOR_EXIT_OK;
	if (config_load_all(cli->config, &c, &errors) < 0) {
		print_errors(&errors);
		config_errors_free(&errors);
		return SUPERVISOR_EXIT_CONFIG;
	}
	/* For shell completion (-u NAME): the names alone, without asking rclone. */
	if (cli->value[OPT_UPLOADERS]) {
		for (size_t i = 0; i < c.uploader_count; i++)
			printf("%s\n", c.uploaders[i].name);
		config_errors_free(&errors);
		config_free(&c);
		return SUPERVISOR_EXIT_OK;
	}
	for (size_t i = 0; i < c.warning_count; i++)
		fprintf(stderr, "cplow: warning: %s\n", c.warnings[i]);
	for (size_t i = 0; i < c.ignored_section_count; i++)
		fprintf(stderr, "cplow: section %s is not implemented by this cplow and is ignored\n",
			c.ignored_sections[i]);
	int rc = probe_config(&c, &errors) < 0 ? SUPERVISOR_EXIT_CONFIG : SUPERVISOR_EXIT_OK;
	print_errors(&errors);
	for (size_t i = 0; i < c.uploader_count; i++)
		fprintf(stderr, "cplow: uploader %s: quota %s (%s)\n", c.uploaders[i].name,
			c.uploaders[i].quota_enabled ? "on" : "off", c.uploaders[i].quota_reason);
	print_movers_and_hidden(&c);
	if (rc == SUPERVISOR_EXIT_OK && config_print(&c, stdout) < 0)
		rc = SUPERVISOR_EXIT_FAILED;
	config_errors_free(&errors);
	config_free(&c);
	return rc;
}

static int status(const struct cli *cli)
{
	char name[128];
	if (ledger_name_for(cli->config, name, sizeof(name)) != LEDGER_OK) {
		fprintf(stderr, "cplow: cannot derive a ledger name from %s\n", cli->config);
		return SUPERVISOR_EXIT_CONFIG;
	}
	double watch = cli->value[OPT_WATCH] ? atof(cli->value[OPT_WATCH]) : 0;
	return inspect_run("cplow", name, cli->value[OPT_JSON] != NULL, watch);
}

/* Zeroes the matching rows; persists them itself unless a running cplow's flusher will. */
static int reset_quota(const struct cli *cli)
{
	if (cli->uploader_count > 1) {
		fprintf(stderr, "cplow reset-quota: give --uploader once\n");
		return SUPERVISOR_EXIT_CONFIG;
	}
	const char *uploader = cli->uploader_count ? cli->uploaders[0] : NULL;
	const char *account = cli->value[OPT_ACCOUNT];
	struct config c;
	char err[CONFIG_ERR_MAX], name[128];
	if (config_load(cli->config, &c, err, sizeof(err)) < 0) {
		fprintf(stderr, "cplow: %s\n", err);
		return SUPERVISOR_EXIT_CONFIG;
	}
	int code = SUPERVISOR_EXIT_FAILED, lock_fd = -1;
	pid_t holder;
	struct ledger l = { 0 };
	struct ledger_copy copy = { 0 };
	enum lock_status ls = lock_take(c.quota.lock_path, &lock_fd, &holder);
	if (ls == LOCK_ERROR) {
		fprintf(stderr, "cplow: cannot take the lock %s: %s\n", c.quota.lock_path,
			strerror(errno));
		goto out;
	}
	if (ledger_name_for(c.path, name, sizeof(name)) != LEDGER_OK ||
	    supervisor_open_ledger(&c, name, false, &l, err, sizeof(err)) < 0) {
		fprintf(stderr, "cplow: %s\n", err);
		code = SUPERVISOR_EXIT_CONFIG;
		goto out;
	}
	if (ledger_copy_init(&l, &copy) != LEDGER_OK || ledger_read(&l, &copy, 2000) != LEDGER_OK)
		goto out;
	int64_t now = ledger_now_ms();
	int n = 0;
	for (uint32_t i = 0; i < copy.row_count; i++) {
		const struct ledger_row *r = &copy.rows[i];
		if ((uploader && strcmp(uploader, r->uploader) != 0) ||
		    (account && strcmp(account, r->account) != 0))
			continue;
		if (ledger_reset_row(&l, (int32_t)i, now) == LEDGER_OK) {
			printf("reset %s / %s (was %lld bytes)\n", r->uploader, r->account,
			       (long long)r->usage.used_bytes);
			n++;
		}
	}
	if (n == 0)
		printf("no account matched\n");
	if (ls == LOCK_TAKEN) {
		/* No cplow runs: write the file now, nobody else will. */
		/* Under the flush lock: a flusher orphaned by a killed cplow may still write. */
		if (ledger_file_flush(&l, &copy, c.quota.cache_path, now, err, sizeof(err)) < 0) {
			fprintf(stderr, "cplow: cannot write the ledger file: %s\n", err);
			goto out;
		}
	}
	code = SUPERVISOR_EXIT_OK;
out:
	ledger_copy_free(&copy);
	if (l.hdr)
		ledger_detach(&l);
	if (lock_fd >= 0)
		close(lock_fd);
	config_free(&c);
	return code;
}

/* The quota fork's sa_quota_cache.json into the ledger: import.h. */
static int import_file(const struct cli *cli)
{
	struct import_options o = { .config_path = cli->config, .from = cli->value[OPT_FROM],
				    .dry_run = cli->value[OPT_DRY_RUN] != NULL };
	return import_cloudplow(&o, stdout, stderr);
}

static int upload_or_run(const struct cli *cli)
{
	bool upload = cli->command->bit == CMD_UPLOAD;
	struct supervisor_options o = {
		.config_path = cli->config, .mode = upload ? SUPERVISOR_UPLOAD : SUPERVISOR_RUN,
		.uploaders = cli->uploaders, .uploader_count = cli->uploader_count,
		.dry_run = cli->value[OPT_DRY_RUN] != NULL,
		.reset_ledger = cli->value[OPT_RESET_LEDGER] != NULL, .progress = -1,
	};
	/* The later of --progress and --quiet wins. */
	if (cli->value[OPT_PROGRESS] || cli->value[OPT_QUIET])
		o.progress = cli->last_given[OPT_PROGRESS] > cli->last_given[OPT_QUIET];
	return supervisor_main(&o);
}

/* cloudplow's `clean`: the hidden cleaner (hidden.h) in this process; --dry-run, or
 * core.dry_run, says what it would delete. Exit 0 when every marker was cleaned, 1 when some
 * stay. */
static int clean(const struct cli *cli)
{
	struct config c;
	struct config_errors errors;
	if (config_load_all(cli->config, &c, &errors) < 0) {
		print_errors(&errors);
		config_errors_free(&errors);
		return SUPERVISOR_EXIT_CONFIG;
	}
	config_errors_free(&errors);
	log_set_tag("cplow");
	if (c.hidden_count == 0)
		log_info("clean: no hidden folder in %s: nothing to clean", c.path);
	struct hidden_options o = { .dry_run = cli->value[OPT_DRY_RUN] || c.core.dry_run,
				    .stop_fd = -1 };
	struct hidden_result r;
	int rc = hidden_clean(&c, &o, &r);
	config_free(&c);
	return rc == 0 ? SUPERVISOR_EXIT_OK : SUPERVISOR_EXIT_FAILED;
}

/* cloudplow merged its defaults into the user's file and wrote it back; cplow reads the file as
 * it is, so there is nothing to update. */
static int update_config(const struct cli *cli)
{
	printf("cplow never rewrites your config (%s): it reads cloudplow's as it is, with "
	       "defaults for missing keys; `cplow check-config` shows the result\n", cli->config);
	return SUPERVISOR_EXIT_OK;
}

/* Exit 2, as for any command cplow cannot carry out: a timer that still runs it fails where it
 * can be seen instead of syncing nothing in silence. */
static int sync_remotes(const struct cli *cli)
{
	(void)cli;
	fprintf(stderr, "cplow sync: not implemented: cloudplow's syncer drove Scaleway VMs through "
		"a command-line tool and a product that no longer exist (use rclone sync)\n");
	return SUPERVISOR_EXIT_CONFIG;
}

static const struct command_row command_rows[] = {
	{ "upload", CMD_UPLOAD, upload_or_run },
	{ "run", CMD_RUN, upload_or_run },
	{ "status", CMD_STATUS, status },
	{ "check-config", CMD_CHECK_CONFIG, check_config },
	{ "reset-quota", CMD_RESET_QUOTA, reset_quota },
	{ "import-cloudplow", CMD_IMPORT, import_file },
	{ "update_config", CMD_UPDATE_CONFIG, update_config },
	{ "sync", CMD_SYNC, sync_remotes },
	{ "clean", CMD_CLEAN, clean },
};

/* argv into cli: options anywhere, the first word that is not an option's value the command.
 * Returns -1 (go on) or an exit code. */
static int parse(int argc, char **argv, struct cli *cli)
{
	const char *word = NULL, *extra = NULL;
	for (int i = 1; i < argc; i++) {
		const char *arg = argv[i], *value;
		if (arg[0] != '-' || arg[1] == '\0') {
			if (!word)
				word = arg;
			else if (!extra)
				extra = arg;
			continue;
		}
		const struct option_row *o = find_option(arg, &value);
		if (!o) {
			fprintf(stderr, "cplow: unknown option %s (see cplow --help)\n", arg);
			return SUPERVISOR_EXIT_CONFIG;
		}
		enum opt id = (enum opt)(o - option_rows);
		if (!o->takes_value && value) {
			fprintf(stderr, "cplow: %s takes no value\n", o->name);
			return SUPERVISOR_EXIT_CONFIG;
		}
		if (o->takes_value && !value) {
			if (i + 1 >= argc) {
				fprintf(stderr, "cplow: %s needs a value\n", o->name);
				return SUPERVISOR_EXIT_CONFIG;
			}
			value = argv[++i];
		}
		if (id == OPT_UPLOADER) {
			if (cli->uploader_count == MAX_UPLOADERS) {
				fprintf(stderr, "cplow: more than %d uploaders named\n", MAX_UPLOADERS);
				return SUPERVISOR_EXIT_CONFIG;
			}
			cli->uploaders[cli->uploader_count++] = value;
		}
		cli->value[id] = value ? value : "";
		cli->from[id] = o->name;
		cli->last_given[id] = i;
	}
	if (cli->value[OPT_HELP])
		return usage(stdout);
	if (cli->value[OPT_VERSION]) {
		version_print(stdout, "cplow");
		return SUPERVISOR_EXIT_OK;
	}
	if (!word)
		return usage(stderr);
	for (size_t i = 0; i < sizeof(command_rows) / sizeof(command_rows[0]); i++)
		if (strcmp(word, command_rows[i].name) == 0)
			cli->command = &command_rows[i];
	if (!cli->command) {
		fprintf(stderr, "cplow: unknown command %s (see cplow --help)\n", word);
		return SUPERVISOR_EXIT_CONFIG;
	}
	if (extra)
		return bad_argument(word, extra);
	for (size_t i = 0; i < OPT_COUNT; i++) {
		if (cli->value[i] && !(option_rows[i].commands & cli->command->bit)) {
			fprintf(stderr, "cplow %s: %s is not an option of this command (see cplow "
				"--help)\n", word, cli->from[i]);
			return SUPERVISOR_EXIT_CONFIG;
		}
	}
	/* Defaults from the environment: cplow's own variable, else cloudplow's. */
	for (size_t i = 0; i < OPT_COUNT; i++) {
		const struct option_row *o = &option_rows[i];
		const char *names[] = { o->cplow_env, o->cloudplow_env };
		for (size_t k = 0; k < 2 && !cli->value[i] && names[k]; k++) {
			const char *v = getenv(names[k]);
			if (v && *v) {
				cli->value[i] = v;
				cli->from[i] = names[k];
			}
		}
	}
	cli->config = cli->value[OPT_CONFIG] ? cli->value[OPT_CONFIG] : "config.json";
	return -1;
}

/* --loglevel, --logfile and --cachefile, from wherever they came. Returns -1 or an exit code. */
static int apply_log_options(const struct cli *cli)
{
	if (cli->value[OPT_LOGLEVEL]) {
		enum log_level level;
		if (log_parse_level(cli->value[OPT_LOGLEVEL], &level) < 0) {
			fprintf(stderr, "cplow: %s: \"%s\" is not a log level: %s\n",
				cli->from[OPT_LOGLEVEL], cli->value[OPT_LOGLEVEL], log_level_names);
			return SUPERVISOR_EXIT_CONFIG;
		}
		log_set_level(level);
	}
	if (cli->value[OPT_LOGFILE]) {
		char err[PATH_MAX + 128];
		if (log_open_file(cli->value[OPT_LOGFILE], err, sizeof(err)) < 0) {
			fprintf(stderr, "cplow: %s: %s\n", cli->from[OPT_LOGFILE], err);
			return SUPERVISOR_EXIT_CONFIG;
		}
	}
	if (cli->value[OPT_CACHEFILE])
		log_info("%s%s%s: cplow keeps no such cache (its bans and quota usage are in the "
			 "ledger, sa_quota_cache.json); ignored", cli->from[OPT_CACHEFILE],
			 cli->from[OPT_CACHEFILE][0] == '-' ? " " : "=", cli->value[OPT_CACHEFILE]);
	return -1;
}

int main(int argc, char **argv)
{
	struct cli cli = { 0 };
	int code = parse(argc, argv, &cli);
	if (code < 0)
		code = apply_log_options(&cli);
	if (code >= 0)
		return code;
	return cli.command->run(&cli);
}
