"""Detector-wide DU × floor summary images: one cell per DOM, one or more panels stacked.

A shifter at a 230-DU detector cannot read 230 per-DU images; one image with a cell per DOM
shows where to look, and the dashboard opens a DU's own page from a click on its column
(the monitor writes where the columns are, ``du_axis``, next to the image's metrics).

Drawn like ``palette_image``: matplotlib draws the frame (axes, colour bars, stamps) once
per tick, each panel is then painted as palette indices into its data box, so an image of
4 140 DOMs costs milliseconds instead of a matplotlib render.

DOMs disabled in the DETX are painted "disabled" (pale blue, horizontal stripes, a legend
entry at the bottom left) whatever level a monitor gives them: switched off is not silent.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from km3mon.figures.dom_map import (
    DISABLED_DOM_COLOUR,
    DISABLED_EDGE_COLOUR,
    DISABLED_HATCH,
    DISABLED_LABEL,
    du_label_step,
)
from km3mon.figures.palette_image import PaletteFigure

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from km3mon.detector import Detector

#: Level of a DOM without data in the interval: drawn hatched, not as a colour.
NO_DATA = 255
HATCH_COLOURS = ("#6e6e6e", "#c8c8c8")
HATCH_PERIOD_PX = 6


@dataclass(frozen=True)
class Panel:
    """One DU × floor map of the image: its name and how its colour scale is drawn."""

    #: Said on the y axis ("yaw"); empty for a single panel.
    title: str
    #: Draws the colour bar / legend of the panel next to ``axes`` (in the palette colours).
    legend: Callable[[Figure, Axes], None]


def data_box(figure: Figure, axes: Axes) -> tuple[slice, slice]:
    """Pixel rows (top down) and columns whose centres lie inside ``axes``."""
    height = int(figure.canvas.get_width_height()[1])
    extent = axes.get_window_extent()
    columns = slice(int(np.ceil(extent.x0 - 0.5)), int(np.floor(extent.x1 - 0.5)) + 1)
    top = height - int(np.floor(extent.y1 - 0.5)) - 1
    bottom = height - int(np.ceil(extent.y0 - 0.5))
    return slice(top, bottom), columns


def hatch_legend_handle(label: str = "no data"):
    """A legend entry that looks like the hatched cells of DOMs without data."""
    from matplotlib.patches import Patch

    return Patch(facecolor=HATCH_COLOURS[1], edgecolor=HATCH_COLOURS[0], hatch="////",
                 label=label)  # fmt: skip


class DUFloorMap:
    """Summary image of the DOMs ``dom_index`` (detector indices, one per slot).

    ``colours`` are the data levels (palette entries 0, 1, …); a monitor passes one array of
    levels per panel and slot to :meth:`render`, :data:`NO_DATA` for a DOM without data.
    """

    def __init__(
        self,
        detector: Detector,
        dom_index: np.ndarray,
        colours: Sequence[object],
        panels: Sequence[Panel],
        *,
        panel_height_in: float = 3.2,
    ) -> None:
        import matplotlib.pyplot as plt

        self.detector = detector
        self.dus = [int(du) for du in np.unique(detector.dom_du[dom_index])]
        self.n_floors = int(detector.n_floors)
        self.column_of_slot = np.searchsorted(self.dus, detector.dom_du[dom_index])
        self.floor_of_slot = detector.dom_floor[dom_index].astype(np.int64)
        self.n_levels = len(colours)
        n_dus = len(self.dus)
        width_in = min(20.0, max(10.0, 7.0 + n_dus * 0.06))
        height_in = 1.0 + panel_height_in * len(panels)
        figure, axes = plt.subplots(
            len(panels), 1, figsize=(width_in, height_in), dpi=80, squeeze=False
        )
        self.axes = list(axes[:, 0])
        for panel, ax in zip(panels, self.axes, strict=True):
            self._du_floor_frame(ax, panel.title)
            panel.legend(figure, ax)
        self.axes[-1].set_xlabel("DU (click a DU's column on the dashboard to open its plots)")
        figure.tight_layout(rect=(0, 0.03, 1, 0.97))
        self.disabled = detector.dom_disabled[dom_index]
        if self.disabled.any():
            from matplotlib.patches import Patch

            handle = Patch(facecolor=DISABLED_DOM_COLOUR, edgecolor=DISABLED_EDGE_COLOUR,
                           hatch=DISABLED_HATCH,
                           label=f"{DISABLED_LABEL} ({int(self.disabled.sum())})")  # fmt: skip
            figure.legend(handles=[handle], loc="lower left", frameon=False, fontsize=8)
        self.figure = PaletteFigure(
            figure, self.axes[0], [*colours, *HATCH_COLOURS, DISABLED_DOM_COLOUR,
                                   DISABLED_EDGE_COLOUR]
        )  # fmt: skip
        self.boxes = [data_box(figure, ax) for ax in self.axes]
        self._cells = [self._cell_map(box) for box in self.boxes]
        hatch_dark, hatch_light = self.n_levels, self.n_levels + 1
        self._hatches = [
            np.where(
                ((np.add.outer(np.arange(r.stop - r.start), np.arange(c.stop - c.start)))
                 // (HATCH_PERIOD_PX // 2)) % 2 == 0, hatch_dark, hatch_light
            ).astype(np.uint8)
            for r, c in self.boxes
        ]  # fmt: skip
        stripe_light, stripe_dark = self.n_levels + 2, self.n_levels + 3
        self._stripes = [
            np.where((np.arange(r.stop - r.start)[:, None] // 2) % 3 == 0, stripe_dark,
                     stripe_light).repeat(c.stop - c.start, axis=1).astype(np.uint8)
            for r, c in self.boxes
        ]  # fmt: skip

    @property
    def du_axis(self) -> dict[str, object]:
        """Where the DU columns are, as fractions of the image width (equal columns)."""
        width = int(self.figure.figure.canvas.get_width_height()[0])
        columns = self.boxes[0][1]
        return {"x0": columns.start / width, "x1": columns.stop / width, "dus": self.dus}

    def floor_axes(self) -> list[dict[str, float]]:
        """Per panel, its top and bottom as fractions of the image height (for checks)."""
        height = int(self.figure.figure.canvas.get_width_height()[1])
        return [{"y0": r.start / height, "y1": r.stop / height} for r, _ in self.boxes]

    def _du_floor_frame(self, axes: Axes, title: str) -> None:
        n_dus = len(self.dus)
        axes.set_xlim(-0.5, n_dus - 0.5)
        axes.set_ylim(0.5, self.n_floors + 0.5)
        step = du_label_step(n_dus, most=40)
        labelled = [i for i, du in enumerate(self.dus) if du % step == 0 or step == 1]
        axes.set_xticks(labelled, [str(self.dus[i]) for i in labelled],
                        fontsize=8 if n_dus > 60 else 10)  # fmt: skip
        floor_step = 1 if self.n_floors <= 20 else 2
        floors = np.arange(1, self.n_floors + 1, floor_step)
        axes.set_yticks(floors, [str(f) for f in floors], fontsize=8)
        axes.set_ylabel(f"{title}\nfloor" if title else "floor")

    def _cell_map(self, box: tuple[slice, slice]) -> np.ndarray:
        """Slot painted at every pixel of ``box`` (-1: gap between cells, or no DOM)."""
        rows, columns = box
        height, width = rows.stop - rows.start, columns.stop - columns.start
        n_dus = len(self.dus)
        x_edges = np.round(np.linspace(0, width, n_dus + 1)).astype(np.int64)
        y_edges = np.round(np.linspace(0, height, self.n_floors + 1)).astype(np.int64)
        column_of_x = np.searchsorted(x_edges, np.arange(width), side="right") - 1
        floor_of_y = self.n_floors - (np.searchsorted(y_edges, np.arange(height), "right") - 1)
        # a one-pixel gap after each cell when cells are wide enough to spare it
        gap_x = np.isin(np.arange(width), x_edges[1:] - 1) if width >= 3 * n_dus else 0
        gap_y = np.isin(np.arange(height), y_edges[1:] - 1)
        slot_at = np.full((self.n_floors + 1, n_dus), -1, np.int64)
        slot_at[self.floor_of_slot, self.column_of_slot] = np.arange(len(self.floor_of_slot))
        cells = slot_at[floor_of_y[:, None], column_of_x[None, :]]
        cells[np.asarray(gap_y)[:, None] | np.asarray(gap_x)[None, :]] = -1
        return cells

    def render(self, title: str, levels: Sequence[np.ndarray]) -> bytes:
        """The PNG of one tick: per panel the level of every slot."""
        image = self.figure.start(title)
        for box, cells, hatch, stripes, panel_levels in zip(
            self.boxes, self._cells, self._hatches, self._stripes, levels, strict=True
        ):
            lookup = np.append(np.asarray(panel_levels, np.uint8), NO_DATA)  # -1: no cell
            painted = lookup[cells]
            region = image[box]
            background = np.bincount(region.ravel()).argmax()  # the axes' face colour
            drawn = (cells >= 0) & (region == background)
            painted = np.where(painted == NO_DATA, hatch, painted)
            if self.disabled.any():
                off = np.append(self.disabled, False)[cells]  # -1 (no cell) -> the last
                painted = np.where(off, stripes, painted)
            region[drawn] = painted[drawn]
        return self.figure.finish(image)
