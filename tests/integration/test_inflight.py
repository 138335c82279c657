"""The in-flight check, audited (issue 13): what a cut or crashed stage counts and removes.

The real rclone against the fake remote; the fake's accepted bytes per user are the truth, and
what it stores is what the remote holds. Where rclone must crash or exit by itself at a
moment, the fake holds the reply to an upload it has taken whole (reply_delay), so the file is
on the remote while rclone has not logged it: exactly the file only the check can count.
"""
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import tempfile
import time
import unittest

from harness import (BUILD, RCLONE, FakeRemote, child_named, children, ledger_bytes,
                     make_tree, popen, run_stage, stage_args, unlink_shm, wait_for)

CPLOW = os.path.join(BUILD, "supervisor/cplow")
INSPECT = os.path.join(BUILD, "shm/cplow-inspect")
LONG_AGO = 1704067200  # 2024-01-01: a file uploaded on an earlier day


def write_random(path, size, seed):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(random.Random(seed).randbytes(size))


def digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def worker_of(cplow):
    """The cplow child that has an rclone child of its own."""
    return next((k for k, comm in children(cplow) if comm == "cplow" and
                 child_named(k, "rclone")), None)


def files_in(root):
    return sorted(os.path.relpath(os.path.join(d, f), root)
                  for d, _, fs in os.walk(root) for f in fs)


