/*
 * From a stage spec to one rclone command line and environment. Built fresh for every stage
 * and never shared, so nothing a stage adds can reach the next one.
 *
 * The RC password travels in the environment (RCLONE_RC_PASS), not in argv, where every user
 * of the machine could read it in /proc.
 */
#ifndef CPLOW_RCLONE_CMD_H
#define CPLOW_RCLONE_CMD_H

#include <limits.h>
#include <stddef.h>

#include "stage.h"

struct rclone_cmd {
	char **argv;                   /* NULL-terminated; argv[0] is the binary */
	char **envp;                   /* NULL-terminated */
	char exclude_file[PATH_MAX];   /* "" when there are no excludes */
	size_t argc, envc;
	int nice;                      /* added to the nice value before the exec */
};

/*
 * Flags that belong to cplow and may not come from rclone_extras: they would break the log
 * parsing, the RC polling or the quota arithmetic (or log secrets, as -vv does).
 * Returns the flag's canonical name when `flag` is one, else NULL.
 */
const char *rclone_cmd_reserved_flag(const char *flag);

/* The transfer: `rclone move|copy SRC DST` with the stage's flags, JSON log, RC on loopback. */
int rclone_cmd_build(const struct stage_spec *spec, const char *rc_user, const char *rc_pass,
		     struct rclone_cmd *out, char *err, size_t err_len);

/* The in-flight check: `rclone lsjson` of the destination for the paths in files_from. */
int rclone_cmd_build_lsjson(const struct stage_spec *spec, const char *files_from,
			    struct rclone_cmd *out, char *err, size_t err_len);

/* The command as a shell-quoted line, for --dry-run and logs. Holds no secret. */
int rclone_cmd_render(const struct rclone_cmd *c, char *out, size_t len);

/* Frees everything and removes the exclude file. */
void rclone_cmd_free(struct rclone_cmd *c);

#endif
