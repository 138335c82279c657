#include "ledger_file.h"
#include "log.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <malloc.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Integers above 2^53 do not survive a double; no real byte count or time gets near it. */
#define MAX_EXACT 9007199254740992.0
#define FILE_MAX_BYTES (256L * 1024 * 1024)

/*
 * Numbers go in as raw text: cJSON prints a double by trying two precisions and parsing the
 * result back, which made it most of the snapshot's cost; a byte count is an integer anyway.
 */
static cJSON *integer(int64_t v)
{
	char buf[24];
	snprintf(buf, sizeof(buf), "%lld", (long long)v);
	return cJSON_CreateRaw(buf);
}

static cJSON *seconds(int64_t ms)
{
	char buf[32];
	snprintf(buf, sizeof(buf), "%s%lld.%03lld", ms < 0 ? "-" : "", llabs(ms) / 1000,
		 llabs(ms) % 1000);
	return cJSON_CreateRaw(buf);
}

static int add_row(cJSON *root, const struct ledger_row *r, enum ledger_window window)
{
	cJSON *up = cJSON_GetObjectItemCaseSensitive(root, r->uploader);
	if (!up && !(up = cJSON_AddObjectToObject(root, r->uploader)))
		return -1;
	cJSON *o = cJSON_AddObjectToObject(up, r->account);
	if (!o)
		return -1;
	const struct ledger_usage *u = &r->usage;
	if (!cJSON_AddItemToObjectCS(o, "bytes", integer(u->used_bytes)) ||
	    !cJSON_AddItemToObjectCS(o, "reset_time", seconds(u->reset_at_ms)) ||
	    !cJSON_AddItemToObjectCS(o, "first_upload", seconds(u->first_upload_ms)) ||
	    !cJSON_AddItemToObjectCS(o, "files", integer(u->files)) ||
	    !cJSON_AddItemToObjectCS(o, "banned_until", seconds(u->banned_until_ms)) ||
	    !cJSON_AddStringToObject(o, "ban_cause", u->ban_cause) ||
	    !cJSON_AddItemToObjectCS(o, "updated_at", seconds(u->updated_at_ms)))
		return -1;
	if (window == LEDGER_WINDOW_ROLLING) {
		cJSON *hours = cJSON_AddObjectToObject(o, "hours");
		if (!hours)
			return -1;
		for (int i = 0; i < LEDGER_HOURS; i++) {
			if (u->hour_bytes[i] == 0)
				continue;
			char key[24];
			snprintf(key, sizeof(key), "%lld", (long long)u->hour_index[i]);
			if (!cJSON_AddItemToObject(hours, key, integer(u->hour_bytes[i])))
				return -1;
		}
	}
	return 0;
}

/* glibc mmaps a buffer this large and returns it to the kernel when freed, and trims freed heap
 * above 128 KiB; faulting those pages back in (on a VM, each with a TLB flush) was three
 * quarters of a 1,024-row snapshot: 4.0 ms to render against 1.0 with the memory kept. */
#define LEDGER_FILE_KEEP_BYTES (32 << 20)

void ledger_file_keep_heap(void)
{
	mallopt(M_MMAP_THRESHOLD, LEDGER_FILE_KEEP_BYTES);
	mallopt(M_TRIM_THRESHOLD, 2 * LEDGER_FILE_KEEP_BYTES);
}

