#include "config.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "account.h"
#include "ledger_file.h"
#include "rclone_cmd.h"
#include "triggers.h"

/* A key path with a long uploader name and a long rclone_sleeps pattern still fits. */
#define PATH_LEN 400
/* How much of a key or a value a message shows before "...". */
#define SHOW_KEY_MAX 80
#define SHOW_VALUE_MAX 60
/* The config has no reason to nest this deep; deeper input is refused before cJSON sees it. */
#define JSON_DEPTH_MAX 64
/* Integers travel as doubles in cJSON: above this they are no longer exact. */
#define EXACT_INT_MAX 9007199254740992.0
#define MINUTES_MAX 525600               /* a year */
#define MAX_SIZE_GB_MAX 1000000000.0     /* about an EiB */
#define STAGES_MAX 16
#define CAPACITY_MAX (1u << 20)
#define DEPTH_MAX 1000                   /* remove_empty_dir_depth */
#define TRANSFERS_MAX 256
#define BACKLOG_MAX 10000000
#define TRIGGER_COUNT_MAX 1000000
#define TRIGGER_TIMEOUT_MAX 31536000     /* seconds: a year */

struct ctx {
	char *err;
	size_t err_len;
	const char *file;        /* the path as the caller gave it */
	struct config *c;        /* being built; freed whole on failure */
};

/* --- messages -------------------------------------------------------------------------- */

static int fail(struct ctx *x, const char *path, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int fail(struct ctx *x, const char *path, const char *fmt, ...)
{
	if (!x->err || x->err_len == 0)
		return -1;
	int n = snprintf(x->err, x->err_len, "%s: ", path);
	if (n >= 0 && (size_t)n < x->err_len) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(x->err + n, x->err_len - (size_t)n, fmt, ap);
		va_end(ap);
	}
	return -1;
}

static int warn(struct ctx *x, const char *path, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int warn(struct ctx *x, const char *path, const char *fmt, ...)
{
	char msg[CONFIG_ERR_MAX];
	int n = snprintf(msg, sizeof(msg), "%s: ", path);
	if (n >= 0 && (size_t)n < sizeof(msg)) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(msg + n, sizeof(msg) - (size_t)n, fmt, ap);
		va_end(ap);
	}
	struct config *c = x->c;
	char **grown = realloc(c->warnings, (c->warning_count + 1) * sizeof(*grown));
	if (!grown)
		return fail(x, x->file, "out of memory");
	c->warnings = grown;
	if (!(c->warnings[c->warning_count] = strdup(msg)))
		return fail(x, x->file, "out of memory");
	c->warning_count++;
	return 0;
}

/* Bytes of s that fit in max without cutting a UTF-8 sequence in two. */
static size_t utf8_prefix(const char *s, size_t len, size_t max)
{
	if (len <= max)
		return len;
	while (max > 0 && ((unsigned char)s[max] & 0xC0) == 0x80)
		max--;
	return max;
}

/*
 * s escaped as in JSON (quotes, backslashes, control bytes), so that a message stays on one
 * line whatever the file holds, cut after `max` bytes of input with "...".
 */
static void show(char *out, size_t len, const char *s, size_t max, bool quoted)
{
	size_t slen = strlen(s), keep = utf8_prefix(s, slen, max), o = 0;
	if (len == 0)
		return;
	out[0] = '\0';
#define PUT(str)                                                                   \
	do {                                                                       \
		size_t l_ = strlen(str);                                          \
		if (o + l_ + 1 > len)                                             \
			return;                                                   \
		memcpy(out + o, str, l_ + 1);                                     \
		o += l_;                                                          \
	} while (0)
	if (quoted)
		PUT("\"");
	for (size_t i = 0; i < keep; i++) {
		unsigned char ch = (unsigned char)s[i];
		char esc[8];
		if (ch == '"' && quoted)
			PUT("\\\"");
		else if (ch == '\\')
			PUT("\\\\");
		else if (ch == '\n')
			PUT("\\n");
		else if (ch == '\t')
			PUT("\\t");
		else if (ch == '\r')
			PUT("\\r");
		else if (ch < 0x20 || ch == 0x7f) {
			snprintf(esc, sizeof(esc), "\\u%04x", ch);
			PUT(esc);
		} else {
			esc[0] = (char)ch;
			esc[1] = '\0';
			PUT(esc);
		}
	}
	if (keep < slen)
		PUT("...");
	if (quoted)
		PUT("\"");
#undef PUT
}

/* The shortest decimal that reads back as v, without a trailing ".0": 8 → "8", 0.5 → "0.5". */
static void fmt_number(char *out, size_t len, double v)
{
	if (v == 0) {
		snprintf(out, len, "0");
		return;
	}
	if (v == trunc(v) && fabs(v) < 1e18) {
		snprintf(out, len, "%.0f", v);
		return;
	}
	for (int prec = 1; prec <= 17; prec++) {
		snprintf(out, len, "%.*g", prec, v);
		if (strtod(out, NULL) == v)
			return;
	}
}

/* What a value is, for "got ...". */
static void describe(char *out, size_t len, const cJSON *v)
{
	if (cJSON_IsString(v))
		show(out, len, v->valuestring, SHOW_VALUE_MAX, true);
	else if (cJSON_IsNumber(v) && isfinite(v->valuedouble))
		fmt_number(out, len, v->valuedouble);
	else if (cJSON_IsNumber(v))
		snprintf(out, len, "a number too large to hold");
	else if (cJSON_IsTrue(v))
		snprintf(out, len, "true");
	else if (cJSON_IsFalse(v))
		snprintf(out, len, "false");
	else if (cJSON_IsNull(v))
		snprintf(out, len, "null");
	else if (cJSON_IsArray(v))
		snprintf(out, len, "a list");
	else
		snprintf(out, len, "an object");
}

static bool plain_key(const char *k)
{
	if (!*k)
		return false;
	for (; *k; k++) {
		unsigned char ch = (unsigned char)*k;
		bool letter = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z');
		if (!letter && !(ch >= '0' && ch <= '9') && ch != '_' && ch != '-')
			return false;
	}
	return true;
}

/* Appends s to out (PATH_LEN bytes) at *o; a path too long is cut, never overflowed. */
static void path_put(char *out, size_t *o, const char *s)
{
	size_t n = strlen(s);
	if (*o + n + 1 > PATH_LEN)
		n = PATH_LEN - 1 - *o;
	memcpy(out + *o, s, n);
	*o += n;
	out[*o] = '\0';
}

/* parent.key, or parent["key"] for a key that is not a plain name. parent may not be out. */
static const char *kp(char *out, const char *parent, const char *key)
{
	char shown[SHOW_KEY_MAX * 6 + 8];
	size_t o = 0;
	out[0] = '\0';
	path_put(out, &o, parent);
	if (plain_key(key) && strlen(key) <= SHOW_KEY_MAX) {
		if (*parent)
			path_put(out, &o, ".");
		path_put(out, &o, key);
	} else {
		show(shown, sizeof(shown), key, SHOW_KEY_MAX, true);
		path_put(out, &o, "[");
		path_put(out, &o, shown);
		path_put(out, &o, "]");
	}
	return out;
}

static const char *kpi(char *out, const char *parent, size_t index)
{
	char num[32];
	size_t o = 0;
	snprintf(num, sizeof(num), "[%zu]", index);
	out[0] = '\0';
	path_put(out, &o, parent);
	path_put(out, &o, num);
	return out;
}

/* --- the file: size, UTF-8, strict JSON ------------------------------------------------ */

/* Offset of the first byte that is not part of valid UTF-8 (no overlongs, surrogates or
 * code points above U+10FFFF), or len. */
static size_t utf8_invalid_at(const unsigned char *s, size_t len)
{
	size_t i = 0;
	while (i < len) {
		unsigned char c = s[i];
		size_t need;
		unsigned char lo = 0x80, hi = 0xBF;
		if (c < 0x80) {
			i++;
			continue;
		} else if (c >= 0xC2 && c <= 0xDF) {
			need = 1;
		} else if (c >= 0xE0 && c <= 0xEF) {
			need = 2;
			if (c == 0xE0)
				lo = 0xA0;
			if (c == 0xED)
				hi = 0x9F;
		} else if (c >= 0xF0 && c <= 0xF4) {
			need = 3;
			if (c == 0xF0)
				lo = 0x90;
			if (c == 0xF4)
				hi = 0x8F;
		} else {
			return i;
		}
		if (i + need >= len)
			return i;
		if (s[i + 1] < lo || s[i + 1] > hi)
			return i;
		for (size_t k = 2; k <= need; k++)
			if ((s[i + k] & 0xC0) != 0x80)
				return i;
		i += need + 1;
	}
	return len;
}

struct scan {
	const unsigned char *s;
	size_t len, pos;
	const char *why;
};

static int scan_value(struct scan *sc, int depth);

static int scan_fail(struct scan *sc, const char *why)
{
	if (sc->pos >= sc->len)
		why = "unexpected end of the file";
	sc->why = why;
	return -1;
}

static void skip_ws(struct scan *sc)
{
	while (sc->pos < sc->len) {
		unsigned char c = sc->s[sc->pos];
		if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
			return;
		sc->pos++;
	}
}

static int hex4(const unsigned char *p, unsigned *out)
{
	unsigned v = 0;
	for (int i = 0; i < 4; i++) {
		unsigned char c = p[i];
		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= c - '0';
		else if (c >= 'a' && c <= 'f')
			v |= c - 'a' + 10;
		else if (c >= 'A' && c <= 'F')
			v |= c - 'A' + 10;
		else
			return -1;
	}
	*out = v;
	return 0;
}

static int scan_string(struct scan *sc)
{
	size_t start = sc->pos++;
	while (sc->pos < sc->len) {
		unsigned char c = sc->s[sc->pos];
		if (c == '"') {
			sc->pos++;
			return 0;
		}
		if (c < 0x20)
			return scan_fail(sc, "control character in a string (write it escaped)");
		if (c != '\\') {
			sc->pos++;
			continue;
		}
		if (sc->pos + 1 >= sc->len)
			break;
		c = sc->s[sc->pos + 1];
		if (c && strchr("\"\\/bfnrt", c)) {
			sc->pos += 2;
			continue;
		}
		unsigned u, u2;
		if (c != 'u' || sc->pos + 6 > sc->len || hex4(sc->s + sc->pos + 2, &u) < 0)
			return scan_fail(sc, "invalid escape in a string");
		if (u == 0)
			return scan_fail(sc, "\\u0000 in a string is not supported");
		if (u >= 0xDC00 && u <= 0xDFFF)
			return scan_fail(sc, "unpaired UTF-16 surrogate in a string");
		if (u >= 0xD800 && u <= 0xDBFF) {
			const unsigned char *n = sc->s + sc->pos + 6;
			bool paired = sc->pos + 12 <= sc->len && n[0] == '\\' && n[1] == 'u' &&
				      hex4(n + 2, &u2) == 0 && u2 >= 0xDC00 && u2 <= 0xDFFF;
			if (!paired)
				return scan_fail(sc, "unpaired UTF-16 surrogate in a string");
			sc->pos += 6;
		}
		sc->pos += 6;
	}
	sc->pos = start;
	sc->why = "string not terminated";
	return -1;
}

static bool is_digit(const struct scan *sc)
{
	return sc->pos < sc->len && sc->s[sc->pos] >= '0' && sc->s[sc->pos] <= '9';
}

static int scan_number(struct scan *sc)
{
	if (sc->s[sc->pos] == '-')
		sc->pos++;
	if (!is_digit(sc))
		return scan_fail(sc, "invalid number");
	if (sc->s[sc->pos] == '0') {
		sc->pos++;
		if (is_digit(sc)) {
			sc->pos--; /* point at the zero, where the number goes wrong */
			return scan_fail(sc, "invalid number: leading zeros are not allowed");
		}
	} else {
		while (is_digit(sc))
			sc->pos++;
	}
	if (sc->pos < sc->len && sc->s[sc->pos] == '.') {
		sc->pos++;
		if (!is_digit(sc))
			return scan_fail(sc, "invalid number: a digit must follow '.'");
		while (is_digit(sc))
			sc->pos++;
	}
	if (sc->pos < sc->len && (sc->s[sc->pos] == 'e' || sc->s[sc->pos] == 'E')) {
		sc->pos++;
		if (sc->pos < sc->len && (sc->s[sc->pos] == '+' || sc->s[sc->pos] == '-'))
			sc->pos++;
		if (!is_digit(sc))
			return scan_fail(sc, "invalid number: a digit must follow the exponent");
		while (is_digit(sc))
			sc->pos++;
	}
	return 0;
}

static int scan_literal(struct scan *sc, const char *lit)
{
	size_t n = strlen(lit);
	if (sc->len - sc->pos < n || memcmp(sc->s + sc->pos, lit, n) != 0)
		return scan_fail(sc, "expected a value");
	sc->pos += n;
	return 0;
}

static int scan_container(struct scan *sc, int depth, bool object)
{
	char close = object ? '}' : ']';
	if (depth >= JSON_DEPTH_MAX)
		return scan_fail(sc, "nested deeper than 64 levels");
	sc->pos++;
	skip_ws(sc);
	if (sc->pos < sc->len && sc->s[sc->pos] == (unsigned char)close) {
		sc->pos++;
		return 0;
	}
	for (;;) {
		if (object) {
			if (sc->pos >= sc->len || sc->s[sc->pos] != '"')
				return scan_fail(sc, "expected a key in double quotes");
			if (scan_string(sc) < 0)
				return -1;
			skip_ws(sc);
			if (sc->pos >= sc->len || sc->s[sc->pos] != ':')
				return scan_fail(sc, "expected ':'");
			sc->pos++;
			skip_ws(sc);
		}
		if (scan_value(sc, depth + 1) < 0)
			return -1;
		skip_ws(sc);
		if (sc->pos < sc->len && sc->s[sc->pos] == ',') {
			sc->pos++;
			skip_ws(sc);
			continue;
		}
		if (sc->pos < sc->len && sc->s[sc->pos] == (unsigned char)close) {
			sc->pos++;
			return 0;
		}
		return scan_fail(sc, object ? "expected ',' or '}'" : "expected ',' or ']'");
	}
}

