/*
 * The dashboard's request handling: on_request() in supervisor/dashboard.c, the one function
 * that maps (URL path, method, Authorization header, ?token=, configured dashboard.token) to a
 * route and a status. It is static and reached only through libmicrohttpd, so this file
 * compiles dashboard.c into itself (#include, nothing edited) and stands in for the five MHD
 * calls on_request makes: MHD_lookup_connection_value reads the fuzzed header and query
 * argument from a fake connection, and the response calls record the status and body and free
 * what MHD would free. Everything on_request calls is the real code: find_route(),
 * authorized(), token_matches(), refresh() and ledger_read() on a real (unlinked) shared
 * ledger, every doc_*() builder, metrics_text() and send_*().
 *
 * What it cannot reach: libmicrohttpd itself (HTTP parsing, URL unescaping, header folding,
 * the "?token=" query split: MHD hands on_request a decoded path and a decoded argument),
 * dashboard_serve()'s socket, sandbox and poll loop, and a ledger whose contents vary per input
 * (the ledger is filled once, with names that need escaping, and read on every data route).
 *
 * Input: fields separated by NUL bytes:
 *   flags \0 url \0 method \0 authorization \0 query-token \0 configured-token \0 host \0 origin
 * flags' low bits say which of the optional fields are present (absent: NULL).
 * Each request is checked against the documented rules: without a token, a Host other than
 * localhost (dashboard.host here), 127.0.0.1 or [::1] with the port 47949 is 421; an Origin
 * other than http(s):// and the Host is 403; then a configured non-empty token needs
 * "Bearer <token>" (case-insensitive scheme) or, on "/" only, ?token=<token>, else 401;
 * then an unknown path is 404; a method other than GET/HEAD 405; otherwise 200.
 */
#include "dashboard.c"

#include <stdint.h>
#include <strings.h>

#define FUZZ_PORT 47949

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* ---- the stand-ins for libmicrohttpd ---- */

struct MHD_Connection {
	const char *authorization;
	const char *query_token;
	const char *host;
	const char *origin;
	unsigned status;           /* what on_request queued; 0 = nothing */
	size_t body_len;
	int headers;
};

struct MHD_Response {
	void *body;
	size_t len;
	enum MHD_ResponseMemoryMode mode;
};

const char *MHD_lookup_connection_value(struct MHD_Connection *connection,
					enum MHD_ValueKind kind, const char *key)
{
	if (kind == MHD_HEADER_KIND && strcasecmp(key, MHD_HTTP_HEADER_AUTHORIZATION) == 0)
		return connection->authorization;
	if (kind == MHD_HEADER_KIND && strcasecmp(key, MHD_HTTP_HEADER_HOST) == 0)
		return connection->host;
	if (kind == MHD_HEADER_KIND && strcasecmp(key, "Origin") == 0)
		return connection->origin;
	if (kind == MHD_GET_ARGUMENT_KIND && strcmp(key, "token") == 0)
		return connection->query_token;
	return NULL;
}

struct MHD_Response *MHD_create_response_from_buffer(size_t size, void *buffer,
						     enum MHD_ResponseMemoryMode mode)
{
	struct MHD_Response *r = malloc(sizeof(*r));
	if (!r)
		return NULL;
	r->body = buffer;
	r->len = size;
	r->mode = mode;
	return r;
}

enum MHD_Result MHD_add_response_header(struct MHD_Response *response, const char *header,
					const char *content)
{
	(void)response;
	if (!header || !content || strpbrk(header, "\r\n") || strpbrk(content, "\r\n"))
		abort(); /* a header line the client would see split */
	return MHD_YES;
}

enum MHD_Result MHD_queue_response(struct MHD_Connection *connection, unsigned int status_code,
				   struct MHD_Response *response)
{
	if (connection->status)
		abort(); /* two responses to one request */
	connection->status = status_code;
	connection->body_len = response->len;
	return MHD_YES;
}

void MHD_destroy_response(struct MHD_Response *response)
{
	if (response->mode == MHD_RESPMEM_MUST_FREE)
		free(response->body);
	free(response);
}

