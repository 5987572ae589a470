#!/usr/bin/env python3
"""Log throughput benchmark: one app writing 200 MB of 100-byte lines to stdout,
captured by bm2 and PM2 and by plain Unix plumbing, all in one run.

Stdlib only. See bench/README.md ("Log throughput") for what is measured.

The app is bench/logchild.py.  Scenarios (each run `--reps` times, interleaved,
the order rotated every repetition):

  devnull       child > /dev/null
  cat           child | cat > file
  pm2           pm2 start child --no-autorestart -o file -e file
  bm2           bm2 start child --no-autorestart --log-max-size 1G -o file -e file
  bm2-default   bm2 start child --no-autorestart -o file -e file   (rotates at 10M, keeps 5)
  bm2-time      bm2 start child --no-autorestart --log-max-size 1G --time -o file -e file

Every manager run gets a fresh temporary PM2_HOME / BM2_HOME; its daemon is started
(`ping`) before the measurement and killed afterwards, with the same cleanup as
bench/core.py (pid-file and environment-marker based, never by name).
"""

import argparse
import atexit
import datetime
import glob
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(BENCH_DIR)
sys.path.insert(0, BENCH_DIR)
import core  # noqa: E402  (Manager/Home/cleanup helpers shared with the core benchmark)
import logchild  # noqa: E402  (line format)

CHILD = os.path.join(BENCH_DIR, "logchild.py")
SCENARIOS = ["devnull", "cat", "pm2", "bm2", "bm2-default", "bm2-time"]
DESC = {
    "devnull": "child > /dev/null",
    "cat": "child \\| cat > file",
    "pm2": "PM2 (`pm2 start --no-autorestart`)",
    "bm2": "bm2 (`--no-autorestart --log-max-size 1G`)",
    "bm2-default": "bm2, default log settings (rotate at 10M, keep 5)",
    "bm2-time": "bm2 with `--time` (`--log-max-size 1G`)",
}
log = core.log
median = core.median
CLK_TCK = core.CLK_TCK


# --------------------------------------------------------------------------
# verification


def out_files(path):
    """The log file and its rotated siblings, oldest first (`.5` … `.1`, current).
    Pending rotations (other names starting with the file's name) are listed too."""
    found = [p for p in glob.glob(glob.escape(path) + "*") if os.path.isfile(p)]
    def order(p):
        suf = p[len(path):]
        if suf == "":
            return (2, 0, p)
        parts = suf.lstrip(".").split(".")
        if parts[0].isdigit():
            return (0, -int(parts[0]), p)  # .5 before .1
        return (1, 0, p)
    return sorted(found, key=order)


def total_size(path):
    return sum(os.path.getsize(p) for p in out_files(path) if os.path.exists(p))


def tail_has_last_line(path, last_line):
    for p in out_files(path):
        try:
            with open(p, "rb") as f:
                f.seek(0, 2)
                size = f.tell()
                f.seek(max(0, size - 4096))
                if f.read().endswith(last_line):
                    return True
        except OSError:
            pass
    return False


def check_lines(path, n_lines):
    """Read the log file(s) in order and check every line's payload (the last 100
    bytes of the line, without any timestamp prefix).  Returns a dict."""
    fill_nl = logchild.FILL + b"\n"
    nxt = None
    first = None
    in_order = missing = out_of_order = bad = prefixed = 0
    nbytes = 0
    prefix_sample = None
    files = out_files(path)
    for p in files:
        if p.endswith(".gz"):
            bad += 1
            continue
        with open(p, "rb") as f:
            for ln in f:
                nbytes += len(ln)
                if len(ln) < 100 or ln[-89:] != fill_nl or ln[-90:-89] != b" ":
                    bad += 1
                    continue
                try:
                    i = int(ln[-100:-90])
                except ValueError:
                    bad += 1
                    continue
                if len(ln) > 100:
                    prefixed += 1
                    if prefix_sample is None:
                        prefix_sample = ln[:-100].decode("utf-8", "replace")
                if first is None:
                    first = i
                    nxt = i
                if i == nxt:
                    in_order += 1
                    nxt = i + 1
                elif i > nxt:
                    missing += i - nxt
                    in_order += 1
                    nxt = i + 1
                else:
                    out_of_order += 1
    last = nxt - 1 if nxt is not None else None
    return {
        "files": [os.path.basename(p) for p in files],
        "bytes": nbytes,
        "lines_in_order": in_order,
        "first_line": first,
        "last_line": last,
        "missing_inside": missing,
        "out_of_order_or_dup": out_of_order,
        "bad_lines": bad,
        "prefixed_lines": prefixed,
        "prefix_sample": prefix_sample,
        "lost_before_first": first if first is not None else n_lines,
        "lost_after_last": (n_lines - 1 - last) if last is not None else 0,
    }


