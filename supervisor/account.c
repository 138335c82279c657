#include "account.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "err.h"

extern char **environ;

/* Remotes nested deeper than this are taken for a cycle rclone would also never finish. */
#define NEST_MAX 32
/* A config dump larger than this is not an rclone.conf anyone keeps. */
#define DUMP_MAX_BYTES ((size_t)64 << 20)
/* Enough of rclone's stderr for its last line, which says what went wrong. */
#define STDERR_KEEP_BYTES 4096
/* What the "no drive remote behind it" message shows of the remotes it followed. */
#define TRAIL_MAX 480

/* --- rclone config dump ----------------------------------------------------------------- */

struct buf {
	char *data;
	size_t len, cap, limit;
	bool over;     /* more arrived than limit */
	bool secret;   /* wiped before its memory is given back */
};

static int buf_append(struct buf *b, const char *src, size_t n)
{
	if (b->len + n > b->limit) {
		b->over = true;
		n = b->limit - b->len;
	}
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		while (cap < b->len + n + 1)
			cap *= 2;
		/* Not realloc: the dump holds tokens and obscured passwords, and realloc would
		 * hand the old block back unwiped. */
		char *data = malloc(cap);
		if (!data)
			return -ENOMEM;
		if (b->len)
			memcpy(data, b->data, b->len);
		if (b->data) {
			if (b->secret)
				explicit_bzero(b->data, b->cap);
			free(b->data);
		}
		b->data = data;
		b->cap = cap;
	}
	memcpy(b->data + b->len, src, n);
	b->len += n;
	b->data[b->len] = '\0';
	return 0;
}

static void buf_free(struct buf *b)
{
	if (b->data && b->secret)
		explicit_bzero(b->data, b->cap);
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}

/* The last non-empty line of rclone's stderr, control bytes blanked, for a one-line error. */
static const char *last_line(struct buf *b)
{
	if (!b->data)
		return "";
	char *end = b->data + b->len;
	while (end > b->data && (end[-1] == '\n' || end[-1] == '\r' || end[-1] == ' '))
		end--;
	*end = '\0';
	char *start = end;
	while (start > b->data && start[-1] != '\n')
		start--;
	for (char *p = start; p < end; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = ' ';
	return start;
}

static void child_exec(char *const argv[], char *const envp[], int out_fd, int err_fd,
		       int status_fd, pid_t parent)
{
	/* Only async-signal-safe calls from here: the caller may have threads.
	 * The pipes move above 0-2 first: a caller running with stdin or stdout closed gets its
	 * pipes there, and dup2 onto the same number would leave them close-on-exec. */
	out_fd = fcntl(out_fd, F_DUPFD, 10);
	err_fd = fcntl(err_fd, F_DUPFD, 10);
	status_fd = fcntl(status_fd, F_DUPFD_CLOEXEC, 10);
	if (out_fd < 0 || err_fd < 0 || status_fd < 0)
		_exit(127);
	struct sigaction dfl;
	memset(&dfl, 0, sizeof(dfl));
	dfl.sa_handler = SIG_DFL;
	for (int sig = 1; sig < NSIG; sig++)
		sigaction(sig, &dfl, NULL); /* an inherited SIG_IGN survives exec */
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != parent)
		_exit(127); /* the caller died before prctl took effect */
	int in_fd = open("/dev/null", O_RDONLY);
	if (in_fd < 0 || dup2(in_fd, STDIN_FILENO) < 0 || dup2(out_fd, STDOUT_FILENO) < 0 ||
	    dup2(err_fd, STDERR_FILENO) < 0)
		goto exec_failed;
	/* Keep the status pipe (close-on-exec) and nothing else the caller had open. */
	close_range(3, (unsigned)status_fd - 1, 0);
	close_range((unsigned)status_fd + 1, ~0U, 0);
	execve(argv[0], argv, envp);
exec_failed:;
	int e = errno;
	ssize_t w = write(status_fd, &e, sizeof(e));
	(void)w;
	_exit(127);
}

/*
 * Runs argv with envp, stdout into *out and stderr into *errout, killing it at the deadline.
 * Returns 0 with *status from waitpid, -ETIMEDOUT, or -errno (exec's errno when it could not
 * run). Fork happens only after every allocation the child needs is made.
 */
