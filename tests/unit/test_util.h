/* Shared by the unit tests: children that cannot outlive a failed test. */
#ifndef CPLOW_TEST_UTIL_H
#define CPLOW_TEST_UTIL_H

#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

/*
 * fork() whose child is SIGKILLed when the test process dies: a failed assertion ends the test
 * at once, and a writer or flusher left running would hold ctest's output pipe open until the
 * suite's timeout.
 */
static inline pid_t test_fork(void)
{
	pid_t parent = getpid();
	pid_t pid = fork();
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(99); /* the parent died before prctl took effect */
	}
	return pid;
}

#endif
