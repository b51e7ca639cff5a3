"""Triggered events (``IO_EVT``): atmospheric muons and bundles, neutrino-induced upgoing muons,
EM showers along the tracks, K40 background, and events triggered by K40 alone.

Tracks: a downgoing muon (``cos zenith`` in [:data:`MIN_COS_ZENITH`, 1]) through a random point
of the instrumented volume; a fraction :data:`BUNDLE_FRACTION` of them come as a bundle of
parallel muons (:data:`BUNDLE_SPREAD_M` apart); with ``upgoing_fraction`` the event is a single
upgoing muon instead (``cos zenith`` in [-1, 0]: a neutrino-induced muon). Bremsstrahlung EM
showers (:data:`SHOWERS_PER_TRACK`, ``E^-2`` energies) sit along the leading muon.

Light, photon by photon (the "candidates" are thinned, so every step is vectorised):

- direct Cherenkov light of each muon: ``LIGHT_YIELD_M * exp(-d / ATTENUATION_M) / d`` photons
  on a DOM at distance ``d``, averaged over directions; each PMT gets its share through the
  **angular acceptance** of a KM3NeT 3" PMT (:data:`ACCEPTANCE_COS`, Jpp's curve) at the angle
  between the photon and the PMT axis of the DETX, times the PMT's efficiency: the PMTs facing
  the light see it, those looking away do not;
- shower light: isotropic from the shower point, ``SHOWER_YIELD_M2_PER_GEV * E * exp(-r / ATT) /
  r^2`` photons, through the same acceptance;
- arrival time: the direct (Cherenkov or shower) time at the PMT, plus chromatic dispersion and
  small-angle scattering (:data:`DISPERSION_NS`), the PMT transit-time spread
  (:data:`JITTER_NS`) and, for a distance-dependent share of photons
  (:func:`scatter_probability`), a scattering delay (exponential, :data:`SCATTER_DELAY_NS`) with
  a smeared arrival direction. The share and the delays are tuned so that the residuals match
  those of the KM3NeT MC (``bench/sim_residuals.py``).

Photons on one PMT within :data:`MERGE_NS` make one hit (its first photon's time, their count
as the number of photo-electrons). The hit's ToT grows with the photo-electrons, and its time is
written **as the DAQ records it**: late by the time slewing of its ToT (:func:`slewing_ns`, Jpp's
table; small pulses cross the threshold later), then as the raw TDC time (true time minus the
PMT's delay, :mod:`.sim_calibration`), so calibrating with the DETX and correcting the slewing
restores it. Hits with another hit on their DOM within :data:`L1_WINDOW_NS` (local coincidences,
L1) and single hits within :data:`TRIGGER_ROAD_M` of the muon are the triggered hits; an event
needs L1s on :data:`MIN_TRIGGER_DOMS` DOMs, tracks that do not trigger are dropped. The other
hits of the event's light are snapshot hits only, with K40-like background on the DOMs within
:data:`BACKGROUND_RADIUS_M` of the track, Poisson in the event window at each DOM's current
rate. All tracks of a timeslice are handled together.

A fraction :data:`NOISE_EVENT_FRACTION` of the events have no muon at all: K40 coincidences on
3-4 DOMs close enough to be causally connected, which a real trigger also accepts.

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
#: Expected photons on a DOM x metres (averaged over directions) and the effective attenuation
#: length (absorption and light scattered away), fitted to the KM3NeT MC's hits per DOM
#: against the distance to its muon (ORCA-6: 9.3, 4.1, 2.2, 1.0, 0.4, 0.2 at 5-70 m).
LIGHT_YIELD_M = 140.0
ATTENUATION_M = 28.0
MAX_SIGNAL_DISTANCE_M = 150.0
MIN_TRIGGER_DOMS = 3
MAX_ROUNDS = 5
MAX_BATCH_TRACKS = 1_000  # bounds the (tracks, DOMs) arrays when few tracks trigger
BACKGROUND_RADIUS_M = 100.0
WINDOW_MARGIN_NS = 1_000.0
FRAME_NS = 100_000_000
OVERLAYS_PER_TRIGGERED_HIT = 1 / 3

#: Angular acceptance of a KM3NeT 3" PMT in its DOM (glass and gel included) against the cosine
#: of the angle between the photon's direction of travel and the PMT axis (-1: head-on), zero
#: from 0.4 on. The curve of Jpp (``JPhysics/KM3NeT.hh``, ``getAngularAcceptance``), as
#: tabulated in ``tamasgal/LumenManufaktur.jl`` (``KM3NeTPMT``); linear between the points.
ACCEPTANCE_COS = np.r_[np.linspace(-1.0, 0.4, 29), 0.4 + 1e-9, 1.0]
ACCEPTANCE_VALUES = np.array(
    [1.621, 1.346, 1.193, 1.073, 0.973, 0.877, 0.790, 0.711, 0.640, 0.575,
     0.517, 0.450, 0.396, 0.341, 0.295, 0.249, 0.207, 0.166, 0.128, 0.095,
     0.065, 0.038, 0.017, 0.006, 0.003, 0.002, 0.001, 0.001, 0.001, 0.0, 0.0]
)  # fmt: skip
#: Time slewing (ns) against ToT (ns): how much later than a one-photo-electron pulse (ToT
#: ~26 ns) a hit of that ToT is recorded. Knots of Jpp's lab-measured table (the one km3pipe's
#: ``calib.slew(variant=3)`` and NeRCA's ``SLEWS`` carry), linear between them: within 0.06 ns
#: of all 256 entries.
SLEWING_TOT_NS = np.array(
    [0, 5, 10, 15, 20, 24, 26, 28, 32, 40, 50, 60, 80, 100, 130, 160, 200, 233, 255], float
)
SLEWING_NS = np.array(
    [8.01, 5.74, 3.89, 2.39, 1.19, 0.41, 0.07, -0.27, -0.91, -2.11, -3.19, -4.04, -5.40, -6.45,
     -7.63, -8.43, -9.02, -9.04, -9.04]
)  # fmt: skip
#: ToT of a one-photo-electron hit (mean, sigma; the KM3NeT MC's non-triggered hits: median 25
#: ns, 5-95 % 10-31 ns) and its growth per further photo-electron (the inverse of the 0.28 p.e.
#: per ns that NeRCA's ``nphe(ToT)`` assumes).
ONE_PE_TOT_NS = (25.5, 5.0)
TOT_NS_PER_PE = 3.6
MERGE_NS = 25.0  # photons on one PMT within this of the previous one extend its hit
L1_WINDOW_NS = 10.0
#: Single hits (L0) of the event's light within this distance of the leading muon are
#: triggered hits too, as in the KM3NeT MC (a quarter of its triggered hits have no other hit
#: on their DOM within 10 ns).
TRIGGER_ROAD_M = 60.0

#: Arrival-time spread: PMT transit-time spread (sigma), chromatic dispersion and small-angle
#: scattering (exponential, mean at the PMT plus per metre of light path), and a scattered share
#: of the photons, delayed by an exponential of mean ``SCATTER_DELAY_NS[0] +
#: SCATTER_DELAY_NS[1] * distance``. Tuned on the KM3NeT MC (``bench/sim_residuals.py``,
#: BENCHMARKS.md): triggered hits 34 % > 5 ns late, 13 % > 20 ns.
JITTER_NS = 2.0
DISPERSION_NS = (1.2, 0.04)  # mean delay: at the PMT, and per metre of light path
SCATTER_SHARE = (0.18, 0.3)  # at 0 m and far away
SCATTER_SHARE_LENGTH_M = 80.0
SCATTER_DELAY_NS = (18.0, 0.1)
SCATTER_SMEAR = 1.0  # a scattered photon's direction: direct one + this x a random unit vector

#: Atmospheric muon bundles: share of downgoing events with more than one muon, the extra
#: muons (1 + geometric) and the sigma of their lateral offsets from the leading one.
BUNDLE_FRACTION = 0.2
BUNDLE_EXTRA_P = 0.5  # geometric parameter: mean 1 / p extra muons
BUNDLE_SPREAD_M = 8.0
#: Bremsstrahlung showers along the leading muon: mean number per track, placed within
#: +-SHOWER_RANGE_M of its point, energies E^-2 in SHOWER_ENERGY_GEV; light yield per GeV.
SHOWERS_PER_TRACK = 1.0
SHOWER_RANGE_M = 300.0
SHOWER_ENERGY_GEV = (2.0, 1000.0)
SHOWER_YIELD_M2_PER_GEV = 176.0  # 1 GeV of shower ~ 3.7 m of muon track in light
SHOWER_MAX_DISTANCE_M = 100.0
#: Events triggered by K40 alone: their share, DOMs, and how far apart those may be.
NOISE_EVENT_FRACTION = 0.03
NOISE_DOMS = (3, 4)
NOISE_RADIUS_M = 100.0
#: Kinds of events, as written to the truth file.
KINDS = ("muon", "bundle", "upgoing", "k40")

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


def acceptance(cos_incidence: np.ndarray) -> np.ndarray:
    """Relative PMT angular acceptance (1 head-on) at the cosine between the photon's direction
    of travel and the PMT axis."""
    return np.interp(cos_incidence, ACCEPTANCE_COS, ACCEPTANCE_VALUES) / ACCEPTANCE_VALUES[0]


def slewing_ns(tot_ns: np.ndarray) -> np.ndarray:
    """How much later than a one-photo-electron pulse a hit of this ToT is recorded (ns)."""
    return np.interp(tot_ns, SLEWING_TOT_NS, SLEWING_NS)


def scatter_probability(distance_m: np.ndarray) -> np.ndarray:
    """Share of the photons that reach a PMT at this distance scattered (late)."""
    near, far = SCATTER_SHARE
    return far - (far - near) * np.exp(-distance_m / SCATTER_SHARE_LENGTH_M)


def _mean_dom_acceptance() -> float:
    """Sum of the 31 PMTs' acceptances of a standard DOM, averaged over photon directions:
    what turns "photons on a DOM" into a head-on yield per PMT."""
    from km3mon.sim.sim_geometry import pmt_directions

    rng = np.random.default_rng(0)
    photons = rng.standard_normal((20_000, 3))
    photons /= np.linalg.norm(photons, axis=1, keepdims=True)
    return float(acceptance(photons @ pmt_directions().T).sum(axis=1).mean())


MEAN_DOM_ACCEPTANCE = _mean_dom_acceptance()
#: Upper bound of acceptance x efficiency of a PMT, for thinning candidate photons.
_THINNING_BOUND = 1.4


@dataclass(frozen=True)
class SimulatedEvent:
    """Everything of an ``IO_EVT`` but the DAQ header and trigger counter, and the truth: the
    leading muon passes ``track_point_m`` at ``track_time_ns`` going along ``track_direction``.
    The time is in the frame of calibrated hit times (ns since the timeslice start plus the
    reference t0 of :class:`~.sim_calibration.TrueCalibration`); ``n_signal_hits`` is the number
    of triggered hits from the event's light, a proxy of its energy. ``kind`` is one of
    :data:`KINDS`; a ``k40`` event has no muon (direction NaN, point the first DOM's)."""

    trigger_mask: int
    overlays: int
    triggered_hits: np.ndarray
    snapshot_hits: np.ndarray
    track_point_m: np.ndarray
    track_direction: np.ndarray
    track_time_ns: float
    n_signal_hits: int
    kind: str = "muon"
    n_muons: int = 1


class MuonEventGenerator:
    """Draws the events on the optical DOMs of a detector, all events of a timeslice at once."""

    def __init__(
        self,
        detector: Detector,
        rng: np.random.Generator,
        calibration: TrueCalibration | None = None,
        *,
        noise_fraction: float = NOISE_EVENT_FRACTION,
    ) -> None:
        if not 0 <= noise_fraction <= 1:
            raise ValueError(f"noise event fraction must be in [0, 1], got {noise_fraction}")
        self.rng = rng
        self.noise_fraction = noise_fraction
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
        # the optical DOMs grouped by DU, and each DU's (x, y): see _near_doms
        dom_du = detector.dom_du[optical]
        dus, du_of_dom = np.unique(dom_du, return_inverse=True)
        self.doms_by_du = np.argsort(du_of_dom, kind="stable")
        self.du_dom_count = np.bincount(du_of_dom, minlength=len(dus))
        self.du_first = np.cumsum(self.du_dom_count) - self.du_dom_count
        self.du_xy_m = np.array(
            [self.position_m[du_of_dom == k, :2].mean(axis=0) for k in range(len(dus))]
        )
        #: How far a DOM sits sideways from its DU's line (real DUs are not quite vertical).
        self.du_sway_m = float(
            np.linalg.norm(self.position_m[:, :2] - self.du_xy_m[du_of_dom], axis=1).max()
        )
        # PMT geometry with absent channels made harmless (they are never drawn)
        self.pmt_pos_m = np.nan_to_num(self.calibration.pmt_pos_m)
        self.pmt_dir = np.nan_to_num(self.calibration.pmt_dir)

    def generate(
        self,
        n_events: int,
        alive: np.ndarray,
        dom_rates_hz: np.ndarray,
        time_shift_ns: np.ndarray | None = None,
        upgoing_fraction: float = 0.0,
    ) -> list[SimulatedEvent]:
        """``n_events`` events on the ``alive`` optical DOMs, background at ``dom_rates_hz``;
        ``time_shift_ns`` (optical DOM, channel): true delays beyond the calibration's offsets;
        ``upgoing_fraction``: share of the muon events that are upgoing neutrino-induced muons.

        Fewer come back if :data:`MAX_ROUNDS` batches of tracks did not trigger enough (e.g.
        too few DOMs left).
        """
        n_noise = int(self.rng.binomial(n_events, self.noise_fraction)) if n_events else 0
        events: list[SimulatedEvent] = []
        for _ in range(MAX_ROUNDS):
            missing = n_events - n_noise - len(events)
            if missing <= 0:
                break
            n_tracks = min(int(1.3 * missing / max(self.acceptance, 0.05)) + 2, MAX_BATCH_TRACKS)
            batch = self._light(n_tracks, alive, upgoing_fraction)
            triggering = np.flatnonzero(batch.l1_doms >= MIN_TRIGGER_DOMS)
            self.acceptance = 0.8 * self.acceptance + 0.2 * len(triggering) / n_tracks
            events += self._events(batch, triggering[:missing], dom_rates_hz, time_shift_ns)
        if n_noise:
            events += self._noise_events(n_noise, alive, dom_rates_hz, time_shift_ns)
        return events

    # -- tracks and their light ---------------------------------------------------------

    def _tracks(self, n: int, upgoing_fraction: float) -> tuple[np.ndarray, ...]:
        """``n`` random tracks: points ``(n, 3)``, unit directions ``(n, 3)``, upgoing flags."""
        rng = self.rng
        upgoing = rng.random(n) < upgoing_fraction
        cos_zenith = np.where(upgoing, -rng.random(n), rng.uniform(MIN_COS_ZENITH, 1.0, n))
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
        return point, direction, upgoing

    def _muons(
        self, point: np.ndarray, direction: np.ndarray, upgoing: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Every muon of the tracks: the leading ones, then the bundles' others, parallel and
        offset sideways (points, directions, track index, muons per track)."""
        rng = self.rng
        n = len(point)
        bundle = ~upgoing & (rng.random(n) < BUNDLE_FRACTION)
        extra = np.where(bundle, rng.geometric(BUNDLE_EXTRA_P, n), 0)
        track = np.repeat(np.arange(n), extra)
        d = direction[track]
        # two unit vectors across each direction
        helper = np.where(np.abs(d[:, 2:3]) < 0.9, [[0.0, 0.0, 1.0]], [[1.0, 0.0, 0.0]])
        across_1 = np.cross(d, helper)
        across_1 /= np.linalg.norm(across_1, axis=1, keepdims=True)
        across_2 = np.cross(d, across_1)
        offset = rng.normal(0, BUNDLE_SPREAD_M, (2, len(track)))
        others = point[track] + offset[0, :, None] * across_1 + offset[1, :, None] * across_2
        return (
            np.concatenate((point, others)),
            np.concatenate((direction, d)),
            np.concatenate((np.arange(n), track)),
            1 + extra,
        )

    def _near_doms(
        self, muon_point: np.ndarray, muon_dir: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """(muon, DOM) candidates, sorted by muon: the DOMs of the DUs whose vertical line
        passes within :data:`MAX_SIGNAL_DISTANCE_M` of the muon (a lower bound of every DOM's
        distance), so the distances are computed for a band of DUs, not the whole detector.

        Outer products per coordinate rather than ``@``: a threaded BLAS costs more than it
        saves on these thin (muons, DUs) matrices.
        """
        dx = self.du_xy_m[:, 0] - muon_point[:, 0, None]
        dy = self.du_xy_m[:, 1] - muon_point[:, 1, None]
        horizontal = np.hypot(muon_dir[:, 0], muon_dir[:, 1])[:, None]
        line_m = np.abs(dx * muon_dir[:, 1, None] - dy * muon_dir[:, 0, None]) / np.maximum(
            horizontal, 1e-9
        )
        between_m = np.where(horizontal > 1e-3, line_m, np.hypot(dx, dy))
        muon, du = np.nonzero(between_m < MAX_SIGNAL_DISTANCE_M + self.du_sway_m)
        counts = self.du_dom_count[du]
        first = self.du_first[du] - (np.cumsum(counts) - counts)
        dom = self.doms_by_du[np.repeat(first, counts) + np.arange(counts.sum())]
        return np.repeat(muon, counts), dom

    def _light(self, n_tracks: int, alive: np.ndarray, upgoing_fraction: float) -> _Batch:
        """The hits of the light of ``n_tracks`` tracks, and their local coincidences."""
        rng = self.rng
        point, direction, upgoing = self._tracks(n_tracks, upgoing_fraction)
        muon_point, muon_dir, muon_track, n_muons = self._muons(point, direction, upgoing)
        muon, dom = self._near_doms(muon_point, muon_dir)
        offset = self.position_m[dom] - muon_point[muon]
        along_m = np.einsum("ij,ij->i", offset, muon_dir[muon])
        distance_m2 = np.einsum("ij,ij->i", offset, offset) - along_m * along_m
        keep = alive[dom] & (distance_m2 < MAX_SIGNAL_DISTANCE_M**2)
        muon, dom, along_m = muon[keep], dom[keep], along_m[keep]
        distance_m = np.sqrt(np.maximum(distance_m2[keep], 1.0))

        # direct Cherenkov photons: candidates thinned by acceptance x efficiency
        yield_per_pmt = LIGHT_YIELD_M * np.exp(-distance_m / ATTENUATION_M) / distance_m
        n_candidates = rng.poisson(
            yield_per_pmt * self.n_pmts[dom] * _THINNING_BOUND / MEAN_DOM_ACCEPTANCE
        )
        lit = np.flatnonzero(n_candidates)  # the direct photon's direction once per pair
        across = self.position_m[dom[lit]] - muon_point[muon[lit]]
        across -= along_m[lit, None] * muon_dir[muon[lit]]
        across /= np.maximum(np.linalg.norm(across, axis=1, keepdims=True), 1e-9)
        lit_dir = COS_CHERENKOV * muon_dir[muon[lit]] + SIN_CHERENKOV * across
        which = np.repeat(np.arange(len(lit)), n_candidates[lit])
        rows = lit[which]
        direct = self._detect(dom[rows], lit_dir[which], distance_m[rows])
        rows, channel, delay_ns = rows[direct[0]], direct[1], direct[2]
        pmt_m = self.pmt_pos_m[dom[rows], channel]
        offset_m = pmt_m - muon_point[muon[rows]]
        along = np.einsum("ij,ij->i", offset_m, muon_dir[muon[rows]])
        across_m = np.sqrt(np.maximum(np.einsum("ij,ij->i", offset_m, offset_m) - along**2, 0))
        time_ns = (along - across_m / TAN_CHERENKOV) / SPEED_OF_LIGHT_M_NS + across_m / (
            SIN_CHERENKOV * SPEED_OF_LIGHT_M_NS / GROUP_INDEX
        )
        photons = [(muon_track[muon[rows]], dom[rows], channel, time_ns + delay_ns)]
        photons.append(self._shower_light(n_tracks, point, direction, muon, dom, along_m))
        track_of, dom_of, channel_of, true_ns = (
            np.concatenate(p) for p in zip(*photons, strict=True)
        )

        # one hit per PMT and burst of photons: first photon's time, photo-electrons counted
        order = np.lexsort((true_ns, channel_of, dom_of, track_of))
        track_of, dom_of, channel_of, true_ns = (
            a[order] for a in (track_of, dom_of, channel_of, true_ns)
        )
        same_pmt = (
            (track_of[1:] == track_of[:-1])
            & (dom_of[1:] == dom_of[:-1])
            & (channel_of[1:] == channel_of[:-1])
        )
        first = np.flatnonzero(np.r_[True, ~same_pmt | (np.diff(true_ns) > MERGE_NS)])
        first = first[: len(true_ns)]  # no photons at all: no hits
        npe = np.diff(np.r_[first, len(true_ns)])
        track_of, dom_of, channel_of, true_ns = (
            a[first] for a in (track_of, dom_of, channel_of, true_ns)
        )
        tot = self._tot(npe)
        recorded_ns = true_ns + slewing_ns(tot)

        # local coincidences on a DOM: the triggered hits
        order = np.lexsort((recorded_ns, dom_of, track_of))
        track_of, dom_of, channel_of, recorded_ns, tot = (
            a[order] for a in (track_of, dom_of, channel_of, recorded_ns, tot)
        )
        same_dom = (track_of[1:] == track_of[:-1]) & (dom_of[1:] == dom_of[:-1])
        close = same_dom & (np.diff(recorded_ns) <= L1_WINDOW_NS)
        l1 = np.zeros(len(recorded_ns), bool)
        l1[:-1] |= close
        l1[1:] |= close
        n_doms = len(self.dom_ids)
        l1_keys = np.unique(track_of[l1] * n_doms + dom_of[l1])
        l1_doms = np.bincount(l1_keys // n_doms, minlength=n_tracks)
        # the trigger also takes the single hits (L0) close to the leading muon
        lead = muon < n_tracks
        by_key = np.argsort(muon[lead] * n_doms + dom[lead])
        pair_keys = (muon[lead] * n_doms + dom[lead])[by_key]
        hit_keys = track_of * n_doms + dom_of
        in_road = np.zeros(len(hit_keys), bool)
        if len(pair_keys):
            at = np.minimum(np.searchsorted(pair_keys, hit_keys), len(pair_keys) - 1)
            in_road = (pair_keys[at] == hit_keys) & (distance_m[lead][by_key][at] < TRIGGER_ROAD_M)
        triggered = l1 | in_road
        kind = np.where(upgoing, KINDS.index("upgoing"), np.where(n_muons > 1, 1, 0))
        return _Batch(
            point, direction, n_muons, kind, muon[lead], dom[lead], distance_m[lead],
            track_of, dom_of, channel_of, recorded_ns, tot, triggered, l1_doms,
        )  # fmt: skip

    def _detect(
        self, doms: np.ndarray, photon_dir: np.ndarray, distance_m: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Which candidate photons a PMT detects: (kept, their channels, their delays in ns).

        Each candidate goes to a random PMT of its DOM; a share (:func:`scatter_probability`)
        is scattered: late, and arriving from a smeared direction. It is kept with probability
        acceptance x efficiency (over their upper bound).
        """
        rng = self.rng
        n = len(doms)
        channel = rng.integers(0, self.n_pmts[doms])
        scattered = rng.random(n) < scatter_probability(distance_m)
        if scattered.any():
            smeared = photon_dir[scattered] + SCATTER_SMEAR * _random_units(rng, scattered.sum())
            photon_dir = photon_dir.copy()
            photon_dir[scattered] = smeared / np.linalg.norm(smeared, axis=1, keepdims=True)
        cos_incidence = np.einsum("ij,ij->i", photon_dir, self.pmt_dir[doms, channel])
        weight = acceptance(cos_incidence) * self.calibration.efficiency[doms, channel]
        kept = rng.random(n) * _THINNING_BOUND < weight
        distance_m, scattered = distance_m[kept], scattered[kept]
        delay_ns = rng.exponential(DISPERSION_NS[0] + DISPERSION_NS[1] * distance_m)
        delay_ns += rng.normal(0, JITTER_NS, len(distance_m))
        delay_ns += scattered * rng.exponential(
            SCATTER_DELAY_NS[0] + SCATTER_DELAY_NS[1] * distance_m
        )
        return kept, channel[kept], delay_ns

    def _shower_light(
        self,
        n_tracks: int,
        point: np.ndarray,
        direction: np.ndarray,
        muon: np.ndarray,
        dom: np.ndarray,
        along_m: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Photons of bremsstrahlung showers along the leading muons: (track, DOM, channel,
        true time), the muon passing its point at time 0."""
        rng = self.rng
        n_showers = rng.poisson(SHOWERS_PER_TRACK, n_tracks)
        shower_track = np.repeat(np.arange(n_tracks), n_showers)
        shower_s = rng.uniform(-SHOWER_RANGE_M, SHOWER_RANGE_M, len(shower_track))
        low, high = SHOWER_ENERGY_GEV
        energy = low / (1 - rng.random(len(shower_track)) * (1 - low / high))  # E^-2
        # (shower, DOM) combinations: every DOM near the shower's muon
        lead = np.flatnonzero(muon < n_tracks)  # sorted by track: _near_doms' order
        first_pair = np.searchsorted(muon[lead], np.arange(n_tracks))
        n_pairs = np.diff(np.r_[first_pair, len(lead)])
        counts = n_pairs[shower_track]
        shower = np.repeat(np.arange(len(shower_track)), counts)
        start = np.repeat(first_pair[shower_track] - (np.cumsum(counts) - counts), counts)
        pair = lead[start + np.arange(len(shower))]
        track = shower_track[shower]
        shower_m = point[track] + shower_s[shower, None] * direction[track]
        distance_m = np.linalg.norm(self.position_m[dom[pair]] - shower_m, axis=1)
        near = distance_m < SHOWER_MAX_DISTANCE_M
        shower, pair, track, shower_m, distance_m = (
            a[near] for a in (shower, pair, track, shower_m, distance_m)
        )
        distance_m = np.maximum(distance_m, 1.0)
        expected = SHOWER_YIELD_M2_PER_GEV * energy[shower] * np.exp(-distance_m / ATTENUATION_M)
        n_candidates = rng.poisson(
            expected / distance_m**2 * self.n_pmts[dom[pair]] * _THINNING_BOUND
            / MEAN_DOM_ACCEPTANCE
        )  # fmt: skip
        rows = np.repeat(np.arange(len(pair)), n_candidates)
        doms = dom[pair[rows]]
        photon_dir = (self.position_m[doms] - shower_m[rows]) / distance_m[rows, None]
        kept, channel, delay_ns = self._detect(doms, photon_dir, distance_m[rows])
        rows, doms = rows[kept], doms[kept]
        path_m = np.linalg.norm(self.pmt_pos_m[doms, channel] - shower_m[rows], axis=1)
        time_ns = (
            shower_s[shower[rows]] / SPEED_OF_LIGHT_M_NS
            + path_m * GROUP_INDEX / SPEED_OF_LIGHT_M_NS
            + delay_ns
        )
        return track[rows], doms, channel, time_ns

    def _tot(self, npe: np.ndarray) -> np.ndarray:
        """ToT (ns, integer 1-255) of hits of ``npe`` photo-electrons."""
        tot = self.rng.normal(*ONE_PE_TOT_NS, len(npe)) + TOT_NS_PER_PE * (npe - 1)
        return np.clip(np.rint(tot), 1, 255)

    # -- events -------------------------------------------------------------------------

    def _events(
        self,
        batch: _Batch,
        tracks: np.ndarray,
        dom_rates_hz: np.ndarray,
        time_shift_ns: np.ndarray | None,
    ) -> list[SimulatedEvent]:
        """The events of the triggering ``tracks``: hits of all of them in one go, then split.

        Hit times are those recorded at the hit PMT; the DAQ writes them as raw TDC times (see
        :mod:`.sim_calibration`), each event placed so that all its raw times, background
        included, lie inside the frame.
        """
        rng = self.rng
        n_events = len(tracks)
        if not n_events:
            return []
        event_of_track = np.full(len(batch.l1_doms), -1)
        event_of_track[tracks] = np.arange(n_events)
        hit_event = event_of_track[batch.hit_track]
        mine = np.flatnonzero(hit_event >= 0)
        hit_event = hit_event[mine]
        hit_dom, hit_channel = batch.hit_dom[mine], batch.hit_channel[mine]
        triggered_hit = batch.triggered[mine]
        raw_ns = batch.recorded_ns[mine] - self.calibration.delay_ns(
            hit_dom, hit_channel, time_shift_ns
        )
        # hits are sorted by event already (tracks in order); times within each below
        first = np.flatnonzero(np.r_[True, hit_event[1:] != hit_event[:-1]])
        earliest = np.minimum.reduceat(raw_ns, first)
        latest = np.maximum.reduceat(raw_ns, first)
        # The event window (raw times of the frame) and where in the frame it starts.
        window_ns = latest - earliest + 2 * WINDOW_MARGIN_NS
        window_start_ns = rng.uniform(0, FRAME_NS - window_ns)
        shift_ns = window_start_ns + WINDOW_MARGIN_NS - earliest
        raw_ns += shift_ns[hit_event]
        signal = self._hits(TRIGGERED_HIT_DTYPE, hit_dom, hit_channel, raw_ns, batch.tot[mine])

        masks = rng.choice(_MIX_MASKS, n_events, p=_MIX_FRACTIONS)
        order = np.lexsort((signal["time_ns"][triggered_hit], hit_event[triggered_hit]))
        triggered = signal[triggered_hit][order]
        trig_event = hit_event[triggered_hit][order]
        first_trig = np.flatnonzero(np.r_[True, trig_event[1:] != trig_event[:-1]])
        hit_masks = masks[trig_event] & rng.integers(0, 2**63, len(trig_event), dtype=np.uint64)
        hit_masks[first_trig] = 0  # the first hit of an event carries all its bits
        triggered["trigger_mask"] = np.where(hit_masks == 0, masks[trig_event], hit_masks)

        near = (event_of_track[batch.pair_track] >= 0) & (
            batch.pair_distance_m < BACKGROUND_RADIUS_M
        )
        near_event = event_of_track[batch.pair_track[near]]
        near_dom = batch.pair_dom[near]
        background, bg_event = self._background(
            near_event, near_dom, dom_rates_hz, window_start_ns, window_ns
        )
        snapshot = np.concatenate(
            (signal[list(SNAPSHOT_HIT_DTYPE.names)].astype(SNAPSHOT_HIT_DTYPE), background)
        )
        snapshot_event = np.concatenate((hit_event, bg_event))
        order = np.lexsort((snapshot["time_ns"], snapshot_event))
        snapshot = snapshot[order]

        n_triggered = np.bincount(trig_event, minlength=n_events)
        n_snapshot = np.bincount(snapshot_event, minlength=n_events)
        overlays = rng.poisson(n_triggered * OVERLAYS_PER_TRIGGERED_HIT).tolist()
        triggered_parts = np.split(triggered, np.cumsum(n_triggered)[:-1])
        snapshot_parts = np.split(snapshot, np.cumsum(n_snapshot)[:-1])
        # The muon passes its point at true time 0 plus the event's shift; calibrated hit
        # times are true times plus the reference t0 (see sim_calibration).
        track_time_ns = shift_ns + self.calibration.reference_t0_ns
        return [
            SimulatedEvent(
                mask,
                overlay,
                hits,
                snapshot_hits,
                point,
                direction,
                time_ns,
                n_sig,
                KINDS[kind],
                n_mu,
            )
            for mask, overlay, hits, snapshot_hits, point, direction, time_ns, n_sig, kind, n_mu in zip(  # noqa: E501
                masks.tolist(),
                overlays,
                triggered_parts,
                snapshot_parts,
                batch.point_m[tracks],
                batch.direction[tracks],
                track_time_ns.tolist(),
                n_triggered.tolist(),
                batch.kind[tracks].tolist(),
                batch.n_muons[tracks].tolist(),
                strict=True,
            )
        ]

    def _background(
        self,
        event: np.ndarray,
        dom: np.ndarray,
        dom_rates_hz: np.ndarray,
        window_start_ns: np.ndarray,
        window_ns: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """K40 singles on the given (event, DOM) pairs during each event's window: snapshot
        hits and their events."""
        rng = self.rng
        n_background = rng.poisson(dom_rates_hz[dom] * window_ns[event] * 1e-9)
        rows = np.repeat(np.arange(len(dom)), n_background)
        bg_event = event[rows]
        bg_dom = dom[rows]
        bg_ns = window_start_ns[bg_event] + window_ns[bg_event] * rng.random(len(rows))
        bg_channel = rng.integers(0, self.n_pmts[bg_dom])
        hits = self._hits(
            SNAPSHOT_HIT_DTYPE, bg_dom, bg_channel, bg_ns, self._tot(np.ones(len(rows)))
        )
        return hits, bg_event

    def _noise_events(
        self,
        n_events: int,
        alive: np.ndarray,
        dom_rates_hz: np.ndarray,
        time_shift_ns: np.ndarray | None,
    ) -> list[SimulatedEvent]:
        """Events of K40 alone: a two- or threefold coincidence on each of 3-4 DOMs within
        :data:`NOISE_RADIUS_M`, at times light could connect."""
        rng = self.rng
        candidates = np.flatnonzero(alive)
        events = []
        for _ in range(n_events):
            if not len(candidates):
                break
            seed = int(rng.choice(candidates))
            distance_m = np.linalg.norm(self.position_m - self.position_m[seed], axis=1)
            near = np.flatnonzero(alive & (distance_m < NOISE_RADIUS_M))
            near = near[near != seed]
            n_doms = int(rng.integers(NOISE_DOMS[0], NOISE_DOMS[1] + 1))
            if len(near) < n_doms - 1:
                continue
            doms = np.r_[seed, rng.choice(near, n_doms - 1, replace=False)]
            light_ns = distance_m[doms] * GROUP_INDEX / SPEED_OF_LIGHT_M_NS
            dom_ns = rng.uniform(-1, 1, n_doms) * light_ns
            per_dom = np.where(rng.random(n_doms) < 0.2, 3, 2)
            hit_dom = np.repeat(doms, per_dom)
            hit_channel = np.concatenate(
                [
                    rng.choice(self.n_pmts[d], k, replace=False)
                    for d, k in zip(doms, per_dom, strict=True)
                ]
            )
            true_ns = np.repeat(dom_ns, per_dom) + rng.normal(0, JITTER_NS, len(hit_dom))
            tot = self._tot(np.ones(len(hit_dom)))
            raw_ns = (
                true_ns
                + slewing_ns(tot)
                - self.calibration.delay_ns(hit_dom, hit_channel, time_shift_ns)
            )
            window_ns = np.array([np.ptp(raw_ns) + 2 * WINDOW_MARGIN_NS])
            start_ns = rng.uniform(0, FRAME_NS - window_ns)
            shift_ns = float(start_ns[0] + WINDOW_MARGIN_NS - raw_ns.min())
            triggered = self._hits(
                TRIGGERED_HIT_DTYPE, hit_dom, hit_channel, raw_ns + shift_ns, tot
            )
            triggered = triggered[np.argsort(triggered["time_ns"], kind="stable")]
            mask = rng.choice(_MIX_MASKS, p=_MIX_FRACTIONS)
            triggered["trigger_mask"] = mask
            around = np.flatnonzero(alive & (distance_m < BACKGROUND_RADIUS_M))
            background, _ = self._background(
                np.zeros(len(around), int), around, dom_rates_hz, start_ns, window_ns
            )
            snapshot = np.concatenate(
                (triggered[list(SNAPSHOT_HIT_DTYPE.names)].astype(SNAPSHOT_HIT_DTYPE), background)
            )
            snapshot = snapshot[np.argsort(snapshot["time_ns"], kind="stable")]
            events.append(
                SimulatedEvent(
                    int(mask),
                    int(rng.poisson(len(triggered) * OVERLAYS_PER_TRIGGERED_HIT)),
                    triggered,
                    snapshot,
                    self.position_m[seed].copy(),
                    np.full(3, np.nan),
                    shift_ns + self.calibration.reference_t0_ns,
                    0,
                    "k40",
                    0,
                )
            )
        return events

    def _hits(
        self,
        dtype: np.dtype,
        doms: np.ndarray,
        channels: np.ndarray,
        time_ns: np.ndarray,
        tot: np.ndarray,
    ) -> np.ndarray:
        hits = np.zeros(len(doms), dtype)
        hits["dom_id"] = self.dom_ids[doms]
        hits["channel"] = channels
        hits["time_ns"] = np.minimum(np.maximum(np.rint(time_ns), 0), FRAME_NS - 1)
        hits["tot"] = tot
        return hits


def _random_units(rng: np.random.Generator, n: int) -> np.ndarray:
    vectors = rng.standard_normal((n, 3))
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


@dataclass(frozen=True)
class _Batch:
    """A batch of tracks and the hits of their light.

    Per track: point, direction, muons, kind (index into :data:`KINDS`), DOMs with L1s. Per
    pair of a leading muon and a DOM within :data:`MAX_SIGNAL_DISTANCE_M`: track, DOM,
    distance. Per hit (sorted by track, DOM and time): track, DOM, channel, recorded true time
    (slewing included), ToT, and whether it is triggered (an L1, or an L0 in the road).
    """

    point_m: np.ndarray
    direction: np.ndarray
    n_muons: np.ndarray
    kind: np.ndarray
    pair_track: np.ndarray
    pair_dom: np.ndarray
    pair_distance_m: np.ndarray
    hit_track: np.ndarray
    hit_dom: np.ndarray
    hit_channel: np.ndarray
    recorded_ns: np.ndarray
    tot: np.ndarray
    triggered: np.ndarray
    l1_doms: np.ndarray
