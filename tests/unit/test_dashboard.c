/*
 * The dashboard role, run for real (forked, bound to 127.0.0.1:0, sandboxed) against a ledger
 * these tests fill, and asked over HTTP with libcurl.
 */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "dashboard.h"
#include "ledger.h"
#include "test_util.h"

#define QUOTA 1000000LL
#define TOKEN "s3cret-token-value"

static char shm_name[64];
static struct ledger L;
static pid_t role = -1;
static int port;
static struct config cfg;
static struct config_uploader uploader;
static struct config_remote remote;
static int32_t row_sa1, row_sa2, row_sa3, row_sa10, slot;
static int64_t t0;

static void fill(void)
{
	t0 = ledger_now_ms();
	int64_t before = t0 - 3600 * 1000;
	cr_assert_eq(ledger_row_get(&L, "media", "/keys/sa1.json", &row_sa1), LEDGER_OK);
	cr_assert_eq(ledger_row_get(&L, "media", "/keys/sa10.json", &row_sa10), LEDGER_OK);
	cr_assert_eq(ledger_row_get(&L, "media", "/keys/sa3.json", &row_sa3), LEDGER_OK);
	cr_assert_eq(ledger_row_get(&L, "media", "/keys/sa2.json", &row_sa2), LEDGER_OK);
	for (int i = 0; i < 3; i++)
		cr_assert_eq(ledger_add(&L, row_sa1, 320000, before), LEDGER_OK); /* 96 % */
	cr_assert_eq(ledger_add(&L, row_sa10, 500000, before), LEDGER_OK);     /* 50 % */
	cr_assert_eq(ledger_add(&L, row_sa3, 100000, before), LEDGER_OK);
	cr_assert_eq(ledger_ban(&L, row_sa3, t0 + 25 * 3600 * 1000LL, "User rate limit exceeded", before),
		     LEDGER_OK);
	/* sa2: the active account, claimed by a stage, no file completed yet. */
	struct ledger_stage s = { .row = row_sa2, .pid = getpid(), .stage_number = 2,
				  .strategy = "aggressive_fresh_sa", .max_transfer_bytes = 500000,
				  .max_size_bytes = 800000, .transfers = 8, .order_by = "size,desc",
				  .max_backlog = 2000, .started_at_ms = t0 - 10000, .files_total = 10,
				  .bytes_total = 400000, .rc_bytes = 40000, .rc_speed = 5000,
				  .rc_eta_s = 72, .rc_errors = 1, .inflight_count = 2 };
	cr_assert_eq(ledger_stage_claim(&L, &s, &slot), LEDGER_OK);
	s.inflight[0] = (struct ledger_inflight){ "movies/a.mkv", 100000, 30000, 3000 };
	s.inflight[1] = (struct ledger_inflight){ "movies/b.mkv", 50000, 10000, 2000 };
	cr_assert_eq(ledger_stage_update(&L, slot, &s), LEDGER_OK);
}

static void start(const char *token)
{
	snprintf(shm_name, sizeof(shm_name), "/cplow-test-dash-%d", getpid());
	ledger_unlink(shm_name);
	struct ledger_options o = { .row_capacity = 64, .slot_capacity = 4, .daily_bytes = QUOTA };
	cr_assert_eq(ledger_create(shm_name, &o, &L), LEDGER_OK);
	fill();
	remote = (struct config_remote){ .name = "media", .upload_folder = "/srv/media" };
	uploader = (struct config_uploader){ .name = "media", .remote = &remote };
	cfg = (struct config){ .uploaders = &uploader, .uploader_count = 1,
			       .dashboard = { .enabled = true, .host = "127.0.0.1", .port = 0,
					      .token = (char *)token, .refresh_seconds = 3 } };
	int p[2];
	cr_assert_eq(pipe(p), 0);
	role = test_fork();
	cr_assert_geq(role, 0);
	if (role == 0) {
		close(p[0]);
		_exit(dashboard_serve(&cfg, shm_name, p[1]));
	}
	close(p[1]);
	char buf[16] = { 0 };
	ssize_t n = read(p[0], buf, sizeof(buf) - 1);
	close(p[0]);
	cr_assert_gt(n, 0, "the role did not report its port");
	port = atoi(buf);
	cr_assert_gt(port, 0);
}

static void start_open(void) { start(NULL); }
static void start_token(void) { start(TOKEN); }

/* A clean stop also proves the sandbox never killed the role (that would be SIGSYS). */
static void stop(void)
{
	if (role > 0) {
		kill(role, SIGTERM);
		int st = 0;
		waitpid(role, &st, 0);
		role = -1;
		cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the role ended with status %#x", st);
	}
	ledger_detach(&L);
	ledger_unlink(shm_name);
}

/* ---- HTTP ---- */

struct resp {
	long status;
	char *body;
	size_t len;
	char ctype[128];
	char allow[64];
};

static size_t on_body(char *p, size_t sz, size_t n, void *ud)
{
	struct resp *r = ud;
	char *b = realloc(r->body, r->len + sz * n + 1);
	if (!b)
		return 0;
	memcpy(b + r->len, p, sz * n);
	r->len += sz * n;
	b[r->len] = '\0';
	r->body = b;
	return sz * n;
}

static size_t on_header(char *p, size_t sz, size_t n, void *ud)
{
	struct resp *r = ud;
	size_t len = sz * n;
	if (len > 6 && strncasecmp(p, "Allow:", 6) == 0)
		snprintf(r->allow, sizeof(r->allow), "%.*s", (int)strcspn(p + 7, "\r\n"), p + 7);
	return len;
}

