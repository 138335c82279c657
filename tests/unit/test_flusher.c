#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <stdbool.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "flusher.h"
#include "ledger.h"
#include "proc.h"
#include "test_util.h"
#include "ledger_file.h"

static char dir[256], path[PATH_MAX], shm_name[64];
static struct ledger L;

static void setup(void)
{
	snprintf(dir, sizeof(dir), "/tmp/cplow-flusher-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/sa_quota_cache.json", dir);
	snprintf(shm_name, sizeof(shm_name), "/cplow-test-flusher-%d", getpid());
	ledger_unlink(shm_name);
	struct ledger_options o = { .row_capacity = 1024 };
	cr_assert_eq(ledger_create(shm_name, &o, &L), LEDGER_OK);
}

static void teardown(void)
{
	ledger_detach(&L);
	ledger_unlink(shm_name);
	char cmd[PATH_MAX + 16];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	cr_assert_eq(system(cmd), 0);
}

static pid_t start_flusher(int interval_ms)
{
	pid_t pid = test_fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		struct flusher_options o = { shm_name, path, interval_ms, 0 };
		_exit(flusher_run(&o));
	}
	return pid;
}

static int64_t file_bytes(const char *uploader, const char *account, int *ok)
{
	struct ledger_file f;
	char err[LEDGER_FILE_ERR_MAX];
	*ok = 0;
	if (ledger_file_load(path, &f, err, sizeof(err)) != 0)
		return -1;
	int64_t bytes = -1;
	for (size_t i = 0; i < f.count; i++)
		if (!strcmp(f.rows[i].uploader, uploader) && !strcmp(f.rows[i].account, account))
			bytes = f.rows[i].usage.used_bytes;
	ledger_file_free(&f);
	*ok = 1;
	return bytes;
}

/* Polls until the file shows `want` bytes for the row, or the deadline passes. */
static int wait_file_bytes(const char *uploader, const char *account, int64_t want,
			   int deadline_ms)
{
	int64_t end = ledger_now_ms() + deadline_ms;
	while (ledger_now_ms() < end) {
		int ok;
		if (file_bytes(uploader, account, &ok) == want)
			return 1;
		struct timespec ts = { 0, 2000000 };
		nanosleep(&ts, NULL);
	}
	return 0;
}

static int stop(pid_t pid, int sig)
{
	int st;
	cr_assert_eq(kill(pid, sig), 0);
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	return st;
}

/* Waits until the flusher sleeps in its idle wait again: a writer's wake clears
 * flusher_waiting, and the flusher sets it only once it has nothing left to write. */
static int wait_flusher_idle(int deadline_ms)
{
	int64_t end = ledger_now_ms() + deadline_ms;
	while (ledger_now_ms() < end) {
		if (atomic_load(&L.hdr->flusher_waiting))
			return 1;
		struct timespec ts = { 0, 1000000 };
		nanosleep(&ts, NULL);
	}
	return 0;
}

/* A change must wake the flusher (futex), not wait for its idle bound (FLUSHER_IDLE_WAIT_MS,
 * 1 s): each change below lands right after the flusher went idle, so the timer alone would
 * take about a second, and the bound is well under that. */
#define FLUSH_WAKE_BOUND_MS 300

