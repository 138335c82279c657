#include "triggers.h"

#include <limits.h>
#include <regex.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Room kept for a pattern inside an init message, so the reason after it always fits. */
#define ERR_PATTERN_MAX 96

struct triggers_entry {
	char *pattern;             /* as configured */
	bool is_regex;
	bool regex_compiled;       /* regfree() only what regcomp() filled */
	regex_t regex;
	unsigned char *needle;     /* substring, ASCII-folded to lower case */
	size_t needle_len;
	size_t *border;            /* KMP: border[q] = longest proper border of needle[0..q] */
	int count;
	int timeout_s;
	double sleep_hours;
	int64_t sleep_ms;
	int hits;                  /* in the current window; 0 before the first hit */
	int64_t first_hit_ms;
	int64_t last_hit_ms;
};

/* ASCII only, unlike tolower(): the result must not depend on the process's locale. */
static unsigned char fold(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') ? (unsigned char)(c - 'A' + 'a') : c;
}

/*
 * Writes s quoted, with '"', '\' and control bytes escaped, into out (cap bytes, NUL included;
 * cap >= 6). When it does not fit, the pattern is cut before a whole escape and before a whole
 * UTF-8 character and ends in "...". Returns the length written.
 */
static size_t quote(const char *s, char *out, size_t cap)
{
	static const char hex[] = "0123456789abcdef";
	size_t total = 2;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		total += (*p == '"' || *p == '\\') ? 2 : (*p < 0x20 || *p == 0x7f) ? 4 : 1;
	/* Room left for the closing quote and NUL, plus "..." if the pattern must be cut. */
	size_t reserve = total < cap ? 2 : 5;

	size_t used = 0, i = 0;
	out[used++] = '"';
	for (; s[i]; i++) {
		unsigned char c = (unsigned char)s[i];
		char piece[4];
		size_t piece_len = 0;
		if (c == '"' || c == '\\') {
			piece[piece_len++] = '\\';
			piece[piece_len++] = (char)c;
		} else if (c < 0x20 || c == 0x7f) {
			piece[piece_len++] = '\\';
			piece[piece_len++] = 'x';
			piece[piece_len++] = hex[c >> 4];
			piece[piece_len++] = hex[c & 0xf];
		} else {
			piece[piece_len++] = (char)c;
		}
		if (used + piece_len + reserve > cap)
			break;
		memcpy(out + used, piece, piece_len);
		used += piece_len;
	}
	if (s[i]) {
		/* Cut before the whole UTF-8 character: bytes >= 0x80 were copied one for one, so
		 * popping them walks back over its lead byte. */
		while (i > 0 && ((unsigned char)s[i] & 0xc0) == 0x80 &&
		       (unsigned char)s[i - 1] >= 0x80) {
			i--;
			used--;
		}
		memcpy(out + used, "...", 3);
		used += 3;
	}
	out[used++] = '"';
	out[used] = '\0';
	return used;
}

