"""bench_ab: two cplow builds (or one build with two configs) on the same 20,000-file tree, in
alternating order, so that a change is measured against what it changes in one run on one
machine. Not a test; run it as scripts/bench-ab.

usage: bench_ab.py [--runs N] [--files N] NAME=BUILD_DIR[:RCLONE_NICE] NAME=BUILD_DIR[:...] ...

Each run moves a fresh hard-linked copy of a tree of 4 KiB files in /dev/shm to a local remote
(`:local:` in /dev/shm) with `cplow upload`, its dashboard on, rclone run through that build's
tests/bench_rclone_wrap (exec mode). Per variant it prints the median, min and max of: wall time
(spawn to reaping), cplow's CPU per file (user+sys of the whole tree from wait4, minus what the
wrapper reports for itself and rclone: exact, as scripts/bench's [3]) and start (spawn to the
wrapper's main, as scripts/bench's [7]). Every run must count every file in the ledger.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time


def make_tree(root, files):
    for i in range(files):
        d = os.path.join(root, "d%03d" % (i % 100))
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "f%06d.bin" % i), "wb") as f:
            f.write(b"x" * 4096)


def one_run(build, nice, tpl, work, port, files):
    src, dst = os.path.join(work, "src"), os.path.join(work, "dst")
    shutil.rmtree(src, ignore_errors=True)
    shutil.rmtree(dst, ignore_errors=True)
    subprocess.run(["cp", "-al", tpl, src], check=True)
    disk = tempfile.mkdtemp(prefix="cplow-ab-", dir="/var/tmp")
    try:
        core = {"dry_run": False,
                "rclone_binary_path": os.path.join(build, "tests/bench_rclone_wrap")}
        if nice is not None:
            core["rclone_nice"] = nice
        cfg = {"core": core,
               "remotes": {"media": {"upload_folder": src, "upload_remote": ":local:" + dst,
                                     "rclone_command": "move"}},
               "uploader": {"media": {"check_interval": 1, "max_size_gb": 0}},
               "quota": {"daily_bytes": 1 << 40, "min_free_bytes": 1,
                         "continue_min_bytes": 1 << 30},
               "dashboard": {"enabled": True, "host": "127.0.0.1", "port": port}}
        path = os.path.join(disk, "config.json")
        with open(path, "w") as f:
            json.dump(cfg, f)
        wlog = os.path.join(disk, "wrap.log")
        env = dict(os.environ, BENCH_WRAP_LOG=wlog, BENCH_WRAP_MODE="exec")
        t0_ns, t0 = time.time_ns(), time.monotonic()
        p = subprocess.Popen([os.path.join(build, "supervisor/cplow"), "--config", path,
                              "upload", "--quiet"], env=env, stderr=subprocess.DEVNULL)
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.monotonic() - t0
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit("cplow upload failed (%s); see %s" % (status, disk))
        with open(wlog) as f:
            recs = [json.loads(l) for l in f if l.strip()]
        move = next(r for r in recs if r["argv1"] == "move")
        cplow_us = (ru.ru_utime + ru.ru_stime) * 1e6 - sum(r["self_us"] + r["rclone_us"]
                                                            for r in recs)
        out = subprocess.run([os.path.join(build, "shm/cplow-inspect"), "--config", path,
                              "--json"], capture_output=True, text=True, check=True)
        ledger = json.loads(out.stdout)
        os.unlink("/dev/shm" + ledger["ledger"])
        counted = sum(r["files"] for r in ledger["uploaders"]["media"])
        if counted != files:
            raise SystemExit("counted %d files of %d" % (counted, files))
        return dict(wall=wall, cpu_us_per_file=cplow_us / files,
                    start_ms=(move["start_ns"] - t0_ns) / 1e6)
    finally:
        shutil.rmtree(disk, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--files", type=int, default=20000)
    ap.add_argument("variants", nargs="+", metavar="NAME=BUILD_DIR[:RCLONE_NICE]")
    a = ap.parse_args()
    variants = []
    for v in a.variants:
        name, _, spec = v.partition("=")
        build, _, nice = spec.partition(":")
        if not name or not os.path.isfile(os.path.join(build, "supervisor/cplow")):
            raise SystemExit("not a NAME=BUILD_DIR with a built cplow: " + v)
        variants.append((name, os.path.abspath(build), int(nice) if nice else None))
    work = tempfile.mkdtemp(prefix="cplow-ab-", dir="/dev/shm")
    try:
        tpl = os.path.join(work, "tpl")
        make_tree(tpl, a.files)
        results = {name: [] for name, _, _ in variants}
        for i in range(a.runs):
            for name, build, nice in (variants if i % 2 == 0 else variants[::-1]):
                r = one_run(build, nice, tpl, work, 18700 + i, a.files)
                results[name].append(r)
                print("run %d %s: wall %.2f s, cplow CPU %.1f us/file, start %.1f ms"
                      % (i + 1, name, r["wall"], r["cpu_us_per_file"], r["start_ms"]),
                      flush=True)
        print("\n%-10s %-22s %9s %9s %9s" % ("variant", "figure", "median", "min", "max"))
        for name, rs in results.items():
            for key, label in (("wall", "wall (s)"), ("cpu_us_per_file", "CPU per file (us)"),
                               ("start_ms", "start (ms)")):
                v = [r[key] for r in rs]
                print("%-10s %-22s %9.2f %9.2f %9.2f" % (name, label, statistics.median(v),
                                                          min(v), max(v)))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
