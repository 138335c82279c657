#include "worker.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ledger.h"
#include "lazy_curl.h"
#include "log.h"
#include "log_rate.h"
#include "rc_client.h"
#include "rclone_cmd.h"
#include "rclone_log.h"
#include "rclone_proc.h"
#include "reconcile.h"
#include "sandbox.h"
#include "source.h"
#include "triggers.h"

#define WORKER_RC_POLL_MS_DEFAULT 1000
#define WORKER_RC_TIMEOUT_MS 500
/* rclone ends a transfer within milliseconds of SIGTERM; past this it gets SIGKILL. */
#define WORKER_STOP_GRACE_MS 10000
#define WORKER_READ_CHUNK 65536
#define MAX_TRANSFER_TEXT "max transfer limit reached"
/* rclone says its first words ~100 ms after its exec; see worker_run. */
#define WORKER_FIRST_OUTPUT_WAIT_MS 1000
/* How stale the slot's record of opened files may get: a worker killed in this window can
 * leave a file that arrived whole unknown to the supervisor. */
#define WORKER_DRAIN_MS 20

struct worker {
	const struct stage_spec *spec;
	struct stage_outcome *out;
	struct ledger ledger;
	int32_t row, slot;
	struct ledger_stage stage;     /* our copy of the slot, for stats updates */
	struct source_index source;
	int watch_fd;                  /* inotify on the source: which files rclone opened */
	struct rclone_log_reader reader;
	struct rclone_log_event *event; /* 8.5 KiB: one, on the heap */
	struct triggers triggers;
	struct rc_client rc;
	int rc_ready;
	struct rc_stats stats;         /* 260 KiB: kept here, not on the stack */
	char rc_user[RC_CLIENT_USER_LEN + 1], rc_pass[RC_CLIENT_PASS_LEN + 1];
	struct rclone_cmd cmd, ls_cmd;
	struct rclone_proc proc;
	struct reconcile reconcile;
	char files_from[PATH_MAX];
	/* Copied paths the listing lacks (files that came into the source after it): their
	 * sizes are read from the remote when rclone has ended. */
	char **late;
	size_t late_count, late_cap;
	int stop_requested;            /* signals seen */
	int stop_sent;                 /* we told rclone to stop (signal or trigger) */
	int64_t stop_sent_ms;
	int64_t next_poll_ms;
	uint32_t bwlimit_seen;         /* the last bandwidth request applied */
	int64_t last_drain_ms;
	bool watch_pending;            /* the watch has events, not drained yet */
	struct log_rate read_rate;     /* whether rclone's log is read in batches */
	bool saw_max_transfer;         /* rclone said it reached --max-transfer */
};

static int worker_sigpipe[2] = { -1, -1 };
static volatile sig_atomic_t worker_signals;

static void on_stop_signal(int sig)
{
	(void)sig;
	worker_signals++;
	int saved = errno;
	ssize_t w = write(worker_sigpipe[1], "s", 1);
	(void)w; /* a full pipe already holds a wake-up */
	errno = saved;
}

static int install_signals(void)
{
	if (pipe2(worker_sigpipe, O_CLOEXEC | O_NONBLOCK) < 0)
		return -1;
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_stop_signal;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_RESTART;
	if (sigaction(SIGINT, &sa, NULL) < 0 || sigaction(SIGTERM, &sa, NULL) < 0)
		return -1;
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	return sigprocmask(SIG_UNBLOCK, &set, NULL);
}

const char *stage_result_name(enum stage_result r)
{
	static const char *const names[] = { "done", "max-transfer", "fatal", "nothing",
					     "triggered", "interrupted", "failed", "error" };
	return (unsigned)r < sizeof(names) / sizeof(names[0]) ? names[r] : "unknown";
}

/* ---- per-line work ---- */

/* One ledger write. Only a file recorded in the slot's open files needs its path looked up
 * there (to mark it counted in the same write); the rest skip that scan. */
static int count_file(struct worker *w, const struct source_entry *e)
{
	return ledger_add_for_stage_file(&w->ledger, w->slot,
					 (e->flags & SOURCE_NOTED) ? e->path : NULL, e->size,
					 ledger_now_ms());
}

