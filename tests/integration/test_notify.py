"""Notifications: a real `cplow upload` (real rclone, the fake quota remote, three
rotate_remotes accounts too small for the folder, so the upload rotates) posting to HTTP
receivers on 127.0.0.1, one per service.

Checked: each service's payload shape; the events an upload sends (started with what was
listed, rotated with why, finished with the totals); a receiver that answers after 30 s does
not delay the upload; a refused connection is retried, then given up; a 503 is retried and the
event delivered once; nothing is delivered twice. Every wait is a loop with a deadline.
"""
import json
import os
import random
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import unittest
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from harness import BUILD, FakeRemote, free_port, make_tree, unlink_shm, wait_for

CPLOW = os.path.join(BUILD, "supervisor/cplow")
INSPECT = os.path.join(BUILD, "shm/cplow-inspect")
QUOTA = 4 << 20
ACCOUNTS = (("fake1", "a1"), ("fake2", "a2"), ("fake3", "a3"))
SLOW_S = 30
ID = re.compile(r"^[0-9a-f]{16}-\d+$")


class Receiver:
    """An HTTP server on 127.0.0.1 that records every POST: path, headers, body.

    mode: "ok" answers 200 at once; "slow" answers 200 after SLOW_S seconds (or when stopped);
    "flaky" answers 503 to the first `failures` requests of each event id, then 200."""

    def __init__(self, mode="ok", failures=0):
        self.mode = mode
        self.failures = failures
        self.requests = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n)
                req = {"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()},
                       "body": body, "at": time.monotonic()}
                with receiver.lock:
                    receiver.requests.append(req)
                    seen = sum(1 for r in receiver.requests
                               if r["headers"].get("idempotency-key") == req["headers"].get("idempotency-key"))
                status = 200
                if receiver.mode == "slow":
                    receiver.stopping.wait(SLOW_S)
                elif receiver.mode == "flaky" and seen <= receiver.failures:
                    status = 503
                out = b'{"ok": true}'
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(out)))
                    self.end_headers()
                    self.wfile.write(out)
                except OSError:
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = "http://127.0.0.1:%d" % self.port
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()

    def got(self):
        with self.lock:
            return list(self.requests)

    def json_bodies(self):
        return [json.loads(r["body"]) for r in self.got()]

    def ids(self):
        return [r["headers"].get("idempotency-key") for r in self.got()]


