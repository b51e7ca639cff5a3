"""Drawing shared by several monitors: the DU × floor map of one value per DOM.

Colour choices are colour-blind safe: a perceptually uniform map (cividis) for the range,
and out-of-range and missing DOMs told apart by hatching as well as colour. DOMs disabled in
the DETX (``MODULE_DISABLE``) are drawn as "disabled" on every map, whatever their value: a
DOM switched off on purpose is not a silent one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.collections import PolyCollection
    from matplotlib.figure import Figure

    from km3mon.detector import Detector

UNDER_COLOUR = "#1b1b1b"
OVER_COLOUR = "#d01c8b"
MISSING_COLOUR = "#bdbdbd"
UNDER_HATCH, OVER_HATCH, MISSING_HATCH = "\\\\\\", "////", "xx"
MARK_COLOUR = "#e41a1c"
#: Hatch lines are drawn in the edge colour.
CELL_EDGE_COLOUR = "#6e6e6e"
#: DOMs (and PMTs) disabled in the DETX: pale blue, horizontal dark-blue hatch.
DISABLED_DOM_COLOUR, DISABLED_HATCH, DISABLED_EDGE_COLOUR = "#d1e5f0", "---", "#2166ac"
DISABLED_LABEL = "disabled (DETX)"


def dom_map(
    detector: Detector,
    values: np.ndarray,
    *,
    vmin: float,
    vmax: float,
    label: str,
    title: str,
    cmap: str = "cividis",
    marked: np.ndarray | None = None,
    marked_label: str = "",
) -> Figure:
    """A cell per DOM of ``detector`` at (DU, floor), coloured by ``values`` (NaN = missing).

    Cells, not markers: at 230 DUs a marker is a few pixels and the map turns into stripes.
    ``marked`` DOMs get a red frame, e.g. the inactive ones.
    """
    import matplotlib
    import matplotlib.pyplot as plt

    optical = detector.dom_floor > 0
    du = detector.dom_du[optical]
    floor = detector.dom_floor[optical]
    values = np.asarray(values, dtype=float)[optical]
    disabled = detector.dom_disabled[optical]
    missing = np.isnan(values) & ~disabled
    under = ~missing & ~disabled & (values < vmin)
    over = ~missing & ~disabled & (values > vmax)
    inside = ~missing & ~disabled & ~under & ~over

    width_in = map_width_in(detector)
    figure, axes = plt.subplots(figsize=(width_in, 6.5))
    colours = matplotlib.colormaps[cmap].with_extremes(under=UNDER_COLOUR, over=OVER_COLOUR)
    scale = dom_cells(axes, du[inside], floor[inside], array=values[inside], cmap=colours)
    scale.set_clim(vmin, vmax)
    for chosen, (colour, hatch, hatch_colour, name) in zip(
        (under, over, missing),
        ((UNDER_COLOUR, UNDER_HATCH, "#9e9e9e", f"below {vmin:g}"),
         (OVER_COLOUR, OVER_HATCH, "#f7f7f7", f"above {vmax:g}"),
         (MISSING_COLOUR, MISSING_HATCH, CELL_EDGE_COLOUR, "missing")),
        strict=True,
    ):  # fmt: skip
        dom_cells(axes, du[chosen], floor[chosen], facecolor=colour, hatch=hatch,
                  edgecolor=hatch_colour, label=name)  # fmt: skip
    disabled_cells(axes, du[disabled], floor[disabled])
    if marked is not None and np.any(marked[optical]):
        ring = np.asarray(marked)[optical]
        dom_cells(axes, du[ring], floor[ring], facecolor="none", edgecolor=MARK_COLOUR,
                  linewidth=1.5, label=marked_label, size=1.0)  # fmt: skip
    # the bar's share of the width: 1.5 inches at most, not 15 % of a 20-inch figure
    colour_bar = figure.colorbar(scale, ax=axes, extend="both", pad=0.01,
                                 fraction=min(0.15, 1.5 / width_in))  # fmt: skip
    colour_bar.set_label(label)
    du_floor_axes(axes, detector)
    axes.set_title(title)
    axes.legend(loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=4, frameon=False)
    figure.tight_layout(rect=(0, 0.03, 1, 1))
    return figure


def map_width_in(detector: Detector) -> float:
    """Figure width: wider with more DUs, up to what still fits a screen at 230 DUs."""
    return min(20.0, max(8.0, 2 + 0.35 * len(detector.dus)))


def dom_cells(
    axes: Axes, du: np.ndarray, floor: np.ndarray, *, size: float = 0.86, **style: object
) -> PolyCollection:
    """Square cells of side ``size`` (in DU and floor units) centred on each (DU, floor);
    ``style`` goes to the collection (facecolor, hatch, array and cmap, label, ...)."""
    from matplotlib.collections import PolyCollection

    centres = np.stack([np.asarray(du, float), np.asarray(floor, float)], axis=-1)
    corners = centres[:, None, :] + size / 2 * np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]])
    style.setdefault("edgecolor", CELL_EDGE_COLOUR)
    style.setdefault("linewidth", 0.0)
    cells = PolyCollection(corners, **style)
    axes.add_collection(cells)
    return cells


def disabled_cells(axes: Axes, du: np.ndarray, floor: np.ndarray) -> None:
    """The cells of DOMs disabled in the DETX, with a legend entry when there are any."""
    if len(du):
        label = f"{DISABLED_LABEL} ({len(du)})"
        dom_cells(axes, du, floor, facecolor=DISABLED_DOM_COLOUR, hatch=DISABLED_HATCH,
                  edgecolor=DISABLED_EDGE_COLOUR, label=label)  # fmt: skip


def du_label_step(n_dus: int, most: int) -> int:
    """Label every DU up to ``most`` DUs, else every 5th, 10th, ... (round numbers)."""
    step = int(np.ceil(n_dus / most))
    return 1 if step <= 1 else int(np.ceil(step / 5) * 5)


def du_floor_axes(axes: Axes, detector: Detector) -> None:
    """DU on x, floor on y, integer ticks (the cells, with gaps between them, are the grid)."""
    dus = detector.dus
    step = du_label_step(len(dus), most=30)
    axes.set_xticks(dus if step == 1 else dus[dus % step == 0])
    axes.set_xlabel("DU")
    axes.set_ylabel("floor")
    axes.set_yticks(np.arange(1, detector.n_floors + 1))
    axes.set_ylim(0.3, detector.n_floors + 0.7)
    axes.set_xlim(dus.min() - 0.7, dus.max() + 0.7)


#: Colours and hatches of categorical DOM states: good first, then worse and worse; the
#: hatch as well as the colour tells them apart.
STATE_STYLES = (
    ("#1a9850", ""),
    ("#fdae61", "...."),
    ("#d01c8b", "////"),
    (MISSING_COLOUR, MISSING_HATCH),
    ("#4575b4", "xx"),
)


def dom_states_map(
    detector: Detector, states: np.ndarray, names: tuple[str, ...], title: str
) -> Figure:
    """DU × floor map of a state per DOM (index into ``names`` and :data:`STATE_STYLES`;
    negative: not shown), e.g. time sync OK / UDP incomplete / White Rabbit lost / missing;
    DOMs disabled in the DETX are drawn as such, whatever their state."""
    import matplotlib.pyplot as plt

    optical = detector.dom_floor > 0
    du, floor = detector.dom_du[optical], detector.dom_floor[optical]
    disabled = detector.dom_disabled[optical]
    states = np.where(disabled, -1, np.asarray(states)[optical])
    figure, axes = plt.subplots(figsize=(map_width_in(detector), 6.5))
    for state, (name, (colour, hatch)) in enumerate(zip(names, STATE_STYLES, strict=False)):
        chosen = states == state
        dom_cells(axes, du[chosen], floor[chosen], facecolor=colour, hatch=hatch,
                  label=f"{name} ({int(chosen.sum())})")  # fmt: skip
    disabled_cells(axes, du[disabled], floor[disabled])
    du_floor_axes(axes, detector)
    axes.set_title(title, fontsize=10)
    axes.legend(loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=4, frameon=False)
    figure.tight_layout(rect=(0, 0.03, 1, 1))
    return figure