/* dashboard_serve() is not reached (see above); these stand in so that the build does not
 * pull in lazy_mhd.c, whose definitions of the five above would clash with the ones here. */
int lazy_mhd_load(char *err, size_t err_size)
{
	(void)err, (void)err_size;
	abort();
}

struct MHD_Daemon *MHD_start_daemon(unsigned int flags, uint16_t port,
				    MHD_AcceptPolicyCallback apc, void *apc_cls,
				    MHD_AccessHandlerCallback dh, void *dh_cls, ...)
{
	(void)flags, (void)port, (void)apc, (void)apc_cls, (void)dh, (void)dh_cls;
	abort();
}

void MHD_stop_daemon(struct MHD_Daemon *daemon)
{
	(void)daemon;
	abort();
}

enum MHD_Result MHD_run(struct MHD_Daemon *daemon)
{
	(void)daemon;
	abort();
}

enum MHD_Result MHD_get_timeout(struct MHD_Daemon *daemon, MHD_UNSIGNED_LONG_LONG *timeout)
{
	(void)daemon, (void)timeout;
	abort();
}

const union MHD_DaemonInfo *MHD_get_daemon_info(struct MHD_Daemon *daemon,
						enum MHD_DaemonInfoType info_type, ...)
{
	(void)daemon, (void)info_type;
	abort();
}

/* ---- the ledger and config the requests read ---- */

static struct dash dash;
static struct config cfg;
static struct config_uploader uploader;
static struct config_remote remote;
static int ready;

static void setup(void)
{
	char name[64];
	snprintf(name, sizeof(name), "/cplow-fuzz-dash-%d", (int)getpid());
	ledger_unlink(name);
	struct ledger_options o = { .row_capacity = 16, .slot_capacity = 4, .daily_bytes = 1000000 };
	if (ledger_create(name, &o, &dash.ledger) != LEDGER_OK)
		abort();
	ledger_unlink(name); /* the mapping stays; nothing is left in /dev/shm, even after a crash */

	int64_t now = ledger_now_ms(), before = now - 3600 * 1000;
	int32_t r1, r2, r3, slot;
	if (ledger_row_get(&dash.ledger, "media", "/keys/sa1.json", &r1) != LEDGER_OK ||
	    ledger_row_get(&dash.ledger, "media", "/keys/q\"uote\\back\nline.json", &r2) != LEDGER_OK ||
	    ledger_row_get(&dash.ledger, "tv", "remote-2:", &r3) != LEDGER_OK ||
	    ledger_add(&dash.ledger, r1, 960000, before) != LEDGER_OK ||
	    ledger_add(&dash.ledger, r3, 1, before) != LEDGER_OK ||
	    ledger_ban(&dash.ledger, r3, now + 3600 * 1000, "User rate limit \"exceeded\"", before) != LEDGER_OK)
		abort();
	struct ledger_stage s = { .row = r2, .pid = getpid(), .stage_number = 1,
				  .strategy = "aggressive_fresh_sa", .max_transfer_bytes = 500000,
				  .transfers = 4, .order_by = "size,desc", .started_at_ms = now - 10000,
				  .files_total = 3, .bytes_total = 3000, .rc_speed = 100, .rc_eta_s = -1,
				  .inflight_count = 2 };
	snprintf(s.inflight[0].name, sizeof(s.inflight[0].name), "a/\"b\".mkv");
	s.inflight[0].size = 1000;
	s.inflight[0].bytes = 10;
	s.inflight[0].speed = 5;
	snprintf(s.inflight[1].name, sizeof(s.inflight[1].name), "c.bin");
	if (ledger_stage_claim(&dash.ledger, &s, &slot) != LEDGER_OK)
		abort();

	if (ledger_copy_init(&dash.ledger, &dash.copy) != LEDGER_OK ||
	    !(dash.order = calloc(dash.copy.row_capacity, sizeof(*dash.order))))
		abort();
	remote.name = "media";
	remote.upload_folder = "/srv/media";
	uploader.name = "media";
	uploader.remote = &remote;
	cfg.uploaders = &uploader;
	cfg.uploader_count = 1;
	cfg.dashboard.host = "localhost";
	dash.cfg = &cfg;
	dash.refresh_seconds = 5;
	dash.port = FUZZ_PORT;
	ready = 1;
}

