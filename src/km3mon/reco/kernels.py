"""Compiled fits (numba): whole batches of events per call, one loop over events inside.

numba because a fit is a short loop of tiny dependent steps (a direction scan over ~1000
directions of ~10 hits, Gauss-Newton iterations of 5 parameters) that numpy can only
vectorise by padding every event to the largest; here each event costs what its hits cost.

Hits come as flat arrays with ``offsets`` (event ``k`` owns rows
``offsets[k]:offsets[k + 1]``). Times are ns, positions m; residuals are hit time minus
model time (positive: late). The fits' loss is Cauchy, ``ln(1 + u²)`` of ``u = r / sigma``,
with late residuals in units of ``LATE_FACTOR`` sigma (:func:`_time_loss`): quadratic near
zero, logarithmic for outliers (scattered light, shower light, noise), minimised by
iteratively reweighted Levenberg-Marquardt. The direction scan keeps soft-L1 (its wide
sigma needs a loss that still pulls from far away).
"""

from __future__ import annotations

import numba as nb
import numpy as np

from km3mon.reco.model import COS_CHERENKOV, KAPPA, SIN_CHERENKOV, SPEED_OF_LIGHT_M_NS

C = SPEED_OF_LIGHT_M_NS
#: Floating-point licence of the hot loops (prefit, track fit, facing): sums may be
#: reordered and vectorised (15 % less CPU at ARCA-230; fits alike to 1e-5°). Not "nnan" /
#: "ninf": NaN marks hits without a distance term.
FAST = {"reassoc", "contract", "nsz", "arcp"}
K = KAPPA
K2 = KAPPA * KAPPA
RHO_FLOOR_M2 = 0.01  # rho = sqrt(rho² + 0.01 m²): a hit on the track has a finite gradient
N_TRACK = 5  # direction (2), position across the track (2), time
N_LINE = 4  # d_c, z_c, theta, t_c
COS_C = COS_CHERENKOV
SIN_C = SIN_CHERENKOV
#: PMT acceptance for the choice between solutions: linear in the cosine of the angle off
#: the PMT axis, zero from cos = -FACING_CUTOFF (105°) on; scattered light and noise still
#: reach a PMT from behind, at FACING_FLOOR of the head-on acceptance.
FACING_CUTOFF = 0.26
FACING_FLOOR = 0.05
#: Attenuation length (m, along the photon's path) of the direct light a DOM sees, for the
#: hit-multiplicity term (deep-sea absorption and scattering lengths are ~50-70 m).
ATTENUATION_M = 50.0


@nb.njit(cache=True)
def _solve(a, b, n):
    """Solve ``a x = b`` (n × n, partial pivoting) in place; False if singular."""
    for col in range(n):
        pivot = col
        for row in range(col + 1, n):
            if abs(a[row, col]) > abs(a[pivot, col]):
                pivot = row
        if abs(a[pivot, col]) < 1e-300:
            return False
        if pivot != col:
            for k in range(n):
                a[col, k], a[pivot, k] = a[pivot, k], a[col, k]
            b[col], b[pivot] = b[pivot], b[col]
        for row in range(col + 1, n):
            f = a[row, col] / a[col, col]
            if f != 0.0:
                for k in range(col, n):
                    a[row, k] -= f * a[col, k]
                b[row] -= f * b[col]
    for col in range(n - 1, -1, -1):
        s = b[col]
        for k in range(col + 1, n):
            s -= a[col, k] * b[k]
        b[col] = s / a[col, col]
    return True


#: Late residuals count in units of LATE_FACTOR sigma: scattered light and the showers along
#: a track arrive late, never early (KM3NeT MC, triggered hits: 16 % over +10 ns, 1 % under
#: -10 ns), so a late hit is less evidence against a track than an early one.
LATE_FACTOR = 3.0


@nb.njit(cache=True, fastmath=FAST)
def _time_loss(r):
    """Cost and IRLS weight of a time residual ``r`` in units of sigma: Cauchy,
    ``ln(1 + u²)`` with ``u = r`` early and ``r / LATE_FACTOR`` late. Its influence falls
    back to zero for outliers (soft-L1's stays constant), so a few hits of shower light or
    noise far off do not drag the track; the weight carries the late scale."""
    scale2 = 1.0
    if r > 0.0:
        r = r / LATE_FACTOR
        scale2 = 1.0 / (LATE_FACTOR * LATE_FACTOR)
    return np.log1p(r * r), scale2 / (1.0 + r * r)


@nb.njit(cache=True, fastmath=FAST)
def _soft_l1(r, sigma):
    z = (r / sigma) ** 2
    return 2.0 * (np.sqrt(1.0 + z) - 1.0)


@nb.njit(cache=True)
def _basis(dx, dy, dz):
    """Two unit vectors orthogonal to (dx, dy, dz) and to each other."""
    if abs(dz) < 0.9:
        hx, hy, hz = 0.0, 0.0, 1.0
    else:
        hx, hy, hz = 1.0, 0.0, 0.0
    ax = hy * dz - hz * dy
    ay = hz * dx - hx * dz
    az = hx * dy - hy * dx
    norm = np.sqrt(ax * ax + ay * ay + az * az)
    ax, ay, az = ax / norm, ay / norm, az / norm
    bx = dy * az - dz * ay
    by = dz * ax - dx * az
    bz = dx * ay - dy * ax
    return ax, ay, az, bx, by, bz


# --- prefit: direction scan with a linear estimator per direction ------------------------


