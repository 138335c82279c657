#include "notify_hooks.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "fmt.h"
#include "log.h"
#include "notify_event.h"
#include "procs.h"
#include "role.h"
#include "stage.h"
#include "utf8.h"

_Static_assert(NOTIFY_UPLOADER_MAX == LEDGER_UPLOADER_MAX, "an uploader's name fits the event");
_Static_assert(NOTIFY_STRATEGY_MAX == LEDGER_STRATEGY_MAX, "a strategy's name fits the event");

#define NOTIFY_PIPE_BYTES (1 << 20)     /* asked of the kernel; 64 KiB holds ~40 events */
#define NOTIFY_PROBLEM_EVERY_MS (10LL * 60 * 1000)   /* one "cannot write" per 10 minutes */
#define NOTIFY_RETIRED_MAX 4

/* One uploader's upload, as far as its notifications go. */
struct cycle {
	char uploader[LEDGER_UPLOADER_MAX];
	bool active;
	bool started_sent;
	int64_t started_ms;
	int stages;
	int64_t files, bytes;
	int account_count;
	char accounts[NOTIFY_ACCOUNTS_MAX][48];
	/* The account of the last stage and what it did in this upload. */
	char account[LEDGER_ACCOUNT_MAX];
	int64_t account_files, account_bytes;
	int last_result;              /* enum stage_result; -1: none yet */
	int64_t last_remaining;       /* -1: unknown */
	int64_t banned_until_ms;
	char ban_cause[LEDGER_CAUSE_MAX];
	/* The stage whose listing upload_started waits for. */
	pid_t pending_pid;
	int pending_stage;
	char pending_strategy[LEDGER_STRATEGY_MAX];
	int64_t pending_max_transfer, pending_remaining;
};

static struct {
	bool on;                      /* targets configured: the hooks work */
	const struct config *cfg;
	int close_fd;
	int read_fd, write_fd;
	pid_t pid;
	struct role_state role;       /* the notifier running now */
	pid_t retired[NOTIFY_RETIRED_MAX];   /* replaced on reload, still sending */
	int64_t retired_kill_ms[NOTIFY_RETIRED_MAX];
	const struct ledger *ledger;  /* unmapped in the notifier */
	char run_id[24];
	uint64_t seq;
	uint64_t dropped;
	int64_t continue_min_bytes;
	struct cycle *cycles;
	size_t cycle_count;
	uint64_t flush_errors_seen, flush_count_seen;
	uint64_t flush_count_failing;     /* flush_count when the failures began */
	bool flush_failing;
	int64_t flush_problem_ms;
	uint64_t flush_problems_unsent;
} N = { .read_fd = -1, .write_fd = -1 };

static bool has_targets(const struct config *c)
{
	for (size_t i = 0; i < c->notification_count; i++)
		if (c->notifications[i].enabled)
			return true;
	return false;
}

/* src into dst, cut to fit without splitting a UTF-8 sequence. */
static void copy_str(char *dst, size_t size, const char *src)
{
	size_t n = strlen(src);
	if (n >= size) {
		n = utf8_cut(src, size - 1);
	}
	memcpy(dst, src, n);
	dst[n] = '\0';
}

/* Short names for messages: a key file's name without its directory. */
static const char *short_name(const char *account)
{
	const char *slash = strrchr(account, '/');
	return slash && slash[1] ? slash + 1 : account;
}

static void new_event(struct notify_event *e, enum notify_kind kind, const char *uploader)
{
	memset(e, 0, sizeof(*e));
	e->magic = NOTIFY_EVENT_MAGIC;
	e->version = NOTIFY_EVENT_VERSION;
	e->size = sizeof(*e);
	e->kind = kind;
	e->at_ms = ledger_now_ms();
	snprintf(e->id, sizeof(e->id), "%s-%llu", N.run_id, (unsigned long long)++N.seq);
	if (uploader)
		copy_str(e->uploader, sizeof(e->uploader), uploader);
}

/* Never blocks: a full pipe drops the event. */
static void post(const struct notify_event *e)
{
	if (N.write_fd < 0 || !has_targets(N.cfg))
		return; /* none left after a reload */
	ssize_t w;
	do
		w = write(N.write_fd, e, sizeof(*e));
	while (w < 0 && errno == EINTR);
	if (w == (ssize_t)sizeof(*e))
		return;
	N.dropped++;
	log_warn("notify: %s %s dropped (%s); %llu dropped so far",
		 notify_kind_name((enum notify_kind)e->kind), e->id,
		 w < 0 && errno == EAGAIN ? "the notifier is behind: its pipe is full"
					  : strerror(errno),
		 (unsigned long long)N.dropped);
}

