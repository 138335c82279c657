#include "account_names.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "err.h"

/* --- remote names and references ------------------------------------------------------- */

bool account_valid_name(const char *name, size_t len)
{
	if (len == 0 || len > ACCOUNT_NAME_MAX || name[0] == '-' || name[0] == ' ' ||
	    name[len - 1] == ' ')
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)name[i];
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
			  c == '_' || c == '-' || c == '.' || c == ' ';
		if (!ok)
			return false;
	}
	return true;
}

static bool param_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '_';
}

static bool is_account_param(const char *param, size_t len)
{
	static const char *const names[] = {"service_account_file", "service_account_credentials"};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strlen(names[i]) == len && memcmp(param, names[i], len) == 0)
			return true;
	return false;
}

/* The parameters of a connection string, from just after the name's ','; *end gets the index
 * of the ':' that closes them. Mirrors rclone's fspath.Parse, quoted values included, because
 * a quoted value may hold the ':' that would otherwise seem to end them. */
static int parse_params(const char *s, size_t start, size_t *end, bool *sets_account)
{
	enum { PARAM, VALUE, QUOTED, AFTER_QUOTE } state = PARAM;
	size_t prev = start;
	char quote = 0;
	for (size_t i = start; s[i]; i++) {
		char c = s[i];
		switch (state) {
		case PARAM:
			if (c == ':' || c == ',' || c == '=') {
				if (i == prev)
					return -EINVAL;
				if (is_account_param(s + prev, i - prev))
					*sets_account = true;
				prev = i + 1;
				if (c == ':') {
					*end = i;
					return 0;
				}
				if (c == '=')
					state = VALUE;
			} else if (!param_char(c)) {
				return -EINVAL;
			}
			break;
		case VALUE:
			if ((c == '\'' || c == '"') && i == prev) {
				quote = c;
				state = QUOTED;
			} else if (c == ':' || c == ',') {
				prev = i + 1;
				if (c == ':') {
					*end = i;
					return 0;
				}
				state = PARAM;
			}
			break;
		case QUOTED:
			if (c == quote)
				state = AFTER_QUOTE;
			break;
		case AFTER_QUOTE:
			if (c == ':' || c == ',') {
				prev = i + 1;
				if (c == ':') {
					*end = i;
					return 0;
				}
				state = PARAM;
			} else if (c == quote) {
				state = QUOTED; /* a doubled quote stands for itself */
			} else {
				return -EINVAL;
			}
			break;
		}
	}
	return -EINVAL;
}

int account_parse_ref(const char *s, struct account_ref *out)
{
	struct account_ref r = {0};
	if (!*s)
		return -EINVAL;
	if (!strchr(s, ':')) {
		r.kind = ACCOUNT_REF_LOCAL;
		r.path = s;
		*out = r;
		return 0;
	}
	size_t start = s[0] == ':' ? 1 : 0;
	size_t i = start;
	for (; s[i] && s[i] != ':' && s[i] != ','; i++) {
		if (s[i] == '/' || s[i] == '\\') {
			if (start)
				return -EINVAL; /* rclone: an on-the-fly remote was meant */
			r.kind = ACCOUNT_REF_LOCAL;
			r.path = s;
			*out = r;
			return 0;
		}
	}
	if (!s[i] || !account_valid_name(s + start, i - start))
		return -EINVAL;
	r.kind = start ? ACCOUNT_REF_ON_THE_FLY : ACCOUNT_REF_NAMED;
	r.name = s + start;
	r.name_len = i - start;
	if (s[i] == ',') {
		size_t end;
		if (parse_params(s, i + 1, &end, &r.sets_account) < 0)
			return -EINVAL;
		r.params = s + i + 1;
		r.params_len = end - (i + 1);
		r.path = s + end + 1;
	} else {
		r.path = s + i + 1;
	}
	*out = r;
	return 0;
}

int account_destination(const char *upload_remote, const char *account_remote, char *out,
			size_t len)
{
	if (!upload_remote || !account_remote || !out)
		return -EINVAL;
	struct account_ref r;
	if (account_parse_ref(upload_remote, &r) < 0 || r.kind != ACCOUNT_REF_NAMED)
		return -EINVAL;
	size_t account_len = strlen(account_remote);
	if (!account_valid_name(account_remote, account_len))
		return -EINVAL;
	int n;
	if (r.params_len)
		n = snprintf(NULL, 0, "%s,%.*s:%s", account_remote, (int)r.params_len, r.params,
			     r.path);
	else
		n = snprintf(NULL, 0, "%s:%s", account_remote, r.path);
	if (n < 0 || (size_t)n >= len)
		return -ENAMETOOLONG;
	if (r.params_len)
		snprintf(out, len, "%s,%.*s:%s", account_remote, (int)r.params_len, r.params, r.path);
	else
		snprintf(out, len, "%s:%s", account_remote, r.path);
	return 0;
}

