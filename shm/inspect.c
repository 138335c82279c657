/*
 * cplow-inspect: shows the live ledger. It maps the shared object read-only and never takes the
 * lock, so it can neither corrupt nor block the writers, and it works while cplow is dead (the
 * object outlives its processes until reboot). Output: see inspect_view.h.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "inspect_view.h"
#include "ledger.h"
#include "version.h"

static int usage(FILE *out)
{
	fprintf(out, "usage: cplow-inspect [--config PATH | --shm NAME] [--json] [--watch SECONDS]\n"
		"       cplow-inspect --help | --version\n");
	return out == stdout ? 0 : 2;
}

int main(int argc, char **argv)
{
	const char *config = getenv("CPLOW_CONFIG"), *shm = NULL;
	if (!config || !*config)
		config = getenv("CLOUDPLOW_CONFIG"); /* as cplow: cloudplow's images set it */
	int json = 0;
	double watch = 0;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
			return usage(stdout);
		else if (strcmp(argv[i], "--version") == 0) {
			version_print(stdout, "cplow-inspect");
			return 0;
		} else if (strcmp(argv[i], "--json") == 0)
			json = 1;
		else if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
			config = argv[++i];
		else if (strcmp(argv[i], "--shm") == 0 && i + 1 < argc)
			shm = argv[++i];
		else if (strcmp(argv[i], "--watch") == 0 && i + 1 < argc)
			watch = atof(argv[++i]);
		else
			return usage(stderr);
	}
	char name[128];
	if (shm) {
		snprintf(name, sizeof(name), "%s", shm);
	} else if (config) {
		if (ledger_name_for(config, name, sizeof(name)) != LEDGER_OK) {
			fprintf(stderr, "cplow-inspect: cannot derive a ledger name from %s\n", config);
			return 2;
		}
	} else {
		return usage(stderr);
	}
	return inspect_run("cplow-inspect", name, json, watch);
}
