"""The ledger's promise where processes die in awkward orders, windows and capacities change
under a live ledger, the file system refuses links, and other processes take over a pid or the
shared object's name (issue 13, items 1, 4, 7 and 14).

Every test runs the real `cplow` (real rclone) against the fake quota remote, with the three
rotate_remotes accounts of test_supervisor_process (fake1..fake3, a1..a3). The fake's accepted
bytes per user are the truth. Every wait is a loop with a deadline.
"""
import ctypes
import json
import os
import re
import signal
import subprocess
import time
import unittest

from harness import BUILD, make_tree, unlink_shm, wait_for
from test_supervisor_process import (ACCOUNTS, CPLOW, INSPECT, QUOTA, SupervisorTest, _stat,
                                     alive, descendants)

DENY_LINK = os.path.join(BUILD, "tests", "deny_link")
LIBC = ctypes.CDLL(None, use_errno=True)
PR_SET_CHILD_SUBREAPER = 36
SLOW_MS = 400


class PromiseTest(SupervisorTest):
    def small_tree(self, count, seed):
        """Files of one 64 KiB chunk or less: the fake sleeps SLOW_MS after the last chunk of
        each before it accepts the file, so every upload in flight at a kill arrives whole
        and only the worker's in-flight check, after its supervisor is gone, counts it."""
        self.files = make_tree(self.src, count, seed, min_size=16 << 10, max_size=60 << 10)
        return self.files

    def tree_of(self, run):
        """{pid: starttime} of cplow and every descendant now."""
        out = {}
        for pid in [run.pid] + descendants(run.pid):
            st = _stat(pid)
            if st:
                out[pid] = st[4]
                self.strays.append((pid, st[4]))
        return out

    def wait_gone(self, procs, timeout=40):
        def left():
            return [p for p, start in procs.items()
                    if (st := _stat(p)) and st[4] == start and st[1] not in ("Z", "X")]
        wait_for("every process of the killed cplow to end", lambda: not left(),
                 timeout=timeout, step=0.05)

    def wait_in_flight(self, n):
        wait_for("%d uploads in flight" % n, lambda: self.fake.truth()["in_progress"] >= n,
                 timeout=30, step=0.01)

    def kill_mid_upload(self, seed, before_kill=None):
        """A slow upload of small files, cplow SIGKILLed with uploads in flight (after
        before_kill(run, procs), if given). Returns (config, run, {pid: starttime})."""
        self.small_tree(60, seed=seed)
        cfg = self.write_config(self.config_dict())
        self.fake.set_delay(SLOW_MS)
        run = self.cplow(cfg, "upload")
        self.wait_uploading(cfg, run)
        self.wait_in_flight(2)
        procs = self.tree_of(run)
        if before_kill:
            before_kill(run, procs)
        os.kill(run.pid, signal.SIGKILL)
        run.p.wait()
        return cfg, run, procs

    def assert_file_is_ledger_is_truth(self, cfg, what):
        """Once nothing of cplow runs: the file equals the shared ledger, and both the truth."""
        on_file, live = self.file_bytes(cfg), self.ledger(cfg)
        self.assertEqual(on_file, {a: b for a, b in live.items()},
                         "%s: the ledger file %s lags the shared ledger %s"
                         % (what, on_file, live))
        self.assert_equals_truth(live, what + ": the shared ledger")

    def finish_after_losing_shm(self, cfg):
        """/dev/shm lost (a reboot): the next run restores from the file, finishes, and
        nothing is lost or counted twice."""
        name = self.ledger_name(cfg)
        self.assertTrue(name)
        unlink_shm(name)
        self.fake.set_delay(0)
        again = self.cplow(cfg, "upload")
        self.assertEqual(again.wait(180), 0, again.log()[-4000:])
        self.assertIn("ledger restored from", again.log())
        self.assert_equals_truth(self.ledger(cfg), "after the restore: the ledger")
        self.assert_equals_truth(self.file_bytes(cfg), "after the restore: the ledger file")
        self.assert_everything_moved()