static void note_late(struct worker *w, const char *path)
{
	if (w->late_count == w->late_cap) {
		size_t cap = w->late_cap ? w->late_cap * 2 : 16;
		void *p = realloc(w->late, cap * sizeof(*w->late));
		if (!p) {
			log_error("rclone copied %s, which was not in the listing, and there is no "
				  "memory to remember it: not counted", path);
			return;
		}
		w->late = p;
		w->late_cap = cap;
	}
	char *copy = strdup(path);
	if (!copy) {
		log_error("rclone copied %s, which was not in the listing, and there is no memory "
			  "to remember it: not counted", path);
		return;
	}
	w->late[w->late_count++] = copy;
	log_info("rclone copied %s, which was not in the listing (it came into the source during "
		 "the stage): counted from the remote when rclone ends", path);
}

/* The hot path: one completed file, counted once, at once. */
static void worker_on_copied(struct worker *w, const struct rclone_log_event *ev)
{
	if (w->cmd.dry_run)
		return; /* rclone --dry-run copies nothing, whatever a line says */
	if (ev->suspicious_path) {
		w->out->unknown_files++;
		log_warn("rclone reported %s outside the source; not counted", ev->object);
		return;
	}
	struct source_entry *e = source_find(&w->source, ev->object, ev->object_len);
	if (!e) {
		w->out->unknown_files++;
		note_late(w, ev->object);
		return;
	}
	if (source_mark_counted(e))
		return; /* a second Copied for one file (failed, then retried) counts once */
	int rc = count_file(w, e);
	if (rc != LEDGER_OK) {
		log_error("cannot record %s in the ledger: %s", ev->object, ledger_strerror(rc));
		return;
	}
	w->out->files++;
	w->out->bytes += e->size;
}

static void stop_rclone(struct worker *w, int sig)
{
	if (w->proc.pid <= 0)
		return;
	if (!w->stop_sent) {
		w->stop_sent = 1;
		w->stop_sent_ms = ledger_now_ms();
	}
	kill(w->proc.pid, sig);
}

static void worker_on_trigger(struct worker *w, int index)
{
	const struct triggers_fire *f = triggers_fired(&w->triggers);
	char cause[LEDGER_CAUSE_MAX];
	triggers_describe(&w->triggers, index, cause, sizeof(cause));
	int64_t now = ledger_now_ms();
	int rc = ledger_ban(&w->ledger, w->row, now + f->sleep_ms, cause, now);
	if (rc != LEDGER_OK)
		log_error("cannot record the ban: %s", ledger_strerror(rc));
	log_warn("account banned for %g h: %s", f->sleep_hours, cause);
	snprintf(w->out->trigger, sizeof(w->out->trigger), "%s", f->pattern);
	w->out->result = STAGE_TRIGGERED;
	stop_rclone(w, SIGTERM);
}

static void worker_on_line(void *ctx, const char *line, size_t len)
{
	struct worker *w = ctx;
	struct rclone_log_event *ev = w->event;
	switch (rclone_log_parse(line, len, ev)) {
	case RCLONE_LOG_COPIED:
		worker_on_copied(w, ev);
		break;
	case RCLONE_LOG_FAILED:
		w->out->failed_lines++;
		log_info("rclone: %.*s", (int)(ev->message_len > 300 ? 300 : ev->message_len),
			 ev->message);
		break;
	case RCLONE_LOG_RC_SERVING:
		if (w->rc_ready)
			break;
		if (rc_client_init(&w->rc, ev->rc_url, w->rc_user, w->rc_pass,
				   WORKER_RC_TIMEOUT_MS) == 0)
			w->rc_ready = 1;
		else
			log_warn("%s; this stage uploads and counts as always, without live speed "
				 "or ETA", w->rc.error);
		break;
	case RCLONE_LOG_MALFORMED:
		w->out->malformed_lines++;
		break;
	default:
		/* rclone's own errors, whole-run ones included, are worth a line of ours. */
		if (ev->level >= RCLONE_LOG_LEVEL_ERROR || (!ev->json && ev->message_len))
			log_warn("rclone: %.*s", (int)(ev->message_len > 300 ? 300 : ev->message_len),
				 ev->message);
		break;
	}
	size_t tlen;
	const char *text = rclone_log_trigger_text(ev, &tlen);
	if (!w->saw_max_transfer && tlen && memmem(text, tlen, MAX_TRANSFER_TEXT,
						     sizeof(MAX_TRANSFER_TEXT) - 1))
		w->saw_max_transfer = true;
	int fired = triggers_feed(&w->triggers, text, tlen, ledger_now_ms());
	if (fired >= 0)
		worker_on_trigger(w, fired);
}

