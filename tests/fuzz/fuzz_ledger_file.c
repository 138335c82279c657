/*
 * ledger_file_parse on arbitrary bytes (not NUL-terminated: it takes a length). On success
 * every row's names must be NUL-terminated inside their arrays; on failure the message must
 * be one non-empty line.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ledger_file.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ledger_file f;
	char err[LEDGER_FILE_ERR_MAX];
	err[0] = '\0';
	if (ledger_file_parse((const char *)data, size, &f, err, sizeof(err)) == 0) {
		if (f.count && !f.rows)
			abort();
		for (size_t i = 0; i < f.count; i++) {
			const struct ledger_file_row *r = &f.rows[i];
			if (!memchr(r->uploader, '\0', sizeof(r->uploader)) || !r->uploader[0] ||
			    !memchr(r->account, '\0', sizeof(r->account)) || !r->account[0] ||
			    !memchr(r->usage.ban_cause, '\0', sizeof(r->usage.ban_cause)))
				abort();
		}
		ledger_file_free(&f);
	} else if (!memchr(err, '\0', sizeof(err)) || !err[0]) {
		abort();
	}
	return 0;
}