char *ledger_file_render(const struct ledger_copy *c, long long written_at_ms)
{
	char *text = NULL;
	cJSON *root = cJSON_CreateObject();
	if (!root)
		return NULL;
	for (uint32_t i = 0; i < c->row_count; i++)
		if (add_row(root, &c->rows[i], (enum ledger_window)c->window) < 0)
			goto out;
	/* cplow's own data as a row of a pseudo-uploader: the fork's loader takes every top-level
	 * value for an uploader's {account: row} and calls .get() on each row (a bare number
	 * there made it start from zero), then drops rows whose reset_time has passed, as this
	 * one's has. */
	cJSON *holder = cJSON_AddObjectToObject(root, LEDGER_FILE_META_KEY);
	cJSON *meta = holder ? cJSON_AddObjectToObject(holder, LEDGER_FILE_META_ROW) : NULL;
	if (!meta || !cJSON_AddItemToObjectCS(meta, "bytes", integer(0)) ||
	    !cJSON_AddItemToObjectCS(meta, "reset_time", integer(0)) ||
	    !cJSON_AddItemToObjectCS(meta, "first_upload", integer(0)) ||
	    !cJSON_AddNumberToObject(meta, "format", LEDGER_FILE_FORMAT) ||
	    !cJSON_AddItemToObjectCS(meta, "generation", integer((int64_t)c->generation)) ||
	    !cJSON_AddItemToObjectCS(meta, "written_at", seconds(written_at_ms)) ||
	    !cJSON_AddStringToObject(meta, "window",
				     c->window == LEDGER_WINDOW_ROLLING ? "rolling" : "fixed") ||
	    !cJSON_AddItemToObjectCS(meta, "daily_bytes", integer(c->daily_bytes)))
		goto out;
	/* One buffer sized from the row count: growing it by doubling copied the text repeatedly. */
	size_t cap = 1024 + (size_t)c->row_count * (LEDGER_ACCOUNT_MAX + LEDGER_CAUSE_MAX + 256 +
						    (c->window == LEDGER_WINDOW_ROLLING ? 24 * 40 : 0));
	text = malloc(cap);
	if (text && !cJSON_PrintPreallocated(root, text, (int)cap, 0)) {
		free(text);
		text = cJSON_PrintUnformatted(root);
	}
out:
	cJSON_Delete(root);
	return text;
}

static int write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static int fsync_dir_of(const char *path)
{
	char dir[PATH_MAX];
	snprintf(dir, sizeof(dir), "%s", path);
	char *slash = strrchr(dir, '/');
	if (!slash)
		snprintf(dir, sizeof(dir), ".");
	else if (slash == dir)
		dir[1] = '\0';
	else
		*slash = '\0';
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	int rc = fsync(fd);
	int saved = errno;
	/* Some file systems (FUSE, SMB) cannot sync a directory: the rename is as durable as
	 * they make it, and refusing every write there would keep no file at all. */
	if (rc < 0 && (saved == EINVAL || saved == EOPNOTSUPP))
		rc = 0;
	close(fd);
	errno = saved;
	return rc;
}

