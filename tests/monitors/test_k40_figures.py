"""The K40 figures as seen on the dashboard: legends name only what the map shows and
hide none of it."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from km3mon.figures.k40 import du_offsets, summary_map
from km3mon.sim.sim_geometry import synthetic_detx
from tests.monitors.stamps import keep_figures
from tests.web.sites import k40_with_a_result


@pytest.fixture
def k40(tmp_path: Path) -> Iterator:
    """A 3-DU k40 monitor holding a made-up calibration, its fitting worker shut down after."""
    import matplotlib

    matplotlib.use("Agg")
    detx = tmp_path / "detector.detx"
    detx.write_text(synthetic_detx(3))
    monitor = k40_with_a_result(tmp_path, detx, np.random.default_rng(1))
    try:
        yield monitor
    finally:
        monitor._worker.shutdown()


def test_summary_legend_names_only_the_states_on_the_map(k40) -> None:
    """One DOM not measured, none disabled: "disabled (DETX)" in the legend was a lie (seen
    on the 230-DU dashboard); a DOM with every PMT off is then named, with the count."""
    figures = keep_figures(k40.context)
    k40._render_one("summary")
    outcome = k40._outcome()
    maps = figures["k40_summary.png"].axes[:3]  # then their colour bars
    assert [axis.get_legend_handles_labels()[1] for axis in maps] == [["not measured (1)"]] * 3

    present = k40.layout.present.copy()
    present[5] = False  # every PMT of a DOM disabled in the DETX
    layout = dataclasses.replace(k40.layout, present=present)
    figure = summary_map(layout, outcome, collected_s=600.0)
    labels = [axis.get_legend_handles_labels()[1] for axis in figure.axes[:3]]
    assert labels == [["not measured (1)", "disabled (DETX) (1)"]] * 3


def test_du_legend_leaves_every_pmt_cell_visible(k40) -> None:
    """A DU's offsets with a PMT without a K40 peak and DETX-disabled PMTs: the legend sits
    below the map (inside its upper right corner it hid the top floors' last channels), and
    on the figure; its entries say how many of each, for marks that are drawn."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    figures = keep_figures(k40.context)
    no_peak_dom = k40.slots[np.flatnonzero(k40.no_peak(k40.result).any(axis=1))[0]]
    du = int(k40.detector.dom_du[no_peak_dom])
    k40._render_one(du)
    outcome = k40._outcome()
    figure = figures[f"k40_du{du}.png"]
    axis = figure.axes[0]
    legend = axis.get_legend()
    assert legend is not None and "singles but no K40 peak (1)" in [
        text.get_text() for text in legend.get_texts()
    ]
    renderer = FigureCanvasAgg(figure).get_renderer()  # the saved figure's canvas is gone
    box, cells = legend.get_window_extent(renderer), axis.get_window_extent(renderer)
    assert not box.overlaps(cells), (box, cells)
    assert figure.bbox.contains(box.x0, box.y0) and figure.bbox.contains(box.x1, box.y1)

    # no PMT out of tolerance on this DU: no ring, and none in the legend
    calm = dataclasses.replace(outcome, flagged=np.zeros_like(outcome.flagged))
    legend = du_offsets(k40.layout, calm, du, collected_s=600.0).axes[0].get_legend()
    assert [text.get_text() for text in legend.get_texts()] == ["singles but no K40 peak (1)"]