/* ---- live stats ---- */

static void poll_stats(struct worker *w)
{
	struct rc_stats *st = &w->stats;
	if (!w->rc_ready || rc_client_stats(&w->rc, st) != 0)
		return;
	for (size_t i = 0; i < st->transferring_count; i++) {
		const char *name = st->transferring[i].name;
		struct source_entry *e = source_find(&w->source, name, strlen(name));
		if (e)
			source_mark_in_flight(e);
	}
	char rate[LEDGER_BWLIMIT_MAX];
	if (ledger_stage_take_bwlimit(&w->ledger, w->slot, &w->bwlimit_seen, rate, sizeof(rate))) {
		int rc = rc_client_bwlimit(&w->rc, rate, NULL);
		if (rc == RC_CLIENT_OK)
			log_info("bandwidth limit set to %s", rate);
		else
			log_warn("cannot set the bandwidth limit to %s: %s", rate, w->rc.error);
	}
	rc_client_stats_to_stage(st, &w->stage);
	w->stage.updated_at_ms = ledger_now_ms();
	ledger_stage_update(&w->ledger, w->slot, &w->stage);
}

/* ---- the stage ---- */

static int64_t mono_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int read_rclone(struct worker *w, char *buf)
{
	ssize_t n = read(w->proc.out_fd, buf, WORKER_READ_CHUNK);
	if (n < 0)
		return errno == EINTR || errno == EAGAIN ? 1 : 0;
	if (n == 0)
		return 0;
	log_rate_note(&w->read_rate, (size_t)n, mono_us());
	rclone_log_feed(&w->reader, buf, (size_t)n, worker_on_line, w);
	return 1;
}

/* Files rclone has opened go into the stage slot, where the supervisor finds them should this
 * worker die before it can check them itself. */
static void drain_watch(struct worker *w)
{
	if (w->watch_fd < 0)
		return;
	w->last_drain_ms = ledger_now_ms();
	w->watch_pending = false;
	if (source_watch_drain(&w->source) == SOURCE_WATCH_OVERFLOW)
		log_warn("too many file events at once; every unfinished file counts as in flight");
	size_t n;
	struct source_entry *const *fresh = source_take_opened(&w->source, &n);
	const char *paths[64];
	int64_t sizes[64];
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		if (fresh[i]->flags & SOURCE_COUNTED)
			continue;
		fresh[i]->flags |= SOURCE_NOTED;
		paths[k] = fresh[i]->path;
		sizes[k++] = fresh[i]->size;
		if (k == 64 || i + 1 == n) {
			ledger_stage_note_opens(&w->ledger, w->slot, paths, sizes, k);
			k = 0;
		}
	}
	if (k)
		ledger_stage_note_opens(&w->ledger, w->slot, paths, sizes, k);
}

