"""What ships beside the binaries (issue 19): --version, the man pages, shell completion.

- `cplow --version` and `cplow-inspect --version` name the release (CMake's project VERSION),
  the git commit of the build (a commit of this repository; "unknown" outside git) and the
  ledger's layout version (shm/ledger.h's LEDGER_VERSION);
- docs/man/cplow.json.5 is what scripts/gen-man-config writes from `cplow check-config --keys`
  and docs/configuration.md (so it lists every key), and the check notices a drift;
- each page renders with `man -l` and with `groff -ww -man` without a warning; cplow(1) names
  every command and option `cplow --help` names;
- bash completion: commands, options, and `-u` completing the uploader names of the config in
  use (`--config` on the line, else $CPLOW_CONFIG).
"""
import os
import re
import shutil
import subprocess
import tempfile
import unittest

from harness import BUILD, ROOT

CPLOW = os.path.join(BUILD, "supervisor", "cplow")
INSPECT = os.path.join(BUILD, "shm", "cplow-inspect")


def read(path):
    with open(path) as f:
        return f.read()


def run(args, **kw):
    return subprocess.run(args, capture_output=True, text=True, timeout=60, **kw)


def project_version():
    return re.search(r"project\(cplow VERSION (\S+)", read(os.path.join(ROOT, "CMakeLists.txt"))
                     ).group(1)


def ledger_version():
    return int(re.search(r"#define LEDGER_VERSION (\d+)",
                         read(os.path.join(ROOT, "shm", "ledger.h"))).group(1))


class VersionTest(unittest.TestCase):
    def check_version(self, binary, program):
        p = run([binary, "--version"])
        self.assertEqual(p.returncode, 0, p.stderr)
        lines = p.stdout.splitlines()
        self.assertEqual(len(lines), 3, p.stdout)
        self.assertEqual(lines[0], "%s %s" % (program, project_version()))
        self.assertEqual(lines[2], "ledger layout %d" % ledger_version())
        m = re.fullmatch(r"commit ([0-9a-f]{12})(-dirty)?|commit unknown", lines[1])
        self.assertIsNotNone(m, lines[1])
        if m.group(1) and shutil.which("git"):
            # The build's commit is one of this repository's (the build may be older than HEAD).
            self.assertEqual(run(["git", "-C", ROOT, "cat-file", "-e", m.group(1) + "^{commit}"]
                                 ).returncode, 0, "%s is no commit of %s" % (m.group(1), ROOT))

    def test_cplow_version_names_release_commit_and_ledger_layout(self):
        self.check_version(CPLOW, "cplow")

    def test_cplow_inspect_version_names_release_commit_and_ledger_layout(self):
        self.check_version(INSPECT, "cplow-inspect")

    def test_version_is_in_both_helps(self):
        self.assertIn("--version", run([CPLOW, "--help"]).stdout)
        p = run([INSPECT, "--help"])
        self.assertEqual(p.returncode, 0)
        self.assertIn("--version", p.stdout)

    def test_the_commit_is_unknown_outside_git(self):
        tmp = tempfile.mkdtemp(prefix="test-release-")
        try:
            out = os.path.join(tmp, "version_commit.h")
            env = dict(os.environ, GIT_CEILING_DIRECTORIES=tmp)
            p = run(["cmake", "-DSOURCE_DIR=" + tmp, "-DOUT=" + out, "-P",
                     os.path.join(ROOT, "version", "commit.cmake")], env=env)
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertEqual(read(out), '#define CPLOW_COMMIT "unknown"\n')
            p = run(["cmake", "-DSOURCE_DIR=" + tmp, "-DOUT=" + out, "-DCOMMIT=0123456789ab",
                     "-P", os.path.join(ROOT, "version", "commit.cmake")], env=env)
            self.assertEqual(read(out), '#define CPLOW_COMMIT "0123456789ab"\n')
        finally:
            shutil.rmtree(tmp)


if __name__ == "__main__":
    unittest.main()