static int run_capture(char *const argv[], char *const envp[], int timeout_ms, struct buf *out,
		       struct buf *errout, int *status)
{
	int out_pipe[2] = {-1, -1}, err_pipe[2] = {-1, -1}, status_pipe[2] = {-1, -1};
	int rc = -EIO;
	pid_t pid = -1;
	if (pipe2(out_pipe, O_CLOEXEC) < 0 || pipe2(err_pipe, O_CLOEXEC) < 0 ||
	    pipe2(status_pipe, O_CLOEXEC) < 0) {
		rc = -errno;
		goto out;
	}
	pid_t parent = getpid();
	pid = fork();
	if (pid < 0) {
		rc = -errno;
		goto out;
	}
	if (pid == 0)
		child_exec(argv, envp, out_pipe[1], err_pipe[1], status_pipe[1], parent);
	close(out_pipe[1]);
	close(err_pipe[1]);
	close(status_pipe[1]);
	out_pipe[1] = err_pipe[1] = status_pipe[1] = -1;

	int64_t deadline = clock_mono_ms() + timeout_ms;
	int exec_errno = 0;
	struct pollfd fds[3] = {
		{.fd = out_pipe[0], .events = POLLIN},
		{.fd = err_pipe[0], .events = POLLIN},
		{.fd = status_pipe[0], .events = POLLIN},
	};
	struct buf *sinks[3] = {out, errout, NULL};
	int open_fds = 3;
	bool timed_out = false;
	while (open_fds > 0) {
		int64_t left = deadline - clock_mono_ms();
		if (left <= 0) {
			timed_out = true;
			break;
		}
		int n = poll(fds, 3, (int)left);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = -errno;
			goto kill_child;
		}
		for (int i = 0; i < 3; i++) {
			if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			char chunk[16384];
			ssize_t got = read(fds[i].fd, chunk, sizeof(chunk));
			if (got < 0 && errno == EINTR)
				continue;
			if (got > 0 && sinks[i]) {
				int appended = buf_append(sinks[i], chunk, (size_t)got);
				if (sinks[i]->secret)
					explicit_bzero(chunk, (size_t)got);
				if (appended < 0) {
					rc = -ENOMEM;
					goto kill_child;
				}
			} else if (got > 0 && (size_t)got >= sizeof(exec_errno)) {
				memcpy(&exec_errno, chunk, sizeof(exec_errno));
			}
			if (got <= 0) {
				fds[i].fd = -1; /* closed below, through the pipe arrays */
				open_fds--;
			}
		}
	}
	/* Its output is closed; it may still be on its way out. */
	while (!timed_out) {
		pid_t r = waitpid(pid, status, WNOHANG);
		if (r == pid) {
			pid = -1;
			break;
		}
		if (r < 0 && errno != EINTR) {
			rc = -errno;
			pid = -1;
			goto out;
		}
		if (clock_mono_ms() >= deadline) {
			timed_out = true;
			break;
		}
		struct timespec pause = {.tv_sec = 0, .tv_nsec = 5 * 1000 * 1000};
		nanosleep(&pause, NULL);
	}
	if (timed_out) {
		rc = -ETIMEDOUT;
		goto kill_child;
	}
	rc = exec_errno ? -exec_errno : 0;
	goto out;

kill_child:
	kill(pid, SIGKILL);
	int ignored;
	while (waitpid(pid, &ignored, 0) < 0 && errno == EINTR)
		;
	pid = -1;
out:
	for (int i = 0; i < 2; i++) {
		if (out_pipe[i] >= 0)
			close(out_pipe[i]);
		if (err_pipe[i] >= 0)
			close(err_pipe[i]);
		if (status_pipe[i] >= 0)
			close(status_pipe[i]);
	}
	return rc;
}

/* This process's environment minus RCLONE_CONFIG=, which rclone_cmd drops too: the dump must
 * read the config file the transfer will read. Strings are borrowed. */
static char **dump_env(void)
{
	size_t n = 0;
	for (char **e = environ; e && *e; e++)
		n++;
	char **env = calloc(n + 1, sizeof(*env));
	if (!env)
		return NULL;
	size_t k = 0;
	for (char **e = environ; e && *e; e++)
		if (strncmp(*e, "RCLONE_CONFIG=", 14) != 0)
			env[k++] = *e;
	env[k] = NULL;
	return env;
}

/* Wipes the values before cJSON frees them: the dump holds tokens and obscured passwords. */
static void dump_wipe(cJSON *item)
{
	for (; item; item = item->next) {
		dump_wipe(item->child);
		if (item->valuestring)
			explicit_bzero(item->valuestring, strlen(item->valuestring));
	}
}

