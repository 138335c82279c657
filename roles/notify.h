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

#include "config.h"
#include "notify_event.h"

#define NOTIFY_TIMEOUT_MS 10000        /* one request, connection included */
#define NOTIFY_CONNECT_TIMEOUT_MS 5000
#define NOTIFY_ATTEMPTS 5              /* the first and 4 retries: 1, 2, 4, 8 s later */
#define NOTIFY_QUEUE_MAX 64            /* undelivered events per target */
#define NOTIFY_TEXT_MAX 2048

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

/* The notifier's main (the role table's; exported for tests): reads events from read_fd until
 * EOF or SIGTERM, then drains. Returns an exit code. */
int notify_run(const struct config *c, int read_fd);

#endif
