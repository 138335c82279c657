/*
 * The shared quota ledger: one POSIX shared-memory object per cplow instance holding, per
 * (uploader, account), the bytes uploaded in the current quota window, plus one slot per running
 * stage for live progress.
 *
 * Writers (workers, the supervisor) serialise on one robust process-shared mutex and log an
 * intent (the row's complete after-image) before touching a row, so that whoever inherits the
 * lock from a writer that died inside its critical section can redo the change exactly once.
 * Readers (flusher, dashboard, cplow-inspect) never lock: a sequence counter, odd while a write
 * is in progress, tells them whether the copy they took is consistent.
 *
 * Times are Unix milliseconds and are always passed in by the caller, so tests can drive the
 * clock across quota resets and ban expiries.
 */
#ifndef CPLOW_LEDGER_H
#define CPLOW_LEDGER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define LEDGER_MAGIC 0x574f4c50434c4443ULL /* "CDLCPLOW" read as little-endian bytes */
#define LEDGER_VERSION 3

#define LEDGER_UPLOADER_MAX 64   /* bytes including the NUL */
#define LEDGER_ACCOUNT_MAX 256   /* an absolute key-file path or an rclone remote name */
#define LEDGER_CAUSE_MAX 128     /* why an account is banned, e.g. the trigger text */
#define LEDGER_STRATEGY_MAX 32
#define LEDGER_INFLIGHT_MAX 8    /* files in flight shown per stage */
#define LEDGER_INFLIGHT_NAME_MAX 128
/* Buckets of the rolling window. Bytes counted in hour h count until hour h + 24 ends: never
 * less than 24 h after they were counted (up to an hour more), so 25 hours are in a window. */
#define LEDGER_HOURS 25
#define LEDGER_BWLIMIT_MAX 24    /* an rclone --bwlimit value: "10M", "1M:2M", "off" */
#define LEDGER_OPEN_MAX 64       /* files a stage has started (or copied, unlisted) and not
                                  * yet counted */
#define LEDGER_OPEN_PATH_MAX 256

#define LEDGER_DEFAULT_ROWS 1024
#define LEDGER_DEFAULT_SLOTS 32
#define LEDGER_DAY_MS (24LL * 3600 * 1000)
#define LEDGER_HOUR_MS (3600LL * 1000)

enum ledger_err {
	LEDGER_OK = 0,
	LEDGER_ERR_SYS = -1,        /* a system call failed; errno says which */
	LEDGER_ERR_LAYOUT = -2,     /* object of another magic, version, layout or size */
	LEDGER_ERR_FULL = -3,       /* no free row or slot left */
	LEDGER_ERR_NAME = -4,       /* empty name or too long for the row */
	LEDGER_ERR_NOTFOUND = -5,
	LEDGER_ERR_READONLY = -6,   /* a write through a read-only attachment */
	LEDGER_ERR_STUCK = -7,      /* a reader could not get a consistent copy in time */
	LEDGER_ERR_BROKEN = -8,     /* the mutex became unrecoverable */
	LEDGER_ERR_EXISTS = -9,     /* create found an object already there */
	LEDGER_ERR_INVALID = -10,   /* an argument out of range (negative bytes, bad index) */
	LEDGER_ERR_FOREIGN = -11,   /* object of another user, or open to other users */
};

const char *ledger_strerror(int err);

enum ledger_window {
	LEDGER_WINDOW_FIXED = 0,   /* quota resets 24 h after the first upload (the quota fork) */
	LEDGER_WINDOW_ROLLING = 1, /* quota counts what was uploaded in the last 24 h */
};

