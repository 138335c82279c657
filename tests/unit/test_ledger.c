#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ledger.h"
#include "proc.h"
#include "test_util.h"

#define T0 1700000000000LL /* a fixed clock: the tests drive time themselves */

static char shm_name[64];
static struct ledger L;

static void setup_named(uint32_t rows, enum ledger_window window)
{
	static int n;
	snprintf(shm_name, sizeof(shm_name), "/cplow-test-%d-%d", getpid(), n++);
	ledger_unlink(shm_name);
	struct ledger_options o = { .row_capacity = rows, .slot_capacity = 8,
				    .daily_bytes = 1000000, .window = window };
	int rc = ledger_create(shm_name, &o, &L);
	cr_assert_eq(rc, LEDGER_OK, "create: %s", ledger_strerror(rc));
}

static void setup(void)
{
	setup_named(64, LEDGER_WINDOW_FIXED);
}

static void teardown(void)
{
	ledger_detach(&L);
	ledger_unlink(shm_name);
}

static struct ledger_usage usage_of(int32_t row)
{
	struct ledger_copy c;
	cr_assert_eq(ledger_copy_init(&L, &c), LEDGER_OK);
	int rc = ledger_read(&L, &c, 1000);
	cr_assert_eq(rc, LEDGER_OK, "read: %s", ledger_strerror(rc));
	cr_assert_lt((uint32_t)row, c.row_count);
	struct ledger_usage u = c.rows[row].usage;
	ledger_copy_free(&c);
	return u;
}

/* Shared between a test and its children: what the children did, for the exact total. */
static void *shared_counters(size_t size)
{
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	cr_assert_neq(p, MAP_FAILED);
	memset(p, 0, size);
	return p;
}

static int wait_child(pid_t pid)
{
	int st;
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	return st;
}

Test(ledger, create_attach_add_and_read_back, .init = setup, .fini = teardown)
{
	int32_t row;
	cr_assert_eq(ledger_row_get(&L, "media", "/sa/sa1.json", &row), LEDGER_OK);
	cr_assert_eq(ledger_add(&L, row, 1234, T0), LEDGER_OK);
	struct ledger other;
	cr_assert_eq(ledger_attach(shm_name, 1, &other), LEDGER_OK);
	int32_t again;
	cr_assert_eq(ledger_row_get(&other, "media", "/sa/sa1.json", &again), LEDGER_OK);
	cr_assert_eq(again, row);
	cr_assert_eq(ledger_add(&other, again, 766, T0 + 1), LEDGER_OK);
	ledger_detach(&other);
	struct ledger_usage u = usage_of(row);
	cr_assert_eq(u.used_bytes, 2000);
	cr_assert_eq(u.files, 2);
	cr_assert_eq(u.first_upload_ms, T0);
	cr_assert_eq(u.reset_at_ms, T0 + LEDGER_DAY_MS);
}

Test(ledger, object_is_private_to_its_user, .init = setup, .fini = teardown)
{
	char path[128];
	snprintf(path, sizeof(path), "/dev/shm%s", shm_name);
	struct stat st;
	cr_assert_eq(stat(path, &st), 0);
	cr_assert_eq(st.st_mode & 0777, 0600, "mode is %o", st.st_mode & 0777);
	cr_assert_eq(st.st_uid, geteuid());
}

Test(ledger, create_refuses_an_existing_object, .init = setup, .fini = teardown)
{
	struct ledger again;
	cr_assert_eq(ledger_create(shm_name, NULL, &again), LEDGER_ERR_EXISTS);
}

static void write_fake_object(const char *name, size_t size, uint64_t magic, uint32_t version)
{
	int fd = shm_open(name, O_RDWR | O_CREAT | O_TRUNC, 0600);
	cr_assert_geq(fd, 0);
	cr_assert_eq(ftruncate(fd, (off_t)size), 0);
	if (size >= 16) {
		uint64_t head[2] = { magic, version };
		cr_assert_eq(pwrite(fd, head, sizeof(head), 0), (ssize_t)sizeof(head));
	}
	close(fd);
}

Test(ledger, attach_refuses_another_layout_with_a_clear_error)
{
	char name[64];
	snprintf(name, sizeof(name), "/cplow-test-layout-%d", getpid());
	struct ledger l;
	/* Too small to hold a header. */
	write_fake_object(name, 8, 0, 0);
	cr_assert_eq(ledger_attach(name, 0, &l), LEDGER_ERR_LAYOUT);
	/* Right size class, wrong magic. */
	write_fake_object(name, 1 << 20, 0x1234, LEDGER_VERSION);
	cr_assert_eq(ledger_attach(name, 1, &l), LEDGER_ERR_LAYOUT);
	/* Right magic, another version. */
	write_fake_object(name, 1 << 20, LEDGER_MAGIC, LEDGER_VERSION + 1);
	cr_assert_eq(ledger_attach(name, 0, &l), LEDGER_ERR_LAYOUT);
	cr_assert_str_eq(ledger_strerror(LEDGER_ERR_LAYOUT),
			 "shared ledger has another layout (built by another cplow version?)");
	ledger_unlink(name);
}

/* Runs the built cplow-inspect with args; its stderr (up to len - 1 bytes) into err. */
static int run_inspect(const char *shm, char *err, size_t len)
{
	int fds[2];
	cr_assert_eq(pipe(fds), 0);
	pid_t pid = test_fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		dup2(fds[1], 2);
		int null = open("/dev/null", O_WRONLY);
		dup2(null, 1);
		close(fds[0]);
		execl(CPLOW_INSPECT, "cplow-inspect", "--shm", shm, (char *)NULL);
		_exit(127);
	}
	close(fds[1]);
	size_t got = 0;
	ssize_t n;
	while (got + 1 < len && (n = read(fds[0], err + got, len - 1 - got)) > 0)
		got += (size_t)n;
	err[got] = '\0';
	close(fds[0]);
	return wait_child(pid);
}

/* An object a cplow of another layout created: right magic, version and size, another hash. */
Test(ledger, attach_refuses_another_layout_hash_and_inspect_says_so, .init = setup,
     .fini = teardown, .timeout = 30)
{
	int32_t row;
	cr_assert_eq(ledger_row_get(&L, "media", "sa1", &row), LEDGER_OK);
	cr_assert_eq(ledger_add(&L, row, 5, T0), LEDGER_OK);
	struct ledger l;
	cr_assert_eq(ledger_attach(shm_name, 0, &l), LEDGER_OK, "the object was bad before the flip");
	ledger_detach(&l);
	L.hdr->layout_hash ^= 0x00010000u;
	cr_assert_eq(ledger_attach(shm_name, 1, &l), LEDGER_ERR_LAYOUT);
	cr_assert_eq(ledger_attach(shm_name, 0, &l), LEDGER_ERR_LAYOUT);

	char err[1024], want[256];
	int st = run_inspect(shm_name, err, sizeof(err));
	cr_assert(WIFEXITED(st), "cplow-inspect died: status %d, stderr: %s", st, err);
	cr_assert_eq(WEXITSTATUS(st), 1, "exit %d, stderr: %s", WEXITSTATUS(st), err);
	snprintf(want, sizeof(want), "cplow-inspect: cannot read ledger %s: shared ledger has "
		 "another layout (built by another cplow version?)\n", shm_name);
	cr_assert_str_eq(err, want);

	/* Flipped back, the same object reads again: the hash alone was the refusal. */
	L.hdr->layout_hash ^= 0x00010000u;
	st = run_inspect(shm_name, err, sizeof(err));
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status %d, stderr: %s", st, err);
}

Test(ledger, attach_refuses_a_truncated_object, .init = setup, .fini = teardown)
{
	char path[128];
	snprintf(path, sizeof(path), "/dev/shm%s", shm_name);
	cr_assert_eq(truncate(path, 4096), 0);
	struct ledger l;
	cr_assert_eq(ledger_attach(shm_name, 0, &l), LEDGER_ERR_LAYOUT);
}

