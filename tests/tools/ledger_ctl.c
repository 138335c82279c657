/*
 * ledger_ctl: asks things of a running stage through the shared ledger, as the supervisor will.
 * usage: ledger_ctl --shm NAME bwlimit SLOT RATE
 *        ledger_ctl --shm NAME hold-lock
 * hold-lock takes the ledger's write lock, prints "held", and keeps it until a line or the end
 * of its input: every writer blocks meanwhile (scripts/crash-matrix holds it so that a worker
 * stops reading rclone's log while rclone goes on writing). A lock whose holder died (a write to
 * redo) is left for the next writer to recover: exit 1, nothing held.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ledger.h"

static int hold_lock(struct ledger *l)
{
	int rc = pthread_mutex_lock(&l->hdr->lock);
	if (rc != 0) {
		fprintf(stderr, "ledger_ctl: cannot take the lock: %s\n",
			rc == EOWNERDEAD ? "its holder died (left for a writer to recover)"
					 : strerror(rc));
		return 1; /* EOWNERDEAD: exiting holds nothing, and the next locker sees it too */
	}
	printf("held\n");
	fflush(stdout);
	char line[16];
	if (!fgets(line, sizeof(line), stdin) && ferror(stdin))
		perror("ledger_ctl: stdin");
	pthread_mutex_unlock(&l->hdr->lock);
	return 0;
}

int main(int argc, char **argv)
{
	int hold = argc == 4 && strcmp(argv[1], "--shm") == 0 && strcmp(argv[3], "hold-lock") == 0;
	if (!hold && (argc != 6 || strcmp(argv[1], "--shm") != 0 || strcmp(argv[3], "bwlimit") != 0)) {
		fprintf(stderr, "usage: ledger_ctl --shm NAME bwlimit SLOT RATE\n"
				"       ledger_ctl --shm NAME hold-lock\n");
		return 2;
	}
	struct ledger l;
	int rc = ledger_attach(argv[2], 1, &l);
	if (rc == LEDGER_OK && hold) {
		int code = hold_lock(&l);
		ledger_detach(&l);
		return code;
	}
	if (rc == LEDGER_OK)
		rc = ledger_stage_request_bwlimit(&l, atoi(argv[4]), argv[5]);
	if (rc != LEDGER_OK) {
		fprintf(stderr, "ledger_ctl: %s\n", ledger_strerror(rc));
		return 1;
	}
	ledger_detach(&l);
	return 0;
}
