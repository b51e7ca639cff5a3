"""Twofold (K40) coincidences per PMT pair, counted straight from ``IO_TSL1`` payloads.

The definition is km3pipe's ``add_to_twofold_matrix`` (km3modules/k40.py, ``docs/timeslices.md``
§3), so its counts serve as an oracle: a DOM's hits of one frame sorted by time; from each start
hit, the hits within ``tmax_ns`` of it; exactly two make one count in bin ``Δt + tmax`` of the
pair ``(i < j)`` with ``Δt = t_j - t_i``, and the walk goes on at the second hit; three or more
are skipped and the walk goes on after them; hits on one PMT are no pair. Pairs are indexed as
``itertools.combinations(range(31), 2)``.

Where we differ from km3pipe, and why:

* times are calibrated with the DETX t0 rounded to 1 ns, relative to the DOM's mean t0, so
  the ±10 ns window is centred on the light, not on cable delays (up to 10 ns within one
  ARCA-21 DOM); km3pipe counts raw TDC times. The fractional parts are kept
  (:attr:`TwofoldCounter.bin_shift_ns`) so the fit knows the true bin centres;
* the hits are read from the payload bytes by one numba kernel per message (no hit table, no
  per-frame Python): km3pipe builds a hit table per timeslice and calls its kernel per DOM;
* livetime is counted per PMT pair. A PMT in high-rate veto or FIFO-full (the frame's
  ``status``/``fifo`` bits 0-30, ``docs/timeslices.md`` §2) loses hits in that frame, so its hits
  of the frame are dropped and the frame does not count for its pairs
  (:attr:`TwofoldCounter.dead_frames`). km3pipe's ``k40calib -r`` skips such frames whole
  (``HRVFIFOTimesliceFilter``), which in a bioluminescence burst leaves a glowing DOM with no
  livetime at all; here its quiet PMTs still count;
* PMTs disabled in the DETX (``PMT_DISABLE``, or their DOM's ``MODULE_DISABLE``) are not
  counted: their hits are dropped.

The default window is ±20 ns, km3pipe's ``TwofoldCounter`` default (its ``k40calib`` script
and the original km3mon used 10): a PMT whose DETX t0 is off by more than 10 ns then still
shows a peak, as far as the DataFilter's L1 window lets its coincidences through
(:mod:`.k40_fit` models that window).
"""

from __future__ import annotations

import mmap
import zlib
from dataclasses import dataclass, field

import numpy as np
from numba import njit

from km3mon.daq.summaryslice import N_CHANNELS
from km3mon.daq.timeslice import TimesliceFrames
from km3mon.detector import Detector
from km3mon.physics.hits import HIT_SIZE, raw_time_ns
from km3mon.physics.pmts import pmt_table

N_PAIRS = N_CHANNELS * (N_CHANNELS - 1) // 2
PAIR_I, PAIR_J = (a.astype(np.int64) for a in np.triu_indices(N_CHANNELS, 1))
TIMESLICE_S = 0.1
DEFAULT_TMAX_NS = 20
#: The per-channel bits (HRV in ``status``, FIFO-full in ``fifo``); bit 31 is WR / UDP trailer.
_CHANNEL_WORD_MASK = (1 << N_CHANNELS) - 1
_CHANNEL_BITS = 5
_CHANNEL_MASK = (1 << _CHANNEL_BITS) - 1
_TIME_BIAS_NS = 1 << 20  # keeps calibrated times positive in the sort keys
#: Twofolds per bin are counted in 16 bits: a bin holds K40 of one pair in one ns for a period
#: (hundreds, thousands in bioluminescence), but no bound holds for every DOM and --period,
#: so a bin at 65 535 wraps and is carried exactly (``PeriodCounts``): 158 MB at 230 DUs,
#: int32 took 316.
COUNT_DTYPE = np.uint16
#: Wraps held before they are collected (grown for a frame with more hits).
WRAP_BUFFER = 4096