static void fork_notifier(void)
{
	/* procs_fork closes both ends in every child; the notifier keeps a copy of its end. */
	int keep = fcntl(N.read_fd, F_DUPFD_CLOEXEC, 3);
	if (keep < 0) {
		log_error("cannot start the notifier: %s", strerror(errno));
		procs_backoff_died(&N.role.backoff, ledger_now_ms());
		return;
	}
	struct role_ctx x = { .cfg = N.cfg, .ledger = N.ledger, .fd = keep, .reply_fd = -1,
			      .close_fd = N.close_fd, .supervisor = getpid() };
	role_start(&role_table[ROLE_NOTIFIER], &N.role, &x);
	close(keep);
}

static void make_run_id(void)
{
	unsigned char r[8] = { 0 };
	int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
	if (fd < 0 || read(fd, r, sizeof(r)) != (ssize_t)sizeof(r)) {
		uint64_t t = (uint64_t)ledger_now_ms() ^ ((uint64_t)getpid() << 40);
		memcpy(r, &t, sizeof(r));
	}
	if (fd >= 0)
		close(fd);
	snprintf(N.run_id, sizeof(N.run_id), "%02x%02x%02x%02x%02x%02x%02x%02x", r[0], r[1], r[2],
		 r[3], r[4], r[5], r[6], r[7]);
}

static uint64_t fingerprint(const struct config *c);
static uint64_t running_fingerprint;

void notify_start(const struct config *c, int close_fd)
{
	N.cfg = c;
	N.close_fd = close_fd;
	N.continue_min_bytes = c->quota.continue_min_bytes;
	if (!has_targets(c) || N.on)
		return;
	int fds[2];
	if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) < 0) {
		log_error("notifications are off: cannot make the notifier's pipe: %s",
			  strerror(errno));
		return;
	}
	/* More room than the default 64 KiB, when the system allows it. */
	(void)fcntl(fds[1], F_SETPIPE_SZ, NOTIFY_PIPE_BYTES);
	N.read_fd = fds[0];
	N.write_fd = fds[1];
	procs_close_in_children(N.read_fd);
	procs_close_in_children(N.write_fd);
	if (!N.run_id[0])
		make_run_id();
	N.on = true;
	running_fingerprint = fingerprint(c);
	/* Forked at the first notify_tick (after the terminal view has taken children's stderr),
	 * or by notify_stop if events wait and no tick came (cplow refused to start). */
}

/* FNV-1a over s and a separator; NULL differs from "". */
static uint64_t mix(uint64_t h, const char *s)
{
	for (const char *p = s ? s : "\x01"; *p; p++)
		h = (h ^ (unsigned char)*p) * 1099511628211ULL;
	return (h ^ 0xff) * 1099511628211ULL;
}

/* Everything a notifier is forked with: a change means a new notifier. */
static uint64_t fingerprint(const struct config *c)
{
	uint64_t h = 1469598103934665603ULL;
#define MIX_STR(s) h = mix(h, s)
	for (size_t i = 0; i < c->notification_count; i++) {
		const struct config_notification *n = &c->notifications[i];
		char num[32];
		snprintf(num, sizeof(num), "%d/%d/%d", (int)n->service, n->enabled, n->priority);
		MIX_STR(num);
		MIX_STR(n->name);
		MIX_STR(n->url);
		MIX_STR(n->title);
		MIX_STR(n->sender_name);
		MIX_STR(n->sender_icon);
		MIX_STR(n->channel);
		MIX_STR(n->app_token);
		MIX_STR(n->user_token);
		for (size_t k = 0; k < n->header_count; k++) {
			MIX_STR(n->headers[k].name);
			MIX_STR(n->headers[k].value);
		}
	}
#undef MIX_STR
	return h;
}

