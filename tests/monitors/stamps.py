"""Reading back what a plot says about itself: its PNG text chunks and its STALE banner."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image


def png_text(png: bytes | Path) -> dict[str, str]:
    """The tEXt chunks of a PNG (``data_until``, ``rendered``, ``stale``)."""
    data = png.read_bytes() if isinstance(png, Path) else png
    return dict(Image.open(io.BytesIO(data)).text)


def banner_fraction(png: bytes | Path) -> float:
    """How much of the middle of the plot is the STALE banner's red (#b2182b, or its blend
    with what lies below at 85 % opacity)."""
    data = png.read_bytes() if isinstance(png, Path) else png
    rgb = np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(int)
    height, width = rgb.shape[:2]
    middle = rgb[
        height // 2 - 4 : height // 2 + 4, width // 2 - width // 10 : width // 2 + width // 10
    ]
    red, green, blue = middle[..., 0], middle[..., 1], middle[..., 2]
    reddish = (red > 150) & (green < 100) & (blue < 110) & (red - blue > 80)
    return float(reddish.mean())


def keep_figures(context: object) -> dict[str, object]:
    """The figures a monitor's context saves from now on, by file name, for tests that read
    back what a plot was drawn from (its artists), not only that a file was written."""
    figures: dict[str, object] = {}
    save = context.save_figure

    def save_and_keep(filename: str, figure: object, *args: object, **options: object) -> None:
        figures[filename] = figure
        save(filename, figure, *args, **options)

    context.save_figure = save_and_keep
    return figures


def cell_values(axes: object) -> dict[tuple[int, int], float]:
    """The value of each DOM cell of a DU × floor map (``dom_cells`` collections with an
    array), by (DU, floor) from the cell's centre."""
    from matplotlib.collections import PolyCollection

    values = {}
    for collection in axes.collections:
        array = collection.get_array() if isinstance(collection, PolyCollection) else None
        if array is None:
            continue
        for path, value in zip(collection.get_paths(), np.asarray(array), strict=True):
            du, floor = np.round(path.vertices[:4].mean(axis=0)).astype(int).tolist()
            values[du, floor] = float(value)
    return values
