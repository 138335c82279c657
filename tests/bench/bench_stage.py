"""bench_stage: the same tree moved to the fake remote by plain rclone and through the worker,
alternately, N pairs. Prints the median wall-time ratio (worker / rclone) with min and max, and
the worker's own CPU time per completed file (rclone's excluded). Not a test.

usage: bench_stage.py [--files N] [--total-mib N] [--pairs N]
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

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from harness import BUILD, RCLONE, FakeRemote, make_tree, unlink_shm  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=2000)
    ap.add_argument("--total-mib", type=int, default=1024)
    ap.add_argument("--pairs", type=int, default=5)
    ap.add_argument("--transfers", type=int, default=4)
    a = ap.parse_args()

    work = tempfile.mkdtemp(prefix="bench-stage-", dir=os.environ.get("CPLOW_BENCH_DIR", "/var/tmp"))
    fake = FakeRemote({"bench": ("pw", 0)}, work)
    try:
        template = os.path.join(work, "template")
        os.makedirs(template)
        mean = a.total_mib * (1 << 20) // a.files
        files = make_tree(template, a.files, seed=42, min_size=mean // 2, max_size=mean * 3 // 2,
                          dirs=20)
        total = sum(files.values())
        env = dict(os.environ)
        env.update(fake.remote_env("fake", "bench"))
        flags = ["--use-json-log", "-v", "--transfers=%d" % a.transfers, "--retries=1"]
        print("bench-stage: %d files, %.1f MiB, %d pairs, fake remote on %s"
              % (len(files), total / 2**20, a.pairs, fake.url))
        plain, worker, cpu_per_file = [], [], []
        for i in range(a.pairs):
            for kind in ("plain", "worker"):
                src = os.path.join(work, "src")
                shutil.rmtree(src, ignore_errors=True)
                shutil.copytree(template, src)
                dest = "fake:%s-%d" % (kind, i)
                if kind == "plain":
                    cmd = [RCLONE, "move", src, dest, "--rc", "--rc-addr=127.0.0.1:0",
                           "--rc-user=u", "--rc-pass=p"] + flags
                else:
                    shm = "/cplow-bench-stage-%d" % os.getpid()
                    unlink_shm(shm)
                    cmd = [os.path.join(BUILD, "tests/stage_tool"), "--ledger", shm, "--create",
                           "--uploader", "bench", "--account", "bench", "--source", src,
                           "--dest", dest, "--work-dir", work, "--transfers", str(a.transfers),
                           "--extra", "--retries=1"]
                t0 = time.monotonic()
                out = subprocess.run(cmd, env=env, capture_output=True, text=True)
                elapsed = time.monotonic() - t0
                if out.returncode != 0:
                    sys.exit("%s run failed (%d): %s" % (kind, out.returncode, out.stderr[-2000:]))
                if kind == "plain":
                    plain.append(elapsed)
                else:
                    unlink_shm(shm)
                    o = json.loads([l for l in out.stdout.splitlines() if l.startswith("{")][-1])
                    if o["files"] != len(files) or o["bytes"] != total:
                        sys.exit("worker counted %d files, %d bytes; expected %d, %d"
                                 % (o["files"], o["bytes"], len(files), total))
                    worker.append(elapsed)
                    cpu_per_file.append(o["cpu_self_us"] / o["files"])
                shutil.rmtree(os.path.join(fake.dir, "root", "bench"), ignore_errors=True)
                os.makedirs(os.path.join(fake.dir, "root", "bench"), exist_ok=True)
            print("pair %d: rclone %.2f s, worker %.2f s, ratio %.3f, worker CPU %.1f us/file"
                  % (i + 1, plain[-1], worker[-1], worker[-1] / plain[-1], cpu_per_file[-1]))
        ratios = [w / p for w, p in zip(worker, plain)]
        print()
        print("%-28s %10s %10s %10s" % ("", "median", "min", "max"))
        print("%-28s %10.2f %10.2f %10.2f" % ("plain rclone wall (s)", statistics.median(plain), min(plain), max(plain)))
        print("%-28s %10.2f %10.2f %10.2f" % ("through the worker wall (s)", statistics.median(worker), min(worker), max(worker)))
        print("%-28s %10.3f %10.3f %10.3f" % ("ratio worker / rclone", statistics.median(ratios), min(ratios), max(ratios)))
        print("%-28s %10.1f %10.1f %10.1f" % ("worker CPU per file (us)", statistics.median(cpu_per_file), min(cpu_per_file), max(cpu_per_file)))
        print("\ntargets: ratio <= 1.02; worker CPU < 20 us per file")
    finally:
        fake.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