static void retire(void)
{
	if (N.role.pid <= 0)
		return;
	for (int i = 0; i < NOTIFY_RETIRED_MAX; i++) {
		if (N.retired[i] > 0)
			continue;
		kill(N.role.pid, SIGTERM);
		N.retired[i] = N.role.pid;
		N.retired_kill_ms[i] = ledger_now_ms() + NOTIFY_DRAIN_MS + 1000;
		N.role.pid = 0;
		return;
	}
	kill(N.role.pid, SIGKILL); /* four reloads within seconds: no time to drain */
	N.retired[0] = N.role.pid;
	N.retired_kill_ms[0] = ledger_now_ms();
	N.role.pid = 0;
}

void notify_reload(const struct config *c)
{
	uint64_t before = running_fingerprint;
	N.cfg = c;
	N.continue_min_bytes = c->quota.continue_min_bytes;
	running_fingerprint = fingerprint(c);
	if (N.on && before == running_fingerprint)
		return;
	if (!N.on) {
		notify_start(c, N.close_fd);
		return;
	}
	retire();
	memset(&N.role.backoff, 0, sizeof(N.role.backoff));
	if (has_targets(c))
		fork_notifier();
	else
		log_info("notifications are off: the new config has none");
}

void notify_restart(void)
{
	if (!N.on || N.role.pid <= 0)
		return;
	retire();
	fork_notifier();
}

bool notify_reaped(pid_t pid, int status)
{
	for (int i = 0; i < NOTIFY_RETIRED_MAX; i++) {
		if (N.retired[i] == pid) {
			N.retired[i] = 0;
			return true;
		}
	}
	return role_reaped(&role_table[ROLE_NOTIFIER], &N.role, pid, status);
}

static struct cycle *cycle_of(const char *uploader)
{
	for (size_t i = 0; i < N.cycle_count; i++)
		if (strcmp(N.cycles[i].uploader, uploader) == 0)
			return &N.cycles[i];
	struct cycle *grown = realloc(N.cycles, (N.cycle_count + 1) * sizeof(*grown));
	if (!grown)
		return NULL;
	N.cycles = grown;
	struct cycle *cy = &N.cycles[N.cycle_count++];
	memset(cy, 0, sizeof(*cy));
	copy_str(cy->uploader, sizeof(cy->uploader), uploader);
	return cy;
}

/*
 * The slot of worker pid and its row's usage, copied under ledger.h's readers' rule: the
 * sequence even and unchanged around the copy. 0, or -1 when there is no such slot (or writers
 * kept the ledger busy: the next tick tries again).
 */
static int read_stage(const struct ledger *l, pid_t pid, struct ledger_stage *st,
		      struct ledger_usage *usage)
{
	if (!l || !l->hdr || pid <= 0)
		return -1;
	struct ledger_header *h = l->hdr;
	for (int attempt = 0; attempt < 1000; attempt++) {
		uint64_t s1 = atomic_load_explicit(&h->seq, memory_order_acquire);
		if (s1 & 1)
			continue;
		int found = -1;
		for (uint32_t i = 0; i < h->slot_capacity; i++) {
			if (l->stages[i].state != LEDGER_STAGE_FREE && l->stages[i].pid == pid) {
				memcpy(st, &l->stages[i], sizeof(*st));
				found = (int)i;
				break;
			}
		}
		uint32_t rows = atomic_load_explicit(&h->row_count, memory_order_acquire);
		bool row_ok = found >= 0 && st->row >= 0 && (uint32_t)st->row < rows;
		if (row_ok)
			memcpy(usage, &l->rows[st->row].usage, sizeof(*usage));
		else
			memset(usage, 0, sizeof(*usage));
		atomic_thread_fence(memory_order_acquire);
		if (atomic_load_explicit(&h->seq, memory_order_relaxed) != s1)
			continue;
		return found >= 0 ? 0 : -1;
	}
	return -1;
}

static void post_started(struct cycle *cy, const struct ledger_stage *st)
{
	cy->pending_pid = 0;
	if (st->files_total <= 0)
		return; /* nothing listed: a silent upload, unless something moves later */
	struct notify_event e;
	new_event(&e, NOTIFY_UPLOAD_STARTED, cy->uploader);
	copy_str(e.account, sizeof(e.account), short_name(cy->account));
	copy_str(e.strategy, sizeof(e.strategy), cy->pending_strategy);
	e.stage = cy->pending_stage;
	e.files = st->files_total;
	e.bytes = st->bytes_total;
	e.max_transfer_bytes = cy->pending_max_transfer;
	e.planned_bytes = e.max_transfer_bytes > 0 && e.max_transfer_bytes < e.bytes
				  ? e.max_transfer_bytes
				  : e.bytes;
	e.remaining_bytes = cy->pending_remaining;
	cy->started_sent = true;
	post(&e);
}

