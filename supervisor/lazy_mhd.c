#include "lazy_mhd.h"

#include <dlfcn.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>

#include <microhttpd.h>

#define LIBMHD_SONAME "libmicrohttpd.so.12"

static struct {
	__typeof__(MHD_start_daemon_va) *start_daemon_va;
	__typeof__(MHD_stop_daemon) *stop_daemon;
	__typeof__(MHD_run) *run;
	__typeof__(MHD_get_timeout) *get_timeout;
	__typeof__(MHD_get_daemon_info) *get_daemon_info;
	__typeof__(MHD_lookup_connection_value) *lookup_connection_value;
	__typeof__(MHD_create_response_from_buffer) *create_response_from_buffer;
	__typeof__(MHD_add_response_header) *add_response_header;
	__typeof__(MHD_queue_response) *queue_response;
	__typeof__(MHD_destroy_response) *destroy_response;
} fn;

enum load_state { NOT_TRIED, LOADED, FAILED };
static enum load_state state = NOT_TRIED;
static char load_error[256];

static void *resolve(void *lib, const char *name, bool *ok)
{
	void *p = dlsym(lib, name);
	if (!p && *ok) {
		snprintf(load_error, sizeof(load_error), "%s has no %s", LIBMHD_SONAME, name);
		*ok = false;
	}
	return p;
}

int lazy_mhd_load(char *err, size_t err_size)
{
	if (state == NOT_TRIED) {
		void *lib = dlopen(LIBMHD_SONAME, RTLD_NOW | RTLD_LOCAL);
		bool ok = lib != NULL;
		if (!lib) {
			const char *why = dlerror();
			snprintf(load_error, sizeof(load_error), "cannot load %s: %s", LIBMHD_SONAME,
				 why ? why : "unknown error");
		} else {
			fn.start_daemon_va = resolve(lib, "MHD_start_daemon_va", &ok);
			fn.stop_daemon = resolve(lib, "MHD_stop_daemon", &ok);
			fn.run = resolve(lib, "MHD_run", &ok);
			fn.get_timeout = resolve(lib, "MHD_get_timeout", &ok);
			fn.get_daemon_info = resolve(lib, "MHD_get_daemon_info", &ok);
			fn.lookup_connection_value = resolve(lib, "MHD_lookup_connection_value", &ok);
			fn.create_response_from_buffer =
				resolve(lib, "MHD_create_response_from_buffer", &ok);
			fn.add_response_header = resolve(lib, "MHD_add_response_header", &ok);
			fn.queue_response = resolve(lib, "MHD_queue_response", &ok);
			fn.destroy_response = resolve(lib, "MHD_destroy_response", &ok);
		}
		state = ok ? LOADED : FAILED;
	}
	if (state == FAILED) {
		if (err && err_size)
			snprintf(err, err_size, "%s", load_error);
		return -1;
	}
	return 0;
}

static bool ready(void)
{
	return state == LOADED || (state == NOT_TRIED && lazy_mhd_load(NULL, 0) == 0);
}

struct MHD_Daemon *MHD_start_daemon(unsigned int flags, uint16_t port,
				    MHD_AcceptPolicyCallback apc, void *apc_cls,
				    MHD_AccessHandlerCallback dh, void *dh_cls, ...)
{
	if (!ready())
		return NULL;
	va_list ap;
	va_start(ap, dh_cls);
	struct MHD_Daemon *d = fn.start_daemon_va(flags, port, apc, apc_cls, dh, dh_cls, ap);
	va_end(ap);
	return d;
}

void MHD_stop_daemon(struct MHD_Daemon *daemon)
{
	if (ready())
		fn.stop_daemon(daemon);
}

enum MHD_Result MHD_run(struct MHD_Daemon *daemon)
{
	return ready() ? fn.run(daemon) : MHD_NO;
}

enum MHD_Result MHD_get_timeout(struct MHD_Daemon *daemon, MHD_UNSIGNED_LONG_LONG *timeout)
{
	return ready() ? fn.get_timeout(daemon, timeout) : MHD_NO;
}

/* The dashboard asks only for info types that take no further argument (libmicrohttpd
 * 0.9.75 reads none for any type), so nothing after info_type is passed on. */
const union MHD_DaemonInfo *MHD_get_daemon_info(struct MHD_Daemon *daemon,
						enum MHD_DaemonInfoType info_type, ...)
{
	return ready() ? fn.get_daemon_info(daemon, info_type) : NULL;
}

const char *MHD_lookup_connection_value(struct MHD_Connection *connection,
					enum MHD_ValueKind kind, const char *key)
{
	return ready() ? fn.lookup_connection_value(connection, kind, key) : NULL;
}

struct MHD_Response *MHD_create_response_from_buffer(size_t size, void *buffer,
						     enum MHD_ResponseMemoryMode mode)
{
	return ready() ? fn.create_response_from_buffer(size, buffer, mode) : NULL;
}

enum MHD_Result MHD_add_response_header(struct MHD_Response *response, const char *header,
					const char *content)
{
	return ready() ? fn.add_response_header(response, header, content) : MHD_NO;
}

enum MHD_Result MHD_queue_response(struct MHD_Connection *connection, unsigned int status_code,
				   struct MHD_Response *response)
{
	return ready() ? fn.queue_response(connection, status_code, response) : MHD_NO;
}

void MHD_destroy_response(struct MHD_Response *response)
{
	if (ready())
		fn.destroy_response(response);
}