Test(ledger, attach_refuses_an_object_owned_by_another_user, .init = setup, .fini = teardown)
{
	if (geteuid() != 0)
		cr_skip_test("needs root to give the object away");
	char path[128];
	snprintf(path, sizeof(path), "/dev/shm%s", shm_name);
	cr_assert_eq(chown(path, 65534, 65534), 0);
	struct ledger l;
	cr_assert_eq(ledger_attach(shm_name, 0, &l), LEDGER_ERR_FOREIGN);
	char owner[256];
	ledger_describe_owner(shm_name, owner, sizeof(owner));
	cr_assert(strstr(owner, "uid 65534") && strstr(owner, shm_name), "%s", owner);
}

Test(ledger, full_table_is_an_error_the_caller_sees)
{
	setup_named(4, LEDGER_WINDOW_FIXED);
	int32_t row;
	char acct[32];
	for (int i = 0; i < 4; i++) {
		snprintf(acct, sizeof(acct), "sa%d", i);
		cr_assert_eq(ledger_row_get(&L, "media", acct, &row), LEDGER_OK);
	}
	cr_assert_eq(ledger_row_get(&L, "media", "sa4", &row), LEDGER_ERR_FULL);
	/* Existing rows still resolve and count. */
	cr_assert_eq(ledger_row_get(&L, "media", "sa2", &row), LEDGER_OK);
	cr_assert_eq(row, 2);
	teardown();
}

Test(ledger, names_too_long_or_empty_are_refused, .init = setup, .fini = teardown)
{
	char longname[LEDGER_ACCOUNT_MAX + 10];
	memset(longname, 'a', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	int32_t row;
	cr_assert_eq(ledger_row_get(&L, "media", longname, &row), LEDGER_ERR_NAME);
	cr_assert_eq(ledger_row_get(&L, "", "sa1", &row), LEDGER_ERR_NAME);
	cr_assert_eq(ledger_add(&L, 99, 1, T0), LEDGER_ERR_NOTFOUND);
	cr_assert_eq(ledger_add(&L, 0, -1, T0), LEDGER_ERR_INVALID);
}

Test(ledger, holds_1024_accounts_of_8_uploaders)
{
	setup_named(8 * 1024, LEDGER_WINDOW_FIXED);
	char up[16], acct[64];
	for (int u = 0; u < 8; u++) {
		for (int a = 0; a < 1024; a++) {
			snprintf(up, sizeof(up), "up%d", u);
			snprintf(acct, sizeof(acct), "/config/sa/sa%d.json", a);
			int32_t row;
			cr_assert_eq(ledger_row_get(&L, up, acct, &row), LEDGER_OK);
			cr_assert_eq(row, u * 1024 + a);
		}
	}
	int32_t row;
	cr_assert_eq(ledger_row_find(&L, "up7", "/config/sa/sa1023.json", &row), LEDGER_OK);
	cr_assert_eq(row, 8 * 1024 - 1);
	cr_assert_eq(ledger_row_find(&L, "up8", "/config/sa/sa1.json", &row), LEDGER_ERR_NOTFOUND);
	teardown();
}

#define WRITERS 4
#define ADDS_PER_WRITER 20000

Test(ledger, add_is_exact_across_processes, .init = setup, .fini = teardown, .timeout = 120)
{
	int32_t rows[2];
	cr_assert_eq(ledger_row_get(&L, "media", "sa1", &rows[0]), LEDGER_OK);
	cr_assert_eq(ledger_row_get(&L, "tv", "sa1", &rows[1]), LEDGER_OK);
	pid_t kids[WRITERS];
	for (int w = 0; w < WRITERS; w++) {
		kids[w] = test_fork();
		cr_assert_geq(kids[w], 0);
		if (kids[w] == 0) {
			struct ledger mine;
			if (ledger_attach(shm_name, 1, &mine) != LEDGER_OK)
				_exit(3);
			for (int i = 0; i < ADDS_PER_WRITER; i++)
				if (ledger_add(&mine, rows[i & 1], w + 1 + (i % 7), T0 + i) != LEDGER_OK)
					_exit(4);
			_exit(0);
		}
	}
	int64_t expect[2] = { 0, 0 };
	for (int w = 0; w < WRITERS; w++) {
		int st = wait_child(kids[w]);
		cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "writer %d status %d", w, st);
		for (int i = 0; i < ADDS_PER_WRITER; i++)
			expect[i & 1] += w + 1 + (i % 7);
	}
	cr_assert_eq(usage_of(rows[0]).used_bytes, expect[0]);
	cr_assert_eq(usage_of(rows[1]).used_bytes, expect[1]);
	cr_assert_eq(usage_of(rows[0]).files, WRITERS * ADDS_PER_WRITER / 2);
}

static enum ledger_fault_point kill_at;
static void kill_self(enum ledger_fault_point p)
{
	if (p == kill_at)
		raise(SIGKILL);
}

/* The slot's pending files (their indexes, and open_lost); how many. */
static size_t opens_of(int32_t slot, struct ledger_open_file *files, int32_t *index,
		       int32_t *lost)
{
	size_t n;
	cr_assert_eq(ledger_stage_open_files(&L, slot, files, index, LEDGER_OPEN_MAX, &n, lost),
		     LEDGER_OK);
	return n;
}

/* A stage slot of this process's, on the row of (media, account). */
static int32_t claim_stage(const char *account, int32_t *row)
{
	int32_t slot;
	cr_assert_eq(ledger_row_get(&L, "media", account, row), LEDGER_OK);
	struct ledger_stage init = { .row = *row, .pid = getpid() };
	cr_assert_eq(ledger_stage_claim(&L, &init, &slot), LEDGER_OK);
	return slot;
}

Test(ledger, writer_killed_at_each_point_of_its_critical_section_is_recovered_exactly_once,
     .init = setup, .fini = teardown, .timeout = 60)
{
	int32_t row, slot = claim_stage("sa1", &row);
	int64_t expect = 0;
	uint64_t recoveries = 0;
	for (int p = 0; p < LEDGER_FAULT_POINTS; p++) {
		for (int via_stage = 0; via_stage < 2; via_stage++) {
			pid_t kid = test_fork();
			cr_assert_geq(kid, 0);
			if (kid == 0) {
				kill_at = (enum ledger_fault_point)p;
				ledger_fault_hook = kill_self;
				if (via_stage)
					ledger_add_for_stage(&L, slot, 100, T0);
				else
					ledger_add(&L, row, 100, T0);
				_exit(0); /* not reached: the hook kills us inside the lock */
			}
			int st = wait_child(kid);
			cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "point %d", p);
			/* Before the intent is logged nothing has changed: the write is dropped.
			 * From then on it is redone, once. */
			if (p >= LEDGER_FAULT_INTENT_LOGGED)
				expect += 100;
			/* The next writer inherits the lock from the dead one. */
			cr_assert_eq(ledger_add(&L, row, 1, T0), LEDGER_OK, "point %d", p);
			expect += 1;
			recoveries++;
			struct ledger_usage u = usage_of(row);
			cr_assert_eq(u.used_bytes, expect, "point %d stage %d: %lld != %lld", p,
				     via_stage, (long long)u.used_bytes, (long long)expect);
			cr_assert_eq(atomic_load(&L.hdr->recoveries), recoveries);
			cr_assert_eq(atomic_load(&L.hdr->seq) & 1, 0);
			cr_assert_eq(atomic_load(&L.hdr->intent.op), LEDGER_OP_NONE);
		}
	}
	/* The stage counters followed the row for the writes that went through the stage. */
	struct ledger_copy c;
	cr_assert_eq(ledger_copy_init(&L, &c), LEDGER_OK);
	cr_assert_eq(ledger_read(&L, &c, 1000), LEDGER_OK);
	int applied = LEDGER_FAULT_POINTS - LEDGER_FAULT_INTENT_LOGGED;
	cr_assert_eq(c.stages[slot].bytes_done, 100 * applied);
	cr_assert_eq(c.stages[slot].files_done, applied);
	ledger_copy_free(&c);
}

/* The supervisor's check of a dead worker's files, as dead_check.c runs it: the pending entries
 * read under the lock, each counted by index while still pending. */
static int64_t check_dead_slot(int32_t slot)
{
	struct ledger_open_file files[LEDGER_OPEN_MAX];
	int32_t index[LEDGER_OPEN_MAX], lost;
	size_t n = opens_of(slot, files, index, &lost);
	int64_t counted = 0;
	for (size_t i = 0; i < n; i++)
		if (ledger_count_open_file(&L, slot, index[i], files[i].path, files[i].size, T0) ==
		    LEDGER_OK)
			counted += files[i].size;
	return counted;
}

