"""cplow's command line as cloudplow's users type it (docs/operations.md, "Commands and
options"): options before or after the command, --opt value and --opt=value, cloudplow's log
level names in any case, --logfile (reopened on SIGHUP), --cachefile, update_config, sync, and
the CLOUDPLOW_* environment variables its Docker images set, with cplow's own CPLOW_* winning.
The real binary, each form."""
import json
import os
import shutil
import signal
import subprocess
import tempfile
import unittest
import urllib.request

from harness import (BUILD, CplowProcesses, FakeRemote, drop_ledger, free_port, make_tree,
                     wait_for)

CPLOW = os.path.join(BUILD, "supervisor/cplow")
INSPECT = os.path.join(BUILD, "shm/cplow-inspect")
ENV_NAMES = ("CONFIG", "LOGFILE", "LOGLEVEL", "CACHEFILE")
CACHE_LINE = "cplow keeps no such cache"


def clean_env(**extra):
    """This process's environment without any CPLOW_* / CLOUDPLOW_* of the caller's."""
    env = {k: v for k, v in os.environ.items()
           if not any(k == p + n for p in ("CPLOW_", "CLOUDPLOW_") for n in ENV_NAMES)}
    env.update(extra)
    return env


def read(path):
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return ""


class CliTest(CplowProcesses, unittest.TestCase):
    def setUp(self):
        self.work = tempfile.mkdtemp(prefix="cplow-cli-")
        self.procs = []
        self.configs = []
        self.fake = None

    def tearDown(self):
        self.kill_started()
        if self.fake:
            self.fake.stop()
        for c in self.configs:
            drop_ledger(c)
        shutil.rmtree(self.work, ignore_errors=True)

    def config(self, name, **uploader):
        """A config whose one uploader, `name`, uploads a small folder to a local remote (the
        dry run shows which config was read: its uploader's name)."""
        d = os.path.join(self.work, name)
        os.makedirs(os.path.join(d, "media"))
        with open(os.path.join(d, "media", "f.bin"), "wb") as f:
            f.write(b"x" * 1000)
        cfg = {"remotes": {name: {"upload_folder": os.path.join(d, "media"),
                                  "upload_remote": ":local:" + os.path.join(d, "remote")}},
               "uploader": {name: dict({"max_size_gb": 0}, **uploader)}}
        path = os.path.join(d, "config.json")
        with open(path, "w") as f:
            json.dump(cfg, f)
        self.configs.append(path)
        return path

    def cplow(self, *args, env=None, timeout=120):
        return subprocess.run([CPLOW] + list(args), env=env if env is not None else clean_env(),
                              capture_output=True, text=True, timeout=timeout, cwd=self.work)

    def start(self, *args, env):
        p = subprocess.Popen([CPLOW] + list(args), env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, cwd=self.work)
        self.procs.append(p)
        return p

    def wait_running(self, p, config):
        def up():
            if p.poll() is not None:
                raise AssertionError("cplow exited %d: %s" % (p.returncode, p.stderr.read()))
            out = subprocess.run([INSPECT, "--config", config, "--json"], capture_output=True,
                                 text=True)
            return out.returncode == 0 and json.loads(out.stdout).get("supervisor_pid") == p.pid
        wait_for("cplow's supervisor to run", up, timeout=60)

    def stop(self, p, sig=signal.SIGTERM):
        p.send_signal(sig)
        out, err = p.communicate(timeout=120)
        return p.returncode, err

    # ---- the config: --config=PATH, --config PATH, before or after, the environment ----

    def test_the_config_comes_from_every_form_and_cplows_variable_wins(self):
        alpha, beta = self.config("alpha"), self.config("beta")
        cases = [
            (["--config=" + alpha, "upload", "--dry-run"], {}, "alpha"),
            (["--config", alpha, "upload", "--dry-run"], {}, "alpha"),
            (["upload", "--dry-run", "--config=" + alpha], {}, "alpha"),
            (["upload", "--config", alpha, "--dry-run"], {}, "alpha"),
            (["--dry-run", "upload", "--config", alpha], {}, "alpha"),
            (["upload", "--dry-run"], {"CLOUDPLOW_CONFIG": alpha}, "alpha"),
            (["upload", "--dry-run"], {"CPLOW_CONFIG": beta, "CLOUDPLOW_CONFIG": alpha}, "beta"),
            (["upload", "--dry-run", "--config=" + alpha], {"CPLOW_CONFIG": beta}, "alpha"),
        ]
        for args, env, want in cases:
            with self.subTest(args=args, env=env):
                r = self.cplow(*args, env=clean_env(**env))
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertTrue(r.stdout.startswith("uploader %s: 1 accounts" % want), r.stdout)

    # ---- log levels ----

    def test_log_levels_in_any_case_with_cloudplows_names_from_option_or_environment(self):
        # The --cachefile line is an INFO line: shown at DEBUG and INFO, not above.
        shown = ["DEBUG", "debug", "Info", "INFO", "info"]
        hidden = ["WARNING", "WARN", "warn", "Warning", "ERROR", "error", "CRITICAL", "critical"]
        for level in shown + hidden:
            forms = [(["--loglevel", level, "update_config"], {}),
                     (["--loglevel=" + level, "update_config"], {}),
                     (["update_config", "--loglevel=" + level], {}),
                     (["update_config"], {"CLOUDPLOW_LOGLEVEL": level})]
            for args, env in forms:
                with self.subTest(level=level, args=args, env=env):
                    r = self.cplow("--cachefile", "cache.db", *args, env=clean_env(**env))
                    self.assertEqual(r.returncode, 0, r.stderr)
                    self.assertEqual(CACHE_LINE in r.stderr, level in shown, r.stderr)
        # cplow's own variable wins; an option wins over both.
        r = self.cplow("--cachefile", "c.db", "update_config",
                       env=clean_env(CPLOW_LOGLEVEL="error", CLOUDPLOW_LOGLEVEL="INFO"))
        self.assertNotIn(CACHE_LINE, r.stderr)
        r = self.cplow("--cachefile", "c.db", "update_config", "--loglevel", "INFO",
                       env=clean_env(CPLOW_LOGLEVEL="error"))
        self.assertIn(CACHE_LINE, r.stderr)
        for args, env, where in ((["--loglevel", "LOUD"], {}, "--loglevel"),
                                 ([], {"CLOUDPLOW_LOGLEVEL": "LOUD"}, "CLOUDPLOW_LOGLEVEL")):
            r = self.cplow(*args, "update_config", env=clean_env(**env))
            self.assertEqual(r.returncode, 2)
            self.assertIn('cplow: %s: "LOUD" is not a log level: DEBUG, INFO, WARNING' % where,
                          r.stderr)

    # ---- cloudplow's systemd line ----

    def test_cloudplows_systemd_line_runs_the_daemon(self):
        # cloudplow's unit: `cloudplow run --loglevel=INFO`, the config from CLOUDPLOW_CONFIG
        # (its Docker images) or --config.
        config = self.config("media", max_size_gb=100)
        p = self.start("run", "--loglevel=INFO", env=clean_env(CLOUDPLOW_CONFIG=config))
        self.wait_running(p, config)
        code, err = self.stop(p)
        self.assertEqual(code, 143, err)
        self.assertIn("INFO  cplow: SIGTERM: stopping every stage gracefully", err)
        # DEBUG after the command shows debug lines.
        p = self.start("run", "--config", config, "--loglevel", "DEBUG", env=clean_env())
        self.wait_running(p, config)
        code, err = self.stop(p)
        self.assertEqual(code, 143, err)
        self.assertIn("DEBUG cplow: uploader media not due", err)

    # ---- --logfile ----

    def test_the_logfile_gets_every_processs_lines_and_follows_a_rename_on_sighup(self):
        # logrotate renames the file and sends SIGHUP with the config as it was: every process
        # writes to the new file from then on, and the stage under way is not interrupted.
        quota = 64 << 20
        self.fake = FakeRemote({"a1": ("pw1", quota)}, self.work)
        src = os.path.join(self.work, "src")
        os.makedirs(src)
        files = make_tree(src, 20, seed=71, min_size=100 << 10, max_size=200 << 10)
        config = os.path.join(self.work, "config.json")
        port = free_port()
        with open(config, "w") as f:
            json.dump({"remotes": {"media": {"upload_folder": src, "upload_remote": "fake1:/M",
                                             "rclone_extras": {"--retries": 1}}},
                       "uploader": {"media": {"max_size_gb": 0, "check_interval": 1}},
                       "quota": {"daily_bytes": quota, "min_free_bytes": 1},
                       "dashboard": {"enabled": True, "host": "127.0.0.1", "port": port}}, f)
        self.configs.append(config)
        env = clean_env(**self.fake.remote_env("fake1", "a1"))
        log = os.path.join(self.work, "cplow.log")
        self.fake.set_delay(200)  # the stage is still running when the file is rotated
        p = self.start("run", "--logfile", log, "--config=" + config, env=env)
        wait_for("the worker's first line and the dashboard's in the log file",
                 lambda: "worker[media/fake1]: stage 1 started" in read(log)
                 and "dashboard: serving" in read(log), timeout=60)
        self.assertIn("cplow: uploader media: stage 1 on fake1", read(log))
        os.rename(log, log + ".1")
        p.send_signal(signal.SIGHUP)
        wait_for("the rotation's line in the new file",
                 lambda: "SIGHUP: the config is as it was" in read(log), timeout=60)
        # The dashboard may not open files (its sandbox): it starts again and says so there.
        wait_for("the restarted dashboard's line in the new file",
                 lambda: "dashboard: serving" in read(log), timeout=60)
        self.fake.set_delay(0)
        # The worker, forked before the rotation, ends its stage and says so in the new file.
        wait_for("the worker's end of stage 1 in the new file",
                 lambda: "worker[media/fake1]: stage 1 done" in read(log), timeout=120)
        with urllib.request.urlopen("http://127.0.0.1:%d/api/health" % port, timeout=10) as r:
            self.assertEqual(json.load(r)["status"], "healthy")
        code, err = self.stop(p)
        self.assertEqual(code, 143, err)
        old, new = read(log + ".1"), read(log)
        self.assertNotIn("SIGHUP", old)
        self.assertNotIn("stop requested", old + new)
        self.assertNotIn("interrupted", old + new)
        self.assertNotIn("killed by signal", old + new)
        self.assertEqual(self.fake.truth()["users"]["a1"]["accepted_bytes"],
                         sum(files.values()))
        self.assertIn("SIGTERM: stopping every stage gracefully", new)
        # Logs go to the file too, as cloudplow's did: stderr has the same lines.
        self.assertIn("SIGHUP: the config is as it was", err)
        for line in new.splitlines():
            self.assertIn(line, err)

    def test_the_logfile_from_cloudplows_variable_and_a_bad_one_exits_2(self):
        log = os.path.join(self.work, "from-env.log")
        r = self.cplow("--cachefile=c.db", "update_config", env=clean_env(CLOUDPLOW_LOGFILE=log))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(CACHE_LINE, read(log))
        mine = os.path.join(self.work, "mine.log")
        self.cplow("--cachefile=c.db", "update_config",
                   env=clean_env(CPLOW_LOGFILE=mine, CLOUDPLOW_LOGFILE=log))
        self.assertIn(CACHE_LINE, read(mine))
        self.assertEqual(read(log).count(CACHE_LINE), 1, "CPLOW_LOGFILE wins")
        r = self.cplow("update_config", "--logfile", os.path.join(self.work, "no/such/dir/x.log"))
        self.assertEqual(r.returncode, 2)
        self.assertIn("cplow: --logfile: cannot open the log file", r.stderr)

    # ---- --cachefile, update_config, sync ----

    def test_cachefile_is_accepted_with_one_line_and_never_created(self):
        config = self.config("media")
        cache = os.path.join(self.work, "cache.db")
        for args, env in ((["--cachefile", cache, "upload", "--dry-run"], {}),
                          (["upload", "--dry-run", "--cachefile=" + cache], {}),
                          (["upload", "--dry-run"], {"CLOUDPLOW_CACHEFILE": cache})):
            with self.subTest(args=args, env=env):
                r = self.cplow("--config", config, *args, env=clean_env(**env))
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertEqual(r.stderr.count(CACHE_LINE), 1, r.stderr)
                self.assertIn("uploader media: 1 accounts", r.stdout)
                self.assertFalse(os.path.exists(cache))

    def test_update_config_never_rewrites_the_config_and_exits_0(self):
        config = self.config("media")
        before = os.stat(config)
        with open(config, "rb") as f:
            text = f.read()
        r = self.cplow("update_config", "--config", config)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("cplow never rewrites your config (%s)" % config, r.stdout)
        with open(config, "rb") as f:
            self.assertEqual(f.read(), text)
        self.assertEqual(os.stat(config).st_mtime_ns, before.st_mtime_ns)

    def test_sync_says_in_one_line_why_it_is_not_there_and_exits_2(self):
        r = self.cplow("sync", "--loglevel=INFO")
        self.assertEqual(r.returncode, 2)
        self.assertEqual(r.stdout, "")
        lines = r.stderr.splitlines()
        self.assertEqual(len(lines), 1, r.stderr)
        self.assertTrue(lines[0].startswith("cplow sync: not implemented: cloudplow's syncer "
                                            "drove Scaleway VMs"), lines[0])

    # ---- what is still refused ----

    def test_unknown_or_misplaced_options_exit_2_naming_them(self):
        cases = [(["upload", "--bogus"], "cplow: unknown option --bogus"),
                 (["upload", "--json"], "cplow upload: --json is not an option of this command"),
                 (["update_config", "--config"], "cplow: --config needs a value"),
                 (["upload", "--dry-run=yes"], "cplow: --dry-run takes no value"),
                 (["upload", "media"], "cplow upload: unexpected argument media"),
                 (["frobnicate"], "cplow: unknown command frobnicate")]
        for args, message in cases:
            with self.subTest(args=args):
                r = self.cplow(*args)
                self.assertEqual(r.returncode, 2)
                self.assertIn(message, r.stderr)


if __name__ == "__main__":
    unittest.main()
