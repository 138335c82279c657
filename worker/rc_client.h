/*
 * A client for the remote-control API of the rclone a stage runs (rclone 1.60), so the worker
 * can show live progress, change the bandwidth limit, check files after an interrupted stage and
 * ask rclone to exit.
 *
 * rclone is started with --rc --rc-addr 127.0.0.1:0 and a per-stage user and password (from
 * rc_client_make_credentials(), passed as RCLONE_RC_USER/RCLONE_RC_PASS in its environment
 * rather than --rc-user/--rc-pass: a command line is readable by every user of the host); the
 * URL comes from its "Serving remote control on" line (rclone_log.h).
 *
 * Every call is one blocking POST on one kept-alive connection, bounded by the client's timeout
 * (500 ms by default), so a stuck rclone costs the worker's loop at most that per call. The
 * client only ever talks plain http to a loopback address: init refuses any other URL, and a
 * name that resolved elsewhere would still be refused before connecting.
 *
 * The password goes to libcurl and nowhere else: it is in no struct field, error text or log.
 */
#ifndef CPLOW_RC_CLIENT_H
#define CPLOW_RC_CLIENT_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#ifndef PATH_MAX
#include <linux/limits.h> /* strict ISO C without _GNU_SOURCE hides it in <limits.h> */
#endif

#include "http_client.h"
#include "ledger.h"

#define RC_CLIENT_TIMEOUT_MS_DEFAULT 500
#define RC_CLIENT_URL_MAX 256          /* base URL plus the longest method name, with the NUL */
#define RC_CLIENT_ERROR_MAX 256
/* Bound on one response: core/stats grows about 250 bytes per file in flight, so this leaves
 * room for thousands of transfers while keeping a confused peer from filling memory. */
#define RC_CLIENT_BODY_MAX ((size_t)4 << 20)

/* Transfers kept per core/stats answer; the total is always counted. */
#define RC_CLIENT_INFLIGHT_MAX 64

/* rc_client_make_credentials() writes exactly this many characters plus a NUL. */
#define RC_CLIENT_USER_LEN 16
#define RC_CLIENT_PASS_LEN 32

enum rc_client_err {
    RC_CLIENT_OK = 0,
    RC_CLIENT_ERR_INVALID = -1,   /* bad argument, or a URL that is not http on loopback */
    RC_CLIENT_ERR_NOMEM = -2,
    RC_CLIENT_ERR_CONNECT = -3,   /* nothing listens there, or the connection broke: rclone gone */
    RC_CLIENT_ERR_TIMEOUT = -4,   /* no complete answer within the timeout: rclone stuck */
    RC_CLIENT_ERR_HTTP = -5,      /* answered with a status other than 200 (http_status) */
    RC_CLIENT_ERR_PARSE = -6,     /* 200, but not the JSON expected, or over RC_CLIENT_BODY_MAX */
    RC_CLIENT_ERR_NOTFOUND = -7,  /* rc_client_stat(): no file at that path */
    RC_CLIENT_ERR_CURL = -8,      /* any other libcurl failure */
    RC_CLIENT_ERR_RANDOM = -9,    /* getrandom() failed; errno says why */
};

/* "connect", "timeout", ... for log lines and test output. */
const char *rc_client_strerror(int err);

/* The fields are the client's own; callers read http_status and error and touch nothing else.
 * libcurl keeps pointers into the struct: do not copy or move it between init and free. */
struct rc_client {
    void *curl;                   /* CURL *, kept opaque so callers need not include curl */
    void *headers;                /* struct curl_slist * */
    char url[RC_CLIENT_URL_MAX];  /* the base URL ending in '/', then the method's name */
    size_t base_len;
    struct http_body body;        /* the last response, NUL-terminated, reused across calls */
    bool refused_address;         /* the last call resolved to an address off loopback */
    int timeout_ms;
    char curl_error[256];         /* libcurl's CURLOPT_ERRORBUFFER, CURL_ERROR_SIZE bytes */
    long http_status;             /* of the last call; 0 when nothing answered */
    char error[RC_CLIENT_ERROR_MAX]; /* the last failure in words, for one log line */
};

/* One file in flight, from core/stats' "transferring". A field rclone left out, wrote as null
 * or wrote with the wrong type reads -1. */
