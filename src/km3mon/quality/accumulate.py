"""What a run's quality record counts, from the streams km3mon already reads.

One :class:`RunAccumulator` per run takes whole batches: decoded summary slices (``IO_SUM``),
the event table of ``IO_EVT`` and the frame tables of ``IO_TSSN``. It keeps sums, not samples:
per DAQ minute a row of counters (:data:`COUNTERS`; the run's totals are their sums), per DOM
its frames and summed rate, per PMT the frames with a non-zero rate, a bitmap of the summary
slices seen (the live time counts each timeslice once, however many DataFilters send it), and
the histograms the shape tests compare (hits per event, multi-DU zenith). Everything is
vectorised per batch; :meth:`RunAccumulator.state` and :meth:`RunAccumulator.from_state` carry
it across a restart.

The quantities (:meth:`RunAccumulator.quantities`) use JQAQC's names where the quantity is the
same (README "Run quality" says which are JQAQC's and which are ours).
"""

from __future__ import annotations

import io
import math
import struct
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from km3mon.daq.preamble import DAQSUPERFRAME, DAQTIMESLICESN, records_at
from km3mon.daq.summaryslice import N_CHANNELS, RATES_HZ_LUT, Summaryslice
from km3mon.daq.timeslice import SUPERFRAME_DTYPE
from km3mon.daq.triggers import trigger_mask
from km3mon.detector import Detector

SLICE_S = 0.1
MINUTE_S = 60.0
#: Counters kept per minute (and summed for the run).
COUNTERS = (
    "slices_live",  # distinct summary slices (timeslices) of the run first seen in this minute
    "jdaqsummaryslice",  # IO_SUM messages
    "frames",  # summary frames
    "frames_complete",  # frames whose UDP data were complete (all packets and the trailer)
    "frames_wr",  # frames with White Rabbit time (status bit 31)
    "pmt_frames",  # PMT-frames: frames x PMTs of their DOM
    "hrv_pmt_frames",  # PMT-frames in high-rate veto
    "fifo_pmt_frames",  # PMT-frames with the FIFO almost full
    "rate_n",  # PMT-frames with a non-zero rate
    "rate_sum_khz",  # their rates summed, kHz
    "rate_sum2_khz2",  # and squared
    "jdaqevent",
    "jtrigger3dmuon",
    "jtrigger3dshower",
    "jtriggermxshower",
    "jtriggernb",
    "jdaqtimeslice_sn",  # IO_TSSN messages
    "sn_frames",  # superframes in them
    "sn_frames_out_sync",  # superframes whose own header is not the timeslice's
    "multi_du_fits",  # events with a multi-DU fit (km3mon reco, where it runs)
)
_COLUMN = {name: i for i, name in enumerate(COUNTERS)}
TRIGGER_COUNTERS = {
    "jtrigger3dmuon": trigger_mask("3DMuon"),
    "jtrigger3dshower": trigger_mask("3DShower"),
    "jtriggermxshower": trigger_mask("MXShower"),
    "jtriggernb": trigger_mask("NB"),
}
#: Hits per event in half-octave bins: bin = floor(2 log2(hits + 1)), 0 .. 47.
HITS_BINS = 48
#: Zenith of the multi-DU fits, 10 degree bins.
ZENITH_EDGES_DEG = np.linspace(0.0, 180.0, 19)
RATES_KHZ_LUT = RATES_HZ_LUT / 1e3
RATES_KHZ2_LUT = RATES_KHZ_LUT**2
_HRV_BITS = np.uint32((1 << N_CHANNELS) - 1)
#: The run's clock is the median offset of its first this many summary slices; a slice more
#: than CLOCK_TOLERANCE_S off it has a corrupted header (real ones agree to the ns).
CLOCK_SLICES = 50
CLOCK_TOLERANCE_S = 0.5
#: The frame index of a run fits this bitmap for a week of 100 ms timeslices; beyond, it grows.
_INITIAL_SLICES = 1 << 16


