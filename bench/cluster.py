#!/usr/bin/env python3
"""Cluster-mode benchmark: bm2's balancer against the same instances hit directly,
and against PM2's cluster mode; then reload under load.

Stdlib only (plus `wrk`). See bench/README.md ("Cluster mode") for how to run it.

1. throughput: a 4-instance Node HTTP app (bench/cluster_app.js), `wrk --latency`
   (keep-alive) against (a) bm2's balancer port, (b) the same 4 bm2 instances on
   their private ports (one wrk process, its threads spread over the 4 addresses
   by a Lua `setup()`, so the latency histogram is one), (c) PM2 cluster mode
   (`pm2 start cluster_app.js -i 4`, PORT in its env). Repetitions interleave the
   three targets; medians.
2. reload: 15 s of wrk load, `<manager> reload <app>` at ~5 s; keep-alive and
   `Connection: close`; each preceded by a control run without a reload. Failed
   requests = wrk socket errors (connect, read, write, timeout) + non-2xx/3xx.

Every manager run uses its own temporary BM2_HOME / PM2_HOME; on any exit the
script runs `<manager> kill`, then terminates the pids it recorded (see core.py's
Home.teardown). Nothing is killed by name. Loopback only.
"""

import argparse
import atexit
import datetime
import hashlib
import http.client
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(BENCH_DIR)
sys.path.insert(0, BENCH_DIR)
import core  # noqa: E402  (Manager/Home/cleanup helpers shared with the core benchmark)

APP_SRC = os.path.join(BENCH_DIR, "cluster_app.js")
APP_NAME = "clapp"
HOST = "127.0.0.1"
OTHER_BENCHES = ("bench/core.py", "bench/logs.py")


def log(msg):
    core.log(msg)


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def http_ok(port, timeout=1.0):
    try:
        c = http.client.HTTPConnection(HOST, port, timeout=timeout)
        c.request("GET", "/")
        r = c.getresponse()
        body = r.read()
        c.close()
        return r.status == 200 and body == b"ok"
    except (OSError, http.client.HTTPException):
        return False


def wait_other_benchmarks(poll=20.0, limit=900.0):
    """Wait until no bench/core.py or bench/logs.py runs (another engineer's run)."""
    t0 = time.monotonic()
    while True:
        out = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
        busy = [line for line in out.splitlines() if any(b in line for b in OTHER_BENCHES)]
        if not busy:
            return time.monotonic() - t0
        waited = time.monotonic() - t0
        if waited >= limit:
            log(f"other benchmark still running after {waited:.0f} s; going ahead: {busy}")
            return waited
        log(f"waiting for another benchmark to finish: {busy[0][:100]}")
        time.sleep(poll)


# --------------------------------------------------------------------------
# wrk

_UNIT = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


def _ms(txt):
    m = re.fullmatch(r"([0-9.]+)(us|ms|s|m|h)", txt.strip())
    return float(m.group(1)) * _UNIT[m.group(2)] if m else None


