#include <criterion/criterion.h>
#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "notify.h"

/* An event as the supervisor's half makes them (id and time fixed). */
static struct notify_event event(enum notify_kind kind)
{
	struct notify_event e;
	memset(&e, 0, sizeof(e));
	e.magic = NOTIFY_EVENT_MAGIC;
	e.version = NOTIFY_EVENT_VERSION;
	e.size = sizeof(e);
	e.kind = kind;
	snprintf(e.id, sizeof(e.id), "0123456789abcdef-7");
	e.at_ms = 1734600000123LL;
	snprintf(e.uploader, sizeof(e.uploader), "media");
	return e;
}

static struct notify_event started(void)
{
	struct notify_event e = event(NOTIFY_UPLOAD_STARTED);
	snprintf(e.account, sizeof(e.account), "sa1.json");
	snprintf(e.strategy, sizeof(e.strategy), "aggressive_fresh_sa");
	e.stage = 1;
	e.files = 812;
	e.bytes = 900LL << 30;
	e.max_transfer_bytes = 375LL << 30;
	e.planned_bytes = 375LL << 30;
	e.remaining_bytes = 750LL << 30;
	return e;
}

static struct notify_event finished(void)
{
	struct notify_event e = event(NOTIFY_UPLOAD_FINISHED);
	e.why = NOTIFY_STATUS_DONE;
	e.files = 30;
	e.bytes = 6858604;
	e.duration_ms = 4138;
	e.stages = 5;
	e.account_count = 2;
	snprintf(e.accounts[0], sizeof(e.accounts[0]), "fake1");
	snprintf(e.accounts[1], sizeof(e.accounts[1]), "fake2");
	return e;
}

static struct config_notification target(enum config_notify_service service)
{
	struct config_notification t;
	memset(&t, 0, sizeof(t));
	t.name = "t";
	t.service = service;
	t.enabled = true;
	t.url = "http://127.0.0.1:1/hook";
	t.title = "cplow";
	return t;
}

static void text_of(const struct notify_event *e, char *title, char *text)
{
	notify_format_text(e, title, 256, text, NOTIFY_TEXT_MAX);
}

/* The payload of e for t, parsed; the caller deletes it. */
static cJSON *json_payload(const struct config_notification *t, const struct notify_event *e)
{
	struct notify_request r;
	cr_assert_eq(notify_build_request(t, e, &r), 0);
	cr_assert_str_eq(r.content_type, "application/json");
	cJSON *o = cJSON_Parse(r.body);
	cr_assert_not_null(o, "not JSON: %s", r.body);
	notify_request_free(&r);
	return o;
}

static const char *str(const cJSON *o, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
	cr_assert(cJSON_IsString(v), "%s is not a string", key);
	return v->valuestring;
}

static double num(const cJSON *o, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
	cr_assert(cJSON_IsNumber(v), "%s is not a number", key);
	return v->valuedouble;
}

Test(notify, an_event_fits_one_atomic_pipe_write_and_checks_its_frame)
{
	cr_assert_leq(sizeof(struct notify_event), PIPE_BUF);
	struct notify_event e = started();
	cr_assert_eq(notify_event_check(&e), 0);
	e.magic ^= 1;
	cr_assert_eq(notify_event_check(&e), -1);
	e = started();
	e.size--;
	cr_assert_eq(notify_event_check(&e), -1);
	e = started();
	e.version++;
	cr_assert_eq(notify_event_check(&e), -1);
	e = started();
	e.kind = 99;
	cr_assert_eq(notify_event_check(&e), -1);
}

Test(notify, started_says_what_was_listed_and_what_the_stage_moves_at_most)
{
	char title[256], text[NOTIFY_TEXT_MAX];
	struct notify_event e = started();
	text_of(&e, title, text);
	cr_assert_str_eq(title, "Upload started: media");
	cr_assert_str_eq(text, "Upload of media started: 812 files (900.0 GiB) to upload; stage 1 on "
			       "sa1.json (aggressive_fresh_sa) moves at most 375.0 GiB of them (its "
			       "--max-transfer), with 750.0 GiB of the account's daily quota left.");
	e.bytes = e.planned_bytes = 1536;
	text_of(&e, title, text);
	cr_assert_str_eq(text, "Upload of media started: 812 files (1.5 KiB) to upload; stage 1 on "
			       "sa1.json (aggressive_fresh_sa) can move them all, with 750.0 GiB of "
			       "the account's daily quota left.");
}

