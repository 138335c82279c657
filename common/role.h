/*
 * The supervisor's long-running children, in the manner of OpenBSD relayd's procs[]: one row
 * per role says what the supervisor needs to run it (its name in the log and in ps, its run
 * function, its sandbox, its nice value, whether it outlives the supervisor, whether a restart
 * is counted, how long its stop may take, the library it loads lazily), and one routine forks,
 * restarts and stops every role by its row. The rows are in roles/roles.c, beside the run
 * functions; the supervisor reaches the roles only through role_table, never through their
 * headers (supervisor.c and notify_hooks.c say when each is wanted).
 *
 * A role runs on the state the supervisor had when it forked it (its config, the ledger's
 * name): a role that must see a new config is started again. Every role:
 *   - enters its row's sandbox once its set-up is done;
 *   - is restarted with procs_backoff's capped backoff when it dies;
 *   - stops on SIGTERM, within its row's stop_ms (then it is SIGKILLed); the notifier stops
 *     when its pipe from the supervisor closes, after what it holds.
 * Workers (one per stage) and the checks of a dead worker's files are forked with the same
 * procs_fork() but are not roles: they run once, on a stage spec, and are never restarted.
 */
#ifndef CPLOW_ROLE_H
#define CPLOW_ROLE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "procs.h"
#include "sandbox.h"

enum role_id {
	ROLE_FLUSHER,
	ROLE_DASHBOARD,
	ROLE_NOTIFIER,
	ROLE_PLEX,
	ROLE_DOWNLOADERS,
	ROLE_COUNT
};

/* The library a role loads after its fork, before its run function (lazy_curl.h). */
enum role_lib {
	ROLE_LIB_NONE,
	ROLE_LIB_CURL,
	ROLE_LIB_MHD,
};

struct config;
struct ledger;

/* What a role is started with: the supervisor's state at the fork, which the role only reads. */
struct role_ctx {
	const struct config *cfg;
	const struct ledger *ledger;  /* the supervisor's writable mapping, inherited: a role that
				       * needs none drops it, the others map their own */
	const char *ledger_name;
	pid_t supervisor;             /* for a role that outlives it */
	int fd;                       /* the role's end of a pipe from the supervisor, or -1 */
	int reply_fd;                 /* its end of a pipe back to the supervisor, or -1 */
	int close_fd;                 /* closed in the role: the instance lock */
	bool restarted;               /* it replaces one of its kind that died */
};

struct role {
	const char *name;             /* the log tag: "flusher" */
	const char *what;             /* in the supervisor's messages: "the Plex throttle died" */
	const char *ps_name;          /* its name in ps (PR_SET_NAME); NULL keeps "cplow" */
	int (*run)(const struct role_ctx *ctx);   /* returns the role's exit code */
	enum sandbox_role sandbox;    /* entered by the role once set up */
	int nice;                     /* added to the supervisor's nice value, as rclone's is
				       * (nice(2)); 0 leaves the supervisor's */
	int death_signal;             /* sent by the kernel when the supervisor dies; 0: the role
				       * outlives it (the flusher, while workers still count) */
	bool counted;                 /* a restart counts in the ledger's restarts */
	int stop_ms;                  /* after SIGTERM, how long it may take to end */
	enum role_lib lib;
};

extern const struct role role_table[ROLE_COUNT];

/* The supervisor's record of one role: its pid (0: not running) and its restart backoff. */
struct role_state {
	pid_t pid;
	struct procs_backoff backoff;
};

/* Forks the role (procs_fork with its death signal; its log tag, ps name, nice value and
 * library set in the child, then its run function, whose code is the child's exit status).
 * Records the pid and the start in *st. Returns the pid, or -1 (logged; the backoff counts it
 * as a death). */
pid_t role_start(const struct role *r, struct role_state *st, const struct role_ctx *ctx);

/* In a role that only the supervisor stops (SIGTERM): a terminal's ^C or hangup reaches the
 * whole process group, so SIGINT and SIGHUP are ignored, and SIGPIPE too. Returns the fd that
 * wakes a poll at SIGTERM (procs_signals_seen(SIGTERM) counts it), or -1 (logged). */
int role_signals_install(void);

/* Not running, and its restart is due. */
bool role_due(const struct role_state *st, int64_t now_ms);

/* pid was the role's: logged ("the flusher died (status 9); restarting it"), its backoff
 * counted (the caller counts r->counted ones in the ledger). Returns false when pid is not the
 * role's. */
bool role_reaped(const struct role *r, struct role_state *st, pid_t pid, int status);

/* SIGTERM, then at most stop_ms for it to end, then SIGKILL (logged). A stopped role is started
 * again at once when wanted. Returns its wait status, or -1 when it was not running or had to
 * be killed. */
int role_stop(const struct role *r, struct role_state *st);

#endif