static void set_error(char *err, size_t err_len, const char *pattern, size_t index,
		      const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* "rclone_sleeps "PATTERN": REASON", or "rclone_sleeps entry N: REASON" without a pattern. */
static void set_error(char *err, size_t err_len, const char *pattern, size_t index,
		      const char *fmt, ...)
{
	if (!err || err_len == 0)
		return;
	char who[ERR_PATTERN_MAX + 32];
	if (pattern && *pattern) {
		char quoted[ERR_PATTERN_MAX];
		quote(pattern, quoted, sizeof(quoted));
		snprintf(who, sizeof(who), "rclone_sleeps %s", quoted);
	} else {
		snprintf(who, sizeof(who), "rclone_sleeps entry %zu", index + 1);
	}
	char reason[TRIGGERS_ERR_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(reason, sizeof(reason), fmt, ap);
	va_end(ap);
	snprintf(err, err_len, "%s: %s", who, reason);
}

static void free_entry(struct triggers_entry *e)
{
	if (e->regex_compiled)
		regfree(&e->regex);
	free(e->pattern);
	free(e->needle);
	free(e->border);
	memset(e, 0, sizeof(*e));
}

static int build_needle(struct triggers_entry *e)
{
	size_t m = strlen(e->pattern);
	e->needle = malloc(m);
	e->border = malloc(m * sizeof(*e->border));
	if (!e->needle || !e->border)
		return -1;
	for (size_t i = 0; i < m; i++)
		e->needle[i] = fold((unsigned char)e->pattern[i]);
	e->needle_len = m;
	e->border[0] = 0;
	for (size_t q = 1, k = 0; q < m; q++) {
		while (k > 0 && e->needle[q] != e->needle[k])
			k = e->border[k - 1];
		if (e->needle[q] == e->needle[k])
			k++;
		e->border[q] = k;
	}
	return 0;
}

/* Validates one definition and fills *e; on failure the caller frees *e. */
static int build_entry(struct triggers_entry *e, const struct stage_trigger *def, size_t index,
		       char *err, size_t err_len)
{
	const char *p = def->pattern;
	const size_t prefix_len = strlen(TRIGGERS_REGEX_PREFIX);

	if (!p || !*p) {
		set_error(err, err_len, NULL, index, "empty pattern: it would hit every line");
		return -1;
	}
	if (def->count < 1) {
		set_error(err, err_len, p, index, "count must be at least 1 (got %d)", def->count);
		return -1;
	}
	/* Written so that NaN fails too. */
	if (!(def->sleep_hours > 0 && def->sleep_hours <= TRIGGERS_SLEEP_HOURS_MAX)) {
		set_error(err, err_len, p, index,
			  "sleep must be more than 0 and at most %g hours (got %g)",
			  TRIGGERS_SLEEP_HOURS_MAX, def->sleep_hours);
		return -1;
	}
	if (def->timeout_s < 0) {
		set_error(err, err_len, p, index, "timeout must be 0 or more seconds (got %d)",
			  def->timeout_s);
		return -1;
	}
	if (def->timeout_s == 0 && def->count > 1) {
		set_error(err, err_len, p, index,
			  "timeout 0 s closes every window at its first hit, so count %d is never "
			  "reached", def->count);
		return -1;
	}

	e->pattern = strdup(p);
	if (!e->pattern) {
		set_error(err, err_len, p, index, "out of memory");
		return -1;
	}
	e->count = def->count;
	e->timeout_s = def->timeout_s;
	e->sleep_hours = def->sleep_hours;
	/* Rounded up, so a positive sleep never becomes a 0 ms ban (and no libm for ceil()). */
	double sleep_ms = def->sleep_hours * 3600.0 * 1000.0;
	e->sleep_ms = (int64_t)sleep_ms;
	if ((double)e->sleep_ms < sleep_ms)
		e->sleep_ms++;

	if (strncmp(p, TRIGGERS_REGEX_PREFIX, prefix_len) != 0) {
		if (build_needle(e) < 0) {
			set_error(err, err_len, p, index, "out of memory");
			return -1;
		}
		return 0;
	}

	e->is_regex = true;
	const char *expr = p + prefix_len;
	if (!*expr) {
		set_error(err, err_len, p, index, "empty regex: it would hit every line");
		return -1;
	}
	int rc = regcomp(&e->regex, expr, REG_EXTENDED | REG_ICASE | REG_NOSUB);
	if (rc != 0) {
		char why[128];
		regerror(rc, &e->regex, why, sizeof(why));
		set_error(err, err_len, p, index, "invalid regex: %s", why);
		return -1;
	}
	e->regex_compiled = true;
	if (regexec(&e->regex, "", 0, NULL, 0) == 0) {
		set_error(err, err_len, p, index,
			  "regex matches the empty string: it would hit every line");
		return -1;
	}
	return 0;
}

int triggers_init(struct triggers *t, const struct stage_trigger *defs, size_t n, char *err,
		  size_t err_len)
{
	struct triggers made;
	memset(&made, 0, sizeof(made));
	int rc = -1;
	bool any_regex = false;

	if (n > INT_MAX) {
		/* triggers_feed() returns an int index. */
		set_error(err, err_len, NULL, 0, "too many triggers (%zu)", n);
		return -1;
	}
	if (n > 0) {
		made.entries = calloc(n, sizeof(*made.entries));
		if (!made.entries) {
			set_error(err, err_len, NULL, 0, "out of memory for %zu triggers", n);
			return -1;
		}
	}
	for (size_t i = 0; i < n; i++) {
		made.entry_count = i + 1; /* the failed entry is freed too */
		if (build_entry(&made.entries[i], &defs[i], i, err, err_len) < 0)
			goto out;
		any_regex = any_regex || made.entries[i].is_regex;
	}
	if (any_regex) {
		/* Once, here: the copy for regexec() must not cost a malloc per line. */
		made.regex_text_cap = TRIGGERS_REGEX_TEXT_MAX + 1;
		made.regex_text = malloc(made.regex_text_cap);
		if (!made.regex_text) {
			set_error(err, err_len, NULL, 0, "out of memory for the regex buffer");
			goto out;
		}
	}
	*t = made;
	rc = 0;
out:
	if (rc < 0)
		triggers_free(&made);
	return rc;
}

/* Knuth-Morris-Pratt over folded bytes: linear in len whatever the needle. */
static bool substring_hits(const struct triggers_entry *e, const char *text, size_t len)
{
	size_t q = 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = fold((unsigned char)text[i]);
		while (q > 0 && e->needle[q] != c)
			q = e->border[q - 1];
		if (e->needle[q] == c && ++q == e->needle_len)
			return true;
	}
	return false;
}

/* buf holds len bytes and a NUL after them; NULs inside split it into pieces, tried one by one
 * (an empty piece cannot match: init rejects regexes that match ""). */
static bool regex_hits(const regex_t *re, const char *buf, size_t len)
{
	const char *p = buf, *end = buf + len;
	while (p < end) {
		size_t piece = strlen(p);
		if (piece > 0 && regexec(re, p, 0, NULL, 0) == 0)
			return true;
		p += piece + 1;
	}
	return false;
}

static void count_hit(struct triggers_entry *e, int64_t now_ms)
{
	bool window_over;
	if (e->hits == 0 || now_ms < e->first_hit_ms) {
		window_over = true;
	} else {
		/* Unsigned: the difference of two int64 may not fit in one. */
		uint64_t elapsed_ms = (uint64_t)now_ms - (uint64_t)e->first_hit_ms;
		window_over = elapsed_ms >= (uint64_t)e->timeout_s * 1000u;
	}
	if (window_over) {
		e->hits = 1;
		e->first_hit_ms = now_ms;
	} else {
		e->hits++; /* < count <= INT_MAX: the set stops counting once one fires */
	}
	e->last_hit_ms = now_ms;
}

int triggers_feed(struct triggers *t, const char *text, size_t len, int64_t now_ms)
{
	if (t->fired || !text || len == 0)
		return -1;

	size_t regex_len = 0;
	bool regex_text_ready = false;
	int fired = -1;
	for (size_t i = 0; i < t->entry_count; i++) {
		struct triggers_entry *e = &t->entries[i];
		bool hit;
		if (e->is_regex) {
			if (!regex_text_ready) {
				regex_len = len < TRIGGERS_REGEX_TEXT_MAX ? len : TRIGGERS_REGEX_TEXT_MAX;
				memcpy(t->regex_text, text, regex_len);
				t->regex_text[regex_len] = '\0';
				regex_text_ready = true;
			}
			hit = regex_hits(&e->regex, t->regex_text, regex_len);
		} else {
			hit = substring_hits(e, text, len);
		}
		if (!hit)
			continue;
		count_hit(e, now_ms);
		if (fired < 0 && e->hits >= e->count)
			fired = (int)i;
	}
	if (fired < 0)
		return -1;

	const struct triggers_entry *e = &t->entries[fired];
	t->fired = true;
	t->fire = (struct triggers_fire){
		.index = fired,
		.pattern = e->pattern,
		.hits = e->hits,
		.timeout_s = e->timeout_s,
		.sleep_hours = e->sleep_hours,
		.sleep_ms = e->sleep_ms,
		.first_hit_ms = e->first_hit_ms,
		.fired_at_ms = e->last_hit_ms,
	};
	return fired;
}

const struct triggers_fire *triggers_fired(const struct triggers *t)
{
	return t->fired ? &t->fire : NULL;
}

void triggers_describe(const struct triggers *t, int index, char *out, size_t len)
{
	if (len == 0)
		return;
	out[0] = '\0';
	if (index < 0 || (size_t)index >= t->entry_count)
		return;

	const struct triggers_entry *e = &t->entries[index];
	char suffix[64];
	if (e->hits == 0) {
		snprintf(suffix, sizeof(suffix), " not seen");
	} else if (e->hits == 1) {
		snprintf(suffix, sizeof(suffix), " seen once");
	} else {
		uint64_t span_ms = (uint64_t)e->last_hit_ms - (uint64_t)e->first_hit_ms;
		snprintf(suffix, sizeof(suffix), " seen %d times in %llu s", e->hits,
			 (unsigned long long)((span_ms + 999) / 1000));
	}

	size_t suffix_len = strlen(suffix);
	if (len < suffix_len + sizeof("\"...\"")) {
		/* Too small for any part of the pattern: the counts are the useful half. */
		snprintf(out, len, "%s", suffix + 1);
		return;
	}
	size_t used = quote(e->pattern, out, len - suffix_len);
	memcpy(out + used, suffix, suffix_len + 1);
}

void triggers_free(struct triggers *t)
{
	for (size_t i = 0; i < t->entry_count; i++)
		free_entry(&t->entries[i]);
	free(t->entries);
	free(t->regex_text);
	memset(t, 0, sizeof(*t));
}