Test(notify, rotated_names_both_accounts_the_reason_and_what_the_old_one_moved)
{
	char title[256], text[NOTIFY_TEXT_MAX];
	struct notify_event e = event(NOTIFY_ACCOUNT_ROTATED);
	snprintf(e.account, sizeof(e.account), "sa1.json");
	snprintf(e.account_to, sizeof(e.account_to), "sa2.json");
	e.why = NOTIFY_ROTATED_BAN;
	snprintf(e.detail, sizeof(e.detail), "banned until 2024-12-20 10:00:00 UTC: \"User rate "
					     "limit exceeded\" seen 5 times");
	e.files = 17;
	e.bytes = 999;
	text_of(&e, title, text);
	cr_assert_str_eq(title, "Account rotated: media");
	cr_assert_str_eq(text, "Uploader media moved on from sa1.json to sa2.json (ban): banned until "
			       "2024-12-20 10:00:00 UTC: \"User rate limit exceeded\" seen 5 times. "
			       "sa1.json moved 17 files (999 B) in this upload.");
	cr_assert_str_eq(notify_rotation_name(NOTIFY_ROTATED_MAX_TRANSFER), "max_transfer");
	cr_assert_str_eq(notify_rotation_name(NOTIFY_ROTATED_QUOTA), "quota");
	cr_assert_str_eq(notify_rotation_name(NOTIFY_ROTATED_FAILURES), "failures");
	cr_assert_str_eq(notify_rotation_name(NOTIFY_ROTATED_OTHER), "other");
}

Test(notify, suspended_gives_the_time_in_utc)
{
	char title[256], text[NOTIFY_TEXT_MAX];
	struct notify_event e = event(NOTIFY_UPLOADER_SUSPENDED);
	e.until_ms = 1734688800000LL; /* 2024-12-20 10:00:00 UTC */
	snprintf(e.detail, sizeof(e.detail), "3 accounts: 1 banned, 2 with less than 1 bytes left");
	text_of(&e, title, text);
	cr_assert_str_eq(title, "Uploader suspended: media");
	cr_assert_str_eq(text, "Uploader media is suspended until 2024-12-20 10:00:00 UTC: 3 accounts: "
			       "1 banned, 2 with less than 1 bytes left.");
}

Test(notify, finished_gives_files_bytes_time_speed_stages_and_accounts)
{
	char title[256], text[NOTIFY_TEXT_MAX];
	struct notify_event e = finished();
	text_of(&e, title, text);
	cr_assert_str_eq(title, "Upload finished: media");
	cr_assert_str_eq(text, "Upload of media finished: 30 files (6.5 MiB) in 4 s (1.6 MiB/s), 5 "
			       "stages on 2 accounts (fake1, fake2).");
	e.why = NOTIFY_STATUS_STOPPED;
	snprintf(e.detail, sizeof(e.detail), "SIGTERM");
	e.duration_ms = 3725000;
	e.stages = 1;
	e.account_count = 1;
	text_of(&e, title, text);
	cr_assert_str_eq(title, "Upload stopped: media");
	cr_assert_str_eq(text, "Upload of media stopped (SIGTERM): 30 files (6.5 MiB) in 1 h 2 min "
			       "(1.8 KiB/s), 1 stage on 1 account (fake1).");
	e = finished();
	e.why = NOTIFY_STATUS_NO_ACCOUNT;
	snprintf(e.detail, sizeof(e.detail), "3 accounts: 3 banned");
	e.duration_ms = 125000;
	text_of(&e, title, text);
	cr_assert_str_eq(title, "Upload ended: media");
	cr_assert_str_eq(text, "Upload of media ended with files left (3 accounts: 3 banned): 30 files "
			       "(6.5 MiB) in 2 min 5 s (53.6 KiB/s), 5 stages on 2 accounts (fake1, "
			       "fake2).");
}

Test(notify, finished_names_sixteen_accounts_and_counts_the_rest)
{
	char title[256], text[NOTIFY_TEXT_MAX];
	struct notify_event e = finished();
	e.account_count = 40;
	for (int i = 0; i < NOTIFY_ACCOUNTS_MAX; i++)
		snprintf(e.accounts[i], sizeof(e.accounts[i]), "sa%d.json", i + 1);
	text_of(&e, title, text);
	cr_assert_not_null(strstr(text, "on 40 accounts (sa1.json, sa2.json, "), "%s", text);
	cr_assert_not_null(strstr(text, ", sa16.json and 24 more)."), "%s", text);
}

