/*
 * The walker: reads, checks, prints and frees any section by its rows (internal.h), and the
 * messages every check in config/ is written with.
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "internal.h"
#include "utf8.h"

/* --- messages -------------------------------------------------------------------------- */

static bool push_line(char ***lines, size_t *count, const char *line)
{
	char **grown = realloc(*lines, (*count + 1) * sizeof(*grown));
	char *copy = grown ? strdup(line) : NULL;
	if (grown)
		*lines = grown;
	if (copy)
		grown[(*count)++] = copy;
	return copy != NULL;
}

static bool push_error(struct config_errors *e, const char *line)
{
	if (e->count < CONFIG_ERRORS_MAX)
		return push_line(&e->lines, &e->count, line);
	e->more++;
	return true;
}

static void note(struct ctx *x, bool error, const char *path, const char *fmt, va_list ap)
{
	char msg[CONFIG_ERR_MAX];
	int n = snprintf(msg, sizeof(msg), "%s: ", path);
	if (n >= 0 && (size_t)n < sizeof(msg))
		vsnprintf(msg + n, sizeof(msg) - (size_t)n, fmt, ap);
	if (!(error ? push_error(x->errs, msg)
		    : push_line(&x->c->warnings, &x->c->warning_count, msg)))
		x->stop = true;
}

