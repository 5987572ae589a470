#!/usr/bin/env python3
"""Core benchmark: bm2 against PM2, side by side, in one run.

Stdlib only. See bench/README.md for how to run it and what each metric means.

Every PM2 run gets its own PM2_HOME=$(mktemp -d) and every bm2 run its own
BM2_HOME=$(mktemp -d).  Everything this script starts is torn down at the end of
each scenario and again on exit (also on error / Ctrl-C / SIGTERM):
`<manager> kill`, then SIGTERM/SIGKILL of the pids it recorded (daemon pid file,
jlist pids, and processes whose environment carries this run's unique home
directory), then the home directory is removed.  Nothing is ever killed by name.
"""

import argparse
import atexit
import datetime
import hashlib
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(BENCH_DIR)
SECTIONS = ["list", "cold", "rss", "crash", "many"]
SECTION_HELP = {
    "list": "list latency with 10 apps",
    "cold": "cold start (fresh home, no daemon) until the app is online",
    "rss": "daemon RSS with 0, 10, 100 apps",
    "crash": "crash-to-restart gap, C app and bash app (+ floors: C fork/exec parent, plain shell loop)",
    "many": "200 apps: start until online, list latency, daemon idle CPU",
}
CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(msg):
    ts = time.strftime("%H:%M:%S")
    print(f"[{ts}] {msg}", file=sys.stderr, flush=True)


def median(xs):
    return statistics.median(xs) if xs else None


def pct(xs, p):
    if not xs:
        return None
    s = sorted(xs)
    k = (len(s) - 1) * p
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def summary(xs):
    if not xs:
        return {"n": 0}
    return {
        "n": len(xs),
        "median": median(xs),
        "min": min(xs),
        "p90": pct(xs, 0.9),
        "max": max(xs),
    }


# --------------------------------------------------------------------------
# /proc helpers


