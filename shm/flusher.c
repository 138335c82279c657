#include "flusher.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <time.h>

#include "ledger.h"
#include "ledger_file.h"
#include "log.h"
#include "sandbox.h"

/* A reader that cannot get a consistent copy within this reports the ledger as stuck. */
#define FLUSHER_READ_TIMEOUT_MS 1000
/* Upper bound on one idle wait, so a missed wake-up costs at most this much. */
#define FLUSHER_IDLE_WAIT_MS 1000

static volatile sig_atomic_t flusher_stop;
static volatile sig_atomic_t flusher_now;
static struct ledger *flusher_ledger;

static void on_signal(int sig)
{
	if (sig == SIGUSR1)
		flusher_now = 1;
	else
		flusher_stop = 1;
	/* Bumps the futex word, so a wait that has not begun yet returns at once. */
	if (flusher_ledger)
		ledger_wake(flusher_ledger);
}

static void install_handlers(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	/* No SA_RESTART: a pending stop must interrupt the throttle sleep and the futex wait. */
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGUSR1, &sa, NULL);
	sigset_t unblock;
	sigemptyset(&unblock);
	sigaddset(&unblock, SIGTERM);
	sigaddset(&unblock, SIGINT);
	sigaddset(&unblock, SIGUSR1);
	sigprocmask(SIG_UNBLOCK, &unblock, NULL);
}

static void sleep_ms(int64_t ms)
{
	struct timespec ts = { (time_t)(ms / 1000), (long)(ms % 1000) * 1000000L };
	nanosleep(&ts, NULL); /* EINTR is the point: a signal ends the wait */
}

/* Writes the file from a fresh copy; *written becomes the row_generation it holds. Only row
 * writes move row_generation (stage slots, written many times a second, are not in the file),
 * so the loop calls this only when the file's content changed. */
static int flush_once(struct ledger *l, struct ledger_copy *copy, const char *path,
		      uint64_t *written)
{
	char err[LEDGER_FILE_ERR_MAX];
	int rc = ledger_read(l, copy, FLUSHER_READ_TIMEOUT_MS);
	if (rc != LEDGER_OK) {
		log_error("cannot snapshot the ledger: %s", ledger_strerror(rc));
		ledger_note_flush(l, 0, 0, 0);
		return -1;
	}
	int64_t now = ledger_now_ms();
	if (ledger_file_write(copy, path, now, err, sizeof(err)) < 0) {
		log_error("cannot write the ledger file: %s; the next flush writes a new one", err);
		ledger_note_flush(l, 0, 0, 0);
		return -1;
	}
	ledger_note_flush(l, copy->generation, now, 1);
	*written = copy->row_generation;
	return 0;
}

int flusher_run(const struct flusher_options *opt)
{
	struct ledger l;
	struct ledger_copy copy;
	int interval = opt->flush_interval_ms > 0 ? opt->flush_interval_ms
						  : FLUSHER_DEFAULT_INTERVAL_MS;
	int rc = ledger_attach(opt->ledger_name, 1, &l);
	if (rc != LEDGER_OK) {
		log_error("cannot attach the ledger %s: %s", opt->ledger_name, ledger_strerror(rc));
		return 1;
	}
	if (ledger_copy_init(&l, &copy) != LEDGER_OK) {
		log_error("out of memory for a ledger copy");
		ledger_copy_free(&copy);
		ledger_detach(&l);
		return 1;
	}
	flusher_ledger = &l;
	install_handlers();
	ledger_file_keep_heap();
	/* From here on it reads shared memory and writes files; nothing else. */
	char err[256];
	if (sandbox_enter(SANDBOX_FLUSHER, NULL, 0, err, sizeof(err)) < 0)
		log_warn("running without a sandbox: %s", err);

	/* Write at start even without a change, so the file shows what a restart restored. */
	uint64_t written = (uint64_t)-1; /* the row_generation the file holds */
	int64_t last_write_ms = INT64_MIN / 2;
	int last_ok = 0;
	while (!flusher_stop) {
		if (atomic_load(&l.hdr->row_generation) == written && !flusher_now) {
			ledger_wait_change(&l, written, FLUSHER_IDLE_WAIT_MS);
			/* Woken without a row change (the idle bound, a signal): the file is still
			 * current, which the last-flush age shows. generation is read first, so it
			 * never claims a row change the file lacks. */
			uint64_t gen = atomic_load(&l.hdr->generation);
			if (last_ok && atomic_load(&l.hdr->row_generation) == written)
				ledger_note_flush_current(&l, gen, ledger_now_ms());
			continue;
		}
		/* The interval runs from the start of the last write, so a slow disk does not
		 * add its time to the next change's wait. */
		int64_t due = last_write_ms + interval - ledger_now_ms();
		if (due > 0 && !flusher_now) {
			sleep_ms(due);
			continue; /* re-check stop and the clock */
		}
		flusher_now = 0;
		last_write_ms = ledger_now_ms();
		last_ok = flush_once(&l, &copy, opt->cache_path, &written) == 0;
		if (!last_ok)
			written = (uint64_t)-1; /* retry after the interval even with no change */
	}
	/* Always one final write: a stop signal right after a change loses nothing, and a file
	 * removed while only stage slots changed (so nothing rewrote it) is there again. */
	last_ok = flush_once(&l, &copy, opt->cache_path, &written) == 0;
	flusher_ledger = NULL;
	ledger_copy_free(&copy);
	ledger_detach(&l);
	return last_ok ? 0 : 1;
}