int config_errors_add(struct config_errors *errors, const char *fmt, ...)
{
	char msg[CONFIG_ERR_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return push_error(errors, msg) ? 0 : -1;
}

int ck_fail(struct ctx *x, const char *path, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	note(x, true, path, fmt, ap);
	va_end(ap);
	return -1;
}

void ck_warn(struct ctx *x, const char *path, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	note(x, false, path, fmt, ap);
	va_end(ap);
}

int ck_must(struct ctx *x, const char *path, const cJSON *v, const char *what)
{
	char got[GOT_LEN];
	ck_describe(got, sizeof(got), v);
	return ck_fail(x, path, "must be %s, got %s", what, got);
}

size_t ck_errors(const struct ctx *x)
{
	return x->errs->count + x->errs->more;
}

/* Appends s to out when it fits whole. */
static bool put(char *out, size_t len, size_t *o, const char *s)
{
	size_t n = strlen(s);
	if (*o + n + 1 > len)
		return false;
	memcpy(out + *o, s, n + 1);
	*o += n;
	return true;
}

/* s escaped as in JSON, so that a message stays on one line whatever the file holds, cut
 * after `max` bytes of input (never inside a UTF-8 sequence) with "...". */
void ck_show(char *out, size_t len, const char *s, size_t max, bool quoted)
{
	size_t slen = strlen(s), keep = slen, o = 0;
	if (len == 0)
		return;
	out[0] = '\0';
	if (keep > max)
		keep = utf8_cut(s, max);
	bool ok = !quoted || put(out, len, &o, "\"");
	for (size_t i = 0; ok && i < keep; i++) {
		unsigned char ch = (unsigned char)s[i];
		char esc[8] = { (char)ch, '\0' };
		if ((ch == '"' && quoted) || ch == '\\')
			snprintf(esc, sizeof(esc), "\\%c", ch);
		else if (ch == '\n' || ch == '\t' || ch == '\r')
			snprintf(esc, sizeof(esc), "\\%c", ch == '\n' ? 'n' : ch == '\t' ? 't' : 'r');
		else if (ch < 0x20 || ch == 0x7f)
			snprintf(esc, sizeof(esc), "\\u%04x", ch);
		ok = put(out, len, &o, esc);
	}
	if (ok && (keep == slen || put(out, len, &o, "...")) && quoted)
		put(out, len, &o, "\"");
}

/* The shortest decimal that reads back as v, without a trailing ".0": 8 → "8", 0.5 → "0.5". */
void ck_number(char *out, size_t len, double v)
{
	if (v == trunc(v) && fabs(v) < 1e18) {
		snprintf(out, len, "%.0f", v == 0 ? 0.0 : v);
		return;
	}
	for (int prec = 1; prec <= 17; prec++) {
		snprintf(out, len, "%.*g", prec, v);
		if (strtod(out, NULL) == v)
			return;
	}
}

/* What a value is, for "got ...". */
void ck_describe(char *out, size_t len, const cJSON *v)
{
	if (cJSON_IsString(v))
		ck_show(out, len, v->valuestring, SHOW_VALUE_MAX, true);
	else if (cJSON_IsNumber(v) && isfinite(v->valuedouble))
		ck_number(out, len, v->valuedouble);
	else
		snprintf(out, len, "%s", cJSON_IsNumber(v) ? "a number too large to hold"
					 : cJSON_IsTrue(v)   ? "true"
					 : cJSON_IsFalse(v)  ? "false"
					 : cJSON_IsNull(v)   ? "null"
					 : cJSON_IsArray(v)  ? "a list"
							     : "an object");
}

/* "\"a\", \"b\" or \"c\"" */
void ck_words(char *out, size_t len, const char *const *words)
{
	size_t o = 0;
	out[0] = '\0';
	for (size_t i = 0; words[i] && o < len; i++)
		o += (size_t)snprintf(out + o, len - o, "%s\"%s\"",
				      i == 0 ? "" : words[i + 1] ? ", " : " or ", words[i]);
}

/* Appends the strings to out (PATH_LEN bytes); a path longer than that is cut: what is left
 * still says where to look. */
static const char *path(char *out, const char *a, const char *b, const char *c, const char *d)
{
	const char *parts[] = { a, b, c, d };
	size_t o = 0;
	for (size_t i = 0; i < 4; i++) {
		size_t n = strnlen(parts[i], PATH_LEN - 1 - o);
		memcpy(out + o, parts[i], n);
		o += n;
	}
	out[o] = '\0';
	return out;
}

/* parent.key, or parent["key"] for a key that is not a plain name. parent may not be out. */
const char *config_key(char *out, const char *parent, const char *key)
{
	static const char plain[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-";
	char shown[SHOW_KEY_MAX * 6 + 8];
	size_t n = strlen(key);
	if (n && n <= SHOW_KEY_MAX && strspn(key, plain) == n)
		return path(out, parent, *parent ? "." : "", key, "");
	ck_show(shown, sizeof(shown), key, SHOW_KEY_MAX, true);
	return path(out, parent, "[", shown, "]");
}

const char *ck_index(char *out, const char *parent, size_t index)
{
	char num[32];
	snprintf(num, sizeof(num), "[%zu]", index);
	return path(out, parent, num, "", "");
}

static void *oom(struct ctx *x)
{
	ck_fail(x, x->file, "out of memory");
	x->stop = true;
	return NULL;
}

char *ck_strdup(struct ctx *x, const char *s)
{
	char *d = strdup(s);
	return d ? d : oom(x);
}

void *ck_calloc(struct ctx *x, size_t n, size_t size)
{
	void *p = calloc(n, size);
	return p ? p : oom(x);
}

/* The value of key, or NULL when it is absent or JSON null ("not set"). */
const cJSON *ck_get(const cJSON *obj, const char *key)
{
	const cJSON *v = cJSON_IsObject(obj) ? cJSON_GetObjectItemCaseSensitive(obj, key) : NULL;
	return cJSON_IsNull(v) ? NULL : v;
}

/* cJSON's add, which keeps nothing on failure: o is deleted and NULL returned. */
cJSON *ck_add(cJSON *o, const char *key, cJSON *v)
{
	if (o && (!v || !(key ? cJSON_AddItemToObject(o, key, v) : cJSON_AddItemToArray(o, v)))) {
		cJSON_Delete(v);
		cJSON_Delete(o);
		return NULL;
	}
	return o;
}

void ck_normalise(char *out, size_t len, const char *key)
{
	size_t i = 0;
	for (; key[i] && i + 1 < len; i++) {
		char ch = key[i];
		out[i] = ch >= 'A' && ch <= 'Z' ? (char)(ch - 'A' + 'a') : ch == '-' ? '_' : ch;
	}
	out[i] = '\0';
}

/* scheme://user:pass@host: the part before '@' is a secret. */
bool ck_url_userinfo(const char *s)
{
	const char *p = strstr(s, "://");
	return p && memchr(p + 3, '@', strcspn(p + 3, "/?#")) != NULL;
}

/* http:// or https://, a host, and nothing that would end the URL early. */
bool ck_http_url(const char *s)
{
	const char *rest = strncasecmp(s, "http://", 7) == 0    ? s + 7
			   : strncasecmp(s, "https://", 8) == 0 ? s + 8
								: NULL;
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

/* Relative to the config file's directory (see config.h). */
char *ck_resolve(struct ctx *x, const char *value)
{
	char *p = NULL;
	const char *dir = x->c->dir;
	if (value[0] == '/')
		return ck_strdup(x, value);
	if (asprintf(&p, "%s%s%s", dir, strcmp(dir, "/") ? "/" : "", value) < 0)
		return oom(x);
	return p;
}

int ck_check_directory(struct ctx *x, const char *path, const char *dir)
{
	char shown[PATH_MAX * 2];
	struct stat st;
	ck_show(shown, sizeof(shown), dir, PATH_MAX, false);
	if (stat(dir, &st) < 0)
		return errno == ENOENT ? ck_fail(x, path, "no such directory: %s", shown)
				       : ck_fail(x, path, "cannot be used: %s: %s", shown,
						 strerror(errno));
	if (!S_ISDIR(st.st_mode))
		return ck_fail(x, path, "not a directory: %s", shown);
	return 0;
}

/* --- near misses ----------------------------------------------------------------------- */

/* Edit distance with swaps of neighbours counted as one (optimal string alignment). */
static size_t edit_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b), d[65][65];
	if (la > 64 || lb > 64)
		return SIZE_MAX;
	for (size_t i = 0; i <= la; i++)
		for (size_t j = 0; j <= lb; j++) {
			size_t v = i == 0 ? j : j == 0 ? i : d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
			if (i && j && d[i - 1][j] + 1 < v)
				v = d[i - 1][j] + 1;
			if (i && j && d[i][j - 1] + 1 < v)
				v = d[i][j - 1] + 1;
			if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
			    d[i - 2][j - 2] + 1 < v)
				v = d[i - 2][j - 2] + 1;
			d[i][j] = v;
		}
	return d[la][lb];
}

