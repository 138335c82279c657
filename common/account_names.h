/*
 * An account's names as rclone 1.60 spells them (see account.h for how a stage uses them):
 * remote names and references ("remote:path", "remote,param=value:path", ":backend:path"), a
 * destination with its remote swapped for an account's, and the service-account key files of
 * a folder in natural order. Pure functions of their arguments and the file system: the config
 * loader checks with them what the supervisor's planner later uses.
 *
 * Everything here follows rclone 1.60.1 as observed on this machine, not its later releases:
 *   - A remote name is 1 or more of `A-Z a-z 0-9 _ - .` and space, not starting with `-` or a
 *     space and not ending with a space. 1.60 rejects `+`, `@` and non-ASCII letters ("config
 *     name contains invalid characters"); its config file trims spaces at either end of a
 *     section name, so such a name could never be found.
 */
#ifndef CPLOW_ACCOUNT_NAMES_H
#define CPLOW_ACCOUNT_NAMES_H

#include <stdbool.h>
#include <stddef.h>

/* Longest remote name handled; rclone sets none, but an environment variable name holds it. */
#define ACCOUNT_NAME_MAX 255

enum account_ref_kind {
	ACCOUNT_REF_LOCAL,       /* a path on this machine */
	ACCOUNT_REF_NAMED,       /* "remote:path" or "remote,param=value:path" */
	ACCOUNT_REF_ON_THE_FLY,  /* ":backend:path", configured only by its connection string */
};

/* Where things are in a reference; pointers into the parsed string. */
struct account_ref {
	enum account_ref_kind kind;
	const char *name;      /* the remote, or the backend of an on-the-fly reference */
	size_t name_len;
	const char *params;    /* between the name's ',' and the config string's ':' */
	size_t params_len;     /* 0: none */
	const char *path;      /* after the config string's ':', or the whole local path */
	bool sets_account;     /* a service_account_file/_credentials parameter */
};

/* rclone's fspath.Parse on Linux: no ':' at all, or a '/' before the first ':' or ',', makes a
 * local path. 0, or -EINVAL for what rclone refuses (a bad name, a malformed parameter). */
int account_parse_ref(const char *s, struct account_ref *out);

/* rclone 1.60's remote name, narrowed to the names its config file can hold (see above). */
bool account_valid_name(const char *name, size_t len);

struct account_keys {
	char **paths;                 /* absolute, in account_natural_cmp order */
	size_t count;
};

/*
 * upload_remote with its remote swapped for account_remote: "google:/Media" + "google2" gives
 * "google2:/Media". Connection-string parameters stay ("google,shared_with_me:/M" gives
 * "google2,shared_with_me:/M").
 * Returns 0, or:
 *   -EINVAL        upload_remote is a local path or an on-the-fly ":backend:", or is malformed,
 *                  or account_remote is not a remote name (empty, "google2:", bad characters);
 *   -ENAMETOOLONG  the result does not fit in len bytes.
 * out is untouched on failure.
 */
int account_destination(const char *upload_remote, const char *account_remote, char *out,
			size_t len);

/*
 * The service-account keys in dir: its regular files (a symbolic link counts as its target)
 * named "*.json", hidden ones (".x.json") left out, as absolute paths in natural order. A
 * relative dir is taken from the current directory; dir's spelling is otherwise kept (no
 * symbolic link resolved), because the path is the account's key in the ledger file.
 * Returns 0 (count may be 0), or -errno with err naming dir (-ENOENT, -ENOTDIR, -EACCES, ...).
 */
int account_list_keys(const char *dir, struct account_keys *out, char *err, size_t err_len);

void account_keys_free(struct account_keys *keys);

/*
 * Natural order: runs of ASCII digits compare by value ("sa2" < "sa10", "a1b2" < "a1b10"), all
 * other bytes compare as unsigned bytes, case-sensitively ("SA1" < "sa1"). Leading zeros do
 * not change a run's value; they only break a tie between strings that are otherwise equal,
 * fewer zeros first, at the first run where the counts differ: "sa1" < "sa01" < "sa001" < "sa2".
 * So only identical strings compare equal. Returns <0, 0 or >0 like strcmp.
 */
int account_natural_cmp(const char *a, const char *b);

#endif
