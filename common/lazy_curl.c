#include "lazy_curl.h"

#include <stdarg.h>
#include <stdbool.h>

/* The trampolines below are definitions of libcurl's own names: the macros that
 * typecheck-gcc.h puts over the two variadic ones must not rewrite them. */
#define CURL_DISABLE_TYPECHECK
#include <curl/curl.h>

#include "dynlib.h"

static struct {
	__typeof__(curl_global_init) *global_init;
	__typeof__(curl_global_cleanup) *global_cleanup;
	__typeof__(curl_easy_init) *easy_init;
	__typeof__(curl_easy_setopt) *easy_setopt;
	__typeof__(curl_easy_perform) *easy_perform;
	__typeof__(curl_easy_getinfo) *easy_getinfo;
	__typeof__(curl_easy_cleanup) *easy_cleanup;
	__typeof__(curl_easy_strerror) *easy_strerror;
	__typeof__(curl_free) *free;
	__typeof__(curl_slist_append) *slist_append;
	__typeof__(curl_slist_free_all) *slist_free_all;
	__typeof__(curl_multi_init) *multi_init;
	__typeof__(curl_multi_add_handle) *multi_add_handle;
	__typeof__(curl_multi_remove_handle) *multi_remove_handle;
	__typeof__(curl_multi_perform) *multi_perform;
	__typeof__(curl_multi_poll) *multi_poll;
	__typeof__(curl_multi_timeout) *multi_timeout;
	__typeof__(curl_multi_info_read) *multi_info_read;
	__typeof__(curl_multi_cleanup) *multi_cleanup;
	__typeof__(curl_url) *url;
	__typeof__(curl_url_cleanup) *url_cleanup;
	__typeof__(curl_url_set) *url_set;
	__typeof__(curl_url_get) *url_get;
} fn;

static const struct dynlib_symbol symbols[] = {
	{ "curl_global_init", (void **)&fn.global_init },
	{ "curl_global_cleanup", (void **)&fn.global_cleanup },
	{ "curl_easy_init", (void **)&fn.easy_init },
	{ "curl_easy_setopt", (void **)&fn.easy_setopt },
	{ "curl_easy_perform", (void **)&fn.easy_perform },
	{ "curl_easy_getinfo", (void **)&fn.easy_getinfo },
	{ "curl_easy_cleanup", (void **)&fn.easy_cleanup },
	{ "curl_easy_strerror", (void **)&fn.easy_strerror },
	{ "curl_free", (void **)&fn.free },
	{ "curl_slist_append", (void **)&fn.slist_append },
	{ "curl_slist_free_all", (void **)&fn.slist_free_all },
	{ "curl_multi_init", (void **)&fn.multi_init },
	{ "curl_multi_add_handle", (void **)&fn.multi_add_handle },
	{ "curl_multi_remove_handle", (void **)&fn.multi_remove_handle },
	{ "curl_multi_perform", (void **)&fn.multi_perform },
	{ "curl_multi_poll", (void **)&fn.multi_poll },
	{ "curl_multi_timeout", (void **)&fn.multi_timeout },
	{ "curl_multi_info_read", (void **)&fn.multi_info_read },
	{ "curl_multi_cleanup", (void **)&fn.multi_cleanup },
	{ "curl_url", (void **)&fn.url },
	{ "curl_url_cleanup", (void **)&fn.url_cleanup },
	{ "curl_url_set", (void **)&fn.url_set },
	{ "curl_url_get", (void **)&fn.url_get },
};

static struct dynlib lib = { .soname = "libcurl.so.4",
			     .symbols = symbols,
			     .symbol_count = sizeof(symbols) / sizeof(symbols[0]) };

int lazy_curl_load(char *err, size_t err_size)
{
	return dynlib_load(&lib, err, err_size);
}

static bool ready(void)
{
	return dynlib_ready(&lib);
}

/* Functions that take a handle can only be reached after one that made it (and so loaded
 * the library) succeeded; their ready() checks keep a misuse from jumping through NULL. */

CURLcode curl_global_init(long flags)
{
	return ready() ? fn.global_init(flags) : CURLE_FAILED_INIT;
}

void curl_global_cleanup(void)
{
	if (ready())
		fn.global_cleanup();
}

CURL *curl_easy_init(void)
{
	return ready() ? fn.easy_init() : NULL;
}