static void http(const char *method, const char *path, const char *auth, struct resp *r)
{
	memset(r, 0, sizeof(*r));
	CURL *h = curl_easy_init();
	cr_assert(h);
	char url[256], hdr[256];
	snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", port, path);
	struct curl_slist *hs = NULL;
	if (auth) {
		snprintf(hdr, sizeof(hdr), "Authorization: %s", auth);
		hs = curl_slist_append(hs, hdr);
	}
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hs);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 5000L);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(h, CURLOPT_HEADERDATA, r);
	if (strcmp(method, "GET") != 0)
		curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
	if (strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0)
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, "x=1");
	CURLcode rc = curl_easy_perform(h);
	cr_assert_eq(rc, CURLE_OK, "%s %s: %s", method, path, curl_easy_strerror(rc));
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r->status);
	char *ct = NULL;
	curl_easy_getinfo(h, CURLINFO_CONTENT_TYPE, &ct);
	if (ct)
		snprintf(r->ctype, sizeof(r->ctype), "%s", ct);
	if (!r->body)
		r->body = calloc(1, 1);
	curl_slist_free_all(hs);
	curl_easy_cleanup(h);
}

static cJSON *get_json(const char *path, const char *auth)
{
	struct resp r;
	http("GET", path, auth, &r);
	cr_assert_eq(r.status, 200, "%s: %ld", path, r.status);
	cr_assert_str_eq(r.ctype, "application/json", "%s: %s", path, r.ctype);
	cJSON *d = cJSON_Parse(r.body);
	cr_assert(d, "%s: not JSON: %s", path, r.body);
	free(r.body);
	return d;
}

static double num(const cJSON *o, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
	cr_assert(cJSON_IsNumber(v), "%s is not a number", key);
	return v->valuedouble;
}

static const char *str(const cJSON *o, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
	cr_assert(cJSON_IsString(v), "%s is not a string", key);
	return v->valuestring;
}

static const cJSON *account(const cJSON *list, const char *sa_file)
{
	const cJSON *a;
	cJSON_ArrayForEach(a, list)
		if (strcmp(str(a, "sa_file"), sa_file) == 0)
			return a;
	cr_assert_fail("%s not listed", sa_file);
	return NULL;
}

/* ---- the JSON endpoints ---- */

TestSuite(dashboard, .timeout = 60);

Test(dashboard, health_and_status_describe_the_running_stage, .init = start_open, .fini = stop)
{
	cJSON *h = get_json("/api/health", NULL);
	cr_assert_str_eq(str(h, "status"), "healthy");
	cJSON_Delete(h);
	cJSON *s = get_json("/api/status", NULL);
	cr_assert(cJSON_IsTrue(cJSON_GetObjectItem(s, "active")));
	cr_assert_str_eq(str(s, "uploader"), "media");
	cr_assert_str_eq(str(s, "current_sa"), "sa2.json");
	cr_assert_eq(num(s, "sa_index"), 2); /* natural order: sa1, sa2, sa3, sa10 */
	cr_assert_eq(num(s, "total_sas"), 4);
	cr_assert_eq(num(s, "stage"), 2);
	cr_assert_eq(num(s, "total_stages"), 4);
	cr_assert_float_eq(num(s, "session_start"), (double)(t0 - 10000) / 1000.0, 0.001);
	cr_assert_str_eq(str(s, "upload_folder"), "/srv/media");
	cJSON_Delete(s);
}

Test(dashboard, status_is_inactive_without_a_stage, .init = start_open, .fini = stop)
{
	cr_assert_eq(ledger_stage_release(&L, slot), LEDGER_OK);
	cJSON *s = get_json("/api/status", NULL);
	cr_assert(cJSON_IsFalse(cJSON_GetObjectItem(s, "active")));
	cr_assert(cJSON_IsString(cJSON_GetObjectItem(s, "message")));
	cJSON_Delete(s);
	const char *paths[] = { "/api/session_stats", "/api/rclone_stats", "/api/queue_status" };
	for (size_t i = 0; i < 3; i++) {
		cJSON *d = get_json(paths[i], NULL);
		cr_assert(cJSON_IsFalse(cJSON_GetObjectItem(d, "available")), "%s", paths[i]);
		cJSON_Delete(d);
	}
}

