"""8-bit PNGs of a matrix of colour levels inside a matplotlib frame (axes, labels, colour bar).

Why our own: a 230-DU detector needs 460 PMT images every 20 s and matplotlib takes about
0.3 s for one. Here matplotlib draws the frame once per render tick; each image then only
fills palette indices into the data box and is encoded as an 8-bit PNG, about 10 ms.
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Hashable, Sequence
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image
from PIL.PngImagePlugin import PngInfo

if TYPE_CHECKING:
    from matplotlib.artist import Artist
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

#: Grey shades for the anti-aliased text and lines of the frame.
N_GREYS = 48
#: Shades between the STALE banner's red and white (its anti-aliased letters).
BANNER_RED = "#b2182b"
N_BANNER_SHADES = 12
#: Titles and y axes kept drawn (a 230-DU detector has 690 AHRS plots).
MAX_CACHED = 1024


class DrawnStrips:
    """Drawn strips (titles, y axes) by key, kept zlib-compressed: they are mostly
    background, so 690 AHRS titles take 2.2 MB instead of 39, and a strip comes back in
    tens of microseconds, against milliseconds to draw it again."""

    def __init__(self) -> None:
        self._strips: dict[Hashable, tuple[bytes, tuple[int, ...]]] = {}

    def get(self, key: Hashable) -> np.ndarray | None:
        entry = self._strips.get(key)
        if entry is None:
            return None
        packed, shape = entry
        return np.frombuffer(zlib.decompress(packed), np.uint8).reshape(shape)

    def put(self, key: Hashable, strip: np.ndarray) -> None:
        if len(self._strips) >= MAX_CACHED:
            self._strips.clear()
        self._strips[key] = (zlib.compress(strip.tobytes(), 1), strip.shape)


def palette_of(colours: Sequence[object]) -> np.ndarray:
    """(256, 3) uint8: ``colours`` at their own indices, then greys and banner shades."""
    from matplotlib.colors import to_rgb

    given = [to_rgb(colour) for colour in colours]
    greys = [(g, g, g) for g in np.linspace(0, 1, N_GREYS)]
    red = np.array(to_rgb(BANNER_RED))
    banner = [tuple(red + (1 - red) * f) for f in np.linspace(0, 1, N_BANNER_SHADES)]
    entries = given + greys + banner
    if len(entries) > 256:
        raise ValueError(f"{len(given)} colours leave no room for the frame's shades")
    palette = np.zeros((256, 3), np.uint8)
    palette[: len(entries)] = np.round(np.array(entries) * 255)
    palette[len(entries) :] = 255  # unused entries: white
    return palette


def fit_axes_to_cells(
    figure: Figure, axes: Axes, rows: int, columns: int, rect: tuple[float, ...] = (0, 0, 1, 1)
) -> None:
    """Lay the figure out (``tight_layout`` in ``rect``), grown until its axes hold at least
    one pixel per cell of a ``rows`` x ``columns`` matrix: with fewer, nearest sampling
    leaves cells out, and a PMT or an interval that is never drawn cannot be seen."""
    for _ in range(4):
        figure.tight_layout(rect=rect)
        box = axes.get_window_extent()
        # two pixels spare: the data box holds the pixels whose centres are inside the axes
        short_width, short_height = columns + 2 - box.width, rows + 2 - box.height
        if short_width <= 0 and short_height <= 0:
            return
        width, height = figure.get_size_inches()
        figure.set_size_inches(
            width + max(short_width, 0.0) / figure.dpi, height + max(short_height, 0.0) / figure.dpi
        )
    figure.tight_layout(rect=rect)


def centre_samples(size: int, pixels: int) -> np.ndarray:
    """Which of ``size`` cells each of ``pixels`` pixels shows (nearest, at pixel centres),
    as matplotlib samples an image."""
    return (np.arange(pixels) * 2 + 1) * size // (2 * pixels)


class PaletteFigure:
    """A figure whose ``axes`` are filled with palette indices, one PNG per image.

    ``colours`` become palette entries 0, 1, …: what a monitor paints into the data box are
    these indices. The figure's colour bar or legend should use the same colours, so that
    they map onto them exactly. With ``y_axis_per_image`` the y axis (ticks and label) is
    drawn for each image from its own limits, else once with the frame.
    """

    def __init__(
        self,
        figure: Figure,
        axes: Axes,
        colours: Sequence[object],
        *,
        y_axis_per_image: bool = False,
    ) -> None:
        self.figure = figure
        self.axes = axes
        self.palette = palette_of(colours)
        self.y_axis_per_image = y_axis_per_image
        self._palette_bytes = self.palette.tobytes()
        self._palette_int = self.palette.astype(np.int32)
        self._frame: np.ndarray | None = None
        self._background: object = None
        self._overlays: list[tuple[slice, slice, np.ndarray]] = []
        #: Frame pixels inside the data box drawn over the data (spines): where, and what.
        self._on_top = np.zeros(0, np.intp)
        self._on_top_pixels = np.zeros(0, np.uint8)
        self._titles = DrawnStrips()
        self._y_axes = DrawnStrips()
        #: PNG text chunks of every image (the stamps drawn with the frame, in words).
        self.png_text: dict[str, str] = {}
        figure.canvas.draw()  # lays out the frame, so that the data box is known
        self.box = self._data_box()
        rows, columns = self.box
        # Where y tick labels and the y label can be: left of the box, a little beyond it.
        self._y_strip = (slice(max(rows.start - 9, 0), rows.stop + 9), slice(0, columns.start - 1))

    @property
    def data_shape(self) -> tuple[int, int]:
        """(rows, columns) of pixels inside the axes."""
        rows, columns = self.box
        return rows.stop - rows.start, columns.stop - columns.start

    def _data_box(self) -> tuple[slice, slice]:
        """Pixel rows (top down) and columns whose centres lie inside the axes, as
        matplotlib samples an image."""
        height = int(self.figure.canvas.get_width_height()[1])
        extent = self.axes.get_window_extent()
        columns = slice(int(np.ceil(extent.x0 - 0.5)), int(np.floor(extent.x1 - 0.5)) + 1)
        top = height - int(np.floor(extent.y1 - 0.5)) - 1
        bottom = height - int(np.ceil(extent.y0 - 0.5))
        return slice(top, bottom), columns

    def quantise(self, rgba: np.ndarray) -> np.ndarray:
        """Palette index of every pixel: the nearest palette colour of each distinct colour."""
        rgb = rgba[..., :3].astype(np.uint32)
        keys = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
        distinct, inverse = np.unique(keys.ravel(), return_inverse=True)
        colours = np.stack([distinct >> 16, (distinct >> 8) & 255, distinct & 255], axis=1)
        difference = colours.astype(np.int32)[:, None, :] - self._palette_int[None, :, :]
        nearest = (difference**2).sum(axis=2).argmin(axis=1).astype(np.uint8)
        return nearest[inverse].reshape(keys.shape)

    def _pixels(self) -> np.ndarray:
        return np.asarray(self.figure.canvas.buffer_rgba())

    def redraw_frame(self, overlays: Sequence[Artist] = ()) -> None:
        """Draw everything but the title, the data (and the per-image y axis); call once
        per tick, after changing ticks or stamps. ``overlays`` (a STALE banner) are drawn
        over the data of every image."""
        hidden = [self.axes.title, *overlays]
        if self.y_axis_per_image:
            hidden.append(self.axes.yaxis)
        for artist in hidden:
            artist.set_visible(False)
        canvas = self.figure.canvas
        canvas.draw()
        self._frame = self.quantise(self._pixels())
        self._background = canvas.copy_from_bbox(self.figure.bbox)
        # What the frame draws inside the axes (spines) stays on top of the data.
        inside = self._frame[self.box]
        facecolour = inside[inside.shape[0] // 2, inside.shape[1] // 2]
        self._on_top = np.flatnonzero(inside.ravel() != facecolour)
        self._on_top_pixels = inside.ravel()[self._on_top]
        self._overlays = []
        for artist in overlays:
            artist.set_visible(True)
            self._overlays.append(self._drawn_alone(artist))
        self.axes.title.set_visible(True)

    def _drawn_alone(self, artist: Artist) -> tuple[slice, slice, np.ndarray]:
        """The pixels of one artist with its bounding box, drawn over the frame."""
        canvas = self.figure.canvas
        canvas.restore_region(self._background)
        self.figure.draw_artist(artist)
        patch = getattr(artist, "get_bbox_patch", lambda: None)() or artist
        extent = patch.get_window_extent()
        height, width = self._frame.shape
        rows = slice(max(height - int(np.ceil(extent.y1)), 0), height - int(np.floor(extent.y0)))
        columns = slice(max(int(np.floor(extent.x0)), 0), min(int(np.ceil(extent.x1)), width))
        return rows, columns, self.quantise(self._pixels()[rows, columns])

    def _drawn_strip(self, artist: Artist, region: tuple[slice, slice]) -> np.ndarray:
        self.figure.canvas.restore_region(self._background)
        self.figure.draw_artist(artist)
        return self.quantise(self._pixels()[region])

    def start(self, title: str) -> np.ndarray:
        """A new image: the frame with ``title`` (each distinct title is drawn once)."""
        if self._frame is None:
            raise RuntimeError("redraw_frame() first")
        image = self._frame.copy()
        strip = self._titles.get(title)
        if strip is None:
            self.axes.set_title(title)
            strip = self._drawn_strip(self.axes.title, np.s_[: self.box[0].start - 1])
            self._titles.put(title, strip)
        image[: len(strip)] = strip
        return image

    def draw_y_axis(self, image: np.ndarray, label: str, ticks: Sequence[float]) -> None:
        """The y axis from ``ticks[0]`` to ``ticks[-1]`` (each distinct one drawn once)."""
        key = (label, *ticks)
        strip = self._y_axes.get(key)
        if strip is None:
            axes = self.axes
            axes.set_ylim(ticks[0], ticks[-1])
            axes.set_yticks(ticks)
            axes.set_ylabel(label)
            axes.yaxis.set_visible(True)
            strip = self._drawn_strip(axes.yaxis, self._y_strip)
            axes.yaxis.set_visible(False)
            self._y_axes.put(key, strip)
        image[self._y_strip] = strip

    def finish(self, image: np.ndarray) -> bytes:
        """Spines and overlays on top, then the 8-bit PNG."""
        image[self.box].flat[self._on_top] = self._on_top_pixels
        for rows, columns, pixels in self._overlays:
            image[rows, columns] = pixels
        height, width = image.shape
        picture = Image.frombuffer("P", (width, height), image, "raw", "P", 0, 1)
        picture.putpalette(self._palette_bytes)
        text = PngInfo()
        for key, value in self.png_text.items():
            text.add_text(key, value)
        buffer = io.BytesIO()
        picture.save(buffer, format="png", compress_level=1, pnginfo=text)
        return buffer.getvalue()
