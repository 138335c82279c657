/*
 * cplow with the ledger's fault hook armed from the environment: for scripts/crash-matrix's
 * "worker in-write" trials, a worker SIGKILLed inside the ledger write that counts a file. It
 * is supervisor/main.c and the same libraries as cplow, plus this file, linked with
 * --wrap=ledger_add_for_stage_file so that the hook knows when a file is being counted. The
 * production binaries contain none of this: in them ledger_fault_hook stays NULL.
 *
 *   CPLOW_FAULT_POINT=N   the enum ledger_fault_point (0..7) at which the worker dies
 *   CPLOW_FAULT_AFTER=K   inside its K-th file count (1: its first)
 *   CPLOW_FAULT_ONCE=PATH made (O_EXCL) by the worker that dies; once it exists, no other
 *                         worker dies: one fault per run
 * Unset (or malformed), nothing is armed and this is cplow. The supervisor's own writes never
 * fault (it is the process that started), nor do roles other than workers (they count nothing).
 */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ledger.h"

int __real_ledger_add_for_stage_file(struct ledger *l, int32_t slot, const char *path,
				     int64_t bytes, int64_t now_ms);
int __wrap_ledger_add_for_stage_file(struct ledger *l, int32_t slot, const char *path,
				     int64_t bytes, int64_t now_ms);

static pid_t supervisor_pid;
static int fault_point = -1;
static long fault_after;
static const char *fault_once;
static long counts;          /* file counts this process has started */
static int armed;            /* inside the count that is to fault */

static void die_here(enum ledger_fault_point point)
{
	if (!armed || (int)point != fault_point)
		return;
	armed = 0;
	int fd = open(fault_once, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return; /* another worker has died already */
	char line[160];
	int n = snprintf(line, sizeof(line), "cplow_faults: worker %d killed at fault point %d "
			 "inside its file count %ld\n", (int)getpid(), fault_point, fault_after);
	if (n > 0 && write(fd, line, (size_t)n) != n)
		n = 0;
	close(fd);
	if (n > 0 && write(STDERR_FILENO, line, (size_t)n) != n)
		n = 0;
	raise(SIGKILL);
}

int __wrap_ledger_add_for_stage_file(struct ledger *l, int32_t slot, const char *path,
				     int64_t bytes, int64_t now_ms)
{
	armed = fault_point >= 0 && getpid() != supervisor_pid && ++counts == fault_after;
	int rc = __real_ledger_add_for_stage_file(l, slot, path, bytes, now_ms);
	armed = 0;
	return rc;
}

__attribute__((constructor)) static void arm(void)
{
	const char *point = getenv("CPLOW_FAULT_POINT"), *after = getenv("CPLOW_FAULT_AFTER");
	fault_once = getenv("CPLOW_FAULT_ONCE");
	if (!point || !after || !fault_once || !*fault_once)
		return;
	char *end;
	long p = strtol(point, &end, 10);
	if (*end || p < 0 || p >= LEDGER_FAULT_POINTS)
		return;
	fault_after = strtol(after, &end, 10);
	if (*end || fault_after < 1)
		return;
	fault_point = (int)p;
	supervisor_pid = getpid();
	ledger_fault_hook = die_here;
}
