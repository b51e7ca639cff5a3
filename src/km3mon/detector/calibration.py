"""Calibrating hits: PMT positions, directions and time offsets in one vectorised step.

Hit times become ``time + t0`` of the hit's PMT; no time-slewing correction is applied (km3pipe's
``Calibration.apply`` does so by default, its ``correct_slewing=False`` matches this module), since
the z–t display and the hit counts do not need the few-ns ToT-dependent shift.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import numpy as np

from km3mon.detector.database import Database
from km3mon.detector.detx import parse_detx
from km3mon.detector.errors import DetectorError
from km3mon.detector.geometry import Detector

log = logging.getLogger(__name__)

#: Names the hits table may use for the DAQ channel and the hit time (ns); first match is used.
CHANNEL_FIELDS = ("channel", "channel_id")
TIME_FIELDS = ("time_ns", "time")

#: Columns added to the hits table. ``calibrated`` is False for hits on foreign DOMs/channels;
#: their positions, t0 and time are NaN, their DU and floor -1.
CALIBRATION_FIELDS: tuple[tuple[str, str], ...] = (
    ("du", "i2"),
    ("floor", "i2"),
    ("pos_x_m", "f8"),
    ("pos_y_m", "f8"),
    ("pos_z_m", "f8"),
    ("dir_x", "f8"),
    ("dir_y", "f8"),
    ("dir_z", "f8"),
    ("t0_ns", "f8"),
    ("calibrated", "?"),
)


def calibrate_hits(detector: Detector, hits: np.ndarray) -> np.ndarray:
    """A copy of ``hits`` (structured array with dom_id, channel and time_ns) with calibration.

    The time column becomes float64 nanoseconds including the PMT t0; the CALIBRATION_FIELDS are
    appended (existing columns of the same name are replaced).
    """
    names = hits.dtype.names or ()
    channel_field = next((name for name in CHANNEL_FIELDS if name in names), None)
    time_field = next((name for name in TIME_FIELDS if name in names), None)
    if "dom_id" not in names or channel_field is None or time_field is None:
        raise DetectorError(
            f"hits need dom_id, channel and time_ns fields, got {', '.join(names) or 'none'}"
        )
    added = dict(CALIBRATION_FIELDS)
    kept = [(name, hits.dtype[name]) for name in names if name not in added]
    dtype = [(name, "f8" if name == time_field else kind) for name, kind in kept]
    out = np.empty(len(hits), dtype=dtype + list(CALIBRATION_FIELDS))
    for name, _ in kept:
        out[name] = hits[name]

    rows = detector.pmt_rows(hits["dom_id"], hits[channel_field])
    known = rows >= 0
    safe = np.where(known, rows, 0)
    dom_index = detector.pmt_dom_index[safe]
    t0_ns = np.where(known, detector.pmt_t0_ns[safe], np.nan)
    out[time_field] = hits[time_field] + t0_ns
    out["t0_ns"] = t0_ns
    out["du"] = np.where(known, detector.dom_du[dom_index], -1)
    out["floor"] = np.where(known, detector.dom_floor[dom_index], -1)
    for axis, suffix in enumerate("xyz"):
        out[f"pos_{suffix}_m"] = np.where(known, detector.pmt_pos_m[safe, axis], np.nan)
        out[f"dir_{suffix}"] = np.where(known, detector.pmt_dir[safe, axis], np.nan)
    out["calibrated"] = known
    return out


class RunCalibration:
    """The calibration valid for the current run: from the database when reachable, else a file.

    On each new run the DETX ranked for that run is fetched once (bounded by the database
    client's timeout); if that fails the previous detector stays in use and the database is
    asked again after ``retry_s`` at the next call, like the original ztplot's 60 s retry.
    """

    def __init__(
        self,
        detector: Detector,
        *,
        database: Database | None = None,
        retry_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.detector = detector
        self._database = database
        self._retry_s = retry_s
        self._clock = clock
        self._run: int | None = None
        self._next_attempt = -np.inf
        self._from_database_run: int | None = None

    def for_run(self, run: int) -> Detector:
        """The detector to calibrate hits of ``run`` with."""
        if run != self._run:
            self._run = run
            self._next_attempt = -np.inf
        if self._database is None or self._from_database_run == run:
            return self.detector
        if self._clock() < self._next_attempt:
            return self.detector
        try:
            text = self._database.detx(self.detector.det_id, run=run)
            self.detector = parse_detx(text, source=f"KM3NeT database (run {run})")
            self._from_database_run = run
            log.info("calibration for run %d from the database", run)
        except DetectorError as err:
            self._next_attempt = self._clock() + self._retry_s
            log.warning(
                "run %d: keeping calibration from %s (%s); retrying in %g s",
                run,
                self.detector.source,
                err,
                self._retry_s,
            )
        return self.detector

    def apply(self, hits: np.ndarray, run: int) -> np.ndarray:
        """Calibrate ``hits`` of ``run``; see :func:`calibrate_hits`."""
        return calibrate_hits(self.for_run(run), hits)
