#!/usr/bin/env python3
"""Dashboard memory benchmark: does a dashboard left open grow the daemon's memory?

Starts a daemon (release build, private BM2_HOME) with one chatty app (200 lines/s) and
nine idle ones, starts the dashboard, and opens WebSocket sessions as the page does: each
asks for the chatty app's logs (`getLogs`) and reads everything (state, process events,
metrics every 2 s, log lines). One more session never reads (a stalled browser tab). Every
minute one idle app is restarted (events). The daemon's RSS is sampled every 10 s; the
report gives RSS over time and the growth between the first and the last third.

Stdlib only: a minimal WebSocket client (RFC 6455 handshake, masked text frames).
Usage: python3 bench/dashboard.py [--minutes 60] [--bm2 target/release/bm2]
Nothing is killed by name: the daemon is stopped with `bm2 kill`, then by its recorded pid.
"""

import argparse
import base64
import json
import os
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(BENCH_DIR)


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return None


class WebSocket:
    """Just enough of a WebSocket client for the dashboard's text messages."""

    def __init__(self, host, port, token):
        self.sock = socket.create_connection((host, port))
        key = base64.b64encode(os.urandom(16)).decode()
        req = (
            f"GET /ws HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"Authorization: Bearer {token}\r\n\r\n"
        )
        self.sock.sendall(req.encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(1)
            if not chunk:
                raise RuntimeError("connection closed during the handshake")
            head += chunk
        if b" 101 " not in head.split(b"\r\n")[0]:
            raise RuntimeError(f"handshake refused: {head[:200]!r}")

    def send(self, obj):
        data = json.dumps(obj).encode()
        mask = os.urandom(4)
        n = len(data)
        if n < 126:
            header = struct.pack("!BB", 0x81, 0x80 | n)
        else:
            header = struct.pack("!BBH", 0x81, 0x80 | 126, n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
        self.sock.sendall(header + mask + masked)

    def _exact(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise EOFError
            buf += chunk
        return buf

    def recv(self):
        b0, b1 = self._exact(2)
        n = b1 & 0x7F
        if n == 126:
            (n,) = struct.unpack("!H", self._exact(2))
        elif n == 127:
            (n,) = struct.unpack("!Q", self._exact(8))
        payload = self._exact(n)
        return b0 & 0x0F, payload


def reader(ws, counts, stop):
    while not stop.is_set():
        try:
            op, payload = ws.recv()
        except (EOFError, OSError):
            return
        if op == 1:
            kind = json.loads(payload).get("type", "?")
            counts[kind] = counts.get(kind, 0) + 1
        elif op == 8:
            return


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bm2", default=os.path.join(REPO_ROOT, "target", "release", "bm2"))
    ap.add_argument("--minutes", type=float, default=60)
    ap.add_argument("--sessions", type=int, default=3)
    args = ap.parse_args()

    work = tempfile.mkdtemp(prefix="bench-dashboard-")
    binary = os.path.join(work, "bm2")
    shutil.copy2(args.bm2, binary)
    home = os.path.join(work, "home")
    env = dict(os.environ, BM2_HOME=home)
    daemon_pid = None

    def bm2(*a):
        return subprocess.run([binary, *a], env=env, check=True, capture_output=True, text=True).stdout

    try:
        chatty = os.path.join(work, "chatty.py")
        with open(chatty, "w") as f:
            f.write("import time, sys\ni = 0\nwhile True:\n    i += 1\n    print(f'line {i} ' + 'x' * 60, flush=True)\n    time.sleep(0.005)\n")
        bm2("start", chatty, "--name", "chatty")
        for i in range(9):
            bm2("start", "sleep", "--name", f"idle{i}", "--", "100000")
        out = bm2("dashboard", "--port", "0", "--metrics-port", "0")
        url = next(l.split()[1] for l in out.splitlines() if l.startswith("Dashboard:"))
        hostport, token = url.split("//", 1)[1].split("/?token=")
        host, port = hostport.rsplit(":", 1)
        with open(os.path.join(home, "daemon.pid")) as f:
            daemon_pid = int(f.read())
        stop = threading.Event()
        counts = [dict() for _ in range(args.sessions)]
        sessions = []
        for c in counts:
            ws = WebSocket(host, int(port), token)
            ws.send({"type": "getLogs", "data": {"target": "chatty", "lines": 100}})
            threading.Thread(target=reader, args=(ws, c, stop), daemon=True).start()
            sessions.append(ws)
        stalled = WebSocket(host, int(port), token)
        stalled.send({"type": "getLogs", "data": {"target": "chatty", "lines": 100}})
        log(f"daemon pid {daemon_pid}, {args.sessions} reading sessions + 1 stalled, {args.minutes} min")
        samples = []
        start = time.time()
        next_restart = start + 60
        idle = 0
        while time.time() - start < args.minutes * 60:
            samples.append((time.time() - start, rss_kib(daemon_pid)))
            if len(samples) % 6 == 1:
                log(f"t={samples[-1][0]:.0f}s RSS {samples[-1][1] / 1024:.1f} MiB; messages {counts[0]}")
            if time.time() >= next_restart:
                bm2("restart", f"idle{idle % 9}")
                idle += 1
                next_restart += 60
            time.sleep(10)
        stop.set()
        third = max(1, len(samples) // 3)
        first = statistics.median(r for _, r in samples[:third])
        last = statistics.median(r for _, r in samples[-third:])
        print()
        print(f"## Dashboard left open — {time.strftime('%Y-%m-%dT%H:%M:%S')}")
        print()
        print(f"`python3 bench/dashboard.py --minutes {args.minutes:g}`: {args.sessions} WebSocket sessions following a")
        print("200 lines/s app's logs, metrics and events, plus one stalled session; one restart a minute.")
        print()
        print("| minute | daemon RSS |")
        print("| ---: | ---: |")
        for t, r in samples[:: max(1, len(samples) // 12)]:
            print(f"| {t / 60:.0f} | {r / 1024:.1f} MiB |")
        print(f"| {samples[-1][0] / 60:.0f} | {samples[-1][1] / 1024:.1f} MiB |")
        print()
        print(f"Median RSS, first third {first / 1024:.1f} MiB, last third {last / 1024:.1f} MiB: growth {(last - first) / 1024:+.1f} MiB.")
        print(f"Messages received by session 1: {counts[0]}")
    finally:
        try:
            subprocess.run([binary, "kill"], env=env, capture_output=True, timeout=30)
        except Exception:
            pass
        if daemon_pid:
            try:
                os.kill(daemon_pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