Test(dashboard, accounts_follow_the_status_rules, .init = start_open, .fini = stop)
{
	cJSON *l = get_json("/api/service_accounts", NULL);
	cr_assert(cJSON_IsArray(l));
	cr_assert_eq(cJSON_GetArraySize(l), 4);
	const char *order[] = { "sa1.json", "sa2.json", "sa3.json", "sa10.json" };
	for (int i = 0; i < 4; i++)
		cr_assert_str_eq(str(cJSON_GetArrayItem(l, i), "sa_file"), order[i]);

	const cJSON *a = account(l, "sa1.json");
	cr_assert_str_eq(str(a, "status"), "complete");
	cr_assert_str_eq(str(a, "sa_file_full"), "/keys/sa1.json");
	cr_assert_eq(num(a, "used_bytes"), 960000);
	cr_assert_eq(num(a, "quota_bytes"), QUOTA);
	cr_assert_float_eq(num(a, "percentage"), 96.0, 1e-9);
	cr_assert_float_eq(num(a, "used_gb"), 0.0, 1e-9);
	cr_assert_float_eq(num(a, "reset_time"), (double)(t0 - 3600000 + LEDGER_DAY_MS) / 1000.0, 0.001);
	cr_assert(strcmp(str(a, "reset_in"), "23h 0m") == 0 || strcmp(str(a, "reset_in"), "22h 59m") == 0,
		  "reset_in %s", str(a, "reset_in"));

	a = account(l, "sa2.json"); /* listed before its first file completes */
	cr_assert_str_eq(str(a, "status"), "active");
	cr_assert_eq(num(a, "used_bytes"), 0);
	cr_assert_eq(num(a, "percentage"), 0);
	cr_assert_str_eq(str(a, "reset_in"), "Ready");
	cr_assert(cJSON_IsNull(cJSON_GetObjectItem(a, "reset_time")));

	a = account(l, "sa10.json");
	cr_assert_str_eq(str(a, "status"), "ready");
	cr_assert_float_eq(num(a, "percentage"), 50.0, 1e-9);

	a = account(l, "sa3.json");
	cr_assert(cJSON_IsTrue(cJSON_GetObjectItem(a, "banned")));
	cr_assert_str_eq(str(a, "ban_cause"), "User rate limit exceeded");
	cJSON_Delete(l);

	/* Exactly 95 % is complete; just under is ready. */
	cr_assert_eq(ledger_add(&L, row_sa10, 449999, t0), LEDGER_OK);
	l = get_json("/api/service_accounts", NULL);
	cr_assert_str_eq(str(account(l, "sa10.json"), "status"), "ready");
	cJSON_Delete(l);
	cr_assert_eq(ledger_add(&L, row_sa10, 1, t0), LEDGER_OK);
	l = get_json("/api/service_accounts", NULL);
	cr_assert_str_eq(str(account(l, "sa10.json"), "status"), "complete");
	cJSON_Delete(l);
}

Test(dashboard, session_counts_stage_bytes_once, .init = start_open, .fini = stop)
{
	cJSON *s = get_json("/api/session_stats", NULL);
	cr_assert(cJSON_IsTrue(cJSON_GetObjectItem(s, "available")));
	const cJSON *d = cJSON_GetObjectItem(s, "data");
	cr_assert_eq(num(d, "total_files"), 10);
	cr_assert_eq(num(d, "transferred_files"), 0);
	cr_assert_eq(num(d, "total_bytes"), 400000);
	cr_assert_eq(num(d, "transferred_bytes"), 40000); /* the two files in flight */
	cr_assert_eq(num(d, "remaining_bytes"), 360000);
	cr_assert_eq(num(d, "eta_seconds"), 72);
	cr_assert_eq(num(d, "sas_used"), 1);
	cr_assert_geq(num(d, "duration_seconds"), 10);
	cJSON_Delete(s);

	/* A file completes: the ledger's count and rclone's live bytes describe the same bytes. */
	cr_assert_eq(ledger_add_for_stage(&L, slot, 100000, ledger_now_ms()), LEDGER_OK);
	struct ledger_stage st = L.stages[slot];
	st.inflight_count = 1;
	st.inflight[0] = st.inflight[1];
	st.rc_bytes = 110000;
	cr_assert_eq(ledger_stage_update(&L, slot, &st), LEDGER_OK);
	s = get_json("/api/session_stats", NULL);
	d = cJSON_GetObjectItem(s, "data");
	cr_assert_eq(num(d, "transferred_files"), 1);
	cr_assert_eq(num(d, "remaining_files"), 9);
	cr_assert_eq(num(d, "transferred_bytes"), 110000);
	cr_assert_float_eq(num(d, "byte_percentage"), 27.5, 1e-9);
	cJSON_Delete(s);
	cJSON *l = get_json("/api/service_accounts", NULL);
	cr_assert_eq(num(account(l, "sa2.json"), "used_bytes"), 100000);
	cr_assert_str_eq(str(account(l, "sa2.json"), "status"), "active");
	cJSON_Delete(l);
}

static double sample(const char *text, const char *prefix);

/* REFERENCE §2: the session is the running stage plus the totals of earlier stages, which have
 * released their slots by then. */