static void cleanup(void)
{
	if (!ready)
		return;
	free(dash.order);
	ledger_copy_free(&dash.copy);
	ledger_detach(&dash.ledger);
	ready = 0;
}

/* The next NUL-terminated field of [*p, end), or NULL when the input ran out. The fields point
 * into a private NUL-terminated copy of the input. */
static const char *next_field(char **p, char *end)
{
	if (*p >= end)
		return NULL;
	char *f = *p;
	*p += strlen(f) + 1;
	return f;
}

/* The Host rule, spelled out: without a token, no Host or one of these exactly (any case). */
static int expected_host(const char *token, const char *host)
{
	static const char *const ours[] = { "127.0.0.1:47949", "localhost:47949", "[::1]:47949" };
	if ((token && *token) || !host)
		return 1;
	for (size_t i = 0; i < sizeof(ours) / sizeof(ours[0]); i++)
		if (strcasecmp(host, ours[i]) == 0)
			return 1;
	return 0;
}

/* No Origin, or http(s):// and the Host, token or not. */
static int expected_origin(const char *host, const char *origin)
{
	char same[2][1024];
	if (!origin)
		return 1;
	if (!host || strlen(host) > 1000)
		return 0;
	snprintf(same[0], sizeof(same[0]), "http://%s", host);
	snprintf(same[1], sizeof(same[1]), "https://%s", host);
	return strcasecmp(origin, same[0]) == 0 || strcasecmp(origin, same[1]) == 0;
}

static int expected_auth(const char *token, const char *authorization, const char *query,
			 int page)
{
	if (!token || !*token)
		return 1;
	if (authorization && strncasecmp(authorization, "Bearer ", 7) == 0 &&
	    strcmp(authorization + 7, token) == 0)
		return 1;
	return page && query && strcmp(query, token) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!ready) {
		setup();
		atexit(cleanup);
	}
	char *copy = malloc(size + 1);
	if (!copy)
		return 0;
	memcpy(copy, data, size);
	copy[size] = '\0';
	char *p = copy, *end = copy + size + 1;

	const char *flags = next_field(&p, end);
	unsigned bits = flags && *flags ? (unsigned char)*flags : 0;
	const char *url = next_field(&p, end);
	const char *method = next_field(&p, end);
	const char *authorization = next_field(&p, end);
	const char *query = next_field(&p, end);
	const char *token = next_field(&p, end);
	const char *host = next_field(&p, end);
	const char *origin = next_field(&p, end);
	/* MHD always passes a url and a method. */
	if (!url)
		url = "/";
	if (!method)
		method = "GET";
	if (!(bits & 1))
		authorization = NULL;
	if (!(bits & 2))
		query = NULL;
	if (!(bits & 4))
		token = NULL;
	if (!(bits & 8))
		host = NULL;
	if (!(bits & 16))
		origin = NULL;

	cfg.dashboard.token = (char *)token;
	struct MHD_Connection conn = { .authorization = authorization, .query_token = query,
				       .host = host, .origin = origin };
	size_t zero = 0;
	void *state = NULL;
	enum MHD_Result ret = on_request(&dash, &conn, url, method, "HTTP/1.1", NULL, &zero, &state);

	enum route route = find_route(url);
	unsigned want = !expected_host(token, host) ? MHD_HTTP_MISDIRECTED_REQUEST :
			!expected_origin(host, origin) ? MHD_HTTP_FORBIDDEN :
			!expected_auth(token, authorization, query, route == R_PAGE) ? MHD_HTTP_UNAUTHORIZED :
			route == R_NONE ? MHD_HTTP_NOT_FOUND :
			strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0 ? MHD_HTTP_METHOD_NOT_ALLOWED :
			MHD_HTTP_OK;
	/* MHD_NO (out of memory building a document) queues nothing; anything else must match. */
	if (ret == MHD_YES && conn.status != want)
		abort();
	if (ret == MHD_YES && conn.body_len == 0)
		abort();
	cfg.dashboard.token = NULL;
	free(copy);
	return 0;
}
