#ifndef CPLOW_LAZY_CURL_H
#define CPLOW_LAZY_CURL_H

#include <stddef.h>

/*
 * libcurl is loaded when it is first needed, not when a cplow process starts.
 *
 * Linked the usual way, libcurl brings 30 more libraries (TLS, Kerberos, LDAP, SSH, ...) into
 * every cplow process: on a small VM that was ~12 ms of the dynamic loader before main() on
 * every start (most of `cplow upload`'s time to rclone's exec) and ~7 MiB of RSS in each of
 * the supervisor, flusher and dashboard, which never make an HTTP request. Only the worker
 * (rclone's RC), the notifier and the Plex check do, and they load it here.
 *
 * lazy_curl.c defines the libcurl functions cplow calls (as thin calls through pointers
 * resolved by dlsym), so the code that uses libcurl reads and type-checks against
 * <curl/curl.h> as usual. Each of them loads the library on first use and, if it cannot,
 * fails the way libcurl itself reports failure (NULL, CURLE_FAILED_INIT, ...).
 */

/* Loads libcurl.so.4 and resolves what cplow uses; 0, or -1 with err set. After a failure it
 * does not try again (a worker under seccomp may no longer open files). */
int lazy_curl_load(char *err, size_t err_size);

#endif