static void dump_delete(cJSON *dump)
{
	dump_wipe(dump);
	cJSON_Delete(dump);
}

/* `rclone <what...> --ask-password=false [--config=...]`'s standard output into *out; name
 * is the command in messages ("config dump"). */
static int run_rclone(const char *rclone_binary, const char *rclone_config, const char *name,
		      char *const *what, struct buf *out, char *err, size_t err_len)
{
	char *config_flag = NULL, *argv[8] = { (char *)rclone_binary };
	char **env = NULL;
	struct buf errout = {.limit = STDERR_KEEP_BYTES};
	size_t argc = 1;
	int rc;
	if (rclone_config && asprintf(&config_flag, "--config=%s", rclone_config) < 0) {
		config_flag = NULL;
		rc = -ENOMEM;
		goto out;
	}
	env = dump_env();
	if (!env) {
		rc = -ENOMEM;
		goto out;
	}
	while (*what && argc < 5)
		argv[argc++] = *what++;
	/* --ask-password=false: an encrypted config without RCLONE_CONFIG_PASS fails at once
	 * instead of waiting for a password nobody will type. */
	argv[argc++] = "--ask-password=false";
	argv[argc] = config_flag;
	int status = 0;
	rc = run_capture(argv, env, ACCOUNT_DUMP_TIMEOUT_MS, out, &errout, &status);
	if (rc == -ETIMEDOUT) {
		err_set(err, err_len, rc, "%s %s did not finish within %d s; killed it", rclone_binary,
		     name, ACCOUNT_DUMP_TIMEOUT_MS / 1000);
		goto out;
	}
	if (rc == -ENOMEM) {
		err_set(err, err_len, rc, "out of memory reading %s %s", rclone_binary, name);
		goto out;
	}
	if (rc < 0) {
		err_set(err, err_len, -EIO, "cannot run %s: %s", rclone_binary, strerror(-rc));
		rc = -EIO;
		goto out;
	}
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		const char *why = last_line(&errout);
		if (WIFSIGNALED(status))
			err_set(err, err_len, -EIO, "%s %s was killed by signal %d%s%s", rclone_binary,
			     name, WTERMSIG(status), *why ? ": " : "", why);
		else
			err_set(err, err_len, -EIO, "%s %s exited %d%s%s", rclone_binary, name,
			     WEXITSTATUS(status), *why ? ": " : "", why);
		rc = -EIO;
		goto out;
	}
	if (out->over) {
		rc = err_set(err, err_len, -EIO, "%s %s printed more than %zu MiB", rclone_binary,
			  name, out->limit >> 20);
		goto out;
	}
	rc = 0;
out:
	free(config_flag);
	free(env);
	buf_free(&errout);
	return rc;
}

/* The config file as JSON: {"remote": {"type": "...", ...}, ...}. */
static int config_dump(const char *rclone_binary, const char *rclone_config, cJSON **dump,
		       char *err, size_t err_len)
{
	char *what[] = { "config", "dump", NULL };
	struct buf out = {.limit = DUMP_MAX_BYTES, .secret = true};
	int rc = run_rclone(rclone_binary, rclone_config, "config dump", what, &out, err,
			    err_len);
	cJSON *json = rc == 0 && out.data ? cJSON_ParseWithLength(out.data, out.len) : NULL;
	if (rc == 0 && !cJSON_IsObject(json)) {
		dump_delete(json);
		rc = err_set(err, err_len, -EIO, "%s config dump printed no JSON object", rclone_binary);
	} else if (rc == 0) {
		*dump = json;
	}
	buf_free(&out);
	return rc;
}

int account_list_remotes(const char *rclone_binary, const char *rclone_config,
			 struct account_remotes *out, char *err, size_t err_len)
{
	char *what[] = { "listremotes", NULL };
	struct buf text = {.limit = DUMP_MAX_BYTES};
	struct account_remotes list = { 0 };
	int rc = run_rclone(rclone_binary, rclone_config, "listremotes", what, &text, err,
			    err_len);
	/* One "name:" a line. */
	for (char *line = text.data, *end; rc == 0 && line && *line; line = end) {
		end = line + strcspn(line, "\n");
		char *colon = end > line && end[-1] == ':' ? end - 1 : end;
		char **grown = realloc(list.names, (list.count + 1) * sizeof(*grown));
		if (!grown || !(grown[list.count] = strndup(line, (size_t)(colon - line)))) {
			if (grown)
				list.names = grown;
			rc = err_set(err, err_len, -ENOMEM, "out of memory");
			break;
		}
		list.names = grown;
		list.count++;
		end += *end == '\n';
	}
	buf_free(&text);
	if (rc < 0)
		account_remotes_free(&list);
	else
		*out = list;
	return rc;
}

