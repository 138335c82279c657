#include "downloaders.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "http_client.h"
#include "log.h"
#include "pause_record.h"
#include "procs.h"
#include "role.h"

static const char *const kind_names[DOWNLOADER_KINDS] = { "nzbget", "sabnzbd" };

/* ---- requests ---- */

/* RFC 3986 unreserved characters stay; everything else is %XX. */
static char *percent_encode(const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	char *out = malloc(strlen(s) * 3 + 1), *o = out;
	if (!out)
		return NULL;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		bool unreserved = (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
				  (*p >= '0' && *p <= '9') || strchr("-._~", *p);
		if (unreserved) {
			*o++ = (char)*p;
		} else {
			*o++ = '%';
			*o++ = hex[*p >> 4];
			*o++ = hex[*p & 15];
		}
	}
	*o = '\0';
	return out;
}

char *downloaders_request_url(enum downloader_kind kind, const char *url, const char *apikey,
			      const char *mode, const char **post_json)
{
	*post_json = NULL;
	if (kind == DOWNLOADER_NZBGET) {
		if (strcmp(mode, "status") == 0)
			*post_json = "{\"method\": \"status\", \"params\": [], \"id\": 1}";
		else if (strcmp(mode, "pause") == 0)
			*post_json = "{\"method\": \"pausedownload\", \"params\": [], \"id\": 1}";
		else
			*post_json = "{\"method\": \"resumedownload\", \"params\": [], \"id\": 1}";
		return http_client_join(url, "/jsonrpc");
	}
	char *base = http_client_join(url, "/api");
	char *key = percent_encode(apikey ? apikey : "");
	char *full = NULL;
	if (base && key) {
		const char *sab_mode = strcmp(mode, "status") == 0 ? "queue&limit=1" : mode;
		size_t n = strlen(base) + strlen(sab_mode) + strlen(key) + 64;
		if ((full = malloc(n)))
			snprintf(full, n, "%s?mode=%s&apikey=%s&output=json", base, sab_mode, key);
	}
	free(base);
	free(key);
	return full;
}

/* One call; 0 with the answer's JSON in *root, or -1 with one line in err. */
static int call(enum downloader_kind kind, const char *url, const char *apikey, const char *mode,
		cJSON **root, char *err, size_t err_len)
{
	const char *post = NULL;
	char *full = downloaders_request_url(kind, url, apikey, mode, &post);
	if (!full) {
		snprintf(err, err_len, "out of memory");
		return -1;
	}
	const char *headers[] = { "Accept: application/json", NULL };
	struct http_request rq = { .url = full, .headers = headers, .post_json = post,
				   .timeout_ms = DOWNLOADERS_TIMEOUT_MS };
	struct http_response r;
	char why[HTTP_CLIENT_ERR_MAX];
	int rc = http_client_request(&rq, &r, why, sizeof(why));
	explicit_bzero(full, strlen(full)); /* it holds the API key */
	free(full);
	if (rc < 0) {
		snprintf(err, err_len, "%s", why);
		return -1;
	}
	rc = -1;
	if (r.status == 401 || r.status == 403)
		snprintf(err, err_len, "refused (HTTP %ld): check the user name and password",
			 r.status);
	else if (r.status != 200)
		snprintf(err, err_len, "HTTP %ld", r.status);
	else if (!(*root = cJSON_ParseWithLength(r.body, r.body_len)))
		snprintf(err, err_len, "the answer is not JSON");
	else
		rc = 0;
	http_client_response_free(&r);
	return rc;
}

/* Whether the downloader's queue is paused: 1 yes, 0 no, -1 unknown (err says why). */
static int is_paused(enum downloader_kind kind, const char *url, const char *apikey, char *err,
		     size_t err_len)
{
	cJSON *root = NULL;
	if (call(kind, url, apikey, "status", &root, err, err_len) < 0)
		return -1;
	const cJSON *holder = cJSON_GetObjectItemCaseSensitive(
		root, kind == DOWNLOADER_NZBGET ? "result" : "queue");
	const cJSON *flag = cJSON_GetObjectItemCaseSensitive(
		holder, kind == DOWNLOADER_NZBGET ? "DownloadPaused" : "paused");
	int paused = -1;
	if (cJSON_IsBool(flag))
		paused = cJSON_IsTrue(flag);
	else
		snprintf(err, err_len, "the status answer does not say whether it is paused");
	cJSON_Delete(root);
	return paused;
}

