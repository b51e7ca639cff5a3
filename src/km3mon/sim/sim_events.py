"""Triggered events (``IO_EVT``): atmospheric muons crossing the detector, plus K40 background.

A muon is a straight track (downgoing, ``cos zenith`` in [:data:`MIN_COS_ZENITH`, 1]) through a
random point of the instrumented volume. A DOM at perpendicular distance ``d`` sees
``Poisson(LIGHT_YIELD * exp(-d / ATTENUATION_M) / d)`` photons, each on a random PMT, at the
Cherenkov time of that PMT's position

    t = t0 + (l - d / tan(theta_c)) / c + d / (sin(theta_c) * c / n)

(``l``: position of the closest approach along the track), delayed by scattering and PMT
jitter, and written as the raw TDC time the DAQ would write (true time minus the PMT's delay,
:mod:`.sim_calibration`), so that calibrating with the DETX restores it. DOMs with at least
two such hits (local coincidences) make the triggered hits; an event needs
:data:`MIN_TRIGGER_DOMS` of them, tracks that do not trigger are dropped. All tracks of a
timeslice are handled together: distances of all DOMs to all tracks as ``(tracks, DOMs)``
arrays, hits of all events in flat arrays, split per event at the end. Snapshot hits are the
triggered ones plus K40-like background on the DOMs within :data:`BACKGROUND_RADIUS_M` of the
track, Poisson in the event window at each DOM's current rate; so every triggered hit is also a
snapshot hit, byte for byte.

Trigger masks follow :data:`TRIGGER_MIX` (fractions of event classes); each triggered hit carries
a subset of its event's bits and together they OR to the event mask, as in recorded data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from km3mon.daq.event import SNAPSHOT_HIT_DTYPE, TRIGGERED_HIT_DTYPE
from km3mon.daq.triggers import trigger_mask
from km3mon.detector import Detector
from km3mon.sim.sim_calibration import TrueCalibration

SPEED_OF_LIGHT_M_NS = 0.299792458
INDEX_OF_REFRACTION = 1.35
GROUP_INDEX = 1.38
COS_CHERENKOV = 1 / INDEX_OF_REFRACTION
SIN_CHERENKOV = np.sqrt(1 - COS_CHERENKOV**2)
TAN_CHERENKOV = SIN_CHERENKOV / COS_CHERENKOV

MIN_COS_ZENITH = 0.2
VOLUME_MARGIN_M = 20.0  # tracks cross the instrumented radius plus this
BASE_EVENT_RATE_HZ = 10.0
EVENT_RATE_PER_DU_HZ = 2.0
LIGHT_YIELD_M = 60.0  # expected photons x metres (at 10 m: ~5 hits)
ATTENUATION_M = 60.0
MAX_SIGNAL_DISTANCE_M = 150.0
SCATTER_NS = 1.0  # mean delay by scattering: SCATTER_NS + SCATTER_NS_PER_M * distance
SCATTER_NS_PER_M = 0.15
JITTER_NS = 2.0
TOT_NS = (26.0, 4.0)  # mean, sigma of signal hits
BACKGROUND_TOT_NS = (22.0, 6.0)
MIN_TRIGGER_DOMS = 3
MAX_ROUNDS = 5
MAX_BATCH_TRACKS = 1_000  # bounds the (tracks, DOMs) arrays when few tracks trigger
BACKGROUND_RADIUS_M = 100.0
WINDOW_MARGIN_NS = 1_000.0
FRAME_NS = 100_000_000
OVERLAYS_PER_TRIGGERED_HIT = 1 / 3

#: Event classes: (triggers that fired, fraction of events).
TRIGGER_MIX: tuple[tuple[tuple[str, ...], float], ...] = (
    (("3DMuon",), 0.30),
    (("3DMuon", "3DShower"), 0.25),
    (("3DShower", "MXShower", "3DMuon"), 0.15),
    (("3DShower",), 0.12),
    (("MXShower",), 0.10),
    (("3DShower", "MXShower"), 0.08),
)
_MIX_MASKS = np.array([trigger_mask(*names) for names, _ in TRIGGER_MIX], np.uint64)
_MIX_FRACTIONS = np.array([fraction for _, fraction in TRIGGER_MIX])


def default_event_rate_hz(n_dus: int) -> float:
    """~20 Hz for a 6-DU detector, ~50 Hz for 21 DUs, ~470 Hz for 230 DUs."""
    return BASE_EVENT_RATE_HZ + EVENT_RATE_PER_DU_HZ * n_dus


@dataclass(frozen=True)
class SimulatedEvent:
    """Everything of an ``IO_EVT`` but the DAQ header and trigger counter, and the true muon:
    it passes ``track_point_m`` at ``track_time_ns`` going along ``track_direction``. The time
    is in the frame of calibrated hit times (ns since the timeslice start plus the reference t0
    of :class:`~.sim_calibration.TrueCalibration`); ``n_signal_hits`` is the number of
    Cherenkov hits (the triggered ones), a proxy of the muon's light and so of its energy."""

    trigger_mask: int
    overlays: int
    triggered_hits: np.ndarray
    snapshot_hits: np.ndarray
    track_point_m: np.ndarray
    track_direction: np.ndarray
    track_time_ns: float
    n_signal_hits: int


