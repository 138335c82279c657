/*
 * Which account a stage uses, in the form rclone needs it: the planner calls these and puts the
 * result into the stage spec (`destination`, `env`).
 *
 * Two kinds of account:
 *   - remote accounts (rotate_remotes): one rclone remote per account, swapped into the
 *     destination by account_destination();
 *   - service-account key files (service_account_path): listed by account_list_keys(), and
 *     handed to every Drive remote behind upload_remote by account_sa_env().
 *
 * Everything here follows rclone 1.60.1 as observed on this machine, not its later releases:
 *   - A remote-specific variable is "RCLONE_CONFIG_" + the remote name upper-cased + "_" + the
 *     option: 1.60 keeps the name's `-` (RCLONE_CONFIG_MY-GD_SERVICE_ACCOUNT_FILE reaches remote
 *     `my-gd`; RCLONE_CONFIG_MY_GD_... does not), and its `.` and spaces too. Older and later
 *     releases map `-` to `_`.
 *   - `rclone config dump` shows only the config file. Remotes defined in the environment
 *     (RCLONE_CONFIG_<NAME>_TYPE) are not in it, and an RCLONE_CONFIG_<NAME>_<OPTION> variable
 *     overrides the file's value for that one option. So each option is looked up as rclone
 *     does: the remote's variable, then (except `type`) the backend's (RCLONE_CRYPT_REMOTE,
 *     RCLONE_UNION_UPSTREAMS, ...), then the dump. The variables are this process's
 *     environment, which rclone inherits through rclone_cmd.
 *   - A union's or combine's `upstreams` is split as rclone splits it (space-separated, a field
 *     in double quotes may hold spaces, "" is a quote). rclone 1.60 takes an upstream's remote
 *     name before it looks at the `:ro`/`:nc` suffix, which it strips from the path ("d1:ro" is
 *     remote "d1", not a local folder), and knows no `:writeback`: the suffixes never change
 *     which remote an upstream is, so they are left alone here.
 */
#ifndef CPLOW_ACCOUNT_H
#define CPLOW_ACCOUNT_H

#include <stddef.h>

#include "account_names.h"

/* Drive remotes one upload_remote may have behind it (a union of many drives counts each). */
#define ACCOUNT_ENV_MAX 16

/* `rclone config dump` gets this long before it is killed. */
#define ACCOUNT_DUMP_TIMEOUT_MS 10000

struct account_env {
	char *vars[ACCOUNT_ENV_MAX];  /* "RCLONE_CONFIG_<NAME>_SERVICE_ACCOUNT_FILE=<key path>" */
	size_t count;
};


/*
 * The environment that makes every Drive remote behind upload_remote use key_path: one
 * RCLONE_CONFIG_<NAME>_SERVICE_ACCOUNT_FILE per Drive remote, found by running
 * `rclone config dump` (with --config=rclone_config unless NULL) and following crypt, chunker,
 * compress, hasher, alias, cache (`remote`), union and combine (`upstreams`) remotes.
 * Runs rclone as a child of this process and reaps it itself: a SIGCHLD handler that reaps
 * every child (waitpid(-1)) would take its exit status away.
 * Returns 0 (out filled, count >= 1), or with a one-line reason in err:
 *   -EINVAL     upload_remote, key_path or a remote's settings cannot be used (a local path,
 *               an on-the-fly backend, a malformed `upstreams`, a key path rclone would expand
 *               because it holds `$` or is relative);
 *   -ENOENT     a remote is in neither the config file nor the environment, or has no type;
 *   -ELOOP      remotes refer to each other in a cycle, or nest deeper than 32;
 *   -ENODEV     no Drive remote behind upload_remote;
 *   -ENOTSUP    a Drive remote has service_account_credentials set, which rclone prefers to
 *               any key file, or an on-the-fly drive has no name to address it by;
 *   -E2BIG      more than ACCOUNT_ENV_MAX Drive remotes;
 *   -ETIMEDOUT  rclone did not finish within ACCOUNT_DUMP_TIMEOUT_MS;
 *   -EIO        rclone could not run, failed, or printed something other than a JSON object;
 *   -ENOMEM.
 * out is untouched on failure.
 */
int account_sa_env(const char *rclone_binary, const char *rclone_config,
		   const char *upload_remote, const char *key_path, struct account_env *out,
		   char *err, size_t err_len);

void account_env_free(struct account_env *env);

/* rclone's remote names, without their ':'. */
struct account_remotes {
	char **names;
	size_t count;
};

/*
 * The remotes `rclone listremotes` names (with --config=rclone_config unless NULL): those of
 * the config file and those the environment defines (RCLONE_CONFIG_<NAME>_TYPE). A config file
 * that does not exist gives none: rclone only says so. Returns 0 (out filled), or -EIO,
 * -ETIMEDOUT, -ENOMEM with a one-line reason in err.
 */
int account_list_remotes(const char *rclone_binary, const char *rclone_config,
			 struct account_remotes *out, char *err, size_t err_len);

void account_remotes_free(struct account_remotes *remotes);

#endif