static int scan_value(struct scan *sc, int depth)
{
	if (sc->pos >= sc->len)
		return scan_fail(sc, "expected a value");
	unsigned char c = sc->s[sc->pos];
	switch (c) {
	case '{':
		return scan_container(sc, depth, true);
	case '[':
		return scan_container(sc, depth, false);
	case '"':
		return scan_string(sc);
	case 't':
		return scan_literal(sc, "true");
	case 'f':
		return scan_literal(sc, "false");
	case 'n':
		return scan_literal(sc, "null");
	case 'T':
	case 'F':
	case 'N':
		return scan_fail(sc, "expected a value (JSON writes true, false and null in lower "
				     "case)");
	default:
		if (c == '-' || (c >= '0' && c <= '9'))
			return scan_number(sc);
		return scan_fail(sc, "expected a value");
	}
}

/* 0, or -1 with the offset and the reason of the first error in *sc. */
static int scan_json(struct scan *sc)
{
	skip_ws(sc);
	if (scan_value(sc, 0) < 0)
		return -1;
	skip_ws(sc);
	if (sc->pos < sc->len)
		return scan_fail(sc, "unexpected text after the JSON value");
	return 0;
}

static int read_file(struct ctx *x, const char *path, char **text, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return fail(x, x->file, "cannot open: %s", strerror(errno));
	int rc = -1;
	char *buf = NULL;
	struct stat st;
	if (fstat(fd, &st) < 0) {
		fail(x, x->file, "cannot stat: %s", strerror(errno));
		goto out;
	}
	if (S_ISDIR(st.st_mode)) {
		fail(x, x->file, "is a directory");
		goto out;
	}
	if (S_ISREG(st.st_mode) && (uint64_t)st.st_size > CONFIG_FILE_MAX) {
		fail(x, x->file, "larger than 1 MiB");
		goto out;
	}
	/* The size can change under us (or is unknown for a pipe): read at most one byte more
	 * than the limit, so that a file growing past it is still refused. */
	if (!(buf = malloc(CONFIG_FILE_MAX + 2))) {
		fail(x, x->file, "out of memory");
		goto out;
	}
	size_t got = 0;
	while (got <= CONFIG_FILE_MAX) {
		ssize_t n = read(fd, buf + got, CONFIG_FILE_MAX + 1 - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			fail(x, x->file, "cannot read: %s", strerror(errno));
			goto out;
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	if (got > CONFIG_FILE_MAX) {
		fail(x, x->file, "larger than 1 MiB");
		goto out;
	}
	buf[got] = '\0';
	*text = buf;
	*len = got;
	buf = NULL;
	rc = 0;
out:
	free(buf);
	close(fd);
	return rc;
}

static void line_column(const unsigned char *s, size_t pos, size_t *line, size_t *col)
{
	*line = 1;
	*col = 1;
	for (size_t i = 0; i < pos; i++) {
		if (s[i] == '\n') {
			(*line)++;
			*col = 1;
		} else if ((s[i] & 0xC0) != 0x80) {
			(*col)++;
		}
	}
}

/* The whole file checked and parsed; *root is the caller's. */
static int parse_file(struct ctx *x, const char *path, cJSON **root)
{
	char *text = NULL;
	size_t len = 0;
	if (read_file(x, path, &text, &len) < 0)
		return -1;
	int rc = -1;
	const unsigned char *s = (const unsigned char *)text;
	size_t bad = utf8_invalid_at(s, len), skip = 0;
	if (bad < len) {
		fail(x, x->file, "not UTF-8 at byte %zu", bad);
		goto out;
	}
	/* Windows editors add a byte-order mark; it carries no meaning in UTF-8. */
	if (len >= 3 && s[0] == 0xEF && s[1] == 0xBB && s[2] == 0xBF)
		skip = 3;
	struct scan sc = { .s = s + skip, .len = len - skip };
	skip_ws(&sc);
	if (sc.pos == sc.len) {
		fail(x, x->file, "empty file");
		goto out;
	}
	sc.pos = 0;
	if (scan_json(&sc) < 0) {
		size_t line, col;
		line_column(s + skip, sc.pos, &line, &col);
		fail(x, x->file, "not valid JSON at line %zu, column %zu: %s", line, col, sc.why);
		goto out;
	}
	/* Valid JSON that cJSON cannot take can only be a failed allocation. */
	if (!(*root = cJSON_ParseWithLength(text + skip, len - skip))) {
		fail(x, x->file, "out of memory while parsing");
		goto out;
	}
	rc = 0;
out:
	free(text);
	return rc;
}

/* --- keys ------------------------------------------------------------------------------ */

struct keyref {
	const char *key;
	size_t index;
};

static int keyref_cmp(const void *a, const void *b)
{
	const struct keyref *ka = a, *kb = b;
	int r = strcmp(ka->key, kb->key);
	if (r)
		return r;
	return ka->index < kb->index ? -1 : ka->index > kb->index;
}

/* Duplicate keys, reported for the key whose second appearance comes first in the file.
 * Sorting keeps a hostile file with 100k keys from costing 10^10 comparisons. */
static int check_dups(struct ctx *x, const cJSON *obj, const char *path)
{
	size_t n = 0;
	for (const cJSON *i = obj->child; i; i = i->next)
		n++;
	if (n < 2)
		return 0;
	struct keyref *refs = malloc(n * sizeof(*refs));
	if (!refs)
		return fail(x, x->file, "out of memory");
	size_t k = 0;
	for (const cJSON *i = obj->child; i; i = i->next, k++)
		refs[k] = (struct keyref){ .key = i->string ? i->string : "", .index = k };
	qsort(refs, n, sizeof(*refs), keyref_cmp);
	size_t best = SIZE_MAX, best_at = 0;
	for (size_t i = 1; i < n; i++)
		if (strcmp(refs[i].key, refs[i - 1].key) == 0 && refs[i].index < best) {
			best = refs[i].index;
			best_at = i;
		}
	int rc = 0;
	if (best != SIZE_MAX) {
		const char *dup = refs[best_at].key;
		size_t times = 0;
		for (size_t i = 0; i < n; i++)
			times += strcmp(refs[i].key, dup) == 0;
		char shown[SHOW_KEY_MAX * 6 + 8];
		show(shown, sizeof(shown), dup, SHOW_KEY_MAX, true);
		if (times == 2)
			rc = fail(x, path, "%s appears twice", shown);
		else
			rc = fail(x, path, "%s appears %zu times", shown, times);
	}
	free(refs);
	return rc;
}

static bool in_list(const char *key, const char *const *list)
{
	for (; list && *list; list++)
		if (strcmp(key, *list) == 0)
			return true;
	return false;
}

/* Edit distance with swaps of neighbours counted as one (optimal string alignment). */
static size_t edit_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	size_t d[65][65];
	if (la > 64 || lb > 64)
		return SIZE_MAX;
	for (size_t i = 0; i <= la; i++)
		d[i][0] = i;
	for (size_t j = 0; j <= lb; j++)
		d[0][j] = j;
	for (size_t i = 1; i <= la; i++) {
		for (size_t j = 1; j <= lb; j++) {
			size_t cost = a[i - 1] != b[j - 1];
			size_t v = d[i - 1][j] + 1;
			if (d[i][j - 1] + 1 < v)
				v = d[i][j - 1] + 1;
			if (d[i - 1][j - 1] + cost < v)
				v = d[i - 1][j - 1] + cost;
			if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
			    d[i - 2][j - 2] + 1 < v)
				v = d[i - 2][j - 2] + 1;
			d[i][j] = v;
		}
	}
	return d[la][lb];
}

static void normalise(char *out, size_t len, const char *key)
{
	size_t i = 0;
	for (; key[i] && i + 1 < len; i++) {
		char ch = key[i];
		if (ch >= 'A' && ch <= 'Z')
			ch = (char)(ch - 'A' + 'a');
		out[i] = ch == '-' ? '_' : ch;
	}
	out[i] = '\0';
}

/* The known key that `key` is a near miss of (see config.h), or NULL. */
static const char *near_miss(const char *key, const char *const *known)
{
	char nk[80], nw[80];
	const char *best = NULL;
	size_t best_d = SIZE_MAX;
	if (strlen(key) >= sizeof(nk))
		return NULL;
	normalise(nk, sizeof(nk), key);
	for (; *known; known++) {
		normalise(nw, sizeof(nw), *known);
		size_t limit = strlen(*known) <= 4 ? 1 : 2;
		size_t d = edit_distance(nk, nw);
		if (d <= limit && d < best_d) {
			best = *known;
			best_d = d;
		}
	}
	return best;
}

/* Duplicates, then unknown keys, by the rule in config.h. */
static int check_object(struct ctx *x, const cJSON *obj, const char *path,
			const char *const *known, const char *const *cloudplow)
{
	char p[PATH_LEN];
	if (check_dups(x, obj, path) < 0)
		return -1;
	for (const cJSON *i = obj->child; i; i = i->next) {
		if (in_list(i->string, known))
			continue;
		kp(p, path, i->string);
		if (in_list(i->string, cloudplow)) {
			if (warn(x, p, "a cloudplow setting cplow does not use, ignored") < 0)
				return -1;
			continue;
		}
		const char *near = near_miss(i->string, known);
		if (near)
			return fail(x, p, "unknown key (did you mean %s?)", near);
		if (warn(x, p, "unknown key, ignored") < 0)
			return -1;
	}
	return 0;
}

/* --- values ---------------------------------------------------------------------------- */

/* The value of key, or NULL when it is absent or JSON null ("not set"). */
static const cJSON *get(const cJSON *obj, const char *key)
{
	const cJSON *v = obj ? cJSON_GetObjectItemCaseSensitive(obj, key) : NULL;
	return cJSON_IsNull(v) ? NULL : v;
}

static int want_object(struct ctx *x, const cJSON *v, const char *path)
{
	char got[SHOW_VALUE_MAX * 6 + 8];
	if (cJSON_IsObject(v))
		return 0;
	describe(got, sizeof(got), v);
	return fail(x, path, "must be an object, got %s", got);
}

static int get_bool(struct ctx *x, const cJSON *obj, const char *parent, const char *key,
		    bool *out)
{
	char p[PATH_LEN], got[SHOW_VALUE_MAX * 6 + 8];
	const cJSON *v = get(obj, key);
	if (!v)
		return 0;
	if (!cJSON_IsBool(v)) {
		describe(got, sizeof(got), v);
		return fail(x, kp(p, parent, key), "must be true or false, got %s", got);
	}
	*out = cJSON_IsTrue(v);
	return 0;
}

/* A number in [lo, hi] (lo itself excluded when lo_open); `req` says so in words. */
static int check_number(struct ctx *x, const cJSON *v, const char *path, double lo, bool lo_open,
			double hi, const char *req, double *out)
{
	char got[SHOW_VALUE_MAX * 6 + 8];
	if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || v->valuedouble < lo ||
	    (lo_open && v->valuedouble == lo) || v->valuedouble > hi) {
		describe(got, sizeof(got), v);
		return fail(x, path, "must be %s, got %s", req, got);
	}
	*out = v->valuedouble;
	return 0;
}

static int get_number(struct ctx *x, const cJSON *obj, const char *parent, const char *key,
		      double lo, bool lo_open, double hi, const char *req, double *out, bool *set)
{
	char p[PATH_LEN];
	const cJSON *v = get(obj, key);
	if (set)
		*set = v != NULL;
	if (!v)
		return 0;
	return check_number(x, v, kp(p, parent, key), lo, lo_open, hi, req, out);
}

static int check_int(struct ctx *x, const cJSON *v, const char *path, long long lo, long long hi,
		     const char *req, long long *out)
{
	char got[SHOW_VALUE_MAX * 6 + 8];
	double d = cJSON_IsNumber(v) ? v->valuedouble : NAN;
	if (!isfinite(d) || d != trunc(d) || d < (double)lo || d > (double)hi) {
		describe(got, sizeof(got), v);
		return fail(x, path, "must be %s, got %s", req, got);
	}
	*out = (long long)d;
	return 0;
}

static int get_int(struct ctx *x, const cJSON *obj, const char *parent, const char *key,
		   long long lo, long long hi, const char *req, long long *out, bool *set)
{
	char p[PATH_LEN];
	const cJSON *v = get(obj, key);
	if (set)
		*set = v != NULL;
	if (!v)
		return 0;
	return check_int(x, v, kp(p, parent, key), lo, hi, req, out);
}

static char *dup_or_fail(struct ctx *x, const char *s)
{
	char *d = strdup(s);
	if (!d)
		fail(x, x->file, "out of memory");
	return d;
}

/* A non-empty string; *out keeps its default when the key is not set. */
static int get_string(struct ctx *x, const cJSON *obj, const char *parent, const char *key,
		      char **out)
{
	char p[PATH_LEN], got[SHOW_VALUE_MAX * 6 + 8];
	const cJSON *v = get(obj, key);
	if (!v)
		return 0;
	kp(p, parent, key);
	if (!cJSON_IsString(v)) {
		describe(got, sizeof(got), v);
		return fail(x, p, "must be a string, got %s", got);
	}
	if (!*v->valuestring)
		return fail(x, p, "empty: give a value, or remove the key");
	char *d = dup_or_fail(x, v->valuestring);
	if (!d)
		return -1;
	free(*out);
	*out = d;
	return 0;
}

static int get_string_list(struct ctx *x, const cJSON *obj, const char *parent, const char *key,
			   const char *req, char ***out, size_t *count)
{
	char p[PATH_LEN], pi[PATH_LEN], got[SHOW_VALUE_MAX * 6 + 8];
	const cJSON *v = get(obj, key);
	if (!v)
		return 0;
	kp(p, parent, key);
	if (!cJSON_IsArray(v)) {
		describe(got, sizeof(got), v);
		return fail(x, p, "must be %s, got %s", req, got);
	}
	size_t n = (size_t)cJSON_GetArraySize(v), k = 0;
	if (n == 0)
		return 0;
	char **list = calloc(n, sizeof(*list));
	if (!list)
		return fail(x, x->file, "out of memory");
	/* Owned by *out from here on, so that config_free sees what was copied so far. */
	*out = list;
	for (const cJSON *i = v->child; i; i = i->next, k++) {
		kpi(pi, p, k);
		if (!cJSON_IsString(i) || !*i->valuestring) {
			describe(got, sizeof(got), i);
			return fail(x, pi, "must be a non-empty string, got %s", got);
		}
		if (!(list[k] = dup_or_fail(x, i->valuestring)))
			return -1;
		*count = k + 1;
	}
	return 0;
}

