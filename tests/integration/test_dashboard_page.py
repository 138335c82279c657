"""The dashboard's page in Debian's headless Chromium, against the real role serving a ledger
that tests/tools/dashboard_fill fills (and moves on "step"). The rendered DOM must show the
accounts' bars with the right colour classes and numbers, the session and the files in flight,
and the new numbers after the ledger changes. A screenshot is left at <build>/dashboard.png.

RealUploadPage loads the page once during a real `cplow upload` (real rclone, the fake remote
slowed down) and lets the page's own refresh run, reading the live DOM through Chromium's
DevTools protocol; its screenshot is <build>/dashboard-upload.png.
"""
import base64
import fcntl
import html.parser
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
import unittest
import urllib.request

from harness import (DashboardFill, FakeRemote, drop_ledger, free_port, make_tree, one_account_config,
                     unlink_shm, wait_for)

BUILD = os.environ.get("CPLOW_BUILD_DIR", os.path.join(os.path.dirname(__file__), "..", "..", "build"))
CHROMIUM = "/usr/bin/chromium"
TOKEN = "page-test-token"


class Dom(html.parser.HTMLParser):
    """Collects what the page rendered: account rows (with their cells' text and the bar's
    classes) and the text of elements by id."""

    def __init__(self):
        super().__init__()
        self.accounts = {}
        self.by_id = {}
        self.inflight = []
        self._row = None
        self._cell = None
        self._ids = []  # stack of (tag, id or None)
        self._li = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        cls = (a.get("class") or "").split()
        if tag == "tr" and "account" in cls:
            self._row = {"name": a.get("data-account"), "cells": [], "fill": None, "badge": None}
        if self._row is not None:
            if tag == "td":
                self._cell = ""
            if tag == "div" and "fill" in cls:
                self._row["fill"] = cls
            if tag == "span" and "badge" in cls:
                self._row["badge"] = cls
        if tag == "li" and "transfer" in cls:
            self._li = ""
        if tag not in ("br", "meta", "link", "img", "input"):
            self._ids.append((tag, a.get("id")))
            if a.get("id"):
                self.by_id[a["id"]] = ""

    def handle_endtag(self, tag):
        if self._row is not None and tag == "td":
            self._row["cells"].append(self._cell)
            self._cell = None
        if self._row is not None and tag == "tr":
            self.accounts[self._row["name"]] = self._row
            self._row = None
        if tag == "li" and self._li is not None:
            self.inflight.append(self._li)
            self._li = None
        while self._ids:
            t, _ = self._ids.pop()
            if t == tag:
                break

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data
        if self._li is not None:
            self._li += data
        for _, i in self._ids:
            if i:
                self.by_id[i] += data