/* Every option takes exactly one argument, whose type curl encodes in the option's number
 * (curl.h's CURLOPTTYPE_* bases): it is read as that type and passed on as such. */
CURLcode curl_easy_setopt(CURL *curl, CURLoption option, ...)
{
	if (!ready())
		return CURLE_FAILED_INIT;
	va_list ap;
	va_start(ap, option);
	CURLcode rc;
	if (option < CURLOPTTYPE_OBJECTPOINT)
		rc = fn.easy_setopt(curl, option, va_arg(ap, long));
	else if (option >= CURLOPTTYPE_OFF_T && option < CURLOPTTYPE_BLOB)
		rc = fn.easy_setopt(curl, option, va_arg(ap, curl_off_t));
	else
		rc = fn.easy_setopt(curl, option, va_arg(ap, void *));
	va_end(ap);
	return rc;
}

CURLcode curl_easy_perform(CURL *curl)
{
	return ready() ? fn.easy_perform(curl) : CURLE_FAILED_INIT;
}

/* Every CURLINFO takes one pointer to where the answer goes. */
CURLcode curl_easy_getinfo(CURL *curl, CURLINFO info, ...)
{
	if (!ready())
		return CURLE_FAILED_INIT;
	va_list ap;
	va_start(ap, info);
	CURLcode rc = fn.easy_getinfo(curl, info, va_arg(ap, void *));
	va_end(ap);
	return rc;
}

void curl_easy_cleanup(CURL *curl)
{
	if (ready())
		fn.easy_cleanup(curl);
}

const char *curl_easy_strerror(CURLcode code)
{
	return ready() ? fn.easy_strerror(code) : lib.error;
}

void curl_free(void *p)
{
	if (ready())
		fn.free(p);
}

struct curl_slist *curl_slist_append(struct curl_slist *list, const char *string)
{
	return ready() ? fn.slist_append(list, string) : NULL;
}

void curl_slist_free_all(struct curl_slist *list)
{
	if (ready())
		fn.slist_free_all(list);
}

CURLM *curl_multi_init(void)
{
	return ready() ? fn.multi_init() : NULL;
}

CURLMcode curl_multi_add_handle(CURLM *multi, CURL *easy)
{
	return ready() ? fn.multi_add_handle(multi, easy) : CURLM_INTERNAL_ERROR;
}

CURLMcode curl_multi_remove_handle(CURLM *multi, CURL *easy)
{
	return ready() ? fn.multi_remove_handle(multi, easy) : CURLM_INTERNAL_ERROR;
}

CURLMcode curl_multi_perform(CURLM *multi, int *running)
{
	return ready() ? fn.multi_perform(multi, running) : CURLM_INTERNAL_ERROR;
}

CURLMcode curl_multi_poll(CURLM *multi, struct curl_waitfd extra_fds[], unsigned int extra_nfds,
			  int timeout_ms, int *numfds)
{
	return ready() ? fn.multi_poll(multi, extra_fds, extra_nfds, timeout_ms, numfds)
		       : CURLM_INTERNAL_ERROR;
}

CURLMcode curl_multi_timeout(CURLM *multi, long *timeout_ms)
{
	return ready() ? fn.multi_timeout(multi, timeout_ms) : CURLM_INTERNAL_ERROR;
}

CURLMsg *curl_multi_info_read(CURLM *multi, int *msgs_in_queue)
{
	return ready() ? fn.multi_info_read(multi, msgs_in_queue) : NULL;
}

CURLMcode curl_multi_cleanup(CURLM *multi)
{
	return ready() ? fn.multi_cleanup(multi) : CURLM_INTERNAL_ERROR;
}

CURLU *curl_url(void)
{
	return ready() ? fn.url() : NULL;
}

void curl_url_cleanup(CURLU *url)
{
	if (ready())
		fn.url_cleanup(url);
}

CURLUcode curl_url_set(CURLU *url, CURLUPart what, const char *part, unsigned int flags)
{
	return ready() ? fn.url_set(url, what, part, flags) : CURLUE_OUT_OF_MEMORY;
}

CURLUcode curl_url_get(CURLU *url, CURLUPart what, char **part, unsigned int flags)
{
	return ready() ? fn.url_get(url, what, part, flags) : CURLUE_OUT_OF_MEMORY;
}