Test(ledger, a_worker_killed_inside_the_count_of_a_started_file_has_it_counted_once,
     .init = setup, .fini = teardown, .timeout = 60)
{
	for (int p = 0; p < LEDGER_FAULT_POINTS; p++) {
		char account[32];
		snprintf(account, sizeof(account), "sa%d", p);
		int32_t row, slot = claim_stage(account, &row);
		const char *path = "show/ep.mkv";
		int64_t size = 1000, mtime = 1700000000123456789LL;
		cr_assert_eq(ledger_stage_note_opens(&L, slot, &path, &size, &mtime, NULL, 1),
			     LEDGER_OK);
		/* The worker dies counting the file rclone reported: inside its logged write. */
		pid_t kid = test_fork();
		cr_assert_geq(kid, 0);
		if (kid == 0) {
			kill_at = (enum ledger_fault_point)p;
			ledger_fault_hook = kill_self;
			ledger_add_for_stage_file(&L, slot, path, size, T0);
			_exit(0); /* not reached */
		}
		int st = wait_child(kid);
		cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "point %d", p);
		/* Whether its write is redone or dropped, the supervisor's check finds the file
		 * pending exactly when the write is not in the ledger. */
		int64_t by_check = check_dead_slot(slot);
		cr_assert_eq(by_check, p >= LEDGER_FAULT_INTENT_LOGGED ? 0 : size, "point %d", p);
		cr_assert_eq(usage_of(row).used_bytes, size, "point %d: counted %lld times", p,
			     (long long)(usage_of(row).used_bytes / size));
		cr_assert_eq(usage_of(row).files, 1, "point %d", p);
		/* A second check (a restarted supervisor) finds nothing more. */
		cr_assert_eq(check_dead_slot(slot), 0);
		cr_assert_eq(usage_of(row).used_bytes, size);
		cr_assert_eq(ledger_stage_release(&L, slot), LEDGER_OK);
	}
}

Test(ledger, open_files_keep_their_time_and_late_files_and_settle_keeps_only_what_is_asked,
     .init = setup, .fini = teardown)
{
	int32_t row, slot = claim_stage("sa1", &row);
	const char *paths[] = { "a", "b", "late" };
	int64_t sizes[] = { 10, 20, LEDGER_OPEN_SIZE_LATE }, mtimes[] = { 111, 222, 0 };
	cr_assert_eq(ledger_stage_note_opens(&L, slot, paths, sizes, mtimes, NULL, 3), LEDGER_OK);
	struct ledger_open_file files[LEDGER_OPEN_MAX];
	int32_t index[LEDGER_OPEN_MAX], lost;
	size_t n = opens_of(slot, files, index, &lost);
	cr_assert_eq(n, 3);
	cr_assert_eq(files[1].mtime_ns, 222);
	cr_assert_eq(files[2].size, LEDGER_OPEN_SIZE_LATE);
	/* Counted by the worker (by path): no longer pending, and a count by index refuses. */
	cr_assert_eq(ledger_add_for_stage_file(&L, slot, "a", 10, T0), LEDGER_OK);
	cr_assert_eq(ledger_count_open_file(&L, slot, index[0], "a", 10, T0), LEDGER_ERR_NOTFOUND);
	cr_assert_eq(usage_of(row).used_bytes, 10);
	const char *keep = "late";
	cr_assert_eq(ledger_stage_settle_opens(&L, slot, &keep, 1), LEDGER_OK);
	n = opens_of(slot, files, index, &lost);
	cr_assert_eq(n, 1);
	cr_assert_str_eq(files[0].path, "late");
	cr_assert_eq(ledger_count_open_file(&L, slot, index[0], "late", 5, T0), LEDGER_OK);
	cr_assert_eq(usage_of(row).used_bytes, 15);
}

Test(ledger, unconfirmed_opens_are_marked_confirmed_by_rclones_word_and_give_way_when_full,
     .init = setup, .fini = teardown)
{
	int32_t row, slot = claim_stage("sa1", &row);
	/* Seen opened: pending, unconfirmed, with the time the open was seen. */
	const char *paths[LEDGER_OPEN_MAX + 1];
	char names[LEDGER_OPEN_MAX + 1][16];
	int64_t sizes[LEDGER_OPEN_MAX + 1], mtimes[LEDGER_OPEN_MAX + 1];
	uint32_t flags[LEDGER_OPEN_MAX + 1];
	for (int i = 0; i <= LEDGER_OPEN_MAX; i++) {
		snprintf(names[i], sizeof(names[i]), "f%d", i);
		paths[i] = names[i];
		sizes[i] = 100 + i;
		mtimes[i] = 1000 + i;
		flags[i] = LEDGER_OPEN_UNCONFIRMED;
	}
	cr_assert_eq(ledger_stage_note_opens(&L, slot, paths, sizes, mtimes, flags, 2), LEDGER_OK);
	struct ledger_open_file files[LEDGER_OPEN_MAX];
	int32_t index[LEDGER_OPEN_MAX], lost;
	size_t n = opens_of(slot, files, index, &lost);
	cr_assert_eq(n, 2);
	cr_assert_eq(files[0].flags, LEDGER_OPEN_UNCONFIRMED);
	cr_assert_eq(files[1].mtime_ns, 1001);
	/* A look missed f0; rclone's own word about f1 (its descriptors) confirms it. */
	uint32_t missed = LEDGER_OPEN_UNCONFIRMED | LEDGER_OPEN_MISSED, mine = 0;
	int64_t t = 5000;
	cr_assert_eq(ledger_stage_note_opens(&L, slot, &paths[0], &sizes[0], &t, &missed, 1),
		     LEDGER_OK);
	cr_assert_eq(ledger_stage_note_opens(&L, slot, &paths[1], &sizes[1], &t, &mine, 1),
		     LEDGER_OK);
	n = opens_of(slot, files, index, &lost);
	cr_assert_eq(files[0].flags, missed);
	cr_assert_eq(files[0].mtime_ns, 1000, "a look's miss keeps the time of the open");
	cr_assert_eq(files[1].flags, 0);
	cr_assert_eq(files[1].mtime_ns, 5000);
	/* An open seen again: looked at again; rclone's entry stays rclone's. */
	cr_assert_eq(ledger_stage_note_opens(&L, slot, paths, sizes, mtimes, flags, 2), LEDGER_OK);
	n = opens_of(slot, files, index, &lost);
	cr_assert_eq(files[0].flags, LEDGER_OPEN_UNCONFIRMED);
	cr_assert_eq(files[1].flags, 0);
	/* A full table: a missed entry gives way to any file, an unconfirmed one only to
	 * rclone's, rclone's to none. */
	cr_assert_eq(ledger_stage_note_opens(&L, slot, &paths[2], &sizes[2], &mtimes[2], &flags[2],
					     LEDGER_OPEN_MAX - 2), LEDGER_OK);
	cr_assert_eq(ledger_stage_note_opens(&L, slot, &paths[3], &sizes[3], &t, &missed, 1),
		     LEDGER_OK);
	const char *extra[] = { "new-open", "rclones", "third" };
	int64_t xs[] = { 1, 2, 3 };
	uint32_t xf[] = { LEDGER_OPEN_UNCONFIRMED, 0, LEDGER_OPEN_UNCONFIRMED };
	cr_assert_eq(ledger_stage_note_opens(&L, slot, extra, xs, NULL, xf, 3), LEDGER_OK);
	n = opens_of(slot, files, index, &lost);
	cr_assert_eq(n, LEDGER_OPEN_MAX);
	bool has[3] = { false }, f3 = false, f1 = false;
	for (size_t i = 0; i < n; i++) {
		for (int k = 0; k < 3; k++)
			has[k] |= strcmp(files[i].path, extra[k]) == 0;
		f3 |= strcmp(files[i].path, "f3") == 0;
		f1 |= strcmp(files[i].path, "f1") == 0;
	}
	cr_assert(has[0] && !f3, "the missed entry gave way to a new open");
	cr_assert(has[1] && f1, "rclone's file found room, rclone's entry kept");
	cr_assert(!has[2], "an unconfirmed open finds no room among unlooked ones");
	cr_assert_eq(lost, 3, "two that gave way and one without room: %d", lost);
	cr_assert_eq(ledger_stage_release(&L, slot), LEDGER_OK);
}

