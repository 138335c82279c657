/*
 * `cplow import-cloudplow`: the quota fork's sa_quota_cache.json (or a cplow ledger file) into
 * this config's live ledger, with a report of what was imported and what was skipped and why.
 *
 * Rules (docs/ledger.md, "cplow import-cloudplow"):
 *   - cplow must not be running with this config: the import takes the instance lock (exit 3
 *     when another cplow holds it, naming its pid) and refuses while a worker of an earlier
 *     cplow is still uploading into the ledger. A running stage adds to its row as each file
 *     completes; an import racing it could replace the row and lose that file.
 *   - Never lower a usage. An account the ledger does not have is added as the file has it. An
 *     account it has keeps whichever counts more bytes now; when the file's does, the row takes
 *     the file's bytes but keeps the later of the two reset times, so at no moment does it
 *     count less than either did. Rolling window: hour by hour, the larger bucket. A ban is
 *     kept until the later of the two ends. Importing the same file twice changes nothing.
 *   - Rows are matched to the uploader's accounts (planner_accounts()): by name, or, for
 *     service-account key files, by file name when exactly one key file has it (the fork's
 *     /opt/sa/sa1.json is cplow's /config/sa/sa1.json once the folder is mounted elsewhere).
 *     Skipped, each with its reason: uploaders the config does not have, accounts that are
 *     not the uploader's, rows whose window has ended and that carry no ban, rows with no usage.
 *   - A file that does not load (missing, not JSON, a negative or fractional byte count, an
 *     account twice: ledger_file_load's strict rules) is exit 2 with one line, before anything
 *     is touched; so is a ledger too small for the accounts to add (quota.capacity).
 *   - Afterwards the ledger file (quota.cache_path) is written, as the flusher would have.
 *   - --dry-run prints the same report and changes neither the ledger nor its file.
 */
#ifndef CPLOW_IMPORT_H
#define CPLOW_IMPORT_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "ledger.h"

struct import_options {
	const char *config_path;
	const char *from;        /* NULL: the config's quota.cache_path */
	bool dry_run;
};

/* Runs the command: the report on out, errors (one line) on err. Returns the exit code:
 * 0, 1 (the ledger or its file could not be written), 2 (bad config, bad file, not enough
 * ledger capacity), 3 (cplow is running with this config). */
int import_cloudplow(const struct import_options *o, FILE *out, FILE *err);

enum import_outcome {
	IMPORT_ADDED,     /* the ledger had no such row */
	IMPORT_RAISED,    /* the row now counts more (or a later ban) */
	IMPORT_KEPT,      /* the row already counted as much: unchanged */
	IMPORT_SKIPPED,
};

/* The file's usage as this ledger will hold it: a window starting in the future starts now
 * and ends a day from now at the latest (as a restore does); for the rolling window, a row
 * without hour buckets (the fork's) gets its bytes in the one hour that keeps them until its
 * reset time. */
void import_prepare(struct ledger_usage *u, enum ledger_window window, int64_t now_ms);

/* The row after importing `file` (prepared) over `live` (NULL: no row) at now_ms, by the
 * rules above. *out is always set: live's usage when KEPT. */
enum import_outcome import_merge(const struct ledger_usage *live, const struct ledger_usage *file,
				 enum ledger_window window, int64_t now_ms,
				 struct ledger_usage *out);

#endif