def read_done(errfile):
    try:
        with open(errfile, "rb") as f:
            for ln in f:
                # with --time the line carries a timestamp prefix
                i = ln.find(b"LOGCHILD_DONE ")
                if i >= 0:
                    return json.loads(ln[i + len(b"LOGCHILD_DONE "):])
    except (OSError, ValueError):
        pass
    return None


def cpu_ticks(pid):
    st = core.proc_stat(pid)
    return st[2] if st else None


# --------------------------------------------------------------------------
# scenarios


def python3():
    return shutil.which("python3") or sys.executable


def run_plain(kind, args, d):
    """devnull / cat: child started by us. Returns the measurement dict."""
    out = os.path.join(d, "out.log")
    err = os.path.join(d, "err.log")
    cmd = [python3(), CHILD, "--mb", str(args.mb)]
    with open(err, "wb") as fe:
        if kind == "devnull":
            p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=fe,
                                 start_new_session=True)
            core.REG.procs.append(p)
            p.wait(timeout=args.timeout)
            core.REG.procs.remove(p)
            t_done = time.time()
            sink_cpu = None
            out = None
        else:
            with open(out, "wb") as fo:
                cat = subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=fo, stderr=subprocess.DEVNULL,
                                       start_new_session=True)
                core.REG.procs.append(cat)
                p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=cat.stdin, stderr=fe,
                                     start_new_session=True)
                core.REG.procs.append(p)
                cat.stdin.close()
                p.wait(timeout=args.timeout)
                core.REG.procs.remove(p)
                # reap cat ourselves to get its rusage (its CPU is the sink's cost)
                _, status, ru = os.wait4(cat.pid, 0)
                cat.returncode = os.waitstatus_to_exitcode(status)
                core.REG.procs.remove(cat)
                t_done = time.time()
                sink_cpu = ru.ru_utime + ru.ru_stime
    done = read_done(err)
    if not done:
        raise RuntimeError(f"{kind}: child printed no LOGCHILD_DONE line; stderr: {open(err).read()[-800:]}")
    return {"done": done, "t_complete": t_done, "sink_cpu_s": sink_cpu, "out": out, "complete": True}