static bool row_in(const struct ck_row *r, unsigned variant)
{
	return r->name && (!r->only || (r->only & variant));
}

static const struct ck_row *find_row(const struct ck_section *s, const char *name,
				     unsigned variant)
{
	for (const struct ck_row *r = s->rows; r->name; r++)
		if (row_in(r, variant) && strcmp(r->name, name) == 0)
			return r;
	return NULL;
}

/* The key of the section that `key` is a near miss of (see config.h), or NULL. */
static const struct ck_row *near_miss(const struct ck_section *s, unsigned variant,
				      const char *key)
{
	char nk[80], nw[80];
	const struct ck_row *best = NULL;
	size_t best_d = SIZE_MAX;
	if (strlen(key) >= sizeof(nk))
		return NULL;
	ck_normalise(nk, sizeof(nk), key);
	for (const struct ck_row *r = s->rows; r->name; r++) {
		ck_normalise(nw, sizeof(nw), r->name);
		size_t d = row_in(r, variant) ? edit_distance(nk, nw) : SIZE_MAX;
		if (d <= (strlen(r->name) <= 4 ? 1u : 2u) && d < best_d) {
			best = r;
			best_d = d;
		}
	}
	return best;
}

/* --- reading --------------------------------------------------------------------------- */

static void set_int(void *p, size_t size, long long v)
{
	if (size == sizeof(int64_t))
		*(int64_t *)p = v;
	else
		*(int32_t *)p = (int32_t)v;
}

static long long get_int(const void *p, size_t size)
{
	return size == sizeof(int64_t) ? *(const int64_t *)p : *(const int32_t *)p;
}

