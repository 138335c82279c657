#include <criterion/criterion.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "sdnotify.h"

/* A datagram socket like systemd's notify socket: at a path, or abstract when path[0] is '@'. */
static int bind_notify_socket(const char *name)
{
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	cr_assert_geq(fd, 0);
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	socklen_t len;
	if (name[0] == '@') {
		memcpy(a.sun_path + 1, name + 1, strlen(name) - 1);
		len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(name));
	} else {
		snprintf(a.sun_path, sizeof(a.sun_path), "%s", name);
		len = (socklen_t)sizeof(a);
	}
	cr_assert_eq(bind(fd, (struct sockaddr *)&a, len), 0, "bind %s: %s", name,
		     strerror(errno));
	struct timeval tv = { 5, 0 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	return fd;
}

static void assert_received(int fd, const char *want)
{
	char buf[256];
	ssize_t n = recv(fd, buf, sizeof(buf) - 1, 0);
	cr_assert_gt(n, 0, "nothing received: %s", strerror(errno));
	buf[n] = '\0';
	cr_assert_str_eq(buf, want);
}

Test(sdnotify, does_nothing_without_notify_socket)
{
	unsetenv("NOTIFY_SOCKET");
	cr_assert_eq(sdnotify_send("READY=1"), 0);
	setenv("NOTIFY_SOCKET", "", 1);
	cr_assert_eq(sdnotify_send("READY=1"), 0);
	sdnotify_ready(); /* and does not fail */
	sdnotify_stopping();
}

Test(sdnotify, ready_and_stopping_reach_a_socket_at_a_path)
{
	char dir[] = "/tmp/cplow-sdnotify-XXXXXX", path[128];
	cr_assert_not_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/notify", dir);
	int fd = bind_notify_socket(path);
	setenv("NOTIFY_SOCKET", path, 1);
	sdnotify_ready();
	assert_received(fd, "READY=1");
	sdnotify_stopping();
	assert_received(fd, "STOPPING=1");
	cr_assert_eq(sdnotify_send("STATUS=uploading\nREADY=1"), 1);
	assert_received(fd, "STATUS=uploading\nREADY=1");
	close(fd);
	unlink(path);
	rmdir(dir);
}

Test(sdnotify, an_abstract_socket_is_written_with_a_leading_at_sign)
{
	char name[64];
	snprintf(name, sizeof(name), "@cplow-test-sdnotify-%d", (int)getpid());
	int fd = bind_notify_socket(name);
	setenv("NOTIFY_SOCKET", name, 1);
	sdnotify_ready();
	assert_received(fd, "READY=1");
	close(fd);
}

Test(sdnotify, an_address_neither_absolute_nor_abstract_or_too_long_is_einval)
{
	setenv("NOTIFY_SOCKET", "relative/notify", 1);
	cr_assert_eq(sdnotify_send("READY=1"), -EINVAL);
	setenv("NOTIFY_SOCKET", "@", 1);
	cr_assert_eq(sdnotify_send("READY=1"), -EINVAL);
	char longname[200];
	memset(longname, 'x', sizeof(longname) - 1);
	longname[0] = '/';
	longname[sizeof(longname) - 1] = '\0';
	setenv("NOTIFY_SOCKET", longname, 1);
	cr_assert_eq(sdnotify_send("READY=1"), -EINVAL);
	longname[0] = '@';
	cr_assert_eq(sdnotify_send("READY=1"), -EINVAL);
	sdnotify_ready(); /* logged, not fatal */
}

Test(sdnotify, a_socket_nobody_listens_on_is_an_error_not_a_crash)
{
	setenv("NOTIFY_SOCKET", "/tmp/cplow-sdnotify-nobody-listens-here", 1);
	int rc = sdnotify_send("READY=1");
	cr_assert(rc == -ENOENT || rc == -ECONNREFUSED, "got %d", rc);
}
