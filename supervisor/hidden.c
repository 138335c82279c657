#include "hidden.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "procs.h"
#include "rclone_cmd.h"
#include "rclone_proc.h"

/* rclone's exit code for "directory not found" (and a file below one): nothing to delete. */
#define HIDDEN_RCLONE_NOT_FOUND 3

struct marker {
	char *rel;           /* below the hidden folder, the suffix still on */
	bool folder;
};

struct markers {
	struct marker *v;
	size_t n, cap;
};

static size_t suffix_len(void)
{
	return sizeof(HIDDEN_SUFFIX) - 1;
}

static bool is_marker(const char *name)
{
	size_t len = strlen(name);
	return len >= suffix_len() && strcmp(name + len - suffix_len(), HIDDEN_SUFFIX) == 0;
}

static int push_marker(struct markers *m, const char *rel, bool folder)
{
	if (m->n == m->cap) {
		size_t cap = m->cap ? m->cap * 2 : 32;
		void *p = realloc(m->v, cap * sizeof(*m->v));
		if (!p)
			return -1;
		m->v = p;
		m->cap = cap;
	}
	char *copy = strdup(rel);
	if (!copy)
		return -1;
	m->v[m->n++] = (struct marker){ copy, folder };
	return 0;
}

static void markers_free(struct markers *m)
{
	for (size_t i = 0; i < m->n; i++)
		free(m->v[i].rel);
	free(m->v);
	memset(m, 0, sizeof(*m));
}

/* Every marker below root/rel (rel "" at the top); a folder marker's contents are not searched
 * and symbolic links are not followed. -1 when out of memory; an unreadable folder is logged and
 * skipped. */
static int find_markers(const char *root, char *rel, size_t rel_len, struct markers *m)
{
	char dir_path[PATH_MAX];
	snprintf(dir_path, sizeof(dir_path), "%s%s%s", root, rel_len ? "/" : "", rel);
	DIR *d = opendir(dir_path);
	if (!d) {
		log_warn("hidden: cannot read %s: %s", dir_path, strerror(errno));
		return 0;
	}
	int rc = 0;
	struct dirent *de;
	while (rc == 0 && (de = readdir(d))) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		size_t name_len = strlen(de->d_name);
		if (rel_len + 1 + name_len + 1 > PATH_MAX) {
			log_warn("hidden: a path below %s is too long; skipped", dir_path);
			continue;
		}
		size_t at = rel_len;
		if (rel_len)
			rel[at++] = '/';
		memcpy(rel + at, de->d_name, name_len + 1);
		struct stat st;
		if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
			bool folder = S_ISDIR(st.st_mode);
			if (is_marker(de->d_name))
				rc = push_marker(m, rel, folder);
			else if (folder)
				rc = find_markers(root, rel, at + name_len, m);
		}
		rel[rel_len] = '\0';
	}
	closedir(d);
	return rc;
}

int hidden_target(const char *rel, char *out, size_t len, const char **why)
{
	size_t n = strlen(rel);
	*why = NULL;
	if (n < suffix_len() || strcmp(rel + n - suffix_len(), HIDDEN_SUFFIX) != 0) {
		*why = "its name does not end in " HIDDEN_SUFFIX;
		return -1;
	}
	if (rel[0] == '/')
		*why = "its path is absolute";
	n -= suffix_len();
	for (size_t i = 0; !*why && i < n; i++)
		if ((unsigned char)rel[i] < 0x20 || rel[i] == 0x7f)
			*why = "its path holds a control character";
	/* Each component: not empty, not "." or ".." (the deletion would leave the path named). */
	for (size_t start = 0; !*why && start <= n;) {
		size_t end = start;
		while (end < n && rel[end] != '/')
			end++;
		size_t c = end - start;
		if (c == 0)
			*why = n == 0 ? "the name is empty without the suffix" : "an empty path component";
		else if ((c == 1 && rel[start] == '.') ||
			 (c == 2 && rel[start] == '.' && rel[start + 1] == '.'))
			*why = "a \".\" or \"..\" component";
		start = end + 1;
	}
	if (!*why && n >= len)
		*why = "its path is too long";
	if (*why)
		return -1;
	memcpy(out, rel, n);
	out[n] = '\0';
	return 0;
}

int hidden_remote_path(const char *hidden_remote, const char *target, char *out, size_t len)
{
	size_t n = strlen(hidden_remote);
	bool joined = n && (hidden_remote[n - 1] == ':' || hidden_remote[n - 1] == '/');
	int w = snprintf(out, len, "%s%s%s", hidden_remote, joined ? "" : "/", target);
	return w >= 0 && (size_t)w < len ? 0 : -1;
}

/* ---- one rclone call, with a deadline ---- */

static int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

enum call_end { CALL_DONE, CALL_GONE, CALL_FAILED, CALL_STOPPED };