/* --- key files -------------------------------------------------------------------------- */

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

int account_natural_cmp(const char *a, const char *b)
{
	int zeros_tiebreak = 0;
	for (;;) {
		if (is_digit(*a) && is_digit(*b)) {
			size_t za = 0, zb = 0;
			while (a[za] == '0')
				za++;
			while (b[zb] == '0')
				zb++;
			const char *da = a + za, *db = b + zb;
			size_t la = 0, lb = 0;
			while (is_digit(da[la]))
				la++;
			while (is_digit(db[lb]))
				lb++;
			/* By value without converting: no overflow for long runs. */
			if (la != lb)
				return la < lb ? -1 : 1;
			int c = memcmp(da, db, la);
			if (c)
				return c;
			if (!zeros_tiebreak && za != zb)
				zeros_tiebreak = za < zb ? -1 : 1;
			a = da + la;
			b = db + lb;
			continue;
		}
		unsigned char ca = (unsigned char)*a, cb = (unsigned char)*b;
		if (ca != cb)
			return ca < cb ? -1 : 1;
		if (!ca)
			return zeros_tiebreak;
		a++;
		b++;
	}
}

static int cmp_paths(const void *x, const void *y)
{
	return account_natural_cmp(*(char *const *)x, *(char *const *)y);
}

static bool is_key_name(const char *name)
{
	size_t n = strlen(name);
	return name[0] != '.' && n > 5 && strcmp(name + n - 5, ".json") == 0;
}

int account_list_keys(const char *dir, struct account_keys *out, char *err, size_t err_len)
{
	if (err && err_len)
		err[0] = '\0';
	if (!dir || !*dir || !out)
		return err_set(err, err_len, -EINVAL, "service_account_path is empty");
	int rc = 0;
	DIR *d = NULL;
	char *base = NULL;
	char **paths = NULL;
	size_t count = 0, cap = 0;

	/* The path as configured, made absolute, with no trailing '/': "/sa/" and "/sa" give the
	 * same ledger keys. */
	size_t dir_len = strlen(dir);
	while (dir_len > 1 && dir[dir_len - 1] == '/')
		dir_len--;
	if (dir[0] == '/') {
		base = strndup(dir, dir_len);
	} else {
		char cwd[PATH_MAX];
		if (!getcwd(cwd, sizeof(cwd))) {
			rc = err_set(err, err_len, -errno, "service_account_path %s: cannot read the "
				  "current directory: %s", dir, strerror(errno));
			goto out;
		}
		if (asprintf(&base, "%s%s%.*s", cwd, strcmp(cwd, "/") ? "/" : "", (int)dir_len,
			     dir) < 0)
			base = NULL;
	}
	if (!base) {
		rc = err_set(err, err_len, -ENOMEM, "out of memory");
		goto out;
	}
	const char *sep = strcmp(base, "/") ? "/" : "";

	d = opendir(base);
	if (!d) {
		rc = err_set(err, err_len, -errno, "service_account_path %s: %s", base, strerror(errno));
		goto out;
	}
	for (;;) {
		errno = 0;
		struct dirent *e = readdir(d);
		if (!e) {
			if (errno) {
				rc = err_set(err, err_len, -errno, "service_account_path %s: %s", base,
					  strerror(errno));
				goto out;
			}
			break;
		}
		if (!is_key_name(e->d_name))
			continue;
		struct stat st;
		if (fstatat(dirfd(d), e->d_name, &st, 0) < 0 || !S_ISREG(st.st_mode))
			continue; /* a dangling link, a directory named x.json, a fifo */
		if (count == cap) {
			size_t new_cap = cap ? cap * 2 : 16;
			char **grown = realloc(paths, new_cap * sizeof(*grown));
			if (!grown) {
				rc = err_set(err, err_len, -ENOMEM, "out of memory");
				goto out;
			}
			paths = grown;
			cap = new_cap;
		}
		if (asprintf(&paths[count], "%s%s%s", base, sep, e->d_name) < 0) {
			rc = err_set(err, err_len, -ENOMEM, "out of memory");
			goto out;
		}
		count++;
	}
	if (count)
		qsort(paths, count, sizeof(*paths), cmp_paths);
	out->paths = paths;
	out->count = count;
	paths = NULL;
	count = 0;
	rc = 0;
out:
	if (d)
		closedir(d);
	for (size_t i = 0; i < count; i++)
		free(paths[i]);
	free(paths);
	free(base);
	return rc;
}

void account_keys_free(struct account_keys *keys)
{
	if (!keys)
		return;
	for (size_t i = 0; i < keys->count; i++)
		free(keys->paths[i]);
	free(keys->paths);
	keys->paths = NULL;
	keys->count = 0;
}