/* Relative to the config file's directory (see config.h). */
static char *resolve(struct ctx *x, const char *value)
{
	if (value[0] == '/')
		return dup_or_fail(x, value);
	size_t n = strlen(x->c->dir) + strlen(value) + 2;
	char *p = malloc(n);
	if (!p) {
		fail(x, x->file, "out of memory");
		return NULL;
	}
	snprintf(p, n, "%s%s%s", x->c->dir, strcmp(x->c->dir, "/") ? "/" : "", value);
	return p;
}

static int get_path(struct ctx *x, const cJSON *obj, const char *parent, const char *key,
		    char **out)
{
	char *raw = NULL;
	if (get_string(x, obj, parent, key, &raw) < 0)
		return -1;
	if (!raw)
		return 0;
	char *abs = resolve(x, raw);
	free(raw);
	if (!abs)
		return -1;
	free(*out);
	*out = abs;
	return 0;
}

static int check_directory(struct ctx *x, const char *path, const char *dir)
{
	char shown[PATH_MAX * 2];
	struct stat st;
	show(shown, sizeof(shown), dir, PATH_MAX, false);
	if (stat(dir, &st) < 0) {
		if (errno == ENOENT)
			return fail(x, path, "no such directory: %s", shown);
		return fail(x, path, "cannot be used: %s: %s", shown, strerror(errno));
	}
	if (!S_ISDIR(st.st_mode))
		return fail(x, path, "not a directory: %s", shown);
	return 0;
}

/* --- core ------------------------------------------------------------------------------ */

static const char *const core_keys[] = { "dry_run", "rclone_binary_path", "rclone_config_path",
					 "rclone_nice", NULL };

static int parse_core(struct ctx *x, const cJSON *root)
{
	struct config_core *core = &x->c->core;
	if (!(core->rclone_binary_path = dup_or_fail(x, CONFIG_RCLONE_BINARY_DEFAULT)))
		return -1;
	core->rclone_nice = CONFIG_RCLONE_NICE_DEFAULT;
	const cJSON *o = get(root, "core");
	if (!o)
		return 0;
	if (want_object(x, o, "core") < 0 || check_object(x, o, "core", core_keys, NULL) < 0)
		return -1;
	if (get_bool(x, o, "core", "dry_run", &core->dry_run) < 0 ||
	    get_string(x, o, "core", "rclone_binary_path", &core->rclone_binary_path) < 0 ||
	    get_path(x, o, "core", "rclone_config_path", &core->rclone_config_path) < 0)
		return -1;
	long long nice_value;
	bool nice_set;
	if (get_int(x, o, "core", "rclone_nice", 0, CONFIG_RCLONE_NICE_MAX,
		    "an integer from 0 to 19", &nice_value, &nice_set) < 0)
		return -1;
	if (nice_set)
		core->rclone_nice = (int)nice_value;
	return 0;
}

/* --- remotes --------------------------------------------------------------------------- */

static const char *const remote_keys[] = { "upload_folder", "upload_remote", "rclone_command",
					   "rclone_excludes", "rclone_extras", "rclone_sleeps",
					   "remove_empty_dir_depth", NULL };
static const char *const remote_cloudplow_keys[] = { "hidden_remote", "sync_remote", NULL };
static const char *const sleep_keys[] = { "count", "sleep", "timeout", NULL };

static int parse_extras(struct ctx *x, struct config_remote *r, const cJSON *o,
			const char *parent)
{
	char p[PATH_LEN], got[SHOW_VALUE_MAX * 6 + 8];
	kp(p, parent, "rclone_extras");
	if (want_object(x, o, p) < 0 || check_dups(x, o, p) < 0)
		return -1;
	size_t n = (size_t)cJSON_GetArraySize(o);
	if (n == 0)
		return 0;
	if (!(r->rclone_extras = calloc(n, sizeof(*r->rclone_extras))))
		return fail(x, x->file, "out of memory");
	for (const cJSON *i = o->child; i; i = i->next) {
		char pk[PATH_LEN], name[512], value[64];
		const char *key = i->string;
		kp(pk, p, key);
		if (!*key || key[strspn(key, "-")] == '\0')
			return fail(x, pk, "not a flag name");
		if (strlen(key) > 200)
			return fail(x, pk, "flag name longer than 200 bytes");
		for (const char *c = key; *c; c++)
			if (*c == '=' || (unsigned char)*c <= ' ' || *c == 0x7f)
				return fail(x, pk, "a flag name holds no '=', spaces or control "
						   "characters: put the value on the right");
		snprintf(name, sizeof(name), "%s%s", key[0] == '-' ? "" : "--", key);
		if (key[0] != '-' && warn(x, pk, "no leading dashes: passed as %s", name) < 0)
			return -1;
		const char *shown = cJSON_IsString(i) ? i->valuestring : cJSON_IsTrue(i) ? "true"
				  : cJSON_IsFalse(i) ? "false" : NULL;
		if (cJSON_IsNumber(i) && isfinite(i->valuedouble)) {
			fmt_number(value, sizeof(value), i->valuedouble);
			shown = value;
		}
		char why[300];
		if (rclone_cmd_check_extra(name, shown, why, sizeof(why)) < 0)
			return fail(x, pk, "%s; remove the key", why);
		const char *reserved = rclone_cmd_reserved_flag(name);
		if (reserved) {
			if (warn(x, pk, "%s is set by cplow itself, ignored", reserved) < 0)
				return -1;
			continue;
		}
		for (size_t k = 0; k < r->rclone_extra_count; k++)
			if (strcmp(r->rclone_extras[k].name, name) == 0)
				return fail(x, pk, "the same flag as an earlier key (%s)", name);
		const char *rendered = NULL;
		if (cJSON_IsString(i)) {
			rendered = i->valuestring;
		} else if (cJSON_IsNumber(i) && isfinite(i->valuedouble)) {
			fmt_number(value, sizeof(value), i->valuedouble);
			rendered = value;
		} else if (cJSON_IsBool(i)) {
			rendered = cJSON_IsTrue(i) ? "true" : "false";
		} else if (!cJSON_IsNull(i)) {
			describe(got, sizeof(got), i);
			return fail(x, pk,
				    "must be a string, a number, true, false or null, got %s", got);
		}
		struct stage_flag *f = &r->rclone_extras[r->rclone_extra_count];
		if (!(f->name = dup_or_fail(x, name)))
			return -1;
		r->rclone_extra_count++;
		if (rendered && !(f->value = dup_or_fail(x, rendered)))
			return -1;
	}
	return 0;
}

static int parse_sleeps(struct ctx *x, struct config_remote *r, const cJSON *o,
			const char *parent)
{
	char p[PATH_LEN];
	kp(p, parent, "rclone_sleeps");
	if (want_object(x, o, p) < 0 || check_dups(x, o, p) < 0)
		return -1;
	size_t n = (size_t)cJSON_GetArraySize(o);
	if (n == 0)
		return 0;
	if (!(r->rclone_sleeps = calloc(n, sizeof(*r->rclone_sleeps))))
		return fail(x, x->file, "out of memory");
	for (const cJSON *i = o->child; i; i = i->next) {
		char pk[PATH_LEN], pf[PATH_LEN];
		kp(pk, p, i->string);
		if (!*i->string)
			return fail(x, pk, "empty pattern: it would match every line");
		if (want_object(x, i, pk) < 0 || check_object(x, i, pk, sleep_keys, NULL) < 0)
			return -1;
		long long count = 0, timeout = 0;
		double sleep = 0;
		bool has_count, has_sleep, has_timeout;
		if (get_int(x, i, pk, "count", 1, TRIGGER_COUNT_MAX, "an integer from 1 to 1000000",
			    &count, &has_count) < 0 ||
		    get_number(x, i, pk, "sleep", 0, true, TRIGGERS_SLEEP_HOURS_MAX,
			       "a number of hours > 0 and <= 1000000", &sleep, &has_sleep) < 0 ||
		    get_int(x, i, pk, "timeout", 0, TRIGGER_TIMEOUT_MAX,
			    "a whole number of seconds from 0 to 31536000", &timeout,
			    &has_timeout) < 0)
			return -1;
		if (!has_count)
			return fail(x, kp(pf, pk, "count"), "missing");
		if (!has_sleep)
			return fail(x, kp(pf, pk, "sleep"), "missing");
		if (!has_timeout)
			return fail(x, kp(pf, pk, "timeout"), "missing");
		if (timeout == 0 && count > 1)
			return fail(x, kp(pf, pk, "timeout"),
				    "must be above 0 when count is above 1: no window of 0 seconds "
				    "holds two hits");
		struct stage_trigger *t = &r->rclone_sleeps[r->rclone_sleep_count];
		if (!(t->pattern = dup_or_fail(x, i->string)))
			return -1;
		r->rclone_sleep_count++;
		t->count = (int)count;
		t->sleep_hours = sleep;
		t->timeout_s = (int)timeout;
	}
	return 0;
}

/* triggers_init()'s message without its own `rclone_sleeps "<pattern>": `, which the key path
 * already says; the whole message when it does not start that way. */
static const char *trigger_reason(const char *msg)
{
	static const char head[] = "rclone_sleeps \"";
	if (strncmp(msg, head, sizeof(head) - 1) != 0)
		return msg;
	for (const char *p = msg + sizeof(head) - 1; *p; p++) {
		if (*p == '\\' && p[1]) {
			p++;
		} else if (*p == '"') {
			return strncmp(p, "\": ", 3) == 0 ? p + 3 : msg;
		}
	}
	return msg;
}

/* The worker compiles them again; doing it here puts a bad regex in check-config's output
 * instead of in the middle of an upload. One at a time, so the message names its key. */
static int compile_sleeps(struct ctx *x, const struct config_remote *r, const char *parent)
{
	char p[PATH_LEN], pk[PATH_LEN], terr[TRIGGERS_ERR_MAX];
	kp(p, parent, "rclone_sleeps");
	for (size_t i = 0; i < r->rclone_sleep_count; i++) {
		struct triggers t;
		if (triggers_init(&t, &r->rclone_sleeps[i], 1, terr, sizeof(terr)) < 0)
			return fail(x, kp(pk, p, r->rclone_sleeps[i].pattern), "%s",
				    trigger_reason(terr));
		triggers_free(&t);
	}
	return 0;
}

static int parse_remote(struct ctx *x, struct config_remote *r, const cJSON *o,
			const char *path)
{
	char p[PATH_LEN], got[SHOW_VALUE_MAX * 6 + 8];
	r->remove_empty_dir_depth = -1;
	if (want_object(x, o, path) < 0 ||
	    check_object(x, o, path, remote_keys, remote_cloudplow_keys) < 0)
		return -1;
	if (get_path(x, o, path, "upload_folder", &r->upload_folder) < 0 ||
	    get_string(x, o, path, "upload_remote", &r->upload_remote) < 0)
		return -1;
	const cJSON *cmd = get(o, "rclone_command");
	if (cmd) {
		kp(p, path, "rclone_command");
		if (cJSON_IsString(cmd) && strcmp(cmd->valuestring, "move") == 0) {
			r->rclone_command = CONFIG_COMMAND_MOVE;
		} else if (cJSON_IsString(cmd) && strcmp(cmd->valuestring, "copy") == 0) {
			r->rclone_command = CONFIG_COMMAND_COPY;
		} else if (cJSON_IsString(cmd) && strcasecmp(cmd->valuestring, "sync") == 0) {
			return fail(x, p, "must be \"move\" or \"copy\", got \"sync\" (cloudplow "
					  "ran move for it)");
		} else {
			describe(got, sizeof(got), cmd);
			return fail(x, p, "must be \"move\" or \"copy\", got %s", got);
		}
	}
	if (get_string_list(x, o, path, "rclone_excludes", "a list of strings", &r->rclone_excludes,
			    &r->rclone_exclude_count) < 0)
		return -1;
	const cJSON *extras = get(o, "rclone_extras");
	if (extras && parse_extras(x, r, extras, path) < 0)
		return -1;
	const cJSON *sleeps = get(o, "rclone_sleeps");
	if (sleeps && (parse_sleeps(x, r, sleeps, path) < 0 || compile_sleeps(x, r, path) < 0))
		return -1;
	long long depth;
	bool set;
	if (get_int(x, o, path, "remove_empty_dir_depth", 0, DEPTH_MAX,
		    "an integer from 0 to 1000", &depth, &set) < 0)
		return -1;
	if (set)
		r->remove_empty_dir_depth = (int)depth;
	return 0;
}

static int parse_remotes(struct ctx *x, const cJSON *root)
{
	struct config *c = x->c;
	const cJSON *o = get(root, "remotes");
	if (!o)
		return 0;
	if (want_object(x, o, "remotes") < 0 || check_dups(x, o, "remotes") < 0)
		return -1;
	size_t n = (size_t)cJSON_GetArraySize(o);
	if (n == 0)
		return 0;
	if (!(c->remotes = calloc(n, sizeof(*c->remotes))))
		return fail(x, x->file, "out of memory");
	for (const cJSON *i = o->child; i; i = i->next) {
		char p[PATH_LEN];
		struct config_remote *r = &c->remotes[c->remote_count];
		if (!(r->name = dup_or_fail(x, i->string)))
			return -1;
		c->remote_count++;
		if (parse_remote(x, r, i, kp(p, "remotes", i->string)) < 0)
			return -1;
	}
	return 0;
}

/* --- uploaders ------------------------------------------------------------------------- */

static const char *const uploader_keys[] = { "check_interval", "max_size_gb", "size_excludes",
					     "exclude_open_files", "opened_excludes", "schedule",
					     "service_account_path", "rotate_remotes", "check",
					     NULL };
static const char *const uploader_cloudplow_keys[] = { "mover", "can_be_throttled", NULL };
static const char *const schedule_keys[] = { "enabled", "allowed_from", "allowed_until", NULL };
static const char *const check_keys[] = { "type", "limit_minutes", NULL };

