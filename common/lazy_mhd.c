#include "lazy_mhd.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include <microhttpd.h>

#include "dynlib.h"

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

static const struct dynlib_symbol symbols[] = {
	{ "MHD_start_daemon_va", (void **)&fn.start_daemon_va },
	{ "MHD_stop_daemon", (void **)&fn.stop_daemon },
	{ "MHD_run", (void **)&fn.run },
	{ "MHD_get_timeout", (void **)&fn.get_timeout },
	{ "MHD_get_daemon_info", (void **)&fn.get_daemon_info },
	{ "MHD_lookup_connection_value", (void **)&fn.lookup_connection_value },
	{ "MHD_create_response_from_buffer", (void **)&fn.create_response_from_buffer },
	{ "MHD_add_response_header", (void **)&fn.add_response_header },
	{ "MHD_queue_response", (void **)&fn.queue_response },
	{ "MHD_destroy_response", (void **)&fn.destroy_response },
};

static struct dynlib lib = { .soname = "libmicrohttpd.so.12",
			     .symbols = symbols,
			     .symbol_count = sizeof(symbols) / sizeof(symbols[0]) };

int lazy_mhd_load(char *err, size_t err_size)
{
	return dynlib_load(&lib, err, err_size);
}

static bool ready(void)
{
	return dynlib_ready(&lib);
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