class DashboardPage(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not os.access(CHROMIUM, os.X_OK):
            raise AssertionError("Chromium is not installed (%s): apt-get install -y chromium; "
                                 "this test cannot pass without it" % CHROMIUM)
        cls.profile = tempfile.mkdtemp(prefix="cplow-chromium-")
        cls.fill = DashboardFill("/cplow-test-page-%d" % os.getpid(), TOKEN)
        cls.url = "http://127.0.0.1:%s/?token=%s" % (cls.fill.port, TOKEN)

    @classmethod
    def tearDownClass(cls):
        try:
            rc = cls.fill.stop()
        finally:
            shutil.rmtree(cls.profile, ignore_errors=True)
        if rc != 0:
            raise AssertionError("dashboard_fill (and the role) ended with %d" % rc)

    def chromium(self, *extra):
        cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
               "--no-first-run", "--disable-background-networking", "--disable-component-update",
               "--disable-sync", "--disable-dev-shm-usage", "--user-data-dir=" + self.profile,
               "--virtual-time-budget=3000", *extra, self.url]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=90)
        self.assertEqual(r.returncode, 0, r.stderr[-2000:])
        return r.stdout

    def render(self):
        dom = Dom()
        dom.feed(self.chromium("--dump-dom"))
        return dom

    def step(self):
        self.assertEqual(self.fill.step(), "ok")

    def assert_account(self, dom, name, colour, pct, status):
        row = dom.accounts.get(name)
        self.assertIsNotNone(row, "%s not rendered; rows: %s" % (name, list(dom.accounts)))
        self.assertIn(colour, row["fill"], "%s: bar classes %s" % (name, row["fill"]))
        self.assertIn(pct, row["cells"], "%s: cells %s" % (name, row["cells"]))
        self.assertIn(status, row["badge"], "%s: badge %s" % (name, row["badge"]))

    def test_page_renders_and_follows_the_ledger(self):
        dom = self.render()
        self.assertEqual(dom.by_id.get("error", "").strip(), "", dom.by_id.get("error"))
        self.assertEqual(len(dom.accounts), 4, list(dom.accounts))
        self.assert_account(dom, "sa01.json", "green", "30.0 %", "ready")
        self.assert_account(dom, "sa02.json", "yellow", "80.0 %", "ready")
        self.assert_account(dom, "sa03.json", "red", "95.0 %", "complete")
        self.assert_account(dom, "sa04.json", "green", "0.0 %", "active")
        self.assertEqual(dom.by_id["files-done"].strip(), "0 / 20")
        # 30 MB in flight of 200 MB: 28.6 MiB of 190.7 MiB, 15 %.
        self.assertEqual(dom.by_id["bytes-done"].strip(), "28.6 MiB / 190.7 MiB")
        self.assertEqual(dom.by_id["byte-percentage"].strip(), "15.0 %")
        self.assertEqual(dom.by_id["speed"].strip(), "2.4 MiB/s")
        self.assertIn("20 files", dom.by_id["remaining"])
        self.assertEqual(dom.by_id["eta"].strip(), "1m 8s")
        self.assertEqual(len(dom.inflight), 2, dom.inflight)
        self.assertIn("Big Buck Bunny", dom.inflight[0])
        self.assertIn("50.0 %", dom.inflight[0])
        self.assertIn("media: stage 1 on sa04.json (4 of 4)", dom.by_id["status"])

        self.step()
        dom = self.render()
        self.assert_account(dom, "sa01.json", "yellow", "75.0 %", "ready")
        self.assert_account(dom, "sa04.json", "green", "15.0 %", "active")
        self.assertEqual(dom.by_id["files-done"].strip(), "3 / 20")
        self.assertEqual(dom.by_id["byte-percentage"].strip(), "77.5 %")
        self.assertIn("17 files", dom.by_id["remaining"])
        self.assertEqual(len(dom.inflight), 1, dom.inflight)

        shot = os.path.join(os.path.abspath(BUILD), "dashboard.png")
        if os.path.exists(shot):
            os.unlink(shot)
        self.chromium("--screenshot=" + shot, "--window-size=1200,900", "--hide-scrollbars")
        self.assertTrue(os.path.getsize(shot) > 10000, "screenshot %s is empty" % shot)
        print("screenshot: " + shot)


def curl(port, path, *headers):
    """(status, body) of GET http://127.0.0.1:port/path with curl, headers as given (a Host
    header replaces curl's own)."""
    args = ["curl", "-s", "-S", "--max-time", "10", "-o", "-", "-w", "\n%{http_code}"]
    for h in headers:
        args += ["-H", h]
    r = subprocess.run(args + ["http://127.0.0.1:%s%s" % (port, path)], capture_output=True,
                       text=True, timeout=30)
    if r.returncode != 0:
        raise AssertionError("curl failed: %s" % r.stderr)
    body, _, status = r.stdout.rpartition("\n")
    return int(status), body


