"""cplow upload end to end: config, planning, rotation, restarts and kills, against the real
rclone and the fake quota remote. The fake's accepted bytes per user are the truth."""
import ctypes
import json
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
import unittest
import urllib.error
import urllib.request

from harness import (BUILD, CplowProcesses, FakeRemote, child_named, children, drop_ledger,
                     free_port, make_tree, unlink_shm, wait_for)
from test_dashboard_page import CHROMIUM, Dom

CPLOW = os.path.join(BUILD, "supervisor/cplow")
FAKETIME_LIB = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"
STRATEGIES = [(0.8, "aggressive_fresh_sa"), (0.5, "moderate_mid_sa"),
              (0.25, "cautious_low_quota"), (0.0, "conservative_cleanup")]


def strategy_for(share):
    return next(name for low, name in STRATEGIES if share >= low)


def expected_plan(quota, source, accounts, continue_min_bytes):
    """The plan of an upload of `source` bytes onto fresh accounts, simulated as
    planner_simulate's header describes it: each stage takes its --max-transfer (a share of what
    its account has left) from what the source has left; the account goes on while more than
    continue_min_bytes is left. [(account, strategy, left, max_transfer, moved)]."""
    shares = {"aggressive_fresh_sa": 0.5, "moderate_mid_sa": 0.6,
              "cautious_low_quota": 0.7, "conservative_cleanup": 0.8}
    want, left, source_left = [], {a: quota for a in accounts}, source
    for account in accounts:
        while source_left > 0:
            strategy = strategy_for(left[account] / quota)
            max_transfer = int(shares[strategy] * left[account])
            moved = min(max_transfer, source_left)
            want.append((account, strategy, left[account], max_transfer, moved))
            left[account] -= moved
            source_left -= moved
            if left[account] <= continue_min_bytes:
                break
    return want


class CreationWatch:
    """inotify on some directories (each alone, not their subdirectories): the paths of
    everything created or moved into them while the watch lasts, transient ones included."""
    IN_MOVED_TO, IN_CREATE = 0x80, 0x100

    def __init__(self, dirs):
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.fd = self.libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        self.dirs = {}
        for d in dirs:
            wd = self.libc.inotify_add_watch(self.fd, d.encode(),
                                             self.IN_CREATE | self.IN_MOVED_TO)
            if wd < 0:
                raise OSError(ctypes.get_errno(), "inotify_add_watch " + d)
            self.dirs[wd] = d

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        os.close(self.fd)

    def created(self):
        out = []
        while True:
            try:
                buf = os.read(self.fd, 1 << 16)
            except BlockingIOError:
                return out
            i = 0
            while i < len(buf):
                wd, _, _, n = struct.unpack_from("iIII", buf, i)
                name = buf[i + 16:i + 16 + n].rstrip(b"\0").decode(errors="replace")
                out.append(os.path.join(self.dirs[wd], name))
                i += 16 + n


