/*
 * The notifier: the role that sends (notify.h). It reads whole event records from its pipe and
 * posts each to every target with libcurl's multi interface, retrying as notify_classify says.
 */
#include "notify.h"

#include <curl/curl.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "lazy_curl.h"
#include "log.h"
#include "procs.h"
#include "role.h"
#include "sandbox.h"

_Static_assert(sizeof(struct notify_event) <= PIPE_BUF, "an event must fit one atomic write");

#define NOTIFY_POLL_MAX_MS 200          /* the notifier's longest wait: stop flags, due retries */

struct delivery {
	struct notify_event ev;
	int attempts;                 /* made so far */
	int64_t due_ms;
};

struct target {
	const struct config_notification *cfg;
	struct delivery *queue;       /* a ring of NOTIFY_QUEUE_MAX */
	size_t head, count;
	CURL *easy;                   /* the head's request, while one is under way */
	struct curl_slist *headers;
	struct notify_request req;
};

/* SIGTERM (the supervisor stopping or replacing it) or SIGINT: what is in the pipe is left to
 * the next notifier; what is queued is sent for at most NOTIFY_DRAIN_MS. Noticed within
 * NOTIFY_POLL_MAX_MS. */
static bool stop_asked(void)
{
	return *procs_signals_seen(SIGTERM) || *procs_signals_seen(SIGINT);
}

static size_t discard_body(char *data, size_t size, size_t n, void *ctx)
{
	(void)data;
	(void)ctx;
	return size * n;
}

static void pop(struct target *t)
{
	t->head = (t->head + 1) % NOTIFY_QUEUE_MAX;
	t->count--;
}

static void enqueue(struct target *t, const struct notify_event *e, int64_t now)
{
	if (t->count == NOTIFY_QUEUE_MAX) {
		log_warn("%s: %zu events wait already; %s %s dropped", t->cfg->name, t->count,
			 notify_kind_name((enum notify_kind)e->kind), e->id);
		return;
	}
	struct delivery *d = &t->queue[(t->head + t->count) % NOTIFY_QUEUE_MAX];
	d->ev = *e;
	d->attempts = 0;
	d->due_ms = now;
	t->count++;
}

static int begin(CURLM *multi, struct target *t)
{
	struct delivery *d = &t->queue[t->head];
	char line[128];
	if (notify_build_request(t->cfg, &d->ev, &t->req) < 0)
		return -1;
	snprintf(line, sizeof(line), "Content-Type: %s", t->req.content_type);
	struct curl_slist *h = curl_slist_append(NULL, line);
	snprintf(line, sizeof(line), "Idempotency-Key: %.40s", d->ev.id);
	struct curl_slist *h2 = h ? curl_slist_append(h, line) : NULL;
	/* No "Expect: 100-continue" for a body over 1 KiB: a server that ignores it costs a
	 * second per request. */
	h2 = h2 ? curl_slist_append(h2, "Expect:") : NULL;
	h = h2 ? h2 : h;
	for (size_t i = 0; h2 && i < t->cfg->header_count; i++) {
		const struct config_notify_header *x = &t->cfg->headers[i];
		size_t n = strlen(x->name) + strlen(x->value) + 3;
		char *hl = malloc(n);
		if (!hl) {
			h2 = NULL;
			break;
		}
		/* "Name:" with an empty value would make curl drop the header: "Name;" sends it. */
		if (*x->value)
			snprintf(hl, n, "%s: %s", x->name, x->value);
		else
			snprintf(hl, n, "%s;", x->name);
		h2 = curl_slist_append(h, hl);
		free(hl);
	}
	t->headers = h;
	CURL *c = curl_easy_init();
	if (!h2 || !c) {
		curl_easy_cleanup(c);
		return -1;
	}
	t->easy = c;
	CURLcode e = CURLE_OK;
#define SET(opt, val) if (e == CURLE_OK) e = curl_easy_setopt(c, opt, val)
	SET(CURLOPT_URL, t->cfg->url);
	SET(CURLOPT_PROTOCOLS_STR, "http,https");
	SET(CURLOPT_FOLLOWLOCATION, 0L);
	SET(CURLOPT_NOSIGNAL, 1L);
	SET(CURLOPT_CONNECTTIMEOUT_MS, (long)NOTIFY_CONNECT_TIMEOUT_MS);
	SET(CURLOPT_TIMEOUT_MS, (long)NOTIFY_TIMEOUT_MS);
	SET(CURLOPT_USERAGENT, "cplow");
	SET(CURLOPT_HTTPHEADER, t->headers);
	SET(CURLOPT_POSTFIELDSIZE, (long)strlen(t->req.body));
	SET(CURLOPT_POSTFIELDS, t->req.body);
	SET(CURLOPT_WRITEFUNCTION, discard_body);
	SET(CURLOPT_PRIVATE, (void *)t);
#undef SET
	if (e != CURLE_OK || curl_multi_add_handle(multi, c) != CURLM_OK)
		return -1;
	d->attempts++;
	return 0;
}

