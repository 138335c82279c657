#include <criterion/criterion.h>

#include <limits.h>
#include <string.h>

#include "hidden.h"

static void target_is(const char *rel, const char *want)
{
	char out[PATH_MAX];
	const char *why = "unset";
	cr_assert_eq(hidden_target(rel, out, sizeof(out), &why), 0, "%s refused: %s", rel,
		     why ? why : "");
	cr_assert_str_eq(out, want, "marker %s", rel);
}

static void refused(const char *rel)
{
	char out[PATH_MAX];
	const char *why = NULL;
	cr_assert_eq(hidden_target(rel, out, sizeof(out), &why), -1, "%s was taken", rel);
	cr_assert_not_null(why, "%s: no reason", rel);
}

Test(hidden, a_marker_names_its_path_without_the_suffix)
{
	target_is("Movies/Film (2010).mkv_HIDDEN~", "Movies/Film (2010).mkv");
	target_is("TV/Show_HIDDEN~", "TV/Show");
	/* cloudplow's rstrip("_HIDDEN~") took every trailing character of the set: "sHIDDEN" */
	target_is("a/episode_HIDDEN~", "a/episode");
	target_is("NIDDEH_HIDDEN~", "NIDDEH");
}

/* Never outside the remote path named: nothing a marker holds may climb out of it, or name
 * the path itself. */
Test(hidden, a_marker_that_would_leave_the_remote_path_is_refused)
{
	refused("_HIDDEN~");              /* the hidden_remote itself */
	refused("Movies/.._HIDDEN~");     /* its parent */
	refused("../x_HIDDEN~");
	refused("a/../../x_HIDDEN~");
	refused("./_HIDDEN~");
	refused("/etc/passwd_HIDDEN~");
	refused("a//b_HIDDEN~");
	refused("a/_HIDDEN~");            /* the folder a itself, through an empty name */
	refused("new\nline_HIDDEN~");
	refused("Movies/film.mkv");       /* no suffix */
	refused("");
}

Test(hidden, the_remote_path_joins_as_rclone_reads_it)
{
	char out[PATH_MAX];
	cr_assert_eq(hidden_remote_path("google:", "a/b", out, sizeof(out)), 0);
	cr_assert_str_eq(out, "google:a/b");
	cr_assert_eq(hidden_remote_path("google:/Media", "a", out, sizeof(out)), 0);
	cr_assert_str_eq(out, "google:/Media/a");
	cr_assert_eq(hidden_remote_path("google:Media/", "a", out, sizeof(out)), 0);
	cr_assert_str_eq(out, "google:Media/a");
	cr_assert_eq(hidden_remote_path("google:Media", "a", out, 8), -1);
}
