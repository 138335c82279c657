"""Quota applies where quotas exist (issue 14): an uploader whose resolved quota is off (a local
or non-drive remote under "auto", or `"quota": false`) uploads as cloudplow did: no stage flags
from the strategy table, no daily limit, no rotation for usage; its files are still counted.
With `"quota": true` the same uploader gets the stage flags and stops at the daily quota."""
import json
import os
import re
import shutil
import tempfile
import unittest

from harness import CplowProcesses, FakeRemote, drop_ledger, make_tree, used_by_account

STAGE_FLAGS = ("--max-transfer", "--max-size", "--transfers", "--order-by", "--max-backlog",
               "--cutoff-mode")
DAILY = 200000


def rclone_lines(stdout):
    return [l.strip() for l in stdout.splitlines() if l.strip().startswith("/usr/bin/rclone ")]


class QuotaAppliesTest(CplowProcesses, unittest.TestCase):
    def setUp(self):
        self.work = tempfile.mkdtemp(prefix="cplow-quota-")
        self.config = os.path.join(self.work, "config.json")
        self.procs = []
        self.fake = None
        self.src = os.path.join(self.work, "media")
        os.makedirs(self.src)
        self.files = make_tree(self.src, 12, seed=51, min_size=40000, max_size=90000)
        self.assertGreater(sum(self.files.values()), 2 * DAILY)
        self.env = dict(os.environ)

    def tearDown(self):
        self.kill_started()
        if self.fake:
            self.fake.stop()
        drop_ledger(self.config)
        shutil.rmtree(self.work, ignore_errors=True)

    def write_config(self, upload_remote, quota=None):
        uploader = {"check_interval": 1, "max_size_gb": 0}
        if quota is not None:
            uploader["quota"] = quota
        cfg = {
            "core": {"dry_run": False},
            "remotes": {"media": {"upload_folder": self.src, "upload_remote": upload_remote,
                                  "rclone_command": "move",
                                  "rclone_extras": {"--retries": 1,
                                                    "--low-level-retries": 1}}},
            "uploader": {"media": uploader},
            "quota": {"daily_bytes": DAILY, "min_free_bytes": 1, "continue_min_bytes": 1},
        }
        with open(self.config, "w") as f:
            json.dump(cfg, f)

    def used(self):
        """The uploader's counted bytes, every account."""
        return sum(used_by_account(self.config, "media").values())

    def left_in_source(self):
        return sum(os.path.getsize(os.path.join(d, f))
                   for d, _, fs in os.walk(self.src) for f in fs)

    def assert_uploads_as_cloudplow_did(self, why):
        check = self.cplow("check-config")
        self.assertEqual(check.returncode, 0, check.stderr)
        self.assertIn("uploader media: quota off (%s" % why, check.stderr)
        dry = self.cplow("upload", "--dry-run")
        self.assertEqual(dry.returncode, 0, dry.stderr[-3000:])
        self.assertRegex(dry.stdout, r"quota off \(%s.*\): no stage flags, no daily limit"
                         % re.escape(why))
        lines = rclone_lines(dry.stdout)
        self.assertEqual(len(lines), 1, dry.stdout)
        for flag in STAGE_FLAGS:
            self.assertNotIn(flag, lines[0])
        self.assertIn("1 stages cover the %d bytes" % sum(self.files.values()), dry.stdout)
        r = self.cplow("upload")
        self.assertEqual(r.returncode, 0, r.stderr[-3000:])
        self.assertIn("uploader media: quota off (%s" % why, r.stderr)
        self.assertEqual(self.left_in_source(), 0, "everything uploaded, past daily_bytes")
        self.assertEqual(self.used(), sum(self.files.values()), "and every byte counted")

    def test_a_local_remote_under_auto_uploads_past_daily_bytes_without_stage_flags(self):
        dest = os.path.join(self.work, "dest")
        self.write_config(":local:" + dest)
        self.assert_uploads_as_cloudplow_did("auto: upload_remote is an on-the-fly local remote, "
                                             "not drive")
        self.assertEqual(sum(os.path.getsize(os.path.join(d, f))
                             for d, _, fs in os.walk(dest) for f in fs),
                         sum(self.files.values()))

    def test_a_webdav_remote_under_auto_uploads_past_daily_bytes_without_stage_flags(self):
        self.fake = FakeRemote({"a1": ("pw1", 0)}, self.work)
        self.env.update(self.fake.remote_env("fake1", "a1"))
        self.write_config("fake1:/Media")
        self.assert_uploads_as_cloudplow_did('auto: upload_remote "fake1:/Media" has no drive '
                                             'remote behind it')
        self.assertEqual(self.fake.accepted("a1"), sum(self.files.values()))

    def test_quota_true_gets_the_stage_flags_and_stops_at_daily_bytes(self):
        dest = os.path.join(self.work, "dest")
        self.write_config(":local:" + dest, quota=True)
        dry = self.cplow("upload", "--dry-run")
        self.assertEqual(dry.returncode, 0, dry.stderr[-3000:])
        self.assertIn("quota on (true in the config)", dry.stdout)
        first = rclone_lines(dry.stdout)[0]
        for flag in STAGE_FLAGS:
            self.assertIn(flag, first)
        r = self.cplow("upload")
        self.assertEqual(r.returncode, 0, r.stderr[-3000:])
        self.assertLessEqual(self.used(), DAILY)
        self.assertGreater(self.left_in_source(), 0, "the daily quota stopped the upload")


if __name__ == "__main__":
    unittest.main()