@nb.njit(cache=True, fastmath=FAST)
def _line1z(x, y, z, t, lnrho, n, dx, dy, dz, sigma, sigma_lnrho, work):
    """Jpp-style linear estimate of the track along (dx, dy, dz) and its robust cost.

    In the frame where the track runs along z', ``c (t_i - t0) - z'_i = KAPPA R_i``; squared,
    this is linear in (c t0, x, y) and a constant, which centring removes. Returns
    (cost, c t0, x, y) with x, y across the track; cost inf if the system is singular.
    The cost includes the distance terms of the hits with a finite ``lnrho``.
    """
    ax, ay, az, bx, by, bz = _basis(dx, dy, dz)
    sw = sx = sy = sq = 0.0
    sww = swx = swy = sxx = sxy = syy = sqw = sqx = sqy = 0.0
    for i in range(n):
        zp = x[i] * dx + y[i] * dy + z[i] * dz
        xp = x[i] * ax + y[i] * ay + z[i] * az
        yp = x[i] * bx + y[i] * by + z[i] * bz
        w = C * t[i] - zp
        q = w * w - K2 * (xp * xp + yp * yp)
        work[i, 0] = xp
        work[i, 1] = yp
        work[i, 2] = zp
        sw += w
        sx += xp
        sy += yp
        sq += q
        sww += w * w
        swx += w * xp
        swy += w * yp
        sxx += xp * xp
        sxy += xp * yp
        syy += yp * yp
        sqw += q * w
        sqx += q * xp
        sqy += q * yp
    m = 1.0 / n
    cww = sww - sw * sw * m
    cwx = swx - sw * sx * m
    cwy = swy - sw * sy * m
    cxx = sxx - sx * sx * m
    cxy = sxy - sx * sy * m
    cyy = syy - sy * sy * m
    cqw = sqw - sq * sw * m
    cqx = sqx - sq * sx * m
    cqy = sqy - sq * sy * m
    # q~ = 2 a w~ - 2 K² X x~ - 2 K² Y y~  ->  normal equations in (a, K² X, K² Y)
    a = np.empty((3, 3))
    b = np.empty(3)
    a[0, 0] = cww
    a[0, 1] = a[1, 0] = -cwx
    a[0, 2] = a[2, 0] = -cwy
    a[1, 1] = cxx
    a[1, 2] = a[2, 1] = cxy
    a[2, 2] = cyy
    b[0] = 0.5 * cqw
    b[1] = -0.5 * cqx
    b[2] = -0.5 * cqy
    if not _solve(a, b, 3):
        return np.inf, 0.0, 0.0, 0.0
    ct0 = b[0]
    px = b[1] / K2
    py = b[2] / K2
    cost = 0.0
    for i in range(n):
        rx = work[i, 0] - px
        ry = work[i, 1] - py
        distance = np.sqrt(rx * rx + ry * ry + RHO_FLOOR_M2)
        r = t[i] - (ct0 + work[i, 2] + K * distance) / C
        cost += _soft_l1(r, sigma)
        if np.isfinite(lnrho[i]):
            cost += _soft_l1(lnrho[i] - np.log(distance), sigma_lnrho)
    return cost, ct0, px, py


@nb.njit(cache=True)
def _keep(cost, dx, dy, dz, best_cost, best_dir):
    """Insert a direction into the sorted list of the best ones (worst last)."""
    m = len(best_cost)
    if cost >= best_cost[m - 1]:
        return
    j = m - 1
    while j > 0 and best_cost[j - 1] > cost:
        best_cost[j] = best_cost[j - 1]
        best_dir[j, 0] = best_dir[j - 1, 0]
        best_dir[j, 1] = best_dir[j - 1, 1]
        best_dir[j, 2] = best_dir[j - 1, 2]
        j -= 1
    best_cost[j] = cost
    best_dir[j, 0] = dx
    best_dir[j, 1] = dy
    best_dir[j, 2] = dz


@nb.njit(cache=True)
def _prefit(
    x, y, z, t, lnrho, pmt_dir, n, hx, hy, hz, hdir, facing_weight, directions, cone, n_best,
    sigma_coarse, sigma_fine, sigma_lnrho, best_dir,
):  # fmt: skip
    """Best ``n_best`` directions (rows of ``best_dir``, best first) of a coarse scan over
    ``directions`` and then of cones (offsets ``cone``, radians) around each of them. The
    time terms come from the scanned hits (x, ...); the PMT-facing terms from them in the
    coarse scan and from all hits of the event (hx, ...) in the cones: each coincident hit
    tells which side of its DOM the light came from."""
    work = np.empty((n, 3))
    best_cost = np.full(n_best, np.inf)
    for k in range(len(directions)):
        dx, dy, dz = directions[k, 0], directions[k, 1], directions[k, 2]
        cost, _, px, py = _line1z(x, y, z, t, lnrho, n, dx, dy, dz, sigma_coarse, sigma_lnrho, work)
        # the facing cost is >= 0: only a direction the time cost alone keeps can use it
        if facing_weight > 0.0 and cost < best_cost[n_best - 1]:
            cost += facing_weight * _facing_scan(x, y, z, pmt_dir, dx, dy, dz, px, py)
        _keep(cost, directions[k, 0], directions[k, 1], directions[k, 2], best_cost, best_dir)
    coarse = best_dir.copy()
    n_coarse = 0
    for j in range(n_best):
        if np.isfinite(best_cost[j]):
            n_coarse += 1
    best_cost[:] = np.inf
    for j in range(n_coarse):
        dx, dy, dz = coarse[j, 0], coarse[j, 1], coarse[j, 2]
        ax, ay, az, bx, by, bz = _basis(dx, dy, dz)
        for c in range(len(cone)):
            ux = dx + cone[c, 0] * ax + cone[c, 1] * bx
            uy = dy + cone[c, 0] * ay + cone[c, 1] * by
            uz = dz + cone[c, 0] * az + cone[c, 1] * bz
            norm = np.sqrt(ux * ux + uy * uy + uz * uz)
            ux, uy, uz = ux / norm, uy / norm, uz / norm
            cost, _, px, py = _line1z(
                x, y, z, t, lnrho, n, ux, uy, uz, sigma_fine, sigma_lnrho, work
            )
            if facing_weight > 0.0 and cost < best_cost[n_best - 1]:
                cost += facing_weight * _facing_scan(hx, hy, hz, hdir, ux, uy, uz, px, py)
            _keep(cost, ux, uy, uz, best_cost, best_dir)
    found = 0
    for j in range(n_best):
        if np.isfinite(best_cost[j]):
            found += 1
    return found


# --- track fit: robust Levenberg-Marquardt of the full time model -----------------------


@nb.njit(cache=True, fastmath=FAST)
def _track_terms(x, y, z, t, lnrho, n, d, p, t0, sigma, sigma_lnrho, jac, res, weight):
    """Residuals, IRLS weights and Jacobian rows at (d, p, t0); returns (time cost, cost).

    Parameters: rotation of d along e1, e2; shift of p along e1, e2; t0. Rows ``n + i`` are
    the distance terms of the hits with a finite ``lnrho`` (log of the distance the DOM's
    hit count suggests), ``(lnrho - ln rho) / sigma_lnrho`` with the same loss. Residuals
    and Jacobian rows come scaled by their sigma.
    """
    ax, ay, az, bx, by, bz = _basis(d[0], d[1], d[2])
    cost = 0.0
    distance_cost = 0.0
    for i in range(n):
        ox = x[i] - p[0]
        oy = y[i] - p[1]
        oz = z[i] - p[2]
        along = ox * d[0] + oy * d[1] + oz * d[2]
        rho = np.sqrt(max(ox * ox + oy * oy + oz * oz - along * along, 0.0) + RHO_FLOOR_M2)
        r = (t[i] - (t0 + (along + K * rho) / C)) / sigma
        res[i] = r
        loss, weight[i] = _time_loss(r)
        cost += loss
        o1 = ox * ax + oy * ay + oz * az
        o2 = ox * bx + oy * by + oz * bz
        scale = 1.0 / (C * sigma)
        jac[i, 0] = o1 * (1.0 - K * along / rho) * scale
        jac[i, 1] = o2 * (1.0 - K * along / rho) * scale
        jac[i, 2] = -K * o1 / rho * scale
        jac[i, 3] = -K * o2 / rho * scale
        jac[i, 4] = 1.0 / sigma
        j = n + i
        if np.isfinite(lnrho[i]):
            r = (lnrho[i] - np.log(rho)) / sigma_lnrho
            res[j] = r
            weight[j] = 1.0 / np.sqrt(1.0 + r * r)
            distance_cost += 2.0 * (np.sqrt(1.0 + r * r) - 1.0)
            scale = 1.0 / (rho * rho * sigma_lnrho)
            jac[j, 0] = -along * o1 * scale
            jac[j, 1] = -along * o2 * scale
            jac[j, 2] = -o1 * scale
            jac[j, 3] = -o2 * scale
        else:
            res[j] = 0.0
            weight[j] = 0.0
            jac[j, 0] = jac[j, 1] = jac[j, 2] = jac[j, 3] = 0.0
        jac[j, 4] = 0.0
    return cost, cost + distance_cost


