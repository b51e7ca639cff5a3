"""K40 intra-DOM calibration: a Gaussian per PMT pair, then PMT offsets, widths, efficiencies.

The method is km3pipe's (``docs/timeslices.md`` §3), the code our own, because km3pipe's
fit functions cannot be relied on: from 2020 they raised ``NameError`` (scipy imported only in
``fit_delta_ts``); km3pipe 11.0.0 imports scipy in each function, but scipy is an optional extra
of km3pipe (not installed with it); they fit one pair at a time with ``curve_fit``, hide any
failure behind a bare ``except`` (``calibrate_dom`` returns 0) and start the offset solve from
random numbers. Here:

1. **Pairs** (:func:`fit_pairs`). The counts of one pair in 1-ns bins of calibrated Δt are
   ``B + A exp(-(Δt - μ)² / 2σ²)`` where ``B`` is the accidental background, known from the
   singles: ``r_i r_j × 1 ns × livetime`` per bin (subtracted as km3pipe's
   ``K40BackgroundSubtractor`` does, but inside the model, so the bin errors stay Poisson).
   A Levenberg–Marquardt fit per pair (numba, Pearson χ²) gives ``μ`` (ns), ``σ`` (ns, the bin
   width's 1/12 ns² removed) and the genuine coincidence rate ``R = A √(2π) σ / livetime``
   (Hz), with errors from the curvature. ``livetime`` is the pair's own: frames in which either
   PMT was vetoed do not count (:class:`~km3mon.physics.twofolds.TwofoldCounter`).
   ``IO_TSL1`` holds only hits of L1 coincidences, pairs within the DataFilter's L1 window
   of calibrated Δt: beyond it (and a ±20 ns counting window reaches beyond it) there is
   neither background nor signal. The model is therefore multiplied by the window's
   acceptance per bin (:func:`l1_acceptance`), which also lets a peak cut by the window's edge
   be fitted for what it is.
2. **Offsets** (:func:`solve_doms`). Calibrated times are ``true - offset``, so a pair's mean
   is ``μ_ij = x_i - x_j`` with ``x`` the PMTs' offsets (true delay minus DETX t0). Weighted
   least squares over the fitted pairs (weights 1/σ_μ²) with the DOM's mean fixed at zero: the
   graph Laplacian plus a rank-one term, solved for all DOMs at once. ``t0_ns = x``: adding it
   to the DETX t0 corrects the DETX (the DOM's mean t0 stays as it was; K40 cannot see it).
3. **Widths**: ``σ_ij² = s_i² + s_j²``, linear in ``s²``.
4. **Efficiencies**: ``log R_ij = P(cos θ_ij) + l_i + l_j`` with a cubic ``P`` per DOM (the
   family of km3pipe's angular model) and ``Σ l = 0``; relative efficiency ``exp(l)``,
   normalised to a mean of 1 over the DOM's measured PMTs. km3pipe fixes ``P`` to its MC
   shape scaled to the data; fitting it needs no MC and absorbs the water's and PMT type's
   differences.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
from numba import njit

from km3mon.daq.summaryslice import N_CHANNELS
from km3mon.physics.twofolds import N_PAIRS, PAIR_I, PAIR_J, PeriodCounts

MIN_NET_COINCIDENCES = 20.0
MIN_SIGNIFICANCE = 4.0
MAX_MEAN_ERROR_NS = 2.0
MAX_RATE_RELATIVE_ERROR = 0.5
MIN_SIGMA_NS = 0.5
MAX_SIGMA_NS = 9.0
_BIN_VARIANCE_NS2 = 1.0 / 12.0
#: The DataFilter's L1 window (ns, integer TDC times) assumed by default: the simulator's.
DEFAULT_L1_WINDOW_NS = 10.0
_MAX_ITERATIONS = 40
#: DOMs whose pairs :func:`fit_period` fits at a time (their exact counts: 10 MB at 64).
FIT_DOMS = 64


@dataclass
class PairFits:
    """Per DOM and pair ``(n, 465)``: the Gaussian of its Δt distribution."""

    rate_hz: np.ndarray
    rate_error_hz: np.ndarray
    mean_ns: np.ndarray
    mean_error_ns: np.ndarray
    sigma_ns: np.ndarray
    sigma_error_ns: np.ndarray
    net_coincidences: np.ndarray
    valid: np.ndarray


@dataclass
class DOMCalibration:
    """Per DOM ``(n,)`` and per DOM and channel ``(n, 31)``; NaN where not measured."""

    t0_ns: np.ndarray
    t0_error_ns: np.ndarray
    width_ns: np.ndarray
    relative_efficiency: np.ndarray
    relative_efficiency_error: np.ndarray
    n_coincidences: np.ndarray
    #: Pair means before (μ) and after correction (μ - (x_i - x_j)), and rates before and
    #: after (R / (q_i q_j)), per DOM and pair.
    corrected_mean_ns: np.ndarray
    corrected_rate_hz: np.ndarray
    rms_before_ns: np.ndarray
    rms_after_ns: np.ndarray
    k40_rate_hz: np.ndarray
    n_pairs: np.ndarray


def fit_pairs(
    counts: np.ndarray,
    background_per_bin: np.ndarray,
    livetime_s: np.ndarray,
    bin_shift_ns: np.ndarray,
    l1_window_ns: float | None = DEFAULT_L1_WINDOW_NS,
    out: np.ndarray | None = None,
) -> PairFits:
    """Fit every pair of every DOM: ``counts (n, 465, bins)``, expected accidentals per bin
    inside the L1 window ``(n, 465)``, livetime per DOM ``(n,)`` or per pair ``(n, 465)``,
    calibrated Δt of bin centres minus their integer Δt ``(n, 465)``; ``l1_window_ns``: the
    DataFilter's L1 window (None: hits not selected by one, all bins accepted). ``out``: an
    ``(8, n, 465)`` float64 array to copy the fits to (a part of a larger one), else a new
    one; the fits are views into it."""
    n = counts.shape[0]
    fitted = np.full((8, n, N_PAIRS), np.nan)  # contiguous: one compiled kernel for all
    livetime = np.broadcast_to(np.asarray(livetime_s, np.float64).reshape(n, -1), (n, N_PAIRS))
    _fit_all(
        np.ascontiguousarray(counts),
        np.ascontiguousarray(background_per_bin, np.float64),
        np.ascontiguousarray(livetime),
        np.ascontiguousarray(bin_shift_ns, np.float64),
        -1.0 if l1_window_ns is None else float(l1_window_ns),
        fitted,
    )
    if out is None:
        out = fitted
    else:
        out[...] = fitted
    valid = out[7] > 0
    return PairFits(*out[:7], valid)


def fit_period(
    counts: PeriodCounts,
    background_per_bin: np.ndarray,
    livetime_s: np.ndarray,
    bin_shift_ns: np.ndarray,
    l1_window_ns: float | None = DEFAULT_L1_WINDOW_NS,
) -> PairFits:
    """:func:`fit_pairs` of a period's counts, :data:`FIT_DOMS` DOMs at a time into one
    float32 result array (62 MB at 230 DUs, float64 took 123; a few 1e-7 of each value):
    the parts' exact counts (int64) take a few MB, where the whole detector's would take 630.
    ``livetime_s`` per pair ``(n, 465)``. A ``TwofoldCounter``'s counts are used up: each
    part's bins go back to the system once it is fitted (:meth:`PeriodCounts.release`)."""
    out = np.empty((8, len(counts), N_PAIRS), np.float32)  # its pages filled part by part
    for first in range(0, len(counts), FIT_DOMS):
        part = slice(first, first + FIT_DOMS)
        out[:, part] = np.nan
        fit_pairs(counts.dense(first, part.stop), background_per_bin[part], livetime_s[part],
                  bin_shift_ns[part], l1_window_ns, out=out[:, part])  # fmt: skip
        counts.release(first, part.stop)  # the fitted bins go while the result grows
    return PairFits(*out[:7], out[7] > 0)


