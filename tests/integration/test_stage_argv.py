"""A stage's rclone command, one source of truth: what `upload --dry-run` prints is what runs,
and what the user wrote in rclone_extras is honoured as cloudplow honoured it (docs/operations.md,
"One upload stage"). The real rclone against the fake remote; rclone's argv read from /proc."""
import json
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import time
import unittest

from harness import BUILD, CplowProcesses, FakeRemote, children, drop_ledger, make_tree, wait_for

INSPECT = os.path.join(BUILD, "shm/cplow-inspect")
# cplow's own exclude file: a private path per process and stage.
OWN_EXCLUDES = re.compile(r"^--exclude-from=.*/excludes-\d+-\d+\.txt$")


def normalized(argv):
    return ["--exclude-from=<cplow's>" if OWN_EXCLUDES.match(a) else a for a in argv]


def flag_values(argv, flag):
    return [a for a in argv if a == flag or a.startswith(flag + "=")]


def descendants(pid):
    out = []
    for kid, comm in children(pid):
        out.append((kid, comm))
        out.extend(descendants(kid))
    return out


def cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return [a.decode() for a in f.read().split(b"\0")[:-1]]
    except OSError:
        return []


class StageArgvTest(CplowProcesses, unittest.TestCase):
    QUOTA = 64 << 20

    def setUp(self):
        self.work = tempfile.mkdtemp(prefix="cplow-argv-")
        self.config = os.path.join(self.work, "config.json")
        self.src = os.path.join(self.work, "media")
        os.makedirs(self.src)
        self.fake = FakeRemote({"a1": ("pw1", self.QUOTA)}, self.work)
        self.env = dict(os.environ)
        self.env.update(self.fake.remote_env("fake1", "a1"))
        self.procs = []

    def tearDown(self):
        self.kill_started()
        self.fake.stop()
        drop_ledger(self.config)
        shutil.rmtree(self.work, ignore_errors=True)

    def write_config(self, extras=None, core=None, **remote):
        cfg = {"core": core or {},
               "remotes": {"media": dict({
                   "upload_folder": self.src, "upload_remote": "fake1:/Media",
                   "rclone_command": "move", "remove_empty_dir_depth": 1,
                   "rclone_extras": dict({"--retries": 1, "--low-level-retries": 1},
                                         **(extras or {}))}, **remote)},
               "uploader": {"media": {"max_size_gb": 0, "rotate_remotes": ["fake1"]}},
               "quota": {"daily_bytes": self.QUOTA, "min_free_bytes": 1,
                         "continue_min_bytes": 64 << 10}}
        with open(self.config, "w") as f:
            json.dump(cfg, f)
        return cfg

    def set_uploader(self, **keys):
        with open(self.config) as f:
            cfg = json.load(f)
        cfg["uploader"]["media"].update(keys)
        with open(self.config, "w") as f:
            json.dump(cfg, f)

    def ledger_bytes(self):
        out = subprocess.run([INSPECT, "--config", self.config, "--json"], capture_output=True,
                             text=True)
        if out.returncode != 0:
            return 0
        rows = json.loads(out.stdout)["uploaders"].get("media", [])
        return sum(r["used_bytes"] for r in rows)

    def remote_files(self):
        root = os.path.join(self.fake.dir, "root", "a1")
        return sorted(os.path.relpath(os.path.join(d, f), root)
                      for d, _, fs in os.walk(root) for f in fs)

    def local_files(self):
        return sorted(os.path.relpath(os.path.join(d, f), self.src)
                      for d, _, fs in os.walk(self.src) for f in fs)

    def dry_run_stages(self):
        """[(summary match, argv)] of `upload --dry-run`, and its whole output."""
        r = self.cplow("upload", "--dry-run")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        lines = r.stdout.splitlines()
        stages = []
        for i, line in enumerate(lines):
            m = re.match(r"  stage (\d+) on (\S+): (\w+), (\d+) bytes left, --max-transfer (\d+) "
                         r"bytes, --max-size (\d+) bytes; moves up to (\d+) bytes$", line)
            if m:
                k = i + 1
                while lines[k].startswith("  note: "):
                    k += 1
                stages.append((m, shlex.split(lines[k])))
        return stages, r.stdout

    def running_rclone_argv(self, p):
        """rclone's argv, read from /proc while the stage runs."""
        def find():
            if p.poll() is not None:
                raise AssertionError("cplow ended first: " + p.stderr.read()[-3000:])
            for pid, comm in descendants(p.pid):
                argv = cmdline(pid)
                if comm == "rclone" and argv[1:2] == ["move"]:
                    return argv
            return None
        return wait_for("rclone's move to run", find, timeout=60)

    # ---- one source of truth ----

    def test_the_dry_runs_command_is_what_runs_and_the_users_flags_win(self):
        make_tree(self.src, 12, seed=81, min_size=100 << 10, max_size=200 << 10)
        user_excludes = os.path.join(self.work, "user-excludes.txt")
        with open(user_excludes, "w") as f:
            f.write("*.nfo\n")
        self.write_config({"--transfers": 2, "--order-by": "name,asc", "--max-size": "20M",
                           "--max-transfer": "1T", "--exclude-from": user_excludes},
                          rclone_excludes=["*.partial~"])
        stages, out = self.dry_run_stages()
        self.assertEqual(len(stages), 1, out)
        summary, planned = stages[0]
        quota_limit = self.QUOTA // 2  # aggressive_fresh_sa: half of a fresh account
        self.assertEqual(int(summary.group(5)), quota_limit)
        self.assertEqual(int(summary.group(6)), 20 << 20, "the user's --max-size")
        self.assertIn("  note: rclone_extras: --max-transfer=1T is more than this stage's quota "
                      "allows: clamped to %d bytes" % quota_limit, out)
        self.fake.set_delay(100)  # long enough to read rclone's argv while it runs
        p = self.start("upload")
        ran = self.running_rclone_argv(p)
        self.fake.set_delay(0)
        _, err = p.communicate(timeout=300)
        self.assertEqual(p.returncode, 0, err[-3000:])
        self.assertEqual(normalized(ran), normalized(planned))
        # The user's values, each once (before, the stage's came first and the dry run showed
        # them); the quota's --max-transfer, clamped with a warning.
        for flag, want in (("--transfers", "--transfers=2"), ("--order-by", "--order-by=name,asc"),
                           ("--max-size", "--max-size=20M"),
                           ("--max-transfer", "--max-transfer=%dB" % quota_limit),
                           ("--cutoff-mode", "--cutoff-mode=cautious")):
            self.assertEqual(flag_values(ran, flag), [want], ran)
        self.assertIn("--exclude-from=" + user_excludes, ran)
        self.assertEqual(len(flag_values(ran, "--exclude-from")), 2, ran)
        self.assertIn("WARN  worker[media/fake1]: rclone_extras: --max-transfer=1T is more than "
                      "this stage's quota allows: clamped to %d bytes" % quota_limit, err)

    def test_a_lower_max_transfer_in_the_extras_limits_every_stage_as_planned(self):
        files = make_tree(self.src, 10, seed=82, min_size=90 << 10, max_size=110 << 10)
        self.write_config({"--max-transfer": "300K"})
        stages, out = self.dry_run_stages()
        self.assertGreaterEqual(len(stages), 4, out)
        for summary, argv in stages:
            self.assertEqual(int(summary.group(5)), 300 << 10)
            self.assertEqual(flag_values(argv, "--max-transfer"), ["--max-transfer=307200B"])
        self.assertNotIn("note:", out)
        r = self.cplow("upload")
        self.assertEqual(r.returncode, 0, r.stderr[-3000:])
        started = re.findall(r"stage \d+ on fake1 \(1 of 1\): \w+, \d+ bytes left, "
                             r"--max-transfer (\d+) bytes", r.stderr)
        self.assertGreaterEqual(len(started), 4, r.stderr[-3000:])
        self.assertEqual(set(started), {str(300 << 10)})
        truth = self.fake.truth()["users"]["a1"]
        self.assertEqual(truth["accepted_bytes"], sum(files.values()))
        self.assertEqual(self.ledger_bytes(), truth["accepted_bytes"])

    # ---- --dry-run reaches rclone ----

    def check_dry_run(self, how, extras, core):
        files = make_tree(self.src, 6, seed=83, min_size=10 << 10, max_size=50 << 10)
        os.makedirs(os.path.join(self.src, "empty", "deeper"))
        self.write_config(extras, core)
        r = self.cplow("upload")
        self.assertEqual(r.returncode, 0, r.stderr[-3000:])
        self.assertEqual(self.fake.truth()["users"]["a1"]["accepted_files"], 0)
        self.assertEqual(self.remote_files(), [])
        self.assertEqual(self.local_files(), sorted(files))
        self.assertTrue(os.path.isdir(os.path.join(self.src, "empty", "deeper")),
                        "an empty directory was removed")
        self.assertEqual(self.ledger_bytes(), 0)
        self.assertIn("uploader media: stage 1 is a dry run (%s): rclone moves nothing, the "
                      "ledger counts nothing, nothing local is deleted" % how, r.stderr)
        self.assertIn("uploader media: 1 stages, 0 files, 0 bytes", r.stderr)

    def test_a_user_dry_run_moves_nothing_counts_nothing_and_deletes_nothing(self):
        self.check_dry_run("--dry-run in rclone_extras", {"--dry-run": None}, {})

    def test_core_dry_run_moves_nothing_counts_nothing_and_deletes_nothing(self):
        self.check_dry_run("core.dry_run", {}, {"dry_run": True})

    # ---- what the dry run counts, and excludes ----

    def test_the_dry_runs_bytes_are_what_rclone_moves_with_every_exclude_and_min_age(self):
        old = time.time() - 7200

        def put(rel, size, mtime=old):
            path = os.path.join(self.src, rel)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(os.urandom(size))
            os.utime(path, (mtime, mtime))
            return size

        moved = put("show/e01.mkv", 300 << 10) + put("downloads/d.mkv", 200 << 10)
        put("show/e01.nfo", 5000)            # the user's --exclude-from
        put("show/e02.mkv.partial~", 70000)  # rclone_excludes
        put("show/e03.mkv", 80000, time.time())  # younger than the age check's 60 minutes
        user_excludes = os.path.join(self.work, "user-excludes.txt")
        with open(user_excludes, "w") as f:
            f.write("*.nfo\n")
        self.write_config({"--exclude-from": user_excludes}, rclone_excludes=["*.partial~"])
        # size_excludes keep downloads/ out of the size check only: rclone moves it anyway.
        self.set_uploader(size_excludes=["downloads/*"],
                          check={"type": "age", "limit_minutes": 60})
        stages, out = self.dry_run_stages()
        self.assertIn("uploader media: 1 accounts, %d bytes to upload\n" % moved, out)
        r = self.cplow("upload")
        self.assertEqual(r.returncode, 0, r.stderr[-3000:])
        self.assertEqual(self.fake.truth()["users"]["a1"]["accepted_bytes"], moved)
        self.assertEqual(self.remote_files(), ["Media/downloads/d.mkv", "Media/show/e01.mkv"])
        self.assertEqual(self.local_files(), ["show/e01.nfo", "show/e02.mkv.partial~",
                                              "show/e03.mkv"])

    def test_a_dry_run_that_cannot_plan_exits_1_with_the_reason(self):
        make_tree(self.src, 2, seed=84, max_size=10 << 10)
        keys = os.path.join(self.work, "sa")
        os.makedirs(keys)
        with open(os.path.join(keys, "sa1.json"), "w") as f:
            f.write("{}")
        cfg = self.write_config(upload_remote="nosuch:/Media")
        cfg["uploader"]["media"] = {"max_size_gb": 0, "service_account_path": keys}
        with open(self.config, "w") as f:
            json.dump(cfg, f)
        r = self.cplow("upload", "--dry-run")
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("  stage 1 on %s/sa1.json: cannot plan: remote \"nosuch\"" % keys, r.stdout)
        self.assertIn("the plan stops here: the upload would fail at this stage", r.stdout)
        self.assertNotIn("stages cover", r.stdout)


if __name__ == "__main__":
    unittest.main()
