/*
 * Starting rclone. The child gets default signal dispositions and an empty mask (a child that
 * inherits SIG_IGN for SIGINT cannot be interrupted), dies with its parent (an orphaned rclone
 * would go on uploading files nobody counts), and stays in the worker's process group, so the
 * supervisor can end both with one kill.
 */
#ifndef CPLOW_RCLONE_PROC_H
#define CPLOW_RCLONE_PROC_H

#include <sys/types.h>

#include "rclone_cmd.h"

struct rclone_proc {
	pid_t pid;
	int out_fd;   /* read end: the command's stderr or stdout */
	int go_fd;    /* write end the child waits on before exec; -1 once released */
};

/*
 * Forks now, execs later: the child waits until rclone_proc_release(). The worker forks
 * everything it may need early, while it is small (a fork copies page tables, and every page
 * the worker writes afterwards is copied once more), and before its seccomp sandbox, where
 * fork and exec are gone. out_fd reads what the command writes to out_target (STDOUT_FILENO:
 * the rest of its stderr is the worker's; STDERR_FILENO: its stdout goes to /dev/null).
 */
int rclone_proc_defer(const struct rclone_cmd *cmd, int out_target, struct rclone_proc *p);
int rclone_proc_release(struct rclone_proc *p);

/* Waits for the process; *status as from waitpid. */
int rclone_proc_wait(struct rclone_proc *p, int *status);
/* Ends a deferred child that will not be needed, and reaps it. */
void rclone_proc_cancel(struct rclone_proc *p);

/* A file a process has open, by identity: what the worker compares a source file against to
 * tell rclone's opens from any other process's (the open-watch cannot say who opened). */
struct rclone_proc_file {
	dev_t dev;
	ino_t ino;
};

/*
 * The regular files pid has open now (its /proc/<pid>/fd, followed: no readlink needed, and a
 * name rclone shows differently from the disk does not matter). Returns how many it put in out
 * (at most cap), or a negative errno (the process is gone, or /proc is not ours to read).
 */
int rclone_proc_open_files(pid_t pid, struct rclone_proc_file *out, size_t cap);
/* Whether (dev, ino) is among the n files. */
int rclone_proc_has_open(const struct rclone_proc_file *files, size_t n, dev_t dev, ino_t ino);

#endif