def hits_bin(n_hits: np.ndarray) -> np.ndarray:
    """The half-octave bin of each hit count (0 hits: bin 0; 1: 2; 3: 4; 2 ** 23: 46)."""
    bins = np.floor(2 * np.log2(np.asarray(n_hits, np.float64) + 1)).astype(np.int64)
    return np.clip(bins, 0, HITS_BINS - 1)


@dataclass
class SNScan:
    """``IO_TSSN`` timeslices of a batch: their DAQ headers (:data:`SN_HEADER_DTYPE`), the
    superframes of each, and every superframe's fixed part (``SUPERFRAME_DTYPE``)."""

    headers: np.ndarray
    frame_counts: np.ndarray
    superframes: np.ndarray

    def times_s(self) -> np.ndarray:
        seconds = self.headers["utc_raw"] & np.uint32(0x7FFFFFFF)
        return seconds + self.headers["utc_16ns_cycles"] * 16e-9

    def select(self, chosen: np.ndarray) -> SNScan:
        """The timeslices where ``chosen`` is True, with their superframes."""
        per_frame = np.repeat(chosen, self.frame_counts)
        return SNScan(self.headers[chosen], self.frame_counts[chosen], self.superframes[per_frame])


#: The preamble, class version and DAQ header of a current-format timeslice, and its count.
SN_HEADER_DTYPE = np.dtype(
    [("length", "<i4"), ("data_type", "<i4"), ("version", "<i2"), ("det_id", "<i4"),
     ("run", "<i4"), ("frame_index", "<i4"), ("utc_raw", "<u4"), ("utc_16ns_cycles", "<u4"),
     ("n_frames", "<i4")]
)  # fmt: skip
_LENGTH = struct.Struct("<i")


def scan_sn_timeslices(payloads: list[bytes]) -> tuple[SNScan, list[int], list[str]]:
    """The headers and superframe headers of ``IO_TSSN`` payloads, without their hits.

    The superframes are walked by their lengths (one read each) and then read all at once;
    ``locate_frames`` checks more per frame and costs several times as much, too much for
    every SN timeslice of ARCA-230 (770 per second). Returns the scan, the indices of the
    payloads in it, and a reason for each payload left out (not a current-format SN
    timeslice, or superframes that do not fit)."""
    kept, starts, counts, problems = [], [], [], []
    header_size, frame_size = SN_HEADER_DTYPE.itemsize, SUPERFRAME_DTYPE.itemsize
    base = 0
    for index, payload in enumerate(payloads):
        size = len(payload)
        if size < header_size:
            problems.append(f"{size} bytes: too short for an SN timeslice")
            continue
        length, data_type, version = struct.unpack_from("<iih", payload)
        (n_frames,) = _LENGTH.unpack_from(payload, header_size - 4)
        if (length, data_type, version) != (size, DAQTIMESLICESN, 1) or not (
            0 <= n_frames <= (size - header_size) // frame_size
        ):
            problems.append(
                f"length {length} of {size}, data type {data_type}, version {version}, "
                f"{n_frames} frames: not a current-format SN timeslice"
            )
            continue
        position, frames = header_size, []
        for _ in range(n_frames):
            if position + frame_size > size:
                break
            frames.append(base + position)
            (frame_length,) = _LENGTH.unpack_from(payload, position)
            if frame_length < frame_size:
                break
            position += frame_length
        if len(frames) != n_frames or position != size:
            problems.append(f"{n_frames} superframes do not end at the payload's end ({size})")
            continue
        kept.append(index)
        starts += frames
        counts.append(n_frames)
        base += size
    buffer = b"".join(payloads[i] for i in kept)
    firsts = np.cumsum([0] + [len(payloads[i]) for i in kept])[:-1]
    headers = records_at(buffer, np.asarray(firsts, np.int64), SN_HEADER_DTYPE)
    superframes = records_at(buffer, np.asarray(starts, np.int64), SUPERFRAME_DTYPE)
    frame_counts = np.asarray(counts, np.int64)
    scan = SNScan(headers, frame_counts, superframes)
    valid = (superframes["data_type"] == DAQSUPERFRAME) & (
        superframes["length"] == frame_size + 6 * superframes["n_hits"].astype(np.int64)
    )
    if not valid.all():
        parent = np.repeat(np.arange(len(kept)), frame_counts)
        good = np.bincount(parent, weights=~valid, minlength=len(kept)) == 0
        problems += ["a superframe with a wrong data type or length"] * int(np.sum(~good))
        kept = [index for index, ok in zip(kept, good.tolist(), strict=True) if ok]
        scan = scan.select(good)
    return scan, kept, problems


