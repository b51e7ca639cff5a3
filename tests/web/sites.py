"""Plot folders for dashboard tests and benchmarks at detector scale.

``synthetic_site`` draws a 230-DU detector's plots with the real monitors' renderers,
in-process and without a data stream: 230 PMT-rate and 230 HRV images, 690 AHRS images
(yaw, pitch, roll), both summaries and the DOM maps, with freshness records and the
summaries' metrics, in a few seconds. Everything the monitors would write, nothing else.

``calibration_plots`` adds the K40, SN and time-sync pages' plots of any DETX, drawn by the
real figure functions (K40: by the monitor itself) from made-up data with a few unhealthy
DOMs and PMTs; ``arca21_site`` and ``synthetic_site`` both have them.
"""

from __future__ import annotations

import argparse
import functools
import logging
import time
from pathlib import Path

import numpy as np

AUTH = ("shifter", "s3cret")


def _context(folder: Path, detx: Path, name: str, interval_s: float):
    from km3mon.config import PipelineConfig
    from km3mon.runtime.freshness import Freshness
    from km3mon.runtime.monitor import Context

    args = argparse.Namespace(plot_dir=folder / "plots", data_dir=folder / "data", det_id=0,
                              detx=str(detx), du=None, columns=200, clbmap=None,
                              compass_map=None, ahrscalib=None)  # fmt: skip
    now = time.time()
    # a long cadence: the records stay "running" and the panels fresh for a test session
    freshness = Freshness(name, 0, now, "127.0.0.1:5553", ["IO_MONIT"], interval_s,
                          10 * interval_s, state="running", connected=True,
                          last_message_at=now, newest_data_at=now)  # fmt: skip
    context = Context(args, freshness, logging.getLogger(name), PipelineConfig())
    context.detector = _read_detx(detx)  # read once for all the monitors of a site
    return context


@functools.lru_cache(maxsize=2)
def _read_detx(detx: Path):
    from km3mon.detector import read_detx

    return read_detx(detx)


def _finish(monitor, context) -> None:
    monitor.render()
    while monitor.render_more():
        pass
    # a long cadence in the record: the process stays "running", its panels fresh, for a
    # whole test session although nothing redraws them
    context.freshness.render_interval_s = 3600.0
    context.freshness.write(context.data_dir / "freshness" / f"{monitor.name}.json")


