/*
 * The dashboard role: HTTP on dashboard.host:dashboard.port (default 127.0.0.1:47949), served
 * from the shared ledger mapped read-only (never locked), by libmicrohttpd driven from this
 * process's own poll() loop in one thread, under the SANDBOX_DASHBOARD seccomp filter once the
 * socket is bound.
 *
 * Endpoints (GET or HEAD; another method on a known path is 405 with Allow, an unknown path 404):
 *   /                      the page (dashboard_page.h): no data in it, it fetches /api/state
 *   /api/health            {"status":"healthy"|"unhealthy", "ledger", "generation", ...}
 *   /api/status            {"active":false,"message"} or {"active":true, "uploader",
 *                          "current_sa", "sa_index", "total_sas", "stage", "total_stages",
 *                          "session_start", "upload_folder"}
 *   /api/service_accounts  [{"sa_file", "sa_file_full", "uploader", "status", "used_bytes",
 *                          "quota_bytes", "used_gb", "quota_gb", "percentage", "files",
 *                          "banned", "ban_cause", "reset_time", "reset_in"}]
 *   /api/session_stats     {"available", "data":{"total_files", "transferred_files",
 *                          "remaining_files", "file_percentage", "total_bytes",
 *                          "transferred_bytes", "remaining_bytes", "byte_percentage",
 *                          "duration_seconds", "avg_speed", "current_speed", "eta_seconds",
 *                          "session_start", "sas_used", "stages_done"}}
 *   /api/rclone_stats      {"available", "data":{"bytes", "speed", "eta", "transfers",
 *                          "transferring":[{"name","size","bytes","speed","eta","percentage"}],
 *                          "checking", "errors"}}
 *   /api/queue_status      {"available", "data":{"stage_params":{"strategy", "max_transfer",
 *                          "max_size", "transfers", "order_by", "max_backlog"},
 *                          "queue_stats":{"running_stages", "files_total", "files_done",
 *                          "files_remaining", "bytes_total", "bytes_done", "bytes_remaining"}}}
 *   /api/state             {"health", "status", "service_accounts", "session_stats",
 *                          "rclone_stats", "queue_status", "stages", "refresh_seconds", "now"}
 *   /metrics               Prometheus text format 0.0.4 (cplow_account_*, cplow_stage_*,
 *                          cplow_session_files, cplow_session_bytes,
 *                          cplow_ledger_last_flush_age_seconds, cplow_process_restarts_total)
 * Times are Unix seconds; unknown values are null. A ledger that cannot be read consistently in
 * time answers 503.
 *
 * Choices where the quota fork is silent or wrong:
 *   - "active" is an account with a stage running on it; "complete" one at >= 95 % of its quota;
 *     anything else "ready". sa_index (1-based) and total_sas count the uploader's ledger rows in
 *     natural order; total_stages is total_sas, since a rotation gives each account a stage.
 *   - The session is the supervisor's run (ledger_session_start at startup): the totals the
 *     ledger kept of its finished stages (folded in when their slots were released) plus the
 *     slots still held. transferred_bytes = bytes of completed files + the partial bytes of
 *     files in flight, each stage once (the fork added rclone's live bytes on top of the
 *     completed ones). An earlier stage's total is what it moved (the files it left are the
 *     next stage's listing). stages_done counts the finished stages. sas_used counts accounts
 *     with a stage now or with an upload since the session started.
 *   - Without dashboard.token (loopback only) the Host header must be dashboard.host, 127.0.0.1,
 *     localhost or [::1] with the bound port (any case; a bare name only on port 80): any other
 *     gets 421 and no data, so a page that rebinds its DNS name to 127.0.0.1 cannot read it. A
 *     request without Host (HTTP/1.0; browsers always send one) is answered. An Origin header
 *     other than http(s):// + Host gets 403, token or not.
 *   - With dashboard.token set, every request needs "Authorization: Bearer <token>"; a missing or
 *     wrong one gets 401 and no data. A browser cannot send that header for the page itself, so
 *     "/" (and only "/") also takes the token once as "/?token=<token>": the page's script keeps
 *     it in memory, removes it from the address bar and sends it as the header on every fetch.
 *     The token is never logged and never part of a response.
 */
#ifndef CPLOW_DASHBOARD_H
#define CPLOW_DASHBOARD_H

#include "config.h"

/* The role's entry: serves until SIGTERM or SIGINT, then returns an exit code (0, or 1 when it
 * could not start or its server failed). The supervisor forks it and calls _exit() with this. */
int dashboard_run(const struct config *c, const char *ledger_name);

/* dashboard_run with a readiness report: once the socket is bound and the sandbox loaded, the
 * bound port is written to ready_fd as decimal text and ready_fd is closed (-1: no report). With
 * dashboard.port 0 the kernel picks the port: how tests run the real role. */
int dashboard_serve(const struct config *c, const char *ledger_name, int ready_fd);

#endif
