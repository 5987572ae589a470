#!/usr/bin/env python3
"""`update` under load: what apps see while the process manager replaces its daemon.

Stdlib only. For each manager, in a fresh temporary home: start a fork app printing a numbered,
timestamped line every millisecond, and a 4-instance cluster HTTP app; send requests in a loop
(one client opening a connection per request, one keeping a single connection open); run
`update`; keep the load 2 s more. bm2 is upgraded as a user does: `update` is run by a copy of
the binary (in a temporary directory), so the daemon is handed over to that copy. PM2 runs
`pm2 update` from the same pm2.

Reports how long `update` took, whether the daemon and how many app processes were replaced
(pids before vs after), the failed requests of each client, the largest gap between
consecutive log lines of the ticking app, and the lines lost or repeated in its log (counted
within each run of the app: a restart starts counting at 1 again).

    python3 bench/update.py --bin target/release/bm2 [--pm2 bench/node_modules/.bin/pm2]

PM2 (`bash bench/setup.sh`) is measured in the same run when given.
"""
import argparse
import http.client
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time

TICKER = r"""
let n = 0;
setInterval(() => { n += 1; process.stdout.write(`tick ${n} ${Date.now()}\n`); }, 1);
"""

SERVER = r"""
require('http').createServer((q, s) => s.end(String(process.pid))).listen(process.env.PORT);
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Manager:
    def __init__(self, kind, binary, work, updater=None):
        self.kind, self.binary = kind, os.path.abspath(binary)
        # The binary `update` is run by (bm2: a copy, the daemon's new binary); used afterwards.
        self.updater = os.path.abspath(updater or binary)
        self.home = tempfile.mkdtemp(prefix=f"update-{kind}-home-")
        var = "PM2_HOME" if kind == "pm2" else "BM2_HOME"
        self.env = dict(os.environ, **{var: self.home}, NO_COLOR="1")
        self.work = work

    def run(self, *args, timeout=300, binary=None):
        return subprocess.run([binary or self.binary, *args], env=self.env, cwd=self.work,
                              capture_output=True, text=True, timeout=timeout)

    def jlist(self):
        out = self.run("jlist").stdout
        try:
            return json.loads(out[out.index("["):])
        except ValueError:
            return []

    def pids(self):
        return sorted(p.get("pid") for p in self.jlist() if p.get("pid"))

    def daemon_pid(self):
        name = "pm2.pid" if self.kind == "pm2" else "daemon.pid"
        try:
            with open(os.path.join(self.home, name)) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return None

    def online(self, count):
        rows = self.jlist()
        status = [(p.get("pm2_env") or {}).get("status") for p in rows]
        return len(rows) == count and all(s == "online" for s in status)

    def ticker_log(self):
        for p in self.jlist():
            if p.get("name") == "ticker":
                path = (p.get("pm2_env") or {}).get("pm_out_log_path")
                if path:
                    return path
        return os.path.join(self.home, "logs", "ticker-out.log")


def load_new_connections(port, stop, stats):
    while not stop.is_set():
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            c.request("GET", "/")
            r = c.getresponse()
            r.read()
            ok = r.status == 200
            c.close()
        except (OSError, http.client.HTTPException):
            ok = False
        stats["ok" if ok else "failed"] += 1
        time.sleep(0.002)


def load_keep_alive(port, stop, stats):
    """One HTTP/1.1 connection kept open; reconnects only after an answer closing it. A failed
    request on the open connection counts: the manager dropped a live connection."""
    c = None
    while not stop.is_set():
        try:
            if c is None:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            c.request("GET", "/")
            r = c.getresponse()
            r.read()
            ok = r.status == 200
            if r.will_close:
                c.close()
                c = None
        except (OSError, http.client.HTTPException):
            ok = False
            if c is not None:
                c.close()
            c = None
        stats["ok" if ok else "failed"] += 1
        time.sleep(0.002)
    if c is not None:
        c.close()


def ticks(path):
    lines = []
    with open(path, errors="replace") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3 and parts[0] == "tick":
                try:
                    lines.append((int(parts[1]), int(parts[2])))
                except ValueError:
                    pass
    return lines


def log_damage(lines):
    """(runs of the app, lines lost, lines repeated): a line numbered 1 after a higher number
    starts a new run (the app restarted); within a run, a skipped number is a lost line and a
    number not above the previous one a repeated line."""
    runs = 1 if lines else 0
    lost = repeated = 0
    for (a, _), (b, _) in zip(lines, lines[1:]):
        if b == 1 and a != 0:
            runs += 1
        elif b > a + 1:
            lost += b - a - 1
        elif b <= a:
            repeated += 1
    return runs, lost, repeated


def measure(m, port):
    m.run("start", "ticker.js", "--name", "ticker")
    m.run("start", "server.js", "--name", "web", "-i", "4")
    deadline = time.time() + 60
    while not m.online(5):
        if time.time() > deadline:
            raise SystemExit(f"{m.kind}: apps did not come online: {m.jlist()}")
        time.sleep(0.2)
    time.sleep(1)
    before = m.pids()
    daemon_before = m.daemon_pid()
    fresh = {"ok": 0, "failed": 0}
    kept = {"ok": 0, "failed": 0}
    stop = threading.Event()
    threads = [threading.Thread(target=load_new_connections, args=(port, stop, fresh)),
               threading.Thread(target=load_keep_alive, args=(port, stop, kept))]
    for t in threads:
        t.start()
    time.sleep(1)
    started = time.time()
    r = m.run("update", binary=m.updater)
    took = time.time() - started
    if r.returncode != 0:
        print(f"{m.kind}: update failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    deadline = time.time() + 60
    while not m.online(5) and time.time() < deadline:
        time.sleep(0.1)
    time.sleep(2)
    stop.set()
    for t in threads:
        t.join()
    after = m.pids()
    daemon_after = m.daemon_pid()
    lines = ticks(m.ticker_log())
    gaps = [b[1] - a[1] for a, b in zip(lines, lines[1:])]
    runs, lost, repeated = log_damage(lines)
    m.run("kill", binary=m.updater)
    return {
        "update_s": round(took, 2),
        "update_ok": r.returncode == 0,
        "daemon_replaced": daemon_before != daemon_after,
        "apps": len(before),
        "replaced": len(set(before) - set(after)),
        "requests": fresh["ok"] + fresh["failed"],
        "failed": fresh["failed"],
        "keepalive_requests": kept["ok"] + kept["failed"],
        "keepalive_failed": kept["failed"],
        "log_lines": len(lines),
        "max_log_gap_ms": max(gaps) if gaps else None,
        "ticker_runs": runs,
        "lines_lost": lost,
        "lines_repeated": repeated,
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/bm2")
    ap.add_argument("--pm2", help="path of a pm2 binary to measure in the same run")
    args = ap.parse_args()
    results = {}
    for kind, binary in [("pm2", args.pm2), ("bm2", args.bin)]:
        if not binary:
            continue
        work = tempfile.mkdtemp(prefix=f"update-{kind}-work-")
        port = free_port()
        with open(os.path.join(work, "ticker.js"), "w") as f:
            f.write(TICKER)
        with open(os.path.join(work, "server.js"), "w") as f:
            f.write(SERVER.replace("process.env.PORT", str(port)))
        updater = None
        if kind == "bm2":
            # The upgraded bm2: a copy at another path, as a new release installed elsewhere.
            os.mkdir(os.path.join(work, "new"))
            updater = os.path.join(work, "new", "bm2")
            shutil.copy2(binary, updater)
        m = Manager(kind, binary, work, updater)
        try:
            results[kind] = measure(m, port)
        finally:
            m.run("kill", binary=m.updater)
            shutil.rmtree(work, ignore_errors=True)
            shutil.rmtree(m.home, ignore_errors=True)
    keys = ["update_s", "update_ok", "daemon_replaced", "apps", "replaced", "requests",
            "failed", "keepalive_requests", "keepalive_failed", "log_lines", "max_log_gap_ms",
            "ticker_runs", "lines_lost", "lines_repeated"]
    print("| metric | " + " | ".join(results) + " |")
    print("|---|" + "---|" * len(results))
    for k in keys:
        print(f"| {k} | " + " | ".join(str(results[r][k]) for r in results) + " |")


if __name__ == "__main__":
    main()
