"""What ships beside the binaries (issue 19): --version, the man pages, shell completion.

- `cplow --version` and `cplow-inspect --version` name the release (CMake's project VERSION),
  the git commit of the build (a commit of this repository; "unknown" outside git) and the
  ledger's layout version (shm/ledger.h's LEDGER_VERSION);
- docs/man/cplow.json.5 is what scripts/gen-man-config writes from `cplow check-config --keys`
  and docs/configuration.md (so it lists every key), and the check notices a drift;
- each page renders with `man -l` and with `groff -ww -man` without a warning; cplow(1) names
  every command and option `cplow --help` names;
- bash completion (packaging/completion/cplow): commands, each command's options (which cplow
  accepts for that command), and `-u` completing the uploader names of the config in use
  (`--config` on the line, in either form, else $CPLOW_CONFIG), through `cplow check-config
  --uploaders`.
"""
import json
import os
import re
import shutil
import subprocess
import tempfile
import unittest

from harness import BUILD, ROOT
from test_docs import check_with_keys

CPLOW = os.path.join(BUILD, "supervisor", "cplow")
INSPECT = os.path.join(BUILD, "shm", "cplow-inspect")
MAN = os.path.join(ROOT, "docs", "man")
PAGES = ("cplow.1", "cplow-inspect.1", "cplow.json.5")
GEN_MAN = os.path.join(ROOT, "scripts", "gen-man-config")
COMPLETION = os.path.join(ROOT, "packaging", "completion", "cplow")
COMMANDS = ("upload", "run", "status", "check-config", "reset-quota", "import-cloudplow", "clean",
            "update_config", "sync")


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
        return check_with_keys(self.tmp, keys, [GEN_MAN, "--check"])

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
                self.assertTrue(re.search(r"(?<![\w-])%s(?![\w-])" % re.escape(word), text),
                                "docs/man/cplow.1 does not name %s" % word)

    def test_cplow_inspect_1_names_every_option_of_its_help(self):
        help_text = run([INSPECT, "--help"]).stdout
        text = page_text("cplow-inspect.1")
        for word in sorted(set(re.findall(r"(?<![\w-])(--?[a-z][\w-]*)", help_text))):
            with self.subTest(word=word):
                self.assertTrue(re.search(r"(?<![\w-])%s(?![\w-])" % re.escape(word), text),
                                "docs/man/cplow-inspect.1 does not name %s" % word)


def complete(words, env=None, function="_cplow"):
    """What bash's completion function offers for words, the last being the one completed
    (bash splits "--opt=" into "--opt" "=")."""
    script = ('source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); %s; '
              'printf "%%s\\n" "${COMPREPLY[@]}"' % function)
    p = subprocess.run(["bash", "--norc", "-c", script, "complete", COMPLETION] + list(words),
                       capture_output=True, text=True, timeout=60,
                       env=dict(env if env is not None else os.environ))
    if p.returncode != 0 or p.stderr:
        raise AssertionError("bash: %d %s" % (p.returncode, p.stderr))
    return [line for line in p.stdout.splitlines() if line]


class CompletionTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="test-release-")
        self.env = {k: v for k, v in os.environ.items()
                    if k not in ("CPLOW_CONFIG", "CLOUDPLOW_CONFIG")}

    def tearDown(self):
        shutil.rmtree(self.tmp)

    def write_config(self, name, uploaders):
        src = os.path.join(self.tmp, "src")
        os.makedirs(src, exist_ok=True)
        cfg = {"remotes": {u: {"upload_folder": src, "upload_remote": "fake:/%s" % u}
                           for u in uploaders},
               "uploader": {u: {"check_interval": 1} for u in uploaders}}
        path = os.path.join(self.tmp, name)
        with open(path, "w") as f:
            json.dump(cfg, f)
        return path

    def test_both_functions_are_registered(self):
        p = run(["bash", "--norc", "-c", 'source "$1"; complete -p cplow cplow-inspect',
                 "complete", COMPLETION])
        self.assertEqual(p.stdout, "complete -F _cplow cplow\n"
                         "complete -F _cplow_inspect cplow-inspect\n", p.stderr)

    def test_commands(self):
        self.assertEqual(complete([CPLOW, ""]), list(COMMANDS))
        self.assertEqual(complete([CPLOW, "--loglevel", "info", "up"]),
                         ["upload", "update_config"])
        self.assertEqual(complete([CPLOW, "upload", ""]), [], "one command only")

    def test_options_follow_the_command(self):
        self.assertIn("--dry-run", complete([CPLOW, "upload", "--"]))
        self.assertNotIn("--json", complete([CPLOW, "upload", "--"]))
        self.assertIn("--uploaders", complete([CPLOW, "check-config", "--"]))
        self.assertEqual(complete([CPLOW, "--config", "x.json", "status", "--j"]), ["--json"])

    def test_every_option_offered_is_one_cplow_takes_for_that_command(self):
        missing = os.path.join(self.tmp, "missing.json")
        offered_anywhere = set()
        for command in COMMANDS:
            offered = complete([CPLOW, command, "-"])
            offered_anywhere |= set(offered)
            for option in offered:
                if option in ("--help", "--version"):
                    continue
                with self.subTest(command=command, option=option):
                    args = [CPLOW, "--config", missing, command, option]
                    if option in ("-u", "--uploader", "--account", "--from", "--watch",
                                  "--loglevel", "--logfile", "--cachefile", "--config"):
                        args.append({"--loglevel": "info", "--watch": "1"}.get(option, missing))
                    p = run(args, env=self.env)
                    self.assertNotIn("not an option of this command", p.stderr)
                    self.assertNotIn("unknown option", p.stderr)
        help_options = set(re.findall(r"(?<![\w-])(--?[a-z][\w-]*)", run([CPLOW, "--help"]).stdout))
        # "--opt": the help's "--opt VALUE or --opt=VALUE".
        self.assertEqual(help_options - offered_anywhere - {"--opt"}, set(),
                         "options of cplow --help the completion never offers")

    def test_loglevel_values_in_both_forms(self):
        self.assertEqual(complete([CPLOW, "--loglevel", "W"]), ["WARNING"])
        self.assertEqual(complete([CPLOW, "--loglevel", "=", "w"]), ["warn"])
        self.assertEqual(complete([CPLOW, "--loglevel=d"]), ["--loglevel=debug"])

    def test_config_completes_file_names(self):
        path = self.write_config("config.json", ["media"])
        self.assertEqual(complete([CPLOW, "--config", os.path.join(self.tmp, "con")]), [path])

    def test_u_completes_the_uploaders_of_the_config_on_the_line(self):
        path = self.write_config("config.json", ["media", "tv", "music"])
        self.assertEqual(sorted(complete([CPLOW, "--config", path, "upload", "-u", ""],
                                         env=self.env)), ["media", "music", "tv"])
        self.assertEqual(complete([CPLOW, "upload", "--config", "=", path, "-u", "m"],
                                  env=self.env), ["media", "music"])
        self.assertEqual(complete([CPLOW, "reset-quota", "--config=" + path, "--uploader", "t"],
                                  env=self.env), ["tv"])

    def test_u_completes_the_uploaders_of_cplow_config(self):
        path = self.write_config("other.json", ["books"])
        env = dict(self.env, CPLOW_CONFIG=path)
        self.assertEqual(complete([CPLOW, "upload", "-u", ""], env=env), ["books"])
        # No config there: nothing, and no error on the terminal.
        env = dict(self.env, CPLOW_CONFIG=os.path.join(self.tmp, "none.json"))
        self.assertEqual(complete([CPLOW, "upload", "-u", ""], env=env), [])

    def test_check_config_uploaders_prints_the_names_without_asking_rclone(self):
        path = self.write_config("config.json", ["media", "tv"])
        # An rclone that cannot run: check-config itself would fail on it.
        with open(path) as f:
            cfg = json.load(f)
        cfg["core"] = {"rclone_binary_path": os.path.join(self.tmp, "no-rclone")}
        with open(path, "w") as f:
            json.dump(cfg, f)
        p = run([CPLOW, "--config", path, "check-config", "--uploaders"], env=self.env)
        self.assertEqual((p.returncode, p.stdout, p.stderr), (0, "media\ntv\n", ""))

    def test_cplow_inspect(self):
        self.assertIn("--shm", complete([INSPECT, "--"], function="_cplow_inspect"))
        self.assertEqual(complete([INSPECT, "--json", "--w"], function="_cplow_inspect"),
                         ["--watch"])


if __name__ == "__main__":
    unittest.main()
