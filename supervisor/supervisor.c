#include "supervisor.h"

#include <cjson/cJSON.h>
#include <errno.h>
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

#include "account.h"
#include "config.h"
#include "dead_check.h"
#include "folder.h"
#include "hidden.h"
#include "ledger.h"
#include "ledger_file.h"
#include "lock.h"
#include "log.h"
#include "mover.h"
#include "notify_hooks.h"
#include "pause_hooks.h"
#include "planner.h"
#include "probe.h"
#include "proc.h"
#include "procs.h"
#include "progress.h"
#include "rclone_cmd.h"
#include "rclone_proc.h"
#include "role.h"
#include "sdnotify.h"
#include "stage.h"

#define SUP_TICK_MS 1000
#define SUP_READ_TIMEOUT_MS 2000
#define SUP_FAILURES_PER_ACCOUNT 3

enum up_state_kind {
	UP_IDLE,       /* ready for its next stage (upload) or its next check (run) */
	UP_RUNNING,    /* a worker runs a stage */
	UP_FINISHED,   /* nothing left to do in this run */
};

/* What one running stage owns; freed when its worker has been reaped. */
struct up_stage {
	struct stage_spec spec;
	char *destination;
	struct account_env env;
	struct folder_patterns open_excludes;
	const char **excludes;        /* rclone_excludes + open files */
	char strategy[LEDGER_STRATEGY_MAX];
	char min_age[32];
};

struct up {
	const struct config_uploader *u;
	struct planner_accounts accounts;
	bool *given_up;               /* per account, in this upload cycle */
	enum up_state_kind state;
	int failures;                 /* consecutive failed stages on the current account */
	int stage_number;
	pid_t worker;
	int account;                  /* of the running stage; -1: the mover's */
	int64_t max_size_bytes;       /* of the running stage */
	struct up_stage stage;
	bool cycle;                   /* an upload is under way: plan stages until it ends */
	int64_t next_check_ms;        /* run mode: the next size/schedule check */
	struct planner_suspension suspension; /* run mode: logged once per episode */
	bool waiting;                 /* for an account another uploader's stage is using */
	bool failed;                  /* the last stage failed and no account was left */
	int64_t files, bytes;         /* this run, for the summary */
	/* The stage's worker ended and left files pending in its slot: a child checks them on
	 * the remote (dead_check.h) while the stage counts as running. */
	pid_t checker;
	int32_t checked_slot;
	int worker_status;
	/* The mover (mover.h): due once an upload has ended, run before the uploader rests. */
	bool mover_due;
	bool moving;                  /* the running worker is the mover's */
	bool mover_failed;            /* a mover failed in this run: exit 1 */
	bool mover_waiting;           /* logged that its account is busy */
	struct mover_plan mover;      /* of the running (or last) mover */
	enum up_state_kind after_mover; /* the state the upload ended in */
	int64_t cycle_files;          /* uploaded since this upload began */
	int64_t moved_files, moved_bytes; /* by its movers, this run */
};

struct sup {
	const struct supervisor_options *opt;
	struct config cfg;
	char *cfg_text;               /* the config file as cfg was read from it (SIGHUP compares) */
	size_t cfg_len;
	char ledger_name[128];
	struct ledger ledger;
	struct ledger_copy copy;
	int lock_fd;
	int signal_fd;
	char work_dir[PATH_MAX - 64]; /* room for the file names put in it */
	/* The flusher, the dashboard and the Plex throttle (the notifier's is notify_hooks'). */
	struct role_state roles[ROLE_COUNT];
	uint64_t flushed_rows;        /* row_generation of our own last write (flush_here) */
	uint64_t start_time;          /* ours (proc.h), for the ledger's header */
	struct pause_hooks pause;     /* NZBGet/SABnzbd paused while stages run, by their role */
	struct up *ups;
	size_t up_count;
	int stopping;                 /* 0, 1 graceful, 2 immediate */
	int stop_signal;
	bool reload_pending;
	struct config next_cfg;
	bool progress;                /* the terminal view is on */
	/* Per slot: the child checking the files a worker of an earlier cplow left there, and
	 * that worker. */
	struct slot_check {
		pid_t checker, worker;
	} *slot_checks;
	/* The hidden cleaner (hidden.h): due before an upload; no stage starts while it runs. */
	pid_t cleaner;
	bool clean_due;
};

/* ---- the ledger ---- */

static void move_aside(const char *path)
{
	char aside[PATH_MAX + 32]; /* the path and ".bad-<seconds>" */
	snprintf(aside, sizeof(aside), "%s.bad-%lld", path, (long long)time(NULL));
	if (rename(path, aside) == 0)
		log_warn("moved the unusable ledger file %s to %s", path, aside);
}

/* The object's name is predictable (ledger_name_for: every cplow command must find it from the
 * config path alone), so another local user can create it first. cplow neither reads nor
 * writes such an object: it says whose it is, and stops. */
static void foreign_ledger(const char *name, char *err, size_t err_len)
{
	char owner[256];
	ledger_describe_owner(name, owner, sizeof(owner));
	snprintf(err, err_len,
		 "cannot use the shared ledger: %s, but cplow (uid %u) uses only one of its own user "
		 "that no other user can open; another local user may have made it to block cplow "
		 "or to feed it usage: have it removed (as root: rm /dev/shm%s), then start again",
		 owner, (unsigned)geteuid(), name);
}

/* The live ledger as the config wants it: its window and daily quota (a window switched while
 * the object lived on would read every row as empty; the rows are converted, see
 * ledger_usage_convert). Its capacity is fixed while it lives: resize_ledger. */
static int match_config(const struct config *c, struct ledger *l, const char *name, char *err,
			size_t err_len)
{
	enum ledger_window was = (enum ledger_window)l->hdr->window;
	if (was == c->quota.window && l->hdr->daily_bytes == c->quota.daily_bytes)
		return 0;
	int n = ledger_set_window(l, c->quota.window, c->quota.daily_bytes, ledger_now_ms());
	if (n < 0) {
		snprintf(err, err_len, "cannot bring the shared ledger %s to quota.window and "
			 "quota.daily_bytes: %s", name, ledger_strerror(n));
		return -1;
	}
	static const char *const window_name[] = { "fixed", "rolling" };
	if (was != c->quota.window)
		log_warn("quota.window is %s now, and the shared ledger counted a %s window: %d "
			 "accounts converted, each keeping its bytes %s", window_name[c->quota.window],
			 window_name[was], n,
			 c->quota.window == LEDGER_WINDOW_ROLLING
				 ? "until its fixed window's reset at least"
				 : "in one window from its earliest hour");
	return 0;
}

/* 0 attached (the live ledger is at least as new as any file), -1 an error in err, or 1 with
 * ledger_attach's error in *why (none there, or one of another layout). */
static int attach_live(const struct config *c, const char *name, struct ledger *out, int *why,
		       char *err, size_t err_len)
{
	int rc = ledger_attach(name, 1, out);
	if (rc == LEDGER_OK) {
		if (match_config(c, out, name, err, err_len) == 0)
			return 0;
		ledger_detach(out);
		return -1;
	}
	if (rc == LEDGER_ERR_FOREIGN) {
		foreign_ledger(name, err, err_len);
		return -1;
	}
	if (rc != LEDGER_ERR_LAYOUT && !(rc == LEDGER_ERR_SYS && errno == ENOENT)) {
		snprintf(err, err_len, "cannot open the shared ledger %s: %s", name,
			 ledger_strerror(rc));
		return -1;
	}
	*why = rc;
	return 1;
}

int supervisor_open_ledger(const struct config *c, const char *name, bool reset,
			   struct ledger *out, char *err, size_t err_len)
{
	int why = 0;
	int rc = attach_live(c, name, out, &why, err, err_len);
	if (rc <= 0)
		return rc;
	if (why == LEDGER_ERR_LAYOUT) {
		log_warn("the shared ledger %s was made by another cplow version; rebuilding it "
			 "from %s", name, c->quota.cache_path);
		ledger_unlink(name);
	}
	struct ledger_options o = { .row_capacity = c->quota.capacity,
				    .daily_bytes = c->quota.daily_bytes,
				    .window = c->quota.window };
	rc = ledger_create(name, &o, out);
	if (rc == LEDGER_ERR_EXISTS) { /* lost a race (or another user made it just now) */
		rc = attach_live(c, name, out, &why, err, err_len);
		if (rc == 1)
			snprintf(err, err_len, "cannot open the shared ledger %s: %s", name,
				 ledger_strerror(why));
		return rc == 0 ? 0 : -1;
	}
	if (rc == LEDGER_ERR_SYS && errno == ENOSPC) {
		snprintf(err, err_len,
			 "cannot create the shared ledger %s: /dev/shm has no room for its %zu "
			 "bytes: free some, or give the container more (docker run --shm-size)",
			 name, ledger_size_for(&o));
		return -1;
	}
	if (rc != LEDGER_OK) {
		snprintf(err, err_len, "cannot create the shared ledger %s: %s", name,
			 ledger_strerror(rc));
		return -1;
	}
	char used[PATH_MAX];
	if (ledger_file_restore(out, c->quota.cache_path, used, sizeof(used), err, err_len) < 0) {
		if (!reset) {
			ledger_detach(out);
			ledger_unlink(name);
			return -1;
		}
		log_warn("%s", err);
		log_warn("starting from zero usage, as --reset-ledger asks");
		char prev[PATH_MAX];
		snprintf(prev, sizeof(prev), "%s.prev", c->quota.cache_path);
		move_aside(c->quota.cache_path);
		move_aside(prev);
		return 0;
	}
	if (*used)
		log_info("ledger restored from %s", used);
	return 0;
}

static int read_copy(struct sup *s)
{
	int rc = ledger_read(&s->ledger, &s->copy, SUP_READ_TIMEOUT_MS);
	if (rc != LEDGER_OK)
		log_error("cannot read the ledger: %s", ledger_strerror(rc));
	return rc == LEDGER_OK ? 0 : -1;
}

static void heartbeat(struct sup *s)
{
	/* With its start time: a flusher that outlived an earlier cplow steps aside for this one
	 * (flusher_run), and must not take a process that got our pid later for a cplow. */
	if (s->start_time == 0)
		proc_start_time(getpid(), &s->start_time); /* left 0 (pid alone) if /proc fails */
	atomic_store(&s->ledger.hdr->supervisor_start, s->start_time);
	atomic_store(&s->ledger.hdr->supervisor_pid, (int32_t)getpid());
	atomic_store(&s->ledger.hdr->supervisor_seen_ms, ledger_now_ms());
}

