#include "pause_hooks.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "ledger.h"
#include "log.h"
#include "pause_record.h"
#include "procs.h"

static const struct role *row(void)
{
	return &role_table[ROLE_DOWNLOADERS];
}

static bool wanted(const struct config *c)
{
	return c->nzbget.enabled || c->sabnzbd.enabled;
}

void pause_hooks_init(struct pause_hooks *h)
{
	memset(h, 0, sizeof(*h));
	h->req_fd = h->reply_fd = -1;
}

static void close_ours(struct pause_hooks *h)
{
	int *fds[] = { &h->req_fd, &h->reply_fd };
	for (size_t i = 0; i < 2; i++) {
		if (*fds[i] < 0)
			continue;
		procs_forget_in_children(*fds[i]);
		close(*fds[i]);
		*fds[i] = -1;
	}
}

/* Each role gets pipes of its own: nothing a dead one left unread or unanswered reaches the
 * next. */
static void start(struct pause_hooks *h, const struct config *c, const struct ledger *l,
		  int close_fd)
{
	int req[2], reply[2] = { -1, -1 };
	if (pipe2(req, O_CLOEXEC | O_NONBLOCK) < 0 ||
	    pipe2(reply, O_CLOEXEC | O_NONBLOCK) < 0) {
		log_error("cannot start the %s: %s", row()->what, strerror(errno));
		if (reply[0] < 0) {
			int saved = errno;
			close(req[0]);
			close(req[1]);
			errno = saved;
		}
		procs_backoff_died(&h->role.backoff, ledger_now_ms());
		return;
	}
	close_ours(h);
	h->req_fd = req[1];
	h->reply_fd = reply[0];
	procs_close_in_children(h->req_fd);
	procs_close_in_children(h->reply_fd);
	struct role_ctx x = { .cfg = c, .ledger = l, .fd = req[0], .reply_fd = reply[1],
			      .close_fd = close_fd, .supervisor = getpid(),
			      .restarted = h->started };
	if (role_start(row(), &h->role, &x) > 0)
		h->started = true;
	close(req[0]);
	close(reply[1]);
	/* The new role knows nothing: asked again for the pause while stages run. */
	h->sent_paused = false;
	h->answered = h->seq;
}

/* What the role has not been asked yet; a full pipe is logged once and tried at the next
 * tick. */
static void send_wanted(struct pause_hooks *h)
{
	if (h->req_fd < 0 || h->role.pid <= 0 || h->want_paused == h->sent_paused)
		return;
	struct pause_record rq = { PAUSE_RECORD_MAGIC,
				   h->want_paused ? PAUSE_WANT_PAUSE : PAUSE_WANT_RESUME,
				   h->seq + 1 };
	ssize_t w;
	do
		w = write(h->req_fd, &rq, sizeof(rq));
	while (w < 0 && errno == EINTR);
	if (w == (ssize_t)sizeof(rq)) {
		h->seq = rq.seq;
		h->sent_paused = h->want_paused;
		h->unsent_logged = false;
		return;
	}
	if (!h->unsent_logged)
		log_warn("downloaders: the %s not asked yet (%s); asking again at the next tick",
			 h->want_paused ? "pause is" : "resume is",
			 w < 0 && errno == EAGAIN ? "the role is behind: its pipe is full"
						  : strerror(errno));
	h->unsent_logged = true;
}

void pause_hooks_tick(struct pause_hooks *h, const struct config *c, const struct ledger *l,
		      int close_fd, bool stopping)
{
	if (wanted(c) && !stopping && role_due(&h->role, ledger_now_ms()))
		start(h, c, l, close_fd);
	send_wanted(h);
}

bool pause_hooks_ready(struct pause_hooks *h, const struct config *c, int64_t now_ms)
{
	if (!wanted(c))
		return true;
	if (!h->want_paused) {
		h->want_paused = true;
		h->hold_until_ms = now_ms + PAUSE_HOLD_MS;
		send_wanted(h);
	}
	/* A role down waiting for its restart holds nothing: it is asked once it runs. */
	if (h->role.pid <= 0 || (h->sent_paused && h->answered >= h->seq)) {
		h->hold_until_ms = 0;
		return true;
	}
	if (now_ms < h->hold_until_ms)
		return false;
	if (h->hold_until_ms) {
		log_info("downloaders: no answer to the pause in %d s: the stage starts, the pause "
			 "lands when they answer", PAUSE_HOLD_MS / 1000);
		h->hold_until_ms = 0;
	}
	return true;
}

void pause_hooks_resume(struct pause_hooks *h, int64_t now_ms)
{
	if (h->hold_until_ms && now_ms < h->hold_until_ms)
		return;
	h->want_paused = false;
	h->hold_until_ms = 0;
	send_wanted(h);
}

int pause_hooks_fd(const struct pause_hooks *h)
{
	return h->reply_fd;
}

void pause_hooks_read(struct pause_hooks *h)
{
	struct pause_record a;
	while (h->reply_fd >= 0 && read(h->reply_fd, &a, sizeof(a)) == (ssize_t)sizeof(a))
		if (a.magic == PAUSE_RECORD_MAGIC && a.seq > h->answered)
			h->answered = a.seq;
}

int64_t pause_hooks_deadline(const struct pause_hooks *h, int64_t at)
{
	if (h->hold_until_ms && h->hold_until_ms < at)
		at = h->hold_until_ms;
	if (h->role.pid == 0 && h->role.backoff.restart_at_ms && h->role.backoff.restart_at_ms < at)
		at = h->role.backoff.restart_at_ms;
	return at;
}

bool pause_hooks_reaped(struct pause_hooks *h, pid_t pid, int status)
{
	if (!role_reaped(row(), &h->role, pid, status))
		return false;
	close_ours(h);
	return true;
}

void pause_hooks_stop(struct pause_hooks *h)
{
	role_stop(row(), &h->role);
	close_ours(h);
	/* It resumed what it paused: the next stage asks again. */
	h->want_paused = h->sent_paused = false;
	h->hold_until_ms = 0;
}
