#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "downloaders.h"

Test(downloaders, nzbget_is_asked_through_json_rpc_with_the_url_credentials_kept)
{
	const char *post = NULL;
	char *url = downloaders_request_url(DOWNLOADER_NZBGET, "https://u:p@nzb.example.com/",
					    NULL, "pause", &post);
	cr_assert_str_eq(url, "https://u:p@nzb.example.com/jsonrpc");
	cr_assert_not_null(strstr(post, "\"method\": \"pausedownload\""));
	free(url);
	url = downloaders_request_url(DOWNLOADER_NZBGET, "http://nzb:6789", NULL, "resume", &post);
	cr_assert_str_eq(url, "http://nzb:6789/jsonrpc");
	cr_assert_not_null(strstr(post, "\"method\": \"resumedownload\""));
	free(url);
	url = downloaders_request_url(DOWNLOADER_NZBGET, "http://nzb:6789", NULL, "status", &post);
	cr_assert_not_null(strstr(post, "\"method\": \"status\""));
	free(url);
}

Test(downloaders, sabnzbd_is_asked_with_its_api_key_escaped)
{
	const char *post = "unset";
	char *url = downloaders_request_url(DOWNLOADER_SABNZBD, "http://sab:8080/sabnzbd/",
					    "ab&c d=é", "pause", &post);
	cr_assert_null(post, "a GET");
	cr_assert_str_eq(url, "http://sab:8080/sabnzbd/api?mode=pause&apikey=ab%26c%20d%3D%C3%A9"
			      "&output=json");
	free(url);
	url = downloaders_request_url(DOWNLOADER_SABNZBD, "http://sab:8080", "k", "status", &post);
	cr_assert_str_eq(url, "http://sab:8080/api?mode=queue&limit=1&apikey=k&output=json");
	free(url);
}