class SupervisorTest(CplowProcesses, unittest.TestCase):
    def setUp(self):
        self.work = tempfile.mkdtemp(prefix="cplow-sup-")
        self.config = os.path.join(self.work, "config.json")
        self.fake = None
        self.procs = []

    def tearDown(self):
        self.kill_started()
        if self.fake:
            self.fake.stop()
        drop_ledger(self.config)
        shutil.rmtree(self.work, ignore_errors=True)

    def setup_upload(self, accounts, quota, count, seed, **tree):
        self.fake = FakeRemote({"a%d" % i: ("pw%d" % i, quota) for i in range(1, accounts + 1)},
                               self.work)
        self.src = os.path.join(self.work, "media")
        os.makedirs(self.src)
        self.files = make_tree(self.src, count, seed, **tree)
        self.env = dict(os.environ)
        for i in range(1, accounts + 1):
            self.env.update(self.fake.remote_env("fake%d" % i, "a%d" % i))
        self.write_config(accounts, quota)

    def write_config(self, accounts, quota, **quota_keys):
        cfg = {
            "core": {"dry_run": False},
            "remotes": {"media": {
                "upload_folder": self.src, "upload_remote": "fake1:/Media",
                "rclone_command": "move", "remove_empty_dir_depth": 1,
                "rclone_extras": {"--retries": 1, "--low-level-retries": 1},
                "rclone_sleeps": {"User rate limit exceeded": {"count": 2, "sleep": 25,
                                                               "timeout": 600}}}},
            "uploader": {"media": {"check_interval": 1, "max_size_gb": 0,
                                   "rotate_remotes": ["fake%d" % i
                                                      for i in range(1, accounts + 1)]}},
            "quota": dict({"daily_bytes": quota, "min_free_bytes": 1,
                           "continue_min_bytes": 256 << 10}, **quota_keys),
        }
        with open(self.config, "w") as f:
            json.dump(cfg, f)

    def ledger(self):
        state = ledger_state_of(self.config)
        return {r["account"]: r["used_bytes"] for r in state["uploaders"].get("media", [])}

    def assert_ledger_is_truth(self):
        truth = self.fake.truth()["users"]
        ledger = self.ledger()
        for user, t in truth.items():
            account = "fake" + user[1:]
            self.assertEqual(ledger.get(account, 0), t["accepted_bytes"],
                             "%s: ledger %s != truth %s" % (account, ledger, truth))
        return {("fake" + u[1:]): t["accepted_bytes"] for u, t in truth.items()}

    def assert_everything_moved(self):
        left = [f for _, _, fs in os.walk(self.src) for f in fs]
        self.assertEqual(left, [], "files left in the source")
        self.assertEqual(sum(self.assert_ledger_is_truth().values()), sum(self.files.values()))

    def test_rotates_through_accounts_and_leaves_the_third_untouched(self):
        self.setup_upload(3, 4 << 20, 30, seed=11, min_size=64 << 10, max_size=400 << 10)
        r = self.cplow("upload")
        self.assertEqual(r.returncode, 0, r.stderr[-3000:])
        self.assert_everything_moved()
        truth = self.assert_ledger_is_truth()
        self.assertGreater(truth["fake1"], 0)
        self.assertGreater(truth["fake2"], 0)
        self.assertEqual(truth["fake3"], 0)
        self.assertNotIn("fake3", self.ledger(), "the third account was touched")
        self.assertEqual(self.fake.truth()["users"]["a1"]["rejected_403"], 0)
        # The ledger file next to the config holds the same, in the quota fork's shape.
        with open(os.path.join(self.work, "sa_quota_cache.json")) as f:
            on_disk = json.load(f)
        self.assertEqual(on_disk["media"]["fake1"]["bytes"], truth["fake1"])
        self.assertEqual(on_disk["media"]["fake2"]["bytes"], truth["fake2"])

    def test_the_quota_forks_loader_reads_cplows_ledger_file_and_gets_each_accounts_bytes(self):
        # Going back must be safe: the fork's own loader on the file cplow wrote.
        self.setup_upload(2, 3 << 19, 16, seed=19, min_size=64 << 10, max_size=200 << 10)
        r = self.cplow("upload")
        self.assertEqual(r.returncode, 0, r.stderr[-3000:])
        truth = self.assert_ledger_is_truth()
        self.assertGreater(truth["fake1"], 0)
        self.assertGreater(truth["fake2"], 0)
        usage, failure = fork_load(os.path.join(self.work, "sa_quota_cache.json"), time.time())
        self.assertIsNone(failure, "the fork would start from zero usage")
        self.assertEqual(set(usage), {"media"})
        self.assertEqual({a: usage["media"][a].get("bytes", 0) for a in usage["media"]}, truth)

    def test_interrupted_upload_resumes_with_the_strategy_of_what_is_left(self):
        quota = 16 << 20
        self.setup_upload(1, quota, 40, seed=12, min_size=100 << 10, max_size=300 << 10)
        self.fake.set_delay(20)
        p = self.start("upload")
        wait_for("a quarter of the quota used",
                 lambda: self.ledger().get("fake1", 0) >= quota // 4 or p.poll() is not None,
                 timeout=120)
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=120)
        self.assertEqual(p.returncode, 130, err[-3000:])
        self.fake.set_delay(0)
        wait_for("uploads in flight to end", lambda: self.fake.truth()["in_progress"] == 0)
        used = self.assert_ledger_is_truth()["fake1"]
        self.assertGreaterEqual(used, quota // 4)
        expected = strategy_for((quota - used) / quota)
        self.assertNotEqual(expected, "aggressive_fresh_sa")
        plan = self.cplow("upload", "--dry-run")
        self.assertEqual(plan.returncode, 0, plan.stderr)
        self.assertIn("stage 1 on fake1: %s, %d bytes left" % (expected, quota - used), plan.stdout)
        r = self.cplow("upload")
        self.assertEqual(r.returncode, 0, r.stderr[-3000:])
        self.assertIn("stage 1 on fake1 (1 of 1): %s" % expected, r.stderr)
        self.assert_everything_moved()

    def kill_mid_upload(self, pick_victim):
        self.setup_upload(2, 8 << 20, 40, seed=13, min_size=100 << 10, max_size=300 << 10)
        self.fake.set_delay(10)
        p = self.start("upload")
        wait_for("some files counted", lambda: sum(self.ledger().values()) > 0 or
                 p.poll() is not None, timeout=120)
        victim = wait_for("the process to kill", lambda: pick_victim(p.pid))
        os.kill(victim, signal.SIGKILL)
        self.fake.set_delay(0)
        out, err = p.communicate(timeout=240)
        self.assertEqual(p.returncode, 0, err[-3000:])
        wait_for("uploads in flight to end", lambda: self.fake.truth()["in_progress"] == 0)
        self.assert_everything_moved()
        return err

    def test_kill_9_of_the_worker_is_survived_and_counted_exactly(self):
        err = self.kill_mid_upload(lambda cplow: worker_of(cplow))
        self.assertIn("was killed by signal 9", err)

    def test_kill_9_of_rclone_is_survived_and_counted_exactly(self):
        err = self.kill_mid_upload(lambda cplow: (w := worker_of(cplow)) and child_named(w, "rclone"))
        self.assertIn("rclone exit 137", err)

    def test_kill_9_of_the_flusher_restarts_it(self):
        err = self.kill_mid_upload(lambda cplow: flusher_of(cplow))
        self.assertIn("the flusher died", err)
        with open(os.path.join(self.work, "sa_quota_cache.json")) as f:
            on_disk = json.load(f)
        truth = self.assert_ledger_is_truth()
        for account, used in truth.items():
            if used:
                self.assertEqual(on_disk["media"][account]["bytes"], used)

    def test_reset_quota_forgets_one_account(self):
        self.setup_upload(2, 4 << 20, 20, seed=14, min_size=64 << 10, max_size=300 << 10)
        r = self.cplow("upload")
        self.assertEqual(r.returncode, 0, r.stderr[-3000:])
        before = self.ledger()
        self.assertGreater(before["fake1"], 0)
        r = self.cplow("reset-quota", "--account", "fake1")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("reset media / fake1 (was %d bytes)" % before["fake1"], r.stdout)
        after = self.ledger()
        self.assertEqual(after["fake1"], 0)
        self.assertEqual(after.get("fake2", 0), before.get("fake2", 0))
        with open(os.path.join(self.work, "sa_quota_cache.json")) as f:
            self.assertEqual(json.load(f)["media"]["fake1"]["bytes"], 0)

    def test_unusable_ledger_files_refuse_to_start_unless_reset(self):
        self.setup_upload(1, 4 << 20, 3, seed=17, max_size=100 << 10)
        cache = os.path.join(self.work, "sa_quota_cache.json")
        with open(cache, "w") as f:
            f.write('{"media": {"fake1": {"bytes": 12')
        with open(cache + ".prev", "w") as f:
            f.write("garbage")
        r = self.cplow("upload")
        self.assertEqual(r.returncode, 2, r.stderr)
        lines = [l for l in r.stderr.splitlines() if "ERROR" in l]
        self.assertEqual(len(lines), 1, r.stderr)
        self.assertIn("ledger file %s is unusable" % cache, lines[0])
        self.assertIn(cache + ".prev", lines[0])
        self.assertIn("refusing to start with zero usage", lines[0])
        self.assertEqual(self.fake.truth()["users"]["a1"]["accepted_files"], 0, "it uploaded")
        # A good .prev is used instead of the bad file, and the reset flag starts from zero.
        with open(cache + ".prev", "w") as f:
            json.dump({"media": {"fake1": {"bytes": 777, "reset_time": 4102444800.0,
                                           "first_upload": 4102358400.0}}}, f)
        r = self.cplow("upload", "--dry-run")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("%d bytes left" % ((4 << 20) - 777), r.stdout)
        with open(cache + ".prev", "w") as f:
            f.write("garbage")
        state = subprocess.run([os.path.join(BUILD, "shm/cplow-inspect"), "--config",
                                self.config, "--json"], capture_output=True, text=True)
        unlink_shm(json.loads(state.stdout)["ledger"])
        r = self.cplow("upload", "--reset-ledger")
        self.assertEqual(r.returncode, 0, r.stderr[-3000:])
        self.assertIn("starting from zero usage", r.stderr)
        self.assert_everything_moved()

    def test_dashboard_follows_a_real_upload_file_by_file(self):
        quota = 16 << 20
        self.setup_upload(1, quota, 40, seed=18, min_size=200 << 10, max_size=400 << 10)
        port = free_port()
        with open(self.config) as f:
            cfg = json.load(f)
        cfg["dashboard"] = {"enabled": True, "port": port, "token": "s3cret-token"}
        with open(self.config, "w") as f:
            json.dump(cfg, f)
        self.fake.set_delay(250)  # about a second a file: the page loads mid-upload
        p = self.start("run")

        def accounts():
            req = urllib.request.Request("http://127.0.0.1:%d/api/service_accounts" % port,
                                         headers={"Authorization": "Bearer s3cret-token"})
            try:
                with urllib.request.urlopen(req, timeout=5) as r:
                    return json.loads(r.read())
            except OSError:
                return None

        seen = []

        def rising():
            a = accounts()
            if a:
                used = sum(x["used_bytes"] for x in a)
                if not seen or used != seen[-1]:
                    seen.append(used)
            return len(seen) >= 4 and seen[-1] > 0
        wait_for("used bytes to rise file by file", rising, timeout=120)
        self.assertEqual(seen, sorted(seen), "used bytes went down: %s" % seen)
        status = self.cplow("status").stdout
        self.assertIn("\nstages\n", status)
        for line in status.splitlines():
            self.assertLessEqual(len(line), 100, "status line wider than 100: %r" % line)
        # The page, in a real browser, while the upload runs.
        profile = tempfile.mkdtemp(prefix="chromium-", dir=self.work)
        page = subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", "--disable-dev-shm-usage", "--user-data-dir=" + profile,
             "--virtual-time-budget=3000", "--dump-dom",
             "http://127.0.0.1:%d/?token=s3cret-token" % port],
            capture_output=True, text=True, timeout=90)
        self.assertEqual(page.returncode, 0, page.stderr[-2000:])
        dom = Dom()
        dom.feed(page.stdout)
        row = dom.accounts.get("fake1")
        self.assertIsNotNone(row, "no bar for fake1 in the page: %s" % list(dom.accounts))
        self.assertTrue(any(c in row["fill"] for c in ("green", "yellow", "red")), row)
        self.assertIn("media: stage", dom.by_id.get("status", ""))
        self.fake.set_delay(0)
        cache = os.path.join(self.work, "sa_quota_cache.json")

        def settled():
            a = accounts()
            if not a or os.path.exists(os.path.join(self.src, "Season 00")) or \
               any(fs for _, _, fs in os.walk(self.src)):
                return None
            with open(cache) as f:
                on_disk = json.load(f)["media"]["fake1"]["bytes"]
            api = next(x for x in a if x["sa_file_full"] == "fake1")
            return api["used_bytes"] == on_disk == sum(self.files.values()) and api
        final = wait_for("the upload to end with the API equal to the ledger file", settled,
                         timeout=120)
        self.assertEqual(final["quota_bytes"], quota)
        # Without the token: nothing.
        try:
            urllib.request.urlopen("http://127.0.0.1:%d/api/service_accounts" % port, timeout=5)
            self.fail("served without the token")
        except urllib.error.HTTPError as e:
            self.assertEqual(e.code, 401)
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=60)
        self.assertEqual(p.returncode, 143, err[-3000:])
        self.assertNotIn("s3cret-token", err)
        self.assert_everything_moved()

    def test_a_terminal_gets_live_stage_lines_and_a_pipe_plain_log_lines(self):
        self.setup_upload(1, 16 << 20, 24, seed=19, min_size=200 << 10, max_size=400 << 10)
        self.fake.set_delay(60)
        # `script` gives cplow a pseudo-terminal, as a person's shell would.
        tty = subprocess.run(["script", "-qefc", "%s --config %s upload" % (CPLOW, self.config),
                              "/dev/null"], env=self.env, capture_output=True, text=True,
                             timeout=300)
        self.assertEqual(tty.returncode, 0, tty.stdout[-3000:])
        drawn = [l for l in tty.stdout.split("\n") if "files, " in l and "quota left" in l]
        self.assertTrue(drawn, "no live stage line on the terminal:\n" + tty.stdout[-3000:])
        self.assertIn("media fake1: ", drawn[-1])
        self.assertIn("\033[", tty.stdout, "the block is not redrawn in place")
        self.assertIn("stage 1 on fake1", tty.stdout, "log lines are lost on the terminal")
        self.assert_everything_moved()
        # Not a terminal: log lines only, no escape sequences.
        self.src_refill = make_tree(self.src, 4, seed=20, max_size=100 << 10)
        piped = self.cplow("upload")
        self.assertEqual(piped.returncode, 0, piped.stderr[-3000:])
        self.assertNotIn("\033[", piped.stderr)
        self.assertNotIn("quota left", piped.stderr)

    def test_two_uploaders_run_side_by_side(self):
        quota = 8 << 20
        self.fake = FakeRemote({"a1": ("pw1", quota), "a2": ("pw2", quota)}, self.work)
        self.env = dict(os.environ)
        self.env.update(self.fake.remote_env("fake1", "a1"))
        self.env.update(self.fake.remote_env("fake2", "a2"))
        folders, files = {}, {}
        for name in ("movies", "tv"):
            folders[name] = os.path.join(self.work, name)
            os.makedirs(folders[name])
            files[name] = make_tree(folders[name], 16, seed=len(name), min_size=100 << 10,
                                    max_size=300 << 10)
        cfg = {"remotes": {}, "uploader": {},
               "quota": {"daily_bytes": quota, "min_free_bytes": 1}}
        for name, remote in (("movies", "fake1"), ("tv", "fake2")):
            cfg["remotes"][name] = {"upload_folder": folders[name],
                                    "upload_remote": remote + ":/" + name,
                                    "rclone_extras": {"--retries": 1}}
            cfg["uploader"][name] = {"max_size_gb": 0, "rotate_remotes": [remote]}
        with open(self.config, "w") as f:
            json.dump(cfg, f)
        self.fake.set_delay(40)
        p = self.start("upload")
        both = wait_for("both uploaders' stages running at once",
                        lambda: len({s["uploader"] for s in
                                     ledger_state_of(self.config)["stages"]}) == 2
                        or p.poll() is not None, timeout=120)
        self.assertIsNone(p.poll(), "cplow ended before the stages overlapped")
        self.assertTrue(both)
        self.fake.set_delay(0)
        out, err = p.communicate(timeout=240)
        self.assertEqual(p.returncode, 0, err[-3000:])
        state = ledger_state_of(self.config)["uploaders"]
        truth = self.fake.truth()["users"]
        self.assertEqual(state["movies"][0]["used_bytes"], truth["a1"]["accepted_bytes"])
        self.assertEqual(state["tv"][0]["used_bytes"], truth["a2"]["accepted_bytes"])
        self.assertEqual(truth["a1"]["accepted_bytes"], sum(files["movies"].values()))
        self.assertEqual(truth["a2"]["accepted_bytes"], sum(files["tv"].values()))

    def test_no_secret_reaches_the_log_at_debug_level(self):
        self.setup_upload(2, 4 << 20, 20, seed=21, min_size=64 << 10, max_size=300 << 10)
        with open(self.config) as f:
            cfg = json.load(f)
        cfg["dashboard"] = {"enabled": True, "port": free_port(), "token": "tok-Zq81-secret"}
        with open(self.config, "w") as f:
            json.dump(cfg, f)
        r = self.cplow("--loglevel", "debug", "upload")
        self.assertEqual(r.returncode, 0, r.stderr[-3000:])
        secrets = ["tok-Zq81-secret", "pw1", "pw2"]
        secrets += [v for k, v in self.env.items() if k.endswith("_PASS")]  # obscured forms
        for secret in secrets:
            self.assertNotIn(secret, r.stderr, "a secret is in the log")
            self.assertNotIn(secret, r.stdout)

    def test_a_full_dev_shm_is_a_clear_error_at_start(self):
        self.setup_upload(1, 4 << 20, 2, seed=22, max_size=100 << 10)
        # A private /dev/shm too small for the ledger, in a mount namespace of our own.
        r = subprocess.run(["unshare", "--mount", "sh", "-c",
                            "mount -t tmpfs -o size=256k tmpfs /dev/shm && exec \"$@\"", "sh",
                            CPLOW, "--config", self.config, "upload"],
                           env=self.env, capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertRegex(r.stderr, r"cannot create the shared ledger /cplow-\S+: /dev/shm has no "
                         r"room for its \d+ bytes")
        self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)
        self.assertEqual(self.fake.truth()["users"]["a1"]["accepted_files"], 0)

    def test_a_quota_window_resets_24_hours_after_the_first_upload(self):
        # faketime moves cplow's clock (not rclone's, nor the fake's): the reset is crossed in
        # seconds. The fake's own quota is off; the ledger's daily quota is the only limit.
        quota = 3 << 20
        self.setup_upload(1, 0, 30, seed=23, min_size=100 << 10, max_size=200 << 10)
        self.write_config(1, quota, min_free_bytes=256 << 10, continue_min_bytes=256 << 10)
        first = self.cplow("upload")
        self.assertEqual(first.returncode, 0, first.stderr[-3000:])
        used = self.ledger()["fake1"]
        self.assertLessEqual(used, quota)
        left = [f for _, _, fs in os.walk(self.src) for f in fs]
        self.assertTrue(left, "the first day's quota took everything; the test needs more data")
        still = self.cplow("upload", "--dry-run")
        self.assertIn("no stage", still.stdout, "a full account was planned again")
        # libfaketime is preloaded: the sanitizer build must be told that is fine.
        env = dict(self.env, ASAN_OPTIONS="verify_asan_link_order=0")
        later = subprocess.run(["faketime", "-f", "+25h", CPLOW, "--config", self.config,
                                "upload"], env=env, capture_output=True, text=True,
                               timeout=300)
        self.assertEqual(later.returncode, 0, later.stderr[-3000:])
        self.assertIn("stage 1 on fake1 (1 of 1): aggressive_fresh_sa, %d bytes left" % quota,
                      later.stderr)
        accepted = self.fake.truth()["users"]["a1"]["accepted_bytes"]
        with open(os.path.join(self.work, "sa_quota_cache.json")) as f:
            row = json.load(f)["media"]["fake1"]
        # The new window holds only what the second run moved, and resets a day after it began.
        self.assertEqual(row["bytes"], accepted - used)
        self.assertGreater(row["first_upload"], time.time() + 24 * 3600)
        self.assertAlmostEqual(row["reset_time"] - row["first_upload"], 24 * 3600, delta=1)

    def test_check_config_prints_the_effective_config(self):
        self.setup_upload(1, 4 << 20, 1, seed=15)
        r = self.cplow("check-config")
        self.assertEqual(r.returncode, 0, r.stderr)
        effective = json.loads(r.stdout)
        self.assertEqual(effective["quota"]["daily_bytes"], 4 << 20)
        self.assertEqual(effective["quota"]["flush_interval_ms"], 100)

    def test_status_is_cplow_inspects_output(self):
        self.setup_upload(1, 4 << 20, 5, seed=16, max_size=100 << 10)
        self.assertEqual(self.cplow("upload").returncode, 0)
        status = self.cplow("status", "--json")
        inspect = subprocess.run([os.path.join(BUILD, "shm/cplow-inspect"), "--config",
                                  self.config, "--json"], capture_output=True, text=True)
        a, b = json.loads(status.stdout), json.loads(inspect.stdout)
        for d in (a, b):
            d.pop("last_flush", None)
        self.assertEqual(a, b)

    # ---- upload --dry-run: the whole plan ----

    def test_dry_run_prints_every_planned_stage_and_its_command(self):
        quota = 4 << 20
        self.setup_upload(3, quota, 30, seed=31, min_size=100 << 10, max_size=400 << 10)
        source = sum(self.files.values())
        self.assertGreater(source, quota + (quota >> 1), "the plan must need a second account")
        r = self.cplow("upload", "--dry-run")
        self.assertEqual(r.returncode, 0, r.stderr[-3000:])
        lines = r.stdout.splitlines()
        self.assertEqual(lines[0], "uploader media: 3 accounts, %d bytes to upload" % source)
        want = expected_plan(quota, source, ("fake1", "fake2", "fake3"), 256 << 10)
        got = []
        for i, line in enumerate(lines):
            m = re.match(r"  stage (\d+) on (\S+): (\w+), (\d+) bytes left, --max-transfer (\d+) "
                         r"bytes, --max-size \d+ bytes; moves up to (\d+) bytes$", line)
            if not m:
                continue
            self.assertEqual(int(m.group(1)), len(got) + 1)
            got.append((m.group(2), m.group(3), int(m.group(4)), int(m.group(5)),
                        int(m.group(6))))
            # The stage's rclone command follows it, with the stage's own account and limit.
            cmd = shlex.split(lines[i + 1])
            self.assertEqual(cmd[:4], ["/usr/bin/rclone", "move", self.src,
                                       m.group(2) + ":/Media"])
            self.assertIn("--max-transfer=%sB" % m.group(5), cmd)
        self.assertEqual(got, want)
        self.assertEqual({g[0] for g in got}, {"fake1", "fake2"}, "the third is not needed")
        self.assertEqual(lines[-1], "  %d stages cover the %d bytes" % (len(want), source))
        # Stage 1's command is the first line that starts with the rclone binary
        # (tests/bench/bench_all.py takes it from there).
        first = next(l for l in lines if l.strip().startswith("/usr/bin/rclone"))
        self.assertIn("fake1:/Media", first)
        # Nothing moved.
        self.assertEqual(self.fake.truth()["users"]["a1"]["accepted_files"], 0)
        self.assertEqual(sum(len(fs) for _, _, fs in os.walk(self.src)), 30)

    def test_dry_run_as_an_unprivileged_user_plans_every_stage_and_creates_nothing_else(self):
        # As root the exclude files of a dry run that had no work directory yet went to "/"
        # (and were removed again); as a user they could not be made, and every stage said
        # "cannot plan". Run as nobody, watching every directory nobody may write in.
        quota = 4 << 20
        self.setup_upload(3, quota, 30, seed=31, min_size=100 << 10, max_size=400 << 10)
        source = sum(self.files.values())
        with open(self.config) as f:
            cfg = json.load(f)
        cfg["remotes"]["media"]["rclone_excludes"] = ["*.partial~", "**/.DS_Store"]
        with open(self.config, "w") as f:
            json.dump(cfg, f)
        nobody = pwd.getpwnam("nobody")
        bindir = os.path.join(self.work, "bin")
        tmpdir = os.path.join(self.work, "tmp")
        home = os.path.join(self.work, "home")  # rclone makes ~/.config/rclone: its own
        os.makedirs(bindir)
        os.makedirs(tmpdir)
        os.makedirs(home)
        cplow = shutil.copy2(CPLOW, os.path.join(bindir, "cplow"))  # CI's tree may be root's
        for d, _, fs in os.walk(self.work):
            if d.startswith(self.fake.dir):
                continue
            os.chown(d, nobody.pw_uid, nobody.pw_gid)
            for f in fs:
                os.chown(os.path.join(d, f), nobody.pw_uid, nobody.pw_gid)
        os.chmod(self.work, 0o755)
        env = dict(self.env, TMPDIR=tmpdir, HOME=home)
        watched = ["/", "/tmp", "/var/tmp", "/dev/shm", self.work, self.src, tmpdir]
        watched += [os.path.join(self.src, d) for d in os.listdir(self.src)
                    if os.path.isdir(os.path.join(self.src, d))]
        with CreationWatch(watched) as watch:
            p = subprocess.Popen(["setpriv", "--reuid", str(nobody.pw_uid), "--regid",
                                  str(nobody.pw_gid), "--clear-groups", cplow, "--config",
                                  self.config, "upload", "--dry-run"],
                                 env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True)
            self.procs.append(p)
            out, err = p.communicate(timeout=120)
            created = watch.created()
        ledgers = [c for c in created if c.startswith("/dev/shm/cplow-%d-" % nobody.pw_uid)]
        for name in ledgers:
            if os.path.exists(name):
                os.unlink(name)
        self.assertEqual(p.returncode, 0, err[-3000:])
        self.assertNotIn("cannot plan", out)
        stages = re.findall(r"^  stage (\d+) on (\S+): ", out, re.M)
        commands = [l for l in out.splitlines() if l.startswith("  /usr/bin/rclone ")]
        want = expected_plan(quota, source, ("fake1", "fake2", "fake3"), 256 << 10)
        self.assertEqual([(int(n), a) for n, a in stages],
                         [(i + 1, w[0]) for i, w in enumerate(want)], out)
        self.assertEqual(len(commands), len(want), out)
        self.assertTrue(all("--exclude-from=" + tmpdir + "/cplow-" in c for c in commands),
                        commands)
        self.assertIn("  %d stages cover the %d bytes" % (len(want), source), out)
        # What it made: its work directory (gone again), the instance lock next to the config,
        # and the shared ledger (built under a temporary name, then linked in place). Other
        # processes of the machine (tests beside this one) make files in /tmp and /dev/shm
        # too: there, what cplow names (its pid, nobody's uid) is what it made.
        work_dirs = [c for c in created if os.path.dirname(c) == tmpdir]
        self.assertEqual(len(work_dirs), 1, created)
        self.assertRegex(os.path.basename(work_dirs[0]), r"^cplow-%d-\w{6}$" % p.pid)
        self.assertEqual(os.listdir(tmpdir), [], "the work directory was left behind")
        shared = ("/tmp", "/var/tmp", "/dev/shm")
        others = [c for c in created
                  if (os.path.dirname(c) not in shared or str(p.pid) in c
                      or "-%d-" % nobody.pw_uid in c)
                  and c not in work_dirs and c not in ledgers
                  and not (os.path.dirname(c) == self.work and c.endswith(".lock"))
                  and not re.fullmatch(r"/dev/shm/cplow-%d-\w+\.new-%d" % (nobody.pw_uid, p.pid),
                                       c)]
        self.assertEqual(others, [], "the dry run created these outside its work directory")
        self.assertEqual(self.fake.truth()["users"]["a1"]["accepted_files"], 0)
        self.assertEqual(sum(len(fs) for _, _, fs in os.walk(self.src)), 30)

    def test_dry_run_says_what_no_account_has_room_for(self):
        quota = 1 << 20
        self.setup_upload(2, quota, 12, seed=32, min_size=200 << 10, max_size=300 << 10)
        source = sum(self.files.values())
        r = self.cplow("upload", "--dry-run")
        self.assertEqual(r.returncode, 0, r.stderr[-3000:])
        moved = sum(int(x) for x in re.findall(r"moves up to (\d+) bytes", r.stdout))
        self.assertLess(moved, 2 * quota + 1)
        self.assertIn("\n  %d bytes left for later: no account can take another stage (2 "
                      "accounts: " % (source - moved), r.stdout)

    # ---- the command line ----

    def setup_two_uploaders(self, seed):
        quota = 16 << 20
        self.fake = FakeRemote({"a1": ("pw1", quota), "a2": ("pw2", quota)}, self.work)
        self.env = dict(os.environ)
        self.env.update(self.fake.remote_env("fake1", "a1"))
        self.env.update(self.fake.remote_env("fake2", "a2"))
        self.folders, self.trees = {}, {}
        cfg = {"remotes": {}, "uploader": {},
               "quota": {"daily_bytes": quota, "min_free_bytes": 1}}
        for name, remote in (("movies", "fake1"), ("tv", "fake2")):
            self.folders[name] = os.path.join(self.work, name)
            os.makedirs(self.folders[name])
            self.trees[name] = make_tree(self.folders[name], 5, seed=seed + len(name),
                                         max_size=200 << 10)
            cfg["remotes"][name] = {"upload_folder": self.folders[name],
                                    "upload_remote": remote + ":/" + name,
                                    "rclone_extras": {"--retries": 1}}
            cfg["uploader"][name] = {"max_size_gb": 0, "rotate_remotes": [remote]}
        with open(self.config, "w") as f:
            json.dump(cfg, f)

    def test_upload_u_runs_only_the_named_uploader(self):
        self.setup_two_uploaders(seed=33)
        r = self.cplow("upload", "-u", "tv")
        self.assertEqual(r.returncode, 0, r.stderr[-3000:])
        truth = self.fake.truth()["users"]
        self.assertEqual(truth["a2"]["accepted_bytes"], sum(self.trees["tv"].values()))
        self.assertEqual(truth["a1"]["accepted_files"], 0, "movies uploaded")
        self.assertEqual(sum(len(fs) for _, _, fs in os.walk(self.folders["movies"])), 5)
        self.assertNotIn("movies", ledger_state_of(self.config)["uploaders"])
        self.assertNotIn("uploader movies", r.stderr)
        # A name no uploader has is a config error, and nothing runs.
        r = self.cplow("upload", "-u", "music")
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("no uploader named music in %s" % self.config, r.stderr)
        self.assertEqual(self.fake.truth()["users"]["a1"]["accepted_files"], 0)

    def test_reset_quota_of_one_uploader_keeps_the_others(self):
        self.setup_two_uploaders(seed=34)
        r = self.cplow("upload")
        self.assertEqual(r.returncode, 0, r.stderr[-3000:])
        state = ledger_state_of(self.config)["uploaders"]
        tv_used = state["tv"][0]["used_bytes"]
        self.assertEqual(state["movies"][0]["used_bytes"], sum(self.trees["movies"].values()))
        self.assertGreater(tv_used, 0)
        r = self.cplow("reset-quota", "--uploader", "movies")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, "reset movies / fake1 (was %d bytes)\n"
                         % sum(self.trees["movies"].values()))
        state = ledger_state_of(self.config)["uploaders"]
        self.assertEqual(state["movies"][0]["used_bytes"], 0)
        self.assertEqual(state["tv"][0]["used_bytes"], tv_used)
        with open(os.path.join(self.work, "sa_quota_cache.json")) as f:
            on_disk = json.load(f)
        self.assertEqual(on_disk["movies"]["fake1"]["bytes"], 0)
        self.assertEqual(on_disk["tv"]["fake2"]["bytes"], tv_used)

    def test_cplow_config_names_the_config_when_config_is_not_given(self):
        self.setup_upload(1, 4 << 20, 2, seed=35, max_size=100 << 10)
        elsewhere = os.path.join(self.work, "elsewhere")
        os.makedirs(elsewhere)  # no config.json here: ./config.json would fail
        env = dict(self.env, CPLOW_CONFIG=self.config)
        r = subprocess.run([CPLOW, "check-config"], env=env, cwd=elsewhere,
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout)["quota"]["daily_bytes"], 4 << 20)
        r = subprocess.run([CPLOW, "upload"], env=env, cwd=elsewhere, capture_output=True,
                           text=True, timeout=300)
        self.assertEqual(r.returncode, 0, r.stderr[-3000:])
        self.assert_everything_moved()
        # --config wins over the environment.
        missing = os.path.join(elsewhere, "other.json")
        r = subprocess.run([CPLOW, "--config", missing, "check-config"], env=env, cwd=elsewhere,
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn(missing, r.stderr)

    # ---- failures ----

    def test_a_dead_worker_is_retried_on_its_account_a_bounded_number_of_times(self):
        self.setup_upload(2, 64 << 20, 40, seed=36, min_size=100 << 10, max_size=300 << 10)
        self.fake.set_delay(60)  # a stage lasts long enough to be killed mid-way
        p = self.start("upload")
        killed = []
        for _ in range(3):
            victim = wait_for("a new worker with rclone running",
                              lambda: (w := worker_of(p.pid)) and w not in killed and w or
                              p.poll() is not None, timeout=120)
            self.assertIsNone(p.poll(), "cplow ended before three workers were killed")
            os.kill(victim, signal.SIGKILL)
            killed.append(victim)
        self.fake.set_delay(0)
        out, err = p.communicate(timeout=240)
        self.assertEqual(p.returncode, 0, err[-3000:])
        on = re.findall(r"stage (\d+) on (fake\d) \(", err)
        self.assertEqual(on[:4], [("1", "fake1"), ("2", "fake1"), ("3", "fake1"),
                                  ("4", "fake2")], err[-3000:])
        self.assertNotIn(("5", "fake1"), on)
        self.assertEqual(err.count("was killed by signal 9"), 3)
        self.assertIn("3 failed stages in a row on fake1; trying the next account", err)
        wait_for("uploads in flight to end", lambda: self.fake.truth()["in_progress"] == 0)
        self.assert_everything_moved()

    # ---- run mode: suspensions ----

    def test_a_suspension_for_accounts_given_up_on_is_logged_once(self):
        # One file larger than any stage's --max-transfer (half of a fresh account's quota)
        # but under its --max-size: every stage moves nothing and gives its account up, so
        # every check ends in a suspension until the next check.
        quota = 4 << 20
        self.setup_upload(2, quota, 0, seed=37)
        with open(os.path.join(self.src, "big.bin"), "wb") as f:
            f.write(os.urandom(int(quota * 0.6)))
        # libfaketime runs cplow's clock 60 times fast: a check_interval of one minute passes
        # every second (rclone's Go clock and the fake remote keep real time). Preloaded
        # directly rather than through the faketime command, which would stand between the
        # test and cplow's SIGTERM.
        env = dict(self.env, ASAN_OPTIONS="verify_asan_link_order=0", FAKETIME="+0 x60",
                   LD_PRELOAD=FAKETIME_LIB)
        log = open(os.path.join(self.work, "run.log"), "w+")
        self.addCleanup(log.close)
        p = subprocess.Popen([CPLOW, "--config", self.config, "run"],
                             env=env, stdout=subprocess.DEVNULL, stderr=log, text=True)
        self.procs.append(p)

        def text():
            log.flush()
            with open(log.name) as f:
                return f.read()
        wait_for("four checks that end suspended",
                 lambda: text().count("is due: uploading") >= 5 or p.poll() is not None,
                 timeout=180, step=0.2)
        self.assertIsNone(p.poll(), text()[-3000:])
        p.send_signal(signal.SIGTERM)
        self.assertEqual(p.wait(timeout=60), 143, text()[-3000:])
        err = text()
        # Every check went through both accounts and was suspended again...
        self.assertGreaterEqual(err.count("on fake2 (2 of 2)"), 4, err[-3000:])
        # ...and said so once.
        self.assertEqual(err.count("uploader media suspended until"), 1, err[-3000:])
        self.assertEqual(self.fake.truth()["users"]["a1"]["accepted_files"], 0)


def fork_load(path, now):
    """The quota fork's loader (cloudplow.py: init_sa_quota_tracking, then
    cleanup_expired_quotas), step for step: json.load; every top-level key an uploader, every key
    below it an account whose row's reset_time is read with .get(); rows whose time has come
    are dropped, then uploaders left empty. Any exception makes the fork log "Failed to load SA
    quota cache" and start from {}: returned as (usage, exception)."""
    try:
        with open(path) as f:
            usage = json.load(f)
        for uploader in list(usage.keys()):
            for sa_file in list(usage[uploader].keys()):
                reset_time = usage[uploader][sa_file].get("reset_time", 0)
                if now >= reset_time:
                    del usage[uploader][sa_file]
            if not usage[uploader]:
                del usage[uploader]
    except Exception as e:  # the fork's own breadth
        return {}, e
    return usage, None


def ledger_state_of(config):
    out = subprocess.run([os.path.join(BUILD, "shm/cplow-inspect"), "--config", config, "--json"],
                         capture_output=True, text=True, timeout=30)
    if out.returncode == 1 and "no ledger" in out.stderr:
        return {"uploaders": {}, "stages": []}
    if out.returncode != 0:
        raise AssertionError(out.stderr)
    return json.loads(out.stdout)


def worker_of(cplow):
    """The cplow child that has an rclone child of its own."""
    return next((k for k, comm in children(cplow) if comm == "cplow" and
                 child_named(k, "rclone")), None)


def flusher_of(cplow):
    """The cplow child with no children: the flusher (workers fork rclone and lsjson waiters)."""
    return next((k for k, comm in children(cplow) if comm == "cplow" and not children(k)), None)


if __name__ == "__main__":
    unittest.main(verbosity=2)