/* What changes in a row. Kept apart from the row's names so a write's after-image is small. */
struct ledger_usage {
	int64_t used_bytes;      /* in the current window */
	int64_t files;           /* completed files in the current window */
	int64_t first_upload_ms; /* start of the fixed window; 0 = no upload in this window */
	int64_t reset_at_ms;     /* when the window frees quota again; 0 = nothing to reset */
	int64_t banned_until_ms; /* 0 = not banned */
	int64_t updated_at_ms;
	char ban_cause[LEDGER_CAUSE_MAX];
	/* Rolling window: bytes per hour; hour_index[i] is the hour (ms / 1 h) bucket i holds. */
	int64_t hour_index[LEDGER_HOURS];
	int64_t hour_bytes[LEDGER_HOURS];
};

struct ledger_row {
	char uploader[LEDGER_UPLOADER_MAX];
	char account[LEDGER_ACCOUNT_MAX];
	struct ledger_usage usage;
};

enum ledger_stage_state {
	LEDGER_STAGE_FREE = 0,
	LEDGER_STAGE_RUNNING = 1,
	LEDGER_STAGE_DONE = 2,
};

struct ledger_inflight {
	char name[LEDGER_INFLIGHT_NAME_MAX];
	int64_t size;
	int64_t bytes;
	int64_t speed;
};

enum ledger_open_state {
	LEDGER_OPEN_FREE = 0,
	LEDGER_OPEN_PENDING = 1,   /* rclone opened it; not counted yet */
	LEDGER_OPEN_COUNTED = 2,   /* counted: the entry may be reused */
};

/* A file rclone started to upload, or one it said it copied that the worker's listing lacked
 * (a late file, whose size only the remote knows). If its worker dies, the supervisor checks
 * these on the remote: the list lives here, not in the worker, so that it outlives the worker. */
struct ledger_open_file {
	char path[LEDGER_OPEN_PATH_MAX];
	int64_t size;             /* as listed; LEDGER_OPEN_SIZE_LATE for a late file */
	int64_t mtime_ns;         /* the local file's when rclone had it open; 0 = unknown */
	int32_t state;            /* enum ledger_open_state */
	int32_t reserved;
};

#define LEDGER_OPEN_SIZE_LATE (-1)

/* One running stage: what the planner chose and what rclone reports about it. */
struct ledger_stage {
	int32_t state;            /* enum ledger_stage_state */
	int32_t pid;              /* the worker; with pid_start, whether it still runs */
	int32_t row;              /* the (uploader, account) row it charges */
	int32_t stage_number;
	int32_t result;           /* the worker's stage result once DONE */
	int32_t inflight_count;
	char strategy[LEDGER_STRATEGY_MAX];
	int64_t max_transfer_bytes;
	int64_t max_size_bytes;
	int32_t transfers;
	int32_t max_backlog;
	char order_by[LEDGER_STRATEGY_MAX];
	uint64_t pid_start;       /* the worker's start time (proc.h); set by ledger_stage_claim */
	int64_t started_at_ms;
	int64_t updated_at_ms;
	int64_t files_total;
	int64_t bytes_total;
	int64_t files_done;
	int64_t bytes_done;
	/* From rclone's RC core/stats. */
	int64_t rc_bytes;
	int64_t rc_speed;
	int64_t rc_eta_s;         /* -1 = unknown */
	int64_t rc_errors;
	struct ledger_inflight inflight[LEDGER_INFLIGHT_MAX];
	/* A bandwidth limit asked of the stage (Plex throttle, an operator): the worker applies
	 * it through rclone's core/bwlimit when bwlimit_seq moves. "off" lifts it. */
	uint32_t bwlimit_seq;
	char bwlimit[LEDGER_BWLIMIT_MAX];
	int32_t open_lost;        /* opened files that did not fit in open_files */
	struct ledger_open_file open_files[LEDGER_OPEN_MAX];
};

