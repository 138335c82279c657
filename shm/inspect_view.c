/*
 * What cplow-inspect and `cplow status` print about a ledger copy.
 *
 * The JSON document (documented in docs/ledger.md, "cplow-inspect"):
 *   {"ledger", "generation", "window", "daily_bytes", "running", "supervisor_pid",
 *    "last_change", "last_seen_alive", "last_flush": {"generation", "at", "age_seconds"} | null,
 *    "session": {"started", "files", "bytes", "stages"},
 *    "uploaders": {"<uploader>": [{"account", "used_bytes", "quota_bytes", "remaining_bytes",
 *        "percentage", "files", "first_upload", "reset_time", "banned_until", "ban_cause"}]},
 *    "stages": [{"slot", "pid", "uploader", "account", "stage", "strategy", "files_done",
 *        "files_total", "bytes_done", "bytes_total", "speed", "eta_seconds"}]}
 * Times are Unix seconds (0 = none). "running": the supervisor's PID answers and its heartbeat
 * (last_seen_alive) is under 30 s old. "session": the finished stages of the supervisor's run
 * (ledger_session_start; running stages are in "stages").
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

#define INSPECT_WIDTH 100              /* every human line fits a 100-column terminal */
/* The supervisor's heartbeat (supervisor_seen_ms) moves every second; older than this, it is
 * gone even if its PID answers kill(pid, 0) (reused by another process). Generous, so that a
 * supervisor busy in one long step (a remote check) does not read as dead. */
#define INSPECT_SUPERVISOR_STALE_MS 30000

/*
 * Every formatter below has a fixed widest output, whatever the value (negative or absurd
 * numbers included), so the fixed-width rows cannot overflow: the widths are in the names.
 */

/* b in binary units: returns the unit (0 = bytes, 1 = Ki ... 6 = Ei) and *v, already moved to
 * the next unit where "%.1f" would print "1024.0". */
static int binary_scale(int64_t b, double *v)
{
	*v = (double)b;
	int u = 0;
	while (*v >= 1024 && u < 6) {
		*v /= 1024;
		u++;
	}
	if (u > 0 && u < 6 && *v >= 1023.95) {
		*v = 1.0;
		u++;
	}
	return u;
}

/* b in the given units (bytes, then Ki ... Ei), with sep between number and unit; "-" below 0. */
static void scaled_bytes(int64_t b, const char *const units[7], const char *sep, char *out,
			 size_t len)
{
	double v;
	int u = b < 0 ? -1 : binary_scale(b, &v);
	if (u < 0)
		snprintf(out, len, "-");
	else if (u == 0)
		snprintf(out, len, "%lld%s%s", (long long)b, sep, units[0]);
	else
		snprintf(out, len, "%.1f%s%s", v, sep, units[u]);
}

/* "1023 B", "1023.9 KiB" ... "8.0 EiB": at most 10 columns. */
static void human_bytes(int64_t b, char *out, size_t len)
{
	static const char *const units[7] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB" };
	scaled_bytes(b, units, " ", out, len);
}

/* The same in the stage rows' compact form: "1023B", "500.0K", "1.5G": at most 7 columns. */
static void compact_bytes(int64_t b, char *out, size_t len)
{
	static const char *const units[7] = { "B", "K", "M", "G", "T", "P", "E" };
	scaled_bytes(b, units, "", out, len);
}

/* Counts: exact below a million, then "1.2M", "340G", "9.2E": at most 6 columns. */
static void compact_count(int64_t n, char *out, size_t len)
{
	static const char units[] = "kMGTPE";
	if (n < 0) {
		snprintf(out, len, "-");
		return;
	}
	if (n < 1000000) {
		snprintf(out, len, "%lld", (long long)n);
		return;
	}
	double v = (double)n / 1000;
	int u = 0;
	while (v >= 999.5 && u < 5) {
		v /= 1000;
		u++;
	}
	snprintf(out, len, v >= 99.95 ? "%.0f%c" : "%.1f%c", v, units[u]);
}

/* A duration in two units: "59m59s", "2h00m", "11d13h", "9999d", ">99999d": at most 7
 * columns. */
