"""Packaging: docker/ and systemd/, checked without a Docker engine or a running systemd.

- The Dockerfile: every file it copies exists and passes docker/Dockerfile.dockerignore; the
  build stage builds and installs from those files alone; the runtime stage installs the
  package of every library the binaries need; it runs as a non-root user.
- compose.yaml parses; its shm_size holds the ledger cplow really makes, with room; its stop
  grace period is long enough; cplow stays PID 1.
- The image's ENTRYPOINT + CMD, run as PID 1 of a new PID namespace as the image's user,
  uploads with the real rclone to the fake remote, passes the image's HEALTHCHECK, and exits
  143 on SIGTERM; the HEALTHCHECK fails once cplow is gone although the ledger is still there.
- systemd/cplow.service: the keys that matter, `systemd-analyze verify` when it is installed,
  and the notify protocol through a real socket: READY=1 once the lock is held and the ledger
  restored, STOPPING=1 on the unit's KillSignal, an exit status the unit counts as clean.
"""
import fnmatch
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import unittest

from harness import BUILD, ROOT, unlink_shm, wait_for
from test_supervisor_process import (CPLOW, INSPECT, CplowProcess, SupervisorTest, children,
                                     comm, ns_pid)

DOCKERFILE = os.path.join(ROOT, "docker", "Dockerfile")
DOCKERIGNORE = os.path.join(ROOT, "docker", "Dockerfile.dockerignore")
COMPOSE = os.path.join(ROOT, "docker", "compose.yaml")
UNIT = os.path.join(ROOT, "systemd", "cplow.service")
IMAGE_CONFIG = "/config/config.json"


# ---- the Dockerfile, read as Docker reads it --------------------------------------------------

def dockerfile_instructions(path=DOCKERFILE):
    """[(stage, INSTRUCTION, arguments)] with continuations joined and comments dropped."""
    out, stage, pending = [], -1, ""
    with open(path) as f:
        for raw in f:
            line = raw.rstrip("\n")
            if not pending and (not line.strip() or line.lstrip().startswith("#")):
                continue
            if pending and line.lstrip().startswith("#"):
                continue
            if line.endswith("\\"):
                pending += line[:-1] + " "
                continue
            full = (pending + line).strip()
            pending = ""
            word, _, args = full.partition(" ")
            word = word.upper()
            if word == "FROM":
                stage += 1
            out.append((stage, word, args.strip()))
    return out


def image_env(runtime):
    """{name: value} of the ENV instructions among runtime's (INSTRUCTION, arguments)."""
    env = {}
    for word, args in runtime:
        if word == "ENV":
            env.update(part.split("=", 1) for part in shlex.split(args))
    return env


def exec_form(args):
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(a, str) for a in value), args
    return value


def copy_sources(instructions):
    """The context paths COPY/ADD take (not --from= copies between stages)."""
    sources = []
    for _, word, args in instructions:
        if word not in ("COPY", "ADD"):
            continue
        parts = shlex.split(args)
        if any(p.startswith("--from=") for p in parts):
            continue
        parts = [p for p in parts if not p.startswith("--")]
        sources.extend(parts[:-1])
    return sources


def ignored(path, patterns):
    """Docker's rule: the last pattern matching the path or one of its parents decides."""
    parts = path.strip("/").split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    verdict = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        p = pattern[1:] if negate else pattern
        p = p.strip("/")
        if any(fnmatch.fnmatchcase(prefix, p) for prefix in prefixes):
            verdict = not negate
    return verdict


def ignore_patterns():
    with open(DOCKERIGNORE) as f:
        return [l.strip() for l in f if l.strip() and not l.lstrip().startswith("#")]


def runtime_packages(instructions):
    """Packages the last stage apt-get installs."""
    last = max(stage for stage, _, _ in instructions)
    pkgs = []
    for stage, word, args in instructions:
        if stage != last or word != "RUN" or "apt-get install" not in args:
            continue
        for command in re.split(r"&&|;", args):
            words = command.split()
            if "install" in words and "apt-get" in words:
                pkgs += [w for w in words[words.index("install") + 1:] if not w.startswith("-")]
    return pkgs


def parse_duration(text):
    """Compose and systemd durations: "2m", "90s", "1m30s", "1h", "2min"."""
    total, matched = 0.0, ""
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)(h|min|ms|m|s|us)", str(text)):
        total += float(number) * {"h": 3600, "min": 60, "m": 60, "s": 1, "ms": 1e-3,
                                  "us": 1e-6}[unit]
        matched += number + unit
    assert matched == str(text), "not a duration: %r" % text
    return total


