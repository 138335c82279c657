"""The mover (issue 14): after an upload, a server-side `rclone move` from move_from_remote to
move_to_remote, run by a worker like any stage, its bytes charged per file to the account that
does the copy (move_to_remote's remote, as rclone.conf has it).

Two paths on one fake remote stand in for the staging and the final drive: rclone's webdav
backend moves with WebDAV MOVE there, and logs "Moved (server-side)" per file (no PUT reaches
the fake, whose accepted bytes stay 0).
"""
import json
import os
import shutil
import signal
import tempfile
import unittest

from harness import (CplowProcesses, FakeRemote, drop_ledger, make_tree, used_by_account,
                     wait_for)


def files_under(root):
    """{relative path: size} of the files below root."""
    found = {}
    for d, _, names in os.walk(root):
        for n in names:
            p = os.path.join(d, n)
            found[os.path.relpath(p, root)] = os.path.getsize(p)
    return found


class MoverTest(CplowProcesses, unittest.TestCase):
    def setUp(self):
        self.work = tempfile.mkdtemp(prefix="cplow-mover-")
        self.config = os.path.join(self.work, "config.json")
        self.procs = []
        self.fake = FakeRemote({"a1": ("pw1", 0)}, self.work)
        self.src = os.path.join(self.work, "media")
        os.makedirs(self.src)
        self.staging = self.fake.stored("a1", "staging")
        self.final = self.fake.stored("a1", "final")
        os.makedirs(self.final)  # an existing destination, as a user's drive is
        self.env = dict(os.environ)
        self.env.update(self.fake.remote_env("fake1", "a1"))

    def tearDown(self):
        self.kill_started()
        self.fake.stop()
        drop_ledger(self.config)
        shutil.rmtree(self.work, ignore_errors=True)

    def write_config(self, quota, daily=1 << 30, mover_extras=None):
        cfg = {
            "core": {"dry_run": False},
            "remotes": {"media": {
                "upload_folder": self.src, "upload_remote": "fake1:/staging",
                "rclone_command": "move",
                "rclone_extras": {"--retries": 1, "--low-level-retries": 1}}},
            "uploader": {"media": {
                "check_interval": 1, "max_size_gb": 0, "quota": quota,
                "mover": {"enabled": True, "move_from_remote": "fake1:/staging",
                          "move_to_remote": "fake1:/final",
                          "rclone_extras": dict({"--delete-empty-src-dirs": None,
                                                 "--retries": 1},
                                                **(mover_extras or {}))}}},
            "quota": {"daily_bytes": daily, "min_free_bytes": 1, "continue_min_bytes": 1},
        }
        with open(self.config, "w") as f:
            json.dump(cfg, f)

    def used(self):
        """{account: used bytes} of the uploader's ledger rows."""
        return used_by_account(self.config, "media")

    def test_the_mover_moves_server_side_and_charges_its_account_exactly_what_moved(self):
        staged = make_tree(self.staging, 8, seed=41, min_size=2000, max_size=90000)
        uploaded = make_tree(self.src, 3, seed=42, min_size=1000, max_size=30000, dirs=0)
        self.write_config(True)
        r = self.cplow("upload")
        self.assertEqual(r.returncode, 0, r.stderr[-3000:])
        # the upload went to staging, then the mover moved staging (both) to final
        self.assertEqual(files_under(self.src), {})
        self.assertEqual(files_under(self.staging), {})
        self.assertEqual(files_under(self.final), dict(staged, **uploaded))
        # the account is charged for the upload and, per file, for what the mover moved
        self.assertEqual(self.used(), {"fake1": 2 * sum(uploaded.values())
                                       + sum(staged.values())})
        # server-side: no byte of the move went through PUT
        self.assertEqual(self.fake.accepted("a1"), sum(uploaded.values()))
        self.assertIn("mover fake1:/staging → fake1:/final done: %d files, %d bytes counted "
                      "on fake1" % (len(staged) + len(uploaded),
                                    sum(staged.values()) + sum(uploaded.values())), r.stderr)

    def test_the_quota_holds_the_mover_to_what_its_account_has_left(self):
        staged = make_tree(self.staging, 10, seed=43, min_size=10000, max_size=60000)
        daily = sum(staged.values()) // 2
        self.write_config(True, daily=daily)
        r = self.cplow("upload")
        self.assertEqual(r.returncode, 0, r.stderr[-3000:])
        moved, left = files_under(self.final), files_under(self.staging)
        self.assertEqual(dict(moved, **left), staged, "nothing lost")
        self.assertGreater(len(moved), 0)
        self.assertGreater(len(left), 0)
        self.assertLessEqual(sum(moved.values()), daily)
        self.assertEqual(self.used(), {"fake1": sum(moved.values())})
        self.assertIn("wait for a later run: they do not fit", r.stderr)

    def test_without_a_quota_the_mover_moves_everything_and_counts_it(self):
        staged = make_tree(self.staging, 6, seed=44, min_size=10000, max_size=60000)
        self.write_config(False, daily=1000)
        r = self.cplow("upload")
        self.assertEqual(r.returncode, 0, r.stderr[-3000:])
        self.assertEqual(files_under(self.final), staged)
        self.assertEqual(self.used(), {"fake1": sum(staged.values())})

    def test_a_cut_mover_is_reconciled(self):
        staged = make_tree(self.staging, 5, seed=45, min_size=10000, max_size=60000)
        self.write_config(True, mover_extras={"--transfers": 1, "--checkers": 1})
        # Each MOVE is done at once, its reply held: the first moved file is on the final
        # path while rclone has logged nothing for it when cplow is stopped.
        self.fake.set_move_reply_delay(20000)
        p = self.start("upload")
        wait_for("a file moved server-side", lambda: files_under(self.final), timeout=60)
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=120)
        self.assertEqual(p.returncode, 128 + signal.SIGTERM, err[-3000:])
        moved, left = files_under(self.final), files_under(self.staging)
        self.assertEqual(dict(moved, **left), staged, "nothing lost")
        self.assertEqual(len(moved), 1, moved)
        self.assertIn("in-flight check: %s arrived whole" % next(iter(moved)), err)
        self.assertEqual(self.used(), {"fake1": sum(moved.values())})

    def test_the_dry_run_shows_the_movers_command_and_moves_nothing(self):
        staged = make_tree(self.staging, 3, seed=46, min_size=1000, max_size=9000)
        self.write_config(True, daily=123456)
        r = self.cplow("upload", "--dry-run")
        self.assertEqual(r.returncode, 0, r.stderr[-3000:])
        self.assertIn("mover after the upload: fake1:/staging → fake1:/final on fake1, quota on, "
                      "123456 bytes left: moves the files it lists there that fit", r.stdout)
        line = [l for l in r.stdout.splitlines() if " move fake1:/staging fake1:/final " in l]
        self.assertEqual(len(line), 1, r.stdout)
        self.assertIn("--files-from-raw=", line[0])
        self.assertIn("--max-transfer=123456B", line[0])
        self.assertIn("--delete-empty-src-dirs", line[0])
        self.assertEqual(files_under(self.staging), staged)


if __name__ == "__main__":
    unittest.main()