# ---- item 1: whatever a surviving process counts reaches the file -------------------------------

class SurvivorsReachTheFileTest(PromiseTest):
    def test_kill_9_of_cplow_with_uploads_in_flight_leaves_the_file_equal_to_the_ledger(self):
        # The worker gets SIGTERM from the kernel and goes on counting for seconds (the files
        # in flight arrive whole and its in-flight check counts them); the flusher used to
        # write once at its own SIGTERM and leave all that in shared memory only.
        cfg, run, procs = self.kill_mid_upload(101)
        self.wait_gone(procs)
        # What the file used to miss: files counted after cplow was gone.
        self.assertTrue(run.log_lines("arrived whole"), run.log()[-3000:])
        self.assert_file_is_ledger_is_truth(cfg, "after the kill")
        self.assertTrue(run.log_lines("no worker of cplow (pid %d) is left" % run.pid),
                        run.log()[-3000:])
        self.finish_after_losing_shm(cfg)

    def test_flusher_killed_then_cplow_killed_the_last_worker_writes_the_file(self):
        # The flusher dies first; cplow would restart it after a second, but is killed before
        # that: nobody but the worker itself is left to write what it counts after.
        def kill_the_flusher(run, procs):
            worker = self.worker_of(run.pid)
            self.assertIsNotNone(worker)
            # The flusher stays in cplow's process group; a worker makes its own.
            flusher = [p for p in procs if p not in (run.pid, worker[0], worker[1])
                       and (st := _stat(p)) and st[0] == "cplow" and st[3] == run.pid]
            self.assertEqual(len(flusher), 1, procs)
            os.kill(flusher[0], signal.SIGKILL)
            # cplow restarts it a second after its death at the soonest: the kill comes first.
            wait_for("the flusher's death in the log",
                     lambda: run.log_lines("the flusher died"), timeout=10, step=0.005)
        cfg, run, procs = self.kill_mid_upload(102, kill_the_flusher)
        self.wait_gone(procs)
        self.assert_file_is_ledger_is_truth(cfg, "after the kills")
        self.assertTrue(run.log_lines("this worker wrote the ledger file"), run.log()[-3000:])
        self.finish_after_losing_shm(cfg)

    def test_a_new_cplow_meets_the_old_ones_worker_and_the_file_ends_right(self):
        # The old flusher steps aside for the new cplow's; the old worker's last counts still
        # reach the file, and the new cplow waits for its account.
        cfg, run, procs = self.kill_mid_upload(103)
        self.fake.set_delay(0)
        second = self.cplow(cfg, "upload")
        self.assertEqual(second.wait(180), 0, second.log()[-4000:])
        self.wait_gone(procs)
        self.assert_file_is_ledger_is_truth(cfg, "after both runs")
        # (A file the old worker had in flight can be uploaded by the new run too, on another
        # account: both uploads are counted, as the truth shows.)
        self.assertEqual([f for _, _, fs in os.walk(self.src) for f in fs], [])


# ---- item 4: a window or capacity change under a live ledger ------------------------------------