Test(notify, fields_without_their_nul_are_read_to_their_end_and_no_further)
{
	char title[256], text[NOTIFY_TEXT_MAX];
	struct notify_event e = finished();
	memset(e.uploader, 'u', sizeof(e.uploader));
	memset(e.detail, 'd', sizeof(e.detail));
	memset(e.accounts[0], 'a', sizeof(e.accounts[0]));
	e.why = NOTIFY_STATUS_NO_ACCOUNT;
	text_of(&e, title, text);
	char u[LEDGER_UPLOADER_MAX + 1];
	memset(u, 'u', LEDGER_UPLOADER_MAX);
	u[LEDGER_UPLOADER_MAX] = '\0';
	cr_assert_not_null(strstr(text, u));
	cr_assert_null(strstr(text, "uuu" "d"), "the uploader ran into the next field: %s", text);
	struct config_notification t = target(CONFIG_NOTIFY_WEBHOOK);
	cJSON *o = json_payload(&t, &e);
	cr_assert_eq(strlen(str(o, "uploader")), LEDGER_UPLOADER_MAX);
	cr_assert_eq(strlen(str(o, "detail")), sizeof(e.detail));
	cJSON_Delete(o);
}

Test(notify, slack_gets_cloudplows_payload_with_the_message_escaped)
{
	struct config_notification t = target(CONFIG_NOTIFY_SLACK);
	t.sender_name = "cloudplow";
	t.sender_icon = ":heavy_exclamation_mark:";
	struct notify_event e = event(NOTIFY_LEDGER_PROBLEM);
	snprintf(e.detail, sizeof(e.detail), "a \"quoted\"\nline\\ with ünïcode");
	cJSON *o = json_payload(&t, &e);
	cr_assert_str_eq(str(o, "text"), "a \"quoted\"\nline\\ with ünïcode");
	cr_assert_str_eq(str(o, "username"), "cloudplow");
	cr_assert_str_eq(str(o, "icon_emoji"), ":heavy_exclamation_mark:");
	cr_assert_null(cJSON_GetObjectItem(o, "channel"), "no channel: the webhook's own");
	cr_assert_eq(cJSON_GetArraySize(o), 3);
	cJSON_Delete(o);
	t.channel = "#uploads";
	o = json_payload(&t, &e);
	cr_assert_str_eq(str(o, "channel"), "#uploads");
	cJSON_Delete(o);
}

Test(notify, discord_gets_content_and_google_chat_gets_text)
{
	char title[256], text[NOTIFY_TEXT_MAX];
	struct notify_event e = finished();
	text_of(&e, title, text);
	struct config_notification t = target(CONFIG_NOTIFY_DISCORD);
	cJSON *o = json_payload(&t, &e);
	cr_assert_eq(cJSON_GetArraySize(o), 1);
	cr_assert_str_eq(str(o, "content"), text);
	cJSON_Delete(o);
	t = target(CONFIG_NOTIFY_GOOGLE_CHAT);
	o = json_payload(&t, &e);
	cr_assert_eq(cJSON_GetArraySize(o), 1);
	cr_assert_str_eq(str(o, "text"), text);
	cJSON_Delete(o);
}

Test(notify, apprise_gets_title_body_and_a_type_by_outcome)
{
	struct config_notification t = target(CONFIG_NOTIFY_APPRISE);
	t.title = "Cloudplow";
	struct notify_event e = finished();
	cJSON *o = json_payload(&t, &e);
	cr_assert_eq(cJSON_GetArraySize(o), 3);
	cr_assert_str_eq(str(o, "title"), "Cloudplow: Upload finished: media");
	cr_assert_str_eq(str(o, "type"), "success");
	cJSON_Delete(o);
	static const struct {
		enum notify_kind kind;
		int why;
		const char *type;
	} types[] = {
		{ NOTIFY_UPLOAD_STARTED, 0, "info" },
		{ NOTIFY_ACCOUNT_ROTATED, NOTIFY_ROTATED_BAN, "info" },
		{ NOTIFY_UPLOADER_SUSPENDED, 0, "warning" },
		{ NOTIFY_UPLOAD_FINISHED, NOTIFY_STATUS_NO_ACCOUNT, "warning" },
		{ NOTIFY_UPLOAD_FINISHED, NOTIFY_STATUS_STOPPED, "warning" },
		{ NOTIFY_UPLOAD_FINISHED, NOTIFY_STATUS_FAILED, "failure" },
		{ NOTIFY_LEDGER_PROBLEM, 0, "failure" },
	};
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		e = event(types[i].kind);
		e.why = types[i].why;
		o = json_payload(&t, &e);
		cr_expect_str_eq(str(o, "type"), types[i].type, "%s/%d",
				 notify_kind_name(types[i].kind), types[i].why);
		cJSON_Delete(o);
	}
}