@njit(cache=True, inline="always")
def l1_acceptance(delta_ns: float, window_ns: float) -> float:
    """Share of the pairs at calibrated Δt ``delta_ns`` (bin centre: raw TDC difference plus
    DETX t0 difference) inside the L1 window: the L1 is decided on continuous times, which differ
    from the bin's by the two TDC roundings (a triangle of ±1 ns); within ``window_ns`` on
    integer times means under ``window_ns + 1`` on continuous ones. ``window_ns < 0``: none."""
    if window_ns < 0:
        return 1.0
    margin = window_ns + 1.0 - abs(delta_ns)  # the rounding must stay below it
    if margin >= 1.0:
        return 1.0
    if margin <= -1.0:
        return 0.0
    if margin < 0.0:
        return 0.5 * (1.0 + margin) ** 2
    return 1.0 - 0.5 * (1.0 - margin) ** 2


@njit(cache=True, nogil=True)  # on the k40 fitting thread: counting goes on meanwhile
def _fit_all(counts, background, livetime, shift, l1_window, out):  # fmt: skip
    n_doms, n_pairs, n_bins = counts.shape
    tmax = (n_bins - 1) // 2
    x = np.empty(n_bins)
    acceptance = np.empty(n_bins)
    for dom in range(n_doms):
        for pair in range(n_pairs):
            if livetime[dom, pair] <= 0:
                continue
            for k in range(n_bins):
                x[k] = k - tmax + shift[dom, pair]
                acceptance[k] = l1_acceptance(x[k], l1_window)
            result = _fit_one(counts[dom, pair], background[dom, pair], acceptance, x, tmax)
            amplitude, mean, sigma, cov_aa, cov_mm, cov_ss, cov_as, net, ok = result
            width = math.sqrt(max(sigma * sigma - _BIN_VARIANCE_NS2, 0.01))
            scale = math.sqrt(2 * math.pi) / livetime[dom, pair]
            rate = amplitude * sigma * scale
            relative = cov_aa / max(amplitude, 1e-9) ** 2 + cov_ss / sigma**2
            relative += 2 * cov_as / max(amplitude * sigma, 1e-9)
            out[0, dom, pair] = rate
            out[1, dom, pair] = rate * math.sqrt(max(relative, 0.0))
            out[2, dom, pair] = mean
            out[3, dom, pair] = math.sqrt(max(cov_mm, 0.0))
            out[4, dom, pair] = width
            out[5, dom, pair] = math.sqrt(max(cov_ss, 0.0)) * sigma / width
            out[6, dom, pair] = net
            out[7, dom, pair] = 1.0 if ok else 0.0


