/*
 * What the supervisor (supervisor/pause_hooks.c) and the downloaders' role (roles/downloaders.c)
 * exchange: fixed-size records on two pipes, so that neither ever waits for the other.
 *   - the supervisor writes a request (pause for an upload, or resume after it) without
 *     blocking: a full pipe is logged and the request is tried again at the next tick;
 *   - the role answers each request, once it has asked the downloaders, with the request's
 *     sequence number: the supervisor holds a stage for that answer at most PAUSE_HOLD_MS.
 */
#ifndef CPLOW_PAUSE_RECORD_H
#define CPLOW_PAUSE_RECORD_H

#include <stdint.h>

#define PAUSE_RECORD_MAGIC 0x43504c50u /* "CPLP" */

/* One HTTP call to a downloader, connection included. The supervisor holds a stage for the
 * pause at most this long: a downloader that has not answered one call by then is not worth
 * holding an upload for (its pause lands when it answers, or fails with a warning). */
#define PAUSE_CALL_TIMEOUT_MS 5000
#define PAUSE_HOLD_MS PAUSE_CALL_TIMEOUT_MS

enum pause_want {
	PAUSE_WANT_RESUME = 0,
	PAUSE_WANT_PAUSE = 1,
};

struct pause_record {
	uint32_t magic;
	uint32_t want;     /* enum pause_want; in an answer, the request's */
	uint64_t seq;      /* the supervisor's count of requests; an answer carries its request's */
};

#endif
