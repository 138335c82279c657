/*
 * One HTTP request with libcurl, for the supervisor's small clients of other programs' APIs
 * (Plex, NZBGet, SABnzbd): short timeouts, no redirects, no signals (the caller owns them),
 * the answer's body kept in memory up to a bound. Credentials in a URL (user:pass@) are used
 * by libcurl as basic authentication, and never shown: http_client_shown_url() strips them.
 */
#ifndef CPLOW_HTTP_CLIENT_H
#define CPLOW_HTTP_CLIENT_H

#include <signal.h>
#include <stddef.h>

#define HTTP_CLIENT_BODY_MAX (4u << 20)  /* a larger answer is an error */
#define HTTP_CLIENT_ERR_MAX 256

/*
 * An answer's body as libcurl hands it over, kept NUL-terminated in memory up to a bound: the
 * write callback of every cplow HTTP client (this one and the worker's RC client). Set
 * CURLOPT_WRITEFUNCTION to http_body_write and CURLOPT_WRITEDATA to the struct; zero len and
 * error before each request (data is reused).
 */
enum http_body_error {
	HTTP_BODY_OK = 0,
	HTTP_BODY_TOO_BIG = 1,        /* the answer passed max: cut off */
	HTTP_BODY_NOMEM = 2,
};

struct http_body {
	char *data;                   /* NUL-terminated once anything came; free() it */
	size_t len;
	size_t cap;
	size_t max;                   /* a larger answer is an error */
	size_t initial_cap;           /* the first allocation; 0: 4096 */
	enum http_body_error error;   /* why the body was cut off (libcurl: CURLE_WRITE_ERROR) */
};

/* libcurl's write callback for a struct http_body: returns 0 (which ends the transfer) when the
 * body would pass its max or memory runs out, with the body's error saying which. */
size_t http_body_write(char *data, size_t size, size_t n, void *body);

struct http_request {
	const char *url;
	const char *const *headers;   /* "Name: value", NULL-terminated; may be NULL */
	const char *post_json;        /* NULL: GET; else POSTed as application/json */
	long timeout_ms;              /* the whole request; connecting gets at most half */
	/* When set and non-zero, the request is abandoned (checked at least once a second). */
	const volatile sig_atomic_t *abort_flag;
};

struct http_response {
	long status;                  /* HTTP status; 0 when no answer came */
	char *body;                   /* NUL-terminated; free() it */
	size_t body_len;
	char content_type[128];       /* "" when none */
};

/* Loads libcurl and initialises it for the process's life: requests made afterwards open no
 * library or configuration file (a role calls it before its sandbox). 0, or -1 with err set. */
int http_client_prepare(char *err, size_t err_len);

/* 0 when an answer came (any status: the caller judges it), -1 with one line in err (no
 * secret in it) when none did. *out is zeroed first; its body is freed by the caller. */
int http_client_request(const struct http_request *rq, struct http_response *out, char *err,
			size_t err_len);

void http_client_response_free(struct http_response *r);

/* url without its user:pass@ and its query string, for log lines. */
void http_client_shown_url(const char *url, char *out, size_t len);

/* url with trailing '/' removed, then path appended ("/jsonrpc"); NULL when out of memory. */
char *http_client_join(const char *url, const char *path);

#endif