def parse_wrk(out):
    r = {"requests": None, "duration_s": None, "rps": None, "lat_avg_ms": None,
         "lat_max_ms": None, "p50_ms": None, "p90_ms": None, "p99_ms": None,
         "errors": {"connect": 0, "read": 0, "write": 0, "timeout": 0}, "non_2xx_3xx": 0}
    m = re.search(r"^\s*(\d+) requests in ([0-9.]+)(us|ms|s|m)", out, re.M)
    if m:
        r["requests"] = int(m.group(1))
        r["duration_s"] = _ms(m.group(2) + m.group(3)) / 1e3
    m = re.search(r"^Requests/sec:\s+([0-9.]+)", out, re.M)
    if m:
        r["rps"] = float(m.group(1))
    m = re.search(r"^\s*Latency\s+(\S+)\s+(\S+)\s+(\S+)", out, re.M)
    if m:
        r["lat_avg_ms"], r["lat_max_ms"] = _ms(m.group(1)), _ms(m.group(3))
    for p in ("50", "90", "99"):
        m = re.search(rf"^\s*{p}%\s+(\S+)", out, re.M)
        if m:
            r[f"p{p}_ms"] = _ms(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        r["errors"] = dict(zip(("connect", "read", "write", "timeout"), map(int, m.groups())))
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        r["non_2xx_3xx"] = int(m.group(1))
    r["socket_errors"] = sum(r["errors"].values())
    r["failed"] = r["socket_errors"] + r["non_2xx_3xx"]
    return r


class Wrk:
    """One wrk process, output to a file (started in its own session so it can be stopped by pid)."""

    def __init__(self, args, url, duration, conns, threads, script=None, close=False, workdir=None):
        self.cmd = [args.wrk, f"-t{threads}", f"-c{conns}", f"-d{duration}s", "--latency",
                    "--timeout", f"{args.wrk_timeout:g}s"]
        if close:
            self.cmd += ["-H", "Connection: close"]
        if script:
            self.cmd += ["-s", script]
        self.cmd.append(url)
        self.out = tempfile.NamedTemporaryFile(prefix="bench-wrk-", suffix=".out", dir=workdir, delete=False)
        self.t0 = time.monotonic()
        self.p = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL, stdout=self.out,
                                  stderr=subprocess.STDOUT, start_new_session=True)
        core.REG.procs.append(self.p)

    def wait(self, timeout):
        try:
            self.p.wait(timeout=timeout)
        finally:
            core.stop_popen_group(self.p)
        self.out.seek(0)
        text = self.out.read().decode("utf-8", "replace")
        self.out.close()
        os.unlink(self.out.name)
        r = parse_wrk(text)
        r["command"] = " ".join(self.cmd)
        r["exit"] = self.p.returncode
        if r["rps"] is None:
            raise core.CmdError(self.cmd, self.p.returncode, text, "", "no Requests/sec in wrk output")
        r["raw"] = text
        return r


def rotate_script(workdir, ports):
    """wrk Lua script: thread i connects to ports[i % 4] (one wrk, one latency histogram)."""
    path = os.path.join(workdir, "rotate.lua")
    with open(path, "w") as f:
        f.write("-- bench/cluster.py: spread wrk's threads over the instances' private ports\n"
                f"local ports = {{{', '.join(str(p) for p in ports)}}}\n"
                "local n = 0\n"
                "function setup(thread)\n"
                f"  thread.addr = wrk.lookup(\"{HOST}\", tostring(ports[(n % #ports) + 1]))[1]\n"
                "  n = n + 1\n"
                "end\n")
    return path


# --------------------------------------------------------------------------
# managers


def bm2_details(home):
    _, out, _, _ = home.run(["describe", APP_NAME, "--json"], timeout=30)
    data = json.loads(out[out.find("["):])
    for d in data:
        if isinstance(d.get("pid"), int):
            home.record(d["pid"])
    return sorted(data, key=lambda d: d.get("instance") or 0)


def bm2_ready(home, n):
    """(pids by instance, private ports) once n instances are online and ready, else None."""
    try:
        ds = bm2_details(home)
    except (core.CmdError, ValueError):
        return None
    if len(ds) != n or sorted(d.get("instance") for d in ds) != list(range(n)):
        return None
    if not all(d.get("status") == "online" and isinstance(d.get("pid"), int)
               and (d.get("cluster") or {}).get("ready") is True for d in ds):
        return None
    return [d["pid"] for d in ds], [(d.get("cluster") or {}).get("private_port") for d in ds]


def pm2_state(home):
    apps = [a for a in home.jlist() if a.get("name") == APP_NAME]
    online = [a for a in apps if (a.get("pm2_env") or {}).get("status") == "online"]
    return apps, sorted(a["pid"] for a in online if isinstance(a.get("pid"), int))