void account_remotes_free(struct account_remotes *remotes)
{
	for (size_t i = 0; remotes && i < remotes->count; i++)
		free(remotes->names[i]);
	if (remotes) {
		free(remotes->names);
		remotes->names = NULL;
		remotes->count = 0;
	}
}

/* --- following remotes ------------------------------------------------------------------ */

struct hop {
	char name[ACCOUNT_NAME_MAX + 1];
	const char *type;    /* from the environment or the dump, both alive while resolving */
};

struct resolver {
	const cJSON *dump;
	const char *config_label;
	const char *upload_remote;
	struct hop stack[NEST_MAX];    /* the remotes being followed, outermost first */
	size_t depth;
	char **done;                   /* remotes followed to the end: a diamond is walked once */
	size_t done_count, done_cap;
	char *drives[ACCOUNT_ENV_MAX]; /* the Drive remotes' names, upper-cased: the env's keys */
	size_t drive_count;
	char trail[TRAIL_MAX];         /* what was behind it, for the "no drive" message */
	size_t trail_len;
	bool trail_cut;
	char *err;
	size_t err_len;
};

/* "RCLONE_CONFIG_" or "RCLONE_" + upper(middle) + "_" + upper(key), as rclone 1.60's
 * ConfigToEnv/OptionToEnv build it: only the option's '-' becomes '_' (see account.h). */
static int env_name(char *out, size_t len, const char *prefix, const char *middle,
		    const char *key)
{
	int n = snprintf(out, len, "%s%s_%s", prefix, middle, key);
	if (n < 0 || (size_t)n >= len)
		return -ENAMETOOLONG;
	size_t key_at = (size_t)n - strlen(key);
	for (char *p = out + strlen(prefix); *p; p++) {
		if (*p >= 'a' && *p <= 'z')
			*p = (char)(*p - 'a' + 'A');
		else if (*p == '-' && (size_t)(p - out) >= key_at)
			*p = '_';
	}
	return 0;
}

/* One option of a remote, where rclone 1.60 looks for it: the remote's variable, the backend's
 * variable (not for `type`), the config file. NULL when none has it. */
static const char *option(const struct resolver *r, const char *name, const char *type,
			  const char *key)
{
	char var[ACCOUNT_NAME_MAX + 64];
	const char *v;
	if (env_name(var, sizeof(var), "RCLONE_CONFIG_", name, key) == 0 && (v = getenv(var)))
		return v;
	if (type && env_name(var, sizeof(var), "RCLONE_", type, key) == 0 && (v = getenv(var)))
		return v;
	const cJSON *section = cJSON_GetObjectItemCaseSensitive(r->dump, name);
	const cJSON *item = cJSON_GetObjectItemCaseSensitive(section, key);
	return cJSON_IsString(item) ? item->valuestring : NULL;
}

static void trail_add(struct resolver *r, const char *s)
{
	size_t n = strlen(s);
	if (r->trail_cut)
		return;
	if (r->trail_len + n >= sizeof(r->trail) - 4) {
		memcpy(r->trail + r->trail_len, "...", 4);
		r->trail_len += 3;
		r->trail_cut = true;
		return;
	}
	memcpy(r->trail + r->trail_len, s, n + 1);
	r->trail_len += n;
}

/* Records one end of the walk that is not a Drive remote: "a (crypt) → b (alias) → /x (local)". */
static void trail_leaf(struct resolver *r, const char *what, const char *type)
{
	if (r->trail_len)
		trail_add(r, "; ");
	for (size_t i = 0; i < r->depth; i++) {
		trail_add(r, r->stack[i].name);
		trail_add(r, " (");
		trail_add(r, r->stack[i].type);
		trail_add(r, ") → ");
	}
	trail_add(r, what);
	trail_add(r, " (");
	trail_add(r, type);
	trail_add(r, ")");
}

