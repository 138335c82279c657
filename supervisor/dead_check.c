#include "dead_check.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "procs.h"
#include "rclone_cmd.h"
#include "reconcile.h"
#include "source.h"

/* The slot's pending files, as the child works on them. */
struct pending {
	struct ledger_open_file files[LEDGER_OPEN_MAX];
	int32_t index[LEDGER_OPEN_MAX];
	size_t n;
	int32_t lost;
};

static int read_pending(struct ledger *l, int32_t slot, struct pending *p)
{
	return ledger_stage_open_files(l, slot, p->files, p->index, LEDGER_OPEN_MAX, &p->n,
				       &p->lost);
}

size_t dead_check_pending(struct ledger *l, int32_t slot)
{
	static struct pending p; /* 18 KiB: not on the supervisor's stack */
	return read_pending(l, slot, &p) == LEDGER_OK ? p.n : 0;
}

/* A late file's size, when only its local copy can tell (copy, or a move cut before rclone's
 * delete). */
static int64_t local_size(const char *source, const char *path)
{
	struct stat st;
	return source && source_stat(source, path, &st) == 0 && S_ISREG(st.st_mode)
		       ? (int64_t)st.st_size : -1;
}

size_t dead_check_charge(struct ledger *l, int32_t slot, const char *source, const char *who,
			 const char *why)
{
	static struct pending p;
	if (read_pending(l, slot, &p) != LEDGER_OK)
		return 0;
	size_t counted = 0;
	int64_t bytes = 0;
	for (size_t i = 0; i < p.n; i++) {
		const struct ledger_open_file *f = &p.files[i];
		int64_t size = f->size != LEDGER_OPEN_SIZE_LATE ? f->size : local_size(source, f->path);
		if (size < 0) {
			log_warn("uploader %s: %s (copied by rclone, not in the listing) is not counted: "
				 "its size is known to the remote only", who, f->path);
			continue;
		}
		if (ledger_count_open_file(l, slot, p.index[i], f->path, size, ledger_now_ms()) ==
		    LEDGER_OK) {
			counted++;
			bytes += size;
		}
	}
	if (p.n)
		log_warn("uploader %s: %s; %zu unfinished files (%lld bytes) counted as uploaded "
			 "without the remote's word, to stay inside the quota, and left in the source",
			 who, why, counted, (long long)bytes);
	return counted;
}

/* ---- the child ---- */

static int stop_pipe[2] = { -1, -1 };

static void on_stop(int sig)
{
	(void)sig;
	int saved = errno;
	ssize_t w = write(stop_pipe[1], "s", 1);
	(void)w;
	errno = saved;
}

struct run {
	const struct dead_check *d;
	struct pending p;
	struct reconcile rc;
	bool move;
};

static int count_one(void *ctx, struct reconcile_candidate *c)
{
	struct run *r = ctx;
	int32_t index = *(const int32_t *)c->user;
	/* By index, and only while still pending: a file counted meanwhile (a dead writer's
	 * logged write, redone) is not counted twice. */
	if (ledger_count_open_file(r->d->ledger, r->d->slot, index, c->path, c->size,
				   ledger_now_ms()) != LEDGER_OK)
		return 1;
	if (r->move)
		reconcile_remove_arrived(r->d->spec->source, &r->rc, c);
	return 0;
}

