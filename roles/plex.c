#include "plex.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "http_client.h"
#include "log.h"
#include "procs.h"
#include "role.h"
#include "sandbox.h"

#define PLEX_TICK_MS 500              /* how soon a new stage gets the limit in force */
#define PLEX_TIMEOUT_MIN_MS 3000
#define PLEX_TIMEOUT_MAX_MS 10000

/* ---- the answer ---- */

static bool truthy(const cJSON *v)
{
	if (cJSON_IsBool(v))
		return cJSON_IsTrue(v);
	if (cJSON_IsNumber(v))
		return v->valuedouble != 0;
	if (cJSON_IsString(v))
		return strcmp(v->valuestring, "1") == 0 || strcasecmp(v->valuestring, "true") == 0;
	return false;
}

int plex_parse_sessions(const char *json, size_t len, struct plex_sessions *out, char *err,
			size_t err_len)
{
	cJSON *root = cJSON_ParseWithLength(json, len);
	if (!root) {
		snprintf(err, err_len, "the answer is not JSON");
		return -1;
	}
	int rc = -1;
	const cJSON *mc = cJSON_GetObjectItemCaseSensitive(root, "MediaContainer");
	if (!cJSON_IsObject(mc)) {
		snprintf(err, err_len, "the answer has no MediaContainer");
		goto out;
	}
	const cJSON *list = cJSON_GetObjectItemCaseSensitive(mc, "Metadata");
	if (!list)
		list = cJSON_GetObjectItemCaseSensitive(mc, "Video");
	struct plex_sessions s = { 0, 0, 0 };
	if (list && !cJSON_IsArray(list)) {
		snprintf(err, err_len, "MediaContainer.Metadata is not a list");
		goto out;
	}
	for (const cJSON *m = list ? list->child : NULL; m; m = m->next) {
		s.sessions++;
		const cJSON *player = cJSON_GetObjectItemCaseSensitive(m, "Player");
		const cJSON *session = cJSON_GetObjectItemCaseSensitive(m, "Session");
		const char *state = cJSON_GetStringValue(
			cJSON_GetObjectItemCaseSensitive(player, "state"));
		if (!state || (strcmp(state, "playing") != 0 && strcmp(state, "buffering") != 0))
			continue;
		s.active++;
		const char *location = cJSON_GetStringValue(
			cJSON_GetObjectItemCaseSensitive(session, "location"));
		if (truthy(cJSON_GetObjectItemCaseSensitive(player, "local")) ||
		    (location && strcmp(location, "lan") == 0))
			s.active_local++;
	}
	*out = s;
	rc = 0;
out:
	cJSON_Delete(root);
	return rc;
}

int plex_stream_count(const struct plex_sessions *s, bool ignore_local)
{
	return ignore_local ? s->active - s->active_local : s->active;
}

const char *plex_rate_for(const struct config_plex *c, int streams)
{
	if (streams <= c->max_streams_before_throttle || c->throttle_speed_count == 0)
		return NULL;
	/* Sorted by streams: the largest key <= streams, else the smallest key. */
	const char *rate = c->throttle_speeds[0].rate;
	for (size_t i = 0; i < c->throttle_speed_count; i++)
		if (c->throttle_speeds[i].streams <= streams)
			rate = c->throttle_speeds[i].rate;
	return rate;
}

static bool same_rate(const char *a, const char *b)
{
	return a == b || (a && b && strcmp(a, b) == 0);
}

bool plex_throttle_feed(struct plex_throttle *t, const char *wanted)
{
	if (!t->known) {
		t->known = true;
		t->pending = NULL;
		t->pending_polls = 0;
		bool changed = !same_rate(t->rate, wanted);
		t->rate = wanted;
		return changed;
	}
	if (same_rate(t->rate, wanted)) {
		t->pending = NULL;
		t->pending_polls = 0;
		return false;
	}
	if (t->pending_polls > 0 && same_rate(t->pending, wanted)) {
		t->pending_polls++;
	} else {
		t->pending = wanted;
		t->pending_polls = 1;
	}
	if (t->pending_polls < PLEX_HOLD_POLLS)
		return false;
	t->rate = wanted;
	t->pending = NULL;
	t->pending_polls = 0;
	return true;
}

/* ---- the role ---- */

/* What the role set on one slot, for the stage running there. */
struct plex_slot {
	int32_t pid;
	int64_t started_at_ms;
	char applied[LEDGER_BWLIMIT_MAX];  /* "" = nothing set by us */
};

struct plex {
	const struct config *cfg;
	struct ledger ledger;
	struct plex_slot *slots;
	struct plex_throttle throttle;
	int streams;                    /* at the last poll */
	int64_t next_poll_ms;
	int64_t last_busy_ms;           /* when a stage was last seen running; 0: never */
	bool failing;                   /* the last poll failed (logged once per streak) */
	char *sessions_url;
	char token_header[1024];
};