def wait_ready(mgr_key, home, port, n, timeout=60.0):
    """Wait until n instances are online (bm2: and ready) and the port answers; returns pids
    (and private ports for bm2)."""
    end = time.monotonic() + timeout
    last = None
    while time.monotonic() < end:
        if mgr_key == "bm2":
            last = bm2_ready(home, n)
            if last and http_ok(port):
                return last
        else:
            apps, pids = pm2_state(home)
            last = [(a.get("pid"), (a.get("pm2_env") or {}).get("status")) for a in apps]
            if len(pids) == n and len(apps) == n and http_ok(port):
                return pids, None
        time.sleep(0.2)
    raise RuntimeError(f"{mgr_key}: {n} instances not ready on port {port} after {timeout:.0f} s "
                       f"(last state: {last})")


def start_app(mgr, workdir, args, port):
    home = mgr.new_home()
    home.env.pop("PORT", None)
    app = os.path.join(workdir, "cluster_app.js")
    if mgr.key == "bm2":
        cmd = ["start", app, "--name", APP_NAME, "-i", str(args.instances), "--port", str(port),
               "--listen-host", HOST]
        home.run(cmd, timeout=60)
    else:
        home.env["PORT"] = str(port)
        cmd = ["start", app, "--name", APP_NAME, "-i", str(args.instances)]
        home.run(cmd, timeout=120)
    pids, private = wait_ready(mgr.key, home, port, args.instances)
    shown = ([f"PORT={port}"] if mgr.key == "pm2" else []) + [mgr.label] + cmd
    log(f"{mgr.label}: `{' '.join(shown)}` → pids {pids}" + (f", private ports {private}" if private else ""))
    return home, pids, private, " ".join(shown).replace(app, "cluster_app.js")


# --------------------------------------------------------------------------
# sections


def sec_throughput(args, mgrs, workdir, out):
    """bm2 balancer, bm2 direct, PM2 cluster; interleaved repetitions."""
    bm2, pm2 = mgrs.get("bm2"), mgrs.get("pm2")
    targets = {}  # key -> (url, script, description)
    info = {}
    if bm2:
        port = free_port()
        bm2_home, pids, private, cmd = start_app(bm2, workdir, args, port)
        if any(not p for p in private):
            raise RuntimeError(f"bm2 describe gave no private port for every instance: {private}")
        info["bm2"] = {"command": cmd, "port": port, "pids": pids, "private_ports": private}
        targets["bm2-balancer"] = (f"http://{HOST}:{port}/", None)
        targets["bm2-direct"] = (f"http://{HOST}:{private[0]}/", rotate_script(workdir, private))
    if pm2:
        port = free_port()
        _, pids, _, cmd = start_app(pm2, workdir, args, port)
        info["pm2"] = {"command": cmd, "port": port, "pids": pids}
        targets["pm2-cluster"] = (f"http://{HOST}:{port}/", None)
    out["throughput_setup"] = info
    keys = list(targets)
    log(f"warm-up: {args.warmup} s of wrk per target")
    for k in keys:
        url, script = targets[k]
        Wrk(args, url, args.warmup, args.connections, args.threads, script, workdir=workdir).wait(args.warmup + 30)
    runs = {k: [] for k in keys}
    for rep in range(args.reps):
        order = keys[rep % len(keys):] + keys[:rep % len(keys)]
        for k in order:
            url, script = targets[k]
            time.sleep(args.pause)
            r = Wrk(args, url, args.duration, args.connections, args.threads, script,
                    workdir=workdir).wait(args.duration + 60)
            r["rep"] = rep + 1
            r["loadavg"] = open("/proc/loadavg").read().split()[:3]
            runs[k].append(r)
            log(f"rep {rep + 1} {k}: {r['rps']:.0f} req/s, p99 {r['p99_ms']} ms, "
                f"failed {r['failed']} (socket {r['errors']}, non-2xx/3xx {r['non_2xx_3xx']})")
    # bm2's instances must be the same ones throughout
    if bm2:
        now = bm2_ready(bm2_home, args.instances)
        info["bm2"]["pids_after"] = now[0] if now else None
    out["throughput_runs"] = runs
    med = {}
    for k, rs in runs.items():
        med[k] = {"rps": median([r["rps"] for r in rs]), "p99_ms": median([r["p99_ms"] for r in rs]),
                  "p50_ms": median([r["p50_ms"] for r in rs]),
                  "failed_total": sum(r["failed"] for r in rs), "n": len(rs)}
    out["throughput_medians"] = med