/* A copy of from at to (a new file), synced: the .prev where links are refused. */
static int copy_file(const char *from, const char *to)
{
	char buf[65536];
	int in = open(from, O_RDONLY | O_CLOEXEC), out = -1, rc = -1;
	if (in < 0)
		return -1;
	out = open(to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (out < 0)
		goto done;
	for (;;) {
		ssize_t n = read(in, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			goto done;
		if (n == 0)
			break;
		if (write_all(out, buf, (size_t)n) < 0)
			goto done;
	}
	if (fsync(out) < 0)
		goto done;
	rc = 0;
done:;
	int saved = errno;
	close(in);
	if (out >= 0 && close(out) < 0 && rc == 0) {
		saved = errno;
		rc = -1;
	}
	if (rc < 0 && out >= 0)
		unlink(to);
	errno = saved;
	return rc;
}

/*
 * The current file becomes .prev while a complete file stays at `path` at every instant: a crash
 * between the steps leaves two good generations, never none. A hard link does it for free;
 * where links are refused (vfat, exFAT, many SMB and FUSE mounts: EPERM, EOPNOTSUPP, ENOSYS) a
 * synced copy does the same, renamed into place as the link would have been.
 */
static int keep_previous(const char *path, const char *prev, const char *prev_tmp,
			 const char **what)
{
	static bool links_refused; /* once seen, the copy goes first: one failed call less */
	if (!links_refused) {
		if (link(path, prev_tmp) == 0)
			goto publish;
		if (errno == ENOENT)
			return 0; /* no current file yet: nothing to keep */
		int link_errno = errno;
		if (copy_file(path, prev_tmp) < 0) {
			if (errno == ENOENT)
				return 0;
			errno = link_errno;
			*what = "link to .prev (a copy failed too)";
			return -1;
		}
		if (link_errno == EPERM || link_errno == EOPNOTSUPP || link_errno == ENOSYS ||
		    link_errno == EMLINK || link_errno == EACCES) {
			links_refused = true;
			log_warn("the ledger file's directory refuses hard links (%s): the previous "
				 "generation is kept as %s by copying", strerror(link_errno), prev);
		}
		goto publish;
	}
	if (copy_file(path, prev_tmp) < 0) {
		if (errno == ENOENT)
			return 0;
		*what = "copy to .prev";
		return -1;
	}
publish:
	if (rename(prev_tmp, prev) < 0) {
		*what = "rename to .prev";
		unlink(prev_tmp);
		return -1;
	}
	return 0;
}

int ledger_file_write(const struct ledger_copy *c, const char *path, long long now_ms,
		      char *err, size_t err_len)
{
	char tmp[PATH_MAX], prev[PATH_MAX], prev_tmp[PATH_MAX];
	const char *what = NULL;
	int fd = -1, rc = -1;
	char *text = NULL;
	if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp) ||
	    snprintf(prev, sizeof(prev), "%s.prev", path) >= (int)sizeof(prev) ||
	    snprintf(prev_tmp, sizeof(prev_tmp), "%s.prev.tmp", path) >= (int)sizeof(prev_tmp)) {
		errno = ENAMETOOLONG;
		what = "name";
		goto out;
	}
	if (!(text = ledger_file_render(c, now_ms))) {
		errno = ENOMEM;
		what = "render";
		goto out;
	}
	/* Always a new inode: after a failed fsync the old one's pages are in an unknown state. */
	if (unlink(tmp) < 0 && errno != ENOENT) {
		what = "unlink";
		goto out;
	}
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		what = "create";
		goto out;
	}
	if (write_all(fd, text, strlen(text)) < 0 || write_all(fd, "\n", 1) < 0) {
		what = "write";
		goto out;
	}
	if (fsync(fd) < 0) {
		what = "fsync";
		goto out;
	}
	if (close(fd) < 0) {
		fd = -1;
		what = "close";
		goto out;
	}
	fd = -1;
	unlink(prev_tmp); /* left by a flusher killed between link and rename */
	if (keep_previous(path, prev, prev_tmp, &what) < 0)
		goto out;
	if (rename(tmp, path) < 0) {
		what = "rename";
		goto out;
	}
	if (fsync_dir_of(path) < 0) {
		what = "fsync of the directory";
		goto out;
	}
	rc = 0;
out:
	if (rc < 0) {
		int saved = errno;
		snprintf(err, err_len, "%s %s: %s", what, path, strerror(saved));
		if (fd >= 0)
			close(fd);
		if (strcmp(what, "rename") != 0 && strcmp(what, "fsync of the directory") != 0)
			unlink(tmp);
		errno = saved;
	}
	free(text);
	return rc;
}

/* ---- loading ---- */

static int fail(char *err, size_t err_len, const char *fmt, const char *up, const char *acct,
		const char *key)
{
	char where[LEDGER_UPLOADER_MAX + LEDGER_ACCOUNT_MAX + 64];
	if (acct)
		snprintf(where, sizeof(where), "\"%.63s\" → \"%.255s\" → %s", up, acct, key);
	else if (up)
		snprintf(where, sizeof(where), "\"%.63s\"", up);
	else
		snprintf(where, sizeof(where), "%s", key ? key : "top level");
	snprintf(err, err_len, "%s: %s", where, fmt);
	return -1;
}

/* A number present, finite, integral when asked, in [0, 2^53]. Absent is fine when optional. */
static int get_number(const cJSON *o, const char *key, int required, int integral,
		      double *out)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
	if (!v)
		return required ? -1 : 0;
	if (!cJSON_IsNumber(v))
		return -1;
	double d = v->valuedouble;
	if (!isfinite(d) || d < 0 || d > MAX_EXACT || (integral && d != floor(d)))
		return -1;
	*out = d;
	return 0;
}

