#!/usr/bin/env python3
"""Fault-injection suite for bm2: kill the daemon at random moments, fill its disk, corrupt its
files, and check that what should run runs exactly once and that its files stay valid.

Stdlib only; run as root (tmpfs mounts). See bench/README.md ("Fault injection").

Every scenario run gets a fresh temporary BM2_HOME. A process belongs to a run when its
environment holds BM2_HOME=<that home>: the daemon, the apps (which also carry BM2_ID=<id>) and
the CLIs this script starts. Teardown (after each run, and again on exit, error, Ctrl-C or
SIGTERM): `bm2 kill`, then SIGKILL of every process still carrying the home's marker (its start
time checked, so a recycled pid is never hit), then tmpfs mounts are unmounted and the
directories removed. Nothing is killed by name.
"""

import argparse
import atexit
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(BENCH_DIR)
KILL_SCENARIOS = ["start", "save", "reload", "scale", "rotation"]
ITERATED = KILL_SCENARIOS + ["kill-list"]
ONCE_SCENARIOS = ["kill-no-daemon", "tmpfs-home", "tmpfs-logs", "corrupt"]
ALL_SCENARIOS = ITERATED + ONCE_SCENARIOS

# Prints "<pid> <n>" lines in bursts (about 20,000 lines a second), until stopped.
WRITER = r"""import os, sys, time
pid = os.getpid()
w = sys.stdout.write
i = 0
while True:
    for _ in range(200):
        w("%d %d\n" % (pid, i))
        i += 1
    sys.stdout.flush()
    time.sleep(0.01)
"""

# Prints a line of 100 bytes every 2 ms (50 KB/s), for filling a disk slowly.
CHATTY = r"""import sys, time
i = 0
while True:
    sys.stdout.write("%099d\n" % i)
    sys.stdout.flush()
    i += 1
    time.sleep(0.002)
"""


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------
# /proc
# ------------------------------------------------------------------------------------------


