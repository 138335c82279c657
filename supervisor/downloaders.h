/*
 * Pausing NZBGet and SABnzbd while cplow uploads, so that downloads do not fight the upload
 * for the line (cloudplow paused NZBGet only, and left it paused when an upload failed).
 *
 * The supervisor calls downloaders_pause() before it starts a stage and downloaders_resume()
 * once no stage runs any more (the upload ended, failed, or cplow was stopped). Both are
 * idempotent: a downloader is asked once per upload, however many stages it takes, and one
 * that does not answer is not asked again until the next upload. A downloader that was
 * already paused (by its user) is left alone: cplow neither pauses nor resumes it.
 *
 * APIs: NZBGet's JSON-RPC, POST <url>/jsonrpc {"method": "status" | "pausedownload" |
 * "resumedownload"} (the url may carry user:pass@); SABnzbd's GET
 * <url>/api?mode=queue|pause|resume&apikey=...&output=json. Each call has a 5 s timeout and
 * a failure is a warning: it never fails the upload.
 *
 * A crash: the names of the downloaders cplow paused are kept in a marker file,
 * <quota.lock_path>.paused, written before the pause and removed after the resume. The next
 * cplow upload|run finds it at start and resumes them (through the config's current url).
 */
#ifndef CPLOW_DOWNLOADERS_H
#define CPLOW_DOWNLOADERS_H

#include <limits.h>
#include <stdbool.h>

#include "config.h"

#define DOWNLOADERS_TIMEOUT_MS 5000

enum downloader_kind {
	DOWNLOADER_NZBGET = 0,
	DOWNLOADER_SABNZBD = 1,
	DOWNLOADER_KINDS
};

struct downloaders {
	char marker[PATH_MAX];
	bool paused[DOWNLOADER_KINDS];   /* by us, and not resumed yet */
	bool asked[DOWNLOADER_KINDS];    /* tried in this upload: once per upload, not per stage */
	/* Where each paused one is resumed: copies, so a reload cannot lose them. */
	char *url[DOWNLOADER_KINDS];
	char *apikey;                     /* SABnzbd's */
};

/* The marker's path from the config; nothing paused. */
void downloaders_init(struct downloaders *d, const struct config *c);

/* At start: resumes what a cplow that died had paused (its marker), then removes the marker. */
void downloaders_recover(struct downloaders *d, const struct config *c);

/* Pauses each enabled downloader that is not paused yet. */
void downloaders_pause(struct downloaders *d, const struct config *c);

/* Resumes what we paused; a failure is logged and forgotten (resume it by hand). */
void downloaders_resume(struct downloaders *d);

/* Frees the copies; resumes nothing. */
void downloaders_free(struct downloaders *d);

/* The request that does `mode` ("status", "pause", "resume") to a downloader: its URL (free
 * it), and for NZBGet its JSON-RPC body (static). NULL when out of memory. Exposed for tests. */
char *downloaders_request_url(enum downloader_kind kind, const char *url, const char *apikey,
			      const char *mode, const char **post_json);

#endif