def reload_run(args, mgr, home, port, close, do_reload, workdir):
    pids_before = wait_ready(mgr.key, home, port, args.instances)[0]
    w = Wrk(args, f"http://{HOST}:{port}/", args.reload_duration, args.connections, args.threads,
            close=close, workdir=workdir)
    rec = {"manager": mgr.key, "connection": "close" if close else "keep-alive",
           "reload": do_reload, "pids_before": pids_before}
    if do_reload:
        time.sleep(max(0.0, args.reload_at - (time.monotonic() - w.t0)))
        t_start = time.monotonic() - w.t0
        rc, o, e, dt = home.run(["reload", APP_NAME], timeout=120, check=False)
        rec.update({"reload_command": f"{mgr.label} reload {APP_NAME}", "reload_exit": rc,
                    "reload_stdout": o.strip()[-2000:], "reload_stderr": e.strip()[-2000:],
                    "reload_started_s": round(t_start, 2), "reload_seconds": round(dt, 3)})
        if t_start + dt > args.reload_duration:
            rec["note"] = "reload command returned after the load window ended"
    r = w.wait(args.reload_duration + 60)
    rec["wrk"] = r
    ready = wait_ready(mgr.key, home, port, args.instances, timeout=30)
    rec["pids_after"] = ready[0]
    old = set(pids_before)
    rec["new_pids"] = len([p for p in ready[0] if p not in old])
    rec["old_alive"] = [p for p in pids_before if core.alive(p) and p not in ready[0]]
    if mgr.key == "bm2":
        try:
            rows = [a for a in home.jlist()
                    if a.get("name") == APP_NAME or str(a.get("name")).startswith(APP_NAME + "-")]
            rec["restarts"] = [(a.get("pm2_env") or {}).get("restart_time") for a in rows]
        except core.CmdError:
            pass
    ok_pids = (len(ready[0]) == args.instances and rec["new_pids"] == args.instances
               and not rec["old_alive"]) if do_reload else (ready[0] == sorted(pids_before) or
                                                            set(ready[0]) == old)
    rec["pids_ok"] = ok_pids
    what = "reload" if do_reload else "control"
    log(f"{mgr.label} {what} ({rec['connection']}): {r['requests']} requests, {r['rps']:.0f} req/s, "
        f"failed {r['failed']} (socket {r['errors']}, non-2xx/3xx {r['non_2xx_3xx']}), p99 {r['p99_ms']} ms"
        + (f"; reload exit {rec['reload_exit']} in {rec['reload_seconds']:.2f} s at {rec['reload_started_s']} s"
           if do_reload else "")
        + f"; pids {pids_before} → {ready[0]} ({rec['new_pids']} new)")
    if do_reload and rec["reload_exit"] != 0:
        log(f"  reload output: {rec['reload_stdout'][-500:]} {rec['reload_stderr'][-500:]}")
    return rec


def sec_reload(args, mgrs, workdir, out):
    recs = []
    out["reload_runs"] = recs
    for key in ("bm2", "pm2"):
        mgr = mgrs.get(key)
        if not mgr:
            continue
        try:
            port = free_port()
            home, pids, _, cmd = start_app(mgr, workdir, args, port)
            out.setdefault("reload_setup", {})[key] = {"command": cmd, "port": port}
            for close in (False, True):
                for do_reload in ([False, True] if args.controls else [True]):
                    for _ in range(args.reload_reps if do_reload else 1):
                        time.sleep(args.pause)
                        try:
                            recs.append(reload_run(args, mgr, home, port, close, do_reload, workdir))
                        except Exception as e:
                            out["errors"].append(err_rec(f"reload {key} close={close} reload={do_reload}", e))
        except Exception as e:
            out["errors"].append(err_rec(f"reload {key}", e))
        finally:
            core.REG.cleanup()