static int check(const struct dead_check *d)
{
	static struct run r;
	struct reconcile_candidate c[LEDGER_OPEN_MAX];
	struct rclone_cmd ls = { 0 }, features = { 0 };
	char files_from[PATH_MAX], err[512] = "";
	r.d = d;
	/* A remote source (the mover) has no local file to remove; under a dry run (core.dry_run,
	 * or --dry-run in rclone_extras) nothing is deleted, not even what an earlier, real run's
	 * move left: the files are counted, and stay. */
	r.move = d->spec->command && strcmp(d->spec->command, "move") == 0 &&
		 d->spec->source_kind == STAGE_SOURCE_LOCAL && !rclone_cmd_dry_run(d->spec);
	if (read_pending(d->ledger, d->slot, &r.p) != LEDGER_OK || r.p.n == 0)
		return 0;
	if (r.p.lost)
		log_warn("uploader %s: %d started files of the stage in slot %d were not recorded; if "
			 "they arrived, they are not counted", d->who, r.p.lost, d->slot);
	for (size_t i = 0; i < r.p.n; i++) {
		const struct ledger_open_file *f = &r.p.files[i];
		bool late = f->size == LEDGER_OPEN_SIZE_LATE;
		c[i] = (struct reconcile_candidate){
			.path = f->path, .size = late ? RECONCILE_SIZE_ANY : f->size,
			.mtime_ns = f->mtime_ns, .kind = late ? RECONCILE_LATE : RECONCILE_STARTED,
			.user = &r.p.index[i] };
	}
	snprintf(files_from, sizeof(files_from), "%s/dead-%d.txt",
		 d->spec->work_dir ? d->spec->work_dir : "/tmp", (int)getpid());
	const char *why = NULL;
	struct reconcile_result res = { 0 };
	if (rclone_cmd_build_lsjson(d->spec, files_from, &ls, err, sizeof(err)) < 0 ||
	    rclone_cmd_build_features(d->spec, &features, err, sizeof(err)) < 0) {
		why = err;
	} else {
		if (reconcile_prepare(&r.rc, &features, &ls, files_from) < 0)
			log_warn("uploader %s: cannot fork all of the check's rclones: %s", d->who,
				 strerror(errno));
		r.rc.stop_fd = stop_pipe[0];
		log_info("uploader %s: checking %zu unfinished files of the stage in slot %d on the "
			 "remote", d->who, r.p.n, d->slot);
		if (reconcile_run(&r.rc, c, r.p.n, ledger_now_ms(), 0, count_one, &r, &res, err,
				  sizeof(err)) < 0 && res.unknown)
			why = err;
		else
			log_info("uploader %s: of the %zu unfinished files, %lld arrived whole and are "
				 "counted", d->who, r.p.n, (long long)res.files);
		/* The ones the remote showed were not there (or not this file) need nothing more. */
		const char *keep[LEDGER_OPEN_MAX];
		size_t k = 0;
		for (size_t i = 0; i < r.p.n; i++)
			if (c[i].state == RECONCILE_UNKNOWN)
				keep[k++] = c[i].path;
		ledger_stage_settle_opens(d->ledger, d->slot, keep, k);
	}
	if (why) {
		char text[600];
		snprintf(text, sizeof(text), "checking the unfinished files on the remote: %s", why);
		dead_check_charge(d->ledger, d->slot,
				  d->spec->source_kind == STAGE_SOURCE_LOCAL ? d->spec->source : NULL,
				  d->who, text);
	}
	reconcile_cancel(&r.rc);
	rclone_cmd_free(&ls);
	rclone_cmd_free(&features);
	return 0;
}

pid_t dead_check_start(const struct dead_check *d, int close_fd)
{
	/* SIGTERM when the supervisor dies: the check ends as a stopped one, and charges. */
	pid_t pid = procs_fork(close_fd, SIGTERM);
	if (pid != 0) {
		if (pid > 0) {
			/* Its pid in the slot: the account stays busy while it runs. */
			ledger_stage_hand_over(d->ledger, d->slot, pid);
		}
		return pid;
	}
	setpgid(0, 0); /* one kill of its group ends its rclones too */
	log_set_tag("check");
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_stop;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_RESTART;
	if (pipe2(stop_pipe, O_CLOEXEC | O_NONBLOCK) < 0 || sigaction(SIGTERM, &sa, NULL) < 0 ||
	    sigaction(SIGINT, &sa, NULL) < 0)
		_exit(1);
	_exit(check(d));
}
