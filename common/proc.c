#include "proc.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* "pid (comm) S ppid ...": fields after the last ')' (comm may hold parentheses and spaces). */
static int read_stat(pid_t pid, char *state, uint64_t *start)
{
	char path[48], buf[1024];
	if (pid <= 0) {
		errno = ESRCH;
		return -1;
	}
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	int saved = errno;
	close(fd);
	if (n <= 0) {
		errno = n < 0 ? saved : EIO;
		return -1;
	}
	buf[n] = '\0';
	const char *p = strrchr(buf, ')');
	if (!p || p[1] != ' ' || !p[2]) {
		errno = EIO;
		return -1;
	}
	*state = p[2];
	/* Field 3 (the state) is the first after ')'; starttime is field 22. */
	p += 2;
	for (int field = 3; field < 22; field++) {
		p = strchr(p, ' ');
		if (!p) {
			errno = EIO;
			return -1;
		}
		p++;
	}
	char *end;
	errno = 0;
	unsigned long long v = strtoull(p, &end, 10);
	if (errno || end == p) {
		errno = EIO;
		return -1;
	}
	*start = v;
	return 0;
}

int proc_start_time(pid_t pid, uint64_t *start)
{
	char state;
	uint64_t v;
	if (read_stat(pid, &state, &v) < 0)
		return -1;
	*start = v;
	return 0;
}

bool proc_alive(pid_t pid, uint64_t start)
{
	char state;
	uint64_t v;
	if (read_stat(pid, &state, &v) < 0)
		return false;
	/* A dead process nobody has reaped yet (an orphan waiting for a slow init) is still there. */
	if (state == 'Z' || state == 'X')
		return false;
	return start == 0 || v == start;
}