/*
 * quota.capacity changed while the shared ledger lived on: the object is made again at the new
 * size, from a last write of its file, but only when nothing else has it mapped to write (no
 * worker of an earlier cplow left, no flusher of one): a process writing to the old object
 * after the switch would count into nothing. Otherwise it waits for the next start. Returns 1
 * resized, 0 not (now), -1 an error in err.
 */
static int resize_ledger(struct sup *s, char *err, size_t err_len)
{
	uint32_t was = s->ledger.hdr->row_capacity, rows = atomic_load(&s->ledger.hdr->row_count);
	if (rows > s->cfg.quota.capacity) {
		snprintf(err, err_len, "quota.capacity is %u, but the shared ledger %s holds %u "
			 "accounts already: raise it to %u at least", s->cfg.quota.capacity,
			 s->ledger_name, rows, rows);
		return -1;
	}
	bool busy = ledger_flusher_alive(&s->ledger);
	for (uint32_t i = 0; !busy && i < s->ledger.hdr->slot_capacity; i++)
		busy = s->ledger.stages[i].state != LEDGER_STAGE_FREE;
	if (busy) {
		log_warn("quota.capacity is %u, the shared ledger holds %u accounts at most: a worker "
			 "or flusher of an earlier cplow still uses it, so it is resized at a start "
			 "after they end", s->cfg.quota.capacity, was);
		return 0;
	}
	if (ledger_file_flush(&s->ledger, &s->copy, s->cfg.quota.cache_path, ledger_now_ms(), err,
			      err_len) < 0) {
		log_warn("quota.capacity is %u, but the shared ledger (%u accounts at most) cannot be "
			 "resized: its last write failed: %s", s->cfg.quota.capacity, was, err);
		return 0;
	}
	ledger_copy_free(&s->copy);
	ledger_detach(&s->ledger);
	ledger_unlink(s->ledger_name);
	if (supervisor_open_ledger(&s->cfg, s->ledger_name, false, &s->ledger, err, err_len) < 0)
		return -1;
	if (ledger_copy_init(&s->ledger, &s->copy) != LEDGER_OK) {
		snprintf(err, err_len, "out of memory");
		return -1;
	}
	log_info("the shared ledger %s holds %u accounts at most now (quota.capacity; it held %u)",
		 s->ledger_name, s->cfg.quota.capacity, was);
	return 1;
}

/* ---- the flusher ---- */

/* Forks role id with the supervisor's state now. */
static void start_role(struct sup *s, enum role_id id)
{
	struct role_ctx x = { .cfg = &s->cfg, .ledger = &s->ledger, .ledger_name = s->ledger_name,
			      .supervisor = getpid(), .fd = -1, .reply_fd = -1,
			      .close_fd = s->lock_fd };
	role_start(&role_table[id], &s->roles[id], &x);
}

/* Starts role id when the config wants it, it is down and its backoff is over. */
static void keep_role(struct sup *s, enum role_id id, bool wanted)
{
	if (wanted && !s->stopping && role_due(&s->roles[id], ledger_now_ms()))
		start_role(s, id);
}

/* A write when no flusher is there to make it: the last one, or while a dead flusher waits for
 * its restart (if we die in that wait, what we counted meanwhile is on disk). */
static void flush_here(struct sup *s, const char *what)
{
	char err[LEDGER_FILE_ERR_MAX];
	if (ledger_file_flush(&s->ledger, &s->copy, s->cfg.quota.cache_path, ledger_now_ms(), err,
			      sizeof(err)) < 0)
		log_error("%s failed: %s", what, err);
	else
		s->flushed_rows = s->copy.row_generation;
}

/* In a worker's process, after its stage: if the supervisor was killed and no flusher is left
 * (it died too, or was waiting for its restart), nobody else would write what this worker
 * counted after its supervisor's death. */
static void flush_if_last(const struct sup *s, pid_t supervisor)
{
	if (getppid() == supervisor)
		return;
	struct ledger l;
	struct ledger_copy c;
	char err[LEDGER_FILE_ERR_MAX];
	if (ledger_attach(s->ledger_name, 1, &l) != LEDGER_OK)
		return;
	if (!ledger_flusher_alive(&l) && ledger_copy_init(&l, &c) == LEDGER_OK) {
		if (ledger_file_flush(&l, &c, s->cfg.quota.cache_path, ledger_now_ms(), err,
				      sizeof(err)) < 0)
			log_error("cplow and its flusher are gone, and this worker could not "
				  "write the ledger file: %s", err);
		else
			log_info("cplow and its flusher are gone: this worker wrote the ledger file");
		ledger_copy_free(&c);
	}
	ledger_detach(&l);
}

static void stop_flusher(struct sup *s)
{
	if (s->roles[ROLE_FLUSHER].pid <= 0) {
		flush_here(s, "final flush");
		return;
	}
	int st = role_stop(&role_table[ROLE_FLUSHER], &s->roles[ROLE_FLUSHER]);
	if (st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0)
		return;
	if (st >= 0)
		log_error("the flusher's final flush failed (status %d)", st);
	/* What it did not write, we do: a killed flusher made no final write at all. */
	flush_here(s, "final flush");
}

/* The roles a new config (or a new log file) must reach: they start again. */
static void stop_roles(struct sup *s)
{
	role_stop(&role_table[ROLE_DASHBOARD], &s->roles[ROLE_DASHBOARD]);
	role_stop(&role_table[ROLE_PLEX], &s->roles[ROLE_PLEX]);
}

/* ---- stages ---- */

static void free_stage(struct up_stage *st)
{
	free(st->destination);
	account_env_free(&st->env);
	folder_patterns_free(&st->open_excludes);
	free(st->excludes);
	memset(st, 0, sizeof(*st));
}

/* Whether the ledger row's account, of a stage some uploader runs, is the account `id`
 * (planner_account_identity). The row's uploader need not be one this run uploads (`upload -u`):
 * its config says how to name its accounts. */
static bool row_is_account(const struct sup *s, const struct ledger_row *r, const char *id)
{
	const struct config_uploader *o = config_find_uploader(&s->cfg, r->uploader);
	char other[PATH_MAX + 8];
	return o && planner_account_identity(o, r->account, other, sizeof(other)) == 0 &&
	       strcmp(other, id) == 0;
}

/* Whether account i of up is in use: by a stage of this uploader, or of another whose
 * rotate_remotes or key files name the same account (two stages on one account at once
 * would each plan from a quota the other is spending). */
static bool account_busy(const struct sup *s, const struct up *up, size_t i)
{
	const struct planner_account *a = &up->accounts.v[i];
	/* Our own stages first: a worker claims its ledger slot only once it runs, so a stage
	 * forked a moment ago is not in the copy yet. */
	for (size_t k = 0; k < s->up_count; k++) {
		const struct up *o = &s->ups[k];
		if (o == up || o->state != UP_RUNNING)
			continue;
		const char *other = o->moving ? o->mover.identity : o->accounts.v[o->account].identity;
		if (a->identity && other && *other && strcmp(a->identity, other) == 0)
			return true;
	}
	/* A worker of an earlier cplow may still be finishing on it (it stops gracefully when
	 * its supervisor dies, and reconciles first). */
	for (uint32_t k = 0; k < s->copy.slot_capacity; k++) {
		const struct ledger_stage *st = &s->copy.stages[k];
		if (st->state != LEDGER_STAGE_RUNNING || st->row < 0 ||
		    (uint32_t)st->row >= s->copy.row_count)
			continue;
		const struct ledger_row *r = &s->copy.rows[st->row];
		bool same = strcmp(r->uploader, up->u->name) == 0 ? strcmp(r->account, a->name) == 0
								   : a->identity &&
									     row_is_account(s, r, a->identity);
		if (same && ledger_stage_holder_alive(st))
			return true;
	}
	return false;
}

/* The part of a stage's spec that says which files rclone takes (and how rclone runs), shared
 * by the stage and the dry run's count: source, excludes (rclone_excludes and open files),
 * --min-age, rclone_extras. Everything it points to lives in *st or the config. */
static int stage_files(struct sup *s, const struct up *up, struct up_stage *st, char *err,
		       size_t err_len)
{
	const struct config_uploader *u = up->u;
	const struct config_remote *r = u->remote;
	struct stage_spec *spec = &st->spec;
	size_t n_excl = r->rclone_exclude_count;
	if (u->exclude_open_files) {
		struct folder_open open_files;
		if (folder_open_files(r->upload_folder, &open_files, err, err_len) == 0) {
			if (folder_open_exclude_patterns(&open_files,
							 (const char *const *)u->opened_excludes,
							 u->opened_exclude_count, &st->open_excludes) < 0)
				log_warn("out of memory for the open-file excludes; uploading them all");
			folder_open_free(&open_files);
			n_excl += st->open_excludes.count;
		} else {
			log_warn("cannot see which files are open (%s); uploading them all", err);
		}
	}
	st->excludes = calloc(n_excl ? n_excl : 1, sizeof(*st->excludes));
	if (!st->excludes) {
		snprintf(err, err_len, "out of memory");
		return -1;
	}
	for (size_t i = 0; i < r->rclone_exclude_count; i++)
		st->excludes[i] = r->rclone_excludes[i];
	for (size_t i = 0; i < st->open_excludes.count; i++)
		st->excludes[r->rclone_exclude_count + i] = st->open_excludes.items[i];
	if (u->check_type == CONFIG_CHECK_AGE)
		snprintf(st->min_age, sizeof(st->min_age), "%dm", u->check_limit_minutes);
	spec->uploader = u->name;
	spec->rclone_binary = s->cfg.core.rclone_binary_path;
	spec->rclone_nice = s->cfg.core.rclone_nice;
	spec->rclone_config = s->cfg.core.rclone_config_path;
	spec->command = config_command_name(r->rclone_command);
	spec->source = r->upload_folder;
	spec->extras = r->rclone_extras;
	spec->extra_count = r->rclone_extra_count;
	spec->excludes = st->excludes;
	spec->exclude_count = n_excl;
	spec->min_age = st->min_age[0] ? st->min_age : NULL;
	spec->dry_run = s->cfg.core.dry_run;
	spec->work_dir = s->work_dir;
	spec->stage_number = up->stage_number;
	return 0;
}

