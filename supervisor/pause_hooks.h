/*
 * The supervisor's half of pausing NZBGet and SABnzbd while it uploads (roles/downloaders.h
 * says what is paused, when, and what a crash leaves): while a downloader is enabled, the
 * downloaders' role runs (restarted with backoff when it dies), and the supervisor asks it
 * through a pipe (pause_record.h), never waiting for it:
 *   - before a stage starts, pause_hooks_ready() asks for the pause and holds the stage until
 *     the role has answered or PAUSE_HOLD_MS have passed, while the loop goes on (signals,
 *     heartbeat, other uploaders): a downloader that answers is paused before the upload as
 *     cloudplow paused it, and one that hangs costs the upload at most the hold;
 *   - once no stage runs, pause_hooks_resume() asks for the resume;
 *   - a request the pipe cannot take is logged and written again at the next tick;
 *   - a role started again (after its death, or a reload) resumes what the dead one paused,
 *     and is asked for the pause again while stages run.
 */
#ifndef CPLOW_PAUSE_HOOKS_H
#define CPLOW_PAUSE_HOOKS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "pause_record.h"
#include "role.h"

struct config;
struct ledger;

struct pause_hooks {
	int req_fd, reply_fd;          /* the supervisor's ends; -1 while no role runs */
	struct role_state role;
	bool started;                  /* a role ran before: the next one is a restart */
	bool want_paused;              /* stages run, or one is about to */
	bool sent_paused;              /* what the role was last asked */
	bool unsent_logged;            /* a full pipe was logged (once per streak) */
	uint64_t seq;                  /* the last request written */
	uint64_t answered;             /* the last request the role answered */
	int64_t hold_until_ms;         /* the stage held for the pause waits until then */
};

void pause_hooks_init(struct pause_hooks *h);

/* At every tick: starts the role when a downloader is enabled and it is down and due, and
 * writes what the role has not been asked yet. */
void pause_hooks_tick(struct pause_hooks *h, const struct config *c, const struct ledger *l,
		      int close_fd, bool stopping);

/* Before a stage starts: asks for the pause; true when the stage may start (no downloader
 * enabled, the role answered, or the hold is over). */
bool pause_hooks_ready(struct pause_hooks *h, const struct config *c, int64_t now_ms);

/* No stage runs any more: asks for the resume (once), unless a stage is held for the pause. */
void pause_hooks_resume(struct pause_hooks *h, int64_t now_ms);

/* The descriptor that wakes the loop when the role answers (-1: none), and what it read. */
int pause_hooks_fd(const struct pause_hooks *h);
void pause_hooks_read(struct pause_hooks *h);

/* The next time the loop must wake for the hooks: `at`, or earlier. */
int64_t pause_hooks_deadline(const struct pause_hooks *h, int64_t at);

/* pid was the role's (logged; counted in the ledger's restarts by the caller when true). */
bool pause_hooks_reaped(struct pause_hooks *h, pid_t pid, int status);

/* Stops the role, which resumes what it paused first (a reload's new config starts a new
 * one). Waits at most the row's stop_ms. */
void pause_hooks_stop(struct pause_hooks *h);

#endif