struct kill_counters {
	_Atomic int64_t done[WRITERS];    /* adds that returned, per writer */
	_Atomic int64_t pending[WRITERS]; /* bytes of the add in progress */
	_Atomic int victim_point;
};

static struct kill_counters *kc;
static void kill_victim(enum ledger_fault_point p)
{
	if (p == (enum ledger_fault_point)atomic_load(&kc->victim_point))
		raise(SIGKILL);
}

Test(ledger, writers_killed_among_live_writers_leave_an_exact_total, .init = setup,
     .fini = teardown, .timeout = 120)
{
	int32_t row;
	cr_assert_eq(ledger_row_get(&L, "media", "sa1", &row), LEDGER_OK);
	kc = shared_counters(sizeof(*kc));
	srand((unsigned)getpid());
	int64_t expect = 0;
	for (int round = 0; round < 40; round++) {
		memset(kc, 0, sizeof(*kc));
		int point = rand() % LEDGER_FAULT_POINTS;
		atomic_store(&kc->victim_point, point);
		int kill_after = rand() % 500;
		pid_t kids[WRITERS];
		for (int w = 0; w < WRITERS; w++) {
			kids[w] = test_fork();
			cr_assert_geq(kids[w], 0);
			if (kids[w] == 0) {
				struct ledger mine;
				if (ledger_attach(shm_name, 1, &mine) != LEDGER_OK)
					_exit(3);
				for (int i = 0; i < 2000; i++) {
					int64_t bytes = 1 + w + (i % 13);
					if (w == 0 && i == kill_after)
						ledger_fault_hook = kill_victim;
					atomic_store(&kc->pending[w], bytes);
					if (ledger_add(&mine, row, bytes, T0) != LEDGER_OK)
						_exit(4);
					atomic_store(&kc->pending[w], 0);
					atomic_fetch_add(&kc->done[w], bytes);
				}
				_exit(0);
			}
		}
		for (int w = 0; w < WRITERS; w++) {
			int st = wait_child(kids[w]);
			if (w == 0)
				cr_assert(WIFSIGNALED(st), "victim was not killed in round %d", round);
			else
				cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
			expect += atomic_load(&kc->done[w]);
		}
		if (point >= LEDGER_FAULT_INTENT_LOGGED)
			expect += atomic_load(&kc->pending[0]);
		/* If the victim died last, nobody inherited its lock yet: the next add does. */
		cr_assert_eq(ledger_add(&L, row, 0, T0), LEDGER_OK);
		cr_assert_eq(usage_of(row).used_bytes, expect, "round %d point %d", round, point);
	}
	munmap(kc, sizeof(*kc));
}

Test(ledger, reader_during_heavy_writing_never_sees_a_torn_row, .init = setup, .fini = teardown,
     .timeout = 120)
{
	int32_t row, slot;
	cr_assert_eq(ledger_row_get(&L, "media", "sa1", &row), LEDGER_OK);
	struct ledger_stage init = { .row = row };
	cr_assert_eq(ledger_stage_claim(&L, &init, &slot), LEDGER_OK);
	_Atomic int *stop = shared_counters(sizeof(int));
	pid_t kids[2];
	for (int w = 0; w < 2; w++) {
		kids[w] = test_fork();
		cr_assert_geq(kids[w], 0);
		if (kids[w] == 0) {
			struct ledger mine;
			if (ledger_attach(shm_name, 1, &mine) != LEDGER_OK)
				_exit(3);
			while (!atomic_load(stop))
				if (ledger_add_for_stage(&mine, slot, 4096, T0) != LEDGER_OK)
					_exit(4);
			_exit(0);
		}
	}
	struct ledger ro;
	cr_assert_eq(ledger_attach(shm_name, 0, &ro), LEDGER_OK);
	struct ledger_copy c;
	cr_assert_eq(ledger_copy_init(&ro, &c), LEDGER_OK);
	int64_t last = 0;
	int reads = 0;
	for (; reads < 20000; reads++) {
		int rc = ledger_read(&ro, &c, 2000);
		cr_assert_eq(rc, LEDGER_OK, "read %d: %s", reads, ledger_strerror(rc));
		const struct ledger_usage *u = &c.rows[row].usage;
		/* Every write changes bytes, files and the stage together: a torn copy breaks
		 * one of these equalities. */
		cr_assert_eq(u->used_bytes, u->files * 4096, "torn row at read %d", reads);
		cr_assert_eq(c.stages[slot].bytes_done, u->used_bytes, "torn stage at read %d",
			     reads);
		cr_assert_geq(u->used_bytes, last);
		last = u->used_bytes;
	}
	atomic_store(stop, 1);
	for (int w = 0; w < 2; w++) {
		int st = wait_child(kids[w]);
		cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	}
	cr_assert_gt(last, 0, "the writers never wrote while we read");
	ledger_copy_free(&c);
	ledger_detach(&ro);
}

Test(ledger, reader_reports_stuck_while_a_dead_writer_holds_the_sequence, .init = setup,
     .fini = teardown, .timeout = 30)
{
	int32_t row;
	cr_assert_eq(ledger_row_get(&L, "media", "sa1", &row), LEDGER_OK);
	pid_t kid = test_fork();
	cr_assert_geq(kid, 0);
	if (kid == 0) {
		kill_at = LEDGER_FAULT_SEQ_ODD;
		ledger_fault_hook = kill_self;
		ledger_add(&L, row, 5, T0);
		_exit(0);
	}
	wait_child(kid);
	struct ledger_copy c;
	cr_assert_eq(ledger_copy_init(&L, &c), LEDGER_OK);
	int64_t t = ledger_now_ms();
	cr_assert_eq(ledger_read(&L, &c, 200), LEDGER_ERR_STUCK);
	cr_assert_lt(ledger_now_ms() - t, 2000, "the reader did not give up at its bound");
	/* The next writer repairs it, and readers see the dead writer's add, once. */
	cr_assert_eq(ledger_add(&L, row, 1, T0), LEDGER_OK);
	cr_assert_eq(ledger_read(&L, &c, 200), LEDGER_OK);
	cr_assert_eq(c.rows[row].usage.used_bytes, 6);
	ledger_copy_free(&c);
}

#define SEGV_EXIT 77
static void on_segv(int sig)
{
	(void)sig;
	_exit(SEGV_EXIT);
}

Test(ledger, read_only_attachment_cannot_write, .init = setup, .fini = teardown)
{
	int32_t row;
	cr_assert_eq(ledger_row_get(&L, "media", "sa1", &row), LEDGER_OK);
	struct ledger ro;
	cr_assert_eq(ledger_attach(shm_name, 0, &ro), LEDGER_OK);
	cr_assert_eq(ledger_add(&ro, row, 1, T0), LEDGER_ERR_READONLY);
	pid_t kid = test_fork();
	cr_assert_geq(kid, 0);
	if (kid == 0) {
		/* Our own handler, so the sanitizer build reports the fault the same way. */
		signal(SIGSEGV, on_segv);
		ro.rows[row].usage.used_bytes = 999; /* through the read-only mapping */
		_exit(0);
	}
	int st = wait_child(kid);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == SEGV_EXIT, "the write did not fault (%d)",
		  st);
	cr_assert_eq(usage_of(row).used_bytes, 0);
	cr_assert_eq(ledger_add(&L, row, 3, T0), LEDGER_OK);
	cr_assert_eq(ro.rows[row].usage.used_bytes, 3, "the read-only view does not follow");
	ledger_detach(&ro);
}

