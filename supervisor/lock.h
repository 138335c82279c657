/*
 * One cplow per config: an flock() on the lock file. The kernel drops the lock when the last
 * descriptor of it closes, so a crashed cplow leaves no stale lock behind; the file's content
 * (the holder's pid) is only there to name the holder in the refusal.
 */
#ifndef CPLOW_LOCK_H
#define CPLOW_LOCK_H

#include <stddef.h>
#include <sys/types.h>

enum lock_status {
	LOCK_TAKEN = 0,
	LOCK_HELD = 1,    /* another process holds it; *holder says which (0 = unknown) */
	LOCK_ERROR = -1,  /* errno says why */
};

/* Takes the lock without waiting; on LOCK_TAKEN *fd keeps it (close-on-exec). */
enum lock_status lock_take(const char *path, int *fd, pid_t *holder);

#endif
