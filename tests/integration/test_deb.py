"""The Debian package (packaging/CMakeLists.txt), as `cpack -G DEB` makes it from this build.

- its name is cplow_<version>_<arch>.deb; it holds the two binaries, the systemd unit, the man
  pages, the bash completion, the example config and /etc/cplow/config.json as its conffile;
  Depends names the linked libraries (dpkg-shlibdeps), the two cplow loads at run time
  (libcurl4, libmicrohttpd12), rclone and adduser;
- lintian reports no error, and no warning but those docs/development.md keeps;
- installed with dpkg -i on this machine (as root: CI runs as root): the cplow system user and
  /etc/cplow (cplow's, 0750) exist, `cplow --version` runs, `cplow check-config` accepts the
  example (its paths moved under a temp dir), `man -l` renders each installed page, the
  completion registers; a config the admin changed, or wrote before the package came, is never
  overwritten; purge removes the package's files and what cplow wrote into /etc/cplow.
The machine is left as found: the package purged, and the user removed if this test made it.
"""
import glob
import json
import os
import pwd
import grp
import re
import shutil
import stat
import subprocess
import tempfile
import time
import unittest

from harness import BUILD, ROOT

LIBRARIES = ("libcjson1", "libseccomp2", "libcurl4", "libmicrohttpd12", "rclone", "adduser")
# Lintian warnings the package keeps, each with its reason in docs/development.md.
KEPT_WARNINGS = set()
FILES = ("usr/bin/cplow", "usr/bin/cplow-inspect", "usr/lib/systemd/system/cplow.service",
         "usr/share/man/man1/cplow.1.gz", "usr/share/man/man1/cplow-inspect.1.gz",
         "usr/share/man/man5/cplow.json.5.gz", "usr/share/bash-completion/completions/cplow",
         "usr/share/bash-completion/completions/cplow-inspect",
         "usr/share/doc/cplow/examples/config.json", "usr/share/doc/cplow/copyright",
         "usr/share/doc/cplow/changelog.gz", "etc/cplow/config.json")


def run(args, timeout=120, **kw):
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, **kw)


def need(tool):
    path = shutil.which(tool)
    if not path:
        raise AssertionError("%s is not installed: run scripts/setup" % tool)
    return path


def project_version():
    with open(os.path.join(ROOT, "CMakeLists.txt")) as f:
        return re.search(r"project\(cplow VERSION (\S+)", f.read()).group(1)


def dpkg(*args, stdin=subprocess.DEVNULL):
    """dpkg, waiting (with a deadline) while another dpkg or apt holds its lock."""
    deadline = time.monotonic() + 120
    while True:
        p = subprocess.run(["dpkg"] + list(args), capture_output=True, text=True, timeout=120,
                           stdin=stdin)
        locked = "lock" in p.stderr and ("locked" in p.stderr or "held" in p.stderr)
        if not locked or time.monotonic() > deadline:
            return p
        time.sleep(1)


def installed():
    p = run(["dpkg-query", "-W", "-f", "${Status}", "cplow"])
    return p.returncode == 0 and "installed" in p.stdout and "not-installed" not in p.stdout


class DebTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        for tool in ("cpack", "dpkg-deb", "lintian", "man"):
            need(tool)
        cls.tmp = tempfile.mkdtemp(prefix="test-deb-")
        p = run(["cpack", "-G", "DEB", "--config", os.path.join(BUILD, "CPackConfig.cmake"),
                 "-B", cls.tmp])
        if p.returncode != 0:
            raise AssertionError("cpack failed:\n" + p.stdout + p.stderr)
        arch = run(["dpkg", "--print-architecture"]).stdout.strip()
        cls.deb = os.path.join(cls.tmp, "cplow_%s_%s.deb" % (project_version(), arch))

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp)

    def field(self, name):
        return run(["dpkg-deb", "-f", self.deb, name]).stdout.strip()

    def test_the_package_is_named_cplow_version_arch(self):
        self.assertTrue(os.path.exists(self.deb), os.listdir(self.tmp))

    def test_it_holds_what_a_daemon_needs(self):
        listing = run(["dpkg-deb", "-c", self.deb]).stdout
        paths = {re.sub(r"^\./", "", line.split()[-1]) for line in listing.splitlines()}
        for path in FILES:
            self.assertIn(path, paths)
        self.assertEqual(run(["sh", "-c", 'dpkg-deb -I "$1" conffiles', "sh", self.deb]).stdout,
                         "/etc/cplow/config.json\n")

    def test_depends_names_every_library_and_rclone(self):
        depends = [d.strip().split()[0] for d in self.field("Depends").split(",")]
        for pkg in LIBRARIES:
            self.assertIn(pkg, depends)

    def test_lintian_reports_no_error_and_only_kept_warnings(self):
        p = run(["lintian", "--fail-on", "none", self.deb], timeout=300)
        tags = re.findall(r"^([EW]): cplow: (\S+)", p.stdout + p.stderr, re.M)
        self.assertEqual([t for kind, t in tags if kind == "E"], [], p.stdout)
        self.assertEqual({t for kind, t in tags if kind == "W"} - KEPT_WARNINGS, set(), p.stdout)

    def test_install_run_keep_configs_and_purge(self):
        if os.geteuid() != 0:
            if os.environ.get("CI"):
                raise AssertionError("CI must run this as root (dpkg -i)")
            self.skipTest("dpkg -i needs root")
        self.assertFalse(installed(), "a cplow package is installed already: purge it first")
        user_existed = self.user_exists()
        try:
            self.install_and_check()
        finally:
            if installed() or run(["dpkg-query", "-W", "cplow"]).returncode == 0:
                dpkg("--purge", "cplow")
            if not user_existed and self.user_exists():
                run(["deluser", "--system", "--quiet", "cplow"])
                if run(["getent", "group", "cplow"]).returncode == 0:
                    run(["delgroup", "--system", "--quiet", "cplow"])

    @staticmethod
    def user_exists():
        return run(["getent", "passwd", "cplow"]).returncode == 0

    def install_and_check(self):
        p = dpkg("-i", self.deb)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        # The user and /etc/cplow.
        user = pwd.getpwnam("cplow")
        self.assertLess(user.pw_uid, 1000, "a system user")
        self.assertEqual(user.pw_dir, "/var/lib/cplow")
        st = os.stat("/etc/cplow")
        self.assertEqual((pwd.getpwuid(st.st_uid).pw_name, grp.getgrgid(st.st_gid).gr_name,
                          stat.S_IMODE(st.st_mode)), ("cplow", "cplow", 0o750))
        st = os.stat("/etc/cplow/config.json")
        self.assertEqual((st.st_uid, grp.getgrgid(st.st_gid).gr_name, stat.S_IMODE(st.st_mode)),
                         (0, "cplow", 0o640))
        # The binaries.
        p = run(["/usr/bin/cplow", "--version"])
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout.splitlines()[0], "cplow %s" % project_version())
        p = run(["/usr/bin/cplow-inspect", "--version"])
        self.assertEqual(p.returncode, 0, p.stderr)
        # The example config passes check-config once its folders, remote and keys exist.
        self.check_example()
        # The man pages as installed.
        for page in ("man1/cplow.1.gz", "man1/cplow-inspect.1.gz", "man5/cplow.json.5.gz"):
            with self.subTest(page=page):
                p = run(["man", "--warnings", "-l", "/usr/share/man/" + page],
                        env=dict(os.environ, MANWIDTH="80", MANPAGER="cat", PAGER="cat"))
                self.assertEqual((p.returncode, p.stderr), (0, ""))
                self.assertIn("SEE ALSO", p.stdout)
        # The completion, where bash-completion looks for it.
        p = run(["bash", "--norc", "-c", "source /usr/share/bash-completion/completions/cplow"
                 " && complete -p cplow cplow-inspect"])
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("complete -F _cplow cplow", p.stdout)
        # An admin's change survives a reinstall (and so an upgrade with the same conffile).
        with open("/etc/cplow/config.json", "a") as f:
            f.write("\n")
        changed = self.read("/etc/cplow/config.json")
        p = dpkg("-i", self.deb)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertEqual(self.read("/etc/cplow/config.json"), changed)
        # What cplow writes next to the config, for purge to remove.
        for name in ("sa_quota_cache.json", "sa_quota_cache.json.prev", "cplow.lock"):
            with open(os.path.join("/etc/cplow", name), "w") as f:
                f.write("{}")
        p = dpkg("--purge", "cplow")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        for path in FILES:
            self.assertFalse(os.path.lexists("/" + path), path)
        self.assertFalse(os.path.exists("/etc/cplow"))
        self.assertNotIn("/etc/cplow", run(["dpkg-statoverride", "--list"]).stdout)
        # A config written before the package came stays (the admin's answer, non-interactive
        # as apt is told with --force-confold), the package's beside it as .dpkg-dist.
        os.makedirs("/etc/cplow")
        with open("/etc/cplow/config.json", "w") as f:
            f.write('{"mine": true}\n')
        try:
            p = dpkg("--force-confold", "-i", self.deb)
            self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
            self.assertEqual(self.read("/etc/cplow/config.json"), '{"mine": true}\n')
            self.assertTrue(os.path.exists("/etc/cplow/config.json.dpkg-dist"))
        finally:
            dpkg("--purge", "cplow")
            shutil.rmtree("/etc/cplow", ignore_errors=True)

    @staticmethod
    def read(path):
        with open(path) as f:
            return f.read()

    def check_example(self):
        work = tempfile.mkdtemp(prefix="test-deb-example-")
        try:
            text = self.read("/usr/share/doc/cplow/examples/config.json")
            self.assertEqual(text, self.read("/etc/cplow/config.json"))
            text = text.replace("/etc/cplow/", work + "/").replace("/mnt/local/", work + "/")
            cfg = json.loads(text)
            for remote in cfg["remotes"].values():
                os.makedirs(remote["upload_folder"], exist_ok=True)
            with open(cfg["core"]["rclone_config_path"], "w") as f:
                f.writelines("[%s]\ntype = drive\n" % r["upload_remote"].split(":")[0]
                             for r in cfg["remotes"].values())
            for uploader in cfg["uploader"].values():
                os.makedirs(uploader["service_account_path"], exist_ok=True)
                with open(os.path.join(uploader["service_account_path"], "sa1.json"), "w") as f:
                    f.write("{}")
            path = os.path.join(work, "config.json")
            with open(path, "w") as f:
                f.write(text)
            p = run(["/usr/bin/cplow", "--config", path, "check-config"])
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertNotIn("warning", p.stderr)
        finally:
            shutil.rmtree(work)


if __name__ == "__main__":
    unittest.main()