static void end_request(CURLM *multi, struct target *t)
{
	if (t->easy) {
		curl_multi_remove_handle(multi, t->easy);
		curl_easy_cleanup(t->easy);
	}
	t->easy = NULL;
	curl_slist_free_all(t->headers);
	t->headers = NULL;
	notify_request_free(&t->req);
}

/* One request ended: deliver, retry later, or give up. */
static void finished(CURLM *multi, struct target *t, CURLcode code, int64_t now)
{
	long status = 0, sent = 0;
	curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_getinfo(t->easy, CURLINFO_REQUEST_SIZE, &sent);
	end_request(multi, t);
	struct delivery *d = &t->queue[t->head];
	const char *kind = notify_kind_name((enum notify_kind)d->ev.kind);
	char what[160];
	if (code != CURLE_OK)
		snprintf(what, sizeof(what), "%s", curl_easy_strerror(code));
	else
		snprintf(what, sizeof(what), "HTTP %ld", status);
	switch (notify_classify(code, status, sent > 0)) {
	case NOTIFY_DELIVERED:
		log_info("%s: %s %s sent", t->cfg->name, kind, d->ev.id);
		pop(t);
		return;
	case NOTIFY_RETRY:
		if (d->attempts < NOTIFY_ATTEMPTS) {
			int wait = notify_backoff_ms(d->attempts + 1);
			log_warn("%s: %s %s not delivered (%s); attempt %d of %d in %d s",
				 t->cfg->name, kind, d->ev.id, what, d->attempts + 1,
				 NOTIFY_ATTEMPTS, wait / 1000);
			d->due_ms = now + wait;
			return;
		}
		log_warn("%s: %s %s not delivered (%s); given up after %d attempts", t->cfg->name,
			 kind, d->ev.id, what, d->attempts);
		break;
	case NOTIFY_UNANSWERED:
		log_warn("%s: %s %s got no answer (%s) after it was sent; not sent again, since it "
			 "may have arrived", t->cfg->name, kind, d->ev.id, what);
		break;
	case NOTIFY_REFUSED:
		log_warn("%s: %s %s refused (%s); not sent again", t->cfg->name, kind, d->ev.id,
			 what);
		break;
	}
	pop(t);
}

/* Whole records from the pipe; a record torn by a short read waits in `carry`. Returns -1 at
 * EOF (every writer is gone). */
static int read_events(int fd, struct target *targets, size_t n_targets, char *carry,
		       size_t *carried, int64_t now)
{
	for (;;) {
		ssize_t r = read(fd, carry + *carried, sizeof(struct notify_event) * 8 - *carried);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return 0; /* EAGAIN: nothing more for now */
		if (r == 0)
			return -1;
		*carried += (size_t)r;
		size_t whole = *carried / sizeof(struct notify_event);
		for (size_t i = 0; i < whole; i++) {
			struct notify_event e;
			memcpy(&e, carry + i * sizeof(e), sizeof(e));
			if (notify_event_check(&e) < 0) {
				log_error("a malformed event record in the pipe; dropped");
				continue;
			}
			e.id[sizeof(e.id) - 1] = '\0';
			for (size_t k = 0; k < n_targets; k++)
				enqueue(&targets[k], &e, now);
		}
		*carried -= whole * sizeof(struct notify_event);
		memmove(carry, carry + whole * sizeof(struct notify_event), *carried);
	}
}

