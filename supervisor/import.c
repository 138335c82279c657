#include "import.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "fmt.h"
#include "ledger_file.h"
#include "lock.h"
#include "planner.h"
#include "supervisor.h"

#define IMPORT_READ_TIMEOUT_MS 2000

/* ---- one row: pure functions of two usages and the time ---- */

static bool hour_in_window(int64_t h, int64_t hour)
{
	return h > hour - LEDGER_HOURS && h <= hour;
}

/* used, first_upload and reset_at from the hour buckets, as the ledger's own expiry sets them. */
static void rolling_totals(struct ledger_usage *u, int64_t now_ms)
{
	int64_t hour = now_ms / LEDGER_HOUR_MS, oldest = -1, sum = 0;
	for (int i = 0; i < LEDGER_HOURS; i++) {
		if (u->hour_bytes[i] == 0 || !hour_in_window(u->hour_index[i], hour))
			continue;
		sum += u->hour_bytes[i];
		if (oldest < 0 || u->hour_index[i] < oldest)
			oldest = u->hour_index[i];
	}
	u->used_bytes = sum;
	u->first_upload_ms = oldest < 0 ? 0 : oldest * LEDGER_HOUR_MS;
	u->reset_at_ms = oldest < 0 ? 0 : (oldest + LEDGER_HOURS) * LEDGER_HOUR_MS;
}

void import_prepare(struct ledger_usage *u, enum ledger_window window, int64_t now_ms)
{
	ledger_file_settle(u, window, now_ms);
	if (window == LEDGER_WINDOW_ROLLING)
		rolling_totals(u, now_ms);
}

/* 0 is "never resets": later than any time. */
static bool resets_later(int64_t a, int64_t b)
{
	return a != b && (a == 0 || (b != 0 && a > b));
}

enum import_outcome import_merge(const struct ledger_usage *live, const struct ledger_usage *file,
				 enum ledger_window window, int64_t now_ms,
				 struct ledger_usage *out)
{
	if (!live) {
		*out = *file;
		out->updated_at_ms = now_ms;
		return IMPORT_ADDED;
	}
	struct ledger_usage m = *live;
	bool changed = false;
	int64_t live_used = ledger_usage_used(live, window, now_ms);
	int64_t file_used = ledger_usage_used(file, window, now_ms);
	if (window == LEDGER_WINDOW_ROLLING) {
		int64_t hour = now_ms / LEDGER_HOUR_MS;
		for (int i = 0; i < LEDGER_HOURS; i++) {
			int64_t h = file->hour_index[i], bytes = file->hour_bytes[i];
			if (bytes == 0 || !hour_in_window(h, hour))
				continue;
			int k = (int)(h % LEDGER_HOURS);
			if (m.hour_index[k] == h && m.hour_bytes[k] >= bytes)
				continue;
			/* (Two hours in the window never share a bucket: k holds h or a stale hour.) */
			m.hour_index[k] = h;
			m.hour_bytes[k] = bytes;
			changed = true;
		}
		if (changed) {
			rolling_totals(&m, now_ms);
			if (file->files > m.files)
				m.files = file->files;
		}
	} else if (file_used > live_used) {
		m.used_bytes = file_used;
		m.files = live_used > 0 && live->files > file->files ? live->files : file->files;
		m.first_upload_ms = file->first_upload_ms;
		m.reset_at_ms = file->reset_at_ms;
		/* More bytes now, but the ledger's count may have outlasted the file's: keep the
		 * later reset, so the row never counts less than the ledger did. */
		if (live_used > 0 && resets_later(live->reset_at_ms, file->reset_at_ms)) {
			m.first_upload_ms = live->first_upload_ms;
			m.reset_at_ms = live->reset_at_ms;
		}
		changed = true;
	}
	int64_t live_ban = live->banned_until_ms > now_ms ? live->banned_until_ms : 0;
	if (file->banned_until_ms > now_ms && file->banned_until_ms > live_ban) {
		m.banned_until_ms = file->banned_until_ms;
		memcpy(m.ban_cause, file->ban_cause, sizeof(m.ban_cause));
		changed = true;
	}
	if (!changed) {
		*out = *live;
		return IMPORT_KEPT;
	}
	m.updated_at_ms = now_ms;
	*out = m;
	return IMPORT_RAISED;
}

/* ---- the command ---- */