/* What a logged write changes; bits, so one write can touch a row and its stage together. */
enum ledger_op {
	LEDGER_OP_NONE = 0,
	LEDGER_OP_ROW = 1,          /* row's usage := after.usage */
	LEDGER_OP_STAGE_COUNT = 2,  /* slot's files_done/bytes_done := the intent's */
	LEDGER_OP_STAGE = 4,        /* whole slot := after.stage */
	LEDGER_OP_CREATE = 8,       /* index[index_pos] := row + 1, row_count := row + 1 */
	LEDGER_OP_OPEN_COUNTED = 16,/* slot's open_files[open_index] := counted */
	LEDGER_OP_SESSION = 32,     /* header's session := the intent's */
	LEDGER_OP_WINDOW = 64,      /* header's window and daily_bytes := the intent's */
};

/*
 * The upload session: what the stages of one supervisor run moved. A stage's counters live in
 * its slot while it runs; releasing the slot folds them in here in the same logged write, so a
 * finished stage's files are counted once whether or not its releaser dies (the dashboard's
 * /api/session_stats is these totals plus the slots still held).
 */
struct ledger_session {
	int64_t started_ms;         /* ledger_session_start; 0 = no session started yet */
	int64_t files;              /* files_done of the released stages */
	int64_t bytes;              /* bytes_done of the released stages */
	int64_t stages;             /* stages released */
};

/*
 * The write-ahead record of the one write in progress: complete after-images, never deltas, so
 * redoing it is idempotent. Only the lock holder writes it, so one record is enough (DESIGN.md
 * puts it in the writer's stage slot; a single record saves the recovering process a scan and
 * covers writers that have no stage, such as the supervisor).
 */
struct ledger_intent {
	_Atomic int32_t op;         /* enum ledger_op bits; stored last, after the images */
	int32_t row;
	int32_t slot;
	uint32_t index_pos;
	int32_t open_index;
	uint32_t window;            /* LEDGER_OP_WINDOW */
	int64_t daily_bytes;        /* LEDGER_OP_WINDOW */
	int64_t stage_files_done;
	int64_t stage_bytes_done;
	struct ledger_usage usage;
	struct ledger_stage stage;
	struct ledger_session session;
};

struct ledger_header {
	uint64_t magic;
	uint32_t version;
	uint32_t layout_hash;
	uint64_t total_size;
	uint32_t row_capacity;
	uint32_t slot_capacity;
	uint32_t index_size;        /* power of two, at least twice row_capacity */
	uint32_t window;            /* enum ledger_window */
	int64_t daily_bytes;
	int64_t created_at_ms;

	pthread_mutex_t lock;
	/* Serialises the writers of the ledger file (ledger_flush_lock): two flushers (an orphaned
	 * one and the next cplow's), a worker whose supervisor and flusher are gone, the supervisor
	 * while its flusher is down. Robust too: a writer killed mid-write leaves only a temp file. */
	pthread_mutex_t flush_lock;
	_Atomic uint64_t seq;       /* odd while a writer is changing rows or slots */
	_Atomic uint64_t generation;/* bumped after every completed write */
	/* Bumped after a write that changed rows (what the ledger file holds): stage-slot
	 * writes, many a second, move only generation and do not wake the flusher. */
	_Atomic uint64_t row_generation;
	_Atomic uint32_t row_count;
	_Atomic uint32_t flusher_waiting;
	_Atomic uint32_t wake;      /* futex word the flusher sleeps on */
	_Atomic uint64_t recoveries;/* writers found dead inside the lock */
	_Atomic int32_t supervisor_pid;
	_Atomic uint64_t supervisor_start;  /* with supervisor_pid: which process (proc.h) */
	_Atomic int64_t supervisor_seen_ms; /* heartbeat: stale when the supervisor is gone */
	_Atomic int32_t flusher_pid;        /* the flusher that runs, 0 = none */
	_Atomic uint64_t flusher_start;
	_Atomic uint64_t flushed_generation;
	_Atomic int64_t flushed_at_ms;
	_Atomic uint64_t flush_count;
	_Atomic uint64_t flush_errors;
	_Atomic uint64_t restarts;   /* process restarts, kept by the supervisor */
	/* Plain: written only inside a logged write (LEDGER_OP_SESSION), read under seq. */
	struct ledger_session session;

