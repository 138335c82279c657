#include "role.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "clock.h"
#include "lazy_curl.h"
#include "lazy_mhd.h"
#include "log.h"

/* In the child: everything the row says, then the role. Never returns. */
static void enter(const struct role *r, const struct role_ctx *ctx)
{
	log_set_tag(r->name);
	if (r->ps_name)
		prctl(PR_SET_NAME, r->ps_name); /* in ps and top, beside the other cplows */
	/* A role for people and scrapers runs on what rclone and the worker leave: its start-up
	 * (~10 ms of loading libmicrohttpd) used to hold a first stage's rclone back by as much on
	 * two cores. Unprivileged, this cannot be undone, and need not be. */
	errno = 0;
	if (r->nice && nice(r->nice) == -1 && errno)
		log_debug("cannot lower the %s's priority: %s", r->name, strerror(errno));
	/* Loaded before the role's own set-up and its sandbox; a failure is remembered, and the
	 * role's own load reports it as it always does. */
	if (r->lib == ROLE_LIB_CURL)
		lazy_curl_load(NULL, 0);
	else if (r->lib == ROLE_LIB_MHD)
		lazy_mhd_load(NULL, 0);
	/* _exit: exit-time handlers are the supervisor's, and the role's filter is on. */
	_exit(r->run(ctx));
}

pid_t role_start(const struct role *r, struct role_state *st, const struct role_ctx *ctx)
{
	pid_t pid = procs_fork(ctx->close_fd, r->death_signal);
	if (pid == 0)
		enter(r, ctx);
	if (pid < 0) {
		log_error("cannot fork the %s: %s", r->what, strerror(errno));
		procs_backoff_died(&st->backoff, clock_wall_ms());
		return -1;
	}
	st->pid = pid;
	procs_backoff_started(&st->backoff, clock_wall_ms());
	return pid;
}

int role_signals_install(void)
{
	static const int caught[] = { SIGTERM };
	static const int ignored[] = { SIGINT, SIGHUP, SIGPIPE };
	int fd = procs_signals_install(caught, 1, ignored, 3, 0, NULL);
	if (fd < 0)
		log_error("cannot install signal handlers: %s", strerror(errno));
	return fd;
}

bool role_due(const struct role_state *st, int64_t now_ms)
{
	return st->pid == 0 && now_ms >= st->backoff.restart_at_ms;
}

bool role_reaped(const struct role *r, struct role_state *st, pid_t pid, int status)
{
	if (st->pid <= 0 || pid != st->pid)
		return false;
	st->pid = 0;
	log_error("the %s died (status %d); restarting it", r->what, status);
	procs_backoff_died(&st->backoff, clock_wall_ms());
	return true;
}

int role_stop(const struct role *r, struct role_state *st)
{
	if (st->pid <= 0)
		return -1;
	int status = 0, rc = 0;
	kill(st->pid, SIGTERM);
	if (procs_wait(st->pid, r->stop_ms, &status) == 1) {
		log_error("the %s did not stop in %d s; killed it", r->what, r->stop_ms / 1000);
		rc = -1;
	}
	st->pid = 0;
	st->backoff = (struct procs_backoff){ 0 };
	return rc < 0 ? -1 : status;
}