enum skip_reason {
	SKIP_NONE,
	SKIP_NO_UPLOADER,      /* the config has no such uploader */
	SKIP_UNLISTED,         /* the uploader's accounts could not be listed */
	SKIP_AMBIGUOUS,        /* two key files have the row's file name */
	SKIP_NOT_ACCOUNT,      /* not one of the uploader's accounts */
	SKIP_ENDED,            /* its window is over and it has no ban */
	SKIP_NO_USAGE,
};

/* One row of the file and what becomes of it. */
struct plan_row {
	const struct ledger_file_row *src;
	size_t index;                          /* in the file, for the report's order */
	char account[LEDGER_ACCOUNT_MAX];      /* the ledger's name for it */
	bool by_file_name;                     /* matched a key file by its file name */
	struct ledger_usage file;              /* prepared */
	enum import_outcome outcome;
	enum skip_reason why;                  /* SKIPPED: the reason */
	size_t uploader;                       /* the config's uploader (once found) */
	bool had_before;
	struct ledger_usage before, after;
};

/* One ledger row the import writes: a group of plan rows with the same name. */
struct target {
	const char *uploader, *account;
	struct ledger_usage usage;
	bool in_ledger, exists, dirty;
	int64_t before_used;
};

struct run {
	const struct import_options *o;
	FILE *out, *err;
	struct config cfg;
	struct ledger_file file;
	struct plan_row *rows;
	struct planner_accounts *accounts;     /* per config uploader, listed on first use */
	char **account_errors;                 /* per config uploader: why it could not be listed */
	bool *listed;
	struct target *targets;
	size_t target_count;
	struct ledger ledger;
	struct ledger_copy copy;
	enum ledger_window window;
	int64_t daily_bytes;
	int64_t now;
	char ledger_name[128];
};


static const char *file_name_of(const char *path)
{
	const char *slash = strrchr(path, '/');
	return slash ? slash + 1 : path;
}

static int cmp_file_rows(const void *a, const void *b)
{
	const struct ledger_file_row *x = *(const struct ledger_file_row *const *)a;
	const struct ledger_file_row *y = *(const struct ledger_file_row *const *)b;
	int c = strcmp(x->uploader, y->uploader);
	return c ? c : strcmp(x->account, y->account);
}

/* The strict rule of a restore: an account twice in the file makes it a bad file. */
static int find_duplicate(const struct ledger_file *f, char *msg, size_t len)
{
	if (f->count < 2)
		return 0;
	const struct ledger_file_row **v = malloc(f->count * sizeof(*v));
	if (!v) {
		snprintf(msg, len, "out of memory");
		return -1;
	}
	for (size_t i = 0; i < f->count; i++)
		v[i] = &f->rows[i];
	qsort(v, f->count, sizeof(*v), cmp_file_rows);
	int rc = 0;
	for (size_t i = 1; i < f->count && rc == 0; i++)
		if (cmp_file_rows(&v[i - 1], &v[i]) == 0) {
			snprintf(msg, len, "\"%s\" → \"%s\" appears twice", v[i]->uploader,
				 v[i]->account);
			rc = -1;
		}
	free(v);
	return rc;
}

static const struct planner_accounts *accounts_of(struct run *r, size_t u)
{
	if (!r->listed[u]) {
		char err[CONFIG_ERR_MAX];
		r->listed[u] = true;
		if (planner_accounts(&r->cfg.uploaders[u], &r->accounts[u], err, sizeof(err)) < 0)
			r->account_errors[u] = strdup(err);
	}
	return r->account_errors[u] ? NULL : &r->accounts[u];
}

/* Finds the ledger's name for the row's account, or says why there is none. */
static bool resolve(struct run *r, struct plan_row *p)
{
	const struct ledger_file_row *s = p->src;
	size_t u = 0;
	while (u < r->cfg.uploader_count && strcmp(r->cfg.uploaders[u].name, s->uploader) != 0)
		u++;
	p->uploader = u;
	if (u == r->cfg.uploader_count) {
		p->why = SKIP_NO_UPLOADER;
		return false;
	}
	const struct planner_accounts *a = accounts_of(r, u);
	if (!a) {
		p->why = SKIP_UNLISTED;
		return false;
	}
	for (size_t i = 0; i < a->count; i++)
		if (strcmp(a->v[i].name, s->account) == 0) {
			snprintf(p->account, sizeof(p->account), "%s", a->v[i].name);
			return true;
		}
	const char *base = file_name_of(s->account);
	int found = -1;
	for (size_t i = 0; i < a->count; i++) {
		if (!a->v[i].key_path || strcmp(file_name_of(a->v[i].name), base) != 0)
			continue;
		if (found >= 0) {
			p->why = SKIP_AMBIGUOUS;
			return false;
		}
		found = (int)i;
	}
	if (found < 0) {
		p->why = SKIP_NOT_ACCOUNT;
		return false;
	}
	snprintf(p->account, sizeof(p->account), "%s", a->v[found].name);
	p->by_file_name = true;
	return true;
}