/* pause or resume: 0 when the downloader said it did, else -1 with err. */
static int act(enum downloader_kind kind, const char *url, const char *apikey, const char *mode,
	       char *err, size_t err_len)
{
	cJSON *root = NULL;
	if (call(kind, url, apikey, mode, &root, err, err_len) < 0)
		return -1;
	int rc = -1;
	const cJSON *ok = cJSON_GetObjectItemCaseSensitive(
		root, kind == DOWNLOADER_NZBGET ? "result" : "status");
	if (cJSON_IsTrue(ok)) {
		rc = 0;
	} else {
		const cJSON *e = cJSON_GetObjectItemCaseSensitive(root, "error");
		const char *text = cJSON_IsString(e) ? e->valuestring
				   : cJSON_IsObject(e)
					   ? cJSON_GetStringValue(
						     cJSON_GetObjectItemCaseSensitive(e, "message"))
					   : NULL;
		snprintf(err, err_len, "it answered %s", text ? text : "without saying it did");
	}
	cJSON_Delete(root);
	return rc;
}

/* ---- the marker ---- */

static void write_marker(const struct downloaders *d)
{
	char text[64] = "", tmp[PATH_MAX + 8];
	for (int k = 0; k < DOWNLOADER_KINDS; k++)
		if (d->paused[k]) {
			strcat(text, kind_names[k]);
			strcat(text, "\n");
		}
	if (!*text) {
		if (unlink(d->marker) < 0 && errno != ENOENT)
			log_warn("cannot remove %s: %s", d->marker, strerror(errno));
		return;
	}
	snprintf(tmp, sizeof(tmp), "%s.tmp", d->marker);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	size_t len = strlen(text);
	if (fd < 0 || write(fd, text, len) != (ssize_t)len || fsync(fd) < 0 || close(fd) < 0 ||
	    rename(tmp, d->marker) < 0) {
		int saved = errno;
		if (fd >= 0)
			unlink(tmp);
		log_warn("cannot write %s (%s): should cplow crash now, resume %s by hand",
			 d->marker, strerror(saved), text[0] == 'n' ? "NZBGet" : "SABnzbd");
	}
}

/* ---- pausing and resuming (the role's, at the supervisor's request) ---- */

void downloaders_init(struct downloaders *d, const struct config *c)
{
	memset(d, 0, sizeof(*d));
	snprintf(d->marker, sizeof(d->marker), "%s.paused", c->quota.lock_path);
}

static void forget(struct downloaders *d, int k)
{
	d->paused[k] = false;
	free(d->url[k]);
	d->url[k] = NULL;
	if (k == DOWNLOADER_SABNZBD) {
		if (d->apikey)
			explicit_bzero(d->apikey, strlen(d->apikey));
		free(d->apikey);
		d->apikey = NULL;
	}
}

static const char *config_url(const struct config *c, int k)
{
	if (k == DOWNLOADER_NZBGET)
		return c->nzbget.enabled ? c->nzbget.url : NULL;
	return c->sabnzbd.enabled ? c->sabnzbd.url : NULL;
}

/* Remembers where to resume kind k; false when out of memory. */
static bool remember(struct downloaders *d, const struct config *c, int k)
{
	d->url[k] = strdup(config_url(c, k));
	if (k == DOWNLOADER_SABNZBD)
		d->apikey = strdup(c->sabnzbd.apikey);
	if (!d->url[k] || (k == DOWNLOADER_SABNZBD && !d->apikey)) {
		forget(d, k);
		return false;
	}
	d->paused[k] = true;
	return true;
}

void downloaders_recover(struct downloaders *d, const struct config *c, bool restarted)
{
	const char *who = restarted ? "the downloaders' role that died" : "an earlier cplow";
	FILE *f = fopen(d->marker, "r");
	if (!f) {
		if (errno != ENOENT)
			log_warn("cannot read %s: %s", d->marker, strerror(errno));
		return;
	}
	char line[64];
	while (fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\r\n")] = '\0';
		for (int k = 0; k < DOWNLOADER_KINDS; k++) {
			if (strcmp(line, kind_names[k]) != 0 || d->paused[k])
				continue;
			if (!config_url(c, k))
				log_warn("%s paused %s and did not resume it, and %s is not "
					 "enabled in this config: resume it by hand", who, line, line);
			else if (remember(d, c, k))
				log_warn("%s paused %s and did not resume it%s: resuming it now", who,
					 line, restarted ? "" : " (it was killed?)");
		}
	}
	fclose(f);
	downloaders_resume(d);
	if (unlink(d->marker) < 0 && errno != ENOENT)
		log_warn("cannot remove %s: %s", d->marker, strerror(errno));
}