/* Fills the stage's spec; everything it points to lives in up->stage or the config. */
static int build_stage(struct sup *s, struct up *up, const struct plan *p, char *err,
		       size_t err_len)
{
	const struct config_uploader *u = up->u;
	const struct config_remote *r = u->remote;
	const struct planner_account *a = &up->accounts.v[p->account];
	struct up_stage *st = &up->stage;
	struct stage_spec *spec = &st->spec;
	memset(st, 0, sizeof(*st));
	if (a->remote) {
		char dest[PATH_MAX];
		if (account_destination(r->upload_remote, a->remote, dest, sizeof(dest)) < 0) {
			snprintf(err, err_len, "uploader.%s.rotate_remotes: cannot put %s in place of "
				 "%s's remote", u->name, a->remote, r->upload_remote);
			return -1;
		}
		st->destination = strdup(dest);
	} else {
		st->destination = strdup(r->upload_remote);
		if (a->key_path &&
		    account_sa_env(s->cfg.core.rclone_binary_path, s->cfg.core.rclone_config_path,
				   r->upload_remote, a->key_path, &st->env, err, err_len) < 0)
			return -1;
	}
	if (!st->destination) {
		snprintf(err, err_len, "out of memory");
		return -1;
	}
	if (stage_files(s, up, st, err, err_len) < 0)
		return -1;
	snprintf(st->strategy, sizeof(st->strategy), "%s", p->strategy->name);
	spec->account = a->name;
	spec->ledger_name = s->ledger_name;
	spec->destination = st->destination;
	spec->env = (const char *const *)st->env.vars;
	spec->env_count = st->env.count;
	spec->strategy = st->strategy;
	spec->max_transfer_bytes = p->max_transfer_bytes;
	spec->max_size_bytes = p->max_size_bytes;
	spec->transfers = p->strategy->transfers;
	spec->order_by = p->strategy->order_by;
	spec->max_backlog = p->strategy->max_backlog;
	spec->triggers = r->rclone_sleeps;
	spec->trigger_count = r->rclone_sleep_count;
	spec->sandbox = 1;
	return 0;
}

static const char *short_account(const char *name)
{
	const char *slash = strrchr(name, '/');
	return slash ? slash + 1 : name;
}

/* The upload of up has ended (it finished, or rests until its next check): its mover is due
 * when none of its stages failed or some file was uploaded (mover.h). */
static void upload_ended(struct sup *s, struct up *up)
{
	if (up->u->mover.enabled && !s->stopping && !s->reload_pending &&
	    (!up->failed || up->cycle_files > 0))
		up->mover_due = true;
	up->cycle_files = 0;
}

/* Plans the uploader's next stage and forks its worker; finishes the uploader when no
 * account can take one. */
static void start_stage(struct sup *s, struct up *up)
{
	int64_t now = ledger_now_ms();
	ledger_expire(&s->ledger, now);
	if (read_copy(s) < 0)
		return;
	bool busy[up->accounts.count ? up->accounts.count : 1];
	for (size_t i = 0; i < up->accounts.count; i++)
		busy[i] = account_busy(s, up, i);
	struct plan p;
	planner_choose(&s->cfg, up->u->name, &up->accounts, &s->ledger, &s->copy, busy,
		       up->given_up, now, &p);
	if (p.account < 0 && p.busy_count > 0) {
		/* Another stage (another uploader's, naming the same account) has the account this
		 * one wants: wait for it, in either mode; the loop asks again when a worker ends
		 * and at every tick. */
		if (!up->waiting)
			log_info("uploader %s: waiting for an account another stage is using (%s)",
				 up->u->name, p.why);
		up->waiting = true;
		up->state = UP_IDLE;
		return;
	}
	up->waiting = false;
	if (p.account < 0) {
		notify_upload_finished(up->u->name, p.why, up->failed);
		upload_ended(s, up);
		if (s->opt->mode == SUPERVISOR_UPLOAD) {
			log_info("uploader %s: no account can take another stage (%s)", up->u->name,
				 p.why);
			up->state = UP_FINISHED;
			return;
		}
		int64_t until = p.wait_until_ms ? p.wait_until_ms
						: now + (int64_t)up->u->check_interval_min * 60000;
		up->cycle = false;
		/* Once per episode: with accounts only given up on (files larger than any
		 * --max-transfer), `until` is the next check and moves on every interval. */
		if (planner_suspension_note(&up->suspension, p.why)) {
			time_t t = (time_t)(until / 1000);
			char when[64];
			strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S UTC", gmtime(&t));
			log_warn("uploader %s suspended until %s: %s", up->u->name, when, p.why);
			notify_suspended(up->u->name, until, p.why);
		}
		up->state = UP_IDLE;
		up->next_check_ms = until;
		return;
	}
	/* The downloaders are paused first, as cloudplow did; the loop goes on meanwhile. */
	if (!pause_hooks_ready(&s->pause, &s->cfg, now))
		return;
	up->stage_number++;
	char err[CONFIG_ERR_MAX];
	if (build_stage(s, up, &p, err, sizeof(err)) < 0) {
		log_error("uploader %s: %s", up->u->name, err);
		free_stage(&up->stage);
		up->given_up[p.account] = true;
		up->failed = true;
		return;
	}
	const char *acct = up->accounts.v[p.account].name;
	if (p.quota)
		log_info("uploader %s: stage %d on %s (%d of %zu): %s, %lld bytes left, "
			 "--max-transfer %lld bytes",
			 up->u->name, up->stage_number, short_account(acct), p.account + 1,
			 up->accounts.count, p.strategy->name, (long long)p.remaining_bytes,
			 (long long)p.max_transfer_bytes);
	else
		log_info("uploader %s: stage %d on %s (%d of %zu): quota off (%s): no stage flags, "
			 "no daily limit (its files are still counted in the ledger)",
			 up->u->name, up->stage_number, short_account(acct), p.account + 1,
			 up->accounts.count, up->u->quota_reason);
	if (rclone_cmd_dry_run(&up->stage.spec))
		log_warn("uploader %s: stage %d is a dry run (%s): rclone moves nothing, the ledger "
			 "counts nothing, nothing local is deleted, and this upload ends after it",
			 up->u->name, up->stage_number,
			 s->cfg.core.dry_run ? "core.dry_run" : "--dry-run in rclone_extras");
	pid_t supervisor = getpid();
	pid_t pid = procs_fork(s->lock_fd, SIGTERM);
	if (pid < 0) {
		log_error("cannot fork a worker: %s", strerror(errno));
		free_stage(&up->stage);
		return;
	}
	if (pid == 0) {
		char tag[LEDGER_UPLOADER_MAX + 80];
		snprintf(tag, sizeof(tag), "worker[%s/%.60s]", up->u->name, short_account(acct));
		log_set_tag(tag);
		struct stage_outcome out;
		enum stage_result result = worker_run(&up->stage.spec, &out);
		flush_if_last(s, supervisor);
		_exit((int)result);
	}
	up->worker = pid;
	up->account = p.account;
	up->max_size_bytes = p.max_size_bytes;
	up->state = UP_RUNNING;
	notify_stage_started(up->u->name, acct, up->stage_number, p.strategy->name,
			     p.max_transfer_bytes, p.remaining_bytes, pid);
}

static int find_slot(const struct sup *s, pid_t pid)
{
	for (uint32_t i = 0; i < s->ledger.hdr->slot_capacity; i++)
		if (s->ledger.stages[i].state != LEDGER_STAGE_FREE && s->ledger.stages[i].pid == pid)
			return (int)i;
	return -1;
}

static void remove_empty_dirs(const struct up *up)
{
	const struct config_remote *r = up->u->remote;
	if (r->rclone_command != CONFIG_COMMAND_MOVE || r->remove_empty_dir_depth < 0)
		return;
	struct folder_removed removed;
	char err[512];
	if (folder_remove_empty_dirs(r->upload_folder, r->remove_empty_dir_depth, &removed, err,
				     sizeof(err)) < 0) {
		log_warn("uploader %s: removing empty directories: %s", up->u->name, err);
		return;
	}
	if (removed.count)
		log_info("uploader %s: removed %zu empty directories", up->u->name, removed.count);
	if (removed.failed_count)
		log_warn("uploader %s: %zu empty directories could not be removed, the first: %s",
			 up->u->name, removed.failed_count, err);
	folder_removed_free(&removed);
}

/* The local folder of the stage's files, whose late files' sizes it can tell; NULL for the
 * mover, whose source is a remote. */
static const char *local_folder(const struct up *up, int account)
{
	return account >= 0 ? up->u->remote->upload_folder : NULL;
}

/* The mover's spec, into up->stage; its plan (up->mover) must be made. */
static void build_mover(struct sup *s, struct up *up)
{
	memset(&up->stage, 0, sizeof(up->stage));
	mover_spec(&s->cfg, up->u, &up->mover, s->ledger_name, s->work_dir, &up->stage.spec);
	up->stage.spec.stage_number = up->stage_number;
}

/* Forks the check of a slot's pending files for uploader up, on account a (the stage that
 * ran there; -1: the mover); 0 when none was started (the files were charged instead). */
static pid_t start_check(struct sup *s, struct up *up, int account, int32_t slot)
{
	char err[CONFIG_ERR_MAX] = "";
	pid_t pid = -1;
	/* The stage of an earlier run is gone; the check needs its destination, rclone and
	 * environment, which a fresh build on that account gives. */
	bool built = false;
	if (!up->stage.spec.destination && account < 0) {
		mover_plan(&s->cfg, up->u, &s->ledger, &s->copy, false, ledger_now_ms(), &up->mover);
		build_mover(s, up);
		built = true;
	} else if (!up->stage.spec.destination) {
		struct plan p = { .account = account, .strategy = &s->cfg.stages[0] };
		built = build_stage(s, up, &p, err, sizeof(err)) == 0;
		if (!built)
			free_stage(&up->stage);
	}
	if (up->stage.spec.destination) {
		struct dead_check d = { &s->ledger, slot, &up->stage.spec, up->u->name };
		pid = dead_check_start(&d, s->lock_fd);
		if (pid < 0)
			snprintf(err, sizeof(err), "cannot fork the check: %s", strerror(errno));
	}
	if (built)
		free_stage(&up->stage);
	if (pid > 0)
		return pid;
	char why[CONFIG_ERR_MAX + 64];
	snprintf(why, sizeof(why), "the unfinished files cannot be checked (%s)", err);
	dead_check_charge(&s->ledger, slot, local_folder(up, account), up->u->name, why);
	return 0;
}