def start_time(pid):
    """Start time of a live, non-zombie process (clock ticks after boot), else None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
    except OSError:
        return None
    rest = s[s.rfind(")") + 2 :].split()
    if rest[0] in ("Z", "X"):
        return None
    return int(rest[19])


def alive(pid):
    return start_time(pid) is not None


def environ(pid):
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return f.read().split(b"\0")
    except OSError:
        return []


def cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().split(b"\0")
    except OSError:
        return []


def marked(home):
    """Live processes of `home`: {pid: {"kind": daemon|cli|app, "id": str|None, "start": t,
    "app": FAULT_APP, "index": NODE_APP_INSTANCE}}."""
    entry = f"BM2_HOME={home}".encode()
    out = {}
    me = os.getpid()
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == me:
            continue
        pid = int(name)
        env = environ(pid)
        if entry not in env:
            continue
        t = start_time(pid)
        if t is None:
            continue
        vars_ = dict(kv.split(b"=", 1) for kv in env if b"=" in kv)
        args = cmdline(pid)
        kind = "app"
        if b"BM2_ID" not in vars_ and args:
            # The daemon and the CLIs this script runs are the bm2 binary; apps carry BM2_ID.
            kind = "daemon" if len(args) > 1 and args[1] == b"daemon" else "cli"
        out[pid] = {
            "kind": kind,
            "id": vars_.get(b"BM2_ID", b"").decode() or None,
            "start": t,
            "app": vars_.get(b"FAULT_APP", b"").decode() or None,
            "index": vars_.get(b"NODE_APP_INSTANCE", b"").decode() or None,
            "ppid": ppid(pid),
        }
    return out


def ppid(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
        return int(s[s.rfind(")") + 2 :].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def kill_checked(pid, t, sig=signal.SIGKILL):
    if start_time(pid) == t:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def wait_until(pred, timeout, step=0.02):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            return v
        time.sleep(step)


# ------------------------------------------------------------------------------------------
# A bm2 home
# ------------------------------------------------------------------------------------------

LIVE_HOMES = []
MOUNTS = []
KEEP = False


class Home:
    def __init__(self, bin_path, root=None):
        self.bin = bin_path
        self.scratch = tempfile.mkdtemp(prefix="bm2-faults-")
        self.home = root or os.path.join(self.scratch, "home")
        self.work = os.path.join(self.scratch, "work")
        os.makedirs(self.work, exist_ok=True)
        self.env = dict(os.environ, BM2_HOME=self.home, NO_COLOR="1")
        LIVE_HOMES.append(self)

    def run(self, *args, timeout=60, check=False, env=None):
        p = subprocess.run(
            [self.bin, *args],
            cwd=self.work,
            env=dict(self.env, **(env or {})),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and p.returncode != 0:
            raise RuntimeError(f"bm2 {' '.join(args)} failed: {p.stdout}{p.stderr}")
        return p

    def spawn(self, *args):
        return subprocess.Popen(
            [self.bin, *args],
            cwd=self.work,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )

    def file(self, name, text):
        path = os.path.join(self.work, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def list(self):
        p = self.run("list", "--json", timeout=30)
        if p.returncode != 0:
            raise RuntimeError(f"bm2 list failed: {p.stderr.strip()}")
        return json.loads(p.stdout)

    def daemon_pid(self):
        """The daemon named by daemon.pid when it runs; else the only `bm2 daemon` of the home
        (a CLI that auto-starts a second one, which exits at once on the lock, can make two)."""
        procs = {p: m for p, m in marked(self.home).items() if m["kind"] == "daemon"}
        try:
            with open(os.path.join(self.home, "daemon.pid")) as f:
                pid = int(f.read().strip())
            if pid in procs:
                return pid
        except (OSError, ValueError):
            pass
        return next(iter(procs)) if len(procs) == 1 else None

    def stop(self):
        """`bm2 kill`, then SIGKILL of whatever still carries this home's marker."""
        try:
            self.run("kill", timeout=30)
        except Exception:
            pass
        for pid, m in marked(self.home).items():
            kill_checked(pid, m["start"])
        wait_until(lambda: not marked(self.home), 5)

    def teardown(self):
        self.stop()
        if self in LIVE_HOMES:
            LIVE_HOMES.remove(self)
        for mnt in [m for m in MOUNTS if m.startswith(self.scratch + os.sep)]:
            umount(mnt)
        if KEEP:
            log(f"       kept {self.scratch}")
        else:
            shutil.rmtree(self.scratch, ignore_errors=True)


def cleanup_all():
    for h in list(LIVE_HOMES):
        h.stop()
    for mnt in list(MOUNTS):
        umount(mnt)
    for h in list(LIVE_HOMES):
        h.teardown()