static void print_skip_reason(const struct run *r, const struct plan_row *p)
{
	const struct ledger_file_row *s = p->src;
	const struct config_uploader *cu =
		p->uploader < r->cfg.uploader_count ? &r->cfg.uploaders[p->uploader] : NULL;
	char t[64];
	switch (p->why) {
	case SKIP_NO_UPLOADER:
		fprintf(r->out, "no uploader \"%s\" in %s\n", s->uploader, r->cfg.path);
		return;
	case SKIP_UNLISTED:
		fprintf(r->out, "cannot list uploader %s's accounts: %s\n", s->uploader,
			r->account_errors[p->uploader] ? r->account_errors[p->uploader]
						       : "out of memory");
		return;
	case SKIP_AMBIGUOUS:
		fprintf(r->out, "more than one of uploader %s's key files is named %s\n",
			s->uploader, file_name_of(s->account));
		return;
	case SKIP_NOT_ACCOUNT:
		if (cu && cu->rotate_remote_count)
			fprintf(r->out, "not one of uploader %s's rotate_remotes\n", s->uploader);
		else if (cu && cu->service_account_path)
			fprintf(r->out, "no key file named %s in %s\n", file_name_of(s->account),
				cu->service_account_path);
		else
			fprintf(r->out, "uploader %s's only account is %s\n", s->uploader,
				cu && r->accounts[p->uploader].count ? r->accounts[p->uploader].v[0].name
								     : "another");
		return;
	case SKIP_ENDED:
		fmt_utc(s->usage.reset_at_ms, t, sizeof(t));
		fprintf(r->out, "its window ended at %s: none of its %lld bytes count any more\n", t,
			(long long)s->usage.used_bytes);
		return;
	case SKIP_NO_USAGE:
	case SKIP_NONE:
		fprintf(r->out, "no usage and no ban\n");
		return;
	}
}

/* "745487360000 bytes (694.3 GiB)"; below 1 KiB only the bytes. */
static void human_bytes(int64_t b, char *out, size_t len)
{
	double v;
	int unit = fmt_scale((double)b, 4, false, &v);
	if (unit == 0)
		snprintf(out, len, "%lld bytes", (long long)b);
	else
		snprintf(out, len, "%lld bytes (%.1f %s)", (long long)b, v, fmt_binary_units[unit]);
}

/* "745487360000 bytes (694.3 GiB), 92.6 % of the day, resets 2024-12-19 21:20:00 UTC" */
static void describe(const struct run *r, const struct ledger_usage *u, char *out, size_t len)
{
	int64_t used = ledger_usage_used(u, r->window, r->now);
	char b[64], t[64], ban[LEDGER_CAUSE_MAX + 96] = "";
	human_bytes(used, b, sizeof(b));
	if (u->banned_until_ms > r->now) {
		fmt_utc(u->banned_until_ms, t, sizeof(t));
		snprintf(ban, sizeof(ban), ", banned until %s%s%s%s", t, *u->ban_cause ? " (" : "",
			 u->ban_cause, *u->ban_cause ? ")" : "");
	}
	if (used == 0)
		snprintf(t, sizeof(t), "-");
	else if (u->reset_at_ms == 0)
		snprintf(t, sizeof(t), "never (no reset time)");
	else
		fmt_utc(u->reset_at_ms, t, sizeof(t));
	snprintf(out, len, "%s, %.1f %% of the day, resets %s%s", b,
		 r->daily_bytes > 0 ? 100.0 * (double)used / (double)r->daily_bytes : 0.0, t, ban);
}

static int cmp_targets(const void *a, const void *b)
{
	const struct plan_row *x = *(const struct plan_row *const *)a;
	const struct plan_row *y = *(const struct plan_row *const *)b;
	int c = strcmp(x->src->uploader, y->src->uploader);
	if (!c)
		c = strcmp(x->account, y->account);
	return c ? c : (x->index > y->index) - (x->index < y->index);
}