Test(ledger, fixed_window_resets_24h_after_the_first_upload, .init = setup, .fini = teardown)
{
	int32_t row;
	cr_assert_eq(ledger_row_get(&L, "media", "sa1", &row), LEDGER_OK);
	cr_assert_eq(ledger_add(&L, row, 100, T0), LEDGER_OK);
	cr_assert_eq(ledger_add(&L, row, 50, T0 + LEDGER_HOUR_MS), LEDGER_OK);
	struct ledger_usage u = usage_of(row);
	cr_assert_eq(u.reset_at_ms, T0 + LEDGER_DAY_MS);
	cr_assert_eq(ledger_usage_used(&u, LEDGER_WINDOW_FIXED, T0 + LEDGER_DAY_MS - 1), 150);
	cr_assert_eq(ledger_usage_remaining(&u, 1000, LEDGER_WINDOW_FIXED, T0), 850);
	cr_assert_eq(ledger_usage_used(&u, LEDGER_WINDOW_FIXED, T0 + LEDGER_DAY_MS), 0);
	/* The next upload after the reset starts a new window at its own time. */
	cr_assert_eq(ledger_add(&L, row, 7, T0 + LEDGER_DAY_MS + 5), LEDGER_OK);
	u = usage_of(row);
	cr_assert_eq(u.used_bytes, 7);
	cr_assert_eq(u.files, 1);
	cr_assert_eq(u.first_upload_ms, T0 + LEDGER_DAY_MS + 5);
	cr_assert_eq(u.reset_at_ms, T0 + 2 * LEDGER_DAY_MS + 5);
}

Test(ledger, expire_ends_passed_windows_and_bans, .init = setup, .fini = teardown)
{
	int32_t a, b;
	cr_assert_eq(ledger_row_get(&L, "media", "sa1", &a), LEDGER_OK);
	cr_assert_eq(ledger_row_get(&L, "media", "sa2", &b), LEDGER_OK);
	cr_assert_eq(ledger_add(&L, a, 100, T0), LEDGER_OK);
	cr_assert_eq(ledger_add(&L, b, 100, T0 + 2 * LEDGER_HOUR_MS), LEDGER_OK);
	cr_assert_eq(ledger_ban(&L, b, T0 + 3 * LEDGER_HOUR_MS, "403 seen 5 times",
			       T0 + 2 * LEDGER_HOUR_MS), LEDGER_OK);
	cr_assert_eq(ledger_expire(&L, T0 + LEDGER_DAY_MS + 1), 2);
	cr_assert_eq(usage_of(a).used_bytes, 0);
	cr_assert_eq(usage_of(b).used_bytes, 100);
	cr_assert_eq(usage_of(b).banned_until_ms, 0);
	cr_assert_str_empty(usage_of(b).ban_cause);
	cr_assert_eq(ledger_expire(&L, T0 + LEDGER_DAY_MS + 2), 0, "nothing left to expire");
}

Test(ledger, rolling_window_counts_the_last_24_hours)
{
	setup_named(16, LEDGER_WINDOW_ROLLING);
	int32_t row;
	cr_assert_eq(ledger_row_get(&L, "media", "sa1", &row), LEDGER_OK);
	int64_t h0 = (T0 / LEDGER_HOUR_MS) * LEDGER_HOUR_MS;
	cr_assert_eq(ledger_add(&L, row, 100, h0 + 10), LEDGER_OK);
	cr_assert_eq(ledger_add(&L, row, 200, h0 + 5 * LEDGER_HOUR_MS), LEDGER_OK);
	cr_assert_eq(ledger_add(&L, row, 300, h0 + 20 * LEDGER_HOUR_MS), LEDGER_OK);
	struct ledger_usage u = usage_of(row);
	cr_assert_eq(u.used_bytes, 600);
	cr_assert_eq(u.reset_at_ms, h0 + 25 * LEDGER_HOUR_MS, "first hour frees when hour 24 ends");
	/* Hour 0 drops out at +25 h, hour 5 at +30 h. */
	cr_assert_eq(ledger_usage_used(&u, LEDGER_WINDOW_ROLLING, h0 + 25 * LEDGER_HOUR_MS - 1), 600);
	cr_assert_eq(ledger_usage_used(&u, LEDGER_WINDOW_ROLLING, h0 + 25 * LEDGER_HOUR_MS), 500);
	cr_assert_eq(ledger_usage_used(&u, LEDGER_WINDOW_ROLLING, h0 + 30 * LEDGER_HOUR_MS), 300);
	cr_assert_eq(ledger_add(&L, row, 1, h0 + 31 * LEDGER_HOUR_MS), LEDGER_OK);
	u = usage_of(row);
	cr_assert_eq(u.used_bytes, 301);
	cr_assert_eq(u.first_upload_ms, h0 + 20 * LEDGER_HOUR_MS);
	cr_assert_eq(u.reset_at_ms, h0 + 45 * LEDGER_HOUR_MS);
	teardown();
}

/* The promise at every minute of an hour: bytes counted at t still count at t + 24 h - 1 ms
 * (the old 24 buckets dropped an hh:59 count 23 h 01 m later), and not past the end of the
 * hour 24 h later. */
Test(ledger, rolling_window_never_frees_bytes_before_24_hours)
{
	setup_named(64, LEDGER_WINDOW_ROLLING);
	int64_t h0 = (T0 / LEDGER_HOUR_MS) * LEDGER_HOUR_MS;
	for (int minute = 0; minute < 60; minute++) {
		char acct[16];
		snprintf(acct, sizeof(acct), "sa%d", minute);
		int32_t row;
		cr_assert_eq(ledger_row_get(&L, "media", acct, &row), LEDGER_OK);
		int64_t t = h0 + minute * 60000LL + 59999;
		cr_assert_eq(ledger_add(&L, row, 1000, t), LEDGER_OK);
		struct ledger_usage u = usage_of(row);
		cr_assert_eq(ledger_usage_used(&u, LEDGER_WINDOW_ROLLING, t + LEDGER_DAY_MS - 1), 1000,
			     "bytes counted at minute %d freed before 24 h", minute);
		cr_assert_eq(ledger_usage_remaining(&u, 1000000, LEDGER_WINDOW_ROLLING,
						    t + LEDGER_DAY_MS - 1), 1000000 - 1000);
		cr_assert_geq(u.reset_at_ms, t + LEDGER_DAY_MS, "minute %d: reset_at too early",
			      minute);
		cr_assert_eq(ledger_usage_used(&u, LEDGER_WINDOW_ROLLING, h0 + 25 * LEDGER_HOUR_MS),
			     0, "minute %d: held past the end of hour 24", minute);
		/* And in the live row: an expiry run a moment before 24 h keeps the bytes. */
		cr_assert_eq(ledger_expire(&L, t + LEDGER_DAY_MS - 1) >= 0, 1);
		cr_assert_eq(usage_of(row).used_bytes, 1000, "minute %d: expired early", minute);
	}
	teardown();
}

/* A clock set back leaves hour buckets in the future. They count (the bytes were uploaded),
 * and the live ledger moves them to the current hour, where no later hour's bucket can reuse
 * their slot and drop them. */
Test(ledger, rolling_buckets_in_the_future_count_and_are_clamped_in_the_live_ledger)
{
	setup_named(16, LEDGER_WINDOW_ROLLING);
	int32_t row;
	cr_assert_eq(ledger_row_get(&L, "media", "sa1", &row), LEDGER_OK);
	int64_t h0 = (T0 / LEDGER_HOUR_MS) * LEDGER_HOUR_MS;
	cr_assert_eq(ledger_add(&L, row, 700, h0 + 30 * LEDGER_HOUR_MS), LEDGER_OK);
	/* The clock goes back 30 hours: the 700 bytes still count before any write... */
	int64_t back = h0 + 10;
	struct ledger_usage u = usage_of(row);
	cr_assert_eq(ledger_usage_used(&u, LEDGER_WINDOW_ROLLING, back), 700);
	cr_assert_eq(ledger_usage_remaining(&u, 1000000, LEDGER_WINDOW_ROLLING, back), 1000000 - 700);
	/* ...and after an expiry they sit in the current hour, for 24 h from now at least. */
	cr_assert_geq(ledger_expire(&L, back), 1);
	u = usage_of(row);
	cr_assert_eq(u.used_bytes, 700);
	for (int i = 0; i < LEDGER_HOURS; i++)
		cr_assert_leq(u.hour_index[i], back / LEDGER_HOUR_MS, "bucket %d still in the future",
			      i);
	cr_assert_eq(ledger_usage_used(&u, LEDGER_WINDOW_ROLLING, back + LEDGER_DAY_MS), 700);
	cr_assert_leq(u.reset_at_ms, back + LEDGER_DAY_MS + LEDGER_HOUR_MS);
	/* An upload in the hour 25 before the future one (whose bucket it shared before the
	 * clamp) adds to them instead of replacing them. */
	cr_assert_eq(ledger_add(&L, row, 5, h0 + 5 * LEDGER_HOUR_MS), LEDGER_OK);
	cr_assert_eq(usage_of(row).used_bytes, 705);
	teardown();
}

