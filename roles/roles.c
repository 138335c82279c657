/*
 * The role table (role.h): one row per long-running child of the supervisor, and how each
 * role's run function gets its inputs from what the supervisor had when it forked it.
 */
#include <signal.h>

#include "config.h"
#include "dashboard.h"
#include "downloaders.h"
#include "flusher.h"
#include "ledger.h"
#include "notify.h"
#include "plex.h"
#include "role.h"

/* A role that needs no writable mapping of the ledger drops the one it inherited: the
 * network-facing ones map their own, read-only (a write through it faults), or none. */
static void drop_ledger(const struct role_ctx *x)
{
	if (x->ledger && x->ledger->hdr) {
		struct ledger mine = *x->ledger;
		ledger_detach(&mine);
	}
}

static int run_flusher(const struct role_ctx *x)
{
	struct flusher_options o = { x->ledger_name, x->cfg->quota.cache_path,
				     x->cfg->quota.flush_interval_ms, x->supervisor };
	return flusher_run(&o);
}

static int run_dashboard(const struct role_ctx *x)
{
	drop_ledger(x);
	return dashboard_run(x->cfg, x->ledger_name);
}

static int run_notifier(const struct role_ctx *x)
{
	drop_ledger(x); /* it never needs the ledger */
	return notify_run(x->cfg, x->fd);
}

static int run_plex(const struct role_ctx *x)
{
	return plex_run(x->cfg, x->ledger_name);
}

static int run_downloaders(const struct role_ctx *x)
{
	drop_ledger(x); /* it never needs the ledger */
	return downloaders_run(x->cfg, x->fd, x->reply_fd, x->restarted);
}

const struct role role_table[ROLE_COUNT] = {
	/* No signal on the supervisor's death: its workers go on counting for seconds after it
	 * (their own stop), and the flusher outlives it until they are gone (flusher_run). Two
	 * flushers never write the file at once (the ledger's flush lock), and one outliving us
	 * ends when the next cplow runs. */
	[ROLE_FLUSHER] = { .name = "flusher", .what = "flusher", .run = run_flusher,
			   .sandbox = SANDBOX_FLUSHER, .death_signal = 0, .counted = true,
			   .stop_ms = 10000, .lib = ROLE_LIB_NONE },
	/* People and scrapers are never worth a moment of an upload: nice 10. It answers no
	 * request longer than a ledger read: what does not end in 5 s is stuck. */
	[ROLE_DASHBOARD] = { .name = "dashboard", .what = "dashboard", .run = run_dashboard,
			     .sandbox = SANDBOX_DASHBOARD, .nice = 10, .death_signal = SIGTERM,
			     .counted = true, .stop_ms = 5000, .lib = ROLE_LIB_MHD },
	/* Stopped by closing its pipe (supervisor/notify_hooks.c), after NOTIFY_DRAIN_MS. */
	[ROLE_NOTIFIER] = { .name = "notifier", .what = "notifier", .run = run_notifier,
			    .sandbox = SANDBOX_NOTIFIER, .death_signal = SIGTERM,
			    .counted = false, .stop_ms = NOTIFY_DRAIN_MS + 1000,
			    .lib = ROLE_LIB_CURL },
	/* Lifts the limits it set before it ends: a poll of Plex may take its timeout first. */
	[ROLE_PLEX] = { .name = "plex", .what = "Plex throttle", .ps_name = "cplow-plex",
			.run = run_plex, .sandbox = SANDBOX_PLEX, .death_signal = SIGTERM,
			.counted = true, .stop_ms = 15000, .lib = ROLE_LIB_CURL },
	/* Resumes what it paused before it ends: a pause under way may take its calls' timeouts
	 * first (a status and a pause per downloader), then the resumes take theirs. */
	[ROLE_DOWNLOADERS] = { .name = "downloaders", .what = "downloaders' pause role",
			       .ps_name = "cplow-pause", .run = run_downloaders,
			       .sandbox = SANDBOX_DOWNLOADERS, .death_signal = SIGTERM,
			       .counted = true,
			       .stop_ms = 3 * DOWNLOADER_KINDS * DOWNLOADERS_TIMEOUT_MS + 1000,
			       .lib = ROLE_LIB_CURL },
};
