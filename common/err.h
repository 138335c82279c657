/*
 * The error convention of every cplow module.
 *
 * A function that can fail returns a status: 0 on success, or a negative value that says what
 * failed: -errno (-ENOENT, -ETIMEDOUT, ...) where an errno says it, or the module's own
 * negative enum (LEDGER_ERR_FULL, RC_CLIENT_ERR_HTTP, ...) where none does. When a person must
 * be told why, the caller passes a message buffer (`char *err, size_t err_len`) and the
 * function fills it with one line, through err_set(), in the same statement that returns:
 *
 *	if (fd < 0)
 *		return err_set(err, err_len, -errno, "cannot open %s: %s", path, strerror(errno));
 *
 * The line names what failed and why, in words a user can act on, without a secret; it has no
 * trailing period or newline, so a caller can put it after its own words ("uploader media: %s").
 * Out-parameters stay untouched on failure. Nothing below a process's top level logs the
 * failure it returns: the top level (supervisor_main, a role's run function, the worker's
 * stage) turns it into one log line and, where the process ends, an exit code.
 */
#ifndef CPLOW_ERR_H
#define CPLOW_ERR_H

#include <stddef.h>

/* Formats one line into err (if err and err_len) and returns code. */
int err_set(char *err, size_t err_len, int code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

#endif
