#!/usr/bin/env python3
"""Monitoring benchmark: daemon CPU and RSS with N idle apps sampled every second, bm2 next to PM2.

Stdlib only; reuses core.py's managers, homes and teardown (nothing is killed by name).

For each app count (default 100 and 1000) and each manager, in a fresh home:
  1. start N separate apps (not instances), each the `sleep` binary run directly
     (`sleep 100000`, interpreter none): bm2 with one API request, PM2 with one ecosystem file;
  2. wait until all N are online (PM2: `jlist`; bm2: `list --json`, its list without
     environments), then let the daemon settle;
  3. over the window (default 60 s): the daemon's CPU from utime+stime in /proc/<pid>/stat,
     read every 5 s (per-window %, median, and the whole window's %), and its VmRSS every 5 s
     (median and max); then one `jlist`, and the RSS 2 s later.
bm2 samples every process once a second (its default) and keeps the history; PM2 does what
it does by itself when nobody asks (no `pm2 monit` open).

Usage:
  python3 bench/monitor.py                       # 100 and 1000 apps, bm2 and PM2, 60 s each
  python3 bench/monitor.py --apps 1000 --skip-pm2 --seconds 30
"""

import argparse
import datetime
import json
import os
import platform
import shutil
import signal
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import core  # noqa: E402  (same directory)
from core import CLK_TCK, REG, CmdError, Manager, log, median, proc_stat, vmrss_kib  # noqa: E402


def start_idle_apps(home, n, workdir):
    sleep = shutil.which("sleep")
    names = [f"idle-{i}" for i in range(n)]
    if home.mgr.key == "bm2":
        body = {
            "apps": [{"name": name, "script": sleep, "args": ["100000"], "interpreter": "none",
                      "cwd": workdir} for name in names],
            "client_env": dict(home.env),
            "force": False,
        }
        path = os.path.join(workdir, "body.json")
        with open(path, "w") as f:
            json.dump(body, f)
        t0 = time.perf_counter()
        core.api_start(home, path)
        how = "1 API request (`POST /v1/start`)"
    else:
        eco = os.path.join(workdir, "ecosystem.json")
        with open(eco, "w") as f:
            json.dump({"apps": [{"name": name, "script": sleep, "args": "100000",
                                 "interpreter": "none", "cwd": workdir} for name in names]}, f)
        t0 = time.perf_counter()
        home.run(["start", eco], timeout=900)
        how = "1 ecosystem file"
    if home.mgr.key == "bm2":
        wait_online_bm2(home, names, timeout=900)
    else:
        home.wait_online(names, timeout=900)
    return how, time.perf_counter() - t0


def wait_online_bm2(home, names, timeout):
    """Polls `bm2 list --json` (bm2's own list: no environments) until every app is online, so
    that the window starts without the transient memory of large `jlist` answers."""
    want = set(names)
    end = time.monotonic() + timeout
    while True:
        _, out, _, _ = home.run(["list", "--json"], timeout=120)
        online = {p["name"] for p in json.loads(out) if p.get("status") == "online"}
        if want <= online:
            return
        if time.monotonic() > end:
            raise RuntimeError(f"only {len(want & online)}/{len(want)} apps online after {timeout} s")
        time.sleep(0.2)


def measure(pid, seconds, step=5.0):
    """CPU % of one core per `step` window and over the whole window; RSS samples (MiB)."""
    first = proc_stat(pid)
    t_first = time.monotonic()
    prev, t_prev = first, t_first
    cpu, rss = [], []
    end = t_first + seconds
    while True:
        left = end - time.monotonic()
        if left <= 0:
            break
        time.sleep(min(step, left))
        now, t_now = proc_stat(pid), time.monotonic()
        if not now or now[1] != first[1]:
            raise RuntimeError(f"daemon pid {pid} vanished during the window")
        cpu.append(100.0 * (now[2] - prev[2]) / CLK_TCK / (t_now - t_prev))
        rss.append(vmrss_kib(pid) / 1024)
        prev, t_prev = now, t_now
    whole = 100.0 * (prev[2] - first[2]) / CLK_TCK / (t_prev - t_first)
    return {"cpu_windows": cpu, "cpu_median": median(cpu), "cpu_whole": whole,
            "rss_samples": rss, "rss_median": median(rss), "rss_max": max(rss)}