static int check_uploader_name(struct ctx *x, const char *name, const char *path)
{
	if (!*name)
		return fail(x, path, "empty uploader name");
	if (strcmp(name, LEDGER_FILE_META_KEY) == 0)
		return fail(x, path, "reserved name: the ledger file keeps cplow's own data under "
				     "\"_cplow\"");
	if (strlen(name) > LEDGER_UPLOADER_MAX - 1)
		return fail(x, path, "name longer than %d bytes", LEDGER_UPLOADER_MAX - 1);
	for (const char *c = name; *c; c++)
		if ((unsigned char)*c < 0x20 || *c == 0x7f || *c == '/')
			return fail(x, path, "a name holds no '/' and no control characters");
	return 0;
}

/* "HH:MM" → minutes after midnight. */
static int get_time(struct ctx *x, const cJSON *obj, const char *parent, const char *key,
		    int *out)
{
	char p[PATH_LEN], got[SHOW_VALUE_MAX * 6 + 8];
	const cJSON *v = get(obj, key);
	if (!v)
		return 0;
	const char *s = cJSON_IsString(v) ? v->valuestring : "";
	bool ok = strlen(s) == 5 && s[2] == ':';
	for (int i = 0; ok && i < 5; i++)
		ok = i == 2 || (s[i] >= '0' && s[i] <= '9');
	int h = ok ? (s[0] - '0') * 10 + (s[1] - '0') : 0;
	int m = ok ? (s[3] - '0') * 10 + (s[4] - '0') : 0;
	if (!ok || h > 23 || m > 59) {
		describe(got, sizeof(got), v);
		return fail(x, kp(p, parent, key),
			    "must be a time \"HH:MM\" from 00:00 to 23:59, got %s", got);
	}
	*out = h * 60 + m;
	return 0;
}

static int parse_schedule(struct ctx *x, struct config_schedule *s, const cJSON *o,
			  const char *parent)
{
	char p[PATH_LEN], pk[PATH_LEN];
	kp(p, parent, "schedule");
	if (want_object(x, o, p) < 0 || check_object(x, o, p, schedule_keys, NULL) < 0)
		return -1;
	if (get_bool(x, o, p, "enabled", &s->enabled) < 0 ||
	    get_time(x, o, p, "allowed_from", &s->allowed_from_min) < 0 ||
	    get_time(x, o, p, "allowed_until", &s->allowed_until_min) < 0)
		return -1;
	if (!s->enabled)
		return 0;
	if (s->allowed_from_min < 0)
		return fail(x, kp(pk, p, "allowed_from"), "missing: an enabled schedule needs it");
	if (s->allowed_until_min < 0)
		return fail(x, kp(pk, p, "allowed_until"), "missing: an enabled schedule needs it");
	if (s->allowed_from_min == s->allowed_until_min)
		return fail(x, kp(pk, p, "allowed_until"),
			    "equals allowed_from: the window would be empty, or the whole day; to "
			    "upload at any time, set enabled to false");
	return 0;
}

static int parse_check(struct ctx *x, struct config_uploader *u, const cJSON *o,
		       const char *parent)
{
	char p[PATH_LEN], pk[PATH_LEN], got[SHOW_VALUE_MAX * 6 + 8];
	kp(p, parent, "check");
	if (want_object(x, o, p) < 0 || check_object(x, o, p, check_keys, NULL) < 0)
		return -1;
	const cJSON *type = get(o, "type");
	kp(pk, p, "type");
	if (!type)
		return fail(x, pk, "missing: \"age\" or \"size\"");
	if (cJSON_IsString(type) && strcmp(type->valuestring, "age") == 0) {
		u->check_type = CONFIG_CHECK_AGE;
	} else if (cJSON_IsString(type) && strcmp(type->valuestring, "size") == 0) {
		u->check_type = CONFIG_CHECK_SIZE;
	} else {
		describe(got, sizeof(got), type);
		return fail(x, pk, "must be \"age\" or \"size\", got %s", got);
	}
	long long minutes;
	bool set;
	if (get_int(x, o, p, "limit_minutes", 1, MINUTES_MAX,
		    "a whole number of minutes from 1 to 525600", &minutes, &set) < 0)
		return -1;
	kp(pk, p, "limit_minutes");
	if (u->check_type == CONFIG_CHECK_AGE && !set)
		return fail(x, pk, "missing: an age check needs it");
	if (u->check_type == CONFIG_CHECK_SIZE && set)
		return fail(x, pk, "only used with \"type\": \"age\" (a size check uses "
				   "max_size_gb)");
	u->check_limit_minutes = set ? (int)minutes : 0;
	return 0;
}

static int parse_rotate_remotes(struct ctx *x, struct config_uploader *u, const cJSON *o,
				const char *parent)
{
	char p[PATH_LEN], pi[PATH_LEN], got[SHOW_VALUE_MAX * 6 + 8], dest[PATH_MAX];
	kp(p, parent, "rotate_remotes");
	if (!cJSON_IsArray(o)) {
		describe(got, sizeof(got), o);
		return fail(x, p, "must be a list of rclone remote names, got %s", got);
	}
	if (cJSON_GetArraySize(o) == 0)
		return fail(x, p, "empty list: give at least one remote, or remove the key");
	if (u->service_account_path)
		return fail(x, p, "cannot be combined with service_account_path: choose one kind "
				  "of account");
	const struct config_remote *r = u->remote;
	char rp[PATH_LEN];
	kp(rp, kp(pi, "remotes", r->name), "upload_remote");
	/* account_destination() is what the planner will call: it must work for every name. */
	if (account_destination(r->upload_remote, "a", dest, sizeof(dest)) == -EINVAL) {
		show(got, sizeof(got), r->upload_remote, SHOW_VALUE_MAX, true);
		return fail(x, rp, "must be an rclone remote (\"name:path\") for rotate_remotes, "
				   "got %s", got);
	}
	size_t n = (size_t)cJSON_GetArraySize(o), k = 0;
	if (!(u->rotate_remotes = calloc(n, sizeof(*u->rotate_remotes))))
		return fail(x, x->file, "out of memory");
	for (const cJSON *i = o->child; i; i = i->next, k++) {
		kpi(pi, p, k);
		describe(got, sizeof(got), i);
		if (!cJSON_IsString(i))
			return fail(x, pi, "must be an rclone remote name, got %s", got);
		int rc = account_destination(r->upload_remote, i->valuestring, dest, sizeof(dest));
		if (rc == -ENAMETOOLONG)
			return fail(x, pi, "too long for upload_remote's path: %s", got);
		if (rc < 0 || strlen(i->valuestring) > LEDGER_ACCOUNT_MAX - 1)
			return fail(x, pi, "not an rclone remote name (letters, digits, '_', '-', "
					   "'.' and spaces, without a ':'): %s", got);
		for (size_t j = 0; j < k; j++)
			if (strcmp(u->rotate_remotes[j], i->valuestring) == 0)
				return fail(x, pi, "%s appears twice", got);
		if (!(u->rotate_remotes[k] = dup_or_fail(x, i->valuestring)))
			return -1;
		u->rotate_remote_count = k + 1;
	}
	return 0;
}

static int parse_uploader(struct ctx *x, struct config_uploader *u, const cJSON *o,
			  const char *path)
{
	struct config *c = x->c;
	char p[PATH_LEN], rp[PATH_LEN];
	if (check_uploader_name(x, u->name, path) < 0 || want_object(x, o, path) < 0 ||
	    check_object(x, o, path, uploader_keys, uploader_cloudplow_keys) < 0)
		return -1;

	const struct config_remote *r = config_find_remote(c, u->name);
	kp(rp, "remotes", u->name);
	if (!r)
		return fail(x, path, "no %s section for this uploader", rp);
	u->remote = r;
	if (!r->upload_folder)
		return fail(x, kp(p, rp, "upload_folder"), "missing: %s needs it", path);
	if (!r->upload_remote)
		return fail(x, kp(p, rp, "upload_remote"), "missing: %s needs it", path);
	if (check_directory(x, kp(p, rp, "upload_folder"), r->upload_folder) < 0)
		return -1;

	long long interval = CONFIG_CHECK_INTERVAL_DEFAULT;
	u->max_size_gb = CONFIG_MAX_SIZE_GB_DEFAULT;
	u->schedule.allowed_from_min = u->schedule.allowed_until_min = -1;
	if (get_int(x, o, path, "check_interval", 1, MINUTES_MAX,
		    "a whole number of minutes from 1 to 525600", &interval, NULL) < 0 ||
	    get_number(x, o, path, "max_size_gb", 0, false, INFINITY, "a number >= 0",
		       &u->max_size_gb, NULL) < 0)
		return -1;
	if (u->max_size_gb > MAX_SIZE_GB_MAX) {
		char got[64];
		fmt_number(got, sizeof(got), u->max_size_gb);
		return fail(x, kp(p, path, "max_size_gb"), "must be at most 1000000000, got %s",
			    got);
	}
	u->check_interval_min = (int)interval;
	u->max_size_bytes = (int64_t)llround(u->max_size_gb * 1073741824.0);
	if (get_string_list(x, o, path, "size_excludes", "a list of strings", &u->size_excludes,
			    &u->size_exclude_count) < 0 ||
	    get_bool(x, o, path, "exclude_open_files", &u->exclude_open_files) < 0 ||
	    get_string_list(x, o, path, "opened_excludes", "a list of strings",
			    &u->opened_excludes, &u->opened_exclude_count) < 0)
		return -1;
	const cJSON *schedule = get(o, "schedule");
	if (schedule && parse_schedule(x, &u->schedule, schedule, path) < 0)
		return -1;
	if (get_path(x, o, path, "service_account_path", &u->service_account_path) < 0)
		return -1;
	if (u->service_account_path &&
	    check_directory(x, kp(p, path, "service_account_path"), u->service_account_path) < 0)
		return -1;
	const cJSON *rotate = get(o, "rotate_remotes");
	if (rotate && parse_rotate_remotes(x, u, rotate, path) < 0)
		return -1;
	const cJSON *check = get(o, "check");
	if (check && parse_check(x, u, check, path) < 0)
		return -1;
	return 0;
}

/* The ledger counts quota per (uploader, account): two uploaders on one account would each
 * spend the account's whole daily quota. Legal, since Google may count differently for
 * shared drives, but worth a line. Their stages on it take turns (supervisor.c,
 * account_busy), which the line says too, so a waiting uploader is no surprise. */
static int warn_shared_accounts(struct ctx *x)
{
	struct config *c = x->c;
	char pu[PATH_LEN], pe[PATH_LEN], p[PATH_LEN], pl[PATH_LEN];
	for (size_t i = 0; i < c->uploader_count; i++) {
		const struct config_uploader *u = &c->uploaders[i];
		kp(pu, "uploader", u->name);
		for (size_t j = 0; j < i; j++) {
			const struct config_uploader *e = &c->uploaders[j];
			kp(pe, "uploader", e->name);
			if (u->service_account_path && e->service_account_path &&
			    strcmp(u->service_account_path, e->service_account_path) == 0 &&
			    warn(x, kp(p, pu, "service_account_path"),
				 "the same directory as %s's: stages on one account take turns, "
				 "and each uploader counts the accounts' daily quota on its own",
				 pe) < 0)
				return -1;
			kp(pl, pu, "rotate_remotes");
			for (size_t a = 0; a < u->rotate_remote_count; a++) {
				for (size_t b = 0; b < e->rotate_remote_count; b++) {
					if (strcmp(u->rotate_remotes[a], e->rotate_remotes[b]) != 0)
						continue;
					if (warn(x, kpi(p, pl, a),
						 "also in %s's rotate_remotes: stages on it "
						 "take turns, and each uploader counts the "
						 "account's daily quota on its own",
						 pe) < 0)
						return -1;
				}
			}
		}
	}
	return 0;
}

static int parse_uploaders(struct ctx *x, const cJSON *root)
{
	struct config *c = x->c;
	const cJSON *o = get(root, "uploader");
	if (!o)
		return fail(x, "uploader", "missing: configure at least one uploader");
	if (want_object(x, o, "uploader") < 0 || check_dups(x, o, "uploader") < 0)
		return -1;
	size_t n = (size_t)cJSON_GetArraySize(o);
	if (n == 0)
		return fail(x, "uploader", "empty: configure at least one uploader");
	if (!(c->uploaders = calloc(n, sizeof(*c->uploaders))))
		return fail(x, x->file, "out of memory");
	for (const cJSON *i = o->child; i; i = i->next) {
		char p[PATH_LEN];
		struct config_uploader *u = &c->uploaders[c->uploader_count];
		if (!(u->name = dup_or_fail(x, i->string)))
			return -1;
		c->uploader_count++;
		if (parse_uploader(x, u, i, kp(p, "uploader", i->string)) < 0)
			return -1;
	}
	return warn_shared_accounts(x);
}

/* --- quota, stages, dashboard ---------------------------------------------------------- */

static const char *const quota_keys[] = { "daily_bytes", "window", "min_free_bytes",
					  "continue_min_bytes", "flush_interval_ms", "cache_path",
					  "capacity", "lock_path", NULL };