def proc_stat(pid):
    """Return (state, starttime_ticks, utime+stime ticks) or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read().decode("utf-8", "replace")
    except OSError:
        return None
    rest = data[data.rfind(")") + 2:].split()
    # rest[0] is field 3 (state); field n is rest[n-3]
    try:
        return rest[0], int(rest[19]), int(rest[11]) + int(rest[12])
    except (IndexError, ValueError):
        return None


def alive(pid):
    st = proc_stat(pid)
    return st is not None and st[0] not in ("Z", "X")


def vmrss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def scan_procs(markers):
    """Pids of live processes whose environ contains one of the exact
    `VAR=value` entries in `markers`, or whose cmdline mentions one of our
    unique temp paths.  Used only to find processes this run started."""
    env_marks = [m.encode() for m in markers if "=" in m]
    path_marks = [m.encode() for m in markers if "=" not in m]
    found = []
    me = os.getpid()
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        pid = int(d)
        if pid == me:
            continue
        hit = False
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                env = f.read().split(b"\0")
            hit = any(m in env for m in env_marks)
        except OSError:
            pass
        if not hit and path_marks:
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    cmd = f.read()
                hit = any(m in cmd for m in path_marks)
            except OSError:
                pass
        if hit and alive(pid):
            found.append(pid)
    return found


class Registry:
    """Everything this run started, so it can be torn down on any exit."""

    def __init__(self):
        self.homes = []
        self.procs = []  # Popen objects (floor loop), killed by process group
        self.tmpdirs = []
        self.final_dirs = []  # kept for the whole run (binary snapshot)

    def cleanup(self, final=False):
        for p in list(self.procs):
            stop_popen_group(p)
        self.procs.clear()
        for h in list(self.homes):
            try:
                h.teardown()
            except Exception as e:  # keep going: clean up the rest
                log(f"cleanup of {h.path} failed: {e}")
        for d in list(self.tmpdirs):
            shutil.rmtree(d, ignore_errors=True)
        self.tmpdirs.clear()
        if final:
            for d in list(self.final_dirs):
                shutil.rmtree(d, ignore_errors=True)
            self.final_dirs.clear()


REG = Registry()


def stop_popen_group(p):
    """Stop a Popen started with start_new_session=True (its pgid is its pid)."""
    if p.poll() is None:
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            p.wait(timeout=3)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait(timeout=3)
    else:
        # the leader is gone; members of its group may remain
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    if p in REG.procs:
        REG.procs.remove(p)


def make_tmpdir(prefix):
    d = tempfile.mkdtemp(prefix=prefix)
    REG.tmpdirs.append(d)
    return d


# --------------------------------------------------------------------------
# managers


class CmdError(Exception):
    def __init__(self, cmd, rc, out, err, note=""):
        self.cmd, self.rc, self.out, self.err, self.note = cmd, rc, out, err, note
        super().__init__(self.describe())

    def describe(self):
        def tail(s):
            s = (s or "").strip()
            return s[-1500:] if s else "(empty)"

        return (
            f"command failed{': ' + self.note if self.note else ''}\n"
            f"  $ {' '.join(self.cmd)}\n  exit: {self.rc}\n"
            f"  stdout: {tail(self.out)}\n  stderr: {tail(self.err)}"
        )


class Manager:
    def __init__(self, key, label, binary, home_var, pidfile):
        self.key, self.label, self.binary = key, label, binary
        self.home_var, self.pidfile = home_var, pidfile
        self.display = binary  # path shown in reports (the binary may be a private copy)
        self.ecosystem_ok = None  # None = not probed yet
        self.ecosystem_probe = None
        self.ping_starts_daemon = None

    def new_home(self):
        return Home(self)


class Home:
    """One temporary manager home (PM2_HOME / BM2_HOME) and its daemon."""

    def __init__(self, mgr):
        self.mgr = mgr
        self.path = tempfile.mkdtemp(prefix=f"bench-{mgr.key}-home-")
        self.env = dict(os.environ)
        for v in ("PM2_HOME", "BM2_HOME"):
            self.env.pop(v, None)
        self.env[mgr.home_var] = self.path
        self.recorded = {}  # pid -> starttime
        self.closed = False
        REG.homes.append(self)

    # -- commands
    def run(self, args, timeout=120, check=True, quiet=False):
        """Run `<binary> args`; returns (rc, out, err, seconds).

        Output goes to files, not pipes, so a daemon that inherits the CLI's
        stdout cannot make us wait for EOF."""
        cmd = [self.mgr.binary] + list(args)
        shown = [self.mgr.display] + list(args)
        if quiet:
            t0 = time.perf_counter()
            try:
                rc = subprocess.run(cmd, env=self.env, stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                    timeout=timeout).returncode
            except subprocess.TimeoutExpired:
                raise CmdError(shown, "timeout", "", "", f"no exit after {timeout}s")
            dt = time.perf_counter() - t0
            if check and rc != 0:
                if args and args[0] in ("list", "jlist", "ping"):
                    # read-only: re-run once with output captured, for the report
                    _, out, err, _ = self.run(args, timeout=timeout, check=False)
                    raise CmdError(shown, rc, out, err, "output below is from an identical re-run")
                raise CmdError(shown, rc, "(discarded)", "(discarded)")
            return rc, "", "", dt
        with tempfile.TemporaryFile() as fo, tempfile.TemporaryFile() as fe:
            t0 = time.perf_counter()
            try:
                rc = subprocess.run(cmd, env=self.env, stdin=subprocess.DEVNULL,
                                    stdout=fo, stderr=fe, timeout=timeout).returncode
            except subprocess.TimeoutExpired:
                rc = "timeout"
            dt = time.perf_counter() - t0
            fo.seek(0)
            fe.seek(0)
            out = fo.read().decode("utf-8", "replace")
            err = fe.read().decode("utf-8", "replace")
        if rc == "timeout" or (check and rc != 0):
            raise CmdError(shown, rc, out, err,
                           f"no exit after {timeout}s" if rc == "timeout" else "")
        return rc, out, err, dt

    # -- pids
    def record(self, pid):
        if not pid or pid in self.recorded:
            return
        st = proc_stat(pid)
        if st:
            self.recorded[pid] = st[1]

    def daemon_pid(self):
        try:
            with open(os.path.join(self.path, self.mgr.pidfile)) as f:
                pid = int(f.read().strip())
        except (OSError, ValueError):
            return None
        if alive(pid):
            self.record(pid)
            return pid
        return None

    def wait_daemon(self, timeout=10.0):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            pid = self.daemon_pid()
            if pid:
                return pid
            time.sleep(0.02)
        return None

    def jlist(self, timeout=120):
        rc, out, err, _ = self.run(["jlist"], timeout=timeout)
        i = out.find("[")
        if i < 0:
            raise CmdError([self.mgr.display, "jlist"], rc, out, err, "no JSON array in output")
        try:
            data, _ = json.JSONDecoder().raw_decode(out[i:])
        except ValueError as e:
            raise CmdError([self.mgr.display, "jlist"], rc, out, err, f"bad JSON: {e}")
        for app in data:
            if isinstance(app, dict) and isinstance(app.get("pid"), int):
                self.record(app["pid"])
        return data

    def online_names(self, apps):
        names = set()
        for a in apps:
            try:
                if a["pm2_env"]["status"] == "online":
                    names.add(a["name"])
            except (KeyError, TypeError):
                pass
        return names

    def wait_online(self, names, timeout=60.0):
        """Poll jlist until every name is online. Returns seconds waited
        (perf_counter at the first jlist that shows them all), or raises."""
        want = set(names)
        end = time.monotonic() + timeout
        last = None
        while True:
            apps = self.jlist()
            last = apps
            if want <= self.online_names(apps):
                return time.perf_counter()
            if time.monotonic() > end:
                got = sorted(self.online_names(last))
                raise CmdError([self.mgr.display, "jlist"], 0, json.dumps(
                    [{"name": a.get("name"), "status": (a.get("pm2_env") or {}).get("status")}
                     for a in (last or [])])[:1500], "",
                    f"not all {len(want)} apps online after {timeout}s ({len(want & set(got))} are)")
            time.sleep(0.05)

    # -- teardown
    def teardown(self):
        if self.closed:
            return
        self.closed = True
        self.daemon_pid()
        try:
            self.run(["kill"], timeout=60, check=False)
        except CmdError as e:
            log(f"{self.mgr.label} kill: {e.note}")
        # processes we recorded, plus any process carrying this home in its env
        cands = dict(self.recorded)
        dp = self.daemon_pid()
        if dp:
            cands.setdefault(dp, proc_stat(dp)[1])
        for pid in scan_procs([f"{self.mgr.home_var}={self.path}", self.path]):
            st = proc_stat(pid)
            if st:
                cands.setdefault(pid, st[1])
        targets = []
        for pid, start in cands.items():
            st = proc_stat(pid)
            if st and st[1] == start and st[0] not in ("Z", "X"):
                targets.append(pid)
        if targets:
            log(f"{self.mgr.label}: {len(targets)} process(es) left after kill; terminating {targets[:10]}")
            for pid in targets:
                try:
                    os.kill(pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
            end = time.monotonic() + 3
            while time.monotonic() < end and any(alive(p) for p in targets):
                time.sleep(0.05)
            for pid in targets:
                st = proc_stat(pid)
                if st and st[1] == cands[pid] and st[0] not in ("Z", "X"):
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
        shutil.rmtree(self.path, ignore_errors=True)
        if self in REG.homes:
            REG.homes.remove(self)


# --------------------------------------------------------------------------
# apps


def write_script(path, body):
    with open(path, "w") as f:
        f.write("#!/usr/bin/env bash\n" + body)
    os.chmod(path, 0o755)
    return path


def idle_app(dirpath):
    """Tiny long-running app: records its start time in marks/<pid>, then
    becomes `sleep` (one process, no children left behind)."""
    marks = os.path.join(dirpath, "marks")
    os.makedirs(marks, exist_ok=True)
    script = write_script(os.path.join(dirpath, "idle.sh"),
                          f'printf "%s\\n" "$EPOCHREALTIME" > "{marks}/$$"\n'
                          "exec sleep 1000000\n")
    return script, marks


def crash_app(dirpath, run_ms):
    logf = os.path.join(dirpath, "crash.log")
    secs = f"{run_ms / 1000:.3f}"
    script = write_script(os.path.join(dirpath, "crash.sh"),
                          f'echo "S $EPOCHREALTIME" >> "{logf}"\n'
                          f"sleep {secs}\n"
                          f'echo "E $EPOCHREALTIME" >> "{logf}"\n'
                          "exit 1\n")
    return script, logf


def count_marks(marks):
    try:
        return len(os.listdir(marks))
    except OSError:
        return 0


def ensure_daemon(home, res_notes):
    """Bring the daemon up with zero apps. Returns its pid."""
    pid = home.daemon_pid()
    if pid:
        return pid
    try:
        home.run(["ping"], timeout=30, check=False)
    except CmdError:
        pass
    pid = home.wait_daemon(3.0)
    if pid:
        home.mgr.ping_starts_daemon = True
        return pid
    # fallback: start a throwaway app and delete it
    home.mgr.ping_starts_daemon = False
    d = make_tmpdir(f"bench-{home.mgr.key}-warm-")
    script, _ = idle_app(d)
    home.run(["start", script, "--name", "bench-warmup"], timeout=60)
    home.run(["delete", "bench-warmup"], timeout=60)
    pid = home.wait_daemon(5.0)
    note = f"{home.mgr.label}: `ping` did not start a daemon; started it with start+delete of a throwaway app"
    if note not in res_notes:
        res_notes.append(note)
    if not pid:
        raise RuntimeError(f"{home.mgr.label}: no live daemon pid in {home.mgr.pidfile} after start")
    return pid


def write_ecosystem(dirpath, names, script):
    path = os.path.join(dirpath, "ecosystem.json")
    with open(path, "w") as f:
        json.dump({"apps": [{"name": n, "script": script} for n in names]}, f, indent=1)
    return path


def probe_ecosystem(mgr):
    """Does `<mgr> start ecosystem.json` start the apps in it? Probed once, in a
    throwaway home."""
    if mgr.ecosystem_ok is not None:
        return mgr.ecosystem_ok
    home = mgr.new_home()
    d = make_tmpdir(f"bench-{mgr.key}-eco-")
    script, _ = idle_app(d)
    names = ["eco-probe-0", "eco-probe-1"]
    eco = write_ecosystem(d, names, script)
    ok, detail = False, ""
    try:
        rc, out, err, _ = home.run(["start", eco], timeout=60, check=False)
        detail = f"$ {mgr.display} start {eco}\nexit {rc}\nstdout: {out.strip()[-800:]}\nstderr: {err.strip()[-800:]}"
        if rc == 0:
            try:
                home.wait_online(names, timeout=10)
                apps = home.jlist()
                ok = sorted(a.get("name") for a in apps) == names
                if not ok:
                    detail += f"\njlist names: {[a.get('name') for a in apps]}"
            except CmdError as e:
                detail += "\n" + e.describe()
    finally:
        home.teardown()
    mgr.ecosystem_ok = ok
    mgr.ecosystem_probe = detail
    log(f"{mgr.label}: ecosystem file support: {'yes' if ok else 'no'}")
    return ok


def api_start_body(home, names, script, workdir):
    """body.json for bm2's `POST /v1/start`: one AppSpec per app (name, script,
    cwd; every other field takes its default) and the caller's environment."""
    body = {
        "apps": [{"name": n, "script": script, "cwd": os.path.dirname(script)} for n in names],
        "client_env": dict(home.env),
        "force": False,
    }
    path = os.path.join(workdir, "body.json")
    with open(path, "w") as f:
        json.dump(body, f)
    return path


