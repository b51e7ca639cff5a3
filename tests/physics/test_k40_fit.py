"""The pair fit on counts drawn from its own model: a peak cut by the L1 window's edge, and
the pair's own livetime (frames with a vetoed PMT do not count)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from km3mon.detector import parse_detx
from km3mon.physics.k40_fit import PairFits, fit_pairs, fit_period, l1_acceptance
from km3mon.physics.twofolds import PeriodCounts, TwofoldCounter
from km3mon.sim.sim_geometry import synthetic_detx

TMAX = 20
RATE_HZ, LIVETIME_S, SIGMA_NS, BACKGROUND = 2.0, 600.0, 3.5, 30.0


def drawn_counts(mean_ns: float, livetime_s: float, rng: np.random.Generator) -> np.ndarray:
    """Counts per 1-ns bin of one pair inside the simulator's L1 window (10 ns)."""
    x = np.arange(-TMAX, TMAX + 1, dtype=float)
    peak = RATE_HZ * livetime_s / (math.sqrt(2 * math.pi) * SIGMA_NS)
    model = BACKGROUND + peak * np.exp(-0.5 * ((x - mean_ns) / SIGMA_NS) ** 2)
    acceptance = np.array([l1_acceptance(value, 10.0) for value in x])
    return rng.poisson(model * acceptance)


def test_a_peak_cut_by_the_l1_window_is_fitted_for_what_it_is() -> None:
    rng = np.random.default_rng(1)
    means = [0.0, 4.0, 8.0]
    counts = np.zeros((1, 465, 2 * TMAX + 1), np.int32)
    for pair, mean in enumerate(means):
        counts[0, pair] = drawn_counts(mean, LIVETIME_S, rng)
    args = (np.full((1, 465), BACKGROUND), np.full(1, LIVETIME_S), np.zeros((1, 465)))
    fits = fit_pairs(counts, *args)
    assert fits.valid[0, : len(means)].all()
    np.testing.assert_allclose(fits.mean_ns[0, : len(means)], means, atol=0.3)
    np.testing.assert_allclose(fits.rate_hz[0, : len(means)], RATE_HZ, rtol=0.1)
    naive = fit_pairs(counts, *args, l1_window_ns=None)  # flat background beyond the window
    assert abs(naive.mean_ns[0, 2] - 8.0) > abs(fits.mean_ns[0, 2] - 8.0)


def test_the_rate_is_per_second_of_the_pairs_own_livetime() -> None:
    """A pair whose PMT was vetoed half the time has half the coincidences, not half the rate."""
    rng = np.random.default_rng(2)
    counts = np.zeros((1, 465, 2 * TMAX + 1), np.int32)
    counts[0, 0] = drawn_counts(0.0, LIVETIME_S, rng)
    counts[0, 1] = drawn_counts(0.0, LIVETIME_S / 2, rng)
    livetime = np.full((1, 465), LIVETIME_S)
    livetime[0, 1] = LIVETIME_S / 2
    background = np.full((1, 465), BACKGROUND)
    fits = fit_pairs(counts, background, livetime, np.zeros((1, 465)))
    np.testing.assert_allclose(fits.rate_hz[0, :2], RATE_HZ, rtol=0.1)


def test_the_l1_acceptance_is_one_inside_zero_beyond_half_at_the_edge() -> None:
    assert l1_acceptance(0.0, 10.0) == l1_acceptance(-10.0, 10.0) == 1.0
    assert l1_acceptance(11.0, 10.0) == l1_acceptance(-11.0, 10.0) == 0.5
    assert l1_acceptance(12.0, 10.0) == 0.0
    assert l1_acceptance(30.0, -1.0) == 1.0


def test_a_period_fitted_in_parts_is_fitted_as_in_one_go() -> None:
    """``fit_period`` (64 DOMs at a time, 16-bit bins with wrapped counts carried) gives what
    ``fit_pairs`` gives on the whole int32 count array, to the bit of its float32 result."""
    rng = np.random.default_rng(3)
    n_doms = 150
    counts = np.zeros((n_doms, 465, 2 * TMAX + 1), np.int32)
    for dom in range(n_doms):
        for pair in range(0, 465, 37):
            counts[dom, pair] = drawn_counts(rng.normal(0, 2), LIVETIME_S, rng)
    counts[5, 0, TMAX] = 70_000  # past 16 bits: carried
    binned = (counts % 65536).astype(np.uint16)
    wrapped = [np.flatnonzero(counts.reshape(-1) >= 65536)]
    period = PeriodCounts(binned, 65536, wrapped)
    background = np.full((n_doms, 465), BACKGROUND)
    livetime = np.full((n_doms, 465), LIVETIME_S)
    shift = rng.uniform(-0.5, 0.5, (n_doms, 465))
    whole = fit_pairs(counts, background, livetime, shift)
    parts = fit_period(period, background, livetime, shift)
    assert whole.valid.sum() > 1000
    for name in PairFits.__dataclass_fields__:
        expected = getattr(whole, name)
        expected = expected if expected.dtype == bool else expected.astype(np.float32)
        np.testing.assert_array_equal(getattr(parts, name), expected, err_msg=name)


@pytest.mark.parametrize("packed", [False, True], ids=["bins", "packed"])
def test_a_counters_period_is_released_as_it_is_fitted(packed: bool) -> None:
    """The bins a ``TwofoldCounter`` hands over go back to the system part by part while
    ``fit_period`` runs (a 230-DU period is 158 MB beside the next one's), or are packed
    first (parts that do not line up with the fit's): the fits are those of the same counts
    kept, and nothing fitted is held afterwards."""
    counter = TwofoldCounter(parse_detx(synthetic_detx(9)), TMAX)
    n_doms = len(counter.dom_index)
    assert n_doms > 2 * 64, "more than two fitting parts"
    rng = np.random.default_rng(5)
    for dom in range(n_doms):
        counter.binned[dom, ::29] = drawn_counts(rng.normal(0, 2), LIVETIME_S, rng)
    period = counter.take_counts()
    kept = PeriodCounts(period.binned.copy(), period.wrap, [])
    background = np.full((n_doms, 465), BACKGROUND)
    livetime = np.full((n_doms, 465), LIVETIME_S)
    shift = np.zeros((n_doms, 465))
    if packed:
        period.pack(50)
        assert sum(map(len, period.packed)) < 0.5 * kept.binned.nbytes
    released = fit_period(period, background, livetime, shift)
    expected = fit_period(kept, background, livetime, shift)
    assert released.valid.sum() == n_doms * len(range(0, 465, 29))
    for name in PairFits.__dataclass_fields__:
        np.testing.assert_array_equal(getattr(released, name), getattr(expected, name), name)
    assert not any(period.packed), "every packed part released once fitted"
    still_there = np.count_nonzero(period.binned) / np.count_nonzero(kept.binned)
    assert still_there < 0.02, f"{still_there:.1%} of the fitted bins still held"
    assert np.count_nonzero(kept.binned) > 0.5 * kept.binned[:, ::29].size
