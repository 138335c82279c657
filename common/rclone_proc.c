#include "rclone_proc.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static void child_reset(pid_t parent)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_DFL;
	for (int sig = 1; sig < NSIG; sig++)
		sigaction(sig, &sa, NULL); /* fails harmlessly for SIGKILL, SIGSTOP and RT gaps */
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != parent)
		_exit(127); /* the worker died before prctl: do not run unowned */
}

static void close_all_but(int a, int b)
{
	int lo = a < b ? a : b, hi = a < b ? b : a;
	if (lo > 3)
		close_range(3, (unsigned)lo - 1, 0);
	if (hi > lo + 1)
		close_range((unsigned)lo + 1, (unsigned)hi - 1, 0);
	close_range((unsigned)hi + 1, ~0U, 0);
}

static void child_exec(const struct rclone_cmd *cmd)
{
	/* rclone needs stdin, stdout and stderr only; libraries (libcurl's wake-up pair) leave
	 * descriptors without close-on-exec. */
	close_range(3, ~0U, 0);
	/* Failing (a limit that forbids it) leaves rclone at the worker's priority: harmless. */
	if (cmd->nice > 0 && nice(cmd->nice) == -1)
		errno = 0;
	execve(cmd->argv[0], cmd->argv, cmd->envp);
	_exit(127);
}

static int devnull_to(int target, int flags)
{
	int fd = open("/dev/null", flags | O_CLOEXEC);
	if (fd < 0)
		return -1;
	int rc = dup2(fd, target) < 0 ? -1 : 0;
	close(fd);
	return rc;
}

int rclone_proc_defer(const struct rclone_cmd *cmd, int out_target, struct rclone_proc *p)
{
	int out[2], go[2];
	if (pipe2(out, O_CLOEXEC) < 0)
		return -1;
	if (pipe2(go, O_CLOEXEC) < 0) {
		close(out[0]);
		close(out[1]);
		return -1;
	}
	pid_t parent = getpid();
	pid_t pid = fork();
	if (pid < 0) {
		int saved = errno;
		close(out[0]);
		close(out[1]);
		close(go[0]);
		close(go[1]);
		errno = saved;
		return -1;
	}
	if (pid == 0) {
		child_reset(parent);
		close(go[1]);
		close(out[0]);
		/* Other deferred children's go pipes are inherited here too; holding their write
		 * ends would keep them from seeing the worker cancel them. */
		close_all_but(go[0], out[1]);
		char go_byte;
		ssize_t n;
		do
			n = read(go[0], &go_byte, 1);
		while (n < 0 && errno == EINTR);
		if (n != 1)
			_exit(0); /* cancelled: the pipe closed without a go */
		if (dup2(out[1], out_target) < 0 || devnull_to(STDIN_FILENO, O_RDONLY) < 0 ||
		    (out_target != STDOUT_FILENO && devnull_to(STDOUT_FILENO, O_WRONLY) < 0))
			_exit(127);
		child_exec(cmd);
	}
	close(out[1]);
	close(go[0]);
	p->pid = pid;
	p->out_fd = out[0];
	p->go_fd = go[1];
	return 0;
}

int rclone_proc_release(struct rclone_proc *p)
{
	ssize_t n;
	do
		n = write(p->go_fd, "g", 1);
	while (n < 0 && errno == EINTR);
	close(p->go_fd);
	p->go_fd = -1;
	return n == 1 ? 0 : -1;
}

int rclone_proc_wait(struct rclone_proc *p, int *status)
{
	pid_t r;
	do
		r = waitpid(p->pid, status, 0);
	while (r < 0 && errno == EINTR);
	if (p->out_fd >= 0) {
		close(p->out_fd);
		p->out_fd = -1;
	}
	return r == p->pid ? 0 : -1;
}

void rclone_proc_cancel(struct rclone_proc *p)
{
	if (p->go_fd >= 0) {
		close(p->go_fd);
		p->go_fd = -1;
	}
	int st;
	rclone_proc_wait(p, &st);
}

int rclone_proc_open_files(pid_t pid, struct rclone_proc_file *out, size_t cap)
{
	char dir_path[64];
	snprintf(dir_path, sizeof(dir_path), "/proc/%d/fd", (int)pid);
	int dir_fd = open(dir_path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dir_fd < 0)
		return -errno;
	DIR *dir = fdopendir(dir_fd);
	if (!dir) {
		int saved = errno;
		close(dir_fd);
		return -saved;
	}
	size_t n = 0;
	struct dirent *de;
	while (n < cap && (de = readdir(dir))) {
		if (de->d_name[0] == '.')
			continue;
		struct stat st;
		/* Followed: the target's identity. Pipes, sockets and the like are not files. */
		if (fstatat(dirfd(dir), de->d_name, &st, 0) < 0 || !S_ISREG(st.st_mode))
			continue;
		out[n++] = (struct rclone_proc_file){ st.st_dev, st.st_ino };
	}
	closedir(dir);
	return (int)n;
}

int rclone_proc_has_open(const struct rclone_proc_file *files, size_t n, dev_t dev, ino_t ino)
{
	for (size_t i = 0; i < n; i++)
		if (files[i].dev == dev && files[i].ino == ino)
			return 1;
	return 0;
}
