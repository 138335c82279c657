#include "flusher.h"

#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ledger.h"
#include "ledger_file.h"
#include "clock.h"
#include "log.h"
#include "proc.h"
#include "procs.h"
#include "role.h"
#include "sandbox.h"

/* Upper bound on one idle wait, so a missed wake-up costs at most this much, and an orphaned
 * flusher notices within it that the last worker is gone. */
#define FLUSHER_IDLE_WAIT_MS 1000
/* After a failed write the next waits twice as long as the one before, up to this: a full disk
 * or a read-only mount is not retried (and logged) every interval. */
#define FLUSHER_BACKOFF_MAX_MS 5000

static struct ledger *flusher_ledger;

/* Called by the signal handler: bumps the futex word, so a wait that has not begun yet returns
 * at once. */
static void wake(void)
{
	if (flusher_ledger)
		ledger_wake(flusher_ledger);
}

static bool stop_asked(void)
{
	return *procs_signals_seen(SIGTERM) || *procs_signals_seen(SIGINT);
}

static void sleep_ms(int64_t ms)
{
	struct timespec ts = { (time_t)(ms / 1000), (long)(ms % 1000) * 1000000L };
	nanosleep(&ts, NULL); /* EINTR is the point: a signal ends the wait */
}

/* One episode of failed writes: logged when it starts (and when its error changes), once when
 * it ends. */
struct failures {
	unsigned count;
	int64_t since_ms;
	int64_t delay_ms;            /* before the next attempt */
	char last[LEDGER_FILE_ERR_MAX];
};

/* Writes the file from a fresh copy; *written becomes the row_generation it holds. Only row
 * writes move row_generation (stage slots, written many times a second, are not in the file),
 * so the loop calls this only when the file's content changed. */
static int flush_once(struct ledger *l, struct ledger_copy *copy, const char *path,
		      int interval_ms, uint64_t *written, struct failures *f)
{
	char err[LEDGER_FILE_ERR_MAX];
	int64_t now = ledger_now_ms();
	if (ledger_file_flush(l, copy, path, now, err, sizeof(err)) < 0) {
		if (f->count == 0 || strcmp(err, f->last) != 0)
			log_error("cannot write the ledger file: %s; trying again, less and less "
				  "often (every %d s at most), without logging it again unless the "
				  "error changes", err, FLUSHER_BACKOFF_MAX_MS / 1000);
		if (f->count++ == 0) {
			f->since_ms = now;
			f->delay_ms = interval_ms;
		} else {
			f->delay_ms *= 2;
			if (f->delay_ms > FLUSHER_BACKOFF_MAX_MS)
				f->delay_ms = FLUSHER_BACKOFF_MAX_MS;
		}
		snprintf(f->last, sizeof(f->last), "%s", err);
		return -1;
	}
	if (f->count)
		log_info("the ledger file is written again, after %u failed attempts in %lld s",
			 f->count, (long long)((now - f->since_ms + 500) / 1000));
	f->count = 0;
	*written = copy->row_generation;
	return 0;
}

/*
 * A supervisor that stops sends SIGTERM; one that was killed sends nothing, and its workers go
 * on counting (lines still in their pipes, the in-flight check) into shared memory. So once its
 * parent is gone the flusher stays, writing as before, until no process that may still count
 * holds a stage slot, or a new cplow (whose own flusher takes over) runs on this ledger.
 */
static bool orphan_done(struct ledger *l, struct ledger_copy *copy, pid_t parent,
			uint64_t parent_start)
{
	if (parent <= 0 || getppid() == parent)
		return false;
	int32_t sup = atomic_load(&l->hdr->supervisor_pid);
	uint64_t sup_start = atomic_load(&l->hdr->supervisor_start);
	if (sup > 0 && (sup != parent || sup_start != parent_start) && proc_alive(sup, sup_start))
		return true;
	int rc = ledger_read(l, copy, LEDGER_FILE_READ_TIMEOUT_MS);
	/* A writer that died mid-write, and may have no successor now (its supervisor killed
	 * inside a write): its write is finished here, and then flushed. */
	if (rc == LEDGER_ERR_STUCK && ledger_recover(l, LEDGER_FILE_READ_TIMEOUT_MS) == LEDGER_OK)
		rc = ledger_read(l, copy, LEDGER_FILE_READ_TIMEOUT_MS);
	if (rc != LEDGER_OK)
		return false;
	for (uint32_t i = 0; i < copy->slot_capacity; i++)
		if (copy->stages[i].state != LEDGER_STAGE_FREE &&
		    ledger_stage_holder_alive(&copy->stages[i]))
			return false;
	return true;
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
	/* No SA_RESTART: a pending stop must interrupt the throttle sleep and the futex wait. */
	static const int caught[] = { SIGTERM, SIGINT, SIGUSR1 };
	procs_signals_install(caught, 3, NULL, 0, PROCS_NO_RESTART, wake);
	ledger_file_keep_heap();
	ledger_flusher_set(&l, getpid());
	uint64_t parent_start = 0; /* a new cplow may get the dead one's pid */
	if (opt->parent_pid > 0 && proc_start_time(opt->parent_pid, &parent_start) < 0)
		parent_start = 0;
	/* From here on it reads shared memory and writes files; nothing else. */
	char err[256];
	if (sandbox_enter(role_table[ROLE_FLUSHER].sandbox, NULL, 0, err, sizeof(err)) < 0)
		log_warn("running without a sandbox: %s", err);

	/* Write at start even without a change, so the file shows what a restart restored. */
	uint64_t written = (uint64_t)-1; /* the row_generation the file holds */
	int64_t last_write_ms = INT64_MIN / 2;
	int last_ok = 0;
	bool orphaned = false, now = false; /* now: SIGUSR1 asked for a write at once */
	struct failures failures = { 0 };
	static const int flush_signal[] = { SIGUSR1 };
	while (!stop_asked()) {
		int asked;
		procs_signals_take(flush_signal, 1, &asked);
		now = now || asked;
		if (!orphaned && opt->parent_pid > 0 && getppid() != opt->parent_pid) {
			orphaned = true;
			log_warn("cplow (pid %d) is gone; writing the ledger file until its last "
				 "worker has ended", (int)opt->parent_pid);
		}
		if (orphaned && orphan_done(&l, &copy, opt->parent_pid, parent_start)) {
			log_info("no worker of cplow (pid %d) is left: a last write, and the flusher "
				 "ends", (int)opt->parent_pid);
			break;
		}
		if (atomic_load(&l.hdr->row_generation) == written && !now) {
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
		 * add its time to the next change's wait; after failures, the backoff's. */
		int64_t due = last_write_ms + (failures.count ? failures.delay_ms : interval) -
			      clock_mono_ms();
		if (due > 0 && !now) {
			sleep_ms(due < FLUSHER_IDLE_WAIT_MS ? due : FLUSHER_IDLE_WAIT_MS);
			continue; /* re-check stop, the parent and the clock */
		}
		now = false;
		last_write_ms = clock_mono_ms();
		last_ok = flush_once(&l, &copy, opt->cache_path, interval, &written,
				     &failures) == 0;
		if (!last_ok)
			written = (uint64_t)-1; /* retry after the backoff even with no change */
	}
	/* Always one final write: a stop signal right after a change loses nothing, and a file
	 * removed while only stage slots changed (so nothing rewrote it) is there again. */
	last_ok = flush_once(&l, &copy, opt->cache_path, interval, &written, &failures) == 0;
	ledger_flusher_clear(&l, getpid());
	flusher_ledger = NULL;
	ledger_copy_free(&copy);
	ledger_detach(&l);
	return last_ok ? 0 : 1;
}
