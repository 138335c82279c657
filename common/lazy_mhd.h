#ifndef CPLOW_LAZY_MHD_H
#define CPLOW_LAZY_MHD_H

#include <stddef.h>

/*
 * libmicrohttpd is loaded by the dashboard process when it starts, not by every cplow
 * process: linked the usual way it brings GnuTLS and eight more libraries into the
 * supervisor, worker and flusher too (see lazy_curl.h for what that cost). lazy_mhd.c defines the
 * libmicrohttpd functions the dashboard calls, as calls through pointers resolved by dlsym;
 * each loads the library on first use and, if it cannot, fails as libmicrohttpd reports
 * failure (NULL, MHD_NO).
 */

/* Loads libmicrohttpd.so.12; 0, or -1 with err set. After a failure it does not try again. */
int lazy_mhd_load(char *err, size_t err_size);

#endif
