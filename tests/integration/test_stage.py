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

from harness import (BUILD, RCLONE, FakeRemote, child_named, ledger_bytes, ledger_row, ledger_state,
                     make_tree, popen, run_stage, stage_args, unlink_shm, wait_for)

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
        p = popen(args, env)
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
# The in-flight check's questions about the file not in the listing: a remote without
# modification times, where it is not.
case " $* " in *" lsjson "*) echo '[]'; exit 0;;
  *" backend features "*) echo '{"Precision":3153600000000000000}'; exit 0;; esac
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

    def test_a_file_that_grows_after_the_listing_counts_what_rclone_uploaded(self):
        # A file still being written (a download manager's copy into the folder) is listed
        # at the size it had then; rclone stats it later, when it reaches it, and uploads
        # what it finds. A wrapper appends to two listed files just before it execs the real
        # rclone: the ledger must count what the remote accepted, never the listed sizes.
        fake = self.start_fake(kim=AMPLE)
        src, files = self.source(6, seed=21, min_size=10 << 10, max_size=100 << 10, dirs=0)
        grown = sorted(files)[:2]
        wrapper = os.path.join(self.work, "rclone-grow")
        with open(wrapper, "w") as f:
            f.write("#!/bin/sh\ncase \" $* \" in *\" move \"*)\n")
            for name in grown:
                f.write("  head -c 300000 /dev/urandom >> '%s'\n" % os.path.join(src, name))
            f.write(";; esac\nexec /usr/bin/rclone \"$@\"\n")
        os.chmod(wrapper, 0o755)
        outcome, run = run_stage(fake.remote_env("fake", "kim"),
                                 *stage_args(self.shm, "media", "acct", src, "fake:media",
                                             self.work, "--sandbox", "--rclone", wrapper))
        self.assertEqual(outcome["result"], "done", run.stderr[-3000:])
        self.assertEqual(outcome["files"], len(files))
        truth = self.assert_ledger_is_truth("kim")
        self.assertEqual(truth, sum(files.values()) + 300000 * len(grown))
        self.assertEqual(outcome["bytes"], truth)

    def test_files_rclone_copies_in_parallel_chunks_are_counted(self):
        # The real rclone writes a file at offsets in parallel (--multi-thread-streams, to a
        # destination that takes such writes: a local or mounted path) and logs
        # "Multi-thread Copied (new)" for it, which was not taken for a completed file.
        src, files = self.source(4, seed=23, min_size=2 << 20, max_size=3 << 20, dirs=0)
        dest = os.path.join(self.work, "mounted")
        os.makedirs(dest)
        outcome, run = run_stage({}, *stage_args(self.shm, "media", "acct", src,
                                                 ":local:" + dest, self.work,
                                                 "--command", "copy",
                                                 "--extra", "--multi-thread-streams=4",
                                                 "--extra", "--multi-thread-cutoff=1M"))
        self.assertEqual(outcome["result"], "done", run.stderr[-3000:])
        self.assertEqual(outcome["files"], len(files))
        self.assertEqual(ledger_bytes(self.shm, "media", "acct"), sum(files.values()))

    def test_a_sandboxed_stage_still_passes(self):
        fake = self.start_fake(gina=AMPLE)
        src, files = self.source(20, seed=7, max_size=1 << 20)
        outcome, run = run_stage(fake.remote_env("fake", "gina"),
                                 *stage_args(self.shm, "media", "acct", src, "fake:media",
                                             self.work, "--sandbox"))
        self.assertEqual(outcome["result"], "done", run.stderr[-2000:])
        self.assertEqual(self.assert_ledger_is_truth("gina"), sum(files.values()))

    # --- rclone's exit code → the stage result -------------------------------------------

    def run_stage_exit(self, env, *args):
        """run_stage, and the stage_tool exit code (the result's enum value) checked too."""
        outcome, run = run_stage(env, *args)
        want_exit = {"done": 0, "max-transfer": 1, "fatal": 2, "nothing": 3,
                     "interrupted": 5, "failed": 6}[outcome["result"]]
        self.assertEqual(run.returncode, want_exit, run.stderr[-2000:])
        return outcome, run

    def test_nothing_to_transfer_exit_9_is_nothing_and_counts_nothing(self):
        # The real rclone: a copy of a source already on the remote, with
        # --error-on-no-transfer, transfers nothing and exits 9.
        fake = self.start_fake(jack=AMPLE)
        src, files = self.source(6, seed=11, max_size=100 << 10, dirs=2)
        env = fake.remote_env("fake", "jack")
        first, _ = self.run_stage_exit(env, *stage_args(self.shm, "media", "acct", src,
                                                        "fake:media", self.work,
                                                        "--command", "copy"))
        self.assertEqual(first["result"], "done", first)
        self.assertEqual(self.assert_ledger_is_truth("jack"), sum(files.values()))
        again, run = self.run_stage_exit(env, *stage_args(self.shm, "media", "acct", src,
                                                          "fake:media", self.work,
                                                          "--command", "copy",
                                                          "--extra", "--error-on-no-transfer"))
        self.assertEqual(again["rclone_exit"], 9, run.stderr[-2000:])
        self.assertEqual(again["result"], "nothing", again)
        self.assertEqual((again["files"], again["bytes"]), (0, 0))
        self.assertEqual(self.assert_ledger_is_truth("jack"), sum(files.values()))
        self.assertEqual(ledger_row(self.shm, "media", "acct")["files"], len(files))

    def test_rclone_fatal_exit_7_is_fatal_and_keeps_what_was_counted(self):
        # rclone exits 7 on a fatal error (an account suspended, say), which the fake remote
        # cannot make the real rclone report: a wrapper runs the real rclone for the whole
        # move and then exits 7 itself, so the files the real rclone logged are still there
        # to be counted (and the in-flight check's lsjson goes straight to the real rclone).
        fake = self.start_fake(kate=AMPLE)
        src, files = self.source(8, seed=12, max_size=200 << 10, dirs=2)
        wrapper = os.path.join(self.work, "rclone-exit-7")
        with open(wrapper, "w") as f:
            f.write("""#!/bin/sh
case " $* " in *" lsjson "*) exec %s "$@";; esac
%s "$@"
exit 7
""" % (RCLONE, RCLONE))
        os.chmod(wrapper, 0o755)
        outcome, run = self.run_stage_exit(fake.remote_env("fake", "kate"),
                                           *stage_args(self.shm, "media", "acct", src,
                                                       "fake:media", self.work,
                                                       "--rclone", wrapper))
        self.assertEqual(outcome["rclone_exit"], 7, run.stderr[-2000:])
        self.assertEqual(outcome["result"], "fatal", outcome)
        self.assertEqual(outcome["files"], len(files))
        self.assertEqual(self.assert_ledger_is_truth("kate"), sum(files.values()))

    def test_other_rclone_exit_codes_are_failed(self):
        # The real rclone: an unknown flag is a usage error, exit 1, before any transfer.
        fake = self.start_fake(liam=AMPLE)
        src, files = self.source(3, seed=13, max_size=50 << 10, dirs=0)
        outcome, run = self.run_stage_exit(fake.remote_env("fake", "liam"),
                                           *stage_args(self.shm, "media", "acct", src,
                                                       "fake:media", self.work,
                                                       "--extra", "--no-such-flag-cplow"))
        self.assertEqual(outcome["rclone_exit"], 1, run.stderr[-2000:])
        self.assertEqual(outcome["result"], "failed", outcome)
        self.assertEqual(self.assert_ledger_is_truth("liam"), 0)
        self.assertEqual(sorted(os.listdir(src)), sorted(files), "a failed stage moved files")

    # --- what rclone inherits -------------------------------------------------------------

    def test_rclone_starts_with_no_ignored_or_blocked_signals(self):
        # The worker's parent ignores SIGINT and SIGHUP and blocks SIGTERM and SIGUSR2, all of
        # which survive fork and exec; rclone must still start clean, or it could not be
        # stopped. tests/sigstate_exec stands in for rclone: it records its own SigIgn and
        # SigBlk, then execs the real rclone (a shell script would clear the mask itself).
        fake = self.start_fake(mona=AMPLE)
        src, files = self.source(5, seed=14, max_size=100 << 10, dirs=0)
        records = os.path.join(self.work, "sigstate")
        os.makedirs(records)
        wrapper = os.path.join(BUILD, "tests/sigstate_exec")
        recorder_env = {"SIGSTATE_DIR": records, "SIGSTATE_EXEC": RCLONE}

        def hostile():
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGHUP, signal.SIG_IGN)
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGUSR2})

        def recorded():
            out = []
            for name in sorted(n for n in os.listdir(records) if not n.endswith(".tmp")):
                with open(os.path.join(records, name)) as f:
                    fields = dict(l.split(":") for l in f.read().split("\n") if l)
                out.append({k: int(v, 16) for k, v in fields.items()})
                os.unlink(os.path.join(records, name))
            return out

        # The recorder itself sees what it inherits: run straight from the hostile parent,
        # it reports those very signals (so a clean record below is the worker's doing).
        subprocess.run([wrapper, "version"], preexec_fn=hostile, check=True,
                       stdout=subprocess.DEVNULL, env=dict(os.environ, **recorder_env))
        control = recorded()
        bit = lambda s: 1 << (s - 1)
        self.assertEqual(control, [{"SigIgn": bit(signal.SIGINT) | bit(signal.SIGHUP),
                                    "SigBlk": bit(signal.SIGTERM) | bit(signal.SIGUSR2)}])

        full = dict(os.environ)
        full.update(fake.remote_env("fake", "mona"))
        full.update(recorder_env)
        run = subprocess.run(stage_args(self.shm, "media", "acct", src, "fake:media", self.work,
                                        "--rclone", wrapper),
                             preexec_fn=hostile, capture_output=True, text=True, env=full,
                             timeout=300)
        self.assertEqual(run.returncode, 0, run.stderr[-2000:])
        got = recorded()
        self.assertTrue(got, "the wrapper never ran: " + run.stderr[-2000:])
        for state in got:
            self.assertEqual(state, {"SigIgn": 0, "SigBlk": 0},
                             "rclone inherited ignored/blocked signals (hex masks as ints)")
        self.assertEqual(self.assert_ledger_is_truth("mona"), sum(files.values()))

    # --- SIGINT before any file is done ---------------------------------------------------

    def test_sigint_during_the_listing_or_before_the_first_copied_line(self):
        # The random-moment runs above signal only once uploads are under way. Here the
        # SIGINT lands as soon as the worker can take it (its handler in place, so the
        # stage is in its own listing of a source of 1,500 files), or once rclone runs but
        # before any file is done (larger files, the fake remote slowed down).
        fake = self.start_fake(nina=AMPLE)
        env = fake.remote_env("fake", "nina")
        landed = {"before rclone ran": 0, "rclone running, no file done": 0}
        for run in range(6):
            src = os.path.join(self.work, "early-%d" % run)
            if run % 2 == 0:  # many small files: a listing that takes a while
                make_tree(src, 1500, seed=200 + run, min_size=1024, max_size=16 << 10, dirs=30)
            else:  # fewer, larger, slowed files: none done for a while after rclone starts
                make_tree(src, 40, seed=200 + run, min_size=256 << 10, max_size=1 << 20, dirs=4)
            fake.set_delay(20)
            p = self.start_stage(env, stage_args(self.shm, "media", "acct", src,
                                                 "fake:early%d" % run, self.work))
            if run % 2 == 0:
                wait_for("the worker's SIGINT handler",
                         lambda: _catches(p.pid, signal.SIGINT) or p.poll() is not None,
                         timeout=30, step=0.0005)
            else:
                wait_for("rclone to start",
                         lambda: child_named(p.pid, "rclone") or p.poll() is not None,
                         timeout=60, step=0.001)
            rclone_ran = child_named(p.pid, "rclone") is not None
            nothing_done = (ledger_bytes(self.shm, "media", "acct") == 0
                            and fake.accepted("nina") == 0)
            self.assertIsNone(p.poll(), "the stage ended before the signal")
            self.assertTrue(nothing_done, "run %d: a file was done before the signal" % run)
            p.send_signal(signal.SIGINT)
            landed["rclone running, no file done" if rclone_ran else "before rclone ran"] += 1
            out, err = p.communicate(timeout=120)
            fake.set_delay(0)
            wait_for("uploads in flight to end", lambda: fake.truth()["in_progress"] == 0)
            self.assertEqual(p.returncode, 5, "run %d: %s" % (run, err[-2000:]))
            outcome = [json.loads(l) for l in out.splitlines() if l.startswith("{")]
            self.assertTrue(outcome, err[-2000:])
            self.assertEqual(outcome[-1]["result"], "interrupted", outcome[-1])
            self.assertEqual(outcome[-1]["malformed_lines"], 0)
            self.assertEqual(outcome[-1]["bytes"], self.assert_ledger_is_truth("nina"))
        self.assertGreater(landed["before rclone ran"], 0, landed)
        sys.stderr.write("\nearly SIGINT runs: %s\n" % landed)


def _catches(pid, sig):
    """Whether pid has a handler for sig (its SigCgt mask in /proc)."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("SigCgt:"):
                    return bool(int(line.split()[1], 16) & (1 << (sig - 1)))
    except FileNotFoundError:
        pass
    return False


def _pgid_ok(pid):
    try:
        return os.getpgid(pid) == pid
    except ProcessLookupError:
        return False


if __name__ == "__main__":
    unittest.main(verbosity=2)