class HostAndOrigin(unittest.TestCase):
    """DNS rebinding: a page on a name its author controls (rebind.example) points that name at
    127.0.0.1 and reads the dashboard as its own origin. Without a token the dashboard answers
    only to its own names (dashboard.host, 127.0.0.1, localhost, [::1], with the port): 421
    otherwise; and a cross-origin Origin gets 403, token or not. The real role (dashboard_fill),
    asked with curl, urllib and Chromium."""
    PATHS = ("/", "/api/state", "/api/service_accounts", "/metrics", "/api/health")

    @classmethod
    def setUpClass(cls):
        cls.open = DashboardFill("/cplow-test-host-%d" % os.getpid())
        cls.tokened = DashboardFill("/cplow-test-host-token-%d" % os.getpid(), TOKEN)
        cls.profile = tempfile.mkdtemp(prefix="cplow-chromium-")

    @classmethod
    def tearDownClass(cls):
        rcs = (cls.open.stop(), cls.tokened.stop())
        shutil.rmtree(cls.profile, ignore_errors=True)
        if rcs != (0, 0):
            raise AssertionError("dashboard_fill (and the role) ended with %s" % (rcs,))

    def test_a_rebinding_host_is_refused_with_421_and_no_data(self):
        p = self.open.port
        for host in ("rebind.example:%s" % p, "rebind.example", "127.0.0.1.rebind.example:%s" % p,
                     "localhost.:%s" % p, "127.0.0.1:%d" % (int(p) + 1), "127.0.0.1",
                     "127.0.0.1:", "127.0.0.1:0%s" % p, "[::1]:x"):
            for path in self.PATHS:
                status, body = curl(p, path, "Host: " + host)
                self.assertEqual(status, 421, "Host %s %s: %s %s" % (host, path, status, body))
                self.assertIn("unknown Host", json.loads(body)["error"])
                self.assertNotIn("sa01", body)

    def test_its_own_names_with_the_port_are_served(self):
        p = self.open.port
        for host in ("127.0.0.1:%s" % p, "localhost:%s" % p, "LocalHost:%s" % p, "[::1]:%s" % p):
            status, body = curl(p, "/api/service_accounts", "Host: " + host)
            self.assertEqual(status, 200, "Host %s: %s" % (host, body))
            self.assertIn("sa01.json", body)
        # HTTP/1.0 without Host: no browser sends that; tools do.
        r = subprocess.run(["curl", "-s", "--http1.0", "-H", "Host:", "-o", "/dev/null", "-w",
                            "%{http_code}", "http://127.0.0.1:%s/api/health" % p],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.stdout, "200")

    def test_a_cross_origin_request_is_refused_with_403_token_or_not(self):
        for fill, auth in ((self.open, ()), (self.tokened, ("Authorization: Bearer " + TOKEN,))):
            p = fill.port
            for origin in ("http://rebind.example:%s" % p, "null", "http://127.0.0.1:%s.evil" % p,
                           "http://localhost:%s" % p):
                status, body = curl(p, "/api/state", "Origin: " + origin, *auth)
                self.assertEqual(status, 403, "Origin %s: %s" % (origin, body))
                self.assertNotIn("sa01", body)
            # Its own origin passes (a browser may send it on its own requests).
            status, body = curl(p, "/api/state", "Origin: http://127.0.0.1:%s" % p, *auth)
            self.assertEqual(status, 200, body)

    def test_with_a_token_any_host_is_served_to_the_token_only(self):
        p = self.tokened.port
        status, body = curl(p, "/api/state", "Host: dashboard.example.org",
                            "Authorization: Bearer " + TOKEN)
        self.assertEqual(status, 200, body)
        status, body = curl(p, "/api/state", "Host: dashboard.example.org")
        self.assertEqual(status, 401, body)

    def test_prometheus_scrapes_metrics_as_before(self):
        # As Prometheus asks: Host 127.0.0.1:port, no Origin.
        url = "http://127.0.0.1:%s/metrics" % self.open.port
        with urllib.request.urlopen(urllib.request.Request(
                url, headers={"User-Agent": "Prometheus/2.42.0",
                              "Accept": "text/plain;version=0.0.4;q=1,*/*;q=0.1"}),
                timeout=10) as r:
            self.assertEqual(r.status, 200)
            self.assertIn(b"cplow_account_used_bytes{", r.read())

    def chromium_dom(self, url, *extra):
        cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
               "--no-first-run", "--disable-background-networking", "--disable-component-update",
               "--disable-sync", "--disable-dev-shm-usage", "--user-data-dir=" + self.profile,
               "--virtual-time-budget=3000", "--dump-dom", *extra, url]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=90)
        self.assertEqual(r.returncode, 0, r.stderr[-2000:])
        dom = Dom()
        dom.feed(r.stdout)
        return dom, r.stdout

    def test_in_chromium_the_page_works_on_its_names_and_a_rebound_name_gets_nothing(self):
        if not os.access(CHROMIUM, os.X_OK):
            raise AssertionError("Chromium is not installed (%s)" % CHROMIUM)
        p = self.open.port
        for name in ("127.0.0.1", "localhost"):
            dom, text = self.chromium_dom("http://%s:%s/" % (name, p))
            self.assertEqual(dom.by_id.get("error", "").strip(), "", text[-2000:])
            self.assertEqual(len(dom.accounts), 4, "%s: %s" % (name, list(dom.accounts)))
        # The attack as a browser sees it: rebind.example resolves to 127.0.0.1.
        dom, text = self.chromium_dom("http://rebind.example:%s/" % p,
                                      "--host-resolver-rules=MAP rebind.example 127.0.0.1")
        self.assertEqual(dom.accounts, {}, text[-2000:])
        self.assertIn("unknown Host", text)
        self.assertNotIn("sa01", text)