class WindowChangeTest(PromiseTest):
    def bytes_left(self, text, account):
        m = re.findall(r"stage \d+ on %s(?: \(\d of 3\))?: \w+, (\d+) bytes left" % account, text)
        self.assertTrue(m, "no stage planned on %s:\n%s" % (account, text[-3000:]))
        return int(m[-1])

    def window_of(self, cfg):
        out = subprocess.run([INSPECT, "--config", cfg, "--json"], capture_output=True,
                             text=True, timeout=30)
        self.assertEqual(out.returncode, 0, out.stderr)
        return json.loads(out.stdout)["window"]

    def dry_run(self, cfg):
        out = subprocess.run([CPLOW, "--config", cfg, "upload", "--dry-run"], env=self.env,
                             capture_output=True, text=True, timeout=120)
        self.assertEqual(out.returncode, 0, out.stderr[-3000:])
        return out.stdout + out.stderr

    def test_fixed_to_rolling_and_back_keeps_the_bytes_at_a_start_and_at_a_reload(self):
        self.small_tree(20, seed=104)
        config = self.config_dict()
        cfg = self.write_config(config)
        run = self.cplow(cfg, "upload")
        self.assertEqual(run.wait(120), 0, run.log()[-3000:])
        used = self.assert_equals_truth(self.ledger(cfg), "under fixed")["fake1"]
        self.assertGreater(used, 0)
        more = make_tree(self.src, 5, 105, min_size=16 << 10, max_size=60 << 10, dirs=0)
        # A start under rolling: the shared ledger lives on; its rows are converted.
        config["quota"]["window"] = "rolling"
        self.write_config(config, cfg)
        self.assertEqual(self.bytes_left(self.dry_run(cfg), "fake1"), QUOTA - used)
        self.assertEqual(self.window_of(cfg), "rolling")
        self.assertEqual(self.ledger(cfg)["fake1"], used)
        # And back to fixed at a start.
        config["quota"]["window"] = "fixed"
        self.write_config(config, cfg)
        self.assertEqual(self.bytes_left(self.dry_run(cfg), "fake1"), QUOTA - used)
        self.assertEqual(self.window_of(cfg), "fixed")
        # A reload from fixed to rolling: the stage planned after it sees the bytes.
        run = self.cplow(cfg, "run")
        wait_for("the first stage of the run", lambda: run.log_lines("stage 1 on fake1"),
                 timeout=60)
        first = self.bytes_left(run.log(), "fake1")
        # "stage 1 done": "uploader media: stage 1 " also matched the plan's line, and a look
        # at the stages before the worker took its slot found the run idle before it began.
        wait_for("the first upload to end",
                 lambda: run.log_lines("uploader media: stage 1 done"), timeout=60)
        wait_for("the run to go idle", lambda: not self.running_stages(cfg), timeout=60)
        used = self.assert_equals_truth(self.ledger(cfg), "before the reload")["fake1"]
        self.assertEqual(first, QUOTA - (used - sum(more.values())))
        make_tree(self.src, 3, 106, min_size=16 << 10, max_size=60 << 10, dirs=0)
        mark = len(run.log())
        config["quota"]["window"] = "rolling"
        self.write_config(config, cfg)
        run.p.send_signal(signal.SIGHUP)
        wait_for("a stage after the reload",
                 lambda: re.search(r"stage \d+ on fake1", run.log()[mark:]), timeout=60)
        self.assertEqual(self.bytes_left(run.log()[mark:], "fake1"), QUOTA - used)
        self.assertEqual(self.window_of(cfg), "rolling")
        run.p.send_signal(signal.SIGTERM)
        self.assertEqual(run.wait(60), 143, run.log()[-3000:])
        self.assert_equals_truth(self.ledger(cfg), "after the run")
        self.assert_equals_truth(self.file_bytes(cfg), "after the run: the file")

    def test_a_capacity_change_resizes_the_ledger_at_a_start_and_a_reload_refuses_it(self):
        self.small_tree(10, seed=107)
        config = self.config_dict(capacity=16)
        cfg = self.write_config(config)
        run = self.cplow(cfg, "upload")
        self.assertEqual(run.wait(120), 0, run.log()[-3000:])
        used = self.assert_equals_truth(self.ledger(cfg), "first run")
        config["quota"]["capacity"] = 64
        self.write_config(config, cfg)
        make_tree(self.src, 3, 108, min_size=16 << 10, max_size=60 << 10, dirs=0)
        run = self.cplow(cfg, "upload")
        self.assertEqual(run.wait(120), 0, run.log()[-3000:])
        self.assertTrue(run.log_lines("holds 64 accounts at most now"), run.log()[-3000:])
        truth = self.assert_equals_truth(self.ledger(cfg), "after the resize")
        self.assertGreaterEqual(truth["fake1"], used["fake1"])
        self.assert_equals_truth(self.file_bytes(cfg), "after the resize: the file")
        # A reload cannot resize: refused, and the old config stays.
        run = self.cplow(cfg, "run")
        wait_for("the run's first check", lambda: run.log_lines("uploader media"), timeout=60)
        config["quota"]["capacity"] = 128
        self.write_config(config, cfg)
        run.p.send_signal(signal.SIGHUP)
        refused = wait_for("the refusal", lambda: run.log_lines("SIGHUP: the new config is "
                                                                "refused"), timeout=10)
        self.assertIn("quota.capacity 128 differs from the running 64", refused[0])
        self.assertIsNone(run.p.poll())
        run.p.send_signal(signal.SIGTERM)
        self.assertEqual(run.wait(60), 143, run.log()[-3000:])