static void post_rotated(struct cycle *cy, const char *to, int64_t now)
{
	struct notify_event e;
	char left[32], when[48];
	new_event(&e, NOTIFY_ACCOUNT_ROTATED, cy->uploader);
	copy_str(e.account, sizeof(e.account), short_name(cy->account));
	copy_str(e.account_to, sizeof(e.account_to), short_name(to));
	e.files = cy->account_files;
	e.bytes = cy->account_bytes;
	e.remaining_bytes = cy->last_remaining;
	fmt_bytes(cy->last_remaining, left, sizeof(left));
	bool low = cy->last_remaining >= 0 && cy->last_remaining <= N.continue_min_bytes;
	if (cy->banned_until_ms > now || cy->last_result == STAGE_TRIGGERED) {
		e.why = NOTIFY_ROTATED_BAN;
		e.until_ms = cy->banned_until_ms;
		fmt_utc(cy->banned_until_ms, when, sizeof(when));
		snprintf(e.detail, sizeof(e.detail), "banned until %s: %s", when,
			 cy->ban_cause[0] ? cy->ban_cause : "an rclone_sleeps trigger fired");
	} else if (cy->last_result == STAGE_FATAL) {
		e.why = NOTIFY_ROTATED_QUOTA;
		snprintf(e.detail, sizeof(e.detail), "rclone stopped with a fatal error (exit 7), "
						     "its upload limit");
	} else if ((cy->last_result == STAGE_DONE || cy->last_result == STAGE_MAX_TRANSFER) &&
		   low) {
		e.why = NOTIFY_ROTATED_QUOTA;
		snprintf(e.detail, sizeof(e.detail), "%s of its daily quota left, not worth "
			 "another stage (quota.continue_min_bytes)", left);
	} else if (cy->last_result == STAGE_MAX_TRANSFER) {
		e.why = NOTIFY_ROTATED_MAX_TRANSFER;
		snprintf(e.detail, sizeof(e.detail), "its stage stopped at --max-transfer with %s "
			 "of its daily quota left, too little for the next file", left);
	} else if (cy->last_result == STAGE_FAILED || cy->last_result == STAGE_ERROR) {
		e.why = NOTIFY_ROTATED_FAILURES;
		snprintf(e.detail, sizeof(e.detail), "its stages failed");
	} else {
		e.why = NOTIFY_ROTATED_OTHER;
		if (cy->last_remaining >= 0)
			snprintf(e.detail, sizeof(e.detail), "its last stage ended (%s) with %s of "
				 "its daily quota left", stage_result_name(cy->last_result), left);
		else
			snprintf(e.detail, sizeof(e.detail), "its last stage ended (%s)",
				 cy->last_result >= 0 ? stage_result_name(cy->last_result)
						      : "none");
	}
	post(&e);
}

void notify_stage_started(const char *uploader, const char *account, int stage,
			  const char *strategy, int64_t max_transfer_bytes, int64_t remaining_bytes,
			  pid_t worker)
{
	if (!N.on)
		return;
	struct cycle *cy = cycle_of(uploader);
	if (!cy)
		return;
	int64_t now = ledger_now_ms();
	if (!cy->active) {
		char name[sizeof(cy->uploader)];
		memcpy(name, cy->uploader, sizeof(name));
		memset(cy, 0, sizeof(*cy));
		memcpy(cy->uploader, name, sizeof(name));
		cy->active = true;
		cy->started_ms = now;
		cy->last_result = -1;
		cy->last_remaining = -1;
	} else if (cy->account[0] && strcmp(cy->account, account) != 0) {
		post_rotated(cy, account, now);
	}
	if (strcmp(cy->account, account) != 0) {
		copy_str(cy->account, sizeof(cy->account), account);
		cy->account_files = cy->account_bytes = 0;
		char shown[sizeof(cy->accounts[0])];
		bool known = false;
		copy_str(shown, sizeof(shown), short_name(account));
		for (int i = 0; i < cy->account_count && i < NOTIFY_ACCOUNTS_MAX; i++)
			known = known || strcmp(cy->accounts[i], shown) == 0;
		if (!known) {
			if (cy->account_count < NOTIFY_ACCOUNTS_MAX)
				memcpy(cy->accounts[cy->account_count], shown, sizeof(shown));
			cy->account_count++;
		}
	}
	cy->stages++;
	if (!cy->started_sent) {
		cy->pending_pid = worker;
		cy->pending_stage = stage;
		snprintf(cy->pending_strategy, sizeof(cy->pending_strategy), "%s",
			 strategy ? strategy : "");
		cy->pending_max_transfer = max_transfer_bytes;
		cy->pending_remaining = remaining_bytes;
	}
}

