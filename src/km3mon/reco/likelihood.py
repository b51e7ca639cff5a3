"""The likelihood of a track on every PMT near it, from ``light``'s first-hit PDFs (Jpp's
JMuonGandalf idea): it refines the single-DU fits of events without a multi-DU track.

The time fit of one DU sees one time per floor: for four to seven floors it cannot tell a
steep track passing close from a flat one passing far (BENCHMARKS, "Single-DU misses"). Which
PMTs see light, how early, and which see none can: the likelihood moves the fit in all five
track parameters from azimuths around the DU (the line fit has none) and keeps the best.

- a PMT whose first hit in the window (``light.WINDOW_NS`` around the direct light's time)
  has residual r adds ln(f(ρ, a, r) / b): f the density of first hits per ns at distance ρ
  and cosine a of the direct photon's angle off the PMT axis, b the K40 density;
- a PMT without one adds ln(P0(ρ, a) / P0_K40): how likely it is to see nothing there.

Both are ratios to K40 noise alone, so far PMTs add ~0 and are left out. A DOM's no-hit sum
is looked up whole (``dom_table``: its PMTs' sum against ρ and the photon's slope, averaged
over azimuth), then corrected for its hit PMTs. Nelder-Mead (the tables are interpolated
linearly); numba, as the fits. Written here, not taken from Jpp (C++, tables not reachable).
"""

from __future__ import annotations

import numba as nb
import numpy as np

from km3mon.detector import Detector
from km3mon.reco.light import WINDOW_NS, MuonTables
from km3mon.reco.model import COS_CHERENKOV, KAPPA, SIN_CHERENKOV, SPEED_OF_LIGHT_M_NS

C = SPEED_OF_LIGHT_M_NS
#: Distance (m) from the track beyond which a PMT is not looked at (its light ~ K40's).
RHO_MAX_M = 100.0
#: The compiled tables' grids: distance (m), cosine of the PMT angle, residual in steps
#: of asinh(r / RESIDUAL_SCALE_NS), the photon's slope for the DOM table.
RHO_STEP_M = 1.0
COS_POINTS = 41
RESIDUAL_SCALE_NS = 2.0
RESIDUAL_STEP = 0.05
DOM_SLOPES = np.linspace(-1.0, 1.0, 21)
#: What the track can reach while it moves: hits more than REACH_NS outside the window at
#: the starting track, and DOMs and PMTs more than REACH_M beyond ``RHO_MAX_M``, are left out.
REACH_NS = 100.0
REACH_M = 10.0
#: Nelder-Mead: first simplex steps (direction in rad, position across in m, time in ns),
#: the most evaluations per track, and the spread of the simplex's values that ends it.
SIMPLEX_STEPS = np.array([0.03, 0.03, 3.0, 3.0, 5.0])
MAX_EVALUATIONS = 120
TOLERANCE = 0.01


def dom_table(tables: MuonTables, pmt_dir: np.ndarray) -> np.ndarray:
    """Sum of ln(P0 / P0_K40) over a DOM's PMTs (``pmt_dir``, its own frame, DOM upright)
    at each ρ centre and photon slope of ``DOM_SLOPES``, averaged over the photon's azimuth."""
    rho_c, cos_c, _ = tables.centres()
    azimuths = np.linspace(0.0, 2 * np.pi, 24, endpoint=False)
    out = np.zeros((len(rho_c), len(DOM_SLOPES)))
    for j, slope in enumerate(DOM_SLOPES):
        across = np.sqrt(max(1.0 - slope * slope, 0.0))
        photon = np.column_stack((across * np.cos(azimuths), across * np.sin(azimuths),
                                  np.full(len(azimuths), slope)))  # fmt: skip
        facing = -(photon @ pmt_dir.T)  # (azimuths, PMTs)
        for i in range(len(rho_c)):  # at a ρ centre: linear in cos a alone
            out[i, j] = np.interp(facing, cos_c, tables.ln_none[i]).sum(axis=1).mean()
    return out