static int parse_quota(struct ctx *x, const cJSON *root)
{
	struct config_quota *q = &x->c->quota;
	char p[PATH_LEN], got[SHOW_VALUE_MAX * 6 + 8];
	long long daily = LEDGER_DAILY_BYTES_DEFAULT, min_free = 0, cont = 0;
	long long flush = CONFIG_FLUSH_INTERVAL_MS_DEFAULT, capacity = LEDGER_DEFAULT_ROWS;
	bool daily_set = false, min_free_set = false, cont_set = false;
	q->window = LEDGER_WINDOW_FIXED;
	const cJSON *o = get(root, "quota");
	if (o) {
		if (want_object(x, o, "quota") < 0 ||
		    check_object(x, o, "quota", quota_keys, NULL) < 0)
			return -1;
		if (get_int(x, o, "quota", "daily_bytes", 1, (long long)EXACT_INT_MAX,
			    "a whole number of bytes from 1 to 9007199254740992", &daily,
			    &daily_set) < 0)
			return -1;
		const cJSON *w = get(o, "window");
		if (w) {
			if (cJSON_IsString(w) && strcmp(w->valuestring, "fixed") == 0) {
				q->window = LEDGER_WINDOW_FIXED;
			} else if (cJSON_IsString(w) && strcmp(w->valuestring, "rolling") == 0) {
				q->window = LEDGER_WINDOW_ROLLING;
			} else {
				describe(got, sizeof(got), w);
				return fail(x, "quota.window",
					    "must be \"fixed\" or \"rolling\", got %s", got);
			}
		}
		if (get_int(x, o, "quota", "min_free_bytes", 0, (long long)EXACT_INT_MAX,
			    "a whole number of bytes >= 0", &min_free, &min_free_set) < 0 ||
		    get_int(x, o, "quota", "continue_min_bytes", 0, (long long)EXACT_INT_MAX,
			    "a whole number of bytes >= 0", &cont, &cont_set) < 0 ||
		    get_int(x, o, "quota", "flush_interval_ms", 1, 60000,
			    "an integer from 1 to 60000", &flush, NULL) < 0 ||
		    get_int(x, o, "quota", "capacity", 1, CAPACITY_MAX,
			    "an integer from 1 to 1048576", &capacity, NULL) < 0 ||
		    get_path(x, o, "quota", "cache_path", &q->cache_path) < 0 ||
		    get_path(x, o, "quota", "lock_path", &q->lock_path) < 0)
			return -1;
	}
	if (min_free_set && min_free >= daily)
		return fail(x, kp(p, "quota", "min_free_bytes"),
			    "must be less than quota.daily_bytes (%lld), got %lld", daily,
			    min_free);
	if (cont_set && cont >= daily)
		return fail(x, kp(p, "quota", "continue_min_bytes"),
			    "must be less than quota.daily_bytes (%lld), got %lld", daily, cont);
	/* The defaults are shares of the default quota (see config.h). */
	if (!min_free_set)
		min_free = daily_set ? daily / 750 : CONFIG_MIN_FREE_BYTES_DEFAULT;
	if (!cont_set)
		cont = daily_set ? daily / 75 : CONFIG_CONTINUE_MIN_BYTES_DEFAULT;
	q->daily_bytes = daily;
	q->min_free_bytes = min_free;
	q->continue_min_bytes = cont;
	q->flush_interval_ms = (int)flush;
	q->capacity = (uint32_t)capacity;
	if (!q->cache_path && !(q->cache_path = resolve(x, CONFIG_CACHE_FILE_NAME)))
		return -1;
	if (!q->lock_path && !(q->lock_path = resolve(x, CONFIG_LOCK_FILE_NAME)))
		return -1;
	return 0;
}

/* REFERENCE.md §2, the quota fork's table. */
static const struct {
	const char *name;
	double min_share, max_transfer_share, max_size_share;
	int transfers;
	const char *order_by;
	int max_backlog;
} default_stages[] = {
	{ "aggressive_fresh_sa", 0.80, 0.5, 0.8, 8, "size,desc", 2000 },
	{ "moderate_mid_sa", 0.50, 0.6, 0.5, 4, "size,desc", 1000 },
	{ "cautious_low_quota", 0.25, 0.7, 0.3, 6, NULL, 0 },
	{ "conservative_cleanup", 0.0, 0.8, 0.2, 8, NULL, 0 },
};

static const char *const stage_keys[] = { "name", "min_share", "max_transfer_share",
					  "max_size_share", "transfers", "order_by",
					  "max_backlog", NULL };

/* rclone's --order-by: size|name|modtime[,ascending|asc|descending|desc|mixed[,N]]. */
static bool valid_order_by(const char *s)
{
	static const char *const keys[] = { "size", "name", "modtime", NULL };
	static const char *const dirs[] = { "ascending", "asc", "descending", "desc", "mixed",
					    NULL };
	char buf[LEDGER_STRATEGY_MAX];
	if (strlen(s) >= sizeof(buf))
		return false;
	strcpy(buf, s);
	char *dir = strchr(buf, ','), *num = NULL;
	if (dir) {
		*dir++ = '\0';
		if ((num = strchr(dir, ',')))
			*num++ = '\0';
	}
	if (!in_list(buf, keys) || (dir && !in_list(dir, dirs)))
		return false;
	if (!num)
		return true;
	if (strcmp(dir, "mixed") != 0 || !*num || strlen(num) > 3 || strspn(num, "0123456789") !=
									    strlen(num))
		return false;
	return atoi(num) <= 100;
}

static int parse_stage(struct ctx *x, struct config_stage *s, const cJSON *o, const char *path)
{
	char p[PATH_LEN], got[SHOW_VALUE_MAX * 6 + 8];
	if (want_object(x, o, path) < 0 || check_object(x, o, path, stage_keys, NULL) < 0)
		return -1;
	static const char *const required[] = { "name", "min_share", "max_transfer_share",
						"max_size_share", "transfers", NULL };
	for (const char *const *k = required; *k; k++)
		if (!get(o, *k))
			return fail(x, kp(p, path, *k), "missing");
	const cJSON *name = get(o, "name");
	kp(p, path, "name");
	if (!cJSON_IsString(name) || !*name->valuestring ||
	    strlen(name->valuestring) > LEDGER_STRATEGY_MAX - 1) {
		describe(got, sizeof(got), name);
		return fail(x, p, "must be a name of 1 to %d bytes, got %s",
			    LEDGER_STRATEGY_MAX - 1, got);
	}
	if (!(s->name = dup_or_fail(x, name->valuestring)))
		return -1;
	long long transfers, backlog = 0;
	if (get_number(x, o, path, "min_share", 0, false, 1, "a number from 0 to 1",
		       &s->min_share, NULL) < 0 ||
	    get_number(x, o, path, "max_transfer_share", 0, true, 1, "a number > 0 and <= 1",
		       &s->max_transfer_share, NULL) < 0 ||
	    get_number(x, o, path, "max_size_share", 0, false, 1, "a number from 0 to 1",
		       &s->max_size_share, NULL) < 0 ||
	    get_int(x, o, path, "transfers", 1, TRANSFERS_MAX, "an integer from 1 to 256",
		    &transfers, NULL) < 0 ||
	    get_int(x, o, path, "max_backlog", 0, BACKLOG_MAX, "an integer from 0 to 10000000",
		    &backlog, NULL) < 0)
		return -1;
	s->transfers = (int)transfers;
	s->max_backlog = (int)backlog;
	const cJSON *order = get(o, "order_by");
	if (order) {
		kp(p, path, "order_by");
		if (!cJSON_IsString(order) || !valid_order_by(order->valuestring)) {
			describe(got, sizeof(got), order);
			return fail(x, p,
				    "must be like \"size,desc\" "
				    "(size|name|modtime[,asc|desc|mixed[,N]]) or null, got %s",
				    got);
		}
		if (!(s->order_by = dup_or_fail(x, order->valuestring)))
			return -1;
	}
	return 0;
}

static int parse_stages(struct ctx *x, const cJSON *root)
{
	struct config *c = x->c;
	char p[PATH_LEN], pk[PATH_LEN], got[SHOW_VALUE_MAX * 6 + 8];
	const cJSON *o = get(root, "stages");
	if (!o) {
		size_t n = sizeof(default_stages) / sizeof(default_stages[0]);
		if (!(c->stages = calloc(n, sizeof(*c->stages))))
			return fail(x, x->file, "out of memory");
		for (size_t i = 0; i < n; i++) {
			struct config_stage *s = &c->stages[i];
			s->min_share = default_stages[i].min_share;
			s->max_transfer_share = default_stages[i].max_transfer_share;
			s->max_size_share = default_stages[i].max_size_share;
			s->transfers = default_stages[i].transfers;
			s->max_backlog = default_stages[i].max_backlog;
			c->stage_count++;
			if (!(s->name = dup_or_fail(x, default_stages[i].name)) ||
			    (default_stages[i].order_by &&
			     !(s->order_by = dup_or_fail(x, default_stages[i].order_by))))
				return -1;
		}
		return 0;
	}
	if (!cJSON_IsArray(o)) {
		describe(got, sizeof(got), o);
		return fail(x, "stages", "must be a list of rows, highest min_share first, got %s",
			    got);
	}
	size_t n = (size_t)cJSON_GetArraySize(o), k = 0;
	if (n == 0)
		return fail(x, "stages", "empty list: give at least one row, or remove the key");
	if (n > STAGES_MAX)
		return fail(x, "stages", "more than %d rows", STAGES_MAX);
	if (!(c->stages = calloc(n, sizeof(*c->stages))))
		return fail(x, x->file, "out of memory");
	for (const cJSON *i = o->child; i; i = i->next, k++) {
		struct config_stage *s = &c->stages[k];
		c->stage_count = k + 1;
		if (parse_stage(x, s, i, kpi(p, "stages", k)) < 0)
			return -1;
		for (size_t j = 0; j < k; j++)
			if (strcmp(c->stages[j].name, s->name) == 0) {
				show(got, sizeof(got), s->name, SHOW_VALUE_MAX, true);
				return fail(x, kp(pk, p, "name"), "%s appears twice", got);
			}
		if (k > 0 && s->min_share >= c->stages[k - 1].min_share) {
			char now[64], before[64];
			fmt_number(now, sizeof(now), s->min_share);
			fmt_number(before, sizeof(before), c->stages[k - 1].min_share);
			return fail(x, kp(pk, p, "min_share"),
				    "rows must go from the highest min_share to the lowest: %s "
				    "follows %s", now, before);
		}
	}
	if (c->stages[n - 1].min_share != 0) {
		char v[64];
		fmt_number(v, sizeof(v), c->stages[n - 1].min_share);
		return fail(x, kp(pk, kpi(p, "stages", n - 1), "min_share"),
			    "the last row's must be 0, so that every remaining quota has a "
			    "strategy, got %s", v);
	}
	return 0;
}

static const char *const dashboard_keys[] = { "enabled", "host", "port", "token",
					      "refresh_seconds", NULL };

static bool loopback_host(const char *h)
{
	return strncmp(h, "127.", 4) == 0 || strcmp(h, "::1") == 0 || strcmp(h, "[::1]") == 0 ||
	       strcmp(h, "localhost") == 0;
}

static int parse_dashboard(struct ctx *x, const cJSON *root)
{
	struct config_dashboard *d = &x->c->dashboard;
	char got[SHOW_VALUE_MAX * 6 + 8];
	long long port = CONFIG_DASHBOARD_PORT_DEFAULT, refresh = CONFIG_DASHBOARD_REFRESH_DEFAULT;
	if (!(d->host = dup_or_fail(x, CONFIG_DASHBOARD_HOST_DEFAULT)))
		return -1;
	const cJSON *o = get(root, "dashboard");
	if (o) {
		if (want_object(x, o, "dashboard") < 0 ||
		    check_object(x, o, "dashboard", dashboard_keys, NULL) < 0)
			return -1;
		if (get_bool(x, o, "dashboard", "enabled", &d->enabled) < 0 ||
		    get_string(x, o, "dashboard", "host", &d->host) < 0 ||
		    get_int(x, o, "dashboard", "port", 1, 65535, "an integer from 1 to 65535",
			    &port, NULL) < 0 ||
		    get_string(x, o, "dashboard", "token", &d->token) < 0 ||
		    get_int(x, o, "dashboard", "refresh_seconds", 1, 3600,
			    "an integer from 1 to 3600", &refresh, NULL) < 0)
			return -1;
	}
	d->port = (int)port;
	d->refresh_seconds = (int)refresh;
	if (d->enabled && !d->token && !loopback_host(d->host)) {
		show(got, sizeof(got), d->host, SHOW_VALUE_MAX, true);
		return fail(x, "dashboard.token",
			    "missing: required when dashboard.host is not a loopback address (%s)",
			    got);
	}
	return 0;
}

/* --- plex, nzbget, sabnzbd ------------------------------------------------------------- */

static const char *const plex_keys[] = { "enabled", "url", "token", "poll_interval",
					 "max_streams_before_throttle", "ignore_local_streams",
					 "rclone", NULL };
static const char *const plex_cloudplow_keys[] = { "notifications", "verbose_notifications",
						   NULL };
static const char *const plex_rclone_keys[] = { "throttle_speeds", NULL };
/* cloudplow throttled one rclone through its RC URL; cplow reaches each stage's own. */
static const char *const plex_rclone_cloudplow_keys[] = { "url", NULL };
static const char *const nzbget_keys[] = { "enabled", "url", NULL };
static const char *const sabnzbd_keys[] = { "enabled", "url", "apikey", NULL };

#define PLEX_POLL_MAX 86400      /* seconds */
#define PLEX_STREAMS_MAX 100000

/* An http:// or https:// URL with a host. */
static int get_url(struct ctx *x, const cJSON *obj, const char *parent, const char *key,
		   char **out)
{
	char p[PATH_LEN], got[SHOW_VALUE_MAX * 6 + 8];
	if (get_string(x, obj, parent, key, out) < 0)
		return -1;
	if (!*out)
		return 0;
	const char *s = *out, *rest = NULL;
	if (strncasecmp(s, "http://", 7) == 0)
		rest = s + 7;
	else if (strncasecmp(s, "https://", 8) == 0)
		rest = s + 8;
	const char *at = rest ? memchr(rest, '@', strcspn(rest, "/?#")) : NULL;
	const char *host = at ? at + 1 : rest;
	if (!host || !*host || strchr("/?#:", *host) || strpbrk(s, " \t\r\n")) {
		/* A URL with credentials is not echoed back: they are secrets. */
		if (at)
			snprintf(got, sizeof(got), "a URL with a user name (not shown)");
		else
			show(got, sizeof(got), s, SHOW_VALUE_MAX, true);
		return fail(x, kp(p, parent, key),
			    "must be an http:// or https:// URL with a host, got %s", got);
	}
	return 0;
}

/* One side of an rclone --bwlimit value, as rclone 1.60's SizeSuffix reads it: "off", or a
 * number of KiB without a suffix, else with b/B (bytes), k, M, G, T, P or E, which may be
 * followed by "i" or "iB". */