@nb.njit(cache=True)
def _track_step(d, p, t0, step, out_d, out_p):
    """Apply a parameter step: rotate d, shift p across the track, move t0."""
    ax, ay, az, bx, by, bz = _basis(d[0], d[1], d[2])
    ux = d[0] + step[0] * ax + step[1] * bx
    uy = d[1] + step[0] * ay + step[1] * by
    uz = d[2] + step[0] * az + step[1] * bz
    norm = np.sqrt(ux * ux + uy * uy + uz * uz)
    out_d[0], out_d[1], out_d[2] = ux / norm, uy / norm, uz / norm
    out_p[0] = p[0] + step[2] * ax + step[3] * bx
    out_p[1] = p[1] + step[2] * ay + step[3] * by
    out_p[2] = p[2] + step[2] * az + step[3] * bz
    return t0 + step[4]


@nb.njit(cache=True, fastmath=FAST)
def _fit_track(x, y, z, t, lnrho, n, d, p, t0, sigma, sigma_lnrho, max_iter):
    """Robust LM fit from (d, p, t0), updated in place; returns (t0, cost, iterations)."""
    jac = np.empty((2 * n, N_TRACK))
    res = np.empty(2 * n)
    weight = np.empty(2 * n)
    new_d = np.empty(3)
    new_p = np.empty(3)
    normal = np.empty((N_TRACK, N_TRACK))
    grad = np.empty(N_TRACK)
    _, cost = _track_terms(x, y, z, t, lnrho, n, d, p, t0, sigma, sigma_lnrho, jac, res, weight)
    damping = 1e-3
    iteration = 0
    while iteration < max_iter:
        iteration += 1
        for a in range(N_TRACK):
            grad[a] = 0.0
            for b in range(N_TRACK):
                normal[a, b] = 0.0
        for i in range(2 * n):
            if weight[i] == 0.0:
                continue
            for a in range(N_TRACK):
                wa = weight[i] * jac[i, a]
                grad[a] += wa * res[i]
                for b in range(a, N_TRACK):
                    normal[a, b] += wa * jac[i, b]
        for a in range(N_TRACK):
            for b in range(a):
                normal[a, b] = normal[b, a]
        improved = False
        for _ in range(8):
            trial = normal.copy()
            step = grad.copy()
            for a in range(N_TRACK):
                trial[a, a] += damping * normal[a, a] + 1e-12
            if not _solve(trial, step, N_TRACK):
                damping *= 10.0
                continue
            new_t0 = _track_step(d, p, t0, step, new_d, new_p)
            _, new_cost = _track_terms(
                x, y, z, t, lnrho, n, new_d, new_p, new_t0, sigma, sigma_lnrho, jac, res, weight
            )
            if new_cost <= cost:
                converged = (
                    cost - new_cost < 1e-7 * (1.0 + cost) and abs(step[0]) + abs(step[1]) < 1e-6
                )
                d[:] = new_d
                p[:] = new_p
                t0 = new_t0
                cost = new_cost
                damping = max(damping / 5.0, 1e-9)
                improved = True
                if converged:
                    return t0, cost, iteration
                break
            damping *= 8.0
        if not improved:
            # restore terms at the accepted point and stop: no step lowers the cost
            _, cost = _track_terms(
                x, y, z, t, lnrho, n, d, p, t0, sigma, sigma_lnrho, jac, res, weight
            )
            break
    return t0, cost, iteration


@nb.njit(cache=True)
def _track_residuals(x, y, z, t, lnrho, n, d, p, t0, sigma, sigma_lnrho, out_res):
    """Time residuals (ns) at a solution; returns the time part of the robust cost."""
    jac = np.empty((2 * n, N_TRACK))
    weight = np.empty(2 * n)
    res = np.empty(2 * n)
    cost, _ = _track_terms(x, y, z, t, lnrho, n, d, p, t0, sigma, sigma_lnrho, jac, res, weight)
    for i in range(n):
        out_res[i] = res[i] * sigma
    return cost


@nb.njit(cache=True)
def _leave_one_dom_out(x, y, z, t, lnrho, first, n, d, p, t0, sigma, sigma_lnrho, max_iter,
                       out_loo):  # fmt: skip
    """For each DOM (hits from one ``first`` to the next): the residual of its first hit
    against the track refitted without the DOM, started from the full fit. Exact where a
    linear leave-out (hat matrix) is not: a robust fit absorbs part of a shifted DOM
    non-linearly, and the linear estimate found only ~80 % of a simulated offset."""
    sx = np.empty(n)
    sy = np.empty(n)
    sz = np.empty(n)
    st = np.empty(n)
    sl = np.empty(n)
    dd = np.empty(3)
    pp = np.empty(3)
    start = 0
    while start < n:
        end = start + 1
        while end < n and not first[end]:
            end += 1
        m = 0
        for i in range(n):
            if i < start or i >= end:
                sx[m], sy[m], sz[m], st[m], sl[m] = x[i], y[i], z[i], t[i], lnrho[i]
                m += 1
        dd[:] = d
        pp[:] = p
        tt0, _, _ = _fit_track(sx, sy, sz, st, sl, m, dd, pp, t0, sigma, sigma_lnrho, max_iter)
        ox = x[start] - pp[0]
        oy = y[start] - pp[1]
        oz = z[start] - pp[2]
        along = ox * dd[0] + oy * dd[1] + oz * dd[2]
        rho = np.sqrt(max(ox * ox + oy * oy + oz * oz - along * along, 0.0) + RHO_FLOOR_M2)
        out_loo[start] = t[start] - (tt0 + (along + K * rho) / C)
        start = end


@nb.njit(cache=True)
def _facing_term(facing):
    """-2 ln acceptance of a PMT for light ``facing`` (cosine of the angle off its axis)."""
    acceptance = min(max((facing + FACING_CUTOFF) / (1.0 + FACING_CUTOFF), 0.0), 1.0)
    return -2.0 * np.log(FACING_FLOOR + (1.0 - FACING_FLOOR) * acceptance)