class RunAccumulator:
    """The counters of one run; ``detector`` gives the expected DOMs and PMTs."""

    def __init__(self, detector: Detector, run: int, det_id: int) -> None:
        self.detector = detector
        self.run = run
        self.det_id = det_id
        n_doms = len(detector.dom_ids)
        self.utc_min = math.inf
        self.utc_max = -math.inf
        self.minutes: dict[int, np.ndarray] = {}
        self.dom_frames = np.zeros(n_doms, np.int64)
        self.dom_rate_sum_khz = np.zeros(n_doms)
        self.pmt_nonzero = np.zeros((n_doms, N_CHANNELS), np.int64)
        self.slices_seen = np.zeros(_INITIAL_SLICES, bool)
        self.hits_histogram = np.zeros(HITS_BINS, np.int64)
        self.zenith_histogram = np.zeros(len(ZENITH_EDGES_DEG) - 1, np.int64)
        self.unknown_frames = 0
        #: Offsets (time - 100 ms x frame index) of the run's first slices: the run's clock.
        self.clock_offsets: np.ndarray | None = None
        self.inconsistent_slices = 0

    # --- input ---------------------------------------------------------------------------

    def _minute_rows(self, minutes: np.ndarray) -> list[tuple[int, np.ndarray]]:
        """(minute start, boolean selection) for each minute present in ``minutes``."""
        if len(minutes) and (minutes == minutes[0]).all():
            return [(int(minutes[0]), np.ones(len(minutes), bool))]
        return [(int(m), minutes == m) for m in np.unique(minutes).tolist()]

    def _add(self, minute: int, columns: dict[str, float]) -> None:
        row = self.minutes.get(minute)
        if row is None:
            row = self.minutes[minute] = np.zeros(len(COUNTERS))
        for name, value in columns.items():
            row[_COLUMN[name]] += value

    def _times(self, times_s: np.ndarray) -> None:
        if len(times_s):
            self.utc_min = min(self.utc_min, float(times_s.min()))
            self.utc_max = max(self.utc_max, float(times_s.max()))

    def add_summaryslices(self, slices: list[Summaryslice]) -> None:
        """Summary slices of this run (already checked: plausible times, this run)."""
        if not slices:
            return
        times = np.array([s.header.timestamp for s in slices])
        frame_indices = np.array([s.header.frame_index for s in slices], np.int64)
        consistent = self._on_the_run_clock(times, frame_indices)
        if not consistent.all():
            self.inconsistent_slices += int(np.count_nonzero(~consistent))
            slices = [s for s, keep in zip(slices, consistent.tolist(), strict=True) if keep]
            times, frame_indices = times[consistent], frame_indices[consistent]
            if not slices:
                return
        self._times(times)
        counts = np.array([len(s.frames) for s in slices])
        frames = np.concatenate([s.frames for s in slices]) if len(slices) > 1 else slices[0].frames
        slice_minutes = (times // MINUTE_S * MINUTE_S).astype(np.int64)
        new_slice = self._first_sight(frame_indices)
        index = self.detector.dom_index(frames["dom_id"])
        known = index >= 0
        self.unknown_frames += int(np.count_nonzero(~known))
        n_pmts = np.where(known, self.detector.n_pmts[np.maximum(index, 0)], N_CHANNELS)
        daq, status, fifo = frames["daq"], frames["status"], frames["fifo"]
        complete = ((daq & 0xFFFF) == (daq >> 16) + 1) & ((fifo >> 31) == 1)
        rate_bytes = frames["rates"]
        nonzero = rate_bytes > 0
        summed_khz = RATES_KHZ_LUT[rate_bytes].sum(axis=1)
        per_frame = {
            "frames": np.ones(len(frames)),
            "frames_complete": complete,
            "frames_wr": (status >> 31) == 1,
            "pmt_frames": n_pmts,
            "hrv_pmt_frames": np.bitwise_count(status & _HRV_BITS),
            "fifo_pmt_frames": np.bitwise_count(fifo & _HRV_BITS),
        }
        frame_minutes = np.repeat(slice_minutes, counts)
        for minute, chosen in self._minute_rows(slice_minutes):
            self._add(
                minute,
                {
                    "jdaqsummaryslice": int(chosen.sum()),
                    "slices_live": int(new_slice[chosen].sum()),
                },
            )
        for minute, chosen in self._minute_rows(frame_minutes):
            self._add(minute, {k: float(np.sum(v[chosen])) for k, v in per_frame.items()})
            # the PMT rates' sums from how often each rate byte occurs: one pass over bytes
            chosen_bytes = rate_bytes if len(chosen) == chosen.sum() else rate_bytes[chosen]
            occurrences = np.bincount(chosen_bytes.ravel(), minlength=256)
            self._add(
                minute,
                {
                    "rate_n": float(occurrences[1:].sum()),
                    "rate_sum_khz": float(occurrences @ RATES_KHZ_LUT),
                    "rate_sum2_khz2": float(occurrences @ RATES_KHZ2_LUT),
                },
            )
        doms = index[known]
        n_doms = len(self.dom_frames)
        self.dom_frames += np.bincount(doms, minlength=n_doms)
        self.dom_rate_sum_khz += np.bincount(doms, weights=summed_khz[known], minlength=n_doms)
        cells = (doms[:, None] * N_CHANNELS + np.arange(N_CHANNELS)).ravel()
        self.pmt_nonzero += np.bincount(
            cells[nonzero[known].ravel()], minlength=n_doms * N_CHANNELS
        ).reshape(n_doms, N_CHANNELS)

    def _on_the_run_clock(self, times_s: np.ndarray, frame_indices: np.ndarray) -> np.ndarray:
        """Which slices agree with the run's clock: a timeslice's time is the run's start plus
        100 ms per frame index, so a header whose time or frame index is corrupted (a bit
        flip) neither adds live time nor moves ``utc_min``/``utc_max``. The clock is the
        median over the run's first slices."""
        offsets = times_s - SLICE_S * frame_indices
        if self.clock_offsets is not None and len(self.clock_offsets) < CLOCK_SLICES:
            self.clock_offsets = np.concatenate([self.clock_offsets, offsets])[:CLOCK_SLICES]
        elif self.clock_offsets is None:
            self.clock_offsets = offsets[:CLOCK_SLICES]
        clock = float(np.median(self.clock_offsets))
        return np.abs(offsets - clock) <= CLOCK_TOLERANCE_S

    def _minutes_of(self, times_s: np.ndarray) -> np.ndarray:
        """The DAQ minute of each event or SN timeslice; a time outside the span of the run's
        summary slices (a corrupted header) counts in the run's newest minute instead."""
        if math.isfinite(self.utc_max):
            outside = (times_s < self.utc_min - MINUTE_S) | (times_s > self.utc_max + MINUTE_S)
            times_s = np.where(outside, self.utc_max, times_s)
        return (times_s // MINUTE_S * MINUTE_S).astype(np.int64)

    def _first_sight(self, frame_indices: np.ndarray) -> np.ndarray:
        """True for each timeslice (frame index) of the run not seen before (once per index,
        also within this batch)."""
        frame_indices = np.clip(frame_indices.astype(np.int64), 0, 1 << 31)
        top = int(frame_indices.max(initial=0))
        if top >= len(self.slices_seen):
            grown = np.zeros(max(top + 1, 2 * len(self.slices_seen)), bool)
            grown[: len(self.slices_seen)] = self.slices_seen
            self.slices_seen = grown
        _, first = np.unique(frame_indices, return_index=True)
        new = np.zeros(len(frame_indices), bool)
        new[first] = ~self.slices_seen[frame_indices[first]]
        self.slices_seen[frame_indices] = True
        return new

    def add_events(self, events: np.ndarray, times_s: np.ndarray) -> None:
        """Rows of the event table (``km3mon.daq.event.EVENTS_DTYPE``) of this run."""
        if not len(events):
            return
        minutes = self._minutes_of(times_s)
        masks = events["trigger_mask"]
        for minute, chosen in self._minute_rows(minutes):
            columns = {"jdaqevent": int(chosen.sum())}
            for name, bit in TRIGGER_COUNTERS.items():
                columns[name] = int(np.count_nonzero(masks[chosen] & np.uint64(bit)))
            self._add(minute, columns)
        self.hits_histogram += np.bincount(hits_bin(events["n_snapshot"]), minlength=HITS_BINS)

    def add_sn_timeslices(self, scan: SNScan) -> None:
        """``IO_TSSN`` of this run (:func:`scan_sn_timeslices`): timeslices and superframes."""
        if not len(scan.headers):
            return
        headers, frames = scan.headers, scan.superframes
        parent = np.repeat(np.arange(len(headers)), scan.frame_counts)
        seconds = np.uint32(0x7FFFFFFF)
        out_of_sync = (
            (frames["frame_index"] != headers["frame_index"][parent])
            | ((frames["utc_raw"] & seconds) != (headers["utc_raw"] & seconds)[parent])
            | (frames["utc_16ns_cycles"] != headers["utc_16ns_cycles"][parent])
        )
        out_per_slice = np.bincount(parent, weights=out_of_sync, minlength=len(headers))
        for minute, chosen in self._minute_rows(self._minutes_of(scan.times_s())):
            self._add(
                minute,
                {
                    "jdaqtimeslice_sn": int(chosen.sum()),
                    "sn_frames": int(scan.frame_counts[chosen].sum()),
                    "sn_frames_out_sync": float(out_per_slice[chosen].sum()),
                },
            )

    def add_fits(self, times_s: np.ndarray, zenith_deg: np.ndarray) -> None:
        """Multi-DU fits of this run's events (from ``km3mon reco``)."""
        if not len(times_s):
            return
        for minute, chosen in self._minute_rows(self._minutes_of(times_s)):
            self._add(minute, {"multi_du_fits": int(chosen.sum())})
        counts, _ = np.histogram(zenith_deg, ZENITH_EDGES_DEG)
        self.zenith_histogram += counts

    # --- output --------------------------------------------------------------------------

    def totals(self) -> dict[str, float]:
        summed = sum(self.minutes.values(), np.zeros(len(COUNTERS)))
        return dict(zip(COUNTERS, summed.tolist(), strict=True))

    @property
    def livetime_s(self) -> float:
        return self.totals()["slices_live"] * SLICE_S

    def dom_rate_khz(self) -> np.ndarray:
        """Mean summed PMT rate of each DOM in kHz (NaN: no frame in this run)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.dom_frames > 0, self.dom_rate_sum_khz / self.dom_frames, np.nan)

    def quantities(self, active_dom_fraction: float, hot_dom_factor: float) -> dict[str, Any]:
        """The run's quantities (JQAQC's names where the same; see README)."""
        quantities = quantities_of(
            self.totals(),
            detector=self.detector,
            det_id=self.det_id,
            run=self.run,
            utc_min=self.utc_min,
            utc_max=self.utc_max,
            dom_frames=self.dom_frames,
            dom_rate_khz=self.dom_rate_khz(),
            pmt_nonzero=self.pmt_nonzero,
            active_dom_fraction=active_dom_fraction,
            hot_dom_factor=hot_dom_factor,
        )
        return {**quantities, "slices_inconsistent": self.inconsistent_slices}

    def minute_quantities(self) -> dict[int, dict[str, Any]]:
        """Per DAQ minute: the scalar quantities of that minute alone."""
        return {
            minute: scalar_quantities(dict(zip(COUNTERS, row.tolist(), strict=True)))
            for minute, row in sorted(self.minutes.items())
        }

    def state(self) -> tuple[dict[str, Any], bytes]:
        """Everything needed to go on after a restart: JSON-able scalars and packed arrays."""
        document = {
            "run": self.run,
            "det_id": self.det_id,
            "utc_min": self.utc_min if math.isfinite(self.utc_min) else None,
            "utc_max": self.utc_max if math.isfinite(self.utc_max) else None,
            "minutes": {str(m): row.tolist() for m, row in self.minutes.items()},
            "counters": list(COUNTERS),
            "unknown_frames": self.unknown_frames,
            "inconsistent_slices": self.inconsistent_slices,
            "clock_offsets": None if self.clock_offsets is None else self.clock_offsets.tolist(),
        }
        buffer = io.BytesIO()
        np.savez(
            buffer,
            dom_frames=self.dom_frames,
            dom_rate_sum_khz=self.dom_rate_sum_khz,
            pmt_nonzero=self.pmt_nonzero.astype(np.int32),
            slices_seen=np.packbits(self.slices_seen),
            n_slices=np.array([len(self.slices_seen)]),
            hits_histogram=self.hits_histogram,
            zenith_histogram=self.zenith_histogram,
        )
        return document, zlib.compress(buffer.getvalue(), 3)

    @classmethod
    def from_state(
        cls, detector: Detector, document: dict[str, Any], arrays: bytes
    ) -> RunAccumulator:
        """The accumulator saved by :meth:`state` (ValueError if it does not fit ``detector``)."""
        accumulator = cls(detector, int(document["run"]), int(document["det_id"]))
        accumulator.utc_min = document.get("utc_min") or math.inf
        accumulator.utc_max = document.get("utc_max") or -math.inf
        names = document.get("counters", list(COUNTERS))
        for minute, values in document.get("minutes", {}).items():
            row = np.zeros(len(COUNTERS))
            for name, value in zip(names, values, strict=True):
                if name in _COLUMN:
                    row[_COLUMN[name]] = value
            accumulator.minutes[int(minute)] = row
        accumulator.unknown_frames = int(document.get("unknown_frames", 0))
        accumulator.inconsistent_slices = int(document.get("inconsistent_slices", 0))
        if document.get("clock_offsets") is not None:
            accumulator.clock_offsets = np.array(document["clock_offsets"], np.float64)
        with np.load(io.BytesIO(zlib.decompress(arrays))) as saved:
            if saved["dom_frames"].shape != accumulator.dom_frames.shape:
                raise ValueError("the saved run has another number of DOMs than the detector")
            accumulator.dom_frames = saved["dom_frames"].astype(np.int64)
            accumulator.dom_rate_sum_khz = saved["dom_rate_sum_khz"].astype(np.float64)
            accumulator.pmt_nonzero = saved["pmt_nonzero"].astype(np.int64)
            n_slices = int(saved["n_slices"][0])
            accumulator.slices_seen = np.unpackbits(saved["slices_seen"])[:n_slices].astype(bool)
            accumulator.hits_histogram = saved["hits_histogram"].astype(np.int64)
            accumulator.zenith_histogram = saved["zenith_histogram"].astype(np.int64)
        return accumulator


def _fraction(part: float, whole: float) -> float | None:
    return part / whole if whole > 0 else None


def scalar_quantities(totals: dict[str, float]) -> dict[str, Any]:
    """The quantities that follow from the counters alone (a run's or a minute's)."""
    livetime_s = totals["slices_live"] * SLICE_S
    rate_n = totals["rate_n"]
    mean_khz = totals["rate_sum_khz"] / rate_n if rate_n else None
    rms_khz = None
    if mean_khz is not None:
        rms_khz = math.sqrt(max(totals["rate_sum2_khz2"] / rate_n - mean_khz**2, 0.0))
    events = totals["jdaqevent"]
    quantities: dict[str, Any] = {
        "livetime_s": round(livetime_s, 1),
        "triggerrate": events / livetime_s if livetime_s > 0 else None,
        **{name: int(totals[name]) for name in TRIGGER_COUNTERS},
        "jdaqevent": int(events),
        "jdaqsummaryslice": int(totals["jdaqsummaryslice"]),
        "jdaqtimeslice_sn": int(totals["jdaqtimeslice_sn"]),
        "daq": _fraction(totals["frames_complete"], totals["frames"]),
        "whiterabbitstatus": _fraction(totals["frames_wr"], totals["frames"]),
        "out_sync": _fraction(totals["sn_frames_out_sync"], totals["sn_frames"]),
        "hrv": _fraction(totals["hrv_pmt_frames"], totals["pmt_frames"]),
        "fifo": _fraction(totals["fifo_pmt_frames"], totals["pmt_frames"]),
        "meanrate": mean_khz,
        "rmsrate": rms_khz,
        "frames": int(totals["frames"]),
        "reco_fraction": _fraction(totals["multi_du_fits"], events)
        if totals["multi_du_fits"]
        else None,
    }
    return quantities


def quantities_of(
    totals: dict[str, float],
    *,
    detector: Detector,
    det_id: int,
    run: int,
    utc_min: float,
    utc_max: float,
    dom_frames: np.ndarray,
    dom_rate_khz: np.ndarray,
    pmt_nonzero: np.ndarray,
    active_dom_fraction: float,
    hot_dom_factor: float,
) -> dict[str, Any]:
    """All quantities of a run: the scalar ones and those over DOMs and PMTs."""
    optical = detector.n_pmts > 0
    slices = totals["slices_live"]
    active = optical & (dom_frames >= active_dom_fraction * max(slices, 1)) & (slices > 0)
    pmt_slots = np.arange(N_CHANNELS)[None, :] < detector.n_pmts[:, None]
    pmts_active = (pmt_nonzero >= active_dom_fraction * np.maximum(dom_frames, 1)[:, None]) & (
        pmt_nonzero > 0
    )
    pmts = int(np.count_nonzero(pmts_active & pmt_slots & active[:, None]))
    expected_pmts = int(detector.n_pmts[optical].sum())
    rates = dom_rate_khz[active]
    median_khz = float(np.median(rates)) if len(rates) else None
    hot = active & (dom_rate_khz > hot_dom_factor * (median_khz or math.inf))
    return {
        "detector": det_id,
        "run": run,
        "utc_min": utc_min if math.isfinite(utc_min) else None,
        "utc_max": utc_max if math.isfinite(utc_max) else None,
        **scalar_quantities(totals),
        "pmts": pmts,
        "pmts_norm": pmts / expected_pmts if expected_pmts else None,
        "doms_active": int(np.count_nonzero(active)),
        "doms_expected": int(np.count_nonzero(optical)),
        "silent_doms": [int(d) for d in detector.dom_ids[optical & ~active]],
        "hot_doms": [int(d) for d in detector.dom_ids[hot]],
    }