Test(notify, pushover_gets_a_form_with_every_byte_outside_the_unreserved_set_escaped)
{
	struct config_notification t = target(CONFIG_NOTIFY_PUSHOVER);
	t.app_token = "a&b=c";
	t.user_token = "u ü";
	t.priority = -1;
	struct notify_event e = event(NOTIFY_LEDGER_PROBLEM);
	snprintf(e.detail, sizeof(e.detail), "100%% full: /srv/a b");
	struct notify_request r;
	cr_assert_eq(notify_build_request(&t, &e, &r), 0);
	cr_assert_str_eq(r.content_type, "application/x-www-form-urlencoded");
	cr_assert_str_eq(r.body, "token=a%26b%3Dc&user=u%20%C3%BC&priority=-1&title=cplow%3A%20Ledger"
				 "%20problem&message=100%25%20full%3A%20%2Fsrv%2Fa%20b");
	notify_request_free(&r);
	t.priority = 2; /* emergency: Pushover refuses it without retry and expire */
	cr_assert_eq(notify_build_request(&t, &e, &r), 0);
	cr_assert_not_null(strstr(r.body, "&priority=2&"));
	cr_assert_not_null(strstr(r.body, "&retry=60&expire=3600"), "%s", r.body);
	notify_request_free(&r);
}

Test(notify, the_webhook_gets_the_events_fields_with_exact_numbers)
{
	struct config_notification t = target(CONFIG_NOTIFY_WEBHOOK);
	struct notify_event e = started();
	e.bytes = 9007199254740991LL; /* 2^53 - 1: the largest a JSON number holds exactly */
	cJSON *o = json_payload(&t, &e);
	cr_assert_str_eq(str(o, "id"), "0123456789abcdef-7");
	cr_assert_str_eq(str(o, "event"), "upload_started");
	cr_assert_float_eq(num(o, "time"), 1734600000.123, 1e-6);
	cr_assert_str_eq(str(o, "uploader"), "media");
	cr_assert_str_eq(str(o, "title"), "Upload started: media");
	cr_assert_str_eq(str(o, "account"), "sa1.json");
	cr_assert_str_eq(str(o, "strategy"), "aggressive_fresh_sa");
	cr_assert_eq(num(o, "stage"), 1);
	cr_assert_eq(num(o, "files"), 812);
	cr_assert_eq((int64_t)num(o, "bytes"), 9007199254740991LL);
	cr_assert_eq((int64_t)num(o, "planned_bytes"), 375LL << 30);
	cr_assert_eq((int64_t)num(o, "max_transfer_bytes"), 375LL << 30);
	cr_assert_eq((int64_t)num(o, "remaining_bytes"), 750LL << 30);
	cJSON_Delete(o);

	e = event(NOTIFY_ACCOUNT_ROTATED);
	snprintf(e.account, sizeof(e.account), "fake1");
	snprintf(e.account_to, sizeof(e.account_to), "fake2");
	e.why = NOTIFY_ROTATED_BAN;
	e.until_ms = 1734688800000LL;
	e.bytes = 5;
	o = json_payload(&t, &e);
	cr_assert_str_eq(str(o, "from_account"), "fake1");
	cr_assert_str_eq(str(o, "to_account"), "fake2");
	cr_assert_str_eq(str(o, "reason"), "ban");
	cr_assert_eq(num(o, "banned_until"), 1734688800);
	cr_assert_eq(num(o, "bytes"), 5);
	cJSON_Delete(o);
	e.why = NOTIFY_ROTATED_MAX_TRANSFER;
	e.until_ms = 0;
	o = json_payload(&t, &e);
	cr_assert_null(cJSON_GetObjectItem(o, "banned_until"), "only a ban has an end");
	cJSON_Delete(o);

	e = finished();
	o = json_payload(&t, &e);
	cr_assert_str_eq(str(o, "status"), "done");
	cr_assert_eq(num(o, "files"), 30);
	cr_assert_eq(num(o, "bytes"), 6858604);
	cr_assert_float_eq(num(o, "duration_seconds"), 4.138, 1e-9);
	cr_assert_eq(num(o, "bytes_per_second"), 6858604LL * 1000 / 4138);
	cr_assert_eq(num(o, "stages"), 5);
	cr_assert_eq(num(o, "account_count"), 2);
	cJSON *list = cJSON_GetObjectItem(o, "accounts");
	cr_assert_eq(cJSON_GetArraySize(list), 2);
	cr_assert_str_eq(cJSON_GetArrayItem(list, 1)->valuestring, "fake2");
	cJSON_Delete(o);

	e = event(NOTIFY_UPLOADER_SUSPENDED);
	e.until_ms = 1734688800000LL;
	o = json_payload(&t, &e);
	cr_assert_eq(num(o, "until"), 1734688800);
	cJSON_Delete(o);

	e = event(NOTIFY_LEDGER_PROBLEM);
	snprintf(e.detail, sizeof(e.detail), "cplow cannot start: ...");
	o = json_payload(&t, &e);
	cr_assert(cJSON_IsNull(cJSON_GetObjectItem(o, "uploader")), "a problem has no uploader");
	cr_assert_str_eq(str(o, "detail"), "cplow cannot start: ...");
	cr_assert_str_eq(str(o, "event"), "ledger_problem");
	cJSON_Delete(o);
}