class DevTools:
    """Headless Chromium driven over --remote-debugging-pipe: commands go in on its fd 3,
    replies and events come out on its fd 4, each message NUL-terminated JSON. No WebSocket
    library needed, and the browser keeps one page alive for as long as the test wants."""

    def __init__(self, url, profile, size="1200,900"):
        to_chrome_r, self._to_w = os.pipe()
        self._from_r, from_chrome_w = os.pipe()

        def fds():
            # Out of the way first: either pipe end may itself be fd 3 or 4.
            a = fcntl.fcntl(to_chrome_r, fcntl.F_DUPFD, 10)
            b = fcntl.fcntl(from_chrome_w, fcntl.F_DUPFD, 10)
            os.dup2(a, 3)
            os.dup2(b, 4)
        self.proc = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", "--disable-dev-shm-usage", "--user-data-dir=" + profile,
             "--remote-debugging-pipe", "--window-size=" + size, url],
            preexec_fn=fds, pass_fds=(3, 4), stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buf = b""
        self._id = 0
        self.session = None

    def call(self, method, params=None, timeout=30):
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params or {}}
        if self.session and not method.startswith(("Target.", "Browser.")):
            msg["sessionId"] = self.session
        os.write(self._to_w, json.dumps(msg).encode() + b"\0")
        end = time.monotonic() + timeout
        while True:
            while b"\0" in self._buf:
                raw, self._buf = self._buf.split(b"\0", 1)
                reply = json.loads(raw)
                if reply.get("id") == self._id:
                    if "error" in reply:
                        raise AssertionError("%s: %s" % (method, reply["error"]))
                    return reply["result"]
            left = end - time.monotonic()
            if left <= 0:
                raise AssertionError("Chromium did not answer %s in %d s" % (method, timeout))
            ready, _, _ = select.select([self._from_r], [], [], left)
            if ready:
                chunk = os.read(self._from_r, 1 << 20)
                if not chunk:
                    raise AssertionError("Chromium closed its pipe (exit %s)" % self.proc.poll())
                self._buf += chunk

    def attach_page(self, url_prefix):
        targets = self.call("Target.getTargets")["targetInfos"]
        page = next((t for t in targets if t["type"] == "page" and
                     t["url"].startswith(url_prefix)), None)
        if page is None:
            raise AssertionError("no page for %s among %s" % (url_prefix, targets))
        self.session = self.call("Target.attachToTarget",
                                 {"targetId": page["targetId"], "flatten": True})["sessionId"]

    def evaluate(self, expression):
        r = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in r:
            raise AssertionError("page script failed: %s" % r["exceptionDetails"])
        return r["result"].get("value")

    def screenshot(self, path):
        data = self.call("Page.captureScreenshot", {"format": "png"})["data"]
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))

    def close(self):
        try:
            self.call("Browser.close", timeout=10)
        except (AssertionError, OSError):
            pass
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._to_w)
        os.close(self._from_r)


# What the page shows, read from its live DOM: the session's numbers and each account's bar.
READ_PAGE = """JSON.stringify({
  files: (document.getElementById("files-done") || {}).textContent || "",
  bytes: (document.getElementById("bytes-done") || {}).textContent || "",
  error: (document.getElementById("error") || {}).textContent || "",
  bars: Array.prototype.map.call(document.querySelectorAll("tr.account"), function (r) {
    var f = r.querySelector("div.fill");
    return [r.getAttribute("data-account"), f ? f.style.width : "", f ? f.className : ""];
  })
})"""