def err_rec(where, e):
    msg = e.describe() if isinstance(e, core.CmdError) else f"{type(e).__name__}: {e}"
    log(f"ERROR [{where}]: {msg}")
    return {"where": where, "error": msg}


# --------------------------------------------------------------------------
# report


def fnum(v, d=0):
    return "—" if v is None else f"{v:,.{d}f}"


def ratio(a, b):
    return f"{a / b:.2f}×" if a is not None and b else "—"


def tables(args, out):
    lines = []
    med = out.get("throughput_medians") or {}
    if med:
        lines += [f"Throughput, keep-alive, {args.instances} instances, `wrk -t{args.threads} -c{args.connections} "
                  f"-d{args.duration}s --latency`, median of {args.reps}:", "",
                  "| target | requests/s | p50 latency | p99 latency | failed requests (all reps) |",
                  "| --- | ---: | ---: | ---: | ---: |"]
        label = {"bm2-balancer": "bm2 balancer (public port)",
                 "bm2-direct": "bm2 instances direct (private ports, wrk threads spread over the 4)",
                 "pm2-cluster": "PM2 cluster mode"}
        for k, m in med.items():
            lines.append(f"| {label[k]} | {fnum(m['rps'])} | {fnum(m['p50_ms'], 2)} ms | "
                         f"{fnum(m['p99_ms'], 2)} ms | {m['failed_total']} |")
        b, d, p = (med.get(k, {}).get("rps") for k in ("bm2-balancer", "bm2-direct", "pm2-cluster"))
        bl, dl, pl = (med.get(k, {}).get("p99_ms") for k in ("bm2-balancer", "bm2-direct", "pm2-cluster"))
        lines += ["", "| ratio | throughput | p99 latency |", "| --- | ---: | ---: |",
                  f"| bm2 balancer / direct | {ratio(b, d)} | {ratio(bl, dl)} |",
                  f"| bm2 balancer / PM2 cluster | {ratio(b, p)} | {ratio(bl, pl)} |"]
        reps = out.get("throughput_runs") or {}
        if reps:
            lines += ["", "Every repetition (requests/s): " + "; ".join(
                f"{k} " + ", ".join(fnum(r["rps"]) for r in rs) for k, rs in reps.items())]
    recs = out.get("reload_runs") or []
    if recs:
        lines += ["", f"Reload under load: `wrk -t{args.threads} -c{args.connections} -d{args.reload_duration}s "
                  f"--latency` (+ `-H 'Connection: close'`), `reload {APP_NAME}` at ~{args.reload_at:g} s; "
                  "control = same load, no reload:", "",
                  "| manager | connection | run | requests | req/s | p99 | socket errors (c/r/w/t) | non-2xx/3xx | "
                  "failed | reload cmd | instances after |",
                  "| --- | --- | --- | ---: | ---: | ---: | --- | ---: | ---: | --- | --- |"]
        for r in recs:
            w = r["wrk"]
            e = w["errors"]
            cmd = "—"
            if r["reload"]:
                cmd = f"exit {r['reload_exit']}, {r['reload_seconds']:.2f} s (at {r['reload_started_s']:.1f} s)"
            inst = f"{len(r['pids_after'])}, {r['new_pids']} new pids"
            if r.get("old_alive"):
                inst += f", old still alive {r['old_alive']}"
            lines.append(f"| {'bm2' if r['manager'] == 'bm2' else 'PM2'} | {r['connection']} | "
                         f"{'reload' if r['reload'] else 'control'} | {w['requests']:,} | {fnum(w['rps'])} | "
                         f"{fnum(w['p99_ms'], 2)} ms | {e['connect']}/{e['read']}/{e['write']}/{e['timeout']} | "
                         f"{w['non_2xx_3xx']} | **{w['failed']}** | {cmd} | {inst} |")
    return "\n".join(lines)