/* Reads rclone's log until it closes, acting on signals, stats and the watch meanwhile. */
static void run_loop(struct worker *w)
{
	char *buf = malloc(WORKER_READ_CHUNK);
	if (!buf) {
		stop_rclone(w, SIGKILL);
		return;
	}
	int poll_ms = w->spec->rc_poll_ms > 0 ? w->spec->rc_poll_ms : WORKER_RC_POLL_MS_DEFAULT;
	w->next_poll_ms = ledger_now_ms() + poll_ms;
	for (;;) {
		/* The open-watch is drained at most every WORKER_DRAIN_MS: the kernel queues the
		 * opens, and a wake-up per file would cost more than the file's accounting. Once
		 * it has events waiting it leaves the poll set until its drain is due; with none,
		 * it costs no wake-up at all. */
		int64_t now = ledger_now_ms();
		int watching = w->watch_fd >= 0 && !w->watch_pending;
		int64_t batch_us = log_rate_batch_wait_us(&w->read_rate, mono_us());
		/* While batching, the pipe sits out this poll (a negative fd is ignored). */
		struct pollfd fds[3] = {
			{ batch_us ? -1 : w->proc.out_fd, POLLIN, 0 },
			{ worker_sigpipe[0], POLLIN, 0 },
			{ w->watch_fd, POLLIN, 0 },
		};
		int64_t timeout = w->next_poll_ms - now;
		if (batch_us && timeout > (batch_us + 999) / 1000)
			timeout = (batch_us + 999) / 1000;
		if (w->watch_pending && timeout > w->last_drain_ms + WORKER_DRAIN_MS - now)
			timeout = w->last_drain_ms + WORKER_DRAIN_MS - now;
		if (w->stop_sent && timeout > 100)
			timeout = 100;
		int n = poll(fds, watching ? 3 : 2, timeout > 0 ? (int)timeout : 0);
		if (n < 0 && errno != EINTR)
			break;
		if (watching && (fds[2].revents & POLLIN))
			w->watch_pending = true;
		if (w->watch_pending && ledger_now_ms() - w->last_drain_ms >= WORKER_DRAIN_MS)
			drain_watch(w);
		if (fds[1].revents & POLLIN) {
			char drain[16];
			while (read(worker_sigpipe[0], drain, sizeof(drain)) > 0)
				;
			if (!w->stop_requested && w->out->result != STAGE_TRIGGERED) {
				log_info("stop requested: stopping rclone");
				/* A last look at what is in flight before rclone goes. */
				poll_stats(w);
				w->out->result = STAGE_INTERRUPTED;
				stop_rclone(w, SIGTERM);
			} else if (worker_signals > 1) {
				stop_rclone(w, SIGKILL);
			}
			w->stop_requested = 1;
		}
		if (fds[0].revents & (POLLIN | POLLHUP)) {
			if (!read_rclone(w, buf))
				break;
		}
		now = ledger_now_ms();
		if (now >= w->next_poll_ms) {
			drain_watch(w);
			if (!w->stop_sent)
				poll_stats(w);
			w->next_poll_ms = now + poll_ms;
		}
		if (w->stop_sent && now - w->stop_sent_ms > WORKER_STOP_GRACE_MS)
			stop_rclone(w, SIGKILL);
	}
	rclone_log_finish(&w->reader, worker_on_line, w);
	drain_watch(w);
	free(buf);
}

static int count_in_flight(void *ctx, struct reconcile_candidate *c)
{
	struct worker *w = ctx;
	struct source_entry *e = c->user;
	if (e && source_mark_counted(e))
		return 1;
	int rc = e ? count_file(w, e)
		   : ledger_add_for_stage_file(&w->ledger, w->slot, NULL, c->size, ledger_now_ms());
	if (rc != LEDGER_OK) {
		log_error("cannot record %s in the ledger: %s", c->path, ledger_strerror(rc));
		return 1;
	}
	if (strcmp(w->spec->command, "move") == 0)
		reconcile_remove_arrived(w->spec->source, c);
	return 0;
}

struct candidates {
	struct reconcile_candidate *v;
	size_t n, cap;
};

static int add_candidate(void *ctx, struct source_entry *e)
{
	struct candidates *c = ctx;
	if (c->n == c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 64;
		void *p = realloc(c->v, cap * sizeof(*c->v));
		if (!p)
			return -1;
		c->v = p;
		c->cap = cap;
	}
	c->v[c->n++] = (struct reconcile_candidate){ .path = e->path, .size = e->size, .user = e };
	return 0;
}