Test(dashboard, session_keeps_the_totals_of_earlier_stages, .init = start_open, .fini = stop)
{
	int64_t start = t0 - 20000;
	cr_assert_eq(ledger_session_start(&L, start), LEDGER_OK);
	for (int i = 0; i < 2; i++)
		cr_assert_eq(ledger_add_for_stage(&L, slot, 100000, ledger_now_ms()), LEDGER_OK);
	struct ledger_stage st = L.stages[slot];
	st.inflight_count = 0; /* the stage ended: nothing in flight */
	cr_assert_eq(ledger_stage_update(&L, slot, &st), LEDGER_OK);
	cr_assert_eq(ledger_stage_release(&L, slot), LEDGER_OK);

	/* Between stages: the session is still there, with what the first stage moved. */
	cJSON *s = get_json("/api/session_stats", NULL);
	cr_assert(cJSON_IsTrue(cJSON_GetObjectItem(s, "available")), "the session ended with its stage");
	const cJSON *d = cJSON_GetObjectItem(s, "data");
	cr_assert_eq(num(d, "transferred_files"), 2);
	cr_assert_eq(num(d, "transferred_bytes"), 200000);
	cr_assert_eq(num(d, "stages_done"), 1);
	cr_assert_float_eq(num(d, "session_start"), (double)start / 1000.0, 0.001);
	cJSON_Delete(s);

	/* The next stage, on the next account: its listing is what the first one left. */
	struct ledger_stage next = { .row = row_sa10, .pid = getpid(), .stage_number = 3,
				     .strategy = "moderate_mid_sa", .started_at_ms = ledger_now_ms(),
				     .files_total = 5, .bytes_total = 300000, .rc_speed = 10000 };
	int32_t slot2;
	cr_assert_eq(ledger_stage_claim(&L, &next, &slot2), LEDGER_OK);
	cr_assert_eq(ledger_add_for_stage(&L, slot2, 50000, ledger_now_ms()), LEDGER_OK);
	s = get_json("/api/session_stats", NULL);
	d = cJSON_GetObjectItem(s, "data");
	cr_assert_eq(num(d, "transferred_files"), 3);
	cr_assert_eq(num(d, "total_files"), 7);
	cr_assert_eq(num(d, "remaining_files"), 4);
	cr_assert_eq(num(d, "transferred_bytes"), 250000);
	cr_assert_eq(num(d, "total_bytes"), 500000);
	cr_assert_eq(num(d, "remaining_bytes"), 250000);
	cr_assert_eq(num(d, "eta_seconds"), 25);
	cr_assert_float_eq(num(d, "session_start"), (double)start / 1000.0, 0.001);
	cJSON_Delete(s);
	cJSON *status = get_json("/api/status", NULL);
	cr_assert_float_eq(num(status, "session_start"), (double)start / 1000.0, 0.001);
	cJSON_Delete(status);

	struct resp r;
	http("GET", "/metrics", NULL, &r);
	cr_assert_eq(r.status, 200);
	cr_assert_eq(sample(r.body, "cplow_session_files "), 3);
	cr_assert_eq(sample(r.body, "cplow_session_bytes "), 250000);
	free(r.body);
}

Test(dashboard, rclone_and_queue_stats, .init = start_open, .fini = stop)
{
	cJSON *r = get_json("/api/rclone_stats", NULL);
	cr_assert(cJSON_IsTrue(cJSON_GetObjectItem(r, "available")));
	const cJSON *d = cJSON_GetObjectItem(r, "data");
	cr_assert_eq(num(d, "bytes"), 40000);
	cr_assert_eq(num(d, "speed"), 5000);
	cr_assert_eq(num(d, "eta"), 72);
	cr_assert_eq(num(d, "errors"), 1);
	cr_assert(cJSON_IsArray(cJSON_GetObjectItem(d, "checking")));
	const cJSON *t = cJSON_GetObjectItem(d, "transferring");
	cr_assert_eq(cJSON_GetArraySize(t), 2);
	const cJSON *f = cJSON_GetArrayItem(t, 0);
	cr_assert_str_eq(str(f, "name"), "movies/a.mkv");
	cr_assert_eq(num(f, "size"), 100000);
	cr_assert_eq(num(f, "bytes"), 30000);
	cr_assert_eq(num(f, "speed"), 3000);
	cr_assert_eq(num(f, "eta"), 24);
	cr_assert_float_eq(num(f, "percentage"), 30.0, 1e-9);
	cJSON_Delete(r);

	cJSON *q = get_json("/api/queue_status", NULL);
	cr_assert(cJSON_IsTrue(cJSON_GetObjectItem(q, "available")));
	const cJSON *p = cJSON_GetObjectItem(cJSON_GetObjectItem(q, "data"), "stage_params");
	cr_assert_str_eq(str(p, "strategy"), "aggressive_fresh_sa");
	cr_assert_eq(num(p, "max_transfer"), 500000);
	cr_assert_eq(num(p, "max_size"), 800000);
	cr_assert_eq(num(p, "transfers"), 8);
	cr_assert_str_eq(str(p, "order_by"), "size,desc");
	cr_assert_eq(num(p, "max_backlog"), 2000);
	const cJSON *qs = cJSON_GetObjectItem(cJSON_GetObjectItem(q, "data"), "queue_stats");
	cr_assert_eq(num(qs, "files_remaining"), 10);
	cJSON_Delete(q);

	cJSON *all = get_json("/api/state", NULL);
	const char *keys[] = { "health", "status", "service_accounts", "session_stats",
			       "rclone_stats", "queue_status", "stages", "refresh_seconds" };
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		cr_assert(cJSON_GetObjectItem(all, keys[i]), "/api/state lacks %s", keys[i]);
	cr_assert_eq(num(all, "refresh_seconds"), 3);
	cJSON_Delete(all);
}

Test(dashboard, page_is_self_contained, .init = start_open, .fini = stop)
{
	struct resp r;
	http("GET", "/", NULL, &r);
	cr_assert_eq(r.status, 200);
	cr_assert(strncmp(r.ctype, "text/html", 9) == 0);
	cr_assert(strstr(r.body, "/api/state"));
	cr_assert_null(strstr(r.body, "http://"), "the page loads something external");
	cr_assert_null(strstr(r.body, "https://"), "the page loads something external");
	free(r.body);
}

/* ---- errors and auth ---- */