static int64_t remaining_of(struct sup *s, const struct up *up, int account)
{
	int32_t row;
	if (ledger_row_find(&s->ledger, up->u->name, up->accounts.v[account].name, &row) !=
		    LEDGER_OK ||
	    read_copy(s) < 0 || (uint32_t)row >= s->copy.row_count)
		return s->cfg.quota.daily_bytes;
	return ledger_usage_remaining(&s->copy.rows[row].usage, s->cfg.quota.daily_bytes,
				      s->cfg.quota.window, ledger_now_ms());
}

static bool is_our_worker(const struct sup *s, pid_t pid)
{
	for (size_t i = 0; i < s->up_count; i++)
		if (s->ups[i].state == UP_RUNNING && s->ups[i].worker == pid)
			return true;
	return false;
}

/* The files a worker of an earlier cplow left pending (it died with its supervisor, or was
 * killed after it): checked as a worker of ours would be. Returns whether a check runs (the
 * slot stays until it ends); false when the slot may go now. */
static bool check_stale_slot(struct sup *s, int32_t slot)
{
	const struct ledger_stage *st = &s->ledger.stages[slot];
	if ((uint32_t)st->row >= atomic_load(&s->ledger.hdr->row_count))
		return false;
	const struct ledger_row *r = &s->ledger.rows[st->row];
	if (dead_check_pending(&s->ledger, slot) == 0)
		return false;
	for (size_t u = 0; u < s->up_count; u++) {
		struct up *up = &s->ups[u];
		if (strcmp(up->u->name, r->uploader) != 0)
			continue;
		if (up->state == UP_RUNNING)
			return true; /* its stage spec is taken: again at the next tick */
		char mover_account[LEDGER_ACCOUNT_MAX] = "";
		if (up->u->mover.enabled && strcmp(st->strategy, "mover") == 0) {
			struct mover_plan mp;
			mover_plan(&s->cfg, up->u, &s->ledger, &s->copy, false, ledger_now_ms(), &mp);
			snprintf(mover_account, sizeof(mover_account), "%s", mp.account);
		}
		if (strcmp(mover_account, r->account) == 0) {
			pid_t worker = st->pid;
			pid_t pid = start_check(s, up, -1, slot);
			if (pid > 0)
				s->slot_checks[slot] = (struct slot_check){ pid, worker };
			return pid > 0;
		}
		for (size_t a = 0; a < up->accounts.count; a++) {
			if (strcmp(up->accounts.v[a].name, r->account) != 0)
				continue;
			pid_t worker = st->pid; /* the slot is the check's once it starts */
			pid_t pid = start_check(s, up, (int)a, slot);
			if (pid > 0)
				s->slot_checks[slot] = (struct slot_check){ pid, worker };
			return pid > 0;
		}
	}
	dead_check_charge(&s->ledger, slot, NULL, r->uploader,
			  "the account of a dead worker's stage is not in this config");
	return false;
}

/* Slots of workers that are gone and are not ours to reap: a cplow that died with them left
 * them, or its workers ended after it died. Files they left pending are checked first. */
static void release_dead_slots(struct sup *s)
{
	for (uint32_t i = 0; i < s->ledger.hdr->slot_capacity; i++) {
		const struct ledger_stage *st = &s->ledger.stages[i];
		if (st->state == LEDGER_STAGE_FREE || s->slot_checks[i].checker ||
		    ledger_stage_holder_alive(st) ||
		    is_our_worker(s, st->pid))
			continue;
		if (check_stale_slot(s, (int32_t)i))
			continue;
		if (st->state == LEDGER_STAGE_RUNNING)
			log_warn("stage slot %u of dead worker %d released", i, st->pid);
		ledger_stage_release(&s->ledger, (int32_t)i);
	}
}

/* Whether a check of an earlier run's slot of this uploader runs: under `move` it may yet
 * remove files from the source that a stage planned now would upload again, maybe to another
 * account. */
static bool stale_check_of(const struct sup *s, const struct up *up)
{
	for (uint32_t i = 0; s->slot_checks && i < s->ledger.hdr->slot_capacity; i++) {
		int32_t row = s->ledger.stages[i].row;
		if (s->slot_checks[i].checker && row >= 0 &&
		    (uint32_t)row < atomic_load(&s->ledger.hdr->row_count) &&
		    strcmp(s->ledger.rows[row].uploader, up->u->name) == 0)
			return true;
	}
	return false;
}

/* A check of an earlier cplow's slot ended. */
static bool stale_check_reaped(struct sup *s, pid_t pid, int status)
{
	for (uint32_t i = 0; i < s->ledger.hdr->slot_capacity; i++) {
		if (s->slot_checks[i].checker != pid)
			continue;
		if (!WIFEXITED(status))
			dead_check_charge(&s->ledger, (int32_t)i, NULL, "(earlier run)",
					  "the check was killed");
		log_warn("stage slot %u of dead worker %d released", i, s->slot_checks[i].worker);
		s->slot_checks[i] = (struct slot_check){ 0, 0 };
		ledger_stage_release(&s->ledger, (int32_t)i);
		return true;
	}
	return false;
}

static void stage_done(struct sup *s, struct up *up, int status, int slot);
static void mover_done(struct sup *s, struct up *up, int status, int slot);

/* A worker ended: files it left pending are checked first (off the loop), then its stage is
 * accounted for. */
static void stage_finished(struct sup *s, struct up *up, int status)
{
	/* rclone shares the worker's group: an rclone outliving its worker would go on
	 * uploading files nobody counts. */
	kill(-up->worker, SIGKILL);
	int slot = find_slot(s, up->worker);
	/* Not after rclone --dry-run, which moved nothing: a file found on the remote was there
	 * before, and under `move` its local copy would be deleted. (A worker of an earlier cplow,
	 * check_stale_slot, may have run another config: its slot's open files are checked.) */
	bool dry = rclone_cmd_dry_run(&up->stage.spec);
	if (slot >= 0 && !dry && dead_check_pending(&s->ledger, slot) > 0) {
		pid_t pid = 0;
		if (s->stopping == 2)
			dead_check_charge(&s->ledger, slot, local_folder(up, up->account),
					  up->u->name, "stopping at once, with no time to check "
					  "the unfinished files");
		else
			pid = start_check(s, up, up->account, slot);
		if (pid > 0) {
			up->checker = pid;
			up->checked_slot = slot;
			up->worker_status = status;
			return;
		}
	}
	if (up->moving)
		mover_done(s, up, status, slot);
	else
		stage_done(s, up, status, slot);
}

/* The check of a stage's pending files ended. */
static void check_finished(struct sup *s, struct up *up, int status)
{
	if (!WIFEXITED(status))
		dead_check_charge(&s->ledger, up->checked_slot, local_folder(up, up->account),
				  up->u->name, "the check of the unfinished files was killed");
	up->checker = 0;
	if (up->moving)
		mover_done(s, up, up->worker_status, up->checked_slot);
	else
		stage_done(s, up, up->worker_status, up->checked_slot);
}

/* Accounts for a stage whose worker (and check) ended, and decides what the uploader does next. */
static void stage_done(struct sup *s, struct up *up, int status, int slot)
{
	bool dry = rclone_cmd_dry_run(&up->stage.spec);
	enum stage_result result = STAGE_FAILED;
	if (WIFEXITED(status) && WEXITSTATUS(status) <= STAGE_ERROR)
		result = (enum stage_result)WEXITSTATUS(status);
	int64_t files = 0, bytes = 0, files_total = 0;
	notify_stage_finished(&s->ledger, up->worker, up->u->name,
			      up->accounts.v[up->account].name, (int)result);
	if (slot >= 0) {
		files = s->ledger.stages[slot].files_done;
		bytes = s->ledger.stages[slot].bytes_done;
		files_total = s->ledger.stages[slot].files_total;
		ledger_stage_release(&s->ledger, slot);
	}
	if (WIFSIGNALED(status))
		log_error("uploader %s: the worker of stage %d was killed by signal %d; its counted "
			  "files stay counted",
			  up->u->name, up->stage_number, WTERMSIG(status));
	log_info("uploader %s: stage %d %s: %lld files, %lld bytes", up->u->name,
		 up->stage_number, stage_result_name(result), (long long)files, (long long)bytes);
	up->files += files;
	up->bytes += bytes;
	up->cycle_files += files;
	if (files > 0)
		planner_suspension_end(&up->suspension); /* the next suspension is news again */
	int account = up->account;
	int64_t max_size = up->max_size_bytes;
	up->worker = 0;
	free_stage(&up->stage);
	up->state = UP_IDLE;
	if ((result == STAGE_DONE || result == STAGE_MAX_TRANSFER) && !dry)
		remove_empty_dirs(up);
	switch (result) {
	case STAGE_DONE:
		up->failures = 0;
		/* Without a size cap rclone took everything it could see, and a move that took
		 * every listed file leaves nothing: the folder is done. Otherwise bigger files may
		 * wait for an account with more room. */
		if (max_size == 0 || files == 0)
			up->given_up[account] = true;
		if (max_size == 0 || (up->u->remote->rclone_command == CONFIG_COMMAND_MOVE &&
				      files >= files_total))
			up->state = UP_FINISHED;
		break;
	case STAGE_NOTHING:
		up->state = UP_FINISHED;
		break;
	case STAGE_MAX_TRANSFER:
		up->failures = 0;
		if (files == 0)
			up->given_up[account] = true; /* room for less than the next file */
		break;
	case STAGE_TRIGGERED:
		up->failures = 0; /* the ban takes the account out */
		break;
	case STAGE_FATAL:
		log_warn("uploader %s: rclone's fatal error on %s (exit 7: upload limit?); trying the "
			 "next account", up->u->name, up->accounts.v[account].name);
		up->given_up[account] = true;
		break;
	case STAGE_INTERRUPTED:
		if (!s->stopping && !s->reload_pending)
			up->failures++;
		break;
	case STAGE_FAILED:
	case STAGE_ERROR:
		if (s->stopping)
			break; /* killed because the user stopped us: not a failed upload */
		if (++up->failures >= SUP_FAILURES_PER_ACCOUNT) {
			log_warn("uploader %s: %d failed stages in a row on %s; trying the next account",
				 up->u->name, up->failures, up->accounts.v[account].name);
			up->given_up[account] = true;
			up->failures = 0;
		}
		up->failed = true;
		break;
	}
	if (result == STAGE_DONE || result == STAGE_MAX_TRANSFER || result == STAGE_TRIGGERED)
		up->failed = false;
	/* A dry run's stage moved nothing, so the next one would plan the same: one shows it. */
	if (dry && (result == STAGE_DONE || result == STAGE_MAX_TRANSFER ||
		    result == STAGE_NOTHING)) {
		log_info("uploader %s: dry run: the stage shows what rclone would do; nothing more "
			 "to plan", up->u->name);
		up->state = UP_FINISHED;
	}
	if ((result == STAGE_DONE || result == STAGE_MAX_TRANSFER) && up->u->quota_enabled &&
	    remaining_of(s, up, account) <= s->cfg.quota.continue_min_bytes)
		up->given_up[account] = true; /* too little left to be worth another stage */
	if (up->state == UP_FINISHED && s->opt->mode == SUPERVISOR_RUN) {
		up->state = UP_IDLE;
		up->cycle = false;
		up->next_check_ms = ledger_now_ms() + (int64_t)up->u->check_interval_min * 60000;
	}
	if (up->state == UP_FINISHED || !up->cycle) {
		notify_upload_finished(up->u->name, NULL, up->failed);
		upload_ended(s, up);
	}
}