static int64_t ms_of(double seconds_value)
{
	return (int64_t)llround(seconds_value * 1000.0);
}

static int parse_row(const cJSON *o, const char *up, const char *acct,
		     struct ledger_file_row *r, char *err, size_t err_len)
{
	double bytes = 0, reset = 0, first = 0, files = 0, banned = 0, updated = 0;
	if (!cJSON_IsObject(o))
		return fail(err, err_len, "must be an object", up, acct, "(row)");
	if (get_number(o, "bytes", 1, 1, &bytes) < 0)
		return fail(err, err_len, "must be a whole number of bytes >= 0", up, acct, "bytes");
	if (get_number(o, "reset_time", 0, 0, &reset) < 0)
		return fail(err, err_len, "must be Unix seconds >= 0", up, acct, "reset_time");
	if (get_number(o, "first_upload", 0, 0, &first) < 0)
		return fail(err, err_len, "must be Unix seconds >= 0", up, acct, "first_upload");
	if (get_number(o, "files", 0, 1, &files) < 0)
		return fail(err, err_len, "must be a whole number >= 0", up, acct, "files");
	if (get_number(o, "banned_until", 0, 0, &banned) < 0)
		return fail(err, err_len, "must be Unix seconds >= 0", up, acct, "banned_until");
	if (get_number(o, "updated_at", 0, 0, &updated) < 0)
		return fail(err, err_len, "must be Unix seconds >= 0", up, acct, "updated_at");
	if (first > 0 && reset > 0 && reset < first)
		return fail(err, err_len, "reset_time is before first_upload", up, acct,
			    "reset_time");
	const cJSON *cause = cJSON_GetObjectItemCaseSensitive(o, "ban_cause");
	if (cause && !cJSON_IsString(cause))
		return fail(err, err_len, "must be a string", up, acct, "ban_cause");
	memset(r, 0, sizeof(*r));
	snprintf(r->uploader, sizeof(r->uploader), "%s", up);
	snprintf(r->account, sizeof(r->account), "%s", acct);
	struct ledger_usage *u = &r->usage;
	u->used_bytes = (int64_t)bytes;
	u->files = (int64_t)files;
	u->reset_at_ms = ms_of(reset);
	u->first_upload_ms = ms_of(first);
	/* The fork writes reset_time alone on some paths; its window is 24 h. */
	if (u->first_upload_ms == 0 && u->reset_at_ms > LEDGER_DAY_MS)
		u->first_upload_ms = u->reset_at_ms - LEDGER_DAY_MS;
	if (u->reset_at_ms == 0 && u->first_upload_ms != 0)
		u->reset_at_ms = u->first_upload_ms + LEDGER_DAY_MS;
	u->banned_until_ms = ms_of(banned);
	u->updated_at_ms = ms_of(updated);
	if (cause)
		snprintf(u->ban_cause, sizeof(u->ban_cause), "%s", cause->valuestring);
	const cJSON *hours = cJSON_GetObjectItemCaseSensitive(o, "hours");
	if (hours) {
		if (!cJSON_IsObject(hours))
			return fail(err, err_len, "must be an object", up, acct, "hours");
		int i = 0;
		const cJSON *h;
		cJSON_ArrayForEach(h, hours)
		{
			char *end;
			errno = 0;
			long long idx = strtoll(h->string, &end, 10);
			if (errno || *end || idx < 0 || !cJSON_IsNumber(h) || h->valuedouble < 0 ||
			    h->valuedouble > MAX_EXACT || i >= LEDGER_HOURS)
				return fail(err, err_len, "must map hour numbers to bytes (25 at most)",
					    up, acct, "hours");
			/* Hours 25 apart share a bucket: the later one is the one still in a
			 * window, whatever order the file lists them in. */
			int b = (int)(idx % LEDGER_HOURS);
			if (idx >= u->hour_index[b]) {
				u->hour_index[b] = idx;
				u->hour_bytes[b] = (int64_t)h->valuedouble;
			}
			i++;
		}
	}
	return 0;
}

