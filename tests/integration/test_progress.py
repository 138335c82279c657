"""The terminal view of `cplow upload` (supervisor/progress.c), with the real rclone and the fake
remote: on a TTY (a pty here) the live line is redrawn at most every 500 ms; --quiet on a TTY
prints none; --progress off a TTY (a pipe) prints it anyway.
"""
import json
import os
import pty
import re
import select
import shutil
import subprocess
import tempfile
import time
import unittest

from harness import BUILD, FakeRemote, drop_ledger, make_tree, one_account_config

CPLOW = os.path.join(BUILD, "supervisor/cplow")
# One stage's live line: "media fake1: 3/40 files, 1.2 MiB/9.8 MiB, 1.0 MiB/s, ETA ..., quota left ..."
LINE = re.compile(rb"media fake1: (\d+)/(\d+) files, [^\n]*, ETA [^\n]*, quota left [^\n]*\n")
ERASE = re.compile(rb"\x1b\[\d+F\x1b\[J")


class Progress(unittest.TestCase):
    def setUp(self):
        self.work = tempfile.mkdtemp(prefix="cplow-progress-")
        self.fake = FakeRemote({"a1": ("pw1", 64 << 20)}, self.work)
        self.src = os.path.join(self.work, "media")
        os.makedirs(self.src)
        self.config = os.path.join(self.work, "config.json")
        self.env = dict(os.environ)
        self.env.update(self.fake.remote_env("fake1", "a1"))

    def tearDown(self):
        self.fake.stop()
        drop_ledger(self.config)
        shutil.rmtree(self.work, ignore_errors=True)

    def setup_upload(self, count, seed):
        make_tree(self.src, count, seed, min_size=100 << 10, max_size=300 << 10)
        with open(self.config, "w") as f:
            json.dump(one_account_config(self.src), f)

    def upload_on_pty(self, *flags, timeout=300):
        """Runs cplow upload with its stdin, stdout and stderr on a pty; returns (everything
        it wrote, seconds from start to exit)."""
        master, slave = pty.openpty()
        start = time.monotonic()
        p = subprocess.Popen([CPLOW, "--config", self.config, "--loglevel", "error", "upload",
                              *flags], env=self.env, stdin=slave, stdout=slave, stderr=slave,
                             close_fds=True)
        os.close(slave)
        out = b""
        end = start + timeout
        try:
            while True:
                left = end - time.monotonic()
                if left <= 0:
                    raise AssertionError("cplow upload did not end in %d s" % timeout)
                ready, _, _ = select.select([master], [], [], left)
                if not ready:
                    continue
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: every writer of the pty is gone
                    break
                if not chunk:
                    break
                out += chunk
            rc = p.wait(timeout=max(1, end - time.monotonic()))
            elapsed = time.monotonic() - start
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
            os.close(master)
        self.assertEqual(rc, 0, out[-3000:].decode(errors="replace"))
        return out, elapsed

    def test_the_live_line_is_redrawn_at_most_every_500_ms(self):
        self.setup_upload(40, seed=71)
        self.fake.set_delay(250)  # seconds of uploading: many chances to redraw too often
        out, elapsed = self.upload_on_pty()
        # Every redraw erases the block it drew before ("ESC[nF ESC[J") and draws it again;
        # the first draw has nothing to erase. With --loglevel error no log line comes in
        # between, so each piece holding a live line is one redraw.
        pieces = ERASE.split(out)
        draws = [p for p in pieces if LINE.search(p)]
        self.assertGreaterEqual(len(draws), 3, "the line was not live: %r" % out[-2000:])
        for p in draws:
            self.assertEqual(len(LINE.findall(p)), 1, "one stage, one line: %r" % p)
        # Drawn at most once per 500 ms of the process's life, plus the first draw.
        self.assertLessEqual(len(draws), int(elapsed / 0.5) + 1,
                             "%d redraws in %.2f s" % (len(draws), elapsed))
        done = [int(LINE.search(p).group(1)) for p in draws]
        self.assertEqual(done, sorted(done), "files done went down: %s" % done)
        self.assertLess(done[0], done[-1], "the line never moved: %s" % done)
        self.assertEqual(int(LINE.search(draws[-1]).group(2)), 40)

    def test_quiet_on_a_tty_prints_no_progress_line(self):
        self.setup_upload(6, seed=72)
        self.fake.set_delay(100)
        out, _ = self.upload_on_pty("--quiet")
        self.assertIsNone(LINE.search(out), "a progress line under --quiet: %r" % out[-2000:])
        self.assertNotIn(b"\x1b[", out, "terminal control sequences under --quiet")
        self.assertEqual([f for _, _, fs in os.walk(self.src) for f in fs], [],
                         "the upload did not happen")

    def test_progress_off_a_tty_prints_it(self):
        self.setup_upload(12, seed=73)
        self.fake.set_delay(150)
        r = subprocess.run([CPLOW, "--config", self.config, "--loglevel", "error", "upload",
                            "--progress"], env=self.env, stdin=subprocess.DEVNULL,
                           capture_output=True, timeout=300)
        self.assertEqual(r.returncode, 0, r.stderr[-3000:])
        self.assertTrue(LINE.search(r.stderr), "no progress line with --progress on a pipe: %r"
                        % r.stderr[-2000:])
        # And without --progress, the same pipe gets none.
        make_tree(self.src, 4, 74, min_size=10 << 10, max_size=20 << 10)
        r = subprocess.run([CPLOW, "--config", self.config, "--loglevel", "error", "upload"],
                           env=self.env, stdin=subprocess.DEVNULL, capture_output=True,
                           timeout=300)
        self.assertEqual(r.returncode, 0, r.stderr[-3000:])
        self.assertIsNone(LINE.search(r.stderr), "a progress line on a pipe: %r" % r.stderr)


if __name__ == "__main__":
    unittest.main()
