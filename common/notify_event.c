#include "notify_event.h"

#include <stddef.h>

const char *notify_kind_name(enum notify_kind kind)
{
	switch (kind) {
	case NOTIFY_UPLOAD_STARTED: return "upload_started";
	case NOTIFY_ACCOUNT_ROTATED: return "account_rotated";
	case NOTIFY_UPLOADER_SUSPENDED: return "uploader_suspended";
	case NOTIFY_UPLOAD_FINISHED: return "upload_finished";
	case NOTIFY_LEDGER_PROBLEM: return "ledger_problem";
	}
	return "unknown";
}

const char *notify_rotation_name(enum notify_rotation why)
{
	switch (why) {
	case NOTIFY_ROTATED_MAX_TRANSFER: return "max_transfer";
	case NOTIFY_ROTATED_BAN: return "ban";
	case NOTIFY_ROTATED_QUOTA: return "quota";
	case NOTIFY_ROTATED_FAILURES: return "failures";
	case NOTIFY_ROTATED_OTHER: break;
	}
	return "other";
}

const char *notify_status_name(enum notify_status status)
{
	switch (status) {
	case NOTIFY_STATUS_DONE: return "done";
	case NOTIFY_STATUS_NO_ACCOUNT: return "no_account";
	case NOTIFY_STATUS_FAILED: return "failed";
	case NOTIFY_STATUS_STOPPED: return "stopped";
	}
	return "unknown";
}

int notify_event_check(const struct notify_event *e)
{
	if (e->magic != NOTIFY_EVENT_MAGIC || e->version != NOTIFY_EVENT_VERSION ||
	    e->size != sizeof(*e) || e->kind < NOTIFY_UPLOAD_STARTED ||
	    e->kind > NOTIFY_LEDGER_PROBLEM)
		return -1;
	return 0;
}
