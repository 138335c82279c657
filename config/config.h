/*
 * config.json → struct config: cloudplow's config file read as it is (REFERENCE.md §1, §2, §4),
 * plus cplow's own keys (quota, stages, dashboard, rotate_remotes, check, ...). The supervisor
 * parses it once; every role it forks inherits it.
 *
 * Every key is one row of schema.c's table: type, bounds, default, unit, flags (`cplow
 * check-config --keys` prints it). docs/configuration.md says what each key means; its key
 * tables are written from `--keys` (scripts/gen-config-doc), and ctest fails when they differ,
 * so a new key needs its meaning written there. One walker (walk.c)
 * reads, checks, prints and frees by the rows, so a bound is written once and its message is
 * made from the row; a section's hooks check only what crosses keys.
 *
 * How a file is read (every problem reported, one line each naming the key path; sections that
 * are off read for types only; near misses of keys; keys accepted without use; relative paths)
 * is written once, in docs/configuration.md ("How it is read"); test_config and the bad_*.json
 * fixtures hold the messages to it.
 * config_load never runs rclone: what only rclone knows is the supervisor's to ask (probe.h).
 */
#ifndef CPLOW_CONFIG_H
#define CPLOW_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "ledger.h"
#include "stage.h"

/* Enough for every message: long keys and values are shortened to fit. */
#define CONFIG_ERR_MAX 512
/* Errors kept by one load; the rest are counted. */
#define CONFIG_ERRORS_MAX 100
/* A config file larger than this is refused before it is read. */
#define CONFIG_FILE_MAX ((size_t)1 << 20)

/* Defaults that other modules name too; the rest are in schema.c's rows. */
#define CONFIG_DASHBOARD_HOST_DEFAULT "127.0.0.1"
#define CONFIG_DASHBOARD_REFRESH_DEFAULT 3     /* seconds */
#define CONFIG_NOTIFY_PUSHOVER_URL "https://api.pushover.net/1/messages.json"
#define CONFIG_NOTIFY_TITLE_DEFAULT "cplow"
#define CONFIG_NOTIFY_SENDER_DEFAULT "cplow"
#define CONFIG_NOTIFY_ICON_DEFAULT ":heavy_exclamation_mark:"   /* cloudplow's */

enum config_command {
	CONFIG_COMMAND_MOVE = 0,
	CONFIG_COMMAND_COPY = 1,
};

enum config_check {
	CONFIG_CHECK_SIZE = 0,   /* upload when the folder holds max_size_gb (cloudplow) */
	CONFIG_CHECK_AGE = 1,    /* upload files older than limit_minutes (rclone --min-age) */
};

/* uploader.<name>.quota as written; config_uploader.quota_enabled is what applies. */
enum config_quota_mode {
	CONFIG_QUOTA_AUTO = 0,
	CONFIG_QUOTA_ON = 1,
	CONFIG_QUOTA_OFF = 2,
};

struct config_core {
	bool dry_run;
	char *rclone_binary_path;
	char *rclone_config_path;     /* NULL: rclone's own default */
	int rclone_nice;              /* added to rclone's nice value, 0..19 */
};

/* remotes.<name>. The arrays are in the shapes a stage_spec takes; their strings are owned
 * here (the const in struct stage_flag and stage_trigger is the worker's promise, not ours).
 * Here and below, an array's size_t count is the field right after its pointer: config/'s
 * table relies on it. */
struct config_remote {
	char *name;
	char *upload_folder;          /* NULL only in a remote no uploader uses */
	char *upload_remote;          /* likewise */
	enum config_command rclone_command;
	char **rclone_excludes;
	size_t rclone_exclude_count;
	struct stage_flag *rclone_extras;   /* name with its dashes; value NULL = bare flag */
	size_t rclone_extra_count;
	struct stage_trigger *rclone_sleeps;
	size_t rclone_sleep_count;
	int remove_empty_dir_depth;   /* -1: remove nothing */
	char *hidden_remote;          /* where the hidden cleaner deletes; NULL when not set */
};

struct config_schedule {
	bool enabled;
	int allowed_from_min;         /* minutes after midnight; -1 when not given */
	int allowed_until_min;        /* until < from: the window wraps past midnight */
};

/* uploader.<name>.mover: after an upload, `rclone move move_from_remote move_to_remote`
 * (cloudplow's staging pattern). The strings are NULL when not set (only when disabled). */
struct config_mover {
	bool enabled;
	char *move_from_remote;
	char *move_to_remote;
	struct stage_flag *rclone_extras;
	size_t rclone_extra_count;
	char **rclone_excludes;
	size_t rclone_exclude_count;
};

/* uploader.<name>. Accounts: rotate_remotes (remote names, in order) or the key files in
 * service_account_path, never both; neither means the upload_remote as it is. */
