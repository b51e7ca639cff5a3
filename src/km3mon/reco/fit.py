"""Reconstruct a batch of events: select hits, fit tracks and lines, collect residuals.

Hits: the calibrated **triggered** hits (the DAQ trigger already applied causality to them);
the snapshot hits only for the per-DOM residuals of DOMs a track fit did not use.
Per DOM the earliest one is its "first hit", and the hits within :attr:`Settings.coincidence_ns`
of it (multi-PMT light of the same muon) are its coincident hits.

- **Multi-DU track fit**, for events with first hits on >= 2 DUs and >= ``min_track_doms`` DOMs: a
  direction scan over a Fibonacci sphere of first hits (Jpp's JMuonPrefit: per direction a linear
  estimate of the remaining parameters), cones around the best directions, then a robust fit of
  the full time model to all coincident hits from the best few distinct directions and, for small
  events, from directions spread over the sphere. A two-DU event is also fitted from the mirror
  image of its best solution (across the vertical plane of the two DUs, which sees both alike);
  the better one is kept.
- **Single-DU fit** (ROy), for every DU with first hits on >= ``min_line_floors`` floors: one
  hit per floor (the DOM's first hit), ROy's four parameters, started from the event's
  track fit and a few zenith angles where there is one, from a grid of zenith angles and
  distances where not. The floors' hit counts (every floor of the DU, the ones without hits
  too) enter the fit beside the times: one time per floor hardly tells how far the track
  passes from how steep it is, the counts' profile along the DU does. They choose only among
  solutions whose times fit about as well as the best's (``line_time_slack``).
  For events without a multi-DU track (nothing better known of them), the likelihood of
  every PMT of the DU (``likelihood``, ``light``) then moves the fit in all five track
  parameters from ``line_likelihood_azimuths`` azimuths around the DU: which PMTs saw light
  how early, and which saw none, separate what one time per floor cannot (KM3NeT MC
  single-DU cuts: 8.5° -> 5.7°; 5.8° with the model fitted on the other half of the events).

The fits use ``calibrate_hits``' times (TDC + t0). The per-DOM residuals of the time-offset
monitor are corrected for ToT slewing (a small pulse crosses the threshold late): the
correction is the mean core residual per ToT bin of all DOMs' first hits, accumulated over
the batches, so a DOM whose pulses are smaller or larger does not read as an offset. The
single-DU residual CSV stays uncorrected, comparable with the original's.

Quality ``Q`` = chi²/NDF with chi² the fit's robust sum (Cauchy of the residuals in units of
``sigma_ns``, late ones in units of 3 sigma; see ``kernels._time_loss``) and NDF = hits -
parameters: about 1 for a track that fits its hits within the timing resolution, large for a bad
fit; empty for NDF 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from km3mon.daq.event import HITS_DTYPE
from km3mon.detector import Detector, calibrate_hits
from km3mon.reco import kernels
from km3mon.reco.light import km3net_mc_tables
from km3mon.reco.likelihood import TrackLikelihood
from km3mon.reco.model import (
    KAPPA,
    SPEED_OF_LIGHT_M_NS,
    fibonacci_sphere,
    line_parameters,
    track_time_ns,
)

#: One row per multi-DU fit. ``event``: row in the batch; position/time at the track's point
#: closest to its hits; ``mirror_cost`` (2 DUs): how much worse the mirror solution is (time
#: cost plus PMT-facing cost); ``ambiguous``: too little for a choice, the azimuth is not
#: measured (only zenith and dir_z are).
TRACK_DTYPE = np.dtype(
    [
        ("event", "<i8"),
        ("dir", "<f8", 3),
        ("pos_m", "<f8", 3),
        ("t_ns", "<f8"),
        ("cost", "<f8"),
        ("mirror_cost", "<f8"),
        ("quality", "<f8"),
        ("n_hits", "<i4"),
        ("n_doms", "<i4"),
        ("n_dus", "<i4"),
        ("ambiguous", "?"),
    ]
)
#: One row per single-DU fit: ROy's parameters (cos θ of the direction of travel).
LINE_DTYPE = np.dtype(
    [
        ("event", "<i8"),
        ("du", "<i4"),
        ("d_c_m", "<f8"),
        ("z_c_m", "<f8"),
        ("cos_theta", "<f8"),
        ("t_c_ns", "<f8"),
        ("quality", "<f8"),
        ("n_hits", "<i4"),
    ]
)
#: Per hit of a single-DU fit: which fit (row of the lines table), where, residual (ns).
LINE_RESIDUAL_DTYPE = np.dtype(
    [("fit", "<i8"), ("dom", "<i8"), ("du", "<i4"), ("floor", "<i4"), ("t_res_ns", "<f8")]
)
#: Per DOM of a multi-DU fit, for the per-DOM time-offset monitor: its first hit's residual
#: (ToT slewing corrected) against the track refitted without the DOM, or, for a DOM the fit
#: did not use, its first snapshot hit within the road against the track.
DOM_RESIDUAL_DTYPE = np.dtype([("fit", "<i8"), ("dom", "<i8"), ("t_res_ns", "<f8")])
#: ToT bins (ns) of the slewing correction estimated from the data.
SLEWING_TOT_EDGES = np.array([0, 8, 12, 16, 20, 24, 28, 32, 40, 50, 70, 100, 256])
#: Single-DU fits of an event without a track start at every zenith angle and distance of
#: this grid: with one time per floor the time cost is nearly flat along d_c against
#: zenith and has several minima; five zenith starts at 15 m missed the true one often (on
#: KM3NeT MC). With a track, it and five zenith angles suffice.
LINE_START_ZENITHS_DEG = np.arange(10.0, 171.0, 10.0)
LINE_START_DISTANCES_M = (8.0, 30.0)
TRACK_LINE_START_ZENITHS_DEG = (150.0, 120.0, 90.0, 60.0, 30.0)
#: Residuals (ns) used for the slewing estimate: the direct-light core.
SLEWING_WINDOW_NS = 10.0


@dataclass(frozen=True)
class Settings:
    """Fit parameters; the defaults are what ``bench/reco_resolution.py`` validated."""

    coincidence_ns: float = 20.0
    min_track_doms: int = 4
    min_line_floors: int = 4
    coarse_directions: int = 300  # ~12° apart
    cone_deg: float = 4.0
    n_best: int = 8
    n_starts: int = 3
    start_separation_deg: float = 6.0
    #: Events with at most ``spread_max_doms`` DOMs are also fitted from ``spread_starts``
    #: directions spread over the sphere (``spread_iterations`` each; continued where the
    #: cost comes within ``spread_slack`` of the best): the scan's ranking misses the true
    #: basin of many small events (on KM3NeT MC 4.9° -> 3.5° at >= 3 DUs, alike up to 10 or
    #: 12 DOMs). Large events are ranked well and dominate the CPU at 230 DUs.
    spread_starts: int = 24
    spread_max_doms: int = 10
    spread_iterations: int = 4
    spread_slack: float = 20.0
    sigma_coarse_ns: float = 30.0
    sigma_fine_ns: float = 10.0
    sigma_ns: float = 3.0
    #: Optional prior: distance (m) at which a DOM sees one coincident hit, a DOM with k
    #: hits taken as about this / k from the track within a factor exp(sigma_ln_distance).
    #: Off (None) by default: on real data it depends on energy, bundles, showers and the
    #: detector's spacing (ORCA and ARCA differ by 4x); 75 m suited only our simulator.
    distance_per_hit_m: float | None = None
    sigma_ln_distance: float = 0.5
    #: Weight of the PMT-facing cost (-2 ln acceptance of each hit's PMT for the track's
    #: direct light) when choosing between candidate solutions, and the difference of the
    #: two mirror solutions' costs below which a 2-DU fit is ``ambiguous``.
    facing_weight: float = 3.0
    ambiguity_margin: float = 4.0
    #: Weight of the hit-multiplicity cost (``kernels._multiplicity_cost``: each DOM's share
    #: of the hits against its share of the track's direct light, no absolute light yield)
    #: in that choice. On KM3NeT MC, 3-4-DU events: 43 -> 46 % within 10°.
    multiplicity_weight: float = 0.5
    #: Single-DU fits (``kernels.fit_lines``): every start is fitted on the times for
    #: ``line_start_iterations``; the ``line_refined`` lowest in time +
    #: ``multiplicity_weight`` x the floors' hit-count cost go on to convergence, and the
    #: ``line_joint`` lowest of those are fitted on times and counts together. Among all of
    #: these, the counts choose only between solutions whose time cost is within
    #: ``line_time_slack`` of the lowest (on KM3NeT MC single-DU cuts: 10.8° -> 8.5°).
    line_start_iterations: int = 6
    line_refined: int = 6
    line_joint: int = 1
    line_time_slack: float = 2.0
    #: Azimuths (each with the track on either side of the DU) from which the PMT likelihood
    #: refines the single-DU fits of events without a multi-DU track; 0: off. On KM3NeT MC
    #: 4 / 6 / 8 / 12 / 16 give medians of 5.6 / 5.7 / 4.7 / 5.3 / 4.9° (62-66 % within
    #: 10°), at a CPU cost linear in the number: 6, half of 12's.
    line_likelihood_azimuths: int = 6
    #: Events on 3 to ``alternative_max_dus`` DUs are also fitted on their times alone from
    #: ``alternative_starts`` directions spread over the sphere (``alternative_iterations``
    #: each; ``kernels._time_alternative``). Where such a fit more than
    #: ``alternative_separation_deg`` from the track has a time cost below the track's +
    #: ``alternative_time_slack``, the times alone do not rule it out, and the PMT likelihood
    #: chooses between the two after ``alternative_evaluations`` Nelder-Mead evaluations of
    #: each. On KM3NeT MC (>= 3 DUs): 3.45° -> 3.26°, within 10° 59 -> 65 % (8 events in,
    #: none out; with no slack 6 in). Few-DU events are where distinct time minima occur:
    #: at ARCA-230 (simulated) the events on >= 7 DUs are 65 % of those fitted, 0.3 % of
    #: them are > 10° off, and their search would cost +0.15 cores. 0 starts: off.
    alternative_starts: int = 8
    alternative_iterations: int = 10
    alternative_separation_deg: float = 2.0
    alternative_time_slack: float = 5.0
    alternative_evaluations: int = 30
    alternative_max_dus: int = 6
    max_iterations: int = 40
    #: Leave-one-DOM-out residuals for events with at least this many DOMs (the refit
    #: without one DOM must still be well determined).
    min_loo_doms: int = 6
    #: Iterations of each leave-one-DOM-out refit (started at the full fit, one DOM less
    #: moves it little; 40% of the CPU at 230 DUs when run to convergence).
    loo_iterations: int = 3
    #: Bounds on the work one event can cause (a hostile or very bright one): DOMs the
    #: direction scan uses (the brightest), and DOMs up to which each is left out in turn.
    max_scan_doms: int = 60
    max_loo_doms: int = 80
    #: Per-DOM residuals also from the snapshot (L0) hits of DOMs the fit did not use:
    #: each such DOM within this distance of the track gives its first hit in the window
    #: (ns around the track's time; wide, so a DOM tens of ns off is still seen).
    road_m: float = 60.0
    road_window_ns: tuple[float, float] = (-40.0, 60.0)
    #: The track refit adds those DOMs' first hits within this window (None: no refit).
    refit_window_ns: tuple[float, float] | None = (-10.0, 25.0)
    refit_passes: int = 2


def cone_offsets(radius_deg: float) -> np.ndarray:
    """(α, β) offsets in radians of a cone around a direction: rings at 1/3, 2/3 and 1 of
    the radius with 6, 12 and 18 points."""
    offsets = [(0.0, 0.0)]
    for ring, count in ((1, 6), (2, 12), (3, 18)):
        radius = np.radians(radius_deg) * ring / 3
        angles = 2 * np.pi * (np.arange(count) + 0.5 * (ring % 2)) / count
        offsets += list(zip(radius * np.cos(angles), radius * np.sin(angles), strict=True))
    return np.array(offsets)


#: Why events (multi-DU) and DUs (single-DU) were not fitted: ``BatchResult.unfitted``.
UNFITTED_REASONS = ("multi_du_too_few_doms", "multi_du_no_fit", "multi_du_ambiguous_azimuth",
                    "single_du_too_few_floors", "single_du_no_fit")  # fmt: skip


@dataclass
class RoadCandidates:
    """Snapshot hits a track's road may add (``Reconstruction._road_candidates``): their
    rows in ``snapshot``, fit row and DOM index of each, (x, y, z, t) as one array; groups
    of one fit and DOM start at ``group_offsets``."""

    snapshot: np.ndarray
    rows: np.ndarray
    fit: np.ndarray
    dom: np.ndarray
    values: np.ndarray
    group_offsets: np.ndarray


@dataclass
class BatchResult:
    """What one batch gave: tracks and lines (rows point into the batch's events), and the
    residual tables."""

    tracks: np.ndarray
    lines: np.ndarray
    line_residuals: np.ndarray
    dom_residuals: np.ndarray
    #: Per event of the batch: distinct DOMs, DUs and hits among the calibrated triggered hits.
    n_doms: np.ndarray
    n_dus: np.ndarray
    n_hits: np.ndarray
    #: Per event: was a track fit tried (enough DOMs on >= 2 DUs)?
    track_tried: np.ndarray
    #: Events (multi-DU) and DUs (single-DU) not fitted, by reason; ambiguous 2-DU fits.
    unfitted: dict[str, int]
    #: Tracks the PMT likelihood took from the fits on the times alone (``_choose``).
    chosen_by_likelihood: int = 0


class Reconstruction:
    """Fits batches of events of one detector."""

    def __init__(self, detector: Detector, settings: Settings | None = None) -> None:
        self.detector = detector
        self.settings = settings or Settings()
        s = self.settings
        self.directions = fibonacci_sphere(s.coarse_directions)
        self.spread_starts = fibonacci_sphere(s.spread_starts)
        self.alternative_starts = (fibonacci_sphere(s.alternative_starts)
                                   if s.alternative_starts else np.zeros((0, 3)))  # fmt: skip
        self.cone = cone_offsets(s.cone_deg)
        n_bins = len(SLEWING_TOT_EDGES) - 1
        self.slewing_sum = np.zeros(n_bins)
        self.slewing_count = np.zeros(n_bins)
        dus, du_of_dom = np.unique(detector.dom_du, return_inverse=True)
        self.du_numbers = dus
        self.du_xy_m = (
            np.column_stack([np.bincount(du_of_dom, detector.dom_pos_m[:, k]) for k in range(2)])
            / np.bincount(du_of_dom)[:, None]
        )

    @cached_property
    def _pmt_likelihood(self) -> TrackLikelihood:
        """Built on first use (0.2 s; ``warm_up`` uses it): lines without a track, and
        tracks with a rival on the times alone, are rare."""
        return TrackLikelihood(self.detector, km3net_mc_tables())

    @cached_property
    def _du_doms(self) -> dict[int, np.ndarray]:
        """The optical DOMs (indices) of each DU: what a single-DU likelihood looks at."""
        d = self.detector
        optical = np.flatnonzero(d.n_pmts > 1)
        return {int(du): optical[d.dom_du[optical] == du] for du in np.unique(d.dom_du[optical])}

    def du_axis(self, du: np.ndarray) -> np.ndarray:
        """(x, y) of DU axes (mean DOM position), (n, 2)."""
        return self.du_xy_m[np.searchsorted(self.du_numbers, du)]

    def warm_up(self) -> BatchResult:
        """Fit two made-up events (6 floors of one DU and 3 of another; the 6 alone), so
        that the kernels are compiled, or loaded from numba's cache, and the PMT likelihood's
        tables built before the first real batch."""
        d = self.detector
        optical = np.flatnonzero(d.n_pmts > 1)
        dus = np.unique(d.dom_du[optical])
        doms = np.concatenate(
            [optical[d.dom_du[optical] == du][: 6 - 3 * k] for k, du in enumerate(dus[:2])]
        )
        rows = np.repeat(d.pmt_offset[doms], 2) + np.tile([0, 1], len(doms))
        centre = d.dom_pos_m[doms].mean(axis=0)
        direction = np.array([0.3, 0.2, -0.93]) / np.linalg.norm([0.3, 0.2, -0.93])
        true_ns = track_time_ns(
            d.pmt_pos_m[rows], centre + np.array([15.0, 5.0, 0.0]), direction, 0.0
        )
        hits = np.zeros(len(rows), HITS_DTYPE)
        hits["dom_id"] = d.dom_ids[d.pmt_dom_index[rows]]
        hits["channel"] = d.pmt_channel[rows]
        hits["time_ns"] = np.rint(true_ns - d.pmt_t0_ns[rows] + 2e6)
        hits["tot"] = 26
        hits["triggered"] = True
        # and the first DU's hits alone: a line without a track, for the PMT likelihood
        alone = hits[: 2 * min(6, len(doms))].copy()
        alone["event"] = 1
        return self.run(2, calibrate_hits(d, np.concatenate((hits, alone))))

    def run(self, n_events: int, hits: np.ndarray) -> BatchResult:
        """Fit the events of a batch from their calibrated hits (``calibrate_hits`` output
        with ``event``, ``triggered``, ``calibrated`` and ``tot``; snapshot hits too)."""
        s = self.settings
        snapshot = hits[hits["calibrated"]]
        hits = snapshot[snapshot["triggered"]]
        if not len(hits):  # e.g. no DOM of the batch in the detector file
            return self._nothing(n_events)
        dom = self.detector.dom_index(hits["dom_id"])
        order = np.lexsort((hits["time_ns"], dom, hits["event"]))
        hits, dom = hits[order], dom[order]
        event = hits["event"].astype(np.int64)
        first = np.r_[True, (event[1:] != event[:-1]) | (dom[1:] != dom[:-1])]
        group = np.cumsum(first) - 1
        first_time = hits["time_ns"][first][group]
        keep = hits["time_ns"] - first_time <= s.coincidence_ns
        multiplicity = np.bincount(group[keep], minlength=group[-1] + 1 if len(group) else 0)
        if s.distance_per_hit_m is None:
            ln_distance = np.full(len(hits), np.nan)
        else:
            ln_distance = np.where(
                first, np.log(s.distance_per_hit_m / np.maximum(multiplicity[group], 1)), np.nan
            )
        n_hits = np.bincount(event, minlength=n_events)
        n_doms = np.bincount(event[first], minlength=n_events)
        du = hits["du"].astype(np.int64)
        event_du = np.unique(event[first] * 100_000 + du[first])
        n_dus = np.bincount(event_du // 100_000, minlength=n_events)

        hits, dom, event, first = hits[keep], dom[keep], event[keep], first[keep]
        du, ln_distance = du[keep], ln_distance[keep]
        tried = (n_dus >= 2) & (n_doms >= s.min_track_doms)
        tracks, dom_residuals, chosen = self._tracks(
            hits, dom, event, first, du, ln_distance, tried, n_doms, n_dus, snapshot
        )
        road = self._road_candidates(snapshot, tracks)
        for _ in range(s.refit_passes if s.refit_window_ns is not None else 0):
            self._road_refit(road, tracks, hits[tried[event]], event[tried[event]])
        dom_residuals = np.concatenate((dom_residuals, self._road(road, tracks)))
        lines, line_residuals, line_unfitted = self._lines(
            hits, dom, event, first, tracks, snapshot
        )
        fitted = np.zeros(n_events, bool)
        fitted[tracks["event"]] = True
        unfitted = {
            "multi_du_too_few_doms": int(((n_dus >= 2) & ~tried).sum()),
            "multi_du_no_fit": int((tried & ~fitted).sum()),
            "multi_du_ambiguous_azimuth": int(tracks["ambiguous"].sum()),
            **line_unfitted,
        }
        return BatchResult(
            tracks, lines, line_residuals, dom_residuals, n_doms, n_dus, n_hits, tried, unfitted,
            chosen,
        )  # fmt: skip

    @staticmethod
    def _nothing(n_events: int) -> BatchResult:
        """The result of a batch without calibrated triggered hits: nothing tried."""
        none = np.zeros(n_events, np.int64)
        unfitted = dict.fromkeys(UNFITTED_REASONS, 0)
        return BatchResult(
            np.zeros(0, TRACK_DTYPE), np.zeros(0, LINE_DTYPE), np.zeros(0, LINE_RESIDUAL_DTYPE),
            np.zeros(0, DOM_RESIDUAL_DTYPE), none, none.copy(), none.copy(),
            np.zeros(n_events, bool), unfitted,
        )  # fmt: skip

    def _tracks(self, hits, dom, event, first, du, ln_distance, tried, n_doms, n_dus, snapshot):
        s = self.settings
        use = tried[event]
        hits, dom, event, first, du = hits[use], dom[use], event[use], first[use], du[use]
        ln_distance = ln_distance[use]
        events = np.flatnonzero(tried)
        n = len(events)
        counts = np.bincount(np.searchsorted(events, event), minlength=n)
        offsets = np.r_[0, np.cumsum(counts)]
        pos = np.column_stack((hits["pos_x_m"], hits["pos_y_m"], hits["pos_z_m"]))
        pmt_dir = np.column_stack((hits["dir_x"], hits["dir_y"], hits["dir_z"]))
        times = np.ascontiguousarray(hits["time_ns"], dtype=np.float64)
        mirror = np.full((n, 4), np.nan)
        two = np.flatnonzero(n_dus[events] == 2)
        if len(two):
            mirror[two, :2] = self.du_axis(np.minimum.reduceat(du, offsets[:-1])[two])
            mirror[two, 2:] = self.du_axis(np.maximum.reduceat(du, offsets[:-1])[two])
        out_dir = np.full((n, 3), np.nan)
        out_pos = np.full((n, 3), np.nan)
        out_t = np.full(n, np.nan)
        out_cost = np.full(n, np.nan)
        out_mirror = np.full(n, np.nan)
        out_iterations = np.zeros(n, np.int64)
        residual = np.full(len(hits), np.nan)
        loo = np.full(len(hits), np.nan)
        alt_dir = np.full((n, 3), np.nan)
        alt_pos = np.full((n, 3), np.nan)
        alt_t = np.full(n, np.nan)
        alt_cost = np.full(n, np.nan)
        kernels.fit_tracks(
            pos, pmt_dir, times, ln_distance, first, self._brightest(first, event, ln_distance),
            offsets,
            mirror, self.directions, self.cone, s.n_best,
            s.n_starts, float(np.cos(np.radians(s.start_separation_deg))), s.sigma_coarse_ns,
            s.sigma_fine_ns, s.sigma_ns, s.sigma_ln_distance, s.max_iterations, out_dir, out_pos,
            out_t, out_cost, out_mirror, out_iterations, s.min_loo_doms, s.max_loo_doms,
            s.facing_weight, residual, loo, self.spread_starts, s.spread_max_doms,
            s.spread_iterations, s.spread_slack, s.loo_iterations, s.multiplicity_weight,
            self.alternative_starts, s.alternative_iterations,
            float(np.cos(np.radians(s.alternative_separation_deg))), alt_dir, alt_pos, alt_t,
            alt_cost, (n_dus[events] >= 3) & (n_dus[events] <= s.alternative_max_dus),
            s.alternative_time_slack,
        )  # fmt: skip
        ok = np.isfinite(out_cost)
        tracks = np.zeros(int(ok.sum()), TRACK_DTYPE)
        tracks["event"] = events[ok]
        tracks["dir"] = out_dir[ok]
        tracks["pos_m"] = out_pos[ok]
        tracks["t_ns"] = out_t[ok]
        tracks["cost"] = out_cost[ok]
        tracks["mirror_cost"] = out_mirror[ok]
        tracks["n_hits"] = counts[ok]
        tracks["n_doms"] = n_doms[events[ok]]
        tracks["n_dus"] = n_dus[events[ok]]
        tracks["ambiguous"] = out_mirror[ok] < s.ambiguity_margin  # NaN (not 2 DUs): False
        # a DOM's coincident hits are one time measurement: degrees of freedom count DOMs
        # (the mean cost per hit times DOMs over DOMs - parameters)
        fit_doms = np.bincount(np.searchsorted(events, event[first]), minlength=n)[ok]
        ndf = fit_doms - kernels.N_TRACK

        def quality(cost: np.ndarray) -> np.ndarray:
            with np.errstate(divide="ignore", invalid="ignore"):
                return np.where(ndf > 0, cost / counts[ok] * fit_doms / ndf, np.nan)

        tracks["quality"] = quality(out_cost[ok])
        # the tracks whose fits on the times alone found a rival, and the rivals as tracks
        rows = np.flatnonzero(np.isfinite(alt_cost[ok]))
        rivals = tracks[rows]
        found = np.flatnonzero(ok)[rows]
        rivals["dir"] = alt_dir[found]
        rivals["pos_m"] = alt_pos[found]
        rivals["t_ns"] = alt_t[found]
        rivals["cost"] = alt_cost[found]
        rivals["quality"] = quality(alt_cost[ok])[rows]
        replaced = np.zeros(n, bool)
        replaced[found] = self._choose(tracks, rows, rivals, snapshot)

        fit_of_hit = np.repeat(np.cumsum(ok) - 1, counts)
        # residuals against a track the choice replaced measure nothing
        kept = ~np.repeat(replaced, counts)
        core = kept & first & np.isfinite(residual) & (np.abs(residual) < SLEWING_WINDOW_NS)
        self._learn_slewing(hits["tot"][core], residual[core])
        rows = np.flatnonzero(kept & np.isfinite(loo))
        dom_residuals = np.zeros(len(rows), DOM_RESIDUAL_DTYPE)
        dom_residuals["fit"] = fit_of_hit[rows]
        dom_residuals["dom"] = dom[rows]
        dom_residuals["t_res_ns"] = loo[rows] - self.slewing_ns(hits["tot"][rows])
        return tracks, dom_residuals, int(replaced.sum())

    def _choose(self, tracks: np.ndarray, rows: np.ndarray, rivals: np.ndarray,
                snapshot: np.ndarray) -> np.ndarray:  # fmt: skip
        """Let the PMT likelihood choose between each track of ``rows`` and its rival: both
        refined briefly, the rival replaces the track (in place) if its optimum is the more
        likely. Returns which rivals did."""
        if not len(rows):
            return np.zeros(0, bool)
        both = np.concatenate((tracks[rows], rivals))
        mine = snapshot[np.isin(snapshot["event"], rivals["event"])]
        value = self._pmt_likelihood.refine(
            both, mine, max_evaluations=self.settings.alternative_evaluations
        )[:, 1]
        value = np.where(np.isfinite(value), value, np.inf)
        better = value[len(rows) :] < value[: len(rows)]
        tracks[rows[better]] = both[len(rows) :][better]
        return better

    def _learn_slewing(self, tot: np.ndarray, residual: np.ndarray) -> None:
        bins = np.clip(np.searchsorted(SLEWING_TOT_EDGES, tot, side="right") - 1, 0,
                       len(self.slewing_sum) - 1)  # fmt: skip
        self.slewing_sum += np.bincount(bins, residual, len(self.slewing_sum))
        self.slewing_count += np.bincount(bins, minlength=len(self.slewing_sum))

    def slewing_ns(self, tot: np.ndarray) -> np.ndarray:
        """The ToT slewing correction (ns, subtract from a residual): per ToT bin the mean
        core residual of first hits so far, relative to the mean of all (0 until a bin has
        100 hits)."""
        total = self.slewing_count.sum()
        if not total:
            return np.zeros(len(tot))
        overall = self.slewing_sum.sum() / total
        with np.errstate(divide="ignore", invalid="ignore"):
            curve = np.where(self.slewing_count >= 100,
                             self.slewing_sum / self.slewing_count - overall, 0.0)  # fmt: skip
        bins = np.clip(np.searchsorted(SLEWING_TOT_EDGES, tot, side="right") - 1, 0,
                       len(curve) - 1)  # fmt: skip
        return curve[bins]

    def _road_candidates(self, snapshot: np.ndarray, tracks: np.ndarray) -> RoadCandidates:
        """The snapshot hits any road of the tracks may take: those of fitted events on DOMs
        without triggered hits in the event (those were in the fit: they have leave-one-out
        residuals), sorted by fit and DOM. Found once per batch; the refit passes and the
        residuals only measure them against the moved tracks. Row numbers are sorted, not
        the hits themselves (88-byte records: moving them cost most of the time)."""
        none = np.zeros(0, np.int64)
        empty = RoadCandidates(snapshot, none, none, none, np.zeros((0, 4)), np.zeros(1, np.int64))
        if not len(tracks) or not len(snapshot):
            return empty
        fit_of_event = np.full(int(snapshot["event"].max()) + 1, -1)
        known = tracks["event"] < len(fit_of_event)
        fit_of_event[tracks["event"][known]] = np.flatnonzero(known)
        fit = fit_of_event[snapshot["event"]]
        rows = np.flatnonzero(fit >= 0)
        if not len(rows):
            return empty
        fit = fit[rows]
        dom = self.detector.dom_index(snapshot["dom_id"][rows]).astype(np.int64)
        order = np.argsort(fit * (len(self.detector.dom_ids) + 1) + dom + 1, kind="stable")
        rows, fit, dom = rows[order], fit[order], dom[order]
        new_group = np.r_[True, (fit[1:] != fit[:-1]) | (dom[1:] != dom[:-1])]
        group = np.cumsum(new_group) - 1
        triggered = snapshot["triggered"][rows]
        free = ~np.logical_or.reduceat(triggered, np.flatnonzero(new_group))[group]
        rows, fit, dom, new_group = rows[free], fit[free], dom[free], new_group[free]
        columns = ("pos_x_m", "pos_y_m", "pos_z_m", "time_ns")
        values = np.column_stack([snapshot[c][rows].astype(np.float64) for c in columns])
        offsets = np.r_[np.flatnonzero(new_group), len(fit)].astype(np.int64)
        return RoadCandidates(snapshot, rows, fit, dom, values, offsets)

    def _road_hits(self, road: RoadCandidates, tracks: np.ndarray, window_ns: tuple):
        """The first hit (lowest residual) of each DOM of ``road`` within ``road_m`` of its
        track and ``window_ns`` of its time: (indices into ``road``, residuals), sorted by
        fit and DOM."""
        chosen = np.full(len(road.group_offsets) - 1, -1, np.int64)
        residual = np.zeros(len(chosen))
        kernels.road_first_hits(
            road.values, road.fit, road.group_offsets,
            np.ascontiguousarray(tracks["dir"]), np.ascontiguousarray(tracks["pos_m"]),
            np.ascontiguousarray(tracks["t_ns"]), self.settings.road_m, float(window_ns[0]),
            float(window_ns[1]), chosen, residual,
        )  # fmt: skip
        found = chosen >= 0
        return chosen[found], residual[found]

    def _road(self, road: RoadCandidates, tracks: np.ndarray) -> np.ndarray:
        """Residuals of the DOMs within the road of each track that the fit did not use,
        slewing corrected: the DOMs whose hits the trigger left out -- a DOM far off in time
        among them."""
        chosen, residual = self._road_hits(road, tracks, self.settings.road_window_ns)
        out = np.zeros(len(chosen), DOM_RESIDUAL_DTYPE)
        out["fit"] = road.fit[chosen]
        out["dom"] = road.dom[chosen]
        out["t_res_ns"] = residual - self.slewing_ns(road.snapshot["tot"][road.rows[chosen]])
        return out

    def _road_refit(self, road: RoadCandidates, tracks: np.ndarray, fit_hits: np.ndarray,
                    fit_event: np.ndarray) -> None:  # fmt: skip
        """Refit each track from its triggered hits plus the first snapshot hit of every
        other DOM in its road and in time with it (as Jpp's fits use L0 hits in a road):
        DOMs the trigger did not take add time measurements. Tracks updated in place."""
        s = self.settings
        extra, _ = self._road_hits(road, tracks, s.refit_window_ns)
        fit_of_event = np.full(int(max(fit_event.max(initial=0), 0)) + 1, -1)
        fit_of_event[tracks["event"]] = np.arange(len(tracks))
        own_fit = fit_of_event[fit_event] if len(fit_event) else np.zeros(0, np.int64)
        mine = own_fit >= 0
        fit = np.concatenate((own_fit[mine], road.fit[extra]))
        columns = ("pos_x_m", "pos_y_m", "pos_z_m", "time_ns")
        own = np.column_stack([fit_hits[c][mine].astype(np.float64) for c in columns])
        values = np.concatenate((own, road.values[extra]))
        order = np.argsort(fit, kind="stable")
        fit, values = fit[order], values[order]
        counts = np.bincount(fit, minlength=len(tracks))
        offsets = np.r_[0, np.cumsum(counts)]
        direction = tracks["dir"].copy()
        point = tracks["pos_m"].copy()
        time_ns = tracks["t_ns"].copy()
        cost = np.full(len(tracks), np.nan)
        kernels.refit_tracks(
            np.ascontiguousarray(values[:, :3]), values[:, 3].copy(), offsets, s.sigma_ns,
            s.max_iterations, direction, point, time_ns, cost,
        )  # fmt: skip
        done = np.isfinite(cost)
        tracks["dir"][done] = direction[done]
        tracks["pos_m"][done] = point[done]
        tracks["t_ns"][done] = time_ns[done]

    def _brightest(self, first: np.ndarray, event: np.ndarray, ln_distance: np.ndarray):
        """First hits of at most ``max_scan_doms`` DOMs per event, those with most hits."""
        rows = np.flatnonzero(first)
        order = rows[np.lexsort((ln_distance[rows], event[rows]))]  # brightest first
        starts = np.r_[0, np.flatnonzero(np.diff(event[order])) + 1]
        rank = np.arange(len(order)) - np.repeat(starts, np.diff(np.r_[starts, len(order)]))
        scan = np.zeros(len(first), bool)
        scan[order[rank < self.settings.max_scan_doms]] = True
        return scan

    def _lines(self, hits, dom, event, first, tracks, snapshot):
        s = self.settings
        # a DOM's coincident hits (as the trigger gave them) for the hit-count term
        count = np.diff(np.r_[np.flatnonzero(first), len(first)]).astype(np.float64)
        hits, dom, event = hits[first], dom[first], event[first]
        du = hits["du"].astype(np.int64)
        key = event * 100_000 + du
        # first hits are sorted by event, then DOM (so DU, then floor)
        start = np.r_[True, key[1:] != key[:-1]]
        group = np.cumsum(start) - 1
        size = np.bincount(group)
        short = (size > 1) & (size < s.min_line_floors)
        use = size[group] >= s.min_line_floors
        hits, dom, event, du, group = hits[use], dom[use], event[use], du[use], group[use]
        count = count[use]
        groups, group = np.unique(group, return_inverse=True)
        n = len(groups)
        counts = np.bincount(group, minlength=n)
        offsets = np.r_[0, np.cumsum(counts)]
        z = np.ascontiguousarray(hits["pos_z_m"], dtype=np.float64)
        times = np.ascontiguousarray(hits["time_ns"], dtype=np.float64)
        fit_event = event[offsets[:-1]] if n else np.zeros(0, np.int64)
        fit_du = du[offsets[:-1]] if n else np.zeros(0, np.int64)
        floor_z, floor_offsets = self._floor_heights(fit_du)
        floor_k = self._floor_counts(dom, group, count, floor_offsets)
        starts = self._line_starts(z, times, offsets, fit_event, fit_du, tracks)
        out_q = np.full((n, 4), np.nan)
        out_cost = np.full(n, np.nan)
        residual = np.full(len(hits), np.nan)
        kernels.fit_lines(z, times, offsets, floor_z, floor_k, floor_offsets, starts,
                          s.sigma_ns, s.max_iterations, s.line_start_iterations,
                          s.multiplicity_weight, s.line_refined, s.line_joint, s.line_time_slack,
                          out_q, out_cost, residual)  # fmt: skip
        if s.refit_window_ns is not None and n:
            hits, dom, group, count = self._line_road(snapshot, hits, dom, group, count,
                                                      fit_event, fit_du, out_q)  # fmt: skip
            du = hits["du"].astype(np.int64)
            counts = np.bincount(group, minlength=n)
            offsets = np.r_[0, np.cumsum(counts)]
            z = np.ascontiguousarray(hits["pos_z_m"], dtype=np.float64)
            times = np.ascontiguousarray(hits["time_ns"], dtype=np.float64)
            floor_k = self._floor_counts(dom, group, count, floor_offsets)
            starts = out_q[:, None, :].copy()
            out_q = np.full((n, 4), np.nan)
            out_cost = np.full(n, np.nan)
            residual = np.full(len(hits), np.nan)
            kernels.fit_lines(z, times, offsets, floor_z, floor_k, floor_offsets, starts,
                              s.sigma_ns, s.max_iterations, s.line_start_iterations,
                              s.multiplicity_weight, s.line_refined, s.line_joint,
                              s.line_time_slack, out_q, out_cost, residual)  # fmt: skip
        if s.line_likelihood_azimuths and n:
            self._refine_lines(out_q, out_cost, residual, z, times, offsets, fit_event, fit_du,
                               tracks, snapshot)  # fmt: skip
        ok = np.isfinite(out_cost)
        lines = np.zeros(int(ok.sum()), LINE_DTYPE)
        lines["event"] = fit_event[ok]
        lines["du"] = fit_du[ok]
        lines["d_c_m"] = out_q[ok, 0]
        lines["z_c_m"] = out_q[ok, 1]
        lines["cos_theta"] = np.cos(out_q[ok, 2])
        lines["t_c_ns"] = out_q[ok, 3]
        lines["n_hits"] = counts[ok]
        ndf = counts[ok] - kernels.N_LINE
        with np.errstate(divide="ignore", invalid="ignore"):
            lines["quality"] = np.where(ndf > 0, out_cost[ok] / ndf, np.nan)
        fitted = ok[group]
        residuals = np.zeros(int(fitted.sum()), LINE_RESIDUAL_DTYPE)
        residuals["fit"] = (np.cumsum(ok) - 1)[group[fitted]]
        residuals["dom"] = dom[fitted]
        residuals["du"] = du[fitted]
        residuals["floor"] = hits["floor"][fitted]
        residuals["t_res_ns"] = residual[fitted]
        unfitted = {"single_du_too_few_floors": int(short.sum()),
                    "single_du_no_fit": int((~ok).sum())}  # fmt: skip
        return lines, residuals, unfitted

    def _refine_lines(self, q, cost, residual, z, times, offsets, fit_event, fit_du, tracks,
                      snapshot) -> None:  # fmt: skip
        """Give each line fit of an event without a multi-DU track the zenith of the best of
        the PMT likelihood's optima from azimuths around its DU; its distance, height and
        time are then fitted on its hits' times again, so that its ``cost`` (Q) and hits'
        ``residual`` mean what every line's do (``q``: d_c, z_c, θ, t_c per fit; in place)."""
        todo = np.flatnonzero(np.isfinite(cost) & ~np.isin(fit_event, tracks["event"]))
        if not len(todo):
            return
        k = self.settings.line_likelihood_azimuths
        line = np.repeat(todo, 2 * k)
        phi = np.tile(np.repeat(np.linspace(0.0, 2 * np.pi, k, endpoint=False), 2), len(todo))
        side = np.tile([1.0, -1.0], k * len(todo))
        theta = q[line, 2]
        across = np.column_stack((-np.sin(phi), np.cos(phi), np.zeros(len(line))))
        starts = np.zeros(len(line), TRACK_DTYPE)
        starts["event"] = fit_event[line]
        starts["dir"] = np.column_stack((np.sin(theta) * np.cos(phi),
                                         np.sin(theta) * np.sin(phi), np.cos(theta)))  # fmt: skip
        starts["pos_m"] = (np.column_stack((self.du_axis(fit_du[line]), q[line, 1]))
                           + (side * q[line, 0])[:, None] * across)  # fmt: skip
        starts["t_ns"] = q[line, 3]
        doms = [self._du_doms[int(du)] for du in fit_du[line]]
        sizes = np.fromiter(map(len, doms), np.int64, len(doms))
        mine = snapshot[np.isin(snapshot["event"], fit_event[todo])]  # not the whole batch's
        value = self._pmt_likelihood.refine(
            starts, mine, doms=(np.concatenate(doms), np.r_[0, np.cumsum(sizes)])
        )[:, 1].reshape(len(todo), 2 * k)
        value = np.where(np.isfinite(value), value, np.inf)
        refined = np.full_like(q, np.nan)
        for j, i in enumerate(todo):
            if np.isfinite(value[j].min()):
                row = starts[j * 2 * k + np.argmin(value[j])]
                axis = self.du_axis(fit_du[i : i + 1])[0]
                d_c, z_c, cos_theta, t_c = line_parameters(row["pos_m"], row["dir"],
                                                           float(row["t_ns"]), axis)  # fmt: skip
                refined[i] = d_c, z_c, np.arccos(np.clip(cos_theta, -1.0, 1.0)), t_c
        kernels.fit_lines_at_zenith(z, times, offsets, refined, self.settings.sigma_ns,
                                    self.settings.max_iterations, cost, residual)  # fmt: skip
        done = np.isfinite(refined[:, 0])
        q[done] = refined[done]

    def _floor_heights(self, fit_du: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Heights of the optical DOMs of each fit's DU (in ``_du_floors`` order), flat,
        with offsets per fit."""
        heights_of_du, _ = self._du_floors
        heights = [heights_of_du.get(int(du), np.zeros(0)) for du in fit_du]
        sizes = np.fromiter(map(len, heights), np.int64, len(heights))
        flat = np.concatenate(heights) if heights else np.zeros(0)
        return flat, np.r_[0, np.cumsum(sizes)]

    def _floor_counts(self, dom, group, count, floor_offsets) -> np.ndarray:
        """Hits of each floor of each fit's DU (rows as ``_floor_heights``)."""
        _, slot_of_dom = self._du_floors
        floor_k = np.zeros(floor_offsets[-1])
        np.add.at(floor_k, floor_offsets[group] + slot_of_dom[dom], count)
        return floor_k

    @cached_property
    def _du_floors(self) -> tuple[dict[int, np.ndarray], np.ndarray]:
        """The heights of the optical DOMs of every DU, and each DOM's place among them."""
        detector = self.detector
        optical = np.flatnonzero(detector.dom_floor > 0)
        doms_of_du = {int(du): optical[detector.dom_du[optical] == du]
                      for du in np.unique(detector.dom_du[optical])}  # fmt: skip
        slot_of_dom = np.zeros(len(detector.dom_ids), np.int64)
        for doms in doms_of_du.values():
            slot_of_dom[doms] = np.arange(len(doms))
        heights = {du: np.ascontiguousarray(detector.dom_pos_m[doms, 2], dtype=np.float64)
                   for du, doms in doms_of_du.items()}  # fmt: skip
        return heights, slot_of_dom

    def _line_road(self, snapshot, hits, dom, group, count, fit_event, fit_du, q):
        """Add to each single-DU fit (parameters ``q``, rows of ``group``) the first snapshot
        hit of every other DOM of its DU within the refit window of its time model: floors
        the trigger did not take (each with a count of one hit). Returns (hits, DOM index,
        group, count), sorted by group."""
        low, high = self.settings.refit_window_ns
        line_key = fit_event * 100_000 + fit_du  # ascending: groups go by event, then DU
        key = snapshot["event"].astype(np.int64) * 100_000 + snapshot["du"]
        k = np.clip(np.searchsorted(line_key, key), 0, max(len(line_key) - 1, 0))
        candidate = (line_key[k] == key) & np.isfinite(q[k, 0])
        extra, k = snapshot[candidate], k[candidate]
        extra_dom = self.detector.dom_index(extra["dom_id"])
        taken = np.isin(k * 1_000_000 + extra_dom, group * 1_000_000 + dom)
        extra, k, extra_dom = extra[~taken], k[~taken], extra_dom[~taken]
        d_c, z_c, theta, t_c = q[k].T
        dz = extra["pos_z_m"] - z_c
        rho = np.sqrt(d_c**2 + dz**2 * np.sin(theta) ** 2)
        model = t_c + (dz * np.cos(theta) + KAPPA * rho) / SPEED_OF_LIGHT_M_NS
        residual = extra["time_ns"] - model
        near = (residual >= low) & (residual <= high)
        extra, k, extra_dom, residual = extra[near], k[near], extra_dom[near], residual[near]
        order = np.lexsort((residual, extra_dom, k))
        extra, k, extra_dom = extra[order], k[order], extra_dom[order]
        first = np.r_[True, (k[1:] != k[:-1]) | (extra_dom[1:] != extra_dom[:-1])] if len(k) else []
        all_hits = np.concatenate((hits, extra[first]))
        all_group = np.concatenate((group, k[first]))
        all_dom = np.concatenate((dom, extra_dom[first]))
        all_count = np.concatenate((count, np.ones(int(np.sum(first)))))
        order = np.argsort(all_group, kind="stable")
        return all_hits[order], all_dom[order], all_group[order], all_count[order]

    def _line_starts(self, z, times, offsets, fit_event, fit_du, tracks) -> np.ndarray:
        """Start values per line fit. With a track of the event: from the track, and at five
        zenith angles 15 m from the line's earliest hit (ROy started at one, cos θ = -0.9).
        Without one (an event on one DU): the grid of ``LINE_START_*`` there."""
        n = len(offsets) - 1
        grid_theta, grid_d_c = np.meshgrid(np.radians(LINE_START_ZENITHS_DEG),
                                           LINE_START_DISTANCES_M)  # fmt: skip
        grid_theta, grid_d_c = grid_theta.ravel(), grid_d_c.ravel()
        near_theta = np.radians(TRACK_LINE_START_ZENITHS_DEG)
        starts = np.full((n, len(grid_theta) + 1, 4), np.nan)
        if not n:
            return starts
        earliest = np.minimum.reduceat(times, offsets[:-1])
        is_earliest = times == np.repeat(earliest, np.diff(offsets))
        z_first = np.zeros(n)
        z_first[np.repeat(np.arange(n), np.diff(offsets))[is_earliest]] = z[is_earliest]
        track_of_event = {int(e): i for i, e in enumerate(tracks["event"].tolist())}
        for k in range(n):
            i = track_of_event.get(int(fit_event[k]))
            if i is None:
                theta, d_c_m = grid_theta, grid_d_c
            else:
                track = tracks[i]
                d_c, z_c, cos_theta, t_c = line_parameters(
                    track["pos_m"], track["dir"], float(track["t_ns"]), self.du_axis(fit_du[k])[0]
                )
                starts[k, 0] = (d_c, z_c, np.arccos(np.clip(cos_theta, -1, 1)), t_c)
                theta, d_c_m = near_theta, np.full(len(near_theta), 15.0)
            rows = slice(1, 1 + len(theta))
            starts[k, rows, 0] = d_c_m
            starts[k, rows, 1] = z_first[k]
            starts[k, rows, 2] = theta
            starts[k, rows, 3] = earliest[k] - KAPPA * d_c_m / SPEED_OF_LIGHT_M_NS
        return starts
