"""The reconstruction's DOM maps read like every other DOM map: DUs labelled on each."""

from __future__ import annotations

import matplotlib
import numpy as np

from km3mon.figures.reco import DomOffsets, residual_map
from tests.sim.test_simulator_support import arca21

matplotlib.use("Agg")


def test_both_time_residual_maps_label_their_dus() -> None:
    detector = arca21()
    n_doms = len(detector.dom_ids)
    rng = np.random.default_rng(1)
    offsets = DomOffsets(
        offset_ns=rng.normal(0, 1, n_doms),
        error_ns=np.ones(n_doms),
        spread_ns=np.abs(rng.normal(2, 1, n_doms)),
        count=np.ones(n_doms, int),
        reference_ns=0.0,
        flagged=np.zeros(n_doms, bool),
    )
    figure = residual_map(detector, offsets, 5.0, [], "the last hour")
    figure.canvas.draw()
    maps = [axes for axes in figure.axes if axes.get_ylabel() == "floor"]
    assert len(maps) == 2
    expected = [str(du) for du in detector.dus]  # 21 DUs: every one labelled
    for axes in maps:
        shown = [label.get_text() for label in axes.get_xticklabels() if label.get_visible()]
        assert shown == expected and axes.get_xlabel() == "DU", (axes.get_title(), shown)
    matplotlib.pyplot.close(figure)