static int by_string(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The late files, each once (rclone may report a file twice: failed, then retried). */
static int add_late(struct worker *w, struct candidates *c)
{
	if (w->late_count) /* qsort(NULL, 0) is undefined; UBSan's report then meets seccomp */
		qsort(w->late, w->late_count, sizeof(*w->late), by_string);
	for (size_t i = 0; i < w->late_count; i++) {
		if (i && strcmp(w->late[i], w->late[i - 1]) == 0)
			continue;
		struct source_entry fake = { .path = w->late[i], .size = RECONCILE_SIZE_ANY };
		if (add_candidate(c, &fake) != 0)
			return -1;
		c->v[c->n - 1].user = NULL;
	}
	return 0;
}

/* The files rclone started (or, without a working watch, every file) and never reported, when
 * it was cut short; and the files it copied that the listing lacks. */
static int check_in_flight(struct worker *w, bool cut, int64_t stopped_ms,
			   struct reconcile_result *r, char *err, size_t err_len)
{
	memset(r, 0, sizeof(*r));
	drain_watch(w);
	struct candidates c = { 0 };
	if ((cut && source_foreach(&w->source, source_reconcile_flags(&w->source), SOURCE_COUNTED,
				   add_candidate, &c) != 0) ||
	    add_late(w, &c) != 0) {
		free(c.v);
		reconcile_cancel(&w->reconcile);
		snprintf(err, err_len, "out of memory");
		return -1;
	}
	/* A Copied file is on the remote already: one look is enough. */
	if (!cut)
		reconcile_limit(&w->reconcile, 1);
	int rc = reconcile_run(&w->reconcile, c.v, c.n, stopped_ms, count_in_flight, w, r, err,
			       err_len);
	free(c.v);
	return rc;
}

static enum stage_result result_of(struct worker *w, int status)
{
	if (w->out->result == STAGE_TRIGGERED || w->out->result == STAGE_INTERRUPTED)
		return w->out->result;
	if (WIFSIGNALED(status))
		return STAGE_FAILED;
	/* rclone 1.60 cancels its directory listing at the cutoff, and a listing that was under
	 * way then fails the run with exit 1 instead of 8. */
	if (WEXITSTATUS(status) == 1 && w->saw_max_transfer)
		return STAGE_MAX_TRANSFER;
	switch (WEXITSTATUS(status)) {
	case 0: return STAGE_DONE;
	case 8: return STAGE_MAX_TRANSFER;
	case 7: return STAGE_FATAL;
	case 9: return STAGE_NOTHING;
	default: return STAGE_FAILED;
	}
}

static int prepare(struct worker *w, char *err, size_t err_len)
{
	const struct stage_spec *spec = w->spec;
	int rc = ledger_attach(spec->ledger_name, 1, &w->ledger);
	if (rc != LEDGER_OK) {
		snprintf(err, err_len, "cannot attach the ledger %s: %s", spec->ledger_name,
			 ledger_strerror(rc));
		return -1;
	}
	if ((rc = ledger_row_get(&w->ledger, spec->uploader, spec->account, &w->row)) != LEDGER_OK) {
		snprintf(err, err_len, "cannot add the account to the ledger: %s",
			 ledger_strerror(rc));
		return -1;
	}
	if (triggers_init(&w->triggers, spec->triggers, spec->trigger_count, err, err_len) < 0)
		return -1;
	if (rclone_log_reader_init(&w->reader, 0) < 0 ||
	    !(w->event = malloc(sizeof(*w->event)))) {
		snprintf(err, err_len, "out of memory");
		return -1;
	}
	if (rc_client_make_credentials(w->rc_user, sizeof(w->rc_user), w->rc_pass,
				       sizeof(w->rc_pass)) < 0) {
		snprintf(err, err_len, "cannot make RC credentials: %s", strerror(errno));
		return -1;
	}
	if (rclone_cmd_build(spec, w->rc_user, w->rc_pass, &w->cmd, err, err_len) < 0)
		return -1;
	if (w->cmd.note[0])
		log_warn("%s", w->cmd.note);
	snprintf(w->files_from, sizeof(w->files_from), "%s/inflight-%d-%d.txt",
		 spec->work_dir ? spec->work_dir : "/tmp", (int)getpid(), spec->stage_number);
	if (rclone_cmd_build_lsjson(spec, w->files_from, &w->ls_cmd, err, err_len) < 0)
		return -1;
	return 0;
}

/* The listing, the stage slot and the open-watch: after the forks, which stay cheap while the
 * worker has not yet grown by the listing. */
static int prepare_source(struct worker *w, char *err, size_t err_len)
{
	const struct stage_spec *spec = w->spec;
	int rc;
	if (source_list(spec->source, &w->source, err, err_len) < 0)
		return -1;
	memset(&w->stage, 0, sizeof(w->stage));
	w->stage.pid = (int32_t)getpid();
	w->stage.row = w->row;
	w->stage.stage_number = spec->stage_number;
	snprintf(w->stage.strategy, sizeof(w->stage.strategy), "%s",
		 spec->strategy ? spec->strategy : "");
	snprintf(w->stage.order_by, sizeof(w->stage.order_by), "%s",
		 spec->order_by ? spec->order_by : "");
	w->stage.max_transfer_bytes = spec->max_transfer_bytes;
	w->stage.max_size_bytes = spec->max_size_bytes;
	w->stage.transfers = spec->transfers;
	w->stage.max_backlog = spec->max_backlog;
	w->stage.started_at_ms = ledger_now_ms();
	w->stage.files_total = (int64_t)w->source.file_count;
	w->stage.bytes_total = w->source.total_bytes;
	w->stage.rc_eta_s = -1;
	if ((rc = ledger_stage_claim(&w->ledger, &w->stage, &w->slot)) != LEDGER_OK) {
		snprintf(err, err_len, "no stage slot: %s", ledger_strerror(rc));
		w->slot = -1;
		return -1;
	}
	return 0;
}

enum stage_result worker_run(const struct stage_spec *spec, struct stage_outcome *out)
{
	struct worker *w = calloc(1, sizeof(*w));
	char err[512] = "";
	memset(out, 0, sizeof(*out));
	out->result = STAGE_ERROR;
	if (!w) {
		log_error("out of memory");
		return STAGE_ERROR;
	}
	w->spec = spec;
	w->out = out;
	w->watch_fd = -1;
	w->slot = -1;
	w->proc.pid = -1;
	setpgid(0, 0);
	if (install_signals() < 0) {
		snprintf(err, sizeof(err), "cannot install signal handlers: %s", strerror(errno));
		goto out;
	}
	if (prepare(w, err, sizeof(err)) < 0)
		goto out;
	/* rclone is forked now, while the worker is small, and waits for its go until the listing
	 * (which must come first) is done. */
	if (rclone_proc_defer(&w->cmd, STDERR_FILENO, &w->proc) < 0) {
		w->proc.pid = -1;
		snprintf(err, sizeof(err), "cannot fork: %s", strerror(errno));
		goto out;
	}
	if (prepare_source(w, err, sizeof(err)) < 0)
		goto out;
	if (source_watch_start(&w->source, spec->source, &w->watch_fd, err, sizeof(err)) < 0) {
		log_warn("%s; an interrupted stage will check every unfinished file on the remote",
			 err);
		err[0] = '\0';
		w->watch_fd = -1;
	}
	if (rclone_proc_release(&w->proc) < 0) {
		snprintf(err, sizeof(err), "cannot start %s: %s", w->cmd.argv[0], strerror(errno));
		rclone_proc_wait(&w->proc, &(int){ 0 });
		w->proc.pid = -1;
		goto out;
	}
	out->result = STAGE_DONE;
	log_info("stage %d started: %s %s → %s (%zu files, %lld bytes)", spec->stage_number,
		 spec->command, spec->source, spec->destination, w->source.file_count,
		 (long long)w->source.total_bytes);
	/* What remains before the sandbox (which forbids forking and what the dynamic loader
	 * does) waits until rclone has something to say: done at once it competed with rclone's
	 * exec for a CPU (~7 ms of forks and ~10 ms of loading libcurl on a small VM), and
	 * nothing rclone wrote is read before the sandbox is on. The in-flight check's rclones
	 * wait for their go until rclone ends. */
	struct pollfd first = { w->proc.out_fd, POLLIN, 0 };
	poll(&first, 1, WORKER_FIRST_OUTPUT_WAIT_MS); /* a signal ends it too: the loop acts */
	if (reconcile_prepare(&w->reconcile, &w->ls_cmd, w->files_from) < 0)
		log_warn("cannot fork the in-flight check (%s): only %d of its %d rounds will run, "
			 "and if this stage is cut short the files in flight may go uncounted",
			 strerror(errno), w->reconcile.prepared, RECONCILE_ROUNDS);
	/* If it fails, the RC client says so when rclone's RC is up. */
	lazy_curl_load(NULL, 0);
	if (spec->sandbox) {
		pid_t pids[1 + RECONCILE_ROUNDS] = { w->proc.pid };
		for (int i = 0; i < w->reconcile.prepared; i++)
			pids[1 + i] = w->reconcile.rounds[i].pid;
		if (sandbox_enter(SANDBOX_WORKER, pids, 1 + (size_t)w->reconcile.prepared, err,
				  sizeof(err)) < 0) {
			/* No seccomp at all is what the flusher and dashboard also run without; a
			 * filter that failed to load otherwise is a broken install. */
			if (errno == ENOSYS || errno == EINVAL) {
				log_warn("running without a sandbox: %s", err);
				err[0] = '\0';
			} else {
				stop_rclone(w, SIGKILL);
				out->result = STAGE_ERROR;
			}
		}
	}
	run_loop(w);
	int status = 0;
	rclone_proc_wait(&w->proc, &status);
	out->rclone_exit = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
	if (out->result != STAGE_ERROR)
		out->result = result_of(w, status);
	/* Only a run that was cut short can have files that arrived without a Copied line: an
	 * rclone that exits by itself logs every file it finished. */
	bool cut = w->stop_sent || WIFSIGNALED(status) || out->rclone_exit >= 128;
	/* Under --dry-run a file found on the remote was there before: counting it, and under
	 * `move` deleting its local copy, would be wrong. */
	if ((cut || w->late_count) && !w->cmd.dry_run) {
		struct reconcile_result r;
		int64_t stopped = w->stop_sent ? w->stop_sent_ms : ledger_now_ms();
		if (check_in_flight(w, cut, stopped, &r, err, sizeof(err)) < 0) {
			log_error("in-flight check failed: %s; files in flight are not counted", err);
			err[0] = '\0';
		}
		out->reconciled_files = r.files;
		out->reconciled_bytes = r.bytes;
		out->files += r.files;
		out->bytes += r.bytes;
	}
	log_info("stage %d %s (rclone exit %d): %lld files, %lld bytes counted (%lld after the "
		 "in-flight check), %lld failed lines",
		 spec->stage_number, stage_result_name(out->result), out->rclone_exit,
		 (long long)out->files, (long long)out->bytes, (long long)out->reconciled_files,
		 (long long)out->failed_lines);
out:
	if (err[0])
		log_error("%s", err);
	if (w->proc.pid > 0 && w->proc.go_fd >= 0)
		rclone_proc_cancel(&w->proc); /* forked, never released */
	reconcile_cancel(&w->reconcile);
	if (w->slot >= 0) {
		w->stage.state = LEDGER_STAGE_DONE;
		w->stage.result = out->result;
		w->stage.updated_at_ms = ledger_now_ms();
		ledger_stage_update(&w->ledger, w->slot, &w->stage);
	}
	if (w->rc_ready)
		rc_client_free(&w->rc);
	rclone_cmd_free(&w->cmd);
	rclone_cmd_free(&w->ls_cmd);
	unlink(w->files_from);
	triggers_free(&w->triggers);
	for (size_t i = 0; i < w->late_count; i++)
		free(w->late[i]);
	free(w->late);
	rclone_log_reader_free(&w->reader);
	free(w->event);
	source_free(&w->source); /* closes the watch */
	if (w->ledger.hdr)
		ledger_detach(&w->ledger);
	explicit_bzero(w->rc_pass, sizeof(w->rc_pass));
	free(w);
	enum stage_result result = out->result;
	return result;
}