static bool bwlimit_side(const char *s, size_t n)
{
	if (n == 3 && strncasecmp(s, "off", 3) == 0)
		return true;
	size_t digits = 0, dots = 0, i = 0;
	for (; i < n && ((s[i] >= '0' && s[i] <= '9') || s[i] == '.'); i++) {
		digits += s[i] != '.';
		dots += s[i] == '.';
	}
	if (digits == 0 || dots > 1)
		return false;
	const char *suf = s + i;
	size_t sl = n - i;
	if (sl == 0 || (sl == 1 && (*suf == 'b' || *suf == 'B')))
		return true;
	if (!strchr("kKmMgGtTpPeE", *suf))
		return false;
	return sl == 1 || (sl == 2 && (suf[1] == 'i' || suf[1] == 'I')) ||
	       (sl == 3 && suf[1] == 'i' && (suf[2] == 'b' || suf[2] == 'B'));
}

/* "10M", "512k", "off" or "UP:DOWN"; rclone's core/bwlimit takes no timetable. */
static bool bwlimit_rate(const char *s)
{
	const char *colon = strchr(s, ':');
	if (strlen(s) >= LEDGER_BWLIMIT_MAX)
		return false;
	if (!colon)
		return bwlimit_side(s, strlen(s));
	return bwlimit_side(s, (size_t)(colon - s)) && bwlimit_side(colon + 1, strlen(colon + 1));
}

static int speed_cmp(const void *a, const void *b)
{
	const struct config_throttle_speed *sa = a, *sb = b;
	return (sa->streams > sb->streams) - (sa->streams < sb->streams);
}

static int parse_throttle_speeds(struct ctx *x, struct config_plex *pl, const cJSON *o,
				 const char *path)
{
	char pk[PATH_LEN], got[SHOW_VALUE_MAX * 6 + 8];
	if (want_object(x, o, path) < 0 || check_dups(x, o, path) < 0)
		return -1;
	size_t n = (size_t)cJSON_GetArraySize(o), k = 0;
	if (n == 0)
		return 0;
	if (!(pl->throttle_speeds = calloc(n, sizeof(*pl->throttle_speeds))))
		return fail(x, x->file, "out of memory");
	for (const cJSON *i = o->child; i; i = i->next) {
		kp(pk, path, i->string);
		const char *key = i->string;
		size_t len = strlen(key);
		bool number = len > 0 && len <= 6 && strspn(key, "0123456789") == len &&
			      (key[0] != '0' || len == 1);
		if (!number)
			return fail(x, pk, "the key must be a number of streams from 0 to 999999, "
				    "like \"2\"");
		if (!cJSON_IsString(i) || !bwlimit_rate(i->valuestring)) {
			describe(got, sizeof(got), i);
			return fail(x, pk, "must be an rclone bandwidth like \"10M\", \"512k\", "
				    "\"1M:2M\" or \"off\" (no timetable), got %s", got);
		}
		struct config_throttle_speed *sp = &pl->throttle_speeds[k];
		sp->streams = atoi(key);
		if (!(sp->rate = dup_or_fail(x, i->valuestring)))
			return -1;
		pl->throttle_speed_count = ++k;
	}
	qsort(pl->throttle_speeds, pl->throttle_speed_count, sizeof(*pl->throttle_speeds),
	      speed_cmp);
	return 0;
}

static int parse_plex(struct ctx *x, const cJSON *root)
{
	struct config_plex *pl = &x->c->plex;
	long long poll = CONFIG_PLEX_POLL_INTERVAL_DEFAULT, max = CONFIG_PLEX_MAX_STREAMS_DEFAULT;
	pl->ignore_local_streams = true; /* cloudplow's default config */
	const cJSON *o = get(root, "plex");
	if (o) {
		if (want_object(x, o, "plex") < 0 ||
		    check_object(x, o, "plex", plex_keys, plex_cloudplow_keys) < 0 ||
		    get_bool(x, o, "plex", "enabled", &pl->enabled) < 0 ||
		    get_url(x, o, "plex", "url", &pl->url) < 0 ||
		    get_string(x, o, "plex", "token", &pl->token) < 0 ||
		    get_int(x, o, "plex", "poll_interval", 1, PLEX_POLL_MAX,
			    "a whole number of seconds from 1 to 86400", &poll, NULL) < 0 ||
		    get_int(x, o, "plex", "max_streams_before_throttle", 0, PLEX_STREAMS_MAX,
			    "an integer from 0 to 100000", &max, NULL) < 0 ||
		    get_bool(x, o, "plex", "ignore_local_streams", &pl->ignore_local_streams) < 0)
			return -1;
		const cJSON *r = get(o, "rclone");
		if (r) {
			if (want_object(x, r, "plex.rclone") < 0 ||
			    check_object(x, r, "plex.rclone", plex_rclone_keys,
					 plex_rclone_cloudplow_keys) < 0)
				return -1;
			const cJSON *ts = get(r, "throttle_speeds");
			if (ts && parse_throttle_speeds(x, pl, ts,
							"plex.rclone.throttle_speeds") < 0)
				return -1;
		}
	}
	pl->poll_interval_s = (int)poll;
	pl->max_streams_before_throttle = (int)max;
	if (!pl->enabled)
		return 0;
	if (!pl->url)
		return fail(x, "plex.url", "missing: plex.enabled needs it");
	if (!pl->token)
		return fail(x, "plex.token", "missing: plex.enabled needs it");
	if (pl->throttle_speed_count == 0)
		return fail(x, "plex.rclone.throttle_speeds",
			    "missing: plex.enabled needs at least one \"<streams>\": \"<rate>\"");
	return 0;
}

static int parse_nzbget(struct ctx *x, const cJSON *root)
{
	struct config_nzbget *n = &x->c->nzbget;
	const cJSON *o = get(root, "nzbget");
	if (o && (want_object(x, o, "nzbget") < 0 ||
		  check_object(x, o, "nzbget", nzbget_keys, NULL) < 0 ||
		  get_bool(x, o, "nzbget", "enabled", &n->enabled) < 0 ||
		  get_url(x, o, "nzbget", "url", &n->url) < 0))
		return -1;
	if (n->enabled && !n->url)
		return fail(x, "nzbget.url", "missing: nzbget.enabled needs it");
	return 0;
}

static int parse_sabnzbd(struct ctx *x, const cJSON *root)
{
	struct config_sabnzbd *sb = &x->c->sabnzbd;
	const cJSON *o = get(root, "sabnzbd");
	if (o && (want_object(x, o, "sabnzbd") < 0 ||
		  check_object(x, o, "sabnzbd", sabnzbd_keys, NULL) < 0 ||
		  get_bool(x, o, "sabnzbd", "enabled", &sb->enabled) < 0 ||
		  get_url(x, o, "sabnzbd", "url", &sb->url) < 0 ||
		  get_string(x, o, "sabnzbd", "apikey", &sb->apikey) < 0))
		return -1;
	if (sb->enabled && !sb->url)
		return fail(x, "sabnzbd.url", "missing: sabnzbd.enabled needs it");
	if (sb->enabled && !sb->apikey)
		return fail(x, "sabnzbd.apikey", "missing: sabnzbd.enabled needs it");
	return 0;
}

/* --- notifications --------------------------------------------------------------------- */

#define NOTIFY_NAME_MAX 63
#define NOTIFY_HEADERS_MAX 32

static const char *const notify_services[] = { "slack", "discord", "google_chat", "pushover",
					       "apprise", "webhook", NULL };
static const char *const notify_slack_keys[] = { "service", "webhook_url", "sender_name",
						 "sender_icon", "channel", NULL };
static const char *const notify_chat_keys[] = { "service", "webhook_url", NULL };
static const char *const notify_pushover_keys[] = { "service", "app_token", "user_token",
						    "priority", "url", "title", NULL };
static const char *const notify_apprise_keys[] = { "service", "url", "title", NULL };
static const char *const notify_webhook_keys[] = { "service", "url", "headers", NULL };

/* http:// or https://, a host, and nothing that would end the URL early. */
static bool http_url(const char *s)
{
	const char *rest = NULL;
	if (strncasecmp(s, "http://", 7) == 0)
		rest = s + 7;
	else if (strncasecmp(s, "https://", 8) == 0)
		rest = s + 8;
	if (!rest)
		return false;
	const char *at = memchr(rest, '@', strcspn(rest, "/?#"));
	const char *host = at ? at + 1 : rest;
	if (!*host || strchr("/?#:", *host))
		return false;
	for (const char *c = s; *c; c++)
		if ((unsigned char)*c <= ' ' || *c == 0x7f)
			return false;
	return true;
}

/* "discord://" for "discord://id/token", so a message can say what kind of URL it got
 * without showing the token; "" when it does not start with a scheme. */
static void url_scheme(char *out, size_t len, const char *s)
{
	size_t n = strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+.-");
	if (n == 0 || n > 20 || strncmp(s + n, "://", 3) != 0)
		snprintf(out, len, "%s", "");
	else
		snprintf(out, len, "%.*s://", (int)n, s);
}

/*
 * A notification's URL. Never shown in a message: a webhook URL is its own password. An
 * apprise target (apprise != NULL) with another scheme is an apprise library URL, which only
 * Python's apprise can send to: a warning, and *apprise becomes true (the target is skipped).
 */
static int get_notify_url(struct ctx *x, const cJSON *o, const char *parent, const char *key,
			  const char *service, char **out, bool *apprise)
{
	char p[PATH_LEN], got[SHOW_VALUE_MAX * 6 + 8], scheme[32];
	const cJSON *v = get(o, key);
	kp(p, parent, key);
	if (!v || (cJSON_IsString(v) && !*v->valuestring))
		return fail(x, p, "missing: a %s notification needs it", service);
	if (!cJSON_IsString(v)) {
		describe(got, sizeof(got), v);
		return fail(x, p, "must be an http:// or https:// URL, got %s", got);
	}
	if (!http_url(v->valuestring)) {
		url_scheme(scheme, sizeof(scheme), v->valuestring);
		if (apprise && *scheme && strncasecmp(scheme, "http", 4) != 0) {
			*apprise = true;
			return warn(x, p, "an apprise library URL (%s...), which needs Python's "
					  "apprise; cplow posts to an Apprise API server's http(s) "
					  "URL: this notification is skipped", scheme);
		}
		if (*scheme)
			return fail(x, p, "must be an http:// or https:// URL with a host, got "
				    "one starting with %s (the rest is not shown: webhook URLs "
				    "hold tokens)", scheme);
		return fail(x, p, "must be an http:// or https:// URL with a host (the value is "
			    "not shown: webhook URLs hold tokens)");
	}
	return (*out = dup_or_fail(x, v->valuestring)) ? 0 : -1;
}

/* A string that cloudplow treats as unset when empty (slack's "channel": ""). */
static int get_optional_string(struct ctx *x, const cJSON *o, const char *parent, const char *key,
			       char **out)
{
	const cJSON *v = get(o, key);
	if (cJSON_IsString(v) && !*v->valuestring)
		return 0;
	return get_string(x, o, parent, key, out);
}

/* A string that must be there. */
static int get_required(struct ctx *x, const cJSON *o, const char *parent, const char *key,
			const char *service, char **out)
{
	char p[PATH_LEN];
	if (get_string(x, o, parent, key, out) < 0)
		return -1;
	if (!*out)
		return fail(x, kp(p, parent, key), "missing: a %s notification needs it", service);
	return 0;
}

/* HTTP's token characters (RFC 9110): what a header name may hold. */
static bool header_name(const char *s)
{
	if (!*s || strlen(s) > 100)
		return false;
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;
		bool alnum = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
			     (ch >= '0' && ch <= '9');
		if (!alnum && !strchr("!#$%&'*+-.^_`|~", ch))
			return false;
	}
	return true;
}

static int parse_headers(struct ctx *x, struct config_notification *n, const cJSON *o,
			 const char *parent)
{
	char p[PATH_LEN], pk[PATH_LEN], got[SHOW_VALUE_MAX * 6 + 8];
	static const char *const reserved[] = { "content-length", "transfer-encoding", "host",
						"content-type", "idempotency-key", "expect",
						NULL };
	kp(p, parent, "headers");
	if (want_object(x, o, p) < 0 || check_dups(x, o, p) < 0)
		return -1;
	size_t count = (size_t)cJSON_GetArraySize(o);
	if (count == 0)
		return 0;
	if (count > NOTIFY_HEADERS_MAX)
		return fail(x, p, "more than %d headers", NOTIFY_HEADERS_MAX);
	if (!(n->headers = calloc(count, sizeof(*n->headers))))
		return fail(x, x->file, "out of memory");
	for (const cJSON *i = o->child; i; i = i->next) {
		kp(pk, p, i->string);
		if (!header_name(i->string))
			return fail(x, pk, "not an HTTP header name (letters, digits and "
					   "!#$%%&'*+-.^_`|~)");
		char low[128];
		normalise(low, sizeof(low), i->string);
		for (char *c = low; *c; c++)
			if (*c == '_')
				*c = '-';
		if (in_list(low, reserved))
			return fail(x, pk, "set by cplow itself");
		if (!cJSON_IsString(i)) {
			describe(got, sizeof(got), i);
			return fail(x, pk, "must be a string, got %s", got);
		}
		for (const char *c = i->valuestring; *c; c++)
			if ((unsigned char)*c < 0x20 || *c == 0x7f)
				return fail(x, pk, "a header value holds no control characters "
					    "(the value is not shown: it may be a secret)");
		struct config_notify_header *h = &n->headers[n->header_count];
		if (!(h->name = dup_or_fail(x, i->string)))
			return -1;
		n->header_count++;
		if (!(h->value = dup_or_fail(x, i->valuestring)))
			return -1;
	}
	return 0;
}

