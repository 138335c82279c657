"""The crash matrix's short mode (scripts/crash-matrix --short): 45 trials of a real
`cplow upload` killed, stopped or broken at a random moment (every kind of trial the script's
header lists: each role x signal, rclone's own exit 7 and panic, a worker dead inside a ledger
write, the supervisor killed with rclone's lines unread and /dev/shm lost), then finished by a
second run; the ledger must never over-count, must be exact where docs/ledger.md promises it, the
ledger file must equal the shared ledger once every process of a run has ended, and no file may
be lost or duplicated. Any failure the script reports fails this test, with the
script's own report (its table and the failed trials, whose logs it keeps) in the message.

Registered for the plain build only (tests/CMakeLists.txt): it takes minutes of real uploads, and
the sanitizer build runs the same code in every other test.
"""
import os
import re
import subprocess
import sys
import tempfile
import unittest

from harness import BUILD, PYTHON, ROOT

SCRIPT = os.path.join(ROOT, "scripts", "crash-matrix")
DEADLINE = 840      # the CMake timeout is 900 s; the short mode measures about 5 minutes


class CrashMatrixTest(unittest.TestCase):
    def test_the_usage_in_its_header_is_what_it_accepts(self):
        with open(SCRIPT) as f:
            header = f.read().split('"""')[1]
        usage = header[header.index("Usage:"):]
        usage = usage[:usage.index("\n\n")] if "\n\n" in usage else usage
        documented = set(re.findall(r"--[a-z][a-z-]*", usage))
        out = subprocess.run([PYTHON, SCRIPT, "--help"], capture_output=True, text=True,
                             timeout=60)
        self.assertEqual(out.returncode, 0, out.stderr)
        accepted = set(re.findall(r"--[a-z][a-z-]*", out.stdout)) - {"--help"}
        self.assertEqual(documented, accepted, "the header's usage and --help disagree")

    def test_short_crash_matrix_reports_no_failure(self):
        failures = tempfile.mkdtemp(prefix="crash-matrix-failures-")
        args = [PYTHON, SCRIPT, "--short", "--build", BUILD, "--failures", failures]
        seed = os.environ.get("CPLOW_CRASH_SEED")
        if seed:
            args += ["--seed", seed]
        try:
            out = subprocess.run(args, capture_output=True, text=True, timeout=DEADLINE,
                                 stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as e:
            self.fail("crash-matrix --short still ran after %d s (a hang); its output:\n%s"
                      % (DEADLINE, (e.stdout or b"")[-6000:]))
        sys.stdout.write(out.stdout[-8000:])
        self.assertIn("role x signal", out.stdout, "no table printed:\n" + out.stderr[-3000:])
        self.assertEqual(out.returncode, 0,
                         "crash-matrix reported failures (logs under %s):\n%s\n%s"
                         % (failures, out.stdout[-12000:], out.stderr[-3000:]))


if __name__ == "__main__":
    unittest.main(verbosity=2)
