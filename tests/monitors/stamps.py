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