class InFlightTest(unittest.TestCase):
    def setUp(self):
        self.work = tempfile.mkdtemp(prefix="cplow-inflight-")
        self.shm = "/cplow-if-%d-%d" % (os.getpid(), random.randrange(1 << 30))
        self.fake = None
        self.procs = []
        self.config = os.path.join(self.work, "config.json")

    def tearDown(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        if self.fake:
            try:
                os.kill(self.fake.proc.pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
            self.fake.stop()
        unlink_shm(self.shm)
        if os.path.exists(self.config):
            state = subprocess.run([INSPECT, "--config", self.config, "--json"],
                                   capture_output=True, text=True)
            if state.returncode == 0:
                unlink_shm(json.loads(state.stdout)["ledger"])
        shutil.rmtree(self.work, ignore_errors=True)

    def start_fake(self, *users):
        self.fake = FakeRemote({u: ("pw-" + u, 0) for u in users}, self.work)
        return self.fake

    def start(self, args, env):
        p = popen(args, env)
        self.procs.append(p)
        return p

    def outcome_of(self, p, timeout=180):
        out, err = p.communicate(timeout=timeout)
        lines = [json.loads(l) for l in out.splitlines() if l.startswith("{")]
        self.assertTrue(lines, "no outcome (exit %d): %s" % (p.returncode, err[-3000:]))
        return lines[-1], err

    def settle_fake(self):
        self.fake.set_delay(0)
        self.fake.set_reply_delay(0)
        wait_for("uploads in flight to end", lambda: self.fake.truth()["in_progress"] == 0)

    def assert_ledger_is_truth(self, user, account="acct"):
        truth = self.fake.accepted(user)
        got = ledger_bytes(self.shm, "media", account)
        self.assertEqual(got, truth, "ledger %d != the remote's accepted bytes %d" % (got, truth))
        return truth

    # --- cplow itself, as a user runs it --------------------------------------------------

    def write_config(self, src, command="move"):
        cfg = {
            "core": {"dry_run": False},
            "remotes": {"media": {
                "upload_folder": src, "upload_remote": "fake1:/Media",
                "rclone_command": command, "remove_empty_dir_depth": 1,
                "rclone_extras": {"--retries": 1, "--low-level-retries": 1}}},
            "uploader": {"media": {"check_interval": 1, "max_size_gb": 0,
                                   "rotate_remotes": ["fake1"]}},
            "quota": {"daily_bytes": 1 << 30, "min_free_bytes": 1,
                      "continue_min_bytes": 256 << 10},
        }
        with open(self.config, "w") as f:
            json.dump(cfg, f)

    def cplow_ledger(self):
        state = subprocess.run([INSPECT, "--config", self.config, "--json"],
                               capture_output=True, text=True, timeout=30)
        self.assertEqual(state.returncode, 0, state.stderr)
        return json.loads(state.stdout)

    def cplow_used(self):
        rows = self.cplow_ledger()["uploaders"].get("media", [])
        return sum(r["used_bytes"] for r in rows)

    def test_a_new_version_of_a_file_the_remote_holds_is_kept_when_ctrl_c_cuts_its_upload(self):
        # The scenario: a remote that keeps modification times (WebDAV as ownCloud)
        # holds show/ep.mkv from 2024; the local file of that name is a new version of the
        # same size; Ctrl-C mid-upload. rclone replaces it (the times differ); the cut leaves
        # the old version on the remote, and the local file must stay, uncounted.
        fake = self.start_fake("a1")
        size = 8 << 20
        old = fake.stored("a1", "Media/show/ep.mkv")
        write_random(old, size, seed=1)
        os.utime(old, (LONG_AGO, LONG_AGO))
        old_digest = digest(old)
        src = os.path.join(self.work, "media")
        local = os.path.join(src, "show", "ep.mkv")
        write_random(local, size, seed=2)
        new_digest = digest(local)
        self.write_config(src)
        fake.set_delay(40)  # 8 MiB in 128 chunks: ~5 s of upload
        p = self.start([CPLOW, "--config", self.config, "upload"],
                       fake.remote_env("fake1", "a1", vendor="owncloud"))
        wait_for("the new version's upload under way",
                 lambda: fake.truth()["users"]["a1"]["in_progress_bytes"] > (1 << 20)
                 or p.poll() is not None, timeout=60)
        self.assertIsNone(p.poll(), "cplow ended before the cut")
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=120)
        self.settle_fake()
        self.assertEqual(p.returncode, 130, err[-3000:])
        self.assertTrue(os.path.exists(local), "the new local version was deleted:\n" + err[-3000:])
        self.assertEqual(digest(local), new_digest)
        self.assertEqual(digest(old), old_digest, "the remote's copy changed")
        self.assertEqual(fake.accepted("a1"), 0)
        self.assertEqual(self.cplow_used(), 0, "counted bytes the remote never accepted")
        self.assertNotIn("removed show/ep.mkv", err)

    def test_files_plex_opens_during_a_cut_copy_stage_are_not_counted_again(self):
        # A library uploaded on an earlier day stays in the source under `copy`; Plex (here:
        # this test) reads it while the next stage uploads a new file, and that stage is cut.
        # On a remote without modification times and on one with them.
        for vendor in ("other", "owncloud"):
            with self.subTest(vendor=vendor):
                if self.fake:
                    self.fake.stop()
                unlink_shm(self.shm)
                self.shm = "/cplow-if-%d-%d" % (os.getpid(), random.randrange(1 << 30))
                fake = self.start_fake("plex" + vendor)
                user = "plex" + vendor
                env = fake.remote_env("fake", user, vendor=vendor)
                src = os.path.join(self.work, "lib-" + vendor)
                library = make_tree(src, 8, seed=30, min_size=64 << 10, max_size=256 << 10,
                                    dirs=2)
                outcome, run = run_stage(env, *stage_args(self.shm, "media", "acct", src,
                                                          "fake:lib", self.work,
                                                          "--command", "copy"))
                self.assertEqual(outcome["result"], "done", run.stderr[-2000:])
                self.assertEqual(self.assert_ledger_is_truth(user), sum(library.values()))
                if vendor == "other":
                    # Received on an earlier day (this remote shows when it got a file).
                    for rel in library:
                        os.utime(fake.stored(user, "lib/" + rel), (LONG_AGO, LONG_AGO))
                write_random(os.path.join(src, "new", "big.bin"), 6 << 20, seed=31)
                fake.set_delay(40)
                p = self.start(stage_args(self.shm, "media", "acct", src, "fake:lib",
                                          self.work, "--command", "copy"), env)
                wait_for("the new file's upload under way",
                         lambda: fake.truth()["users"][user]["in_progress_bytes"] > 0
                         or p.poll() is not None, timeout=60)
                for rel in library:  # Plex scans the library
                    with open(os.path.join(src, rel), "rb") as f:
                        f.read(4096)
                self.assertIsNone(p.poll(), "the stage ended before the cut")
                p.send_signal(signal.SIGINT)
                outcome, err = self.outcome_of(p)
                self.settle_fake()
                self.assertEqual(outcome["result"], "interrupted", err[-3000:])
                self.assertEqual(outcome["reconciled_files"], 0, err[-3000:])
                self.assert_ledger_is_truth(user)

    # --- rclone ending by itself, not cleanly ---------------------------------------------

    def held_reply_stage(self, user, *extra, vendor="other"):
        """A stage of one file that the remote takes whole but does not answer for."""
        fake = self.start_fake(user)
        src = os.path.join(self.work, "src-" + user)
        write_random(os.path.join(src, "whole.bin"), 2 << 20, seed=40)
        fake.set_reply_delay(60000)
        p = self.start(stage_args(self.shm, "media", "acct", src, "fake:media", self.work,
                                  "--sandbox", *extra), fake.remote_env("fake", user, vendor))
        wait_for("the file whole on the remote, its reply held",
                 lambda: fake.truth()["users"][user]["accepted_files"] == 1
                 or p.poll() is not None, timeout=60)
        return fake, src, p

    def test_rclones_own_fatal_exit_7_checks_what_was_in_flight(self):
        # --max-duration with the hard cutoff (rclone's default without --max-transfer) is a
        # fatal error: rclone cancels the transfers in flight and exits 7, by itself. No RC
        # poll comes before it, and the remote keeps modification times (so a file only some
        # process opened is not asked about): the worker knows the file was rclone's from
        # rclone's open files alone (read inside the sandbox).
        fake, src, p = self.held_reply_stage("fatal", "--extra", "--max-duration=3s",
                                             "--rc-poll-ms", "600000", vendor="owncloud")
        outcome, err = self.outcome_of(p)
        self.settle_fake()
        self.assertEqual(outcome["rclone_exit"], 7, err[-3000:])
        self.assertEqual(outcome["result"], "fatal")
        self.assertEqual(outcome["reconciled_files"], 1, err[-3000:])
        self.assertEqual(self.assert_ledger_is_truth("fatal"), 2 << 20)
        self.assertEqual(files_in(src), [], "move left the arrived file behind")

    def test_a_crashing_rclone_exit_2_checks_what_was_in_flight(self):
        # SIGQUIT makes the Go runtime dump its goroutines and exit 2, as a panic does.
        fake, src, p = self.held_reply_stage("panic")
        rclone = wait_for("the rclone child", lambda: child_named(p.pid, "rclone"))
        os.kill(rclone, signal.SIGQUIT)
        outcome, err = self.outcome_of(p)
        self.settle_fake()
        self.assertEqual(outcome["rclone_exit"], 2, err[-3000:])
        self.assertEqual(outcome["result"], "failed")
        self.assertEqual(outcome["reconciled_files"], 1, err[-3000:])
        self.assertEqual(self.assert_ledger_is_truth("panic"), 2 << 20)

    # --- late files (in the source after the listing) -------------------------------------

    def late_source(self, name, seed):
        """A source of 4 files, and 3 more in a spool that late_wrapper brings in late."""
        src = os.path.join(self.work, name)
        early = make_tree(src, 4, seed=seed, max_size=100 << 10, dirs=2)
        spool = os.path.join(self.work, "spool")
        late = make_tree(os.path.join(spool, "late"), 3, seed=seed + 1, min_size=10 << 10,
                         max_size=50 << 10, dirs=0)
        return src, spool, sum(early.values()) + sum(late.values()), len(late)

    def late_wrapper(self, src, spool, body):
        """An rclone that, for the move, first brings files into the source (after the
        worker's listing, before rclone's), then runs the real rclone as body says."""
        wrapper = os.path.join(self.work, "rclone-late")
        with open(wrapper, "w") as f:
            f.write("""#!/bin/sh
W=%s
case " $* " in
  *" move "*) if [ -d %s ]; then cp -a %s/. %s/ && rm -rf %s; fi;;
esac
%s
exec %s "$@"
""" % (self.work, spool, spool, src, spool, body, RCLONE))
        os.chmod(wrapper, 0o755)
        return wrapper

    def test_late_files_survive_a_failed_lsjson_round(self):
        fake = self.start_fake("late1")
        src, spool, all_bytes, late_count = self.late_source("src", seed=50)
        wrapper = self.late_wrapper(src, spool, """case " $* " in
  *" lsjson "*) if [ ! -e $W/failed-once ]; then : > $W/failed-once; exit 1; fi;;
esac""")
        outcome, run = run_stage(fake.remote_env("fake", "late1"),
                                 *stage_args(self.shm, "media", "acct", src, "fake:media",
                                             self.work, "--sandbox", "--rclone", wrapper))
        self.assertTrue(os.path.exists(os.path.join(self.work, "failed-once")),
                        "no lsjson round failed:\n" + run.stderr[-3000:])
        self.assertEqual(outcome["result"], "done", run.stderr[-3000:])
        self.assertEqual(outcome["unknown_files"], late_count)
        self.assertEqual(self.assert_ledger_is_truth("late1"), all_bytes)

    def test_late_files_of_a_killed_worker_are_counted_by_the_supervisor(self):
        # rclone copies the late files and ends; its worker is killed before it can look them
        # up on the remote (the wrapper holds rclone's log open, so the worker is still
        # reading it). The stage slot has them; the supervisor's check counts them.
        fake = self.start_fake("a1")
        src, spool, all_bytes, _ = self.late_source("media", seed=60)
        ready = os.path.join(self.work, "worker-pid")
        wrapper = self.late_wrapper(src, spool, """case " $* " in
  *" move "*) if [ ! -e $W/held ]; then : > $W/held
      %s "$@"; echo $PPID > %s.tmp; mv %s.tmp %s; exec sleep 600; fi;;
esac""" % (RCLONE, ready, ready, ready))
        self.write_config(src)
        with open(self.config) as f:
            cfg = json.load(f)
        cfg["core"]["rclone_binary_path"] = wrapper
        with open(self.config, "w") as f:
            json.dump(cfg, f)
        p = self.start([CPLOW, "--config", self.config, "upload"],
                       fake.remote_env("fake1", "a1"))
        wait_for("rclone done, its worker still reading",
                 lambda: os.path.exists(ready) or p.poll() is not None, timeout=120)
        self.assertIsNone(p.poll(), "cplow ended first")
        with open(ready) as f:
            worker = int(f.read())
        os.kill(worker, signal.SIGKILL)
        out, err = p.communicate(timeout=240)
        self.settle_fake()
        self.assertEqual(p.returncode, 0, err[-3000:])
        self.assertIn("was killed by signal 9", err)
        truth = fake.accepted("a1")
        self.assertEqual(truth, all_bytes)
        self.assertEqual(self.cplow_used(), truth, err[-3000:])

    def hidden_log_wrapper(self, ready):
        """An rclone whose first upload runs to its end with its log kept from the worker (no
        Copied line, no RC address: as if the worker died before reading them) and that then
        holds the worker's pipe open. The worker's looks among rclone's open files see this
        shell's, never rclone's: every look comes too late, as one does for a file rclone opens,
        uploads and closes between two looks. Later calls are the real rclone."""
        wrapper = os.path.join(self.work, "rclone-hidden")
        with open(wrapper, "w") as f:
            f.write("""#!/bin/sh
W=%s
case " $* " in
  *" move "*|*" copy "*) if [ ! -e $W/held ]; then : > $W/held
      echo '{"level":"info","msg":"the rest of the log is kept from the worker"}' >&2
      %s "$@" 2>>$W/hidden.log; echo $PPID > %s.tmp; mv %s.tmp %s; exec sleep 600; fi;;
esac
exec %s "$@"
""" % (self.work, RCLONE, ready, ready, ready, RCLONE))
        os.chmod(wrapper, 0o755)
        return wrapper

    def test_files_rclone_uploaded_before_its_killed_worker_looked_are_counted(self):
        # The crash matrix's trial 30: rclone opens small files, uploads them (and, under move,
        # removes them) between two of the worker's looks at its open files, and the worker is
        # SIGKILLed before it reads their Copied lines. Only the open-watch saw them; the stage
        # slot must hold them for the supervisor's check. Under copy, a library the remote got
        # long ago, read by Plex (this test) in the same moments, is not counted again.
        cases = (("move", "other"), ("move", "owncloud"), ("copy", "other"))
        for command, vendor in cases:
            with self.subTest(command=command, vendor=vendor):
                if self.fake:
                    self.fake.stop()
                for name in ("held", "worker-pid", "hidden.log", "sa_quota_cache.json",
                             "sa_quota_cache.json.prev"):
                    if os.path.exists(os.path.join(self.work, name)):
                        os.unlink(os.path.join(self.work, name))
                if os.path.exists(self.config):
                    unlink_shm(self.cplow_ledger()["ledger"])
                user = command + vendor
                fake = self.start_fake(user)
                src = os.path.join(self.work, "media-" + user)
                new = make_tree(src, 6, seed=70, min_size=8 << 10, max_size=96 << 10, dirs=2)
                library = {}
                if command == "copy":
                    library = make_tree(os.path.join(src, "library"), 4, seed=71,
                                        min_size=16 << 10, max_size=64 << 10, dirs=0)
                    for rel in library:
                        stored = fake.stored(user, "Media/library/" + rel)
                        os.makedirs(os.path.dirname(stored), exist_ok=True)
                        shutil.copy2(os.path.join(src, "library", rel), stored)
                        os.utime(stored, (LONG_AGO, LONG_AGO))
                ready = os.path.join(self.work, "worker-pid")
                self.write_config(src, command)
                with open(self.config) as f:
                    cfg = json.load(f)
                cfg["core"]["rclone_binary_path"] = self.hidden_log_wrapper(ready)
                with open(self.config, "w") as f:
                    json.dump(cfg, f)
                p = self.start([CPLOW, "--config", self.config, "upload"],
                               fake.remote_env("fake1", user, vendor=vendor))
                wait_for("rclone done, its worker still reading",
                         lambda: os.path.exists(ready) or p.poll() is not None, timeout=120)
                self.assertIsNone(p.poll(), "cplow ended first")
                for rel in library:  # Plex scans the library
                    with open(os.path.join(src, "library", rel), "rb") as f:
                        f.read(4096)
                with open(ready) as f:
                    os.kill(int(f.read()), signal.SIGKILL)
                out, err = p.communicate(timeout=240)
                self.settle_fake()
                self.assertEqual(p.returncode, 0, err[-3000:])
                self.assertIn("was killed by signal 9", err)
                truth = fake.accepted(user)
                self.assertEqual(truth, sum(new.values()), "rclone did not upload the files")
                self.assertEqual(self.cplow_used(), truth, err[-3000:])
                if command == "move":
                    self.assertEqual(files_in(src), [], "the moved files came back")

    # --- a hung remote and the supervisor -------------------------------------------------

    def test_a_hung_remote_leaves_the_supervisor_beating_and_answering_sigterm(self):
        # A worker dies while a file is in flight and the remote hangs (stopped: connections
        # open, nothing answered). The check of its files runs off the supervisor's loop: the
        # heartbeat stays fresh and SIGTERM is answered at once; the file is charged.
        fake = self.start_fake("a1")
        src = os.path.join(self.work, "media")
        write_random(os.path.join(src, "big.bin"), 8 << 20, seed=70)
        self.write_config(src)
        fake.set_delay(40)
        p = self.start([CPLOW, "--config", self.config, "upload"],
                       fake.remote_env("fake1", "a1"))
        wait_for("the upload under way",
                 lambda: fake.truth()["users"]["a1"]["in_progress_bytes"] > (1 << 20)
                 or p.poll() is not None, timeout=60)
        worker = wait_for("the worker", lambda: worker_of(p.pid))
        os.kill(fake.proc.pid, signal.SIGSTOP)
        os.kill(worker, signal.SIGKILL)
        killed = time.monotonic()
        # Ten seconds with the check hanging: the heartbeat moves all along.
        while time.monotonic() - killed < 10:
            state = self.cplow_ledger()
            self.assertTrue(state["running"], "the supervisor's heartbeat went stale")
            self.assertLess(time.time() - state["last_seen_alive"], 3.5)
            self.assertIsNone(p.poll())
            time.sleep(0.5)
        asked = time.monotonic()
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=60)
        self.assertLess(time.monotonic() - asked, 10, "SIGTERM took too long:\n" + err[-3000:])
        self.assertEqual(p.returncode, 143, err[-3000:])
        os.kill(fake.proc.pid, signal.SIGCONT)
        self.settle_fake()
        self.assertIn("counted as uploaded without the remote's word", err)
        # Never under: what the remote took is counted, and the file in doubt is charged.
        self.assertGreaterEqual(self.cplow_used(), fake.accepted("a1"))
        self.assertTrue(os.path.exists(os.path.join(src, "big.bin")), "removed without proof")

    # --- rclone's log kept where cplow reads it -------------------------------------------

    def test_an_inherited_rclone_log_file_variable_does_not_hide_the_copied_lines(self):
        fake = self.start_fake("logs")
        src = os.path.join(self.work, "src")
        files = make_tree(src, 5, seed=80, max_size=100 << 10, dirs=0)
        env = fake.remote_env("fake", "logs")
        env["RCLONE_LOG_FILE"] = os.path.join(self.work, "rclone.log")
        outcome, run = run_stage(env, *stage_args(self.shm, "media", "acct", src, "fake:media",
                                                  self.work))
        self.assertEqual(outcome["result"], "done", run.stderr[-3000:])
        self.assertEqual(outcome["files"], len(files))
        self.assertEqual(self.assert_ledger_is_truth("logs"), sum(files.values()))


if __name__ == "__main__":
    unittest.main(verbosity=2)
