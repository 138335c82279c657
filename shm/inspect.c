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

static int usage(void)
{
	fprintf(stderr, "usage: cplow-inspect [--config PATH | --shm NAME] [--json] [--watch SECONDS]\n");
	return 2;
}

int main(int argc, char **argv)
{
	const char *config = getenv("CPLOW_CONFIG"), *shm = NULL;
	if (!config || !*config)
		config = getenv("CLOUDPLOW_CONFIG"); /* as cplow: cloudplow's images set it */
	int json = 0;
	double watch = 0;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0)
			json = 1;
		else if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
			config = argv[++i];
		else if (strcmp(argv[i], "--shm") == 0 && i + 1 < argc)
			shm = argv[++i];
		else if (strcmp(argv[i], "--watch") == 0 && i + 1 < argc)
			watch = atof(argv[++i]);
		else
			return usage();
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
		return usage();
	}
	return inspect_run("cplow-inspect", name, json, watch);
}
