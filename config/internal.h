/*
 * What config/'s files share; nobody outside config/ includes it.
 *
 * The table: a section (struct ck_section) is a list of rows (struct ck_row), one per key, each
 * saying where its value lives (offset into the section's struct), its type, bounds, default,
 * unit word and flags. walk.c reads, checks, prints and frees any section by its rows; a
 * section's hooks (begin, rule) hold what one row cannot say: a map element's name, which keys
 * a notification's service has, and the checks that cross keys.
 */
#ifndef CPLOW_CONFIG_INTERNAL_H
#define CPLOW_CONFIG_INTERNAL_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>

#include "config.h"

/* A key path with a long uploader name and a long rclone_sleeps pattern still fits. */
#define PATH_LEN CONFIG_PATH_MAX
/* How much of a key or a value a message shows before "...". */
#define SHOW_KEY_MAX 80
#define SHOW_VALUE_MAX 60
#define GOT_LEN (SHOW_VALUE_MAX * 6 + 8)
/* Integers travel as doubles in cJSON: above this they are no longer exact. */
#define EXACT_INT_MAX 9007199254740992.0

/* One load: where errors and warnings go. */
struct ctx {
	struct config *c;
	struct config_errors *errs;
	const char *file;        /* the path as the caller gave it, escaped */
	const cJSON *root;
	bool stop;               /* out of memory: nothing more is read */
};

enum ck_type {
	CK_BOOL,
	CK_INT,         /* int or int64_t (.size), whole numbers in [lo, hi] */
	CK_NUMBER,      /* double */
	CK_STRING,      /* char *; .valid, when set, decides what is accepted */
	CK_PATH,        /* char *, relative to the config file's directory */
	CK_URL,         /* char *, http:// or https:// with a host */
	CK_LIST,        /* char ** of non-empty strings, and its size_t count right after it */
	CK_ENUM,        /* int: the index of the value in .words */
	CK_TIME,        /* int: "HH:MM" as minutes after midnight, -1 when not set */
	CK_SECTION,     /* an object read by .sub, whose struct is at .offset */
	CK_MAP,         /* name → .sub object: an array of .sub->elem_size elements, and its count */
	CK_CUSTOM,      /* .custom's functions */
	CK_IGNORED,     /* accepted and not used: .instead says what cplow does instead */
};

enum {
	CK_SECRET = 1 << 0,        /* printed as "***" */
	CK_REQUIRED = 1 << 1,      /* missing from its object is an error */
	CK_NEEDED = 1 << 2,        /* missing or empty is an error while the section is enabled */
	CK_ENABLE = 1 << 3,        /* the section's `enabled` */
	CK_LO_OPEN = 1 << 4,       /* lo itself is refused */
	CK_NO_MAX = 1 << 5,        /* the message names no upper bound */
	CK_EMPTY_UNSET = 1 << 6,   /* "" is "not set" even in an enabled section */
	CK_NUM_STRING = 1 << 7,    /* "0" is taken for 0, as cloudplow's Python passed it on */
	CK_MASK_USERINFO = 1 << 8, /* printed as "***" when it carries user:pass@ */
	CK_NONEMPTY = 1 << 9,      /* CK_MAP: an empty object is an error (.missing says why) */
};

struct walk;
struct ck_row;

struct ck_custom {
	void (*parse)(struct ctx *x, struct walk *w, const struct ck_row *r, const cJSON *v,
		      const char *path);
	cJSON *(*print)(const void *base, const struct ck_row *r);
	void (*free)(void *base, const struct ck_row *r);
	const char *type;          /* for the key list */
};

struct ck_row {
	const char *name;
	enum ck_type type;
	size_t offset;
	size_t size;               /* of the field at .offset; an array's size_t count follows it */
	unsigned flags;
	unsigned only;             /* the variants (1 << service) that have this key; 0: all */
	double lo, hi, def;
	const char *def_str;       /* strings and paths */
	const char *unit;          /* "minutes", "seconds", "bytes", "hours" */
	const char *const *words;  /* CK_ENUM, by value */
	const char *expect;        /* "must be <expect>" instead of the words made from the row */
	const char *missing;       /* "missing: <missing>" (CK_REQUIRED), "empty: <missing>" */
	const char *instead;       /* CK_IGNORED: what happens instead; NULL: nothing to say */
	const char *alias;         /* this key is another spelling of the row named .alias */
	bool (*valid)(const char *value);
	const struct ck_section *sub;
	const struct ck_custom *custom;
};