@njit(cache=True)
def _fit_one(y, background, acceptance, x, tmax):  # fmt: skip
    """Levenberg–Marquardt for ``acceptance × (background + A exp(-(x - μ)² / 2σ²))``,
    Pearson weights."""
    n = len(y)
    net = 0.0
    total = 0.0
    for k in range(n):
        net += y[k] - acceptance[k] * background
        total += y[k]
    if net < MIN_NET_COINCIDENCES or net < MIN_SIGNIFICANCE * math.sqrt(max(total, 1.0)):
        return 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, net, False
    # start from the moments of the background-subtracted counts
    weight_sum = 0.0
    first = 0.0
    peak = 0.0
    for k in range(n):
        w = max(y[k] - acceptance[k] * background, 0.0)
        weight_sum += w
        first += w * x[k]
        peak = max(peak, y[k] - acceptance[k] * background)
    mean = first / weight_sum
    second = 0.0
    for k in range(n):
        w = max(y[k] - acceptance[k] * background, 0.0)
        second += w * (x[k] - mean) ** 2
    sigma = min(max(math.sqrt(second / weight_sum), 1.0), 6.0)
    amplitude = max(peak, 1.0)
    params = np.array([amplitude, mean, sigma])
    chi2 = _chi2(y, background, acceptance, x, params)
    damping = 1e-3
    jtj = np.zeros((3, 3))
    jtr = np.zeros(3)
    converged = False
    for _ in range(_MAX_ITERATIONS):
        jtj[:] = 0.0
        jtr[:] = 0.0
        a, m, s = params[0], params[1], params[2]
        for k in range(n):
            d = x[k] - m
            c = acceptance[k]
            e = math.exp(-0.5 * d * d / (s * s))
            model = c * (background + a * e)
            w = 1.0 / max(model, 1.0)
            g0 = c * e
            g1 = c * a * e * d / (s * s)
            g2 = c * a * e * d * d / (s * s * s)
            r = y[k] - model
            jtr[0] += w * g0 * r
            jtr[1] += w * g1 * r
            jtr[2] += w * g2 * r
            jtj[0, 0] += w * g0 * g0
            jtj[0, 1] += w * g0 * g1
            jtj[0, 2] += w * g0 * g2
            jtj[1, 1] += w * g1 * g1
            jtj[1, 2] += w * g1 * g2
            jtj[2, 2] += w * g2 * g2
        jtj[1, 0] = jtj[0, 1]
        jtj[2, 0] = jtj[0, 2]
        jtj[2, 1] = jtj[1, 2]
        improved = False
        for _attempt in range(10):
            system = jtj.copy()
            for i in range(3):
                system[i, i] *= 1.0 + damping
            inverse = _inverse_3x3(system)
            if inverse[0, 0] != inverse[0, 0]:  # singular: damp harder
                damping *= 10.0
                continue
            trial = params.copy()
            for row in range(3):
                for column in range(3):
                    trial[row] += inverse[row, column] * jtr[column]
            trial[0] = max(trial[0], 1e-6)
            trial[1] = min(max(trial[1], -tmax - 2.0), tmax + 2.0)
            trial[2] = min(max(trial[2], MIN_SIGMA_NS * 0.5), MAX_SIGMA_NS + 1.0)
            trial_chi2 = _chi2(y, background, acceptance, x, trial)
            if trial_chi2 <= chi2:
                change = chi2 - trial_chi2
                params = trial
                chi2 = trial_chi2
                damping = max(damping / 3.0, 1e-9)
                improved = True
                if change < 1e-6 * max(chi2, 1.0):
                    converged = True
                break
            damping *= 4.0
        if converged or not improved:
            converged = True
            break
    covariance = _inverse_3x3(jtj)
    a, m, s = params[0], params[1], params[2]
    if covariance[0, 0] != covariance[0, 0]:  # singular: no errors
        return a, m, s, 0.0, 0.0, 0.0, 0.0, net, False
    ok = (
        converged
        and MIN_SIGMA_NS <= s <= MAX_SIGMA_NS
        and abs(m) < tmax
        and covariance[1, 1] > 0
        and math.sqrt(covariance[1, 1]) < MAX_MEAN_ERROR_NS
    )
    return a, m, s, covariance[0, 0], covariance[1, 1], covariance[2, 2], covariance[0, 2], net, ok


