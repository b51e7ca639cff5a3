"""The simulated detector's true PMT time delays, and the raw TDC times the DAQ writes.

A real DAQ stamps a hit with its TDC time: the true arrival time of the light minus the PMT's
true delay (cable, electronics), counted from the frame start. Calibration adds the DETX t0
back, so with a correct DETX it restores the true time. The DETX t0s of a real detector are
large (~480 µs for ARCA-21, spread over a few µs between PMTs) because they also hold the
shore-station clock offsets; only their differences matter for physics. So the simulator writes

    raw_ns = true_ns - (t0_detx[pmt] + offset_ns[pmt] - reference_t0_ns)

where ``reference_t0_ns`` is the median DETX t0 of the detector (keeps raw times near the true
ones, inside the 100 ms frame) and ``offset_ns`` is how wrong the DETX is for that PMT (zero
unless a scenario says otherwise). A monitor calibrating with the DETX then gets

    calibrated_ns = raw_ns + t0_detx[pmt] = true_ns + reference_t0_ns - offset_ns[pmt]

i.e. the true time in the frame plus one constant for the whole detector: the frame in which
the simulator's truth records (track times) are given.

Arrays are per optical DOM (the detector's DOMs with PMTs, in detector order) and DAQ channel.
"""

from __future__ import annotations

import numpy as np

from km3mon.daq.summaryslice import N_CHANNELS
from km3mon.detector import Detector


class TrueCalibration:
    """DETX t0 and PMT geometry per optical DOM and channel, and the true offsets from them."""

    def __init__(self, detector: Detector) -> None:
        optical = np.flatnonzero(detector.n_pmts > 0)
        row_of_dom = np.full(len(detector.dom_ids), -1)
        row_of_dom[optical] = np.arange(len(optical))
        pmt_row = row_of_dom[detector.pmt_dom_index]
        usable = (pmt_row >= 0) & (detector.pmt_channel < N_CHANNELS)
        shape = (len(optical), N_CHANNELS)
        where = (pmt_row[usable], detector.pmt_channel[usable])
        #: DETX t0 (ns) of each PMT; NaN for channels a DOM does not have.
        self.detx_t0_ns = np.full(shape, np.nan)
        self.detx_t0_ns[where] = detector.pmt_t0_ns[usable]
        #: PMT positions (m) and directions, NaN where absent.
        self.pmt_pos_m = np.full((*shape, 3), np.nan)
        self.pmt_pos_m[where] = detector.pmt_pos_m[usable]
        self.pmt_dir = np.full((*shape, 3), np.nan)
        self.pmt_dir[where] = detector.pmt_dir[usable]
        finite = self.detx_t0_ns[np.isfinite(self.detx_t0_ns)]
        #: One constant for the detector: the median DETX t0 (0 for a DETX without t0s).
        self.reference_t0_ns = float(np.median(finite)) if len(finite) else 0.0
        #: True delay minus DETX t0 per PMT (ns): how wrong the DETX is. Scenarios add to it.
        self.offset_ns = np.zeros(shape)
        #: What is subtracted from a true time to give the raw time, without offsets.
        self._base_delay_ns = np.nan_to_num(self.detx_t0_ns - self.reference_t0_ns)

    def delay_ns(
        self, dom_rows: np.ndarray, channels: np.ndarray, shift_ns: np.ndarray | None = None
    ) -> np.ndarray:
        """``true - raw`` of hits on optical DOM rows and channels (``shift_ns``: extra
        per-(row, channel) offsets of this timeslice, e.g. from a scenario)."""
        delay = self._base_delay_ns[dom_rows, channels] + self.offset_ns[dom_rows, channels]
        if shift_ns is not None:
            delay = delay + shift_ns[dom_rows, channels]
        return delay