/* Groups the rows to import by ledger row and merges each group, in file order, over the
 * ledger's row. Returns the number of new ledger rows needed, or -1 (out of memory). */
static long plan(struct run *r)
{
	struct plan_row **v = malloc((r->file.count ? r->file.count : 1) * sizeof(*v));
	r->targets = calloc(r->file.count ? r->file.count : 1, sizeof(*r->targets));
	if (!v || !r->targets) {
		free(v);
		return -1;
	}
	size_t n = 0;
	for (size_t i = 0; i < r->file.count; i++)
		if (r->rows[i].outcome != IMPORT_SKIPPED)
			v[n++] = &r->rows[i];
	qsort(v, n, sizeof(*v), cmp_targets);
	long added = 0;
	for (size_t i = 0; i < n; i++) {
		if (i == 0 || strcmp(v[i]->src->uploader, v[i - 1]->src->uploader) != 0 ||
		    strcmp(v[i]->account, v[i - 1]->account) != 0) {
			struct target *t = &r->targets[r->target_count++];
			t->uploader = v[i]->src->uploader;
			t->account = v[i]->account;
			int32_t row;
			if (ledger_row_find(&r->ledger, t->uploader, t->account, &row) == LEDGER_OK &&
			    (uint32_t)row < r->copy.row_count) {
				t->usage = r->copy.rows[row].usage;
				t->in_ledger = t->exists = true;
				t->before_used = ledger_usage_used(&t->usage, r->window, r->now);
			}
		}
		struct target *t = &r->targets[r->target_count - 1];
		struct plan_row *p = v[i];
		p->had_before = t->exists;
		p->before = t->usage;
		p->outcome = import_merge(t->exists ? &t->usage : NULL, &p->file, r->window, r->now,
					  &p->after);
		if (p->outcome != IMPORT_KEPT) {
			if (!t->in_ledger && !t->exists)
				added++;
			t->usage = p->after;
			t->exists = t->dirty = true;
		}
	}
	free(v);
	return added;
}

static void report_row(const struct run *r, const struct plan_row *p)
{
	static const char *const verbs[] = { "added", "raised", "kept", "skipped" };
	const struct ledger_file_row *s = p->src;
	char what[512], was[512];
	if (p->by_file_name)
		fprintf(r->out, "%-8s %s / %s (the file's %s, matched by file name): ",
			verbs[p->outcome], s->uploader, p->account, s->account);
	else
		fprintf(r->out, "%-8s %s / %s: ", verbs[p->outcome], s->uploader, s->account);
	switch (p->outcome) {
	case IMPORT_ADDED:
		describe(r, &p->after, what, sizeof(what));
		fprintf(r->out, "%s\n", what);
		break;
	case IMPORT_RAISED:
		describe(r, &p->after, what, sizeof(what));
		describe(r, &p->before, was, sizeof(was));
		fprintf(r->out, "%s; the ledger had %s\n", what, was);
		break;
	case IMPORT_KEPT:
		describe(r, &p->before, what, sizeof(what));
		describe(r, &p->file, was, sizeof(was));
		fprintf(r->out, "the ledger's %s stays; the file has %s\n", what, was);
		break;
	case IMPORT_SKIPPED:
		print_skip_reason(r, p);
		break;
	}
}

static void report(const struct run *r, const char *from)
{
	size_t counts[4] = { 0 };
	int64_t before = 0, after = 0;
	for (size_t i = 0; i < r->file.count; i++) {
		report_row(r, &r->rows[i]);
		counts[r->rows[i].outcome]++;
	}
	for (size_t i = 0; i < r->target_count; i++) {
		before += r->targets[i].before_used;
		after += ledger_usage_used(&r->targets[i].usage, r->window, r->now);
	}
	fprintf(r->out,
		"total: %zu account%s in %s: %zu added, %zu raised, %zu kept, %zu skipped; the "
		"ledger counts %lld bytes for the imported accounts (%lld before)\n",
		r->file.count, r->file.count == 1 ? "" : "s", from, counts[IMPORT_ADDED], counts[IMPORT_RAISED],
		counts[IMPORT_KEPT], counts[IMPORT_SKIPPED], (long long)after, (long long)before);
}