# ---- item 7: a directory that refuses hard links -------------------------------------------------

@unittest.skipUnless(os.access(DENY_LINK, os.X_OK), "tests/deny_link is not built")
class NoLinksTest(PromiseTest):
    def test_where_link_is_refused_the_file_and_its_prev_are_written_and_one_line_says_so(self):
        cfg = self.write_config(self.config_dict())
        # The shared ledger is made by a run with links (it is published with link() in
        # /dev/shm, a tmpfs, which always allows them); the next run's file writes have none.
        first = self.cplow(cfg, "upload")
        self.assertEqual(first.wait(60), 0, first.log()[-3000:])
        self.assertIsNotNone(self.file_bytes(cfg))
        self.small_tree(30, seed=109)
        self.fake.set_delay(50)
        started = time.time()
        run = self.cplow(cfg, "upload", wrap=(DENY_LINK,))
        self.assertEqual(run.wait(180), 0, run.log()[-4000:])
        self.assertEqual(run.log_lines("ERROR"), [], run.log()[-4000:])
        refused = run.log_lines("refuses hard links")
        self.assertEqual(len(refused), 1, run.log()[-4000:])
        self.assertIn("Operation not permitted", refused[0])
        self.assert_equals_truth(self.file_bytes(cfg), "the ledger file")
        with open(self.cache_path(cfg) + ".prev") as f:
            prev = json.load(f)
        with open(self.cache_path(cfg)) as f:
            current = json.load(f)
        # .prev was made by this run, without a link, and is not newer than the file (the last
        # write at the stop may rewrite an unchanged generation: then both hold the same).
        self.assertGreaterEqual(prev["_cplow"]["meta"]["written_at"], int(started))
        self.assertLessEqual(prev["_cplow"]["meta"]["generation"],
                             current["_cplow"]["meta"]["generation"])
        self.assert_everything_moved()


# ---- item 14: a reused pid, a squatted shared-memory name ----------------------------------------

@unittest.skipUnless(os.geteuid() == 0 and os.access("/proc/sys/kernel/ns_last_pid", os.W_OK),
                     "needs root to choose the next pid")