@njit(cache=True)
def _inverse_3x3(matrix):  # fmt: skip
    """Inverse by cofactors (numba's linear algebra needs scipy, which we do not); NaN if
    singular."""
    a, b, c = matrix[0, 0], matrix[0, 1], matrix[0, 2]
    d, e, f = matrix[1, 0], matrix[1, 1], matrix[1, 2]
    g, h, i = matrix[2, 0], matrix[2, 1], matrix[2, 2]
    cofactors = np.array(
        [
            [e * i - f * h, c * h - b * i, b * f - c * e],
            [f * g - d * i, a * i - c * g, c * d - a * f],
            [d * h - e * g, b * g - a * h, a * e - b * d],
        ]
    )
    determinant = a * cofactors[0, 0] + b * cofactors[1, 0] + c * cofactors[2, 0]
    scale = abs(a * e * i) + abs(b * f * g) + abs(c * d * h) + 1e-300
    if abs(determinant) < 1e-12 * scale:
        return np.full((3, 3), np.nan)
    return cofactors / determinant


@njit(cache=True)
def _chi2(y, background, acceptance, x, params):  # fmt: skip
    a, m, s = params[0], params[1], params[2]
    total = 0.0
    for k in range(len(y)):
        d = x[k] - m
        model = acceptance[k] * (background + a * math.exp(-0.5 * d * d / (s * s)))
        total += (y[k] - model) ** 2 / max(model, 1.0)
    return total


# -- per DOM ----------------------------------------------------------------------------

#: Signed incidence of the pairs: +1 at i, -1 at j (offsets), and unsigned (widths).
_SIGNED = np.zeros((N_PAIRS, N_CHANNELS))
_SIGNED[np.arange(N_PAIRS), PAIR_I] = 1.0
_SIGNED[np.arange(N_PAIRS), PAIR_J] = -1.0
_UNSIGNED = np.abs(_SIGNED)
PAIR_FIELDS = tuple(PairFits.__dataclass_fields__)
#: Per DOM and pair, only drawn (for a few DOMs): kept in float32 (15 MB each at 230 DUs).
_DRAWN_PER_PAIR = ("corrected_mean_ns", "corrected_rate_hz")


def _float64(values: np.ndarray) -> np.ndarray:
    """A part of the float32 pair fits, solved in float64 (booleans as they are)."""
    return values if values.dtype == bool else values.astype(np.float64)