/* The words of "must be ...", made from the row. */
static const char *expect(char *out, size_t len, const struct ck_row *r)
{
	char lo[32], hi[32];
	ck_number(lo, sizeof(lo), r->lo);
	ck_number(hi, sizeof(hi), r->hi);
	const char *kind = r->type == CK_INT ? (r->unit ? "a whole number of " : "an integer")
					     : (r->unit ? "a number of " : "a number");
	const char *unit = r->unit ? r->unit : "";
	if (r->expect)
		snprintf(out, len, "%s", r->expect);
	else if (r->type == CK_ENUM)
		ck_words(out, len, r->words);
	else if (r->flags & CK_NO_MAX)
		snprintf(out, len, "%s%s >= %s", kind, unit, lo);
	else if (r->flags & CK_LO_OPEN)
		snprintf(out, len, "%s%s > %s and <= %s", kind, unit, lo, hi);
	else
		snprintf(out, len, "%s%s from %s to %s", kind, unit, lo, hi);
	return out;
}

static int refuse(struct ctx *x, const char *path, const struct ck_row *r, const cJSON *v)
{
	char words[256];
	return ck_must(x, path, v, expect(words, sizeof(words), r));
}

/* "0" for 0 where cloudplow passed the string on (Pushover's priority). */
static bool number_of(const struct ck_row *r, const cJSON *v, double *out)
{
	const char *s = cJSON_IsString(v) ? v->valuestring + (v->valuestring[0] == '-') : "";
	if (cJSON_IsNumber(v))
		*out = v->valuedouble;
	else if ((r->flags & CK_NUM_STRING) && *s && strlen(s) <= 15 &&
		 strspn(s, "0123456789") == strlen(s))
		*out = strtod(v->valuestring, NULL);
	else
		return false;
	return true;
}

static void read_number(struct ctx *x, struct walk *w, const struct ck_row *r, const cJSON *v,
			const char *path)
{
	double d = 0;
	char got[64], most[64];
	bool in = number_of(r, v, &d) && isfinite(d) && d >= r->lo &&
		  !((r->flags & CK_LO_OPEN) && d == r->lo) && (r->type != CK_INT || d == trunc(d));
	if (in && d > r->hi && r->type == CK_NUMBER && (r->flags & CK_NO_MAX)) {
		ck_number(got, sizeof(got), d);
		ck_number(most, sizeof(most), r->hi);
		ck_fail(x, path, "must be at most %s, got %s", most, got);
	} else if (!in || d > r->hi) {
		refuse(x, path, r, v);
	} else if (r->type == CK_INT) {
		set_int(ck_at(w->base, r->offset), r->size, (long long)d);
	} else {
		*(double *)ck_at(w->base, r->offset) = d;
	}
}

/* "HH:MM" → minutes after midnight, or -1. */
static int parse_time(const char *s)
{
	if (strlen(s) != 5 || s[2] != ':' || strspn(s, "0123456789") != 2 ||
	    strspn(s + 3, "0123456789") != 2)
		return -1;
	int h = (s[0] - '0') * 10 + (s[1] - '0'), m = (s[3] - '0') * 10 + (s[4] - '0');
	return h > 23 || m > 59 ? -1 : h * 60 + m;
}

static void read_string(struct ctx *x, struct walk *w, const struct ck_row *r, const cJSON *v,
			const char *path)
{
	char got[GOT_LEN];
	void *p = ck_at(w->base, r->offset);
	const char *s = cJSON_IsString(v) ? v->valuestring : NULL;
	if (s && !*s && ((r->flags & CK_EMPTY_UNSET) || !w->active))
		return; /* not set: the default stays */
	if (r->type == CK_TIME) {
		if ((*(int *)p = s ? parse_time(s) : -1) < 0)
			ck_must(x, path, v, "a time \"HH:MM\" from 00:00 to 23:59");
	} else if (!s && !r->valid) {
		ck_must(x, path, v, "a string");
	} else if (!s || (r->valid && !r->valid(s))) {
		refuse(x, path, r, v);
	} else if (!*s) {
		ck_fail(x, path, "empty: %s", (r->flags & CK_NEEDED) ? w->needs
					      : "give a value, or remove the key");
	} else if (r->type == CK_URL && !ck_http_url(s)) {
		/* A URL with credentials is not echoed back: they are secrets. */
		if (ck_url_userinfo(s))
			snprintf(got, sizeof(got), "a URL with a user name (not shown)");
		else
			ck_show(got, sizeof(got), s, SHOW_VALUE_MAX, true);
		ck_fail(x, path, "must be an http:// or https:// URL with a host, got %s", got);
	} else {
		char *d = r->type == CK_PATH ? ck_resolve(x, s) : ck_strdup(x, s);
		if (d) {
			free(*(char **)p);
			*(char **)p = d;
		}
	}
}

