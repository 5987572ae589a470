"""A worker that prints a line every second: `bm2 start examples/worker.py -i 2`."""
import os
import signal
import sys
import time

running = True


def stop(signum, frame):
    global running
    running = False


signal.signal(signal.SIGINT, stop)
signal.signal(signal.SIGTERM, stop)

n = 0
while running:
    print(f"worker {os.environ.get('NODE_APP_INSTANCE', '0')} tick {n}", flush=True)
    n += 1
    time.sleep(1)
print("worker stopping", flush=True)
sys.exit(0)