def api_start(home, body_path, timeout=600):
    """One request to the bm2 daemon's API: `curl --unix-socket $BM2_HOME/daemon.sock
    -X POST http://localhost/v1/start -H 'content-type: application/json' -d @body.json`
    (Python's http.client over the same socket when curl is missing)."""
    sock = os.path.join(home.path, "daemon.sock")
    curl = shutil.which("curl")
    if curl:
        resp = body_path + ".response"
        cmd = [curl, "-sS", "--unix-socket", sock, "-X", "POST", "http://localhost/v1/start",
               "-H", "content-type: application/json", "-d", "@" + body_path,
               "-o", resp, "-w", "%{http_code}"]
        try:
            r = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                               env=home.env, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise CmdError(cmd, "timeout", "", "", f"no exit after {timeout}s")
        try:
            with open(resp, encoding="utf-8", errors="replace") as f:
                text = f.read()
        except OSError:
            text = ""
        code = r.stdout.strip()
        if r.returncode != 0 or not code.startswith("2"):
            raise CmdError(cmd, r.returncode, f"HTTP {code}: {text}", r.stderr, "bm2 API start failed")
    else:
        import http.client
        import socket as socketmod

        class UnixConn(http.client.HTTPConnection):
            def connect(self):
                self.sock = socketmod.socket(socketmod.AF_UNIX, socketmod.SOCK_STREAM)
                self.sock.settimeout(timeout)
                self.sock.connect(sock)

        cmd = ["(python http.client)", "POST", "/v1/start", "via", sock]
        with open(body_path, "rb") as f:
            data = f.read()
        c = UnixConn("localhost")
        c.request("POST", "/v1/start", body=data, headers={"content-type": "application/json"})
        r = c.getresponse()
        text = r.read().decode("utf-8", "replace")
        code = str(r.status)
        c.close()
        if not code.startswith("2"):
            raise CmdError(cmd, code, text, "", "bm2 API start failed")
    try:
        data = json.loads(text)
    except ValueError:
        raise CmdError(cmd, 0, text, "", "response is not JSON")
    if data.get("errors"):
        raise CmdError(cmd, 0, text[:1500], "", "bm2 API start reported errors")
    return data


def resolve_method(mgr, method):
    """auto: PM2 → one ecosystem file (if supported, else sequential), bm2 → one
    API request (bm2 does not read ecosystem files yet).  `api` is bm2-only: PM2
    gets the ecosystem file then."""
    if method == "sequential":
        return "sequential"
    if mgr.key == "bm2" and method in ("auto", "api"):
        return "api"
    if method in ("auto", "api"):
        return "ecosystem" if probe_ecosystem(mgr) else "sequential"
    return method  # ecosystem


METHOD_LABEL = {
    "api": "1 API request (`curl POST /v1/start`, all apps in one body)",
    "ecosystem": "1 ecosystem file",
}


def start_many(home, names, script, method, workdir):
    """Start apps `names`. method: auto | ecosystem | api | sequential.
    Returns (method_used, seconds of the start command(s))."""
    how = resolve_method(home.mgr, method)
    if how == "ecosystem" and method == "ecosystem" and probe_ecosystem(home.mgr) is False:
        raise RuntimeError(f"{home.mgr.label} does not support ecosystem files (see probe)")
    if how == "api":
        body = api_start_body(home, names, script, workdir)
        t0 = time.perf_counter()
        api_start(home, body)
    elif how == "ecosystem":
        eco = write_ecosystem(workdir, names, script)
        t0 = time.perf_counter()
        home.run(["start", eco], timeout=600)
    else:
        t0 = time.perf_counter()
        for n in names:
            home.run(["start", script, "--name", n], timeout=60)
    used = METHOD_LABEL.get(how, f"{len(names)} × `start`")
    return used, time.perf_counter() - t0


# --------------------------------------------------------------------------
# results


class Results:
    def __init__(self, managers):
        self.managers = managers
        self.metrics = []  # dicts
        self.errors = []
        self.notes = []
        self.sections = {}

    def add(self, mid, label, unit, key, value, samples=None, extra=None):
        m = next((x for x in self.metrics if x["id"] == mid), None)
        if m is None:
            m = {"id": mid, "label": label, "unit": unit, "values": {}, "samples": {}, "extra": {}}
            self.metrics.append(m)
        m["values"][key] = value
        if samples is not None:
            m["samples"][key] = samples
        if extra:
            m["extra"][key] = extra

    def error(self, section, label, exc):
        msg = exc.describe() if isinstance(exc, CmdError) else f"{type(exc).__name__}: {exc}"
        self.errors.append({"section": section, "manager": label, "error": msg,
                            "traceback": traceback.format_exc(limit=6)})
        log(f"ERROR [{section}] {label}: {msg}")