static void read_list(struct ctx *x, struct walk *w, const struct ck_row *r, const cJSON *v,
		      const char *path)
{
	char item[PATH_LEN];
	size_t n = (size_t)cJSON_GetArraySize(v), k = 0, *count = ck_count(w->base, r);
	if (!cJSON_IsArray(v)) {
		ck_must(x, path, v, "a list of strings");
		return;
	}
	char **list = n ? ck_calloc(x, n, sizeof(*list)) : NULL;
	/* Owned by the config from here on, so that config_free sees what was copied so far. */
	*(char ***)ck_at(w->base, r->offset) = list;
	for (const cJSON *i = list ? v->child : NULL; i && !x->stop; i = i->next, k++) {
		if (!cJSON_IsString(i) || !*i->valuestring)
			ck_must(x, ck_index(item, path, k), i, "a non-empty string");
		else if ((list[*count] = ck_strdup(x, i->valuestring)))
			(*count)++;
	}
}

static void read_map(struct ctx *x, struct walk *w, const struct ck_row *r, const cJSON *v,
		     const char *path)
{
	char p[PATH_LEN];
	const struct ck_section *sub = r->sub;
	size_t n = (size_t)cJSON_GetArraySize(v), *count = ck_count(w->base, r);
	if (!cJSON_IsObject(v)) {
		ck_must(x, path, v, "an object");
		return;
	}
	if (ck_check_dups(x, v, path) < 0)
		return;
	if (n == 0 && (r->flags & CK_NONEMPTY))
		ck_fail(x, path, "empty: %s", r->missing);
	char *elems = n ? ck_calloc(x, n, sub->elem_size) : NULL;
	*(void **)ck_at(w->base, r->offset) = elems;
	for (const cJSON *i = elems ? v->child : NULL; i && !x->stop; i = i->next) {
		void *elem = elems + *count * sub->elem_size;
		struct walk child;
		if (!(*(char **)ck_at(elem, sub->name_offset) = ck_strdup(x, i->string)))
			return;
		(*count)++;
		ck_child(&child, w, sub, i, elem, config_key(p, path, i->string));
		ck_walk(x, &child);
	}
}

/* A key cplow accepts without using asks for something: true, a string, an enabled object. */
static bool asks(const cJSON *v)
{
	if (cJSON_IsObject(v))
		return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(v, "enabled"));
	if (cJSON_IsNumber(v))
		return v->valuedouble != 0;
	return cJSON_IsTrue(v) || (cJSON_IsString(v) && *v->valuestring) ||
	       (cJSON_IsArray(v) && v->child);
}

static void read_value(struct ctx *x, struct walk *w, const struct ck_row *r, const cJSON *v,
		       const char *path)
{
	struct walk child;
	switch (r->type) {
	case CK_BOOL:
		if (cJSON_IsBool(v))
			*(bool *)ck_at(w->base, r->offset) = cJSON_IsTrue(v);
		else
			ck_must(x, path, v, "true or false");
		break;
	case CK_INT:
	case CK_NUMBER:
		read_number(x, w, r, v, path);
		break;
	case CK_STRING:
	case CK_PATH:
	case CK_URL:
	case CK_TIME:
		read_string(x, w, r, v, path);
		break;
	case CK_LIST:
		read_list(x, w, r, v, path);
		break;
	case CK_ENUM:
		for (int i = 0; r->words[i]; i++)
			if (cJSON_IsString(v) && strcmp(v->valuestring, r->words[i]) == 0) {
				set_int(ck_at(w->base, r->offset), r->size, i);
				return;
			}
		refuse(x, path, r, v);
		break;
	case CK_SECTION:
		ck_child(&child, w, r->sub, v, ck_at(w->base, r->offset), path);
		ck_walk(x, &child);
		break;
	case CK_MAP:
		read_map(x, w, r, v, path);
		break;
	case CK_CUSTOM:
		if (r->custom->parse)
			r->custom->parse(x, w, r, v, path);
		break;
	case CK_IGNORED:
		if (v && w->active && r->instead && asks(v))
			ck_warn(x, path, "ignored: %s", r->instead);
		break;
	}
}