class MuonEventGenerator:
    """Draws muon events on the optical DOMs of a detector, all events of a timeslice at once."""

    def __init__(
        self,
        detector: Detector,
        rng: np.random.Generator,
        calibration: TrueCalibration | None = None,
    ) -> None:
        self.rng = rng
        self.calibration = calibration or TrueCalibration(detector)
        optical = detector.n_pmts > 0
        self.dom_ids = detector.dom_ids[optical]
        self.position_m = detector.dom_pos_m[optical]
        self.n_pmts = detector.n_pmts[optical]
        centre = self.position_m.mean(axis=0)
        self.centre_xy_m = centre[:2]
        horizontal_m = np.linalg.norm(self.position_m[:, :2] - centre[:2], axis=1)
        self.radius_m = horizontal_m.max() + VOLUME_MARGIN_M
        self.z_range_m = (self.position_m[:, 2].min(), self.position_m[:, 2].max())
        self.acceptance = 0.5  # running fraction of tracks that trigger, to size the batches

    def generate(
        self,
        n_events: int,
        alive: np.ndarray,
        dom_rates_hz: np.ndarray,
        time_shift_ns: np.ndarray | None = None,
    ) -> list[SimulatedEvent]:
        """``n_events`` events on the ``alive`` optical DOMs, background at ``dom_rates_hz``;
        ``time_shift_ns`` (optical DOM, channel): true delays beyond the calibration's offsets.

        Fewer come back if :data:`MAX_ROUNDS` batches of tracks did not trigger enough (e.g.
        too few DOMs left).
        """
        events: list[SimulatedEvent] = []
        for _ in range(MAX_ROUNDS):
            missing = n_events - len(events)
            if missing <= 0:
                break
            n_tracks = min(int(1.3 * missing / max(self.acceptance, 0.05)) + 2, MAX_BATCH_TRACKS)
            pairs = self._pairs(n_tracks, alive)
            triggering = np.flatnonzero(
                np.bincount(pairs.track[pairs.n_signal >= 2], minlength=n_tracks)
                >= MIN_TRIGGER_DOMS
            )
            self.acceptance = 0.8 * self.acceptance + 0.2 * len(triggering) / n_tracks
            events += self._events(pairs, triggering[:missing], dom_rates_hz, time_shift_ns)
        return events

    def _tracks(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """``n`` random downgoing tracks: points ``(n, 3)`` and unit directions ``(n, 3)``."""
        rng = self.rng
        cos_zenith = rng.uniform(MIN_COS_ZENITH, 1.0, n)
        azimuth = rng.uniform(0, 2 * np.pi, n)
        sin_zenith = np.sqrt(1 - cos_zenith**2)
        direction = np.column_stack(
            (sin_zenith * np.cos(azimuth), sin_zenith * np.sin(azimuth), -cos_zenith)
        )
        radius = self.radius_m * np.sqrt(rng.random(n))
        angle = rng.uniform(0, 2 * np.pi, n)
        point = np.column_stack(
            (
                self.centre_xy_m[0] + radius * np.cos(angle),
                self.centre_xy_m[1] + radius * np.sin(angle),
                rng.uniform(*self.z_range_m, n),
            )
        )
        return point, direction

    def _pairs(self, n_tracks: int, alive: np.ndarray) -> _Pairs:
        """(track, DOM) pairs closer than :data:`MAX_SIGNAL_DISTANCE_M`, grouped by track.

        Outer products per coordinate rather than ``@``: a threaded BLAS costs more than it
        saves on these thin matrices.
        """
        point, direction = self._tracks(n_tracks)
        offset = [self.position_m[:, k] - point[:, k, None] for k in range(3)]
        along_m = sum(offset[k] * direction[:, k, None] for k in range(3))
        distance_m2 = sum(component * component for component in offset) - along_m * along_m
        track, dom = np.nonzero(alive & (distance_m2 < MAX_SIGNAL_DISTANCE_M**2))
        distance_m = np.sqrt(np.maximum(distance_m2[track, dom], 1.0))
        expected = LIGHT_YIELD_M * np.exp(-distance_m / ATTENUATION_M) / distance_m
        return _Pairs(
            point,
            direction,
            track,
            dom,
            distance_m,
            along_m[track, dom],
            self.rng.poisson(expected),
        )

    def _events(
        self,
        pairs: _Pairs,
        tracks: np.ndarray,
        dom_rates_hz: np.ndarray,
        time_shift_ns: np.ndarray | None,
    ) -> list[SimulatedEvent]:
        """The events of the triggering ``tracks``: hits of all of them in one go, then split.

        Signal times are those of the light at the hit PMT's position; the DAQ writes them as
        raw TDC times (see :mod:`.sim_calibration`), each event placed so that all its raw
        times, background included, lie inside the frame.
        """
        rng = self.rng
        n_events = len(tracks)
        if not n_events:
            return []
        event_of_track = np.full(pairs.track.max() + 1, -1)
        event_of_track[tracks] = np.arange(n_events)
        pair_event = event_of_track[pairs.track]

        signal = (pair_event >= 0) & (pairs.n_signal >= 2)
        rows = np.repeat(np.flatnonzero(signal), pairs.n_signal[signal])
        hit_event = pair_event[rows]
        hit_dom = pairs.dom[rows]
        hit_channel = rng.integers(0, self.n_pmts[hit_dom])
        true_ns = self._cherenkov_ns(pairs, rows, hit_dom, hit_channel)
        true_ns += rng.exponential(SCATTER_NS + SCATTER_NS_PER_M * pairs.distance_m[rows])
        true_ns += rng.normal(0, JITTER_NS, len(rows))
        raw_ns = true_ns - self.calibration.delay_ns(hit_dom, hit_channel, time_shift_ns)
        first = np.flatnonzero(np.r_[True, hit_event[1:] != hit_event[:-1]])
        earliest = np.minimum.reduceat(raw_ns, first)
        latest = np.maximum.reduceat(raw_ns, first)
        # The event window (raw times of the frame) and where in the frame it starts.
        window_ns = latest - earliest + 2 * WINDOW_MARGIN_NS
        window_start_ns = rng.uniform(0, FRAME_NS - window_ns)
        shift_ns = window_start_ns + WINDOW_MARGIN_NS - earliest
        raw_ns += shift_ns[hit_event]

        masks = rng.choice(_MIX_MASKS, n_events, p=_MIX_FRACTIONS)
        triggered = self._hits(TRIGGERED_HIT_DTYPE, hit_dom, hit_channel, raw_ns, TOT_NS)
        hit_masks = masks[hit_event] & rng.integers(0, 2**63, len(rows), dtype=np.uint64)
        hit_masks[first] = 0  # the first hit of an event carries all its bits
        triggered["trigger_mask"] = np.where(hit_masks == 0, masks[hit_event], hit_masks)

        near = (pair_event >= 0) & (pairs.distance_m < BACKGROUND_RADIUS_M)
        near_event = pair_event[near]
        n_background = rng.poisson(dom_rates_hz[pairs.dom[near]] * window_ns[near_event] * 1e-9)
        bg_rows = np.repeat(np.flatnonzero(near), n_background)
        bg_event = pair_event[bg_rows]
        bg_dom = pairs.dom[bg_rows]
        bg_ns = window_start_ns[bg_event] + window_ns[bg_event] * rng.random(len(bg_rows))
        bg_channel = rng.integers(0, self.n_pmts[bg_dom])
        snapshot = np.concatenate(
            (
                triggered[list(SNAPSHOT_HIT_DTYPE.names)].astype(SNAPSHOT_HIT_DTYPE),
                self._hits(SNAPSHOT_HIT_DTYPE, bg_dom, bg_channel, bg_ns, BACKGROUND_TOT_NS),
            )
        )
        snapshot_event = np.concatenate((hit_event, bg_event))
        order = np.lexsort((snapshot["time_ns"], snapshot_event))
        snapshot = snapshot[order]

        n_triggered = np.bincount(hit_event, minlength=n_events)
        n_snapshot = np.bincount(snapshot_event, minlength=n_events)
        overlays = rng.poisson(n_triggered * OVERLAYS_PER_TRIGGERED_HIT).tolist()
        triggered_parts = np.split(triggered, np.cumsum(n_triggered)[:-1])
        snapshot_parts = np.split(snapshot, np.cumsum(n_snapshot)[:-1])
        # The muon passes its point at true time 0 plus the event's shift; calibrated hit
        # times are true times plus the reference t0 (see sim_calibration).
        track_time_ns = shift_ns + self.calibration.reference_t0_ns
        return [
            SimulatedEvent(mask, overlay, hits, snapshot_hits, point, direction, time_ns, n_sig)
            for mask, overlay, hits, snapshot_hits, point, direction, time_ns, n_sig in zip(
                masks.tolist(),
                overlays,
                triggered_parts,
                snapshot_parts,
                pairs.point_m[tracks],
                pairs.direction[tracks],
                track_time_ns.tolist(),
                n_triggered.tolist(),
                strict=True,
            )
        ]

    def _cherenkov_ns(
        self, pairs: _Pairs, rows: np.ndarray, doms: np.ndarray, channels: np.ndarray
    ) -> np.ndarray:
        """Arrival time of the direct Cherenkov light at each hit's PMT, the muon passing its
        track point at time 0."""
        track = pairs.track[rows]
        offset_m = self.calibration.pmt_pos_m[doms, channels] - pairs.point_m[track]
        direction = pairs.direction[track]
        along_m = np.einsum("ij,ij->i", offset_m, direction)
        distance_m = np.sqrt(np.maximum(np.einsum("ij,ij->i", offset_m, offset_m) - along_m**2, 0))
        return (along_m - distance_m / TAN_CHERENKOV) / SPEED_OF_LIGHT_M_NS + distance_m / (
            SIN_CHERENKOV * SPEED_OF_LIGHT_M_NS / GROUP_INDEX
        )

    def _hits(
        self,
        dtype: np.dtype,
        doms: np.ndarray,
        channels: np.ndarray,
        time_ns: np.ndarray,
        tot_ns: tuple[float, float],
    ) -> np.ndarray:
        hits = np.zeros(len(doms), dtype)
        hits["dom_id"] = self.dom_ids[doms]
        hits["channel"] = channels
        hits["time_ns"] = np.minimum(np.maximum(np.rint(time_ns), 0), FRAME_NS - 1)
        tot = np.rint(self.rng.normal(tot_ns[0], tot_ns[1], len(doms)))
        hits["tot"] = np.minimum(np.maximum(tot, 1), 255)
        return hits


@dataclass(frozen=True)
class _Pairs:
    """The tracks of a batch and their track-DOM pairs: indices, distance and closest approach
    along the track (metres) and the number of signal hits, sorted by track."""

    point_m: np.ndarray
    direction: np.ndarray
    track: np.ndarray
    dom: np.ndarray
    distance_m: np.ndarray
    along_m: np.ndarray
    n_signal: np.ndarray