Test(notify, only_a_request_that_surely_did_not_arrive_is_sent_again)
{
	static const struct {
		int code;
		long http;
		bool sent;
		enum notify_outcome want;
	} cases[] = {
		{ CURLE_OK, 200, true, NOTIFY_DELIVERED },
		{ CURLE_OK, 204, true, NOTIFY_DELIVERED },
		{ CURLE_OK, 503, true, NOTIFY_RETRY },
		{ CURLE_OK, 500, true, NOTIFY_RETRY },
		{ CURLE_OK, 429, true, NOTIFY_RETRY },
		{ CURLE_OK, 408, true, NOTIFY_RETRY },
		{ CURLE_OK, 404, true, NOTIFY_REFUSED },
		{ CURLE_OK, 400, true, NOTIFY_REFUSED },
		{ CURLE_OK, 301, true, NOTIFY_REFUSED },
		{ CURLE_COULDNT_CONNECT, 0, false, NOTIFY_RETRY },
		{ CURLE_COULDNT_RESOLVE_HOST, 0, false, NOTIFY_RETRY },
		{ CURLE_SSL_CONNECT_ERROR, 0, false, NOTIFY_RETRY },
		{ CURLE_OPERATION_TIMEDOUT, 0, false, NOTIFY_RETRY },
		{ CURLE_OPERATION_TIMEDOUT, 0, true, NOTIFY_UNANSWERED },
		{ CURLE_GOT_NOTHING, 0, true, NOTIFY_UNANSWERED },
		{ CURLE_RECV_ERROR, 0, true, NOTIFY_UNANSWERED },
		{ CURLE_UNSUPPORTED_PROTOCOL, 0, false, NOTIFY_REFUSED },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		cr_expect_eq(notify_classify(cases[i].code, cases[i].http, cases[i].sent),
			     cases[i].want, "case %zu: curl %d, HTTP %ld, sent %d", i, cases[i].code,
			     cases[i].http, cases[i].sent);
}

Test(notify, retries_wait_1_2_4_and_8_seconds)
{
	cr_assert_eq(NOTIFY_ATTEMPTS, 5);
	cr_assert_eq(notify_backoff_ms(2), 1000);
	cr_assert_eq(notify_backoff_ms(3), 2000);
	cr_assert_eq(notify_backoff_ms(4), 4000);
	cr_assert_eq(notify_backoff_ms(5), 8000);
	cr_assert_eq(notify_backoff_ms(9), 8000, "bounded");
}

Test(notify, kind_and_status_names_are_the_webhooks_words)
{
	cr_assert_str_eq(notify_kind_name(NOTIFY_UPLOAD_STARTED), "upload_started");
	cr_assert_str_eq(notify_kind_name(NOTIFY_ACCOUNT_ROTATED), "account_rotated");
	cr_assert_str_eq(notify_kind_name(NOTIFY_UPLOADER_SUSPENDED), "uploader_suspended");
	cr_assert_str_eq(notify_kind_name(NOTIFY_UPLOAD_FINISHED), "upload_finished");
	cr_assert_str_eq(notify_kind_name(NOTIFY_LEDGER_PROBLEM), "ledger_problem");
	cr_assert_str_eq(notify_status_name(NOTIFY_STATUS_DONE), "done");
	cr_assert_str_eq(notify_status_name(NOTIFY_STATUS_NO_ACCOUNT), "no_account");
	cr_assert_str_eq(notify_status_name(NOTIFY_STATUS_FAILED), "failed");
	cr_assert_str_eq(notify_status_name(NOTIFY_STATUS_STOPPED), "stopped");
}
