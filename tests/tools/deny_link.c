/*
 * deny_link: runs a program on which link() and linkat() fail with EPERM, as they do on vfat,
 * exFAT and many SMB and FUSE mounts. A seccomp filter, so the refusal is the kernel's, for the
 * program and every process it starts (filters are inherited and stack: a role's own filter
 * that allows link cannot undo it).
 * usage: deny_link PROGRAM [ARG...]
 */
#include <errno.h>
#include <seccomp.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: deny_link PROGRAM [ARG...]\n");
		return 2;
	}
	scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
	if (!ctx || seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(link), 0) < 0 ||
	    seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(linkat), 0) < 0 ||
	    prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 || seccomp_load(ctx) < 0) {
		fprintf(stderr, "deny_link: cannot load the filter: %s\n", strerror(errno));
		return 1;
	}
	seccomp_release(ctx);
	execvp(argv[1], argv + 1);
	fprintf(stderr, "deny_link: cannot run %s: %s\n", argv[1], strerror(errno));
	return 127;
}
