"""One worker stage, end to end: the real rclone, the fake quota remote, the shared ledger.

The fake remote's accepted bytes per user are the truth the ledger is checked against.
"""
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

from harness import (BUILD, FakeRemote, child_named, ledger_bytes, ledger_row, ledger_state,
                     make_tree, run_stage, stage_args, unlink_shm, wait_for)

AMPLE = 0  # unlimited


class StageTest(unittest.TestCase):
    def setUp(self):
        self.work = tempfile.mkdtemp(prefix="cplow-stage-")
        self.shm = "/cplow-it-%d-%d" % (os.getpid(), random.randrange(1 << 30))
        self.fake = None
        self.procs = []

    def tearDown(self):
        for p in self.procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL) if _pgid_ok(p.pid) else p.kill()
                p.wait()
        if self.fake:
            self.fake.stop()
        unlink_shm(self.shm)
        shutil.rmtree(self.work, ignore_errors=True)

    def start_fake(self, **users):
        self.fake = FakeRemote({u: ("pw-" + u, q) for u, q in users.items()}, self.work)
        return self.fake

    def source(self, count, seed, **kw):
        src = os.path.join(self.work, "src-%d" % seed)
        os.makedirs(src)
        return src, make_tree(src, count, seed, **kw)

    def start_stage(self, env, args):
        full = dict(os.environ)
        full.update(env)
        p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=full)
        self.procs.append(p)
        return p

    def assert_ledger_is_truth(self, user, account="acct", uploader="media"):
        truth = self.fake.accepted(user)
        got = ledger_bytes(self.shm, uploader, account)
        self.assertEqual(got, truth, "ledger %d != fake remote accepted %d" % (got, truth))
        return truth

    def test_move_200_files_ledger_equals_accepted_bytes_and_the_sum_of_files(self):
        fake = self.start_fake(alice=AMPLE)
        src, files = self.source(200, seed=1)
        outcome, _ = run_stage(fake.remote_env("fake", "alice"),
                               *stage_args(self.shm, "media", "acct", src, "fake:media", self.work))
        self.assertEqual(outcome["result"], "done", outcome)
        self.assertEqual(outcome["files"], 200)
        self.assertEqual(outcome["malformed_lines"], 0)
        truth = self.assert_ledger_is_truth("alice")
        self.assertEqual(truth, sum(files.values()))
        self.assertEqual(outcome["bytes"], truth)
        left = [f for _, _, fs in os.walk(src) for f in fs]
        self.assertEqual(left, [], "move left source files behind")
        row = ledger_row(self.shm, "media", "acct")
        self.assertEqual(row["files"], 200)

    def test_quota_too_small_stops_at_max_transfer_without_a_403(self):
        src, files = self.source(60, seed=2, max_size=2 << 20)
        quota = sum(files.values()) // 2
        fake = self.start_fake(bob=quota)
        outcome, _ = run_stage(fake.remote_env("fake", "bob"),
                               *stage_args(self.shm, "media", "acct", src, "fake:media", self.work,
                                           "--daily-bytes", str(quota),
                                           "--max-transfer", str(quota)))
        self.assertEqual(outcome["result"], "max-transfer", outcome)
        # rclone 1.60 exits 8 at the cutoff, or 1 when it cancelled a directory listing that was
        # under way then; the worker must read both as the cutoff (the result above).
        self.assertIn(outcome["rclone_exit"], (1, 8), outcome)
        self.assertEqual(fake.truth()["users"]["bob"]["rejected_403"], 0)
        truth = self.assert_ledger_is_truth("bob")
        self.assertLessEqual(truth, quota)
        self.assertGreater(truth, 0)

    def test_quota_unknown_to_the_ledger_fires_the_trigger_and_bans_the_account(self):
        src, files = self.source(40, seed=3, max_size=1 << 20)
        fake = self.start_fake(carol=sum(files.values()) // 3)
        outcome, _ = run_stage(fake.remote_env("fake", "carol"),
                               *stage_args(self.shm, "media", "acct", src, "fake:media", self.work,
                                           "--transfers", "2",
                                           "--trigger", "User rate limit exceeded|3|25|600"))
        self.assertEqual(outcome["result"], "triggered", outcome)
        self.assertEqual(outcome["trigger"], "User rate limit exceeded")
        self.assertGreater(fake.truth()["users"]["carol"]["rejected_403"], 0)
        self.assert_ledger_is_truth("carol")
        row = ledger_row(self.shm, "media", "acct")
        self.assertIn("User rate limit exceeded", row["ban_cause"])
        human = subprocess.run([os.path.join(BUILD, "shm/cplow-inspect"), "--shm", self.shm],
                               capture_output=True, text=True).stdout
        self.assertIn("[", human)
        for line in human.splitlines():
            self.assertLessEqual(len(line), 100, "inspect line wider than 100: %r" % line)
        self.assertAlmostEqual(row["banned_until"] - time.time(), 25 * 3600, delta=120)

    def test_sigint_at_random_moments_leaves_the_ledger_equal_to_the_truth(self):
        fake = self.start_fake(dave=AMPLE)
        rng = random.Random(4)
        env = fake.remote_env("fake", "dave")
        checked = 0
        runs = 20
        for run in range(runs):
            src = os.path.join(self.work, "sigint-%d" % run)
            os.makedirs(src)
            make_tree(src, 12, seed=100 + run, min_size=64 << 10, max_size=6 << 20, dirs=2)
            fake.set_delay(rng.choice([0, 2, 5]))
            p = self.start_stage(env, stage_args(self.shm, "media", "acct", src,
                                                 "fake:run%d" % run, self.work))
            # A random moment after rclone has started moving data.
            wait_for("rclone to start uploading",
                     lambda: fake.truth()["in_progress"] > 0 or p.poll() is not None, timeout=60)
            time.sleep(rng.uniform(0, 0.4))
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
            out, err = p.communicate(timeout=120)
            fake.set_delay(0)
            wait_for("uploads in flight to end", lambda: fake.truth()["in_progress"] == 0)
            self.assertIn(p.returncode, (0, 5), err[-2000:])
            outcome = [json.loads(l) for l in out.splitlines() if l.startswith("{")]
            self.assertTrue(outcome, err[-2000:])
            if outcome[-1]["reconciled_files"] > 0:
                checked += 1
            self.assert_ledger_is_truth("dave")
        sys.stderr.write("\nSIGINT runs: %d of %d needed the in-flight check to count a file\n"
                         % (checked, runs))

    def test_sigkill_of_rclone_mid_stage_is_noticed_and_reconciled(self):
        fake = self.start_fake(erin=AMPLE)
        src, files = self.source(30, seed=5, min_size=256 << 10, max_size=4 << 20)
        fake.set_delay(3)
        p = self.start_stage(fake.remote_env("fake", "erin"),
                             stage_args(self.shm, "media", "acct", src, "fake:media", self.work))
        wait_for("some files to complete", lambda: ledger_bytes(self.shm, "media", "acct") > 0,
                 timeout=60)
        rclone = wait_for("the rclone child", lambda: child_named(p.pid, "rclone"))
        os.kill(rclone, signal.SIGKILL)
        out, err = p.communicate(timeout=120)
        fake.set_delay(0)
        wait_for("uploads in flight to end", lambda: fake.truth()["in_progress"] == 0)
        self.assertIn('"result":"failed"', out.replace(" ", ""), err[-2000:])
        self.assertIn('"rclone_exit":137', out.replace(" ", ""))
        self.assert_ledger_is_truth("erin")

    def test_live_stats_move_while_the_stage_runs(self):
        fake = self.start_fake(frank=AMPLE)
        src, files = self.source(20, seed=6, min_size=512 << 10, max_size=2 << 20)
        fake.set_delay(4)
        p = self.start_stage(fake.remote_env("fake", "frank"),
                             stage_args(self.shm, "media", "acct", src, "fake:media", self.work,
                                        "--rc-poll-ms", "100", "--transfers", "2"))

        def stage():
            stages = ledger_state(self.shm)["stages"]
            return stages[0] if stages else None

        first = wait_for("a stage with a file done", lambda: (s := stage()) and s["files_done"] > 0 and s)
        self.assertEqual(first["files_total"], 20)
        self.assertEqual(first["bytes_total"], sum(files.values()))
        later = wait_for("more files and a speed",
                         lambda: (s := stage()) and s["files_done"] > first["files_done"]
                         and s["bytes_done"] > first["bytes_done"] and s["speed"] > 0 and s,
                         timeout=60)
        self.assertGreater(later["speed"], 0)
        out, err = p.communicate(timeout=120)
        self.assertEqual(p.returncode, 0, err[-2000:])
        self.assert_ledger_is_truth("frank")

    def test_a_bandwidth_request_reaches_rclone_and_can_be_lifted(self):
        fake = self.start_fake(hank=AMPLE)
        src, files = self.source(8, seed=8, min_size=6 << 20, max_size=8 << 20, dirs=0)
        p = self.start_stage(fake.remote_env("fake", "hank"),
                             stage_args(self.shm, "media", "acct", src, "fake:media", self.work,
                                        "--rc-poll-ms", "100", "--transfers", "2"))
        stage = wait_for("the stage slot", lambda: (s := ledger_state(self.shm)["stages"]) and s[0])
        ctl = os.path.join(BUILD, "tests/ledger_ctl")
        subprocess.run([ctl, "--shm", self.shm, "bwlimit", str(stage["slot"]), "256k"], check=True)
        limited = wait_for("rclone's speed to fall under the limit",
                           lambda: (s := ledger_state(self.shm)["stages"]) and s[0]["speed"] > 0
                           and s[0]["speed"] < 2 * 256 * 1024 and s[0], timeout=60)
        self.assertLess(limited["files_done"], 8, "the stage ended before the limit applied")
        subprocess.run([ctl, "--shm", self.shm, "bwlimit", str(stage["slot"]), "off"], check=True)
        out, err = p.communicate(timeout=120)
        self.assertEqual(p.returncode, 0, err[-2000:])
        self.assertIn("bandwidth limit set to 256k", err)
        self.assertIn("bandwidth limit set to off", err)
        self.assertEqual(self.assert_ledger_is_truth("hank"), sum(files.values()))

    def test_bad_rclone_output_is_skipped_and_counted_never_fatal(self):
        # Output the real rclone never writes, so a script stands in for it here.
        src = os.path.join(self.work, "src")
        os.makedirs(src)
        sizes = {"a.bin": 1000, "b.bin": 2000, "c.bin": 4000}
        for name, size in sizes.items():
            with open(os.path.join(src, name), "wb") as f:
                f.write(b"x" * size)
        fake_rclone = os.path.join(self.work, "rclone")
        with open(fake_rclone, "w") as f:
            f.write("""#!/bin/sh
# The in-flight check's `rclone lsjson` for the file not in the listing: not on the remote.
case " $* " in *" lsjson "*) echo '[]'; exit 0;; esac
exec 1>&2
printf '\\000\\001garbage\\377 not a line of rclone\\n'
head -c 1048577 /dev/zero | tr '\\000' 'a'; echo
echo '{"level":"info","msg":"Copied (new)","object":"a.bin"}'
echo '{"level":"info","msg":"Copied (replaced existing)","object":"a.bin"}'
echo '{"level":"info","msg":"Copied (new)","object":"not-listed.bin"}'
echo '{"level":"info","msg":"Copied (new)","object":"../c.bin"}'
echo '{"level":"error","msg":"Failed to copy: boom","object":"b.bin"}'
echo '{"level":"info","msg":"Copied (new)","object":"b.bin"}'
printf '{"level":"info","msg":"Copied (new'
""")
        os.chmod(fake_rclone, 0o755)
        outcome, run = run_stage({}, *stage_args(self.shm, "media", "acct", src, "x:y", self.work,
                                                 "--rclone", fake_rclone))
        self.assertEqual(outcome["result"], "done", run.stderr[-2000:])
        self.assertEqual(outcome["files"], 2)
        self.assertEqual(outcome["bytes"], sizes["a.bin"] + sizes["b.bin"])
        self.assertEqual(outcome["unknown_files"], 2)
        self.assertEqual(outcome["failed_lines"], 1)
        self.assertGreaterEqual(outcome["malformed_lines"], 1)
        self.assertEqual(ledger_bytes(self.shm, "media", "acct"), sizes["a.bin"] + sizes["b.bin"])
        self.assertIn("not-listed.bin, which was not in the listing", run.stderr)

    def test_files_that_come_into_the_source_during_a_stage_are_counted_exactly(self):
        # Files that arrive between the worker's listing and rclone's: a wrapper renames them
        # into the source just before it execs the real rclone for the move, so rclone uploads
        # files the listing never had.
        fake = self.start_fake(ivy=AMPLE)
        src, early = self.source(10, seed=9, max_size=200 << 10)
        spool = os.path.join(self.work, "spool")
        late = make_tree(os.path.join(spool, "late"), 5, seed=10, min_size=10 << 10,
                         max_size=50 << 10, dirs=2)
        wrapper = os.path.join(self.work, "rclone-late")
        with open(wrapper, "w") as f:
            f.write("""#!/bin/sh
case " $* " in *" move "*) cp -a %s/. %s/ && rm -rf %s;; esac
exec /usr/bin/rclone "$@"
""" % (spool, src, spool))
        os.chmod(wrapper, 0o755)
        outcome, run = run_stage(fake.remote_env("fake", "ivy"),
                                 *stage_args(self.shm, "media", "acct", src, "fake:media",
                                             self.work, "--sandbox", "--rclone", wrapper))
        self.assertEqual(outcome["result"], "done", run.stderr[-3000:])
        self.assertEqual(outcome["unknown_files"], len(late), "the late files were not late")
        self.assertEqual(outcome["files"], len(early) + len(late))
        self.assertEqual(self.assert_ledger_is_truth("ivy"),
                         sum(early.values()) + sum(late.values()))
        self.assertEqual(os.listdir(src) and
                         [f for _, _, fs in os.walk(src) for f in fs], [], "not all moved")

    def test_a_sandboxed_stage_still_passes(self):
        fake = self.start_fake(gina=AMPLE)
        src, files = self.source(20, seed=7, max_size=1 << 20)
        outcome, run = run_stage(fake.remote_env("fake", "gina"),
                                 *stage_args(self.shm, "media", "acct", src, "fake:media",
                                             self.work, "--sandbox"))
        self.assertEqual(outcome["result"], "done", run.stderr[-2000:])
        self.assertEqual(self.assert_ledger_is_truth("gina"), sum(files.values()))


def _pgid_ok(pid):
    try:
        return os.getpgid(pid) == pid
    except ProcessLookupError:
        return False


if __name__ == "__main__":
    unittest.main(verbosity=2)