class TrackLikelihood:
    """Refines tracks (any number per event) on the likelihood of the PMTs near each, or of
    the DOMs given for each (a single DU's)."""

    def __init__(self, detector: Detector, tables: MuonTables) -> None:
        self.detector = detector
        self.tables = tables
        optical = np.flatnonzero(detector.n_pmts > 1)
        self.optical_doms = optical
        self.dom_pos = np.ascontiguousarray(detector.dom_pos_m, dtype=np.float64)
        widest = optical[np.argmax(detector.n_pmts[optical])] if len(optical) else 0
        rows = slice(int(detector.pmt_offset[widest]),
                     int(detector.pmt_offset[widest] + detector.n_pmts[widest]))  # fmt: skip
        rho_c, cos_c, res_c = self.tables.centres()
        # uniform grids (one index computation per lookup): ρ, cos a, and the residual
        # as asinh(r / RESIDUAL_SCALE_NS), fine near the direct light's time
        rho = np.arange(0.0, RHO_MAX_M + 2 * RHO_STEP_M, RHO_STEP_M)
        cosines = np.linspace(-1.0, 1.0, COS_POINTS)
        s_min = np.arcsinh(WINDOW_NS[0] / RESIDUAL_SCALE_NS)
        s_points = int(np.ceil((np.arcsinh(WINDOW_NS[1] / RESIDUAL_SCALE_NS) - s_min)
                               / RESIDUAL_STEP)) + 1  # fmt: skip
        residuals = RESIDUAL_SCALE_NS * np.sinh(s_min + RESIDUAL_STEP * np.arange(s_points))
        self.hit_grid = _resample(self.tables.ln_hit, rho_c, cos_c, res_c, rho, cosines, residuals)
        self.none_grid = np.array([[_interp2(self.tables.ln_none, rho_c, cos_c, r, c)
                                    for c in cosines] for r in rho])  # fmt: skip
        table = dom_table(self.tables, detector.pmt_dir[rows])
        self.dom_grid = np.column_stack([np.interp(rho, rho_c, table[:, j])
                                         for j in range(len(DOM_SLOPES))])  # fmt: skip
        self.grid = np.array([RHO_STEP_M, cosines[1] - cosines[0], RESIDUAL_SCALE_NS, s_min,
                              RESIDUAL_STEP, DOM_SLOPES[1] - DOM_SLOPES[0]])  # fmt: skip

    def near_doms(self, tracks: np.ndarray, chunk: int = 64) -> tuple[np.ndarray, np.ndarray]:
        """Optical DOMs within reach of each track (``REACH_M`` beyond ``RHO_MAX_M``: the
        track moves), as indices and offsets; a few tracks at a time (ARCA: 4140 DOMs)."""
        doms, per_track = [], []
        optical_pos = self.dom_pos[self.optical_doms]
        for lo in range(0, len(tracks), chunk):
            part = tracks[lo : lo + chunk]
            offset = optical_pos[None, :, :] - part["pos_m"][:, None, :]
            along = np.einsum("tdk,tk->td", offset, part["dir"])
            near = np.einsum("tdk,tdk->td", offset, offset) - along**2 < (RHO_MAX_M + REACH_M) ** 2
            doms.append(self.optical_doms[np.nonzero(near)[1]])
            per_track.append(near.sum(axis=1))
        counts = np.concatenate(per_track)
        return np.concatenate(doms).astype(np.int64), np.r_[0, np.cumsum(counts)].astype(np.int64)

    def refine(self, tracks: np.ndarray, snapshot: np.ndarray,
               steps: np.ndarray = SIMPLEX_STEPS, max_evaluations: int = MAX_EVALUATIONS,
               doms: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:  # fmt: skip
        """Move each track (``fit.TRACK_DTYPE`` rows, any number per event; in place) to
        the likelihood's optimum near it, on the snapshot hits of its event (a step of 0
        keeps that parameter; ``max_evaluations`` 1: only evaluate). ``doms``: the DOMs
        each track looks at (indices, offsets per track); all optical DOMs near it if None,
        and only hits on them count. Returns -ln L before and after (n, 2)."""
        values = np.full((len(tracks), 2), np.nan)
        if not len(tracks) or not len(snapshot):
            return values
        d = self.detector
        chosen = doms is not None
        doms, dom_off = doms if chosen else self.near_doms(tracks)
        # each track's event's hits (rows of the snapshot sorted by event), within reach
        snapshot = snapshot[np.argsort(snapshot["event"], kind="stable")]
        bounds = np.searchsorted(
            snapshot["event"], np.stack((tracks["event"], tracks["event"] + 1))
        )
        counts = bounds[1] - bounds[0]
        fit = np.repeat(np.arange(len(tracks)), counts)
        index = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        hits = snapshot[np.repeat(bounds[0], counts) + index]
        track = tracks[fit]
        offset = np.column_stack([hits[f"pos_{a}_m"] for a in "xyz"]) - track["pos_m"]
        along = np.einsum("ij,ij->i", offset, track["dir"])
        rho = np.sqrt(np.maximum(np.einsum("ij,ij->i", offset, offset) - along**2, 0.0))
        residual = hits["time_ns"] - track["t_ns"] - (along + KAPPA * rho) / C
        reach = ((rho < RHO_MAX_M + REACH_M) & (residual > WINDOW_NS[0] - REACH_NS)
                 & (residual < WINDOW_NS[1] + REACH_NS))  # fmt: skip
        if chosen:  # hits on the track's own DOMs only
            n_doms = len(d.dom_pos_m)
            allowed = np.repeat(np.arange(len(tracks)), np.diff(dom_off)) * n_doms + doms
            reach &= np.isin(fit * n_doms + d.dom_index(hits["dom_id"]), allowed)
        hits, fit = hits[reach], fit[reach]
        rows = d.pmt_rows(hits["dom_id"], hits["channel"]).astype(np.int64)
        order = np.lexsort((hits["time_ns"], rows, fit))
        fit, rows = fit[order], rows[order]
        hit_t = np.ascontiguousarray(hits["time_ns"][order], dtype=np.float64)
        new = np.r_[True, (fit[1:] != fit[:-1]) | (rows[1:] != rows[:-1])][: len(fit)]
        group_rows, group_fit = rows[new], fit[new]
        hit_off = np.r_[np.flatnonzero(new), len(fit)].astype(np.int64)
        pmt_off = np.searchsorted(group_fit, np.arange(len(tracks) + 1)).astype(np.int64)
        io_dir = np.ascontiguousarray(tracks["dir"], dtype=np.float64)
        io_pos = np.ascontiguousarray(tracks["pos_m"], dtype=np.float64)
        io_t = np.ascontiguousarray(tracks["t_ns"], dtype=np.float64)
        refine_tracks(
            io_dir, io_pos, io_t, values, self.dom_pos, doms, dom_off,
            np.ascontiguousarray(d.pmt_pos_m[group_rows]),
            np.ascontiguousarray(d.pmt_dir[group_rows]), pmt_off, hit_t, hit_off,
            self.hit_grid, self.none_grid, self.dom_grid, self.grid, np.asarray(steps, float),
            max_evaluations, TOLERANCE,
        )  # fmt: skip
        tracks["dir"] = io_dir
        tracks["pos_m"] = io_pos
        tracks["t_ns"] = io_t
        return values


# --- compiled: interpolation, the likelihood of a track, Nelder-Mead -----------------------


@nb.njit(cache=True)
def _locate(centres, value):
    """Index i and weight w of ``value`` between centres[i] and centres[i + 1] (clamped)."""
    n = len(centres)
    if value <= centres[0]:
        return 0, 0.0
    if value >= centres[n - 1]:
        return n - 2, 1.0
    i = 0
    while centres[i + 1] < value:
        i += 1
    return i, (value - centres[i]) / (centres[i + 1] - centres[i])


@nb.njit(cache=True)
def _interp2(table, xc, yc, x, y):
    i, u = _locate(xc, x)
    j, v = _locate(yc, y)
    return ((1 - u) * ((1 - v) * table[i, j] + v * table[i, j + 1])
            + u * ((1 - v) * table[i + 1, j] + v * table[i + 1, j + 1]))  # fmt: skip


@nb.njit(cache=True)
def _uniform2(table, x, y):
    """Bilinear interpolation at fractional indices (x, y) of ``table`` (clamped)."""
    i = min(int(x), table.shape[0] - 2)
    j = min(max(int(y), 0), table.shape[1] - 2)
    u = min(x - i, 1.0)
    v = min(max(y - j, 0.0), 1.0)
    return ((1 - u) * ((1 - v) * table[i, j] + v * table[i, j + 1])
            + u * ((1 - v) * table[i + 1, j] + v * table[i + 1, j + 1]))  # fmt: skip


@nb.njit(cache=True)
def _uniform3(table, x, y, z):
    """Trilinear interpolation at fractional indices (x, y, z) of ``table`` (clamped)."""
    i = min(int(x), table.shape[0] - 2)
    j = min(max(int(y), 0), table.shape[1] - 2)
    k = min(max(int(z), 0), table.shape[2] - 2)
    u = min(x - i, 1.0)
    v = min(max(y - j, 0.0), 1.0)
    w = min(max(z - k, 0.0), 1.0)
    total = 0.0
    for a in range(2):
        fa = u if a else 1.0 - u
        for b in range(2):
            fb = v if b else 1.0 - v
            total += fa * fb * ((1.0 - w) * table[i + a, j + b, k] + w * table[i + a, j + b, k + 1])
    return total


@nb.njit(cache=True)
def _resample(table, xc, yc, zc, xs, ys, zs):
    """``table`` (at centres xc, yc, zc; linear, clamped) on the grid xs, ys, zs."""
    out = np.empty((len(xs), len(ys), len(zs)))
    for i in range(len(xs)):
        for j in range(len(ys)):
            for k in range(len(zs)):
                out[i, j, k] = _interp3(table, xc, yc, zc, xs[i], ys[j], zs[k])
    return out


@nb.njit(cache=True)
def _interp3(table, xc, yc, zc, x, y, z):
    i, u = _locate(xc, x)
    j, v = _locate(yc, y)
    k, w = _locate(zc, z)
    total = 0.0
    for a in range(2):
        fa = u if a else 1 - u
        for b in range(2):
            fb = v if b else 1 - v
            for c in range(2):
                fc = w if c else 1 - w
                total += fa * fb * fc * table[i + a, j + b, k + c]
    return total


@nb.njit(cache=True)
def _photon(ox, oy, oz, d):
    """Distance from the track and direction of its direct photon at offset o from a point
    of the track."""
    along = ox * d[0] + oy * d[1] + oz * d[2]
    px, py, pz = ox - along * d[0], oy - along * d[1], oz - along * d[2]
    rho = np.sqrt(px * px + py * py + pz * pz + 0.01)
    ux = SIN_CHERENKOV * px / rho + COS_CHERENKOV * d[0]
    uy = SIN_CHERENKOV * py / rho + COS_CHERENKOV * d[1]
    uz = SIN_CHERENKOV * pz / rho + COS_CHERENKOV * d[2]
    return along, rho, ux, uy, uz


@nb.njit(cache=True)
def _minus_ln_l(d, p, t0, dom_pos, doms, pmt_pos, pmt_dir, hit_t, hit_off,
                hit_grid, none_grid, dom_grid, grid):  # fmt: skip
    """-ln of the likelihood ratio of the track (d through p at t0) to K40 alone."""
    total = 0.0
    for k in range(len(doms)):
        q = doms[k]
        _, rho, _, _, uz = _photon(dom_pos[q, 0] - p[0], dom_pos[q, 1] - p[1],
                                   dom_pos[q, 2] - p[2], d)  # fmt: skip
        if rho < RHO_MAX_M:
            total += _uniform2(dom_grid, rho / grid[0], (uz + 1.0) / grid[5])
    for g in range(len(pmt_pos)):
        along, rho, ux, uy, uz = _photon(pmt_pos[g, 0] - p[0], pmt_pos[g, 1] - p[1],
                                         pmt_pos[g, 2] - p[2], d)  # fmt: skip
        if rho >= RHO_MAX_M:
            continue
        expected = t0 + (along + KAPPA * rho) / C
        # the PMT's first hit in the window (its hits are sorted: a flood costs log n)
        lo, hi = hit_off[g], hit_off[g + 1]
        h = lo + np.searchsorted(hit_t[lo:hi], expected + WINDOW_NS[0])
        if h < hi and hit_t[h] - expected <= WINDOW_NS[1]:
            r = hit_t[h] - expected
            facing = -(ux * pmt_dir[g, 0] + uy * pmt_dir[g, 1] + uz * pmt_dir[g, 2])
            x, y = rho / grid[0], (facing + 1.0) / grid[1]
            total += _uniform3(hit_grid, x, y, (np.arcsinh(r / grid[2]) - grid[3]) / grid[4])
            total -= _uniform2(none_grid, x, y)
    return -total


@nb.njit(cache=True)
def _track_at(x, d0, e1, e2, p0, t0, out_d, out_p):
    for a in range(3):
        out_d[a] = d0[a] + x[0] * e1[a] + x[1] * e2[a]
    norm = np.sqrt(out_d[0] ** 2 + out_d[1] ** 2 + out_d[2] ** 2)
    for a in range(3):
        out_d[a] /= norm
        out_p[a] = p0[a] + x[2] * e1[a] + x[3] * e2[a]
    return t0 + x[4]


@nb.njit(cache=True)
def _value(x, track):
    """-ln L at parameters ``x`` around the start; ``track``: the start's basis, scratch
    direction and point, and the track's DOMs, hit PMTs and tables (``refine_tracks``)."""
    d0, e1, e2, p0, t0, d, p, dom_pos, doms, pmt_pos, pmt_dir, hit_t, hit_off = track[:13]
    hit_grid, none_grid, dom_grid, grid = track[13:]
    t = _track_at(x, d0, e1, e2, p0, t0, d, p)
    return _minus_ln_l(d, p, t, dom_pos, doms, pmt_pos, pmt_dir, hit_t, hit_off, hit_grid,
                       none_grid, dom_grid, grid)  # fmt: skip


@nb.njit(cache=True)
def refine_tracks(io_dir, io_pos, io_t, out_value, dom_pos, doms, dom_off, pmt_pos, pmt_dir,
                  pmt_off, hit_t, hit_off, hit_grid, none_grid, dom_grid, grid, steps,
                  max_evaluations, tolerance):  # fmt: skip
    """Nelder-Mead on ``_minus_ln_l`` from each track (``io_*``, updated in place).

    Track k looks at DOMs ``doms[dom_off[k]:dom_off[k + 1]]`` and hit PMTs
    ``pmt_off[k]:pmt_off[k + 1]`` (rows of ``pmt_pos``...; PMT g's hit times, sorted,
    are ``hit_t[hit_off[g]:hit_off[g + 1]]``). ``out_value``: -ln L at the start and end.
    """
    n_par = 5
    d = np.empty(3)
    p = np.empty(3)
    for k in range(len(io_t)):
        d0 = io_dir[k].copy()
        p0 = io_pos[k].copy()
        helper = np.array([0.0, 0.0, 1.0]) if abs(d0[2]) < 0.9 else np.array([1.0, 0.0, 0.0])
        e1 = np.cross(helper, d0)
        e1 /= np.sqrt(e1 @ e1)
        e2 = np.cross(d0, e1)
        g0, g1 = pmt_off[k], pmt_off[k + 1]
        track = (d0, e1, e2, p0, io_t[k], d, p, dom_pos, doms[dom_off[k] : dom_off[k + 1]],
                 pmt_pos[g0:g1], pmt_dir[g0:g1], hit_t, hit_off[g0 : g1 + 1], hit_grid,
                 none_grid, dom_grid, grid)  # fmt: skip
        simplex = np.zeros((n_par + 1, n_par))
        values = np.empty(n_par + 1)
        if max_evaluations <= 1:
            out_value[k, 0] = out_value[k, 1] = _value(simplex[0], track)
            continue
        for v in range(n_par + 1):
            if v:
                simplex[v, v - 1] = steps[v - 1]
            values[v] = _value(simplex[v], track)
        out_value[k, 0] = values[0]
        evaluations = n_par + 1
        while evaluations < max_evaluations:
            order = np.argsort(values)
            simplex, values = simplex[order], values[order]
            if values[-1] - values[0] < tolerance:
                break
            centroid = simplex[:-1].sum(axis=0) / n_par
            reflection = 2.0 * centroid - simplex[-1]
            reflected = _value(reflection, track)
            evaluations += 1
            if reflected < values[0]:
                expansion = 3.0 * centroid - 2.0 * simplex[-1]
                expanded = _value(expansion, track)
                evaluations += 1
                if expanded < reflected:
                    simplex[-1], values[-1] = expansion, expanded
                else:
                    simplex[-1], values[-1] = reflection, reflected
            elif reflected < values[-2]:
                simplex[-1], values[-1] = reflection, reflected
            else:
                contraction = 0.5 * (centroid + simplex[-1])
                contracted = _value(contraction, track)
                evaluations += 1
                if contracted < values[-1]:
                    simplex[-1], values[-1] = contraction, contracted
                else:  # shrink towards the best
                    for v in range(1, n_par + 1):
                        simplex[v] = simplex[0] + 0.5 * (simplex[v] - simplex[0])
                        values[v] = _value(simplex[v], track)
                    evaluations += n_par
        best = np.argmin(values)
        io_t[k] = _track_at(simplex[best], d0, e1, e2, p0, io_t[k], d, p)
        io_dir[k] = d
        io_pos[k] = p
        out_value[k, 1] = values[best]
