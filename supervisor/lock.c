#include "lock.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/file.h>
#include <unistd.h>

enum lock_status lock_take(const char *path, int *fd_out, pid_t *holder)
{
	*holder = 0;
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
		return LOCK_ERROR;
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		int saved = errno;
		if (saved == EWOULDBLOCK) {
			char buf[32] = "";
			ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
			if (n > 0) {
				buf[n] = '\0';
				*holder = (pid_t)atol(buf);
			}
			close(fd);
			return LOCK_HELD;
		}
		close(fd);
		errno = saved;
		return LOCK_ERROR;
	}
	char buf[32];
	int len = snprintf(buf, sizeof(buf), "%d\n", (int)getpid());
	if (ftruncate(fd, 0) < 0 || pwrite(fd, buf, (size_t)len, 0) != len) {
		int saved = errno;
		close(fd);
		errno = saved;
		return LOCK_ERROR;
	}
	*fd_out = fd;
	return LOCK_TAKEN;
}
