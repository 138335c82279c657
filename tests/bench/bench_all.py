"""bench_all: every cplow benchmark, printed as one table. Not a test; run it as scripts/bench.

usage: bench_all.py [--quick] [--only SECTION,...] [--json-out PATH] [--rclone-nice N]
sections: ledger, source, small, large, latency, fake

Each figure is the median of its runs, with min and max. Overhead runs alternate plain rclone and
cplow in ABBA order (pair 1 plain first, pair 2 cplow first, ...). The footnotes printed under the
table say exactly what each figure measures.
"""
import argparse
import datetime
import json
import os
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
from harness import BUILD, RCLONE, FakeRemote, make_tree  # noqa: E402

CPLOW = os.path.join(BUILD, "supervisor/cplow")
INSPECT = os.path.join(BUILD, "shm/cplow-inspect")
WRAP = os.path.join(BUILD, "tests/bench_rclone_wrap")
WATCH = os.path.join(BUILD, "tests/bench_ledger_watch")
BENCH_LEDGER = os.path.join(BUILD, "tests/bench_ledger")
BENCH_SOURCE = os.path.join(BUILD, "tests/bench_source")
WRAP_COMM = os.path.basename(WRAP)[:15]
TICK_US = 1e6 / os.sysconf("SC_CLK_TCK")
MIB = 1 << 20
GIB = 1 << 30

FULL = dict(
    pairs=5, latency_runs=5, source_runs=5, source_cplow_runs=5, ledger_runs=5,
    small_files=20000, small_size=4096, latency_fake_files=500,
    large_files=2000, large_total=GIB,
    fake_files=2000, fake_total=GIB,
    source_files=350000, source_dirs=3500,
    ledger_adds=200000, ledger_snapshots=21, ledger_inspects=5,
)
QUICK = dict(
    pairs=1, latency_runs=1, source_runs=1, source_cplow_runs=1, ledger_runs=1,
    small_files=400, small_size=4096, latency_fake_files=30,
    large_files=20, large_total=32 * MIB,
    fake_files=20, fake_total=8 * MIB,
    source_files=5000, source_dirs=50,
    ledger_adds=20000, ledger_snapshots=3, ledger_inspects=2,
)


def log(msg):
    sys.stderr.write("bench: %s\n" % msg)
    sys.stderr.flush()


def stats(values):
    v = [x for x in values if x is not None]
    if not v:
        return None
    return (statistics.median(v), min(v), max(v))


def pct(sorted_values, p):
    if not sorted_values:
        return None
    i = min(len(sorted_values) - 1, max(0, int(round(p / 100.0 * len(sorted_values) + 0.5)) - 1))
    return sorted_values[i]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- /proc sampling ------------------------------------------------------------------------