static void set_default(struct ctx *x, struct walk *w, const struct ck_row *r)
{
	void *p = ck_at(w->base, r->offset);
	if (r->type == CK_BOOL)
		*(bool *)p = r->def != 0;
	else if (r->type == CK_INT || r->type == CK_ENUM || r->type == CK_TIME)
		set_int(p, r->size, (long long)r->def);
	else if (r->type == CK_NUMBER)
		*(double *)p = r->def;
	else if (r->def_str && r->type == CK_PATH)
		*(char **)p = ck_resolve(x, r->def_str);
	else if (r->def_str)
		*(char **)p = ck_strdup(x, r->def_str);
}

void ck_child(struct walk *child, const struct walk *parent, const struct ck_section *sec,
	      const cJSON *obj, void *base, const char *path)
{
	memset(child, 0, sizeof(*child));
	child->sec = sec;
	child->obj = obj;
	child->base = base;
	child->active = parent->active;
	memcpy(child->path, path, strnlen(path, PATH_LEN - 1));
	memcpy(child->needs, parent->needs, sizeof(child->needs));
}

/* Unknown keys: near misses are errors where a typo would fall back to a default. */
static void unknown_keys(struct ctx *x, struct walk *w)
{
	char p[PATH_LEN];
	const struct ck_section *s = w->sec;
	for (const cJSON *i = w->obj ? w->obj->child : NULL; i && !x->stop; i = i->next) {
		if (find_row(s, i->string, w->variant))
			continue;
		const struct ck_row *near = near_miss(s, w->variant, i->string);
		config_key(p, w->path, i->string);
		if (s->top && near)
			ck_fail(x, p, "unknown section (did you mean %s?)", near->name);
		else if (s->top)
			x->stop |= !push_line(&x->c->ignored_sections, &x->c->ignored_section_count,
					      i->string);
		else if (near && (w->active || (near->flags & CK_ENABLE)))
			ck_fail(x, p, "unknown key (did you mean %s?)", near->name);
		else if (near)
			ck_warn(x, p, "unknown key (did you mean %s?), ignored: the section is not "
				"in use", near->name);
		else
			ck_warn(x, p, "unknown key, ignored");
	}
}

void ck_walk(struct ctx *x, struct walk *w)
{
	const struct ck_section *s = w->sec;
	char p[PATH_LEN];
	size_t before = ck_errors(x);
	if (x->stop)
		return;
	if (w->obj && !cJSON_IsObject(w->obj)) {
		ck_must(x, w->path, w->obj, "an object");
		return;
	}
	if (w->obj && ck_check_dups(x, w->obj, *w->path ? w->path : x->file) < 0)
		return;
	/* The switch first: whether the section is on decides how the rest is read. */
	for (const struct ck_row *r = s->rows; r->name; r++)
		if (r->flags & CK_ENABLE) {
			w->active = cJSON_IsTrue(ck_get(w->obj, r->name));
			snprintf(w->needs, sizeof(w->needs), "%.380s needs it",
				 config_key(p, w->path, r->name));
		}
	if (s->begin && !s->begin(x, w))
		return;
	for (const struct ck_row *r = s->rows; r->name && !x->stop; r++)
		if (row_in(r, w->variant))
			set_default(x, w, r);
	unknown_keys(x, w);
	for (const struct ck_row *r = s->rows; r->name && !x->stop; r++) {
		if (!row_in(r, w->variant))
			continue;
		const cJSON *v = ck_get(w->obj, r->name);
		config_key(p, w->path, r->name);
		if (r->alias && v && ck_get(w->obj, r->alias))
			ck_fail(x, p, "the same setting as %s: keep one of them", r->alias);
		else if (!v && w->obj && (r->flags & CK_REQUIRED))
			ck_fail(x, p, r->missing ? "missing: %s" : "missing", r->missing);
		else if (!v && w->obj && (r->flags & CK_NEEDED) && w->active)
			ck_fail(x, p, "missing: %s", w->needs);
		if (v || r->type == CK_SECTION || r->type == CK_CUSTOM)
			read_value(x, w, r->alias ? find_row(s, r->alias, w->variant) : r, v, p);
	}
	w->row_errors = ck_errors(x) - before;
	if (s->rule && !x->stop)
		s->rule(x, w);
}

