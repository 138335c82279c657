#ifndef CPLOW_DYNLIB_H
#define CPLOW_DYNLIB_H

#include <stdbool.h>
#include <stddef.h>

/*
 * A shared library loaded when a process first needs it, with the symbols it must have.
 * common/lazy_curl.c and common/lazy_mhd.c are its users (see lazy_curl.h for why).
 * Not thread-safe: cplow's processes load before they start any thread.
 */

struct dynlib_symbol {
	const char *name;
	void **slot;   /* where its address goes: *(void **)&function_pointer */
};

struct dynlib {
	const char *soname;
	const struct dynlib_symbol *symbols;
	size_t symbol_count;
	int state;             /* private: not tried, loaded or failed */
	char error[256];       /* why it failed */
};

/* Loads the library and resolves every symbol; 0, or -1 with err (if given) saying why. After
 * a failure it does not try again (a process under seccomp may no longer open files). */
int dynlib_load(struct dynlib *lib, char *err, size_t err_size);
/* Loaded, loading it now if it was never tried. */
bool dynlib_ready(struct dynlib *lib);

#endif
