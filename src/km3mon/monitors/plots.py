"""Drawing shared by several monitors: the DU × floor map of one value per DOM.

Colour choices are colour-blind safe: a perceptually uniform map (cividis) for the range,
and out-of-range and missing DOMs told apart by marker shape as well as colour.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from km3mon.detector import Detector

UNDER_COLOUR = "#1b1b1b"
OVER_COLOUR = "#d01c8b"
MISSING_COLOUR = "#bdbdbd"


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
    """Scatter of ``values`` (one per DOM of ``detector``, NaN = missing) at (DU, floor).

    ``marked`` DOMs get a red ring, e.g. the inactive ones.
    """
    import matplotlib.pyplot as plt

    optical = detector.dom_floor > 0
    du = detector.dom_du[optical]
    floor = detector.dom_floor[optical]
    values = np.asarray(values, dtype=float)[optical]
    missing = np.isnan(values)
    under = ~missing & (values < vmin)
    over = ~missing & (values > vmax)
    inside = ~missing & ~under & ~over

    n_dus = len(detector.dus)
    width_in = min(20.0, max(8.0, 2 + 0.35 * n_dus))  # 230 DUs still fit a screen
    figure, axes = plt.subplots(figsize=(width_in, 6.5))
    size = 90 if n_dus <= 40 else max(4.0, 90 * 40 / n_dus)
    points = axes.scatter(
        du[inside], floor[inside], c=values[inside], s=size, marker="s", cmap=cmap,
        vmin=vmin, vmax=vmax,
    )  # fmt: skip
    axes.scatter(du[under], floor[under], s=size, marker="v", color=UNDER_COLOUR,
                 label=f"below {vmin:g}")  # fmt: skip
    axes.scatter(du[over], floor[over], s=size, marker="^", color=OVER_COLOUR,
                 label=f"above {vmax:g}")  # fmt: skip
    axes.scatter(du[missing], floor[missing], s=size, marker="x", color=MISSING_COLOUR,
                 label="missing")  # fmt: skip
    if marked is not None and np.any(marked[optical]):
        ring = np.asarray(marked)[optical]
        axes.scatter(du[ring], floor[ring], s=size * 2.2, facecolors="none",
                     edgecolors="#e41a1c", linewidths=1.5, label=marked_label)  # fmt: skip
    colour_bar = figure.colorbar(points, ax=axes, extend="both", pad=0.01)
    colour_bar.set_label(label)
    du_floor_axes(axes, detector)
    axes.set_title(title)
    axes.legend(loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=4, frameon=False)
    figure.tight_layout(rect=(0, 0.03, 1, 1))
    return figure


def du_floor_axes(axes: Axes, detector: Detector) -> None:
    """DU on x, floor on y, integer ticks, a light grid."""
    dus = detector.dus
    step = max(1, len(dus) // 30)
    axes.set_xticks(dus[::step])
    axes.set_xlabel("DU")
    axes.set_ylabel("floor")
    axes.set_yticks(np.arange(1, detector.n_floors + 1))
    axes.set_ylim(0.3, detector.n_floors + 0.7)
    axes.set_xlim(dus.min() - 0.7, dus.max() + 0.7)
    axes.grid(alpha=0.2)


#: Colours and markers of categorical DOM states: good first, then worse and worse; shape
#: as well as colour tells them apart.
STATE_STYLES = (
    ("#1a9850", "s"),
    ("#fdae61", "^"),
    ("#d01c8b", "X"),
    (MISSING_COLOUR, "x"),
)


def dom_states_map(
    detector: Detector, states: np.ndarray, names: tuple[str, ...], title: str
) -> Figure:
    """DU × floor map of a state per DOM (index into ``names`` and :data:`STATE_STYLES`;
    negative: not shown), e.g. time sync OK / UDP incomplete / White Rabbit lost / missing."""
    import matplotlib.pyplot as plt

    optical = detector.dom_floor > 0
    du, floor = detector.dom_du[optical], detector.dom_floor[optical]
    states = np.asarray(states)[optical]
    n_dus = len(detector.dus)
    width_in = min(20.0, max(8.0, 2 + 0.35 * n_dus))
    figure, axes = plt.subplots(figsize=(width_in, 6.5))
    size = 90 if n_dus <= 40 else max(4.0, 90 * 40 / n_dus)
    for state, (name, (colour, marker)) in enumerate(zip(names, STATE_STYLES, strict=False)):
        chosen = states == state
        axes.scatter(du[chosen], floor[chosen], s=size * (1.4 if state else 1.0), marker=marker,
                     color=colour, label=f"{name} ({int(chosen.sum())})")  # fmt: skip
    du_floor_axes(axes, detector)
    axes.set_title(title, fontsize=10)
    axes.legend(loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=4, frameon=False)
    figure.tight_layout(rect=(0, 0.03, 1, 1))
    return figure