void notify_stage_finished(const struct ledger *l, pid_t worker, const char *uploader,
			   const char *account, int result)
{
	if (!N.on)
		return;
	struct cycle *cy = cycle_of(uploader);
	if (!cy || !cy->active)
		return;
	(void)account;
	struct ledger_stage *st = calloc(1, sizeof(*st));
	struct ledger_usage usage;
	bool seen = st && read_stage(l, worker, st, &usage) == 0;
	if (seen && cy->pending_pid == worker)
		post_started(cy, st);
	if (cy->pending_pid == worker)
		cy->pending_pid = 0;
	cy->last_result = result;
	cy->last_remaining = -1;
	cy->banned_until_ms = 0;
	cy->ban_cause[0] = '\0';
	if (seen) {
		cy->files += st->files_done;
		cy->bytes += st->bytes_done;
		cy->account_files += st->files_done;
		cy->account_bytes += st->bytes_done;
		int64_t now = ledger_now_ms();
		cy->last_remaining = ledger_usage_remaining(
			&usage, l->hdr->daily_bytes, (enum ledger_window)l->hdr->window, now);
		cy->banned_until_ms = usage.banned_until_ms > now ? usage.banned_until_ms : 0;
		snprintf(cy->ban_cause, sizeof(cy->ban_cause), "%.*s",
			 (int)strnlen(usage.ban_cause, sizeof(usage.ban_cause)), usage.ban_cause);
	}
	free(st);
}

static void finish_cycle(struct cycle *cy, enum notify_status status, const char *detail)
{
	if (!cy->active)
		return;
	cy->active = false;
	cy->pending_pid = 0;
	if (!cy->started_sent && cy->files == 0 && status != NOTIFY_STATUS_FAILED)
		return; /* nothing listed, nothing moved: it was never announced */
	struct notify_event e;
	new_event(&e, NOTIFY_UPLOAD_FINISHED, cy->uploader);
	e.why = status;
	copy_str(e.detail, sizeof(e.detail), detail ? detail : "");
	e.files = cy->files;
	e.bytes = cy->bytes;
	e.duration_ms = e.at_ms - cy->started_ms;
	e.stages = cy->stages;
	e.account_count = cy->account_count;
	memcpy(e.accounts, cy->accounts, sizeof(e.accounts));
	post(&e);
}

void notify_upload_finished(const char *uploader, const char *why_no_account, bool failed)
{
	if (!N.on)
		return;
	struct cycle *cy = cycle_of(uploader);
	if (!cy)
		return;
	finish_cycle(cy, failed ? NOTIFY_STATUS_FAILED
				: why_no_account ? NOTIFY_STATUS_NO_ACCOUNT : NOTIFY_STATUS_DONE,
		     why_no_account);
}

void notify_suspended(const char *uploader, int64_t until_ms, const char *why)
{
	if (!N.on)
		return;
	struct notify_event e;
	new_event(&e, NOTIFY_UPLOADER_SUSPENDED, uploader);
	e.until_ms = until_ms;
	copy_str(e.detail, sizeof(e.detail), why ? why : "");
	post(&e);
}

void notify_problem(const char *fmt, ...)
{
	if (!N.on)
		return;
	struct notify_event e;
	new_event(&e, NOTIFY_LEDGER_PROBLEM, NULL);
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(e.detail, sizeof(e.detail), fmt, ap);
	va_end(ap);
	post(&e);
}

/* The flusher counts its failed and its good writes in the ledger's header: one event when
 * writing starts to fail (at most every 10 minutes while it keeps failing), one when it works
 * again. A failing flusher retries every flush interval, so a tick without a new failure after
 * a good write since the failures began means the file is written again (a good write and the
 * last failure can share a tick, and after a good write an idle flusher writes nothing). */
