/*
 * sigstate_exec: stands in for rclone to record the signal state it inherited. Writes the
 * SigIgn and SigBlk lines of its own /proc/self/status to $SIGSTATE_DIR/<pid>, then execs
 * $SIGSTATE_EXEC with its own arguments (argv[0] included). No shell in between: dash clears
 * the signal mask when it starts, so a shell script would never see a blocked signal.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	(void)argc;
	const char *dir = getenv("SIGSTATE_DIR"), *real = getenv("SIGSTATE_EXEC");
	if (!dir || !real) {
		fprintf(stderr, "sigstate_exec: SIGSTATE_DIR and SIGSTATE_EXEC must be set\n");
		return 127;
	}
	char path[4096], tmp[4200], line[256];
	snprintf(path, sizeof(path), "%s/%ld", dir, (long)getpid());
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	FILE *in = fopen("/proc/self/status", "r"), *out = fopen(tmp, "w");
	if (!in || !out) {
		perror("sigstate_exec");
		return 127;
	}
	while (fgets(line, sizeof(line), in))
		if (!strncmp(line, "SigIgn:", 7) || !strncmp(line, "SigBlk:", 7))
			fputs(line, out);
	fclose(in);
	/* Renamed into place whole: the test never reads half a record. */
	if (fclose(out) != 0 || rename(tmp, path) != 0) {
		perror("sigstate_exec");
		return 127;
	}
	execv(real, argv);
	perror("sigstate_exec: exec");
	return 127;
}