static void compact_duration(int64_t s, char *out, size_t len)
{
	if (s < 0)
		snprintf(out, len, "-");
	else if (s < 3600)
		snprintf(out, len, "%lldm%02llds", (long long)(s / 60), (long long)(s % 60));
	else if (s < 86400)
		snprintf(out, len, "%lldh%02lldm", (long long)(s / 3600), (long long)(s % 3600 / 60));
	else if (s < 100 * 86400LL)
		snprintf(out, len, "%lldd%02lldh", (long long)(s / 86400), (long long)(s % 86400 / 3600));
	else if (s < 100000 * 86400LL)
		snprintf(out, len, "%lldd", (long long)(s / 86400));
	else
		snprintf(out, len, ">99999d");
}

/* How long ago: "1.2 s" under a minute, else as compact_duration: at most 7 columns. */
static void human_age(int64_t ms, char *out, size_t len)
{
	if (ms < 0)
		ms = 0;
	if (ms < 60000)
		snprintf(out, len, "%.1f s", (double)ms / 1000.0);
	else
		compact_duration(ms / 1000, out, len);
}

/* "in 23h 10m", "in 12d 05h", "in 9999d 23h", "in >9999d", "now": at most 12 columns. */
static void human_in(int64_t ms, char *out, size_t len)
{
	if (ms <= 0) {
		snprintf(out, len, "now");
		return;
	}
	int64_t m = ms / 60000;
	if (m < 100 * 60)
		snprintf(out, len, "in %lldh %02lldm", (long long)(m / 60), (long long)(m % 60));
	else if (m < 10000 * 1440LL)
		snprintf(out, len, "in %lldd %02lldh", (long long)(m / 1440), (long long)(m % 1440 / 60));
	else
		snprintf(out, len, "in >9999d");
}

/* " 96.0%", "  250%", ">9999%": at most 6 columns. */
static void human_percent(double p, char *out, size_t len)
{
	if (p < 99.95)
		snprintf(out, len, "%5.1f%%", p < 0 ? 0.0 : p);
	else if (p < 9999.5)
		snprintf(out, len, "%5.0f%%", p);
	else
		snprintf(out, len, ">9999%%");
}

static void human_time(int64_t ms, char *out, size_t len)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;
	if (!gmtime_r(&t, &tm) || strftime(out, len, "%Y-%m-%d %H:%M:%S UTC", &tm) == 0)
		snprintf(out, len, "?");
}

/* A name or cause for one terminal line: control characters (a newline in an account name
 * would break the table) become '?'. */
static void printable(const char *in, char *out, size_t len)
{
	size_t i = 0;
	for (; in[i] && i + 1 < len; i++) {
		unsigned char ch = (unsigned char)in[i];
		out[i] = ch == '\t' || ch == '\n' || ch == '\r' ? ' ' :
			 ch < 0x20 || ch == 0x7f ? '?' : in[i];
	}
	out[i] = '\0';
}

static int utf8_continuation(char c)
{
	return ((unsigned char)c & 0xc0) == 0x80;
}

/* Pads s with spaces to `width` terminal columns: printf pads by bytes, and a name with
 * multi-byte characters would pull the columns after it to the left. */
static const char *pad_columns(char *s, size_t cap, size_t width)
{
	size_t cols = 0, len = strlen(s);
	for (size_t i = 0; i < len; i++)
		cols += !utf8_continuation(s[i]);
	while (cols++ < width && len + 1 < cap)
		s[len++] = ' ';
	s[len] = '\0';
	return s;
}

/* Long key-file paths are the norm; their tail names them. Cut on a character boundary. */
static const char *short_account(const char *account, char *buf, size_t len, size_t width)
{
	char clean[LEDGER_ACCOUNT_MAX];
	printable(account, clean, sizeof(clean));
	size_t n = strlen(clean);
	const char *tail = clean;
	if (n > width) {
		tail = clean + n - (width - 3);
		while (*tail && utf8_continuation(*tail))
			tail++;
		snprintf(buf, len, "...%s", tail);
	} else {
		snprintf(buf, len, "%s", clean);
	}
	return buf;
}

/* Prints text after a label, wrapped at INSPECT_WIDTH on spaces (or on a character boundary
 * when a word is longer than the line), continuation lines indented under the text. */
