/*
 * cplow: the CLI. The supervisor's upload, run and check-config commands come with the
 * supervisor itself; this file already owns argument parsing and the exit codes.
 */
#include <stdio.h>
#include <string.h>

#define CPLOW_EXIT_OK 0
#define CPLOW_EXIT_USAGE 2

static int usage(FILE *out)
{
	fprintf(out, "usage: cplow [--config PATH] COMMAND\n"
		     "  status     show the live quota ledger (as cplow-inspect)\n"
		     "  --version  print the version\n");
	return out == stderr ? CPLOW_EXIT_USAGE : CPLOW_EXIT_OK;
}

int main(int argc, char **argv)
{
	if (argc == 2 && strcmp(argv[1], "--version") == 0) {
		printf("cplow %s\n", CPLOW_VERSION);
		return CPLOW_EXIT_OK;
	}
	if (argc == 2 && strcmp(argv[1], "--help") == 0)
		return usage(stdout);
	return usage(stderr);
}