def log_time(line):
    """Seconds of a log line's UTC timestamp ("2024-12-19T10:00:00.123Z ...")."""
    stamp = line.split()[0]
    return time.mktime(time.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S")) + float(stamp[19:-1] or 0)


def connection_holder(port):
    """The pid holding an established TCP connection to 127.0.0.1:port, or None."""
    inodes = set()
    with open("/proc/net/tcp") as f:
        for line in f.read().splitlines()[1:]:
            fields = line.split()
            if int(fields[2].split(":")[1], 16) == port and fields[3] == "01":
                inodes.add("socket:[%s]" % fields[9])
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            for fd in os.listdir("/proc/%s/fd" % pid):
                if os.readlink("/proc/%s/fd/%s" % (pid, fd)) in inodes:
                    return int(pid)
        except OSError:
            continue
    return None


def status_field(pid, name):
    try:
        with open("/proc/%d/status" % pid) as f:
            m = re.search(r"^%s:\s+(\S+)" % name, f.read(), re.M)
    except OSError:
        return None
    return m.group(1) if m else None


class NotifyTest(unittest.TestCase):
    def setUp(self):
        self.work = tempfile.mkdtemp(prefix="cplow-notify-")
        self.receivers = []
        self.procs = []
        self.configs = []
        self.fake = FakeRemote({user: ("pw-" + user, QUOTA) for _, user in ACCOUNTS}, self.work)
        self.env = dict(os.environ)
        for remote, user in ACCOUNTS:
            self.env.update(self.fake.remote_env(remote, user))
        self.src = os.path.join(self.work, "media")
        os.makedirs(self.src)

    def tearDown(self):
        for p in self.procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
            p.wait()
            p.log_file.close()
        for r in self.receivers:
            r.stop()
        self.fake.stop()
        for path in self.configs:
            out = subprocess.run([INSPECT, "--config", path, "--json"], capture_output=True,
                                 text=True, timeout=30)
            if out.returncode == 0:
                unlink_shm(json.loads(out.stdout)["ledger"])
        shutil.rmtree(self.work, ignore_errors=True)

    def receiver(self, mode="ok", failures=0):
        r = Receiver(mode, failures)
        self.receivers.append(r)
        return r

    def config(self, notifications, **uploader):
        u = {"check_interval": 1, "max_size_gb": 0, "rotate_remotes": [r for r, _ in ACCOUNTS]}
        u.update(uploader)
        cfg = {
            "core": {"dry_run": False, "rclone_binary_path": "/usr/bin/rclone"},
            "remotes": {"media": {
                "upload_folder": self.src, "upload_remote": "fake1:/Media",
                "rclone_command": "move",
                "rclone_extras": {"--retries": 1, "--low-level-retries": 1},
                "rclone_sleeps": {"User rate limit exceeded":
                                  {"count": 2, "sleep": 25, "timeout": 600}}}},
            "uploader": {"media": u},
            "quota": {"daily_bytes": QUOTA, "min_free_bytes": 1, "continue_min_bytes": 512 << 10},
            "notifications": notifications,
        }
        path = os.path.join(self.work, "config.json")
        with open(path, "w") as f:
            json.dump(cfg, f, indent=1)
        self.configs.append(path)
        return path

    def start(self, config, *args):
        log = open(os.path.join(self.work, "cplow-%d.log" % len(self.procs)), "w+")
        p = subprocess.Popen([CPLOW, "--config", config] + list(args or ["upload"]),
                             stdout=subprocess.DEVNULL, stderr=log, env=self.env,
                             start_new_session=True)
        p.log_file = log
        self.procs.append(p)
        return p

    def log(self, p):
        with open(p.log_file.name, errors="replace") as f:
            return f.read()

    def upload(self, config, timeout=120):
        """Runs cplow upload to its end; returns (process, seconds it took)."""
        t0 = time.monotonic()
        p = self.start(config)
        try:
            code = p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.fail("cplow upload still runs after %d s:\n%s" % (timeout, self.log(p)[-4000:]))
        took = time.monotonic() - t0
        self.assertEqual(code, 0, self.log(p)[-4000:])
        return p, took

    def tree(self, seed, count=30):
        return make_tree(self.src, count, seed, min_size=64 << 10, max_size=400 << 10)

    # ---- the tests ----

    def test_each_service_gets_its_payload_for_every_event_of_a_rotating_upload(self):
        files = self.tree(seed=11)
        hook, slack, discord, chat, apprise, pushover = (self.receiver() for _ in range(6))
        cfg = self.config({
            "hook": {"service": "webhook", "url": hook.url + "/hook/s3cret",
                     "headers": {"Authorization": "Bearer h3ader"}},
            "slack": {"service": "slack", "webhook_url": slack.url + "/services/T/B/x",
                      "sender_name": "plow", "channel": "#up"},
            "discord": {"service": "discord", "webhook_url": discord.url + "/api/webhooks/1/t"},
            "chat": {"service": "google_chat", "webhook_url": chat.url + "/v1/spaces/X"},
            "apprise": {"service": "apprise", "url": apprise.url + "/notify/key",
                        "title": "NAS"},
            "pushover": {"service": "pushover", "url": pushover.url + "/1/messages.json",
                         "app_token": "app-tok", "user_token": "user-tok", "priority": 1},
        })
        p, _ = self.upload(cfg)
        log = self.log(p)
        self.assertNotIn("s3cret", log)
        self.assertNotIn("h3ader", log)
        self.assertNotIn("app-tok", log)

        # The generic webhook: every event, in order, with its fields.
        events = wait_for("upload_finished at the webhook",
                          lambda: (b := hook.json_bodies()) and b[-1]["event"] == "upload_finished" and b,
                          timeout=20)
        kinds = [e["event"] for e in events]
        self.assertEqual(kinds[0], "upload_started", kinds)
        self.assertEqual(kinds.count("upload_started"), 1, kinds)
        self.assertEqual(kinds.count("upload_finished"), 1, kinds)
        self.assertGreaterEqual(kinds.count("account_rotated"), 1, kinds)
        for e in events:
            self.assertRegex(e["id"], ID)
            self.assertEqual(e["uploader"], "media")
            self.assertIsInstance(e["time"], (int, float))
            self.assertTrue(e["message"] and e["title"])
        self.assertEqual(len({e["id"] for e in events}), len(events), "an event twice")
        started = events[0]
        self.assertEqual(started["files"], len(files))
        self.assertEqual(started["bytes"], sum(files.values()), "the listing, not a guess")
        self.assertEqual(started["account"], "fake1")
        self.assertEqual(started["stage"], 1)
        self.assertEqual(started["planned_bytes"],
                         min(started["bytes"], started["max_transfer_bytes"]))
        self.assertLess(started["planned_bytes"], started["bytes"], "the quota is too small")
        self.assertEqual(started["remaining_bytes"], QUOTA)
        rotations = [e for e in events if e["event"] == "account_rotated"]
        self.assertEqual(rotations[0]["from_account"], "fake1")
        self.assertEqual(rotations[0]["to_account"], "fake2")
        self.assertGreater(rotations[0]["bytes"], 0)
        for r in rotations:
            self.assertIn(r["reason"], ("max_transfer", "ban", "quota", "failures", "other"))
            self.assertTrue(r["detail"])
        finished = events[-1]
        self.assertEqual(finished["status"], "done")
        self.assertEqual(finished["files"], len(files))
        self.assertEqual(finished["bytes"], sum(files.values()))
        self.assertLessEqual(sum(r["bytes"] for r in rotations), finished["bytes"])
        self.assertEqual(finished["accounts"][:2], ["fake1", "fake2"])
        self.assertEqual(finished["account_count"], len(finished["accounts"]))
        self.assertGreater(finished["duration_seconds"], 0)
        self.assertAlmostEqual(finished["bytes_per_second"],
                               finished["bytes"] / finished["duration_seconds"],
                               delta=finished["bytes_per_second"] * 0.01 + 1)
        self.assertGreaterEqual(finished["stages"], 2)
        req = hook.got()[0]
        self.assertEqual(req["path"], "/hook/s3cret")
        self.assertEqual(req["headers"]["authorization"], "Bearer h3ader")
        self.assertEqual(req["headers"]["content-type"], "application/json")
        self.assertEqual(req["headers"]["idempotency-key"], events[0]["id"])
        ids = [e["id"] for e in events]

        def same_events(r, what):
            got = wait_for(what, lambda: len(r.got()) >= len(events) and r.got(), timeout=20)
            self.assertEqual([g["headers"]["idempotency-key"] for g in got], ids,
                             "%s: not the webhook's events, in order, once each" % what)
            return got

        for got in [same_events(slack, "slack")]:
            bodies = [json.loads(g["body"]) for g in got]
            for b, e in zip(bodies, events):
                self.assertEqual(set(b), {"text", "username", "icon_emoji", "channel"})
                self.assertEqual(b["text"], e["message"])
                self.assertEqual(b["username"], "plow")
                self.assertEqual(b["icon_emoji"], ":heavy_exclamation_mark:")
                self.assertEqual(b["channel"], "#up")
            self.assertEqual(got[0]["path"], "/services/T/B/x")
        for b, e in zip([json.loads(g["body"]) for g in same_events(discord, "discord")], events):
            self.assertEqual(b, {"content": e["message"]})
        for b, e in zip([json.loads(g["body"]) for g in same_events(chat, "google chat")], events):
            self.assertEqual(b, {"text": e["message"]})
        for b, e in zip([json.loads(g["body"]) for g in same_events(apprise, "apprise")], events):
            self.assertEqual(set(b), {"title", "body", "type"})
            self.assertEqual(b["title"], "NAS: " + e["title"])
            self.assertEqual(b["body"], e["message"])
        self.assertEqual(json.loads(apprise.got()[-1]["body"])["type"], "success")
        got = same_events(pushover, "pushover")
        for g, e in zip(got, events):
            self.assertEqual(g["headers"]["content-type"], "application/x-www-form-urlencoded")
            form = urllib.parse.parse_qs(g["body"].decode(), strict_parsing=True)
            self.assertEqual(form, {"token": ["app-tok"], "user": ["user-tok"], "priority": ["1"],
                                    "title": ["cplow: " + e["title"]], "message": [e["message"]]})
        # The words: what was listed, where it went.
        self.assertIn("%d files" % len(files), started["message"])
        self.assertIn("fake1", started["message"])
        self.assertIn("fake2", rotations[0]["message"])

    def test_a_receiver_that_answers_after_30_s_does_not_delay_the_upload(self):
        # Every request to `slow` is held 30 s. Were a stage to wait for a notification, the
        # upload would take at least that; a normal one here takes a few seconds.
        self.tree(seed=12)
        slow = self.receiver("slow")
        fast = self.receiver()
        cfg = self.config({"slow": {"service": "slack", "webhook_url": slow.url + "/"},
                           "fast": {"service": "webhook", "url": fast.url + "/"}})
        t0 = time.monotonic()
        p = self.start(cfg)
        # Meanwhile: the process that holds the slow request is cplow's notifier, under its
        # seccomp filter (Seccomp 2), and not the supervisor.
        holder = wait_for("a connection to the slow receiver", lambda: connection_holder(slow.port),
                          timeout=30, step=0.05)
        self.assertEqual(int(status_field(holder, "PPid")), p.pid)
        self.assertEqual(status_field(holder, "Seccomp"), "2")
        self.assertEqual(status_field(p.pid, "Seccomp"), "0")
        code = p.wait(timeout=60)
        took = time.monotonic() - t0
        self.assertEqual(code, 0, self.log(p)[-3000:])
        lines = self.log(p).splitlines()
        summary = [l for l in lines if re.search(r"cplow: uploader media: \d+ stages", l)]
        self.assertEqual(len(summary), 1, self.log(p)[-3000:])
        stages_took = log_time(summary[0]) - log_time(lines[0])
        self.assertLess(stages_took, SLOW_S - 5, "the upload waited for the slow receiver")
        # At exit the notifier gets NOTIFY_DRAIN_MS (5 s) to send what is left, not 30.
        self.assertLess(took, stages_took + 8, self.log(p)[-3000:])
        self.assertLess(took, SLOW_S)
        # The other target was not held up by the slow one: it has every event.
        events = wait_for("every event at the fast receiver",
                          lambda: (b := fast.json_bodies()) and b[-1]["event"] == "upload_finished" and b,
                          timeout=5)
        self.assertEqual(len({e["id"] for e in events}), len(events))
        self.assertGreaterEqual(len(events), 3)
        # The slow one got the first event, and nothing twice: a request that was sent and not
        # answered is not resent, since it may have arrived.
        self.assertEqual(slow.ids()[0], events[0]["id"])
        self.assertEqual(len(set(slow.ids())), len(slow.ids()), "a request was sent twice")
        self.assertRegex(self.log(p), r"slow: (upload_started \S+ got no answer|\d+ events not delivered "
                                      r"before the notifier stopped)")

    def test_a_refused_connection_is_retried_then_given_up_and_a_503_is_retried_once_delivered(self):
        self.tree(seed=14, count=6)
        dead_port = free_port()   # nothing listens there: connection refused
        flaky = self.receiver("flaky", failures=2)
        cfg = self.config({
            "dead": {"service": "discord", "webhook_url": "http://127.0.0.1:%d/x" % dead_port},
            "flaky": {"service": "webhook", "url": flaky.url + "/"},
        })
        # `run`, so the notifier has time for all five attempts (1 + 2 + 4 + 8 s).
        p = self.start(cfg, "run")
        wait_for("the dead receiver's first event given up",
                 lambda: re.search(r"dead: upload_started \S+ not delivered \(.*\); given up after 5 attempts",
                                   self.log(p)) or p.poll() is not None, timeout=60, step=0.2)
        self.assertIsNone(p.poll(), self.log(p)[-3000:])
        log = self.log(p)
        started_id = re.search(r"dead: upload_started (\S+) not delivered", log).group(1)
        for attempt, wait in ((2, 1), (3, 2), (4, 4), (5, 8)):
            self.assertIn("dead: upload_started %s not delivered (Couldn't connect to server); "
                          "attempt %d of 5 in %d s" % (started_id, attempt, wait), log)
        # The flaky receiver: 503, 503, then 200, for each event, which arrives once.
        wait_for("upload_finished delivered to the flaky receiver",
                 lambda: re.search(r"flaky: upload_finished \S+ sent", self.log(p)), timeout=30)
        p.send_signal(signal.SIGTERM)
        self.assertEqual(p.wait(timeout=30), 143, self.log(p)[-3000:])
        ids = flaky.ids()
        for i in set(ids):
            self.assertEqual(ids.count(i), 3, "503, 503, 200 for %s: %s" % (i, ids))
        sent = re.findall(r"flaky: \S+ (\S+) sent", self.log(p))
        self.assertEqual(sorted(sent), sorted(set(ids)), "each event delivered once")
        self.assertEqual(len(sent), len(set(sent)))

    def test_a_ledger_that_cannot_be_restored_is_a_notification_and_exit_2(self):
        self.tree(seed=15, count=2)
        hook = self.receiver()
        cfg = self.config({"hook": {"service": "webhook", "url": hook.url + "/"}})
        cache = os.path.join(self.work, "sa_quota_cache.json")
        for path in (cache, cache + ".prev"):
            with open(path, "w") as f:
                f.write("{not json")
        p = self.start(cfg)
        self.assertEqual(p.wait(timeout=30), 2, self.log(p))
        events = wait_for("the problem at the receiver", hook.json_bodies, timeout=5)
        self.assertEqual([e["event"] for e in events], ["ledger_problem"])
        self.assertIsNone(events[0]["uploader"])
        self.assertIn("cannot start", events[0]["detail"])
        self.assertIn("sa_quota_cache.json", events[0]["detail"])
        self.assertEqual(self.fake.truth()["users"]["a1"]["accepted_bytes"], 0)

    def test_a_dashboard_kept_off_is_in_the_log_and_a_notification_and_the_upload_runs(self):
        # The quota fork's dashboard: on 0.0.0.0 without a token (issue 14).
        files = self.tree(seed=16, count=3)
        hook = self.receiver()
        cfg = self.config({"hook": {"service": "webhook", "url": hook.url + "/"}})
        with open(cfg) as f:
            data = json.load(f)
        data["dashboard"] = {"enabled": True, "host": "0.0.0.0", "port": free_port()}
        data["quota"]["daily_bytes"] = 1 << 40
        with open(cfg, "w") as f:
            json.dump(data, f)
        p, _ = self.upload(cfg)
        want = ('dashboard.token: missing while dashboard.host is "0.0.0.0", not a loopback '
                'address: the dashboard stays off (uploads run); add "token": "<a long random '
                'secret>" to dashboard, or "allow_unauthenticated": true on a trusted network')
        self.assertIn("WARN  cplow: config: " + want, self.log(p))
        problems = wait_for("the warning at the receiver", lambda: [
            b for b in hook.json_bodies() if b["event"] == "ledger_problem"], timeout=20)
        self.assertEqual([b["detail"] for b in problems], ["config: " + want])
        self.assertEqual(self.fake.truth()["users"]["a1"]["accepted_bytes"],
                         sum(files.values()), "the upload ran")

    def test_a_ledger_file_that_cannot_be_written_is_a_notification_and_so_is_its_recovery(self):
        self.tree(seed=17, count=4)
        hook = self.receiver()
        cfg = self.config({"hook": {"service": "webhook", "url": hook.url + "/"}})
        with open(cfg) as f:
            data = json.load(f)
        data["quota"]["cache_path"] = "state/quota.json"
        with open(cfg, "w") as f:
            json.dump(data, f)
        state = os.path.join(self.work, "state")
        os.makedirs(state)
        p = self.start(cfg, "run")
        wait_for("the upload to finish", lambda: any(
            b["event"] == "upload_finished" for b in hook.json_bodies()) or p.poll() is not None,
            timeout=60)
        self.assertIsNone(p.poll(), self.log(p)[-3000:])
        # The file's directory becomes a file: every write fails (root or not).
        shutil.rmtree(state)
        with open(state, "w") as f:
            f.write("in the way")
        p.send_signal(signal.SIGUSR1)
        problem = wait_for("the ledger problem", lambda: [
            b for b in hook.json_bodies() if b["event"] == "ledger_problem"], timeout=20)
        self.assertIn("state/quota.json cannot be written", problem[0]["detail"])
        self.assertIsNone(problem[0]["uploader"])
        os.unlink(state)
        os.makedirs(state)
        again = wait_for("the recovery", lambda: [
            b for b in hook.json_bodies() if b["event"] == "ledger_problem"
            and "written again" in b["detail"]], timeout=20)
        self.assertEqual(len(again), 1)
        # One failure spell, one event each way, however many writes failed meanwhile.
        self.assertEqual(len([b for b in hook.json_bodies() if b["event"] == "ledger_problem"]), 2)
        p.send_signal(signal.SIGTERM)
        self.assertEqual(p.wait(timeout=30), 143, self.log(p)[-3000:])
        self.assertTrue(os.path.exists(os.path.join(state, "quota.json")))

    def test_a_dry_run_and_an_empty_folder_send_nothing(self):
        hook = self.receiver()
        cfg = self.config({"hook": {"service": "webhook", "url": hook.url + "/"}})
        p, _ = self.upload(cfg)
        self.tree(seed=16, count=2)
        p2 = self.start(cfg, "upload", "--dry-run")
        self.assertEqual(p2.wait(timeout=60), 0, self.log(p2))
        # Both have exited, and cplow waits for its notifier: anything sent has arrived.
        self.assertEqual(hook.got(), [], "an empty upload or a dry run notified")


if __name__ == "__main__":
    unittest.main()