static int parse_notification(struct ctx *x, struct config_notification *n, const cJSON *o,
			      const char *path)
{
	char p[PATH_LEN], got[SHOW_VALUE_MAX * 6 + 8];
	static const char *const *const keys[] = {
		[CONFIG_NOTIFY_SLACK] = notify_slack_keys,
		[CONFIG_NOTIFY_DISCORD] = notify_chat_keys,
		[CONFIG_NOTIFY_GOOGLE_CHAT] = notify_chat_keys,
		[CONFIG_NOTIFY_PUSHOVER] = notify_pushover_keys,
		[CONFIG_NOTIFY_APPRISE] = notify_apprise_keys,
		[CONFIG_NOTIFY_WEBHOOK] = notify_webhook_keys,
	};
	const char *name = n->name;
	if (!*name)
		return fail(x, path, "empty notification name");
	if (strlen(name) > NOTIFY_NAME_MAX)
		return fail(x, path, "name longer than %d bytes", NOTIFY_NAME_MAX);
	for (const char *c = name; *c; c++)
		if ((unsigned char)*c < 0x20 || *c == 0x7f)
			return fail(x, path, "a name holds no control characters");
	if (want_object(x, o, path) < 0 || check_dups(x, o, path) < 0)
		return -1;
	const cJSON *service = get(o, "service");
	kp(p, path, "service");
	if (!service)
		return fail(x, p, "missing: \"slack\", \"discord\", \"google_chat\", \"pushover\", "
				  "\"apprise\" or \"webhook\"");
	size_t k = 0;
	while (notify_services[k] &&
	       !(cJSON_IsString(service) && strcmp(service->valuestring, notify_services[k]) == 0))
		k++;
	if (!notify_services[k]) {
		describe(got, sizeof(got), service);
		return fail(x, p, "must be \"slack\", \"discord\", \"google_chat\", \"pushover\", "
				  "\"apprise\" or \"webhook\", got %s", got);
	}
	n->service = (enum config_notify_service)k;
	n->enabled = true;
	const char *sname = notify_services[k];
	if (check_object(x, o, path, keys[k], NULL) < 0)
		return -1;
	bool skipped = false;
	long long priority = 0;
	if (n->service == CONFIG_NOTIFY_SLACK &&
	    (!(n->sender_name = dup_or_fail(x, CONFIG_NOTIFY_SENDER_DEFAULT)) ||
	     !(n->sender_icon = dup_or_fail(x, CONFIG_NOTIFY_ICON_DEFAULT)) ||
	     get_string(x, o, path, "sender_name", &n->sender_name) < 0 ||
	     get_string(x, o, path, "sender_icon", &n->sender_icon) < 0 ||
	     get_optional_string(x, o, path, "channel", &n->channel) < 0))
		return -1;
	switch (n->service) {
	case CONFIG_NOTIFY_SLACK:
	case CONFIG_NOTIFY_DISCORD:
	case CONFIG_NOTIFY_GOOGLE_CHAT:
		return get_notify_url(x, o, path, "webhook_url", sname, &n->url, NULL);
	case CONFIG_NOTIFY_PUSHOVER:
		if (get_required(x, o, path, "app_token", sname, &n->app_token) < 0 ||
		    get_required(x, o, path, "user_token", sname, &n->user_token) < 0 ||
		    get_int(x, o, path, "priority", -2, 2, "an integer from -2 to 2", &priority,
			    NULL) < 0 ||
		    !(n->title = dup_or_fail(x, CONFIG_NOTIFY_TITLE_DEFAULT)) ||
		    get_string(x, o, path, "title", &n->title) < 0)
			return -1;
		n->priority = (int)priority;
		n->url_set = get(o, "url") != NULL;
		if (!n->url_set)
			return (n->url = dup_or_fail(x, CONFIG_NOTIFY_PUSHOVER_URL)) ? 0 : -1;
		return get_notify_url(x, o, path, "url", sname, &n->url, NULL);
	case CONFIG_NOTIFY_APPRISE:
		if (!(n->title = dup_or_fail(x, CONFIG_NOTIFY_TITLE_DEFAULT)) ||
		    get_string(x, o, path, "title", &n->title) < 0 ||
		    get_notify_url(x, o, path, "url", sname, &n->url, &skipped) < 0)
			return -1;
		n->enabled = !skipped;
		return 0;
	case CONFIG_NOTIFY_WEBHOOK: {
		const cJSON *headers = get(o, "headers");
		if (headers && parse_headers(x, n, headers, path) < 0)
			return -1;
		return get_notify_url(x, o, path, "url", sname, &n->url, NULL);
	}
	}
	return 0;
}

static int parse_notifications(struct ctx *x, const cJSON *root)
{
	struct config *c = x->c;
	const cJSON *o = get(root, "notifications");
	if (!o)
		return 0;
	if (want_object(x, o, "notifications") < 0 || check_dups(x, o, "notifications") < 0)
		return -1;
	size_t n = (size_t)cJSON_GetArraySize(o);
	if (n == 0)
		return 0;
	if (!(c->notifications = calloc(n, sizeof(*c->notifications))))
		return fail(x, x->file, "out of memory");
	for (const cJSON *i = o->child; i; i = i->next) {
		char p[PATH_LEN];
		struct config_notification *t = &c->notifications[c->notification_count];
		if (!(t->name = dup_or_fail(x, i->string)))
			return -1;
		c->notification_count++;
		if (parse_notification(x, t, i, kp(p, "notifications", i->string)) < 0)
			return -1;
	}
	return 0;
}

/* --- the top level --------------------------------------------------------------------- */

static const char *const sections[] = { "core", "remotes", "uploader", "quota", "stages",
					"dashboard", "plex", "nzbget", "sabnzbd", "notifications",
					NULL };
/* cloudplow's own sections that cplow does not implement (yet). */
static const char *const cloudplow_sections[] = { "hidden", "syncer", NULL };

static bool secret_key(const char *key)
{
	static const char *const words[] = { "pass", "token", "secret", "key", "credential",
					     "auth", "webhook", NULL };
	char low[256];
	if (!key)
		return false;
	normalise(low, sizeof(low), key);
	for (const char *const *w = words; *w; w++)
		if (strstr(low, *w))
			return true;
	return false;
}

/* scheme://user:pass@host: the part before '@' is a secret. */
static bool url_with_userinfo(const char *s)
{
	const char *p = strstr(s, "://");
	if (!p)
		return false;
	p += 3;
	size_t host_end = strcspn(p, "/?#");
	const char *at = memchr(p, '@', host_end);
	return at != NULL;
}

static bool url_key(const char *key)
{
	char low[256];
	if (!key)
		return false;
	normalise(low, sizeof(low), key);
	return strstr(low, "url") != NULL;
}

/* "***" under item's key: cJSON_ReplaceItemViaPointer() does not carry the key over. */
static cJSON *masked(const cJSON *item)
{
	cJSON *stars = cJSON_CreateString("***");
	if (stars && item->string && !(stars->string = strdup(item->string))) {
		cJSON_Delete(stars);
		return NULL;
	}
	return stars;
}

/* Replaces secrets in place (see config_print in config.h). */
static int mask_secrets(cJSON *node, bool in_notifications)
{
	for (cJSON *i = node->child; i; i = i->next) {
		bool is_empty = cJSON_IsNull(i) || (cJSON_IsString(i) && !*i->valuestring);
		bool mask = !is_empty && (secret_key(i->string) ||
					  (in_notifications && url_key(i->string)) ||
					  (cJSON_IsString(i) && url_with_userinfo(i->valuestring)));
		if (mask) {
			cJSON *stars = masked(i);
			if (!stars || !cJSON_ReplaceItemViaPointer(node, i, stars)) {
				cJSON_Delete(stars);
				return -1;
			}
			i = stars;
		} else if ((cJSON_IsObject(i) || cJSON_IsArray(i)) &&
			   mask_secrets(i, in_notifications) < 0) {
			return -1;
		}
	}
	return 0;
}

static int keep_ignored(struct ctx *x, cJSON *ignored, const cJSON *section)
{
	struct config *c = x->c;
	char **grown = realloc(c->ignored_sections,
			       (c->ignored_section_count + 1) * sizeof(*grown));
	if (!grown)
		return fail(x, x->file, "out of memory");
	c->ignored_sections = grown;
	if (!(c->ignored_sections[c->ignored_section_count] = dup_or_fail(x, section->string)))
		return -1;
	c->ignored_section_count++;
	cJSON *copy = cJSON_Duplicate(section, true);
	if (!copy)
		return fail(x, x->file, "out of memory");
	if (!cJSON_AddItemToObject(ignored, section->string, copy)) {
		cJSON_Delete(copy);
		return fail(x, x->file, "out of memory");
	}
	if (mask_secrets(copy, strcmp(section->string, "notifications") == 0) < 0)
		return fail(x, x->file, "out of memory");
	if (!cJSON_IsObject(copy) && !cJSON_IsArray(copy) && !cJSON_IsNull(copy) &&
	    secret_key(section->string)) {
		cJSON *stars = masked(copy);
		if (!stars || !cJSON_ReplaceItemViaPointer(ignored, copy, stars)) {
			cJSON_Delete(stars);
			return fail(x, x->file, "out of memory");
		}
	}
	return 0;
}

static int parse_top(struct ctx *x, const cJSON *root)
{
	struct config *c = x->c;
	char got[SHOW_VALUE_MAX * 6 + 8], p[PATH_LEN];
	if (!cJSON_IsObject(root)) {
		describe(got, sizeof(got), root);
		return fail(x, x->file, "the top level must be a JSON object, got %s", got);
	}
	if (check_dups(x, root, x->file) < 0)
		return -1;
	cJSON *ignored = cJSON_CreateObject();
	if (!ignored)
		return fail(x, x->file, "out of memory");
	int rc = -1;
	for (const cJSON *i = root->child; i; i = i->next) {
		if (in_list(i->string, sections))
			continue;
		const char *near = in_list(i->string, cloudplow_sections)
					   ? NULL
					   : near_miss(i->string, sections);
		if (near) {
			fail(x, kp(p, "", i->string), "unknown section (did you mean %s?)", near);
			goto out;
		}
		if (keep_ignored(x, ignored, i) < 0)
			goto out;
	}
	if (!(c->ignored_json = cJSON_PrintUnformatted(ignored))) {
		fail(x, x->file, "out of memory");
		goto out;
	}
	rc = 0;
out:
	cJSON_Delete(ignored);
	return rc;
}

/* path made absolute, and its directory. */
static int locate(struct ctx *x, const char *path)
{
	struct config *c = x->c;
	char *real = realpath(path, NULL);
	if (!real)
		return fail(x, x->file, "cannot resolve: %s", strerror(errno));
	c->path = real;
	if (!(c->dir = dup_or_fail(x, real)))
		return -1;
	char *slash = strrchr(c->dir, '/');
	if (slash == c->dir)
		slash[1] = '\0';
	else if (slash)
		*slash = '\0';
	return 0;
}

int config_load(const char *path, struct config *out, char *err, size_t err_len)
{
	struct config c;
	char shown[PATH_MAX * 2];
	memset(&c, 0, sizeof(c));
	struct ctx x = { .err = err, .err_len = err_len, .file = shown, .c = &c };
	cJSON *root = NULL;
	if (err && err_len)
		err[0] = '\0';
	if (!path || !out)
		return fail(&x, "config", "no path given");
	/* The path leads every file-level message, which must stay one line too. */
	show(shown, sizeof(shown), path, PATH_MAX, false);
	int rc = -1;
	if (parse_file(&x, path, &root) < 0 || locate(&x, path) < 0 || parse_top(&x, root) < 0 ||
	    parse_core(&x, root) < 0 || parse_remotes(&x, root) < 0 ||
	    parse_uploaders(&x, root) < 0 || parse_quota(&x, root) < 0 ||
	    parse_stages(&x, root) < 0 || parse_dashboard(&x, root) < 0 ||
	    parse_plex(&x, root) < 0 || parse_nzbget(&x, root) < 0 || parse_sabnzbd(&x, root) < 0 ||
	    parse_notifications(&x, root) < 0)
		goto out;
	*out = c;
	memset(&c, 0, sizeof(c));
	rc = 0;
out:
	cJSON_Delete(root);
	config_free(&c);
	return rc;
}

/* --- lookups and freeing --------------------------------------------------------------- */

const struct config_uploader *config_find_uploader(const struct config *c, const char *name)
{
	for (size_t i = 0; c && name && i < c->uploader_count; i++)
		if (strcmp(c->uploaders[i].name, name) == 0)
			return &c->uploaders[i];
	return NULL;
}

const struct config_remote *config_find_remote(const struct config *c, const char *name)
{
	for (size_t i = 0; c && name && i < c->remote_count; i++)
		if (strcmp(c->remotes[i].name, name) == 0)
			return &c->remotes[i];
	return NULL;
}

const char *config_command_name(enum config_command command)
{
	return command == CONFIG_COMMAND_COPY ? "copy" : "move";
}

static void free_list(char **list, size_t n)
{
	for (size_t i = 0; list && i < n; i++)
		free(list[i]);
	free(list);
}

void config_free(struct config *c)
{
	if (!c)
		return;
	free(c->path);
	free(c->dir);
	free(c->core.rclone_binary_path);
	free(c->core.rclone_config_path);
	for (size_t i = 0; i < c->remote_count; i++) {
		struct config_remote *r = &c->remotes[i];
		free(r->name);
		free(r->upload_folder);
		free(r->upload_remote);
		free_list(r->rclone_excludes, r->rclone_exclude_count);
		for (size_t k = 0; k < r->rclone_extra_count; k++) {
			free((void *)r->rclone_extras[k].name);
			free((void *)r->rclone_extras[k].value);
		}
		free(r->rclone_extras);
		for (size_t k = 0; k < r->rclone_sleep_count; k++)
			free((void *)r->rclone_sleeps[k].pattern);
		free(r->rclone_sleeps);
	}
	free(c->remotes);
	for (size_t i = 0; i < c->uploader_count; i++) {
		struct config_uploader *u = &c->uploaders[i];
		free(u->name);
		free_list(u->size_excludes, u->size_exclude_count);
		free_list(u->opened_excludes, u->opened_exclude_count);
		free(u->service_account_path);
		free_list(u->rotate_remotes, u->rotate_remote_count);
	}
	free(c->uploaders);
	free(c->quota.cache_path);
	free(c->quota.lock_path);
	for (size_t i = 0; i < c->stage_count; i++) {
		free(c->stages[i].name);
		free(c->stages[i].order_by);
	}
	free(c->stages);
	free(c->dashboard.host);
	free(c->dashboard.token);
	free(c->plex.url);
	free(c->plex.token);
	for (size_t i = 0; i < c->plex.throttle_speed_count; i++)
		free(c->plex.throttle_speeds[i].rate);
	free(c->plex.throttle_speeds);
	free(c->nzbget.url);
	free(c->sabnzbd.url);
	free(c->sabnzbd.apikey);
	for (size_t i = 0; i < c->notification_count; i++) {
		struct config_notification *n = &c->notifications[i];
		free(n->name);
		free(n->url);
		free(n->title);
		free(n->sender_name);
		free(n->sender_icon);
		free(n->channel);
		free(n->app_token);
		free(n->user_token);
		for (size_t k = 0; k < n->header_count; k++) {
			free(n->headers[k].name);
			free(n->headers[k].value);
		}
		free(n->headers);
	}
	free(c->notifications);
	free_list(c->ignored_sections, c->ignored_section_count);
	free_list(c->warnings, c->warning_count);
	free(c->ignored_json);
	memset(c, 0, sizeof(*c));
}