def goals(args, out):
    g = []
    recs = [r for r in out.get("reload_runs") or [] if r["manager"] == "bm2" and r["reload"]]
    if recs:
        bad = [r for r in recs if r["wrk"]["failed"] or r["reload_exit"] != 0 or not r["pids_ok"]]
        g.append(f"- zero failed requests during bm2 reload in every run: "
                 f"{'**met**' if not bad else '**not met**'} ("
                 + "; ".join(f"{r['connection']}: {r['wrk']['failed']} failed, reload exit {r['reload_exit']}, "
                             f"{len(r['pids_after'])} instances / {r['new_pids']} new pids" for r in recs) + ")")
    med = out.get("throughput_medians") or {}
    b, d, p = (med.get(k, {}).get("rps") for k in ("bm2-balancer", "bm2-direct", "pm2-cluster"))
    if b and d:
        g.append(f"- balancer throughput ≥ 85% of direct: {'**met**' if b >= 0.85 * d else '**not met**'} "
                 f"({b / d:.0%})")
    if b and p:
        g.append(f"- balancer throughput ≥ PM2 cluster: {'**met**' if b >= p else '**not met**'} ({b / p:.2f}×)")
    return g


# --------------------------------------------------------------------------


def parse_args(argv):
    ap = argparse.ArgumentParser(description="bm2 cluster mode vs direct vs PM2 cluster (wrk), and reload under load.")
    ap.add_argument("--bm2", default=os.path.join(REPO_ROOT, "target", "release", "bm2"))
    ap.add_argument("--pm2", default=os.path.join(BENCH_DIR, "node_modules", ".bin", "pm2"))
    ap.add_argument("--wrk", default=shutil.which("wrk") or "wrk")
    ap.add_argument("--no-snapshot", action="store_true", help="run --bm2 in place instead of a private copy")
    ap.add_argument("--only", default="throughput,reload", help="sections: throughput,reload")
    ap.add_argument("--skip-pm2", action="store_true")
    ap.add_argument("--instances", type=int, default=4)
    ap.add_argument("--threads", type=int, default=4,
                    help="wrk threads for every run (default 4; a multiple of --instances spreads the direct run evenly)")
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--duration", type=int, default=10, help="seconds per throughput run (default 10)")
    ap.add_argument("--reps", type=int, default=3, help="throughput repetitions (default 3)")
    ap.add_argument("--warmup", type=int, default=3, help="seconds of wrk per target before measuring (default 3)")
    ap.add_argument("--pause", type=float, default=2.0, help="pause before every wrk run (default 2 s)")
    ap.add_argument("--wrk-timeout", type=float, default=2.0, help="wrk --timeout in seconds (default 2, wrk's default)")
    ap.add_argument("--reload-duration", type=int, default=15)
    ap.add_argument("--reload-at", type=float, default=5.0)
    ap.add_argument("--reload-reps", type=int, default=1, help="reload runs per manager and connection mode")
    ap.add_argument("--no-controls", dest="controls", action="store_false",
                    help="skip the control runs (same load, no reload)")
    ap.add_argument("--no-wait", action="store_true", help="do not wait for bench/core.py / bench/logs.py to finish")
    ap.add_argument("--out", default=os.path.join(BENCH_DIR, "results"))
    a = ap.parse_args(argv)
    a.sections = [s.strip() for s in a.only.split(",") if s.strip()]
    for s in a.sections:
        if s not in ("throughput", "reload"):
            ap.error(f"unknown section {s!r}")
    if a.threads % a.instances and "throughput" in a.sections:
        log(f"note: {a.threads} wrk threads over {a.instances} instances: the direct run is uneven")
    return a