/* The same for a fixed window: a window that starts in the future starts now and ends no more
 * than a day later, with its bytes. */
Test(ledger, fixed_window_in_the_future_is_clamped_in_the_live_ledger)
{
	setup_named(16, LEDGER_WINDOW_FIXED);
	int32_t row;
	cr_assert_eq(ledger_row_get(&L, "media", "sa1", &row), LEDGER_OK);
	cr_assert_eq(ledger_add(&L, row, 900, T0 + 10 * LEDGER_DAY_MS), LEDGER_OK);
	cr_assert_geq(ledger_expire(&L, T0), 1);
	struct ledger_usage u = usage_of(row);
	cr_assert_eq(u.used_bytes, 900);
	cr_assert_eq(u.first_upload_ms, T0);
	cr_assert_eq(u.reset_at_ms, T0 + LEDGER_DAY_MS);
	cr_assert_eq(ledger_usage_used(&u, LEDGER_WINDOW_FIXED, T0 + LEDGER_DAY_MS - 1), 900);
	teardown();
}

/* n accounts sa0.. of uploader media, account i with bytes(i) added at T0 + i * step_ms. */
static void add_accounts(int32_t *rows, int n, int64_t base_bytes, int64_t per_row, int64_t step_ms)
{
	for (int i = 0; i < n; i++) {
		char acct[16];
		snprintf(acct, sizeof(acct), "sa%d", i);
		cr_assert_eq(ledger_row_get(&L, "media", acct, &rows[i]), LEDGER_OK);
		cr_assert_eq(ledger_add(&L, rows[i], base_bytes + per_row * i, T0 + i * step_ms),
			     LEDGER_OK);
	}
}

/* ---- a window switched under a live ledger (ledger_set_window) ---- */

/* A fixed row seen through the rolling window keeps its bytes until its reset, and no more
 * than an hour longer; a rolling row seen through the fixed window keeps the buckets' sum for
 * 24 h after the last moment of its earliest hour. */
Test(ledger, a_row_converted_between_windows_keeps_its_bytes_as_long_as_it_must)
{
	int64_t now = T0, reset = T0 + 7 * LEDGER_HOUR_MS + 123;
	struct ledger_usage u = { .used_bytes = 5000, .files = 3, .first_upload_ms = reset - LEDGER_DAY_MS,
				  .reset_at_ms = reset };
	struct ledger_usage fixed = u;
	ledger_usage_convert(&u, LEDGER_WINDOW_FIXED, LEDGER_WINDOW_ROLLING, now);
	/* Right under both windows at once: the fixed fields are untouched. */
	cr_assert_eq(ledger_usage_used(&u, LEDGER_WINDOW_FIXED, now), 5000);
	cr_assert_eq(u.reset_at_ms, fixed.reset_at_ms);
	cr_assert_eq(ledger_usage_used(&u, LEDGER_WINDOW_ROLLING, now), 5000);
	cr_assert_eq(ledger_usage_used(&u, LEDGER_WINDOW_ROLLING, reset - 1), 5000);
	cr_assert_eq(ledger_usage_used(&u, LEDGER_WINDOW_ROLLING, reset + LEDGER_HOUR_MS), 0);
	/* Converting again adds nothing. */
	struct ledger_usage again = u;
	ledger_usage_convert(&again, LEDGER_WINDOW_FIXED, LEDGER_WINDOW_ROLLING, now);
	cr_assert_eq(memcmp(&again, &u, sizeof(u)), 0);

	/* Rolling to fixed: 100 bytes 20 h ago, 200 now. */
	int64_t h = now / LEDGER_HOUR_MS;
	struct ledger_usage r = { .files = 2 };
	r.hour_index[(h - 20) % LEDGER_HOURS] = h - 20;
	r.hour_bytes[(h - 20) % LEDGER_HOURS] = 100;
	r.hour_index[h % LEDGER_HOURS] = h;
	r.hour_bytes[h % LEDGER_HOURS] = 200;
	ledger_usage_convert(&r, LEDGER_WINDOW_ROLLING, LEDGER_WINDOW_FIXED, now);
	cr_assert_eq(r.used_bytes, 300);
	cr_assert_eq(r.files, 2);
	cr_assert_eq(r.first_upload_ms, (h - 19) * LEDGER_HOUR_MS - 1, "the earliest hour's end");
	cr_assert_eq(r.reset_at_ms, r.first_upload_ms + LEDGER_DAY_MS);
	cr_assert_eq(ledger_usage_used(&r, LEDGER_WINDOW_FIXED, (h - 20) * LEDGER_HOUR_MS +
				       LEDGER_DAY_MS + LEDGER_HOUR_MS - 2), 300);
	cr_assert_eq(ledger_usage_used(&r, LEDGER_WINDOW_ROLLING, now), 300, "still right as rolling");
	/* A rolling row with nothing left in its window is an empty fixed row. */
	struct ledger_usage old = { .used_bytes = 9, .files = 1 };
	old.hour_index[(h - 30) % LEDGER_HOURS] = h - 30;
	old.hour_bytes[(h - 30) % LEDGER_HOURS] = 9;
	ledger_usage_convert(&old, LEDGER_WINDOW_ROLLING, LEDGER_WINDOW_FIXED, now);
	cr_assert_eq(ledger_usage_used(&old, LEDGER_WINDOW_FIXED, now), 0);
}

/* The reported defect: 5.2 MB under fixed, then quota.window "rolling" with the object alive,
 * and every account read empty. */
Test(ledger, switching_the_window_of_a_live_ledger_keeps_every_account_s_bytes)
{
	setup_named(64, LEDGER_WINDOW_FIXED);
	int32_t rows[3];
	add_accounts(rows, 3, 1000, 1000, LEDGER_HOUR_MS);
	int64_t now = T0 + 3 * LEDGER_HOUR_MS;
	cr_assert_eq(ledger_set_window(&L, LEDGER_WINDOW_ROLLING, 777777, now), 3);
	cr_assert_eq(L.hdr->window, LEDGER_WINDOW_ROLLING);
	cr_assert_eq(L.hdr->daily_bytes, 777777);
	for (int i = 0; i < 3; i++) {
		struct ledger_usage u = usage_of(rows[i]);
		cr_assert_eq(ledger_usage_used(&u, LEDGER_WINDOW_ROLLING, now), 1000 * (i + 1));
		/* Kept until the fixed window's reset (T0 + i h + 24 h). */
		cr_assert_eq(ledger_usage_used(&u, LEDGER_WINDOW_ROLLING,
					       T0 + i * LEDGER_HOUR_MS + LEDGER_DAY_MS - 1), 1000 * (i + 1));
	}
	/* Writes go on under the new window; and back to fixed keeps the sum. */
	cr_assert_eq(ledger_add(&L, rows[0], 5, now), LEDGER_OK);
	cr_assert_eq(usage_of(rows[0]).used_bytes, 1005);
	cr_assert_eq(ledger_set_window(&L, LEDGER_WINDOW_FIXED, 777777, now), 3);
	cr_assert_eq(L.hdr->window, LEDGER_WINDOW_FIXED);
	struct ledger_usage u = usage_of(rows[0]);
	cr_assert_eq(ledger_usage_used(&u, LEDGER_WINDOW_FIXED, now), 1005);
	cr_assert_geq(u.reset_at_ms, T0 + LEDGER_DAY_MS);
	/* The same window again changes nothing. */
	uint64_t gen = atomic_load(&L.hdr->row_generation);
	cr_assert_eq(ledger_set_window(&L, LEDGER_WINDOW_FIXED, 777777, now), 0);
	cr_assert_eq(atomic_load(&L.hdr->row_generation), gen);
	/* A reader's copy names the window its rows are in. */
	struct ledger_copy c;
	cr_assert_eq(ledger_copy_init(&L, &c), LEDGER_OK);
	cr_assert_eq(ledger_read(&L, &c, 1000), LEDGER_OK);
	cr_assert_eq(c.window, LEDGER_WINDOW_FIXED);
	cr_assert_eq(c.daily_bytes, 777777);
	ledger_copy_free(&c);
	teardown();
}

