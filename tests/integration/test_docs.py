"""The documentation against what it documents, so that neither drifts from the other:

- docs/configuration.md's key tables are what the built `cplow check-config --keys` prints
  (scripts/gen-config-doc --check), and that check notices a new key, a changed default, a
  removed key and a key with no meaning;
- README.md's synopsis is `cplow --help` word for word, and its minimal config loads;
- every script's usage line (its header) names exactly the options the script accepts; --help
  exits 0 and an unknown option exits 2, both before the script does anything;
- every relative link in README.md and docs/ reaches a file, and a heading there;
- docs/CHANGES.md is newest first.
"""
import os
import re
import shutil
import subprocess
import tempfile
import unittest

from harness import BUILD, PYTHON, ROOT

CPLOW = os.path.join(BUILD, "supervisor", "cplow")
GEN = os.path.join(ROOT, "scripts", "gen-config-doc")
CONFIG_DOC = os.path.join(ROOT, "docs", "configuration.md")
SCRIPTS = os.path.join(ROOT, "scripts")


def read(path):
    with open(path) as f:
        return f.read()


def run(args, **kw):
    return subprocess.run(args, capture_output=True, text=True, timeout=60, **kw)


def check_with_keys(tmp, keys, command):
    """command (a generator's --check) run on the key table keys, as if cplow printed it."""
    path = os.path.join(tmp, "keys.tsv")
    with open(path, "w") as f:
        f.write(keys)
    return run(command + ["--keys-from", path])


class ConfigReferenceTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="test-docs-")
        self.doc = os.path.join(self.tmp, "configuration.md")
        shutil.copy(CONFIG_DOC, self.doc)
        self.keys = run([CPLOW, "check-config", "--keys"]).stdout

    def tearDown(self):
        shutil.rmtree(self.tmp)

    def check(self, keys):
        return check_with_keys(self.tmp, keys, [PYTHON, GEN, "--check", "--doc", self.doc])

    def test_configuration_md_is_what_check_config_keys_prints(self):
        p = run([PYTHON, GEN, "--check", "--cplow", CPLOW, "--doc", self.doc])
        self.assertEqual(p.returncode, 0, "docs/configuration.md drifted from `cplow "
                         "check-config --keys`; run scripts/gen-config-doc:\n"
                         + p.stdout + p.stderr)

    def test_a_key_the_document_lacks_fails_the_check_naming_it(self):
        p = self.check(self.keys + "quota.new_limit\tinteger\t7\tan integer from 1 to 9\t\n")
        self.assertEqual(p.returncode, 1)
        self.assertIn("quota.new_limit: no meaning", p.stderr)
        self.assertIn("+| `quota.new_limit` | `integer` | `7` |", p.stdout)

    def test_a_changed_default_fails_the_check(self):
        keys = self.keys.replace("quota.flush_interval_ms\tinteger\t100\t",
                                 "quota.flush_interval_ms\tinteger\t250\t")
        self.assertNotEqual(keys, self.keys)
        p = self.check(keys)
        self.assertEqual(p.returncode, 1)
        self.assertIn("+| `quota.flush_interval_ms` | `integer` | `250` |", p.stdout)

    def test_a_removed_key_fails_the_check(self):
        keys = "".join(line for line in self.keys.splitlines(True)
                       if not line.startswith("plex.poll_interval\t"))
        p = self.check(keys)
        self.assertEqual(p.returncode, 1)
        self.assertIn("-| `plex.poll_interval` |", p.stdout)

    def test_a_key_of_a_section_without_a_table_fails_the_check(self):
        p = self.check(self.keys + "share.enabled\ttrue|false\tfalse\t\t\n")
        self.assertEqual(p.returncode, 1)
        self.assertIn("share.enabled: no table for its section", p.stderr)

    def test_writing_keeps_every_meaning_and_adds_the_new_key(self):
        path = os.path.join(self.tmp, "keys.tsv")
        with open(path, "w") as f:
            f.write(self.keys + "quota.new_limit\tinteger\t7\t\t\n")
        before = read(self.doc)
        p = run([PYTHON, GEN, "--keys-from", path, "--doc", self.doc])
        self.assertEqual(p.returncode, 1, "a key without a meaning is not done")
        after = read(self.doc)
        self.assertEqual([line for line in after.splitlines(True) if "quota.new_limit" not in line],
                         before.splitlines(True))


class ReadmeTest(unittest.TestCase):
    def setUp(self):
        self.readme = read(os.path.join(ROOT, "README.md"))

    def test_the_synopsis_is_cplow_help_word_for_word(self):
        m = re.search(r"<!-- cplow --help -->\n```\n(.*?)```\n<!-- /cplow --help -->",
                      self.readme, re.S)
        self.assertIsNotNone(m, "README.md has no <!-- cplow --help --> block")
        p = run([CPLOW, "--help"])
        self.assertEqual(p.returncode, 0)
        self.assertEqual(m.group(1), p.stdout)

    def test_the_minimal_config_loads(self):
        m = re.search(r"## A minimal config\n.*?```json\n(.*?)```", self.readme, re.S)
        self.assertIsNotNone(m, "README.md has no minimal config")
        tmp = tempfile.mkdtemp(prefix="test-docs-")
        try:
            text = m.group(1).replace("/config/", tmp + "/").replace("/mnt/local/", tmp + "/")
            for folder in re.findall(r'"(%s/[^"]*)"' % re.escape(tmp), text):
                if not folder.endswith(".conf"):
                    os.makedirs(folder, exist_ok=True)
            remotes = set(re.findall(r'"upload_remote": "([^":]+):', text))
            with open(os.path.join(tmp, "rclone.conf"), "w") as f:
                f.writelines("[%s]\ntype = drive\n" % r for r in remotes)
            for folder in re.findall(r'"service_account_path": "([^"]+)"', text):
                with open(os.path.join(folder, "sa1.json"), "w") as f:
                    f.write("{}")
            config = os.path.join(tmp, "config.json")
            with open(config, "w") as f:
                f.write(text)
            p = run([CPLOW, "--config", config, "check-config"])
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertNotIn("warning", p.stderr)
        finally:
            shutil.rmtree(tmp)

    def test_the_front_door_stays_short(self):
        self.assertLessEqual(len(self.readme.splitlines()), 200)


