"""The Plex throttle and pausing NZBGet / SABnzbd, through a real `cplow upload`.

Fake Plex, NZBGet and SABnzbd servers run in threads on 127.0.0.1 and record what they are
asked; the upload goes to the fake quota remote with the real rclone. The bandwidth limit is
read from the running rclone's own RC (core/bwlimit), with the per-stage credentials taken from
its environment and its port from /proc/net/tcp. Every wait is a loop with a deadline.
"""
import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import unittest
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from harness import BUILD, FakeRemote, make_tree, unlink_shm, wait_for

CPLOW = os.path.join(BUILD, "supervisor/cplow")
INSPECT = os.path.join(BUILD, "shm/cplow-inspect")
PLEX_TOKEN = "plex-token-XYZ"
SAB_KEY = "sab-key&123"
NZB_USER, NZB_PASS = "nzbuser", "nzb:pass"
SLOW_MS = 300                      # fake remote delay per 64 KiB: the upload lasts seconds


# ---- fake servers -----------------------------------------------------------------------------

class FakeServer:
    """A ThreadingHTTPServer on a free loopback port, with a record of the calls it got."""

    def __init__(self, handler):
        self.calls = []
        self.lock = threading.Lock()
        server = self

        class Handler(handler):
            owner = server

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def record(self, call):
        with self.lock:
            self.calls.append(call)

    def recorded(self):
        with self.lock:
            return list(self.calls)

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class PlexHandler(BaseHTTPRequestHandler):
    def do_GET(self):
        plex = self.owner
        plex.record(self.path)
        if self.path != "/status/sessions":
            self.send_error(404)
            return
        if self.headers.get("X-Plex-Token") != PLEX_TOKEN:
            self.send_error(401)
            return
        with plex.lock:
            sessions = list(plex.sessions)
        if "application/json" in self.headers.get("Accept", ""):
            meta = [{"title": "t%d" % i, "type": "movie",
                     "Player": {"state": state, "local": local, "product": "Plex Web"},
                     "Session": {"id": str(i), "location": "lan" if local else "wan"}}
                    for i, (state, local) in enumerate(sessions)]
            container = {"size": len(meta)}
            if meta:
                container["Metadata"] = meta
            body = json.dumps({"MediaContainer": container}).encode()
            ctype = "application/json"
        else:  # what Plex answers without the Accept header
            body = b'<?xml version="1.0" encoding="UTF-8"?><MediaContainer size="0"/>'
            ctype = "text/xml;charset=utf-8"
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class FakePlex(FakeServer):
    def __init__(self):
        self.sessions = []   # [(state, local)]
        super().__init__(PlexHandler)
        self.url = "http://127.0.0.1:%d" % self.port

    def set_sessions(self, sessions):
        with self.lock:
            self.sessions = list(sessions)


class NzbgetHandler(BaseHTTPRequestHandler):
    def do_POST(self):
        nzb = self.owner
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        want = "Basic " + base64.b64encode(("%s:%s" % (NZB_USER, NZB_PASS)).encode()).decode()
        if self.path != "/jsonrpc" or self.headers.get("Authorization") != want:
            nzb.record(("refused", self.path))
            self.send_error(401 if self.path == "/jsonrpc" else 404)
            return
        method = json.loads(body)["method"]
        nzb.record(method)
        with nzb.lock:
            if method == "pausedownload":
                nzb.paused = True
            elif method == "resumedownload":
                nzb.paused = False
            result = {"DownloadPaused": nzb.paused} if method == "status" else True
        out = json.dumps({"version": "1.1", "id": 1, "result": result}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)


class FakeNzbget(FakeServer):
    def __init__(self, paused=False):
        self.paused = paused
        super().__init__(NzbgetHandler)
        self.url = "http://%s:%s@127.0.0.1:%d" % (NZB_USER, urllib.parse.quote(NZB_PASS, safe=""),
                                                  self.port)

    def methods(self):
        return [c for c in self.recorded() if isinstance(c, str)]