/* Runs cmd; its last stderr line into last (for the log). */
static enum call_end run_call(const struct rclone_cmd *cmd, const struct hidden_options *o,
			      char *last, size_t last_len)
{
	struct rclone_proc p = { .pid = -1, .out_fd = -1, .go_fd = -1 };
	last[0] = '\0';
	if (rclone_proc_defer(cmd, STDERR_FILENO, &p) < 0 || rclone_proc_release(&p) < 0) {
		snprintf(last, last_len, "cannot run %s: %s", cmd->argv[0], strerror(errno));
		if (p.pid > 0)
			rclone_proc_cancel(&p);
		return CALL_FAILED;
	}
	int64_t deadline = mono_ms() + (o->call_timeout_ms > 0 ? o->call_timeout_ms
							       : HIDDEN_CALL_TIMEOUT_MS);
	char buf[4096];
	size_t have = 0;
	enum call_end end = CALL_DONE;
	for (;;) {
		int64_t left = deadline - mono_ms();
		if (left <= 0) {
			snprintf(last, last_len, "rclone did not finish in %d s",
				 (o->call_timeout_ms > 0 ? o->call_timeout_ms
							 : HIDDEN_CALL_TIMEOUT_MS) / 1000);
			end = CALL_FAILED;
			break;
		}
		struct pollfd fds[2] = { { p.out_fd, POLLIN, 0 }, { o->stop_fd, POLLIN, 0 } };
		int k = poll(fds, o->stop_fd >= 0 ? 2 : 1, left > 1000 ? 1000 : (int)left);
		if (k < 0 && errno != EINTR)
			break;
		if (k <= 0)
			continue;
		if (o->stop_fd >= 0 && (fds[1].revents & POLLIN)) {
			end = CALL_STOPPED;
			break;
		}
		ssize_t n = read(p.out_fd, buf + have, sizeof(buf) - 1 - have);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n <= 0)
			break;
		have += (size_t)n;
		buf[have] = '\0';
		/* Keep the last whole line (rclone's final "Failed to ..." says what went wrong). */
		char *nl;
		while ((nl = strchr(buf, '\n')) && nl[1]) {
			size_t rest = have - (size_t)(nl + 1 - buf);
			memmove(buf, nl + 1, rest + 1);
			have = rest;
		}
		if (have == sizeof(buf) - 1)
			have = 0; /* a line too long to keep: dropped */
	}
	if (end != CALL_DONE)
		kill(p.pid, SIGKILL);
	int status = 0;
	rclone_proc_wait(&p, &status);
	if (end != CALL_DONE)
		return end;
	if (have && buf[have - 1] == '\n')
		have--;
	if (last_len) {
		size_t k = have < last_len - 1 ? have : last_len - 1;
		memcpy(last, buf, k);
		last[k] = '\0';
	}
	if (!WIFEXITED(status))
		return CALL_FAILED;
	if (WEXITSTATUS(status) == 0)
		return CALL_DONE;
	return WEXITSTATUS(status) == HIDDEN_RCLONE_NOT_FOUND ? CALL_GONE : CALL_FAILED;
}

/* ---- a marker ---- */

/* Removes a marker: the file, or the folder and what it holds (below the hidden folder only:
 * the walk follows no link). */
static int remove_tree(int dir_fd, const char *name, bool folder)
{
	if (!folder)
		return unlinkat(dir_fd, name, 0);
	int fd = openat(dir_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -1;
	DIR *d = fdopendir(fd);
	if (!d) {
		close(fd);
		return -1;
	}
	int rc = 0;
	struct dirent *de;
	while (rc == 0 && (de = readdir(d))) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		struct stat st;
		if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue;
		rc = remove_tree(dirfd(d), de->d_name, S_ISDIR(st.st_mode));
	}
	closedir(d);
	return rc == 0 ? unlinkat(dir_fd, name, AT_REMOVEDIR) : rc;
}

/* Removes the empty folders below dir_fd's name (and it, when remove_self), deepest first, as
 * cloudplow's `find -mindepth 1 -type d -empty -delete` did, but never a marker: a folder
 * marker is an empty folder that still waits for its deletion. Whether name is gone. */
static bool prune_empty(int dir_fd, const char *name, bool remove_self)
{
	int fd = openat(dir_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return false;
	DIR *d = fdopendir(fd);
	if (!d) {
		close(fd);
		return false;
	}
	bool empty = true;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		struct stat st;
		if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
		    S_ISDIR(st.st_mode) && !is_marker(de->d_name) &&
		    prune_empty(dirfd(d), de->d_name, true))
			continue;
		empty = false;
	}
	closedir(d);
	return remove_self && empty && unlinkat(dir_fd, name, AT_REMOVEDIR) == 0;
}

static void remove_marker(const char *folder, const struct marker *mk)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/%s", folder, mk->rel);
	if (remove_tree(AT_FDCWD, path, mk->folder) < 0 && errno != ENOENT)
		log_warn("hidden: cannot remove the marker %s: %s", path, strerror(errno));
}