/* "_cplow": {"meta": {"format": 2, ...}}, or format 1's "_cplow": {"format": 1, ...}. */
static int parse_meta(const cJSON *holder, struct ledger_file *f, char *err, size_t err_len)
{
	double format = 0, gen = 0, at = 0;
	const cJSON *m = holder;
	int expected = 1;
	const char *where = LEDGER_FILE_META_KEY;
	if (cJSON_IsObject(holder) && !cJSON_GetObjectItemCaseSensitive(holder, "format")) {
		m = cJSON_GetObjectItemCaseSensitive(holder, LEDGER_FILE_META_ROW);
		expected = LEDGER_FILE_FORMAT;
		where = LEDGER_FILE_META_KEY "." LEDGER_FILE_META_ROW;
	}
	if (!cJSON_IsObject(m) || get_number(m, "format", 1, 1, &format) < 0)
		return fail(err, err_len, "must be an object with a format number", NULL, NULL,
			    where);
	if (format != expected) {
		snprintf(err, err_len, "%s.format: %g is not a format this cplow reads there (%d)",
			 where, format, expected);
		return -1;
	}
	if (get_number(m, "generation", 0, 1, &gen) < 0 ||
	    get_number(m, "written_at", 0, 0, &at) < 0)
		return fail(err, err_len, "generation and written_at must be numbers >= 0", NULL,
			    NULL, LEDGER_FILE_META_KEY);
	f->generation = (unsigned long long)gen;
	f->written_at_ms = ms_of(at);
	return 0;
}

static void where_in_text(const char *text, size_t len, const char *at, int *line, int *col)
{
	*line = 1;
	*col = 1;
	for (const char *p = text; p < at && p < text + len; p++) {
		if (*p == '\n') {
			(*line)++;
			*col = 1;
		} else {
			(*col)++;
		}
	}
}

/* An object that starts but never closes: what a torn write or a full disk leaves. */
static int looks_truncated(const char *text, size_t len)
{
	size_t a = 0, b = len;
	while (a < len && isspace((unsigned char)text[a]))
		a++;
	while (b > a && isspace((unsigned char)text[b - 1]))
		b--;
	return a < b && text[a] == '{' && text[b - 1] != '}';
}

int ledger_file_parse(const char *text, size_t len, struct ledger_file *out, char *err,
		      size_t err_len)
{
	struct ledger_file f = { 0 };
	int rc = -1;
	if (len == 0) {
		snprintf(err, err_len, "file is empty");
		return -1;
	}
	const char *end = NULL;
	cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
	if (!root) {
		int line, col;
		where_in_text(text, len, end ? end : text + len, &line, &col);
		snprintf(err, err_len, "not valid JSON at line %d, column %d%s", line, col,
			 looks_truncated(text, len) ? ": it ends early (truncated?)" : "");
		return -1;
	}
	if (!cJSON_IsObject(root)) {
		snprintf(err, err_len, "top level must be an object of uploaders");
		goto out;
	}
	size_t cap = 0;
	const cJSON *up;
	f.from_fork = 1;
	cJSON_ArrayForEach(up, root)
	{
		if (strcmp(up->string, LEDGER_FILE_META_KEY) == 0) {
			if (parse_meta(up, &f, err, err_len) < 0)
				goto out;
			f.from_fork = 0;
			continue;
		}
		if (!cJSON_IsObject(up)) {
			fail(err, err_len, "must be an object of accounts", up->string, NULL, NULL);
			goto out;
		}
		if (!*up->string || strlen(up->string) >= LEDGER_UPLOADER_MAX) {
			fail(err, err_len, "uploader name is empty or longer than 63 bytes",
			     up->string, NULL, NULL);
			goto out;
		}
		const cJSON *acct;
		cJSON_ArrayForEach(acct, up)
		{
			if (!*acct->string || strlen(acct->string) >= LEDGER_ACCOUNT_MAX) {
				fail(err, err_len, "account name is empty or longer than 255 bytes",
				     up->string, acct->string, "(name)");
				goto out;
			}
			if (f.count == cap) {
				size_t ncap = cap ? cap * 2 : 16;
				void *p = realloc(f.rows, ncap * sizeof(*f.rows));
				if (!p) {
					snprintf(err, err_len, "out of memory");
					goto out;
				}
				f.rows = p;
				cap = ncap;
			}
			if (parse_row(acct, up->string, acct->string, &f.rows[f.count], err,
				      err_len) < 0)
				goto out;
			f.count++;
		}
	}
	rc = 0;
out:
	cJSON_Delete(root);
	if (rc < 0)
		ledger_file_free(&f);
	else
		*out = f;
	return rc;
}