/* Who refers to the reference being followed, for error messages. */
static const char *referrer(const struct resolver *r, char *buf, size_t len)
{
	if (r->depth == 0)
		snprintf(buf, len, "upload_remote \"%s\"", r->upload_remote);
	else
		snprintf(buf, len, "%s remote \"%s\"", r->stack[r->depth - 1].type,
			 r->stack[r->depth - 1].name);
	return buf;
}

static bool is_wrapper(const char *type)
{
	static const char *const types[] = {"crypt",  "chunker", "compress", "hasher",
					    "alias",  "cache",   "union",    "combine"};
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
		if (strcmp(type, types[i]) == 0)
			return true;
	return false;
}

static bool is_done(const struct resolver *r, const char *name)
{
	for (size_t i = 0; i < r->done_count; i++)
		if (strcmp(r->done[i], name) == 0)
			return true;
	return false;
}

static int mark_done(struct resolver *r, const char *name)
{
	if (r->done_count == r->done_cap) {
		size_t cap = r->done_cap ? r->done_cap * 2 : 16;
		char **done = realloc(r->done, cap * sizeof(*done));
		if (!done)
			return -ENOMEM;
		r->done = done;
		r->done_cap = cap;
	}
	char *copy = strdup(name);
	if (!copy)
		return -ENOMEM;
	r->done[r->done_count++] = copy;
	return 0;
}

static int add_drive(struct resolver *r, const char *name)
{
	char upper[ACCOUNT_NAME_MAX + 1];
	size_t i = 0;
	for (; name[i]; i++)
		upper[i] = (name[i] >= 'a' && name[i] <= 'z') ? (char)(name[i] - 'a' + 'A') : name[i];
	upper[i] = '\0';
	/* "gd" in the file and an env-defined "GD" share one variable. */
	for (size_t k = 0; k < r->drive_count; k++)
		if (strcmp(r->drives[k], upper) == 0)
			return 0;
	if (r->drive_count == ACCOUNT_ENV_MAX)
		return err_set(r->err, r->err_len, -E2BIG,
			    "upload_remote \"%s\" has more than %d drive remotes behind it",
			    r->upload_remote, ACCOUNT_ENV_MAX);
	char *copy = strdup(upper);
	if (!copy)
		return -ENOMEM;
	r->drives[r->drive_count++] = copy;
	return 0;
}

static int follow(struct resolver *r, const char *text);

/* A SpaceSepList, split as Go's encoding/csv splits it with ' ' for a comma (rclone 1.60's
 * fs.SpaceSepList): a field starting with '"' runs to the next lone '"', "" inside it is a
 * quote, a '"' elsewhere is an error. Empty fields (two spaces) are skipped: they name no
 * remote. Calls each(r, field, ctx) for every field. */
static int split_list(struct resolver *r, const char *list, const char *what,
		      int (*each)(struct resolver *r, char *field, const char *what))
{
	size_t len = strlen(list);
	char *field = malloc(len + 1);
	if (!field)
		return -ENOMEM;
	int rc = 0, fields = 0;
	const char *p = list;
	for (;;) {
		size_t n = 0;
		bool quoted = *p == '"';
		if (quoted) {
			p++;
			for (;;) {
				if (!*p)
					goto bad;
				if (*p == '"') {
					if (p[1] == '"') {
						field[n++] = '"';
						p += 2;
						continue;
					}
					p++;
					break;
				}
				field[n++] = *p++;
			}
			if (*p && *p != ' ')
				goto bad;
		} else {
			while (*p && *p != ' ') {
				if (*p == '"')
					goto bad;
				field[n++] = *p++;
			}
		}
		field[n] = '\0';
		if (n || quoted) {
			fields++;
			rc = each(r, field, what);
			if (rc < 0)
				goto out;
		}
		if (!*p)
			break;
		p++; /* the separator */
	}
	if (fields == 0) {
		char who[ACCOUNT_NAME_MAX + 64];
		rc = err_set(r->err, r->err_len, -EINVAL, "%s has an empty %s",
			  referrer(r, who, sizeof(who)), what);
	}
	goto out;
bad:;
	char who[ACCOUNT_NAME_MAX + 64];
	rc = err_set(r->err, r->err_len, -EINVAL, "%s has a badly quoted %s: %s",
		  referrer(r, who, sizeof(who)), what, list);
out:
	free(field);
	return rc;
}

static int follow_upstream(struct resolver *r, char *field, const char *what)
{
	(void)what;
	return follow(r, field);
}