def run_managed(kind, args, d, mgr):
    out = os.path.join(d, "out.log")
    err = os.path.join(d, "err.log")
    home = mgr.new_home()
    try:
        notes = []
        dpid = core.ensure_daemon(home, notes)
        time.sleep(args.settle)
        flags = ["--name", "logs", "--no-autorestart", "--interpreter", python3(), "-o", out, "-e", err]
        if kind in ("bm2", "bm2-time"):
            flags += ["--log-max-size", "1G"]
        if kind == "bm2-time":
            flags += ["--time"]
        cmd = ["start", CHILD] + flags + ["--", "--mb", str(args.mb)]
        n_lines = logchild.total_lines(args.mb)
        expected = n_lines * logchild.LINE_BYTES
        last_line = logchild.line(n_lines - 1)
        st0 = core.proc_stat(dpid)
        hwm0 = read_status(dpid, "VmHWM:")
        home.run(cmd, timeout=120)
        # wait: child done (its stderr line), child exited, log complete
        deadline = time.monotonic() + args.timeout
        done = None
        child_gone = False
        complete = False
        last_size, last_change = -1, time.monotonic()
        while time.monotonic() < deadline:
            if done is None:
                done = read_done(err)
            if done is not None and not child_gone:
                child_gone = not core.alive(done["pid"])
            if done is not None and child_gone:
                if kind in ("pm2", "bm2"):
                    complete = total_size(out) >= expected
                else:
                    complete = tail_has_last_line(out, last_line)
                if complete:
                    break
            size = (total_size(out), os.path.getsize(err) if os.path.exists(err) else -1)
            if size != last_size:
                last_size, last_change = size, time.monotonic()
            elif time.monotonic() - last_change > args.stall:
                break  # logs stopped growing: lost data (checked below) or a stuck child
            time.sleep(0.01)
        t_done = time.time()
        st1 = core.proc_stat(dpid)
        if done is None:
            raise RuntimeError(f"{mgr.label}: child printed no LOGCHILD_DONE line within {args.timeout}s; "
                               f"stderr log: {(open(err).read() if os.path.exists(err) else '(none)')[-800:]}")
        if not st0 or not st1 or st0[1] != st1[1]:
            raise RuntimeError(f"{mgr.label}: daemon pid {dpid} changed or vanished during the run")
        return {"done": done, "t_complete": t_done, "sink_cpu_s": (st1[2] - st0[2]) / CLK_TCK, "out": out,
                "complete": complete, "child_exited": child_gone, "daemon_pid": dpid,
                "daemon_vmhwm_kib": [hwm0, read_status(dpid, "VmHWM:")], "start_cmd": " ".join(cmd)}
    finally:
        home.teardown()


def read_status(pid, key):
    try:
        with open(f"/proc/{pid}/status") as f:
            for ln in f:
                if ln.startswith(key):
                    return int(ln.split()[1])
    except OSError:
        return None
    return None


def run_one(kind, args, mgrs):
    d = core.make_tmpdir(f"bench-logs-{kind}-")
    try:
        if kind in ("devnull", "cat"):
            r = run_plain(kind, args, d)
        else:
            r = run_managed(kind, args, d, mgrs["pm2" if kind == "pm2" else "bm2"])
        n_lines = logchild.total_lines(args.mb)
        done = r["done"]
        rec = {
            "write_s": done["write_s"],
            "first_write_to_complete_s": r["t_complete"] - done["first_write_realtime"],
            "sink_cpu_s": r["sink_cpu_s"],
            "bytes_written": done["bytes"],
            "lines_written": done["lines"],
            "complete": r["complete"],
        }
        for k in ("child_exited", "daemon_pid", "daemon_vmhwm_kib", "start_cmd"):
            if k in r:
                rec[k] = r[k]
        if r["out"]:
            rec["check"] = check_lines(r["out"], n_lines)
            rec["bytes_in_log"] = rec["check"]["bytes"]
        return rec
    finally:
        shutil.rmtree(d, ignore_errors=True)
        if d in core.REG.tmpdirs:
            core.REG.tmpdirs.remove(d)


# --------------------------------------------------------------------------
# report


def fmt_s(v):
    return "—" if v is None else f"{v:.2f} s"


