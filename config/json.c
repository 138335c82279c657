/*
 * The file: its size, UTF-8, and strict JSON (RFC 8259), then cJSON's tree; and the duplicate
 * keys cJSON keeps without a word.
 *
 * Why a scanner of our own and not cJSON alone: cJSON reports a failed parse as a position
 * only, without what was expected there, and it accepts what RFC 8259 does not (leading zeros,
 * "1.", "1e", raw control characters in strings, "\u0000", which truncates the string). Both a
 * reason for each error ("expected ',' or '}'", "invalid number: leading zeros are not
 * allowed") and the refusals need a pass that knows whether it is inside a string, a number or
 * between values: that pass is this scanner, so cJSON only builds the tree of text it passed.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"
#include "utf8.h"

/* The config has no reason to nest this deep; deeper input is refused before cJSON sees it. */
#define JSON_DEPTH_MAX 64

/* Offset of the first byte that is not part of valid UTF-8 (no overlongs, surrogates or
 * code points above U+10FFFF), or len. */
static size_t utf8_invalid_at(const unsigned char *s, size_t len)
{
	uint32_t rune;
	for (size_t i = 0, n; i < len; i += n)
		if ((n = utf8_decode_go(s + i, len - i, &rune)) == 1 && rune == UTF8_RUNE_ERROR)
			return i;
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
	sc->why = sc->pos >= sc->len ? "unexpected end of the file" : why;
	return -1;
}

/* The byte at the scan, or -1 at the end. */
static int peek(const struct scan *sc)
{
	return sc->pos < sc->len ? sc->s[sc->pos] : -1;
}

static void skip_ws(struct scan *sc)
{
	while (peek(sc) == ' ' || peek(sc) == '\t' || peek(sc) == '\n' || peek(sc) == '\r')
		sc->pos++;
}

static size_t digits(struct scan *sc)
{
	size_t n = 0;
	for (; peek(sc) >= '0' && peek(sc) <= '9'; n++)
		sc->pos++;
	return n;
}

/* Four hex digits at p (p + 4 is within the text), or -1. */
static long hex4(const unsigned char *p)
{
	char buf[5] = { (char)p[0], (char)p[1], (char)p[2], (char)p[3], '\0' };
	return strspn(buf, "0123456789abcdefABCDEF") == 4 ? strtol(buf, NULL, 16) : -1;
}

static int scan_string(struct scan *sc)
{
	size_t start = sc->pos++;
	for (int c; (c = peek(sc)) >= 0 && c != '"';) {
		const unsigned char *e = sc->s + sc->pos;
		long u = c == '\\' && e[1] == 'u' && sc->pos + 6 <= sc->len ? hex4(e + 2) : -1;
		if (c < 0x20)
			return scan_fail(sc, "control character in a string (write it escaped)");
		if (c != '\\') {
			sc->pos++;
		} else if (sc->pos + 1 >= sc->len) {
			break;
		} else if (e[1] && strchr("\"\\/bfnrt", e[1])) {
			sc->pos += 2;
		} else if (u < 0) {
			return scan_fail(sc, "invalid escape in a string");
		} else if (u == 0) {
			return scan_fail(sc, "\\u0000 in a string is not supported");
		} else if ((u >= 0xDC00 && u <= 0xDFFF) ||
			   (u >= 0xD800 && u <= 0xDBFF &&
			    !(sc->pos + 12 <= sc->len && e[6] == '\\' && e[7] == 'u' &&
			      hex4(e + 8) >= 0xDC00 && hex4(e + 8) <= 0xDFFF))) {
			return scan_fail(sc, "unpaired UTF-16 surrogate in a string");
		} else {
			sc->pos += u >= 0xD800 && u <= 0xDBFF ? 12 : 6;
		}
	}
	if (peek(sc) == '"') {
		sc->pos++;
		return 0;
	}
	sc->pos = start;
	sc->why = "string not terminated";
	return -1;
}