class SabHandler(BaseHTTPRequestHandler):
    def do_GET(self):
        sab = self.owner
        url = urllib.parse.urlparse(self.path)
        q = urllib.parse.parse_qs(url.query)
        if url.path != "/sabnzbd/api" or q.get("apikey") != [SAB_KEY] or \
                q.get("output") != ["json"]:
            sab.record(("refused", self.path))
            out = json.dumps({"status": False, "error": "API Key Incorrect"}).encode()
        else:
            mode = q["mode"][0]
            sab.record(mode)
            with sab.lock:
                if mode == "pause":
                    sab.paused = True
                elif mode == "resume":
                    sab.paused = False
                if mode == "queue":
                    out = json.dumps({"queue": {"paused": sab.paused, "slots": []}}).encode()
                else:
                    out = json.dumps({"status": True}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)


class FakeSab(FakeServer):
    def __init__(self, paused=False):
        self.paused = paused
        super().__init__(SabHandler)
        self.url = "http://127.0.0.1:%d/sabnzbd/" % self.port

    def modes(self):
        return [c for c in self.recorded() if isinstance(c, str)]


class HangingServer:
    """A downloader that hangs: it accepts connections and never answers."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.lock = threading.Lock()
        self.conns = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.conns.append(conn)

    def accepted(self):
        with self.lock:
            return len(self.conns)

    def stop(self):
        self.sock.close()
        with self.lock:
            for c in self.conns:
                c.close()


# ---- rclone's own view of its bandwidth limit -------------------------------------------------

def _children(pid):
    kids = []
    for e in os.listdir("/proc"):
        if not e.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % e) as f:
                data = f.read()
            with open("/proc/%s/comm" % e) as f:
                comm = f.read().strip()
        except OSError:
            continue
        if int(data[data.rindex(")") + 2:].split()[1]) == pid:
            kids.append((int(e), comm))
    return kids


def stage_argv(pid, comm):
    """The argv of a stage's own rclone (the one with a remote control), or None: a worker also
    runs short-lived rclones of its in-flight check (backend features, lsjson), which do not
    count as its stage's."""
    if comm != "rclone":
        return None
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            argv = f.read().split(b"\0")
    except OSError:
        return None
    return argv if b"--rc" in argv else None


def rclone_of(cplow_pid):
    """The rclone of a running stage (cplow → worker → rclone), or None."""
    for worker, comm in _children(cplow_pid):
        if comm != "cplow":
            continue
        for pid, c in _children(worker):
            if stage_argv(pid, c):
                return pid
    return None


def _listening_ports(pid):
    inodes = set()
    try:
        for fd in os.listdir("/proc/%d/fd" % pid):
            try:
                link = os.readlink("/proc/%d/fd/%s" % (pid, fd))
            except OSError:
                continue
            if link.startswith("socket:["):
                inodes.add(link[8:-1])
    except OSError:
        return []
    ports = []
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # LISTEN
                ports.append(int(fields[1].split(":")[1], 16))
    return ports


def rclone_bwlimit(cplow_pid):
    """bytesPerSecond from the running rclone's core/bwlimit (-1: no limit), or None."""
    pid = rclone_of(cplow_pid)
    return bwlimit_of(pid) if pid else None