def read_stat(pid):
    """(comm, ppid, pgrp, utime+stime ticks, starttime) or None."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            s = f.read()
    except OSError:
        return None
    lp, rp = s.find("("), s.rfind(")")
    comm = s[lp + 1:rp]
    f = s[rp + 2:].split()
    # f[0] is state (field 3): ppid field 4, pgrp 5, utime 14, stime 15, starttime 22
    return comm, int(f[1]), int(f[2]), int(f[11]) + int(f[12]), int(f[19])


STATUS_FIELDS = ("VmHWM", "RssAnon", "RssFile", "RssShmem")


def read_status_kb(pid):
    """{field: KiB} for STATUS_FIELDS, {} when the process is gone."""
    out = {}
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                key = line.split(":", 1)[0]
                if key in STATUS_FIELDS:
                    out[key] = int(line.split()[1])
    except OSError:
        pass
    return out


def read_schedstat(pid):
    """(ns on CPU, ns waiting on a run queue, timeslices) or None."""
    try:
        with open("/proc/%d/schedstat" % pid) as f:
            run, wait, slices = (int(x) for x in f.read().split()[:3])
            return run, wait, slices
    except (OSError, ValueError):
        return None


def has_socket(pid):
    try:
        for fd in os.listdir("/proc/%d/fd" % pid):
            try:
                if os.readlink("/proc/%d/fd/%s" % (pid, fd)).startswith("socket:"):
                    return True
            except OSError:
                pass
    except OSError:
        pass
    return False


class Sampler(threading.Thread):
    """Every `interval` s: the process tree under root, each process's VmHWM (kept at its
    highest) and utime+stime (kept at the last reading). A process's last < interval of life
    is not seen: VmHWM can be missed only if it grew then, CPU is short by at most that."""

    def __init__(self, root, interval=0.05):
        super().__init__(daemon=True)
        self.root = root
        self.interval = interval
        self.procs = {}    # pid -> dict
        self.others = set()
        self.done = threading.Event()

    def run(self):
        while not self.done.is_set():
            self.sample()
            self.done.wait(self.interval)
        self.sample()

    def stop(self):
        self.done.set()
        self.join()

    def sample(self):
        fresh = {}
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            pid = int(name)
            if pid in self.procs or pid in self.others:
                continue
            st = read_stat(pid)
            if st:
                fresh[pid] = st
        grew = True
        while grew:
            grew = False
            for pid, st in list(fresh.items()):
                if pid == self.root or st[1] in self.procs:
                    self.procs[pid] = dict(comm=st[0], ppid=st[1], pgrp=st[2], cpu=st[3],
                                           start=st[4], hwm=0, anon=0, file=0, shmem=0,
                                           sched=None, socket=False, gone=False)
                    del fresh[pid]
                    grew = True
        self.others.update(fresh)
        for pid, p in self.procs.items():
            if p["gone"]:
                continue
            st = read_stat(pid)
            if not st or st[4] != p["start"]:
                p["gone"] = True
                continue
            p["comm"], p["ppid"], p["pgrp"], p["cpu"] = st[0], st[1], st[2], st[3]
            status = read_status_kb(pid)
            for key, field in (("hwm", "VmHWM"), ("anon", "RssAnon"), ("file", "RssFile"),
                               ("shmem", "RssShmem")):
                p[key] = max(p[key], status.get(field, 0))
            p["sched"] = read_schedstat(pid) or p["sched"]
            if p["ppid"] == self.root and p["pgrp"] != pid and not p["socket"]:
                p["socket"] = has_socket(pid)

    def roles(self):
        """role -> list of process dicts."""
        out = {}
        workers = set()
        for pid, p in self.procs.items():
            if pid == self.root:
                role = "supervisor"
            elif p["ppid"] == self.root:
                if p["pgrp"] == pid:
                    role = "worker"
                    workers.add(pid)
                elif p["socket"]:
                    role = "dashboard"
                else:
                    role = "flusher"
            else:
                continue
            p["pid"] = pid
            out.setdefault(role, []).append(p)
        for pid, p in self.procs.items():
            if pid == self.root or p["ppid"] == self.root:
                continue
            p["pid"] = pid
            if p["comm"] == WRAP_COMM:
                role = "rclone wrapper"
            elif p["comm"] == "rclone":
                role = "rclone"
            elif p["ppid"] in workers:
                role = "worker helper"
            else:
                role = "other"
            out.setdefault(role, []).append(p)
        return out


# ---- one run -------------------------------------------------------------------------------

class Bench:
    def __init__(self, args, params):
        self.args = args
        self.p = params
        self.quick = args.quick
        self.disk = tempfile.mkdtemp(prefix="cplow-bench-",
                                     dir=os.environ.get("CPLOW_BENCH_DIR", "/var/tmp"))
        data_root = os.environ.get("CPLOW_BENCH_DATA")
        if not data_root:
            st = os.statvfs("/dev/shm")
            data_root = "/dev/shm" if st.f_bavail * st.f_frsize > 4 * GIB else self.disk
        self.data = tempfile.mkdtemp(prefix="cplow-bench-data-", dir=data_root)
        self.fake = None
        self._trees = {}
        self.results = {}
        self.children = []
        self.base_env = dict(os.environ)
        for k in list(self.base_env):
            if k.startswith("RCLONE_") or k.startswith("BENCH_WRAP_") or k == "CPLOW_CONFIG":
                del self.base_env[k]
        self.base_env["RCLONE_CONFIG"] = "/dev/null"  # only the environment's remotes
        if args.rclone_nice:
            self.base_env["BENCH_WRAP_NICE"] = str(args.rclone_nice)

    def close(self):
        for p in self.children:
            if p.poll() is None:
                p.kill()
                p.wait()
        if self.fake:
            self.fake.stop()
        shutil.rmtree(self.data, ignore_errors=True)
        shutil.rmtree(self.disk, ignore_errors=True)

    # trees

    def tree(self, name, files, total=None, size=None, dirs=20):
        path = os.path.join(self.data, "tpl-" + name)
        if os.path.isdir(path):
            return self._trees[name]
        os.makedirs(path)
        if size is not None:
            lo = hi = size
        else:
            mean = total // files
            lo, hi = mean // 2, mean * 3 // 2
        t = time.monotonic()
        sizes = make_tree(path, files, seed=len(name) * 7919, min_size=lo, max_size=hi, dirs=dirs)
        log("tree %s: %d files, %.1f MiB, made in %.1f s" % (name, len(sizes),
            sum(sizes.values()) / MIB, time.monotonic() - t))
        self._trees[name] = (path, len(sizes), sum(sizes.values()))
        return self._trees[name]

    def link_source(self, template, src):
        shutil.rmtree(src, ignore_errors=True)
        subprocess.run(["cp", "-al", template, src], check=True)

    # remotes

    def remote(self, kind):
        """(env, remote name, function counting files a run put under a dest path)."""
        if kind == "local":
            return {"RCLONE_CONFIG_BDST_TYPE": "local"}, "bdst", os.path.join(self.data, "dst")
        if not self.fake:
            self.fake = FakeRemote({"bench": ("pw", 0)}, self.data)
        return self.fake.remote_env("bfake", "bench"), "bfake", \
            os.path.join(self.fake.dir, "root", "bench")

    # cplow's config and its rclone command

    def write_config(self, run_dir, src, dest, wrap=True):
        cfg = {
            "core": {"dry_run": False, "rclone_binary_path": WRAP if wrap else RCLONE},
            "remotes": {"media": {"upload_folder": src, "upload_remote": dest,
                                  "rclone_command": "move"}},
            "uploader": {"media": {"check_interval": 1, "max_size_gb": 0}},
            "quota": {"daily_bytes": 1 << 40, "min_free_bytes": 1,
                      "continue_min_bytes": 1 << 30},
            "dashboard": {"enabled": True, "host": "127.0.0.1", "port": free_port()},
        }
        path = os.path.join(run_dir, "config.json")
        with open(path, "w") as f:
            json.dump(cfg, f, indent=1)
        return path

    def plain_command(self, src, dest, env):
        """cplow's own rclone command for this source and destination (upload --dry-run)."""
        run_dir = tempfile.mkdtemp(prefix="dry-", dir=self.disk)
        cfg = self.write_config(run_dir, src, dest)
        out = subprocess.run([CPLOW, "--config", cfg, "upload", "--dry-run"], env=env,
                             capture_output=True, text=True, timeout=60)
        if out.returncode != 0:
            raise SystemExit("cplow upload --dry-run failed: " + out.stderr[-2000:])
        line = next(l for l in out.stdout.splitlines() if l.strip().startswith(WRAP))
        argv = shlex.split(line)
        if argv[1:4] != ["move", src, dest] or any(a.startswith("--exclude-from") for a in argv):
            raise SystemExit("unexpected dry-run command: " + line)
        shutil.rmtree(run_dir, ignore_errors=True)
        return argv[4:]

    def wrap_log(self, path):
        recs = []
        if os.path.exists(path):
            with open(path) as f:
                recs = [json.loads(l) for l in f if l.strip()]
        return recs

    def run_plain(self, tpl, src, dest, env, flags, count_dest, expect_files):
        run_dir = tempfile.mkdtemp(prefix="plain-", dir=self.disk)
        self.link_source(tpl, src)
        wlog = os.path.join(run_dir, "wrap.log")
        e = dict(env, BENCH_WRAP_LOG=wlog, BENCH_WRAP_MODE="exec", RCLONE_RC_USER="bench",
                 RCLONE_RC_PASS="bench-rc-pass")
        with open(os.path.join(run_dir, "rclone.log"), "w") as err:
            t0_ns = time.time_ns()
            t0 = time.monotonic()
            p = subprocess.Popen([WRAP, "move", src, dest] + flags, env=e,
                                 stdout=subprocess.DEVNULL, stderr=err)
            sampler = Sampler(p.pid)
            sampler.start()
            _, status, ru = os.wait4(p.pid, 0)
            wall = time.monotonic() - t0
            sampler.stop()
        p.returncode = os.waitstatus_to_exitcode(status)
        if p.returncode != 0:
            raise SystemExit("plain rclone failed (%d): see %s" % (p.returncode, run_dir))
        got = count_dest()
        if got != expect_files:
            raise SystemExit("plain rclone moved %d files, expected %d" % (got, expect_files))
        recs = self.wrap_log(wlog)
        move = next(r for r in recs if r["argv1"] == "move")
        shutil.rmtree(run_dir, ignore_errors=True)
        return dict(wall=wall, start_ms=(move["start_ns"] - t0_ns) / 1e6,
                    rclone_us=move["rclone_us"], wrap_us=move["self_us"],
                    tree_us=(ru.ru_utime + ru.ru_stime) * 1e6)

    def run_cplow(self, tpl, src, dest, env, expect_files, expect_bytes, mode="exec",
                  link=True, sample=True):
        run_dir = tempfile.mkdtemp(prefix="cplow-", dir=self.disk)
        if link:
            self.link_source(tpl, src)
        cfg = self.write_config(run_dir, src, dest)
        cache = os.path.join(run_dir, "sa_quota_cache.json")
        wlog = os.path.join(run_dir, "wrap.log")
        stamps = os.path.join(run_dir, "stamps.txt")
        e = dict(env, BENCH_WRAP_LOG=wlog, BENCH_WRAP_MODE=mode, BENCH_WRAP_STAMPS=stamps)
        watcher = None
        watch_out = os.path.join(run_dir, "watch.txt")
        if mode == "relay":
            watcher = subprocess.Popen([WATCH, "--config", cfg, "--cache", cache, "--out",
                                        watch_out], stdout=subprocess.DEVNULL)
            self.children.append(watcher)
        with open(os.path.join(run_dir, "cplow.log"), "w") as out:
            t0_ns = time.time_ns()
            t0 = time.monotonic()
            p = subprocess.Popen([CPLOW, "--config", cfg, "upload", "--quiet"], env=e,
                                 stdout=out, stderr=out)
            sampler = Sampler(p.pid) if sample else None
            if sampler:
                sampler.start()
            _, status, ru = os.wait4(p.pid, 0)
            wall = time.monotonic() - t0
            if sampler:
                sampler.stop()
        p.returncode = os.waitstatus_to_exitcode(status)
        if watcher:
            watcher.send_signal(signal.SIGTERM)
            watcher.wait(timeout=30)
        state = subprocess.run([INSPECT, "--config", cfg, "--json"], capture_output=True,
                               text=True, timeout=60)
        ledger = json.loads(state.stdout) if state.returncode == 0 else None
        if ledger:
            try:
                os.unlink("/dev/shm" + ledger["ledger"])
            except OSError:
                pass
        rows = ledger["uploaders"].get("media", []) if ledger else []
        files = sum(r["files"] for r in rows)
        nbytes = sum(r["used_bytes"] for r in rows)
        if p.returncode != 0 or files != expect_files or nbytes != expect_bytes:
            raise SystemExit("cplow upload: exit %d, counted %d files / %d bytes, expected %d / "
                             "%d: see %s" % (p.returncode, files, nbytes, expect_files,
                                             expect_bytes, run_dir))
        recs = self.wrap_log(wlog)
        move = [r for r in recs if r["argv1"] == "move"]
        rclone_side_us = sum(r["self_us"] + r["rclone_us"] for r in recs)
        tree_us = (ru.ru_utime + ru.ru_stime) * 1e6
        res = dict(wall=wall, files=files, bytes=nbytes, tree_us=tree_us,
                   rclone_side_us=rclone_side_us, cplow_us=tree_us - rclone_side_us,
                   rclone_us=sum(r["rclone_us"] for r in move),
                   invocations=[r["argv1"] for r in recs],
                   start_ms=(move[0]["start_ns"] - t0_ns) / 1e6 if move else None,
                   worker_hwm_at_rclone_exit_kb=max((r["parent_hwm_kb"] for r in move),
                                                    default=None))
        if sampler:
            roles = sampler.roles()
            res["hwm_kb"] = {role: max(p["hwm"] for p in ps) for role, ps in roles.items()}
            res["cpu_us"] = {role: sum(p["cpu"] for p in ps) * TICK_US
                             for role, ps in roles.items()}
            res["procs"] = {role: len(ps) for role, ps in roles.items()}
            res["rss_kb"] = {role: {k: max(p[k] for p in ps) for k in ("anon", "file", "shmem")}
                             for role, ps in roles.items()}
            w = [p["sched"] for p in roles.get("worker", []) if p["sched"]]
            if w:
                res["worker_sched"] = dict(run_ns=w[0][0], wait_ns=w[0][1], slices=w[0][2])
            if res["worker_hwm_at_rclone_exit_kb"] and "worker" in res["hwm_kb"]:
                res["hwm_kb"]["worker"] = max(res["hwm_kb"]["worker"],
                                              res["worker_hwm_at_rclone_exit_kb"])
        if mode == "relay":
            res.update(self.latencies(stamps, watch_out))
            res["relay_rt"] = min((r.get("rt", 0) for r in move), default=0)
        shutil.rmtree(run_dir, ignore_errors=True)
        return res

    def latencies(self, stamps_path, watch_path):
        with open(stamps_path) as f:
            stamps = [tuple(int(x) for x in l.split()) for l in f if l.strip()]
        shm, durable = [], []
        watcher_rt = None
        with open(watch_path) as f:
            for l in f:
                w = l.split()
                if w[0] == "rt":
                    watcher_rt = int(w[1])
                elif w[0] == "shm":
                    shm.append((int(w[1]), int(w[2])))
                elif w[0] == "file":
                    durable.append((int(w[1]), int(w[2])))

        def per_file(records):
            out, j = [], 0
            for k, (t_read, _) in enumerate(stamps, 1):
                while j < len(records) and records[j][1] < k:
                    j += 1
                if j == len(records):
                    return out, len(stamps) - k + 1
                out.append((records[j][0] - t_read) / 1e6)
            return out, 0

        lat_shm, missing_shm = per_file(shm)
        lat_file, missing_file = per_file(durable)
        relay = sorted((b - a) / 1e3 for a, b in stamps)
        lat_shm.sort()
        lat_file.sort()
        return dict(copied_lines=len(stamps), shm_first_files=shm[0][1] if shm else None,
                    watcher_rt=watcher_rt,
                    shm_p50=pct(lat_shm, 50), shm_p99=pct(lat_shm, 99),
                    shm_max=lat_shm[-1] if lat_shm else None, shm_missing=missing_shm,
                    file_p50=pct(lat_file, 50), file_p99=pct(lat_file, 99),
                    file_max=lat_file[-1] if lat_file else None, file_missing=missing_file,
                    flushes=len(durable), relay_us_p50=pct(relay, 50))

    # ---- sections ----

    def overhead(self, key, tree, remote_kind):
        p = self.p
        tpl, nfiles, nbytes = tree
        env_r, rname, dest_root = self.remote(remote_kind)
        env = dict(self.base_env, **env_r)
        src = os.path.join(self.data, "src-" + key)
        self.link_source(tpl, src)
        flags = self.plain_command(src, "%s:%s/%s-dry" % (rname, self.dest_prefix(remote_kind),
                                                          key), env)
        plain, cplow = [], []
        for i in range(p["pairs"]):
            order = ("plain", "cplow") if i % 2 == 0 else ("cplow", "plain")
            for kind in order:
                sub = "%s-%s-%d" % (key, kind, i)
                dest = "%s:%s/%s" % (rname, self.dest_prefix(remote_kind), sub)
                dest_dir = os.path.join(dest_root, sub)

                def count(d=dest_dir):
                    return sum(len(fs) for _, _, fs in os.walk(d))
                if kind == "plain":
                    r = self.run_plain(tpl, src, dest, env, flags, count, nfiles)
                    plain.append(r)
                else:
                    r = self.run_cplow(tpl, src, dest, env, nfiles, nbytes)
                    cplow.append(r)
                shutil.rmtree(dest_dir, ignore_errors=True)
            log("%s pair %d: rclone %.2f s, cplow %.2f s, ratio %.3f, cplow CPU %.0f us/file"
                % (key, i + 1, plain[-1]["wall"], cplow[-1]["wall"],
                   cplow[-1]["wall"] / plain[-1]["wall"], cplow[-1]["cplow_us"] / nfiles))
        shutil.rmtree(src, ignore_errors=True)
        self.results[key] = dict(files=nfiles, bytes=nbytes, remote=remote_kind, plain=plain,
                                 cplow=cplow,
                                 ratios=[c["wall"] / q["wall"] for c, q in zip(cplow, plain)])

    def dest_prefix(self, remote_kind):
        return os.path.join(self.data, "dst") if remote_kind == "local" else ""

    def section_small(self):
        p = self.p
        self.overhead("small", self.tree("small", p["small_files"], size=p["small_size"]),
                      "local")

    def section_large(self):
        p = self.p
        self.overhead("large", self.tree("large", p["large_files"], total=p["large_total"]),
                      "local")

    def section_fake(self):
        p = self.p
        self.overhead("fake", self.tree("fake", p["fake_files"], total=p["fake_total"]), "fake")

    def section_latency(self):
        p = self.p
        self.latency("latency", self.tree("small", p["small_files"], size=p["small_size"]),
                     "local")
        self.latency("latency_fake", self.tree("paced", p["latency_fake_files"],
                                               size=p["small_size"]), "fake")

    def latency(self, key, tree, remote_kind):
        tpl, nfiles, nbytes = tree
        env_r, rname, dest_root = self.remote(remote_kind)
        env = dict(self.base_env, **env_r)
        src = os.path.join(self.data, "src-" + key)
        runs = []
        for i in range(self.p["latency_runs"]):
            sub = "%s-%d" % (key, i)
            dest = "%s:%s/%s" % (rname, self.dest_prefix(remote_kind), sub)
            r = self.run_cplow(tpl, src, dest, env, nfiles, nbytes, mode="relay")
            shutil.rmtree(os.path.join(dest_root, sub), ignore_errors=True)
            if r["copied_lines"] != nfiles:
                raise SystemExit("the relay saw %d Copied lines, expected %d"
                                 % (r["copied_lines"], nfiles))
            runs.append(r)
            log("%s run %d: to shm p50 %.3f p99 %.3f max %.3f ms; to the file p50 %.1f p99 %.1f "
                "max %.1f ms (%d flushes)" % (key, i + 1, r["shm_p50"], r["shm_p99"],
                r["shm_max"], r["file_p50"], r["file_p99"], r["file_max"], r["flushes"]))
        shutil.rmtree(src, ignore_errors=True)
        self.results[key] = dict(files=nfiles, remote=remote_kind, runs=runs,
                                 wall=[r["wall"] for r in runs])

    def section_source(self):
        p = self.p
        root = os.path.join(self.data, "src350k")
        t = time.monotonic()
        out = subprocess.run([BENCH_SOURCE, "--files", str(p["source_files"]), "--dirs",
                              str(p["source_dirs"]), "--dir", root, "--runs",
                              str(p["source_runs"]), "--keep", "--json"],
                             capture_output=True, text=True)
        if out.returncode != 0:
            raise SystemExit("bench_source failed: " + out.stderr[-2000:])
        listing = json.loads(next(l for l in out.stdout.splitlines() if l.startswith("{")))
        log("bench_source: %d files listed %d times in %.1f s (tree included)"
            % (listing["files"], p["source_runs"], time.monotonic() - t))
        tree = os.path.join(root, "tree")
        env_r, rname, _ = self.remote("local")
        env = dict(self.base_env, BENCH_WRAP_NOOP_MS="300", **env_r)
        runs = []
        for i in range(p["source_cplow_runs"]):
            dest = "%s:%s/source-%d" % (rname, self.dest_prefix("local"), i)
            r = self.run_cplow(None, tree, dest, env, 0, 0, mode="noop", link=False)
            runs.append(r)
            log("350k run %d: start %.0f ms, worker VmHWM %.1f MiB, supervisor %.1f MiB"
                % (i + 1, r["start_ms"], r["hwm_kb"].get("worker", 0) / 1024,
                   r["hwm_kb"].get("supervisor", 0) / 1024))
        shutil.rmtree(root, ignore_errors=True)
        self.results["source"] = dict(listing=listing, cplow=runs)

    def section_ledger(self):
        p = self.p
        runs = []
        for i in range(p["ledger_runs"]):
            out = subprocess.run([BENCH_LEDGER, "--adds", str(p["ledger_adds"]), "--uploaders",
                                  "8", "--accounts", "1024", "--writers", "1,2,8", "--op",
                                  "stage", "--snapshots", str(p["ledger_snapshots"]),
                                  "--inspect", INSPECT, "--inspect-runs",
                                  str(p["ledger_inspects"]), "--dir", self.disk, "--json"],
                                 capture_output=True, text=True)
            if out.returncode != 0:
                raise SystemExit("bench_ledger failed: " + out.stderr[-2000:])
            r = json.loads(next(l for l in out.stdout.splitlines() if l.startswith("{")))
            runs.append(r)
            w = {x["writers"]: x for x in r["writers"]}
            log("ledger run %d: add p50 %d ns, p99 1 writer %d ns, 8 writers %d ns; snapshot "
                "write %.1f ms; inspect --json %.0f ms" % (i + 1, w[1]["p50_ns"],
                w[1]["p99_ns"], w[8]["p99_ns"], r["write_ms"][0], r["inspect_json_ms"][0]))
        self.results["ledger"] = dict(runs=runs)