/* SIGTERM: the supervisor stopping, or restarting the role. */
static bool stop_asked(void)
{
	return *procs_signals_seen(SIGTERM) != 0;
}

static bool any_stage_running(const struct plex *p)
{
	for (uint32_t i = 0; i < p->ledger.hdr->slot_capacity; i++)
		if (p->ledger.stages[i].state == LEDGER_STAGE_RUNNING)
			return true;
	return false;
}

/* The uploader of the stage in a slot, or NULL. */
static const struct config_uploader *stage_uploader(const struct plex *p,
						    const struct ledger_stage *st)
{
	char uploader[LEDGER_UPLOADER_MAX];
	if (st->row < 0 || (uint32_t)st->row >= atomic_load(&p->ledger.hdr->row_count))
		return NULL;
	memcpy(uploader, p->ledger.rows[st->row].uploader, sizeof(uploader));
	uploader[sizeof(uploader) - 1] = '\0';
	return config_find_uploader(p->cfg, uploader);
}

/* A lift gives a stage back the remote's own --bwlimit when it has a plain one. */
static const char *lift_rate(const struct plex *p, const struct ledger_stage *st)
{
	const struct config_uploader *u = stage_uploader(p, st);
	if (!u)
		return "off";
	for (size_t i = 0; i < u->remote->rclone_extra_count; i++) {
		const struct stage_flag *f = &u->remote->rclone_extras[i];
		if (strcmp(f->name, "--bwlimit") == 0 && f->value && *f->value &&
		    strlen(f->value) < LEDGER_BWLIMIT_MAX && !strpbrk(f->value, " ,\t"))
			return f->value;
	}
	return "off";
}

static void request(struct plex *p, uint32_t slot, const char *rate)
{
	int rc = ledger_stage_request_bwlimit(&p->ledger, (int32_t)slot, rate);
	if (rc == LEDGER_OK)
		log_debug("stage slot %u (worker %d): bandwidth limit %s asked", slot,
			  (int)p->slots[slot].pid, rate);
	else if (rc != LEDGER_ERR_NOTFOUND) /* the stage just ended */
		log_warn("cannot ask stage slot %u for a bandwidth limit: %s", slot,
			 ledger_strerror(rc));
}

/* Brings every running stage to the rate in force; lifts everything when lift_all. */
static void apply(struct plex *p, bool lift_all)
{
	const char *want = lift_all ? NULL : p->throttle.rate;
	for (uint32_t i = 0; i < p->ledger.hdr->slot_capacity; i++) {
		const struct ledger_stage *st = &p->ledger.stages[i];
		const struct config_uploader *u = stage_uploader(p, st);
		struct plex_slot *mine = &p->slots[i];
		/* can_be_throttled false (cloudplow's): the throttle leaves that uploader alone. */
		if (st->state != LEDGER_STAGE_RUNNING || (u && !u->can_be_throttled)) {
			memset(mine, 0, sizeof(*mine));
			continue;
		}
		if (mine->pid != st->pid || mine->started_at_ms != st->started_at_ms) {
			/* A stage we have not seen: a new one starts without a limit, but one that
			 * an earlier run of this role (it died) limited must be lifted too. */
			memset(mine, 0, sizeof(*mine));
			mine->pid = st->pid;
			mine->started_at_ms = st->started_at_ms;
			char asked[LEDGER_BWLIMIT_MAX];
			memcpy(asked, st->bwlimit, sizeof(asked));
			asked[sizeof(asked) - 1] = '\0';
			if (st->bwlimit_seq && *asked && strcmp(asked, "off") != 0)
				memcpy(mine->applied, asked, sizeof(asked));
		}
		if (want && strcmp(mine->applied, want) != 0) {
			request(p, i, want);
			snprintf(mine->applied, sizeof(mine->applied), "%s", want);
		} else if (!want && mine->applied[0]) {
			request(p, i, lift_rate(p, st));
			mine->applied[0] = '\0';
		}
	}
}