def verdict_bytes(kind, recs, n_lines):
    """`bytes in log / written` cell plus a lost-bytes figure (None if not applicable)."""
    if kind == "devnull":
        return "— (discarded)", "—"
    chks = [r["check"] for r in recs]
    written = recs[0]["bytes_written"]
    if kind == "bm2-default":
        ok = all(c["missing_inside"] == 0 and c["out_of_order_or_dup"] == 0 and c["bad_lines"] == 0
                 and c["lost_after_last"] == 0 for c in chks)
        b = median([c["bytes"] for c in chks])
        return (f"{b:,.0f} / {written:,} retained in {median([len(c['files']) for c in chks]):.0f} files"
                f" ({'contiguous, ends at the last line' if ok else '⚠ gaps or missing tail'})",
                "— (older lines dropped by rotation retention, by design)")
    if kind == "bm2-time":
        full = [c["lines_in_order"] == n_lines and c["missing_inside"] == 0 and c["out_of_order_or_dup"] == 0
                and c["bad_lines"] == 0 and c["lost_before_first"] == 0 and c["lost_after_last"] == 0
                and c["prefixed_lines"] == n_lines for c in chks]
        lines = [c["lines_in_order"] for c in chks]
        return (f"{min(lines):,}–{max(lines):,} / {n_lines:,} lines in order, timestamped"
                if min(lines) != max(lines) else f"{lines[0]:,} / {n_lines:,} lines in order, timestamped"
                ) + ("" if all(full) else " ⚠"), f"{n_lines - min(lines):,} lines"
    exact = [c["bytes"] == written and c["lines_in_order"] == n_lines and c["bad_lines"] == 0
             and c["prefixed_lines"] == 0 and c["out_of_order_or_dup"] == 0 for c in chks]
    bs = [c["bytes"] for c in chks]
    cell = f"{min(bs):,} / {written:,}" if min(bs) == max(bs) else f"{min(bs):,}–{max(bs):,} / {written:,}"
    cell += f" ({sum(exact)}/{len(exact)} runs byte-exact)"
    return cell, f"{max(0, written - min(bs)):,} B"


def table(results, args):
    n_lines = logchild.total_lines(args.mb)
    med = {k: {m: median([r[m] for r in v if r.get(m) is not None]) for m in
               ("write_s", "first_write_to_complete_s", "sink_cpu_s")} for k, v in results.items() if v}
    cat_w = med.get("cat", {}).get("write_s")
    pm2_cpu = med.get("pm2", {}).get("sink_cpu_s")
    rows = ["| scenario | child write time | vs `cat > file` | first write → log complete | "
            "sink CPU (daemon / cat) | CPU vs PM2 | log bytes / written | lost |",
            "| --- | ---: | ---: | ---: | ---: | ---: | --- | ---: |"]
    for kind in SCENARIOS:
        recs = results.get(kind)
        if not recs:
            continue
        m = med[kind]
        vs_cat = f"{m['write_s'] / cat_w:.2f}×" if cat_w and m["write_s"] is not None else "—"
        cpu = m["sink_cpu_s"]
        vs_pm2 = (f"{cpu / pm2_cpu:.2f}×" if pm2_cpu and cpu is not None and kind not in ("devnull", "cat")
                  else "—")
        cell, lost = verdict_bytes(kind, recs, n_lines)
        rows.append(f"| {DESC[kind]} | {fmt_s(m['write_s'])} | {vs_cat} | "
                    f"{fmt_s(m['first_write_to_complete_s'])} | {fmt_s(cpu)} | {vs_pm2} | {cell} | {lost} |")
    return "\n".join(rows), med


def goals(results, med, args):
    n_lines = logchild.total_lines(args.mb)
    out = []

    def g(name, ok, detail):
        out.append(f"- {'✅ met' if ok else '❌ not met'}: {name} — {detail}")

    if med.get("bm2") and med.get("cat"):
        a, b = med["bm2"]["write_s"], med["cat"]["write_s"]
        g("child under bm2 no slower than under `| cat > file`", a <= b,
          f"{a:.2f} s vs {b:.2f} s ({a / b:.2f}×)")
    if med.get("bm2") and med.get("pm2"):
        a, b = med["bm2"]["sink_cpu_s"], med["pm2"]["sink_cpu_s"]
        g("bm2 daemon CPU at most half of PM2's", a <= 0.5 * b, f"{a:.2f} s vs {b:.2f} s ({a / b:.2f}×)")
    if results.get("bm2"):
        chks = [r["check"] for r in results["bm2"]]
        w = results["bm2"][0]["bytes_written"]
        ok = all(c["bytes"] == w and c["lines_in_order"] == n_lines and c["bad_lines"] == 0 for c in chks)
        g("zero bytes lost (bm2, --log-max-size 1G)", ok,
          f"log bytes per run {[c['bytes'] for c in chks]} vs {w} written")
    if results.get("bm2-time") and med.get("bm2"):
        chks = [r["check"] for r in results["bm2-time"]]
        all_lines = all(c["lines_in_order"] == n_lines and c["bad_lines"] == 0 and c["lost_before_first"] == 0
                        for c in chks)
        a, b = med["bm2-time"]["sink_cpu_s"], med["bm2"]["sink_cpu_s"]
        wa, wb = med["bm2-time"]["write_s"], med["bm2"]["write_s"]
        g("with --time: all lines present, daemon CPU at most 1.5× bm2 raw", all_lines and a <= 1.5 * b,
          f"lines {[c['lines_in_order'] for c in chks]} / {n_lines}; daemon CPU {a:.2f} s vs {b:.2f} s "
          f"({a / b:.2f}×); child write time {wa:.2f} s vs {wb:.2f} s ({wa / wb:.2f}×)")
    return out


