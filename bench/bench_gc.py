"""Receiving IO_MONIT frames in a process with a large heap: CPython's default garbage
collector against ``km3mon.runtime.streaming.tune_garbage_collector``.

A monitor holds many objects (matplotlib figures, tables); at 44 000 messages/s the default
collector's young passes walk them again and again. Each case runs in a fresh interpreter:
the collector is set up first (as a process does at start-up, freezing only its start-up
heap), then 2 million tracked objects grow on the heap (not frozen), then
``FrameDecoder.feed`` on 4 000-frame reads while the last 20 reads stay alive, as batches
do in a monitor.

    .venv/bin/python bench/bench_gc.py
"""

from __future__ import annotations

import subprocess
import sys

CASE = """
import time
from km3mon.controlhost.prefix import FrameDecoder, encode_frame
from km3mon.runtime.streaming import tune_garbage_collector
if {tuned}:
    tune_garbage_collector()  # at start-up, as every km3mon process does
heap = [[{{}} for _ in range(10)] for _ in range(200_000)]  # grown later: figures, tables
data = encode_frame("IO_MONIT", bytes(228)) * 4000
decoder, alive, count = FrameDecoder(), [], 0
start = time.perf_counter()
for _ in range(100):
    messages = decoder.feed(data)
    count += len(messages)
    alive = [*alive[-19:], messages]
print((time.perf_counter() - start) / count * 1e9)
"""


def ns_per_message(tuned: bool) -> float:
    result = subprocess.run(
        [sys.executable, "-c", CASE.format(tuned=tuned)], capture_output=True, text=True, check=True
    )
    return float(result.stdout)


def main() -> int:
    default = min(ns_per_message(False) for _ in range(3))
    tuned = min(ns_per_message(True) for _ in range(3))
    print("| collector | ns per received message | messages/s on one core |")
    print("|---|---:|---:|")
    print(f"| CPython default | {default:.0f} | {1e9 / default:,.0f} |")
    tuned_label = "tuned (young pass every 50 000, start-up heap frozen)"
    print(f"| {tuned_label} | {tuned:.0f} | {1e9 / tuned:,.0f} |")
    print(f"\nratio: {default / tuned:.1f}× faster with the tuned collector")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
