"""The dashboard's page in Debian's headless Chromium, against the real role serving a ledger
that tests/tools/dashboard_fill fills (and moves on "step"). The rendered DOM must show the
accounts' bars with the right colour classes and numbers, the session and the files in flight,
and the new numbers after the ledger changes. A screenshot is left at <build>/dashboard.png.
"""
import html.parser
import os
import shutil
import subprocess
import tempfile
import unittest

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
        tool = os.path.join(BUILD, "tests", "dashboard_fill")
        if not os.access(tool, os.X_OK):
            raise AssertionError("%s is not built" % tool)
        cls.profile = tempfile.mkdtemp(prefix="cplow-chromium-")
        cls.proc = subprocess.Popen([tool, "/cplow-test-page-%d" % os.getpid(), TOKEN],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        port = cls.proc.stdout.readline().strip()
        if not port.isdigit():
            cls.proc.kill()
            raise AssertionError("dashboard_fill did not report a port: %r" % port)
        cls.url = "http://127.0.0.1:%s/?token=%s" % (port, TOKEN)

    @classmethod
    def tearDownClass(cls):
        try:
            cls.proc.stdin.write("quit\n")
            cls.proc.stdin.close()
            rc = cls.proc.wait(timeout=20)
        finally:
            if cls.proc.poll() is None:
                cls.proc.kill()
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
        self.proc.stdin.write("step\n")
        self.proc.stdin.flush()
        self.assertEqual(self.proc.stdout.readline().strip(), "ok")

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


if __name__ == "__main__":
    unittest.main()