Test(flusher, writes_the_file_soon_after_a_change, .init = setup, .fini = teardown,
     .timeout = 60)
{
	int32_t row;
	cr_assert_eq(ledger_row_get(&L, "media", "sa1", &row), LEDGER_OK);
	pid_t pid = start_flusher(20);
	int64_t want = 0, worst = 0;
	for (int change = 0; change < 8; change++) {
		cr_assert(wait_flusher_idle(5000), "change %d: the flusher never went idle", change);
		int64_t t = ledger_now_ms();
		want += 1000 + change;
		cr_assert_eq(ledger_add(&L, row, 1000 + change, t), LEDGER_OK);
		cr_assert(wait_file_bytes("media", "sa1", want, 5000),
			  "change %d never reached the file", change);
		int64_t took = ledger_now_ms() - t;
		cr_assert_lt(took, FLUSH_WAKE_BOUND_MS,
			     "change %d reached the file after %lld ms: woken by the timer, not the "
			     "change", change, (long long)took);
		if (took > worst)
			worst = took;
	}
	cr_log_info("worst change-to-file time: %lld ms", (long long)worst);
	/* It did all that from inside its seccomp filter (mode 2 = filter). */
	char status_path[64], line[256];
	snprintf(status_path, sizeof(status_path), "/proc/%d/status", (int)pid);
	FILE *f = fopen(status_path, "r");
	cr_assert_not_null(f);
	int seccomp = -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "Seccomp: %d", &seccomp) == 1)
			break;
	fclose(f);
	cr_assert_eq(seccomp, 2, "the flusher is not sandboxed (Seccomp: %d)", seccomp);
	int st = stop(pid, SIGTERM);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status %d", st);
	cr_assert_geq(atomic_load(&L.hdr->flushed_generation), atomic_load(&L.hdr->generation));
}

Test(flusher, sigterm_flushes_the_last_change_and_exits_0, .init = setup, .fini = teardown,
     .timeout = 30)
{
	int32_t row;
	cr_assert_eq(ledger_row_get(&L, "media", "sa1", &row), LEDGER_OK);
	/* A long interval: only the final flush can have written the second add in time. */
	/* Added before the start, so its start-up write holds it: added after, it raced that
	 * write, and one that came first left the add to the 60 s interval. */
	cr_assert_eq(ledger_add(&L, row, 10, ledger_now_ms()), LEDGER_OK);
	pid_t pid = start_flusher(60000);
	cr_assert(wait_file_bytes("media", "sa1", 10, 5000));
	cr_assert_eq(ledger_add(&L, row, 5, ledger_now_ms()), LEDGER_OK);
	int st = stop(pid, SIGTERM);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status %d", st);
	int ok;
	cr_assert_eq(file_bytes("media", "sa1", &ok), 15);
}

Test(flusher, sigusr1_flushes_at_once, .init = setup, .fini = teardown, .timeout = 30)
{
	int32_t row;
	cr_assert_eq(ledger_row_get(&L, "media", "sa1", &row), LEDGER_OK);
	/* Added before the start, so its start-up write holds it: added after, it raced that
	 * write, and one that came first left the add to the 60 s interval. */
	cr_assert_eq(ledger_add(&L, row, 10, ledger_now_ms()), LEDGER_OK);
	pid_t pid = start_flusher(60000);
	cr_assert(wait_file_bytes("media", "sa1", 10, 5000));
	cr_assert_eq(ledger_add(&L, row, 5, ledger_now_ms()), LEDGER_OK);
	cr_assert_eq(kill(pid, SIGUSR1), 0);
	cr_assert(wait_file_bytes("media", "sa1", 15, 5000), "SIGUSR1 did not flush");
	stop(pid, SIGTERM);
}

Test(flusher, writes_at_most_once_per_interval, .init = setup, .fini = teardown, .timeout = 60)
{
	int32_t row;
	cr_assert_eq(ledger_row_get(&L, "media", "sa1", &row), LEDGER_OK);
	pid_t pid = start_flusher(100);
	uint64_t before = atomic_load(&L.hdr->flush_count);
	int64_t start = ledger_now_ms();
	int64_t adds = 0;
	while (ledger_now_ms() - start < 1000) {
		cr_assert_eq(ledger_add(&L, row, 1, ledger_now_ms()), LEDGER_OK);
		adds++;
	}
	int64_t elapsed = ledger_now_ms() - start;
	uint64_t flushes = atomic_load(&L.hdr->flush_count) - before;
	stop(pid, SIGTERM);
	cr_assert_gt(adds, 1000);
	/* One write per 100 ms, plus the one the first change triggers at once. */
	cr_assert_leq(flushes, (uint64_t)(elapsed / 100 + 2), "%llu flushes in %lld ms",
		      (unsigned long long)flushes, (long long)elapsed);
	cr_assert_geq(flushes, 5, "only %llu flushes in %lld ms", (unsigned long long)flushes,
		      (long long)elapsed);
}