class PidReuseTest(PromiseTest):
    def spawn_with_pid(self, pid):
        """A `sleep` that gets exactly pid (ns_last_pid), or None after a few tries."""
        for _ in range(200):
            with open("/proc/sys/kernel/ns_last_pid", "w") as f:
                f.write(str(pid - 1))
            p = subprocess.Popen(["sleep", "600"])
            if p.pid == pid:
                return p
            p.kill()
            p.wait()
        return None

    def setUp(self):
        super().setUp()
        # The killed cplow's orphans come to this process, which reaps them: a pid is free for
        # another process only once reaped, and this machine's init may take its time.
        self.assertEqual(LIBC.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), 0)

    def tearDown(self):
        super().tearDown()
        LIBC.prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
        while True:
            try:
                if os.waitpid(-1, os.WNOHANG)[0] == 0:
                    break
            except ChildProcessError:
                break

    def reap(self, procs):
        def reaped():
            for p in procs:
                try:
                    os.waitpid(p, os.WNOHANG)
                except ChildProcessError:
                    pass
            return all(not os.path.exists("/proc/%d" % p) for p in procs)
        wait_for("the killed processes to be reaped", reaped, timeout=30)

    def kill_whole_tree(self, run):
        """The whole tree at once, as a power cut of cplow alone would: the slot stays
        RUNNING, with its pending files."""
        procs = self.tree_of(run)
        for p in procs:
            os.kill(p, signal.SIGSTOP)
        for p in procs:
            os.kill(p, signal.SIGKILL)
        run.p.wait()
        self.reap(procs)

    def test_a_stale_slot_whose_pid_another_process_got_is_released(self):
        self.tree(count=20, seed=110)
        cfg = self.write_config(self.config_dict())
        self.fake.set_delay(SLOW_MS)
        run = self.cplow(cfg, "upload")
        self.wait_uploading(cfg, run)
        stage = self.running_stages(cfg)[0]
        self.kill_whole_tree(run)
        self.assertEqual([s["pid"] for s in self.running_stages(cfg)], [stage["pid"]])
        impostor = self.spawn_with_pid(stage["pid"])
        if impostor is None:
            self.skipTest("could not get pid %d again" % stage["pid"])
        try:
            self.fake.set_delay(0)
            again = self.cplow(cfg, "upload")
            self.assertEqual(again.wait(180), 0, again.log()[-4000:])
            self.assertEqual(self.running_stages(cfg), [], "the stale slot is still held")
            self.assertTrue(again.log_lines("stage slot %d of dead worker %d released"
                                            % (stage["slot"], stage["pid"])),
                            again.log()[-4000:])
            self.assertTrue(alive(impostor.pid), "the impostor was touched")
        finally:
            impostor.kill()
            impostor.wait()
        left = [f for _, _, fs in os.walk(self.src) for f in fs]
        self.assertEqual(left, [])
        truth = self.truth()
        for remote, _ in ACCOUNTS:
            self.assertLessEqual(self.ledger(cfg).get(remote, 0), truth[remote])


    def test_a_dry_run_counts_a_dead_runs_arrived_files_but_deletes_none(self):
        # The whole tree killed mid-upload leaves its in-flight files pending in the slot; the
        # next cplow checks them on the remote. Under core.dry_run that check deleted the
        # local copies of those that arrived, as a real run's move would: a dry run deletes
        # nothing. It still counts them: the remote took their bytes.
        self.small_tree(60, seed=112)
        cfg = self.write_config(self.config_dict())
        self.fake.set_delay(SLOW_MS)
        run = self.cplow(cfg, "upload")
        self.wait_uploading(cfg, run)
        self.wait_in_flight(2)
        self.kill_whole_tree(run)
        self.assertTrue(self.running_stages(cfg), "no slot left by the killed tree")
        left = sorted(os.path.relpath(os.path.join(d, f), self.src)
                      for d, _, fs in os.walk(self.src) for f in fs)
        self.fake.set_delay(0)
        dry = self.config_dict()
        dry["core"]["dry_run"] = True
        self.write_config(dry, cfg)
        again = self.cplow(cfg, "upload")
        self.assertEqual(again.wait(180), 0, again.log()[-4000:])
        self.assertTrue(again.log_lines("unfinished files of the stage in slot"),
                        again.log()[-4000:])
        now = sorted(os.path.relpath(os.path.join(d, f), self.src)
                     for d, _, fs in os.walk(self.src) for f in fs)
        self.assertEqual(now, left, "the dry run deleted files from the source: "
                         + "\n".join(again.log_lines("in-flight check")))
        self.assert_equals_truth(self.ledger(cfg), "after the dry run's check: the ledger")


