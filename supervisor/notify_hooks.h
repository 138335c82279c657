/*
 * The supervisor's half of the notifications (roles/notify.h says what is sent, when, and how):
 * hooks, each one line where the supervisor sees something happen, that turn it into fixed-size
 * event records (notify_event.h) and write each to the notifier's pipe without blocking: when
 * the pipe is full the event is dropped, counted and logged, never waited for. They also fork
 * the notifier (a row of the role table) and restart it with its backoff when it dies.
 */
#ifndef CPLOW_NOTIFY_HOOKS_H
#define CPLOW_NOTIFY_HOOKS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "config.h"
#include "ledger.h"

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

#endif
