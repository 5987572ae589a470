#!/usr/bin/env python3
"""The log-heavy app of bench/logs.py.

Writes `--mb` MB (10^6 bytes) of 100-byte lines to stdout: line i is
`%010d` % i, a space, 88 filler bytes and `\\n`, numbered from 0, so
`--mb 200` writes 2,000,000 lines = 200,000,000 bytes.

All the data is formatted up front (chunks of `--chunk-lines` lines, default
10,000 = 1 MB), so the timed part is only `write(2)` calls on fd 1: the child's
write time then depends on how fast the other end drains its stdout.

At the end it prints one JSON line to stderr, prefixed with `LOGCHILD_DONE `:
pid, bytes, lines, `write_s` (wall time from just before the first write to
just after the last write returned, perf_counter) and `first_write_realtime` /
`last_write_realtime` (CLOCK_REALTIME, seconds).
"""

import argparse
import json
import os
import sys
import time

LINE_BYTES = 100
FILL = (b"abcdefghijklmnopqrstuvwxyz" * 4)[:88]  # 10 digits + space + 88 + \n = 100
assert len(b"%010d " % 0 + FILL + b"\n") == LINE_BYTES


def line(i):
    return b"%010d " % i + FILL + b"\n"


def total_lines(mb):
    return int(mb * 1_000_000) // LINE_BYTES


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=float, default=200, help="MB (10^6 bytes) to write (default 200)")
    ap.add_argument("--chunk-lines", type=int, default=10_000, help="lines per write(2) call (default 10000)")
    a = ap.parse_args()
    n = total_lines(a.mb)
    chunks = []
    for start in range(0, n, a.chunk_lines):
        chunks.append(b"".join(b"%010d %s\n" % (i, FILL) for i in range(start, min(n, start + a.chunk_lines))))
    written = 0
    t_real0 = time.time()
    t0 = time.perf_counter()
    for c in chunks:
        mv = memoryview(c)
        while mv:
            k = os.write(1, mv)
            written += k
            mv = mv[k:]
    t1 = time.perf_counter()
    t_real1 = time.time()
    sys.stderr.write("LOGCHILD_DONE " + json.dumps({
        "pid": os.getpid(), "bytes": written, "lines": n, "write_s": t1 - t0,
        "first_write_realtime": t_real0, "last_write_realtime": t_real1,
    }) + "\n")
    sys.stderr.flush()


if __name__ == "__main__":
    main()
