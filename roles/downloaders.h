/*
 * Pausing NZBGet and SABnzbd while cplow uploads, so that downloads do not fight the upload
 * for the line (cloudplow paused NZBGet only, and left it paused when an upload failed).
 *
 * The HTTP runs in a role of its own (`cplow-pause` in ps), never in the supervisor's loop: the
 * supervisor asks it through a pipe (pause_record.h) to pause before it starts a stage, and to
 * resume once no stage runs any more (the upload ended, failed, or cplow was stopped); it holds
 * a stage for the role's answer at most PAUSE_HOLD_MS (one call's timeout), so a downloader
 * that hangs delays an upload by that much at most, and the supervisor's loop not at all (its
 * signals, its heartbeat). The role calls downloaders_pause() and downloaders_resume(), which are
 * idempotent: a downloader is asked once per upload, however many stages it takes, and one
 * that does not answer is not asked again until the next upload. A downloader that was
 * already paused (by its user) is left alone: cplow neither pauses nor resumes it. On SIGTERM
 * the role resumes what it paused, then ends.
 *
 * APIs: NZBGet's JSON-RPC, POST <url>/jsonrpc {"method": "status" | "pausedownload" |
 * "resumedownload"} (the url may carry user:pass@); SABnzbd's GET
 * <url>/api?mode=queue|pause|resume&apikey=...&output=json. Each call has a 5 s timeout and
 * a failure is a warning: it never fails the upload.
 *
 * A crash: the names of the downloaders cplow paused are kept in a marker file,
 * <quota.lock_path>.paused, written before the pause and removed after the resume. The role
 * finds it when it starts and resumes them (through the config's current url): those a killed
 * cplow paused, at the next cplow upload|run, and those a role that died paused, when the
 * supervisor starts it again (the supervisor then asks for the pause again if stages run).
 */
#ifndef CPLOW_DOWNLOADERS_H
#define CPLOW_DOWNLOADERS_H

#include <limits.h>
#include <stdbool.h>

#include "config.h"
#include "pause_record.h"

#define DOWNLOADERS_TIMEOUT_MS PAUSE_CALL_TIMEOUT_MS

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

/* At start: resumes what a cplow or a role that died had paused (its marker), then removes
 * the marker. `restarted`: this role replaces one that died (the log says which). */
void downloaders_recover(struct downloaders *d, const struct config *c, bool restarted);

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

/* The role (the role table's): answers the supervisor's requests on req_fd on reply_fd until
 * SIGTERM or the pipe's end, then resumes what it paused. Returns an exit code. */
int downloaders_run(const struct config *c, int req_fd, int reply_fd, bool restarted);

#endif