struct config_uploader {
	char *name;
	const struct config_remote *remote;   /* remotes.<name>, always set */
	int check_interval_min;
	double max_size_gb;
	int64_t max_size_bytes;       /* max_size_gb in bytes (GiB, as du --block-size=1G) */
	char **size_excludes;
	size_t size_exclude_count;
	bool exclude_open_files;
	char **opened_excludes;
	size_t opened_exclude_count;
	struct config_schedule schedule;
	char *service_account_path;   /* NULL when not set */
	char **rotate_remotes;
	size_t rotate_remote_count;   /* 0 when not set (an empty list is an error) */
	enum config_check check_type;
	int check_limit_minutes;      /* CONFIG_CHECK_AGE only; else 0 */
	bool can_be_throttled;        /* false: the Plex throttle leaves its stages alone */
	struct config_mover mover;
	enum config_quota_mode quota; /* as written */
	bool quota_enabled;           /* what applies: the ledger's quota, stage flags */
	char *quota_reason;           /* why, one line: "auto: it rotates service accounts ..." */
	bool quota_pending;           /* "auto" for a remote only rclone can tell about: the
				       * supervisor settles it (probe.c); on until then */
};

struct config_quota {
	int64_t daily_bytes;
	enum ledger_window window;
	int64_t min_free_bytes;       /* an account with less left is skipped */
	int64_t continue_min_bytes;   /* another stage on the same account only above this */
	int flush_interval_ms;
	char *cache_path;             /* absolute */
	uint32_t capacity;            /* ledger rows */
	char *lock_path;              /* absolute */
};

/* One row of the strategy table: used while the share of quota left is >= min_share. */
struct config_stage {
	char *name;                   /* at most LEDGER_STRATEGY_MAX - 1 bytes */
	double min_share;
	double max_transfer_share;    /* of the bytes left: --max-transfer; in (0, 1] */
	double max_size_share;        /* --max-size; 0 = not passed */
	int transfers;
	char *order_by;               /* NULL = not passed */
	int max_backlog;              /* 0 = not passed */
};

struct config_dashboard {
	bool enabled;                 /* false too when off_reason is set */
	char *host;
	int port;
	char *token;                  /* NULL when not set */
	int refresh_seconds;
	bool allow_unauthenticated;   /* a non-loopback host without a token is wanted */
	char *off_reason;             /* enabled in the file but kept off: the warning; else NULL */
};

/* plex.rclone.throttle_speeds: one "<streams>": "<rate>" pair. */
struct config_throttle_speed {
	int streams;
	char *rate;                   /* as rclone's --bwlimit takes it: "10M", "1M:2M", "off" */
};

/* plex: throttle every running stage's rclone while Plex streams play (see plex.h). */
struct config_plex {
	bool enabled;
	char *url;                    /* http(s)://host:port, NULL when not set */
	char *token;                  /* X-Plex-Token, NULL when not set */
	int poll_interval_s;
	int max_streams_before_throttle;  /* throttle only above this many streams */
	bool ignore_local_streams;
	struct config_throttle_speed *throttle_speeds;  /* by streams, ascending, no duplicates */
	size_t throttle_speed_count;
};

/* nzbget and sabnzbd: paused while cplow uploads (see downloaders.h). */
struct config_nzbget {
	bool enabled;
	char *url;                    /* may carry user:pass@ */
};

struct config_sabnzbd {
	bool enabled;
	char *url;
	char *apikey;
};

/* notifications.<name>: where events are posted (notify.h says which and how). */
enum config_notify_service {
	CONFIG_NOTIFY_SLACK = 0,      /* webhook_url; sender_name, sender_icon, channel */
	CONFIG_NOTIFY_DISCORD,        /* webhook_url */
	CONFIG_NOTIFY_GOOGLE_CHAT,    /* webhook_url; thread_key */
	CONFIG_NOTIFY_PUSHOVER,       /* app_token, user_token, priority; url, title */
	CONFIG_NOTIFY_APPRISE,        /* url of an Apprise API server; title */
	CONFIG_NOTIFY_WEBHOOK,        /* url; headers */
};

struct config_notify_header {
	char *name;
	char *value;
};

struct config_notification {
	char *name;                   /* the key under notifications */
	enum config_notify_service service;
	bool enabled;                 /* false: skipped (an apprise library URL, or a placeholder
				       * whose credentials are all empty), with a warning */
	char *url;                    /* where it posts: webhook_url, url, or Pushover's API */
	bool url_set;                 /* pushover: url given (else the default API) */
	char *title;                  /* apprise, pushover */
	char *sender_name;            /* slack */
	char *sender_icon;            /* slack */
	char *channel;                /* slack; NULL: the webhook's own */
	char *app_token;              /* pushover */
	char *user_token;             /* pushover */
	int priority;                 /* pushover: -2 to 2 */
	struct config_notify_header *headers;   /* webhook: extra request headers */
	size_t header_count;
	char *thread_key;             /* google_chat: already in url as &threadKey= */
};