void downloaders_pause(struct downloaders *d, const struct config *c)
{
	char err[HTTP_CLIENT_ERR_MAX + 64], shown[256];
	for (int k = 0; k < DOWNLOADER_KINDS; k++) {
		const char *url = config_url(c, k);
		if (!url || d->paused[k] || d->asked[k])
			continue;
		d->asked[k] = true;
		http_client_shown_url(url, shown, sizeof(shown));
		const char *apikey = c->sabnzbd.apikey;
		int already = is_paused(k, url, apikey, err, sizeof(err));
		if (already == 1) {
			log_info("%s (%s) is paused already, not by cplow: it is left as it is",
				 kind_names[k], shown);
			continue;
		}
		if (!remember(d, c, k)) {
			log_warn("out of memory: %s is not paused", kind_names[k]);
			continue;
		}
		write_marker(d); /* before the pause: a crash right after it must not lose it */
		if (act(k, url, apikey, "pause", err, sizeof(err)) < 0) {
			log_warn("cannot pause %s (%s): %s; uploading anyway", kind_names[k], shown,
				 err);
			forget(d, k);
			write_marker(d);
			continue;
		}
		log_info("%s (%s) paused for the upload", kind_names[k], shown);
	}
}

void downloaders_resume(struct downloaders *d)
{
	char err[HTTP_CLIENT_ERR_MAX + 64], shown[256];
	bool any = false;
	for (int k = 0; k < DOWNLOADER_KINDS; k++) {
		d->asked[k] = false;
		if (!d->paused[k])
			continue;
		any = true;
		http_client_shown_url(d->url[k], shown, sizeof(shown));
		if (act(k, d->url[k], d->apikey, "resume", err, sizeof(err)) < 0)
			log_warn("cannot resume %s (%s): %s; resume it by hand", kind_names[k],
				 shown, err);
		else
			log_info("%s (%s) resumed", kind_names[k], shown);
		forget(d, k);
	}
	if (any)
		write_marker(d);
}

void downloaders_free(struct downloaders *d)
{
	for (int k = 0; k < DOWNLOADER_KINDS; k++)
		forget(d, k);
}

/* ---- the role ---- */

/* One request: asks the downloaders, then answers it (a full pipe only delays a stage's start
 * by the supervisor's hold: the answer is dropped, not waited for). */
static void serve(struct downloaders *d, const struct config *c, const struct pause_record *rq,
		  int reply_fd)
{
	if (rq->want == PAUSE_WANT_PAUSE)
		downloaders_pause(d, c);
	else
		downloaders_resume(d);
	ssize_t w;
	do
		w = write(reply_fd, rq, sizeof(*rq));
	while (w < 0 && errno == EINTR);
	if (w != (ssize_t)sizeof(*rq))
		log_debug("cannot answer the supervisor: %s", w < 0 ? strerror(errno) : "short");
}

int downloaders_run(const struct config *c, int req_fd, int reply_fd, bool restarted)
{
	/* The supervisor decides when this role stops, and resumes nothing too early. */
	int stop_fd = role_signals_install();
	if (stop_fd < 0)
		return 1;
	char err[256];
	/* Without libcurl every call fails and says so, as before: nothing is paused. */
	if (http_client_prepare(err, sizeof(err)) < 0)
		log_warn("%s", err);
	/* It writes its marker beside the lock; name resolution may need what this machine's NSS
	 * needs: refusals are errors, and only what no library does by accident kills. */
	if (sandbox_enter(role_table[ROLE_DOWNLOADERS].sandbox, NULL, 0, err, sizeof(err)) < 0)
		log_warn("running without a sandbox: %s", err);
	struct downloaders d;
	downloaders_init(&d, c);
	downloaders_recover(&d, c, restarted);
	for (;;) {
		struct pollfd pfd[2] = { { stop_fd, POLLIN, 0 }, { req_fd, POLLIN, 0 } };
		if (poll(pfd, 2, -1) < 0 && errno != EINTR)
			break;
		if (*procs_signals_seen(SIGTERM))
			break;
		if (!(pfd[1].revents & (POLLIN | POLLHUP)))
			continue;
		struct pause_record rq;
		ssize_t r = read(req_fd, &rq, sizeof(rq));
		if (r < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (r <= 0)
			break; /* the supervisor is gone */
		if (r != (ssize_t)sizeof(rq) || rq.magic != PAUSE_RECORD_MAGIC) {
			log_error("a malformed request from the supervisor (%zd bytes)", r);
			continue;
		}
		serve(&d, c, &rq, reply_fd);
	}
	downloaders_resume(&d);
	downloaders_free(&d);
	return 0;
}
