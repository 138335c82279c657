/*
 * Notifications: what happens to an upload, posted to the webhooks of the config's
 * `notifications` section (Slack, Discord, Google Chat, Pushover, an Apprise API server, or any
 * URL that takes a JSON object).
 *
 * Two halves, so that a slow or dead webhook can never delay a stage:
 *   - the supervisor's half (notify_stage_started() and the other hooks) turns what the
 *     supervisor sees into fixed-size event records and writes each to a pipe without blocking:
 *     when the pipe is full the event is dropped, counted and logged, never waited for;
 *   - the notifier, a role the supervisor forks (restarted with the flusher's backoff if it
 *     dies), reads the pipe and posts each event to every target with libcurl's multi
 *     interface: targets in parallel, each target's events in order, one at a time.
 *
 * Events: upload_started (once per upload, when the first stage has listed its source: files
 * and bytes listed, and what the stage moves at most: the listing or its --max-transfer,
 * whichever is smaller), account_rotated (from, to, why: max_transfer, ban, quota, failures or
 * other, and what the old account moved in this upload), uploader_suspended (until when, why),
 * upload_finished (done, no_account, failed or stopped: files, bytes, time, average speed,
 * accounts used, stages) and ledger_problem (the ledger file cannot be written, or cplow
 * refuses to start because its ledger cannot be opened or restored). An upload that listed
 * nothing and moved nothing sends neither its start nor its end.
 *
 * Delivery, per target: a 2xx answer is a delivery, never sent again. A request that never
 * reached the server (no connection, no name resolution, TLS handshake failed), or that the
 * server answered with 408, 429 or 5xx, is retried after 1, 2, 4 and 8 s, then given up with a
 * log line. A request that was sent and got no answer in time (NOTIFY_TIMEOUT_MS) is NOT
 * resent: it may have arrived, and a duplicate chat message is worse than a missing one; it is
 * logged. Any other answer (4xx) is permanent: logged, not retried. Every request carries the
 * event's id ("<run id>-<sequence>") in an Idempotency-Key header (and the webhook's JSON in
 * "id"), so a receiver can drop the duplicate a 5xx retry may still cause. Redirects are not
 * followed; only http and https are used.
 *
 * At exit the supervisor closes the pipe; the notifier sends what it has for at most
 * NOTIFY_DRAIN_MS more, then gives up on the rest (logged). It holds no ledger and no lock.
 * Its seccomp filter (SANDBOX_NOTIFIER) is an allow list whose refusals are errors (EPERM),
 * not kills: name resolution may need files, NSS modules, netlink or UNIX sockets and a
 * resolver thread, which differ between machines. What no library does by accident (exec,
 * ptrace, signals to other processes, io_uring, ...) kills it (sandbox.h).
 */
#ifndef CPLOW_NOTIFY_H
#define CPLOW_NOTIFY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "config.h"
#include "ledger.h"

#define NOTIFY_TIMEOUT_MS 10000        /* one request, connection included */
#define NOTIFY_CONNECT_TIMEOUT_MS 5000
#define NOTIFY_ATTEMPTS 5              /* the first and 4 retries: 1, 2, 4, 8 s later */
#define NOTIFY_DRAIN_MS 5000           /* at exit */
#define NOTIFY_QUEUE_MAX 64            /* undelivered events per target */
#define NOTIFY_ACCOUNTS_MAX 16         /* accounts named in upload_finished */
#define NOTIFY_TEXT_MAX 2048

enum notify_kind {
	NOTIFY_UPLOAD_STARTED = 1,
	NOTIFY_ACCOUNT_ROTATED = 2,
	NOTIFY_UPLOADER_SUSPENDED = 3,
	NOTIFY_UPLOAD_FINISHED = 4,
	NOTIFY_LEDGER_PROBLEM = 5,
};

/* account_rotated's why. */
enum notify_rotation {
	NOTIFY_ROTATED_OTHER = 0,
	NOTIFY_ROTATED_MAX_TRANSFER,   /* its stage stopped at --max-transfer */
	NOTIFY_ROTATED_BAN,            /* an rclone_sleeps trigger banned it */
	NOTIFY_ROTATED_QUOTA,          /* too little quota left, or rclone's fatal exit 7 */
	NOTIFY_ROTATED_FAILURES,       /* failed stages in a row */
};

/* upload_finished's how. */
enum notify_status {
	NOTIFY_STATUS_DONE = 0,        /* nothing left to upload */
	NOTIFY_STATUS_NO_ACCOUNT,      /* files left, but no account could take another stage */
	NOTIFY_STATUS_FAILED,          /* the last stage failed and no account was left */
	NOTIFY_STATUS_STOPPED,         /* SIGINT, SIGTERM, or a failed reload */
};

#define NOTIFY_EVENT_MAGIC 0x59544f4eu  /* "NOTY" */
#define NOTIFY_EVENT_VERSION 1

/*
 * One event as it travels through the pipe. The pipe joins two processes of one binary and is
 * never stored, so the struct goes as it is, framed by magic, version and size (checked by the
 * reader); it stays under PIPE_BUF, so a write is whole or not at all.
 */
