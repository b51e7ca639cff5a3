"""Fit ``km3mon.reco.light``'s eleven numbers on KM3NeT MC: the probability of every PMT's
first hit (or of none) in fine cells of distance ρ, cosine a and residual r against the true
muon, maximised (``bench/reco_kmc_likelihood.py`` prints the fits, by halves and on all)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import optimize

from km3mon.reco.light import PARAMETER_NAMES, WINDOW_NS, expected

#: Cells of the fit's data: distance (m), cosine a, residual (ns); a PMT beyond the last
#: distance sees K40 only.
RHO_EDGES = np.arange(0.0, 132.0, 3.0)
COS_EDGES = np.linspace(-1.0, 1.0, 17)
RESIDUAL_EDGES = np.r_[WINDOW_NS[0], -15, -8, -5, -3, -2, -1, np.arange(0, 6.0), 7, 10, 14, 20,
                       30, 45, 65, 100, 150, 200, WINDOW_NS[1]]  # fmt: skip
START = np.array([np.log(5.0), 40.0, np.log(0.5), 40.0, 0.5, 1.5, 5.0, 0.2, 2.0, 0.02, 0.0])
BOUNDS = [(-5, 8), (5, 200), (-8, 4), (5, 500), (0, 1), (0.3, 10), (0.1, 100), (0, 5),
          (0.5, 8), (0, 0.2), (-5, 5)]  # fmt: skip
assert len(START) == len(BOUNDS) == len(PARAMETER_NAMES)


@dataclass
class CellData:
    """Per (ρ, a) cell: its PMTs, their mean ρ and a, and their first hits by r bin."""

    rho: np.ndarray
    facing: np.ndarray
    pmts: np.ndarray
    first: np.ndarray  # (cells, residual bins)


def collect(samples: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> CellData:
    """``samples``: per event, every PMT's (ρ, a, first residual or NaN)."""
    rho, facing, first = (np.concatenate(x) for x in zip(*samples, strict=True))
    keep = rho < RHO_EDGES[-1]
    rho, facing, first = rho[keep], facing[keep], first[keep]
    n_rho, n_cos = len(RHO_EDGES) - 1, len(COS_EDGES) - 1
    cell = (np.clip(np.searchsorted(RHO_EDGES, rho) - 1, 0, n_rho - 1) * n_cos
            + np.clip(np.searchsorted(COS_EDGES, facing) - 1, 0, n_cos - 1))  # fmt: skip
    pmts = np.bincount(cell, minlength=n_rho * n_cos).astype(float)
    used = pmts > 0
    hit = np.isfinite(first)
    n_res = len(RESIDUAL_EDGES) - 1
    k = np.clip(np.searchsorted(RESIDUAL_EDGES, first[hit]) - 1, 0, n_res - 1)
    counts = np.bincount(cell[hit] * n_res + k, minlength=len(pmts) * n_res)
    return CellData(
        np.bincount(cell, rho, len(pmts))[used] / pmts[used],
        np.bincount(cell, facing, len(pmts))[used] / pmts[used],
        pmts[used],
        counts.reshape(len(pmts), n_res)[used].astype(float),
    )


def _minus_ln_l(params: np.ndarray, data: CellData, k40: float) -> float:
    total = expected(params, data.rho[:, None], data.facing[:, None], RESIDUAL_EDGES[None, :], k40)
    survive = np.exp(-total)
    p_first = np.maximum(survive[:, :-1] - survive[:, 1:], 1e-300)
    none = data.pmts - data.first.sum(axis=1)
    return float(-(data.first * np.log(p_first)).sum() + (none * total[:, -1]).sum())


def fit(data: CellData, k40: float) -> np.ndarray:
    """The parameters (``PARAMETER_NAMES``) that make the cells' first hits most probable."""
    options = {"maxiter": 2000, "maxfun": 50000}
    return optimize.minimize(_minus_ln_l, START, args=(data, k40), method="L-BFGS-B",
                             bounds=BOUNDS, options=options).x  # fmt: skip