def bwlimit_of(pid):
    """bytesPerSecond from core/bwlimit of the rclone with this pid, or None."""
    try:
        with open("/proc/%d/environ" % pid, "rb") as f:
            env = dict(v.split(b"=", 1) for v in f.read().split(b"\0") if b"=" in v)
        user, password = env[b"RCLONE_RC_USER"].decode(), env[b"RCLONE_RC_PASS"].decode()
    except (OSError, KeyError):
        return None
    auth = "Basic " + base64.b64encode(("%s:%s" % (user, password)).encode()).decode()
    for port in _listening_ports(pid):
        req = urllib.request.Request("http://127.0.0.1:%d/core/bwlimit" % port, data=b"{}",
                                     headers={"Authorization": auth,
                                              "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return json.loads(r.read())["bytesPerSecond"]
        except (OSError, ValueError, KeyError):
            continue
    return None


# ---- the tests --------------------------------------------------------------------------------

class PlexDownloadersTest(unittest.TestCase):
    def setUp(self):
        self.work = tempfile.mkdtemp(prefix="cplow-plexdl-")
        self.procs = []
        self.servers = []
        self.fake = FakeRemote({"a1": ("pw-a1", 1 << 40)}, self.work)
        self.env = dict(os.environ)
        self.env.update(self.fake.remote_env("fake1", "a1"))
        self.src = os.path.join(self.work, "media")
        os.makedirs(self.src)
        self.config_path = os.path.join(self.work, "config.json")

    def tearDown(self):
        for p in self.procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
            p.wait()
        for s in self.servers:
            s.stop()
        self.fake.stop()
        out = subprocess.run([INSPECT, "--config", self.config_path, "--json"],
                             capture_output=True, text=True, timeout=30)
        if out.returncode == 0:
            unlink_shm(json.loads(out.stdout)["ledger"])
        shutil.rmtree(self.work, ignore_errors=True)

    def server(self, s):
        self.servers.append(s)
        return s

    def write_config(self, upload_remote="fake1:/Media", plex=None, nzbget=None, sabnzbd=None):
        cfg = {
            "core": {"dry_run": False, "rclone_binary_path": "/usr/bin/rclone"},
            "remotes": {"media": {
                "upload_folder": self.src, "upload_remote": upload_remote,
                "rclone_command": "move",
                "rclone_extras": {"--retries": 1, "--low-level-retries": 1}}},
            "uploader": {"media": {"check_interval": 1, "max_size_gb": 0}},
            "quota": {"daily_bytes": 1 << 40},
        }
        if plex:
            cfg["plex"] = {"enabled": True, "url": plex.url, "token": PLEX_TOKEN,
                           "poll_interval": 1, "max_streams_before_throttle": 1,
                           "ignore_local_streams": True,
                           "rclone": {"throttle_speeds": {"1": "1M", "2": "512k", "3": "256k"},
                                      "url": "http://localhost:7949"}}
        if nzbget:
            cfg["nzbget"] = {"enabled": True, "url": nzbget.url}
        if sabnzbd:
            cfg["sabnzbd"] = {"enabled": True, "url": sabnzbd.url, "apikey": SAB_KEY}
        with open(self.config_path, "w") as f:
            json.dump(cfg, f, indent=1)
        return self.config_path

    def cplow(self, *args):
        log_path = os.path.join(self.work, "cplow-%d.log" % len(self.procs))
        with open(log_path, "w") as log:
            p = subprocess.Popen([CPLOW, "--config", self.config_path] + list(args),
                                 stdout=subprocess.DEVNULL, stderr=log, env=self.env,
                                 start_new_session=True)
        p.log_path = log_path
        self.procs.append(p)
        return p

    def log(self, p):
        with open(p.log_path, errors="replace") as f:
            return f.read()

    def wait_exit(self, p, timeout=120):
        try:
            return p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError("cplow still runs after %d s; its log ends:\n%s"
                                 % (timeout, self.log(p)[-4000:]))

    def wait_rclone(self, p):
        return wait_for("a stage's rclone", lambda: (p.poll() is None or self.fail(
            "cplow exited early (%s):\n%s" % (p.returncode, self.log(p)[-3000:])))
            and rclone_of(p.pid), timeout=60, step=0.05)

    def marker(self):
        return os.path.join(self.work, "cplow.lock.paused")

    # -- Plex --

    def test_plex_streams_limit_rclone_and_the_limit_is_lifted_when_they_stop(self):
        plex = self.server(FakePlex())
        nzb = self.server(FakeNzbget())
        sab = self.server(FakeSab())
        # Two remote streams play; a local one and a paused one do not count: 512k.
        plex.set_sessions([("playing", False), ("buffering", False), ("playing", True),
                           ("paused", False)])
        make_tree(self.src, 16, seed=11, min_size=256 << 10, max_size=768 << 10)
        self.write_config(plex=plex, nzbget=nzb, sabnzbd=sab)
        self.fake.set_delay(SLOW_MS)
        p = self.cplow("upload")
        self.wait_rclone(p)
        # The downloaders were paused before the first stage began.
        self.assertEqual(nzb.methods(), ["status", "pausedownload"])
        self.assertEqual(sab.modes(), ["queue", "pause"])
        self.assertTrue(os.path.exists(self.marker()), "no pause marker while paused")

        wait_for("rclone's RC to report the 512k limit",
                 lambda: rclone_bwlimit(p.pid) == 512 * 1024, timeout=30, step=0.2)
        self.assertIn("uploads limited to 512k", self.log(p))

        plex.set_sessions([("paused", False)])
        wait_for("the limit to be lifted", lambda: rclone_bwlimit(p.pid) == -1,
                 timeout=30, step=0.2)
        self.assertIn("the upload limit is lifted", self.log(p))
        self.assertTrue(any(c == "/status/sessions" for c in plex.recorded()))

        self.fake.set_delay(0)
        self.assertEqual(self.wait_exit(p), 0, self.log(p)[-4000:])
        self.assertEqual(nzb.methods(), ["status", "pausedownload", "resumedownload"])
        self.assertEqual(sab.modes(), ["queue", "pause", "resume"])
        self.assertFalse(nzb.paused or sab.paused)
        self.assertFalse(os.path.exists(self.marker()))
        log = self.log(p)
        for secret in (PLEX_TOKEN, NZB_PASS, "nzb%3Apass", SAB_KEY, "sab-key"):
            self.assertNotIn(secret, log, "a secret in the log")

    def rclones_by_folder(self, p):
        """{upload folder: rclone pid} of the stages running now."""
        found = {}
        for worker, comm in _children(p.pid):
            for pid, c in _children(worker) if comm == "cplow" else []:
                argv = stage_argv(pid, c)
                if argv and len(argv) > 2:
                    found[argv[2].decode()] = pid
        return found

    def test_an_uploader_with_can_be_throttled_false_is_left_alone(self):
        # cloudplow's can_be_throttled: false (issue 14): its stages run at full speed while
        # the other uploader's are limited.
        plex = self.server(FakePlex())
        self.fake.stop()
        self.fake = FakeRemote({"a1": ("pw-a1", 1 << 40), "a2": ("pw-a2", 1 << 40)}, self.work)
        self.env.update(self.fake.remote_env("fake1", "a1"))
        self.env.update(self.fake.remote_env("fake2", "a2"))
        tv = os.path.join(self.work, "tv")
        os.makedirs(tv)
        make_tree(self.src, 16, seed=13, min_size=256 << 10, max_size=768 << 10)
        make_tree(tv, 16, seed=14, min_size=256 << 10, max_size=768 << 10)
        cfg = self.write_config(plex=plex)
        with open(cfg) as f:
            data = json.load(f)
        data["remotes"]["tv"] = dict(data["remotes"]["media"], upload_folder=tv,
                                     upload_remote="fake2:/TV")
        data["uploader"]["tv"] = dict(data["uploader"]["media"], can_be_throttled=False)
        with open(cfg, "w") as f:
            json.dump(data, f)
        self.fake.set_delay(SLOW_MS)
        p = self.cplow("--loglevel", "debug", "upload")
        both = wait_for("both uploaders' rclones",
                        lambda: (p.poll() is None or self.fail(self.log(p)[-3000:]))
                        and len(r := self.rclones_by_folder(p)) == 2 and r,
                        timeout=60, step=0.05)
        plex.set_sessions([("playing", False)] * 2)
        wait_for("media's rclone to report the 512k limit",
                 lambda: bwlimit_of(both[self.src]) == 512 * 1024, timeout=30, step=0.2)
        # One poll after the limit applied, the role has gone over every slot again.
        polls = plex.recorded().count("/status/sessions")
        wait_for("another Plex poll",
                 lambda: plex.recorded().count("/status/sessions") > polls + 1, timeout=30)
        self.assertEqual(bwlimit_of(both[tv]), -1, "the tv uploader was throttled")
        asked = [l for l in self.log(p).splitlines() if "bandwidth limit 512k asked" in l]
        self.assertEqual(len(asked), 1, asked)
        self.fake.set_delay(0)
        self.assertEqual(self.wait_exit(p), 0, self.log(p)[-4000:])

    def test_a_stage_started_under_a_limit_gets_it_at_once(self):
        plex = self.server(FakePlex())
        plex.set_sessions([("playing", False)] * 3)
        # An 8 MiB quota: the first stage stops at --max-transfer (half of it), and a second
        # stage goes on with the same account.
        make_tree(self.src, 14, seed=12, min_size=256 << 10, max_size=768 << 10)
        cfg = self.write_config(plex=plex)
        with open(cfg) as f:
            data = json.load(f)
        data["plex"]["poll_interval"] = 3600   # one poll: the second stage gets held state
        data["uploader"]["media"]["quota"] = True   # the fake is WebDAV: auto would be off
        data["quota"] = {"daily_bytes": 8 << 20, "min_free_bytes": 1,
                         "continue_min_bytes": 256 << 10}
        with open(cfg, "w") as f:
            json.dump(data, f)
        self.fake.set_delay(SLOW_MS)
        p = self.cplow("upload")
        first = self.wait_rclone(p)
        wait_for("the first rclone's RC to report the 256k limit",
                 lambda: bwlimit_of(first) == 256 * 1024, timeout=30, step=0.2)
        second = wait_for("a second stage's rclone",
                          lambda: (p.poll() is None or self.fail(
                              "cplow exited before a second stage:\n" + self.log(p)[-3000:]))
                          and (r := rclone_of(p.pid)) and r != first and r,
                          timeout=120, step=0.05)
        wait_for("the second rclone's RC to report the 256k limit",
                 lambda: bwlimit_of(second) == 256 * 1024, timeout=30, step=0.2)
        self.fake.set_delay(0)
        self.assertEqual(self.wait_exit(p), 0, self.log(p)[-4000:])
        self.assertEqual(plex.recorded().count("/status/sessions"), 1, plex.recorded())

    def test_a_plex_role_that_dies_is_restarted_and_lifts_what_it_set(self):
        plex = self.server(FakePlex())
        plex.set_sessions([("playing", False)] * 2)
        make_tree(self.src, 16, seed=17, min_size=256 << 10, max_size=768 << 10)
        self.write_config(plex=plex)
        self.fake.set_delay(SLOW_MS)
        p = self.cplow("upload")
        self.wait_rclone(p)
        wait_for("rclone's RC to report the 512k limit",
                 lambda: rclone_bwlimit(p.pid) == 512 * 1024, timeout=30, step=0.2)
        role = next(pid for pid, comm in _children(p.pid) if comm == "cplow-plex")
        os.kill(role, signal.SIGKILL)
        plex.set_sessions([])
        wait_for("a new Plex role", lambda: any(
            comm == "cplow-plex" and pid != role for pid, comm in _children(p.pid)),
            timeout=30, step=0.1)
        wait_for("the new role to lift the old one's limit",
                 lambda: rclone_bwlimit(p.pid) == -1, timeout=30, step=0.2)
        self.assertIn("the Plex throttle died", self.log(p))
        self.fake.set_delay(0)
        self.assertEqual(self.wait_exit(p), 0, self.log(p)[-4000:])

    # -- downloaders --

    def test_sigterm_mid_upload_resumes_the_downloaders(self):
        nzb = self.server(FakeNzbget())
        sab = self.server(FakeSab())
        make_tree(self.src, 12, seed=13, min_size=256 << 10, max_size=768 << 10)
        self.write_config(nzbget=nzb, sabnzbd=sab)
        self.fake.set_delay(SLOW_MS)
        p = self.cplow("upload")
        self.wait_rclone(p)
        self.assertEqual(nzb.methods(), ["status", "pausedownload"])
        p.send_signal(signal.SIGTERM)
        self.assertEqual(self.wait_exit(p, 60), 143, self.log(p)[-4000:])
        self.fake.set_delay(0)
        self.assertNotIn("was killed by signal", self.log(p), "the worker did not stop cleanly")
        self.assertEqual(nzb.methods(), ["status", "pausedownload", "resumedownload"])
        self.assertEqual(sab.modes(), ["queue", "pause", "resume"])
        self.assertFalse(os.path.exists(self.marker()))

    def test_a_failed_upload_resumes_and_a_user_paused_downloader_is_left_alone(self):
        nzb = self.server(FakeNzbget())
        sab = self.server(FakeSab(paused=True))   # paused by its user: not ours to resume
        make_tree(self.src, 3, seed=14, min_size=1024, max_size=4096)
        self.write_config(upload_remote="nosuchremote:/Media", nzbget=nzb, sabnzbd=sab)
        p = self.cplow("upload")
        self.assertEqual(self.wait_exit(p), 1, self.log(p)[-4000:])
        self.assertEqual(nzb.methods(), ["status", "pausedownload", "resumedownload"],
                         "paused once for every stage of the upload, resumed once at its end")
        self.assertEqual(sab.modes(), ["queue"])
        self.assertTrue(sab.paused)
        self.assertIn("paused already, not by cplow", self.log(p))
        self.assertFalse(os.path.exists(self.marker()))

    def test_a_downloader_a_killed_cplow_paused_is_resumed_at_the_next_start(self):
        nzb = self.server(FakeNzbget())
        make_tree(self.src, 12, seed=15, min_size=256 << 10, max_size=768 << 10)
        self.write_config(nzbget=nzb)
        self.fake.set_delay(SLOW_MS)
        p = self.cplow("upload")
        self.wait_rclone(p)
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
        self.assertTrue(nzb.paused)
        with open(self.marker()) as f:
            self.assertEqual(f.read(), "nzbget\n")
        self.fake.set_delay(0)
        # The killed workers may still finish their stages; the next cplow waits for them.
        second = self.cplow("upload")
        self.assertEqual(self.wait_exit(second), 0, self.log(second)[-4000:])
        self.assertIn("an earlier cplow paused nzbget and did not resume it", self.log(second))
        methods = nzb.methods()
        self.assertEqual(methods[:3], ["status", "pausedownload", "resumedownload"], methods)
        self.assertEqual(methods[-1], "resumedownload", methods)
        self.assertFalse(nzb.paused)
        self.assertFalse(os.path.exists(self.marker()))

    def test_a_downloader_that_hangs_delays_neither_the_loop_nor_the_stage(self):
        # NZBGet accepts and never answers: each call takes its whole 5 s timeout (a status,
        # then a pause: "cannot pause" ~10 s after the first connection). The supervisor's
        # loop beats all along, and the stage starts after the hold (one call's timeout),
        # before the role gives up.
        hang = self.server(HangingServer())
        make_tree(self.src, 12, seed=18, min_size=256 << 10, max_size=768 << 10)
        cfg = self.write_config()
        with open(cfg) as f:
            data = json.load(f)
        data["nzbget"] = {"enabled": True, "url": "http://u:pw@127.0.0.1:%d" % hang.port}
        with open(cfg, "w") as f:
            json.dump(data, f)
        self.fake.set_delay(SLOW_MS)
        p = self.cplow("upload")
        wait_for("the pause asked of the hanging downloader",
                 lambda: (p.poll() is None or self.fail(self.log(p)[-3000:]))
                 and hang.accepted() >= 1, timeout=60, step=0.05)
        asked = time.monotonic()
        while time.monotonic() - asked < 7:
            out = subprocess.run([INSPECT, "--config", self.config_path, "--json"],
                                 capture_output=True, text=True, timeout=30)
            self.assertEqual(out.returncode, 0, out.stderr)
            state = json.loads(out.stdout)
            self.assertTrue(state["running"], "the supervisor's heartbeat went stale")
            self.assertLess(time.time() - state["last_seen_alive"], 3.5,
                            "the supervisor's loop stood still")
            time.sleep(0.5)
        self.wait_rclone(p)
        self.fake.set_delay(0)
        self.assertEqual(self.wait_exit(p), 0, self.log(p)[-4000:])
        log = self.log(p)
        gave_up = log.find("cannot pause nzbget (http://127.0.0.1:%d)" % hang.port)
        self.assertGreater(gave_up, 0, log[-3000:])
        self.assertIn("no answer to the pause in 5 s: the stage starts", log[:gave_up])
        self.assertIn("uploader media: stage 1 on", log[:gave_up],
                      "the stage waited for the downloader's timeouts")
        self.assertFalse(os.path.exists(self.marker()))

    def test_a_downloader_role_that_dies_is_restarted_and_resumes_what_it_paused(self):
        nzb = self.server(FakeNzbget())
        make_tree(self.src, 12, seed=19, min_size=256 << 10, max_size=768 << 10)
        self.write_config(nzbget=nzb)
        self.fake.set_delay(SLOW_MS)
        p = self.cplow("upload")
        self.wait_rclone(p)
        self.assertEqual(nzb.methods(), ["status", "pausedownload"])
        role = next(pid for pid, comm in _children(p.pid) if comm == "cplow-pause")
        os.kill(role, signal.SIGKILL)
        # The new role resumes what the dead one paused, then pauses again: stages still run.
        wait_for("the new role's resume and pause", lambda: nzb.methods() == [
            "status", "pausedownload", "resumedownload", "status", "pausedownload"],
            timeout=30, step=0.1)
        self.assertTrue(any(comm == "cplow-pause" and pid != role
                            for pid, comm in _children(p.pid)))
        self.assertTrue(nzb.paused)
        log = self.log(p)
        self.assertIn("the downloaders' pause role died", log)
        self.assertIn("the downloaders' role that died paused nzbget", log)
        self.fake.set_delay(0)
        self.assertEqual(self.wait_exit(p), 0, self.log(p)[-4000:])
        self.assertEqual(nzb.methods()[-1], "resumedownload")
        self.assertFalse(nzb.paused)
        self.assertFalse(os.path.exists(self.marker()))

    def test_a_reload_resumes_the_old_downloader_and_pauses_the_new_one(self):
        old = self.server(FakeNzbget())
        new = self.server(FakeNzbget())
        make_tree(self.src, 12, seed=20, min_size=256 << 10, max_size=768 << 10)
        self.write_config(nzbget=old)
        self.fake.set_delay(SLOW_MS)
        p = self.cplow("upload")
        self.wait_rclone(p)
        self.assertEqual(old.methods(), ["status", "pausedownload"])
        self.write_config(nzbget=new)
        p.send_signal(signal.SIGHUP)
        wait_for("the new downloader paused", lambda: (p.poll() is None or self.fail(
            self.log(p)[-3000:])) and new.methods() == ["status", "pausedownload"],
            timeout=60, step=0.1)
        self.assertEqual(old.methods(), ["status", "pausedownload", "resumedownload"])
        self.assertFalse(old.paused)
        self.fake.set_delay(0)
        self.assertEqual(self.wait_exit(p), 0, self.log(p)[-4000:])
        self.assertEqual(new.methods(), ["status", "pausedownload", "resumedownload"])
        self.assertFalse(new.paused)
        self.assertFalse(os.path.exists(self.marker()))

    def test_a_downloader_that_does_not_answer_never_fails_the_upload(self):
        nzb = self.server(FakeNzbget())
        port = nzb.port
        nzb.stop()
        self.servers.remove(nzb)
        make_tree(self.src, 3, seed=16, min_size=1024, max_size=4096)
        cfg = self.write_config()
        with open(cfg) as f:
            data = json.load(f)
        data["nzbget"] = {"enabled": True, "url": "http://u:secretpw@127.0.0.1:%d" % port}
        with open(cfg, "w") as f:
            json.dump(data, f)
        p = self.cplow("upload")
        self.assertEqual(self.wait_exit(p), 0, self.log(p)[-4000:])
        log = self.log(p)
        self.assertIn("cannot pause nzbget (http://127.0.0.1:%d)" % port, log)
        self.assertNotIn("secretpw", log)
        self.assertFalse(os.path.exists(self.marker()))


if __name__ == "__main__":
    unittest.main()