	struct ledger_intent intent;
};

struct ledger {
	struct ledger_header *hdr;
	uint32_t *index;              /* row number + 1; 0 = empty */
	struct ledger_row *rows;
	struct ledger_stage *stages;
	size_t map_size;
	int writable;
	int rows_changed;             /* by this process's write under the lock: wake the flusher */
	char name[64];
};

/* A consistent copy of everything a reader shows: no pointers into shared memory. */
struct ledger_copy {
	uint64_t generation;
	uint64_t row_generation;
	uint64_t flushed_generation;
	int64_t flushed_at_ms;
	int64_t daily_bytes;
	uint32_t window;
	uint32_t row_count;
	uint32_t slot_capacity;
	uint64_t recoveries;
	uint64_t restarts;
	int32_t supervisor_pid;
	int64_t supervisor_seen_ms;
	struct ledger_session session;
	uint32_t row_capacity;        /* of the arrays below, set by ledger_copy_init */
	struct ledger_row *rows;      /* row_count entries */
	struct ledger_stage *stages;  /* slot_capacity entries */
};

struct ledger_options {
	uint32_t row_capacity;   /* 0 = LEDGER_DEFAULT_ROWS */
	uint32_t slot_capacity;  /* 0 = LEDGER_DEFAULT_SLOTS */
	int64_t daily_bytes;     /* 0 = 750 GiB */
	enum ledger_window window;
};

#define LEDGER_DAILY_BYTES_DEFAULT 805306368000LL

/* The object name for a config file: stable per (real path, uid), fits NAME_MAX. */
int ledger_name_for(const char *config_path, char *out, size_t out_len);

int ledger_create(const char *name, const struct ledger_options *opt, struct ledger *out);
/* Bytes of /dev/shm a ledger created with opt takes (0 for options create refuses). */
size_t ledger_size_for(const struct ledger_options *opt);
int ledger_attach(const char *name, int writable, struct ledger *out);
void ledger_detach(struct ledger *l);
int ledger_unlink(const char *name);

/* Finds or adds the row of (uploader, account); *row gets its number for ledger_add. */
int ledger_row_get(struct ledger *l, const char *uploader, const char *account, int32_t *row);
int ledger_row_find(const struct ledger *l, const char *uploader, const char *account,
		    int32_t *row);

/* The hot path: one completed file of `bytes` bytes on `row` at `now_ms`. */
int ledger_add(struct ledger *l, int32_t row, int64_t bytes, int64_t now_ms);
int ledger_ban(struct ledger *l, int32_t row, int64_t until_ms, const char *cause, int64_t now_ms);
int ledger_unban(struct ledger *l, int32_t row, int64_t now_ms);
/* Ends windows whose reset time has passed (and expired bans); returns rows changed or < 0. */
int ledger_expire(struct ledger *l, int64_t now_ms);
/* Zeroes a row's window (reset-quota). */
int ledger_reset_row(struct ledger *l, int32_t row, int64_t now_ms);
/* Replaces a row's usage wholesale: restoring from the ledger file. */
int ledger_set_usage(struct ledger *l, int32_t row, const struct ledger_usage *u);

/* Stage slots. */
int ledger_stage_claim(struct ledger *l, const struct ledger_stage *init, int32_t *slot);
int ledger_stage_update(struct ledger *l, int32_t slot, const struct ledger_stage *s);
/* Frees the slot; a stage that started in the current session (started_at_ms at or after its
 * start) adds its files_done and bytes_done to the session's totals in the same write. */
int ledger_stage_release(struct ledger *l, int32_t slot);
/* Starts a new session at now_ms: zero totals. The supervisor calls it once at startup; stages
 * that started before (a dead run's slots released later) are not counted in it. */
