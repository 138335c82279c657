/*
 * ledger_ctl: asks things of a running stage through the shared ledger, as the supervisor will.
 * usage: ledger_ctl --shm NAME bwlimit SLOT RATE
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ledger.h"

int main(int argc, char **argv)
{
	if (argc != 6 || strcmp(argv[1], "--shm") != 0 || strcmp(argv[3], "bwlimit") != 0) {
		fprintf(stderr, "usage: ledger_ctl --shm NAME bwlimit SLOT RATE\n");
		return 2;
	}
	struct ledger l;
	int rc = ledger_attach(argv[2], 1, &l);
	if (rc == LEDGER_OK)
		rc = ledger_stage_request_bwlimit(&l, atoi(argv[4]), argv[5]);
	if (rc != LEDGER_OK) {
		fprintf(stderr, "ledger_ctl: %s\n", ledger_strerror(rc));
		return 1;
	}
	ledger_detach(&l);
	return 0;
}
