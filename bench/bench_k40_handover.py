"""k40 at a period's end at 230 DUs: the closed period's bins packed while they wait for the
fit, against the bins kept as they are (what k40 did before).

Each side is a process of its own with the real ``K40`` monitor of a 230-DU detector. Its
bins are filled as a 10-minute period fills them (per bin Poisson 30 accidentals, and a
coincidence peak of Poisson 150 in 5 bins of 60 pairs per DOM), then the period is closed
as at a period's end: the fit runs on its worker thread while the next period's bins fill
(all of them touched ``--touch-after`` seconds later; counting at 64 MB/s touches them within
seconds). Reported per side: the resident memory before, its peak during the hand-over and
the fit, and at the fit's end, and the fit's time. Both sides must give the same calibration
(checked: every t0, efficiency and width).

    .venv/bin/python bench/bench_k40_handover.py --json bench/results/k40_handover.json
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from benchlib import write_results

SIDES = ("kept", "packed")


def rss_mb() -> float:
    status = Path("/proc/self/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024


def run_side(side: str, dus: int, touch_after_s: float, out: Path) -> None:
    """One side, in this process: fill, close, fit; its numbers and calibration to ``out``."""
    from km3mon.config import load_pipeline
    from km3mon.monitors.k40 import K40
    from km3mon.physics.twofolds import PeriodCounts
    from km3mon.runtime.freshness import Freshness
    from km3mon.runtime.monitor import Context
    from km3mon.sim.sim_geometry import synthetic_detx

    packed_mb = [0.0]
    if side == "kept":
        PeriodCounts.pack = lambda self, part_slots: None  # the bins stay as they are
    else:
        pack = PeriodCounts.pack

        def measured_pack(self: PeriodCounts, part_slots: int) -> None:
            started = time.perf_counter()
            pack(self, part_slots)
            packed_mb[0] = sum(map(len, self.packed)) / 2**20
            packed_mb.append(time.perf_counter() - started)

        PeriodCounts.pack = measured_pack
    folder = Path(tempfile.mkdtemp(prefix="km3mon-k40-handover-"))
    detx = folder / f"{dus}_dus.detx"
    detx.write_text(synthetic_detx(dus, t0_seed=1))
    args = argparse.Namespace(det_id=0, detx=str(detx), plot_dir=str(folder / "plots"),
                              data_dir=str(folder / "data"), period=600, t0_tolerance=2.0,
                              tmax=20, l1_window=10.0)  # fmt: skip
    freshness = Freshness(process="k40", pid=0, started_at=time.time(), ligier="-", tags=[],
                          render_interval_s=60.0, stale_after_s=600.0)  # fmt: skip
    monitor = K40(Context(args, freshness, logging.getLogger("k40"), load_pipeline(None)))
    counter = monitor.counter
    rng = np.random.default_rng(1)
    for slot in range(len(counter.binned)):
        counter.binned[slot] = rng.poisson(30, counter.binned.shape[1:])
        counter.binned[slot, :60, 18:23] += rng.poisson(150, (60, 5)).astype(np.uint16)
    counter.frames[:] = 6000
    monitor._rates_product[:] = 1e7
    monitor._singles_sum[:] = 6000 * 7000.0
    monitor._summary_frames[:] = 6000
    monitor.period, monitor.period_start_s = 0, time.time() - 600
    monitor.period_end_s = time.time()
    before = rss_mb()
    peak, done = [before], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], rss_mb())
            time.sleep(0.05)

    threading.Thread(target=sample, daemon=True).start()
    started = time.perf_counter()
    monitor._close_period()
    time.sleep(touch_after_s)
    monitor.counter.binned[:] = 1  # the next period's bins, all touched
    while not monitor._pending.done():
        time.sleep(0.1)
    fit_s = time.perf_counter() - started
    at_end = rss_mb()
    done.set()
    result = monitor._pending.result().calibration
    np.savez(out.with_suffix(".npz"), t0=result.t0_ns, efficiency=result.relative_efficiency,
             width=result.width_ns)  # fmt: skip
    numbers = {"rss_before_mb": before, "peak_rss_mb": peak[0], "rss_at_fit_end_mb": at_end,
               "fit_s": fit_s, "bins_mb": counter.binned.nbytes / 2**20,
               "packed_mb": packed_mb[0], "pack_s": packed_mb[1:] and packed_mb[1]}  # fmt: skip
    out.write_text(json.dumps(numbers))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dus", type=int, default=230)
    parser.add_argument("--touch-after", type=float, default=2.0, help="seconds [s]")
    parser.add_argument("--side", choices=SIDES, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, help="write the results here as JSON too")
    args = parser.parse_args()
    if args.side:
        run_side(args.side, args.dus, args.touch_after, args.out)
        return 0
    results, calibrations = {}, {}
    with tempfile.TemporaryDirectory() as folder:
        for side in SIDES:
            out = Path(folder) / f"{side}.json"
            subprocess.run([sys.executable, __file__, "--side", side, "--out", str(out),
                            "--dus", str(args.dus), "--touch-after", str(args.touch_after)],
                           check=True, stderr=subprocess.DEVNULL)  # fmt: skip
            results[side] = json.loads(out.read_text())
            calibrations[side] = dict(np.load(out.with_suffix(".npz")))
    for name in calibrations["kept"]:
        np.testing.assert_array_equal(calibrations["packed"][name], calibrations["kept"][name])
    print(f"k40 at {args.dus} DUs, a period's end (the same calibration on both sides)")
    for side, row in results.items():
        print(f"  {side:7} RSS before {row['rss_before_mb']:6.0f} MB, peak "
              f"{row['peak_rss_mb']:6.0f} MB, at the fit's end {row['rss_at_fit_end_mb']:6.0f} MB; "
              f"fit {row['fit_s']:5.1f} s")  # fmt: skip
    packed = results["packed"]
    print(f"  bins {packed['bins_mb']:.0f} MB packed into {packed['packed_mb']:.0f} MB "
          f"in {packed['pack_s']:.1f} s")  # fmt: skip
    write_results(args, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