/* ---- the mover ---- */

/* Whether another stage (of ours, or of a worker an earlier cplow left) uses the mover's
 * account. */
static bool mover_busy(const struct sup *s, const struct up *up, const char *account)
{
	char id[LEDGER_ACCOUNT_MAX + 8];
	mover_identity(up->u, id, sizeof(id));
	for (size_t k = 0; k < s->up_count; k++) {
		const struct up *o = &s->ups[k];
		if (o == up || o->state != UP_RUNNING || !*id)
			continue;
		const char *other = o->moving ? o->mover.identity : o->accounts.v[o->account].identity;
		if (other && strcmp(other, id) == 0)
			return true;
	}
	for (uint32_t k = 0; k < s->copy.slot_capacity; k++) {
		const struct ledger_stage *st = &s->copy.stages[k];
		if (st->state != LEDGER_STAGE_RUNNING || st->row < 0 ||
		    (uint32_t)st->row >= s->copy.row_count || !ledger_stage_holder_alive(st))
			continue;
		const struct ledger_row *r = &s->copy.rows[st->row];
		if (strcmp(r->uploader, up->u->name) == 0 ? strcmp(r->account, account) == 0
							  : *id && row_is_account(s, r, id))
			return true;
	}
	return false;
}

/* Forks the worker of up's mover, or says why it does not run (it waits while its account is
 * busy). */
static void start_mover(struct sup *s, struct up *up)
{
	int64_t now = ledger_now_ms();
	ledger_expire(&s->ledger, now);
	if (read_copy(s) < 0)
		return;
	struct mover_plan *m = &up->mover;
	char account[LEDGER_ACCOUNT_MAX];
	mover_plan(&s->cfg, up->u, &s->ledger, &s->copy, false, now, m);
	snprintf(account, sizeof(account), "%s", m->account);
	if (m->run && mover_busy(s, up, account)) {
		if (!up->mover_waiting)
			log_info("uploader %s: the mover waits: another stage uses its account %s",
				 up->u->name, account);
		up->mover_waiting = true;
		return;
	}
	up->mover_waiting = false;
	up->mover_due = false;
	const struct config_mover *mv = &up->u->mover;
	if (!m->run) {
		log_warn("uploader %s: the mover from %s to %s does not run now: %s; it runs after "
			 "the next upload", up->u->name, mv->move_from_remote, mv->move_to_remote,
			 m->why);
		return;
	}
	up->stage_number++;
	build_mover(s, up);
	if (m->quota)
		log_info("uploader %s: mover %s → %s on %s: %lld bytes left, moves the files that "
			 "fit", up->u->name, mv->move_from_remote, mv->move_to_remote, m->account,
			 (long long)m->budget_bytes);
	else
		log_info("uploader %s: mover %s → %s on %s: quota off, moves every file",
			 up->u->name, mv->move_from_remote, mv->move_to_remote, m->account);
	pid_t supervisor = getpid();
	pid_t pid = procs_fork(s->lock_fd, SIGTERM);
	if (pid < 0) {
		log_error("cannot fork the mover's worker: %s", strerror(errno));
		free_stage(&up->stage);
		up->mover_failed = true;
		return;
	}
	if (pid == 0) {
		char tag[LEDGER_UPLOADER_MAX + 80];
		snprintf(tag, sizeof(tag), "mover[%s/%.60s]", up->u->name, m->account);
		log_set_tag(tag);
		struct stage_outcome out;
		enum stage_result result = worker_run(&up->stage.spec, &out);
		flush_if_last(s, supervisor);
		_exit((int)result);
	}
	up->after_mover = up->state;
	up->worker = pid;
	up->account = -1;
	up->moving = true;
	up->state = UP_RUNNING;
}

/* The mover's worker (and its check) ended: the uploader goes back to how its upload ended. */
static void mover_done(struct sup *s, struct up *up, int status, int slot)
{
	enum stage_result result = STAGE_FAILED;
	if (WIFEXITED(status) && WEXITSTATUS(status) <= STAGE_ERROR)
		result = (enum stage_result)WEXITSTATUS(status);
	int64_t files = 0, bytes = 0;
	if (slot >= 0) {
		files = s->ledger.stages[slot].files_done;
		bytes = s->ledger.stages[slot].bytes_done;
		ledger_stage_release(&s->ledger, slot);
	}
	const struct config_mover *mv = &up->u->mover;
	if (WIFSIGNALED(status))
		log_error("uploader %s: the mover's worker was killed by signal %d; its counted files "
			  "stay counted", up->u->name, WTERMSIG(status));
	log_info("uploader %s: mover %s → %s %s: %lld files, %lld bytes counted on %s",
		 up->u->name, mv->move_from_remote, mv->move_to_remote, stage_result_name(result),
		 (long long)files, (long long)bytes, up->mover.account);
	up->moved_files += files;
	up->moved_bytes += bytes;
	bool failed = result == STAGE_FAILED || result == STAGE_ERROR || result == STAGE_FATAL ||
		      (result == STAGE_INTERRUPTED && !s->stopping && !s->reload_pending);
	if (failed) {
		up->mover_failed = true;
		notify_problem("uploader %s: the mover from %s to %s failed (%s)", up->u->name,
			       mv->move_from_remote, mv->move_to_remote, stage_result_name(result));
	}
	up->worker = 0;
	up->moving = false;
	free_stage(&up->stage);
	up->state = up->after_mover;
}

/* ---- run mode: when an uploader is due ---- */

static bool uploader_due(const struct up *up, int64_t now_ms, char *why, size_t len)
{
	const struct config_uploader *u = up->u;
	if (u->schedule.enabled &&
	    !folder_schedule_allows_minutes(u->schedule.allowed_from_min,
					    u->schedule.allowed_until_min,
					    folder_minute_of_day(now_ms / 1000))) {
		snprintf(why, len, "outside its schedule");
		return false;
	}
	struct folder_usage usage;
	char err[512];
	int64_t min_age = u->check_type == CONFIG_CHECK_AGE ? (int64_t)u->check_limit_minutes * 60 : 0;
	if (folder_size(u->remote->upload_folder, (const char *const *)u->size_excludes,
			u->size_exclude_count, min_age, now_ms / 1000, &usage, err, sizeof(err)) < 0) {
		snprintf(why, len, "cannot measure its folder: %.200s", err);
		return false;
	}
	if (u->check_type == CONFIG_CHECK_AGE) {
		if (usage.file_count == 0) {
			snprintf(why, len, "no file older than %d minutes", u->check_limit_minutes);
			return false;
		}
		return true;
	}
	if (usage.total_bytes < u->max_size_bytes) {
		snprintf(why, len, "%lld of %lld bytes", (long long)usage.total_bytes,
			 (long long)u->max_size_bytes);
		return false;
	}
	return true;
}

/* ---- set-up and the loop ---- */

static int setup_uploaders(struct sup *s, char *err, size_t err_len)
{
	const struct supervisor_options *o = s->opt;
	for (size_t i = 0; i < o->uploader_count; i++) {
		if (!config_find_uploader(&s->cfg, o->uploaders[i])) {
			snprintf(err, err_len, "no uploader named %s in %s", o->uploaders[i],
				 s->cfg.path);
			return -1;
		}
	}
	s->ups = calloc(s->cfg.uploader_count ? s->cfg.uploader_count : 1, sizeof(*s->ups));
	if (!s->ups) {
		snprintf(err, err_len, "out of memory");
		return -1;
	}
	for (size_t i = 0; i < s->cfg.uploader_count; i++) {
		const struct config_uploader *u = &s->cfg.uploaders[i];
		bool chosen = o->uploader_count == 0;
		for (size_t k = 0; k < o->uploader_count; k++)
			chosen = chosen || strcmp(o->uploaders[k], u->name) == 0;
		if (!chosen)
			continue;
		log_info("uploader %s: quota %s (%s)", u->name, u->quota_enabled ? "on" : "off",
			 u->quota_reason);
		struct up *up = &s->ups[s->up_count];
		up->u = u;
		if (planner_accounts(u, &up->accounts, err, err_len) < 0)
			return -1;
		up->given_up = calloc(up->accounts.count, sizeof(bool));
		up->cycle = o->mode == SUPERVISOR_UPLOAD;
		if (!up->given_up) {
			snprintf(err, err_len, "out of memory");
			return -1;
		}
		s->up_count++;
	}
	return 0;
}

static void free_uploaders(struct sup *s)
{
	for (size_t i = 0; i < s->up_count; i++) {
		free_stage(&s->ups[i].stage);
		planner_accounts_free(&s->ups[i].accounts);
		free(s->ups[i].given_up);
	}
	free(s->ups);
	s->ups = NULL;
	s->up_count = 0;
}

/* Stages running, their checks included, checks of an earlier run's slots, and the hidden
 * cleaner. */
static size_t running_workers(const struct sup *s)
{
	size_t n = s->cleaner > 0;
	for (size_t i = 0; i < s->up_count; i++)
		n += s->ups[i].state == UP_RUNNING;
	for (uint32_t i = 0; s->slot_checks && i < s->ledger.hdr->slot_capacity; i++)
		n += s->slot_checks[i].checker > 0;
	return n;
}

