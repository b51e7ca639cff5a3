"""Plot folders for dashboard tests and benchmarks at detector scale.

``synthetic_site`` draws a 230-DU detector's plots with the real monitors' renderers,
in-process and without a data stream: 230 PMT-rate and 230 HRV images, 690 AHRS images
(yaw, pitch, roll), both summaries and the DOM maps, with freshness records and the
summaries' metrics, in a few seconds. Everything the monitors would write, nothing else.
"""

from __future__ import annotations

import argparse
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
    return Context(args, freshness, logging.getLogger(name), PipelineConfig())


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
    from km3mon.monitors.pmt_hrv import PMTHRV
    from km3mon.monitors.pmt_rates import PMTRates
    from km3mon.sim.sim_geometry import synthetic_detx

    folder.mkdir(parents=True, exist_ok=True)
    detx = folder / "detector.detx"
    detx.write_text(synthetic_detx(n_dus))
    detector = read_detx(detx)
    rng = np.random.default_rng(7)

    for monitor_class in (PMTRates, PMTHRV):
        context = _context(folder, detx, monitor_class.name, 20.0)
        monitor = monitor_class(context)
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
    n, bins = ahrs.series["yaw"].shape
    walk = np.cumsum(rng.normal(0, 0.05, (n, bins)), axis=1)
    ahrs.series["yaw"][:] = (rng.uniform(0, 360, (n, 1)) + 5 * walk) % 360
    ahrs.series["pitch"][:] = rng.normal(0.5, 0.3, (n, 1)) + 0.2 * walk
    ahrs.series["roll"][:] = rng.normal(-0.5, 0.3, (n, 1)) + 0.2 * walk
    ahrs.ring.starts_s[:] = time.time() - (bins - np.arange(bins)) * ahrs.bin_s
    ahrs.ring.head = 0
    _finish(ahrs, context)

    context = _context(folder, detx, "dom_rates", 30.0)
    rates = DOMRates(context)
    rates.sum_khz[:] = rng.normal(240, 10, len(detector.dom_ids))
    rates.frames[:] = 1
    _finish(rates, context)

    (folder / "pipeline.toml").write_text(
        f'[WebServer]\nusername = "{AUTH[0]}"\npassword = "{AUTH[1]}"\n'
    )
    return folder