def mount_tmpfs(path, size):
    os.makedirs(path, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", path], check=True)
    MOUNTS.append(path)


def umount(path):
    for _ in range(50):
        if subprocess.run(["umount", path], capture_output=True).returncode == 0:
            break
        time.sleep(0.1)
    else:
        subprocess.run(["umount", "-l", path], capture_output=True)
    if path in MOUNTS:
        MOUNTS.remove(path)


# ------------------------------------------------------------------------------------------
# Checks
# ------------------------------------------------------------------------------------------


class Result:
    def __init__(self, scenario, label):
        self.scenario = scenario
        self.label = label
        self.problems = []
        self.lost = self.duplicated = self.orphans = self.invalid_files = 0
        self.lines_lost = self.lines_duplicated = 0
        self.notes = []

    def fail(self, what):
        self.problems.append(what)

    @property
    def ok(self):
        return not self.problems


def parse_json_file(path):
    """None when the file is valid JSON (or missing), else the error."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return None
    try:
        json.loads(data)
        return None
    except ValueError as e:
        return f"{e} ({len(data)} bytes)"


def check_files(h, r):
    for name in ("state.json", "dump.json"):
        err = parse_json_file(os.path.join(h.home, name))
        if err:
            r.invalid_files += 1
            r.fail(f"{name} is not valid JSON: {err}")


def settle(h, expected, timeout=20, still=2.0):
    """Waits until every expected instance is online and nothing is launching or stopping, or
    until the list has not changed for `still` seconds with nothing moving (what is missing then
    is not coming); returns the last list."""
    rows = []
    last = (None, time.monotonic())

    def done():
        nonlocal rows, last
        try:
            rows = h.list()
        except Exception:
            return False
        online = {(p["name"], p.get("instance", 0)) for p in rows if p["status"] == "online"}
        moving = [p for p in rows if p["status"] in ("launching", "stopping", "waiting restart")]
        if expected <= online and not moving:
            return True
        shape = sorted((p["id"], p["status"], p.get("pid")) for p in rows)
        if shape != last[0]:
            last = (shape, time.monotonic())
        return not moving and time.monotonic() - last[1] >= still

    wait_until(done, timeout, 0.1)
    return rows


def check_running(h, r, expected):
    """Every expected instance is listed online; every process of the home is accounted for by
    the list (no orphan), no instance has two live processes, no id or instance is listed
    twice; state.json and dump.json parse."""
    rows = settle(h, expected)
    listed = {}
    by_instance = {}
    for p in rows:
        if p["id"] in listed:
            r.duplicated += 1
            r.fail(f"id {p['id']} listed twice")
        listed[str(p["id"])] = p
        key = (p["name"], p.get("instance", 0))
        if key in by_instance:
            r.duplicated += 1
            r.fail(f"instance {key} listed twice (ids {by_instance[key]['id']} and {p['id']})")
        by_instance[key] = p
    online = {k for k, p in by_instance.items() if p["status"] == "online"}
    missing = sorted(expected - online)
    if missing:
        r.lost += len(missing)
        states = {k: by_instance[k]["status"] if k in by_instance else "not listed" for k in missing}
        shown = ", ".join(f"{k[0]}:{k[1]} ({v})" for k, v in list(states.items())[:6])
        r.fail(f"{len(missing)} of {len(expected)} instances meant to run are not running: {shown}")
    procs = marked(h.home)
    apps = {pid: m for pid, m in procs.items() if m["kind"] == "app"}
    tree_of = {}
    for pid, m in apps.items():
        row = listed.get(m["id"])
        if row is None:
            r.orphans += 1
            r.fail(f"orphan: pid {pid} (BM2_ID={m['id']}, {m['app']}) is not in the list")
            continue
        root = row.get("pid")
        if root is None:
            r.orphans += 1
            r.fail(f"orphan: pid {pid} of id {m['id']} runs while it is listed {row['status']}")
            continue
        if not descends(pid, root, apps):
            r.duplicated += 1
            r.fail(f"duplicate: pid {pid} of id {m['id']} runs beside its listed pid {root}")
        tree_of.setdefault(m["id"], []).append(pid)
    for key, p in by_instance.items():
        if p["status"] == "online" and p.get("pid") and p["pid"] not in apps:
            r.lost += 1
            r.fail(f"{key[0]}:{key[1]} is listed online with pid {p['pid']}, which is not running")
    daemons = [pid for pid, m in procs.items() if m["kind"] == "daemon"]
    if len(daemons) != 1:
        r.fail(f"{len(daemons)} daemons run for this home: {daemons}")
    check_files(h, r)
    return rows


def descends(pid, root, apps):
    seen = 0
    while pid and seen < 64:
        if pid == root:
            return True
        pid = apps.get(pid, {}).get("ppid") or ppid(pid)
        seen += 1
    return False


def running_instances(h):
    return {(m["app"], int(m["index"] or 0)) for m in marked(h.home).values() if m["kind"] == "app" and m["app"]}


def signal_daemon(h, sig):
    """Sends `sig` to the daemon and waits until it is gone; returns its pid."""
    pid = h.daemon_pid()
    if pid is None:
        raise RuntimeError("no daemon to signal")
    t = start_time(pid)
    kill_checked(pid, t, sig)
    if not wait_until(lambda: start_time(pid) != t, 30):
        raise RuntimeError(f"daemon {pid} still running 30 s after {sig.name}")
    return pid


# ------------------------------------------------------------------------------------------
# Scenarios: kill the daemon during an operation
# ------------------------------------------------------------------------------------------


def ecosystem(h, apps):
    """Writes eco.json with `apps` = [(name, instances)] of `sleep`; returns its path."""
    spec = {
        "apps": [
            {
                "name": name,
                "script": "sleep",
                "args": ["100000"],
                "interpreter": "none",
                "instances": n,
                "kill_timeout": 1000,
                "env": {"FAULT_APP": name},
            }
            for name, n in apps
        ]
    }
    return h.file("eco.json", json.dumps(spec))


def expected_of(apps):
    return {(name, i) for name, n in apps for i in range(n)}


def start_all(h, apps):
    eco = ecosystem(h, apps)
    h.run("start", eco, check=True, timeout=120)
    settle(h, expected_of(apps))


def kill_during(h, sig, args, delay):
    """Starts `bm2 <args>`, signals the daemon `delay` seconds later; returns what ran at the
    moment of the kill (SIGKILL: after it; SIGTERM: just before it) and whether the command
    had finished successfully by then."""
    cli = h.spawn(*args)
    time.sleep(delay)
    done_before = cli.poll() == 0
    before = running_instances(h) if sig == signal.SIGTERM else None
    signal_daemon(h, sig)
    after = running_instances(h) if sig == signal.SIGKILL else None
    try:
        cli.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(cli.pid, signal.SIGKILL)
        cli.wait()
    return (before if before is not None else after), done_before


def restart_daemon(h, r):
    p = h.run("ping", timeout=60)
    if p.returncode != 0:
        r.fail(f"the next daemon did not start: {p.stderr.strip()}")
        return False
    return True


def scenario_start(h, r, rng, quick):
    n = rng.randint(10, 20) if quick else rng.randint(20, 50)
    apps = [(f"app{i}", 1) for i in range(n)]
    h.run("ping", check=True)
    eco = ecosystem(h, apps)
    sig = r.sig
    ran, finished = kill_during(h, sig, ["start", eco], r.delay)
    expected = expected_of(apps) if finished else ran
    r.notes.append(f"{n} apps, {len(ran)} running at the kill, start {'done' if finished else 'cut'}")
    if restart_daemon(h, r):
        check_running(h, r, expected)


def scenario_save(h, r, rng, quick):
    apps = [(f"app{i}", rng.randint(1, 2)) for i in range(rng.randint(3, 8))]
    start_all(h, apps)
    h.run("save", check=True)
    # Saves back to back while the daemon is signalled.
    loop = subprocess.Popen(
        ["sh", "-c", f"for i in $(seq 1 200); do '{h.bin}' save >/dev/null 2>&1 || exit 0; done"],
        cwd=h.work,
        env=h.env,
        start_new_session=True,
    )
    time.sleep(r.delay)
    signal_daemon(h, r.sig)
    os.killpg(loop.pid, signal.SIGKILL)
    loop.wait()
    # A save that auto-started a daemon after the kill is fine; stop it to check the restart.
    if h.daemon_pid():
        signal_daemon(h, signal.SIGKILL)
    if restart_daemon(h, r):
        check_running(h, r, expected_of(apps))


def scenario_reload(h, r, rng, quick):
    apps = [(f"app{i}", rng.randint(1, 3)) for i in range(rng.randint(3, 6))]
    start_all(h, apps)
    kill_during(h, r.sig, ["reload", "all"], r.delay)
    if restart_daemon(h, r):
        check_running(h, r, expected_of(apps))


def scenario_scale(h, r, rng, quick):
    apps = [("app0", 2), ("app1", 1)]
    start_all(h, apps)
    to = rng.choice(["8", "+5", "1"])
    ran, finished = kill_during(h, r.sig, ["scale", "app0", to], r.delay)
    r.notes.append(f"scale app0 {to}, {'done' if finished else 'cut'}")
    if to == "1":
        expected = {("app1", 0), ("app0", 0)}
    else:
        expected = expected_of(apps)
        if finished:
            expected |= {("app0", i) for i in range(8 if to == "8" else 7)}
    if restart_daemon(h, r):
        check_running(h, r, expected)


def scenario_rotation(h, r, rng, quick):
    h.file("writer.py", WRITER)
    names = [f"w{i}" for i in range(2 if quick else 3)]
    for name in names:
        h.run(
            "start", "writer.py", "--name", name, "--interpreter", "python3",
            "--log-max-size", "50K", "--log-retain", "1000", "--kill-timeout", "1000",
            check=True, env={"FAULT_APP": name},
        )
    settle(h, {(n, 0) for n in names})
    time.sleep(0.3 + r.delay)
    signal_daemon(h, r.sig)
    if not restart_daemon(h, r):
        return
    rows = check_running(h, r, {(n, 0) for n in names})
    # Let the new processes write through a few rotations, then stop everything and read.
    time.sleep(0.5)
    h.run("stop", "all", timeout=60)
    settle(h, set())
    check_lines(h, r, rows)


def check_lines(h, r, rows):
    """Across each app's rotated and current files: every "<pid> <n>" line once, and for each
    pid the numbers 0..max with no gap (lines lost in the pipe when the daemon died are after
    the last one written, so they make no gap)."""
    logs = os.path.join(h.home, "logs")
    for p in rows:
        prefix = f"{p['name']}-{p['id']}-out.log"
        files = [f for f in os.listdir(logs) if f.startswith(prefix)]
        seen = {}
        bad = 0
        lines = 0
        for f in files:
            with open(os.path.join(logs, f), "rb") as fh:
                for line in fh.read().split(b"\n"):
                    if not line:
                        continue
                    lines += 1
                    parts = line.split(b" ")
                    if len(parts) != 2 or not parts[0].isdigit() or not parts[1].isdigit():
                        bad += 1
                        if bad <= 3:
                            r.fail(f"{p['name']}: a split or mixed line in {f}: {line[:80]!r}")
                        continue
                    seen.setdefault(int(parts[0]), []).append(int(parts[1]))
        dup = gaps = 0
        for pid, nums in seen.items():
            s = set(nums)
            dup += len(nums) - len(s)
            gaps += max(s) + 1 - len(s)
        if dup:
            r.lines_duplicated += dup
            r.fail(f"{p['name']}: {dup} lines duplicated across {len(files)} files")
        if gaps:
            r.lines_lost += gaps
            r.fail(f"{p['name']}: {gaps} lines missing before the last one written ({len(files)} files)")
        r.notes.append(f"{p['name']}: {lines} lines in {len(files)} files from {len(seen)} processes")


# ------------------------------------------------------------------------------------------
# Scenarios run once
# ------------------------------------------------------------------------------------------


def scenario_kill_list(h, r, rng, quick):
    """`bm2 kill` after start and stop: the next daemon lists nothing (three rounds, each in a
    fresh home)."""
    for round_ in range(3):
        sub = h if round_ == 0 else Home(h.bin)
        try:
            # No wait between the commands: the race is with the state writes they cause.
            sub.run("start", ecosystem(sub, [("app0", 1), ("app1", 2)]), check=True)
            sub.run("stop", "app0", check=True)
            p = sub.run("kill", timeout=60)
            if p.returncode != 0:
                r.fail(f"bm2 kill failed: {p.stderr.strip()}")
            left = [pid for pid, m in marked(sub.home).items() if m["kind"] != "cli"]
            if left:
                r.orphans += len(left)
                r.fail(f"processes left after bm2 kill: {left}")
            rows = sub.list()
            if rows:
                r.fail(f"round {round_ + 1}: after bm2 kill the next daemon lists {len(rows)} processes: "
                       + ", ".join(f"{p['name']} ({p['status']})" for p in rows))
            check_files(sub, r)
        finally:
            if sub is not h:
                sub.teardown()


def scenario_kill_no_daemon(h, r, rng, quick):
    """`bm2 kill` when the daemon is gone (SIGKILL) but its apps run: they are stopped."""
    start_all(h, [("app0", 1), ("app1", 2)])
    signal_daemon(h, signal.SIGKILL)
    running = [pid for pid, m in marked(h.home).items() if m["kind"] == "app"]
    p = h.run("kill", timeout=60)
    r.notes.append(f"bm2 kill said: {(p.stdout + p.stderr).strip()[:120]}")
    wait_until(lambda: not any(alive(pid) for pid in running), 3)
    left = [pid for pid in running if alive(pid)]
    if left:
        r.orphans += len(left)
        r.fail(f"{len(left)} recorded apps still run after `bm2 kill` with no daemon: {left}")


def fill(path):
    """Writes zeros to `path` until the disk is full; returns the bytes written."""
    n = 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for size in (65536, 512, 1):
            chunk = b"\0" * size
            try:
                while True:
                    n += os.write(fd, chunk)
            except OSError:
                pass
    finally:
        os.close(fd)
    return n


def scenario_tmpfs(h, r, rng, quick, logs_only):
    mnt = os.path.join(h.scratch, "mnt")
    mount_tmpfs(mnt, "2m")
    target = h
    try:
        if not logs_only:
            target = Home(h.bin, root=os.path.join(mnt, "home"))
        target.file("chatty.py", CHATTY)
        names = ["c0", "c1", "c2"]
        for name in names:
            args = ["start", "chatty.py", "--name", name, "--interpreter", "python3"]
            if logs_only:
                args += ["-o", os.path.join(mnt, f"{name}.log"), "-e", os.path.join(mnt, f"{name}-err.log")]
            target.run(*args, check=True, env={"FAULT_APP": name})
        rows = settle(target, {(n, 0) for n in names})
        pids = {p["name"]: p["pid"] for p in rows}
        daemon = target.daemon_pid()
        filler = os.path.join(mnt, "filler")
        filled = fill(filler)
        r.notes.append(f"filler {filled // 1024} KB")
        time.sleep(1.0)
        # While full: change the list (state write fails) and save (dump write fails).
        stop = target.run("stop", "c0")
        save = target.run("save")
        r.notes.append(f"while full: stop exit {stop.returncode}, save exit {save.returncode}: "
                       f"{(save.stdout + save.stderr).strip()[:100]}")
        time.sleep(0.5)
        if daemon is None or not alive(daemon):
            r.fail("the daemon died when the disk filled")
            return
        rows = target.list()
        for p in rows:
            if p["name"] != "c0" and (p["status"] != "online" or p["pid"] != pids[p["name"]]):
                r.fail(f"{p['name']} did not keep running on a full disk: {p['status']} pid {p['pid']}")
        check_files(target, r)
        leftovers = [f for f in os.listdir(target.home) if f.endswith(".tmp")]
        if leftovers:
            r.fail(f"temporary files left in the home while full: {leftovers}")
        # Space returns.
        os.remove(filler)
        start = target.run("restart", "c0")
        save = target.run("save")
        if start.returncode != 0 or save.returncode != 0:
            r.fail(f"no recovery after space returned: start {start.stderr.strip()} save {save.stderr.strip()}")
        check_running(target, r, {(n, 0) for n in names})
        with open(os.path.join(target.home, "state.json")) as f:
            state = json.load(f)
        c0 = [i for i in state.get("instances", []) if i["spec"]["name"] == "c0"]
        if not c0 or not c0[0].get("running"):
            r.fail("state.json does not record c0 as running after space returned")
        with open(os.path.join(target.home, "dump.json")) as f:
            dump = json.load(f)
        if len(dump.get("instances", [])) != 3:
            r.fail(f"dump.json after space returned holds {len(dump.get('instances', []))} instances")
        log = os.path.join(mnt, "c1.log") if logs_only else os.path.join(target.home, "logs", f"c1-{pids_id(rows, 'c1')}-out.log")
        size = os.path.getsize(log) if os.path.exists(log) else 0
        if not wait_until(lambda: os.path.exists(log) and os.path.getsize(log) > size + 1000, 5):
            r.fail(f"{log} does not grow again after space returned")
    finally:
        # Processes first (they hold files in the mount), then the mount.
        target.stop()
        h.stop()
        umount(mnt)
        if target is not h:
            target.teardown()


def pids_id(rows, name):
    return next(p["id"] for p in rows if p["name"] == name)


CORRUPTIONS = {
    "truncated": lambda valid: valid[: len(valid) // 2],
    "garbage": lambda valid: bytes(random.Random(7).randrange(256) for _ in range(300)),
    "empty": lambda valid: b"",
    "wrong version": lambda valid: json.dumps(dict(json.loads(valid), version=99)).encode(),
    "not a state": lambda valid: b'{"apps": "yes"}',
}


def scenario_corrupt(h, r, rng, quick):
    """Corrupt state.json and dump.json: the daemon starts and the user is told."""
    results = []
    for which in ("state.json", "dump.json"):
        for kind, corrupt in CORRUPTIONS.items():
            sub = Home(h.bin)
            problems = []
            try:
                start_all(sub, [("app0", 1), ("app1", 1)])
                sub.run("save", check=True)
                signal_daemon(sub, signal.SIGKILL)
                for pid, m in marked(sub.home).items():
                    kill_checked(pid, m["start"])
                wait_until(lambda: not marked(sub.home), 5)
                path = os.path.join(sub.home, which)
                with open(path, "rb") as f:
                    valid = f.read()
                with open(path, "wb") as f:
                    f.write(corrupt(valid))
                if which == "state.json":
                    p = sub.run("list", timeout=60)
                else:
                    sub.run("ping", timeout=60)
                    p = sub.run("resurrect", timeout=60)
                said = (p.stdout + p.stderr).strip()
                if which == "state.json" and kind == "wrong version":
                    # A newer bm2's list is never overwritten: the daemon refuses to start, and
                    # says why.
                    if sub.daemon_pid() is not None or "newer bm2" not in said:
                        problems.append(f"a newer state file is not refused clearly: {said[:160]!r}")
                    results.append((which, kind, problems))
                    continue
                if sub.daemon_pid() is None:
                    problems.append(f"no daemon runs (bm2 said: {said[:160]!r})")
                if which == "state.json" and "state" not in said.lower():
                    problems.append(f"the user is not told (bm2 list said: {said[:160]!r})")
                if which == "dump.json":
                    if p.returncode == 0:
                        problems.append(f"resurrect succeeded: {said[:160]!r}")
                    elif "dump" not in said.lower():
                        problems.append(f"resurrect does not name the dump file: {said[:160]!r}")
            except Exception as e:
                problems.append(f"error: {e}")
            finally:
                sub.teardown()
            results.append((which, kind, problems))
    for which, kind, problems in results:
        for pr in problems:
            r.fail(f"{which} {kind}: {pr}")
    r.notes.append(f"{sum(1 for *_, p in results if not p)} of {len(results)} corruptions handled")


SCENARIOS = {
    "start": scenario_start,
    "save": scenario_save,
    "reload": scenario_reload,
    "scale": scenario_scale,
    "rotation": scenario_rotation,
    "kill-list": scenario_kill_list,
    "kill-no-daemon": scenario_kill_no_daemon,
    "tmpfs-home": lambda h, r, rng, q: scenario_tmpfs(h, r, rng, q, False),
    "tmpfs-logs": lambda h, r, rng, q: scenario_tmpfs(h, r, rng, q, True),
    "corrupt": scenario_corrupt,
}


# ------------------------------------------------------------------------------------------
# Main
# ------------------------------------------------------------------------------------------


def run_one(name, bin_path, rng, quick, label):
    global KEEP
    r = Result(name, label)
    r.sig = rng.choice([signal.SIGKILL, signal.SIGTERM])
    r.delay = rng.uniform(0, 0.5)
    if name in KILL_SCENARIOS:
        r.label += f" {r.sig.name} at {int(r.delay * 1000)} ms"
    h = Home(bin_path)
    t = time.monotonic()
    try:
        SCENARIOS[name](h, r, rng, quick)
    except Exception as e:
        r.fail(f"error: {type(e).__name__}: {e}")
    finally:
        keep, KEEP = KEEP, KEEP and not r.ok
        h.teardown()
        KEEP = keep
    r.seconds = time.monotonic() - t
    return r


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iterations", type=int, default=None, help="rounds of the kill scenarios (default 10, --quick 2)")
    ap.add_argument("--bin", default=os.path.join(REPO_ROOT, "target", "release", "bm2"), help="the bm2 binary")
    ap.add_argument("--quick", action="store_true", help="fewer apps and rounds")
    ap.add_argument("--only", default="", help="comma-separated scenarios: " + ",".join(ALL_SCENARIOS))
    ap.add_argument("--seed", type=int, default=None, help="random seed (printed when not given)")
    ap.add_argument("--json", default=None, help="write the results to this file")
    ap.add_argument("--keep", action="store_true", help="keep the homes of failed runs (processes are still stopped)")
    args = ap.parse_args()
    global KEEP
    KEEP = args.keep
    if os.geteuid() != 0:
        sys.exit("faults.py needs root (it mounts tmpfs)")
    bin_path = os.path.abspath(args.bin)
    if not os.access(bin_path, os.X_OK):
        sys.exit(f"no bm2 binary at {bin_path}: run `cargo build --release` or pass --bin")
    iterations = args.iterations if args.iterations is not None else (2 if args.quick else 10)
    only = [s for s in args.only.split(",") if s] or ALL_SCENARIOS
    unknown = set(only) - set(ALL_SCENARIOS)
    if unknown:
        sys.exit(f"unknown scenarios: {', '.join(sorted(unknown))}")
    seed = args.seed if args.seed is not None else random.randrange(1 << 32)
    rng = random.Random(seed)
    log(f"bm2 {bin_path}, {iterations} iterations, seed {seed}")

    atexit.register(cleanup_all)
    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, lambda *_: sys.exit(130))

    results = []
    for it in range(iterations):
        for name in [s for s in ITERATED if s in only]:
            r = run_one(name, bin_path, rng, args.quick, f"#{it + 1} {name}")
            results.append(r)
            report(r)
    for name in [s for s in ONCE_SCENARIOS if s in only]:
        r = run_one(name, bin_path, rng, args.quick, name)
        results.append(r)
        report(r)
    cleanup_all()
    summary(results, iterations, seed)
    if args.json:
        with open(args.json, "w") as f:
            json.dump([vars(r) | {"sig": getattr(r.sig, "name", None)} for r in results], f, indent=1, default=str)
    sys.exit(0 if all(r.ok for r in results) else 1)


def report(r):
    status = "ok  " if r.ok else "FAIL"
    log(f"{status} {r.label} ({r.seconds:.1f} s){': ' + '; '.join(r.notes) if r.notes else ''}")
    for p in r.problems[:8]:
        log(f"       {p}")
    if len(r.problems) > 8:
        log(f"       ... and {len(r.problems) - 8} more")


def summary(results, iterations, seed):
    print()
    print(f"iterations:       {iterations} (seed {seed})")
    print(f"scenario runs:    {len(results)}")
    print(f"apps lost:        {sum(r.lost for r in results)}")
    print(f"duplicated:       {sum(r.duplicated for r in results)}")
    print(f"orphans:          {sum(r.orphans for r in results)}")
    print(f"invalid files:    {sum(r.invalid_files for r in results)}")
    print(f"log lines lost:   {sum(r.lines_lost for r in results)}")
    print(f"log lines twice:  {sum(r.lines_duplicated for r in results)}")
    by = {}
    for r in results:
        s = by.setdefault(r.scenario, [0, 0])
        s[0 if r.ok else 1] += 1
    for name in ALL_SCENARIOS:
        if name in by:
            print(f"  {name:<15} {by[name][0]} passed, {by[name][1]} failed")
    passed = sum(1 for r in results if r.ok)
    print(f"{passed} passed, {len(results) - passed} failed")


if __name__ == "__main__":
    main()
