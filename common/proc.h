/*
 * A process's identity across PID reuse: its pid and its start time (clock ticks after boot,
 * field 22 of /proc/<pid>/stat). A pid alone names whatever process holds it now: a worker
 * killed with its whole tree leaves its pid in a stage slot, and a later process that gets
 * that pid would keep the slot and its account busy. Read from /proc only (no kill(2)), so the
 * sandboxed flusher can ask too.
 */
#ifndef CPLOW_PROC_H
#define CPLOW_PROC_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

/* 0 with *start set, or -1 (errno: ENOENT when no such process). */
int proc_start_time(pid_t pid, uint64_t *start);

/* Whether pid runs (exists and is not a zombie) and, when start is not 0, is the process that
 * started at that time. */
bool proc_alive(pid_t pid, uint64_t start);

#endif
