"""The hidden cleaner (issue 14): `cplow clean`, and before an upload. For each *_HIDDEN~
marker under a hidden folder, its path is deleted below the hidden_remote of each remote in
hidden_remotes (the real rclone against the fake remote), then the marker is removed; a marker
whose deletion failed stays."""
import json
import os
import shutil
import tempfile
import unittest

from harness import CplowProcesses, FakeRemote, drop_ledger


def write(path, data=b"x"):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


class HiddenTest(CplowProcesses, unittest.TestCase):
    def setUp(self):
        self.work = tempfile.mkdtemp(prefix="cplow-hidden-")
        self.config = os.path.join(self.work, "config.json")
        self.procs = []
        self.fake = FakeRemote({"a1": ("pw1", 0), "a2": ("pw2", 0)}, self.work)
        self.src = os.path.join(self.work, "media")
        self.unionfs = os.path.join(self.work, "unionfs")
        os.makedirs(self.src)
        os.makedirs(self.unionfs)
        self.env = dict(os.environ)
        self.env.update(self.fake.remote_env("fake1", "a1"))
        self.env.update(self.fake.remote_env("fake2", "a2"))
        # What the remote holds below its hidden_remote (fake1:/Media).
        for rel in ("Movies/Gone (2010).mkv", "Movies/Kept (2011).mkv",
                    "TV/Show/s01e01.mkv", "TV/Show/s01e02.mkv", "TV/Other/s01e01.mkv"):
            write(self.fake.stored("a1", "Media/" + rel), b"video")
        write(self.fake.stored("a1", "Outside/Show/s01e01.mkv"), b"not below Media")
        # The union deleted a file and a folder: unionfs-fuse's markers.
        write(os.path.join(self.unionfs, "Movies/Gone (2010).mkv_HIDDEN~"), b"")
        os.makedirs(os.path.join(self.unionfs, "TV/Show_HIDDEN~"))

    def tearDown(self):
        self.kill_started()
        self.fake.stop()
        drop_ledger(self.config)
        shutil.rmtree(self.work, ignore_errors=True)

    def write_config(self, hidden_remotes=("media",)):
        cfg = {
            "core": {"dry_run": False},
            "hidden": {self.unionfs: {"hidden_remotes": list(hidden_remotes)}},
            "remotes": {
                "media": {"upload_folder": self.src, "upload_remote": "fake1:/Media",
                          "hidden_remote": "fake1:/Media",
                          "rclone_extras": {"--retries": 1, "--low-level-retries": 1}},
                "other": {"hidden_remote": "fake2:/Media"},
            },
            "uploader": {"media": {"check_interval": 1, "max_size_gb": 0}},
        }
        with open(self.config, "w") as f:
            json.dump(cfg, f)

    def on_remote(self, user, rel):
        return os.path.exists(self.fake.stored(user, rel))

    def markers(self):
        found = []
        for d, dirs, files in os.walk(self.unionfs):
            for n in dirs + files:
                if n.endswith("_HIDDEN~"):
                    found.append(os.path.relpath(os.path.join(d, n), self.unionfs))
        return sorted(found)

    def test_clean_deletes_marked_files_and_folders_remotely_and_removes_the_markers(self):
        self.write_config()
        r = self.cplow("clean")
        self.assertEqual(r.returncode, 0, r.stderr[-3000:])
        self.assertFalse(self.on_remote("a1", "Media/Movies/Gone (2010).mkv"))
        self.assertFalse(self.on_remote("a1", "Media/TV/Show"), "the folder is purged")
        self.assertTrue(self.on_remote("a1", "Media/Movies/Kept (2011).mkv"))
        self.assertTrue(self.on_remote("a1", "Media/TV/Other/s01e01.mkv"))
        self.assertTrue(self.on_remote("a1", "Outside/Show/s01e01.mkv"))
        self.assertEqual(self.markers(), [])
        # the empty folders the markers left are gone too, the hidden folder stays
        self.assertEqual(os.listdir(self.unionfs), [])
        self.assertIn("hidden: deleted fake1:/Media/Movies/Gone (2010).mkv", r.stderr)
        self.assertIn("hidden: purged fake1:/Media/TV/Show", r.stderr)

    def test_a_failing_remote_keeps_its_marker_for_the_next_clean(self):
        self.write_config(hidden_remotes=("media", "other"))
        # fake2 logs in with a wrong password: every call to it fails.
        self.env["RCLONE_CONFIG_FAKE2_PASS"] = self.fake.remote_env("x", "a1")[
            "RCLONE_CONFIG_X_PASS"]
        r = self.cplow("clean")
        self.assertEqual(r.returncode, 1, r.stderr[-3000:])
        self.assertEqual(self.markers(), ["Movies/Gone (2010).mkv_HIDDEN~", "TV/Show_HIDDEN~"])
        self.assertRegex(r.stderr, r"hidden: cannot delete fake2:/Media/Movies/Gone \(2010\)\.mkv "
                                   r"\(.*\); the marker .*Gone \(2010\)\.mkv_HIDDEN~ stays")
        # the remote that answered had its part done; the next clean does the rest
        self.assertFalse(self.on_remote("a1", "Media/Movies/Gone (2010).mkv"))
        self.write_config(hidden_remotes=("media",))
        r = self.cplow("clean")
        self.assertEqual(r.returncode, 0, r.stderr[-3000:])
        self.assertIn("was not there (already deleted)", r.stderr)
        self.assertEqual(self.markers(), [])

    def test_a_dry_run_deletes_nothing(self):
        self.write_config()
        r = self.cplow("clean", "--dry-run")
        self.assertEqual(r.returncode, 0, r.stderr[-3000:])
        self.assertIn("hidden: dry run: would delete fake1:/Media/Movies/Gone (2010).mkv",
                      r.stderr)
        self.assertIn("hidden: dry run: would purge fake1:/Media/TV/Show", r.stderr)
        self.assertTrue(self.on_remote("a1", "Media/Movies/Gone (2010).mkv"))
        self.assertTrue(self.on_remote("a1", "Media/TV/Show/s01e01.mkv"))
        self.assertEqual(self.markers(), ["Movies/Gone (2010).mkv_HIDDEN~", "TV/Show_HIDDEN~"])

    def test_a_marker_that_names_the_remote_path_itself_is_refused(self):
        write(os.path.join(self.unionfs, "_HIDDEN~"), b"")
        write(os.path.join(self.unionfs, "TV/.._HIDDEN~"), b"")
        self.write_config()
        r = self.cplow("clean")
        self.assertEqual(r.returncode, 1, r.stderr[-3000:])
        self.assertIn("_HIDDEN~ is refused", r.stderr)
        self.assertTrue(self.on_remote("a1", "Media/Movies/Kept (2011).mkv"))
        self.assertTrue(self.on_remote("a1", "Media/TV/Other/s01e01.mkv"))
        self.assertEqual(self.markers(), ["TV/.._HIDDEN~", "_HIDDEN~"])

    def test_upload_cleans_before_it_uploads(self):
        # Deleted in the union, then written again: the new file must survive on the remote.
        write(os.path.join(self.src, "Movies/Gone (2010).mkv"), b"the new cut")
        self.write_config()
        r = self.cplow("upload")
        self.assertEqual(r.returncode, 0, r.stderr[-3000:])
        with open(self.fake.stored("a1", "Media/Movies/Gone (2010).mkv"), "rb") as f:
            self.assertEqual(f.read(), b"the new cut")
        self.assertFalse(self.on_remote("a1", "Media/TV/Show"))
        self.assertEqual(self.markers(), [])
        self.assertLess(r.stderr.index("hidden: purged"), r.stderr.index("stage 1 started"))


if __name__ == "__main__":
    unittest.main()