int ledger_file_load(const char *path, struct ledger_file *out, char *err, size_t err_len)
{
	int rc = -1;
	char *text = NULL;
	FILE *fp = fopen(path, "rb");
	if (!fp) {
		snprintf(err, err_len, "%s", strerror(errno));
		return errno == ENOENT ? -2 : -1;
	}
	struct stat st;
	if (fstat(fileno(fp), &st) < 0) {
		snprintf(err, err_len, "%s", strerror(errno));
		goto out;
	}
	if (st.st_size > FILE_MAX_BYTES) {
		snprintf(err, err_len, "file is %lld bytes, larger than any ledger (%ld)",
			 (long long)st.st_size, FILE_MAX_BYTES);
		goto out;
	}
	text = malloc((size_t)st.st_size + 1);
	if (!text) {
		snprintf(err, err_len, "out of memory");
		goto out;
	}
	size_t n = fread(text, 1, (size_t)st.st_size, fp);
	if (ferror(fp)) {
		snprintf(err, err_len, "read failed");
		goto out;
	}
	text[n] = '\0';
	rc = ledger_file_parse(text, n, out, err, err_len);
out:
	free(text);
	fclose(fp);
	return rc;
}

void ledger_file_free(struct ledger_file *f)
{
	free(f->rows);
	memset(f, 0, sizeof(*f));
}

/* The quota fork's rows (and a fixed-window cplow's) have no hours: under the rolling window
 * their bytes go to the one hour that keeps them until the row's reset time (never after now;
 * a row without one keeps them 24 h from now). Left out, they would count nothing. */
static void bucket_unhoured(struct ledger_usage *u, int64_t now)
{
	for (int i = 0; i < LEDGER_HOURS; i++)
		if (u->hour_bytes[i])
			return;
	if (u->used_bytes <= 0 || (u->reset_at_ms && u->reset_at_ms <= now))
		return;
	int64_t h = now / LEDGER_HOUR_MS;
	if (u->reset_at_ms) {
		int64_t until = (u->reset_at_ms + LEDGER_HOUR_MS - 1) / LEDGER_HOUR_MS - LEDGER_HOURS;
		if (until < h)
			h = until;
	}
	u->hour_index[h % LEDGER_HOURS] = h;
	u->hour_bytes[h % LEDGER_HOURS] = u->used_bytes;
}

bool ledger_file_settle(struct ledger_usage *u, enum ledger_window window, int64_t now_ms)
{
	/* No slack: at a restore the clock is all there is to go by. */
	bool moved = ledger_usage_clamp_future(u, now_ms, 0);
	if (window == LEDGER_WINDOW_ROLLING)
		bucket_unhoured(u, now_ms);
	return moved;
}