Test(dashboard, bad_paths_404_bad_methods_405, .init = start_open, .fini = stop)
{
	struct resp r;
	http("GET", "/api/nothing", NULL, &r);
	cr_assert_eq(r.status, 404);
	cr_assert_str_eq(r.ctype, "application/json");
	cJSON *doc = cJSON_Parse(r.body);
	cr_assert_not_null(doc);
	cJSON_Delete(doc);
	free(r.body);
	const char *methods[] = { "POST", "PUT", "DELETE" };
	const char *paths[] = { "/api/status", "/", "/metrics" };
	for (size_t m = 0; m < 3; m++)
		for (size_t p = 0; p < 3; p++) {
			http(methods[m], paths[p], NULL, &r);
			cr_assert_eq(r.status, 405, "%s %s: %ld", methods[m], paths[p], r.status);
			cr_assert(strstr(r.allow, "GET"), "Allow: %s", r.allow);
			free(r.body);
		}
}

Test(dashboard, token_is_required_and_never_echoed, .init = start_token, .fini = stop)
{
	const char *paths[] = { "/api/health", "/api/status", "/api/service_accounts",
				"/api/state", "/metrics", "/", "/api/nothing" };
	const char *bad[] = { NULL, "Bearer wrong", "Bearer " TOKEN "x", "Bearer s3cret",
			      "Basic " TOKEN, "Bearer " };
	for (size_t p = 0; p < sizeof(paths) / sizeof(paths[0]); p++)
		for (size_t b = 0; b < sizeof(bad) / sizeof(bad[0]); b++) {
			struct resp r;
			http("GET", paths[p], bad[b], &r);
			cr_assert_eq(r.status, 401, "%s with %s: %ld", paths[p], bad[b] ? bad[b] : "none",
				     r.status);
			cr_assert_null(strstr(r.body, "sa1"), "401 carries data: %s", r.body);
			cr_assert_null(strstr(r.body, "media"), "401 carries data: %s", r.body);
			free(r.body);
		}
	struct resp r;
	http("GET", "/api/state?token=" TOKEN, NULL, &r); /* the query form is the page's only */
	cr_assert_eq(r.status, 401);
	free(r.body);
	http("GET", "/?token=" TOKEN, NULL, &r);
	cr_assert_eq(r.status, 200);
	cr_assert_null(strstr(r.body, TOKEN));
	free(r.body);
	for (size_t p = 0; p < 6; p++) {
		http("GET", paths[p], "Bearer " TOKEN, &r);
		cr_assert_eq(r.status, 200, "%s: %ld", paths[p], r.status);
		cr_assert_null(strstr(r.body, TOKEN), "%s echoes the token", paths[p]);
		free(r.body);
	}
}

/* ---- /metrics, checked strictly against the text exposition format 0.0.4 ---- */

struct family {
	char name[128];
	char type[16];
	int help, samples, closed;
};

static int metric_name(const char **p, char *out, size_t len)
{
	const char *s = *p;
	if (!(isalpha((unsigned char)*s) || *s == '_' || *s == ':'))
		return -1;
	size_t n = 0;
	while (isalnum((unsigned char)s[n]) || s[n] == '_' || s[n] == ':')
		n++;
	if (n >= len)
		return -1;
	memcpy(out, s, n);
	out[n] = '\0';
	*p = s + n;
	return 0;
}

static int float_value(const char *s)
{
	if (!strcmp(s, "NaN") || !strcmp(s, "+Inf") || !strcmp(s, "-Inf"))
		return 0;
	char *end;
	errno = 0;
	strtod(s, &end);
	return end != s && *end == '\0' && errno == 0 && !strpbrk(s, "xXpPnN") ? 0 : -1;
}

/* Parses one sample's labels into a canonical string (for duplicates) and collects the
 * unescaped value of `want` (if any) into found. Returns 0 or -1 with a reason. */
static int labels(const char **p, char *canon, size_t clen, const char *want, char *found,
		  size_t flen, const char **why)
{
	const char *s = *p;
	size_t c = 0;
	char seen[8][64];
	int nseen = 0;
	canon[0] = '\0';
	if (*s != '{')
		return 0;
	s++;
	while (*s != '}') {
		char lname[64];
		size_t n = 0;
		if (!(isalpha((unsigned char)*s) || *s == '_')) { *why = "label name"; return -1; }
		while (isalnum((unsigned char)s[n]) || s[n] == '_')
			n++;
		if (n >= sizeof(lname) || (n >= 2 && s[0] == '_' && s[1] == '_')) { *why = "label name"; return -1; }
		memcpy(lname, s, n);
		lname[n] = '\0';
		for (int i = 0; i < nseen; i++)
			if (!strcmp(seen[i], lname)) { *why = "repeated label"; return -1; }
		if (nseen < 8)
			strcpy(seen[nseen++], lname);
		s += n;
		if (*s++ != '=' || *s++ != '"') { *why = "label syntax"; return -1; }
		char val[1024];
		size_t v = 0;
		for (;;) {
			if (*s == '\0' || *s == '\n') { *why = "unterminated label value"; return -1; }
			if (*s == '"')
				break;
			char ch = *s++;
			if (ch == '\\') {
				char e = *s++;
				if (e == '\\') ch = '\\';
				else if (e == '"') ch = '"';
				else if (e == 'n') ch = '\n';
				else { *why = "bad escape in label value"; return -1; }
			}
			if (v + 1 < sizeof(val))
				val[v++] = ch;
		}
		val[v] = '\0';
		s++;
		if (want && !strcmp(lname, want)) {
			size_t k = v < flen ? v : flen - 1;
			memcpy(found, val, k);
			found[k] = '\0';
		}
		c += (size_t)snprintf(canon + c, clen > c ? clen - c : 0, "%s=%s\x1f", lname, val);
		if (*s == ',')
			s++;
		else if (*s != '}') { *why = "label separator"; return -1; }
	}
	*p = s + 1;
	return 0;
}