def script_names():
    return sorted(n for n in os.listdir(SCRIPTS) if not n.startswith("."))


def header_usage(name, source):
    """The usage the script's header states: its "Usage: scripts/NAME ..." line and the lines
    that continue it (indented, starting with '[')."""
    lines = [re.sub(r"^# ?", "", line) for line in source.splitlines()]
    for i, line in enumerate(lines):
        m = re.search(r"Usage: (scripts/%s(?![\w-]).*)" % re.escape(name), line)
        if m:
            usage = [m.group(1)]
            for more in lines[i + 1:]:
                if not re.match(r"\s+\[", more):
                    break
                usage.append(more.strip())
            return " ".join(usage)
    return None


def options_in(text):
    return set(re.findall(r"(?<![\w-])(--?[A-Za-z][\w-]*)", text))


def argparse_options(help_text):
    """The options an argparse --help lists (its "options:" section), not its usage line,
    which a script may have written itself."""
    section = re.split(r"\n(?:options|optional arguments):\n", help_text, maxsplit=1)
    found = set()
    for line in section[1].splitlines() if len(section) == 2 else []:
        if line.startswith("  -"):
            found |= options_in(re.split(r"\s{2,}", line.strip())[0])
    return found


def accepted_options(name, source):
    """What the script takes: argparse's options for a Python script; for a shell script the
    options its case patterns match, plus those of a Python driver it hands its arguments."""
    path = os.path.join(SCRIPTS, name)
    if source.startswith("#!/usr/bin/python3") or source.startswith("#!/usr/bin/env python3"):
        return argparse_options(run([path, "--help"]).stdout)
    found = set()
    for pattern in re.findall(r"^\s*([^\s()#]+)\)", source, re.M):
        for alternative in pattern.split("|"):
            found |= options_in(alternative.split("=")[0]) if alternative.startswith("-") else set()
    for driver in re.findall(r'exec\s+\S*python3\s+(\S+\.py)\s+"\$', source):
        found |= argparse_options(run([PYTHON, os.path.join(ROOT, driver), "--help"]).stdout)
    return found


class ScriptUsageTest(unittest.TestCase):
    def test_every_script_states_its_usage_in_its_header(self):
        for name in script_names():
            with self.subTest(script=name):
                self.assertIsNotNone(header_usage(name, read(os.path.join(SCRIPTS, name))),
                                     "no \"Usage: scripts/%s\" line in its header" % name)

    def test_the_usage_names_exactly_the_options_the_script_accepts(self):
        for name in script_names():
            source = read(os.path.join(SCRIPTS, name))
            usage = header_usage(name, source) or ""
            with self.subTest(script=name):
                self.assertEqual(options_in(usage),
                                 accepted_options(name, source) - {"-h", "--help"},
                                 "scripts/%s: its header's usage is %r" % (name, usage))

    def test_help_exits_0_and_shows_the_usage(self):
        for name in script_names():
            with self.subTest(script=name):
                p = run([os.path.join(SCRIPTS, name), "--help"], cwd="/")
                self.assertEqual(p.returncode, 0, p.stderr)
                self.assertRegex(p.stdout, r"(?i)usage: ")

    def test_an_unknown_option_exits_2(self):
        for name in script_names():
            with self.subTest(script=name):
                p = run([os.path.join(SCRIPTS, name), "--no-such-option"], cwd="/")
                self.assertEqual(p.returncode, 2, p.stdout + p.stderr)


def slug(heading):
    """GitHub's anchor for a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(text):
    found, seen, fenced = set(), {}, False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        m = None if fenced else re.match(r"#{1,6} (.*)", line)
        if m:
            base = slug(m.group(1))
            n = seen.get(base, 0)
            seen[base] = n + 1
            found.add(base if n == 0 else "%s-%d" % (base, n))
    return found


class LinkTest(unittest.TestCase):
    def test_every_relative_link_reaches_a_file_and_heading(self):
        pages = [os.path.join(ROOT, "README.md")] + sorted(
            os.path.join(ROOT, "docs", n) for n in os.listdir(os.path.join(ROOT, "docs"))
            if n.endswith(".md"))
        links = 0
        for page in pages:
            text = read(page)
            for target in re.findall(r"\]\(([^)\s]+)\)", text):
                if re.match(r"[a-z]+:", target):
                    continue
                links += 1
                path, _, anchor = target.partition("#")
                dest = os.path.normpath(os.path.join(os.path.dirname(page), path)) if path else page
                with self.subTest(page=os.path.relpath(page, ROOT), link=target):
                    self.assertTrue(os.path.exists(dest), "no file %s" % dest)
                    if anchor and dest.endswith(".md"):
                        self.assertIn(anchor, anchors(read(dest)))
        self.assertGreater(links, 50)


class ChangesTest(unittest.TestCase):
    def test_changes_are_newest_first(self):
        dates = re.findall(r"^- (\d{4}-\d{2}-\d{2})", read(os.path.join(ROOT, "docs",
                                                                        "CHANGES.md")), re.M)
        self.assertGreater(len(dates), 10)
        self.assertEqual(dates, sorted(dates, reverse=True))


if __name__ == "__main__":
    unittest.main()
