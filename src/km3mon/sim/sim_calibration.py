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

Beside the delays, each PMT has a true relative efficiency (it scales the PMT's singles rate and
its K40 coincidences) and a true width of its K40 hit times (transit-time spread plus photon
paths); the timeslice streams (:mod:`.sim_timeslices`) and the K40 calibration validated against
them use both. :meth:`TrueCalibration.draw_pmt_constants` draws all three per PMT;
:meth:`TrueCalibration.truth` is what ``km3mon simulate --calibration-truth FILE`` records.
"""

from __future__ import annotations

import numpy as np

from km3mon.daq.summaryslice import N_CHANNELS
from km3mon.detector import Detector
from km3mon.physics.pmts import pmt_table

#: How wrong the DETX t0 of a PMT is (true delay minus DETX t0): Gaussian, clipped, in ns.
OFFSET_SIGMA_NS = 0.3
OFFSET_LIMIT_NS = 0.6
#: Relative PMT efficiency: Gaussian around 1, clipped.
EFFICIENCY_SIGMA = 0.1
EFFICIENCY_LIMITS = (0.6, 1.4)
#: Spread of a PMT's K40 hit times (ns): mean and sigma between PMTs. Two PMTs together give
#: the ~3.5 ns wide coincidence peak of real K40 data (km3pipe starts its fits at 4 ns).
WIDTH_NS = (2.5, 0.2)


class TrueCalibration:
    """DETX t0 and PMT geometry per optical DOM and channel, and the true offsets from them."""

    def __init__(self, detector: Detector) -> None:
        optical = np.flatnonzero(detector.n_pmts > 0)
        shape = (len(optical), N_CHANNELS)
        #: DETX t0 (ns) of each PMT; NaN for channels a DOM does not have.
        self.detx_t0_ns = pmt_table(detector, optical, detector.pmt_t0_ns, np.nan)
        #: PMT positions (m) and directions, NaN where absent.
        self.pmt_pos_m = pmt_table(detector, optical, detector.pmt_pos_m, np.nan)
        self.pmt_dir = pmt_table(detector, optical, detector.pmt_dir, np.nan)
        finite = self.detx_t0_ns[np.isfinite(self.detx_t0_ns)]
        #: One constant for the detector: the median DETX t0 (0 for a DETX without t0s).
        self.reference_t0_ns = float(np.median(finite)) if len(finite) else 0.0
        #: True delay minus DETX t0 per PMT (ns): how wrong the DETX is. Scenarios add to it.
        self.offset_ns = np.zeros(shape)
        #: DOM id of each optical row.
        self.dom_ids = detector.dom_ids[optical]
        present = np.isfinite(self.detx_t0_ns)
        #: Relative efficiency of each PMT (1 = nominal), 0 where the DOM has no such channel.
        self.efficiency = present.astype(float)
        #: Spread of each PMT's K40 hit times (ns), NaN where absent.
        self.width_ns = np.where(present, WIDTH_NS[0], np.nan)
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

    def draw_pmt_constants(self, rng: np.random.Generator) -> None:
        """Random true offsets (how wrong the DETX is), efficiencies and widths per PMT."""
        present = np.isfinite(self.detx_t0_ns)
        shape = self.detx_t0_ns.shape
        offsets = np.clip(rng.normal(0, OFFSET_SIGMA_NS, shape), -OFFSET_LIMIT_NS, OFFSET_LIMIT_NS)
        self.offset_ns = np.where(present, offsets, 0.0)
        efficiency = np.clip(rng.normal(1, EFFICIENCY_SIGMA, shape), *EFFICIENCY_LIMITS)
        self.efficiency = np.where(present, efficiency, 0.0)
        widths = np.clip(rng.normal(*WIDTH_NS, shape), 1.0, 5.0)
        self.width_ns = np.where(present, widths, np.nan)

    def truth(self, detector: Detector) -> dict[str, object]:
        """The true PMT constants as a JSON-ready document (one entry per optical DOM).

        ``offset_ns``: true delay minus DETX t0, per channel; adding it to the DETX t0 gives the
        true delay (what a K40 calibration should propose, up to one constant per DOM).
        """
        rows = np.flatnonzero(detector.n_pmts > 0)
        doms = []
        for row, index in enumerate(rows.tolist()):
            present = np.isfinite(self.detx_t0_ns[row])
            doms.append(
                {
                    "dom_id": int(self.dom_ids[row]),
                    "du": int(detector.dom_du[index]),
                    "floor": int(detector.dom_floor[index]),
                    "channels": np.flatnonzero(present).tolist(),
                    "offset_ns": np.round(self.offset_ns[row][present], 4).tolist(),
                    "efficiency": np.round(self.efficiency[row][present], 5).tolist(),
                    "width_ns": np.round(self.width_ns[row][present], 4).tolist(),
                }
            )
        return {
            "det_id": int(detector.det_id),
            "reference_t0_ns": self.reference_t0_ns,
            "doms": doms,
        }
