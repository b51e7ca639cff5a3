"""The simulated detector looks like a real one: DOM rates and PMT geometry (issue 14, A6/A10)."""

from __future__ import annotations

import numpy as np
import pytest

from km3mon.config import DOMRatesSection, PMTRatesSection
from km3mon.detector import Detector, parse_detx
from km3mon.sim.sim_geometry import pmt_directions, synthetic_detx
from tests.sim.test_simulator_support import arca21, orca6, simulate


def _dom_directions(detector: Detector, dom_index: int) -> np.ndarray:
    """PMT axes of one DOM in channel order."""
    mine = detector.pmt_dom_index == dom_index
    return detector.pmt_dir[mine][np.argsort(detector.pmt_channel[mine])]


def _pair_angles_deg(directions: np.ndarray) -> np.ndarray:
    upper = np.triu_indices(len(directions), 1)
    cosines = np.clip((directions @ directions.T)[upper], -1, 1)
    return np.sort(np.degrees(np.arccos(cosines)))


@pytest.mark.parametrize("real", [arca21, orca6], ids=["ARCA-21", "ORCA-6"])
def test_simulated_pmt_rings_and_pair_angles_are_those_of_real_doms(real) -> None:
    detector = real()
    real_dirs = _dom_directions(detector, int(np.flatnonzero(detector.n_pmts > 0)[0]))
    ours = pmt_directions()
    polar = lambda d: np.sort(np.degrees(np.arccos(np.clip(d[:, 2], -1, 1))))  # noqa: E731
    assert np.abs(polar(ours) - polar(real_dirs)).max() < 0.5
    # the 465 opening angles decide the K40 pair rates: the same distribution, angle by angle
    assert np.abs(_pair_angles_deg(ours) - _pair_angles_deg(real_dirs)).max() < 1.0
    generated = parse_detx(synthetic_detx(1, n_floors=1))
    assert np.allclose(_dom_directions(generated, 1), ours, atol=1e-5)


def test_simulated_rates_are_realistic_and_inside_the_default_colour_ranges() -> None:
    stream = simulate(20, detector=arca21())
    rates_hz = np.concatenate([s.rates_hz for s in stream.decoded("IO_SUM")])
    dom_khz = rates_hz.sum(axis=1) / 1e3
    assert 7_000 < np.median(rates_hz) < 8_000
    assert 220 < np.median(dom_khz) < 250
    dom_range, pmt_range = DOMRatesSection(), PMTRatesSection()
    inside = (dom_khz > dom_range.lowest_rate_khz) & (dom_khz < dom_range.highest_rate_khz)
    assert inside.mean() > 0.98  # bioluminescence bursts may leave the range, nothing else
    pmt_inside = (rates_hz > pmt_range.lowest_rate_hz) & (rates_hz < pmt_range.highest_rate_hz)
    assert pmt_inside.mean() > 0.98