class RealUploadPage(unittest.TestCase):
    TOKEN = "page-upload-token"

    def setUp(self):
        if not os.access(CHROMIUM, os.X_OK):
            raise AssertionError("Chromium is not installed (%s)" % CHROMIUM)
        self.cplow = os.path.join(BUILD, "supervisor", "cplow")
        self.assertTrue(os.access(self.cplow, os.X_OK), "%s is not built" % self.cplow)
        self.work = tempfile.mkdtemp(prefix="cplow-page-upload-")
        self.fake = FakeRemote({"a1": ("pw1", 64 << 20)}, self.work)
        self.src = os.path.join(self.work, "media")
        os.makedirs(self.src)
        self.files = make_tree(self.src, 40, seed=61, min_size=200 << 10, max_size=400 << 10)
        self.env = dict(os.environ)
        self.env.update(self.fake.remote_env("fake1", "a1"))
        self.port = free_port()
        self.config = os.path.join(self.work, "config.json")
        with open(self.config, "w") as f:
            json.dump(one_account_config(self.src, dashboard={
                "enabled": True, "port": self.port, "token": self.TOKEN,
                "refresh_seconds": 1}), f)
        self.proc = None
        self.browser = None

    def tearDown(self):
        if self.browser:
            self.browser.close()
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.fake.stop()
        drop_ledger(self.config)
        shutil.rmtree(self.work, ignore_errors=True)

    def api(self, path):
        req = urllib.request.Request("http://127.0.0.1:%d%s" % (self.port, path),
                                     headers={"Authorization": "Bearer " + self.TOKEN})
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return json.loads(r.read())
        except OSError:
            return None

    def test_the_page_loaded_once_follows_a_real_upload(self):
        self.fake.set_delay(250)  # about a second a file: the upload lasts tens of seconds
        self.proc = subprocess.Popen([self.cplow, "--config", self.config, "upload"],
                                     env=self.env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        wait_for("a stage running behind the dashboard",
                 lambda: (self.api("/api/status") or {}).get("active"), timeout=60)
        url = "http://127.0.0.1:%d/" % self.port
        self.browser = DevTools(url + "?token=" + self.TOKEN,
                                tempfile.mkdtemp(prefix="chromium-", dir=self.work))
        self.browser.attach_page(url)
        # Loaded once: from here on only the page's own refresh (every second) moves the DOM.
        seen = []

        def page_moves():
            view = json.loads(self.browser.evaluate(READ_PAGE) or "{}")
            self.assertEqual(view.get("error", "").strip(), "", view)
            # "-" until the first stats of a stage have reached the page
            if view.get("files", "")[:1].isdigit() and (
                    not seen or view["files"] != seen[-1]["files"] or
                    view["bytes"] != seen[-1]["bytes"]):
                seen.append(view)
            return len(seen) >= 3
        wait_for("the page's own refresh to show the upload moving three times", page_moves,
                 timeout=120, step=0.25)
        self.assertIsNone(self.proc.poll(), "the upload ended before the page was checked")
        done = [int(v["files"].split("/")[0]) for v in seen]
        self.assertEqual(done, sorted(done), "files done went down: %s" % seen)
        self.assertLess(done[0], done[-1], "files done did not rise: %s" % seen)
        bars = dict((name, width) for name, width, _ in seen[-1]["bars"])
        self.assertIn("fake1", bars, seen[-1])
        first = dict((name, width) for name, width, _ in seen[0]["bars"]).get("fake1", "0%")
        self.assertGreater(float(bars["fake1"].rstrip("%")), float(first.rstrip("%") or 0),
                           "fake1's bar did not grow: %s" % seen)
        self.assertTrue(any(c in seen[-1]["bars"][0][2] for c in ("green", "yellow", "red")))
        shot = os.path.join(os.path.abspath(BUILD), "dashboard-upload.png")
        if os.path.exists(shot):
            os.unlink(shot)
        self.browser.screenshot(shot)
        self.assertGreater(os.path.getsize(shot), 10000, "screenshot %s is empty" % shot)
        print("screenshot: " + shot)
        self.fake.set_delay(0)
        self.assertEqual(self.proc.wait(timeout=300), 0, "cplow upload failed")


if __name__ == "__main__":
    unittest.main()