/* combine: "dir=remote:path". */
static int follow_combined(struct resolver *r, char *field, const char *what)
{
	char *eq = strchr(field, '=');
	if (!eq) {
		char who[ACCOUNT_NAME_MAX + 64];
		return err_set(r->err, r->err_len, -EINVAL, "%s has \"%s\" in its %s, without \"=\"",
			    referrer(r, who, sizeof(who)), field, what);
	}
	return follow(r, eq + 1);
}

static int follow_named(struct resolver *r, const struct account_ref *ref, const char *text)
{
	char who[ACCOUNT_NAME_MAX + 64];
	char name[ACCOUNT_NAME_MAX + 1];
	memcpy(name, ref->name, ref->name_len);
	name[ref->name_len] = '\0';

	for (size_t i = 0; i < r->depth; i++) {
		if (strcmp(r->stack[i].name, name) != 0)
			continue;
		char cycle[TRAIL_MAX] = "";
		size_t used = 0;
		for (size_t k = i; k < r->depth && used < sizeof(cycle); k++)
			used += (size_t)snprintf(cycle + used, sizeof(cycle) - used, "%s → ",
						 r->stack[k].name);
		return err_set(r->err, r->err_len, -ELOOP, "remotes refer to each other in a cycle: %s%s",
			    cycle, name);
	}
	if (is_done(r, name))
		return 0;
	if (r->depth == NEST_MAX)
		return err_set(r->err, r->err_len, -ELOOP,
			    "remotes behind upload_remote \"%s\" nest deeper than %d",
			    r->upload_remote, NEST_MAX);

	const char *type = option(r, name, NULL, "type");
	if (!type || !*type) {
		char var[ACCOUNT_NAME_MAX + 64];
		if (env_name(var, sizeof(var), "RCLONE_CONFIG_", name, "TYPE") < 0)
			var[0] = '\0';
		if (cJSON_GetObjectItemCaseSensitive(r->dump, name))
			return err_set(r->err, r->err_len, -ENOENT,
				    "remote \"%s\" (from %s) has no type in %s", name,
				    referrer(r, who, sizeof(who)), r->config_label);
		return err_set(r->err, r->err_len, -ENOENT,
			    "remote \"%s\" (from %s) is in neither %s nor the environment (%s)",
			    name, referrer(r, who, sizeof(who)), r->config_label, var);
	}

	int rc = 0;
	struct hop *hop = &r->stack[r->depth++];
	memcpy(hop->name, name, ref->name_len + 1);
	hop->type = type;
	if (strcmp(type, "drive") == 0) {
		const char *creds = option(r, name, "drive", "service_account_credentials");
		if (ref->sets_account) {
			rc = err_set(r->err, r->err_len, -EINVAL,
				  "\"%s\" sets a service account in its connection string, which "
				  "overrides any key file cplow gives it", text);
		} else if (creds && *creds) {
			rc = err_set(r->err, r->err_len, -ENOTSUP,
				  "drive remote \"%s\" has service_account_credentials set, which rclone "
				  "uses instead of any service_account_file: remove it to rotate keys",
				  name);
		} else {
			rc = add_drive(r, name);
		}
	} else if (strcmp(type, "union") == 0 || strcmp(type, "combine") == 0) {
		const char *upstreams = option(r, name, type, "upstreams");
		if (!upstreams || !*upstreams) {
			r->depth--;
			return err_set(r->err, r->err_len, -EINVAL,
				    "%s remote \"%s\" has no upstreams", type, name);
		}
		rc = split_list(r, upstreams, "upstreams",
				strcmp(type, "union") == 0 ? follow_upstream : follow_combined);
	} else if (is_wrapper(type)) {
		const char *remote = option(r, name, type, "remote");
		if (!remote || !*remote) {
			r->depth--;
			return err_set(r->err, r->err_len, -EINVAL,
				    "%s remote \"%s\" has no remote setting", type, name);
		}
		rc = follow(r, remote);
	} else {
		r->depth--;
		trail_leaf(r, name, type);
		r->depth++;
	}
	r->depth--;
	if (rc == 0)
		rc = mark_done(r, name);
	return rc;
}

