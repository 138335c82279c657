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
#include <sys/stat.h>
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
#include "remote_source.h"
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
/* rclone's descriptors read per look: --transfers files, its checkers', and its sockets. */
#define WORKER_RCLONE_FDS_MAX 1024
/* How often, at most, the worker looks among rclone's open files (~50 us for its ~30
 * descriptors): an open after a quiet spell is looked at at once, a burst of small files
 * shares one look. A file rclone opened and closed between two looks is no candidate of its
 * own (see reconcile.h). */
#define WORKER_LOOK_MS 100
/* Files recorded in the stage slot per ledger write. */
#define WORKER_NOTE_BATCH 64

struct worker {
	const struct stage_spec *spec;
	struct stage_outcome *out;
	struct ledger ledger;
	int32_t row, slot;
	struct ledger_stage stage;     /* our copy of the slot, for stats updates */
	struct source_index source;
	bool remote;                   /* STAGE_SOURCE_REMOTE: listed with lsjson, not watched */
	int64_t *listed_mtime_ns;      /* remote: per entry, its modification time there */
	int watch_fd;                  /* inotify on the source: which files rclone opened */
	struct rclone_log_reader reader;
	struct rclone_log_event *event; /* 8.5 KiB: one, on the heap */
	struct triggers triggers;
	struct rc_client rc;
	int rc_ready;
	struct rc_stats stats;         /* 260 KiB: kept here, not on the stack */
	char rc_user[RC_CLIENT_USER_LEN + 1], rc_pass[RC_CLIENT_PASS_LEN + 1];
	struct rclone_cmd cmd, ls_cmd, features_cmd, list_cmd;
	struct rclone_proc proc;
	struct reconcile reconcile;
	char files_from[PATH_MAX];
	/* Copied paths the listing lacks (files that came into the source after it): their
	 * sizes are read from the remote when rclone has ended. */
	char **late;
	size_t late_count, late_cap;
	/* Files rclone itself had open (its descriptors, its transferring list), with their
	 * modification times then: what it uploaded carries that time. The in-flight check's
	 * first candidates. */
	struct confirmed {
		struct source_entry *entry;
		int64_t mtime_ns;
	} *confirmed;
	size_t confirmed_count, confirmed_cap;
	/* Notes for the stage slot, written in batches. */
	const char *note_paths[WORKER_NOTE_BATCH];
	int64_t note_sizes[WORKER_NOTE_BATCH], note_mtimes[WORKER_NOTE_BATCH];
	size_t note_count;
	struct rclone_proc_file rclone_fds[WORKER_RCLONE_FDS_MAX];
	/* Opened files to look for among rclone's, at the next look. */
	struct source_entry **waiting;
	size_t waiting_count, waiting_cap;
	int64_t last_look_ms;
	int stop_requested;            /* signals seen */
	int stop_sent;                 /* we told rclone to stop (signal or trigger) */
	int64_t stop_sent_ms;
	int64_t next_poll_ms;
	uint32_t bwlimit_seen;         /* the last bandwidth request applied */
	int64_t last_drain_ms;
	bool watch_pending;            /* the watch has events, not drained yet */
	struct log_rate read_rate;     /* whether rclone's log is read in batches */
	bool saw_max_transfer;         /* rclone said it reached --max-transfer */
	bool rclone_reaped;            /* its pid may be another process's now */
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

static void flush_notes(struct worker *w)
{
	if (w->note_count)
		ledger_stage_note_opens(&w->ledger, w->slot, w->note_paths, w->note_sizes,
					w->note_mtimes, w->note_count);
	w->note_count = 0;
}

/* Queues a file for the stage slot; the path must live until flush_notes. */
static void note(struct worker *w, const char *path, int64_t size, int64_t mtime_ns)
{
	if (w->note_count == WORKER_NOTE_BATCH)
		flush_notes(w);
	w->note_paths[w->note_count] = path;
	w->note_sizes[w->note_count] = size;
	w->note_mtimes[w->note_count++] = mtime_ns;
}

/* why: what makes the remote the only one to know the file's size, for the log. */
static void note_late(struct worker *w, const char *path, const char *why)
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
	/* In the slot too: should this worker die, the supervisor counts it from the remote. */
	note(w, copy, LEDGER_OPEN_SIZE_LATE, 0);
	flush_notes(w);
	log_info("rclone copied %s, %s: counted from the remote when rclone ends", path, why);
}