def parse_size(text):
    m = re.fullmatch(r"(\d+)([bkmg]?)b?", str(text).lower())
    assert m, "not a size: %r" % text
    return int(m.group(1)) * {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[m.group(2)]


def ledger_size_for_default_capacity():
    """Bytes of /dev/shm the ledger of a config with the default quota.capacity takes."""
    work = tempfile.mkdtemp(prefix="cplow-pkg-size-")
    try:
        os.makedirs(os.path.join(work, "media"))
        config = os.path.join(work, "config.json")
        with open(config, "w") as f:
            json.dump({"remotes": {"media": {"upload_folder": os.path.join(work, "media"),
                                             "upload_remote": "gd:/Media"}},
                       "uploader": {"media": {}}}, f)
        out = subprocess.run([CPLOW, "--config", config, "reset-quota"], capture_output=True,
                             text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        name = json.loads(subprocess.run([INSPECT, "--config", config, "--json"],
                                         capture_output=True, text=True,
                                         timeout=30).stdout)["ledger"]
        try:
            return os.stat("/dev/shm" + name).st_size
        finally:
            unlink_shm(name)
    finally:
        shutil.rmtree(work, ignore_errors=True)


class DockerfileTest(unittest.TestCase):
    def setUp(self):
        self.ins = dockerfile_instructions()

    def test_both_stages_are_debian_12_slim(self):
        froms = [args.split()[0] for _, word, args in self.ins if word == "FROM"]
        self.assertEqual(len(froms), 2, froms)
        for image in froms:
            self.assertIn(image, ("debian:bookworm-slim", "debian:12-slim"))

    def test_every_file_it_copies_exists_and_passes_the_ignore_file(self):
        sources = copy_sources(self.ins)
        self.assertTrue(sources)
        patterns = ignore_patterns()
        for src in sources:
            self.assertFalse(os.path.isabs(src), src)
            self.assertTrue(os.path.exists(os.path.join(ROOT, src)), "COPY %s: no such file" % src)
            self.assertFalse(ignored(src, patterns), "COPY %s: excluded by %s" % (src, DOCKERIGNORE))
            for dirpath, _, files in os.walk(os.path.join(ROOT, src)):
                for name in files:
                    rel = os.path.relpath(os.path.join(dirpath, name), ROOT)
                    self.assertFalse(ignored(rel, patterns), "%s is excluded" % rel)
        # What stays out: build trees and .git.
        for path in (".git/config", "build/CMakeCache.txt", "tests/unit/test_ledger.c"):
            self.assertTrue(ignored(path, patterns), path)

    def test_the_build_stage_builds_and_installs_from_what_it_copies_alone(self):
        """The context the build stage sees, configured and built as its RUN line does; then
        every library the binaries need must come from a package the runtime stage installs."""
        work = tempfile.mkdtemp(prefix="cplow-pkg-build-")
        try:
            context = os.path.join(work, "src")
            os.makedirs(context)
            for src in copy_sources([i for i in self.ins if i[0] == 0]):
                s, d = os.path.join(ROOT, src), os.path.join(context, src)
                if os.path.isdir(s):
                    shutil.copytree(s, d)
                else:
                    os.makedirs(os.path.dirname(d), exist_ok=True)
                    shutil.copy2(s, d)
            run_lines = [args for stage, word, args in self.ins if stage == 0 and word == "RUN"
                         and "cmake -S" in args]
            self.assertEqual(len(run_lines), 1)
            script = run_lines[0].replace("/usr/local", os.path.join(work, "prefix"))
            out = subprocess.run(["sh", "-ec", script], cwd=context, capture_output=True,
                                 text=True, timeout=900)
            self.assertEqual(out.returncode, 0, out.stdout[-3000:] + out.stderr[-3000:])
            prefix = os.path.join(work, "prefix")
            for tool in ("cplow", "cplow-inspect"):
                self.assertTrue(os.access(os.path.join(prefix, "bin", tool), os.X_OK), tool)
            version = subprocess.run([os.path.join(prefix, "bin", "cplow"), "--version"],
                                     capture_output=True, text=True, timeout=30)
            self.assertEqual(version.returncode, 0, version.stderr)
            self.assertTrue(os.path.exists(os.path.join(prefix, "lib/systemd/system/cplow.service")))
            # The runtime stage copies exactly what was installed.
            copies = [shlex.split(args) for _, word, args in self.ins
                      if word == "COPY" and "--from=build" in args]
            self.assertEqual(len(copies), 1)
            for path in copies[0][1:-1]:
                self.assertTrue(os.path.exists(path.replace("/usr/local", prefix)), path)
            wanted = set(runtime_packages(self.ins))
            for tool in ("cplow", "cplow-inspect"):
                for pkg in self.library_packages(os.path.join(prefix, "bin", tool)):
                    self.assertTrue(pkg in wanted or pkg == "libc6",
                                    "%s needs %s, which the runtime stage does not install"
                                    % (tool, pkg))
            self.assertIn("rclone", wanted)
        finally:
            shutil.rmtree(work, ignore_errors=True)

    @staticmethod
    def library_packages(binary):
        """Debian packages of the binary's direct NEEDED libraries."""
        needed = re.findall(r"\(NEEDED\)\s+Shared library: \[(\S+)\]",
                            subprocess.check_output(["readelf", "-d", binary], text=True))
        paths = dict(re.findall(r"^\s*(\S+) => (\S+)", subprocess.check_output(
            ["ldd", binary], text=True), re.M))
        pkgs = set()
        for soname in needed:
            path = paths[soname]
            arch_dir = os.path.basename(os.path.dirname(path))
            owner = subprocess.run(["dpkg", "-S", "*/%s/%s" % (arch_dir, soname)],
                                   capture_output=True, text=True)
            assert owner.returncode == 0, "no package owns %s: %s" % (path, owner.stderr)
            pkgs.add(owner.stdout.split(":")[0].strip())
        return pkgs

    def test_the_runtime_stage_is_non_root_with_a_healthcheck_and_cplow_as_entrypoint(self):
        last = max(stage for stage, _, _ in self.ins)
        runtime = [(word, args) for stage, word, args in self.ins if stage == last]
        users = [args for word, args in runtime if word == "USER"]
        self.assertEqual(users, ["cplow"])
        # The config comes from cloudplow's variable, never from the command line, so that a
        # user's CLOUDPLOW_CONFIG or CPLOW_CONFIG moves it (an --config would beat both).
        self.assertEqual(exec_form(dict(runtime)["ENTRYPOINT"]), ["cplow"])
        self.assertEqual(exec_form(dict(runtime)["CMD"]), ["run"])
        env = image_env(runtime)
        self.assertEqual(env.get("CLOUDPLOW_CONFIG"), IMAGE_CONFIG)
        self.assertNotIn("CPLOW_CONFIG", env)
        health = dict(runtime)["HEALTHCHECK"]
        self.assertIn("CMD cplow-inspect --json", health)
        self.assertNotIn("--config", health)
        self.assertIn("VOLUME", dict(runtime))
        self.assertIn(IMAGE_CONFIG.rsplit("/", 1)[0], dict(runtime)["VOLUME"])


class ComposeTest(unittest.TestCase):
    def setUp(self):
        import yaml  # python3-yaml: scripts/setup installs it
        with open(COMPOSE) as f:
            self.doc = yaml.safe_load(f)
        self.assertEqual(list(self.doc["services"]), ["cplow"])
        self.svc = self.doc["services"]["cplow"]

    def test_it_builds_the_dockerfile_from_the_repository_root(self):
        build = self.svc["build"]
        context = os.path.normpath(os.path.join(os.path.dirname(COMPOSE), build["context"]))
        self.assertEqual(context, ROOT)
        self.assertEqual(os.path.join(context, build["dockerfile"]), DOCKERFILE)

    def test_config_volume_port_and_cplow_as_pid_1(self):
        targets = [v.split(":")[1] for v in self.svc["volumes"]]
        self.assertIn("/config", targets)
        self.assertTrue(any(str(p).split(":")[-1] == "47949" for p in self.svc["ports"]))
        self.assertNotEqual(self.svc.get("init"), True, "an init would take PID 1 from cplow")

    def test_shm_size_holds_the_ledger_cplow_makes_with_room_to_spare(self):
        size = ledger_size_for_default_capacity()
        self.assertGreater(size, 0)
        self.assertGreaterEqual(parse_size(self.svc["shm_size"]), 4 * size)
        # The comment gives the number: keep it roughly true as the layout changes.
        with open(COMPOSE) as f:
            said = re.search(r"([\d,]+) bytes \([\d.]+ MiB\) for the default quota.capacity",
                             f.read())
        self.assertIsNotNone(said, "compose.yaml no longer names the ledger's size")
        said = int(said.group(1).replace(",", ""))
        self.assertLess(abs(said - size), size / 4,
                        "compose.yaml says the ledger takes %d bytes; it takes %d" % (said, size))

    def test_the_stop_grace_period_outlasts_a_graceful_stop(self):
        # rclone's stop (10 s), the in-flight check (5 s and its lookups), the final flush
        # (10 s): at least a minute.
        self.assertGreaterEqual(parse_duration(self.svc["stop_grace_period"]), 60)
        self.assertIn(self.svc.get("stop_signal", "SIGTERM"), ("SIGTERM", "SIGINT"))


# ---- the entrypoint as PID 1, as the image's user ---------------------------------------------

def image_user_ids():
    ins = dockerfile_instructions()
    args = {m.group(1): int(m.group(2)) for _, word, a in ins if word == "ARG"
            for m in [re.fullmatch(r"(\w+)=(\d+)", a)] if m}
    return args["CPLOW_UID"], args["CPLOW_GID"]


@unittest.skipUnless(os.geteuid() == 0 and shutil.which("unshare") and shutil.which("setpriv")
                     and shutil.which("nsenter"),
                     "needs root, unshare, setpriv and nsenter")
class EntrypointTest(SupervisorTest):
    def setUp(self):
        super().setUp()
        self.uid, self.gid = image_user_ids()
        self.as_user = ("setpriv", "--reuid", str(self.uid), "--regid", str(self.gid),
                        "--clear-groups")
        self.confdir = os.path.join(self.work, "config")
        os.makedirs(self.confdir)
        os.chmod(self.work, 0o755)
        # As the image installs them, readable by its user wherever the build tree is (CI's
        # checkout may sit below a directory only root can enter).
        bindir = os.path.join(self.work, "bin")
        os.makedirs(bindir)
        self.cplow_bin = shutil.copy2(CPLOW, os.path.join(bindir, "cplow"))
        self.inspect_bin = shutil.copy2(INSPECT, os.path.join(bindir, "cplow-inspect"))
        ins = dockerfile_instructions()
        runtime = {word: args for stage, word, args in ins if stage == max(i[0] for i in ins)}
        self.argv = exec_form(runtime["ENTRYPOINT"]) + exec_form(runtime["CMD"])
        self.health = runtime["HEALTHCHECK"].split(" CMD ", 1)[1]
        self.env["HOME"] = self.confdir  # the image's ENV HOME=/config
        # The image's config variable, its path mapped to this test's folder (what a volume at
        # /config gives the container).
        image = image_env([(word, args) for stage, word, args in ins
                           if stage == max(i[0] for i in ins)])
        self.env.pop("CPLOW_CONFIG", None)
        self.env["CLOUDPLOW_CONFIG"] = self.mapped(image["CLOUDPLOW_CONFIG"],
                                                   os.path.join(self.confdir, "config.json"))

    def ledger_name(self, config):
        # The ledger's name includes the uid: look it up as cplow's user.
        out = subprocess.run(list(self.as_user) + [self.inspect_bin, "--config", config, "--json"],
                             capture_output=True, text=True, timeout=30)
        return json.loads(out.stdout)["ledger"] if out.returncode == 0 else None

    def mapped(self, text, config):
        return text.replace(IMAGE_CONFIG, config)

    def healthcheck(self, config, namespace_of=None):
        """The image's HEALTHCHECK command as the image's user: inside cplow's PID namespace
        when given one (as Docker runs it), else here. Returns its exit status."""
        cmd = self.mapped(self.health, config).replace("cplow-inspect", self.inspect_bin, 1)
        enter = ("nsenter", "--target", str(namespace_of), "--pid", "--mount") if namespace_of else ()
        env = dict(self.env, CLOUDPLOW_CONFIG=config)
        return subprocess.run(list(enter) + list(self.as_user) + ["sh", "-c", cmd],
                              capture_output=True, timeout=30, env=env).returncode

    def test_the_entrypoint_as_pid_1_uploads_is_healthy_and_exits_143_on_sigterm(self):
        self.tree(seed=21)
        cfg = self.write_config(self.config_dict(), os.path.join(self.confdir, "config.json"))
        subprocess.check_call(["chown", "-R", "%d:%d" % (self.uid, self.gid), self.src,
                               self.confdir])
        self.assertNotEqual(self.healthcheck(cfg), 0, "healthy before cplow ever ran")
        argv = [self.cplow_bin if a == "cplow" else self.mapped(a, cfg) for a in self.argv]
        self.assertEqual(argv[-1], "run")
        n = len(self.runs)
        log_path = os.path.join(self.work, "cplow-%d.log" % n)
        with open(log_path, "w") as log:
            p = subprocess.Popen(["unshare", "--pid", "--fork", "--mount-proc"]
                                 + list(self.as_user) + argv,
                                 stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                 start_new_session=True)
        run = CplowProcess(p, log_path, log_path)
        self.runs.append(run)
        inner = wait_for("cplow as PID 1 of the new namespace",
                         lambda: next((c for c in children(run.pid) if comm(c) == "cplow"
                                       and ns_pid(c) == 1), None), timeout=10)
        with open("/proc/%d/status" % inner) as f:
            uids = next(l.split()[1:] for l in f if l.startswith("Uid:"))
        self.assertEqual(set(uids), {str(self.uid)}, "cplow does not run as the image's user")
        wait_for("every file uploaded", lambda: (run.p.poll() is None or self.fail(
            "cplow exited (%s):\n%s" % (run.p.returncode, run.log()[-3000:])))
            and not any(fs for _, _, fs in os.walk(self.src)), timeout=120, step=0.1)
        truth = self.truth()
        self.assertEqual(sum(truth.values()), sum(self.files.values()))
        wait_for("the ledger file to hold every upload",
                 lambda: self.file_bytes(cfg) and sum(self.file_bytes(cfg).values())
                 == sum(truth.values()), timeout=30)
        self.assertEqual(self.healthcheck(cfg, namespace_of=inner), 0, run.log()[-3000:])
        os.kill(inner, signal.SIGTERM)
        self.assertEqual(run.wait(60), 143, run.log()[-4000:])
        self.assert_equals_truth(self.file_bytes(cfg), "the ledger file")
        # The ledger outlives cplow and cplow-inspect still exits 0 on it: the HEALTHCHECK
        # looks at "running", and fails.
        inspect = subprocess.run(list(self.as_user) + [self.inspect_bin, "--config", cfg, "--json"],
                                 capture_output=True, text=True, timeout=30)
        self.assertEqual(inspect.returncode, 0, inspect.stderr)
        self.assertFalse(json.loads(inspect.stdout)["running"])
        self.assertNotEqual(self.healthcheck(cfg), 0, "healthy after cplow stopped")


# ---- systemd -----------------------------------------------------------------------------------

def unit_entries(path=UNIT):
    """{section: {key: [values]}}; an empty assignment resets the list, as systemd reads it."""
    sections, current = {}, None
    with open(path) as f:
        for raw in f:
            line = raw.strip()
            if not line or line[0] in "#;":
                continue
            if line.startswith("["):
                current = sections.setdefault(line.strip("[]"), {})
                continue
            key, _, value = line.partition("=")
            values = current.setdefault(key.strip(), [])
            if value.strip():
                values.append(value.strip())
            else:
                values.clear()
    return sections


class SystemdUnitTest(unittest.TestCase):
    def setUp(self):
        self.unit = unit_entries()
        self.svc = self.unit["Service"]

    def one(self, key):
        self.assertIn(key, self.svc)
        return self.svc[key][-1]

    def test_type_notify_graceful_stop_and_restart(self):
        self.assertEqual(self.one("Type"), "notify")
        self.assertEqual(self.one("NotifyAccess"), "main")
        self.assertEqual(self.one("KillSignal"), "SIGINT")
        self.assertEqual(self.one("KillMode"), "mixed")
        self.assertEqual(self.one("Restart"), "on-failure")
        self.assertGreaterEqual(parse_duration(self.one("RestartSec")), 5)
        self.assertGreaterEqual(parse_duration(self.one("TimeoutStopSec")), 60)
        self.assertEqual(set(" ".join(self.svc["SuccessExitStatus"]).split()), {"130", "143"})
        self.assertEqual(set(" ".join(self.svc["RestartPreventExitStatus"]).split()), {"2", "3"})
        argv = shlex.split(self.one("ExecStart"))
        self.assertEqual(os.path.basename(argv[0]), "cplow")
        self.assertEqual(argv[1], "--config")
        self.assertEqual(argv[-1], "run")

    def test_hardening(self):
        self.assertEqual(self.one("ProtectSystem"), "strict")
        config_dir = os.path.dirname(shlex.split(self.one("ExecStart"))[2])
        self.assertIn(config_dir, [p.lstrip("-") for v in self.svc["ReadWritePaths"] for p in v.split()])
        for key in ("NoNewPrivileges", "PrivateTmp"):
            self.assertEqual(self.one(key), "yes", key)
        self.assertIn(self.one("ProtectHome"), ("yes", "read-only", "tmpfs"))
        self.assertNotEqual(self.svc.get("PrivateDevices", ["no"])[-1], "yes",
                            "a private /dev hides the ledger from cplow status")
        self.assertNotEqual(self.svc.get("RemoveIPC", ["no"])[-1], "yes",
                            "RemoveIPC would delete the live ledger on every stop")
        self.assertEqual(self.svc.get("CapabilityBoundingSet"), [])
        self.assertNotEqual(self.one("User"), "root")

    @unittest.skipUnless(shutil.which("systemd-analyze"), "systemd-analyze is not installed")
    def test_systemd_analyze_verify_accepts_it(self):
        work = tempfile.mkdtemp(prefix="cplow-unit-")
        try:
            with open(UNIT) as f:
                text = f.read()
            # verify checks that the command exists: point it at the built one.
            text = re.sub(r"^ExecStart=cplow ", "ExecStart=%s " % CPLOW, text, flags=re.M)
            path = os.path.join(work, "cplow.service")
            with open(path, "w") as f:
                f.write(text)
            out = subprocess.run(["systemd-analyze", "verify", "--man=no", path],
                                 capture_output=True, text=True, timeout=60)
            self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
            self.assertNotIn("cplow.service:", out.stderr, out.stderr)
        finally:
            shutil.rmtree(work, ignore_errors=True)


class NotifyTest(SupervisorTest):
    """cplow under Type=notify: the datagrams systemd would get."""

    def notify_socket(self):
        path = os.path.join(self.work, "notify")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(path)
        self.addCleanup(sock.close)
        self.env["NOTIFY_SOCKET"] = path
        return sock

    @staticmethod
    def receive(sock, timeout):
        sock.settimeout(timeout)
        try:
            return sock.recv(4096).decode()
        except socket.timeout:
            return None

    def test_ready_after_the_lock_and_ledger_stopping_on_sigint_and_a_clean_exit(self):
        self.tree(count=10, seed=31)
        cfg = self.write_config(self.config_dict())
        sock = self.notify_socket()
        argv = shlex.split(unit_entries()["Service"]["ExecStart"][-1])
        self.assertEqual(argv[1:3], ["--config", "/etc/cplow/config.json"])
        run = self.cplow(cfg, *argv[3:])
        self.assertEqual(self.receive(sock, 30), "READY=1", run.log()[-3000:])
        # Ready means: the instance lock is ours and the ledger exists.
        with open(os.path.join(self.work, "cplow.lock")) as f:
            self.assertEqual(int(f.read().strip()), run.pid)
        self.assertIsNotNone(self.ledger_name(cfg))
        # A second cplow on the same config exits 3 (no restart: RestartPreventExitStatus)
        # without a READY=1 of its own.
        second = self.cplow(cfg, *argv[3:])
        self.assertEqual(second.wait(30), 3, second.log())
        self.assertIsNone(self.receive(sock, 0.01))
        wait_for("every file uploaded", lambda: (run.p.poll() is None or self.fail(
            "cplow exited (%s):\n%s" % (run.p.returncode, run.log()[-3000:])))
            and not any(fs for _, _, fs in os.walk(self.src)), timeout=120, step=0.1)
        kill = getattr(signal, unit_entries()["Service"]["KillSignal"][-1])
        os.kill(run.pid, kill)
        self.assertEqual(self.receive(sock, 30), "STOPPING=1", run.log()[-3000:])
        code = run.wait(60)
        self.assertIn(str(code), " ".join(unit_entries()["Service"]["SuccessExitStatus"]).split())
        self.assert_equals_truth(self.file_bytes(cfg), "the ledger file")

    def test_a_bad_config_exits_2_without_ready(self):
        sock = self.notify_socket()
        cfg = os.path.join(self.work, "config.json")
        with open(cfg, "w") as f:
            f.write('{"uploader": {"media": {"max_size_gb": "abc"}}}')
        self.configs.append(cfg)
        run = self.cplow(cfg, "run")
        self.assertEqual(run.wait(30), 2, run.log())
        self.assertIsNone(self.receive(sock, 0.01))


if __name__ == "__main__":
    unittest.main()
