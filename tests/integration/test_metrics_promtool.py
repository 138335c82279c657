"""The dashboard's /metrics read by a real Prometheus parser: `promtool check metrics` (from
Debian's prometheus package; scripts/setup takes only the binary out of it, into
/var/cache/cplow-tools). The real role serves a ledger tests/tools/dashboard_fill fills, with
label values that need every escape the format has. Any complaint fails the test; so does a
missing promtool (run scripts/setup), rather than a silent skip.
"""
import os
import subprocess
import unittest
import urllib.request

from harness import DashboardFill

PROMTOOL = os.environ.get("CPLOW_PROMTOOL",
                          os.path.join(os.environ.get("CPLOW_TOOLS_DIR", "/var/cache/cplow-tools"),
                                       "usr/bin/promtool"))


class MetricsPromtool(unittest.TestCase):
    def setUp(self):
        if not os.access(PROMTOOL, os.X_OK):
            raise AssertionError("promtool is not at %s: run scripts/setup (it extracts it from "
                                 "Debian's prometheus package); this test cannot pass without it"
                                 % PROMTOOL)
        self.fill = DashboardFill("/cplow-test-promtool-%d" % os.getpid(), "--odd-names")
        self.base = "http://127.0.0.1:%s" % self.fill.port

    def tearDown(self):
        rc = self.fill.stop()
        self.assertEqual(rc, 0, "dashboard_fill (and the role) ended with %d" % rc)

    def metrics(self):
        with urllib.request.urlopen(self.base + "/metrics", timeout=10) as r:
            self.assertTrue(r.headers["Content-Type"].startswith("text/plain; version=0.0.4"),
                            r.headers["Content-Type"])
            return r.read()

    def promtool_check(self, body):
        r = subprocess.run([PROMTOOL, "check", "metrics"], input=body, capture_output=True,
                           timeout=60)
        return r.returncode, (r.stdout + r.stderr).decode(errors="replace")

    def test_promtool_accepts_the_metrics_without_a_complaint(self):
        body = self.metrics()
        text = body.decode()
        # The odd names are there, escaped as the format wants.
        self.assertIn('uploader="we\\"ird\\\\up",account="/keys/new\\nline \\"quoted\\" '
                      'back\\\\slash \u00e9.json"', text)
        self.assertIn('account="trailing backslash\\\\"', text)
        self.assertIn("cplow_session_bytes ", text)
        rc, out = self.promtool_check(body)
        self.assertEqual((rc, out.strip()), (0, ""), "promtool complained:\n" + out + "\n" + text)
        # After the ledger moves, still clean.
        self.assertEqual(self.fill.step(), "ok")
        rc, out = self.promtool_check(self.metrics())
        self.assertEqual((rc, out.strip()), (0, ""), "promtool complained:\n" + out)

    def test_promtool_is_a_real_checker(self):
        # A broken exposition must be refused, or the test above proves nothing.
        rc, out = self.promtool_check(b'# HELP x h\n# TYPE x gauge\nx{a="1} 1\n')
        self.assertNotEqual(rc, 0, out)
        # Its lint: a counter without _total is a complaint (exit 3 and a message).
        rc, out = self.promtool_check(b"# HELP x h\n# TYPE x counter\nx 1\n")
        self.assertTrue(rc != 0 and "_total" in out, "a lint problem went unreported: %d %r"
                        % (rc, out))


if __name__ == "__main__":
    unittest.main()