#define MAX_FAMILIES 32
#define MAX_SERIES 256

/* Returns NULL when the text is valid, else the reason with the line. Accounts (the label
 * values of "account") are collected into accounts[]. */
static const char *check_exposition(const char *text, char accounts[][128], int *n_accounts)
{
	static char why_line[1200];
	static struct family fam[MAX_FAMILIES];
	static char series[MAX_SERIES][128 + 512 + 2];
	int nf = 0, ns = 0, current = -1;
	*n_accounts = 0;
	memset(fam, 0, sizeof(fam));
	const char *line = text;
	if (!*text || text[strlen(text) - 1] != '\n')
		return "the text does not end with a newline";
	while (*line) {
		const char *eol = strchr(line, '\n');
		char buf[1024];
		size_t len = (size_t)(eol - line);
		const char *why = NULL;
		if (len >= sizeof(buf))
			return "line too long";
		memcpy(buf, line, len);
		buf[len] = '\0';
		line = eol + 1;
		const char *p = buf;
		char name[128];
		if (len == 0) { why = "empty line"; goto bad; }
		if (buf[0] == '#') {
			int help = !strncmp(buf, "# HELP ", 7), type = !strncmp(buf, "# TYPE ", 7);
			if (!help && !type) { why = "comment that is neither HELP nor TYPE"; goto bad; }
			p += 7;
			if (metric_name(&p, name, sizeof(name)) < 0 || *p != ' ') { why = "metric name"; goto bad; }
			p++;
			int f = -1;
			for (int i = 0; i < nf; i++)
				if (!strcmp(fam[i].name, name))
					f = i;
			if (f < 0) {
				if (nf == MAX_FAMILIES) { why = "too many families"; goto bad; }
				f = nf++;
				snprintf(fam[f].name, sizeof(fam[f].name), "%s", name);
			}
			if (fam[f].samples) { why = "HELP/TYPE after the family's samples"; goto bad; }
			if (help) {
				if (fam[f].help++) { why = "second HELP"; goto bad; }
				for (const char *h = p; *h; h++)
					if (*h == '\\' && h[1] != '\\' && h[1] != 'n') { why = "bad escape in HELP"; goto bad; }
			} else {
				if (fam[f].type[0]) { why = "second TYPE"; goto bad; }
				if (strcmp(p, "counter") && strcmp(p, "gauge") && strcmp(p, "histogram") &&
				    strcmp(p, "summary") && strcmp(p, "untyped")) { why = "unknown type"; goto bad; }
				snprintf(fam[f].type, sizeof(fam[f].type), "%s", p);
			}
			if (current >= 0 && current != f)
				fam[current].closed = 1;
			current = f;
			continue;
		}
		if (metric_name(&p, name, sizeof(name)) < 0) { why = "metric name"; goto bad; }
		int f = -1;
		for (int i = 0; i < nf; i++)
			if (!strcmp(fam[i].name, name))
				f = i;
		if (f < 0 || !fam[f].type[0] || !fam[f].help) { why = "sample without HELP and TYPE"; goto bad; }
		if (fam[f].closed || (current >= 0 && current != f)) { why = "family not contiguous"; goto bad; }
		if (!strcmp(fam[f].type, "counter") &&
		    (strlen(name) < 6 || strcmp(name + strlen(name) - 6, "_total")))
			{ why = "counter not named *_total"; goto bad; }
		char canon[512], acct[128] = "";
		if (labels(&p, canon, sizeof(canon), "account", acct, sizeof(acct), &why) < 0)
			goto bad;
		if (*p++ != ' ') { why = "no space before the value"; goto bad; }
		char value[64];
		size_t vl = strcspn(p, " ");
		if (vl == 0 || vl >= sizeof(value)) { why = "value"; goto bad; }
		memcpy(value, p, vl);
		value[vl] = '\0';
		if (float_value(value) < 0) { why = "value is not a float"; goto bad; }
		p += vl;
		if (*p == ' ') {
			p++;
			if (!*p) { why = "empty timestamp"; goto bad; }
			for (const char *t = *p == '-' ? p + 1 : p; *t; t++)
				if (!isdigit((unsigned char)*t)) { why = "timestamp"; goto bad; }
		}
		char key[sizeof(name) + sizeof(canon) + 2];
		snprintf(key, sizeof(key), "%s|%s", name, canon);
		for (int i = 0; i < ns; i++)
			if (!strcmp(series[i], key)) { why = "duplicate series"; goto bad; }
		if (ns == MAX_SERIES) { why = "too many series"; goto bad; }
		strcpy(series[ns++], key);
		fam[f].samples++;
		if (acct[0] && *n_accounts < 16) {
			int dup = 0;
			for (int i = 0; i < *n_accounts; i++)
				dup |= !strcmp(accounts[i], acct);
			if (!dup)
				snprintf(accounts[(*n_accounts)++], 128, "%s", acct);
		}
		continue;
bad:
		snprintf(why_line, sizeof(why_line), "%s: \"%s\"", why, buf);
		return why_line;
	}
	return NULL;
}

static double sample(const char *text, const char *prefix)
{
	char key[512];
	snprintf(key, sizeof(key), "\n%s", prefix); /* a sample starts a line; HELP/TYPE do not */
	const char *p = strstr(text, key);
	cr_assert(p, "no sample %s", prefix);
	return strtod(p + strlen(key), NULL);
}

