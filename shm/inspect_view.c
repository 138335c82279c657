/*
 * What cplow-inspect and `cplow status` print about a ledger copy.
 *
 * The JSON document (documented in README.md, "cplow-inspect --json"):
 *   {"ledger", "generation", "window", "daily_bytes", "running", "supervisor_pid",
 *    "last_change", "last_flush": {"generation", "at", "age_seconds"} | null,
 *    "uploaders": {"<uploader>": [{"account", "used_bytes", "quota_bytes", "remaining_bytes",
 *        "percentage", "files", "first_upload", "reset_time", "banned_until", "ban_cause"}]},
 *    "stages": [{"slot", "pid", "uploader", "account", "stage", "strategy", "files_done",
 *        "files_total", "bytes_done", "bytes_total", "speed", "eta_seconds"}]}
 * Times are Unix seconds (0 = none).
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "inspect_view.h"

#define INSPECT_READ_TIMEOUT_MS 2000

static void human_bytes(int64_t b, char *out, size_t len)
{
	static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	double v = (double)b;
	int u = 0;
	while (v >= 1024 && u < 4) {
		v /= 1024;
		u++;
	}
	if (u == 0)
		snprintf(out, len, "%lld B", (long long)b);
	else
		snprintf(out, len, "%.1f %s", v, units[u]);
}

static void human_in(int64_t ms, char *out, size_t len)
{
	if (ms <= 0) {
		snprintf(out, len, "now");
		return;
	}
	int64_t m = ms / 60000;
	snprintf(out, len, "in %lldh %02lldm", (long long)(m / 60), (long long)(m % 60));
}

static void human_time(int64_t ms, char *out, size_t len)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(out, len, "%Y-%m-%d %H:%M:%S UTC", &tm);
}

/* Long key-file paths are the norm; their tail names them. */
static const char *short_account(const char *account, char *buf, size_t len, size_t width)
{
	size_t n = strlen(account);
	if (n <= width)
		return account;
	snprintf(buf, len, "...%s", account + n - (width - 3));
	return buf;
}

/* "[#####.....]": ten steps, rounded up so any use shows. */
static void quota_bar(double percent, char *out, size_t len)
{
	int filled = percent <= 0 ? 0 : percent >= 100 ? 10 : (int)(percent / 10.0) + 1;
	if (filled > 10)
		filled = 10;
	char cells[11];
	for (int i = 0; i < 10; i++)
		cells[i] = i < filled ? '#' : '.';
	cells[10] = '\0';
	snprintf(out, len, "[%s]", cells);
}

static int running(const struct ledger_copy *c)
{
	return c->supervisor_pid > 0 &&
	       (kill(c->supervisor_pid, 0) == 0 || errno == EPERM);
}

static int64_t last_change_ms(const struct ledger_copy *c)
{
	int64_t last = 0;
	for (uint32_t i = 0; i < c->row_count; i++)
		if (c->rows[i].usage.updated_at_ms > last)
			last = c->rows[i].usage.updated_at_ms;
	return last;
}

static double share(int64_t used, int64_t quota)
{
	return quota > 0 ? 100.0 * (double)used / (double)quota : 0.0;
}