def run_one(mgr, n, args):
    home = mgr.new_home()
    workdir = core.make_tmpdir(f"bench-{mgr.key}-monitor-")
    try:
        pid = core.ensure_daemon(home, [])
        log(f"{mgr.label}: starting {n} idle apps")
        how, start_s = start_idle_apps(home, n, workdir)
        log(f"{mgr.label}: {n} apps online after {start_s:.1f} s; settling {args.settle:g} s")
        if home.daemon_pid() != pid:
            raise RuntimeError("the daemon changed pid while starting the apps")
        time.sleep(args.settle)
        log(f"{mgr.label}: measuring {args.seconds:g} s with {n} apps")
        m = measure(pid, args.seconds)
        # The same daemon after answering one `jlist` (every app with its environment).
        home.jlist(timeout=300)
        time.sleep(2)
        m["rss_after_jlist"] = vmrss_kib(pid) / 1024
        m.update(apps=n, start_method=how, start_seconds=start_s)
        log(f"{mgr.label} {n} apps: CPU median {m['cpu_median']:.2f} % (whole {m['cpu_whole']:.2f} %), "
            f"RSS median {m['rss_median']:.1f} MiB")
        return m
    finally:
        home.teardown()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bm2", default=os.path.join(core.REPO_ROOT, "target", "release", "bm2"))
    ap.add_argument("--pm2", default=os.path.join(core.BENCH_DIR, "node_modules", ".bin", "pm2"))
    ap.add_argument("--apps", default="100,1000", help="app counts, comma-separated")
    ap.add_argument("--seconds", type=float, default=60.0, help="measurement window per run")
    ap.add_argument("--settle", type=float, default=5.0, help="pause after all apps are online")
    ap.add_argument("--skip-pm2", action="store_true")
    ap.add_argument("--skip-bm2", action="store_true")
    ap.add_argument("--out", default=os.path.join(core.BENCH_DIR, "results"))
    args = ap.parse_args()

    signal.signal(signal.SIGTERM, core._on_signal)
    signal.signal(signal.SIGHUP, core._on_signal)
    import atexit
    atexit.register(REG.cleanup, True)

    mgrs = []
    if not args.skip_pm2:
        mgrs.append(Manager("pm2", "PM2", os.path.abspath(args.pm2), "PM2_HOME", "pm2.pid"))
    if not args.skip_bm2:
        mgrs.append(Manager("bm2", "bm2", os.path.abspath(args.bm2), "BM2_HOME", "daemon.pid"))
    for m in mgrs:
        if not os.access(m.binary, os.X_OK):
            sys.exit(f"{m.label} binary not found at {m.binary}")

    counts = [int(c) for c in args.apps.split(",") if c.strip()]
    started = datetime.datetime.now(datetime.timezone.utc)
    results = {"started": started.isoformat(), "load_start": os.getloadavg(),
               "machine": {"nproc": os.cpu_count(), "kernel": platform.release()},
               "settings": vars(args), "runs": {}, "errors": []}
    for n in counts:
        for mgr in mgrs:
            try:
                results["runs"].setdefault(str(n), {})[mgr.key] = run_one(mgr, n, args)
            except (CmdError, RuntimeError, OSError) as e:
                msg = e.describe() if isinstance(e, CmdError) else str(e)
                log(f"ERROR {mgr.label} {n} apps: {msg}")
                results["errors"].append({"manager": mgr.key, "apps": n, "error": msg})
    results["load_end"] = os.getloadavg()

    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, f"monitor-{started.strftime('%Y%m%d-%H%M%S')}.json")
    with open(path, "w") as f:
        json.dump(results, f, indent=1)

    print(f"\nMonitoring benchmark, {args.seconds:g} s windows, {started:%Y-%m-%d %H:%M} UTC, "
          f"load {results['load_start'][0]:.2f} → {results['load_end'][0]:.2f}\n")
    print("| apps | manager | daemon CPU, median of 5 s windows | daemon CPU, whole window | RSS median | RSS max | RSS 2 s after one `jlist` | start → all online |")
    print("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for n in counts:
        for mgr in mgrs:
            r = results["runs"].get(str(n), {}).get(mgr.key)
            if not r:
                print(f"| {n} | {mgr.label} | failed | | | | | |")
                continue
            print(f"| {n} | {mgr.label} | {r['cpu_median']:.2f} % | {r['cpu_whole']:.2f} % | "
                  f"{r['rss_median']:.1f} MiB | {r['rss_max']:.1f} MiB | {r['rss_after_jlist']:.1f} MiB | "
                  f"{r['start_seconds']:.1f} s |")
    print(f"\nJSON: {os.path.relpath(path, core.REPO_ROOT)}")
    return 1 if results["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