/* hidden.<folder>: cloudplow's UnionFS cleaner. */
struct config_hidden {
	char *folder;                 /* the key, absolute */
	char **remotes;               /* hidden_remotes: remotes.<name> with a hidden_remote */
	size_t remote_count;
};

enum config_syncer_service {
	CONFIG_SYNCER_LOCAL = 0,
	CONFIG_SYNCER_SCALEWAY = 1,
};

/* syncer.<name>: cloudplow's syncer, read so its sections stay valid; cplow runs none. */
struct config_syncer {
	char *name;
	enum config_syncer_service service;
	char *sync_from;              /* remotes.<name> */
	char *sync_to;
	double sync_interval_hours;
	char *tool_path;
	bool use_copy;
	bool instance_destroy;
};

struct config {
	char *path;                   /* the file, absolute */
	char *dir;                    /* its directory, absolute */
	struct config_core core;
	struct config_remote *remotes;
	size_t remote_count;
	struct config_uploader *uploaders;   /* in file order */
	size_t uploader_count;
	struct config_quota quota;
	struct config_stage *stages;  /* highest min_share first; the last one's is 0 */
	size_t stage_count;
	struct config_dashboard dashboard;
	struct config_plex plex;
	struct config_nzbget nzbget;
	struct config_sabnzbd sabnzbd;
	struct config_notification *notifications;   /* in file order */
	size_t notification_count;
	struct config_hidden *hidden;
	size_t hidden_count;
	struct config_syncer *syncers;
	size_t syncer_count;
	char **ignored_sections;      /* top-level keys read by nobody, in file order */
	size_t ignored_section_count;
	char **warnings;              /* one line each, with its key path */
	size_t warning_count;
};

/* What a load (or a probe) found wrong: one line each, in the order found. */
struct config_errors {
	char **lines;
	size_t count;                 /* at most CONFIG_ERRORS_MAX */
	size_t more;                  /* found beyond that, not kept */
};

/*
 * Reads and checks path. Returns 0 with *out filled (free it with config_free), or -1 with
 * every error in *errors and *out untouched. Checks the file system too: upload folders and
 * service_account_path directories must exist, the latter with keys in them. Never runs rclone.
 * *errors is reset first; free it with config_errors_free (also after a success).
 */
int config_load_all(const char *path, struct config *out, struct config_errors *errors);

/* config_load_all with the first error in err (one line; CONFIG_ERR_MAX always fits). */
int config_load(const char *path, struct config *out, char *err, size_t err_len);

void config_errors_free(struct config_errors *errors);

/* Appends one line to errors (counted in .more beyond CONFIG_ERRORS_MAX); -1 out of memory. */
int config_errors_add(struct config_errors *errors, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* The key path messages use: parent.key, or parent["key"] for a key that is not a plain name.
 * out holds CONFIG_PATH_MAX bytes (a longer path is cut) and may not be parent. */
#define CONFIG_PATH_MAX 400
const char *config_key(char *out, const char *parent, const char *key);

/* The remote's name in an rclone path "name:path" or "name,param=v:path" (into out), or false
 * for a local path or an on-the-fly ":backend:" remote. */
bool config_remote_name(const char *spec, char *out, size_t len);

/* Frees everything; *c is left zeroed, so a second call is harmless. */
void config_free(struct config *c);

/* The uploader of that name, or NULL. */
const struct config_uploader *config_find_uploader(const struct config *c, const char *name);

/* The remotes.<name> section, or NULL. */
const struct config_remote *config_find_remote(const struct config *c, const char *name);

/* "move" or "copy". */
const char *config_command_name(enum config_command command);

/*
 * The effective config (defaults filled in, paths resolved) as indented JSON, for
 * `cplow check-config`: every key of the table (not the top-level sections nobody reads).
 * Secrets are "***": tokens, API keys, Pushover's tokens, webhook header values, every URL
 * under notifications (but Pushover's default API), a plex/nzbget/sabnzbd url that carries
 * user:pass@, and rclone_extras values whose flag names contain pass, token, secret, key,
 * credential, auth or webhook (any case). Returns 0, or -1 (out of memory, or the write failed).
 */
int config_print(const struct config *c, FILE *out);

/* Every key of the table, one line each: its path, type, default, bounds and unit, flags and
 * what cplow does instead for the keys it accepts without using them. For the docs. */
int config_keys_print(FILE *out);

#endif