def fmt(v, unit):
    if v is None:
        return "—"
    if isinstance(v, str):
        return v
    if unit == "ms":
        return f"{v:.1f} ms" if v < 100 else f"{v:.0f} ms"
    if unit == "s":
        return f"{v:.2f} s"
    if unit == "MiB":
        return f"{v:.1f} MiB"
    if unit == "%":
        return f"{v:.2f} %"
    return f"{v:g} {unit}"


def markdown_table(res, pm2_key="pm2", bm2_key="bm2"):
    lines = ["| metric | PM2 | bm2 | ratio |", "| --- | ---: | ---: | ---: |"]
    for m in res.metrics:
        a = m["values"].get(pm2_key)
        b = m["values"].get(bm2_key)
        if m.get("floor") is not None:
            pass
        ratio = "—"
        if isinstance(a, (int, float)) and isinstance(b, (int, float)):
            if a > 0:
                ratio = f"{b / a:.3f}×" if b / a < 0.1 else f"{b / a:.2f}×"
            elif b == 0:
                ratio = "1.00×"
        label = m["label"]
        if m.get("note"):
            label += f" ({m['note']})"
        lines.append(f"| {label} | {fmt(a, m['unit'])} | {fmt(b, m['unit'])} | {ratio} |")
    return "\n".join(lines)


# --------------------------------------------------------------------------
# sections


