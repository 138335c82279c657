/*
 * cplow: the command line. Parses arguments, then hands over to the supervisor (upload, run),
 * the ledger view (status), the config checker or the quota reset. Exit codes: README.md.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "import.h"
#include "inspect_view.h"
#include "ledger.h"
#include "ledger_file.h"
#include "lock.h"
#include "log.h"
#include "probe.h"
#include "supervisor.h"

#define MAX_UPLOADERS 64

static int usage(FILE *out)
{
	fprintf(out,
		"usage: cplow [--config PATH] [--loglevel error|warn|info|debug] COMMAND\n"
		"  upload [-u NAME]... [--dry-run] [--reset-ledger] [--progress|--quiet]\n"
		"                        upload now (every uploader, or the named ones)\n"
		"  run [--reset-ledger] [--progress|--quiet]\n"
		"                        the daemon: upload each uploader when it is due\n"
		"A live line per stage is shown on a terminal (--progress: always; --quiet: never).\n"
		"  status [--json] [--watch SECONDS]\n"
		"                        show the live quota ledger (as cplow-inspect)\n"
		"  check-config [--keys] validate the config (every error, then exit 2) and print it\n"
		"                        with defaults; --keys: every key, its type and default\n"
		"  reset-quota [--uploader NAME] [--account NAME]\n"
		"                        forget the usage of the matching accounts\n"
		"  import-cloudplow [--from FILE] [--dry-run]\n"
		"                        add a cloudplow quota fork's sa_quota_cache.json to the\n"
		"                        ledger (never lowering a usage); cplow must not be running\n"
		"The config is --config, else $CPLOW_CONFIG, else ./config.json.\n");
	return out == stderr ? SUPERVISOR_EXIT_CONFIG : SUPERVISOR_EXIT_OK;
}

static int bad_argument(const char *command, const char *arg)
{
	fprintf(stderr, "cplow %s: unexpected argument %s (see cplow --help)\n", command, arg);
	return SUPERVISOR_EXIT_CONFIG;
}

static void print_errors(const struct config_errors *e)
{
	for (size_t i = 0; i < e->count; i++)
		fprintf(stderr, "cplow: %s\n", e->lines[i]);
	if (e->more)
		fprintf(stderr, "cplow: and %zu more errors\n", e->more);
}

/* Every error, then exit 2; else the warnings, what rclone says (probe.h), which quota
 * applies to each uploader and why, and the effective config. --keys: the key table. */
static int check_config(const char *path, int argc, char **argv)
{
	struct config c;
	struct config_errors errors;
	if (argc == 1 && strcmp(argv[0], "--keys") == 0)
		return config_keys_print(stdout) < 0 ? SUPERVISOR_EXIT_FAILED : SUPERVISOR_EXIT_OK;
	if (argc)
		return bad_argument("check-config", argv[0]);
	if (config_load_all(path, &c, &errors) < 0) {
		print_errors(&errors);
		config_errors_free(&errors);
		return SUPERVISOR_EXIT_CONFIG;
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
	if (rc == SUPERVISOR_EXIT_OK && config_print(&c, stdout) < 0)
		rc = SUPERVISOR_EXIT_FAILED;
	config_errors_free(&errors);
	config_free(&c);
	return rc;
}

static int status(const char *path, int argc, char **argv)
{
	int json = 0;
	double watch = 0;
	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0)
			json = 1;
		else if (strcmp(argv[i], "--watch") == 0 && i + 1 < argc)
			watch = atof(argv[++i]);
		else
			return bad_argument("status", argv[i]);
	}
	char name[128];
	if (ledger_name_for(path, name, sizeof(name)) != LEDGER_OK) {
		fprintf(stderr, "cplow: cannot derive a ledger name from %s\n", path);
		return SUPERVISOR_EXIT_CONFIG;
	}
	return inspect_run("cplow", name, json, watch);
}

