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
MAN = os.path.join(ROOT, "docs", "man")
PAGES = ("cplow.1", "cplow-inspect.1", "cplow.json.5")
GEN_MAN = os.path.join(ROOT, "scripts", "gen-man-config")


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


def need(tool):
    """The path of a tool scripts/setup installs: a missing one fails the test, never skips it."""
    path = shutil.which(tool)
    if not path:
        raise AssertionError("%s is not installed: run scripts/setup" % tool)
    return path


def page_text(name):
    """A page's source with groff's escapes for '-' undone, to look for options in."""
    return read(os.path.join(MAN, name)).replace("\\-", "-")


class ManPageTest(unittest.TestCase):
    def setUp(self):
        self.keys = run([CPLOW, "check-config", "--keys"]).stdout
        self.tmp = tempfile.mkdtemp(prefix="test-release-")

    def tearDown(self):
        shutil.rmtree(self.tmp)

    def check(self, keys):
        path = os.path.join(self.tmp, "keys.tsv")
        with open(path, "w") as f:
            f.write(keys)
        return run([GEN_MAN, "--check", "--keys-from", path])

    def test_cplow_json_5_is_what_gen_man_config_writes(self):
        p = run([GEN_MAN, "--check", "--cplow", CPLOW])
        self.assertEqual(p.returncode, 0, "docs/man/cplow.json.5 drifted from `cplow check-config "
                         "--keys` and docs/configuration.md; run scripts/gen-man-config:\n"
                         + p.stdout + p.stderr)

    def test_cplow_json_5_lists_every_key_with_type_and_default(self):
        text = page_text("cplow.json.5")
        rows = [line.split("\t") for line in self.keys.splitlines()[1:]]
        self.assertGreater(len(rows), 50)
        for key, kind, default, _, _ in rows:
            with self.subTest(key=key):
                entry = "\\&\\fB%s\\fR\n\\&(\\fI%s\\fR" % (key, kind)
                if default:
                    entry += ", default \\fB%s\\fR" % default.replace("\\", "\\e")
                self.assertIn(entry, text)

    def test_a_new_or_changed_or_removed_key_fails_the_check(self):
        for keys in (self.keys + "quota.new_limit\tinteger\t7\tan integer from 1 to 9\t\n",
                     self.keys.replace("quota.flush_interval_ms\tinteger\t100\t",
                                       "quota.flush_interval_ms\tinteger\t250\t"),
                     "".join(line for line in self.keys.splitlines(True)
                             if not line.startswith("plex.poll_interval\t"))):
            self.assertNotEqual(keys, self.keys)
            p = self.check(keys)
            self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
            self.assertIn("run scripts/gen-man-config", p.stderr)

    def test_each_page_renders_without_a_warning(self):
        groff, man = need("groff"), need("man")
        for page in PAGES:
            path = os.path.join(MAN, page)
            with self.subTest(page=page):
                p = run([groff, "-ww", "-man", "-Tutf8", "-z", path])
                self.assertEqual((p.returncode, p.stderr), (0, ""))
                p = run([man, "--warnings", "-l", path],
                        env=dict(os.environ, MANWIDTH="80", MANPAGER="cat", PAGER="cat"))
                self.assertEqual((p.returncode, p.stderr), (0, ""))
                self.assertIn("NAME", p.stdout)
                self.assertIn("SEE ALSO", p.stdout)

    def test_cplow_1_names_every_command_and_option_of_help(self):
        help_text = run([CPLOW, "--help"]).stdout
        text = page_text("cplow.1")
        options = set(re.findall(r"(?<![\w-])(--?[a-z][\w-]*)", help_text))
        commands = set(re.findall(r"^  ([a-z][\w-]+)", help_text, re.M)) | {"sync"}
        self.assertIn("--version", options)
        self.assertIn("check-config", commands)
        for word in sorted(options | commands):
            with self.subTest(word=word):
                self.assertRegex(text, r"(?<![\w-])%s(?![\w-])" % re.escape(word))

    def test_cplow_inspect_1_names_every_option_of_its_help(self):
        help_text = run([INSPECT, "--help"]).stdout
        text = page_text("cplow-inspect.1")
        for word in sorted(set(re.findall(r"(?<![\w-])(--?[a-z][\w-]*)", help_text))):
            with self.subTest(word=word):
                self.assertRegex(text, r"(?<![\w-])%s(?![\w-])" % re.escape(word))


if __name__ == "__main__":
    unittest.main()