Test(dashboard, metrics_follow_the_exposition_format, .init = start_open, .fini = stop)
{
	/* An account name that needs every escape the format has. */
	int32_t odd;
	cr_assert_eq(ledger_row_get(&L, "media", "/keys/we\"ird\\na\nme.json", &odd), LEDGER_OK);
	cr_assert_eq(ledger_add(&L, odd, 1234, ledger_now_ms()), LEDGER_OK);
	atomic_store(&L.hdr->restarts, 3);
	ledger_note_flush(&L, 1, ledger_now_ms() - 2000, 1);

	struct resp r;
	http("GET", "/metrics", NULL, &r);
	cr_assert_eq(r.status, 200);
	cr_assert(strncmp(r.ctype, "text/plain; version=0.0.4", 25) == 0, "%s", r.ctype);
	char accounts[16][128];
	int n = 0;
	const char *why = check_exposition(r.body, accounts, &n);
	cr_assert_null(why, "%s", why);
	cr_assert_eq(n, 5);
	int found = 0;
	for (int i = 0; i < n; i++)
		found |= !strcmp(accounts[i], "/keys/we\"ird\\na\nme.json");
	cr_assert(found, "the escaped account name did not round-trip");
	cr_assert(strstr(r.body, "account=\"/keys/we\\\"ird\\\\na\\nme.json\""));

	cr_assert_eq(sample(r.body, "cplow_account_used_bytes{uploader=\"media\",account=\"/keys/sa1.json\"} "), 960000);
	cr_assert_eq(sample(r.body, "cplow_account_quota_bytes{uploader=\"media\",account=\"/keys/sa1.json\"} "), QUOTA);
	cr_assert_eq(sample(r.body, "cplow_account_files{uploader=\"media\",account=\"/keys/sa1.json\"} "), 3);
	cr_assert_eq(sample(r.body, "cplow_account_banned{uploader=\"media\",account=\"/keys/sa3.json\"} "), 1);
	cr_assert_eq(sample(r.body, "cplow_account_banned{uploader=\"media\",account=\"/keys/sa1.json\"} "), 0);
	cr_assert_eq(sample(r.body, "cplow_stage_bytes_done{uploader=\"media\",account=\"/keys/sa2.json\"} "), 40000);
	cr_assert_eq(sample(r.body, "cplow_stage_speed_bytes{uploader=\"media\",account=\"/keys/sa2.json\"} "), 5000);
	cr_assert_eq(sample(r.body, "cplow_process_restarts_total "), 3);
	double age = sample(r.body, "cplow_ledger_last_flush_age_seconds ");
	cr_assert(age >= 2.0 && age < 30.0, "flush age %f", age);
	free(r.body);
}

Test(dashboard, the_checker_refuses_bad_exposition_text)
{
	const char *bad[] = {
		"x 1\n",                                                       /* no HELP/TYPE */
		"# HELP x h\n# TYPE x gauge\nx{a=\"1\"} 1\nx{a=\"1\"} 2\n",     /* duplicate */
		"# HELP x h\n# TYPE x gauge\nx{a=\"\\q\"} 1\n",                /* bad escape */
		"# HELP x h\n# TYPE x gauge\nx 1.2.3\n",                       /* value */
		"# HELP x h\n# TYPE x gauge\nx{a=1} 1\n",                      /* unquoted */
		"# HELP x h\n# TYPE x counter\nx 1\n",                         /* counter name */
		"# HELP x h\n# TYPE x gauge\nx 1",                             /* no final newline */
		"# HELP x h\n# TYPE x gauge\n# HELP y h\n# TYPE y gauge\ny 1\nx 1\n", /* interleaved */
	};
	char accounts[16][128];
	int n;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_not_null(check_exposition(bad[i], accounts, &n), "accepted case %zu", i);
	cr_assert_null(check_exposition("# HELP x h\n# TYPE x gauge\nx{a=\"q\\\"\\\\\\n\"} NaN\n",
					accounts, &n));
}

/* ---- robustness ---- */

static int connect_loopback(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	return fd;
}

Test(dashboard, a_slow_client_does_not_stall_others, .init = start_open, .fini = stop)
{
	int slow[4];
	for (int i = 0; i < 4; i++) {
		slow[i] = connect_loopback();
		const char half[] = "GET /api/state HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ";
		cr_assert_eq(write(slow[i], half, sizeof(half) - 1), (ssize_t)sizeof(half) - 1);
	}
	int64_t t = ledger_now_ms();
	cJSON *d = get_json("/api/health", NULL);
	cJSON_Delete(d);
	cr_assert_lt(ledger_now_ms() - t, 1000, "a slow client held the others up");
	for (int i = 0; i < 4; i++)
		close(slow[i]);
}

struct load_counters {
	_Atomic long adds;
};

/* A writer on the ledger, as a worker would be, counting its adds where the test can see. */
static pid_t start_writer(struct load_counters *lc)
{
	pid_t w = test_fork();
	cr_assert_geq(w, 0);
	if (w == 0) {
		struct ledger wl;
		if (ledger_attach(shm_name, 1, &wl) != LEDGER_OK)
			_exit(2);
		int32_t row;
		if (ledger_row_get(&wl, "media", "/keys/writer.json", &row) != LEDGER_OK)
			_exit(3);
		for (;;) {
			if (ledger_add(&wl, row, 1, ledger_now_ms()) != LEDGER_OK)
				_exit(4);
			atomic_fetch_add(&lc->adds, 1);
			struct timespec ts = { 0, 50 * 1000 }; /* a busy worker, not a spinning one */
			nanosleep(&ts, NULL);
		}
	}
	return w;
}