/* Cleans one marker on every remote; whether it is gone from all of them. */
static bool clean_marker(const struct config *c, const struct config_hidden *h,
			 const struct marker *mk, const struct hidden_options *o,
			 struct hidden_result *r)
{
	char target[PATH_MAX], remote_path[PATH_MAX + 256], err[512], last[512];
	const char *why;
	if (hidden_target(mk->rel, target, sizeof(target), &why) < 0) {
		log_warn("hidden: %s/%s is refused (%s): nothing is deleted for it, and it stays",
			 h->folder, mk->rel, why);
		return false;
	}
	bool all = true;
	struct stage_spec spec = { .rclone_binary = c->core.rclone_binary_path,
				   .rclone_config = c->core.rclone_config_path };
	for (size_t i = 0; i < h->remote_count && !r->stopped; i++) {
		const struct config_remote *rm = config_find_remote(c, h->remotes[i]);
		if (!rm || !rm->hidden_remote ||
		    hidden_remote_path(rm->hidden_remote, target, remote_path,
				       sizeof(remote_path)) < 0) {
			log_warn("hidden: no path on remote %s for %s; the marker stays", h->remotes[i],
				 target);
			all = false;
			continue;
		}
		if (o->dry_run) {
			log_info("hidden: dry run: would %s %s", mk->folder ? "purge" : "delete",
				 remote_path);
			continue;
		}
		struct rclone_cmd cmd;
		if (rclone_cmd_build_remove(&spec, remote_path, mk->folder, &cmd, err,
					    sizeof(err)) < 0) {
			log_warn("hidden: %s: %s; the marker stays", remote_path, err);
			all = false;
			continue;
		}
		enum call_end end = run_call(&cmd, o, last, sizeof(last));
		rclone_cmd_free(&cmd);
		/* Not every backend says "not found" the same way: ask whether it is there. */
		char seen[512];
		if (end == CALL_FAILED &&
		    rclone_cmd_build_stat(&spec, remote_path, &cmd, err, sizeof(err)) == 0) {
			if (run_call(&cmd, o, seen, sizeof(seen)) == CALL_GONE)
				end = CALL_GONE;
			rclone_cmd_free(&cmd);
		}
		switch (end) {
		case CALL_DONE:
			log_info("hidden: %s %s", mk->folder ? "purged" : "deleted", remote_path);
			r->deletions++;
			break;
		case CALL_GONE:
			log_info("hidden: %s was not there (already deleted)", remote_path);
			r->deletions++;
			break;
		case CALL_STOPPED:
			r->stopped = true;
			all = false;
			break;
		case CALL_FAILED:
			log_warn("hidden: cannot %s %s (%s); the marker %s/%s stays for the next clean",
				 mk->folder ? "purge" : "delete", remote_path, last, h->folder,
				 mk->rel);
			all = false;
			break;
		}
	}
	return all && !r->stopped;
}

int hidden_clean(const struct config *c, const struct hidden_options *o,
		 struct hidden_result *r)
{
	memset(r, 0, sizeof(*r));
	for (size_t i = 0; i < c->hidden_count && !r->stopped; i++) {
		const struct config_hidden *h = &c->hidden[i];
		struct stat st;
		if (stat(h->folder, &st) < 0 || !S_ISDIR(st.st_mode))
			continue; /* no folder, no markers: cloudplow did nothing either */
		struct markers m = { 0 };
		char rel[PATH_MAX] = "";
		if (find_markers(h->folder, rel, 0, &m) < 0) {
			log_error("hidden: out of memory listing %s", h->folder);
			markers_free(&m);
			return 1;
		}
		if (m.n)
			log_info("hidden: %zu markers in %s", m.n, h->folder);
		r->markers += m.n;
		for (size_t k = 0; k < m.n && !r->stopped; k++) {
			if (!clean_marker(c, h, &m.v[k], o, r)) {
				r->kept++;
				continue;
			}
			r->cleaned++;
			if (!o->dry_run)
				remove_marker(h->folder, &m.v[k]);
		}
		markers_free(&m);
		if (!o->dry_run && !r->stopped)
			prune_empty(AT_FDCWD, h->folder, false);
	}
	if (r->stopped)
		return -1;
	if (r->markers)
		log_info("hidden: %zu markers, %zu cleaned%s, %zu kept", r->markers, r->cleaned,
			 o->dry_run ? " (dry run: nothing deleted)" : "", r->kept);
	return r->kept ? 1 : 0;
}

/* ---- the child ---- */

pid_t hidden_start(const struct config *c, int close_fd)
{
	pid_t pid = procs_fork(close_fd, SIGTERM);
	if (pid != 0)
		return pid;
	setpgid(0, 0); /* one kill of its group ends its rclone too */
	log_set_tag("hidden");
	static const int caught[] = { SIGTERM, SIGINT };
	int stop_fd = procs_signals_install(caught, 2, NULL, 0, 0, NULL);
	if (stop_fd < 0)
		_exit(2);
	struct hidden_options o = { .dry_run = c->core.dry_run, .stop_fd = stop_fd };
	struct hidden_result r;
	int rc = hidden_clean(c, &o, &r);
	_exit(rc < 0 ? 2 : rc);
}
