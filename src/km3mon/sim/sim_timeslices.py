"""The DataFilters' timeslice streams: ``IO_TSL1`` (L1 hits) and ``IO_TSSN`` (SN coincidences).

Built from the same optical model, PMT constants and events as the other streams:

* **DataFilters.** Each serves whole DUs (:data:`DUS_PER_DATA_FILTER` by default) and publishes,
  per frame index, one ``IO_TSL1`` and one ``IO_TSSN`` message with a frame for every DOM it
  serves, frames without hits included (``docs/timeslices.md`` §1). A frame carries the status words
  of the DOM's summary frame of the same timeslice (a ``wr-loss`` reaches it). Frames with
  incomplete UDP data fail the DataFilter's checksum and are left out (they go to the erroneous
  ``IO_TS`` stream, §6.2); silent DOMs send nothing.
* **Hits** are coincidence groups on one DOM, within the L1 window (:data:`L1_WINDOW_NS` on
  integer TDC times, i.e. under 11 ns on calibrated continuous times):

  - genuine K40 coincidences. PMT pair (i, j) fires at ``exp(p(cos angle)) * eff_i * eff_j`` with
    km3pipe's MC parameters (:data:`K40_ANGULAR_PARAMETERS`: 656 Hz per DOM for the real DOM
    geometry, §4.7); each hit time scatters with its PMT's width, so Δt is Gaussian around the
    difference of the two PMTs' true offsets; a group takes one more PMT with probability
    :data:`K40_NEXT_PMT_PROBABILITY` (k40gen's 7000/700/70/7 Hz);
  - accidental pairs from the singles of the timeslice (the rates in ``IO_SUM``/``IO_MONIT``):
    rate ``r_i r_j`` × 22 ns, Δt uniform, so ``r_i r_j × 1 ns`` per 1-ns bin as the K40
    calibration subtracts it;
  - muon light: the triggered hits of this timeslice's ``IO_EVT`` events on each DOM (the SN
    monitor vetoes those), and muons that did not trigger (:data:`UNTRIGGERED_MUON_HZ` per DOM,
    multiplicity ∝ M^-2.5 over 4..31; tuned so that multiplicities 7-11 come at ~0.05 Hz per
    DOM, the background of ORCA's CCSN trigger in the GCN circular 26751, §5.2). One such muon
    lights one or more DOMs at once, as the simulated muons that do not trigger do: a run of
    consecutive floors of one DU, as many as :data:`MUON_DOM_MULTIPLICITY` says, all in the
    same timeslice. So the SN background is over-dispersed as the real one is, at the same mean
    rate per DOM;
  - ``sn-burst``: see below.

  PMTs in high-rate veto send no hits in that timeslice. Raw TDC times are true times minus the
  PMT's delay from :class:`~km3mon.sim.sim_calibration.TrueCalibration` (DETX t0, true offset,
  a scenario's shift), exactly as for ``IO_EVT``; hits are not time ordered within a frame (real
  frames are grouped per PMT or per coincidence).
* ``IO_TSL1`` carries every group, ``IO_TSSN`` those of at least :data:`SN_MIN_PMTS` distinct
  PMTs (the DataFilter's SN filter, §5.1).

**Supernova burst** ([calc], §5.2). ORCA with 72 DOMs saw 2 CCSN-trigger events in 400 ms with
1.4 expected, which excluded a 27 M☉ progenitor closer than 11.5 kpc: a Feldman–Cousins 90 %
upper limit of ~4.4 signal events in 400 ms. Scaled to 10 kpc (× (11.5/10)²) that is 5.8 events
per 400 ms and 72 DOMs, i.e. :data:`SN_BURST_SELECTED_HZ` = 0.2 Hz per DOM of coincidences with
multiplicity 7-11 during the accretion phase (:data:`SN_BURST_ACCRETION_S`), four times the
background. After it the rate falls to a third and decays with :data:`SN_BURST_COOLING_S` until
the burst ends (10 s). Burst coincidences have multiplicities ∝ exp(-M / 1.6) over 2..20, so most
are low-multiplicity (M = 2-6) and 4 % fall in 7-11.

Speed: about a million hits per timeslice at 230 DUs. Counts per DOM are numpy Poisson draws;
drawing the groups and writing the frames are numba kernels with a splitmix64 generator and
table-lookup Gaussians and ToTs, no Python per hit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numba import njit

from km3mon.controlhost import encode_prefix
from km3mon.daq.preamble import (
    COUNT,
    DAQSUPERFRAME,
    DAQTIMESLICEL1,
    DAQTIMESLICESN,
    HEADER,
    TAG_BY_DATA_TYPE,
    DAQHeader,
    body_offset,
    pack_start,
)
from km3mon.daq.summaryslice import N_CHANNELS, UDP_COUNT_BITS, UDP_TRAILER_BIT
from km3mon.daq.timeslice import SUPERFRAME_DTYPE
from km3mon.detector import Detector
from km3mon.sim.scenarios import Effects, Scenario
from km3mon.sim.sim_calibration import TrueCalibration

TIMESLICE_S = 0.1
FRAME_NS = 100_000_000
#: Group times stay this far from the frame edges, so raw times (true minus delays of up to
#: a few µs relative to the reference t0) stay inside the frame.
EDGE_NS = 20_000.0
DUS_PER_DATA_FILTER = 3
L1_WINDOW_NS = 10
#: Calibrated continuous Δt below which two integer TDC times are within the L1 window.
_L1_CONTINUOUS_NS = L1_WINDOW_NS + 1.0
SN_MIN_PMTS = 4
#: km3pipe's ``MC_ANG_DIST``: pair rate ``exp(p1 + ct (p2 + ct (p3 + ct p4)))`` in Hz.
K40_ANGULAR_PARAMETERS = (-0.72337394, 2.59196335, -0.43594182, 1.10514914)
K40_NEXT_PMT_PROBABILITY = 0.1
K40_MAX_PMTS = 6
UNTRIGGERED_MUON_HZ = 0.2
#: DOMs lit per untriggered muon, weights for 1, 2, ... DOMs: the tracks of
#: :class:`~km3mon.sim.sim_events.MuonEventGenerator` at ARCA-21 that light at least one DOM
#: (two signal hits) but fewer than its trigger needs (10,000 tracks: 1227 with one DOM, 1234
#: with two). The muons that trigger light 5.4 DOMs on average, but the SN monitor vetoes them.
MUON_DOM_MULTIPLICITY = (1227, 1234)
MUON_SPREAD_NS = 1.5
BURST_SPREAD_NS = 2.0
SPREAD_LIMIT_NS = 4.0
SN_BURST_SELECTED_HZ = 0.2
SN_BURST_SELECTED_RANGE = (7, 11)
SN_BURST_ACCRETION_S = 0.5
SN_BURST_COOLING_S = 3.0
SN_BURST_COOLING_FRACTION = 1 / 3
SN_BURST_MULTIPLICITY_SCALE = 1.6
SN_BURST_MAX_PMTS = 20
TOT_NS = (26.0, 5.0)
_TABLE_BITS = 12
_TABLE_MASK = (1 << _TABLE_BITS) - 1
_WR_BIT = np.uint32(1 << 31)
_SUPERFRAME_SIZE = SUPERFRAME_DTYPE.itemsize
_HIT_SIZE = 6

#: Pair index of ``itertools.combinations(range(31), 2)`` (km3pipe's order) -> PMTs.
PAIR_I, PAIR_J = (a.astype(np.int64) for a in np.triu_indices(N_CHANNELS, 1))


def k40_pair_rates_hz(directions: np.ndarray) -> np.ndarray:
    """Genuine K40 twofold rate of every PMT pair of DOMs with unit PMT axes ``(n, 31, 3)``."""
    cosines = np.einsum("npk,npk->np", directions[:, PAIR_I], directions[:, PAIR_J])
    p1, p2, p3, p4 = K40_ANGULAR_PARAMETERS
    rates = np.exp(p1 + cosines * (p2 + cosines * (p3 + cosines * p4)))
    return np.nan_to_num(rates)


def _multiplicity_cdf(weights: np.ndarray) -> np.ndarray:
    """Cumulative probability of multiplicity M for M = 0..31 (``weights`` indexed by M)."""
    cdf = np.cumsum(weights)
    return cdf / cdf[-1]


def untriggered_muon_cdf() -> np.ndarray:
    m = np.arange(N_CHANNELS + 1, dtype=float)
    return _multiplicity_cdf(np.where(m >= SN_MIN_PMTS, np.maximum(m, 1) ** -2.5, 0.0))


def burst_multiplicity_weights() -> np.ndarray:
    m = np.arange(N_CHANNELS + 1, dtype=float)
    inside = (m >= 2) & (m <= SN_BURST_MAX_PMTS)
    return np.where(inside, np.exp(-m / SN_BURST_MULTIPLICITY_SCALE), 0.0)


def burst_total_hz(age_s: float) -> float:
    """Burst coincidences per DOM per second (all multiplicities) ``age_s`` after its start."""
    if age_s < SN_BURST_ACCRETION_S:
        selected_hz = SN_BURST_SELECTED_HZ
    else:
        decay = math.exp(-(age_s - SN_BURST_ACCRETION_S) / SN_BURST_COOLING_S)
        selected_hz = SN_BURST_SELECTED_HZ * SN_BURST_COOLING_FRACTION * decay
    weights = burst_multiplicity_weights()
    low, high = SN_BURST_SELECTED_RANGE
    return selected_hz * weights.sum() / weights[low : high + 1].sum()


class MuonBlocks:
    """Untriggered muons of one timeslice as coincidence counts per optical DOM: each muon
    lights a run of consecutive floors of one DU, as long as ``dom_multiplicity`` (weights
    for 1, 2, ... DOMs) draws, so that every DOM sees :data:`UNTRIGGERED_MUON_HZ` on
    average."""

    def __init__(
        self,
        detector: Detector,
        optical_rows: np.ndarray,
        dom_multiplicity: Sequence[float] = MUON_DOM_MULTIPLICITY,
    ) -> None:
        du = detector.dom_du[optical_rows]
        #: Optical rows along each DU, bottom up, and where each DU's run starts and ends.
        self.order = np.lexsort((detector.dom_floor[optical_rows], du))
        sorted_du = du[self.order]
        self.du_start = np.searchsorted(sorted_du, sorted_du, side="left")
        self.du_stop = np.searchsorted(sorted_du, sorted_du, side="right")
        weights = np.asarray(dom_multiplicity, float)
        self.length_cdf = np.cumsum(weights) / weights.sum()
        n = len(optical_rows)
        mean_length = float(np.arange(1, len(weights) + 1) @ (weights / weights.sum()))
        self.muons_per_slice = UNTRIGGERED_MUON_HZ * TIMESLICE_S * n / mean_length

    def draw(self, rng: np.random.Generator) -> np.ndarray:
        """Coincidence count per optical row (in detector order) of this timeslice."""
        n = len(self.order)
        muons = rng.poisson(self.muons_per_slice) if n else 0
        if not muons:
            return np.zeros(n, np.int64)
        centre = rng.integers(0, n, muons)
        length = np.minimum(
            np.searchsorted(self.length_cdf, rng.random(muons), side="right") + 1,
            self.du_stop[centre] - self.du_start[centre],
        )
        first = np.clip(centre - length // 2, self.du_start[centre], self.du_stop[centre] - length)
        lit = np.repeat(first, length) + _ranges(length)
        return np.bincount(self.order[lit], minlength=n)


def _ranges(lengths: np.ndarray) -> np.ndarray:
    """0..l-1 for every l of ``lengths``, concatenated."""
    starts = np.repeat(np.cumsum(lengths) - lengths, lengths)
    return np.arange(int(lengths.sum())) - starts


class TimesliceModel:
    """Draws and encodes the ``IO_TSL1`` and ``IO_TSSN`` messages of one timeslice."""

    def __init__(
        self,
        detector: Detector,
        calibration: TrueCalibration,
        rng: np.random.Generator,
        *,
        data_filters: int | None = None,
    ) -> None:
        self.detector = detector
        self.calibration = calibration
        self.rng = rng
        self.optical_rows = np.flatnonzero(detector.n_pmts > 0)
        n = len(self.optical_rows)
        row_of_index = np.full(len(detector.dom_ids) + 1, -1)
        row_of_index[self.optical_rows] = np.arange(n)
        self._row_of_index = row_of_index
        du = detector.dom_du[self.optical_rows]
        du_rank = np.searchsorted(np.unique(du), du)
        n_filters = data_filters or max(1, math.ceil(len(np.unique(du)) / DUS_PER_DATA_FILTER))
        if n_filters < 1:
            raise ValueError(f"data_filters must be at least 1, got {n_filters}")
        n_filters = min(n_filters, n)
        #: DataFilter of each optical DOM: whole DUs, as evenly as possible.
        self.data_filter = (du_rank * n_filters) // max(len(np.unique(du)), 1)
        self.n_data_filters = int(self.data_filter.max()) + 1 if n else 0
        self._filter_order = np.argsort(self.data_filter, kind="stable")

        # Pairs are drawn from one alias table per DOM layout (a few channel-to-position maps
        # per detector; 11 in ARCA-21), then kept with probability eff_i eff_j / max²: the
        # tables stay in the cache, a table per DOM (30 MB at 230 DUs) would not.
        directions = np.nan_to_num(calibration.pmt_dir)
        angular_hz = k40_pair_rates_hz(directions)
        _, first_of_layout, self._layout = np.unique(
            np.round(angular_hz, 3), axis=0, return_index=True, return_inverse=True
        )
        self._layout = self._layout.ravel()
        layout_hz = angular_hz[first_of_layout]
        efficiency = calibration.efficiency
        self._efficiency = np.ascontiguousarray(efficiency)
        self._efficiency_max = np.maximum(efficiency.max(axis=1), 1e-9)
        self.pair_rate_hz = layout_hz[self._layout] * efficiency[:, PAIR_I] * efficiency[:, PAIR_J]
        self._genuine_hz = self.pair_rate_hz.sum(axis=1)
        self._layout_alias = alias_tables(layout_hz)
        self._untriggered_cdf = untriggered_muon_cdf()
        self._muon_blocks = MuonBlocks(detector, self.optical_rows)
        self._burst_cdf = _multiplicity_cdf(burst_multiplicity_weights())
        self._normal_table = rng.standard_normal(1 << _TABLE_BITS)
        tots = np.clip(rng.normal(*TOT_NS, 1 << _TABLE_BITS), 4, 60)
        self._tot_table = np.rint(tots).astype(np.uint8)
        self._detx_relative_ns = np.nan_to_num(calibration.detx_t0_ns - calibration.reference_t0_ns)
        self._present = np.isfinite(calibration.detx_t0_ns)
        self._width_ns = np.nan_to_num(calibration.width_ns, nan=1.0)
        self._capacity = 0
        self._buffers: dict[str, np.ndarray] = {}
        self._superframes = np.zeros(n, SUPERFRAME_DTYPE)
        self._superframes["length"] = _SUPERFRAME_SIZE
        self._superframes["data_type"] = DAQSUPERFRAME
        self._superframes["det_id"] = detector.det_id
        self._superframes["dom_id"] = detector.dom_ids[self.optical_rows]
        self._out = np.zeros(0, np.uint8)

    # -- physics -----------------------------------------------------------------------

    def burst_hz(self, scenarios: Sequence[Scenario], elapsed_s: float) -> float:
        """Burst coincidences per DOM per second of the ``sn-burst`` scenarios active now."""
        return sum(
            burst_total_hz(elapsed_s - scenario.start_s)
            for scenario in scenarios
            if scenario.name == "sn-burst" and scenario.active(elapsed_s)
        )

    def event_groups(
        self, triggered_hits: Sequence[np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Coincidence groups of the events' triggered hits, per DOM row.

        Returns per-row start offsets ``(n + 1,)`` and the hits' channel, raw time, ToT and
        group multiplicity (distinct PMTs), sorted by DOM row. Per event and DOM, the hits within
        the L1 window of the first (calibrated with the DETX, as the DataFilter does) form the
        group; groups of fewer than two distinct PMTs are not local coincidences.
        """
        n = len(self.optical_rows)
        empty = np.zeros(0, np.int64)
        if not triggered_hits or not sum(len(h) for h in triggered_hits):
            return np.zeros(n + 1, np.int64), empty, empty, empty, empty
        hits = np.concatenate(triggered_hits)
        event = np.repeat(np.arange(len(triggered_hits)), [len(h) for h in triggered_hits])
        row = self._row_of_index[self.detector.dom_index(hits["dom_id"])]
        channel = hits["channel"].astype(np.int64)
        keep = (row >= 0) & (channel < N_CHANNELS)
        row, channel, event, hits = row[keep], channel[keep], event[keep], hits[keep]
        raw = hits["time_ns"].astype(np.int64)
        calibrated = raw + self._detx_relative_ns[row, channel]
        order = np.lexsort((calibrated, event, row))
        row, channel, event = row[order], channel[order], event[order]
        raw, calibrated, tot = raw[order], calibrated[order], hits["tot"][order]
        block_start = np.ones(len(row), bool)
        block_start[1:] = (row[1:] != row[:-1]) | (event[1:] != event[:-1])
        block = np.cumsum(block_start) - 1
        first = calibrated[np.flatnonzero(block_start)][block]
        inside = calibrated - first < _L1_CONTINUOUS_NS
        row, channel, block, raw, tot = (a[inside] for a in (row, channel, block, raw, tot))
        pmt_bits = np.zeros(block.max() + 1 if len(block) else 0, np.int64)
        np.bitwise_or.at(pmt_bits, block, np.int64(1) << channel)
        distinct = np.array([int(b).bit_count() for b in pmt_bits.tolist()], np.int64)
        multiplicity = distinct[block]
        coincident = multiplicity >= 2
        row, channel, raw, tot, multiplicity = (
            a[coincident] for a in (row, channel, raw, tot, multiplicity)
        )
        offsets = np.searchsorted(row, np.arange(n + 1))
        return offsets, channel, raw, tot.astype(np.int64), multiplicity

    def step(
        self,
        header: DAQHeader,
        effects: Effects,
        summary_frames: np.ndarray,
        rates_hz: np.ndarray,
        hrv: np.ndarray,
        burst_hz: float,
        triggered_hits: Sequence[np.ndarray] = (),
    ) -> tuple[bytes, int]:
        """ControlHost frames of every DataFilter's ``IO_TSL1`` and ``IO_TSSN`` messages, and
        their number.

        ``summary_frames``: the summary frames of this timeslice (one per optical DOM, status
        words as sent); ``rates_hz``, ``hrv``: singles and high-rate veto per optical DOM and
        channel; ``burst_hz``: :meth:`burst_hz`; ``effects``: per CLB, detector order.
        """
        rows = self.optical_rows
        live = self._present & ~hrv
        singles_hz = np.where(live, rates_hz, 0.0)
        sum_hz = singles_hz.sum(axis=1)
        accidental_hz = (sum_hz**2 - (singles_hz**2).sum(axis=1)) / 2 * (2 * _L1_CONTINUOUS_NS)
        accidental_hz *= 1e-9
        singles_alias = alias_tables(singles_hz)
        alive = ~effects.silent[rows]
        n = len(rows)
        draws = self.rng.poisson(
            TIMESLICE_S
            * np.column_stack(
                (self._genuine_hz, accidental_hz, np.zeros(n), np.full(n, burst_hz))
            )
        )  # fmt: skip
        draws[:, 2] = self._muon_blocks.draw(self.rng)
        draws *= alive[:, None]
        extra = self.event_groups(triggered_hits)
        capacity = int(
            draws[:, 0].sum() * K40_MAX_PMTS + 2 * draws[:, 1].sum()
            + N_CHANNELS * draws[:, 2].sum() + SN_BURST_MAX_PMTS * draws[:, 3].sum()
            + len(extra[1])
        )  # fmt: skip
        buffers = self._reserve(capacity)
        shift = self.calibration.offset_ns + effects.time_shift_ns[rows]
        delay = self._detx_relative_ns + shift
        seed = np.array([self.rng.integers(1 << 62)], np.uint64)
        _draw_groups(
            seed, draws.astype(np.int64), *self._layout_alias, self._layout, self._efficiency,
            self._efficiency_max, *singles_alias, live, shift, delay,
            self._width_ns, self._untriggered_cdf, self._burst_cdf, self._normal_table,
            self._tot_table, *extra,
            buffers["l1_channel"], buffers["l1_time"], buffers["l1_tot"], buffers["l1_start"],
            buffers["l1_count"], buffers["sn_channel"], buffers["sn_time"], buffers["sn_tot"],
            buffers["sn_start"], buffers["sn_count"],
        )  # fmt: skip
        # the DataFilter's checksum: frames with incomplete UDP data are not L1/SN data
        daq = summary_frames["daq"]
        complete = ((daq & 0xFFFF) == (daq >> UDP_COUNT_BITS) + 1) & (
            summary_frames["fifo"] >> UDP_TRAILER_BIT == 1
        )
        sent = alive & complete
        superframes = self._superframes
        superframes["run"] = header.run
        superframes["frame_index"] = header.frame_index
        superframes["utc_raw"] = header.utc_seconds
        superframes["utc_16ns_cycles"] = header.utc_16ns_cycles
        for name in ("daq", "status", "fifo"):
            superframes[name] = summary_frames[name]
        parts = []
        for data_type, prefix in ((DAQTIMESLICEL1, "l1"), (DAQTIMESLICESN, "sn")):
            counts = buffers[f"{prefix}_count"]
            superframes["n_hits"] = counts
            superframes["length"] = _SUPERFRAME_SIZE + _HIT_SIZE * counts
            parts.append(
                self._encode(
                    header, data_type, sent, superframes, buffers[f"{prefix}_start"], counts,
                    buffers[f"{prefix}_channel"], buffers[f"{prefix}_time"],
                    buffers[f"{prefix}_tot"],
                )
            )  # fmt: skip
        n_messages = 2 * len(np.unique(self.data_filter[sent]))
        return b"".join(parts), n_messages

    def _reserve(self, capacity: int) -> dict[str, np.ndarray]:
        n = len(self.optical_rows)
        if capacity > self._capacity or not self._buffers:
            self._capacity = max(capacity * 5 // 4, 1024)
            size = self._capacity
            self._buffers = {
                f"{p}_{name}": np.zeros(size, dtype)
                for p in ("l1", "sn")
                for name, dtype in (("channel", np.uint8), ("time", np.uint32), ("tot", np.uint8))
            }
            for p in ("l1", "sn"):
                self._buffers[f"{p}_start"] = np.zeros(n, np.int64)
                self._buffers[f"{p}_count"] = np.zeros(n, np.int64)
        return self._buffers

    def _encode(
        self,
        header: DAQHeader,
        data_type: int,
        sent: np.ndarray,
        superframes: np.ndarray,
        starts: np.ndarray,
        counts: np.ndarray,
        channels: np.ndarray,
        times: np.ndarray,
        tots: np.ndarray,
    ) -> bytes:
        """One message per DataFilter with a frame for each of its DOMs that sent data."""
        order = self._filter_order[sent[self._filter_order]]
        if not len(order):
            return b""
        filters = self.data_filter[order]
        first = np.searchsorted(filters, np.arange(self.n_data_filters + 1))
        cumulative = np.concatenate(([0], np.cumsum(_SUPERFRAME_SIZE + _HIT_SIZE * counts[order])))
        frame_bytes = cumulative[first[1:]] - cumulative[first[:-1]]
        has_frames = first[1:] > first[:-1]
        version = 1
        head_size = body_offset(version) + HEADER.size + COUNT.size
        tag = TAG_BY_DATA_TYPE[data_type]
        heads = []
        for index in np.flatnonzero(has_frames).tolist():
            length = head_size + int(frame_bytes[index])
            n_frames = int(first[index + 1] - first[index])
            heads.append(
                encode_prefix(tag, length)
                + pack_start(data_type, length, version, header)
                + COUNT.pack(n_frames)
            )
        head_array = np.frombuffer(b"".join(heads), np.uint8).reshape(len(heads), -1)
        filters_sent = np.flatnonzero(has_frames)
        total = int(frame_bytes.sum()) + head_array.size
        if len(self._out) < total:
            self._out = np.zeros(total * 5 // 4, np.uint8)
        raw = superframes.view(np.uint8).reshape(len(superframes), _SUPERFRAME_SIZE)
        written = _write_messages(
            self._out, head_array, first[filters_sent], first[filters_sent + 1], order, raw,
            starts, counts, channels, times, tots,
        )  # fmt: skip
        return self._out[:written].tobytes()


# -- kernels ------------------------------------------------------------------------------

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX_1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX_2 = np.uint64(0x94D049BB133111EB)
_SHIFT_30 = np.uint64(30)
_SHIFT_27 = np.uint64(27)
_SHIFT_31 = np.uint64(31)
_SHIFT_11 = np.uint64(11)
_LOW_BITS = np.uint64(_TABLE_MASK)
_TO_UNIT = 1.0 / 9007199254740992.0  # 2^-53


@njit(cache=True, inline="always")
def _bits(state: np.ndarray) -> np.uint64:
    """splitmix64: 64 random bits."""
    state[0] += _GOLDEN
    z = state[0]
    z = (z ^ (z >> _SHIFT_30)) * _MIX_1
    z = (z ^ (z >> _SHIFT_27)) * _MIX_2
    return z ^ (z >> _SHIFT_31)


@njit(cache=True, inline="always")
def _uniform(state: np.ndarray) -> float:
    return float(_bits(state) >> _SHIFT_11) * _TO_UNIT


@njit(cache=True, inline="always")
def _index(state: np.ndarray) -> int:
    return int(_bits(state) & _LOW_BITS)


@njit(cache=True, inline="always")
def _search(cdf: np.ndarray, value: float) -> int:
    """First index whose cumulative value exceeds ``value``."""
    low, high = 0, len(cdf) - 1
    while low < high:
        middle = (low + high) // 2
        if cdf[middle] > value:
            high = middle
        else:
            low = middle + 1
    return low


@njit(cache=True, inline="always")
def _pick(probability: np.ndarray, alias: np.ndarray, state: np.ndarray) -> int:
    """Walker's alias method: an index drawn with the tables' weights in O(1)."""
    u = _uniform(state) * len(probability)
    column = int(u)
    return column if u - column < probability[column] else alias[column]


def alias_tables(weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Walker alias tables (probability, alias) of every row of ``weights`` ``(n, k)``.

    Rows without weight draw index 0 (callers draw nothing from them).
    """
    weights = np.ascontiguousarray(weights, dtype=np.float64)
    probability = np.ones(weights.shape)
    alias = np.zeros(weights.shape, np.int64)
    _fill_alias(weights, probability, alias)
    return probability, alias


@njit(cache=True)
def _fill_alias(weights, probability, alias):  # fmt: skip
    n, k = weights.shape
    small = np.empty(k, np.int64)
    large = np.empty(k, np.int64)
    scaled = np.empty(k)
    for row in range(n):
        total = weights[row].sum()
        if total <= 0:
            continue
        n_small = n_large = 0
        for column in range(k):
            scaled[column] = weights[row, column] * k / total
            if scaled[column] < 1.0:
                small[n_small] = column
                n_small += 1
            else:
                large[n_large] = column
                n_large += 1
        while n_small and n_large:
            n_small -= 1
            low = small[n_small]
            high = large[n_large - 1]
            probability[row, low] = scaled[low]
            alias[row, low] = high
            scaled[high] -= 1.0 - scaled[low]
            if scaled[high] < 1.0:
                n_large -= 1
                small[n_small] = high
                n_small += 1
        for rest in range(n_large):
            probability[row, large[rest]] = 1.0
        for rest in range(n_small):
            probability[row, small[rest]] = 1.0


@njit(cache=True, inline="always")
def _inside_l1_window(channels, times, size, shift_ns):  # fmt: skip
    """Keep the hits within the L1 window of the earliest (calibrated: true time minus the
    PMT's error); returns how many are kept, moved to the front."""
    earliest = 1e300
    for k in range(size):
        earliest = min(earliest, times[k] - shift_ns[channels[k]])
    kept = 0
    for k in range(size):
        if times[k] - shift_ns[channels[k]] - earliest < _L1_CONTINUOUS_NS:
            channels[kept] = channels[k]
            times[kept] = times[k]
            kept += 1
    return kept


@njit(cache=True)
def _draw_groups(
    state, draws, layout_probability, layout_alias, layout, efficiency, efficiency_max,
    singles_probability, singles_alias, live, shift_ns, delay_ns, width_ns, untriggered_cdf,
    burst_cdf, normals, tots, extra_offsets, extra_channel, extra_raw, extra_tot, extra_mult,
    l1_channel, l1_time, l1_tot, l1_start, l1_count, sn_channel, sn_time, sn_tot, sn_start,
    sn_count,
):  # fmt: skip
    """Every DOM's coincidence groups of one timeslice into the L1 and SN hit buffers."""
    n_doms = draws.shape[0]
    l1_at = 0
    sn_at = 0
    channels = np.empty(N_CHANNELS, np.int64)
    times = np.empty(N_CHANNELS)
    pool = np.empty(N_CHANNELS, np.int64)
    span = FRAME_NS - 2 * EDGE_NS
    left = np.empty(4, np.int64)
    spacing = np.empty(draws.sum(axis=1).max() + 1 if n_doms else 1)
    for dom in range(n_doms):
        l1_start[dom] = l1_at
        sn_start[dom] = sn_at
        n_live = 0
        for channel in range(N_CHANNELS):
            if live[dom, channel]:
                pool[n_live] = channel
                n_live += 1
        # The DataFilter writes a frame's hits in time order: the groups' start times are drawn
        # already sorted (normalised sums of exponential spacings: uniform order statistics),
        # each group's kind drawn without replacement from the DOM's counts.
        groups = 0
        for kind in range(4):
            left[kind] = draws[dom, kind]
            groups += draws[dom, kind]
        total = 0.0
        for group in range(groups + 1):
            total -= math.log(1.0 - _uniform(state))
            spacing[group] = total
        for group in range(groups):
            t_true = EDGE_NS + span * (spacing[group] / total)
            pick = int(_uniform(state) * (groups - group))
            kind = 0
            while pick >= left[kind]:
                pick -= left[kind]
                kind += 1
            left[kind] -= 1
            size = 0
            if kind == 0:  # genuine K40: a pair by angle and efficiency, maybe more PMTs
                table = layout[dom]
                ceiling = efficiency_max[dom] ** 2
                for _try in range(1000):  # rejection: pair rate ∝ eff_i eff_j
                    pair = _pick(layout_probability[table], layout_alias[table], state)
                    first = PAIR_I[pair]
                    second = PAIR_J[pair]
                    weight = efficiency[dom, first] * efficiency[dom, second]
                    if _uniform(state) * ceiling < weight:
                        break
                if not (live[dom, first] and live[dom, second]):
                    continue
                channels[0] = first
                channels[1] = second
                size = 2
                while size < K40_MAX_PMTS and _uniform(state) < K40_NEXT_PMT_PROBABILITY:
                    candidate = pool[int(_uniform(state) * n_live)]
                    unique = True
                    for k in range(size):
                        if channels[k] == candidate:
                            unique = False
                    if unique:
                        channels[size] = candidate
                        size += 1
                for k in range(size):
                    c = channels[k]
                    times[k] = t_true + width_ns[dom, c] * normals[_index(state)]
            elif kind == 1:  # accidental pair from the singles, flat in calibrated Δt
                first = _pick(singles_probability[dom], singles_alias[dom], state)
                second = _pick(singles_probability[dom], singles_alias[dom], state)
                if first == second or not (live[dom, first] and live[dom, second]):
                    continue
                channels[0] = first
                channels[1] = second
                size = 2
                delta = (2 * _uniform(state) - 1) * _L1_CONTINUOUS_NS
                times[0] = t_true
                times[1] = t_true + delta + shift_ns[dom, second] - shift_ns[dom, first]
            else:  # muon or supernova light: M distinct PMTs at once
                cdf = untriggered_cdf if kind == 2 else burst_cdf
                spread = MUON_SPREAD_NS if kind == 2 else BURST_SPREAD_NS
                wanted = min(_search(cdf, _uniform(state)), n_live)
                for k in range(wanted):  # partial Fisher-Yates over the live PMTs
                    pick = k + int(_uniform(state) * (n_live - k))
                    pool[k], pool[pick] = pool[pick], pool[k]
                    channels[k] = pool[k]
                    jitter = spread * normals[_index(state)]
                    jitter = min(max(jitter, -SPREAD_LIMIT_NS), SPREAD_LIMIT_NS)
                    times[k] = t_true + jitter
                size = wanted
            if size < 2:
                continue
            kept = size  # accidental pairs are inside the L1 window by construction
            if kind != 1 and size == 2:
                delta = times[1] - shift_ns[dom, channels[1]]
                delta -= times[0] - shift_ns[dom, channels[0]]
                kept = 2 if abs(delta) < _L1_CONTINUOUS_NS else 0
            elif kind != 1:
                kept = _inside_l1_window(channels, times, size, shift_ns[dom])
            if kept < 2:
                continue
            for k in range(kept):
                c = channels[k]
                raw = times[k] - delay_ns[dom, c]
                raw_ns = np.uint32(min(max(math.floor(raw), 0), FRAME_NS - 1))
                tot = tots[_index(state)]
                l1_channel[l1_at] = c
                l1_time[l1_at] = raw_ns
                l1_tot[l1_at] = tot
                l1_at += 1
                if kept >= SN_MIN_PMTS:
                    sn_channel[sn_at] = c
                    sn_time[sn_at] = raw_ns
                    sn_tot[sn_at] = tot
                    sn_at += 1
        for hit in range(extra_offsets[dom], extra_offsets[dom + 1]):
            l1_channel[l1_at] = extra_channel[hit]
            l1_time[l1_at] = extra_raw[hit]
            l1_tot[l1_at] = extra_tot[hit]
            l1_at += 1
            if extra_mult[hit] >= SN_MIN_PMTS:
                sn_channel[sn_at] = extra_channel[hit]
                sn_time[sn_at] = extra_raw[hit]
                sn_tot[sn_at] = extra_tot[hit]
                sn_at += 1
        l1_count[dom] = l1_at - l1_start[dom]
        sn_count[dom] = sn_at - sn_start[dom]


@njit(cache=True)
def _write_messages(
    out, heads, first, last, order, superframes, starts, counts, channels, times, tots
):  # fmt: skip
    """Messages back to back: head (prefix, preamble, header, frame count), then the frames."""
    at = 0
    head_size = heads.shape[1]
    for message in range(len(first)):
        out[at : at + head_size] = heads[message]
        at += head_size
        for position in range(first[message], last[message]):
            dom = order[position]
            out[at : at + _SUPERFRAME_SIZE] = superframes[dom]
            at += _SUPERFRAME_SIZE
            for hit in range(starts[dom], starts[dom] + counts[dom]):
                time_ns = times[hit]
                out[at] = channels[hit]
                out[at + 1] = (time_ns >> 24) & 0xFF
                out[at + 2] = (time_ns >> 16) & 0xFF
                out[at + 3] = (time_ns >> 8) & 0xFF
                out[at + 4] = time_ns & 0xFF
                out[at + 5] = tots[hit]
                at += _HIT_SIZE
    return at