/* Zeroes the matching rows; persists them itself unless a running cplow's flusher will. */
static int reset_quota(const char *path, int argc, char **argv)
{
	const char *uploader = NULL, *account = NULL;
	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--uploader") == 0 && i + 1 < argc)
			uploader = argv[++i];
		else if (strcmp(argv[i], "--account") == 0 && i + 1 < argc)
			account = argv[++i];
		else
			return bad_argument("reset-quota", argv[i]);
	}
	struct config c;
	char err[CONFIG_ERR_MAX], name[128];
	if (config_load(path, &c, err, sizeof(err)) < 0) {
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
		if (ledger_read(&l, &copy, 2000) != LEDGER_OK ||
		    ledger_file_write(&copy, c.quota.cache_path, now, err, sizeof(err)) < 0) {
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
static int import_file(const char *path, int argc, char **argv)
{
	struct import_options o = { .config_path = path };
	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--from") == 0 && i + 1 < argc)
			o.from = argv[++i];
		else if (strcmp(argv[i], "--dry-run") == 0)
			o.dry_run = true;
		else
			return bad_argument("import-cloudplow", argv[i]);
	}
	return import_cloudplow(&o, stdout, stderr);
}

static int upload_or_run(const char *path, enum supervisor_mode mode, int argc, char **argv)
{
	const char *names[MAX_UPLOADERS];
	struct supervisor_options o = { .config_path = path, .mode = mode, .uploaders = names,
					.progress = -1 };
	const char *command = mode == SUPERVISOR_UPLOAD ? "upload" : "run";
	for (int i = 0; i < argc; i++) {
		if (mode == SUPERVISOR_UPLOAD && (strcmp(argv[i], "-u") == 0 ||
						  strcmp(argv[i], "--uploader") == 0) &&
		    i + 1 < argc && o.uploader_count < MAX_UPLOADERS)
			names[o.uploader_count++] = argv[++i];
		else if (mode == SUPERVISOR_UPLOAD && strcmp(argv[i], "--dry-run") == 0)
			o.dry_run = true;
		else if (strcmp(argv[i], "--reset-ledger") == 0)
			o.reset_ledger = true;
		else if (strcmp(argv[i], "--progress") == 0)
			o.progress = 1;
		else if (strcmp(argv[i], "--quiet") == 0)
			o.progress = 0;
		else
			return bad_argument(command, argv[i]);
	}
	return supervisor_main(&o);
}

int main(int argc, char **argv)
{
	const char *config = getenv("CPLOW_CONFIG");
	int i = 1;
	for (; i < argc && argv[i][0] == '-'; i++) {
		if (strcmp(argv[i], "--version") == 0) {
			printf("cplow %s\n", CPLOW_VERSION);
			return SUPERVISOR_EXIT_OK;
		}
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
			return usage(stdout);
		if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
			config = argv[++i];
		} else if (strcmp(argv[i], "--loglevel") == 0 && i + 1 < argc) {
			enum log_level level;
			if (log_parse_level(argv[++i], &level) < 0) {
				fprintf(stderr, "cplow: --loglevel: %s is not error, warn, info or debug\n",
					argv[i]);
				return SUPERVISOR_EXIT_CONFIG;
			}
			log_set_level(level);
		} else {
			return usage(stderr);
		}
	}
	if (i >= argc)
		return usage(stderr);
	if (!config || !*config)
		config = "config.json";
	const char *command = argv[i++];
	int rest = argc - i;
	char **args = argv + i;
	if (strcmp(command, "upload") == 0)
		return upload_or_run(config, SUPERVISOR_UPLOAD, rest, args);
	if (strcmp(command, "run") == 0)
		return upload_or_run(config, SUPERVISOR_RUN, rest, args);
	if (strcmp(command, "status") == 0)
		return status(config, rest, args);
	if (strcmp(command, "check-config") == 0)
		return check_config(config, rest, args);
	if (strcmp(command, "reset-quota") == 0)
		return reset_quota(config, rest, args);
	if (strcmp(command, "import-cloudplow") == 0)
		return import_file(config, rest, args);
	fprintf(stderr, "cplow: unknown command %s (see cplow --help)\n", command);
	return SUPERVISOR_EXIT_CONFIG;
}
