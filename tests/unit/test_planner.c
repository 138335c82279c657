#include <criterion/criterion.h>

#include "config.h"
#include "planner.h"

/* The account of an uploader that neither rotates remotes nor uses service accounts. */
static void account_is(const char *upload_remote, const char *want)
{
	struct config_remote r = { .name = "media", .upload_remote = (char *)upload_remote };
	struct config_uploader u = { .name = "media", .remote = &r };
	struct planner_accounts a;
	char err[256];
	cr_assert_eq(planner_accounts(&u, &a, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(a.count, 1);
	cr_assert_str_eq(a.v[0].name, want, "upload_remote %s", upload_remote);
	planner_accounts_free(&a);
}

Test(planner, a_single_account_is_the_remote_name)
{
	account_is("google:/Media", "google");
	account_is("gcrypt,password=secret:/Media", "gcrypt");
}

/* A name-less remote gave an empty account, which the ledger refuses: every stage failed. */
Test(planner, a_remote_made_on_the_command_line_is_its_own_account)
{
	account_is(":local:/backup", ":local:");
	account_is(":s3,provider=AWS,secret_access_key=k:bucket/tv", ":s3:");
}
