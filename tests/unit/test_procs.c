#include <criterion/criterion.h>

#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "procs.h"

/* The flusher's (and the other roles') restart delay: 1 s, doubling to a 60 s cap while the
 * role keeps dying young. */
Test(procs, backoff_doubles_from_one_second_to_a_sixty_second_cap)
{
	struct procs_backoff b = { 0 };
	int64_t now = 1000000;
	const int64_t want[] = { 1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000, 60000 };
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		procs_backoff_started(&b, now);
		cr_assert_eq(b.restart_at_ms, 0, "a started role has no restart pending");
		now += 500; /* dies half a second after starting */
		procs_backoff_died(&b, now);
		cr_assert_eq(b.restart_at_ms - now, want[i], "death %zu: restart after %lld ms, want %lld",
			     i + 1, (long long)(b.restart_at_ms - now), (long long)want[i]);
		now = b.restart_at_ms;
	}
}

Test(procs, backoff_resets_to_one_second_after_a_healthy_minute)
{
	struct procs_backoff b = { 0 };
	int64_t now = 5000;
	for (int i = 0; i < 5; i++) { /* up to a 16 s delay */
		procs_backoff_started(&b, now);
		procs_backoff_died(&b, now + 10);
		now = b.restart_at_ms;
	}
	cr_assert_eq(b.delay_ms, 32000);
	/* 59.999 s is not yet healthy: the delay keeps growing. */
	procs_backoff_started(&b, now);
	procs_backoff_died(&b, now + 59999);
	cr_assert_eq(b.restart_at_ms - (now + 59999), 32000);
	now = b.restart_at_ms;
	/* A full minute is: back to 1 s, then doubling again. */
	procs_backoff_started(&b, now);
	procs_backoff_died(&b, now + 60000);
	cr_assert_eq(b.restart_at_ms - (now + 60000), 1000);
	now = b.restart_at_ms;
	procs_backoff_started(&b, now);
	procs_backoff_died(&b, now + 1);
	cr_assert_eq(b.restart_at_ms - (now + 1), 2000);
}

/* Not PID 1 (Criterion's test process never is): cplow asks to be the child subreaper, so the
 * orphaned grandchildren of its roles (an rclone whose worker died) come to it. */
Test(procs, not_pid_1_it_becomes_the_child_subreaper, .timeout = 10)
{
	cr_assert_neq(getpid(), 1);
	int on = -1;
	cr_assert_eq(prctl(PR_GET_CHILD_SUBREAPER, &on), 0);
	cr_assert_eq(on, 0, "the test process is a subreaper already: the test proves nothing");
	procs_become_reaper();
	cr_assert_eq(prctl(PR_GET_CHILD_SUBREAPER, &on), 0);
	cr_assert_eq(on, 1);

	/* And the kernel acts on it: a grandchild whose parent exits is reparented to us. */
	int ready[2];
	cr_assert_eq(pipe(ready), 0);
	pid_t child = fork();
	cr_assert_neq(child, -1);
	if (child == 0) {
		pid_t grandchild = fork();
		if (grandchild == 0) {
			close(ready[0]);
			pid_t first = getppid();
			/* Wait (with a deadline) for the parent to exit, then report the new parent. */
			for (int i = 0; i < 5000 && getppid() == first; i++)
				usleep(1000);
			pid_t report[2] = { getppid(), getpid() };
			ssize_t w = write(ready[1], report, sizeof(report));
			_exit(w == sizeof(report) ? 0 : 1);
		}
		_exit(grandchild > 0 ? 0 : 1);
	}
	close(ready[1]);
	int st;
	cr_assert_eq(waitpid(child, &st, 0), child);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	pid_t report[2] = { 0, 0 };
	cr_assert_eq(read(ready[0], report, sizeof(report)), (ssize_t)sizeof(report));
	close(ready[0]);
	cr_assert_eq(report[0], getpid(), "the orphan went to %d, not to the subreaper %d",
		     (int)report[0], (int)getpid());
	/* And procs_reap collects it when it exits: no zombie left behind. */
	pid_t reaped = 0;
	int status;
	for (int i = 0; i < 5000 && !procs_reap(&reaped, &status); i++)
		usleep(1000);
	cr_assert_eq(reaped, report[1], "reaped %d, the orphan was %d", (int)reaped, (int)report[1]);
}