@nb.njit(cache=True, fastmath=FAST)
def _facing_scan(x, y, z, pmt_dir, dx, dy, dz, px, py):
    """:func:`_facing_cost` of the track along (dx, dy, dz) through (px, py) across it
    (in :func:`_basis` coordinates), as the scan has it."""
    ax, ay, az, bx, by, bz = _basis(dx, dy, dz)
    cost = 0.0
    for i in range(len(x)):
        rx = x[i] * ax + y[i] * ay + z[i] * az - px
        ry = x[i] * bx + y[i] * by + z[i] * bz - py
        distance = np.sqrt(rx * rx + ry * ry + RHO_FLOOR_M2)
        ux = SIN_C * (rx * ax + ry * bx) / distance + COS_C * dx
        uy = SIN_C * (rx * ay + ry * by) / distance + COS_C * dy
        uz = SIN_C * (rx * az + ry * bz) / distance + COS_C * dz
        cost += _facing_term(-(ux * pmt_dir[i, 0] + uy * pmt_dir[i, 1] + uz * pmt_dir[i, 2]))
    return cost


@nb.njit(cache=True, fastmath=FAST)
def _facing_cost(x, y, z, pmt_dir, n, d, p):
    """-2 ln of the PMTs' acceptance of the direct light of the track (d, p): the photon
    reaches a hit's PMT at the Cherenkov angle to the track, and a PMT sees it only from
    in front (acceptance falling from 1 head-on to ~0 at 105° off its axis). The time
    model cannot tell a track from its mirror image across the plane of two DUs; which
    PMTs were hit can."""
    cost = 0.0
    for i in range(n):
        ox = x[i] - p[0]
        oy = y[i] - p[1]
        oz = z[i] - p[2]
        along = ox * d[0] + oy * d[1] + oz * d[2]
        px = ox - along * d[0]
        py = oy - along * d[1]
        pz = oz - along * d[2]
        rho = np.sqrt(px * px + py * py + pz * pz + RHO_FLOOR_M2)
        # photon direction: sin θc across the track plus cos θc along it
        ux = SIN_C * px / rho + COS_C * d[0]
        uy = SIN_C * py / rho + COS_C * d[1]
        uz = SIN_C * pz / rho + COS_C * d[2]
        cost += _facing_term(-(ux * pmt_dir[i, 0] + uy * pmt_dir[i, 1] + uz * pmt_dir[i, 2]))
    return cost


@nb.njit(cache=True)
def _start_along(fx, fy, fz, ft, fl, m, dx, dy, dz, sigma, sigma_lnrho, work):
    """A track start along (dx, dy, dz): direction, point and time of the linear estimate on
    the first hits (``_line1z``)."""
    _, ct0, px, py = _line1z(fx, fy, fz, ft, fl, m, dx, dy, dz, sigma, sigma_lnrho, work)
    ax, ay, az, bx, by, bz = _basis(dx, dy, dz)
    d = np.array([dx, dy, dz])
    p = np.array([px * ax + py * bx, px * ay + py * by, px * az + py * bz])
    return d, p, ct0 / C


@nb.njit(cache=True)
def _ln_light_share(rho):
    """ln of the direct light a DOM at distance rho (m) from the track gets, up to a
    constant: exp(-path / ATTENUATION_M) / rho with path = rho / sin θc."""
    return -rho / (SIN_C * ATTENUATION_M) - np.log(rho)


@nb.njit(cache=True)
def _multiplicity_cost(x, y, z, first, n, d, p):
    """-2 ln of the multinomial probability of the DOMs' hit counts (a DOM's hits
    adjacent, ``first`` marks its first): a DOM's share of the event's hits is its share
    of the track's direct light, exp(-path / ATTENUATION_M) / rho with path = rho / sin θc.
    The event's light yield (energy, bundles, showers) drops out: no absolute scale to
    tune, unlike a hits-per-distance prior."""
    total_k = 0.0
    sum_k_ln_f = 0.0
    max_ln_f = -np.inf
    for stage in range(2):  # ln of the sum of the shares taken against the largest: a
        sum_f = 0.0  # track far from every DOM must not underflow to ln 0
        i = 0
        while i < n:
            j = i + 1
            while j < n and not first[j]:
                j += 1
            ox = x[i] - p[0]
            oy = y[i] - p[1]
            oz = z[i] - p[2]
            along = ox * d[0] + oy * d[1] + oz * d[2]
            rho = np.sqrt(max(ox * ox + oy * oy + oz * oz - along * along, 0.0) + 1.0)
            ln_f = _ln_light_share(rho)
            if stage == 0:
                max_ln_f = max(max_ln_f, ln_f)
                total_k += j - i
                sum_k_ln_f += (j - i) * ln_f
            else:
                sum_f += np.exp(ln_f - max_ln_f)
            i = j
    return -2.0 * (sum_k_ln_f - total_k * (max_ln_f + np.log(sum_f)))


@nb.njit(cache=True)
def _fit_facing(x, y, z, t, lnrho, pmt_dir, first, n, d, p, t0, sigma, sigma_lnrho, max_iter,
                facing_weight, multiplicity_weight):  # fmt: skip
    """``_fit_track`` from (d, p, t0): (t0, its cost with the PMT-facing and
    hit-multiplicity terms added (the terms that choose among candidate solutions),
    iterations, the time cost alone)."""
    t0, time_cost, iterations = _fit_track(x, y, z, t, lnrho, n, d, p, t0, sigma, sigma_lnrho,
                                           max_iter)  # fmt: skip
    cost = time_cost + facing_weight * _facing_cost(x, y, z, pmt_dir, n, d, p)
    if multiplicity_weight > 0.0:
        cost += multiplicity_weight * _multiplicity_cost(x, y, z, first, n, d, p)
    return t0, cost, iterations, time_cost


@nb.njit(cache=True)
def _mirror(d, p, axis_a, axis_b, out_d, out_p):
    """Reflect a track across the vertical plane through two DU axes (x, y)."""
    ux = axis_b[0] - axis_a[0]
    uy = axis_b[1] - axis_a[1]
    norm = np.sqrt(ux * ux + uy * uy)
    nx, ny = -uy / norm, ux / norm  # horizontal normal of the plane
    dn = d[0] * nx + d[1] * ny
    out_d[0], out_d[1], out_d[2] = d[0] - 2 * dn * nx, d[1] - 2 * dn * ny, d[2]
    pn = (p[0] - axis_a[0]) * nx + (p[1] - axis_a[1]) * ny
    out_p[0], out_p[1], out_p[2] = p[0] - 2 * pn * nx, p[1] - 2 * pn * ny, p[2]