/* --- printing and freeing -------------------------------------------------------------- */

cJSON *ck_strings(char *const *items, size_t n)
{
	cJSON *a = cJSON_CreateArray();
	for (size_t i = 0; a && i < n; i++)
		a = ck_add(a, NULL, cJSON_CreateString(items[i]));
	return a;
}

static cJSON *print_value(const struct ck_row *r, const void *base)
{
	const void *p = ck_at(base, r->offset);
	const char *s = NULL;
	long long v = r->type == CK_INT || r->type == CK_ENUM || r->type == CK_TIME
			      ? get_int(p, r->size)
			      : 0;
	char hhmm[8];
	switch (r->type) {
	case CK_BOOL:
		return cJSON_CreateBool(*(const bool *)p);
	case CK_INT:
		return v < r->lo ? cJSON_CreateNull() : cJSON_CreateNumber((double)v);
	case CK_NUMBER:
		return cJSON_CreateNumber(*(const double *)p);
	case CK_STRING:
	case CK_PATH:
	case CK_URL:
		s = *(char *const *)p;
		if (s && ((r->flags & CK_SECRET) || ((r->flags & CK_MASK_USERINFO) &&
						      ck_url_userinfo(s))))
			s = "***";
		return s ? cJSON_CreateString(s) : cJSON_CreateNull();
	case CK_LIST:
		return ck_strings(*(char **const *)p, *ck_count(base, r));
	case CK_ENUM:
		return cJSON_CreateString(r->words[v]);
	case CK_TIME:
		snprintf(hhmm, sizeof(hhmm), "%02d:%02d", (int)(v / 60 % 100), (int)(v % 60));
		return v < 0 ? cJSON_CreateNull() : cJSON_CreateString(hhmm);
	case CK_SECTION:
		return ck_print(r->sub, p, 0);
	case CK_MAP: {
		cJSON *o = cJSON_CreateObject();
		for (size_t i = 0; o && i < *ck_count(base, r); i++) {
			const char *elem = *(char *const *)p + i * r->sub->elem_size;
			unsigned variant = r->sub->variant ? r->sub->variant(elem) : 0;
			o = ck_add(o, *(char *const *)ck_at(elem, r->sub->name_offset),
				   ck_print(r->sub, elem, variant));
		}
		return o;
	}
	case CK_CUSTOM:
		return r->custom->print(base, r);
	case CK_IGNORED:
		break;
	}
	return NULL;
}

cJSON *ck_print(const struct ck_section *sec, const void *base, unsigned variant)
{
	cJSON *o = cJSON_CreateObject();
	for (const struct ck_row *r = sec->rows; o && r->name; r++)
		if (row_in(r, variant) && !r->alias && r->type != CK_IGNORED)
			o = ck_add(o, r->name, print_value(r, base));
	return o;
}

void ck_free_list(char **list, size_t n)
{
	for (size_t i = 0; list && i < n; i++)
		free(list[i]);
	free(list);
}