Test(flusher, sigkilled_while_writing_never_leaves_a_bad_or_older_file, .init = setup,
     .fini = teardown, .timeout = 240)
{
	/* Many rows make each write long enough for kills to land inside it. */
	char acct[64];
	int32_t rows[512];
	for (int i = 0; i < 512; i++) {
		snprintf(acct, sizeof(acct), "/config/service_accounts/sa%03d.json", i);
		cr_assert_eq(ledger_row_get(&L, "media", acct, &rows[i]), LEDGER_OK);
	}
	_Atomic int *stop_writer = mmap(NULL, sizeof(int), PROT_READ | PROT_WRITE,
					MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	cr_assert_neq(stop_writer, MAP_FAILED);
	*stop_writer = 0;
	pid_t writer = test_fork();
	cr_assert_geq(writer, 0);
	if (writer == 0) {
		for (int i = 0; !atomic_load(stop_writer); i++)
			if (ledger_add(&L, rows[i % 512], 1000, ledger_now_ms()) != LEDGER_OK)
				_exit(4);
		_exit(0);
	}
	srand((unsigned)getpid());
	unsigned long long last_gen = 0;
	int writes_seen = 0;
	for (int trial = 0; trial < 200; trial++) {
		uint64_t count = atomic_load(&L.hdr->flush_count);
		pid_t pid = start_flusher(1);
		/* Wait for this flusher to finish at least one write, then kill it at a random
		 * moment of the writes that follow. */
		int64_t deadline = ledger_now_ms() + 10000;
		while (atomic_load(&L.hdr->flush_count) == count && ledger_now_ms() < deadline)
			sched_yield();
		cr_assert_neq(atomic_load(&L.hdr->flush_count), count, "trial %d: no write", trial);
		struct timespec ts = { 0, (long)(rand() % 3000) * 1000L };
		nanosleep(&ts, NULL);
		int st = stop(pid, SIGKILL);
		cr_assert(WIFSIGNALED(st), "trial %d: flusher exited on its own", trial);

		struct ledger_file f;
		char err[LEDGER_FILE_ERR_MAX];
		cr_assert_eq(ledger_file_load(path, &f, err, sizeof(err)), 0, "trial %d: %s",
			     trial, err);
		cr_assert_geq(f.generation, last_gen, "trial %d: file went back from %llu to %llu",
			      trial, last_gen, f.generation);
		cr_assert_eq(f.count, 512, "trial %d: %zu rows", trial, f.count);
		if (f.generation > last_gen)
			writes_seen++;
		last_gen = f.generation;
		ledger_file_free(&f);
	}
	atomic_store(stop_writer, 1);
	int st;
	cr_assert_eq(waitpid(writer, &st, 0), writer);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	cr_assert_gt(writes_seen, 100, "the file moved in only %d of 200 trials", writes_seen);
}

/* The file's identity: every write renames a new file into place. */
static struct stat file_identity(void)
{
	struct stat st;
	cr_assert_eq(stat(path, &st), 0, "%s: %s", path, strerror(errno));
	return st;
}

/* Inode numbers are reused, so identity is the inode and the modification time together. */
static bool same_file(const struct stat *a, const struct stat *b)
{
	return a->st_ino == b->st_ino && a->st_mtim.tv_sec == b->st_mtim.tv_sec &&
	       a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

/* A worker updates its stage slot every second and records open files every 20 ms: none of
 * that is in the file, so none of it rewrites the file; a quota change still does, within the
 * wake bound (the stage writes must not leave the flusher deaf to rows). */
Test(flusher, stage_only_changes_do_not_rewrite_the_file, .init = setup, .fini = teardown,
     .timeout = 60)
{
	int32_t row, slot;
	cr_assert_eq(ledger_row_get(&L, "media", "sa1", &row), LEDGER_OK);
	pid_t pid = start_flusher(20);
	cr_assert_eq(ledger_add(&L, row, 10, ledger_now_ms()), LEDGER_OK);
	cr_assert(wait_file_bytes("media", "sa1", 10, 5000));
	/* The count follows the file's rename: wait until the flusher noted that write. */
	uint64_t added = atomic_load(&L.hdr->generation);
	int64_t noted = ledger_now_ms() + 5000;
	while (atomic_load(&L.hdr->flushed_generation) != added && ledger_now_ms() < noted) {
		struct timespec ts = { 0, 2 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
	uint64_t writes = atomic_load(&L.hdr->flush_count);
	struct stat before = file_identity();
	struct ledger_stage st = { .pid = getpid(), .row = row, .stage_number = 1 };
	cr_assert_eq(ledger_stage_claim(&L, &st, &slot), LEDGER_OK);
	uint64_t gen0 = atomic_load(&L.hdr->generation);
	for (int i = 0; i < 60; i++) { /* 300 ms or more: 15 flush intervals at least */
		st.bytes_done += 1000;
		cr_assert_eq(ledger_stage_update(&L, slot, &st), LEDGER_OK);
		struct timespec ts = { 0, 5 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
	cr_assert_geq(atomic_load(&L.hdr->generation), gen0 + 60, "the stage writes changed nothing");
	/* The flusher has seen the last of them: its flushed generation caught up. */
	uint64_t gen1 = atomic_load(&L.hdr->generation);
	int64_t deadline = ledger_now_ms() + 5000;
	while (atomic_load(&L.hdr->flushed_generation) != gen1 && ledger_now_ms() < deadline) {
		struct timespec ts = { 0, 5 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
	cr_assert_eq(atomic_load(&L.hdr->flushed_generation), gen1);
	cr_assert_eq(atomic_load(&L.hdr->flush_count), writes, "%llu writes for stage changes",
		     (unsigned long long)(atomic_load(&L.hdr->flush_count) - writes));
	struct stat after = file_identity();
	cr_assert(same_file(&after, &before), "the file was replaced while only stage slots changed");
	/* Then a row change, straight after a stage write: on the file within the bound. */
	for (int change = 1; change <= 3; change++) {
		st.bytes_done += 1000;
		cr_assert_eq(ledger_stage_update(&L, slot, &st), LEDGER_OK);
		int64_t t = ledger_now_ms();
		cr_assert_eq(ledger_add(&L, row, 5, t), LEDGER_OK);
		cr_assert(wait_file_bytes("media", "sa1", 10 + 5 * change, 5000),
			  "quota change %d was not written", change);
		int64_t took = ledger_now_ms() - t;
		cr_assert_lt(took, FLUSH_WAKE_BOUND_MS, "quota change %d took %lld ms to reach the "
			     "file", change, (long long)took);
		struct stat now = file_identity();
		cr_assert(!same_file(&now, &before), "the quota change did not replace the file");
		/* Stage-only writes again between the row changes, with the flusher idle. */
		cr_assert(wait_flusher_idle(5000));
		for (int i = 0; i < 5; i++) {
			st.bytes_done += 1000;
			cr_assert_eq(ledger_stage_update(&L, slot, &st), LEDGER_OK);
		}
	}
	stop(pid, SIGTERM); /* the count follows the rename: read it once the flusher is done */
	cr_assert_gt(atomic_load(&L.hdr->flush_count), writes);
}

/* With nothing to write, the flusher still says the file is current, at least once a second
 * (its idle bound), without writing it: cplow_ledger_last_flush_age_seconds stays small for a
 * live flusher whether or not uploads run, and grows only for a stuck or dead one. */
Test(flusher, an_idle_flusher_keeps_the_last_flush_time_fresh_without_writing, .init = setup,
     .fini = teardown, .timeout = 30)
{
	int32_t row;
	cr_assert_eq(ledger_row_get(&L, "media", "sa1", &row), LEDGER_OK);
	pid_t pid = start_flusher(20);
	cr_assert_eq(ledger_add(&L, row, 10, ledger_now_ms()), LEDGER_OK);
	cr_assert(wait_file_bytes("media", "sa1", 10, 5000));
	cr_assert(wait_flusher_idle(5000));
	uint64_t writes = atomic_load(&L.hdr->flush_count);
	int64_t first = atomic_load(&L.hdr->flushed_at_ms);
	/* Three idle bounds: the time must move on each (1 s apart, 500 ms of slack). */
	int64_t last = first;
	for (int i = 0; i < 3; i++) {
		int64_t deadline = ledger_now_ms() + 1500;
		while (atomic_load(&L.hdr->flushed_at_ms) == last && ledger_now_ms() < deadline) {
			struct timespec ts = { 0, 10 * 1000 * 1000 };
			nanosleep(&ts, NULL);
		}
		int64_t now_at = atomic_load(&L.hdr->flushed_at_ms);
		cr_assert_gt(now_at, last, "idle bound %d: the last-flush time did not move", i);
		last = now_at;
	}
	cr_assert_eq(atomic_load(&L.hdr->flush_count), writes, "an idle flusher wrote the file");
	int st = stop(pid, SIGTERM);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status %d", st);
}

/* ---- a flusher whose supervisor is gone (issue 13, item 1) ---- */

/* A flusher forked by a stand-in supervisor that then dies without a word, as a SIGKILLed
 * cplow does. This process becomes the orphaned flusher's parent (a subreaper), to see how it
 * ends. Returns the flusher's pid. */
static pid_t start_orphaned_flusher(int interval_ms, int holder_fd)
{
	cr_assert_eq(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
	int pipefd[2];
	cr_assert_eq(pipe(pipefd), 0);
	pid_t sup = test_fork();
	cr_assert_geq(sup, 0);
	if (sup == 0) {
		if (holder_fd >= 0)
			close(holder_fd); /* the holder ends at EOF on it */
		pid_t me = getpid(), f = fork();
		if (f == 0) {
			struct flusher_options o = { shm_name, path, interval_ms, me };
			_exit(flusher_run(&o));
		}
		ssize_t w = write(pipefd[1], &f, sizeof(f));
		(void)w;
		/* Gone once the flusher runs, as cplow is after it forked one. */
		for (int i = 0; i < 5000 && !ledger_flusher_alive(&L); i++)
			usleep(1000);
		_exit(0);
	}
	pid_t flusher;
	cr_assert_eq(read(pipefd[0], &flusher, sizeof(flusher)), (ssize_t)sizeof(flusher));
	close(pipefd[0]);
	close(pipefd[1]);
	int st;
	cr_assert_eq(waitpid(sup, &st, 0), sup);
	return flusher;
}

/* A stage holder that adds `bytes` each time it reads a byte from its pipe and ends at EOF. */
static pid_t start_holder(int32_t row, int *go)
{
	int pipefd[2];
	cr_assert_eq(pipe(pipefd), 0);
	pid_t pid = test_fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		close(pipefd[1]);
		struct ledger_stage init = { .row = row, .pid = getpid() };
		int32_t slot;
		if (ledger_stage_claim(&L, &init, &slot) != LEDGER_OK)
			_exit(3);
		char c;
		while (read(pipefd[0], &c, 1) == 1)
			if (ledger_add_for_stage(&L, slot, 1000, ledger_now_ms()) != LEDGER_OK)
				_exit(4);
		/* It ends as a worker does: its slot stays (DONE) until a supervisor frees it. */
		_exit(0);
	}
	close(pipefd[0]);
	*go = pipefd[1];
	for (int i = 0; i < 5000; i++) {
		for (uint32_t s = 0; s < L.hdr->slot_capacity; s++)
			if (L.stages[s].state != LEDGER_STAGE_FREE && L.stages[s].pid == pid)
				return pid;
		usleep(1000);
	}
	cr_assert_fail("the holder never claimed a slot");
	return -1;
}

static bool gone_within(pid_t pid, int ms, int *status)
{
	for (int i = 0; i < ms; i++) {
		if (waitpid(pid, status, WNOHANG) == pid)
			return true;
		usleep(1000);
	}
	return false;
}

Test(flusher, orphaned_it_writes_until_the_last_slot_holder_ends_then_exits_by_itself,
     .init = setup, .fini = teardown, .timeout = 60)
{
	int32_t row;
	cr_assert_eq(ledger_row_get(&L, "media", "sa1", &row), LEDGER_OK);
	int go;
	pid_t holder = start_holder(row, &go);
	pid_t flusher = start_orphaned_flusher(20, go);
	/* The supervisor is gone; what its worker counts now must still reach the file. */
	cr_assert_eq(write(go, "x", 1), 1);
	cr_assert(wait_file_bytes("media", "sa1", 1000, 5000), "a count after cplow's death lost");
	int st;
	cr_assert_not(gone_within(flusher, 1500, &st), "the flusher left while a worker counts");
	cr_assert_eq(write(go, "xx", 2), 2);
	close(go);
	cr_assert_eq(waitpid(holder, &st, 0), holder);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "holder status %d", st);
	/* No signal: it ends because nobody who could count is left. */
	cr_assert(gone_within(flusher, 5000, &st), "the orphaned flusher never ended");
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "flusher status %d", st);
	int ok;
	cr_assert_eq(file_bytes("media", "sa1", &ok), 3000);
	cr_assert_not(ledger_flusher_alive(&L));
	cr_assert_eq(atomic_load(&L.hdr->flusher_pid), 0, "it did not clear its identity");
}

Test(flusher, orphaned_it_steps_aside_when_a_new_cplow_runs_on_the_ledger, .init = setup,
     .fini = teardown, .timeout = 60)
{
	int32_t row;
	cr_assert_eq(ledger_row_get(&L, "media", "sa1", &row), LEDGER_OK);
	int go;
	pid_t holder = start_holder(row, &go);
	pid_t flusher = start_orphaned_flusher(20, go);
	int st;
	cr_assert_not(gone_within(flusher, 1500, &st));
	/* A new supervisor (this process stands in): its own flusher takes over. */
	uint64_t start;
	cr_assert_eq(proc_start_time(getpid(), &start), 0);
	atomic_store(&L.hdr->supervisor_start, start);
	atomic_store(&L.hdr->supervisor_pid, (int32_t)getpid());
	cr_assert(gone_within(flusher, 5000, &st), "the old flusher stayed beside the new cplow");
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	close(go);
	waitpid(holder, &st, 0);
}

/* Two flushers on one file (an orphaned one and the next cplow's) take turns: every file either
 * sees is whole, and its generation never goes back. */
Test(flusher, two_flushers_on_one_file_never_leave_a_bad_or_older_one, .init = setup,
     .fini = teardown, .timeout = 60)
{
	int32_t row;
	cr_assert_eq(ledger_row_get(&L, "media", "sa1", &row), LEDGER_OK);
	pid_t a = start_flusher(1), b = start_flusher(1);
	unsigned long long last = 0;
	int64_t end = ledger_now_ms() + 3000;
	int64_t adds = 0;
	while (ledger_now_ms() < end) {
		cr_assert_eq(ledger_add(&L, row, 1, ledger_now_ms()), LEDGER_OK);
		adds++;
		struct ledger_file f;
		char err[LEDGER_FILE_ERR_MAX];
		int rc = ledger_file_load(path, &f, err, sizeof(err));
		if (rc == -2)
			continue; /* not written yet */
		cr_assert_eq(rc, 0, "a bad file: %s", err);
		cr_assert_geq(f.generation, last, "the file went back from %llu to %llu", last,
			      f.generation);
		last = f.generation;
		ledger_file_free(&f);
	}
	stop(a, SIGTERM);
	stop(b, SIGTERM);
	int ok;
	cr_assert_eq(file_bytes("media", "sa1", &ok), adds);
}

/* ---- a disk that fails (issue 13, item 7) ---- */

/*
 * ENOSPC on a tiny tmpfs of this test's own (a private mount namespace): the flusher backs off
 * instead of re-rendering every interval, says so once, and once more when it writes again.
 */
Test(flusher, a_full_disk_is_retried_with_backoff_and_logged_once_per_episode, .init = setup,
     .fini = teardown, .timeout = 90)
{
	if (geteuid() != 0)
		cr_skip_test("needs root for a private tmpfs");
	if (unshare(CLONE_NEWNS) < 0)
		cr_skip_test("no mount namespace: %s", strerror(errno));
	cr_assert_eq(mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL), 0, "%s", strerror(errno));
	cr_assert_eq(mount("tmpfs", dir, "tmpfs", 0, "size=16k,mode=0700"), 0, "%s",
		     strerror(errno));
	char filler[PATH_MAX], log_path[] = "/tmp/cplow-flusher-log-XXXXXX";
	snprintf(filler, sizeof(filler), "%s/filler", dir);
	int fd = open(filler, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	cr_assert_geq(fd, 0);
	char block[4096];
	memset(block, 'x', sizeof(block));
	while (write(fd, block, sizeof(block)) > 0)
		;
	cr_assert_eq(errno, ENOSPC);
	close(fd);
	int log_fd = mkstemp(log_path);
	cr_assert_geq(log_fd, 0);

	int32_t row;
	cr_assert_eq(ledger_row_get(&L, "media", "sa1", &row), LEDGER_OK);
	pid_t pid = test_fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		dup2(log_fd, STDERR_FILENO);
		struct flusher_options o = { shm_name, path, 20, 0 };
		_exit(flusher_run(&o));
	}
	/* A change every 20 ms for 3 s: without a backoff, 150 attempts and as many lines. */
	int64_t start = ledger_now_ms(), adds = 0;
	while (ledger_now_ms() - start < 3000) {
		cr_assert_eq(ledger_add(&L, row, 1, ledger_now_ms()), LEDGER_OK);
		adds++;
		usleep(20000);
	}
	uint64_t attempts = atomic_load(&L.hdr->flush_errors);
	cr_assert_geq(attempts, 3, "only %llu attempts", (unsigned long long)attempts);
	cr_assert_leq(attempts, 12, "%llu attempts in 3 s: no backoff", (unsigned long long)attempts);
	cr_log_info("%llu attempts in 3 s of a full disk", (unsigned long long)attempts);
	/* Room again: the next attempt (5 s apart at most) writes. */
	cr_assert_eq(unlink(filler), 0);
	cr_assert(wait_file_bytes("media", "sa1", adds, 8000), "never written after the disk freed");
	stop(pid, SIGTERM);
	FILE *f = fdopen(log_fd, "r");
	cr_assert_not_null(f);
	rewind(f);
	char line[2048];
	int failures = 0, recovered = 0;
	while (fgets(line, sizeof(line), f)) {
		failures += strstr(line, "cannot write the ledger file") != NULL;
		recovered += strstr(line, "written again") != NULL;
		if (strstr(line, "cannot write the ledger file"))
			cr_assert(strstr(line, "No space left on device"), "%s", line);
	}
	fclose(f);
	unlink(log_path);
	cr_assert_eq(failures, 1, "%d lines for one episode of a full disk", failures);
	cr_assert_eq(recovered, 1);
	umount2(dir, MNT_DETACH);
}

static void die_inside_the_write(enum ledger_fault_point p)
{
	if (p == LEDGER_FAULT_SEQ_ODD)
		raise(SIGKILL);
}

/* A supervisor killed inside a write, and no worker left to inherit the lock: the orphaned
 * flusher finishes that write (the intent was logged) before its last flush. */
Test(flusher, a_writer_dead_inside_its_write_with_no_successor_is_finished_and_written,
     .init = setup, .fini = teardown, .timeout = 60)
{
	int32_t row;
	cr_assert_eq(ledger_row_get(&L, "media", "sa1", &row), LEDGER_OK);
	pid_t kid = test_fork();
	cr_assert_geq(kid, 0);
	if (kid == 0) {
		ledger_fault_hook = die_inside_the_write;
		ledger_add(&L, row, 500, ledger_now_ms());
		_exit(0);
	}
	int st;
	cr_assert_eq(waitpid(kid, &st, 0), kid);
	cr_assert(WIFSIGNALED(st));
	cr_assert_eq(atomic_load(&L.hdr->seq) & 1, 1, "the write was not left half done");
	pid_t flusher = start_orphaned_flusher(20, -1);
	cr_assert(gone_within(flusher, 10000, &st), "the orphaned flusher never ended");
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status %d", st);
	int ok;
	cr_assert_eq(file_bytes("media", "sa1", &ok), 500);
	cr_assert_eq(atomic_load(&L.hdr->seq) & 1, 0);
}
