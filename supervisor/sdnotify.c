#include "sdnotify.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "log.h"

/* Fills addr from $NOTIFY_SOCKET's value; returns the address length or -EINVAL. */
static int notify_address(const char *name, struct sockaddr_un *addr)
{
	size_t n = strlen(name);
	memset(addr, 0, sizeof(*addr));
	addr->sun_family = AF_UNIX;
	if (name[0] == '@') {
		/* Abstract: a NUL, then the name; its length is the address's, no NUL after it. */
		if (n < 2 || n > sizeof(addr->sun_path))
			return -EINVAL;
		memcpy(addr->sun_path + 1, name + 1, n - 1);
		return (int)(offsetof(struct sockaddr_un, sun_path) + n);
	}
	if (name[0] != '/' || n >= sizeof(addr->sun_path))
		return -EINVAL;
	memcpy(addr->sun_path, name, n + 1);
	return (int)(offsetof(struct sockaddr_un, sun_path) + n + 1);
}

int sdnotify_send(const char *state)
{
	const char *name = getenv("NOTIFY_SOCKET");
	if (!name || !*name)
		return 0;
	struct sockaddr_un addr;
	int len = notify_address(name, &addr);
	if (len < 0)
		return len;
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	ssize_t sent;
	do
		sent = sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&addr,
			      (socklen_t)len);
	while (sent < 0 && errno == EINTR);
	int rc = sent < 0 ? -errno : 1;
	close(fd);
	return rc;
}

static void notify(const char *state)
{
	int rc = sdnotify_send(state);
	if (rc < 0)
		log_warn("cannot tell systemd %s through $NOTIFY_SOCKET: %s", state, strerror(-rc));
}

void sdnotify_ready(void)
{
	notify("READY=1");
}

void sdnotify_stopping(void)
{
	notify("STOPPING=1");
}
