/*
 * A notification event as the supervisor's hooks (supervisor/notify_hooks.c) write it to the
 * notifier's pipe and the notifier (roles/notify.c) reads it: what the two processes exchange.
 * roles/notify.h says what each event means and how it is delivered.
 */
#ifndef CPLOW_NOTIFY_EVENT_H
#define CPLOW_NOTIFY_EVENT_H

#include <stdint.h>

#define NOTIFY_DRAIN_MS 5000           /* at exit: the notifier's last sends, the supervisor's wait */
#define NOTIFY_ACCOUNTS_MAX 16         /* accounts named in upload_finished */
/* The ledger's sizes (LEDGER_UPLOADER_MAX, LEDGER_STRATEGY_MAX), asserted where both are seen. */
#define NOTIFY_UPLOADER_MAX 64
#define NOTIFY_STRATEGY_MAX 32

enum notify_kind {
	NOTIFY_UPLOAD_STARTED = 1,
	NOTIFY_ACCOUNT_ROTATED = 2,
	NOTIFY_UPLOADER_SUSPENDED = 3,
	NOTIFY_UPLOAD_FINISHED = 4,
	NOTIFY_LEDGER_PROBLEM = 5,
};

/* account_rotated's why. */
enum notify_rotation {
	NOTIFY_ROTATED_OTHER = 0,
	NOTIFY_ROTATED_MAX_TRANSFER,   /* its stage stopped at --max-transfer */
	NOTIFY_ROTATED_BAN,            /* an rclone_sleeps trigger banned it */
	NOTIFY_ROTATED_QUOTA,          /* too little quota left, or rclone's fatal exit 7 */
	NOTIFY_ROTATED_FAILURES,       /* failed stages in a row */
};

/* upload_finished's how. */
enum notify_status {
	NOTIFY_STATUS_DONE = 0,        /* nothing left to upload */
	NOTIFY_STATUS_NO_ACCOUNT,      /* files left, but no account could take another stage */
	NOTIFY_STATUS_FAILED,          /* the last stage failed and no account was left */
	NOTIFY_STATUS_STOPPED,         /* SIGINT, SIGTERM, or a failed reload */
};

#define NOTIFY_EVENT_MAGIC 0x59544f4eu  /* "NOTY" */
#define NOTIFY_EVENT_VERSION 1

/*
 * One event as it travels through the pipe. The pipe joins two processes of one binary and is
 * never stored, so the struct goes as it is, framed by magic, version and size (checked by the
 * reader); it stays under PIPE_BUF, so a write is whole or not at all.
 */
struct notify_event {
	uint32_t magic;
	uint16_t version;
	uint16_t size;
	int32_t kind;                 /* enum notify_kind */
	int32_t why;                  /* rotated: notify_rotation; finished: notify_status */
	char id[40];                  /* "<run id>-<sequence>" */
	int64_t at_ms;
	char uploader[NOTIFY_UPLOADER_MAX];
	char account[96];             /* started: its account; rotated: the old one (short names) */
	char account_to[96];          /* rotated: the new one */
	char strategy[NOTIFY_STRATEGY_MAX];
	char detail[320];             /* rotated, suspended, finished: why; problem: what */
	int32_t stage;                /* started: its number */
	int32_t stages;               /* finished: stages run */
	int64_t files;                /* started: listed; rotated: the old account's; finished */
	int64_t bytes;
	int64_t planned_bytes;        /* started: what the stage moves at most */
	int64_t max_transfer_bytes;   /* started */
	int64_t remaining_bytes;      /* started: the account's quota left; rotated: the old's */
	int64_t duration_ms;          /* finished */
	int64_t until_ms;             /* suspended: until; rotated by a ban: its end */
	int32_t account_count;        /* finished: accounts used (some may not be named below) */
	int32_t reserved;
	char accounts[NOTIFY_ACCOUNTS_MAX][48];
};

/* "upload_started", ...; "rotated" reasons "max_transfer", ...; statuses "done", ... */
const char *notify_kind_name(enum notify_kind kind);
const char *notify_rotation_name(enum notify_rotation why);
const char *notify_status_name(enum notify_status status);

/* A record read from the pipe: 0 when it is a whole event of this build. */
int notify_event_check(const struct notify_event *e);

#endif