/* Whether the listed size may not be what rclone uploaded: rclone stats a file when it reaches
 * it, and a file written to since the listing (the watch saw it, or it is still there at
 * another size) went up at the size rclone found. */
static bool listed_size_stale(const struct worker *w, const struct source_entry *e)
{
	if (e->flags & SOURCE_CHANGED)
		return true;
	struct stat sb;
	return source_stat(w->spec->source, e->path, &sb) == 0 && S_ISREG(sb.st_mode) &&
	       sb.st_size != e->size;
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
		note_late(w, ev->object, "which was not in the listing (it came into the source "
			  "during the stage)");
		return;
	}
	if (source_mark_counted(e))
		return; /* a second Copied for one file (failed, then retried) counts once */
	if (listed_size_stale(w, e)) {
		note_late(w, e->path, "which changed after the listing");
		return;
	}
	int rc = count_file(w, e);
	if (rc != LEDGER_OK) {
		log_error("cannot record %s in the ledger: %s", ev->object, ledger_strerror(rc));
		return;
	}
	w->out->files++;
	w->out->bytes += e->size;
}

static void drain_watch(struct worker *w);
static void look_at_rclone(struct worker *w, bool force);

static void stop_rclone(struct worker *w, int sig)
{
	if (w->proc.pid <= 0)
		return;
	if (!w->stop_sent) {
		/* The last look at rclone's open files, while it has them. */
		drain_watch(w);
		look_at_rclone(w, true);
		w->stop_sent = 1;
		w->stop_sent_ms = ledger_now_ms();
		/* A cut stage's check asks this first: the answer comes while rclone stops. */
		reconcile_ask_features(&w->reconcile);
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
	case RCLONE_LOG_MOVED_SERVER_SIDE:
		/* From a remote source, a file that reached the destination (Google counts a
		 * server-side copy); from a local one, a rename on this machine, no upload. */
		if (w->remote)
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

/* ---- which files rclone has open ---- */

static int64_t mtime_ns_of(const struct stat *st)
{
	return (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
}

/* rclone itself has the file open: a candidate of the in-flight check, recorded in the slot
 * (queued: the caller flushes) with the modification time it uploads. */
static void confirm(struct worker *w, struct source_entry *e, int64_t mtime_ns)
{
	if (e->flags & (SOURCE_CONFIRMED | SOURCE_COUNTED))
		return;
	if (w->confirmed_count == w->confirmed_cap) {
		size_t cap = w->confirmed_cap ? w->confirmed_cap * 2 : 64;
		void *p = realloc(w->confirmed, cap * sizeof(*w->confirmed));
		if (!p)
			return; /* it stays a file something opened: checked where that can tell */
		w->confirmed = p;
		w->confirmed_cap = cap;
	}
	e->flags |= SOURCE_CONFIRMED | SOURCE_NOTED;
	w->confirmed[w->confirmed_count++] = (struct confirmed){ e, mtime_ns };
	note(w, e->path, e->size, mtime_ns);
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
		if (!e)
			continue;
		source_mark_in_flight(e);
		if (!(e->flags & (SOURCE_CONFIRMED | SOURCE_COUNTED))) {
			struct stat sb;
			if (w->remote)
				confirm(w, e, w->listed_mtime_ns[e - w->source.entries]);
			else
				confirm(w, e, source_stat(w->spec->source, e->path, &sb) == 0 ?
						      mtime_ns_of(&sb) : 0);
		}
	}
	flush_notes(w);
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

/* Reads the open-watch's queue into the listing's flags. */
static void read_watch(struct worker *w)
{
	if (source_watch_drain(&w->source) == SOURCE_WATCH_OVERFLOW)
		log_warn("too many file events at once; the in-flight check will look at every "
			 "unfinished file");
}

static int read_rclone(struct worker *w, char *buf)
{
	ssize_t n = read(w->proc.out_fd, buf, WORKER_READ_CHUNK);
	if (n < 0)
		return errno == EINTR || errno == EAGAIN ? 1 : 0;
	if (n == 0)
		return 0;
	/* A change to a file comes before rclone's stat of it, so before its Copied line: the
	 * watch's queue read after these lines holds every change that concerns them. */
	if (w->watch_fd >= 0)
		read_watch(w);
	log_rate_note(&w->read_rate, (size_t)n, mono_us());
	rclone_log_feed(&w->reader, buf, (size_t)n, worker_on_line, w);
	return 1;
}

/* The files waiting for a look that rclone itself has open (the same file among its
 * descriptors) go into the stage slot, where the supervisor finds them should this worker die
 * before it can check them itself. Plex or a checksum pass opening a file already uploaded
 * makes it no candidate. Unless forced, at most every WORKER_LOOK_MS. */
static void look_at_rclone(struct worker *w, bool force)
{
	int64_t now = ledger_now_ms();
	if (!w->waiting_count || (!force && now - w->last_look_ms < WORKER_LOOK_MS))
		return;
	/* Files rclone reported meanwhile need no look. */
	size_t k = 0;
	for (size_t i = 0; i < w->waiting_count; i++)
		if (!(w->waiting[i]->flags & (SOURCE_COUNTED | SOURCE_CONFIRMED)))
			w->waiting[k++] = w->waiting[i];
	w->waiting_count = k;
	if (!k)
		return;
	w->last_look_ms = now;
	int fds = w->proc.pid > 0 && !w->rclone_reaped
			  ? rclone_proc_open_files(w->proc.pid, w->rclone_fds, WORKER_RCLONE_FDS_MAX)
			  : -1;
	for (size_t i = 0; fds > 0 && i < w->waiting_count; i++) {
		struct source_entry *e = w->waiting[i];
		struct stat sb;
		if (source_stat(w->spec->source, e->path, &sb) == 0 &&
		    rclone_proc_has_open(w->rclone_fds, (size_t)fds, sb.st_dev, sb.st_ino))
			confirm(w, e, mtime_ns_of(&sb));
	}
	w->waiting_count = 0;
	flush_notes(w);
}

/* The open-watch says some process opened these files: they wait for a look among rclone's. */
static void drain_watch(struct worker *w)
{
	if (w->watch_fd < 0)
		return;
	w->last_drain_ms = ledger_now_ms();
	w->watch_pending = false;
	read_watch(w);
	size_t n;
	struct source_entry *const *fresh = source_take_opened(&w->source, &n);
	for (size_t i = 0; i < n; i++) {
		if (fresh[i]->flags & (SOURCE_COUNTED | SOURCE_CONFIRMED))
			continue;
		if (w->waiting_count == w->waiting_cap) {
			size_t cap = w->waiting_cap ? w->waiting_cap * 2 : 64;
			void *p = realloc(w->waiting, cap * sizeof(*w->waiting));
			if (!p)
				break; /* those stay files something opened */
			w->waiting = p;
			w->waiting_cap = cap;
		}
		w->waiting[w->waiting_count++] = fresh[i];
	}
	look_at_rclone(w, false);
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
		if (w->waiting_count && timeout > w->last_look_ms + WORKER_LOOK_MS - now)
			timeout = w->last_look_ms + WORKER_LOOK_MS - now;
		if (w->stop_sent && timeout > 100)
			timeout = 100;
		int n = poll(fds, watching ? 3 : 2, timeout > 0 ? (int)timeout : 0);
		if (n < 0 && errno != EINTR)
			break;
		if (watching && (fds[2].revents & POLLIN))
			w->watch_pending = true;
		if (w->watch_pending && ledger_now_ms() - w->last_drain_ms >= WORKER_DRAIN_MS)
			drain_watch(w);
		look_at_rclone(w, false);
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
	/* A late file's path marks its slot entry counted in the same write. */
	int rc = e ? count_file(w, e)
		   : ledger_add_for_stage_file(&w->ledger, w->slot, c->path, c->size,
					       ledger_now_ms());
	if (rc != LEDGER_OK) {
		log_error("cannot record %s in the ledger: %s", c->path, ledger_strerror(rc));
		return 1;
	}
	if (strcmp(w->spec->command, "move") == 0 && !w->remote)
		reconcile_remove_arrived(w->spec->source, &w->reconcile, c);
	return 0;
}

struct candidates {
	struct reconcile_candidate *v;
	size_t n, cap;
};

static int push_candidate(struct candidates *c, struct reconcile_candidate v)
{
	if (c->n == c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 64;
		void *p = realloc(c->v, cap * sizeof(*c->v));
		if (!p)
			return -1;
		c->v = p;
		c->cap = cap;
	}
	c->v[c->n++] = v;
	return 0;
}

/* A file something opened, rclone not seen among the openers. */
static int add_opened(void *ctx, struct source_entry *e)
{
	return push_candidate(ctx, (struct reconcile_candidate){ .path = e->path, .size = e->size,
								 .kind = RECONCILE_OPENED,
								 .user = e });
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
		if (push_candidate(c, (struct reconcile_candidate){ .path = w->late[i],
								    .size = RECONCILE_SIZE_ANY,
								    .kind = RECONCILE_LATE }) != 0)
			return -1;
	}
	return 0;
}

/* The files rclone had open and never reported. */
static int add_started(struct worker *w, struct candidates *c)
{
	for (size_t i = 0; i < w->confirmed_count; i++) {
		struct source_entry *e = w->confirmed[i].entry;
		if (e->flags & SOURCE_COUNTED)
			continue;
		if (push_candidate(c, (struct reconcile_candidate){
				.path = e->path, .size = e->size, .kind = RECONCILE_STARTED,
				.mtime_ns = w->confirmed[i].mtime_ns, .user = e }) != 0)
			return -1;
	}
	return 0;
}

/* A remote source's files that the stage handed rclone and no line reported: a server-side
 * move takes milliseconds and shows in no open file, so any of them may have moved in the
 * moment rclone was cut. Checked with the listed time (a moved file keeps it). */
static int add_remote(struct worker *w, struct candidates *c)
{
	for (size_t i = 0; i < w->source.file_count; i++) {
		struct source_entry *e = &w->source.entries[i];
		if (e->flags & (SOURCE_COUNTED | SOURCE_HELD))
			continue;
		if (push_candidate(c, (struct reconcile_candidate){
				.path = e->path, .size = e->size, .kind = RECONCILE_STARTED,
				.mtime_ns = w->listed_mtime_ns[i], .user = e }) != 0)
			return -1;
	}
	return 0;
}

/* What the slot keeps for the supervisor: the files no check could settle. The rest (arrived
 * and counted, or absent, or, after a clean exit, failed uploads rclone reported) are freed. */
static void settle_slot(struct worker *w, const struct candidates *c)
{
	const char **keep = c->n ? calloc(c->n, sizeof(*keep)) : NULL;
	size_t k = 0;
	for (size_t i = 0; keep && i < c->n; i++)
		if (c->v[i].state == RECONCILE_UNKNOWN && c->v[i].kind != RECONCILE_OPENED)
			keep[k++] = c->v[i].path;
	if (c->n && !keep)
		return; /* out of memory: the supervisor checks them all again, which is safe */
	ledger_stage_settle_opens(&w->ledger, w->slot, keep, k);
	free(keep);
}

/* After a stage rclone did not end cleanly: the files it had open and never reported, and
 * (where the remote's times can tell a new copy from an old one) the files something else
 * opened, or every unfinished file without a working watch. Always: the files it copied that
 * the listing lacks. */
static int check_in_flight(struct worker *w, bool cut, int64_t stopped_ms,
			   struct reconcile_result *r, char *err, size_t err_len)
{
	memset(r, 0, sizeof(*r));
	drain_watch(w);
	struct candidates c = { 0 };
	int rc = 0;
	if ((cut && (w->remote ? add_remote(w, &c) : add_started(w, &c)) != 0) ||
	    add_late(w, &c) != 0) {
		snprintf(err, err_len, "out of memory");
		rc = -1;
	} else if (cut || c.n) {
		if (reconcile_features(&w->reconcile, err, err_len) < 0)
			rc = -1;
		else if (cut && !w->remote && w->reconcile.window_ns == RECONCILE_NO_MODTIME &&
			 source_foreach(&w->source, source_reconcile_flags(&w->source),
					SOURCE_COUNTED | SOURCE_CONFIRMED, add_opened, &c) != 0) {
			snprintf(err, err_len, "out of memory");
			rc = -1;
		}
	}
	if (rc == 0)
		rc = reconcile_run(&w->reconcile, c.v, c.n, stopped_ms, w->stage.started_at_ms,
				   count_in_flight, w, r, err, err_len);
	else
		r->unknown = (int64_t)c.n; /* states stay RECONCILE_UNKNOWN (zeroed) */
	reconcile_cancel(&w->reconcile);
	settle_slot(w, &c);
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
	if (rclone_cmd_build_lsjson(spec, w->files_from, &w->ls_cmd, err, err_len) < 0 ||
	    rclone_cmd_build_features(spec, &w->features_cmd, err, err_len) < 0 ||
	    (w->remote && rclone_cmd_build_list(spec, &w->list_cmd, err, err_len) < 0))
		return -1;
	return 0;
}

/* A remote source's listing, and the files rclone gets (remote_source.h). 0, -1 with a message,
 * or REMOTE_SOURCE_STOPPED. */
static int list_remote(struct worker *w, char *err, size_t err_len)
{
	const struct stage_spec *spec = w->spec;
	int rc = remote_source_list(&w->list_cmd, worker_sigpipe[0], &w->source,
				    &w->listed_mtime_ns, err, err_len);
	if (rc != 0)
		return rc;
	/* The budget is what rclone_cmd_build made of the quota's and the user's --max-transfer. */
	if (remote_source_choose(&w->source, w->cmd.max_transfer_bytes, w->cmd.files_from,
				 &w->out->held_files, &w->out->held_bytes, err, err_len) < 0)
		return -1;
	if (w->out->held_files)
		log_info("%lld of the %zu files in %s (%lld bytes) wait for a later run: they do "
			 "not fit in the %lld bytes this account has left", (long long)
			 w->out->held_files, w->source.file_count, spec->source,
			 (long long)w->out->held_bytes, (long long)w->cmd.max_transfer_bytes);
	return 0;
}

/* The listing, the stage slot and the open-watch: after the forks, which stay cheap while the
 * worker has not yet grown by the listing. */
static int prepare_source(struct worker *w, char *err, size_t err_len)
{
	const struct stage_spec *spec = w->spec;
	int rc;
	if (w->remote) {
		if ((rc = list_remote(w, err, err_len)) != 0)
			return rc;
	} else if (source_list(spec->source, &w->source, err, err_len) < 0) {
		return -1;
	}
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
	w->stage.files_total = (int64_t)w->source.file_count - w->out->held_files;
	w->stage.bytes_total = w->source.total_bytes - w->out->held_bytes;
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
	w->remote = spec->source_kind == STAGE_SOURCE_REMOTE;
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
	int listed = prepare_source(w, err, sizeof(err));
	if (listed == REMOTE_SOURCE_STOPPED) {
		log_info("stop requested while the source was being listed: nothing was moved");
		out->result = STAGE_INTERRUPTED;
		goto out;
	}
	if (listed < 0)
		goto out;
	if (!w->remote &&
	    source_watch_start(&w->source, spec->source, &w->watch_fd, err, sizeof(err)) < 0) {
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
	log_info("stage %d started: %s %s → %s (%lld files, %lld bytes)", spec->stage_number,
		 spec->command, spec->source, spec->destination, (long long)w->stage.files_total,
		 (long long)w->stage.bytes_total);
	/* What remains before the sandbox (which forbids forking and what the dynamic loader
	 * does) waits until rclone has something to say: done at once it competed with rclone's
	 * exec for a CPU (~7 ms of forks and ~10 ms of loading libcurl on a small VM), and
	 * nothing rclone wrote is read before the sandbox is on. The in-flight check's rclones
	 * wait for their go until rclone ends. */
	struct pollfd first = { w->proc.out_fd, POLLIN, 0 };
	poll(&first, 1, WORKER_FIRST_OUTPUT_WAIT_MS); /* a signal ends it too: the loop acts */
	if (reconcile_prepare(&w->reconcile, &w->features_cmd, &w->ls_cmd, w->files_from) < 0)
		log_warn("cannot fork the in-flight check (%s): only %d of its %d rounds will run, "
			 "and if this stage is cut short the files in flight may be left to the "
			 "supervisor", strerror(errno), w->reconcile.prepared, RECONCILE_ROUNDS);
	/* If it fails, the RC client says so when rclone's RC is up. */
	lazy_curl_load(NULL, 0);
	if (spec->sandbox) {
		/* Its own children only: a check cut short by its deadline kills its rclone. */
		pid_t pids[2 + RECONCILE_ROUNDS] = { w->proc.pid };
		size_t n_pids = 1;
		if (w->reconcile.features_prepared)
			pids[n_pids++] = w->reconcile.features.pid;
		for (int i = 0; i < w->reconcile.prepared; i++)
			pids[n_pids++] = w->reconcile.rounds[i].pid;
		if (sandbox_enter(SANDBOX_WORKER, pids, n_pids, err, sizeof(err)) < 0) {
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
	w->rclone_reaped = true;
	out->rclone_exit = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
	if (out->result != STAGE_ERROR)
		out->result = result_of(w, status);
	/* Only an rclone that ends cleanly (0, 8, 9) has logged every file it finished: its
	 * fatal exit 7 cancels transfers in flight, a Go panic (2) or a signal ends it anywhere,
	 * and any other code is no promise either. */
	bool clean = !w->stop_sent && WIFEXITED(status) &&
		     (out->rclone_exit == 0 || out->rclone_exit == 8 || out->rclone_exit == 9);
	bool cut = !clean;
	struct reconcile_result r = { 0 };
	/* Under --dry-run a file found on the remote was there before: counting it, and under
	 * `move` deleting its local copy, would be wrong. */
	if ((cut || w->late_count) && !w->cmd.dry_run) {
		int64_t stopped = w->stop_sent ? w->stop_sent_ms : ledger_now_ms();
		if (check_in_flight(w, cut, stopped, &r, err, sizeof(err)) < 0) {
			log_error("in-flight check: %s; %lld files it could not settle are left to the "
				  "supervisor", err, (long long)r.unknown);
			err[0] = '\0';
		}
		out->reconciled_files = r.files;
		out->reconciled_bytes = r.bytes;
		out->files += r.files;
		out->bytes += r.bytes;
	} else {
		/* rclone logged every file it finished: what it had open and did not report
		 * failed, and needs no check by the supervisor either. */
		ledger_stage_settle_opens(&w->ledger, w->slot, NULL, 0);
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
	rclone_cmd_free(&w->features_cmd);
	rclone_cmd_free(&w->list_cmd);
	free(w->listed_mtime_ns);
	free(w->confirmed);
	free(w->waiting);
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