def pair_index(i: np.ndarray | int, j: np.ndarray | int) -> np.ndarray | int:
    """Index of the PMT pair ``(i, j)``, ``i < j``, in km3pipe's order."""
    return i * (N_CHANNELS - 1) - i * (i + 1) // 2 + j - 1


@dataclass
class PeriodCounts:
    """A period's twofolds: ``binned`` (slot, pair, bin) modulo ``wrap``, and ``wrapped``,
    the flat index of a bin for each time its count wrapped. After :meth:`pack` the bins are
    kept compressed in ``packed``, ``part_slots`` slots per part."""

    binned: np.ndarray
    wrap: int
    wrapped: list[np.ndarray]
    packed: list[bytes | None] = field(default_factory=list)
    part_slots: int = 0

    def __len__(self) -> int:
        return len(self.binned)

    def drop(self) -> None:
        """Free the bins once they are fitted (whoever handed them over may still hold this)."""
        self.binned = self.binned[:0].copy()
        self.wrapped = []
        self.packed = []

    def pack(self, part_slots: int) -> None:
        """Keep the bins zlib-compressed while they wait for their fit, ``part_slots`` slots
        per part, each part's pages given back as it is packed: the new period fills its own
        bins meanwhile, and two periods' bins were 316 MB at 230 DUs. A count's high and low
        bytes are packed apart (the high ones mostly zero): 158 MB become 52 MB in 1.3 s
        (``bench/bench_k40_handover.py``)."""
        itemsize = self.binned.dtype.itemsize
        for first in range(0, len(self), part_slots):
            part = self.binned[first : first + part_slots].reshape(-1).view(np.uint8)
            self.packed.append(zlib.compress(part.reshape(-1, itemsize).T.copy(), 1))
            self._release_pages(0, first + part_slots)  # from 0: the page it shares goes too
        self.part_slots = part_slots

    def release(self, first: int, stop: int) -> None:
        """Hand the memory of slots ``first`` to ``stop`` back once they are fitted, while the
        fit goes on with the others: the packed parts that end in that range (a fit goes in
        slot order, so a part's slots before ``first`` are done too), or else the pages of the
        bins (bins of ``TwofoldCounter`` only, their own memory map)."""
        if not self.packed:
            self._release_pages(first, stop)
            return
        for index in range(first // self.part_slots, len(self.packed)):
            if min((index + 1) * self.part_slots, len(self)) <= stop:
                self.packed[index] = None

    def _release_pages(self, first: int, stop: int) -> None:
        """``madvise(MADV_DONTNEED)`` of the bins' pages of slots ``first`` to ``stop``
        (released pages read as zero)."""
        memory = self.binned.base
        while isinstance(memory, np.ndarray):
            memory = memory.base
        if isinstance(memory, memoryview):
            memory = memory.obj
        if not isinstance(memory, mmap.mmap) or not len(self):
            return
        slot_bytes, page = self.binned[0].nbytes, mmap.PAGESIZE
        start = -(-first * slot_bytes // page) * page
        end = min(stop, len(self)) * slot_bytes
        end = -(-end // page) * page if stop >= len(self) else end // page * page  # last: whole
        if end > start:
            memory.madvise(mmap.MADV_DONTNEED, start, end - start)

    def dense(self, first: int = 0, stop: int | None = None) -> np.ndarray:
        """Exact counts (int64) of slots ``first`` to ``stop``: a few MB per 100 DOMs, where
        the whole detector's would be 630 MB at 230 DUs."""
        stop = len(self) if stop is None else min(stop, len(self))
        part = self._unpacked(first, stop) if self.packed else self.binned[first:stop]
        counts = part.astype(np.int64)
        if self.wrapped:
            flat = np.concatenate(self.wrapped) - first * N_PAIRS * self.binned.shape[2]
            flat = flat[(flat >= 0) & (flat < counts.size)]
            np.add.at(counts.reshape(-1), flat, self.wrap)
        return counts

    def _unpacked(self, first: int, stop: int) -> np.ndarray:
        """The bins of slots ``first`` to ``stop`` from their packed parts."""
        dtype, slot_shape = self.binned.dtype, self.binned.shape[1:]
        low, high = first // self.part_slots, -(-stop // self.part_slots)
        parts = []
        for index in range(low, high):
            packed = self.packed[index]
            if packed is None:
                raise ValueError(f"slots {first} to {stop}: part {index} already released")
            shuffled = np.frombuffer(zlib.decompress(packed), np.uint8)
            parts.append(shuffled.reshape(dtype.itemsize, -1).T.copy().view(dtype))
        joined = np.concatenate(parts).reshape(-1, *slot_shape)
        offset = low * self.part_slots
        return joined[first - offset : stop - offset]


@dataclass
class CountResult:
    """What one message added: frames counted, their hits, frames of unknown DOMs."""

    frames: int
    hits: int
    unknown_dom_ids: np.ndarray
    bad_channels: int


class TwofoldCounter:
    """Twofold counts ``(DOM slot, pair, Δt bin)`` and livetime per DOM of a detector.

    Slots are the detector's optical DOMs in detector order (:attr:`dom_index`).
    ``raw_times=True`` counts uncalibrated TDC times of every hit, vetoed or disabled PMTs
    included, as km3pipe's ``TwofoldCounter`` does (for comparisons).
    """

    def __init__(
        self,
        detector: Detector,
        tmax_ns: int = DEFAULT_TMAX_NS,
        *,
        raw_times: bool = False,
        count_dtype: type[np.unsignedinteger] = COUNT_DTYPE,
    ) -> None:
        if tmax_ns < 1:
            raise ValueError(f"tmax_ns must be at least 1, got {tmax_ns}")
        self.detector = detector
        self.tmax_ns = tmax_ns
        self.dom_index = np.flatnonzero(detector.n_pmts > 0)
        n = len(self.dom_index)
        self.slot_of_index = np.full(len(detector.dom_ids) + 1, -1)
        self.slot_of_index[self.dom_index] = np.arange(n)
        t0_ns = pmt_table(detector, self.dom_index, detector.pmt_t0_ns, np.nan)
        #: DETX t0 per slot and channel relative to the DOM's mean (ns; NaN: no such PMT).
        self.relative_t0_ns = t0_ns - np.nanmean(t0_ns, axis=1, keepdims=True)
        self._t0_int = np.rint(np.nan_to_num(self.relative_t0_ns)).astype(np.int64)
        self.raw_times = raw_times
        if raw_times:  # uncalibrated, as km3pipe counts (for comparisons)
            self._t0_int[:] = 0
        enabled = pmt_table(detector, self.dom_index, ~detector.pmt_disabled, False)
        #: Per slot and channel: the PMT exists and is not disabled in the DETX.
        self.enabled = enabled
        #: Per slot: bit i set when channel i is counted.
        self._enabled_bits = (enabled.astype(np.int64) << np.arange(N_CHANNELS)).sum(axis=1)
        if raw_times:
            self._enabled_bits[:] = _CHANNEL_WORD_MASK
        fraction = np.nan_to_num(self.relative_t0_ns) - self._t0_int
        #: Per slot and pair: calibrated Δt minus the bin's integer Δt (the rounding of t0).
        self.bin_shift_ns = fraction[:, PAIR_J] - fraction[:, PAIR_I]
        self.count_dtype = np.dtype(count_dtype)
        #: Twofolds per slot, pair and Δt bin, modulo the dtype's range: a bin's count beyond
        #: its maximum wraps to 0 and is carried (:attr:`wrapped`). ``exact_counts`` adds both.
        self.binned = self._fresh_bins()
        #: Flat indices into :attr:`binned`, one per wrap of that bin (each worth ``wrap``).
        self.wrapped: list[np.ndarray] = []
        self.wrap = int(np.iinfo(self.count_dtype).max) + 1
        self._wrap_buffer = np.empty(WRAP_BUFFER, np.int64)
        self._wrap_fill = np.zeros(1, np.int64)
        self.frames = np.zeros(n, np.int64)
        #: Per slot and pair: frames in which either PMT was in high-rate veto or FIFO-full.
        self.dead_frames = np.zeros((n, N_PAIRS), np.int32)
        self.hits = 0

    @property
    def livetime_s(self) -> np.ndarray:
        """Seconds of data per slot (frames × 100 ms)."""
        return self.frames * TIMESLICE_S

    @property
    def pair_livetime_s(self) -> np.ndarray:
        """Seconds of data per slot and pair in which both PMTs were free of veto."""
        return (self.frames[:, None] - self.dead_frames) * TIMESLICE_S

    def _fresh_bins(self) -> np.ndarray:
        """Zeroed bins whose pages the system provides on first touch (no memset, no copy),
        in a memory map of their own, so that a fit can release them part by part."""
        shape = (len(self.dom_index), N_PAIRS, 2 * self.tmax_ns + 1)
        size = int(np.prod(shape)) * self.count_dtype.itemsize
        if not size:
            return np.zeros(shape, self.count_dtype)
        memory = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE)  # released pages read as zero
        return np.frombuffer(memory, self.count_dtype).reshape(shape)

    def exact_counts(self) -> np.ndarray:
        """Every twofold of this period per slot, pair and bin (int64; tests, benchmarks)."""
        return self.take_counts(keep=True).dense()

    def take_counts(self, keep: bool = False) -> PeriodCounts:
        """This period's counts; unless ``keep``, counting goes on in fresh bins (the
        caller owns the old ones: a calibration period handed over without a copy)."""
        self._collect_wrapped()
        counts = PeriodCounts(self.binned, self.wrap, list(self.wrapped))
        if not keep:
            self.binned = self._fresh_bins()
            self.wrapped = []
        return counts

    def _collect_wrapped(self) -> None:
        filled = int(self._wrap_fill[0])
        if filled:
            self.wrapped.append(self._wrap_buffer[:filled].copy())
            self._wrap_fill[0] = 0

    def reset(self) -> None:
        self.take_counts()
        self.frames[:] = 0
        self.dead_frames[:] = 0
        self.hits = 0

    def add(self, payload: bytes, located: TimesliceFrames) -> CountResult:
        """Count the frames of one located timeslice (``locate_frames(payload)``)."""
        frames = located.frames
        slots = self.slot_of_index[self.detector.dom_index(frames["dom_id"])]
        n_hits = frames["n_hits"].astype(np.int64)
        buffer = np.frombuffer(payload, np.uint8)
        status, fifo = frames["status"].astype(np.int64), frames["fifo"].astype(np.int64)
        if self.raw_times:
            status[:] = fifo[:] = 0
        longest = int(n_hits.max(initial=0))
        if longest > len(self._wrap_buffer):  # a frame's wraps must fit (< 1 per hit)
            self._collect_wrapped()
            self._wrap_buffer = np.empty(longest, np.int64)
        bad, first = 0, 0
        while True:
            more_bad, first = _count_frames(
                buffer,
                located.hit_offsets,
                n_hits,
                slots,
                status,
                fifo,
                self._enabled_bits,
                self._t0_int,
                self.binned,
                self.frames,
                self.dead_frames,
                self.tmax_ns,
                longest,
                first,
                self._wrap_buffer,
                self._wrap_fill,
                self.wrap - 1,
            )
            bad += more_bad
            if first >= len(slots):
                break
            self._collect_wrapped()  # no room for frame ``first``'s wraps: empty, go on
        known = slots >= 0
        hits = int(n_hits[known].sum())
        self.hits += hits
        return CountResult(int(known.sum()), hits, frames["dom_id"][~known], bad)


@njit(cache=True, nogil=True)
def _count_frames(
    buffer, hit_offsets, n_hits, slots, status, fifo, enabled, t0_ns, counts, frames, dead,
    tmax, longest, first, wrapped, wrap_fill, top,
):  # fmt: skip
    """Add the exactly-two groups of the frames from ``first`` on to ``counts``, a bin at its
    maximum ``top`` wrapping to 0 with its flat index written to ``wrapped``. Returns the
    hits with a channel > 30 and the frame to go on from: ``len(slots)`` when done, earlier
    when ``wrapped`` might not hold the next frame's wraps (fewer than its hits)."""
    keys = np.empty(max(longest, 1), np.int64)
    n_bins = counts.shape[2]
    bad = 0
    for frame in range(first, len(slots)):
        if wrap_fill[0] + n_hits[frame] > len(wrapped):
            return bad, frame
        slot = slots[frame]
        if slot < 0:
            continue
        frames[slot] += 1
        vetoed = (status[frame] | fifo[frame]) & _CHANNEL_WORD_MASK
        if vetoed:
            for pair in range(N_PAIRS):
                if (vetoed >> PAIR_I[pair]) & 1 or (vetoed >> PAIR_J[pair]) & 1:
                    dead[slot, pair] += 1
        counted = enabled[slot] & ~vetoed
        start = hit_offsets[frame]
        n = 0
        for hit in range(n_hits[frame]):
            at = start + HIT_SIZE * hit
            channel = np.int64(buffer[at])
            if channel >= N_CHANNELS:
                bad += 1
                continue
            if not (counted >> channel) & 1:
                continue
            raw = raw_time_ns(buffer, at)
            time_ns = raw + t0_ns[slot, channel] + _TIME_BIAS_NS
            keys[n] = (time_ns << _CHANNEL_BITS) | channel
            n += 1
        if n < 2:
            continue
        ordered = _sorted_keys(keys, n)
        start_hit = 0
        while start_hit < n:
            first_time = ordered[start_hit] >> _CHANNEL_BITS
            other = start_hit + 1
            if other < n and (ordered[other] >> _CHANNEL_BITS) - first_time <= tmax:
                other += 1
                while other < n and (ordered[other] >> _CHANNEL_BITS) - first_time <= tmax:
                    other += 1
                if other - start_hit != 2:
                    start_hit = other
                    continue
                other -= 1
                a = ordered[start_hit] & _CHANNEL_MASK
                b = ordered[other] & _CHANNEL_MASK
                if a != b:
                    delta = (ordered[other] >> _CHANNEL_BITS) - first_time
                    if a < b:
                        pair, at_bin = a * 30 - a * (a + 1) // 2 + b - 1, tmax + delta
                    else:
                        pair, at_bin = b * 30 - b * (b + 1) // 2 + a - 1, tmax - delta
                    if counts[slot, pair, at_bin] == top:
                        counts[slot, pair, at_bin] = 0
                        wrapped[wrap_fill[0]] = (slot * N_PAIRS + pair) * n_bins + at_bin
                        wrap_fill[0] += 1
                    else:
                        counts[slot, pair, at_bin] += 1
            start_hit = other
    return bad, len(slots)


@njit(cache=True, nogil=True, inline="always")
def _sorted_keys(keys, n):
    """``keys[:n]`` sorted in place. The DataFilter writes a frame's hits nearly in time order
    (the recorded IO_TSL1: out of order only by PMT delays, < 100 ns), for which an insertion
    sort costs one pass; a frame out of order costs more moves than that and gets np.sort."""
    budget = 2 * n
    for hit in range(1, n):
        key = keys[hit]
        at = hit
        while at > 0 and keys[at - 1] > key:
            keys[at] = keys[at - 1]
            at -= 1
        keys[at] = key
        budget -= hit - at
        if budget < 0:
            return np.sort(keys[:n])
    return keys[:n]