def solve_doms(
    fits: PairFits, cos_angles: np.ndarray, present: np.ndarray, chunk: int = 64
) -> DOMCalibration:
    """PMT offsets, widths and efficiencies of every DOM from its pair fits.

    ``cos_angles``: cosine of each pair's opening angle ``(n, 465)``; ``present``: the DOM has
    that channel ``(n, 31)``. DOMs are solved ``chunk`` at a time (bounded memory at 4140 DOMs).
    """
    parts = []
    with warnings.catch_warnings():  # DOMs without data: NaN means of empty rows, no news
        warnings.simplefilter("ignore", RuntimeWarning)
        for start in range(0, len(present), chunk):
            part = slice(start, start + chunk)
            pair_fits = PairFits(*(_float64(getattr(fits, n)[part]) for n in PAIR_FIELDS))
            parts.append(_solve(pair_fits, cos_angles[part], present[part]))
    if not parts:
        return _solve(fits, cos_angles, present)
    return DOMCalibration(
        *(
            np.concatenate(
                [getattr(p, name) for p in parts],
                dtype=np.float32 if name in _DRAWN_PER_PAIR else None,
            )
            for name in DOMCalibration.__dataclass_fields__
        )
    )


def _solve(fits: PairFits, cos_angles: np.ndarray, present: np.ndarray) -> DOMCalibration:
    valid = fits.valid & np.isfinite(fits.mean_error_ns) & (fits.mean_error_ns > 0)
    weight = np.where(valid, 1.0 / np.maximum(fits.mean_error_ns, 1e-3) ** 2, 0.0)
    offsets, offset_errors, measured = _mean_zero_solve(weight, np.nan_to_num(fits.mean_ns))
    # one pass of outlier rejection: pairs more than 5 sigma (and 1 ns) off the solution
    residual = fits.mean_ns - (offsets[:, PAIR_I] - offsets[:, PAIR_J])
    outlier = np.abs(residual) > np.maximum(5 * fits.mean_error_ns, 1.0)
    if (outlier & valid).any():
        valid = valid & ~outlier
        weight = np.where(valid, weight, 0.0)
        offsets, offset_errors, measured = _mean_zero_solve(weight, np.nan_to_num(fits.mean_ns))
    measured &= present
    t0_ns = np.where(measured, offsets, np.nan)
    t0_error_ns = np.where(measured, offset_errors, np.nan)
    corrected_mean = np.where(
        valid, fits.mean_ns - (offsets[:, PAIR_I] - offsets[:, PAIR_J]), np.nan
    )

    width_ns = _widths(fits, valid, measured)
    efficiency, efficiency_error, corrected_rate = _efficiencies(fits, cos_angles, measured)
    net = np.where(valid, fits.net_coincidences, 0.0)
    n_coincidences = net @ _UNSIGNED
    with np.errstate(invalid="ignore"):
        rms_before = np.sqrt(np.nanmean(np.where(valid, fits.mean_ns, np.nan) ** 2, axis=1))
        rms_after = np.sqrt(np.nanmean(corrected_mean**2, axis=1))
    k40_rate = np.where(valid, fits.rate_hz, 0.0).sum(axis=1)
    return DOMCalibration(
        t0_ns=t0_ns,
        t0_error_ns=t0_error_ns,
        width_ns=width_ns,
        relative_efficiency=efficiency,
        relative_efficiency_error=efficiency_error,
        n_coincidences=np.where(measured, n_coincidences, 0.0),
        corrected_mean_ns=corrected_mean,
        corrected_rate_hz=corrected_rate,
        rms_before_ns=rms_before,
        rms_after_ns=rms_after,
        k40_rate_hz=k40_rate,
        n_pairs=valid.sum(axis=1),
    )