# --------------------------------------------------------------------------


def parse_args(argv):
    ap = argparse.ArgumentParser(description="bm2 vs PM2 log throughput benchmark (medians of --reps runs).")
    ap.add_argument("--mb", type=float, default=200, help="MB (10^6 bytes) the child writes (default 200)")
    ap.add_argument("--reps", type=int, default=3, help="repetitions of every scenario (default 3)")
    ap.add_argument("--only", default=None, help="comma-separated scenarios: " + ",".join(SCENARIOS))
    ap.add_argument("--skip", default="", help="comma-separated scenarios to skip")
    ap.add_argument("--bm2", default=os.path.join(REPO_ROOT, "target", "release", "bm2"))
    ap.add_argument("--pm2", default=os.path.join(BENCH_DIR, "node_modules", ".bin", "pm2"))
    ap.add_argument("--no-snapshot", action="store_true", help="run --bm2 in place instead of a private copy")
    ap.add_argument("--settle", type=float, default=1.0, help="pause after the daemon starts (default 1 s)")
    ap.add_argument("--timeout", type=float, default=600, help="per-run limit in seconds (default 600)")
    ap.add_argument("--stall", type=float, default=15,
                    help="give up waiting for the log once it has not grown for this long after the child "
                         "exited (default 15 s)")
    ap.add_argument("--out", default=os.path.join(BENCH_DIR, "results"))
    a = ap.parse_args(argv)
    only = [s.strip() for s in a.only.split(",")] if a.only else list(SCENARIOS)
    skip = [s.strip() for s in a.skip.split(",") if s.strip()]
    for s in only + skip:
        if s not in SCENARIOS:
            ap.error(f"unknown scenario {s!r}; choose from {','.join(SCENARIOS)}")
    a.scenarios = [s for s in SCENARIOS if s in only and s not in skip]
    return a


