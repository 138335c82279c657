/*
 * What a binary says to --version: cplow's release (CMake's project VERSION), the git commit
 * it was built from ("unknown" outside a git checkout) and the layout version of the shared
 * ledger it reads and writes (LEDGER_VERSION), so a report names all three.
 */
#ifndef CPLOW_VERSION_H
#define CPLOW_VERSION_H

#include <stdio.h>

extern const char version_release[];
extern const char version_commit[];

/* Three lines on out: "<program> <release>", "commit <commit>", "ledger layout <n>". */
void version_print(FILE *out, const char *program);

#endif