static void signal_one(pid_t pid, int sig)
{
	if (pid <= 0)
		return;
	if (sig == SIGKILL)
		kill(-pid, SIGKILL);
	kill(pid, sig); /* also before it made its own group */
}

/* Workers, and with checks, the checks of files they left (which a stop ends at once,
 * charging them; a reload lets them finish). */
static void signal_stages(struct sup *s, int sig, bool checks)
{
	for (size_t i = 0; i < s->up_count; i++)
		if (s->ups[i].state == UP_RUNNING && (!s->ups[i].checker || checks))
			signal_one(s->ups[i].checker ? s->ups[i].checker : s->ups[i].worker, sig);
	for (uint32_t i = 0; checks && s->slot_checks && i < s->ledger.hdr->slot_capacity; i++)
		signal_one(s->slot_checks[i].checker, sig);
	signal_one(s->cleaner, sig); /* its markers stay for the next clean */
}

static void signal_workers(struct sup *s, int sig)
{
	signal_stages(s, sig, true);
}

/* A role of ours died: it is started again after its backoff. */
static bool role_was_reaped(struct sup *s, pid_t pid, int status)
{
	static const enum role_id ours[] = { ROLE_FLUSHER, ROLE_PLEX, ROLE_DASHBOARD };
	for (size_t i = 0; i < sizeof(ours) / sizeof(ours[0]); i++) {
		const struct role *r = &role_table[ours[i]];
		if (!role_reaped(r, &s->roles[ours[i]], pid, status))
			continue;
		if (r->counted)
			atomic_fetch_add(&s->ledger.hdr->restarts, 1);
		return true;
	}
	return false;
}

static void reap(struct sup *s)
{
	pid_t pid;
	int status;
	while (procs_reap(&pid, &status)) {
		if (notify_reaped(pid, status))
			continue;
		if (role_was_reaped(s, pid, status))
			continue;
		if (pause_hooks_reaped(&s->pause, pid, status)) {
			if (role_table[ROLE_DOWNLOADERS].counted)
				atomic_fetch_add(&s->ledger.hdr->restarts, 1);
			continue;
		}
		if (stale_check_reaped(s, pid, status))
			continue;
		if (pid == s->cleaner) {
			s->cleaner = 0;
			if (!WIFEXITED(status) || WEXITSTATUS(status) > 1)
				log_warn("the hidden cleaner ended early (status %d); its markers stay "
					 "for the next clean, and the uploads go on", status);
			continue;
		}
		/* Anything not ours is an orphan we reaped for the system (PID 1, subreaper). */
		for (size_t i = 0; i < s->up_count; i++) {
			struct up *up = &s->ups[i];
			if (up->state != UP_RUNNING)
				continue;
			if (up->checker == pid)
				check_finished(s, up, status);
			else if (!up->checker && up->worker == pid)
				stage_finished(s, up, status);
		}
	}
}

/* Every error of the config, one log line each, after `refused`. Loaded, what rclone says
 * (probe.h) is logged too: a remote it does not know is a warning (its stages fail on
 * it), and each uploader's quota "auto" is resolved. */
/* The config file's bytes, or NULL (unreadable, or larger than the loader takes). */
static char *read_config_text(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	size_t cap = CONFIG_FILE_MAX + 1;
	char *text = malloc(cap);
	*len = text ? fread(text, 1, cap, f) : 0;
	if (text && (ferror(f) || *len == cap)) {
		free(text);
		text = NULL;
	}
	fclose(f);
	return text;
}

static int load_config(const char *path, struct config *out, const char *refused)
{
	struct config_errors errors;
	int rc = config_load_all(path, out, &errors);
	for (size_t i = 0; i < errors.count; i++)
		log_error("%s%s", refused, errors.lines[i]);
	if (errors.more)
		log_error("%sand %zu more errors", refused, errors.more);
	config_errors_free(&errors);
	if (rc == 0)
		probe_config(out, &errors);
	for (size_t i = 0; rc == 0 && i < errors.count; i++)
		log_warn("config: %s", errors.lines[i]);
	config_errors_free(&errors);
	return rc;
}

static void log_config_notes(const struct config *c)
{
	for (size_t i = 0; i < c->warning_count; i++)
		log_warn("config: %s", c->warnings[i]);
	for (size_t i = 0; i < c->ignored_section_count; i++)
		log_info("config: section %s is not implemented by this cplow and is ignored",
			 c->ignored_sections[i]);
}

/* A reload cannot change quota.capacity: the shared ledger's size is fixed while processes map
 * it. Refused as an invalid config is (logged, the new one freed, the old one stays). */
static bool reload_changes_capacity(const struct sup *s, struct config *next)
{
	if (next->quota.capacity == s->cfg.quota.capacity)
		return false;
	log_error("SIGHUP: the new config is refused, the old one stays: quota.capacity %u differs "
		  "from the running %u, and the shared ledger's size can change only at a start: "
		  "restart cplow to apply it", next->quota.capacity, s->cfg.quota.capacity);
	config_free(next);
	return true;
}

/* The supervisor's signals (README: signals), in handle_signals' order. */
static const int sup_signals[] = { SIGINT, SIGTERM, SIGHUP, SIGUSR1, SIGCHLD };

static void handle_signals(struct sup *s)
{
	enum { INT, TERM, HUP, USR1, CHLD };
	int sig[5];
	procs_signals_take(sup_signals, 5, sig);
	int stops = sig[INT] + sig[TERM];
	if (stops && s->stopping == 0) {
		s->stop_signal = sig[TERM] ? SIGTERM : SIGINT;
		log_info("%s: stopping every stage gracefully (again to stop at once)",
			 s->stop_signal == SIGTERM ? "SIGTERM" : "SIGINT");
		s->stopping = 1;
		sdnotify_stopping();
		signal_workers(s, SIGTERM);
		stops--;
	}
	if (stops && s->stopping == 1) {
		log_warn("second stop signal: killing the stages now; the ledger is still flushed");
		s->stopping = 2;
		signal_workers(s, SIGKILL);
	}
	/* logrotate renames the log file and sends SIGHUP: lines from now on go to a new one. */
	if (sig[HUP] && log_reopen_file() < 0)
		log_error("SIGHUP: cannot open the log file again (%s); it stays where it was",
			  strerror(errno));
	size_t len = 0;
	char *text = sig[HUP] && !s->stopping ? read_config_text(s->opt->config_path, &len) : NULL;
	if (text && s->cfg_text && !s->reload_pending && len == s->cfg_len &&
	    memcmp(text, s->cfg_text, len) == 0) {
		/* logrotate's signal: the stages go on; the roles that may not open the log file
		 * again (log_file_pin) start again to write to the new one. */
		log_info("SIGHUP: the config is as it was: the log file is opened again, the stages "
			 "go on");
		stop_roles(s);
		notify_restart();
		free(text);
	} else if (sig[HUP] && !s->stopping) {
		struct config next;
		if (load_config(s->opt->config_path, &next,
				"SIGHUP: the new config is refused, the old one stays: ") == 0 &&
		    !reload_changes_capacity(s, &next)) {
			log_info("SIGHUP: config reloaded; stopping the stages to plan them again");
			free(s->cfg_text);
			s->cfg_text = text;
			s->cfg_len = len;
			text = NULL;
			if (s->reload_pending)
				config_free(&s->next_cfg);
			s->next_cfg = next;
			s->reload_pending = true;
			signal_stages(s, SIGTERM, false);
		}
		free(text);
	}
	if (sig[USR1] && s->roles[ROLE_FLUSHER].pid > 0)
		kill(s->roles[ROLE_FLUSHER].pid, SIGUSR1);
}

static int apply_reload(struct sup *s, char *err, size_t err_len)
{
	/* Uploaders that finished stay finished in an upload run. */
	char **done = calloc(s->up_count + 1, sizeof(char *));
	size_t n_done = 0;
	for (size_t i = 0; done && i < s->up_count; i++)
		if (s->ups[i].state == UP_FINISHED)
			done[n_done++] = strdup(s->ups[i].u->name);
	free_uploaders(s);
	config_free(&s->cfg);
	s->cfg = s->next_cfg;
	memset(&s->next_cfg, 0, sizeof(s->next_cfg));
	s->reload_pending = false;
	log_config_notes(&s->cfg);
	notify_reload(&s->cfg);
	if (s->cfg.dashboard.off_reason)
		notify_problem("config: %s", s->cfg.dashboard.off_reason);
	int rc = match_config(&s->cfg, &s->ledger, s->ledger_name, err, err_len);
	if (rc == 0)
		rc = setup_uploaders(s, err, err_len);
	for (size_t i = 0; rc == 0 && i < s->up_count; i++)
		for (size_t k = 0; k < n_done; k++)
			if (done[k] && strcmp(done[k], s->ups[i].u->name) == 0)
				s->ups[i].state = UP_FINISHED;
	for (size_t k = 0; k < n_done; k++)
		free(done[k]);
	free(done);
	/* The flusher and the dashboard pick the new config up by starting again. */
	stop_flusher(s);
	start_role(s, ROLE_FLUSHER);
	stop_roles(s);
	/* Its downloaders' addresses are the old config's: it resumes them and starts again. */
	pause_hooks_stop(&s->pause);
	return rc;
}

static void start_cleaner(struct sup *s)
{
	s->clean_due = false;
	pid_t pid = hidden_start(&s->cfg, s->lock_fd);
	if (pid < 0)
		log_error("cannot fork the hidden cleaner: %s; uploading without it",
			  strerror(errno));
	else
		s->cleaner = pid;
}