static int scan_number(struct scan *sc)
{
	sc->pos += peek(sc) == '-';
	if (peek(sc) == '0' && sc->pos + 1 < sc->len && sc->s[sc->pos + 1] >= '0' &&
	    sc->s[sc->pos + 1] <= '9')
		return scan_fail(sc, "invalid number: leading zeros are not allowed");
	if (!digits(sc))
		return scan_fail(sc, "invalid number");
	if (peek(sc) == '.') {
		sc->pos++;
		if (!digits(sc))
			return scan_fail(sc, "invalid number: a digit must follow '.'");
	}
	if (peek(sc) == 'e' || peek(sc) == 'E') {
		sc->pos++;
		sc->pos += peek(sc) == '+' || peek(sc) == '-';
		if (!digits(sc))
			return scan_fail(sc, "invalid number: a digit must follow the exponent");
	}
	return 0;
}

static int scan_container(struct scan *sc, int depth, bool object)
{
	int close = object ? '}' : ']';
	if (depth >= JSON_DEPTH_MAX)
		return scan_fail(sc, "nested deeper than 64 levels");
	sc->pos++;
	skip_ws(sc);
	if (peek(sc) == close) {
		sc->pos++;
		return 0;
	}
	for (;;) {
		if (object && peek(sc) != '"')
			return scan_fail(sc, "expected a key in double quotes");
		if (object && scan_string(sc) < 0)
			return -1;
		skip_ws(sc);
		if (object && peek(sc) != ':')
			return scan_fail(sc, "expected ':'");
		sc->pos += object;
		skip_ws(sc);
		if (scan_value(sc, depth + 1) < 0)
			return -1;
		skip_ws(sc);
		if (peek(sc) == close) {
			sc->pos++;
			return 0;
		}
		if (peek(sc) != ',')
			return scan_fail(sc, object ? "expected ',' or '}'" : "expected ',' or ']'");
		sc->pos++;
		skip_ws(sc);
	}
}

static int scan_value(struct scan *sc, int depth)
{
	static const char *const literals[] = { "true", "false", "null" };
	int c = peek(sc);
	if (c == '{' || c == '[')
		return scan_container(sc, depth, c == '{');
	if (c == '"')
		return scan_string(sc);
	if (c == '-' || (c >= '0' && c <= '9'))
		return scan_number(sc);
	for (size_t i = 0; i < 3; i++) {
		size_t n = strlen(literals[i]);
		if (c == literals[i][0] && sc->len - sc->pos >= n &&
		    memcmp(sc->s + sc->pos, literals[i], n) == 0) {
			sc->pos += n;
			return 0;
		}
	}
	if (c == 'T' || c == 'F' || c == 'N')
		return scan_fail(sc, "expected a value (JSON writes true, false and null in lower "
				     "case)");
	return scan_fail(sc, "expected a value");
}

/* 0, or -1 with the offset and the reason of the first error in *sc. */
static int scan_json(struct scan *sc)
{
	skip_ws(sc);
	if (scan_value(sc, 0) < 0)
		return -1;
	skip_ws(sc);
	return sc->pos < sc->len ? scan_fail(sc, "unexpected text after the JSON value") : 0;
}

/* At most CONFIG_FILE_MAX bytes, NUL-terminated; *text is the caller's. */
static int read_config(struct ctx *x, const char *path, char **text, size_t *len)
{
	struct stat st;
	size_t got = 0;
	ssize_t n = 1;
	char *buf = NULL;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return ck_fail(x, x->file, "cannot open: %s", strerror(errno));
	if (fstat(fd, &st) < 0)
		ck_fail(x, x->file, "cannot stat: %s", strerror(errno));
	else if (S_ISDIR(st.st_mode))
		ck_fail(x, x->file, "is a directory");
	else if (S_ISREG(st.st_mode) && (uint64_t)st.st_size > CONFIG_FILE_MAX)
		ck_fail(x, x->file, "larger than 1 MiB");
	else if (!(buf = malloc(CONFIG_FILE_MAX + 2)))
		ck_fail(x, x->file, "out of memory");
	/* The size can change under us (or is unknown for a pipe): read at most one byte more
	 * than the limit, so that a file growing past it is still refused. */
	while (buf && got <= CONFIG_FILE_MAX && n > 0)
		if ((n = read(fd, buf + got, CONFIG_FILE_MAX + 1 - got)) > 0)
			got += (size_t)n;
		else if (n < 0 && errno == EINTR)
			n = 1;
	if (buf && n < 0)
		ck_fail(x, x->file, "cannot read: %s", strerror(errno));
	else if (buf && got > CONFIG_FILE_MAX)
		ck_fail(x, x->file, "larger than 1 MiB");
	close(fd);
	if (!buf || n < 0 || got > CONFIG_FILE_MAX) {
		free(buf);
		return -1;
	}
	buf[got] = '\0';
	*text = buf;
	*len = got;
	return 0;
}