struct rc_transfer {
    char name[PATH_MAX];          /* below the transfer's root, as rclone wrote it */
    bool name_truncated;          /* longer than PATH_MAX - 1: the tail was kept */
    int64_t size;                 /* -1 also when rclone does not know it */
    int64_t bytes;
    double speed_bps;
    int64_t eta_s;
    int64_t percentage;
};

/* core/stats (the global group). About 260 KiB: keep one per worker, not one per call on the
 * stack. Scalars read -1 as in struct rc_transfer; eta is null until rclone has a speed. */
struct rc_stats {
    int64_t bytes;                /* read so far, failed attempts included: not "uploaded" */
    int64_t total_bytes;          /* grows while rclone is still listing */
    double speed_bps;
    int64_t eta_s;
    int64_t transfers;            /* files completed */
    int64_t total_transfers;
    int64_t errors;
    int64_t checks;
    double elapsed_s;
    bool fatal_error;
    bool retry_error;
    size_t transferring_total;    /* entries rclone listed */
    size_t transferring_count;    /* entries kept below: at most RC_CLIENT_INFLIGHT_MAX */
    struct rc_transfer transferring[RC_CLIENT_INFLIGHT_MAX];
};

/*
 * base_url: "http://127.0.0.1:PORT/" as rclone logged it; the host must be 127.0.0.1,
 * localhost or [::1] and the scheme http. user and pass: non-empty. timeout_ms <= 0 means
 * RC_CLIENT_TIMEOUT_MS_DEFAULT; it bounds each call, connection included.
 * Does not connect. On failure *c is left so that rc_client_free() is harmless.
 */
int rc_client_init(struct rc_client *c, const char *base_url, const char *user, const char *pass,
                   int timeout_ms);

/* Closes the connection and frees everything; *c may be initialised again afterwards. */
void rc_client_free(struct rc_client *c);

/* core/stats into *out; *out is untouched unless 0 is returned. */
int rc_client_stats(struct rc_client *c, struct rc_stats *out);

/* The rclone figures a ledger stage slot shows: rc_bytes, rc_speed, rc_eta_s, rc_errors, and
 * the first LEDGER_INFLIGHT_MAX transfers (inflight_count is how many of inflight[] are set;
 * the rest are zeroed). A name too long for the slot keeps its tail behind "...", cut at a
 * UTF-8 character boundary: the end of a path is the part that tells files apart. Touches no
 * other field. */
void rc_client_stats_to_stage(const struct rc_stats *s, struct ledger_stage *stage);

/*
 * core/bwlimit. rate: one --bwlimit setting ("10M", "1M:2M", "off"; rclone refuses a
 * timetable here), or NULL to only read the current limit. *bytes_per_second_out (may be NULL)
 * gets rclone's "bytesPerSecond": -1 for no limit; for an "UP:DOWN" pair rclone 1.60 reports
 * the larger side, an "off" side counting as no limit. A rate rclone cannot parse is
 * RC_CLIENT_ERR_HTTP with status 500 and rclone's reason in c->error.
 */
int rc_client_bwlimit(struct rc_client *c, const char *rate, int64_t *bytes_per_second_out);

/*
 * operations/stat of `remote` (a path below `fs`, e.g. fs ":local:/dst" or "gdrive:media").
 * 0 with *size_out set when a file is there; RC_CLIENT_ERR_NOTFOUND when nothing, or only a
 * directory, is there (rclone also says "not found" for a missing parent directory); otherwise
 * an error, e.g. RC_CLIENT_ERR_HTTP 500 for an fs rclone cannot open.
 * A found file is not necessarily a whole one: rclone 1.60's local backend writes under the
 * final name, so compare the size with the source's.
 */
int rc_client_stat(struct rc_client *c, const char *fs, const char *remote, int64_t *size_out);

/*
 * core/quit: rclone answers, then exits about 1.5 s later with exit_code, running transfers
 * abandoned (partial files may stay behind). rclone's default exit code is 0, the same as a
 * completed run: pass a code the caller will recognise.
 */
int rc_client_quit(struct rc_client *c, int exit_code);

/* A fresh user and password from getrandom(): RC_CLIENT_USER_LEN and RC_CLIENT_PASS_LEN
 * characters of [A-Za-z0-9_-] (URL- and shell-safe), NUL-terminated. The buffers need one
 * byte more than those lengths; on failure neither is written. */
int rc_client_make_credentials(char *user, size_t user_size, char *pass, size_t pass_size);

#endif