#define LOAD_CONNECTIONS 1000

Test(dashboard, survives_1000_connections_without_blocking_a_writer, .init = start_open,
     .fini = stop, .timeout = 120)
{
	struct rlimit rl;
	getrlimit(RLIMIT_NOFILE, &rl);
	if (rl.rlim_cur < LOAD_CONNECTIONS + 64) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	cr_assert_geq(rl.rlim_cur, LOAD_CONNECTIONS + 64, "need %d descriptors", LOAD_CONNECTIONS + 64);
	struct load_counters *lc = mmap(NULL, sizeof(*lc), PROT_READ | PROT_WRITE,
					MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	cr_assert_neq(lc, MAP_FAILED);
	atomic_store(&lc->adds, 0);
	pid_t writer = start_writer(lc);

	struct timespec ts = { 0, 500 * 1000000L };
	nanosleep(&ts, NULL);
	long a0 = atomic_load(&lc->adds);
	int64_t m0 = ledger_now_ms();
	nanosleep(&ts, NULL);
	long a1 = atomic_load(&lc->adds);
	double before_rate = (double)(a1 - a0) * 1000.0 / (double)(ledger_now_ms() - m0);

	/* The load: every connection sends a whole request for the biggest document. */
	static struct pollfd pfd[LOAD_CONNECTIONS];
	static int got[LOAD_CONNECTIONS];
	struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				    .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	char req[128];
	snprintf(req, sizeof(req), "GET /api/state HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
		 "Connection: close\r\n\r\n", port);
	size_t req_len = strlen(req);
	int64_t start = ledger_now_ms();
	long adds_at_start = atomic_load(&lc->adds);
	for (int i = 0; i < LOAD_CONNECTIONS; i++) {
		pfd[i].fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
		cr_assert_geq(pfd[i].fd, 0);
		int rc = connect(pfd[i].fd, (struct sockaddr *)&addr, sizeof(addr));
		cr_assert(rc == 0 || errno == EINPROGRESS, "connect %d: %s", i, strerror(errno));
		pfd[i].events = POLLOUT;
		got[i] = 0;
	}
	int open = LOAD_CONNECTIONS, ok = 0, failed = 0;
	long last_adds = adds_at_start;
	int64_t last_move = ledger_now_ms(), max_stall = 0;
	while (open > 0 && ledger_now_ms() - start < 60000) {
		poll(pfd, LOAD_CONNECTIONS, 20);
		for (int i = 0; i < LOAD_CONNECTIONS; i++) {
			if (pfd[i].fd < 0 || !pfd[i].revents)
				continue;
			if (pfd[i].events == POLLOUT) {
				if (write(pfd[i].fd, req, req_len) == (ssize_t)req_len) {
					pfd[i].events = POLLIN;
					continue;
				}
			} else {
				char buf[4096];
				ssize_t n = read(pfd[i].fd, buf, sizeof(buf));
				if (n > 0) {
					if (got[i] == 0 && n >= 12 && !strncmp(buf, "HTTP/1.1 200", 12))
						got[i] = 1;
					continue;
				}
				if (n < 0 && errno == EAGAIN)
					continue;
			}
			if (got[i])
				ok++;
			else
				failed++;
			close(pfd[i].fd);
			pfd[i].fd = -1;
			open--;
		}
		long a = atomic_load(&lc->adds);
		int64_t now = ledger_now_ms();
		if (a != last_adds) {
			last_adds = a;
			last_move = now;
		} else if (now - last_move > max_stall) {
			max_stall = now - last_move;
		}
	}
	int64_t load_ms = ledger_now_ms() - start;
	double during_rate = (double)(atomic_load(&lc->adds) - adds_at_start) * 1000.0 /
			     (double)(load_ms ? load_ms : 1);
	for (int i = 0; i < LOAD_CONNECTIONS; i++)
		if (pfd[i].fd >= 0)
			close(pfd[i].fd);
	kill(writer, SIGKILL);
	waitpid(writer, NULL, 0);
	cr_log_info("load: %d connections, %d answered 200, %d failed, in %lld ms; writer %.0f adds/s "
		    "before, %.0f adds/s during, longest writer stall %lld ms",
		    LOAD_CONNECTIONS, ok, failed, (long long)load_ms, before_rate, during_rate,
		    (long long)max_stall);
	fprintf(stderr, "dashboard load: %d connections, %d answered 200, %d failed, in %lld ms; "
		"writer %.0f adds/s before, %.0f adds/s during, longest writer stall %lld ms\n",
		LOAD_CONNECTIONS, ok, failed, (long long)load_ms, before_rate, during_rate,
		(long long)max_stall);
	cr_assert_eq(open, 0, "%d connections still open after 60 s", open);
	cr_assert_eq(ok, LOAD_CONNECTIONS, "%d of %d requests failed", failed, LOAD_CONNECTIONS);
	cr_assert_gt(during_rate, 0);
	cr_assert_lt(max_stall, 1000, "the writer stood still for %lld ms", (long long)max_stall);
	/* Alive, and still answering. */
	cr_assert_eq(waitpid(role, NULL, WNOHANG), 0, "the role died under load");
	cJSON *d = get_json("/api/health", NULL);
	cr_assert_str_eq(str(d, "status"), "healthy");
	cJSON_Delete(d);
	munmap(lc, sizeof(*lc));
}