static void print_wrapped(FILE *f, const char *label, const char *text)
{
	size_t indent = strlen(label), room = INSPECT_WIDTH - indent;
	char clean[1024];
	printable(text, clean, sizeof(clean));
	const char *p = clean;
	int first = 1;
	do {
		size_t n = strlen(p);
		if (n > room) {
			n = room;
			while (n > 0 && p[n] != ' ')
				n--;
			if (n < room / 2) { /* no space in reach: cut the word */
				n = room;
				while (n > 0 && utf8_continuation(p[n]))
					n--;
				if (n == 0)
					n = room; /* not UTF-8 at all: bytes, then */
			}
		}
		size_t shown = n;
		while (shown > 0 && p[shown - 1] == ' ')
			shown--;
		fprintf(f, "%*s%.*s\n", (int)indent, first ? label : "", (int)shown, p);
		first = 0;
		p += n;
		while (*p == ' ')
			p++;
	} while (*p);
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

/* The supervisor is alive: its PID answers and its heartbeat is recent. The PID alone is not
 * enough: after a reboot-free crash another process may have been given it. */
static int running(const struct ledger_copy *c, int64_t now)
{
	return c->supervisor_pid > 0 && c->supervisor_seen_ms > 0 &&
	       now - c->supervisor_seen_ms < INSPECT_SUPERVISOR_STALE_MS &&
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

static void print_rows(FILE *f, const struct ledger_copy *c, int64_t now)
{
	const char *current = NULL;
	for (uint32_t i = 0; i < c->row_count; i++) {
		const struct ledger_row *r = &c->rows[i];
		if (!current || strcmp(current, r->uploader) != 0) {
			/* Rows of one uploader are usually adjacent; a repeat heading is harmless. */
			char name[LEDGER_UPLOADER_MAX];
			current = r->uploader;
			printable(current, name, sizeof(name));
			fprintf(f, "\nuploader %s\n  %-28s %-12s %10s %6s %6s %-12s %s\n", name,
				"ACCOUNT", "QUOTA", "USED", "%", "FILES", "RESETS", "BANNED");
		}
		const struct ledger_usage *u = &r->usage;
		int64_t used = ledger_usage_used(u, (enum ledger_window)c->window, now);
		char acc[64], bytes[24], pct[24], files[24], resets[24], ban[24], bar[16];
		human_bytes(used, bytes, sizeof(bytes));
		human_percent(share(used, c->daily_bytes), pct, sizeof(pct));
		compact_count(used ? u->files : 0, files, sizeof(files));
		if (u->reset_at_ms && used > 0)
			human_in(u->reset_at_ms - now, resets, sizeof(resets));
		else
			snprintf(resets, sizeof(resets), "-");
		int banned = u->banned_until_ms > now;
		if (banned)
			human_in(u->banned_until_ms - now, ban, sizeof(ban));
		else
			snprintf(ban, sizeof(ban), "-");
		quota_bar(share(used, c->daily_bytes), bar, sizeof(bar));
		short_account(r->account, acc, sizeof(acc), 28);
		fprintf(f, "  %s %-12s %10s %6s %6s %-12s %s\n", pad_columns(acc, sizeof(acc), 28),
			bar, bytes, pct, files, resets, ban);
		/* The cause whole, on its own line: a cell would cut it to a few characters. */
		if (banned)
			print_wrapped(f, "    ban cause: ", u->ban_cause[0] ? u->ban_cause : "(none given)");
	}
}
static void print_stages(FILE *f, const struct ledger_copy *c)
{
	int heading = 0;
	for (uint32_t i = 0; i < c->slot_capacity; i++) {
		const struct ledger_stage *s = &c->stages[i];
		if (s->state != LEDGER_STAGE_RUNNING)
			continue;
		if (!heading++)
			fprintf(f, "\nstages\n  %-7s %-20s %-20s %13s %15s %9s %s\n", "PID", "ACCOUNT",
				"STRATEGY", "FILES", "BYTES", "SPEED", "ETA");
		int known = s->row >= 0 && (uint32_t)s->row < c->row_count;
		char pid[16], acc[64], strategy[LEDGER_STRATEGY_MAX], fd[24], ft[24], files[64];
		char bd[24], bt[24], bytes[64], speed[32], eta[24];
		/* Linux PIDs have at most 7 digits (PID_MAX_LIMIT is 2^22). */
		if (s->pid > 0 && s->pid <= 9999999)
			snprintf(pid, sizeof(pid), "%d", s->pid);
		else
			snprintf(pid, sizeof(pid), "?");
		printable(s->strategy, strategy, sizeof(strategy));
		compact_count(s->files_done, fd, sizeof(fd));
		compact_count(s->files_total, ft, sizeof(ft));
		snprintf(files, sizeof(files), "%s/%s", fd, ft);
		compact_bytes(s->bytes_done, bd, sizeof(bd));
		compact_bytes(s->bytes_total, bt, sizeof(bt));
		snprintf(bytes, sizeof(bytes), "%s/%s", bd, bt);
		compact_bytes(s->rc_speed, speed, sizeof(speed));
		if (s->rc_speed >= 0)
			strcat(speed, "/s");
		compact_duration(s->rc_eta_s, eta, sizeof(eta));
		short_account(known ? c->rows[s->row].account : "?", acc, sizeof(acc), 20);
		fprintf(f, "  %-7s %s %-20.20s %13s %15s %9s %s\n", pid,
			pad_columns(acc, sizeof(acc), 20), strategy, files, bytes, speed, eta);
	}
}

void inspect_write_human(FILE *f, const char *name, const struct ledger_copy *c, int64_t now)
{
	char a[64], t[64], age[24], clean[128];
	printable(name, clean, sizeof(clean));
	fprintf(f, "ledger %.90s\n", clean);
	human_bytes(c->daily_bytes, a, sizeof(a));
	fprintf(f, "generation %llu, %s window, daily quota %s\n",
		(unsigned long long)c->generation,
		c->window == LEDGER_WINDOW_ROLLING ? "rolling 24 h" : "fixed 24 h", a);
	if (c->flushed_at_ms) {
		human_time(c->flushed_at_ms, t, sizeof(t));
		human_age(now - c->flushed_at_ms, age, sizeof(age));
		fprintf(f, "last durable flush: %s, %s ago, generation %llu\n", t, age,
			(unsigned long long)c->flushed_generation);
	} else {
		fprintf(f, "last durable flush: never\n");
	}
	if (!running(c, now)) {
		/* Stale since the supervisor's last heartbeat: until then the data was live, even
		 * if nothing changed. */
		if (c->supervisor_seen_ms > 0) {
			human_time(c->supervisor_seen_ms, t, sizeof(t));
			human_age(now - c->supervisor_seen_ms, age, sizeof(age));
			fprintf(f, "cplow is not running: stale since it was last seen alive, %s "
				   "(%s ago)\n", t, age);
		} else {
			fprintf(f, "cplow is not running: this data is stale (cplow was never seen "
				   "running on it)\n");
		}
	}
	print_rows(f, c, now);
	print_stages(f, c);
	if (c->row_count == 0)
		fprintf(f, "\nno accounts recorded yet\n");
}

void inspect_print_human(const char *name, const struct ledger_copy *c, int64_t now)
{
	inspect_write_human(stdout, name, c, now);
}

static cJSON *json_document(const char *name, const struct ledger_copy *c, int64_t now)
{
	cJSON *d = cJSON_CreateObject();
	cJSON_AddStringToObject(d, "ledger", name);
	cJSON_AddNumberToObject(d, "generation", (double)c->generation);
	cJSON_AddStringToObject(d, "window", c->window == LEDGER_WINDOW_ROLLING ? "rolling" : "fixed");
	cJSON_AddNumberToObject(d, "daily_bytes", (double)c->daily_bytes);
	cJSON_AddBoolToObject(d, "running", running(c, now));
	cJSON_AddNumberToObject(d, "supervisor_pid", c->supervisor_pid);
	cJSON_AddNumberToObject(d, "last_change", (double)last_change_ms(c) / 1000.0);
	cJSON_AddNumberToObject(d, "last_seen_alive", (double)c->supervisor_seen_ms / 1000.0);
	cJSON *session = cJSON_AddObjectToObject(d, "session");
	cJSON_AddNumberToObject(session, "started", (double)c->session.started_ms / 1000.0);
	cJSON_AddNumberToObject(session, "files", (double)c->session.files);
	cJSON_AddNumberToObject(session, "bytes", (double)c->session.bytes);
	cJSON_AddNumberToObject(session, "stages", (double)c->session.stages);
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
		if (rc == LEDGER_ERR_SYS && errno == ENOENT) {
			fprintf(stderr, "%s: no ledger %s: cplow has not run since boot "
					"(see the ledger file next to the config)\n", who, name);
		} else if (rc == LEDGER_ERR_FOREIGN) {
			char owner[256];
			ledger_describe_owner(name, owner, sizeof(owner));
			fprintf(stderr, "%s: not reading ledger %s: %s (%s)\n", who, name,
				ledger_strerror(rc), owner);
		} else
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