static void schedule_uploads(struct sup *s)
{
	int64_t now = ledger_now_ms();
	/* The hidden cleaner runs before an upload, as cloudplow's did: a file deleted in the
	 * union and written again must not be deleted on the remote after its new upload. */
	if (s->cleaner > 0)
		return;
	if (s->clean_due) {
		start_cleaner(s);
		if (s->cleaner > 0)
			return;
	}
	/* Uploaders waiting for a shared account go first: the one that just finished a stage
	 * on it would otherwise take it again at once. */
	bool waited[s->up_count + 1];
	for (size_t i = 0; i < s->up_count; i++)
		waited[i] = s->ups[i].waiting;
	for (size_t pass = 0; pass < 2 * s->up_count; pass++) {
		size_t i = pass % s->up_count;
		struct up *up = &s->ups[i];
		if (waited[i] != (pass < s->up_count) || stale_check_of(s, up))
			continue;
		if (up->mover_due) {
			if (up->state != UP_RUNNING)
				start_mover(s, up);
			continue;
		}
		if (up->state != UP_IDLE)
			continue;
		if (!up->cycle) {
			/* Run mode: an upload starts when the uploader is due. (`upload` starts every
			 * uploader's cycle at once.) */
			if (now < up->next_check_ms)
				continue;
			char why[256];
			if (!uploader_due(up, now, why, sizeof(why))) {
				log_debug("uploader %s not due: %s", up->u->name, why);
				up->next_check_ms = now + (int64_t)up->u->check_interval_min * 60000;
				continue;
			}
			log_info("uploader %s is due: uploading", up->u->name);
			up->cycle = true;
			memset(up->given_up, 0, up->accounts.count * sizeof(bool));
			s->clean_due = s->cfg.hidden_count > 0;
		}
		if (s->clean_due)
			continue; /* its upload waits for the cleaner */
		start_stage(s, up);
	}
	if (s->clean_due)
		start_cleaner(s);
}

static bool all_finished(const struct sup *s)
{
	for (size_t i = 0; i < s->up_count; i++)
		if (s->ups[i].state != UP_FINISHED || s->ups[i].mover_due)
			return false;
	return true;
}

static int64_t next_deadline(const struct sup *s, int64_t now)
{
	int64_t at = now + SUP_TICK_MS;
	const struct role_state *f = &s->roles[ROLE_FLUSHER], *d = &s->roles[ROLE_DASHBOARD];
	if (f->pid == 0 && f->backoff.restart_at_ms && f->backoff.restart_at_ms < at)
		at = f->backoff.restart_at_ms;
	if (s->cfg.dashboard.enabled && d->pid == 0 && d->backoff.restart_at_ms &&
	    d->backoff.restart_at_ms < at)
		at = d->backoff.restart_at_ms;
	return pause_hooks_deadline(&s->pause, at);
}

static void loop(struct sup *s)
{
	for (;;) {
		int64_t now = ledger_now_ms();
		heartbeat(s);
		notify_tick(&s->ledger);
		keep_role(s, ROLE_FLUSHER, true);
		keep_role(s, ROLE_PLEX, s->cfg.plex.enabled);
		pause_hooks_tick(&s->pause, &s->cfg, &s->ledger, s->lock_fd, s->stopping);
		if (s->reload_pending && running_workers(s) == 0) {
			char err[CONFIG_ERR_MAX];
			if (apply_reload(s, err, sizeof(err)) < 0) {
				log_error("SIGHUP: %s; stopping", err);
				s->stopping = 1;
			}
		}
		if (!s->stopping && !s->reload_pending) {
			/* Workers of a cplow that died before us finish on their own; their slots
			 * are freed once they are gone. */
			release_dead_slots(s);
			schedule_uploads(s);
		}
		/* After the stages: loading libmicrohttpd and GnuTLS takes the dashboard ~10 ms of
		 * CPU, which on two cores delayed a first stage's rclone by as much. */
		keep_role(s, ROLE_DASHBOARD, s->cfg.dashboard.enabled);
		if (running_workers(s) == 0 && !s->reload_pending)
			pause_hooks_resume(&s->pause, ledger_now_ms());
		if (running_workers(s) == 0 &&
		    (s->stopping || (s->opt->mode == SUPERVISOR_UPLOAD && all_finished(s))))
			return;
		int64_t wait = next_deadline(s, now) - ledger_now_ms();
		if (s->progress && wait > PROGRESS_INTERVAL_MS)
			wait = PROGRESS_INTERVAL_MS;
		struct pollfd pfd[3] = { { s->signal_fd, POLLIN, 0 },
					 { pause_hooks_fd(&s->pause), POLLIN, 0 },
					 { progress_input_fd(), POLLIN, 0 } };
		poll(pfd, s->progress ? 3 : 2, wait > 0 ? (int)wait : 0);
		if (pfd[1].revents)
			pause_hooks_read(&s->pause);
		if (s->progress) {
			if (pfd[2].revents & POLLIN)
				progress_on_input();
			if (read_copy(s) == 0)
				progress_draw(&s->copy, ledger_now_ms());
		}
		handle_signals(s);
		reap(s);
		if (s->roles[ROLE_FLUSHER].pid == 0 &&
		    atomic_load(&s->ledger.hdr->row_generation) != s->flushed_rows)
			flush_here(s, "writing the ledger file while the flusher is down");
	}
}

static int exit_code(const struct sup *s)
{
	if (s->stop_signal)
		return 128 + s->stop_signal;
	for (size_t i = 0; i < s->up_count; i++)
		if (s->ups[i].failed || s->ups[i].mover_failed)
			return SUPERVISOR_EXIT_FAILED;
	return SUPERVISOR_EXIT_OK;
}

static void summary(const struct sup *s)
{
	for (size_t i = 0; i < s->up_count; i++) {
		const struct up *up = &s->ups[i];
		log_info("uploader %s: %d stages, %lld files, %lld bytes%s", up->u->name,
			 up->stage_number, (long long)up->files, (long long)up->bytes,
			 up->failed ? " (failed)" : "");
		if (up->u->mover.enabled)
			log_info("uploader %s: its mover moved %lld files, %lld bytes%s", up->u->name,
				 (long long)up->moved_files, (long long)up->moved_bytes,
				 up->mover_failed ? " (failed)" : "");
	}
}

#define SUP_DRY_RUN_STAGES_MAX 200
#define SUP_SIZE_OUTPUT_MAX 4096

/* The bytes an upload would take from the uploader's folder, as rclone selects them: `rclone
 * size` with the stage's excludes, --min-age and the filter flags of rclone_extras
 * (rclone_cmd_build_size). size_excludes are not subtracted: in cloudplow, and here, they only
 * keep files out of the size check, and rclone still moves them. */
static int dry_run_source_bytes(struct sup *s, const struct up *up, int64_t *out, char *err,
				size_t err_len)
{
	struct up_stage st;
	struct rclone_cmd cmd = { 0 };
	struct rclone_proc proc = { .pid = -1, .out_fd = -1, .go_fd = -1 };
	char text[SUP_SIZE_OUTPUT_MAX];
	size_t len = 0;
	int rc = -1, status = 0;
	memset(&st, 0, sizeof(st));
	if (stage_files(s, up, &st, err, err_len) < 0 ||
	    rclone_cmd_build_size(&st.spec, &cmd, err, err_len) < 0)
		goto out;
	if (rclone_proc_defer(&cmd, STDOUT_FILENO, &proc) < 0 || rclone_proc_release(&proc) < 0) {
		snprintf(err, err_len, "cannot run %s: %s", cmd.argv[0], strerror(errno));
		if (proc.pid > 0)
			rclone_proc_cancel(&proc);
		goto out;
	}
	for (;;) {
		char rest[512]; /* read to the end, or rclone could block on a full pipe */
		bool room = len < sizeof(text) - 1;
		ssize_t n = room ? read(proc.out_fd, text + len, sizeof(text) - 1 - len)
				 : read(proc.out_fd, rest, sizeof(rest));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		if (room)
			len += (size_t)n;
	}
	text[len] = '\0';
	rclone_proc_wait(&proc, &status);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		snprintf(err, err_len, "`rclone size` of %s failed (%s %d; its error is above)",
			 st.spec.source, WIFEXITED(status) ? "exit" : "signal",
			 WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
		goto out;
	}
	cJSON *json = cJSON_Parse(text);
	const cJSON *bytes = cJSON_GetObjectItemCaseSensitive(json, "bytes");
	if (cJSON_IsNumber(bytes) && bytes->valuedouble >= 0) {
		*out = (int64_t)bytes->valuedouble;
		rc = 0;
	} else {
		snprintf(err, err_len, "`rclone size` of %s printed no byte count: %.200s",
			 st.spec.source, text);
	}
	cJSON_Delete(json);
out:
	rclone_cmd_free(&cmd);
	free_stage(&st);
	return rc;
}

/* --dry-run: each uploader's planned stages, from its accounts' remaining quota, with the
 * rclone command of each (planner_simulate says what is assumed), built by the function that
 * builds the upload's. Stage 1's command is the first line that starts with the rclone binary:
 * scripts (tests/bench) take it from there. An uploader whose folder cannot be measured or
 * whose stage cannot be built (an upload would fail there too) makes the exit code 1. */
/* One uploader's part of the dry run; its exit code. */
static int dry_run_uploader(struct sup *s, struct up *up, struct planner_step *steps,
			    int64_t now)
{
	char err[CONFIG_ERR_MAX], line[8192];
	int64_t source = 0, left = 0;
	up->stage_number = 1;
	fflush(stdout); /* rclone's error, if any, after this uploader's first line */
	if (dry_run_source_bytes(s, up, &source, err, sizeof(err)) < 0) {
		printf("uploader %s: %zu accounts\n  cannot measure the upload folder: %s\n",
		       up->u->name, up->accounts.count, err);
		return SUPERVISOR_EXIT_FAILED;
	}
	printf("uploader %s: %zu accounts, %lld bytes to upload\n", up->u->name,
	       up->accounts.count, (long long)source);
	printf("  quota %s (%s)%s\n", up->u->quota_enabled ? "on" : "off",
	       up->u->quota_reason,
	       up->u->quota_enabled ? "" : ": no stage flags, no daily limit, no rotation "
					   "for usage; its files are still counted");
	struct plan stop;
	size_t n = planner_simulate(&s->cfg, up->u->name, &up->accounts, &s->ledger, &s->copy,
				    now, source, steps, SUP_DRY_RUN_STAGES_MAX, &left, &stop);
	if (n == 0) {
		printf("  no stage: %s\n", stop.why);
		return SUPERVISOR_EXIT_OK;
	}
	bool planned = true;
	for (size_t k = 0; k < n && planned; k++) {
		const struct plan *p = &steps[k].plan;
		struct rclone_cmd cmd;
		up->stage_number = (int)k + 1;
		if (build_stage(s, up, p, err, sizeof(err)) < 0 ||
		    rclone_cmd_build(&up->stage.spec, "RCUSER", "RCPASS", &cmd, err,
				     sizeof(err)) < 0) {
			printf("  stage %zu on %s: cannot plan: %s\n  the plan stops here: the "
			       "upload would fail at this stage\n",
			       k + 1, up->accounts.v[p->account].name, err);
			free_stage(&up->stage);
			planned = false;
			break;
		}
		rclone_cmd_render(&cmd, line, sizeof(line));
		if (p->quota)
			printf("  stage %zu on %s: %s, %lld bytes left, --max-transfer %lld "
			       "bytes, --max-size %lld bytes; moves up to %lld bytes\n",
			       k + 1, up->accounts.v[p->account].name, p->strategy->name,
			       (long long)p->remaining_bytes, (long long)cmd.max_transfer_bytes,
			       (long long)cmd.max_size_bytes, (long long)steps[k].moved_bytes);
		else
			printf("  stage %zu on %s: quota off, --max-transfer %lld bytes, "
			       "--max-size %lld bytes (0: not passed); moves up to %lld "
			       "bytes\n",
			       k + 1, up->accounts.v[p->account].name,
			       (long long)cmd.max_transfer_bytes,
			       (long long)cmd.max_size_bytes, (long long)steps[k].moved_bytes);
		if (cmd.note[0])
			printf("  note: %s\n", cmd.note);
		printf("  %s\n", line);
		rclone_cmd_free(&cmd);
		free_stage(&up->stage);
	}
	if (!planned)
		return SUPERVISOR_EXIT_FAILED;
	if (left == 0)
		printf("  %zu stages cover the %lld bytes\n", n, (long long)source);
	else if (!stop.why[0])
		printf("  %lld bytes left after the first %zu stages (the plan stops there)\n",
		       (long long)left, n);
	else
		printf("  %lld bytes left for later: no account can take another stage (%s)\n",
		       (long long)left, stop.why);
	return SUPERVISOR_EXIT_OK;
}

