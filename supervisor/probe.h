/*
 * What only rclone can tell about a loaded config, asked by check-config and at start (and
 * after SIGHUP): config_load never runs rclone, since unit tests, the fuzzer and every reload
 * would. Runs core.rclone_binary_path with --config=rclone_config_path:
 *   - every remote the config names (upload_remote, or the rotate_remotes instead; enabled
 *     movers' move_from_remote and move_to_remote; the hidden cleaner's hidden_remote) must be
 *     in `rclone listremotes`, which counts the remotes the environment defines
 *     (RCLONE_CONFIG_<NAME>_TYPE); an on-the-fly ":backend:" remote or a local path needs none;
 *   - an uploader's quota "auto" that only rclone can settle (quota_pending) becomes on when
 *     its remote's chain ends in a drive backend (account_sa_env follows crypt, union,
 *     chunker, ...), off when it does not; on, the safe side, when rclone cannot tell.
 */
#ifndef CPLOW_PROBE_H
#define CPLOW_PROBE_H

#include "config.h"

/* Settles c's pending quotas; appends one line per problem to errors. 0 when it added none,
 * else -1. */
int probe_config(struct config *c, struct config_errors *errors);

#endif