def _on_signal(signum, _frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if not shutil.which(args.wrk):
        sys.exit("wrk not found: `apt-get install -y wrk` or pass --wrk PATH")
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGHUP, _on_signal)
    atexit.register(core.REG.cleanup, True)
    mgrs = {}
    meta = {"host": platform.node(), "kernel": platform.release(), "cpus": os.cpu_count(), "argv": sys.argv,
            "settings": {k: v for k, v in vars(args).items()}, "managers": {}}
    if not args.skip_pm2:
        if not os.access(args.pm2, os.X_OK):
            sys.exit(f"pm2 not found at {args.pm2}: run `bash bench/setup.sh`, pass --pm2, or --skip-pm2")
        mgrs["pm2"] = core.Manager("pm2", "PM2", os.path.abspath(args.pm2), "PM2_HOME", "pm2.pid")
    if not os.access(args.bm2, os.X_OK):
        sys.exit(f"bm2 not found at {args.bm2}: `cargo build --release -p bm2`, or --bm2 PATH")
    src = os.path.abspath(args.bm2)
    with open(src, "rb") as f:
        meta["bm2_sha256"] = hashlib.sha256(f.read()).hexdigest()
    binary = src
    if not args.no_snapshot:
        d = tempfile.mkdtemp(prefix="bench-bm2-bin-")
        core.REG.final_dirs.append(d)
        binary = os.path.join(d, "bm2")
        shutil.copy2(src, binary)
    m = core.Manager("bm2", "bm2", binary, "BM2_HOME", "daemon.pid")
    m.display = src
    mgrs["bm2"] = m
    for k, mg in mgrs.items():
        meta["managers"][k] = {"binary": mg.display, "version": core.version_of(mg)}
    meta["wrk"] = subprocess.run([args.wrk, "-v"], capture_output=True, text=True).stdout.split("\n")[0].strip()
    meta["node"] = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    if not args.no_wait:
        meta["waited_for_other_benchmarks_s"] = round(wait_other_benchmarks(), 1)
    started = datetime.datetime.now()
    meta["started"] = started.isoformat(timespec="seconds")
    meta["loadavg_start"] = open("/proc/loadavg").read().split()[:3]
    log("managers: " + ", ".join(f"{mg.label} {meta['managers'][k]['version']}" for k, mg in mgrs.items())
        + f"; {meta['wrk']}; node {meta['node']}")
    workdir = tempfile.mkdtemp(prefix="bench-cluster-")
    core.REG.final_dirs.append(workdir)
    shutil.copy2(APP_SRC, os.path.join(workdir, "cluster_app.js"))
    out = {"meta": meta, "errors": []}
    interrupted = False
    try:
        if "throughput" in args.sections:
            log("section throughput")
            try:
                sec_throughput(args, mgrs, workdir, out)
            except Exception as e:
                out["errors"].append(err_rec("throughput", e))
            finally:
                core.REG.cleanup()
        if "reload" in args.sections:
            log("section reload")
            sec_reload(args, mgrs, workdir, out)
    except KeyboardInterrupt:
        interrupted = True
        log("interrupted; cleaning up")
        out["errors"].append({"where": "harness", "error": "interrupted: partial results"})
    finally:
        core.REG.cleanup()
    meta["loadavg_end"] = open("/proc/loadavg").read().split()[:3]
    meta["duration_s"] = round((datetime.datetime.now() - started).total_seconds(), 1)
    tbl = tables(args, out)
    gl = goals(args, out)
    print()
    print(f"## Cluster mode — {meta['started']} on {meta['host']} ({meta['cpus']} CPUs, "
          f"load {' '.join(meta['loadavg_start'])})")
    print()
    print(", ".join(f"{mg.label}: {meta['managers'][k]['version']}" for k, mg in mgrs.items())
          + f", {meta['wrk']}, node {meta['node']}.")
    print()
    print(tbl)
    if gl:
        print()
        print("Goals:")
        print("\n".join(gl))
    if out["errors"]:
        print()
        print("Errors:")
        for e in out["errors"]:
            print(f"- {e['where']}:\n```\n{e['error']}\n```")
    out["table_markdown"] = tbl
    out["goals"] = gl
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, f"cluster-{started.strftime('%Y%m%d-%H%M%S')}.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
    print()
    print(f"JSON: {os.path.relpath(path, os.getcwd())}")
    return 130 if interrupted else (1 if out["errors"] else 0)


if __name__ == "__main__":
    sys.exit(main())
