/*
 * ledger_demo: the ledger at work without rclone, for the README's first command until cplow
 * uploads for real. It creates (or reuses) the shared ledger of a demo config, restores it from
 * the ledger file, starts the flusher, lets several writer processes add "completed files" to
 * three accounts at once, stops the flusher with SIGTERM and checks that the file on disk holds
 * exactly what the writers added.
 *
 * usage: ledger_demo --config PATH [--writers N] [--files N]
 */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "flusher.h"
#include "ledger.h"
#include "ledger_file.h"

#define DEMO_ACCOUNTS 3
#define DEMO_MAX_WRITERS 16

static int run_writer(const char *name, int index, int files, _Atomic int64_t *added)
{
	struct ledger l;
	if (ledger_attach(name, 1, &l) != LEDGER_OK)
		return 1;
	char account[64];
	snprintf(account, sizeof(account), "/config/sa/sa%d.json", index % DEMO_ACCOUNTS + 1);
	int32_t row;
	if (ledger_row_get(&l, "demo", account, &row) != LEDGER_OK)
		return 1;
	srand((unsigned)(getpid() ^ time(NULL)));
	for (int i = 0; i < files; i++) {
		/* Between 1 MiB and 512 MiB, as a media folder's files are. */
		int64_t size = (int64_t)(1 + rand() % 512) << 20;
		if (ledger_add(&l, row, size, ledger_now_ms()) != LEDGER_OK)
			return 1;
		atomic_fetch_add(&added[index % DEMO_ACCOUNTS], size);
		struct timespec pause = { 0, (long)(2 + rand() % 8) * 1000000L };
		nanosleep(&pause, NULL); /* paces the demo like real uploads finishing */
	}
	ledger_detach(&l);
	return 0;
}

int main(int argc, char **argv)
{
	const char *config = NULL;
	int writers = 6, files = 100;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--config") && i + 1 < argc)
			config = argv[++i];
		else if (!strcmp(argv[i], "--writers") && i + 1 < argc)
			writers = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--files") && i + 1 < argc)
			files = atoi(argv[++i]);
		else
			config = NULL, i = argc;
	}
	if (!config || writers < 1 || writers > DEMO_MAX_WRITERS || files < 1) {
		fprintf(stderr, "usage: ledger_demo --config PATH [--writers 1..16] [--files N]\n");
		return 2;
	}
	char name[128], cache[PATH_MAX], used[PATH_MAX], err[1024];
	const char *slash = strrchr(config, '/');
	snprintf(cache, sizeof(cache), "%.*s/sa_quota_cache.json",
		 slash ? (int)(slash - config) : 1, slash ? config : ".");
	if (ledger_name_for(config, name, sizeof(name)) != LEDGER_OK)
		return 2;

	struct ledger l;
	ledger_unlink(name); /* the demo starts from the file, as after a reboot */
	struct ledger_options o = { 0 };
	int rc = ledger_create(name, &o, &l);
	if (rc != LEDGER_OK) {
		fprintf(stderr, "ledger_demo: cannot create %s: %s\n", name, ledger_strerror(rc));
		return 1;
	}
	if (ledger_file_restore(&l, cache, used, sizeof(used), err, sizeof(err)) < 0) {
		fprintf(stderr, "ledger_demo: %s\n", err);
		return 2;
	}
	printf("ledger %s restored from %s\n", name, *used ? used : "(no file yet: first run)");
	int64_t before[DEMO_ACCOUNTS] = { 0 };
	for (int a = 0; a < DEMO_ACCOUNTS; a++) {
		char account[64];
		int32_t row;
		snprintf(account, sizeof(account), "/config/sa/sa%d.json", a + 1);
		if (ledger_row_find(&l, "demo", account, &row) == LEDGER_OK)
			before[a] = l.rows[row].usage.used_bytes;
	}

	pid_t flusher = fork();
	if (flusher == 0) {
		struct flusher_options fo = { name, cache, FLUSHER_DEFAULT_INTERVAL_MS };
		_exit(flusher_run(&fo));
	}
	_Atomic int64_t *added = mmap(NULL, sizeof(int64_t) * DEMO_ACCOUNTS,
				      PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (added == MAP_FAILED)
		return 1;
	printf("%d writer processes adding %d files each to 3 accounts...\n", writers, files);
	pid_t kids[DEMO_MAX_WRITERS];
	for (int w = 0; w < writers; w++) {
		kids[w] = fork();
		if (kids[w] == 0)
			_exit(run_writer(name, w, files, added));
	}
	int failed = 0, st;
	for (int w = 0; w < writers; w++)
		if (waitpid(kids[w], &st, 0) != kids[w] || !WIFEXITED(st) || WEXITSTATUS(st))
			failed = 1;
	kill(flusher, SIGTERM);
	if (waitpid(flusher, &st, 0) != flusher || !WIFEXITED(st) || WEXITSTATUS(st))
		failed = 1;

	struct ledger_file f;
	if (ledger_file_load(cache, &f, err, sizeof(err)) != 0) {
		fprintf(stderr, "ledger_demo: %s: %s\n", cache, err);
		return 1;
	}
	for (int a = 0; a < DEMO_ACCOUNTS; a++) {
		char account[64];
		snprintf(account, sizeof(account), "/config/sa/sa%d.json", a + 1);
		int64_t on_disk = -1;
		for (size_t i = 0; i < f.count; i++)
			if (!strcmp(f.rows[i].uploader, "demo") && !strcmp(f.rows[i].account, account))
				on_disk = f.rows[i].usage.used_bytes;
		int64_t expect = before[a] + atomic_load(&added[a]);
		printf("%s: added %lld bytes this run, file says %lld, expected %lld: %s\n", account,
		       (long long)atomic_load(&added[a]), (long long)on_disk, (long long)expect,
		       on_disk == expect ? "exact" : "MISMATCH");
		if (on_disk != expect)
			failed = 1;
	}
	ledger_file_free(&f);
	ledger_detach(&l);
	return failed;
}