@unittest.skipUnless(os.geteuid() == 0, "needs root to act as another user")
class SquattedNameTest(PromiseTest):
    def test_an_object_another_user_made_first_is_refused_with_its_owner_named(self):
        self.small_tree(3, seed=111)
        cfg = self.write_config(self.config_dict())
        out = subprocess.run([INSPECT, "--config", cfg], capture_output=True, text=True,
                             timeout=30)
        name = re.search(r"no ledger (\S+):", out.stderr).group(1)
        path = "/dev/shm" + name
        pid = os.fork()
        if pid == 0:
            try:
                os.setgid(65534)
                os.setuid(65534)
                os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o644))
                os._exit(0)
            except BaseException:
                os._exit(1)
        _, status = os.waitpid(pid, 0)
        self.assertEqual(status, 0, "could not create %s as uid 65534" % path)
        try:
            t0 = time.monotonic()
            run = subprocess.run([CPLOW, "--config", cfg, "upload"], env=self.env,
                                 capture_output=True, text=True, timeout=60)
            self.assertLess(time.monotonic() - t0, 20)
            self.assertEqual(run.returncode, 2, run.stderr)
            errors = [l for l in run.stderr.splitlines() if "ERROR" in l]
            self.assertEqual(len(errors), 1, run.stderr)
            self.assertIn(path, errors[0])
            self.assertIn("uid 65534", errors[0])
            self.assertIn("mode 0644", errors[0])
            self.assertEqual(os.stat(path).st_uid, 65534, "cplow touched the other's object")
            self.assertEqual(os.stat(path).st_size, 0, "cplow wrote into the other's object")
            shown = subprocess.run([INSPECT, "--config", cfg], capture_output=True, text=True,
                                   timeout=30)
            self.assertEqual(shown.returncode, 1)
            self.assertIn("uid 65534", shown.stderr)
        finally:
            os.unlink(path)
        # Once it is gone, cplow starts as usual.
        run = subprocess.run([CPLOW, "--config", cfg, "upload"], env=self.env,
                             capture_output=True, text=True, timeout=120)
        self.assertEqual(run.returncode, 0, run.stderr[-3000:])


if __name__ == "__main__":
    unittest.main()


# ---- the wall clock set back under a running flusher ---------------------------------------------

FAKETIME_LIB = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"


class ClockStepTest(PromiseTest):
    def test_a_wall_clock_set_back_an_hour_does_not_hold_the_file_back(self):
        # cplow's wall clock is libfaketime's, read from a file (its monotonic clock stays
        # real): set back two hours mid-upload, as NTP or an operator may. The flusher timed
        # its interval on the wall clock and waited the two hours before its next write, while
        # the workers went on counting into shared memory only.
        clock = os.path.join(self.work, "faketime")

        def set_clock(spec):
            with open(clock + ".tmp", "w") as f:
                f.write(spec + "\n")
            os.replace(clock + ".tmp", clock)
        set_clock("+0")
        self.env.update({
            "LD_PRELOAD": FAKETIME_LIB, "FAKETIME_TIMESTAMP_FILE": clock,
            "FAKETIME_DONT_FAKE_MONOTONIC": "1", "FAKETIME_CACHE_DURATION": "1",
            "ASAN_OPTIONS": "verify_asan_link_order=0:" + os.environ.get("ASAN_OPTIONS", "")})
        self.tree(seed=131)
        cfg = self.write_config(self.config_dict(flush_interval_ms=100))
        self.fake.set_delay(SLOW_MS)
        run = self.cplow(cfg, "upload")
        self.wait_uploading(cfg, run)
        wait_for("the file to hold the first bytes", lambda: self.file_bytes(cfg), timeout=30)
        set_clock("-2h")
        time.sleep(1.5)  # libfaketime reads its file at most once a second
        before = sum(self.ledger(cfg).values())
        wait_for("more bytes counted after the step",
                 lambda: run.p.poll() is not None or sum(self.ledger(cfg).values()) > before,
                 timeout=60, step=0.05)
        live = self.ledger(cfg)
        self.assertGreater(sum(live.values()), before, run.log()[-3000:])
        # Within a few flush intervals, as before the step: not two hours later.
        wait_for("the file to catch up with the shared ledger",
                 lambda: sum((self.file_bytes(cfg) or {}).values()) >= sum(live.values()),
                 timeout=5, step=0.05)
        self.finish(cfg, run)
