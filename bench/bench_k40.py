"""K40 twofold counting on the full ARCA-230 IO_TSL1 stream: km3mon vs km3pipe, same data.

The simulator produces a few seconds of a generated 230-DU detector (every DOM, every
timeslice, every DataFilter's message). Measured in this run, on the same payloads:

* the stream: IO_TSL1 and IO_TSSN messages, MB/s and hits/s at 230 DUs, and what producing
  them adds to the simulator (CPU per timeslice with and without timeslices);
* km3mon: ``locate_frames`` + ``TwofoldCounter.add`` (validating the frames, reading the hits
  from the payload, calibrating, sorting, counting) per message: ns per hit, and the cores
  needed for the whole stream (CPU seconds per second of data);
* km3pipe ``km3modules.k40.TwofoldCounter.process`` on the same timeslices, given the hit
  table it expects (``TSHits``: dom_id, time, channel_id); its parsing
  (``TimesliceParser``) is not included, so km3pipe does less work than we do here;
* the fit of one calibration period (pair fits and per-DOM solution) at 230 DUs.

    .venv/bin/python bench/bench_k40.py                  # 230 DUs, 2 s of data
    .venv/bin/python bench/bench_k40.py --dus 21 --seconds 5 --km3pipe-messages 50
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from km3mon.controlhost import FrameDecoder
from km3mon.daq.timeslice import decode_timeslice, locate_frames
from km3mon.detector import parse_detx
from km3mon.physics.k40_fit import fit_pairs, solve_doms
from km3mon.physics.twofolds import DEFAULT_TMAX_NS, PAIR_I, PAIR_J, TwofoldCounter
from km3mon.sim.sim_geometry import synthetic_detx
from km3mon.sim.simulator import Simulator


def cpu_per_step_ms(simulator: Simulator, steps: int) -> float:
    simulator.step()  # compile / warm up
    start = time.process_time()
    for _ in range(steps):
        simulator.step()
    return (time.process_time() - start) / steps * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dus", type=int, default=230)
    parser.add_argument("--seconds", type=float, default=2.0, help="seconds of data (2)")
    parser.add_argument("--km3pipe-messages", type=int, default=40, help="IO_TSL1 for km3pipe")
    parser.add_argument("--repeat", type=int, default=3, help="timings of our counter (3)")
    parser.add_argument("--tmax", type=int, default=DEFAULT_TMAX_NS, help="window, ns (20)")
    parser.add_argument(
        "--period",
        type=float,
        default=600.0,
        help="calibration period the fit is timed for: the counts scaled up from --seconds (600)",
    )
    args = parser.parse_args()
    detector = parse_detx(synthetic_detx(args.dus))
    n_doms = len(detector.optical_dom_ids)
    slices = round(args.seconds * 10)
    print(f"detector: {args.dus} DUs, {n_doms} DOMs; {slices} timeslices ({args.seconds:g} s)")

    plain = cpu_per_step_ms(Simulator(detector, seed=1), 10)
    simulator = Simulator(detector, seed=1, timeslices=True)
    with_timeslices = cpu_per_step_ms(simulator, 10)
    print(
        f"simulator CPU per timeslice: {plain:.1f} ms without timeslices, "
        f"{with_timeslices:.1f} ms with ({with_timeslices / 100:.0%} of a core in real time)"
    )
    data = b"".join(simulator.step().data for _ in range(slices))
    messages = FrameDecoder().feed(data)
    l1 = [m.payload for m in messages if m.tag == "IO_TSL1"]
    sn = [m.payload for m in messages if m.tag == "IO_TSSN"]
    l1_bytes, sn_bytes = sum(map(len, l1)), sum(map(len, sn))
    hits = sum(int(locate_frames(p).frames["n_hits"].sum()) for p in l1)
    print(
        f"IO_TSL1: {len(l1) / args.seconds:.0f} msg/s, {l1_bytes / args.seconds / 1e6:.1f} MB/s, "
        f"{hits / args.seconds / 1e6:.2f} M hits/s ({hits / args.seconds / n_doms:.0f} per DOM); "
        f"IO_TSSN: {len(sn) / args.seconds:.0f} msg/s, {sn_bytes / args.seconds / 1e6:.2f} MB/s"
    )

    counter = TwofoldCounter(detector, args.tmax)
    counter.add(l1[0], locate_frames(l1[0]))  # compile
    best = np.inf
    for _ in range(args.repeat):
        counter.reset()
        start = time.process_time()
        for payload in l1:
            counter.add(payload, locate_frames(payload))
        best = min(best, time.process_time() - start)
    ours_ns = best / hits * 1e9
    print(
        f"km3mon TwofoldCounter: {ours_ns:.1f} ns per hit, {best / args.seconds:.3f} cores for "
        f"the whole stream ({counter.exact_counts().sum()} twofolds counted)"
    )

    import km3pipe as kp
    from km3modules import k40

    class Info:
        frame_index = 0

    sample = l1[: args.km3pipe_messages]
    blobs = []
    sample_hits = 0
    for payload in sample:
        decoded = decode_timeslice(payload).hits
        sample_hits += len(decoded)
        table = kp.Table(
            {
                "dom_id": decoded["dom_id"].astype(np.int32),
                "time": decoded["time_ns"].astype(np.int64),
                "channel_id": decoded["channel"].astype(np.uint8),
            }
        )
        blobs.append(kp.Blob({"TSHits": table, "TimesliceInfo": Info()}))
    theirs = k40.TwofoldCounter(tmax=args.tmax)
    theirs.process(blobs[0])  # compile its numba kernel
    theirs.reset()
    start = time.process_time()
    for blob in blobs:
        theirs.process(blob)
    theirs_s = time.process_time() - start
    theirs_ns = theirs_s / sample_hits * 1e9
    print(
        f"km3pipe TwofoldCounter.process: {theirs_ns:.1f} ns per hit on {len(sample)} messages, "
        f"{theirs_ns * hits / args.seconds / 1e9:.2f} cores for the whole stream "
        f"(ratio {theirs_ns / ours_ns:.1f}x; km3pipe without its parsing)"
    )

    scale = args.period / args.seconds  # a period's statistics, for a realistic fit time
    livetime = counter.livetime_s * scale
    singles = np.full((len(counter.dom_index), 31), 7.4e3)
    background = (singles[:, PAIR_I] * singles[:, PAIR_J]) * 1e-9 * livetime[:, None]
    counts = (counter.exact_counts() * scale).astype(np.int32)
    start = time.process_time()
    fits = fit_pairs(counts, background, counter.pair_livetime_s * scale, counter.bin_shift_ns)
    middle = time.process_time()
    n = len(counter.dom_index)
    cos_angles = np.tile(np.cos(np.linspace(0.5, 2.5, len(PAIR_I))), (n, 1))
    solve_doms(fits, cos_angles, np.ones((n, 31), bool))
    end = time.process_time()
    print(
        f"one calibration ({args.period:g} s of data, {int(fits.valid.sum())} pairs fitted): "
        f"pair fits {middle - start:.1f} s, per-DOM solution {end - middle:.1f} s "
        f"CPU ({len(counter.dom_index)} DOMs x 465 pairs x {2 * args.tmax + 1} bins, count "
        f"matrix {counter.binned.nbytes / 1e6:.0f} MB), on the fitting thread"
    )


if __name__ == "__main__":
    main()
