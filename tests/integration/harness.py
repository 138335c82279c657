"""Shared pieces of the integration tests: the fake remote, source trees, the ledger's view.

Every wait is a loop with a deadline; nothing sleeps and hopes.
"""
import json
import os
import random
import socket
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
BUILD = os.environ.get("CPLOW_BUILD_DIR", os.path.join(ROOT, "build"))
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else "python3"
RCLONE = os.environ.get("RCLONE", "/usr/bin/rclone")


def wait_for(what, predicate, timeout=30.0, step=0.02):
    """Polls predicate until it returns a true value; fails with `what` at the deadline."""
    end = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= end:
            raise AssertionError("timed out after %.0f s waiting for %s" % (timeout, what))
        time.sleep(step)


def _read(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except FileNotFoundError:
        return ""


class FakeRemote:
    """tests/fixtures/fake_remote.py on a free loopback port, one user per account."""

    def __init__(self, users, workdir):
        self.dir = tempfile.mkdtemp(prefix="fake-", dir=workdir)
        self.users = dict(users)  # name -> (password, quota_bytes)
        port_file = os.path.join(self.dir, "port")
        args = [PYTHON, os.path.join(ROOT, "tests/fixtures/fake_remote.py"),
                "--root", os.path.join(self.dir, "root"), "--port", "0",
                "--port-file", port_file]
        for name, (password, quota) in self.users.items():
            args += ["--user", "%s:%s:%d" % (name, password, quota)]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL)
        self.port = int(wait_for("the fake remote's port file", lambda: _read(port_file),
                                 timeout=20))
        self.url = "http://127.0.0.1:%d/" % self.port
        self._obscured = {}

    def _request(self, method, path):
        req = urllib.request.Request(self.url + path.lstrip("/"), method=method, data=b"" if method == "POST" else None)
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.read()

    def truth(self):
        return json.loads(self._request("GET", "_fake/truth"))

    def accepted(self, user):
        return self.truth()["users"][user]["accepted_bytes"]

    def set_delay(self, ms):
        self._request("POST", "_fake/delay?ms=%d" % ms)

    def set_reply_delay(self, ms):
        """A PUT received whole is stored and counted, then its reply waits ms."""
        self._request("POST", "_fake/reply_delay?ms=%d" % ms)

    def set_move_reply_delay(self, ms):
        """A MOVE or COPY is done, then its reply waits ms."""
        self._request("POST", "_fake/move_reply_delay?ms=%d" % ms)

    def stored(self, user, rel):
        """Where the fake keeps user's file rel: a test may put a file there (as if uploaded
        long ago) or look at what arrived."""
        return os.path.join(self.dir, "root", user, rel)

    def set_quota(self, user, quota):
        self._request("POST", "_fake/quota?user=%s&bytes=%d" % (user, quota))

    def remote_env(self, remote, user, vendor="other"):
        """RCLONE_CONFIG_* for an environment-defined webdav remote logged in as user.
        vendor "owncloud": the remote keeps modification times (X-OC-Mtime)."""
        if user not in self._obscured:
            self._obscured[user] = subprocess.check_output(
                [RCLONE, "obscure", self.users[user][0]], text=True).strip()
        prefix = "RCLONE_CONFIG_%s_" % remote.upper()
        return {prefix + "TYPE": "webdav", prefix + "URL": self.url, prefix + "VENDOR": vendor,
                prefix + "USER": user, prefix + "PASS": self._obscured[user]}

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def make_tree(root, count, seed, min_size=1024, max_size=8 << 20, dirs=5):
    """count files of random sizes in a few subdirectories; returns {relative path: size}."""
    rng = random.Random(seed)
    files = {}
    for i in range(count):
        sub = "season %02d" % (i % dirs) if dirs else ""
        size = rng.randint(min_size, max_size)
        rel = os.path.join(sub, "episode %03d.bin" % i) if sub else "file%03d.bin" % i
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(rng.randbytes(min(size, 4096)) * (size // 4096) + rng.randbytes(size % 4096)
                    if size >= 4096 else rng.randbytes(size))
        files[rel] = size
    return files


def ledger_state(shm):
    """cplow-inspect --json of the ledger; an empty one while it does not exist yet."""
    out = subprocess.run([os.path.join(BUILD, "shm/cplow-inspect"), "--shm", shm, "--json"],
                         capture_output=True, text=True, timeout=30)
    if out.returncode == 1 and "no ledger" in out.stderr:
        return {"uploaders": {}, "stages": []}
    if out.returncode != 0:
        raise AssertionError("cplow-inspect failed: " + out.stderr)
    return json.loads(out.stdout)


def used_by_account(config, uploader):
    """{account: used bytes} of uploader's rows in the ledger of the cplow run on config."""
    out = subprocess.run([os.path.join(BUILD, "shm/cplow-inspect"), "--config", config, "--json"],
                         capture_output=True, text=True, timeout=30)
    if out.returncode != 0:
        raise AssertionError("cplow-inspect failed: " + out.stderr)
    rows = json.loads(out.stdout)["uploaders"].get(uploader, [])
    return {r["account"]: r["used_bytes"] for r in rows}


def ledger_row(shm, uploader, account):
    for row in ledger_state(shm)["uploaders"].get(uploader, []):
        if row["account"] == account:
            return row
    return None


def ledger_bytes(shm, uploader, account):
    row = ledger_row(shm, uploader, account)
    return row["used_bytes"] if row else 0


def unlink_shm(name):
    try:
        os.unlink("/dev/shm" + name)
    except FileNotFoundError:
        pass


def one_account_config(src, **sections):
    """cplow's config for one uploader moving src to fake1:/Media, its only account, with a
    64 MiB quota; sections (e.g. dashboard=...) are added as they are."""
    cfg = {
        "core": {"dry_run": False},
        "remotes": {"media": {
            "upload_folder": src, "upload_remote": "fake1:/Media",
            "rclone_command": "move", "remove_empty_dir_depth": 1,
            "rclone_extras": {"--retries": 1, "--low-level-retries": 1}}},
        "uploader": {"media": {"check_interval": 1, "max_size_gb": 0,
                               "rotate_remotes": ["fake1"]}},
        "quota": {"daily_bytes": 64 << 20, "min_free_bytes": 1,
                  "continue_min_bytes": 256 << 10},
    }
    cfg.update(sections)
    return cfg


class CplowProcesses:
    """A test's runs of cplow on its config: self.config, self.env and self.procs (a list) are
    the test's; kill_started() in tearDown ends what is still running."""

    def cplow(self, *args, timeout=300):
        return subprocess.run([os.path.join(BUILD, "supervisor/cplow"), "--config", self.config]
                              + list(args), env=self.env, capture_output=True, text=True,
                              timeout=timeout)

    def start(self, *args):
        p = subprocess.Popen([os.path.join(BUILD, "supervisor/cplow"), "--config", self.config]
                             + list(args), env=self.env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        self.procs.append(p)
        return p

    def kill_started(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()


class DashboardFill:
    """tests/tools/dashboard_fill: the real dashboard role on a ledger it fills; step() moves
    the ledger on, stop() ends both and returns the exit status."""

    def __init__(self, shm, *args):
        tool = os.path.join(BUILD, "tests", "dashboard_fill")
        if not os.access(tool, os.X_OK):
            raise AssertionError("%s is not built" % tool)
        self.proc = subprocess.Popen([tool, shm] + list(args), stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        self.port = self.proc.stdout.readline().strip()
        if not self.port.isdigit():
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("dashboard_fill did not report a port: %r" % self.port)

    def step(self):
        self.proc.stdin.write("step\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def stop(self):
        self.proc.stdout.close()
        try:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.close()
            return self.proc.wait(timeout=20)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()


def drop_ledger(config):
    """Removes the shared ledger of the cplow run on config, if there is one."""
    state = subprocess.run([os.path.join(BUILD, "shm/cplow-inspect"), "--config", config,
                            "--json"], capture_output=True, text=True)
    if state.returncode == 0:
        unlink_shm(json.loads(state.stdout)["ledger"])


def stage_args(shm, uploader, account, source, dest, workdir, *extra):
    return [os.path.join(BUILD, "tests/stage_tool"), "--ledger", shm, "--create",
            "--uploader", uploader, "--account", account, "--source", source,
            "--dest", dest, "--work-dir", workdir,
            "--extra", "--retries=1", "--extra", "--low-level-retries=1"] + list(extra)


def popen(args, env):
    """args with env added to ours; stdout and stderr piped, as text."""
    full = dict(os.environ)
    full.update(env)
    return subprocess.Popen(list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=full)


def run_stage(env, *args, timeout=300):
    full_env = dict(os.environ)
    full_env.update(env)
    out = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, env=full_env)
    lines = [l for l in out.stdout.splitlines() if l.startswith("{")]
    if not lines:
        raise AssertionError("stage_tool printed no outcome (exit %d): %s" % (out.returncode, out.stderr[-3000:]))
    return json.loads(lines[-1]), out


def children(pid):
    """[(pid, comm)] of the processes whose parent is pid."""
    kids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            with open("/proc/%s/comm" % entry) as f:
                comm = f.read().strip()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append((int(entry), comm))
    return kids


def child_named(pid, name):
    return next((k for k, comm in children(pid) if comm == name), None)


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