static int writes_seen;
static int kill_after_writes;
static void kill_after_n(enum ledger_fault_point p)
{
	if (p == LEDGER_FAULT_APPLIED && ++writes_seen == kill_after_writes)
		raise(SIGKILL);
}

/* A converter killed after some rows: every row reads right whichever window the header still
 * names, and the next conversion finishes the job without counting anything twice. */
Test(ledger, a_conversion_killed_half_way_leaves_every_row_right_and_finishes_next_time,
     .timeout = 30)
{
	setup_named(64, LEDGER_WINDOW_FIXED);
	int32_t rows[6];
	add_accounts(rows, 6, 100, 1, 0);
	int64_t now = T0 + LEDGER_HOUR_MS;
	pid_t kid = test_fork();
	cr_assert_geq(kid, 0);
	if (kid == 0) {
		kill_after_writes = 3;
		ledger_fault_hook = kill_after_n;
		ledger_set_window(&L, LEDGER_WINDOW_ROLLING, 1000000, now);
		_exit(0);
	}
	int st = wait_child(kid);
	cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
	cr_assert_eq(ledger_recover(&L, 1000), LEDGER_OK);
	cr_assert_eq(L.hdr->window, LEDGER_WINDOW_FIXED, "the header is flipped last");
	for (int i = 0; i < 6; i++) {
		struct ledger_usage u = usage_of(rows[i]);
		cr_assert_eq(ledger_usage_used(&u, LEDGER_WINDOW_FIXED, now), 100 + i, "row %d", i);
	}
	/* A writer under the old window in between, then the conversion again. */
	cr_assert_eq(ledger_add(&L, rows[0], 7, now), LEDGER_OK);
	cr_assert_geq(ledger_set_window(&L, LEDGER_WINDOW_ROLLING, 1000000, now), 1);
	cr_assert_eq(L.hdr->window, LEDGER_WINDOW_ROLLING);
	for (int i = 0; i < 6; i++) {
		struct ledger_usage u = usage_of(rows[i]);
		cr_assert_eq(ledger_usage_used(&u, LEDGER_WINDOW_ROLLING, now), 100 + i + (i ? 0 : 7),
			     "row %d", i);
	}
	teardown();
}

/* ---- who holds a slot, who writes the file ---- */

Test(ledger, a_process_is_known_by_its_pid_and_start_time)
{
	uint64_t start;
	cr_assert_eq(proc_start_time(getpid(), &start), 0);
	cr_assert(proc_alive(getpid(), start));
	cr_assert(proc_alive(getpid(), 0));
	cr_assert_not(proc_alive(getpid(), start + 1), "another process that got our pid");
	pid_t kid = fork();
	cr_assert_geq(kid, 0);
	if (kid == 0)
		_exit(0);
	/* Dead but not reaped: a zombie does not run. */
	for (int i = 0; i < 2000; i++) {
		char state_path[64], buf[256];
		snprintf(state_path, sizeof(state_path), "/proc/%d/stat", (int)kid);
		FILE *f = fopen(state_path, "r");
		size_t n = f ? fread(buf, 1, sizeof(buf) - 1, f) : 0;
		if (f)
			fclose(f);
		buf[n] = '\0';
		if (strstr(buf, ") Z "))
			break;
		usleep(1000);
	}
	cr_assert_not(proc_alive(kid, 0));
	wait_child(kid);
	cr_assert_not(proc_alive(kid, 0));
	cr_assert_not(proc_alive(-1, 0));
}

Test(ledger, a_stage_slot_records_its_worker_s_start_time, .init = setup, .fini = teardown)
{
	int32_t row, slot = claim_stage("sa1", &row);
	uint64_t start;
	cr_assert_eq(proc_start_time(getpid(), &start), 0);
	cr_assert_eq(L.stages[slot].pid_start, start);
	cr_assert(ledger_stage_holder_alive(&L.stages[slot]));
	/* The worker's own updates carry no start time: the claim's stays. */
	struct ledger_stage upd = L.stages[slot];
	upd.pid_start = 0;
	upd.files_total = 9;
	cr_assert_eq(ledger_stage_update(&L, slot, &upd), LEDGER_OK);
	cr_assert_eq(L.stages[slot].pid_start, start);
	/* The same pid with another start time is another process: the holder is gone. */
	struct ledger_stage reused = L.stages[slot];
	reused.pid_start = start - 1;
	cr_assert_not(ledger_stage_holder_alive(&reused));
}

Test(ledger, the_flusher_s_identity_is_recorded_and_cleared_by_itself_only, .init = setup,
     .fini = teardown)
{
	cr_assert_not(ledger_flusher_alive(&L));
	ledger_flusher_set(&L, getpid());
	cr_assert(ledger_flusher_alive(&L));
	ledger_flusher_clear(&L, getpid() + 1);
	cr_assert(ledger_flusher_alive(&L), "cleared by another flusher");
	ledger_flusher_clear(&L, getpid());
	cr_assert_not(ledger_flusher_alive(&L));
	/* Recorded, then another process with its pid: not alive. */
	ledger_flusher_set(&L, getpid());
	atomic_fetch_add(&L.hdr->flusher_start, 1);
	cr_assert_not(ledger_flusher_alive(&L));
}

Test(ledger, a_file_writer_killed_holding_the_flush_lock_does_not_block_the_next,
     .init = setup, .fini = teardown, .timeout = 30)
{
	pid_t kid = test_fork();
	cr_assert_geq(kid, 0);
	if (kid == 0) {
		ledger_flush_lock(&L);
		raise(SIGKILL);
	}
	wait_child(kid);
	cr_assert_eq(ledger_flush_lock(&L), LEDGER_OK);
	ledger_flush_unlock(&L);
	cr_assert_eq(ledger_flush_lock(&L), LEDGER_OK);
	ledger_flush_unlock(&L);
}

Test(ledger, attach_refuses_an_own_object_other_users_may_open, .init = setup,
     .fini = teardown)
{
	char path[128];
	snprintf(path, sizeof(path), "/dev/shm%s", shm_name);
	cr_assert_eq(chmod(path, 0644), 0);
	struct ledger l;
	cr_assert_eq(ledger_attach(shm_name, 1, &l), LEDGER_ERR_FOREIGN);
	char owner[256];
	ledger_describe_owner(shm_name, owner, sizeof(owner));
	cr_assert(strstr(owner, "mode 0644"), "%s", owner);
}

Test(ledger, ban_and_unban_keep_usage, .init = setup, .fini = teardown)
{
	int32_t row;
	cr_assert_eq(ledger_row_get(&L, "media", "sa1", &row), LEDGER_OK);
	cr_assert_eq(ledger_add(&L, row, 100, T0), LEDGER_OK);
	cr_assert_eq(ledger_ban(&L, row, T0 + 25 * LEDGER_HOUR_MS, "User rate limit exceeded", T0),
		     LEDGER_OK);
	struct ledger_usage u = usage_of(row);
	cr_assert_eq(u.banned_until_ms, T0 + 25 * LEDGER_HOUR_MS);
	cr_assert_str_eq(u.ban_cause, "User rate limit exceeded");
	cr_assert_eq(u.used_bytes, 100);
	cr_assert_eq(ledger_unban(&L, row, T0 + 1), LEDGER_OK);
	u = usage_of(row);
	cr_assert_eq(u.banned_until_ms, 0);
	cr_assert_str_empty(u.ban_cause);
	cr_assert_eq(u.used_bytes, 100);
	cr_assert_eq(ledger_reset_row(&L, row, T0 + 2), LEDGER_OK);
	cr_assert_eq(usage_of(row).used_bytes, 0);
}

