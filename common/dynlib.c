#include "dynlib.h"

#include <dlfcn.h>
#include <stdio.h>

enum { NOT_TRIED, LOADED, FAILED };

int dynlib_load(struct dynlib *lib, char *err, size_t err_size)
{
	if (lib->state == NOT_TRIED) {
		/* RTLD_LOCAL: nothing loaded later binds to the library's names by accident. */
		void *h = dlopen(lib->soname, RTLD_NOW | RTLD_LOCAL);
		lib->state = h ? LOADED : FAILED;
		if (!h) {
			const char *why = dlerror();
			snprintf(lib->error, sizeof(lib->error), "cannot load %s: %s", lib->soname,
				 why ? why : "unknown error");
		}
		for (size_t i = 0; h && i < lib->symbol_count; i++) {
			*lib->symbols[i].slot = dlsym(h, lib->symbols[i].name);
			if (!*lib->symbols[i].slot) {
				snprintf(lib->error, sizeof(lib->error), "%s has no %s", lib->soname,
					 lib->symbols[i].name);
				lib->state = FAILED;
				break;
			}
		}
	}
	if (lib->state == FAILED) {
		if (err && err_size)
			snprintf(err, err_size, "%s", lib->error);
		return -1;
	}
	return 0;
}

bool dynlib_ready(struct dynlib *lib)
{
	return lib->state == LOADED || (lib->state == NOT_TRIED && dynlib_load(lib, NULL, 0) == 0);
}