@nb.njit(cache=True)
def _time_alternative(x, y, z, t, lnrho, n, fx, fy, fz, ft, fl, m, best_d, best_time, slack,
                      starts, max_iter, separation_cos, sigma_fine, sigma, sigma_lnrho, work,
                      out_d, out_p):  # fmt: skip
    """The track's rival on the times alone: fits of the hits' times (``max_iter`` iterations
    each) from ``starts`` directions spread over the sphere; the lowest of those more than
    ``separation_cos`` from the kept track's direction ``best_d`` whose time cost is below
    the kept track's ``best_time`` + ``slack``. Where there is one, the times alone do not
    tell the two apart, or they prefer the rival (the PMT-facing and hit-count terms chose
    against them, or the scan never reached it): a finer judge must choose. Returns (t0,
    time cost) and fills ``out_d``, ``out_p``; cost inf if there is none."""
    found_t0 = 0.0
    found_cost = np.inf
    for s in range(len(starts)):
        d, p, t0 = _start_along(fx, fy, fz, ft, fl, m, starts[s, 0], starts[s, 1], starts[s, 2],
                                sigma_fine, sigma_lnrho, work)  # fmt: skip
        t0, cost, _ = _fit_track(x, y, z, t, lnrho, n, d, p, t0, sigma, sigma_lnrho, max_iter)
        apart = d[0] * best_d[0] + d[1] * best_d[1] + d[2] * best_d[2] < separation_cos
        if apart and cost < best_time + slack and cost < found_cost:
            found_t0, found_cost = t0, cost
            out_d[:] = d
            out_p[:] = p
    return found_t0, found_cost


@nb.njit(cache=True)
def fit_tracks(
    pos,
    pmt_dir,
    t,
    lnrho,
    first,
    scan,
    offsets,
    mirror_axes,
    directions,
    cone,
    n_best,
    n_starts,
    min_separation_cos,
    sigma_coarse,
    sigma_fine,
    sigma,
    sigma_lnrho,
    max_iter,
    out_dir,
    out_pos,
    out_t,
    out_cost,
    out_mirror_cost,
    out_iterations,
    min_loo_doms,
    max_loo_doms,
    facing_weight,
    out_res,
    out_loo,
    spread_starts,
    spread_max_doms,
    spread_iterations,
    spread_slack,
    loo_iterations,
    multiplicity_weight,
    alt_starts,
    alt_iterations,
    alt_separation_cos,
    out_alt_dir,
    out_alt_pos,
    out_alt_t,
    out_alt_cost,
    alt_tried,
    alt_slack,
):
    """Prefit and robust fit of every event; the outputs are filled row by row.

    ``first`` marks each DOM's first hit, ``scan`` those the prefit scans (first hits of
    the brightest DOMs, bounded in number); all hits enter the final fit,
    and those with a finite ``lnrho`` a distance term too (see ``_track_terms``).
    ``mirror_axes[k]`` are the (x, y) of the two DUs of a two-DU event (NaN otherwise): its
    mirror solution is fitted too. Candidates (the starts, the mirror) are compared by
    their robust time cost plus ``facing_weight`` times :func:`_facing_cost` of their hits'
    PMT directions (``pmt_dir``) plus ``multiplicity_weight`` times
    :func:`_multiplicity_cost` of their DOMs' hit counts; the best is kept,
    ``out_mirror_cost`` is the mirror's minus the kept one's (how clearly the PMTs chose).
    Events with at most ``spread_max_doms`` DOMs are also fitted from ``spread_starts`` (see
    the loop). Events the prefit cannot handle get NaN. Events with at least ``min_loo_doms``
    and at most ``max_loo_doms`` DOMs get leave-one-DOM-out residuals of each DOM's first hit
    (``out_loo``, NaN elsewhere). Hits of a DOM must be adjacent, its first hit first.
    Events with ``alt_tried`` get :func:`_time_alternative` (``out_alt_*``; NaN if none).
    """
    for k in range(len(offsets) - 1):
        lo, hi = offsets[k], offsets[k + 1]
        n = hi - lo
        out_cost[k] = np.nan
        out_mirror_cost[k] = np.nan
        out_iterations[k] = 0
        out_alt_cost[k] = np.nan
        # centre positions and times: the linear estimator squares them
        cx = cy = cz = 0.0
        t_ref = t[lo]
        for i in range(lo, hi):
            cx += pos[i, 0]
            cy += pos[i, 1]
            cz += pos[i, 2]
            t_ref = min(t_ref, t[i])
        cx /= n
        cy /= n
        cz /= n
        x = np.empty(n)
        y = np.empty(n)
        z = np.empty(n)
        tt = np.empty(n)
        ln_distance = lnrho[lo:hi]
        dirs = pmt_dir[lo:hi]
        fs = first[lo:hi]
        for i in range(n):
            x[i] = pos[lo + i, 0] - cx
            y[i] = pos[lo + i, 1] - cy
            z[i] = pos[lo + i, 2] - cz
            tt[i] = t[lo + i] - t_ref
        m = 0
        for i in range(n):
            if scan[lo + i]:
                m += 1
        if m < 3 or n < 5:
            continue
        fx = np.empty(m)
        fy = np.empty(m)
        fz = np.empty(m)
        ft = np.empty(m)
        fl = np.empty(m)
        fd = np.empty((m, 3))
        j = 0
        for i in range(n):
            if scan[lo + i]:
                fx[j], fy[j], fz[j], ft[j], fl[j] = x[i], y[i], z[i], tt[i], ln_distance[i]
                fd[j, 0], fd[j, 1], fd[j, 2] = dirs[i, 0], dirs[i, 1], dirs[i, 2]
                j += 1
        best_dir = np.zeros((n_best, 3))
        found = _prefit(
            fx, fy, fz, ft, fl, fd, m, x, y, z, dirs, facing_weight, directions, cone, n_best,
            sigma_coarse, sigma_fine, sigma_lnrho, best_dir,
        )  # fmt: skip
        if found == 0:
            continue
        work = np.empty((m, 3))
        best_cost = np.inf
        best_d = np.zeros(3)
        best_p = np.zeros(3)
        best_t0 = 0.0
        best_time = np.inf
        chosen = np.zeros((n_starts, 3))
        n_chosen = 0
        for s in range(found):
            dx, dy, dz = best_dir[s, 0], best_dir[s, 1], best_dir[s, 2]
            distinct = True
            for c in range(n_chosen):
                if dx * chosen[c, 0] + dy * chosen[c, 1] + dz * chosen[c, 2] > min_separation_cos:
                    distinct = False
            if not distinct:
                continue
            chosen[n_chosen, 0], chosen[n_chosen, 1], chosen[n_chosen, 2] = dx, dy, dz
            n_chosen += 1
            d, p, t0 = _start_along(fx, fy, fz, ft, fl, m, dx, dy, dz, sigma_fine, sigma_lnrho,
                                    work)  # fmt: skip
            t0, cost, iterations, time_cost = _fit_facing(
                x, y, z, tt, ln_distance, dirs, fs, n, d, p, t0, sigma, sigma_lnrho, max_iter,
                facing_weight, multiplicity_weight,
            )  # fmt: skip
            out_iterations[k] += iterations
            if cost < best_cost:
                best_cost, best_t0, best_time = cost, t0, time_cost
                best_d[:] = d
                best_p[:] = p
            if n_chosen == n_starts:
                break
        n_doms = 0
        for i in range(lo, hi):
            if first[i]:
                n_doms += 1
        if n_doms <= spread_max_doms:
            # the scan's ranking misses the true basin of small events (its linear estimate
            # on first hits is not robust): starts spread over the sphere, a few iterations
            # each, those that come near the best fitted on
            for s in range(len(spread_starts)):
                dx, dy, dz = spread_starts[s, 0], spread_starts[s, 1], spread_starts[s, 2]
                d, p, t0 = _start_along(fx, fy, fz, ft, fl, m, dx, dy, dz, sigma_fine,
                                        sigma_lnrho, work)  # fmt: skip
                t0, cost, iterations, time_cost = _fit_facing(
                    x, y, z, tt, ln_distance, dirs, fs, n, d, p, t0, sigma, sigma_lnrho,
                    spread_iterations, facing_weight, multiplicity_weight,
                )  # fmt: skip
                if cost < best_cost + spread_slack:
                    t0, cost, more, time_cost = _fit_facing(
                        x, y, z, tt, ln_distance, dirs, fs, n, d, p, t0, sigma, sigma_lnrho,
                        max_iter, facing_weight, multiplicity_weight,
                    )  # fmt: skip
                    iterations += more
                out_iterations[k] += iterations
                if cost < best_cost:
                    best_cost, best_t0, best_time = cost, t0, time_cost
                    best_d[:] = d
                    best_p[:] = p
        if not np.isfinite(best_cost):
            continue
        if np.isfinite(mirror_axes[k, 0]):
            axis_a = np.array([mirror_axes[k, 0] - cx, mirror_axes[k, 1] - cy])
            axis_b = np.array([mirror_axes[k, 2] - cx, mirror_axes[k, 3] - cy])
            d = np.empty(3)
            p = np.empty(3)
            _mirror(best_d, best_p, axis_a, axis_b, d, p)
            t0, cost, iterations, time_cost = _fit_facing(
                x, y, z, tt, ln_distance, dirs, fs, n, d, p, best_t0, sigma, sigma_lnrho,
                max_iter, facing_weight, multiplicity_weight,
            )  # fmt: skip
            out_iterations[k] += iterations
            out_mirror_cost[k] = abs(cost - best_cost)
            if cost < best_cost:
                best_cost, best_t0, best_time = cost, t0, time_cost
                best_d[:] = d
                best_p[:] = p
        if alt_tried[k]:
            alt_d = np.full(3, np.nan)
            alt_p = np.zeros(3)
            alt_t0, alt_cost = _time_alternative(
                x, y, z, tt, ln_distance, n, fx, fy, fz, ft, fl, m, best_d, best_time, alt_slack,
                alt_starts, alt_iterations, alt_separation_cos, sigma_fine, sigma, sigma_lnrho,
                work, alt_d, alt_p,
            )  # fmt: skip
            if np.isfinite(alt_cost):
                along = -(alt_p[0] * alt_d[0] + alt_p[1] * alt_d[1] + alt_p[2] * alt_d[2])
                for a in range(3):
                    out_alt_dir[k, a] = alt_d[a]
                    out_alt_pos[k, a] = alt_p[a] + along * alt_d[a]
                out_alt_pos[k, 0] += cx
                out_alt_pos[k, 1] += cy
                out_alt_pos[k, 2] += cz
                out_alt_t[k] = alt_t0 + along / C + t_ref
                out_alt_cost[k] = alt_cost
        # report the point of the track closest to the hits' centre (the origin here)
        along = -(best_p[0] * best_d[0] + best_p[1] * best_d[1] + best_p[2] * best_d[2])
        for a in range(3):
            best_p[a] += along * best_d[a]
        best_t0 += along / C
        out_cost[k] = _track_residuals(
            x, y, z, tt, ln_distance, n, best_d, best_p, best_t0, sigma, sigma_lnrho,
            out_res[lo:hi],
        )  # fmt: skip
        if min_loo_doms <= n_doms <= max_loo_doms:
            _leave_one_dom_out(
                x, y, z, tt, ln_distance, first[lo:hi], n, best_d, best_p, best_t0, sigma,
                sigma_lnrho, loo_iterations, out_loo[lo:hi],
            )  # fmt: skip
        out_dir[k, 0], out_dir[k, 1], out_dir[k, 2] = best_d[0], best_d[1], best_d[2]
        out_pos[k, 0], out_pos[k, 1], out_pos[k, 2] = best_p[0] + cx, best_p[1] + cy, best_p[2] + cz
        out_t[k] = best_t0 + t_ref