static int apply(struct run *r)
{
	for (size_t i = 0; i < r->target_count; i++) {
		const struct target *t = &r->targets[i];
		if (!t->dirty)
			continue;
		int32_t row;
		int rc = ledger_row_get(&r->ledger, t->uploader, t->account, &row);
		if (rc == LEDGER_OK)
			rc = ledger_set_usage(&r->ledger, row, &t->usage);
		if (rc != LEDGER_OK) {
			fprintf(r->err, "cplow: import-cloudplow: cannot write \"%s\" → \"%s\" into "
					"the ledger: %s; the rows before it are imported, and importing "
					"again is safe\n",
				t->uploader, t->account, ledger_strerror(rc));
			return -1;
		}
	}
	char err[LEDGER_FILE_ERR_MAX];
	int64_t now = ledger_now_ms();
	/* Under the flush lock: a flusher orphaned by a killed cplow may still write. */
	if (ledger_file_flush(&r->ledger, &r->copy, r->cfg.quota.cache_path, now, err,
			      sizeof(err)) < 0) {
		fprintf(r->err, "cplow: import-cloudplow: the ledger holds the import, but its file "
				"could not be written: %s; the next cplow start writes it\n",
			err);
		return -1;
	}
	return 0;
}

static void free_run(struct run *r)
{
	for (size_t u = 0; r->listed && r->accounts && r->account_errors && u < r->cfg.uploader_count;
	     u++) {
		planner_accounts_free(&r->accounts[u]);
		free(r->account_errors[u]);
	}
	free(r->accounts);
	free(r->account_errors);
	free(r->listed);
	free(r->rows);
	free(r->targets);
	ledger_copy_free(&r->copy);
	if (r->ledger.hdr)
		ledger_detach(&r->ledger);
	ledger_file_free(&r->file);
	config_free(&r->cfg);
}

/* The ledger must have no writer but us: no cplow (the lock), no worker an earlier cplow left. */
static int check_no_writer(struct run *r)
{
	for (uint32_t i = 0; i < r->copy.slot_capacity; i++) {
		const struct ledger_stage *st = &r->copy.stages[i];
		if (st->state == LEDGER_STAGE_RUNNING && ledger_stage_holder_alive(st)) {
			fprintf(r->err, "cplow: import-cloudplow: a worker of an earlier cplow (pid %d) "
					"is still uploading into this ledger: wait for it to end, then "
					"import\n",
				(int)st->pid);
			return -1;
		}
	}
	return 0;
}