void inspect_print_human(const char *name, const struct ledger_copy *c, int64_t now)
{
	char a[64], b[64], t[64];
	human_bytes(c->daily_bytes, a, sizeof(a));
	printf("ledger %s  generation %llu  %s window  daily quota %s\n", name,
	       (unsigned long long)c->generation,
	       c->window == LEDGER_WINDOW_ROLLING ? "rolling 24 h" : "fixed 24 h", a);
	if (c->flushed_at_ms) {
		human_time(c->flushed_at_ms, t, sizeof(t));
		printf("last durable flush: %s (%.1f s ago, generation %llu)\n", t,
		       (double)(now - c->flushed_at_ms) / 1000.0,
		       (unsigned long long)c->flushed_generation);
	} else {
		printf("last durable flush: never\n");
	}
	if (!running(c)) {
		int64_t last = last_change_ms(c);
		if (last) {
			human_time(last, t, sizeof(t));
			printf("cplow is not running: this data is stale since %s\n", t);
		} else {
			printf("cplow is not running: this data is stale\n");
		}
	}
	const char *current = NULL;
	for (uint32_t i = 0; i < c->row_count; i++) {
		const struct ledger_row *r = &c->rows[i];
		if (!current || strcmp(current, r->uploader) != 0) {
			/* Rows of one uploader are usually adjacent; a repeat heading is harmless. */
			current = r->uploader;
			printf("\nuploader %s\n  %-28s %-12s %10s %6s %6s %-12s %s\n", current,
			       "ACCOUNT", "QUOTA", "USED", "%", "FILES", "RESETS", "BAN");
		}
		const struct ledger_usage *u = &r->usage;
		int64_t used = ledger_usage_used(u, (enum ledger_window)c->window, now);
		char acc[64], resets[32], ban[LEDGER_CAUSE_MAX + 32];
		human_bytes(used, a, sizeof(a));
		if (u->reset_at_ms && used > 0)
			human_in(u->reset_at_ms - now, resets, sizeof(resets));
		else
			snprintf(resets, sizeof(resets), "-");
		if (u->banned_until_ms > now) {
			human_in(u->banned_until_ms - now, b, sizeof(b));
			/* The cause in full is in --json; the line keeps to 100 columns. */
			snprintf(ban, sizeof(ban), "%s: %.80s", b, u->ban_cause);
			ban[18] = '\0';
		} else {
			snprintf(ban, sizeof(ban), "-");
		}
		char bar[16];
		quota_bar(share(used, c->daily_bytes), bar, sizeof(bar));
		printf("  %-28s %-12s %10s %5.1f%% %6lld %-12s %.18s\n",
		       short_account(r->account, acc, sizeof(acc), 28), bar, a,
		       share(used, c->daily_bytes), (long long)(used ? u->files : 0), resets, ban);
	}
	int heading = 0;
	for (uint32_t i = 0; i < c->slot_capacity; i++) {
		const struct ledger_stage *s = &c->stages[i];
		if (s->state != LEDGER_STAGE_RUNNING)
			continue;
		if (!heading++)
			printf("\nstages\n  %-6s %-18s %-20s %11s %19s %10s %s\n", "PID", "ACCOUNT",
			       "STRATEGY", "FILES", "BYTES", "SPEED", "ETA");
		const struct ledger_row *r = &c->rows[s->row];
		char acc[64], done[32], total[32], speed[32], eta[32];
		human_bytes(s->bytes_done, done, sizeof(done));
		human_bytes(s->bytes_total, total, sizeof(total));
		human_bytes(s->rc_speed, speed, sizeof(speed));
		if (s->rc_eta_s >= 0)
			snprintf(eta, sizeof(eta), "%lldm%02llds", (long long)(s->rc_eta_s / 60),
				 (long long)(s->rc_eta_s % 60));
		else
			snprintf(eta, sizeof(eta), "-");
		printf("  %-6d %-18s %-20.20s %5lld/%-5lld %9s/%-9s %8s/s %.8s\n", s->pid,
		       short_account((uint32_t)s->row < c->row_count ? r->account : "?", acc,
				     sizeof(acc), 18),
		       s->strategy, (long long)s->files_done, (long long)s->files_total, done, total,
		       speed, eta);
	}
	if (c->row_count == 0)
		printf("\nno accounts recorded yet\n");
}

