"""The SN monitor's false-alarm rate on a day of simulated background, faster than real time.

The simulator's SN background, timeslice by timeslice, without the rest of the stream: the
untriggered muons of :class:`km3mon.sim.sim_timeslices.MuonBlocks` (runs of floors lit
together) with the simulator's multiplicity distribution; a coincidence of 7-11 PMTs is
selected (K40 coincidences have at most 6 PMTs; the triggered muons' coincidences are vetoed
by the monitor). Each timeslice's selected count goes through the ``sn`` monitor's own
windowing, rolling background and threshold (``SN._close``), as a frame of the live stream
would. Alarms are runs of consecutive windows above the threshold. With ``--lose-du`` a DU
stops sending halfway: the threshold must follow the active DOMs, not alarm or go blind.

With ``--burst-at`` an ``sn-burst`` (the simulator's burst model) comes that many hours in;
``alarms_in_burst`` says whether the threshold saw it, ``burst_peak`` and ``burst_peak_sigma``
how far above the background its highest window was.

Also counted: the alarms the old threshold (a Poisson tail at 5 sigma of the all-time median)
would have raised on the same counts.

    .venv/bin/python bench/sn_false_alarms.py --hours 24
"""

from __future__ import annotations

import argparse
import functools
import logging
import math
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import km3net_testdata
import numpy as np

from km3mon.config import PipelineConfig
from km3mon.detector import read_detx
from km3mon.monitors.sn import SN, OpenFrame
from km3mon.physics.coincidences import Coincidences
from km3mon.physics.sn import poisson_sf
from km3mon.runtime.monitor import monitor_in_process
from km3mon.sim.scenarios import SN_BURST_DURATION_S
from km3mon.sim.sim_timeslices import (
    TIMESLICE_S,
    MuonBlocks,
    _multiplicity_cdf,
    burst_multiplicity_weights,
    burst_total_hz,
    untriggered_muon_cdf,
)

ARCA21 = km3net_testdata.data_path("detx/KM3NeT_00000133_20221025.detx")
START_S = 1_700_000_000.0
OLD_SIGMA_TAIL = 2.866515719235352e-07  # one-sided tail of 5 Gaussian sigma
#: ``--muons triggered``: DOMs lit per muon as the triggered events light them (500 events of
#: the simulator at ARCA-21, mean 5.4 DOMs): a far more correlated background than the
#: simulator's (muons the veto missed), to test the threshold beyond the simulator's model.
TRIGGERED_DOM_MULTIPLICITY = (0, 0, 118, 87, 90, 73, 50, 34, 24, 12, 4, 2, 3, 2, 0, 1)


def sn_monitor(detx: str, folder: Path, per_week: float) -> SN:
    """The ``sn`` monitor in this process, with the default ``[SN]`` settings but the
    false-alarm rate."""
    logging.getLogger("km3mon.sn").setLevel(logging.ERROR)  # alarms are counted, not logged
    pipeline = PipelineConfig()
    pipeline = replace(pipeline, sn=replace(pipeline.sn, false_alarms_per_week=per_week))
    return monitor_in_process(SN, detx, folder, pipeline)


class Background:
    """Selected coincidences per timeslice, drawn as the simulator draws them."""

    def __init__(self, detx: str, seed: int, muons: str) -> None:
        detector = read_detx(detx)
        self.rows = np.flatnonzero(detector.n_pmts > 0)
        self.du = detector.dom_du[self.rows]
        if muons == "triggered":
            self.blocks = MuonBlocks(detector, self.rows, TRIGGERED_DOM_MULTIPLICITY)
        else:
            self.blocks = MuonBlocks(detector, self.rows)
        self.cdf = untriggered_muon_cdf()
        self.burst_cdf = _multiplicity_cdf(burst_multiplicity_weights())
        self.rng = np.random.default_rng(seed)
        self.alive = np.ones(len(self.rows), bool)

    def lose_du(self) -> None:
        self.alive &= self.du != self.du.max()

    def selected(self, low: int, high: int, burst_age_s: float | None = None) -> int:
        """Selected coincidences of one timeslice; ``burst_age_s``: an ``sn-burst`` that far
        into its course adds its coincidences, as the simulator draws them."""
        counts = self.blocks.draw(self.rng)[self.alive]
        multiplicity = np.searchsorted(self.cdf, self.rng.random(int(counts.sum())), "right")
        if burst_age_s is not None:
            mean = burst_total_hz(burst_age_s) * TIMESLICE_S * int(self.alive.sum())
            drawn = self.rng.random(int(self.rng.poisson(mean)))
            multiplicity = np.r_[multiplicity, np.searchsorted(self.burst_cdf, drawn, "right")]
        return int(np.count_nonzero((multiplicity >= low) & (multiplicity <= high)))