/* The mover's part: what it would move (its listing is taken when it runs), and its command. */
static int dry_run_mover(struct sup *s, struct up *up, int64_t now)
{
	const struct config_mover *mv = &up->u->mover;
	struct rclone_cmd cmd;
	char err[CONFIG_ERR_MAX], line[8192];
	if (!mv->enabled)
		return SUPERVISOR_EXIT_OK;
	mover_plan(&s->cfg, up->u, &s->ledger, &s->copy, false, now, &up->mover);
	printf("  mover after the upload: %s → %s on %s, quota %s", mv->move_from_remote,
	       mv->move_to_remote, up->mover.account, up->mover.quota ? "on" : "off");
	if (!up->mover.run) {
		printf("; does not run now: %s\n", up->mover.why);
		return SUPERVISOR_EXIT_OK;
	}
	if (up->mover.quota)
		printf(", %lld bytes left: moves the files it lists there that fit\n",
		       (long long)up->mover.budget_bytes);
	else
		printf(": moves every file it lists there\n");
	up->stage_number++;
	build_mover(s, up);
	int rc = rclone_cmd_build(&up->stage.spec, "RCUSER", "RCPASS", &cmd, err, sizeof(err));
	if (rc < 0) {
		printf("  mover: cannot plan: %s\n", err);
	} else {
		rclone_cmd_render(&cmd, line, sizeof(line));
		printf("  %s\n", line);
		rclone_cmd_free(&cmd);
	}
	free_stage(&up->stage);
	return rc < 0 ? SUPERVISOR_EXIT_FAILED : SUPERVISOR_EXIT_OK;
}

static int dry_run(struct sup *s)
{
	int64_t now = ledger_now_ms();
	int code = SUPERVISOR_EXIT_OK;
	if (read_copy(s) < 0)
		return SUPERVISOR_EXIT_FAILED;
	struct planner_step *steps = calloc(SUP_DRY_RUN_STAGES_MAX, sizeof(*steps));
	if (!steps) {
		log_error("out of memory");
		return SUPERVISOR_EXIT_FAILED;
	}
	for (size_t i = 0; i < s->up_count; i++) {
		int a = dry_run_uploader(s, &s->ups[i], steps, now);
		int b = dry_run_mover(s, &s->ups[i], now);
		if (a != SUPERVISOR_EXIT_OK || b != SUPERVISOR_EXIT_OK)
			code = SUPERVISOR_EXIT_FAILED;
	}
	free(steps);
	return code;
}

int supervisor_main(const struct supervisor_options *opt)
{
	struct sup *s = calloc(1, sizeof(*s));
	char err[CONFIG_ERR_MAX];
	int code = SUPERVISOR_EXIT_CONFIG;
	if (!s)
		return SUPERVISOR_EXIT_FAILED;
	s->opt = opt;
	s->lock_fd = -1;
	log_set_tag("cplow");
	s->cfg_text = read_config_text(opt->config_path, &s->cfg_len);
	if (load_config(opt->config_path, &s->cfg, "") < 0) {
		free(s->cfg_text);
		free(s);
		return SUPERVISOR_EXIT_CONFIG;
	}
	log_config_notes(&s->cfg);
	pause_hooks_init(&s->pause);
	pid_t holder;
	switch (lock_take(s->cfg.quota.lock_path, &s->lock_fd, &holder)) {
	case LOCK_TAKEN:
		break;
	case LOCK_HELD:
		if (holder)
			log_error("another cplow (pid %d) is running with this config: it holds %s",
				  (int)holder, s->cfg.quota.lock_path);
		else
			log_error("another cplow is running with this config: it holds %s",
				  s->cfg.quota.lock_path);
		code = SUPERVISOR_EXIT_LOCKED;
		goto out;
	case LOCK_ERROR:
		log_error("cannot take the lock %s: %s", s->cfg.quota.lock_path, strerror(errno));
		code = SUPERVISOR_EXIT_FAILED;
		goto out;
	}
	if (!opt->dry_run)
		notify_start(&s->cfg, s->lock_fd);
	/* The warning is in the log already (log_config_notes); it must reach a person too. */
	if (!opt->dry_run && s->cfg.dashboard.off_reason)
		notify_problem("config: %s", s->cfg.dashboard.off_reason);
	if (ledger_name_for(s->cfg.path, s->ledger_name, sizeof(s->ledger_name)) != LEDGER_OK ||
	    supervisor_open_ledger(&s->cfg, s->ledger_name, opt->reset_ledger, &s->ledger, err,
				   sizeof(err)) < 0) {
		log_error("%s", err);
		notify_problem("cplow cannot start: %s", err);
		goto out;
	}
	if (ledger_copy_init(&s->ledger, &s->copy) != LEDGER_OK) {
		log_error("out of memory");
		code = SUPERVISOR_EXIT_FAILED;
		goto out;
	}
	if (setup_uploaders(s, err, sizeof(err)) < 0) {
		log_error("%s", err);
		goto out;
	}
	/* Before the dry run too: its plan writes each stage's exclude file there. */
	snprintf(s->work_dir, sizeof(s->work_dir), "%s/cplow-%d-XXXXXX",
		 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp", (int)getpid());
	if (!mkdtemp(s->work_dir)) {
		log_error("cannot create a work directory %s: %s", s->work_dir, strerror(errno));
		s->work_dir[0] = '\0';
		code = SUPERVISOR_EXIT_FAILED;
		goto out;
	}
	if (opt->dry_run) {
		code = dry_run(s);
		goto out;
	}
	s->clean_due = opt->mode == SUPERVISOR_UPLOAD && s->cfg.hidden_count > 0;
	/* The dashboard's session: this run's stages (a dry run moves nothing, so not there). */
	if (ledger_session_start(&s->ledger, ledger_now_ms()) != LEDGER_OK)
		log_warn("cannot start the session's totals in the ledger; the dashboard's session "
			 "shows only running stages");
	static const int ignored[] = { SIGPIPE };
	if ((s->signal_fd = procs_signals_install(sup_signals, 5, ignored, 1, 0, NULL)) < 0) {
		log_error("cannot install signal handlers: %s", strerror(errno));
		code = SUPERVISOR_EXIT_FAILED;
		goto out;
	}
	procs_become_reaper();
	s->slot_checks = calloc(s->ledger.hdr->slot_capacity, sizeof(*s->slot_checks));
	if (!s->slot_checks) {
		log_error("out of memory");
		code = SUPERVISOR_EXIT_FAILED;
		goto out;
	}
	/* Before a resize: a check of an earlier run's slot keeps the ledger as it is until
	 * the next start (resize_ledger waits while a slot is held). */
	release_dead_slots(s);
	if (s->ledger.hdr->row_capacity != s->cfg.quota.capacity) {
		int resized = resize_ledger(s, err, sizeof(err));
		if (resized < 0) {
			log_error("%s", err);
			goto out;
		}
		if (resized > 0 && ledger_session_start(&s->ledger, ledger_now_ms()) != LEDGER_OK)
			log_warn("cannot start the session's totals in the ledger");
	}
	if (opt->progress == 1 || (opt->progress < 0 && isatty(STDERR_FILENO))) {
		int child_fd = progress_start(STDERR_FILENO);
		if (child_fd >= 0) {
			procs_set_child_stderr(child_fd);
			s->progress = true;
		}
	}
	heartbeat(s);
	/* Its role resumes what a killed cplow paused, before any stage asks it for a pause. */
	pause_hooks_tick(&s->pause, &s->cfg, &s->ledger, s->lock_fd, false);
	start_role(s, ROLE_FLUSHER);
	sdnotify_ready(); /* lock held, ledger restored, flusher forked: systemd's Type=notify */
	loop(s);
	signal_workers(s, SIGKILL); /* none should be left; a reload failure can leave some */
	reap(s);
	pause_hooks_stop(&s->pause); /* it resumes what it paused */
	role_stop(&role_table[ROLE_PLEX], &s->roles[ROLE_PLEX]);
	role_stop(&role_table[ROLE_DASHBOARD], &s->roles[ROLE_DASHBOARD]);
	stop_flusher(s);
	if (s->progress)
		progress_finish();
	summary(s);
	code = exit_code(s);
out:
	notify_stop(s->stop_signal);
	if (s->work_dir[0])
		rmdir(s->work_dir);
	if (s->ledger.hdr) {
		atomic_store(&s->ledger.hdr->supervisor_pid, 0);
		ledger_detach(&s->ledger);
	}
	ledger_copy_free(&s->copy);
	free(s->slot_checks);
	free_uploaders(s);
	config_free(&s->cfg);
	if (s->reload_pending)
		config_free(&s->next_cfg);
	if (s->lock_fd >= 0)
		close(s->lock_fd);
	free(s->cfg_text);
	free(s);
	return code;
}