int import_cloudplow(const struct import_options *o, FILE *out, FILE *errf)
{
	struct run r = { .o = o, .out = out, .err = errf };
	char err[CONFIG_ERR_MAX > LEDGER_FILE_ERR_MAX ? CONFIG_ERR_MAX : LEDGER_FILE_ERR_MAX];
	int code = SUPERVISOR_EXIT_CONFIG, lock_fd = -1;
	if (config_load(o->config_path, &r.cfg, err, sizeof(err)) < 0) {
		fprintf(errf, "cplow: %s\n", err);
		return SUPERVISOR_EXIT_CONFIG;
	}
	const char *from = o->from ? o->from : r.cfg.quota.cache_path;
	/* 1. The file, whole and strict, before anything is touched. */
	if (ledger_file_load(from, &r.file, err, sizeof(err)) < 0 ||
	    find_duplicate(&r.file, err, sizeof(err)) < 0) {
		fprintf(errf, "cplow: import-cloudplow: %s: %s\n", from, err);
		goto out;
	}
	r.rows = calloc(r.file.count ? r.file.count : 1, sizeof(*r.rows));
	r.accounts = calloc(r.cfg.uploader_count + 1, sizeof(*r.accounts));
	r.account_errors = calloc(r.cfg.uploader_count + 1, sizeof(*r.account_errors));
	r.listed = calloc(r.cfg.uploader_count + 1, sizeof(*r.listed));
	if (!r.rows || !r.accounts || !r.account_errors || !r.listed) {
		fprintf(errf, "cplow: import-cloudplow: out of memory\n");
		code = SUPERVISOR_EXIT_FAILED;
		goto out;
	}
	/* 2. No other writer: the lock, then the ledger (restored from its file if need be). */
	pid_t holder;
	enum lock_status ls = lock_take(r.cfg.quota.lock_path, &lock_fd, &holder);
	if (ls == LOCK_HELD) {
		if (holder)
			fprintf(errf, "cplow: import-cloudplow: cplow (pid %d) is running with this "
				      "config (it holds %s): stop it, then import\n",
				(int)holder, r.cfg.quota.lock_path);
		else
			fprintf(errf, "cplow: import-cloudplow: cplow is running with this config (it "
				      "holds %s): stop it, then import\n",
				r.cfg.quota.lock_path);
		code = SUPERVISOR_EXIT_LOCKED;
		goto out;
	}
	if (ls == LOCK_ERROR) {
		fprintf(errf, "cplow: import-cloudplow: cannot take the lock %s: %s\n",
			r.cfg.quota.lock_path, strerror(errno));
		code = SUPERVISOR_EXIT_FAILED;
		goto out;
	}
	if (ledger_name_for(r.cfg.path, r.ledger_name, sizeof(r.ledger_name)) != LEDGER_OK) {
		fprintf(errf, "cplow: import-cloudplow: cannot derive a ledger name from %s\n",
			r.cfg.path);
		goto out;
	}
	if (supervisor_open_ledger(&r.cfg, r.ledger_name, false, &r.ledger, err, sizeof(err)) < 0) {
		fprintf(errf, "cplow: import-cloudplow: %s\n", err);
		goto out;
	}
	code = SUPERVISOR_EXIT_FAILED;
	if (ledger_copy_init(&r.ledger, &r.copy) != LEDGER_OK ||
	    ledger_read(&r.ledger, &r.copy, IMPORT_READ_TIMEOUT_MS) != LEDGER_OK) {
		fprintf(errf, "cplow: import-cloudplow: cannot read the ledger %s\n", r.ledger_name);
		goto out;
	}
	if (check_no_writer(&r) < 0) {
		code = SUPERVISOR_EXIT_LOCKED;
		goto out;
	}
	r.window = (enum ledger_window)r.copy.window;
	r.daily_bytes = r.copy.daily_bytes;
	r.now = ledger_now_ms();
	/* 3. Each row: whose it is, whether anything of it still counts, the merge. */
	for (size_t i = 0; i < r.file.count; i++) {
		struct plan_row *p = &r.rows[i];
		p->src = &r.file.rows[i];
		p->index = i;
		p->file = p->src->usage;
		import_prepare(&p->file, r.window, r.now);
		p->outcome = IMPORT_SKIPPED;
		if (!resolve(&r, p))
			continue;
		int64_t used = ledger_usage_used(&p->file, r.window, r.now);
		if (used == 0 && p->file.banned_until_ms <= r.now) {
			p->why = p->src->usage.used_bytes > 0 ? SKIP_ENDED : SKIP_NO_USAGE;
			continue;
		}
		p->outcome = IMPORT_ADDED; /* for now: not skipped; plan() decides */
	}
	long added = plan(&r);
	if (added < 0) {
		fprintf(errf, "cplow: import-cloudplow: out of memory\n");
		goto out;
	}
	if (r.copy.row_count + (uint64_t)added > r.ledger.hdr->row_capacity) {
		fprintf(errf, "cplow: import-cloudplow: %ld new accounts do not fit in the ledger "
			      "(%u of %u rows used): raise quota.capacity in %s\n",
			added, r.copy.row_count, r.ledger.hdr->row_capacity, r.cfg.path);
		code = SUPERVISOR_EXIT_CONFIG;
		goto out;
	}
	/* 4. Write, then say what was done. */
	fprintf(out, "import-cloudplow: %zu account%s from %s (%s) into the ledger of %s (%s, %s "
		     "window, %lld bytes a day)\n",
		r.file.count, r.file.count == 1 ? "" : "s", from, r.file.from_fork ? "the quota fork's format" : "cplow's format",
		r.cfg.path, r.ledger_name, r.window == LEDGER_WINDOW_ROLLING ? "rolling" : "fixed",
		(long long)r.daily_bytes);
	if (!o->dry_run && apply(&r) < 0)
		goto out;
	report(&r, from);
	if (o->dry_run)
		fprintf(out, "dry run: neither the ledger nor %s was changed\n",
			r.cfg.quota.cache_path);
	else
		fprintf(out, "written: the ledger and %s\n", r.cfg.quota.cache_path);
	code = SUPERVISOR_EXIT_OK;
out:
	if (lock_fd >= 0)
		close(lock_fd);
	free_run(&r);
	return code;
}
