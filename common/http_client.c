#include "http_client.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lazy_curl.h"

size_t http_body_write(char *data, size_t size, size_t n, void *ctx)
{
	struct http_body *b = ctx;
	size_t len = size * n; /* size is always 1 for body data */
	if (len > b->max - b->len) {
		b->error = HTTP_BODY_TOO_BIG;
		return 0;
	}
	size_t need = b->len + len + 1;
	if (need > b->cap) {
		size_t cap = b->cap ? b->cap : b->initial_cap ? b->initial_cap : 4096;
		while (cap < need)
			cap *= 2;
		char *grown = realloc(b->data, cap);
		if (!grown) {
			b->error = HTTP_BODY_NOMEM;
			return 0;
		}
		b->data = grown;
		b->cap = cap;
	}
	memcpy(b->data + b->len, data, len);
	b->len += len;
	b->data[b->len] = '\0';
	return len;
}

static int on_progress(void *ctx, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
		       curl_off_t ulnow)
{
	(void)dltotal;
	(void)dlnow;
	(void)ultotal;
	(void)ulnow;
	const volatile sig_atomic_t *flag = ctx;
	return flag && *flag ? 1 : 0;
}

int http_client_prepare(char *err, size_t err_len)
{
	if (lazy_curl_load(err, err_len) < 0)
		return -1;
	/* Never cleaned up: each request's own init and cleanup only count up and down. */
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		snprintf(err, err_len, "cannot initialise libcurl");
		return -1;
	}
	return 0;
}

int http_client_request(const struct http_request *rq, struct http_response *out, char *err,
			size_t err_len)
{
	char curl_error[CURL_ERROR_SIZE] = "", shown[256];
	struct curl_slist *headers = NULL;
	struct http_body body = { .max = HTTP_CLIENT_BODY_MAX };
	int rc = -1;
	memset(out, 0, sizeof(*out));
	http_client_shown_url(rq->url, shown, sizeof(shown));
	char why[256];
	if (lazy_curl_load(why, sizeof(why)) < 0) {
		snprintf(err, err_len, "%s: %s", shown, why);
		return -1;
	}
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		snprintf(err, err_len, "%s: cannot initialise libcurl", shown);
		return -1;
	}
	CURL *curl = curl_easy_init();
	if (!curl) {
		snprintf(err, err_len, "%s: cannot initialise libcurl", shown);
		curl_global_cleanup();
		return -1;
	}
	for (const char *const *h = rq->headers; h && *h; h++) {
		struct curl_slist *more = curl_slist_append(headers, *h);
		if (!more)
			goto oom;
		headers = more;
	}
	if (rq->post_json) {
		struct curl_slist *more = curl_slist_append(headers,
							    "Content-Type: application/json");
		if (!more)
			goto oom;
		headers = more;
	}
	long timeout = rq->timeout_ms > 0 ? rq->timeout_ms : 5000;
	curl_easy_setopt(curl, CURLOPT_URL, rq->url);
	curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, timeout / 2 > 0 ? timeout / 2 : 1);
	curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, timeout);
	curl_easy_setopt(curl, CURLOPT_USERAGENT, "cplow");
	curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, http_body_write);
	curl_easy_setopt(curl, CURLOPT_WRITEDATA, &body);
	curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, curl_error);
	if (rq->abort_flag) {
		curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
		curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, on_progress);
		curl_easy_setopt(curl, CURLOPT_XFERINFODATA, (void *)rq->abort_flag);
	}
	if (rq->post_json) {
		curl_easy_setopt(curl, CURLOPT_POST, 1L);
		curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, (long)strlen(rq->post_json));
		curl_easy_setopt(curl, CURLOPT_POSTFIELDS, rq->post_json);
	}
	CURLcode e = curl_easy_perform(curl);
	out->body = body.data; /* freed with the response, whatever happened */
	out->body_len = body.len;
	if (e != CURLE_OK) {
		if (body.error == HTTP_BODY_TOO_BIG)
			snprintf(err, err_len, "%s: the answer is larger than %u bytes", shown,
				 HTTP_CLIENT_BODY_MAX);
		else if (e == CURLE_ABORTED_BY_CALLBACK)
			snprintf(err, err_len, "%s: abandoned (stopping)", shown);
		else
			snprintf(err, err_len, "%s: %s", shown,
				 *curl_error ? curl_error : curl_easy_strerror(e));
		goto out;
	}
	curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &out->status);
	char *type = NULL;
	if (curl_easy_getinfo(curl, CURLINFO_CONTENT_TYPE, &type) == CURLE_OK && type)
		snprintf(out->content_type, sizeof(out->content_type), "%s", type);
	if (!out->body && !(out->body = calloc(1, 1)))
		goto oom;
	rc = 0;
	goto out;
oom:
	snprintf(err, err_len, "%s: out of memory", shown);
out:
	if (rc < 0)
		http_client_response_free(out);
	curl_slist_free_all(headers);
	curl_easy_cleanup(curl);
	curl_global_cleanup();
	return rc;
}

void http_client_response_free(struct http_response *r)
{
	free(r->body);
	memset(r, 0, sizeof(*r));
}

void http_client_shown_url(const char *url, char *out, size_t len)
{
	if (!len)
		return;
	const char *host = url, *scheme_end = strstr(url, "://");
	size_t scheme_len = 0;
	if (scheme_end) {
		scheme_len = (size_t)(scheme_end - url) + 3;
		host = url + scheme_len;
	}
	size_t authority = strcspn(host, "/?#");
	const char *at = NULL;
	for (size_t i = 0; i < authority; i++)
		if (host[i] == '@')
			at = host + i;
	if (at)
		host = at + 1;
	size_t keep = strcspn(host, "?#");
	snprintf(out, len, "%.*s%.*s", (int)scheme_len, url, (int)keep, host);
}

char *http_client_join(const char *url, const char *path)
{
	size_t n = strlen(url);
	while (n > 0 && url[n - 1] == '/')
		n--;
	size_t total = n + strlen(path) + 1;
	char *joined = malloc(total);
	if (joined)
		snprintf(joined, total, "%.*s%s", (int)n, url, path);
	return joined;
}