# ---- the table -----------------------------------------------------------------------------

class Table:
    def __init__(self):
        self.rows = []

    def head(self, text):
        self.rows.append(("head", text))

    def row(self, label, st, fmt, target=None, ok=None, note=""):
        self.rows.append(("row", label, st, fmt, target, ok, note))

    def text(self, label, text):
        self.rows.append(("text", label, text))

    def render(self):
        out = []
        w = 62
        hdr = "%-*s %10s %10s %10s  %-10s %s" % (w, "figure", "median", "min", "max", "target",
                                                  "")
        out.append(hdr)
        out.append("-" * len(hdr))
        for r in self.rows:
            if r[0] == "head":
                out.append(r[1])
            elif r[0] == "text":
                out.append("  %-*s %s" % (w - 2, r[1], r[2]))
            else:
                _, label, st, fmt, target, ok, note = r
                if st is None:
                    cells = ["—"] * 3
                else:
                    cells = [fmt % x for x in st]
                flag = "" if ok is None else ("ok" if ok else "MISSED")
                out.append("  %-*s %10s %10s %10s  %-10s %s%s" % (
                    w - 2, label, cells[0], cells[1], cells[2], target or "", flag,
                    (" " + note) if note else ""))
        return "\n".join(out)


def build_table(b, params, quick):
    R = b.results
    t = Table()
    missed = []

    def judge(label, st, limit, fmt, target, note="", less_equal=False):
        ok = None
        if st is not None:
            ok = st[0] <= limit if less_equal else st[0] < limit
            if not ok:
                missed.append(label)
        t.row(label, st, fmt, target, ok, note)

    def n(x):
        return "{:,}".format(x)

    if any(k in R for k in ("large", "fake", "small")):
        t.head("Overhead vs rclone: wall-time ratio cplow upload / plain rclone move, same flags "
               "[1]")
    for key, limit, desc in (("large", 1.02, "files, %s MiB -> local remote"),
                             ("fake", 1.02, "files, %s MiB -> fake remote (WebDAV)"),
                             ("small", 1.05, "files x 4 KiB -> local remote")):
        if key not in R:
            continue
        r = R[key]
        label = ("%s " + desc) % (n(r["files"]), "%.0f" % (r["bytes"] / MIB)) if key != "small" \
            else "%s %s" % (n(r["files"]), desc)
        judge(label, stats(r["ratios"]), limit, "%.3f", "<= %.2f" % limit, less_equal=True)
        t.row("  plain rclone wall (s)", stats([x["wall"] for x in r["plain"]]), "%.2f")
        t.row("  cplow upload wall (s)", stats([x["wall"] for x in r["cplow"]]), "%.2f")
    if "small" in R or "fake" in R:
        if quick or "fake" not in R or R["fake"]["files"] < 20000:
            t.text("20,000 files x 4 KiB -> fake remote", "not run: see [2]")

    if any(k in R for k in ("large", "fake", "small")):
        t.head("Accounting cost: CPU of every cplow process per completed file, us [3]")
    for key, desc in (("small", "x 4 KiB, local"), ("large", "%.0f MiB, local"),
                      ("fake", "%.0f MiB, fake remote")):
        if key not in R:
            continue
        r = R[key]
        per = [c["cplow_us"] / c["files"] for c in r["cplow"]]
        label = "%s files %s" % (n(r["files"]), desc if key == "small" else
                                 "/ " + desc % (r["bytes"] / MIB))
        judge(label, stats(per), 20, "%.1f", "< 20")
        t.row("  the same per second of upload (ms/s)", stats(
            [c["cplow_us"] / 1e3 / c["wall"] for c in r["cplow"]]), "%.1f")
        if key in ("small", "fake"):
            for role in ("supervisor", "worker", "worker helper", "flusher", "dashboard"):
                v = [c["cpu_us"].get(role, 0) / c["files"] for c in r["cplow"]]
                t.row("  of which %s (sampled) [3]" % role, stats(v), "%.1f")
            t.row("  rclone's own CPU per file, under cplow", stats(
                [c["rclone_us"] / c["files"] for c in r["cplow"]]), "%.1f")
            t.row("  rclone's own CPU per file, plain", stats(
                [c["rclone_us"] / r["files"] for c in r["plain"]]), "%.1f")

    for key, desc in (("latency", "-> local remote: rclone at full speed, 2 cores saturated"),
                      ("latency_fake", "-> fake remote: ~33 files/s, as paced as a real remote")):
        if key not in R:
            continue
        r = R[key]
        runs = r["runs"]
        rt = all(x.get("watcher_rt") for x in runs)
        t.head("Latency of a completed file, ms: %s files x 4 KiB %s [4]%s" % (
            n(r["files"]), desc, "" if rt else " (watcher NOT real-time: inflated)"))
        judge("Copied line -> in the shared ledger, p99 (%s)" % r["remote"],
              stats([x["shm_p99"] for x in runs]), 1.0, "%.3f", "< 1")
        t.row("  p50", stats([x["shm_p50"] for x in runs]), "%.3f")
        t.row("  max", stats([x["shm_max"] for x in runs]), "%.3f")
        judge("Copied line -> in the durable ledger file, p99 (%s)" % r["remote"],
              stats([x["file_p99"] for x in runs]), 150.0, "%.1f", "< 150")
        t.row("  p50", stats([x["file_p50"] for x in runs]), "%.1f")
        t.row("  max", stats([x["file_max"] for x in runs]), "%.1f")
        t.row("  relay's own write() per line (us)", stats([x["relay_us_p50"] for x in runs]),
              "%.1f")
        t.row("  worker: mean run-queue wait per timeslice (us) [4]", stats(
            [x["worker_sched"]["wait_ns"] / max(1, x["worker_sched"]["slices"]) / 1e3
             for x in runs if x.get("worker_sched")]), "%.1f")
        t.row("  worker: timeslices per file", stats(
            [x["worker_sched"]["slices"] / r["files"] for x in runs if x.get("worker_sched")]),
            "%.2f")

    if "small" in R or "source" in R:
        t.head("Memory: peak RSS (VmHWM), MiB [5]")
    if "small" in R:
        r = R["small"]["cplow"]
        roles = ("supervisor", "worker", "flusher", "dashboard")
        for role in roles:
            t.row("%s, %s-file run" % (role, n(R["small"]["files"])),
                  stats([c["hwm_kb"].get(role, 0) / 1024 for c in r]), "%.1f")
        judge("sum of the four", stats([sum(c["hwm_kb"].get(x, 0) for x in roles) / 1024
                                        for c in r]), 16, "%.1f", "< 16")
        for kind, what in (("anon", "private (RssAnon)"),
                           ("file", "file-backed: binary and libraries (RssFile)"),
                           ("shmem", "the ledger's shared memory (RssShmem)")):
            t.row("  of the four: %s" % what, stats(
                [sum(c["rss_kb"].get(x, {}).get(kind, 0) for x in roles) / 1024 for c in r]),
                "%.1f")
        t.row("  rclone (for scale)", stats([c["hwm_kb"].get("rclone", 0) / 1024 for c in r]),
              "%.1f")
    if "source" in R:
        s = R["source"]
        nf = s["listing"]["files"]
        t.row("%s-file source: listing, s (bench_source) [6]" % n(nf),
              stats([x["list_s"] for x in s["listing"]["runs"]]), "%.3f")
        t.row("  listing alone: peak RSS of a child that lists",
              stats([x["rss_peak_kb"] / 1024 for x in s["listing"]["runs"]]), "%.1f")
        judge("%s-file source: worker VmHWM in cplow upload" % n(nf),
              stats([c["hwm_kb"].get("worker", 0) / 1024 for c in s["cplow"]]), 64, "%.1f",
              "< 64")
        t.row("  supervisor VmHWM, same runs",
              stats([c["hwm_kb"].get("supervisor", 0) / 1024 for c in s["cplow"]]), "%.1f")

    if any(k in R for k in ("large", "fake", "small", "source")):
        t.head("Start: cplow upload spawned -> rclone exec'd, ms [7]")
    for key, desc in (("large", "files"), ("small", "files"), ("fake", "files, fake remote")):
        if key in R:
            judge("%s %s" % (n(R[key]["files"]), desc),
                  stats([c["start_ms"] for c in R[key]["cplow"]]), 20, "%.1f", "< 20")
    if "source" in R:
        judge("%s files" % n(R["source"]["listing"]["files"]),
              stats([c["start_ms"] for c in R["source"]["cplow"]]), 20, "%.1f", "< 20")
    base = [x["start_ms"] for k in ("small", "large", "fake") if k in R for x in R[k]["plain"]]
    if base:
        t.row("  baseline: plain runs, spawn -> wrapper (harness cost)", stats(base), "%.1f")

    if "ledger" in R:
        runs = R["ledger"]["runs"]
        t.head("Ledger at scale: 1,024 accounts x 8 uploaders = %s rows [8]"
               % n(runs[0]["rows"]))

        def wr(k, field):
            return [next(x for x in r["writers"] if x["writers"] == k)[field] for r in runs]
        t.row("add, 1 writer, p50 (ns)", stats(wr(1, "p50_ns")), "%.0f")
        t.row("add, 1 writer, p99 (ns)", stats(wr(1, "p99_ns")), "%.0f")
        t.row("add, 8 writers, p50 (ns)", stats(wr(8, "p50_ns")), "%.0f")
        t.row("add, 8 writers, p99 (ns)", stats(wr(8, "p99_ns")), "%.0f")
        t.row("add, 8 writers, max (ns)", stats(wr(8, "max_ns")), "%.0f")
        t.row("add, 8 writers, adds/s total", stats(wr(8, "adds_per_s")), "%.0f")
        t.row("snapshot: consistent copy (ms)", stats([r["copy_ms"][0] for r in runs]), "%.2f")
        t.row("snapshot: render JSON (ms)", stats([r["render_ms"][0] for r in runs]), "%.1f")
        t.row("snapshot: render+write+fsync+rename (ms)", stats([r["write_ms"][0] for r in runs]),
              "%.1f")
        t.row("cplow-inspect --json, whole process (ms)",
              stats([r["inspect_json_ms"][0] for r in runs]), "%.1f")
        t.row("cplow-inspect (text), whole process (ms)",
              stats([r["inspect_text_ms"][0] for r in runs]), "%.1f")
    return t, missed


