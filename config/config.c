/*
 * config_load and friends (config.h): the file is parsed (json.c), walked by the table
 * (schema.c, walk.c), and the result handed over whole or not at all.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* path made absolute, and its directory. */
static int locate(struct ctx *x, const char *path)
{
	struct config *c = x->c;
	char *real = realpath(path, NULL);
	if (!real)
		return ck_fail(x, x->file, "cannot resolve: %s", strerror(errno));
	c->path = real;
	if (!(c->dir = ck_strdup(x, real)))
		return -1;
	char *slash = strrchr(c->dir, '/');
	if (slash == c->dir)
		slash[1] = '\0';
	else if (slash)
		*slash = '\0';
	return 0;
}

int config_load_all(const char *path, struct config *out, struct config_errors *errors)
{
	struct config c;
	char shown[PATH_MAX * 2] = "", got[GOT_LEN];
	cJSON *root = NULL;
	memset(&c, 0, sizeof(c));
	memset(errors, 0, sizeof(*errors));
	struct ctx x = { .c = &c, .errs = errors, .file = shown };
	if (!path || !out) {
		ck_fail(&x, "config", "no path given");
		return -1;
	}
	/* The path leads every file-level message, which must stay one line too. */
	ck_show(shown, sizeof(shown), path, PATH_MAX, false);
	if (ck_parse_file(&x, path, &root) == 0 && locate(&x, path) == 0) {
		struct walk top = { .sec = &ck_top, .obj = root, .base = &c, .active = true };
		x.root = root;
		if (!cJSON_IsObject(root)) {
			ck_describe(got, sizeof(got), root);
			ck_fail(&x, x.file, "the top level must be a JSON object, got %s", got);
		} else {
			ck_walk(&x, &top);
		}
	}
	cJSON_Delete(root);
	if (ck_errors(&x) == 0 && !x.stop) {
		*out = c;
		return 0;
	}
	config_free(&c);
	/* Out of memory before the first line could be kept. */
	if (errors->count == 0)
		config_errors_add(errors, "out of memory");
	return -1;
}

int config_load(const char *path, struct config *out, char *err, size_t err_len)
{
	struct config_errors errors;
	int rc = config_load_all(path, out, &errors);
	if (err && err_len)
		snprintf(err, err_len, "%s", rc == 0 ? "" : errors.count ? errors.lines[0]
									 : "out of memory");
	config_errors_free(&errors);
	return rc;
}

void config_errors_free(struct config_errors *errors)
{
	if (!errors)
		return;
	ck_free_list(errors->lines, errors->count);
	memset(errors, 0, sizeof(*errors));
}

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

/* As rclone 1.60 reads it: a name of these characters before ':' (or ',' and parameters),
 * else the whole is a local path (account.h). */
bool config_remote_name(const char *spec, char *out, size_t len)
{
	size_t n = strspn(spec, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-. ");
	if (n == 0 || (spec[n] != ':' && !(spec[n] == ',' && strchr(spec + n, ':'))))
		return false;
	snprintf(out, len, "%.*s", (int)n, spec);
	return true;
}

const char *config_command_name(enum config_command command)
{
	return command == CONFIG_COMMAND_COPY ? "copy" : "move";
}

void config_free(struct config *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->uploader_count; i++)
		free(c->uploaders[i].quota_reason);
	free(c->dashboard.off_reason);
	ck_free(&ck_top, c);
	free(c->path);
	free(c->dir);
	ck_free_list(c->ignored_sections, c->ignored_section_count);
	ck_free_list(c->warnings, c->warning_count);
	memset(c, 0, sizeof(*c));
}

int config_print(const struct config *c, FILE *out)
{
	cJSON *root = ck_print(&ck_top, c, 0);
	char *text = root ? cJSON_Print(root) : NULL;
	int rc = text && fputs(text, out) >= 0 && fputc('\n', out) != EOF && fflush(out) == 0
			 ? 0
			 : -1;
	free(text);
	cJSON_Delete(root);
	return rc;
}

int config_keys_print(FILE *out)
{
	if (fprintf(out, "key\ttype\tdefault\tvalues\tnotes\n") < 0 || ck_keys(out, &ck_top, "") < 0)
		return -1;
	return fflush(out) == 0 ? 0 : -1;
}