static int load_into(struct ledger *l, const struct ledger_file *f, char *err, size_t err_len)
{
	int64_t now = ledger_now_ms();
	for (size_t i = 0; i < f->count; i++) {
		const struct ledger_file_row *r = &f->rows[i];
		struct ledger_usage usage = r->usage;
		if (ledger_file_settle(&usage, (enum ledger_window)l->hdr->window, now))
			log_warn("ledger file: \"%s\" → \"%s\": its window lies in the future (a "
				 "clock set back?); its %lld bytes count from now, for 24 h at most",
				 r->uploader, r->account, (long long)usage.used_bytes);
		int32_t row;
		if (ledger_row_find(l, r->uploader, r->account, &row) == LEDGER_OK) {
			snprintf(err, err_len, "\"%s\" → \"%s\" appears twice", r->uploader,
				 r->account);
			return -1;
		}
		int rc = ledger_row_get(l, r->uploader, r->account, &row);
		if (rc == LEDGER_ERR_FULL) {
			snprintf(err, err_len,
				 "it has %zu accounts, more than the ledger holds (%u): raise "
				 "quota.capacity",
				 f->count, l->hdr->row_capacity);
			return -1;
		}
		if (rc == LEDGER_OK)
			rc = ledger_set_usage(l, row, &usage);
		if (rc != LEDGER_OK) {
			snprintf(err, err_len, "\"%s\" → \"%s\": %s", r->uploader, r->account,
				 ledger_strerror(rc));
			return -1;
		}
	}
	return 0;
}

int ledger_file_restore(struct ledger *l, const char *path, char *used_path, size_t used_len,
			char *err, size_t err_len)
{
	char prev[PATH_MAX], main_err[LEDGER_FILE_ERR_MAX], prev_err[LEDGER_FILE_ERR_MAX];
	struct ledger_file f;
	snprintf(used_path, used_len, "%s", "");
	if (snprintf(prev, sizeof(prev), "%s.prev", path) >= (int)sizeof(prev)) {
		snprintf(err, err_len, "ledger file path %s is too long", path);
		return -1;
	}
	int main_rc = ledger_file_load(path, &f, main_err, sizeof(main_err));
	if (main_rc == 0) {
		snprintf(used_path, used_len, "%s", path);
		goto load;
	}
	int prev_rc = ledger_file_load(prev, &f, prev_err, sizeof(prev_err));
	if (prev_rc == 0) {
		snprintf(used_path, used_len, "%s", prev);
		goto load;
	}
	if (main_rc == -2 && prev_rc == -2)
		return 0;
	snprintf(err, err_len,
		 "ledger file %s is unusable (%s) and so is %s (%s); refusing to start with "
		 "zero usage: fix or remove them, or start cplow with --reset-ledger",
		 path, main_err, prev, prev_err);
	return -1;
load:;
	char load_err[LEDGER_FILE_ERR_MAX];
	int rc = load_into(l, &f, load_err, sizeof(load_err));
	if (rc < 0)
		snprintf(err, err_len, "ledger file %s: %s", used_path, load_err);
	ledger_file_free(&f);
	return rc;
}

int ledger_file_flush(struct ledger *l, struct ledger_copy *c, const char *path, int64_t now_ms,
		      char *err, size_t err_len)
{
	int rc = ledger_flush_lock(l);
	if (rc != LEDGER_OK) {
		snprintf(err, err_len, "cannot take the ledger file's lock: %s", ledger_strerror(rc));
		return -1;
	}
	rc = ledger_read(l, c, LEDGER_FILE_READ_TIMEOUT_MS);
	/* An odd sequence that stays odd: a writer died inside its write, and no writer may be
	 * left to finish it (a supervisor killed mid-write, its workers gone). */
	if (rc == LEDGER_ERR_STUCK && ledger_recover(l, LEDGER_FILE_READ_TIMEOUT_MS) == LEDGER_OK)
		rc = ledger_read(l, c, LEDGER_FILE_READ_TIMEOUT_MS);
	if (rc != LEDGER_OK) {
		snprintf(err, err_len, "cannot snapshot the ledger: %s", ledger_strerror(rc));
		ledger_note_flush(l, 0, 0, 0);
		ledger_flush_unlock(l);
		return -1;
	}
	if (ledger_file_write(c, path, now_ms, err, err_len) < 0) {
		ledger_note_flush(l, 0, 0, 0);
		ledger_flush_unlock(l);
		return -1;
	}
	ledger_note_flush(l, c->generation, now_ms, 1);
	ledger_flush_unlock(l);
	return 0;
}