static int follow(struct resolver *r, const char *text)
{
	char who[ACCOUNT_NAME_MAX + 64];
	struct account_ref ref;
	if (account_parse_ref(text, &ref) < 0)
		return err_set(r->err, r->err_len, -EINVAL,
			    "%s refers to \"%s\", which is not a remote or path rclone accepts",
			    referrer(r, who, sizeof(who)), text);
	if (ref.kind == ACCOUNT_REF_LOCAL) {
		trail_leaf(r, text, "local path");
		return 0;
	}
	if (ref.kind == ACCOUNT_REF_ON_THE_FLY) {
		char backend[ACCOUNT_NAME_MAX + 1];
		memcpy(backend, ref.name, ref.name_len);
		backend[ref.name_len] = '\0';
		if (strcmp(backend, "drive") == 0)
			return err_set(r->err, r->err_len, -ENOTSUP,
				    "%s refers to the on-the-fly drive \"%s\", which has no remote "
				    "name to give a key file to",
				    referrer(r, who, sizeof(who)), text);
		if (is_wrapper(backend))
			return err_set(r->err, r->err_len, -EINVAL,
				    "%s refers to the on-the-fly %s \"%s\", whose settings cplow does "
				    "not follow: configure it as a named remote",
				    referrer(r, who, sizeof(who)), backend, text);
		trail_leaf(r, text, backend);
		return 0;
	}
	return follow_named(r, &ref, text);
}

static void resolver_free(struct resolver *r)
{
	for (size_t i = 0; i < r->done_count; i++)
		free(r->done[i]);
	free(r->done);
	for (size_t i = 0; i < r->drive_count; i++)
		free(r->drives[i]);
}

int account_sa_env(const char *rclone_binary, const char *rclone_config,
		   const char *upload_remote, const char *key_path, struct account_env *out,
		   char *err, size_t err_len)
{
	if (err && err_len)
		err[0] = '\0';
	if (!rclone_binary || !upload_remote || !key_path || !out)
		return err_set(err, err_len, -EINVAL, "account_sa_env: missing argument");
	if (key_path[0] != '/')
		return err_set(err, err_len, -EINVAL, "key file \"%s\" is not an absolute path",
			    key_path);
	/* rclone expands $VAR and ${VAR} in service_account_file: such a path would name
	 * another file. */
	if (strchr(key_path, '$'))
		return err_set(err, err_len, -EINVAL,
			    "key file \"%s\" holds a '$', which rclone would expand as a variable",
			    key_path);

	struct account_ref top;
	if (account_parse_ref(upload_remote, &top) < 0 || top.kind == ACCOUNT_REF_LOCAL)
		return err_set(err, err_len, -EINVAL,
			    "upload_remote \"%s\" is not an rclone remote (\"name:path\")",
			    upload_remote);

	cJSON *dump = NULL;
	int rc = config_dump(rclone_binary, rclone_config, &dump, err, err_len);
	if (rc < 0)
		return rc;

	char label[PATH_MAX + 32];
	if (rclone_config)
		snprintf(label, sizeof(label), "rclone config %s", rclone_config);
	else
		snprintf(label, sizeof(label), "rclone's default config");
	struct resolver r = {
		.dump = dump,
		.config_label = label,
		.upload_remote = upload_remote,
		.err = err,
		.err_len = err_len,
	};
	struct account_env env = {0};
	rc = follow(&r, upload_remote);
	if (rc == -ENOMEM)
		err_set(err, err_len, rc, "out of memory following upload_remote \"%s\"",
		     upload_remote);
	if (rc < 0)
		goto out;
	if (r.drive_count == 0) {
		rc = err_set(err, err_len, -ENODEV,
			  "upload_remote \"%s\" has no drive remote behind it: %s", upload_remote,
			  r.trail);
		goto out;
	}
	for (size_t i = 0; i < r.drive_count; i++) {
		if (asprintf(&env.vars[i], "RCLONE_CONFIG_%s_SERVICE_ACCOUNT_FILE=%s", r.drives[i],
			     key_path) < 0) {
			env.vars[i] = NULL;
			account_env_free(&env);
			rc = err_set(err, err_len, -ENOMEM, "out of memory");
			goto out;
		}
		env.count = i + 1;
	}
	*out = env;
	rc = 0;
out:
	resolver_free(&r);
	dump_delete(dump);
	return rc;
}

void account_env_free(struct account_env *env)
{
	if (!env)
		return;
	for (size_t i = 0; i < env->count && i < ACCOUNT_ENV_MAX; i++)
		free(env->vars[i]);
	memset(env, 0, sizeof(*env));
}