int ledger_session_start(struct ledger *l, int64_t now_ms);
/* Asks the stage's worker to set rclone's bandwidth limit (rate as --bwlimit takes it). */
int ledger_stage_request_bwlimit(struct ledger *l, int32_t slot, const char *rate);
/* The worker's side: copies a request newer than *seen into rate and moves *seen; returns 1
 * when there was one, 0 when not. Lock-free: the request is re-read until it is stable. */
int ledger_stage_take_bwlimit(const struct ledger *l, int32_t slot, uint32_t *seen, char *rate,
			      size_t len);
/* Adds a completed file to the row and the stage in one write. With a path, the file's entry in
 * the stage's open_files (if any) is marked counted in that same write, so a supervisor
 * checking a dead worker's files can never count it again. */
int ledger_add_for_stage(struct ledger *l, int32_t slot, int64_t bytes, int64_t now_ms);
int ledger_add_for_stage_file(struct ledger *l, int32_t slot, const char *path, int64_t bytes,
			      int64_t now_ms);
/* Records files rclone has started (one write for all n); those that do not fit (table full of
 * pending files, or a path too long) are counted in open_lost. mtimes may be NULL (unknown);
 * a size of LEDGER_OPEN_SIZE_LATE records a late file, and turns a pending entry of that path
 * into one (its size is the remote's to say). */
int ledger_stage_note_opens(struct ledger *l, int32_t slot, const char *const *paths,
			    const int64_t *sizes, const int64_t *mtimes, size_t n);
/*
 * The slot's pending files, read under the lock: a writer that died inside its write is
 * recovered first, so an entry its logged write counted is never handed out as pending. Copies
 * at most cap entries into out, their indexes into index (for ledger_count_open_file), sets *n
 * and *lost (the slot's open_lost).
 */
int ledger_stage_open_files(struct ledger *l, int32_t slot, struct ledger_open_file *out,
			    int32_t *index, size_t cap, size_t *n, int32_t *lost);
/* Counts one pending entry (row, stage counters, entry marked counted: one write) if entry
 * `index` of the slot is still pending with this path; LEDGER_ERR_NOTFOUND when it is not (it
 * was counted or settled meanwhile), and nothing is added. */
int ledger_count_open_file(struct ledger *l, int32_t slot, int32_t index, const char *path,
			   int64_t bytes, int64_t now_ms);
/* Frees every pending entry except those whose path is one of keep's: their worker knows they
 * did not arrive (or did not need a check). The kept ones stay for the supervisor. */
int ledger_stage_settle_opens(struct ledger *l, int32_t slot, const char *const *keep,
			      size_t n_keep);

/* Sizes a copy for this ledger; reuse it across ledger_read calls. */
int ledger_copy_init(const struct ledger *l, struct ledger_copy *c);
/* Lock-free consistent copy; gives up with LEDGER_ERR_STUCK after timeout_ms of retries. */
int ledger_read(const struct ledger *l, struct ledger_copy *c, int timeout_ms);
void ledger_copy_free(struct ledger_copy *c);

/*
 * A window's times that lie more than slack_ms after now_ms (a clock set back, an edited file):
 * a window that starts after now starts now, one that ends more than a day after now ends a
 * day after now, and the bytes of hour buckets ahead of now's hour go to now's hour. The bytes
 * always stay (dropping them could exceed a quota); taken as they were, they would hold the
 * account for as long as the clock is off, or be lost when their bucket is reused. Bans are
 * left alone: their length is configurable. Returns whether anything moved.
 */
bool ledger_usage_clamp_future(struct ledger_usage *u, int64_t now_ms, int64_t slack_ms);

/*
 * A row of a ledger counted under window `from`, for a ledger of window `to`, at now_ms. The
 * result is right under either window, so a conversion cut short (its writer killed) leaves
 * every row readable whichever window the header still names:
 *   fixed → rolling: bytes the hour buckets lack go to the hour that keeps them until the
 *     fixed window's reset (never sooner);
 *   rolling → fixed: the buckets' sum, in one window that starts with the hour of the earliest
 *     bucket (at the latest moment of it, so nothing frees before 24 h) and resets a day later.
 */
