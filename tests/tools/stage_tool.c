/*
 * stage_tool: runs one worker stage from the command line, as the supervisor's fork would, so
 * the integration tests can drive the real worker against the real rclone and the fake remote.
 * Prints the outcome as one JSON object on stdout; exits with the stage result.
 *
 * usage: stage_tool --ledger NAME [--create] [--daily-bytes N] --uploader U --account A
 *          --source DIR --dest REMOTE:PATH [--command move|copy] [--max-transfer N]
 *          [--max-size N] [--transfers N] [--trigger PATTERN|COUNT|SLEEP_H|TIMEOUT_S]...
 *          [--env NAME=VALUE]... [--exclude PATTERN]... [--extra FLAG[=VALUE]]...
 *          [--work-dir DIR] [--rc-poll-ms N] [--sandbox] [--rclone PATH]
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/resource.h>

#include "ledger.h"
#include "log.h"
#include "worker.h"

#define MAX_LIST 32

static int usage(void)
{
	fprintf(stderr, "stage_tool: bad arguments (see the comment at the top of stage_tool.c)\n");
	return 2;
}

static int parse_trigger(char *arg, struct stage_trigger *t)
{
	char *count = strchr(arg, '|');
	char *sleep_h = count ? strchr(count + 1, '|') : NULL;
	char *timeout = sleep_h ? strchr(sleep_h + 1, '|') : NULL;
	if (!timeout)
		return -1;
	*count++ = '\0';
	*sleep_h++ = '\0';
	*timeout++ = '\0';
	t->pattern = arg;
	t->count = atoi(count);
	t->sleep_hours = atof(sleep_h);
	t->timeout_s = atoi(timeout);
	return 0;
}

int main(int argc, char **argv)
{
	struct stage_spec spec = { .command = "move", .work_dir = "/tmp", .stage_number = 1,
				   .strategy = "test" };
	const char *env[MAX_LIST], *excludes[MAX_LIST];
	struct stage_trigger triggers[MAX_LIST];
	struct stage_flag extras[MAX_LIST];
	size_t n_env = 0, n_excl = 0, n_trig = 0, n_extra = 0;
	int create = 0;
	int64_t daily = 0;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "--create")) {
			create = 1;
			continue;
		}
		if (!strcmp(a, "--sandbox")) {
			spec.sandbox = 1;
			continue;
		}
		if (i + 1 >= argc)
			return usage();
		char *v = argv[++i];
		if (!strcmp(a, "--ledger"))
			spec.ledger_name = v;
		else if (!strcmp(a, "--daily-bytes"))
			daily = atoll(v);
		else if (!strcmp(a, "--uploader"))
			spec.uploader = v;
		else if (!strcmp(a, "--account"))
			spec.account = v;
		else if (!strcmp(a, "--source"))
			spec.source = v;
		else if (!strcmp(a, "--dest"))
			spec.destination = v;
		else if (!strcmp(a, "--command"))
			spec.command = v;
		else if (!strcmp(a, "--max-transfer"))
			spec.max_transfer_bytes = atoll(v);
		else if (!strcmp(a, "--max-size"))
			spec.max_size_bytes = atoll(v);
		else if (!strcmp(a, "--transfers"))
			spec.transfers = atoi(v);
		else if (!strcmp(a, "--work-dir"))
			spec.work_dir = v;
		else if (!strcmp(a, "--rc-poll-ms"))
			spec.rc_poll_ms = atoi(v);
		else if (!strcmp(a, "--rclone"))
			spec.rclone_binary = v;
		else if (!strcmp(a, "--env") && n_env < MAX_LIST)
			env[n_env++] = v;
		else if (!strcmp(a, "--exclude") && n_excl < MAX_LIST)
			excludes[n_excl++] = v;
		else if (!strcmp(a, "--extra") && n_extra < MAX_LIST) {
			char *eq = strchr(v, '=');
			if (eq)
				*eq++ = '\0';
			extras[n_extra].name = v;
			extras[n_extra++].value = eq;
		} else if (!strcmp(a, "--trigger") && n_trig < MAX_LIST) {
			if (parse_trigger(v, &triggers[n_trig++]) < 0)
				return usage();
		} else
			return usage();
	}
	if (!spec.ledger_name || !spec.uploader || !spec.account || !spec.source ||
	    !spec.destination)
		return usage();
	spec.env = env;
	spec.env_count = n_env;
	spec.excludes = excludes;
	spec.exclude_count = n_excl;
	spec.triggers = triggers;
	spec.trigger_count = n_trig;
	spec.extras = extras;
	spec.extra_count = n_extra;

	if (create) {
		struct ledger l;
		struct ledger_options o = { .daily_bytes = daily };
		int rc = ledger_create(spec.ledger_name, &o, &l);
		if (rc == LEDGER_OK)
			ledger_detach(&l);
		else if (rc != LEDGER_ERR_EXISTS) {
			fprintf(stderr, "stage_tool: %s\n", ledger_strerror(rc));
			return 2;
		}
	}
	log_set_tag("worker[stage_tool]");
	struct stage_outcome out;
	enum stage_result r = worker_run(&spec, &out);
	cJSON *o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "result", stage_result_name(r));
	cJSON_AddNumberToObject(o, "rclone_exit", out.rclone_exit);
	cJSON_AddNumberToObject(o, "files", (double)out.files);
	cJSON_AddNumberToObject(o, "bytes", (double)out.bytes);
	cJSON_AddNumberToObject(o, "reconciled_files", (double)out.reconciled_files);
	cJSON_AddNumberToObject(o, "reconciled_bytes", (double)out.reconciled_bytes);
	cJSON_AddNumberToObject(o, "failed_lines", (double)out.failed_lines);
	cJSON_AddNumberToObject(o, "malformed_lines", (double)out.malformed_lines);
	cJSON_AddNumberToObject(o, "unknown_files", (double)out.unknown_files);
	cJSON_AddStringToObject(o, "trigger", out.trigger);
	/* The worker's own CPU (rclone is a child: not in RUSAGE_SELF), for the benchmark. */
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	cJSON_AddNumberToObject(o, "cpu_self_us",
				(double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e6 +
					(double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec));
	cJSON_AddNumberToObject(o, "cpu_user_us",
				(double)ru.ru_utime.tv_sec * 1e6 + (double)ru.ru_utime.tv_usec);
	cJSON_AddNumberToObject(o, "wakeups", (double)ru.ru_nvcsw);
	char *text = cJSON_PrintUnformatted(o);
	printf("%s\n", text);
	free(text);
	cJSON_Delete(o);
	/* _exit: a sandboxed worker may not run LeakSanitizer's exit-time scan (it needs
	 * ptrace), exactly as the supervisor's workers end. */
	fflush(stdout);
	_exit((int)r);
}