def _mean_zero_solve(
    weight: np.ndarray, mean_ns: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``argmin Σ w (μ_ij - (x_i - x_j))²`` with ``Σ x = 0`` over the measured PMTs, per DOM;
    returns ``x``, its errors and which PMTs were measured."""
    laplacian = (_SIGNED.T[None] * weight[:, None, :]) @ _SIGNED
    right = (weight * mean_ns) @ _SIGNED
    degree = np.einsum("nii->ni", laplacian)
    measured = degree > 0
    scale = np.where(measured.any(axis=1), degree.sum(axis=1) / np.maximum(measured.sum(1), 1), 1)
    v = measured.astype(float)
    system = laplacian + scale[:, None, None] * v[:, :, None] * v[:, None, :]
    system += np.eye(N_CHANNELS)[None] * (~measured)[:, :, None]  # unmeasured: x = 0
    inverse = np.linalg.pinv(system)
    solution = np.einsum("nij,nj->ni", inverse, right)
    n_measured = np.maximum(v.sum(axis=1), 1)
    covariance_diag = np.einsum("nii->ni", inverse) - v / (
        scale[:, None] * n_measured[:, None] ** 2
    )
    errors = np.sqrt(np.maximum(covariance_diag, 0.0))
    return solution, errors, measured


def _widths(fits: PairFits, valid: np.ndarray, measured: np.ndarray) -> np.ndarray:
    """``σ_ij² = s_i² + s_j²`` by weighted least squares, per DOM."""
    variance = np.nan_to_num(fits.sigma_ns) ** 2
    variance_error = 2 * np.nan_to_num(fits.sigma_ns) * np.nan_to_num(fits.sigma_error_ns)
    weight = np.where(valid, 1.0 / np.maximum(variance_error, 1e-3) ** 2, 0.0)
    normal = (_UNSIGNED.T[None] * weight[:, None, :]) @ _UNSIGNED
    normal += np.eye(N_CHANNELS)[None] * (~measured)[:, :, None]
    right = (weight * variance) @ _UNSIGNED
    squares = np.einsum("nij,nj->ni", np.linalg.pinv(normal), right)
    return np.where(measured, np.sqrt(np.maximum(squares, 0.0)), np.nan)


def _efficiencies(
    fits: PairFits, cos_angles: np.ndarray, measured: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``log R_ij = P(cos θ_ij) + l_i + l_j`` per DOM; relative efficiencies ``exp(l)``."""
    n = len(cos_angles)
    good = (
        fits.valid
        & (fits.rate_hz > 0)
        & (fits.rate_error_hz < MAX_RATE_RELATIVE_ERROR * fits.rate_hz)
        & measured[:, PAIR_I]
        & measured[:, PAIR_J]
    )
    log_rate = np.where(good, np.log(np.where(good, fits.rate_hz, 1.0)), 0.0)
    weight = np.where(good, (fits.rate_hz / np.maximum(fits.rate_error_hz, 1e-12)) ** 2, 0.0)
    ct = np.nan_to_num(cos_angles)
    polynomial = np.stack([np.ones_like(ct), ct, ct**2, ct**3], axis=-1)  # (n, 465, 4)
    design = np.concatenate([polynomial, np.broadcast_to(_UNSIGNED, (n, N_PAIRS, N_CHANNELS))], -1)
    normal = np.einsum("npa,np,npb->nab", design, weight, design)
    right = np.einsum("npa,np,np->na", design, weight, log_rate)
    # Σ l = 0 over the measured PMTs, as a heavy penalty; unmeasured PMTs pinned at l = 0
    constraint = np.concatenate([np.zeros((n, 4)), measured.astype(float)], axis=1)
    penalty = 1e3 * np.maximum(weight.sum(axis=1), 1.0)
    normal += penalty[:, None, None] * constraint[:, :, None] * constraint[:, None, :]
    pinned = np.concatenate([np.zeros((n, 4), bool), ~measured], axis=1)
    normal += np.eye(4 + N_CHANNELS)[None] * pinned[:, :, None]
    enough = good.sum(axis=1) >= 8
    covariance = np.linalg.pinv(normal)
    solution = np.einsum("nab,nb->na", covariance, right)
    logs = solution[:, 4:]
    usable = measured & enough[:, None]
    efficiency = np.where(usable, np.exp(logs), np.nan)
    with np.errstate(invalid="ignore"):
        efficiency /= np.nanmean(efficiency, axis=1, keepdims=True)
    error = efficiency * np.sqrt(np.maximum(np.einsum("nii->ni", covariance)[:, 4:], 0.0))
    q = np.nan_to_num(efficiency, nan=1.0)
    corrected_rate = np.where(fits.valid, fits.rate_hz / (q[:, PAIR_I] * q[:, PAIR_J]), np.nan)
    return efficiency, error, corrected_rate
