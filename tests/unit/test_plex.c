#include <criterion/criterion.h>
#include <string.h>

#include "http_client.h"
#include "plex.h"

static struct plex_sessions parse_ok(const char *json)
{
	struct plex_sessions s;
	char err[256] = "";
	cr_assert_eq(plex_parse_sessions(json, strlen(json), &s, err, sizeof(err)), 0, "%s", err);
	return s;
}

static const char *parse_error(const char *json)
{
	static char err[256];
	struct plex_sessions s = { 7, 7, 7 };
	err[0] = '\0';
	cr_assert_eq(plex_parse_sessions(json, strlen(json), &s, err, sizeof(err)), -1);
	cr_assert_eq(s.sessions, 7, "the out-parameter is untouched on failure");
	return err;
}

Test(plex, playing_and_buffering_count_paused_does_not_and_local_is_told_apart)
{
	struct plex_sessions s = parse_ok(
		"{\"MediaContainer\": {\"size\": 6, \"Metadata\": ["
		"{\"title\": \"a\", \"Player\": {\"state\": \"playing\", \"local\": false},"
		" \"Session\": {\"location\": \"wan\"}},"
		"{\"title\": \"b\", \"Player\": {\"state\": \"buffering\", \"local\": false}},"
		"{\"title\": \"c\", \"Player\": {\"state\": \"paused\", \"local\": false}},"
		"{\"title\": \"d\", \"Player\": {\"state\": \"playing\", \"local\": true}},"
		"{\"title\": \"e\", \"Player\": {\"state\": \"playing\", \"local\": false},"
		" \"Session\": {\"location\": \"lan\"}},"
		"{\"title\": \"f\"}]}}");
	cr_assert_eq(s.sessions, 6);
	cr_assert_eq(s.active, 4);
	cr_assert_eq(s.active_local, 2, "Player.local and Session.location lan both mean local");
	cr_assert_eq(plex_stream_count(&s, false), 4);
	cr_assert_eq(plex_stream_count(&s, true), 2);
}

Test(plex, no_session_is_zero_streams_and_older_servers_video_list_is_read)
{
	struct plex_sessions s = parse_ok("{\"MediaContainer\": {\"size\": 0}}");
	cr_assert_eq(s.sessions, 0);
	cr_assert_eq(s.active, 0);
	s = parse_ok("{\"MediaContainer\": {\"Video\": [{\"Player\": {\"state\": \"playing\","
		     " \"local\": \"1\"}}]}}");
	cr_assert_eq(s.active, 1);
	cr_assert_eq(s.active_local, 1, "\"1\" is true, as Plex's XML writes it");
}

Test(plex, an_answer_that_is_not_a_session_list_is_an_error)
{
	cr_assert_str_eq(parse_error("<?xml version=\"1.0\"?><MediaContainer size=\"0\"/>"),
			 "the answer is not JSON");
	cr_assert_str_eq(parse_error("{\"errors\": []}"), "the answer has no MediaContainer");
	cr_assert_str_eq(parse_error("{\"MediaContainer\": {\"Metadata\": 3}}"),
			 "MediaContainer.Metadata is not a list");
}

static struct config_throttle_speed speeds[] = {
	{ 1, "50M" }, { 2, "40M" }, { 5, "10M" },
};

Test(plex, the_largest_key_at_or_below_the_count_wins_else_the_smallest_key)
{
	struct config_plex c = { .max_streams_before_throttle = 1, .throttle_speeds = speeds,
				 .throttle_speed_count = 3 };
	cr_assert_null(plex_rate_for(&c, 0));
	cr_assert_null(plex_rate_for(&c, 1), "at max_streams_before_throttle: no limit yet");
	cr_assert_str_eq(plex_rate_for(&c, 2), "40M");
	cr_assert_str_eq(plex_rate_for(&c, 3), "40M");
	cr_assert_str_eq(plex_rate_for(&c, 4), "40M");
	cr_assert_str_eq(plex_rate_for(&c, 5), "10M");
	cr_assert_str_eq(plex_rate_for(&c, 50), "10M");
	struct config_throttle_speed high[] = { { 4, "20M" }, { 8, "5M" } };
	c.throttle_speeds = high;
	c.throttle_speed_count = 2;
	c.max_streams_before_throttle = 0;
	cr_assert_str_eq(plex_rate_for(&c, 1), "20M", "every key above the count: the smallest");
	cr_assert_str_eq(plex_rate_for(&c, 9), "5M");
	c.throttle_speed_count = 0;
	cr_assert_null(plex_rate_for(&c, 9));
}

Test(plex, the_first_answer_applies_at_once_later_changes_after_two_polls)
{
	struct plex_throttle t = { 0 };
	cr_assert(plex_throttle_feed(&t, "40M"));
	cr_assert_str_eq(t.rate, "40M");
	cr_assert_not(plex_throttle_feed(&t, "40M"));
	/* One poll of something else changes nothing. */
	cr_assert_not(plex_throttle_feed(&t, NULL));
	cr_assert_str_eq(t.rate, "40M");
	cr_assert_not(plex_throttle_feed(&t, "40M"));
	cr_assert_not(plex_throttle_feed(&t, NULL));
	cr_assert_str_eq(t.rate, "40M", "the earlier lone poll does not count towards this one");
	/* Two in a row do. */
	cr_assert(plex_throttle_feed(&t, NULL));
	cr_assert_null(t.rate);
	/* Flapping between two rates never settles on either new one. */
	cr_assert_not(plex_throttle_feed(&t, "40M"));
	cr_assert_not(plex_throttle_feed(&t, "10M"));
	cr_assert_not(plex_throttle_feed(&t, "40M"));
	cr_assert_null(t.rate);
	cr_assert(plex_throttle_feed(&t, "40M"));
	cr_assert_str_eq(t.rate, "40M");
}

Test(plex, a_first_answer_of_no_streams_is_no_change)
{
	struct plex_throttle t = { 0 };
	cr_assert_not(plex_throttle_feed(&t, NULL));
	cr_assert(t.known);
	cr_assert_null(t.rate);
}

Test(http_client, shown_urls_lose_credentials_and_query)
{
	char out[256];
	http_client_shown_url("https://user:p%40ss@nzbget.example.com:6789/x?apikey=secret", out,
			      sizeof(out));
	cr_assert_str_eq(out, "https://nzbget.example.com:6789/x");
	http_client_shown_url("http://127.0.0.1:32400", out, sizeof(out));
	cr_assert_str_eq(out, "http://127.0.0.1:32400");
	http_client_shown_url("http://host/a@b", out, sizeof(out));
	cr_assert_str_eq(out, "http://host/a@b", "an @ in the path is no user name");
}

Test(http_client, join_drops_trailing_slashes)
{
	char *j = http_client_join("http://plex:32400//", "/status/sessions");
	cr_assert_str_eq(j, "http://plex:32400/status/sessions");
	free(j);
}