def sec_list(args, mgrs, res):
    n_apps, runs = args.list_apps, args.list_runs
    homes = {}
    live = []
    try:
        for mgr in mgrs:
            try:
                home = homes[mgr.key] = mgr.new_home()
                d = make_tmpdir(f"bench-{mgr.key}-list-")
                script, _ = idle_app(d)
                ensure_daemon(home, res.notes)
                names = [f"app-{i}" for i in range(n_apps)]
                for n in names:
                    home.run(["start", script, "--name", n], timeout=60)
                home.wait_online(names, timeout=60)
                live.append(mgr)
            except Exception as e:
                res.error("list", mgr.label, e)
        if not live:
            return
        time.sleep(args.settle)
        for mgr in live:  # warm-up (page cache, JIT caches), not counted
            for _ in range(2):
                homes[mgr.key].run(["list"], timeout=60, quiet=True, check=False)
        samples = {m.key: [] for m in live}
        failed = set()
        for i in range(runs):
            order = live if i % 2 == 0 else list(reversed(live))  # interleave
            for mgr in order:
                if mgr.key in failed:
                    continue
                try:
                    _, _, _, dt = homes[mgr.key].run(["list"], timeout=60, quiet=True)
                    samples[mgr.key].append(dt * 1000)
                except Exception as e:
                    failed.add(mgr.key)
                    res.error("list", mgr.label, e)
        # harness floor: spawning a trivial process the same way
        floor = []
        for _ in range(runs):
            t0 = time.perf_counter()
            subprocess.run(["/bin/true"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
            floor.append((time.perf_counter() - t0) * 1000)
        res.spawn_floor = {"median_ms": median(floor), "samples": floor}
        for mgr in live:
            s = samples[mgr.key]
            if s:
                res.add("list10", f"`list` latency, {n_apps} apps (median of {len(s)})", "ms",
                        mgr.key, median(s), s, summary(s))
    finally:
        for h in homes.values():
            h.teardown()


def sec_cold(args, mgrs, res):
    runs = args.cold_runs
    data = {m.key: {"start_cmd": [], "process": [], "online": []} for m in mgrs}
    failed = set()
    for i in range(runs):
        order = mgrs if i % 2 == 0 else list(reversed(mgrs))
        for mgr in order:
            if mgr.key in failed:
                continue
            home = mgr.new_home()
            try:
                d = make_tmpdir(f"bench-{mgr.key}-cold-")
                script, marks = idle_app(d)
                if home.daemon_pid():
                    raise RuntimeError("daemon already running in a fresh home?")
                t0_real = time.time()
                t0 = time.perf_counter()
                home.run(["start", script, "--name", "cold"], timeout=60)
                t1 = time.perf_counter()
                home.wait_daemon(5)
                # the app's own start marker (CLOCK_REALTIME, same as time.time())
                end = time.monotonic() + 10
                ts = None
                while time.monotonic() < end:
                    fs = os.listdir(marks)
                    if fs:
                        with open(os.path.join(marks, fs[0])) as f:
                            txt = f.read().strip()
                        if txt:
                            ts = float(txt)
                            break
                    time.sleep(0.002)
                if ts is None:
                    raise RuntimeError("app never wrote its start marker within 10 s of `start` returning")
                t_online = home.wait_online(["cold"], timeout=15)
                data[mgr.key]["start_cmd"].append((t1 - t0) * 1000)
                data[mgr.key]["process"].append((ts - t0_real) * 1000)
                data[mgr.key]["online"].append((t_online - t0) * 1000)
            except Exception as e:
                failed.add(mgr.key)
                res.error("cold", mgr.label, e)
            finally:
                home.teardown()
    for mgr in mgrs:
        d = data[mgr.key]
        if not d["start_cmd"]:
            continue
        n = len(d["start_cmd"])
        res.add("cold_cmd", f"cold `start` command wall time, no daemon running (median of {n})", "ms",
                mgr.key, median(d["start_cmd"]), d["start_cmd"], summary(d["start_cmd"]))
        res.add("cold_proc", f"cold start → app process running (its start marker) (median of {n})", "ms",
                mgr.key, median(d["process"]), d["process"], summary(d["process"]))
        res.add("cold_online", f"cold start → online confirmed by first `jlist` after start returns (median of {n})",
                "ms", mgr.key, median(d["online"]), d["online"], summary(d["online"]))


def sample_rss(pid, n=5, gap=0.5):
    vals = []
    for i in range(n):
        v = vmrss_kib(pid)
        if v is None:
            raise RuntimeError(f"daemon pid {pid} has no VmRSS (gone?)")
        vals.append(v / 1024)
        if i + 1 < n:
            time.sleep(gap)
    return vals


def sec_rss(args, mgrs, res):
    for mgr in mgrs:
        home = mgr.new_home()
        try:
            d = make_tmpdir(f"bench-{mgr.key}-rss-")
            script, _ = idle_app(d)
            pid = ensure_daemon(home, res.notes)
            time.sleep(args.settle)
            s = sample_rss(pid)
            res.add("rss0", "daemon RSS, 0 apps (median of 5 samples)", "MiB", mgr.key, median(s), s)
            have = 0
            for target in args.rss_apps:
                names = [f"app-{i}" for i in range(have, target)]
                wd = make_tmpdir(f"bench-{mgr.key}-rss{target}-")
                used, _ = start_many(home, names, script, args.apps_method, wd)
                home.wait_online([f"app-{i}" for i in range(target)], timeout=120)
                have = target
                if home.daemon_pid() != pid:
                    raise RuntimeError(f"daemon pid changed ({pid} → {home.daemon_pid()})")
                time.sleep(args.settle)
                s = sample_rss(pid)
                res.add(f"rss{target}", f"daemon RSS, {target} apps (median of 5 samples)", "MiB",
                        mgr.key, median(s), s, {"start_method": used})
        except Exception as e:
            res.error("rss", mgr.label, e)
        finally:
            home.teardown()


def parse_ts_ns(tok):
    """A timestamp as integer nanoseconds: either `<sec>.<frac>` (bash's
    $EPOCHREALTIME) or plain nanoseconds (crashy.c).  Integer arithmetic only."""
    if "." in tok:
        sec, _, frac = tok.partition(".")
        return int(sec) * 1_000_000_000 + int((frac + "000000000")[:9])
    return int(tok)


def parse_crash_log(path):
    starts, gaps, runtimes = 0, [], []
    last_e = last_s = None
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError:
        return 0, [], []
    for line in lines:
        parts = line.split()
        if len(parts) != 2:
            continue
        try:
            kind, ts = parts[0], parse_ts_ns(parts[1])
        except ValueError:
            continue
        if kind == "S":
            starts += 1
            if last_e is not None:
                gaps.append((ts - last_e) / 1e6)
            last_s, last_e = ts, None
        elif kind == "E":
            if last_s is not None:
                runtimes.append((ts - last_s) / 1e6)
            last_e = ts
    return starts, gaps, runtimes


def wait_starts(logf, want, timeout):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if parse_crash_log(logf)[0] >= want:
            return True
        time.sleep(0.1)
    return False


def build_crashy(res):
    """Compile bench/crashy.c into a temp dir. Returns the binary path, or None
    (with a note) when gcc is missing or the build fails."""
    src = os.path.join(BENCH_DIR, "crashy.c")
    gcc = shutil.which("gcc")
    if not gcc:
        res.notes.append("gcc not found: crash section uses the bash app only (no C app, no C floor)")
        return None
    d = make_tmpdir("bench-crashy-")
    out = os.path.join(d, "crashy")
    # static first (no dynamic loader work at exec: the app's own start cost is as
    # small as it gets, so the manager's share of the gap shows); dynamic fallback
    errs = []
    for flags in (["-O2", "-static"], ["-O2"]):
        r = subprocess.run([gcc] + flags + ["-o", out, src], stdin=subprocess.DEVNULL,
                           capture_output=True, text=True)
        if r.returncode == 0:
            res.sections["crashy_build"] = f"gcc {' '.join(flags)} -o crashy bench/crashy.c"
            return out
        errs.append(f"`gcc {' '.join(flags)}` exit {r.returncode}: {(r.stderr or r.stdout).strip()[-300:]}")
    res.notes.append("building bench/crashy.c failed; crash section uses the bash app only: " + "; ".join(errs))
    return None


def run_floor(argv, logf, want, timeout, gaps_wanted):
    """Run a floor loop (a Popen in its own session) until `want` starts; returns gaps."""
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, start_new_session=True)
    REG.procs.append(p)
    try:
        wait_starts(logf, want, timeout)
    finally:
        stop_popen_group(p)
    _, gaps, _ = parse_crash_log(logf)
    return gaps[:gaps_wanted]


# crash apps: key -> (metric id, label)
CRASH_KINDS = {
    "c": ("crash_gap_c", "crash → restart gap, C app `crashy` run directly (`--interpreter none`)"),
    "bash": ("crash_gap", "crash → restart gap, bash app"),
}


def sec_crash(args, mgrs, res):
    want = args.crash_restarts + 1
    timeout = want * (args.crash_run_ms / 1000 + 2) + 10
    ms = str(args.crash_run_ms)
    kinds = []
    crashy = None
    if args.crash_app in ("auto", "both", "c"):
        crashy = build_crashy(res)
        if crashy:
            kinds.append("c")
        elif args.crash_app == "c":
            kinds.append("bash")
    if args.crash_app in ("auto", "both", "bash") and "bash" not in kinds:
        kinds.append("bash")
    floors = res.crash_floors

    def floor(key, desc, argv, logf):
        gaps = run_floor(argv, logf, want, timeout, args.crash_restarts)
        f = floors.setdefault(key, {"desc": desc, "samples": [], "rounds": 0})
        f["samples"] += gaps
        f["rounds"] += 1
        f["median_ms"] = median(f["samples"])
        f["summary"] = summary(f["samples"])
        log(f"floor {key}: {median(gaps) if gaps else float('nan'):.2f} ms this round")

    def run_floors(tag):
        if "c" in kinds:
            d = make_tmpdir(f"bench-floor-c{tag}-")
            logf = os.path.join(d, "crash.log")
            floor("c_parent", "C parent (`crashy --loop`): fork + execv + waitpid in a loop",
                  [crashy, "--loop", logf, ms], logf)
            d = make_tmpdir(f"bench-floor-csh{tag}-")
            logf = os.path.join(d, "crash.log")
            floor("c_shell_loop", "`while true; do crashy; done` bash loop",
                  ["bash", "-c", f'while true; do "{crashy}" "{logf}" {ms}; done'], logf)
        if "bash" in kinds:
            d = make_tmpdir(f"bench-floor{tag}-")
            script, logf = crash_app(d, args.crash_run_ms)
            floor("bash_loop", "`while true; do bash crash.sh; done` (bash app)",
                  ["bash", "-c", f'while true; do bash "{script}"; done'], logf)

    # floors (no manager running) before and after the managers, samples pooled,
    # so load drift on this shared machine hits floors and managers alike
    run_floors("a")
    for kind in kinds:
        mid, label = CRASH_KINDS[kind]
        for mgr in mgrs:
            home = mgr.new_home()
            try:
                d = make_tmpdir(f"bench-{mgr.key}-crash-")
                if kind == "c":
                    logf = os.path.join(d, "crash.log")
                else:
                    script, logf = crash_app(d, args.crash_run_ms)
                ensure_daemon(home, res.notes)
                if mgr.key == "pm2":
                    # pm2's CLI has no --min-uptime flag: min_uptime is only settable
                    # in an ecosystem file, so PM2 gets the same settings that way.
                    app = {"name": "crash", "min_uptime": 100, "max_restarts": 1000000}
                    if kind == "c":
                        app.update(script=crashy, interpreter="none", args=[logf, ms])
                    else:
                        app.update(script=script)
                    eco = os.path.join(d, "crash.json")
                    with open(eco, "w") as f:
                        json.dump({"apps": [app]}, f)
                    home.run(["start", eco], timeout=60)
                    how = ("ecosystem file {min_uptime: 100, max_restarts: 1000000"
                           + (', interpreter: "none"}' if kind == "c" else "}"))
                else:
                    if kind == "c":
                        cmd = ["start", crashy, "--name", "crash", "--interpreter", "none",
                               "--max-restarts", "1000000", "--min-uptime", "100", "--", logf, ms]
                    else:
                        cmd = ["start", script, "--name", "crash", "--max-restarts", "1000000",
                               "--min-uptime", "100"]
                    home.run(cmd, timeout=60)
                    how = " ".join(cmd[:1] + cmd[3:]).replace(logf, "LOG").replace(d, "DIR")
                ok = wait_starts(logf, want, timeout)
                apps = home.jlist()
                restarts = status = None
                for a in apps:
                    if a.get("name") == "crash":
                        restarts = (a.get("pm2_env") or {}).get("restart_time")
                        status = (a.get("pm2_env") or {}).get("status")
                home.run(["stop", "crash"], timeout=60, check=False)
                starts, gaps, runtimes = parse_crash_log(logf)
                gaps = gaps[:args.crash_restarts]
                if not ok:
                    res.notes.append(f"{mgr.label} ({kind} app): only {starts} starts of the crashing app within "
                                     f"{timeout:.0f}s (wanted {want}); jlist restart_time={restarts}, status={status}")
                if not gaps:
                    raise RuntimeError(f"crashing {kind} app was never restarted (starts={starts}, "
                                       f"jlist restart_time={restarts})")
                res.add(mid, f"{label} (median of {len(gaps)} restarts)", "ms",
                        mgr.key, median(gaps), gaps,
                        dict(summary(gaps), jlist_restart_time=restarts, started_with=how,
                             app_runtime_ms_median=median(runtimes)))
            except Exception as e:
                res.error("crash", f"{mgr.label} ({kind} app)", e)
            finally:
                home.teardown()
    run_floors("b")
    for kind in kinds:
        mid, label = CRASH_KINDS[kind]
        # floor notes, and the gap minus the best floor
        fkeys = ["c_parent", "c_shell_loop"] if kind == "c" else ["bash_loop"]
        fl = [(k, floors[k]["median_ms"]) for k in fkeys if k in floors and floors[k]["median_ms"] is not None]
        m = next((x for x in res.metrics if x["id"] == mid), None)
        if m is None:
            res.add(mid, label, "ms", "pm2", None)
            m = res.metrics[-1]
        if fl:
            names = {"c_parent": "C fork/exec parent", "c_shell_loop": "`while true` bash loop",
                     "bash_loop": "`while true` bash loop"}
            m["note"] = "floor: " + "; ".join(f"{names[k]} {v:.2f} ms" for k, v in fl)
            base_k, base = fl[0]
            for key, v in m["values"].items():
                if isinstance(v, (int, float)):
                    res.add(mid + "_minus_floor", f"{label.split(',')[0]}, {'C' if kind == 'c' else kind} app, minus the floor "
                            f"({names[base_k]}, {base:.2f} ms)", "ms", key, v - base)
            # show the "minus the floor" row right under its gap row
            sub = next(x for x in res.metrics if x["id"] == mid + "_minus_floor")
            res.metrics.remove(sub)
            res.metrics.insert(res.metrics.index(m) + 1, sub)


def daemon_cpu(pid, seconds):
    a = proc_stat(pid)
    t0 = time.monotonic()
    time.sleep(seconds)
    b = proc_stat(pid)
    t1 = time.monotonic()
    if not a or not b or a[1] != b[1]:
        raise RuntimeError(f"daemon pid {pid} vanished during the idle CPU window")
    ticks = b[2] - a[2]
    return 100.0 * ticks / CLK_TCK / (t1 - t0), ticks


def many_start_once(args, home, n):
    """Start n idle apps in `home` (daemon brought up first, not timed). Returns
    (pid, method, cmd_ms, procs_ms, online_ms)."""
    d = make_tmpdir(f"bench-{home.mgr.key}-many-")
    script, marks = idle_app(d)
    pid = ensure_daemon(home, [])
    names = [f"app-{i}" for i in range(n)]
    t0 = time.perf_counter()
    used, cmd_s = start_many(home, names, script, args.apps_method, d)
    # all app processes exist: every app wrote its marker
    end = time.monotonic() + 120
    while count_marks(marks) < n and time.monotonic() < end:
        time.sleep(0.01)
    t_procs = time.perf_counter()
    if count_marks(marks) < n:
        raise RuntimeError(f"only {count_marks(marks)}/{n} app processes started within 120 s")
    t_online = home.wait_online(names, timeout=180)
    return pid, used, cmd_s * 1000, (t_procs - t0) * 1000, (t_online - t0) * 1000


def sec_many(args, mgrs, res):
    n = args.many_apps
    samples = {m.key: {"cmd": [], "proc": [], "online": []} for m in mgrs}
    used_by = {}
    failed = set()
    # extra start-only rounds, managers interleaved, each in a fresh home
    for r in range(args.many_start_runs - 1):
        order = mgrs if r % 2 == 0 else list(reversed(mgrs))
        for mgr in order:
            if mgr.key in failed:
                continue
            home = mgr.new_home()
            try:
                _, used, c, p, o = many_start_once(args, home, n)
                used_by[mgr.key] = used
                for k, v in (("cmd", c), ("proc", p), ("online", o)):
                    samples[mgr.key][k].append(v)
            except Exception as e:
                failed.add(mgr.key)
                res.error("many", mgr.label, e)
            finally:
                home.teardown()
    for mgr in mgrs:
        if mgr.key in failed:
            continue
        home = mgr.new_home()
        try:
            # the last start round; this home then stays up for list / RSS / idle CPU
            pid, used, c, p, o = many_start_once(args, home, n)
            s_ = samples[mgr.key]
            for k, v in (("cmd", c), ("proc", p), ("online", o)):
                s_[k].append(v)
            k_ = len(s_["cmd"])
            res.add("many_cmd", f"{n} apps: start command wall time (median of {k_})", "ms", mgr.key,
                    median(s_["cmd"]), s_["cmd"], dict(summary(s_["cmd"]), method=used))
            res.add("many_proc", f"{n} apps: start → all {n} app processes running (median of {k_})", "ms",
                    mgr.key, median(s_["proc"]), s_["proc"], dict(summary(s_["proc"]), method=used))
            res.add("many_online", f"{n} apps: start → all online confirmed by `jlist` (median of {k_})", "ms",
                    mgr.key, median(s_["online"]), s_["online"], dict(summary(s_["online"]), method=used))
            names = [f"app-{i}" for i in range(n)]
            res.sections.setdefault("many_method", {})[mgr.key] = used
            if home.daemon_pid() != pid:
                raise RuntimeError(f"daemon pid changed ({pid} → {home.daemon_pid()})")
            time.sleep(args.settle)
            home.run(["list"], timeout=60, quiet=True, check=False)  # warm-up
            s = []
            for _ in range(args.many_list_runs):
                _, _, _, dt = home.run(["list"], timeout=60, quiet=True)
                s.append(dt * 1000)
            res.add("many_list", f"`list` latency, {n} apps (median of {len(s)})", "ms", mgr.key,
                    median(s), s, summary(s))
            time.sleep(args.settle)
            r = sample_rss(pid)
            res.add("many_rss", f"daemon RSS, {n} apps (median of 5 samples)", "MiB", mgr.key, median(r), r)
            time.sleep(args.settle)
            log(f"{mgr.label}: measuring daemon idle CPU for {args.idle_seconds:g} s with {n} apps")
            cpu, ticks = daemon_cpu(pid, args.idle_seconds)
            res.add("many_cpu", f"daemon CPU idle over {args.idle_seconds:g} s, {n} apps (% of one core)",
                    "%", mgr.key, cpu, extra={"ticks": ticks, "clk_tck": CLK_TCK})
        except Exception as e:
            res.error("many", mgr.label, e)
        finally:
            home.teardown()


def annotate_many(res):
    methods = res.sections.get("many_method", {})
    if methods:
        labels = {m.key: m.label for m in res.managers}
        note = "; ".join(f"{labels.get(k, k)}: {v}" for k, v in methods.items())
        seq = {k: "× `start`" in v for k, v in methods.items()}
        if len(set(seq.values())) > 1:
            note += "; ⚠ not like-for-like (sequential vs one request)"
        elif len(set(methods.values())) > 1:
            note += "; both a single request"
        for m in res.metrics:
            if m["id"] in ("many_cmd", "many_proc", "many_online"):
                m["note"] = note


# --------------------------------------------------------------------------


def version_of(mgr):
    if mgr.key == "pm2":
        # `pm2 --version` would spawn a daemon; read package.json instead
        real = os.path.realpath(mgr.binary)
        for cand in (os.path.join(os.path.dirname(real), "..", "package.json"),):
            try:
                with open(cand) as f:
                    return json.load(f).get("version")
            except (OSError, ValueError):
                pass
        return None
    home = mgr.new_home()
    try:
        rc, out, err, _ = home.run(["--version"], timeout=20, check=False)
        txt = out.strip() or err.strip()
        if not txt:
            return None
        v = txt.splitlines()[-1].strip()
        return v[len("bm2 "):] if v.startswith("bm2 ") else v
    except Exception:
        return None
    finally:
        home.teardown()


def parse_args(argv):
    ap = argparse.ArgumentParser(
        description="bm2 vs PM2 core benchmark (medians; ratio = bm2 / PM2, lower is better for every metric).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="sections: " + "; ".join(f"{k} = {v}" for k, v in SECTION_HELP.items()))
    ap.add_argument("--bm2", default=os.path.join(REPO_ROOT, "target", "release", "bm2"),
                    help="bm2 binary (default: target/release/bm2 in the repo)")
    ap.add_argument("--pm2", default=os.path.join(BENCH_DIR, "node_modules", ".bin", "pm2"),
                    help="pm2 binary (default: bench/node_modules/.bin/pm2; run bench/setup.sh)")
    ap.add_argument("--only", default=None, help="comma-separated sections to run: " + ",".join(SECTIONS))
    ap.add_argument("--skip", default="", help="comma-separated sections to skip")
    ap.add_argument("--skip-bm2", action="store_true", help="measure PM2 only")
    ap.add_argument("--skip-pm2", action="store_true", help="measure bm2 only (no ratio)")
    ap.add_argument("--quick", action="store_true",
                    help="fewer repetitions and a 5 s idle window (smoke test; numbers are noisier)")
    ap.add_argument("--list-apps", type=int, default=10)
    ap.add_argument("--list-runs", type=int, default=None, help="list invocations per manager (default 30)")
    ap.add_argument("--cold-runs", type=int, default=None, help="cold starts per manager (default 10)")
    ap.add_argument("--rss-apps", default="10,100", help="app counts for the RSS section (default 10,100)")
    ap.add_argument("--crash-restarts", type=int, default=None, help="restarts to measure (default 30)")
    ap.add_argument("--crash-run-ms", type=int, default=200, help="how long the crashing app runs (default 200)")
    ap.add_argument("--crash-app", choices=["auto", "c", "bash", "both"], default="auto",
                    help="crashing app: c = bench/crashy.c compiled with gcc (run with --interpreter none), "
                         "bash = bash script; auto/both = both (C skipped if gcc is missing) (default auto)")
    ap.add_argument("--many-apps", type=int, default=200)
    ap.add_argument("--many-start-runs", type=int, default=None,
                    help="times the 200 apps are started (fresh home each, managers interleaved; median) "
                         "(default 3)")
    ap.add_argument("--many-list-runs", type=int, default=None, help="list invocations with many apps (default 10)")
    ap.add_argument("--idle-seconds", type=float, default=None,
                    help="idle CPU window (default 30, or $BENCH_IDLE_SECONDS)")
    ap.add_argument("--apps-method", choices=["auto", "ecosystem", "api", "sequential"], default="auto",
                    help="how to start many apps: auto = PM2: one ecosystem file (if supported, else one "
                         "`start` per app), bm2: one request to the daemon API (POST /v1/start with all apps); "
                         "api = same as auto; ecosystem = ecosystem file for both; sequential = one `start` "
                         "per app for both (default auto)")
    ap.add_argument("--settle", type=float, default=None,
                    help="seconds to wait after changes before measuring (default 3)")
    ap.add_argument("--no-snapshot", action="store_true",
                    help="run the bm2 binary in place instead of a private copy (by default it is copied "
                         "at startup so a concurrent `cargo build` cannot swap it mid-run)")
    ap.add_argument("--out", default=os.path.join(BENCH_DIR, "results"), help="directory for the JSON results")
    a = ap.parse_args(argv)
    q = a.quick

    def dflt(v, normal, quick):
        return v if v is not None else (quick if q else normal)

    a.list_runs = dflt(a.list_runs, 30, 10)
    a.cold_runs = dflt(a.cold_runs, 10, 3)
    a.crash_restarts = dflt(a.crash_restarts, 30, 10)
    a.many_list_runs = dflt(a.many_list_runs, 10, 5)
    a.many_start_runs = max(1, dflt(a.many_start_runs, 3, 1))
    env_idle = os.environ.get("BENCH_IDLE_SECONDS")
    a.idle_seconds = dflt(a.idle_seconds, float(env_idle) if env_idle else 30.0, 5.0)
    a.settle = dflt(a.settle, 3.0, 1.5)
    a.rss_apps = sorted(int(x) for x in a.rss_apps.split(",") if x.strip())
    only = [s.strip() for s in a.only.split(",")] if a.only else list(SECTIONS)
    skip = [s.strip() for s in a.skip.split(",") if s.strip()]
    for s in only + skip:
        if s not in SECTIONS:
            ap.error(f"unknown section {s!r}; choose from {','.join(SECTIONS)}")
    a.sections = [s for s in SECTIONS if s in only and s not in skip]
    if a.skip_bm2 and a.skip_pm2:
        ap.error("--skip-bm2 and --skip-pm2 together leave nothing to measure")
    return a


def _on_signal(signum, _frame):
    # handled like Ctrl-C: clean up, then report what was measured so far
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    mgrs = []
    if not args.skip_pm2:
        if not os.access(args.pm2, os.X_OK):
            sys.exit(f"pm2 not found at {args.pm2}: run `bash bench/setup.sh` or pass --pm2 PATH (or --skip-pm2)")
        mgrs.append(Manager("pm2", "PM2", os.path.abspath(args.pm2), "PM2_HOME", "pm2.pid"))
    if not args.skip_bm2:
        if not os.access(args.bm2, os.X_OK):
            sys.exit(f"bm2 not found at {args.bm2}: build it with `cargo build --release -p bm2`, "
                     f"pass --bm2 PATH, or use --skip-bm2")
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGHUP, _on_signal)
    atexit.register(REG.cleanup, True)

    bm2_info = {}
    if not args.skip_bm2:
        src = os.path.abspath(args.bm2)
        with open(src, "rb") as f:
            bm2_info["sha256"] = hashlib.sha256(f.read()).hexdigest()
        st = os.stat(src)
        bm2_info["mtime"] = datetime.datetime.fromtimestamp(st.st_mtime).isoformat(timespec="seconds")
        binary = src
        if not args.no_snapshot:
            d = tempfile.mkdtemp(prefix="bench-bm2-bin-")
            REG.final_dirs.append(d)
            binary = os.path.join(d, "bm2")
            shutil.copy2(src, binary)
            bm2_info["snapshot_of"] = src
        bm2 = Manager("bm2", "bm2", binary, "BM2_HOME", "daemon.pid")
        bm2.display = src
        mgrs.append(bm2)

    res = Results(mgrs)
    res.crash_floors = {}
    res.spawn_floor = None
    started = datetime.datetime.now()
    meta = {
        "started": started.isoformat(timespec="seconds"),
        "host": platform.node(),
        "kernel": platform.release(),
        "cpus": os.cpu_count(),
        "loadavg_start": open("/proc/loadavg").read().split()[:3],
        "argv": sys.argv,
        "settings": {k: v for k, v in vars(args).items()},
        "managers": {},
    }
    for m in mgrs:
        meta["managers"][m.key] = {"binary": m.binary, "version": version_of(m)}
    meta["managers"].get("bm2", {}).update(bm2_info)
    log("managers: " + ", ".join(f"{m.label} {meta['managers'][m.key]['version']} ({m.display})" for m in mgrs))
    interrupted = False
    funcs = {"list": sec_list, "cold": sec_cold, "rss": sec_rss, "crash": sec_crash, "many": sec_many}
    try:
        for s in args.sections:
            log(f"section {s}: {SECTION_HELP[s]}")
            t = time.monotonic()
            try:
                funcs[s](args, mgrs, res)
            except Exception as e:
                res.error(s, "harness", e)
            finally:
                REG.cleanup()
            log(f"section {s} done in {time.monotonic() - t:.1f} s")
    except KeyboardInterrupt:
        log("interrupted; cleaning up")
        res.notes.append("run interrupted: partial results")
        interrupted = True
    finally:
        REG.cleanup()

    meta["loadavg_end"] = open("/proc/loadavg").read().split()[:3]
    meta["duration_s"] = round((datetime.datetime.now() - started).total_seconds(), 1)
    for m in mgrs:
        if m.ecosystem_ok is not None:
            meta["managers"][m.key]["ecosystem_file_supported"] = m.ecosystem_ok
            meta["managers"][m.key]["ecosystem_probe"] = m.ecosystem_probe
        if m.ping_starts_daemon is not None:
            meta["managers"][m.key]["ping_starts_daemon"] = m.ping_starts_daemon

    annotate_many(res)
    table = markdown_table(res)
    print()
    print(f"## bm2 vs PM2 core benchmark — {meta['started']} on {meta['host']} "
          f"({meta['cpus']} CPUs, load {' '.join(meta['loadavg_start'])})")
    print()
    print(", ".join(f"{m.label}: {meta['managers'][m.key]['version'] or '?'}" for m in mgrs)
          + ". Ratio = bm2 / PM2 (lower is better for every metric).")
    print()
    print(table)
    if res.crash_floors:
        print()
        if res.sections.get("crashy_build"):
            print(f"C crash app built with `{res.sections['crashy_build']}`.")
        print("Crash-restart floors (no manager; gap between one run's exit and the next run's start, median): "
              + "; ".join(f"{v['desc']}: {v['median_ms']:.2f} ms ({len(v['samples'])} restarts)"
                          for v in res.crash_floors.values() if v["median_ms"] is not None) + ".")
    if res.spawn_floor:
        print()
        print(f"Harness floor: spawning `/bin/true` the same way takes {res.spawn_floor['median_ms']:.1f} ms "
              f"(median); it is included in every command latency above.")
    if res.notes:
        print()
        print("Notes:")
        for n in res.notes:
            print(f"- {n}")
    if res.errors:
        print()
        print("Errors:")
        for e in res.errors:
            print(f"- [{e['section']}] {e['manager']}:")
            print("```")
            print(e["error"])
            print("```")

    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, f"core-{started.strftime('%Y%m%d-%H%M%S')}.json")
    with open(path, "w") as f:
        json.dump({"meta": meta, "metrics": res.metrics, "crash_floors": res.crash_floors,
                   "crashy_build": res.sections.get("crashy_build"),
                   "spawn_floor": res.spawn_floor,
                   "notes": res.notes, "errors": res.errors, "table_markdown": table}, f, indent=1)
    print()
    print(f"JSON: {os.path.relpath(path, os.getcwd())}")
    return 130 if interrupted else (1 if res.errors else 0)


if __name__ == "__main__":
    sys.exit(main())
