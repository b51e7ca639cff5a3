"""What issue 14's mends cost on the hot paths, measured in one run.

1. ztplot's coincidence multiplicity (hits on a DOM within 20 ns), ours vectorised over
   DOMs against km3modules' ``count_multiplicities`` called per DOM, on the same hits
   (equal work: both give every hit its multiplicity).
2. The time guard on a batch of IO_MONIT packets of a 230-DU detector (one packet per DOM,
   4140 packets: 100 ms of data): decoding alone and decoding with the guard.
3. The run tracker on a batch of event runs (the common case: all of the current run).
4. The runtime's time gate (issue 21) on the same IO_MONIT batch, as messages.

    .venv/bin/python bench/bench_guards.py
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np


def best_s(function, repeat: int) -> float:
    """Fastest of ``repeat`` calls, in seconds."""
    best = np.inf
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best


def multiplicity(n_hits: int, n_doms: int, repeat: int) -> tuple[float, float]:
    from km3mon.monitors.ztplot import coincidence_multiplicity

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from km3modules.hits import count_multiplicities
    rng = np.random.default_rng(1)
    dom_ids = rng.integers(0, n_doms, n_hits)
    times_ns = rng.uniform(0, 3000, n_hits)

    def theirs() -> None:
        order = np.lexsort((times_ns, dom_ids))
        doms, times = dom_ids[order], times_ns[order]
        starts = np.flatnonzero(np.r_[True, doms[1:] != doms[:-1]])
        for first, last in zip(starts, np.r_[starts[1:], n_hits], strict=True):
            count_multiplicities(times[first:last])

    return best_s(lambda: coincidence_multiplicity(dom_ids, times_ns), repeat), best_s(
        theirs, max(1, repeat // 10)
    )


def guard(repeat: int) -> tuple[float, float]:
    from km3mon.daq import decode_monitoring_batch
    from km3mon.daq.monitoring import encode_monitoring_batch, new_packets
    from km3mon.runtime.decoding import packet_times_s
    from km3mon.runtime.guards import TimeGuard

    packets = new_packets(4140)
    packets["dom_id"] = np.arange(4140) + 808_000_000
    packets["utc_seconds"] = int(time.time())
    payloads = encode_monitoring_batch(packets)
    time_guard = TimeGuard()

    def decode_and_guard() -> None:
        decoded = decode_monitoring_batch(payloads)
        time_guard.plausible(packet_times_s(decoded))

    return best_s(lambda: decode_monitoring_batch(payloads), repeat), best_s(
        decode_and_guard, repeat
    )


def gate(repeat: int) -> float:
    """The runtime's time gate (issue 21) on the same 4140 IO_MONIT messages: every header
    read, judged before and after the batch."""
    from km3mon.controlhost import Message
    from km3mon.daq.monitoring import encode_monitoring_batch, new_packets
    from km3mon.runtime.guards import TimeGate, TimeGuard

    packets = new_packets(4140)
    packets["dom_id"] = np.arange(4140) + 808_000_000
    packets["utc_seconds"] = int(time.time())
    messages = [Message("IO_MONIT", p) for p in encode_monitoring_batch(packets)]
    time_gate = TimeGate(TimeGuard())
    return best_s(lambda: time_gate.admit(messages), repeat)


def tracker(repeat: int) -> float:
    from km3mon.runtime.guards import RunTracker

    runs_tracker = RunTracker()
    runs, times_s = np.full(500, 10_000), np.arange(500) * 0.002
    runs_tracker.update(runs, times_s)
    return best_s(lambda: runs_tracker.update(runs, times_s), repeat)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=50)
    args = parser.parse_args()
    print("| what | ours | peer | peer / ours |")
    print("|---|---|---|---|")
    for n_hits, n_doms in ((2000, 400), (20000, 4000)):
        ours, theirs = multiplicity(n_hits, n_doms, args.repeat)
        print(f"| coincidence multiplicity, {n_hits} hits on {n_doms} DOMs | "
              f"{ours * 1e3:.2f} ms | {theirs * 1e3:.1f} ms (km3modules, per DOM) | "
              f"{theirs / ours:.0f}× |")  # fmt: skip
    decode_s, guarded_s = guard(args.repeat)
    print(f"| 4140 IO_MONIT packets (230 DUs, 100 ms): decode / decode + time guard | "
          f"{decode_s * 1e3:.2f} ms / {guarded_s * 1e3:.2f} ms | - | "
          f"guard adds {(guarded_s - decode_s) * 1e6:.0f} µs |")  # fmt: skip
    print(f"| the same 4140 messages through the runtime's time gate | "
          f"{gate(args.repeat) * 1e3:.2f} ms | - | - |")  # fmt: skip
    print(f"| run tracker, batch of 500 events of the current run | "
          f"{tracker(args.repeat) * 1e6:.0f} µs | - | - |")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
