/*
 * config.json → struct config: cloudplow's config file read as it is (REFERENCE.md §1), plus
 * cplow's own sections (`quota`, `stages`, `dashboard`, `uploader.<name>.rotate_remotes`,
 * `uploader.<name>.check`). The supervisor parses it once; every role it forks inherits it.
 *
 * Errors: config_load() fails on the first problem with ONE line "<key path>: <what is wrong>",
 *   remotes.media.upload_folder: not a directory: /srv/media.txt
 *   uploader.media.max_size_gb: must be a number >= 0, got "abc"
 *   remotes.media.rclone_sleeps["User rate limit exceeded"].sleep: missing
 * Keys that are not plain names ([A-Za-z0-9_-]) are written ["like this"], list items [i]
 * (from 0), and values are quoted and escaped, so the line never breaks. Problems with the
 * file itself are reported against the path as given (escaped the same way):
 *   config.json: larger than 1 MiB             (checked before anything is read or parsed)
 *   config.json: not UTF-8 at byte 1234        (byte offset from 0, as hex editors count)
 *   config.json: not valid JSON at line 3, column 7: expected ',' or '}'
 * Columns count characters, not bytes. JSON is checked strictly (RFC 8259, which cJSON is
 * not): leading zeros, "1.", raw control characters in strings, lone surrogates and "\u0000"
 * are refused. A UTF-8 byte-order mark at the start is skipped.
 *
 * Unknown keys. Real cloudplow configs carry keys cplow has no use for, so:
 *   - a key cloudplow itself knows but cplow does not implement (`hidden_remote`,
 *     `sync_remote`, `mover`, `can_be_throttled`, ...) is a warning;
 *   - any other unknown key inside a section cplow implements is an ERROR when it is a near
 *     miss of a key that section knows (same letters but for case or '-' for '_', or at most
 *     one edit away for names up to 4 characters and two for longer ones, a swap of two
 *     neighbouring letters counting as one edit): "upload_fodler: unknown key (did you mean
 *     upload_folder?)". A typo there would silently fall back to a default;
 *   - every other unknown key is a warning ("unknown key, ignored").
 * Warnings are collected in config->warnings, one line each, for the caller to log once.
 * At the top level, a near miss of one of cplow's sections is an error ("uploaders: unknown
 * section (did you mean uploader?)"); every other top-level key (cloudplow's `hidden`,
 * `syncer`, or anything else) is accepted unread and named in config->ignored_sections.
 *
 * Duplicate keys (JSON allows them, Python keeps the last, cJSON keeps both) are errors at the
 * top level and anywhere inside the sections cplow reads: `uploader: "media" appears twice`.
 *
 * Values and defaults, beyond REFERENCE.md §1:
 *   - a JSON null on an optional key means "not set": the default applies;
 *   - relative paths (upload_folder, service_account_path, rclone_config_path, cache_path,
 *     lock_path) are taken from the config file's directory, not the current one, since a
 *     daemon's current directory is nobody's choice; absolute paths keep their spelling, since a
 *     key file's path is its account's name in the ledger file;
 *   - rclone_excludes are rclone filter patterns as written (cloudplow glob-escaped patterns
 *     starting with "/", so that the wildcards in such a pattern matched only themselves);
 *   - rclone_extras: a string value is passed as is, a number without a trailing ".0"
 *     (8 → "8", 0.5 → "0.5"), true/false as "true"/"false", null as a bare flag. cloudplow
 *     passes the key verbatim, so a key without a leading dash made rclone fail on a stray
 *     argument; cplow prepends "--" and warns. Flags cplow sets itself (--verbose, --config,
 *     --max-transfer, ... : rclone_cmd_reserved_flag()) are dropped with a warning, since
 *     cloudplow's own sample config carries "--verbose": 1;
 *   - rclone_command "sync" is refused: cloudplow quietly ran `move` for it;
 *   - remove_empty_dir_depth absent is -1: nothing is removed (cloudplow failed after the
 *     upload without the key). Whoever removes never deletes upload_folder itself, which
 *     cloudplow's `find -mindepth 0 -delete` did at depth 0;
 *   - uploader defaults are those of the config cloudplow generates: check_interval 30,
 *     max_size_gb 200; a `check` of "type": "age" needs limit_minutes (it becomes --min-age);
 *   - a schedule whose allowed_from equals allowed_until is refused while enabled: it reads as
 *     both "never" and "always";
 *   - quota.min_free_bytes and quota.continue_min_bytes default to 1 GiB and 10 GiB of the
 *     default 750 GiB; when daily_bytes is set and they are not, they keep the same share of
 *     it (daily_bytes / 750 and daily_bytes * 10 / 750), so a test config with a small quota
 *     works; set explicitly they must be below daily_bytes;
 *   - stages: a JSON array of rows, highest min_share first, the last row's min_share 0, so
 *     every remaining quota has a strategy;
 *   - dashboard: enabled on a host other than a loopback address needs a token.
 * Plex, NZBGet, SABnzbd: every key is type-checked even in a disabled section; enabled, plex
 * needs url, token and at least one rclone.throttle_speeds pair, nzbget a url, sabnzbd a url
 * and an apikey. URLs are http:// or https:// with a host. throttle_speeds keys are stream
 * counts ("0" to "999999", no leading zeros) and values rclone --bwlimit rates without a
 * timetable ("10M", "512k", "1.5MiB", "1M:2M", "off": what core/bwlimit takes). Defaults are
 * those of cloudplow's generated config: poll_interval 60, max_streams_before_throttle 1,
 * ignore_local_streams true. plex.notifications, plex.verbose_notifications and plex.rclone.url
 * (cloudplow's single RC address: cplow reaches each stage's own rclone) are warnings.
 * Notifications: notifications.<name> (1 to 63 bytes, no control characters) with a `service`:
 * slack, discord and google_chat need webhook_url; pushover app_token and user_token (priority
 * -2 to 2, default 0; `url` replaces Pushover's API; `title`); apprise the `url` of an Apprise
 * API server (an apprise library URL such as discord://... is a warning and that notification
 * is skipped: cplow has no apprise library); webhook a `url` and optional `headers` (name →
 * string; not the ones cplow sets: Content-Type, Content-Length, Host, Expect, ...). URLs must be http:// or https://, and messages never show them: a webhook URL is
 * its own password.
 * Remotes that no uploader uses (cloudplow's syncer and hidden cleaner have them) are read for
 * types only: upload_folder and upload_remote are required, and the folder checked, only for a
 * remote that an uploader uses.
 *
 * Uploader names: not empty, at most LEDGER_UPLOADER_MAX - 1 bytes, not "_cplow" (the ledger
 * file's own key), no '/' and no control characters (they name log tags and ledger rows).
 */
