"""Cost of the detector-wide summary images at 230 DUs (4 140 DOMs), per render tick.

pmt_rates draws ``pmt_rates_summary.png`` every interval (20 s by default), ahrs_calibration
``ahrs_summary.png`` every render (60 s; three panels, deviation from each DOM's 24 h
median, the medians recomputed every 10 minutes). Both monitors run in-process on a
synthetic 230-DU detector with their rings filled; the script times the summary step
alone (frame with stamps, levels, PNG, metrics) and, as the reference of equal work, the
same image drawn by matplotlib (``pcolormesh`` + ``savefig``), and reports the share of
one core at the default cadences.

    .venv/bin/python bench/bench_summaries.py [--dus 230] [--repeats 10]
"""

from __future__ import annotations

import argparse
import io
import logging
import statistics
import tempfile
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import numpy as np

from km3mon.config import PipelineConfig
from km3mon.monitors.ahrs_calibration import AHRSMonitor
from km3mon.monitors.pmt_rates import FLAG_COLOURS, PMTRates
from km3mon.runtime.freshness import Freshness
from km3mon.runtime.monitor import Context
from km3mon.sim.sim_geometry import synthetic_detx


def context(folder: Path, detx: Path, interval_s: float) -> Context:
    args = argparse.Namespace(plot_dir=folder / "plots", data_dir=folder / "data", det_id=0,
                              detx=str(detx), du=None, columns=800, clbmap=None,
                              compass_map=None, ahrscalib=None)  # fmt: skip
    freshness = Freshness("bench", 0, time.time(), "-", [], interval_s, 3 * interval_s)
    freshness.last_message_at = freshness.newest_data_at = time.time()
    return Context(args, freshness, logging.getLogger("bench"), PipelineConfig())


def timed(step, repeats: int) -> float:
    step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def matplotlib_reference(monitor: PMTRates, repeats: int) -> float:
    """The same DU × floor map of flagged PMTs drawn by matplotlib each tick."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import BoundaryNorm, ListedColormap

    detector = monitor.detector
    dus = np.unique(detector.dom_du[monitor.slots.dom_index])
    grid = np.full((detector.n_floors, len(dus)), np.nan)

    def draw() -> bytes:
        count = monitor.flagged_per_dom()
        columns = np.searchsorted(dus, detector.dom_du[monitor.slots.dom_index])
        grid[detector.dom_floor[monitor.slots.dom_index] - 1, columns] = count
        figure, axes = plt.subplots(figsize=(20, 5.2), dpi=80)
        mesh = axes.pcolormesh(grid, cmap=ListedColormap(FLAG_COLOURS),
                               norm=BoundaryNorm([0, 1, 2, 3, 5, 9, 17, 32], 7))  # fmt: skip
        figure.colorbar(mesh, ax=axes)
        axes.set_title("PMTs out of range or in high-rate veto, per DOM")
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=80, pil_kwargs={"compress_level": 1})
        plt.close(figure)
        return buffer.getvalue()

    return timed(draw, repeats)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dus", type=int, default=230)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="km3mon-summaries-"))
    detx = folder / "detector.detx"
    detx.write_text(synthetic_detx(args.dus))
    rng = np.random.default_rng(1)

    pmt = PMTRates(context(folder, detx, 20.0))
    n = len(pmt.slots)
    pmt.newest_rates_khz = rng.normal(7.5, 1.0, (n, 31))
    pmt.newest_hrv = np.zeros((n, 31))
    pmt.newest_rates_khz[5, 3] = 600.0  # a hot PMT
    pmt.newest_rates_khz[77] = np.nan  # a silent DOM
    pmt_s = timed(pmt.render_summary, args.repeats)
    reference_s = matplotlib_reference(pmt, args.repeats)

    ahrs = AHRSMonitor(context(folder, detx, 60.0))
    for name in ("yaw", "pitch", "roll"):
        angles = ahrs.series[name]
        for column in range(angles.steps.shape[1]):
            angles.store(column, rng.normal(10.0, 1.0, len(angles.steps)))
    ahrs.ring.starts_s[:] = time.time() - np.arange(len(ahrs.ring.starts_s))[::-1] * ahrs.bin_s
    ahrs_s = timed(ahrs.render_summary, args.repeats)

    def fresh_baselines() -> None:
        ahrs._baselines = None
        ahrs.baselines()

    baseline_s = timed(fresh_baselines, args.repeats)

    print(f"{args.dus} DUs, {n} DOMs; median of {args.repeats} renders (shared, loaded machine)")
    print("| summary | per render [ms] | cadence [s] | share of one core |")
    print("|---|---:|---:|---:|")
    for label, seconds, cadence in (
        ("pmt_rates_summary (ours)", pmt_s, 20.0),
        ("same map by matplotlib pcolormesh + savefig", reference_s, 20.0),
        ("ahrs_summary (ours, 3 panels)", ahrs_s, 60.0),
        ("ahrs 24 h medians of 4 140 DOMs × 3 angles", baseline_s, 600.0),
    ):
        print(f"| {label} | {seconds * 1e3:.1f} | {cadence:g} | {seconds / cadence:.2%} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