@nb.njit(cache=True)
def refit_tracks(pos, t, offsets, sigma, max_iter, io_dir, io_pos, io_t, out_cost):
    """Robust fit of each event's hits from its track (``io_*``, updated in place; rows
    with a NaN direction are skipped), as after adding the snapshot hits of a road."""
    for k in range(len(offsets) - 1):
        lo, hi = offsets[k], offsets[k + 1]
        n = hi - lo
        out_cost[k] = np.nan
        if n < N_TRACK + 1 or not np.isfinite(io_dir[k, 0]):
            continue
        x = pos[lo:hi, 0] - io_pos[k, 0]
        y = pos[lo:hi, 1] - io_pos[k, 1]
        z = pos[lo:hi, 2] - io_pos[k, 2]
        tt = t[lo:hi] - io_t[k]
        lnrho = np.full(n, np.nan)
        d = io_dir[k].copy()
        p = np.zeros(3)
        t0, cost, _ = _fit_track(x, y, z, tt, lnrho, n, d, p, 0.0, sigma, 1.0, max_iter)
        out_cost[k] = cost
        io_dir[k] = d
        io_pos[k] = p + io_pos[k]
        io_t[k] = t0 + io_t[k]


@nb.njit(cache=True)
def road_first_hits(values, fit, group_offsets, track_dir, track_pos, track_t, road_m,
                    low_ns, high_ns, out_row, out_residual):  # fmt: skip
    """Per group of hits (one fit, one DOM; ``values`` rows x, y, z, t): the row of the hit
    with the lowest residual among those within ``road_m`` of the fit's track and in
    [low_ns, high_ns] of its time (-1: none), and that residual."""
    road2 = road_m * road_m
    for g in range(len(group_offsets) - 1):
        out_row[g] = -1
        for i in range(group_offsets[g], group_offsets[g + 1]):
            k = fit[i]
            dx = values[i, 0] - track_pos[k, 0]
            dy = values[i, 1] - track_pos[k, 1]
            dz = values[i, 2] - track_pos[k, 2]
            along = dx * track_dir[k, 0] + dy * track_dir[k, 1] + dz * track_dir[k, 2]
            rho2 = max(dx * dx + dy * dy + dz * dz - along * along, 0.0)
            if rho2 >= road2:
                continue
            r = values[i, 3] - (track_t[k] + (along + K * np.sqrt(rho2)) / C)
            if r < low_ns or r > high_ns:
                continue
            if out_row[g] < 0 or r < out_residual[g]:
                out_row[g] = i
                out_residual[g] = r


# --- single-line fit: ROy's four parameters ---------------------------------------------