static cJSON *json_document(const char *name, const struct ledger_copy *c, int64_t now)
{
	cJSON *d = cJSON_CreateObject();
	cJSON_AddStringToObject(d, "ledger", name);
	cJSON_AddNumberToObject(d, "generation", (double)c->generation);
	cJSON_AddStringToObject(d, "window", c->window == LEDGER_WINDOW_ROLLING ? "rolling" : "fixed");
	cJSON_AddNumberToObject(d, "daily_bytes", (double)c->daily_bytes);
	cJSON_AddBoolToObject(d, "running", running(c));
	cJSON_AddNumberToObject(d, "supervisor_pid", c->supervisor_pid);
	cJSON_AddNumberToObject(d, "last_change", (double)last_change_ms(c) / 1000.0);
	if (c->flushed_at_ms) {
		cJSON *f = cJSON_AddObjectToObject(d, "last_flush");
		cJSON_AddNumberToObject(f, "generation", (double)c->flushed_generation);
		cJSON_AddNumberToObject(f, "at", (double)c->flushed_at_ms / 1000.0);
		cJSON_AddNumberToObject(f, "age_seconds", (double)(now - c->flushed_at_ms) / 1000.0);
	} else {
		cJSON_AddNullToObject(d, "last_flush");
	}
	cJSON *ups = cJSON_AddObjectToObject(d, "uploaders");
	for (uint32_t i = 0; i < c->row_count; i++) {
		const struct ledger_row *r = &c->rows[i];
		const struct ledger_usage *u = &r->usage;
		cJSON *arr = cJSON_GetObjectItemCaseSensitive(ups, r->uploader);
		if (!arr)
			arr = cJSON_AddArrayToObject(ups, r->uploader);
		int64_t used = ledger_usage_used(u, (enum ledger_window)c->window, now);
		cJSON *o = cJSON_CreateObject();
		cJSON_AddStringToObject(o, "account", r->account);
		cJSON_AddNumberToObject(o, "used_bytes", (double)used);
		cJSON_AddNumberToObject(o, "quota_bytes", (double)c->daily_bytes);
		cJSON_AddNumberToObject(o, "remaining_bytes",
					(double)ledger_usage_remaining(u, c->daily_bytes,
								       (enum ledger_window)c->window, now));
		cJSON_AddNumberToObject(o, "percentage", share(used, c->daily_bytes));
		cJSON_AddNumberToObject(o, "files", (double)(used ? u->files : 0));
		cJSON_AddNumberToObject(o, "first_upload", (double)u->first_upload_ms / 1000.0);
		cJSON_AddNumberToObject(o, "reset_time", (double)u->reset_at_ms / 1000.0);
		cJSON_AddNumberToObject(o, "banned_until",
					u->banned_until_ms > now ? (double)u->banned_until_ms / 1000.0 : 0);
		cJSON_AddStringToObject(o, "ban_cause", u->banned_until_ms > now ? u->ban_cause : "");
		cJSON_AddItemToArray(arr, o);
	}
	cJSON *stages = cJSON_AddArrayToObject(d, "stages");
	for (uint32_t i = 0; i < c->slot_capacity; i++) {
		const struct ledger_stage *s = &c->stages[i];
		if (s->state != LEDGER_STAGE_RUNNING)
			continue;
		int known = (uint32_t)s->row < c->row_count;
		cJSON *o = cJSON_CreateObject();
		cJSON_AddNumberToObject(o, "slot", i);
		cJSON_AddNumberToObject(o, "pid", s->pid);
		cJSON_AddStringToObject(o, "uploader", known ? c->rows[s->row].uploader : "");
		cJSON_AddStringToObject(o, "account", known ? c->rows[s->row].account : "");
		cJSON_AddNumberToObject(o, "stage", s->stage_number);
		cJSON_AddStringToObject(o, "strategy", s->strategy);
		cJSON_AddNumberToObject(o, "files_done", (double)s->files_done);
		cJSON_AddNumberToObject(o, "files_total", (double)s->files_total);
		cJSON_AddNumberToObject(o, "bytes_done", (double)s->bytes_done);
		cJSON_AddNumberToObject(o, "bytes_total", (double)s->bytes_total);
		cJSON_AddNumberToObject(o, "speed", (double)s->rc_speed);
		cJSON_AddNumberToObject(o, "eta_seconds", (double)s->rc_eta_s);
		cJSON_AddItemToArray(stages, o);
	}
	return d;
}

int inspect_print_json(const char *name, const struct ledger_copy *c, int64_t now)
{
	cJSON *d = json_document(name, c, now);
	char *text = d ? cJSON_Print(d) : NULL;
	cJSON_Delete(d);
	if (!text)
		return -1;
	puts(text);
	free(text);
	return 0;
}

int inspect_run(const char *who, const char *name, int json, double watch)
{
	struct ledger l;
	int rc = ledger_attach(name, 0, &l);
	if (rc != LEDGER_OK) {
		if (rc == LEDGER_ERR_SYS && errno == ENOENT)
			fprintf(stderr, "%s: no ledger %s: cplow has not run since boot "
					"(see the ledger file next to the config)\n", who, name);
		else
			fprintf(stderr, "%s: cannot read ledger %s: %s\n", who, name, ledger_strerror(rc));
		return 1;
	}
	struct ledger_copy c;
	if (ledger_copy_init(&l, &c) != LEDGER_OK) {
		fprintf(stderr, "%s: out of memory\n", who);
		ledger_detach(&l);
		return 1;
	}
	int status = 0;
	do {
		rc = ledger_read(&l, &c, INSPECT_READ_TIMEOUT_MS);
		if (rc != LEDGER_OK) {
			fprintf(stderr, "%s: %s\n", who, ledger_strerror(rc));
			status = 1;
			break;
		}
		int64_t now = ledger_now_ms();
		if (watch > 0 && !json)
			printf("\033[H\033[2J");
		if (json ? inspect_print_json(name, &c, now) < 0 : (inspect_print_human(name, &c, now), 0)) {
			status = 1;
			break;
		}
		fflush(stdout);
		if (watch > 0) {
			struct timespec ts = { (time_t)watch,
					       (long)((watch - (double)(time_t)watch) * 1e9) };
			nanosleep(&ts, NULL);
		}
	} while (watch > 0);
	ledger_copy_free(&c);
	ledger_detach(&l);
	return status;
}
