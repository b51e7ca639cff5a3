"""Coincidences of the SN stream: groups of hits on one DOM and their multiplicity.

``IO_TSSN`` carries only DOM-local coincidence groups (``docs/timeslices.md`` §1), hits grouped
per PMT, not in time order. Per frame, the hits are calibrated with the DETX t0 (relative to the
detector's median t0, the frame of the events' hit times), sorted, and cut into groups: a group
is a first hit and every later hit within ``window_ns`` of it; its multiplicity is the number of
distinct PMTs (the observable of the supernova search, ``docs/timeslices.md`` §4). The walk then
goes on after the group. One numba kernel per message, reading the hits from the payload bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from km3mon.daq.summaryslice import N_CHANNELS
from km3mon.daq.timeslice import TimesliceFrames
from km3mon.detector import Detector
from km3mon.physics.hits import HIT_SIZE, raw_time_ns
from km3mon.physics.pmts import pmt_table

_CHANNEL_BITS = 5
_CHANNEL_MASK = (1 << _CHANNEL_BITS) - 1
_BIAS_NS = 1 << 24  # keeps calibrated times positive in the sort keys


@dataclass
class Coincidences:
    """One row per coincidence: detector DOM index, calibrated start time (ns since the
    frame start, plus the reference t0), multiplicity (distinct PMTs) and number of hits."""

    dom_index: np.ndarray
    time_ns: np.ndarray
    multiplicity: np.ndarray
    n_hits: np.ndarray

    def __len__(self) -> int:
        return len(self.dom_index)


class CoincidenceFinder:
    """Calibration table of a detector and the kernel that groups a message's hits."""

    def __init__(self, detector: Detector, window_ns: int = 10) -> None:
        if window_ns < 1:
            raise ValueError(f"window_ns must be at least 1, got {window_ns}")
        self.detector = detector
        self.window_ns = window_ns
        every_dom = np.arange(len(detector.dom_ids))
        t0_ns = pmt_table(detector, every_dom, detector.pmt_t0_ns, np.nan)
        finite = t0_ns[np.isfinite(t0_ns)]
        #: The detector's median t0: calibrated times are raw + (t0 - reference).
        self.reference_t0_ns = float(np.median(finite)) if len(finite) else 0.0
        self.t0_ns = np.rint(np.nan_to_num(t0_ns - self.reference_t0_ns)).astype(np.int64)

    def calibrated_ns(self, dom_index: np.ndarray, channel: np.ndarray, raw_ns: np.ndarray):
        """Calibrated times of hits given by detector DOM index (>= 0) and channel."""
        channel = np.minimum(channel.astype(np.int64), N_CHANNELS - 1)
        return raw_ns.astype(np.int64) + self.t0_ns[dom_index, channel]

    def find(self, payload: bytes, located: TimesliceFrames) -> tuple[Coincidences, np.ndarray]:
        """The coincidences of one located ``IO_TSSN`` and the DOM ids not in the detector."""
        frames = located.frames
        dom_index = self.detector.dom_index(frames["dom_id"])
        n_hits = frames["n_hits"].astype(np.int64)
        capacity = max(int(n_hits[dom_index >= 0].sum()), 1)
        out_dom = np.empty(capacity, np.int64)
        out_time = np.empty(capacity, np.int64)
        out_multiplicity = np.empty(capacity, np.int64)
        out_hits = np.empty(capacity, np.int64)
        found = _group(
            np.frombuffer(payload, np.uint8), located.hit_offsets, n_hits, dom_index, self.t0_ns,
            self.window_ns, int(n_hits.max(initial=0)), out_dom, out_time, out_multiplicity,
            out_hits,
        )  # fmt: skip
        coincidences = Coincidences(
            out_dom[:found], out_time[:found] - _BIAS_NS, out_multiplicity[:found], out_hits[:found]
        )
        return coincidences, frames["dom_id"][dom_index < 0]


@njit(cache=True, nogil=True)
def _group(
    buffer, hit_offsets, n_hits, dom_index, t0_ns, window, longest, out_dom, out_time,
    out_multiplicity, out_hits,
):  # fmt: skip
    keys = np.empty(max(longest, 1), np.int64)
    found = 0
    for frame in range(len(dom_index)):
        dom = dom_index[frame]
        if dom < 0:
            continue
        start = hit_offsets[frame]
        n = 0
        for hit in range(n_hits[frame]):
            at = start + HIT_SIZE * hit
            channel = np.int64(buffer[at])
            if channel >= N_CHANNELS:
                continue
            raw = raw_time_ns(buffer, at)
            keys[n] = ((raw + t0_ns[dom, channel] + _BIAS_NS) << _CHANNEL_BITS) | channel
            n += 1
        if n == 0:
            continue
        ordered = np.sort(keys[:n])
        first = 0
        while first < n:
            first_time = ordered[first] >> _CHANNEL_BITS
            pmts = np.int64(0)
            last = first
            while last < n and (ordered[last] >> _CHANNEL_BITS) - first_time <= window:
                pmts |= np.int64(1) << (ordered[last] & _CHANNEL_MASK)
                last += 1
            multiplicity = 0
            while pmts:
                pmts &= pmts - 1
                multiplicity += 1
            out_dom[found] = dom
            out_time[found] = first_time
            out_multiplicity[found] = multiplicity
            out_hits[found] = last - first
            found += 1
            first = last
    return found
