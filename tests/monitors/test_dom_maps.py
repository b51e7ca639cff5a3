"""The DU × floor maps of one value or state per DOM stay readable at 230 DUs."""

from __future__ import annotations

import io

import matplotlib
import numpy as np
import pytest

from km3mon.detector import read_detx
from km3mon.figures.dom_map import (
    DISABLED_DOM_COLOUR,
    DISABLED_LABEL,
    MISSING_COLOUR,
    OVER_COLOUR,
    STATE_STYLES,
    UNDER_COLOUR,
    dom_map,
    dom_states_map,
)
from km3mon.sim.sim_geometry import synthetic_detx

matplotlib.use("Agg")


#: Detector index of the DOM that ``arca230`` has disabled in its DETX (``MODULE_DISABLE``).
DISABLED = 3001


@pytest.fixture(scope="module")
def arca230(tmp_path_factory):
    detx = tmp_path_factory.mktemp("arca230") / "arca230.detx"
    detx.write_text(synthetic_detx(230))
    plain = read_detx(detx)
    lines = detx.read_text().splitlines()
    at = next(k for k, line in enumerate(lines)
              if line.split()[:1] == [str(plain.dom_ids[DISABLED])])  # fmt: skip
    fields = lines[at].split()
    lines[at] = " ".join([*fields[:-2], "1", fields[-1]])  # the status before N_PMTS
    detx.write_text("\n".join(lines) + "\n")
    detector = read_detx(detx)
    assert np.flatnonzero(detector.dom_disabled).tolist() == [DISABLED]
    return detector


def legend_labels(figure) -> list[str]:
    return [text.get_text() for text in figure.axes[0].get_legend().get_texts()]


def drawn(figure) -> np.ndarray:
    """The figure as saved by the monitors (100 dpi), RGB 0-255."""
    import matplotlib.image

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    matplotlib.pyplot.close(figure)
    buffer.seek(0)
    return np.round(matplotlib.image.imread(buffer)[..., :3] * 255).astype(int)


def cell_pixels(figure, du: int, floor: int) -> tuple[int, int, int]:
    """Pixel width and height of one DOM's cell, and the image row/column of its centre."""
    figure.canvas.draw()
    axes = figure.axes[0]
    (x0, y0), (x1, y1) = axes.transData.transform([(du - 0.43, floor - 0.43),
                                                    (du + 0.43, floor + 0.43)])  # fmt: skip
    height = figure.canvas.get_width_height()[1]
    return int(x1 - x0), int(y1 - y0), (height - int((y0 + y1) / 2), int((x0 + x1) / 2))


def colour_share(image: np.ndarray, centre: tuple[int, int], colour: str) -> float:
    """Share of the 5 × 5 pixels around ``centre`` in ``colour``."""
    rgb = np.array(matplotlib.colors.to_rgb(colour)) * 255
    row, column = centre
    patch = image[row - 2 : row + 3, column - 2 : column + 3].reshape(-1, 3)
    return float(np.mean(np.abs(patch - rgb).max(axis=1) <= 3))


def test_every_dom_is_a_cell_of_its_own_colour_at_230_dus(arca230) -> None:
    optical = np.flatnonzero(arca230.dom_floor > 0)
    values = np.full(len(arca230.dom_ids), 300.0)
    chosen = {"under": optical[100], "over": optical[2000], "missing": optical[4000]}
    values[chosen["under"]], values[chosen["over"]], values[chosen["missing"]] = 50, 900, np.nan
    figure = dom_map(arca230, values, vmin=200, vmax=400, label="kHz", title="DOM rates")
    cells = {name: cell_pixels(figure, arca230.dom_du[i], arca230.dom_floor[i])
             for name, i in chosen.items()}  # fmt: skip
    image = drawn(figure)
    width, height, _ = cells["under"]
    assert width >= 5 and height >= 20, "a cell, not a dot: seen at half a screen's width"
    middle = matplotlib.colormaps["cividis"](0.5)
    in_range = cell_pixels(figure, arca230.dom_du[optical[1]], arca230.dom_floor[optical[1]])
    assert colour_share(image, in_range[2], matplotlib.colors.to_hex(middle)) == 1.0
    for name, colour in (("under", UNDER_COLOUR), ("over", OVER_COLOUR),
                         ("missing", MISSING_COLOUR)):  # fmt: skip
        share = colour_share(image, cells[name][2], colour)
        assert 0.1 <= share < 1.0, f"{name}: its colour, hatched (colour-blind safe): {share}"


def test_a_dom_disabled_in_the_detx_is_drawn_disabled_not_missing(arca230) -> None:
    """Switched off on purpose, it sends nothing (NaN, like a silent DOM) and has a stale
    value elsewhere: either way its cell says "disabled", in its own colour and hatch."""
    optical = np.flatnonzero(arca230.dom_floor > 0)
    silent = optical[4000]
    values = np.full(len(arca230.dom_ids), 300.0)
    values[[DISABLED, silent]] = np.nan
    figure = dom_map(arca230, values, vmin=200, vmax=400, label="kHz", title="DOM rates")
    assert f"{DISABLED_LABEL} (1)" in legend_labels(figure)
    centres = {i: cell_pixels(figure, arca230.dom_du[i], arca230.dom_floor[i])[2]
               for i in (DISABLED, silent)}  # fmt: skip
    image = drawn(figure)
    share = colour_share(image, centres[DISABLED], DISABLED_DOM_COLOUR)
    assert 0.1 <= share < 1.0, f"disabled: its colour, hatched: {share}"
    assert colour_share(image, centres[DISABLED], MISSING_COLOUR) == 0.0
    assert 0.1 <= colour_share(image, centres[silent], MISSING_COLOUR) < 1.0
    assert colour_share(image, centres[silent], DISABLED_DOM_COLOUR) == 0.0

    states = np.zeros(len(arca230.dom_ids), dtype=int)
    states[[DISABLED, silent]] = 3  # "missing" to the monitor
    figure = dom_states_map(arca230, states, ("OK", "UDP incomplete", "WR lost", "missing"),
                            "time sync")  # fmt: skip
    assert f"{DISABLED_LABEL} (1)" in legend_labels(figure)
    assert "missing (1)" in legend_labels(figure)
    centre = cell_pixels(figure, arca230.dom_du[DISABLED], arca230.dom_floor[DISABLED])[2]
    image = drawn(figure)
    assert 0.1 <= colour_share(image, centre, DISABLED_DOM_COLOUR) < 1.0
    assert colour_share(image, centre, MISSING_COLOUR) == 0.0


def test_each_state_its_colour_at_230_dus(arca230) -> None:
    optical = np.flatnonzero(arca230.dom_floor > 0)
    states = np.zeros(len(arca230.dom_ids), dtype=int)
    picked = optical[[7, 1500, 3000, 4100]]
    states[picked] = [0, 1, 2, 3]
    figure = dom_states_map(arca230, states, ("OK", "UDP incomplete", "WR lost", "missing"),
                            "time sync")  # fmt: skip
    centres = [cell_pixels(figure, arca230.dom_du[i], arca230.dom_floor[i])[2] for i in picked]
    image = drawn(figure)
    for state, centre in enumerate(centres):
        colour, hatch = STATE_STYLES[state]
        share = colour_share(image, centre, colour)
        assert share == 1.0 if not hatch else 0.1 <= share < 1.0, (state, share)
