#!/usr/bin/env python3
"""`update` under load: what apps see while the process manager replaces its daemon.

Stdlib only. For each manager, in a fresh temporary home: start a fork app printing a numbered,
timestamped line every millisecond, and a 4-instance cluster HTTP app; send requests in a loop
(one connection each); run `update`; keep the load 2 s more. Reports how long `update` took,
how many app processes were replaced (pids before vs after), the failed requests, and the
largest gap between consecutive log lines of the ticking app (with lines lost or repeated).

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
    def __init__(self, kind, binary, work):
        self.kind, self.binary = kind, os.path.abspath(binary)
        self.home = tempfile.mkdtemp(prefix=f"update-{kind}-home-")
        var = "PM2_HOME" if kind == "pm2" else "BM2_HOME"
        self.env = dict(os.environ, **{var: self.home}, NO_COLOR="1")
        self.work = work

    def run(self, *args, timeout=300):
        return subprocess.run([self.binary, *args], env=self.env, cwd=self.work,
                              capture_output=True, text=True, timeout=timeout)

    def jlist(self):
        out = self.run("jlist").stdout
        try:
            return json.loads(out[out.index("["):])
        except ValueError:
            return []

    def pids(self):
        return sorted(p.get("pid") for p in self.jlist() if p.get("pid"))

    def online(self, count):
        rows = self.jlist()
        status = [(p.get("pm2_env") or {}).get("status") for p in rows]
        return len(rows) == count and all(s == "online" for s in status)

    def ticker_log(self):
        return os.path.join(self.home, "logs", "ticker-out.log")


def load(port, stop, stats):
    while not stop.is_set():
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            c.request("GET", "/")
            ok = c.getresponse().status == 200
            c.close()
        except OSError:
            ok = False
        stats["ok" if ok else "failed"] += 1
        time.sleep(0.002)


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
    stats = {"ok": 0, "failed": 0}
    stop = threading.Event()
    t = threading.Thread(target=load, args=(port, stop, stats))
    t.start()
    time.sleep(1)
    started = time.time()
    r = m.run("update")
    took = time.time() - started
    deadline = time.time() + 60
    while not m.online(5) and time.time() < deadline:
        time.sleep(0.1)
    time.sleep(2)
    stop.set()
    t.join()
    after = m.pids()
    lines = ticks(m.ticker_log())
    gaps = [b[1] - a[1] for a, b in zip(lines, lines[1:])]
    resets = sum(1 for a, b in zip(lines, lines[1:]) if b[0] <= a[0])
    m.run("kill")
    return {
        "update_s": round(took, 2),
        "update_ok": r.returncode == 0,
        "replaced": len(set(before) - set(after)),
        "apps": len(before),
        "requests": stats["ok"] + stats["failed"],
        "failed": stats["failed"],
        "max_log_gap_ms": max(gaps) if gaps else None,
        "counter_restarts": resets,
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
        m = Manager(kind, binary, work)
        try:
            results[kind] = measure(m, port)
        finally:
            m.run("kill")
            shutil.rmtree(work, ignore_errors=True)
            shutil.rmtree(m.home, ignore_errors=True)
    keys = ["update_s", "update_ok", "apps", "replaced", "requests", "failed",
            "max_log_gap_ms", "counter_restarts"]
    print("| metric | " + " | ".join(results) + " |")
    print("|---|" + "---|" * len(results))
    for k in keys:
        print(f"| {k} | " + " | ".join(str(results[r][k]) for r in results) + " |")


if __name__ == "__main__":
    main()