struct ck_section {
	const char *name;          /* for the key list: "remotes.<name>" */
	const struct ck_row *rows; /* ends with a row without a name */
	size_t elem_size;          /* CK_MAP elements */
	size_t name_offset;        /* CK_MAP elements: the char * that gets the key */
	/* Before the rows: sets variant, active, needs; false skips the object (it said why). */
	bool (*begin)(struct ctx *x, struct walk *w);
	/* After the rows: what crosses keys. w->row_errors says whether the rows were clean. */
	void (*rule)(struct ctx *x, struct walk *w);
	/* CK_MAP elements, for printing: the element's variant. */
	unsigned (*variant)(const void *base);
	bool top;                  /* unknown keys are sections kept as they are */
};

/* One object being read by one section. */
struct walk {
	const struct ck_section *sec;
	const cJSON *obj;          /* NULL: not in the file, the defaults only */
	void *base;
	char path[PATH_LEN];
	unsigned variant;
	bool active;               /* enabled (or nothing to enable); else types only */
	char needs[PATH_LEN];      /* "plex.enabled needs it" */
	size_t row_errors;         /* errors the rows found */
};

extern const struct ck_section ck_top, ck_stage_section;

/* walk.c: messages */
int ck_fail(struct ctx *x, const char *path, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void ck_warn(struct ctx *x, const char *path, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* "<path>: must be <what>, got <v as the file has it>" */
int ck_must(struct ctx *x, const char *path, const cJSON *v, const char *what);
size_t ck_errors(const struct ctx *x);
void ck_show(char *out, size_t len, const char *s, size_t max, bool quoted);
void ck_number(char *out, size_t len, double v);
void ck_describe(char *out, size_t len, const cJSON *v);
void ck_words(char *out, size_t len, const char *const *words);
const char *ck_index(char *out, const char *parent, size_t index);
char *ck_strdup(struct ctx *x, const char *s);
void *ck_calloc(struct ctx *x, size_t n, size_t size);
const cJSON *ck_get(const cJSON *obj, const char *key);
cJSON *ck_add(cJSON *o, const char *key, cJSON *v);
cJSON *ck_strings(char *const *items, size_t n);
void ck_normalise(char *out, size_t len, const char *key);
bool ck_url_userinfo(const char *s);
bool ck_http_url(const char *s);
char *ck_resolve(struct ctx *x, const char *value);
int ck_check_directory(struct ctx *x, const char *path, const char *dir);

/* The field at offset in a section's struct. */
static inline void *ck_at(const void *base, size_t offset)
{
	return (char *)base + offset;
}

/* An array's element count: the size_t right after its pointer, in every struct of config.h. */
static inline size_t *ck_count(const void *base, const struct ck_row *r)
{
	return (size_t *)ck_at(base, r->offset + sizeof(void *));
}

/* walk.c: the walker */
void ck_walk(struct ctx *x, struct walk *w);
void ck_child(struct walk *child, const struct walk *parent, const struct ck_section *sec,
	      const cJSON *obj, void *base, const char *path);
cJSON *ck_print(const struct ck_section *sec, const void *base, unsigned variant);
void ck_free(const struct ck_section *sec, void *base);
void ck_free_list(char **list, size_t n);
int ck_keys(FILE *out, const struct ck_section *sec, const char *path);

/* json.c */
int ck_parse_file(struct ctx *x, const char *path, cJSON **root);
int ck_check_dups(struct ctx *x, const cJSON *obj, const char *path);

/* types.c: the values one row type cannot say */
extern const struct ck_custom ck_extras, ck_command, ck_rotate, ck_quota_mode, ck_stages,
	ck_speeds, ck_service, ck_notify_url, ck_headers;
extern const char *const ck_service_words[];

#endif