@functools.cache
def poisson_threshold(median: float) -> int:
    """The threshold before issue 22: the Poisson tail of the all-time median at 5 sigma."""
    k = max(int(median), 1)
    while poisson_sf(k, median) > OLD_SIGMA_TAIL:
        k += 1
    return k


def old_threshold(histogram: np.ndarray) -> int | None:
    total = int(histogram.sum())
    if total < 300:
        return None
    return poisson_threshold(max(float(np.searchsorted(np.cumsum(histogram), total / 2)), 0.5))


def run(
    hours: float,
    seed: int,
    lose_du: bool,
    muons: str = "simulator",
    per_week: float = 1.0,
    burst_at_h: float | None = None,
    detx: str = ARCA21,
) -> dict[str, float]:
    """Alarms on ``hours`` of simulated background; the numbers for BENCHMARKS.md."""
    background = Background(detx, seed, muons)
    settings = PipelineConfig().sn
    with tempfile.TemporaryDirectory() as folder:
        monitor = sn_monitor(detx, Path(folder), per_week)
        frames = round(hours * 3600 / TIMESLICE_S)
        old_alarms, old_above = 0, False
        burst_frame = None if burst_at_h is None else round(burst_at_h * 3600 / TIMESLICE_S)
        burst_frames = round(SN_BURST_DURATION_S / TIMESLICE_S)
        alarms_before_burst = burst_alarms = 0
        burst_peak, burst_sigma = 0, math.nan  # the highest window during the burst
        thresholds: list[int] = []
        started = time.perf_counter()
        for index in range(frames):
            if lose_du and index == frames // 2:
                background.lose_du()
            age_s = None
            if burst_frame is not None and 0 <= index - burst_frame < burst_frames:
                age_s = (index - burst_frame) * TIMESLICE_S
            elif burst_frame is not None and index == burst_frame + burst_frames:
                burst_alarms = monitor.alarms - alarms_before_burst
            if index == burst_frame:
                alarms_before_burst = monitor.alarms
            count = background.selected(settings.min_multiplicity, settings.max_multiplicity, age_s)
            multiplicity = np.full(count, settings.min_multiplicity, np.int64)
            frame = OpenFrame(START_S + index * TIMESLICE_S, 0.0)
            frame.coincidences.append(Coincidences(multiplicity, multiplicity, multiplicity,
                                                   multiplicity))  # fmt: skip
            frame.active_doms = int(background.alive.sum())
            monitor._close((1, index), frame)
            in_burst = burst_frame is not None and 0 <= index - burst_frame < burst_frames
            if in_burst and monitor.latest is not None and monitor.latest[1] > burst_peak:
                burst_peak = monitor.latest[1]
                burst_sigma = monitor.significance(burst_peak)
            if index % 600 == 0 and monitor.threshold() is not None:
                thresholds.append(monitor.threshold())
            if monitor.latest is not None and monitor.latest[0] == frame.time_s:
                old = old_threshold(monitor.histogram)
                above = old is not None and monitor.latest[1] >= old
                old_alarms += above and not old_above
                old_above = above
        elapsed_s = time.perf_counter() - started
    weeks = hours / (7 * 24)
    expected, dispersion = monitor.background.model(monitor.active_doms)
    return {
        "hours": hours,
        "frames": frames,
        "target_per_week": per_week,
        "alarms": monitor.alarms,
        "alarms_per_week": monitor.alarms / weeks,
        "windows_above": monitor.above_threshold,
        "alarms_in_burst": burst_alarms,
        "burst_peak": burst_peak,
        "burst_peak_sigma": burst_sigma,
        "old_alarms": old_alarms,
        "old_alarms_per_week": old_alarms / weeks,
        "mean_per_window": expected,
        "dispersion": dispersion,
        "threshold_min": min(thresholds, default=math.nan),
        "threshold_max": max(thresholds, default=math.nan),
        "active_doms_end": monitor.active_doms,
        "speed_up": hours * 3600 / elapsed_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hours", type=float, default=24.0, help="simulated hours (24)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--lose-du", action="store_true", help="one DU stops halfway")
    parser.add_argument("--muons", choices=("simulator", "triggered"), default="simulator",
                        help="DOMs lit per muon: the simulator's (untriggered muons) or as "
                        "many as triggered events light (a stress test)")  # fmt: skip
    parser.add_argument("--per-week", type=float, default=1.0,
                        help="[SN] false_alarms_per_week (1); e.g. 168 (one an hour) to check "
                        "the rate on a day of background")  # fmt: skip
    parser.add_argument("--burst-at", type=float, help="an sn-burst this many hours in")
    parser.add_argument("--detx", default=ARCA21)
    args = parser.parse_args()
    result = run(args.hours, args.seed, args.lose_du, args.muons, args.per_week,
                 args.burst_at, args.detx)  # fmt: skip
    for key, value in result.items():
        print(f"{key:>22}: {value:.4g}" if isinstance(value, float) else f"{key:>22}: {value}")


if __name__ == "__main__":
    main()
