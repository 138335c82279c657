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
