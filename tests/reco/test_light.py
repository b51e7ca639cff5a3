"""The light model behind the PMT likelihood says what a muon's light does: a PMT close to
the track and facing it is hit early and often, one far away sees K40 alone."""

from __future__ import annotations

import numpy as np

from km3mon.reco.light import WINDOW_NS, km3net_mc_tables


def _cell(edges: np.ndarray, value: float) -> int:
    return int(np.searchsorted(edges, value) - 1)


def test_near_facing_pmts_are_hit_at_the_direct_time_and_far_ones_see_k40() -> None:
    t = km3net_mc_tables()
    _, _, res_c = t.centres()
    near, far = _cell(t.rho_edges, 10.0), _cell(t.rho_edges, 110.0)
    facing, away = _cell(t.cos_edges, 0.95), _cell(t.cos_edges, -0.95)
    peak = res_c[np.argmax(t.ln_hit[near, facing])]
    assert -5.0 < peak < 3.0, peak  # the direct light's time, within the PMTs' spread
    assert t.ln_hit[near, facing].max() > np.log(1e3)  # far above K40's density
    assert t.ln_none[near, facing] < np.log(0.6)  # one 3-inch PMT: 47 % dark at 10 m
    assert t.ln_none[near, facing] < t.ln_none[near, away] < 0.0  # the back sees less
    assert abs(t.ln_none[far, facing]) < 0.2 and abs(t.ln_hit[far, facing, -1]) < 0.5
    late = np.searchsorted(res_c, 50.0)
    assert t.ln_hit[near, facing, late] > 0.0  # scattered light: late hits are muon light too
    assert (np.diff(t.ln_none[:, facing]) > -1e-9).all()  # farther, more likely dark
    assert res_c[0] > WINDOW_NS[0] and res_c[-1] < WINDOW_NS[1]
