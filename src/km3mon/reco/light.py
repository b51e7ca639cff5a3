"""How a muon's light arrives on a PMT: smooth first-hit PDFs for ``likelihood``, from a
physical form with eleven numbers fitted on KM3NeT's own MC (``bench/light_model.py``).

Jpp reads such PDFs from tables of a light simulation this project cannot reach; measured
cell by cell on the 154 MC events of km3net-testdata they were too noisy (BENCHMARKS, stop
38), while eleven numbers of a physical form are fixed well by them (fitted on either half
of the events: attenuation lengths within 10 %, light yield within 15 %, the late light's
time scale within 25 %). The expected photo-electrons on a PMT at distance ρ from the muon,
with cosine a between the direct photon and the PMT's face, up to residual r:

- **direct light**: N0 ε(a) exp(-ρ / (sin θc λ)) / (ρ + 1 m), Cherenkov light spreading over
  a cylinder and absorbed along the photon's path, ε the PMT's angular acceptance (Jpp's
  curve, ``sim_events.acceptance``), arriving as a Gaussian of width √(σ0² + (σ1 ρ)²): the
  PMT's transit-time spread and the colour dispersion that grows with the path;
- **scattered and shower light**: N0 S ε_s(a) exp(-ρ / L) / (ρ + 1 m), late by a gamma
  distribution of shape k and scale τ0 + τ1 ρ; ε_s mixes ε with its mean over all directions
  (weight w), as scattered light arrives from everywhere;
- **K40**: b per ns.

A PMT's first hit has density rate(r) exp(-∫rate), none in the window exp(-∫rate): the tables
are both, as ratios to K40 alone.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from scipy import special

from km3mon.reco.model import SIN_CHERENKOV
from km3mon.sim.sim_events import acceptance

#: Residuals (ns) of a PMT's first hit that the likelihood looks at; later or earlier hits
#: are K40 noise to it.
WINDOW_NS = (-30.0, 300.0)
#: The model's numbers, in this order, fitted on the 154 KM3NeT MC events of ORCA-6
#: (50-500 GeV CC muons, KM3Sim light) against their true muons (``bench/light_model.py``).
PARAMETER_NAMES = ("ln_n0", "lambda_m", "ln_s", "l_scatter_m", "w", "shape", "tau0_ns",
                   "tau1_ns_m", "sigma0_ns", "sigma1_ns_m", "shift_ns")  # fmt: skip
KM3NET_MC_PARAMETERS = np.array([2.361, 29.68, -0.8394, 42.48, 0.6935, 0.8250, 27.43, 0.4321,
                                 2.165, 0.07927, -1.765])  # fmt: skip
#: K40 photo-electrons per ns on one PMT, from the same MC's PMTs far from every muon.
KM3NET_MC_K40_PER_NS = 9.61e-6
#: The tables' cells: distance (m), cosine a, residual (ns), fine where the PDFs bend.
RHO_EDGES = np.arange(0.0, 122.0, 2.0)
COS_EDGES = np.linspace(-1.0, 1.0, 41)
RESIDUAL_EDGES = np.r_[np.arange(WINDOW_NS[0], 20.0, 0.5), np.arange(20.0, 60.0, 2.0),
                       np.arange(60.0, WINDOW_NS[1] + 1.0, 10.0)]  # fmt: skip
_MEAN_ACCEPTANCE = float(np.mean(acceptance(np.linspace(-1.0, 1.0, 2001))))


@dataclass(frozen=True)
class MuonTables:
    """Edges (ρ m, cos a, residual ns) and the two log-ratio tables at the cells' centres."""

    rho_edges: np.ndarray
    cos_edges: np.ndarray
    residual_edges: np.ndarray
    ln_hit: np.ndarray  # (ρ, a, r): ln(first-hit density / K40's)
    ln_none: np.ndarray  # (ρ, a): ln(P(no hit) / K40's)
    k40_per_ns: float

    def centres(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return _centres(self.rho_edges, self.cos_edges, self.residual_edges)


def _centres(*edges: np.ndarray) -> tuple[np.ndarray, ...]:
    return tuple(0.5 * (e[1:] + e[:-1]) for e in edges)


def expected(params: np.ndarray, rho, facing, residual, k40_per_ns: float):
    """Photo-electrons expected from the window's start up to ``residual`` (broadcast)."""
    ln_n0, lam, ln_s, l_scatter, w, shape, tau0, tau1, sigma0, sigma1, shift = params
    eps = acceptance(-facing)
    spread = 1.0 / (rho + 1.0)
    direct = np.exp(ln_n0) * eps * np.exp(-rho / (SIN_CHERENKOV * lam)) * spread
    scattered = (np.exp(ln_n0 + ln_s) * (w * eps + (1.0 - w) * _MEAN_ACCEPTANCE)
                 * np.exp(-rho / l_scatter) * spread)  # fmt: skip
    sigma = np.sqrt(sigma0**2 + (sigma1 * rho) ** 2)
    late = np.maximum(residual - shift, 0.0) / (tau0 + tau1 * rho)
    return (k40_per_ns * (residual - WINDOW_NS[0])
            + direct * special.ndtr((residual - shift) / sigma)
            + scattered * special.gammainc(shape, late))  # fmt: skip


def tables(params: np.ndarray, k40_per_ns: float) -> MuonTables:
    """The model's first-hit density and no-hit probability at the tables' cells."""
    rho_c, cos_c, res_c = _centres(RHO_EDGES, COS_EDGES, RESIDUAL_EDGES)
    rho, facing = (x.ravel()[:, None] for x in np.meshgrid(rho_c, cos_c, indexing="ij"))
    step = 0.05
    total = expected(params, rho, facing, res_c[None, :], k40_per_ns)
    later, earlier = (expected(params, rho, facing, res_c[None, :] + shift, k40_per_ns)
                      for shift in (step, -step))  # fmt: skip
    rate = (later - earlier) / (2 * step)
    whole = expected(params, rho, facing, np.array([[WINDOW_NS[1]]]), k40_per_ns)[:, 0]
    shape = (len(rho_c), len(cos_c))
    ln_hit = np.log(np.maximum(rate * np.exp(-total), 1e-30) / k40_per_ns)
    ln_none = -whole + k40_per_ns * (WINDOW_NS[1] - WINDOW_NS[0])
    return MuonTables(RHO_EDGES, COS_EDGES, RESIDUAL_EDGES, ln_hit.reshape(*shape, len(res_c)),
                      ln_none.reshape(shape), float(k40_per_ns))  # fmt: skip


@functools.cache
def km3net_mc_tables() -> MuonTables:
    """The tables of the parameters fitted on KM3NeT MC (built once per process)."""
    return tables(KM3NET_MC_PARAMETERS, KM3NET_MC_K40_PER_NS)