void ck_free(const struct ck_section *sec, void *base)
{
	unsigned variant = sec->variant ? sec->variant(base) : ~0u;
	for (const struct ck_row *r = sec->rows; r->name; r++) {
		void *p = ck_at(base, r->offset);
		size_t n = r->type == CK_LIST || r->type == CK_MAP ? *ck_count(base, r) : 0;
		if (!row_in(r, variant) || r->alias)
			continue;
		if (r->type == CK_STRING || r->type == CK_PATH || r->type == CK_URL)
			free(*(char **)p);
		else if (r->type == CK_LIST)
			ck_free_list(*(char ***)p, n);
		else if (r->type == CK_SECTION)
			ck_free(r->sub, p);
		else if (r->type == CK_CUSTOM && r->custom->free)
			r->custom->free(base, r);
		for (size_t i = 0; r->type == CK_MAP && i < n; i++) {
			char *elem = *(char **)p + i * r->sub->elem_size;
			ck_free(r->sub, elem);
			free(*(char **)ck_at(elem, r->sub->name_offset));
		}
		if (r->type == CK_MAP)
			free(*(char **)p);
	}
}

/* --- the key list ---------------------------------------------------------------------- */

int ck_keys(FILE *out, const struct ck_section *sec, const char *path)
{
	static const char *const types[] = {
		[CK_BOOL] = "true|false", [CK_INT] = "integer",  [CK_NUMBER] = "number",
		[CK_STRING] = "string",   [CK_PATH] = "path",    [CK_URL] = "url",
		[CK_LIST] = "[string]",   [CK_ENUM] = "word",    [CK_TIME] = "\"HH:MM\"",
		[CK_IGNORED] = "any",
	};
	char p[PATH_LEN], words[256] = "", def[64] = "", notes[512];
	for (const struct ck_row *r = sec->rows; r->name; r++) {
		snprintf(p, sizeof(p), "%s%s%s", path, *path ? "." : "", r->name);
		/* a section's keys, or a map's (or the stages') elements', named by their section */
		if (r->sub && ck_keys(out, r->sub, r->type == CK_SECTION ? p : r->sub->name) < 0)
			return -1;
		if (r->sub)
			continue;
		bool numeric = r->type == CK_INT || r->type == CK_NUMBER;
		if (numeric || r->type == CK_ENUM || r->expect)
			expect(words, sizeof(words), r);
		if (r->flags & CK_REQUIRED)
			; /* no default: it must be given */
		else if (r->def_str)
			snprintf(def, sizeof(def), "\"%s\"", r->def_str);
		else if (r->type == CK_BOOL && !r->alias)
			snprintf(def, sizeof(def), "%s", r->def ? "true" : "false");
		else if (numeric)
			ck_number(def, sizeof(def), r->def);
		else if (r->type == CK_ENUM)
			snprintf(def, sizeof(def), "\"%s\"", r->words[(int)r->def]);
		size_t o = 0;
		notes[0] = '\0';
		for (size_t i = 0; r->only && ck_service_words[i]; i++)
			if (r->only & (1u << i))
				o += (size_t)snprintf(notes + o, sizeof(notes) - o, "service %s; ",
						      ck_service_words[i]);
		snprintf(notes + o, sizeof(notes) - o, "%s%s%s%s%s%s%s%s%s",
			 r->flags & CK_SECRET ? "secret; " : "",
			 r->flags & CK_REQUIRED ? "required; " : "",
			 r->flags & CK_NEEDED ? "needed when enabled; " : "",
			 r->flags & CK_NUM_STRING ? "a numeric string is taken as the number; " : "",
			 r->alias ? "another spelling of " : "", r->alias ? r->alias : "",
			 r->type == CK_IGNORED ? "accepted, not used" : "",
			 r->instead ? ": " : "", r->instead ? r->instead : "");
		o = strlen(notes);
		if (o >= 2 && strcmp(notes + o - 2, "; ") == 0)
			notes[o - 2] = '\0';
		const char *type = r->type == CK_CUSTOM ? r->custom->type : types[r->type];
		if (fprintf(out, "%s\t%s\t%s\t%s\t%s\n", p, r->alias ? "alias" : type, def, words,
			    notes) < 0)
			return -1;
		words[0] = def[0] = '\0';
	}
	return 0;
}