static void watch_flushes(const struct ledger *l, int64_t now)
{
	if (!l || !l->hdr)
		return;
	uint64_t errors = atomic_load(&l->hdr->flush_errors);
	uint64_t count = atomic_load(&l->hdr->flush_count);
	if (errors > N.flush_errors_seen) {
		uint64_t more = errors - N.flush_errors_seen;
		if (!N.flush_failing)
			N.flush_count_failing = N.flush_count_seen;
		if (!N.flush_failing || now - N.flush_problem_ms >= NOTIFY_PROBLEM_EVERY_MS) {
			notify_problem(
				"the ledger file %s cannot be written (%llu failed writes; the "
				"flusher's log says why): the shared ledger still counts every "
				"file, but a crash of the machine now would lose what the file "
				"misses",
				N.cfg ? N.cfg->quota.cache_path : "?",
				(unsigned long long)(more + N.flush_problems_unsent));
			N.flush_problem_ms = now;
			N.flush_problems_unsent = 0;
		} else {
			N.flush_problems_unsent += more;
		}
		N.flush_failing = true;
	} else if (N.flush_failing && count > N.flush_count_failing) {
		notify_problem("the ledger file %s is written again",
			       N.cfg ? N.cfg->quota.cache_path : "?");
		N.flush_failing = false;
		N.flush_problems_unsent = 0;
	}
	N.flush_errors_seen = errors;
	N.flush_count_seen = count;
}

void notify_tick(const struct ledger *l)
{
	if (!N.on)
		return;
	int64_t now = ledger_now_ms();
	if (!N.ledger && l && l->hdr) {
		N.ledger = l;
		N.flush_errors_seen = atomic_load(&l->hdr->flush_errors);
		N.flush_count_seen = atomic_load(&l->hdr->flush_count);
	}
	if (has_targets(N.cfg) && role_due(&N.role, now))
		fork_notifier();
	for (int i = 0; i < NOTIFY_RETIRED_MAX; i++)
		if (N.retired[i] > 0 && now >= N.retired_kill_ms[i])
			kill(N.retired[i], SIGKILL);
	for (size_t i = 0; i < N.cycle_count; i++) {
		struct cycle *cy = &N.cycles[i];
		if (!cy->active || cy->started_sent || cy->pending_pid <= 0)
			continue;
		struct ledger_stage *st = calloc(1, sizeof(*st));
		struct ledger_usage usage;
		if (st && read_stage(l, cy->pending_pid, st, &usage) == 0)
			post_started(cy, st);
		free(st);
	}
	watch_flushes(l, now);
}

static void wait_for(pid_t pid, int64_t deadline)
{
	int64_t left = deadline - ledger_now_ms();
	int st;
	if (procs_wait(pid, left > 0 ? (int)left : 0, &st) == 1)
		log_warn("the notifier did not stop in time; killing it");
}

void notify_stop(int stop_signal)
{
	if (!N.on)
		return;
	const char *how = stop_signal == SIGINT ? "SIGINT" : "";
	if (stop_signal == SIGTERM)
		how = "SIGTERM";
	for (size_t i = 0; i < N.cycle_count; i++)
		finish_cycle(&N.cycles[i], NOTIFY_STATUS_STOPPED, how);
	procs_forget_in_children(N.write_fd);
	close(N.write_fd);
	N.write_fd = -1;
	int queued = 0;
	if (N.role.pid <= 0 && ioctl(N.read_fd, FIONREAD, &queued) == 0 && queued > 0 &&
	    has_targets(N.cfg))
		fork_notifier(); /* none runs (dead, or no tick yet) and events wait: send them */
	int64_t deadline = ledger_now_ms() + NOTIFY_DRAIN_MS + 1000;
	if (N.role.pid > 0)
		wait_for(N.role.pid, deadline);
	for (int i = 0; i < NOTIFY_RETIRED_MAX; i++)
		if (N.retired[i] > 0)
			wait_for(N.retired[i], deadline);
	procs_forget_in_children(N.read_fd);
	close(N.read_fd);
	free(N.cycles);
	memset(&N, 0, sizeof(N));
	N.read_fd = N.write_fd = -1;
	running_fingerprint = 0;
}