def _on_signal(signum, _frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGHUP, _on_signal)
    atexit.register(core.REG.cleanup, True)
    mgrs = {}
    meta = {"started": datetime.datetime.now().isoformat(timespec="seconds"), "host": platform.node(),
            "kernel": platform.release(), "cpus": os.cpu_count(),
            "loadavg_start": open("/proc/loadavg").read().split()[:3], "argv": sys.argv,
            "settings": {k: v for k, v in vars(args).items()}, "managers": {},
            "child": f"{python3()} {CHILD} --mb {args.mb}", "python": platform.python_version()}
    if "pm2" in args.scenarios:
        if not os.access(args.pm2, os.X_OK):
            sys.exit(f"pm2 not found at {args.pm2}: run `bash bench/setup.sh`, pass --pm2, or --skip pm2")
        mgrs["pm2"] = core.Manager("pm2", "PM2", os.path.abspath(args.pm2), "PM2_HOME", "pm2.pid")
    if any(s.startswith("bm2") for s in args.scenarios):
        if not os.access(args.bm2, os.X_OK):
            sys.exit(f"bm2 not found at {args.bm2}: `cargo build --release -p bm2`, or --bm2 PATH")
        src = os.path.abspath(args.bm2)
        binary = src
        if not args.no_snapshot:
            d = tempfile.mkdtemp(prefix="bench-bm2-bin-")
            core.REG.final_dirs.append(d)
            binary = os.path.join(d, "bm2")
            shutil.copy2(src, binary)
        m = core.Manager("bm2", "bm2", binary, "BM2_HOME", "daemon.pid")
        m.display = src
        mgrs["bm2"] = m
    for k, m in mgrs.items():
        meta["managers"][k] = {"binary": m.display, "version": core.version_of(m)}
    log("managers: " + ", ".join(f"{m.label} {meta['managers'][k]['version']}" for k, m in mgrs.items()))
    n_lines = logchild.total_lines(args.mb)
    log(f"child writes {n_lines:,} lines = {n_lines * logchild.LINE_BYTES:,} bytes; "
        f"{args.reps} reps of {', '.join(args.scenarios)}")
    results = {k: [] for k in args.scenarios}
    errors = []
    interrupted = False
    try:
        for rep in range(args.reps):
            k = rep % len(args.scenarios)
            order = args.scenarios[k:] + args.scenarios[:k]
            for kind in order:
                try:
                    r = run_one(kind, args, mgrs)
                    r["rep"] = rep
                    results[kind].append(r)
                    c = r.get("check") or {}
                    log(f"rep {rep + 1} {kind}: write {r['write_s']:.2f} s, complete after "
                        f"{r['first_write_to_complete_s']:.2f} s, sink CPU "
                        f"{'-' if r['sink_cpu_s'] is None else format(r['sink_cpu_s'], '.2f')} s, "
                        f"log {c.get('bytes', '-')} B, {c.get('lines_in_order', '-')} lines in order")
                except Exception as e:
                    msg = e.describe() if isinstance(e, core.CmdError) else f"{type(e).__name__}: {e}"
                    errors.append({"scenario": kind, "rep": rep, "error": msg})
                    log(f"ERROR rep {rep + 1} {kind}: {msg}")
                finally:
                    core.REG.cleanup()
    except KeyboardInterrupt:
        interrupted = True
        log("interrupted; cleaning up")
    finally:
        core.REG.cleanup()
    meta["loadavg_end"] = open("/proc/loadavg").read().split()[:3]
    tbl, med = table(results, args)
    gl = goals(results, med, args)
    mb = n_lines * logchild.LINE_BYTES / 1e6
    print()
    print(f"## Log throughput — {meta['started']} on {meta['host']} ({meta['cpus']} CPUs, "
          f"load {' '.join(meta['loadavg_start'])})")
    print()
    print(", ".join(f"{m.label}: {meta['managers'][k]['version']}" for k, m in mgrs.items())
          + f". Child: {n_lines:,} lines of 100 bytes ({mb:g} MB) to stdout; medians of {args.reps} runs.")
    print()
    print(tbl)
    print()
    print("child write time: measured by the child (first write → last write returned). "
          "first write → log complete: until the child exited and the log file(s) hold the last line. "
          "sink CPU: utime+stime of the daemon (from before `start` to log complete) or of `cat`.")
    if gl:
        print()
        print("Goals:")
        print("\n".join(gl))
    if errors:
        print()
        print("Errors:")
        for e in errors:
            print(f"- {e['scenario']} rep {e['rep'] + 1}:\n```\n{e['error']}\n```")
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, f"logs-{meta['started'].replace(':', '').replace('-', '')}.json")
    with open(path, "w") as f:
        json.dump({"meta": meta, "runs": results, "medians": med, "errors": errors,
                   "table_markdown": tbl, "goals": gl}, f, indent=1)
    print()
    print(f"JSON: {os.path.relpath(path, os.getcwd())}")
    return 130 if interrupted else (1 if errors else 0)


if __name__ == "__main__":
    sys.exit(main())