static void poll_plex(struct plex *p)
{
	const struct config_plex *c = &p->cfg->plex;
	const char *headers[] = { p->token_header, "Accept: application/json",
				  "X-Plex-Product: cplow", "X-Plex-Client-Identifier: cplow",
				  NULL };
	long interval_ms = (long)c->poll_interval_s * 1000;
	struct http_request rq = {
		.url = p->sessions_url,
		.headers = headers,
		.timeout_ms = interval_ms < PLEX_TIMEOUT_MIN_MS   ? PLEX_TIMEOUT_MIN_MS
			      : interval_ms > PLEX_TIMEOUT_MAX_MS ? PLEX_TIMEOUT_MAX_MS
								  : interval_ms,
		.abort_flag = procs_signals_seen(SIGTERM),
	};
	struct http_response r;
	char err[HTTP_CLIENT_ERR_MAX + 64] = "", why[HTTP_CLIENT_ERR_MAX] = "";
	struct plex_sessions s = { 0, 0, 0 };
	if (http_client_request(&rq, &r, why, sizeof(why)) < 0) {
		snprintf(err, sizeof(err), "%s", why);
	} else {
		if (r.status == 401)
			snprintf(err, sizeof(err), "Plex refused the token (HTTP 401)");
		else if (r.status != 200)
			snprintf(err, sizeof(err), "Plex answered HTTP %ld", r.status);
		else if (!strstr(r.content_type, "json"))
			snprintf(err, sizeof(err), "Plex answered %s, not JSON",
				 *r.content_type ? r.content_type : "without a Content-Type");
		else if (plex_parse_sessions(r.body, r.body_len, &s, why, sizeof(why)) < 0)
			snprintf(err, sizeof(err), "%s", why);
		http_client_response_free(&r);
	}
	if (stop_asked())
		return;
	if (*err) {
		if (!p->failing)
			log_warn("cannot read Plex's sessions (%s); the bandwidth limit stays %s "
				 "until it answers", err,
				 p->throttle.rate ? p->throttle.rate : "off");
		p->failing = true;
		return;
	}
	if (p->failing)
		log_info("Plex answers again");
	p->failing = false;
	int streams = plex_stream_count(&s, c->ignore_local_streams);
	if (streams != p->streams)
		log_debug("%d sessions, %d playing or buffering (%d local): %d streams count",
			  s.sessions, s.active, s.active_local, streams);
	p->streams = streams;
	const char *was = p->throttle.rate;
	if (!plex_throttle_feed(&p->throttle, plex_rate_for(c, streams)))
		return;
	if (p->throttle.rate)
		log_info("%d Plex streams playing (more than %d): uploads limited to %s", streams,
			 c->max_streams_before_throttle, p->throttle.rate);
	else if (was)
		log_info("%d Plex streams playing (at most %d): the upload limit is lifted",
			 streams, c->max_streams_before_throttle);
}

int plex_run(const struct config *c, const char *ledger_name)
{
	struct plex p;
	memset(&p, 0, sizeof(p));
	p.cfg = c;
	int code = 1;
	/* The supervisor decides when this role stops, and it lifts nothing too early. */
	int stop_fd = role_signals_install();
	if (stop_fd < 0)
		return 1;
	int rc = ledger_attach(ledger_name, 1, &p.ledger);
	if (rc != LEDGER_OK) {
		log_error("cannot attach the ledger %s: %s", ledger_name, ledger_strerror(rc));
		return 1;
	}
	p.slots = calloc(p.ledger.hdr->slot_capacity, sizeof(*p.slots));
	p.sessions_url = http_client_join(c->plex.url, "/status/sessions");
	if (!p.slots || !p.sessions_url) {
		log_error("out of memory");
		goto out;
	}
	snprintf(p.token_header, sizeof(p.token_header), "X-Plex-Token: %s", c->plex.token);
	char err[256];
	/* Without libcurl every poll fails and says so (once per streak), as before. */
	if (http_client_prepare(err, sizeof(err)) < 0)
		log_warn("%s", err);
	/* Name resolution may need what this machine's NSS needs: refusals are errors, and only
	 * what no library does by accident kills (sandbox.h). */
	if (sandbox_enter(role_table[ROLE_PLEX].sandbox, NULL, 0, err, sizeof(err)) < 0)
		log_warn("running without a sandbox: %s", err);
	char shown[256];
	http_client_shown_url(c->plex.url, shown, sizeof(shown));
	log_info("watching Plex at %s every %d s while stages run", shown, c->plex.poll_interval_s);
	int64_t interval_ms = (int64_t)c->plex.poll_interval_s * 1000;
	while (!stop_asked()) {
		int64_t now = clock_mono_ms();
		if (any_stage_running(&p)) {
			/* After a spell without stages the old answer is stale: ask at once, and
			 * let the answer apply at once. */
			if (p.last_busy_ms && now - p.last_busy_ms > 2 * interval_ms) {
				p.throttle = (struct plex_throttle){ 0 };
				p.next_poll_ms = now;
			}
			if (now >= p.next_poll_ms) {
				poll_plex(&p);
				p.next_poll_ms = clock_mono_ms() + interval_ms;
			}
			p.last_busy_ms = clock_mono_ms();
		}
		if (stop_asked())
			break;
		apply(&p, false);
		struct pollfd pfd = { stop_fd, POLLIN, 0 };
		poll(&pfd, 1, PLEX_TICK_MS);
	}
	apply(&p, true);
	code = 0;
out:
	free(p.slots);
	free(p.sessions_url);
	explicit_bzero(p.token_header, sizeof(p.token_header));
	ledger_detach(&p.ledger);
	return code;
}