#ifndef CPLOW_CONFIG_H
#define CPLOW_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "ledger.h"
#include "stage.h"

/* Enough for every config_load() message: long keys and values are shortened to fit. */
#define CONFIG_ERR_MAX 512
/* A config file larger than this is refused before it is read. */
#define CONFIG_FILE_MAX ((size_t)1 << 20)

#define CONFIG_RCLONE_BINARY_DEFAULT "/usr/bin/rclone"
/* rclone runs this much nicer than cplow: see core.rclone_nice in the README. */
#define CONFIG_RCLONE_NICE_DEFAULT 5
#define CONFIG_RCLONE_NICE_MAX 19
#define CONFIG_CHECK_INTERVAL_DEFAULT 30       /* minutes */
#define CONFIG_MAX_SIZE_GB_DEFAULT 200.0
#define CONFIG_MIN_FREE_BYTES_DEFAULT 1073741824LL        /* 1 GiB of 750 */
#define CONFIG_CONTINUE_MIN_BYTES_DEFAULT 10737418240LL   /* 10 GiB of 750 */
#define CONFIG_FLUSH_INTERVAL_MS_DEFAULT 100
#define CONFIG_CACHE_FILE_NAME "sa_quota_cache.json"
#define CONFIG_LOCK_FILE_NAME "cplow.lock"
#define CONFIG_DASHBOARD_HOST_DEFAULT "127.0.0.1"
#define CONFIG_DASHBOARD_PORT_DEFAULT 47949
#define CONFIG_DASHBOARD_REFRESH_DEFAULT 3     /* seconds */
#define CONFIG_NOTIFY_PUSHOVER_URL "https://api.pushover.net/1/messages.json"
#define CONFIG_NOTIFY_TITLE_DEFAULT "cplow"
#define CONFIG_NOTIFY_SENDER_DEFAULT "cplow"
#define CONFIG_NOTIFY_ICON_DEFAULT ":heavy_exclamation_mark:"   /* cloudplow's */
#define CONFIG_PLEX_POLL_INTERVAL_DEFAULT 60   /* seconds, as cloudplow's generated config */
#define CONFIG_PLEX_MAX_STREAMS_DEFAULT 1

enum config_command {
	CONFIG_COMMAND_MOVE = 0,
	CONFIG_COMMAND_COPY = 1,
};

enum config_check {
	CONFIG_CHECK_SIZE = 0,   /* upload when the folder holds max_size_gb (cloudplow) */
	CONFIG_CHECK_AGE = 1,    /* upload files older than limit_minutes (rclone --min-age) */
};

struct config_core {
	bool dry_run;
	char *rclone_binary_path;
	char *rclone_config_path;     /* NULL: rclone's own default */
	int rclone_nice;              /* added to rclone's nice value, 0..19 */
};

/* remotes.<name>. The arrays are in the shapes a stage_spec takes; their strings are owned
 * here (the const in struct stage_flag and stage_trigger is the worker's promise, not ours). */
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
};

struct config_schedule {
	bool enabled;
	int allowed_from_min;         /* minutes after midnight; -1 when not given */
	int allowed_until_min;        /* until < from: the window wraps past midnight */
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
	bool enabled;
	char *host;
	int port;
	char *token;                  /* NULL when not set */
	int refresh_seconds;
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
	CONFIG_NOTIFY_GOOGLE_CHAT,    /* webhook_url */
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
	bool enabled;                 /* false: an apprise URL cplow cannot post to (warned) */
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
	char **ignored_sections;      /* top-level keys read by nobody, in file order */
	size_t ignored_section_count;
	char **warnings;              /* one line each, with its key path */
	size_t warning_count;
	char *ignored_json;           /* the ignored sections, secrets masked, for config_print */
};

/*
 * Reads and checks path. Returns 0 with *out filled (free it with config_free), or -1 with one
 * line in err (see above) and *out untouched. Checks the file system too: upload folders and
 * service_account_path directories must exist. err_len of CONFIG_ERR_MAX always fits.
 */
int config_load(const char *path, struct config *out, char *err, size_t err_len);

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
 * `cplow check-config`. Secrets are printed as "***": dashboard.token, plex.token,
 * sabnzbd.apikey, a plex/nzbget/sabnzbd url that carries user:pass@, rclone_extras values
 * whose flag names contain pass, token, secret, key, credential, auth or webhook (any case),
 * every URL under notifications (but Pushover's default API), Pushover's tokens and the
 * webhooks' header values, and in the ignored sections every value under such a key and any
 * URL that carries a user name or password. The ignored sections are masked when
 * loaded, so their secrets are not even kept in memory. Returns 0, or -1 (out of memory, or the write failed).
 */
int config_print(const struct config *c, FILE *out);

#endif