/* --- printing -------------------------------------------------------------------------- */

/* Builders that remember a failed allocation, so the tree is checked once at the end. */
struct out {
	bool oom;
};

static cJSON *add(struct out *o, cJSON *parent, const char *key, cJSON *item)
{
	if (!item) {
		o->oom = true;
		return NULL;
	}
	if (!parent)
		return item;
	bool ok = key ? cJSON_AddItemToObject(parent, key, item) : cJSON_AddItemToArray(parent,
											  item);
	if (!ok) {
		cJSON_Delete(item);
		o->oom = true;
		return NULL;
	}
	return item;
}

static cJSON *str_or_null(const char *s)
{
	return s ? cJSON_CreateString(s) : cJSON_CreateNull();
}

static cJSON *list(struct out *o, char **items, size_t n)
{
	cJSON *a = add(o, NULL, NULL, cJSON_CreateArray());
	for (size_t i = 0; a && i < n; i++)
		add(o, a, NULL, cJSON_CreateString(items[i]));
	return a;
}

static cJSON *time_or_null(int minutes)
{
	char hhmm[8];
	if (minutes < 0)
		return cJSON_CreateNull();
	snprintf(hhmm, sizeof(hhmm), "%02d:%02d", minutes / 60 % 100, minutes % 60);
	return cJSON_CreateString(hhmm);
}

static void print_remote(struct out *o, cJSON *parent, const struct config_remote *r)
{
	cJSON *ro = add(o, parent, r->name, cJSON_CreateObject());
	if (!ro)
		return;
	add(o, ro, "upload_folder", str_or_null(r->upload_folder));
	add(o, ro, "upload_remote", str_or_null(r->upload_remote));
	add(o, ro, "rclone_command", cJSON_CreateString(config_command_name(r->rclone_command)));
	add(o, ro, "rclone_excludes", list(o, r->rclone_excludes, r->rclone_exclude_count));
	cJSON *extras = add(o, ro, "rclone_extras", cJSON_CreateObject());
	for (size_t i = 0; extras && i < r->rclone_extra_count; i++) {
		const struct stage_flag *f = &r->rclone_extras[i];
		const char *v = f->value && secret_key(f->name) ? "***" : f->value;
		add(o, extras, f->name, str_or_null(v));
	}
	cJSON *sleeps = add(o, ro, "rclone_sleeps", cJSON_CreateObject());
	for (size_t i = 0; sleeps && i < r->rclone_sleep_count; i++) {
		const struct stage_trigger *t = &r->rclone_sleeps[i];
		cJSON *to = add(o, sleeps, t->pattern, cJSON_CreateObject());
		if (!to)
			break;
		add(o, to, "count", cJSON_CreateNumber(t->count));
		add(o, to, "sleep", cJSON_CreateNumber(t->sleep_hours));
		add(o, to, "timeout", cJSON_CreateNumber(t->timeout_s));
	}
	add(o, ro, "remove_empty_dir_depth",
	    r->remove_empty_dir_depth < 0 ? cJSON_CreateNull()
					  : cJSON_CreateNumber(r->remove_empty_dir_depth));
}

static void print_uploader(struct out *o, cJSON *parent, const struct config_uploader *u)
{
	cJSON *uo = add(o, parent, u->name, cJSON_CreateObject());
	if (!uo)
		return;
	add(o, uo, "check_interval", cJSON_CreateNumber(u->check_interval_min));
	add(o, uo, "max_size_gb", cJSON_CreateNumber(u->max_size_gb));
	add(o, uo, "size_excludes", list(o, u->size_excludes, u->size_exclude_count));
	add(o, uo, "exclude_open_files", cJSON_CreateBool(u->exclude_open_files));
	add(o, uo, "opened_excludes", list(o, u->opened_excludes, u->opened_exclude_count));
	cJSON *so = add(o, uo, "schedule", cJSON_CreateObject());
	if (so) {
		add(o, so, "enabled", cJSON_CreateBool(u->schedule.enabled));
		add(o, so, "allowed_from", time_or_null(u->schedule.allowed_from_min));
		add(o, so, "allowed_until", time_or_null(u->schedule.allowed_until_min));
	}
	add(o, uo, "service_account_path", str_or_null(u->service_account_path));
	if (u->rotate_remote_count)
		add(o, uo, "rotate_remotes", list(o, u->rotate_remotes, u->rotate_remote_count));
	else
		add(o, uo, "rotate_remotes", cJSON_CreateNull());
	cJSON *co = add(o, uo, "check", cJSON_CreateObject());
	if (co) {
		add(o, co, "type",
		    cJSON_CreateString(u->check_type == CONFIG_CHECK_AGE ? "age" : "size"));
		if (u->check_type == CONFIG_CHECK_AGE)
			add(o, co, "limit_minutes", cJSON_CreateNumber(u->check_limit_minutes));
	}
}

/* A URL with user:pass@ is masked whole; the token and the API key always. */
static cJSON *url_or_mask(const char *url)
{
	return str_or_null(url && url_with_userinfo(url) ? "***" : url);
}

static void print_downloaders(struct out *o, cJSON *root, const struct config *c)
{
	const struct config_plex *pl = &c->plex;
	cJSON *po = add(o, root, "plex", cJSON_CreateObject());
	if (po) {
		add(o, po, "enabled", cJSON_CreateBool(pl->enabled));
		add(o, po, "url", url_or_mask(pl->url));
		add(o, po, "token", str_or_null(pl->token ? "***" : NULL));
		add(o, po, "poll_interval", cJSON_CreateNumber(pl->poll_interval_s));
		add(o, po, "max_streams_before_throttle",
		    cJSON_CreateNumber(pl->max_streams_before_throttle));
		add(o, po, "ignore_local_streams", cJSON_CreateBool(pl->ignore_local_streams));
		cJSON *ro = add(o, po, "rclone", cJSON_CreateObject());
		cJSON *ts = ro ? add(o, ro, "throttle_speeds", cJSON_CreateObject()) : NULL;
		for (size_t i = 0; ts && i < pl->throttle_speed_count; i++) {
			char key[16];
			snprintf(key, sizeof(key), "%d", pl->throttle_speeds[i].streams);
			add(o, ts, key, cJSON_CreateString(pl->throttle_speeds[i].rate));
		}
	}
	cJSON *no = add(o, root, "nzbget", cJSON_CreateObject());
	if (no) {
		add(o, no, "enabled", cJSON_CreateBool(c->nzbget.enabled));
		add(o, no, "url", url_or_mask(c->nzbget.url));
	}
	cJSON *so = add(o, root, "sabnzbd", cJSON_CreateObject());
	if (so) {
		add(o, so, "enabled", cJSON_CreateBool(c->sabnzbd.enabled));
		add(o, so, "url", url_or_mask(c->sabnzbd.url));
		add(o, so, "apikey", str_or_null(c->sabnzbd.apikey ? "***" : NULL));
	}
}

/* Every URL masked (a webhook URL is its own password) but Pushover's default API. */
static void print_notifications(struct out *o, cJSON *root, const struct config *c)
{
	static const char *const services[] = {
		[CONFIG_NOTIFY_SLACK] = "slack", [CONFIG_NOTIFY_DISCORD] = "discord",
		[CONFIG_NOTIFY_GOOGLE_CHAT] = "google_chat", [CONFIG_NOTIFY_PUSHOVER] = "pushover",
		[CONFIG_NOTIFY_APPRISE] = "apprise", [CONFIG_NOTIFY_WEBHOOK] = "webhook",
	};
	cJSON *no = add(o, root, "notifications", cJSON_CreateObject());
	for (size_t i = 0; no && i < c->notification_count; i++) {
		const struct config_notification *n = &c->notifications[i];
		cJSON *to = add(o, no, n->name, cJSON_CreateObject());
		if (!to)
			break;
		add(o, to, "service", cJSON_CreateString(services[n->service]));
		if (n->service == CONFIG_NOTIFY_SLACK) {
			add(o, to, "sender_name", str_or_null(n->sender_name));
			add(o, to, "sender_icon", str_or_null(n->sender_icon));
			add(o, to, "channel", str_or_null(n->channel));
		}
		switch (n->service) {
		case CONFIG_NOTIFY_SLACK:
		case CONFIG_NOTIFY_DISCORD:
		case CONFIG_NOTIFY_GOOGLE_CHAT:
			add(o, to, "webhook_url", cJSON_CreateString("***"));
			break;
		case CONFIG_NOTIFY_PUSHOVER:
			add(o, to, "app_token", cJSON_CreateString("***"));
			add(o, to, "user_token", cJSON_CreateString("***"));
			add(o, to, "priority", cJSON_CreateNumber(n->priority));
			add(o, to, "title", str_or_null(n->title));
			add(o, to, "url", cJSON_CreateString(n->url_set ? "***" : n->url));
			break;
		case CONFIG_NOTIFY_APPRISE:
			add(o, to, "url", cJSON_CreateString("***"));
			add(o, to, "title", str_or_null(n->title));
			break;
		case CONFIG_NOTIFY_WEBHOOK: {
			add(o, to, "url", cJSON_CreateString("***"));
			cJSON *h = add(o, to, "headers", cJSON_CreateObject());
			for (size_t k = 0; h && k < n->header_count; k++)
				add(o, h, n->headers[k].name, cJSON_CreateString("***"));
			break;
		}
		}
	}
}

static cJSON *build(struct out *o, const struct config *c)
{
	cJSON *root = add(o, NULL, NULL, cJSON_CreateObject());
	if (!root)
		return NULL;
	cJSON *core = add(o, root, "core", cJSON_CreateObject());
	if (core) {
		add(o, core, "dry_run", cJSON_CreateBool(c->core.dry_run));
		add(o, core, "rclone_binary_path", str_or_null(c->core.rclone_binary_path));
		add(o, core, "rclone_config_path", str_or_null(c->core.rclone_config_path));
		add(o, core, "rclone_nice", cJSON_CreateNumber(c->core.rclone_nice));
	}
	cJSON *remotes = add(o, root, "remotes", cJSON_CreateObject());
	for (size_t i = 0; remotes && i < c->remote_count; i++)
		print_remote(o, remotes, &c->remotes[i]);
	cJSON *uploaders = add(o, root, "uploader", cJSON_CreateObject());
	for (size_t i = 0; uploaders && i < c->uploader_count; i++)
		print_uploader(o, uploaders, &c->uploaders[i]);
	cJSON *q = add(o, root, "quota", cJSON_CreateObject());
	if (q) {
		add(o, q, "daily_bytes", cJSON_CreateNumber((double)c->quota.daily_bytes));
		add(o, q, "window",
		    cJSON_CreateString(c->quota.window == LEDGER_WINDOW_ROLLING ? "rolling"
										: "fixed"));
		add(o, q, "min_free_bytes", cJSON_CreateNumber((double)c->quota.min_free_bytes));
		add(o, q, "continue_min_bytes",
		    cJSON_CreateNumber((double)c->quota.continue_min_bytes));
		add(o, q, "flush_interval_ms", cJSON_CreateNumber(c->quota.flush_interval_ms));
		add(o, q, "cache_path", str_or_null(c->quota.cache_path));
		add(o, q, "capacity", cJSON_CreateNumber(c->quota.capacity));
		add(o, q, "lock_path", str_or_null(c->quota.lock_path));
	}
	cJSON *stages = add(o, root, "stages", cJSON_CreateArray());
	for (size_t i = 0; stages && i < c->stage_count; i++) {
		const struct config_stage *s = &c->stages[i];
		cJSON *so = add(o, stages, NULL, cJSON_CreateObject());
		if (!so)
			break;
		add(o, so, "name", cJSON_CreateString(s->name));
		add(o, so, "min_share", cJSON_CreateNumber(s->min_share));
		add(o, so, "max_transfer_share", cJSON_CreateNumber(s->max_transfer_share));
		add(o, so, "max_size_share", cJSON_CreateNumber(s->max_size_share));
		add(o, so, "transfers", cJSON_CreateNumber(s->transfers));
		add(o, so, "order_by", str_or_null(s->order_by));
		add(o, so, "max_backlog", cJSON_CreateNumber(s->max_backlog));
	}
	cJSON *d = add(o, root, "dashboard", cJSON_CreateObject());
	if (d) {
		add(o, d, "enabled", cJSON_CreateBool(c->dashboard.enabled));
		add(o, d, "host", str_or_null(c->dashboard.host));
		add(o, d, "port", cJSON_CreateNumber(c->dashboard.port));
		add(o, d, "token", str_or_null(c->dashboard.token ? "***" : NULL));
		add(o, d, "refresh_seconds", cJSON_CreateNumber(c->dashboard.refresh_seconds));
	}
	print_downloaders(o, root, c);
	print_notifications(o, root, c);
	/* The ignored sections as the file has them, masked when they were loaded. */
	cJSON *ignored = c->ignored_json ? cJSON_Parse(c->ignored_json) : NULL;
	if (c->ignored_json && !ignored)
		o->oom = true;
	while (ignored && ignored->child) {
		cJSON *s = cJSON_DetachItemViaPointer(ignored, ignored->child);
		char *key = s->string;
		s->string = NULL;
		bool ok = cJSON_AddItemToObject(root, key, s);
		free(key);
		if (!ok) {
			cJSON_Delete(s);
			o->oom = true;
			break;
		}
	}
	cJSON_Delete(ignored);
	return root;
}

int config_print(const struct config *c, FILE *out)
{
	struct out o = { .oom = false };
	cJSON *root = build(&o, c);
	char *text = root && !o.oom ? cJSON_Print(root) : NULL;
	int rc = -1;
	if (text && fputs(text, out) >= 0 && fputc('\n', out) != EOF && fflush(out) == 0)
		rc = 0;
	free(text);
	cJSON_Delete(root);
	return rc;
}
