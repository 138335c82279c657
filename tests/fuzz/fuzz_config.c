/*
 * config_load on arbitrary bytes. config_load takes a path, so each input is written to one
 * file in a private directory made once per process (under /dev/shm when it exists: tmpfs,
 * so a run costs a write, not a disk sync) and removed at exit. Like tests/unit/test_config.c,
 * "@TMP@" in the input is replaced by that directory, which holds media/, tv/, sa/sa1.json,
 * file.txt and rclone.conf: the fixtures under tests/fixtures/config are seeds as they are, and
 * a valid config reaches the checks behind the folder tests.
 */
#include <ftw.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char dir[64];
static char path[PATH_MAX];
static char *text;          /* the substituted input, reused */
static size_t text_cap;

static int put_file(const char *p, const void *buf, size_t len)
{
	FILE *f = fopen(p, "wb");
	if (!f)
		return -1;
	size_t n = len ? fwrite(buf, 1, len, f) : 0;
	return fclose(f) == 0 && n == len ? 0 : -1;
}

static int rm_entry(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(p);
}

static void cleanup(void)
{
	if (dir[0])
		nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	dir[0] = '\0';
	free(text);
	text = NULL;
}

static void setup(void)
{
	char p[PATH_MAX];
	struct stat st;
	snprintf(dir, sizeof(dir), "%s/cplow-fuzz-config-XXXXXX",
		 stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) && access("/dev/shm", W_OK) == 0 ?
		 "/dev/shm" : "/tmp");
	if (!mkdtemp(dir)) {
		perror("fuzz_config: mkdtemp");
		abort();
	}
	atexit(cleanup);
	const char *dirs[] = { "media", "tv", "sa", "run" };
	for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
		snprintf(p, sizeof(p), "%s/%s", dir, dirs[i]);
		if (mkdir(p, 0700) != 0)
			abort();
	}
	snprintf(p, sizeof(p), "%s/sa/sa1.json", dir);
	if (put_file(p, "{}", 2) != 0)
		abort();
	snprintf(p, sizeof(p), "%s/file.txt", dir);
	if (put_file(p, "x", 1) != 0)
		abort();
	snprintf(p, sizeof(p), "%s/rclone.conf", dir);
	if (put_file(p, "[gd]\ntype = local\n", 18) != 0)
		abort();
	snprintf(path, sizeof(path), "%s/config.json", dir);
}

/* The input with every "@TMP@" replaced by dir; returns its length. */
static size_t substitute(const uint8_t *data, size_t size)
{
	static const char mark[] = "@TMP@";
	const size_t ml = sizeof(mark) - 1, dl = strlen(dir);
	size_t need = size / ml * dl + size + 1, n = 0;
	if (need > text_cap) {
		char *p = realloc(text, need);
		if (!p)
			abort();
		text = p;
		text_cap = need;
	}
	for (size_t i = 0; i < size;) {
		if (i + ml <= size && memcmp(data + i, mark, ml) == 0) {
			memcpy(text + n, dir, dl);
			n += dl;
			i += ml;
		} else {
			text[n++] = (char)data[i++];
		}
	}
	return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!dir[0])
		setup();
	size_t len = substitute(data, size);
	if (put_file(path, text, len) != 0)
		abort();
	struct config c;
	char err[CONFIG_ERR_MAX];
	err[0] = '\0';
	if (config_load(path, &c, err, sizeof(err)) == 0) {
		config_free(&c);
	} else {
		/* The promise: one line, NUL-terminated inside err. */
		if (!memchr(err, '\0', sizeof(err)) || strchr(err, '\n') || !err[0])
			abort();
	}
	return 0;
}