def synthetic_site(folder: Path, n_dus: int = 230) -> Path:
    """``folder/plots``, ``folder/data`` and a ``pipeline.toml`` with the test credentials."""
    import matplotlib

    matplotlib.use("Agg")
    from km3mon.detector import read_detx
    from km3mon.monitors.ahrs_calibration import AHRSMonitor
    from km3mon.monitors.dom_rates import DOMRates
    from km3mon.monitors.pmt_rates import PMTRates
    from km3mon.sim.sim_geometry import synthetic_detx

    folder.mkdir(parents=True, exist_ok=True)
    detx = folder / "detector.detx"
    detx.write_text(synthetic_detx(n_dus))
    detector = read_detx(detx)
    rng = np.random.default_rng(7)

    context = _context(folder, detx, "pmt_rates", 20.0)
    monitor = PMTRates(context)  # the rate and the HRV images
    n = len(monitor.slots)
    for column in range(monitor.n_columns):
        monitor.ring.starts_s[column] = time.time() - (monitor.n_columns - column) * 20
        monitor.packets[:] = 1
        monitor.rate_sum[:] = rng.normal(7500, 600, (n, 31))
        monitor.hrv_sum[:] = rng.random((n, 31)) < 0.002
        monitor.rate_sum[n // 3, 7] = 500e3  # a hot PMT
        monitor.packets[n // 2] = 0  # a silent DOM
        monitor._close_column(column)
    _finish(monitor, context)

    context = _context(folder, detx, "ahrs_calibration", 60.0)
    ahrs = AHRSMonitor(context)
    n, bins = ahrs.series["yaw"].steps.shape
    walk = np.cumsum(rng.normal(0, 0.05, (n, bins)), axis=1)
    angles = {
        "yaw": (rng.uniform(0, 360, (n, 1)) + 5 * walk) % 360,
        "pitch": rng.normal(0.5, 0.3, (n, 1)) + 0.2 * walk,
        "roll": rng.normal(-0.5, 0.3, (n, 1)) + 0.2 * walk,
    }
    for name, values in angles.items():
        for column in range(bins):
            ahrs.series[name].store(column, values[:, column])
    ahrs.ring.starts_s[:] = time.time() - (bins - np.arange(bins)) * ahrs.bin_s
    ahrs.ring.head = 0
    _finish(ahrs, context)

    context = _context(folder, detx, "dom_rates", 30.0)
    rates = DOMRates(context)
    rates.sum_khz[:] = rng.normal(240, 10, len(detector.dom_ids))
    rates.frames[:] = 1
    _finish(rates, context)

    # the K40 page's per-DU plots of the first DUs and the last only: each is the same figure
    # at any scale, and 230 of them would double this site's cost (the PMT and AHRS pages
    # have 230 tiles a row)
    calibration_plots(folder, detx, k40_dus=[1, 2, 3, 4, n_dus])
    (folder / "pipeline.toml").write_text(
        f'[WebServer]\nusername = "{AUTH[0]}"\npassword = "{AUTH[1]}"\n'
    )
    return folder


def _publish(context, figures: dict[str, object]) -> None:
    """Save ``figures`` (file name: matplotlib figure) as the monitor would, and its record."""
    for filename, figure in figures.items():
        context.save_figure(filename, figure)
    context.freshness.render_interval_s = 3600.0
    context.freshness.write(context.data_dir / "freshness" / f"{context.freshness.process}.json")


def k40_with_a_result(folder: Path, detx: Path, rng: np.random.Generator):
    """The real K40 monitor (its layout of the detector, figures and metrics) holding a
    calibration period's solution, made up: offsets of ~0.5 ns, a few PMTs far off (flagged),
    one without a K40 peak, a DOM not measured. The caller shuts its worker thread down."""
    from km3mon.monitors.k40 import K40
    from km3mon.physics.k40 import PeriodResult, pmt_sums
    from km3mon.physics.k40_fit import DOMCalibration
    from km3mon.physics.twofolds import PAIR_I, PAIR_J

    context = _context(folder, detx, "k40", 600.0)
    context.args.__dict__.update(period=600.0, t0_tolerance=2.0, tmax=20, l1_window=10.0)
    k40 = K40(context)
    present, cos_angles = k40.present, k40.cos_angles
    n = len(k40.slots)
    pair_ok = present[:, PAIR_I] & present[:, PAIR_J]
    pair_ok[n // 4, (PAIR_I == 12) | (PAIR_J == 12)] = False  # PMT 12: no peak
    pair_ok[n // 2] = False  # a DOM without any coincidences: not measured
    measured = present & (pmt_sums(pair_ok.astype(float)) > 0)  # in a pair fitted
    t0 = np.where(measured, rng.normal(0, 0.5, present.shape), np.nan)
    t0[rng.choice(n, 6, replace=False), rng.integers(0, 31, 6)] += 5.0  # out of tolerance
    efficiency = np.where(measured, rng.normal(1.0, 0.08, present.shape), np.nan)
    gain = efficiency[:, PAIR_I] * efficiency[:, PAIR_J]
    true_rate = 0.05 + 8 * np.exp(3 * (cos_angles - 1))
    noise = rng.normal(0, 0.15, pair_ok.shape)
    valid = lambda x: np.where(pair_ok, x, np.nan)  # noqa: E731
    mean = valid(t0[:, PAIR_I] - t0[:, PAIR_J] + noise)
    rate = valid(true_rate * gain * rng.normal(1, 0.03, pair_ok.shape))
    net = np.where(pair_ok, np.nan_to_num(rate) * 600, 0.0)
    pairs = pair_ok.sum(axis=1)
    calibration = DOMCalibration(
        t0_ns=t0, t0_error_ns=np.where(measured, 0.05, np.nan),
        width_ns=np.where(measured, 2.1, np.nan), relative_efficiency=efficiency,
        relative_efficiency_error=np.where(measured, 0.02, np.nan),
        n_coincidences=np.where(measured, 30 * 600 * 8, 0.0),
        corrected_mean_ns=valid(noise), corrected_rate_hz=rate / gain,
        rms_before_ns=np.sqrt(np.nansum(mean**2, axis=1) / np.maximum(pairs, 1)),
        rms_after_ns=np.sqrt(np.nansum(valid(noise) ** 2, axis=1) / np.maximum(pairs, 1)),
        k40_rate_hz=np.nansum(rate, axis=1), n_pairs=pairs,
    )  # fmt: skip
    singles = np.where(present, rng.normal(7500, 500, present.shape), 0.0)
    end = time.time()
    k40.result = PeriodResult(end - 600, end, np.full(n, 600.0), calibration, mean, rate,
                              pair_ok, singles, pmt_sums(net))  # fmt: skip
    k40.calibrations = 1
    return k40


def _k40(folder: Path, detx: Path, rng: np.random.Generator, per_du: list[int] | None) -> None:
    """The K40 page's plots, per-DU plots of ``per_du`` only (None: every DU)."""
    k40 = k40_with_a_result(folder, detx, rng)
    try:
        if per_du is not None:
            k40.dus = np.array(per_du)
        _finish(k40, k40.context)
    finally:
        k40._worker.shutdown()


def _sn(folder: Path, detx: Path, rng: np.random.Generator) -> None:
    """An hour of a quiet background at the detector's DOM count, modelled by the monitor's
    rolling background (threshold, significance), one excursion above the threshold."""
    from km3mon.figures.sn import background_histogram, peak_history, selection_text
    from km3mon.physics.sn import RollingBackground

    context = _context(folder, detx, "sn", 600.0)
    n_doms = int((context.detector.dom_floor > 0).sum())
    now = time.time()
    times = now - 3600 + 0.5 * np.arange(7200)  # 0.5 s windows
    values = rng.poisson(2e-3 * n_doms, len(times))  # selected coincidences per window
    background = RollingBackground(false_alarms_per_week=1.0)
    for time_s, value in zip(times, values, strict=True):
        background.add(time_s, int(value), n_doms)
    threshold = background.threshold(n_doms)
    values[5000] = threshold + 3
    expected, dispersion = background.model(n_doms)
    peaks = [(float(int(t)), int(v)) for t, v in zip(times[::2], values[::2], strict=True)]
    selection = selection_text(7, 11, 0.5, 1000, n_doms)
    note = "synthetic background"
    figures = {
        "sn_bg_histogram.png": background_histogram(
            np.bincount(values, minlength=64),
            (times[-1], int(values[-1])),
            expected=expected,
            dispersion=dispersion,
            active_doms=n_doms,
            threshold=threshold,
            false_alarms_per_week=1.0,
            significance=lambda value: background.significance(value, n_doms),
            selection=selection,
            note=note,
        ),
        "sn_pk_history.png": peak_history(peaks, threshold, selection, note),
    }
    _publish(context, figures)


def _timesync(folder: Path, detx: Path, rng: np.random.Generator) -> None:
    """Every DOM's state: most OK, a few with incomplete UDP, one DU's White Rabbit lost on
    some floors, a few missing."""
    from km3mon.figures.timesync import timesync_map
    from km3mon.physics.timesync import MISSING, UDP, WHITE_RABBIT
    from km3mon.runtime.binning import OpticalSlots

    context = _context(folder, detx, "timesync", 600.0)
    detector = context.detector
    slots = OpticalSlots(detector)
    n = len(slots)
    state = np.zeros(n, int)
    state[rng.choice(n, max(3, n // 200), replace=False)] = UDP
    du, floor = detector.dom_du[slots.dom_index], detector.dom_floor[slots.dom_index]
    state[(du == detector.dus[len(detector.dus) // 2]) & (floor > 12)] = WHITE_RABBIT
    state[rng.choice(n, 3, replace=False)] = MISSING
    frames = np.where(state == MISSING, np.nan, np.where(state == UDP, 8.7, 10.0))
    _publish(context, {"timesync.png": timesync_map(detector, slots.dom_index, state, frames)})


def calibration_plots(folder: Path, detx: Path, k40_dus: list[int] | None = None) -> None:
    """The K40, SN and time-sync pages' plots of ``detx``'s detector, drawn by the real
    figure functions from synthetic data; per-DU K40 plots of ``k40_dus`` only (None: all)."""
    import matplotlib

    matplotlib.use("Agg")
    rng = np.random.default_rng(11)
    _k40(folder, detx, rng, k40_dus)
    _sn(folder, detx, rng)
    _timesync(folder, detx, rng)
