/*
 * The ledger as people read it: cplow-inspect and `cplow status` print the same thing.
 *
 * --json prints one document (docs/ledger.md, "cplow-inspect"):
 *   {"ledger", "generation", "window", "daily_bytes", "running", "supervisor_pid",
 *    "last_change", "last_seen_alive", "last_flush": {"generation", "at", "age_seconds"} | null,
 *    "session": {"started", "files", "bytes", "stages"},
 *    "uploaders": {"<uploader>": [{"account", "used_bytes", "quota_bytes", "remaining_bytes",
 *        "percentage", "files", "first_upload", "reset_time", "banned_until", "ban_cause"}]},
 *    "stages": [{"slot", "pid", "uploader", "account", "stage", "strategy", "files_done",
 *        "files_total", "bytes_done", "bytes_total", "speed", "eta_seconds"}]}
 * Times are Unix seconds (0 = none).
 */
#ifndef CPLOW_INSPECT_VIEW_H
#define CPLOW_INSPECT_VIEW_H

#include <stdint.h>
#include <stdio.h>

#include "ledger.h"

/* The human form: every line at most 100 columns, whatever the values (a ban's cause on its own
 * wrapped line under its account); "stale since" the supervisor's last heartbeat. */
void inspect_write_human(FILE *f, const char *name, const struct ledger_copy *c, int64_t now_ms);
void inspect_print_human(const char *name, const struct ledger_copy *c, int64_t now_ms);
int inspect_print_json(const char *name, const struct ledger_copy *c, int64_t now_ms);
/* Attaches read-only and prints once (errors on stderr, prefixed with `who`), or every `watch` seconds. Returns an exit code: 0, or 1
 * when there is no ledger or it cannot be read. */
int inspect_run(const char *who, const char *name, int json, double watch);

#endif