@nb.njit(cache=True)
def _line_terms(z, t, n, q, sigma, jac, res, weight):
    """Residuals, weights and Jacobian of t(z) at q = (d_c, z_c, theta, t_c)."""
    cos_t = np.cos(q[2])
    sin_t = np.sin(q[2])
    cost = 0.0
    for i in range(n):
        dz = z[i] - q[1]
        rho = np.sqrt(q[0] * q[0] + dz * dz * sin_t * sin_t + RHO_FLOOR_M2)
        r = t[i] - (q[3] + (dz * cos_t + K * rho) / C)
        res[i] = r
        loss, weight[i] = _time_loss(r / sigma)
        cost += loss
        jac[i, 0] = K * q[0] / (rho * C)
        jac[i, 1] = (-cos_t - K * dz * sin_t * sin_t / rho) / C
        jac[i, 2] = (-dz * sin_t + K * dz * dz * sin_t * cos_t / rho) / C
        jac[i, 3] = 1.0
    return cost


@nb.njit(cache=True)
def _line_count_terms(floor_z, floor_k, q, scale, normal, grad, ln_f, score):
    """Hit-count cost of the line solution q, and (times ``scale``) its Fisher matrix and
    descent direction added to ``normal`` and ``grad``.

    The cost is -2 ln of the multinomial probability of the hit counts ``floor_k`` of the
    DU's floors (heights ``floor_z``, zero for a floor that saw nothing): each floor's share
    is its share of the track's direct light, exp(-path / ATTENUATION_M) / rho with path =
    rho / sin θc (as :func:`_multiplicity_cost`). The light yield is profiled out, so the
    score of a floor is its d ln(share) less the light-weighted mean over the floors. The
    count profile along the DU is what one time per floor hardly gives: how far the track
    passes (d_c) against how steep it is (theta).
    """
    m = len(floor_z)
    cos_t = np.cos(q[2])
    sin_t = np.sin(q[2])
    max_ln = -np.inf
    for j in range(m):
        dz = floor_z[j] - q[1]
        rho = np.sqrt(q[0] * q[0] + dz * dz * sin_t * sin_t + 1.0)
        ln_f[j] = _ln_light_share(rho)
        max_ln = max(max_ln, ln_f[j])
        d_ln_f = -1.0 / (SIN_C * ATTENUATION_M) - 1.0 / rho
        score[j, 0] = d_ln_f * q[0] / rho
        score[j, 1] = -d_ln_f * dz * sin_t * sin_t / rho
        score[j, 2] = d_ln_f * dz * dz * sin_t * cos_t / rho
        score[j, 3] = 0.0
    total_f = 0.0
    total_k = 0.0
    mean0 = mean1 = mean2 = 0.0  # light-weighted mean score (theta's 4th is zero)
    for j in range(m):
        f = np.exp(ln_f[j] - max_ln)
        ln_f[j] = f  # from here on: the floor's light, relative to the brightest
        total_f += f
        total_k += floor_k[j]
        mean0 += f * score[j, 0]
        mean1 += f * score[j, 1]
        mean2 += f * score[j, 2]
    if total_k <= 0.0:
        return 0.0
    mean0 /= total_f
    mean1 /= total_f
    mean2 /= total_f
    cost = 0.0
    for j in range(m):
        share = ln_f[j] / total_f
        cost -= 2.0 * floor_k[j] * np.log(share)
        mu = total_k * share
        score[j, 0] -= mean0
        score[j, 1] -= mean1
        score[j, 2] -= mean2
        for a in range(3):
            grad[a] += scale * floor_k[j] * score[j, a]
            for b in range(3):
                normal[a, b] += scale * mu * score[j, a] * score[j, b]
    return cost


@nb.njit(cache=True)
def _line_cost(z, t, n, q, sigma, floor_z, floor_k, count_weight, jac, res, weight,
               normal, grad, ln_f, score):  # fmt: skip
    """Time cost + ``count_weight`` x hit-count cost at q; the Gauss-Newton normal matrix
    and right-hand side of both in ``normal`` and ``grad``."""
    cost = _line_terms(z, t, n, q, sigma, jac, res, weight)
    for a in range(N_LINE):
        grad[a] = 0.0
        for b in range(N_LINE):
            normal[a, b] = 0.0
    for i in range(n):
        for a in range(N_LINE):
            wa = weight[i] * jac[i, a]
            grad[a] += wa * res[i]
            for b in range(N_LINE):
                normal[a, b] += wa * jac[i, b]
    if count_weight > 0.0:
        # the time terms above are in units of the cost's curvature times sigma² / 2
        scale = count_weight * sigma * sigma
        cost += count_weight * _line_count_terms(floor_z, floor_k, q, scale, normal, grad,
                                                 ln_f, score)  # fmt: skip
    return cost


@nb.njit(cache=True)
def _line_work(n, m):
    """Work arrays of :func:`_fit_line` for up to n hits and m floors."""
    return (np.empty((n, N_LINE)), np.empty(n), np.empty(n), np.empty((4, N_LINE, N_LINE)),
            np.empty((4, N_LINE)), np.empty(m), np.empty((m, N_LINE)))  # fmt: skip


@nb.njit(cache=True)
def _fit_line(z, t, n, q, sigma, max_iter, floor_z, floor_k, count_weight, work,
              keep_theta=False):  # fmt: skip
    """Robust LM fit of the single-line model from q (updated in place) on the times and,
    with a ``count_weight``, the floors' hit counts; returns the cost. ``keep_theta``: the
    zenith stays as it is. ``work``: from :func:`_line_work`, so that the many starts of a
    fit allocate nothing."""
    jac, res, weight, matrices, vectors, ln_f, score = work
    normal, trial_normal, trial = matrices[0], matrices[1], matrices[2]
    grad, trial_grad, step, new_q = vectors[0], vectors[1], vectors[2], vectors[3]
    cost = _line_cost(z, t, n, q, sigma, floor_z, floor_k, count_weight, jac, res, weight,
                      normal, grad, ln_f, score)  # fmt: skip
    damping = 1e-3
    for _ in range(max_iter):
        improved = False
        for _ in range(8):
            trial[:] = normal
            step[:] = grad
            if keep_theta:
                trial[2, :] = 0.0
                trial[:, 2] = 0.0
                trial[2, 2] = 1.0
                step[2] = 0.0
            for a in range(N_LINE):
                trial[a, a] += damping * normal[a, a] + 1e-12
            if not _solve(trial, step, N_LINE):
                damping *= 10.0
                continue
            for a in range(N_LINE):
                new_q[a] = q[a] + step[a]
            new_cost = _line_cost(z, t, n, new_q, sigma, floor_z, floor_k, count_weight, jac,
                                  res, weight, trial_normal, trial_grad, ln_f,
                                  score)  # fmt: skip
            if new_cost <= cost:
                converged = cost - new_cost < 1e-7 * (1.0 + cost)
                q[:] = new_q
                cost = new_cost
                normal[:] = trial_normal
                grad[:] = trial_grad
                damping = max(damping / 5.0, 1e-9)
                improved = True
                if converged:
                    return cost
                break
            damping *= 8.0
        if not improved:
            break
    return cost