struct notify_event {
	uint32_t magic;
	uint16_t version;
	uint16_t size;
	int32_t kind;                 /* enum notify_kind */
	int32_t why;                  /* rotated: notify_rotation; finished: notify_status */
	char id[40];                  /* "<run id>-<sequence>" */
	int64_t at_ms;
	char uploader[LEDGER_UPLOADER_MAX];
	char account[96];             /* started: its account; rotated: the old one (short names) */
	char account_to[96];          /* rotated: the new one */
	char strategy[LEDGER_STRATEGY_MAX];
	char detail[320];             /* rotated, suspended, finished: why; problem: what */
	int32_t stage;                /* started: its number */
	int32_t stages;               /* finished: stages run */
	int64_t files;                /* started: listed; rotated: the old account's; finished */
	int64_t bytes;
	int64_t planned_bytes;        /* started: what the stage moves at most */
	int64_t max_transfer_bytes;   /* started */
	int64_t remaining_bytes;      /* started: the account's quota left; rotated: the old's */
	int64_t duration_ms;          /* finished */
	int64_t until_ms;             /* suspended: until; rotated by a ban: its end */
	int32_t account_count;        /* finished: accounts used (some may not be named below) */
	int32_t reserved;
	char accounts[NOTIFY_ACCOUNTS_MAX][48];
};

/* "upload_started", ...; "rotated" reasons "max_transfer", ...; statuses "done", ... */
const char *notify_kind_name(enum notify_kind kind);
const char *notify_rotation_name(enum notify_rotation why);
const char *notify_status_name(enum notify_status status);

/* The event in words: a title ("media: upload finished") and one message. */
void notify_format_text(const struct notify_event *e, char *title, size_t title_len, char *text,
			size_t text_len);

/* What one target is sent for one event. */
struct notify_request {
	char *body;                   /* malloc'd */
	const char *content_type;     /* "application/json" or a form */
};

/* The target's payload for the event (notify.c shows each service's shape). 0, or -1 (out of
 * memory); free with notify_request_free. */
int notify_build_request(const struct config_notification *target,
			 const struct notify_event *e, struct notify_request *out);
void notify_request_free(struct notify_request *r);

/* What the notifier does after an attempt (see above). */
enum notify_outcome {
	NOTIFY_DELIVERED,
	NOTIFY_RETRY,                 /* surely not processed: try again after the backoff */
	NOTIFY_UNANSWERED,            /* sent, no answer: may have arrived; not resent */
	NOTIFY_REFUSED,               /* the server said no for good */
};
/* curl_code is a CURLcode; http_status 0 when there was no answer; sent: the request left. */
enum notify_outcome notify_classify(int curl_code, long http_status, bool sent);
/* The wait before attempt number `attempt` (2 = the first retry): 1, 2, 4, 8 s. */
int notify_backoff_ms(int attempt);

/* A record read from the pipe: 0 when it is a whole event of this build. */
int notify_event_check(const struct notify_event *e);

/* ---- the supervisor's half: hooks, each one line in supervisor.c ---- */

/*
 * Makes the pipe when the config has targets; the notifier is forked at the first notify_tick,
 * or by notify_stop when events wait. close_fd is closed in it (the instance lock). With no
 * targets every hook is a no-op.
 */
void notify_start(const struct config *c, int close_fd);
/* After SIGHUP: the notifier is replaced when the targets changed (the old one sends what it
 * holds, as at exit). */
void notify_reload(const struct config *c);
/* After a log rotation: a running notifier is replaced (it may not open the new log file; the
 * old one sends what it holds first). */
void notify_restart(void);
/* True when pid was a notifier (restarted with backoff if it was the current one). */
bool notify_reaped(pid_t pid, int status);
/* Every loop: restarts a dead notifier when due, sends upload_started once the first stage's
 * listing is in its slot, watches the ledger file's flushes. */
void notify_tick(const struct ledger *l);

void notify_stage_started(const char *uploader, const char *account, int stage,
			  const char *strategy, int64_t max_transfer_bytes, int64_t remaining_bytes,
			  pid_t worker);
/* Before the stage's slot is released: reads what it did from the slot and its row. */
void notify_stage_finished(const struct ledger *l, pid_t worker, const char *uploader,
			   const char *account, int result);
/* The uploader's upload ended: why_no_account is the planner's reason when no account could
 * take another stage, else NULL. Nothing is sent for an uploader with no upload under way. */
void notify_upload_finished(const char *uploader, const char *why_no_account, bool failed);
void notify_suspended(const char *uploader, int64_t until_ms, const char *why);
void notify_problem(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Ends open uploads as stopped (by stop_signal, 0 for another reason), closes the pipe and
 * waits for the notifier, at most NOTIFY_DRAIN_MS and a second. */
void notify_stop(int stop_signal);

/* The notifier's main (notify.c forks it; exported for tests): reads events from read_fd until
 * EOF or SIGTERM, then drains. Returns an exit code. */
int notify_run(const struct config *c, int read_fd);

#endif