void ledger_usage_convert(struct ledger_usage *u, enum ledger_window from, enum ledger_window to,
			  int64_t now_ms);
/* Converts every row to `window` and sets the header's window and daily_bytes, all under one
 * hold of the lock (writers of any cplow see either window, never a mix). Returns the rows
 * converted, or < 0. */
int ledger_set_window(struct ledger *l, enum ledger_window window, int64_t daily_bytes,
		      int64_t now_ms);

/* Remaining bytes of a row at now_ms, as the planner sees it (window expiry applied). */
int64_t ledger_usage_remaining(const struct ledger_usage *u, int64_t daily_bytes,
			       enum ledger_window window, int64_t now_ms);
/* Used bytes of a row at now_ms (expired window or hours dropped). */
int64_t ledger_usage_used(const struct ledger_usage *u, enum ledger_window window,
			  int64_t now_ms);

/* The flusher's wait: returns when row_generation != seen, or after timeout_ms, or on a
 * signal. Only writes that change rows wake it. */
void ledger_wait_change(struct ledger *l, uint64_t seen, int timeout_ms);
/* Makes a waiter in ledger_wait_change return; async-signal-safe. */
void ledger_wake(struct ledger *l);
void ledger_note_flush(struct ledger *l, uint64_t generation, int64_t at_ms, int ok);
/* The file already holds every row as of this generation (only stage slots changed since, or
 * nothing): no write, but the last-flush time moves on, so its age stays small while the
 * flusher lives. */
void ledger_note_flush_current(struct ledger *l, uint64_t generation, int64_t at_ms);

int64_t ledger_now_ms(void);

/* The one writer of the ledger file at a time (the header's flush_lock); waits for the other. */
int ledger_flush_lock(struct ledger *l);
void ledger_flush_unlock(struct ledger *l);
/* Which process flushes: set by the flusher at its start, cleared at its end (only if still its
 * own), so a worker outliving its supervisor knows whether anyone is left to write the file. */
void ledger_flusher_set(struct ledger *l, pid_t pid);
void ledger_flusher_clear(struct ledger *l, pid_t pid);
bool ledger_flusher_alive(const struct ledger *l);
/* Whether the process that holds a stage slot still runs (its pid, started at its start time). */
bool ledger_stage_holder_alive(const struct ledger_stage *st);
/* Gives a slot to another process (pid, and its start time): the supervisor's check of a dead
 * worker's files holds it while it runs. */
int ledger_stage_hand_over(struct ledger *l, int32_t slot, pid_t pid);
/* Finishes the write of a writer that died holding the lock, which no other writer may come to
 * do (a flusher whose supervisor and workers are gone, about to make its last flush). Gives up
 * after timeout_ms if a live writer holds the lock (one that is stopped, say). */
int ledger_recover(struct ledger *l, int timeout_ms);
/* "/dev/shm/NAME is owned by bob (uid 1001), mode 0644": why ledger_attach said
 * LEDGER_ERR_FOREIGN, for the message that names it. */
void ledger_describe_owner(const char *name, char *out, size_t len);

/*
 * Test-only fault injection: when set, called at each named point inside a write's critical
 * section (a test kills the process there). NULL in production: one predictable branch.
 */
enum ledger_fault_point {
	LEDGER_FAULT_LOCKED = 0,
	LEDGER_FAULT_INTENT_PARTIAL,
	LEDGER_FAULT_INTENT_LOGGED,
	LEDGER_FAULT_SEQ_ODD,
	LEDGER_FAULT_APPLY_PARTIAL,
	LEDGER_FAULT_APPLIED,
	LEDGER_FAULT_SEQ_EVEN,
	LEDGER_FAULT_INTENT_CLEARED,
	LEDGER_FAULT_POINTS
};
extern void (*ledger_fault_hook)(enum ledger_fault_point point);

#endif
