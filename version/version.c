/*
 * The commit comes from version_commit.h, which version/commit.cmake rewrites at each build
 * (only when it changes, so an unchanged tree relinks nothing).
 */
#include "version.h"

#include "ledger.h"
#include "version_commit.h"

const char version_release[] = CPLOW_VERSION;
const char version_commit[] = CPLOW_COMMIT;

void version_print(FILE *out, const char *program)
{
	fprintf(out, "%s %s\ncommit %s\nledger layout %d\n", program, version_release,
		version_commit, LEDGER_VERSION);
}