Test(ledger, stage_slots_claim_update_release, .init = setup, .fini = teardown)
{
	int32_t row, slot;
	cr_assert_eq(ledger_row_get(&L, "media", "sa1", &row), LEDGER_OK);
	struct ledger_stage s = { .row = row, .pid = 42, .stage_number = 1 };
	snprintf(s.strategy, sizeof(s.strategy), "aggressive_fresh_sa");
	cr_assert_eq(ledger_stage_claim(&L, &s, &slot), LEDGER_OK);
	cr_assert_eq(ledger_add_for_stage(&L, slot, 10, T0), LEDGER_OK);
	s.rc_speed = 1000;
	s.files_done = 999; /* a stats update must not roll the counters */
	cr_assert_eq(ledger_stage_update(&L, slot, &s), LEDGER_OK);
	struct ledger_copy c;
	cr_assert_eq(ledger_copy_init(&L, &c), LEDGER_OK);
	cr_assert_eq(ledger_read(&L, &c, 100), LEDGER_OK);
	cr_assert_eq(c.stages[slot].state, LEDGER_STAGE_RUNNING);
	cr_assert_eq(c.stages[slot].files_done, 1);
	cr_assert_eq(c.stages[slot].rc_speed, 1000);
	cr_assert_str_eq(c.stages[slot].strategy, "aggressive_fresh_sa");
	cr_assert_eq(ledger_stage_release(&L, slot), LEDGER_OK);
	cr_assert_eq(ledger_read(&L, &c, 100), LEDGER_OK);
	cr_assert_eq(c.stages[slot].state, LEDGER_STAGE_FREE);
	ledger_copy_free(&c);
}

Test(ledger, name_is_stable_per_config_and_user)
{
	char a[128], b[128], c[128];
	cr_assert_eq(ledger_name_for("/etc/cplow/config.json", a, sizeof(a)), LEDGER_OK);
	cr_assert_eq(ledger_name_for("/etc/cplow/config.json", b, sizeof(b)), LEDGER_OK);
	cr_assert_eq(ledger_name_for("/etc/cplow/other.json", c, sizeof(c)), LEDGER_OK);
	cr_assert_str_eq(a, b);
	cr_assert_str_neq(a, c);
	char prefix[32];
	snprintf(prefix, sizeof(prefix), "/cplow-%u-", (unsigned)geteuid());
	cr_assert_eq(strncmp(a, prefix, strlen(prefix)), 0, "%s", a);
}

/* ---- the session's totals ---- */

static struct ledger_session session_of(void)
{
	struct ledger_copy c;
	cr_assert_eq(ledger_copy_init(&L, &c), LEDGER_OK);
	cr_assert_eq(ledger_read(&L, &c, 1000), LEDGER_OK);
	struct ledger_session s = c.session;
	ledger_copy_free(&c);
	return s;
}

/* A stage on row that started at started_ms and completed `files` files of 100 bytes. */
static int32_t stage_with_files(int32_t row, int64_t started_ms, int files)
{
	int32_t slot;
	struct ledger_stage init = { .row = row, .pid = getpid(), .started_at_ms = started_ms };
	cr_assert_eq(ledger_stage_claim(&L, &init, &slot), LEDGER_OK);
	for (int i = 0; i < files; i++)
		cr_assert_eq(ledger_add_for_stage(&L, slot, 100, started_ms + 1), LEDGER_OK);
	return slot;
}

Test(ledger, released_stages_fold_into_the_session_totals, .init = setup, .fini = teardown)
{
	int32_t row;
	cr_assert_eq(ledger_row_get(&L, "media", "sa1", &row), LEDGER_OK);
	/* A dead run's stage, released after the new session started: not this session's. */
	int32_t old = stage_with_files(row, T0 - 5, 4);
	cr_assert_eq(ledger_session_start(&L, T0), LEDGER_OK);
	struct ledger_session s = session_of();
	cr_assert_eq(s.started_ms, T0);
	cr_assert_eq(s.files + s.bytes + s.stages, 0);
	cr_assert_eq(ledger_stage_release(&L, old), LEDGER_OK);
	s = session_of();
	cr_assert_eq(s.files + s.bytes + s.stages, 0, "a stage from before the session counted");

	int32_t a = stage_with_files(row, T0 + 10, 3);
	cr_assert_eq(ledger_stage_release(&L, a), LEDGER_OK);
	int32_t b = stage_with_files(row, T0 + 20, 2);
	cr_assert_eq(ledger_stage_release(&L, b), LEDGER_OK);
	cr_assert_eq(ledger_stage_release(&L, b), LEDGER_OK); /* a free slot adds nothing */
	s = session_of();
	cr_assert_eq(s.files, 5);
	cr_assert_eq(s.bytes, 500);
	cr_assert_eq(s.stages, 2);
	cr_assert_eq(usage_of(row).used_bytes, 900, "the row is untouched by the session");

	cr_assert_eq(ledger_session_start(&L, T0 + 100), LEDGER_OK);
	s = session_of();
	cr_assert_eq(s.started_ms, T0 + 100);
	cr_assert_eq(s.files + s.bytes + s.stages, 0);
}

Test(ledger, release_killed_at_each_point_counts_the_stage_in_the_session_exactly_once,
     .init = setup, .fini = teardown, .timeout = 60)
{
	int32_t row;
	cr_assert_eq(ledger_row_get(&L, "media", "sa1", &row), LEDGER_OK);
	cr_assert_eq(ledger_session_start(&L, T0), LEDGER_OK);
	int64_t files = 0, stages = 0;
	for (int p = 0; p < LEDGER_FAULT_POINTS; p++) {
		int32_t slot = stage_with_files(row, T0 + p, 2);
		pid_t kid = test_fork();
		cr_assert_geq(kid, 0);
		if (kid == 0) {
			kill_at = (enum ledger_fault_point)p;
			ledger_fault_hook = kill_self;
			ledger_stage_release(&L, slot);
			_exit(0); /* not reached */
		}
		int st = wait_child(kid);
		cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "point %d", p);
		/* The next writer inherits the lock and finishes or drops the release. */
		cr_assert_eq(ledger_add(&L, row, 1, T0), LEDGER_OK, "point %d", p);
		struct ledger_copy c;
		cr_assert_eq(ledger_copy_init(&L, &c), LEDGER_OK);
		cr_assert_eq(ledger_read(&L, &c, 1000), LEDGER_OK);
		int redone = p >= LEDGER_FAULT_INTENT_LOGGED;
		cr_assert_eq(c.stages[slot].state, redone ? LEDGER_STAGE_FREE : LEDGER_STAGE_RUNNING,
			     "point %d", p);
		ledger_copy_free(&c);
		if (!redone) /* dropped whole: releasing again counts it now, once */
			cr_assert_eq(ledger_stage_release(&L, slot), LEDGER_OK);
		files += 2;
		stages++;
		struct ledger_session s = session_of();
		cr_assert_eq(s.files, files, "point %d: %lld != %lld", p, (long long)s.files,
			     (long long)files);
		cr_assert_eq(s.bytes, 100 * files, "point %d", p);
		cr_assert_eq(s.stages, stages, "point %d", p);
		cr_assert_eq(atomic_load(&L.hdr->seq) & 1, 0);
		cr_assert_eq(atomic_load(&L.hdr->intent.op), LEDGER_OP_NONE);
	}
	/* Starting a session, killed at each point: either the old totals or zero, never a mix. */
	for (int p = 0; p < LEDGER_FAULT_POINTS; p++) {
		struct ledger_session before = session_of();
		pid_t kid = test_fork();
		cr_assert_geq(kid, 0);
		if (kid == 0) {
			kill_at = (enum ledger_fault_point)p;
			ledger_fault_hook = kill_self;
			ledger_session_start(&L, T0 + 1000 + p);
			_exit(0);
		}
		int st = wait_child(kid);
		cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "point %d", p);
		cr_assert_eq(ledger_add(&L, row, 1, T0), LEDGER_OK);
		struct ledger_session s = session_of();
		if (p >= LEDGER_FAULT_INTENT_LOGGED) {
			cr_assert_eq(s.started_ms, T0 + 1000 + p, "point %d", p);
			cr_assert_eq(s.files + s.bytes + s.stages, 0, "point %d", p);
		} else {
			cr_assert(memcmp(&s, &before, sizeof(s)) == 0, "point %d", p);
		}
		/* Keep a count to lose on the next round. */
		cr_assert_eq(ledger_stage_release(&L, stage_with_files(row, T0 + 2000, 1)), LEDGER_OK);
	}
}
