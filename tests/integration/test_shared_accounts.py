"""Two uploaders whose rotate_remotes name the same remote share one account: cplow never runs
two stages on it at once, whichever uploader they belong to. Real rclone, the fake quota
remote; the ledger's stage table (cplow-inspect --json) is polled with a deadline."""
import json
import os
import shutil
import subprocess
import tempfile
import time
import unittest

from harness import BUILD, FakeRemote, make_tree, unlink_shm, wait_for

CPLOW = os.path.join(BUILD, "supervisor/cplow")
INSPECT = os.path.join(BUILD, "shm/cplow-inspect")


class SharedAccountTest(unittest.TestCase):
    def setUp(self):
        self.work = tempfile.mkdtemp(prefix="cplow-shared-")
        self.config = os.path.join(self.work, "config.json")
        self.fake = None
        self.proc = None

    def tearDown(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.fake:
            self.fake.stop()
        state = subprocess.run([INSPECT, "--config", self.config, "--json"],
                               capture_output=True, text=True)
        if state.returncode == 0:
            unlink_shm(json.loads(state.stdout)["ledger"])
        shutil.rmtree(self.work, ignore_errors=True)

    def state(self):
        out = subprocess.run([INSPECT, "--config", self.config, "--json"], capture_output=True,
                             text=True, timeout=30)
        if out.returncode == 1 and "no ledger" in out.stderr:
            return {"uploaders": {}, "stages": []}
        self.assertEqual(out.returncode, 0, out.stderr)
        return json.loads(out.stdout)

    def test_two_uploaders_on_one_remote_never_run_two_stages_on_it_at_once(self):
        # The fake's own quota is off (0): both uploaders' bytes land on user a1. The ledger
        # counts each uploader's row on its own (the config warning says so).
        self.fake = FakeRemote({"a1": ("pw1", 0), "a2": ("pw2", 0)}, self.work)
        env = dict(os.environ)
        env.update(self.fake.remote_env("fake1", "a1"))
        env.update(self.fake.remote_env("fake2", "a2"))
        folders, files = {}, {}
        cfg = {"remotes": {}, "uploader": {},
               "quota": {"daily_bytes": 64 << 20, "min_free_bytes": 1,
                         "continue_min_bytes": 1}}
        # Both rotate fake1 alone: with another account free, the planner would skip the busy
        # one and take that (fake2 is there to show it is never used).
        for name, remotes in (("movies", ["fake1"]), ("tv", ["fake1"])):
            folders[name] = os.path.join(self.work, name)
            os.makedirs(folders[name])
            files[name] = make_tree(folders[name], 12, seed=len(name) + 40, min_size=100 << 10,
                                    max_size=250 << 10)
            cfg["remotes"][name] = {"upload_folder": folders[name],
                                    "upload_remote": "fake1:/" + name,
                                    "rclone_extras": {"--retries": 1}}
            cfg["uploader"][name] = {"max_size_gb": 0, "rotate_remotes": remotes}
        with open(self.config, "w") as f:
            json.dump(cfg, f)
        self.fake.set_delay(30)  # each stage lasts seconds: an overlap could not hide
        self.proc = subprocess.Popen([CPLOW, "--config", self.config, "upload"], env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        seen_uploaders, samples, most = set(), 0, 0
        deadline = time.monotonic() + 240
        while self.proc.poll() is None:
            self.assertLess(time.monotonic(), deadline, "cplow upload did not finish")
            stages = self.state()["stages"]
            on_fake1 = [s for s in stages if s["account"] == "fake1"]
            most = max(most, len(on_fake1))
            self.assertLessEqual(len(on_fake1), 1,
                                 "two stages on fake1 at once: %s" % json.dumps(on_fake1))
            seen_uploaders.update(s["uploader"] for s in on_fake1)
            samples += 1
        out, err = self.proc.communicate(timeout=60)
        self.assertEqual(self.proc.returncode, 0, err[-3000:])
        self.assertGreater(samples, 10, "too few samples of the stage table to prove anything")
        self.assertEqual(most, 1, "no stage was ever seen running")
        self.assertEqual(seen_uploaders, {"movies", "tv"}, "both uploaders ran on fake1")
        # They met: one waited for the other, said so once, then ran.
        self.assertEqual(err.count("waiting for an account another stage is using"), 1, err)
        # The shared account is named in a warning that says how it is counted.
        self.assertIn("uploader.tv.rotate_remotes[0]: also in uploader.movies's rotate_remotes",
                      err)
        self.assertIn("each uploader counts the account's daily quota on its own", err)
        # Every file landed on a1, and each uploader's row holds exactly its own bytes.
        for name in folders:
            self.assertEqual([f for _, _, fs in os.walk(folders[name]) for f in fs], [],
                             "files left in " + name)
        ledger = self.state()["uploaders"]
        for name in folders:
            self.assertEqual([r["used_bytes"] for r in ledger[name] if r["account"] == "fake1"],
                             [sum(files[name].values())])
        truth = self.fake.truth()["users"]
        self.assertEqual(truth["a1"]["accepted_bytes"],
                         sum(files["movies"].values()) + sum(files["tv"].values()))
        self.assertEqual(truth["a2"]["accepted_bytes"], 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