int notify_run(const struct config *c, int read_fd)
{
	static const int caught[] = { SIGTERM, SIGINT };
	static const int ignored[] = { SIGPIPE }; /* OpenSSL writes without MSG_NOSIGNAL */
	procs_signals_install(caught, 2, ignored, 1, PROCS_NO_RESTART, NULL);
	char why[256];
	if (lazy_curl_load(why, sizeof(why)) < 0) {
		log_error("%s", why);
		return 1;
	}
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		log_error("cannot initialise libcurl");
		return 1;
	}
	int rc = 1;
	size_t n = 0;
	struct target *targets = calloc(c->notification_count + 1, sizeof(*targets));
	char *carry = malloc(sizeof(struct notify_event) * 8);
	CURLM *multi = curl_multi_init();
	if (!targets || !carry || !multi)
		goto out;
	for (size_t i = 0; i < c->notification_count; i++) {
		if (!c->notifications[i].enabled)
			continue;
		targets[n].cfg = &c->notifications[i];
		if (!(targets[n++].queue = calloc(NOTIFY_QUEUE_MAX, sizeof(struct delivery))))
			goto out;
	}
	char err[256];
	if (sandbox_enter(role_table[ROLE_NOTIFIER].sandbox, NULL, 0, err, sizeof(err)) < 0)
		log_warn("running without a sandbox: %s", err);
	size_t carried = 0;
	bool reading = true;
	int64_t drain_until = 0;
	for (;;) {
		int64_t now = clock_wall_ms();
		if (stop_asked())
			reading = false; /* SIGTERM: what is in the pipe is the next notifier's */
		if (!reading && drain_until == 0)
			drain_until = now + NOTIFY_DRAIN_MS;
		size_t pending = 0;
		for (size_t i = 0; i < n; i++)
			pending += targets[i].count;
		if (!reading && (pending == 0 || now >= drain_until))
			break;
		int64_t next_due = now + NOTIFY_POLL_MAX_MS;
		for (size_t i = 0; i < n; i++) {
			struct target *t = &targets[i];
			if (t->easy || t->count == 0)
				continue;
			struct delivery *d = &t->queue[t->head];
			if (d->due_ms > now) {
				if (d->due_ms < next_due)
					next_due = d->due_ms;
				continue;
			}
			if (begin(multi, t) < 0) {
				log_error("%s: cannot make the request for %s (out of memory?); "
					  "dropped", t->cfg->name, d->ev.id);
				end_request(multi, t);
				pop(t);
			}
		}
		int running = 0;
		curl_multi_perform(multi, &running);
		CURLMsg *m;
		int left;
		while ((m = curl_multi_info_read(multi, &left))) {
			if (m->msg != CURLMSG_DONE)
				continue;
			char *t = NULL;
			curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, &t);
			if (t)
				finished(multi, (struct target *)(void *)t, m->data.result,
					 clock_wall_ms());
		}
		long wait = (long)(next_due - clock_wall_ms()), curl_wait = -1;
		curl_multi_timeout(multi, &curl_wait);
		if (curl_wait >= 0 && curl_wait < wait)
			wait = curl_wait;
		if (wait < 0)
			wait = 0;
		struct curl_waitfd wfd = { .fd = read_fd, .events = CURL_WAIT_POLLIN };
		curl_multi_poll(multi, reading ? &wfd : NULL, reading ? 1 : 0, (int)wait, NULL);
		if (reading && !stop_asked() &&
		    read_events(read_fd, targets, n, carry, &carried, clock_wall_ms()) < 0)
			reading = false; /* EOF: the supervisor is done; drain */
	}
	for (size_t i = 0; i < n; i++)
		if (targets[i].count)
			log_warn("%s: %zu events not delivered before the notifier stopped",
				 targets[i].cfg->name, targets[i].count);
	rc = 0;
out:
	for (size_t i = 0; targets && i < n; i++) {
		end_request(multi, &targets[i]);
		free(targets[i].queue);
	}
	if (rc)
		log_error("out of memory");
	curl_multi_cleanup(multi);
	free(carry);
	free(targets);
	close(read_fd);
	curl_global_cleanup();
	return rc;
}