FOOTNOTES = """\
[1] Each pair runs plain `rclone move` and `cplow upload` on a fresh hard-linked copy of the same
    tree, in ABBA order; the ratio is per pair. Plain rclone gets exactly the arguments
    `cplow upload --dry-run` prints for that config (stage 1: --use-json-log -v, --rc on
    127.0.0.1:0, --max-transfer/--max-size/--transfers 8/--order-by/--max-backlog/--cutoff-mode)
    and the same RCLONE_RC_USER/PASS environment. Wall time is from spawn to reaping. cplow runs
    with its dashboard enabled. Both run rclone through tests/bench/bench_rclone_wrap (exec
    mode: fork, exec, wait4; no relay). Source and destination live on tmpfs ($DATA), the config
    and ledger file on disk ($DISK). "local remote" = an environment-defined rclone remote of
    type local: rclone copies at full speed, so this ratio bounds cplow's overhead from above.
[2] The fake remote (tests/fixtures/fake_remote.py) is reached through rclone's WebDAV backend,
    whose pacer spaces API calls >= 10 ms apart (100 calls/s for the whole run) and which makes
    3 calls per file (MKCOL, PUT, PROPFIND): about 33 files/s whatever drives rclone. 20,000
    files would take ~10 min a run, 100 min for 5 pairs; the 2,000-file tree (~65 s a run) is
    run instead, and the small-file overhead is measured against the local remote.
[3] Exact total: user+sys CPU of the whole `cplow upload` tree from wait4() on the supervisor
    (every process reaped below it counts), minus what the rclone wrapper reports for each of
    its invocations (its own getrusage(SELF) plus rclone's from its wait4()). Divided by the
    files the ledger counted, and by the run's wall time ("per second of upload": costs that
    scale with time, not files, such as flushes every flush_interval_ms and 1 s stats polls,
    dominate a paced remote). "of which" rows are sampled every 50 ms from /proc/<pid>/stat
    (10 ms ticks; a process's last < 50 ms is missed), so they need not add up to the total.
[4] cplow runs rclone through bench_rclone_wrap in relay mode: rclone's stderr goes through the
    wrapper, which stamps each read() with CLOCK_REALTIME as it returns, then write()s the bytes
    on to the worker. tests/bench/bench_ledger_watch waits on the ledger's change futex (as the
    flusher does) and stamps each rise of the ledger's file count; its stamping thread runs
    SCHED_FIFO (the heading says when it could not), so its own wait for a CPU is not counted
    (the relay stays SCHED_OTHER: a real-time relay starves the worker at full speed); for the file, it stamps the
    moment the flusher's flush_count moves after an inotify IN_MOVED_TO of sa_quota_cache.json
    (i.e. after rename and the directory's fsync) and sums "files" in that file. Latency of the
    k-th Copied line = first stamp with count >= k minus that line's read stamp. Included and not
    separable: the relay hop (its write(), shown, plus the worker's wake-up on the pipe), and one
    extra futex wake per ledger write for the watcher. Target for the file: flush_interval_ms
    (100, the default) + 50 ms. The worker's run-queue wait is from /proc/<pid>/schedstat
    (time runnable but not running, over the timeslices it ran): what the host's other load
    adds to every wake-up of the worker.
[5] VmHWM from /proc/<pid>/status, sampled every 50 ms, highest value seen per process; for the
    worker also read by the rclone wrapper from its parent just before rclone's exit. Roles:
    the supervisor is the spawned pid; of its children the one leading its own process group is
    the worker, the one holding a socket the dashboard, the other the flusher. VmHWM counts
    shared pages (libraries, the ledger's shared memory a process touched) in each process;
    the RssAnon/RssFile/RssShmem rows split it (highest value of each seen per process).
[6] bench_source lists the tree (350,000 sparse files in 3,500 directories, names as long as a
    media library's, on tmpfs, warm) with the worker's source_list() in a fresh child per run.
    The worker figure is cplow upload on that same tree with rclone replaced by the wrapper in
    noop mode (no rclone; sleeps 300 ms, exits 0): the worker has listed and set up its watch.
[7] CLOCK_REALTIME just before Python spawns `cplow upload` to the rclone wrapper's first
    instruction in main() (its exec of the real rclone follows within ~1 ms). The baseline row
    is the same measure for plain runs, where the harness spawns the wrapper directly: the
    harness's own spawn cost, included in the cplow figures too.
[8] tests/bench/bench_ledger: 8,192 rows (8 uploaders x 1,024 accounts) in a ledger of that
    capacity; each writer is a forked process counting files as a worker does
    (ledger_add_for_stage_file on its own stage slot; 1, 2 and 8 writers on 2 cores, the worst
    writer's percentile). Snapshot = ledger_read, ledger_file_render, ledger_file_write to disk.
    cplow-inspect = fork, exec, map, render, print to /dev/null, per process."""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", default="")
    ap.add_argument("--json-out", default="")
    ap.add_argument("--rclone-nice", type=int, default=0,
                    help="run rclone at this nice value, plain and under cplow (an experiment)")
    args = ap.parse_args()
    params = QUICK if args.quick else FULL
    order = ["ledger", "source", "small", "large", "latency", "fake"]
    only = [s for s in args.only.split(",") if s] or order
    for s in only:
        if s not in order:
            ap.error("unknown section %r (sections: %s)" % (s, ", ".join(order)))
    for path in (CPLOW, INSPECT, WRAP, WATCH, BENCH_LEDGER, BENCH_SOURCE, RCLONE):
        if not os.access(path, os.X_OK):
            sys.exit("bench: %s is missing (scripts/bench builds it)" % path)
    started = time.monotonic()
    b = Bench(args, params)
    try:
        log("data (tmpfs) %s, disk %s" % (b.data, b.disk))
        for s in order:
            if s in only:
                t = time.monotonic()
                getattr(b, "section_" + s)()
                log("section %s: %.0f s" % (s, time.monotonic() - t))
        table, missed = build_table(b, params, args.quick)
        rclone_version = subprocess.run([RCLONE, "version"], capture_output=True,
                                        text=True).stdout.splitlines()[0]
        print()
        print("cplow benchmarks, %s mode%s, %s; %d CPUs, load %s; %s; build %s"
              % ("QUICK (checks that it runs; not figures)" if args.quick else "full",
                 ", rclone at nice %d" % args.rclone_nice if args.rclone_nice else "",
                 datetime.datetime.now().strftime("%Y-%m-%d %H:%M"), os.cpu_count(),
                 open("/proc/loadavg").read().split()[0], rclone_version, BUILD))
        print(table.render())
        print()
        print(FOOTNOTES.replace("$DATA", os.path.dirname(b.data))
              .replace("$DISK", os.path.dirname(b.disk)))
        print()
        print("targets missed: %s" % (", ".join(missed) if missed else "none"))
        print("total time: %.0f s" % (time.monotonic() - started))
        if args.json_out:
            with open(args.json_out, "w") as f:
                json.dump(dict(params=params, results=b.results, missed=missed), f, indent=1)
    finally:
        b.close()


if __name__ == "__main__":
    main()
