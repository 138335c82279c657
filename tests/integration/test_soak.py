"""The soak (scripts/soak): one `cplow run` driven through hundreds of stages, daily quota
resets, bans and restarts, with the clock moved by libfaketime. Exact per account every day,
every file on the remote once, and memory and descriptors of every process flat. CI runs 100
stages (the script's own default, 1,000, is for people: about 10 minutes).
"""
import os
import subprocess
import sys
import unittest

from harness import BUILD, PYTHON, ROOT

SCRIPT = os.path.join(ROOT, "scripts", "soak")
STAGES = int(os.environ.get("CPLOW_SOAK_STAGES", "100"))
DEADLINE = 840


class SoakTest(unittest.TestCase):
    def test_soak_stays_exact_and_flat(self):
        args = [PYTHON, SCRIPT, "--stages", str(STAGES), "--build", BUILD]
        try:
            out = subprocess.run(args, capture_output=True, text=True, timeout=DEADLINE,
                                 stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as e:
            self.fail("soak still ran after %d s (a hang); its output:\n%s"
                      % (DEADLINE, (e.stdout or b"")[-6000:]))
        sys.stdout.write(out.stdout[-6000:])
        self.assertEqual(out.returncode, 0, "soak failed:\n%s\n%s"
                         % (out.stdout[-8000:], out.stderr[-3000:]))
        self.assertIn("soak: ", out.stdout)


if __name__ == "__main__":
    unittest.main(verbosity=2)
