/*
 * The dashboard role against a ledger this tool fills, for the page test
 * (tests/integration/test_dashboard_page.py):
 *   dashboard_fill SHM_NAME [TOKEN] [--odd-names]
 * creates the ledger, fills it (with --odd-names also rows whose names need every escape the
 * Prometheus format has, for tests/integration/test_metrics_promtool.py), starts the role on 127.0.0.1:0 and prints the port; then reads
 * commands on stdin: "step" (files complete, usage moves; prints "ok"), "quit" (or EOF).
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dashboard.h"
#include "ledger.h"

#define QUOTA 1000000000LL

static int fill(struct ledger *l, int32_t *rows, int32_t *slot)
{
	static const char *const accounts[] = { "/keys/sa01.json", "/keys/sa02.json",
						"/keys/sa03.json", "/keys/sa04.json" };
	static const int64_t used[] = { 300000000, 800000000, 950000000, 0 };
	int64_t before = ledger_now_ms() - 3600 * 1000;
	for (int i = 0; i < 4; i++) {
		if (ledger_row_get(l, "media", accounts[i], &rows[i]) != LEDGER_OK)
			return -1;
		if (used[i] && ledger_add(l, rows[i], used[i], before) != LEDGER_OK)
			return -1;
	}
	struct ledger_stage s = { .row = rows[3], .pid = getpid(), .stage_number = 1,
				  .strategy = "aggressive_fresh_sa", .max_transfer_bytes = 500000000,
				  .max_size_bytes = 800000000, .transfers = 8, .order_by = "size,desc",
				  .max_backlog = 2000, .started_at_ms = ledger_now_ms() - 60000,
				  .files_total = 20, .bytes_total = 200000000, .rc_bytes = 30000000,
				  .rc_speed = 2500000, .rc_eta_s = 68, .inflight_count = 2 };
	s.inflight[0] = (struct ledger_inflight){ "Movies/Big Buck Bunny (2008).mkv", 40000000, 20000000, 1500000 };
	s.inflight[1] = (struct ledger_inflight){ "TV/Show S01E01.mkv", 20000000, 10000000, 1000000 };
	if (ledger_stage_claim(l, &s, slot) != LEDGER_OK || ledger_stage_update(l, *slot, &s) != LEDGER_OK)
		return -1;
	return 0;
}

/* Label values that need escaping (quote, backslash, newline) or that look like syntax. */
static int fill_odd(struct ledger *l)
{
	static const char *const names[][2] = {
		{ "we\"ird\\up", "/keys/new\nline \"quoted\" back\\slash \xc3\xa9.json" },
		{ "media", "remote{a=\"b\",c}=1 # not a comment" },
		{ "media", "trailing backslash\\" },
	};
	int64_t now = ledger_now_ms();
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		int32_t row;
		if (ledger_row_get(l, names[i][0], names[i][1], &row) != LEDGER_OK ||
		    ledger_add(l, row, 12345 + (int64_t)i, now) != LEDGER_OK)
			return -1;
		if (i == 0 && ledger_ban(l, row, now + 3600000, "cause \"with\" quotes\n", now) != LEDGER_OK)
			return -1;
		struct ledger_stage s = { .row = row, .pid = getpid(), .stage_number = 1,
					  .strategy = "cautious_low_quota", .started_at_ms = now,
					  .files_total = 3, .bytes_total = 3000, .rc_speed = 100 };
		int32_t slot;
		if (i == 0 && (ledger_stage_claim(l, &s, &slot) != LEDGER_OK ||
			       ledger_add_for_stage(l, slot, 1000, now) != LEDGER_OK))
			return -1;
	}
	return 0;
}

/* Three files complete on the active account; the first account fills to 75 %. */
static int step(struct ledger *l, const int32_t *rows, int32_t slot)
{
	int64_t now = ledger_now_ms();
	for (int i = 0; i < 3; i++)
		if (ledger_add_for_stage(l, slot, 50000000, now) != LEDGER_OK)
			return -1;
	if (ledger_add(l, rows[0], 450000000, now) != LEDGER_OK)
		return -1;
	struct ledger_stage s = l->stages[slot];
	s.inflight_count = 1;
	s.inflight[0] = (struct ledger_inflight){ "TV/Show S01E02.mkv", 20000000, 5000000, 2000000 };
	s.rc_speed = 4000000;
	return ledger_stage_update(l, slot, &s) == LEDGER_OK ? 0 : -1;
}

int main(int argc, char **argv)
{
	int odd = argc > 2 && strcmp(argv[argc - 1], "--odd-names") == 0;
	if (odd)
		argc--;
	if (argc < 2) {
		fprintf(stderr, "usage: dashboard_fill SHM_NAME [TOKEN] [--odd-names]\n");
		return 2;
	}
	struct ledger l;
	struct ledger_options o = { .row_capacity = 64, .slot_capacity = 4, .daily_bytes = QUOTA };
	int32_t rows[4], slot;
	ledger_unlink(argv[1]);
	if (ledger_create(argv[1], &o, &l) != LEDGER_OK || fill(&l, rows, &slot) < 0 ||
	    (odd && fill_odd(&l) < 0)) {
		fprintf(stderr, "dashboard_fill: cannot create and fill %s\n", argv[1]);
		ledger_unlink(argv[1]);
		return 1;
	}
	struct config_remote remote = { .name = "media", .upload_folder = "/srv/media" };
	struct config_uploader up = { .name = "media", .remote = &remote };
	struct config cfg = { .uploaders = &up, .uploader_count = 1,
			      .dashboard = { .enabled = true, .host = "127.0.0.1", .port = 0,
					     .token = argc > 2 ? argv[2] : NULL, .refresh_seconds = 1 } };
	int p[2];
	if (pipe(p) < 0)
		return 1;
	pid_t role = fork();
	if (role == 0) {
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		close(p[0]);
		_exit(dashboard_serve(&cfg, argv[1], p[1]));
	}
	close(p[1]);
	char port[16] = { 0 };
	int rc = 1;
	if (role > 0 && read(p[0], port, sizeof(port) - 1) > 0) {
		printf("%s", port);
		fflush(stdout);
		char line[64];
		rc = 0;
		while (fgets(line, sizeof(line), stdin) && strncmp(line, "quit", 4) != 0) {
			if (strncmp(line, "step", 4) == 0) {
				int ok = step(&l, rows, slot) == 0;
				printf("%s\n", ok ? "ok" : "failed");
				fflush(stdout);
				rc |= !ok;
			}
		}
	} else {
		fprintf(stderr, "dashboard_fill: the role did not start\n");
	}
	if (role > 0) {
		int st = 0;
		kill(role, SIGTERM);
		waitpid(role, &st, 0);
		if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
			fprintf(stderr, "dashboard_fill: the role ended with status %#x\n", st);
			rc = 1;
		}
	}
	ledger_detach(&l);
	ledger_unlink(argv[1]);
	return rc;
}