@nb.njit(cache=True)
def fit_lines(z, t, offsets, floor_z, floor_k, floor_offsets, starts, sigma, max_iter,
              start_iter, count_weight, n_refined, n_joint, line_time_slack, out_q,
              out_cost, out_res):  # fmt: skip
    """Single-line fits, one per group of hits (one hit per floor of one DU).

    ``starts[k]`` are start values (d_c, z_c, theta, t_c), NaN rows unused. Each is fitted
    for ``start_iter`` iterations on the times and ``count_weight`` x the hit counts of the
    DU's floors (``floor_k``, heights ``floor_z``, rows ``floor_offsets[k]:[k + 1]``); the
    ``n_refined`` lowest are fitted to convergence on the times, and the ``n_joint`` lowest
    of those on both. Of these solutions, those within ``line_time_slack`` of the lowest
    time cost compete on time + count cost. theta is the polar angle of the direction of
    travel; d_c >= 0; ``out_cost`` is the time cost alone.
    """
    most_hits = 0
    most_floors = 0
    for k in range(len(offsets) - 1):
        most_hits = max(most_hits, offsets[k + 1] - offsets[k])
        most_floors = max(most_floors, floor_offsets[k + 1] - floor_offsets[k])
    work = _line_work(most_hits, most_floors)
    for k in range(len(offsets) - 1):
        lo, hi = offsets[k], offsets[k + 1]
        n = hi - lo
        out_cost[k] = np.nan
        if n < N_LINE:
            continue
        t_ref = t[lo]
        for i in range(lo, hi):
            t_ref = min(t_ref, t[i])
        zz = z[lo:hi].copy()
        tt = t[lo:hi] - t_ref
        fz = floor_z[floor_offsets[k] : floor_offsets[k + 1]]
        fk = floor_k[floor_offsets[k] : floor_offsets[k + 1]]
        kept = max(n_refined, 1)
        best_cost = np.full(kept, np.inf)
        best_q = np.zeros((kept, N_LINE))
        n_starts = 0
        for s in range(starts.shape[1]):
            n_starts += np.isfinite(starts[k, s, 0])
        for s in range(starts.shape[1]):
            if not np.isfinite(starts[k, s, 0]):
                continue
            q = starts[k, s].copy()
            q[3] -= t_ref
            if n_starts <= kept:  # all of them go on to convergence: no ranking needed
                taken = 0
                while np.isfinite(best_cost[taken]):
                    taken += 1
                best_cost[taken] = 0.0
                best_q[taken] = q
                continue
            cost = _fit_line(zz, tt, n, q, sigma, start_iter, fz, fk, 0.0, work)
            if count_weight > 0.0:  # ranked with the count term
                cost += count_weight * _line_count_terms(
                    fz, fk, q, 0.0, work[3][0], work[4][0], work[5], work[6]
                )
            if cost < best_cost[kept - 1]:  # insert into the kept list, lowest first
                j = kept - 1
                while j > 0 and cost < best_cost[j - 1]:
                    best_cost[j] = best_cost[j - 1]
                    best_q[j] = best_q[j - 1]
                    j -= 1
                best_cost[j] = cost
                best_q[j] = q
        if not np.isfinite(best_cost[0]):
            continue
        # each kept start fitted on the times, and from there on times and counts: the
        # solutions, their time costs and their time + count costs
        options = np.zeros((kept + n_joint, N_LINE))
        time_cost = np.full(kept + n_joint, np.inf)
        total_cost = np.full(kept + n_joint, np.inf)
        for o in range(kept + n_joint):
            if o < kept:  # on the times, to convergence
                if not np.isfinite(best_cost[o]):
                    continue
                q = best_q[o].copy()
                _fit_line(zz, tt, n, q, sigma, max_iter, fz, fk, 0.0, work)
            else:  # the lowest n_joint of those, on times and counts
                if count_weight <= 0.0:
                    break
                j = np.argsort(total_cost[:kept])[o - kept]
                if not np.isfinite(total_cost[j]):
                    break
                q = options[j].copy()
                _fit_line(zz, tt, n, q, sigma, max_iter, fz, fk, count_weight, work)
            options[o] = q
            time_cost[o] = _line_terms(zz, tt, n, q, sigma, work[0], work[1], work[2])
            total_cost[o] = time_cost[o]
            if count_weight > 0.0:
                total_cost[o] += count_weight * _line_count_terms(
                    fz, fk, q, 0.0, work[3][0], work[4][0], work[5], work[6]
                )
        # the counts choose only among solutions whose times fit about as well as the
        # best's: counts that the light model does not describe (a DOM's efficiency, a
        # bright shower, hits cut by the trigger) must not pull the line off its hits
        best_time = time_cost.min()
        chosen = options[np.argmin(time_cost)].copy()
        lowest = np.inf
        for o in range(kept + n_joint):
            if time_cost[o] <= best_time + line_time_slack and total_cost[o] < lowest:
                lowest = total_cost[o]
                chosen[:] = options[o]
        out_cost[k] = _line_terms(zz, tt, n, chosen, sigma, work[0], out_res[lo:hi], work[2])
        theta = chosen[2] % (2 * np.pi)
        if theta > np.pi:  # theta and -theta are the same line fit: keep [0, pi]
            theta = 2 * np.pi - theta
        out_q[k, 0] = abs(chosen[0])
        out_q[k, 1] = chosen[1]
        out_q[k, 2] = theta
        out_q[k, 3] = chosen[3] + t_ref


@nb.njit(cache=True)
def fit_lines_at_zenith(z, t, offsets, q, sigma, max_iter, out_cost, out_res):
    """The times' fit of d_c, z_c and t_c of each line in ``q`` (rows of NaN skipped),
    its zenith kept, as :func:`fit_lines` fits them (``q``, ``out_cost`` and the hits'
    ``out_res`` updated): the residuals of a line whose zenith came from elsewhere."""
    most_hits = 0
    for k in range(len(offsets) - 1):
        most_hits = max(most_hits, offsets[k + 1] - offsets[k])
    work = _line_work(most_hits, 0)
    no_floors = np.zeros(0)
    for k in range(len(offsets) - 1):
        lo, hi = offsets[k], offsets[k + 1]
        if hi - lo < N_LINE or not np.isfinite(q[k, 0]):
            continue
        t_ref = t[lo:hi].min()
        tt = t[lo:hi] - t_ref
        line = q[k].copy()
        line[3] -= t_ref
        _fit_line(z[lo:hi], tt, hi - lo, line, sigma, max_iter, no_floors, no_floors, 0.0,
                  work, True)  # fmt: skip
        out_cost[k] = _line_terms(z[lo:hi], tt, hi - lo, line, sigma, work[0], out_res[lo:hi],
                                  work[2])  # fmt: skip
        q[k, 0] = abs(line[0])
        q[k, 1] = line[1]
        q[k, 3] = line[3] + t_ref
