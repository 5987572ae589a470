#!/usr/bin/env python3
"""Start/delete churn: does the daemon grow when apps come and go for a long time?

Stdlib only. In a fresh temporary BM2_HOME, repeatedly: start N apps (separate apps, each
`sleep`) with one ecosystem file, wait until all are online, `delete all`. The daemon's VmRSS
and open descriptors are read after the first cycle (warm) and after every cycle; at the end it
prints the first, last and maximum, the number of cycles, and what is left in the home
(processes of the home, log files). Growth beyond the metrics history (whose rings free a
deleted app's series at the next sample) is a leak.

Usage:
  python3 bench/churn.py --minutes 30 --apps 300            # the figure in docs/benchmarks.md
  python3 bench/churn.py --minutes 1 --apps 50              # quick look
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time


def vmrss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def marked_pids(home):
    entry = f"BM2_HOME={home}".encode()
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/environ", "rb") as f:
                env = f.read().split(b"\0")
        except OSError:
            continue
        if entry in env and any(e.startswith(b"BM2_ID=") for e in env):
            out.append(int(d))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default="target/release/bm2")
    ap.add_argument("--apps", type=int, default=300)
    ap.add_argument("--minutes", type=float, default=30)
    args = ap.parse_args()
    bm2 = os.path.abspath(args.bin)
    home = tempfile.mkdtemp(prefix="bm2-churn-home-")
    work = tempfile.mkdtemp(prefix="bm2-churn-work-")
    env = dict(os.environ, BM2_HOME=home, NO_COLOR="1")
    sleep = shutil.which("sleep")
    eco = os.path.join(work, "eco.json")
    with open(eco, "w") as f:
        json.dump({"apps": [{"name": f"churn-{i}", "script": sleep, "args": "100000",
                             "interpreter": "none"} for i in range(args.apps)]}, f)

    def bm2_run(*a, check=True):
        r = subprocess.run([bm2, *a], env=env, cwd=work, capture_output=True, text=True, timeout=600)
        if check and r.returncode != 0:
            raise SystemExit(f"bm2 {' '.join(a)} failed ({r.returncode}): {r.stderr}")
        return r.stdout

    def wait_online():
        deadline = time.time() + 300
        while time.time() < deadline:
            rows = json.loads(bm2_run("list", "--json"))
            if len(rows) == args.apps and all(r["status"] == "online" for r in rows):
                return
            time.sleep(0.2)
        raise SystemExit("apps did not all come online within 300 s")

    samples = []
    cycles = 0
    end = time.time() + args.minutes * 60
    try:
        while True:
            bm2_run("start", eco)
            wait_online()
            bm2_run("delete", "all")
            cycles += 1
            pid = int(open(os.path.join(home, "daemon.pid")).read())
            samples.append((time.time(), vmrss_kib(pid), fd_count(pid)))
            if time.time() >= end:
                break
        left_procs = marked_pids(home)
        logs = os.listdir(os.path.join(home, "logs")) if os.path.isdir(os.path.join(home, "logs")) else []
        first, last = samples[0], samples[-1]
        print(f"apps per cycle: {args.apps}; cycles: {cycles} in {(last[0] - first[0]) / 60:.1f} min after the first")
        print(f"daemon RSS: first cycle {first[1] / 1024:.1f} MiB, last {last[1] / 1024:.1f} MiB, "
              f"max {max(s[1] for s in samples) / 1024:.1f} MiB")
        print(f"daemon open fds: first cycle {first[2]}, last {last[2]}, max {max(s[2] for s in samples)}")
        # Growth that keeps going is a leak; a high-water mark reached early and kept is the
        # allocator holding on to the peak of a cycle.
        quarters = [samples[min(len(samples) - 1, len(samples) * q // 4)] for q in range(1, 5)]
        print("daemon RSS at each quarter of the run: " + ", ".join(f"{s[1] / 1024:.1f} MiB" for s in quarters))
        print(f"left after the last delete: {len(left_procs)} app processes, {len(logs)} files in logs/")
        ok = not left_procs and last[2] <= first[2] + 5
        print(f"{1 if ok else 0} passed, {0 if ok else 1} failed")
        return 0 if ok else 1
    finally:
        bm2_run("kill", check=False)
        shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