/* The whole file checked and parsed; *root is the caller's. */
int ck_parse_file(struct ctx *x, const char *path, cJSON **root)
{
	char *text = NULL;
	size_t len = 0, line = 1, col = 1;
	if (read_config(x, path, &text, &len) < 0)
		return -1;
	const unsigned char *s = (const unsigned char *)text;
	/* Windows editors add a byte-order mark; it carries no meaning in UTF-8. */
	size_t bad = utf8_invalid_at(s, len);
	size_t skip = len >= 3 && memcmp(s, "\xef\xbb\xbf", 3) == 0 ? 3 : 0;
	struct scan sc = { .s = s + skip, .len = len - skip };
	skip_ws(&sc);
	bool empty = sc.pos == sc.len;
	sc.pos = 0;
	if (bad < len) {
		ck_fail(x, x->file, "not UTF-8 at byte %zu", bad);
	} else if (empty) {
		ck_fail(x, x->file, "empty file");
	} else if (scan_json(&sc) < 0) {
		/* Columns count characters, not bytes. */
		for (size_t i = 0; i < sc.pos; i++) {
			col = sc.s[i] == '\n' ? 1 : col + ((sc.s[i] & 0xC0) != 0x80);
			line += sc.s[i] == '\n';
		}
		ck_fail(x, x->file, "not valid JSON at line %zu, column %zu: %s", line, col, sc.why);
	} else if (!(*root = cJSON_ParseWithLength(text + skip, len - skip))) {
		/* Valid JSON that cJSON cannot take can only be a failed allocation. */
		ck_fail(x, x->file, "out of memory while parsing");
	}
	free(text);
	return *root ? 0 : -1;
}

/* --- duplicate keys ------------------------------------------------------------------- */

struct keyref {
	const char *key;
	size_t index;
};

static int keyref_cmp(const void *a, const void *b)
{
	const struct keyref *ka = a, *kb = b;
	int r = strcmp(ka->key, kb->key);
	return r ? r : (ka->index > kb->index) - (ka->index < kb->index);
}

/* Duplicate keys, reported for the key whose second appearance comes first in the file.
 * Sorting keeps a hostile file with 100k keys from costing 10^10 comparisons. */
int ck_check_dups(struct ctx *x, const cJSON *obj, const char *path)
{
	char shown[SHOW_KEY_MAX * 6 + 8];
	size_t n = (size_t)cJSON_GetArraySize(obj), k = 0, best = SIZE_MAX, first = 0, times = 0;
	struct keyref *refs = n > 1 ? malloc(n * sizeof(*refs)) : NULL;
	if (n > 1 && !refs)
		return ck_fail(x, x->file, "out of memory");
	for (const cJSON *i = refs ? obj->child : NULL; i; i = i->next, k++)
		refs[k] = (struct keyref){ .key = i->string ? i->string : "", .index = k };
	if (refs)
		qsort(refs, n, sizeof(*refs), keyref_cmp);
	/* refs[first] starts the run of equal keys the earliest second appearance is in */
	for (size_t i = 1, run = 0; i < n; i++) {
		if (strcmp(refs[i].key, refs[i - 1].key) != 0) {
			run = i;
		} else if (refs[i].index < best) {
			best = refs[i].index;
			first = run;
		}
	}
	while (best != SIZE_MAX && first + times < n &&
	       strcmp(refs[first + times].key, refs[first].key) == 0)
		times++;
	if (best != SIZE_MAX)
		ck_show(shown, sizeof(shown), refs[first].key, SHOW_KEY_MAX, true);
	free(refs);
	if (best == SIZE_MAX)
		return 0;
	return times == 2 ? ck_fail(x, path, "%s appears twice", shown)
			  : ck_fail(x, path, "%s appears %zu times", shown, times);
}
