"""cloudplow's configs as users have them (issue 14): `cplow check-config` accepts each, and
`cplow upload --dry-run` plans with it.

The fixtures under tests/fixtures/config carry every key and value shape of cloudplow's built-in
defaults as its config upgrade merges them into a user's file (cloudplow_upgraded.json), of the
config its first start writes (cloudplow_first_start.json), of its config.json.sample
(cloudplow_sample.json), and of the quota fork's sample and README examples (fork_sample.json).
Each is rewritten so that its paths (/mnt/local, /home/...) point into a temp dir, with the
folders, a service-account key and an rclone.conf naming the fixture's remotes, then checked
with the built cplow and the real rclone.
"""
import json
import os
import shutil
import subprocess
import tempfile
import unittest

from harness import BUILD, ROOT

CPLOW = os.path.join(BUILD, "supervisor", "cplow")
FIXTURES = os.path.join(ROOT, "tests", "fixtures", "config")
# Remotes the fixtures name (upload_remote, movers, hidden_remote); rclone reads only their type.
RCLONE_CONF = "".join("[%s]\ntype = %s\n" % r for r in (
    ("google", "drive"), ("gdrive", "drive"), ("staging", "drive"), ("box", "box")))


class CloudplowConfigsTest(unittest.TestCase):
    def setUp(self):
        self.work = tempfile.mkdtemp(prefix="cplow-cloudplow-")
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("RCLONE_")}

    def tearDown(self):
        shutil.rmtree(self.work, ignore_errors=True)

    def stage(self, name):
        """The fixture with its paths in the temp dir, and what they name; returns its path."""
        with open(os.path.join(FIXTURES, name)) as f:
            text = f.read()
        for prefix in ("/mnt/local", "/home/seed", "/home/user"):
            text = text.replace('"' + prefix, '"' + self.work + prefix)
        cfg = json.loads(text)
        for remote in cfg["remotes"].values():
            if remote.get("upload_folder"):
                os.makedirs(remote["upload_folder"], exist_ok=True)
        for uploader in cfg["uploader"].values():
            keys = uploader.get("service_account_path")
            if keys:
                os.makedirs(keys, exist_ok=True)
                with open(os.path.join(keys, "sa1.json"), "w") as f:
                    f.write("{}")
        conf = cfg["core"]["rclone_config_path"]
        os.makedirs(os.path.dirname(conf), exist_ok=True)
        with open(conf, "w") as f:
            f.write(RCLONE_CONF)
        path = os.path.join(self.work, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def check_config(self, name):
        path = self.stage(name)
        out = subprocess.run([CPLOW, "--config", path, "check-config"],
                             capture_output=True, text=True, env=self.env, timeout=60)
        self.assertEqual(out.returncode, 0, "%s:\n%s" % (name, out.stderr))
        effective = json.loads(out.stdout)
        # Only notes: warnings, the ignored sections' names, the quota that applies, what the
        # movers and hidden cleaners do.
        for line in out.stderr.splitlines():
            self.assertRegex(line, r"^cplow: (warning: |uploader |hidden )", name)
        # and it plans an upload (nothing to move in the empty folders)
        dry = subprocess.run([CPLOW, "--config", path, "upload", "--dry-run"],
                             capture_output=True, text=True, env=self.env, timeout=120)
        self.assertEqual(dry.returncode, 0, "%s:\n%s" % (name, dry.stderr[-3000:]))
        return effective, out.stderr

    def test_cloudplow_upgraded_config_is_accepted(self):
        # plex.token "" and sabnzbd.apikey "" in sections that are off (issue 14's first case)
        effective, stderr = self.check_config("cloudplow_upgraded.json")
        self.assertIsNone(effective["plex"]["token"])
        self.assertIsNone(effective["sabnzbd"]["apikey"])
        self.assertIn("uploader movies: quota on (auto: upload_remote's chain ends in a drive "
                      "backend)", stderr)
        self.assertNotIn("warning", stderr)

    def test_cloudplow_first_start_config_is_accepted(self):
        effective, stderr = self.check_config("cloudplow_first_start.json")
        self.assertTrue(effective["uploader"]["google"]["can_be_throttled"])
        self.assertEqual(effective["remotes"]["google"]["hidden_remote"], "google:")
        self.assertIn("--verbose is set by cplow itself, ignored", stderr)

    def test_cloudplow_sample_config_is_accepted(self):
        effective, stderr = self.check_config("cloudplow_sample.json")
        mover = effective["uploader"]["google"]["mover"]
        self.assertEqual((mover["enabled"], mover["move_to_remote"]), (False, "gdrive:Media"))
        self.assertIn("uploader google: quota on (auto: it rotates service accounts", stderr)

    def test_the_fork_sample_and_readme_config_is_accepted(self):
        effective, stderr = self.check_config("fork_sample.json")
        self.assertFalse(effective["dashboard"]["enabled"], "public without a token: off")
        self.assertEqual(effective["dashboard"]["refresh_seconds"], 3)
        self.assertIn('warning: dashboard.token: missing while dashboard.host is "0.0.0.0", '
                      'not a loopback address: the dashboard stays off (uploads run); add '
                      '"token": "<a long random secret>" to dashboard, or '
                      '"allow_unauthenticated": true on a trusted network', stderr)
        self.assertEqual(effective["notifications"]["GoogleChat"]["service"], "google_chat")
        self.assertEqual(effective["notifications"]["Pushover"]["priority"], 0)
        self.assertIn("warning: notifications.Pushover: app_token and user_token empty",
                      stderr)
        self.assertIn("warning: sabnzbd.api-key: unknown key (did you mean apikey?), ignored",
                      stderr)
        self.assertIn("warning: syncer.google2box: cplow runs no syncer", stderr)
        self.assertIn("warning: uploader.google.chunked_upload: ignored", stderr)
        self.assertIn("uploader google_downloads: quota on (auto: upload_remote's chain ends "
                      "in a drive backend)", stderr)

    def test_a_config_with_several_mistakes_gets_every_one_and_exit_2(self):
        path = self.stage("cloudplow_sample.json")
        with open(path) as f:
            cfg = json.load(f)
        cfg["core"]["dry_run"] = "no"
        cfg["plex"]["enabled"] = True
        cfg["uploader"]["google"]["service_account_path"] = os.path.join(self.work, "empty")
        os.makedirs(os.path.join(self.work, "empty"))
        cfg["remotes"]["google"]["upload_remote"] = "nosuch:/Media"
        with open(path, "w") as f:
            json.dump(cfg, f)
        out = subprocess.run([CPLOW, "--config", path, "check-config"], capture_output=True,
                             text=True, env=self.env, timeout=60)
        self.assertEqual(out.returncode, 2, out.stderr)
        self.assertEqual(out.stdout, "")
        errors = [l for l in out.stderr.splitlines() if not l.startswith("cplow: warning")]
        self.assertEqual(errors, [
            'cplow: core.dry_run: must be true or false, got "no"',
            "cplow: uploader.google.service_account_path: no key files (*.json) in "
            + os.path.join(self.work, "empty"),
            "cplow: plex.token: empty: plex.enabled needs it",
        ], out.stderr)
        # fixed, what only rclone knows comes next, still with exit 2
        cfg["core"]["dry_run"] = False
        cfg["plex"]["enabled"] = False
        del cfg["uploader"]["google"]["service_account_path"]
        with open(path, "w") as f:
            json.dump(cfg, f)
        out = subprocess.run([CPLOW, "--config", path, "check-config"], capture_output=True,
                             text=True, env=self.env, timeout=60)
        self.assertEqual(out.returncode, 2, out.stderr)
        self.assertIn('cplow: remotes.google.upload_remote: no remote "nosuch" in rclone\'s '
                      "config", out.stderr)


if __name__ == "__main__":
    unittest.main()
