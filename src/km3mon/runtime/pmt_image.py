"""Per-DU images of every PMT (rows) against time (columns): mean rate, high-rate veto.

One accumulation serves every kind of image (``PMTImage``): pmt_rates draws the rate and the
HRV images from one decode of the IO_MONIT stream (the original folded its pmt_hrv into
pmt_rates in 2019, ``598fcca``).

Every monitoring packet counts. Packets are binned by their DAQ time into columns of
``interval`` seconds; a rolling window keeps the last ``--columns`` of them. One process
serves all DUs (``-u DU`` restricts it to one, as in the original), so a 230-DU detector
needs one process. Rows are floor × 31 channels, the channels of a floor ordered by PMT
direction (top of the band = upward-looking PMTs).

A closed column is stored as colour levels (one byte per PMT and kind), so that drawing a DU
is one gather into a frame that matplotlib draws once per tick (see ``palette_image``): all
230 DUs are redrawn every interval, in short slices between batches (``RoundRobin``). The
levels of older columns are kept compressed per DU (``LevelColumns``): 4.4 h of a 230-DU
detector are 103 MB per kind as they are.
"""

from __future__ import annotations

import argparse
import time
import zlib
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from km3mon.controlhost import Message
from km3mon.daq.monitoring import hrv_bits, rates_hz
from km3mon.figures.palette_image import PaletteFigure, centre_samples, fit_axes_to_cells
from km3mon.runtime.binning import OpticalSlots, TimeRing, add_rows
from km3mon.runtime.decoding import decode_monitoring, packet_times_s
from km3mon.runtime.monitor import Context, Monitor, RoundRobin
from km3mon.timetext import utc

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from km3mon.config import PipelineConfig

N_CHANNELS = 31
#: Colour levels of the data (palette entries 0 … N_LEVELS-1); special colours follow.
N_LEVELS = 160
UNDER, OVER, MISSING, HIGHLIGHT = range(N_LEVELS, N_LEVELS + 4)
#: Columns per compressed block of stored levels (about 11 minutes at 20 s per column).
BLOCK_COLUMNS = 32


class LevelColumns:
    """The levels of every PMT (rows) in a ring of columns, written one column at a time in
    ring order (as ``TimeRing`` closes them).

    Only the block of columns being written is kept as it is; every other block is kept per
    DU, zlib-compressed: a PMT's rate changes little from one column to the next and the
    high-rate veto is mostly off, so the 103 MB per kind of a 230-DU detector become about
    65 MB of rates and 8 MB of HRV (``bench/bench_pmt_levels.py``). Drawing a DU inflates
    that DU's blocks only (half a megabyte).
    """

    def __init__(self, rows_by_du: dict[int, np.ndarray], n_rows: int, n_columns: int) -> None:
        self.rows_by_du = rows_by_du
        self.n_columns = n_columns
        self.spans = [
            slice(start, min(start + BLOCK_COLUMNS, n_columns))
            for start in range(0, n_columns, BLOCK_COLUMNS)
        ]
        #: Per block, per DU: its rows' levels, compressed (no entry: every level MISSING).
        self.packed: list[dict[int, bytes]] = [{} for _ in self.spans]
        self.open_block = 0
        self.open = np.full((n_rows, BLOCK_COLUMNS), MISSING, np.uint8)

    def write(self, position: int, levels: np.ndarray) -> None:
        """Store the levels of every row at ring ``position``."""
        block = position // BLOCK_COLUMNS
        if block != self.open_block:
            self._pack(self.open_block)
            self._unpack(block)
        self.open[:, position - self.spans[block].start] = levels

    def _pack(self, block: int) -> None:
        width = self.spans[block].stop - self.spans[block].start
        dense = self.open[:, :width]
        self.packed[block] = {
            du: zlib.compress(dense[rows].tobytes(), 1) for du, rows in self.rows_by_du.items()
        }

    def _unpack(self, block: int) -> None:
        """Open ``block``: its columns not yet written again still show their old levels."""
        width = self.spans[block].stop - self.spans[block].start
        self.open[:] = MISSING
        for du, rows in self.rows_by_du.items():
            self.open[rows, :width] = self._block(block, du)
        self.packed[block] = {}
        self.open_block = block

    def _block(self, block: int, du: int) -> np.ndarray | int:
        packed = self.packed[block].get(du)
        if packed is None:
            return MISSING
        levels = np.frombuffer(zlib.decompress(packed), np.uint8)
        return levels.reshape(len(self.rows_by_du[du]), -1)

    def of_du(self, du: int) -> np.ndarray:
        """(PMTs of ``du`` + 1, columns) levels of one DU; the extra last row is MISSING
        (what a floor without a DOM shows)."""
        rows = self.rows_by_du[du]
        levels = np.full((len(rows) + 1, self.n_columns), MISSING, np.uint8)
        for block, span in enumerate(self.spans):
            if block == self.open_block:
                levels[:-1, span] = self.open[rows, : span.stop - span.start]
            else:
                levels[:-1, span] = self._block(block, du)
        return levels


class PMTImage:
    """One kind of image: the colour of every PMT in a closed column, the frame's words, and
    the stored levels (one byte per PMT and column)."""

    filename_pattern: ClassVar[str]
    #: Colour map of the levels, and of the under/over/missing/highlight entries.
    colour_map: ClassVar[str]
    special_colours: ClassVar[tuple[str, str, str, str]]

    def __init__(self, context: Context, levels: LevelColumns) -> None:
        self.det_id = context.detector.det_id
        self.levels = levels
        self.figure: PaletteFigure | None = None
        self.frame_head = 0  # ring head when the frame's time axis was drawn
        self.pixel_rows = np.zeros(0, np.intp)  # image row each pixel row shows
        self.pixel_columns = np.zeros(0, np.intp)  # ring position each pixel column shows

    def column_levels(self, rates_khz: np.ndarray, hrv_fraction: np.ndarray) -> np.ndarray:
        """(slots, 31) uint8 palette index of every PMT in a closed column."""
        raise NotImplementedError

    def colour_scale(self) -> tuple[float, float, str, str]:
        """Colour bar: lowest and highest value, extend ("neither", "both"), label."""
        raise NotImplementedError

    def title(self, du: int) -> str:
        raise NotImplementedError


class HRVImage(PMTImage):
    """The fraction of an interval's packets with the PMT's high-rate veto on."""

    filename_pattern = "pmt_hrv_du{du}.png"
    colour_map = "viridis"
    special_colours = ("black", "white", "#bdbdbd", "white")

    def column_levels(self, rates_khz: np.ndarray, hrv_fraction: np.ndarray) -> np.ndarray:
        return scale_levels(hrv_fraction, 0.0, 1.0)

    def colour_scale(self) -> tuple[float, float, str, str]:
        return 0.0, 1.0, "neither", "fraction of packets with high-rate veto"

    def title(self, du: int) -> str:
        return f"High-rate veto ratio, detector {self.det_id} DU {du}"


def scale_levels(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """Level of each value on a linear scale: UNDER/OVER outside, MISSING for NaN."""
    with np.errstate(invalid="ignore"):
        levels = np.floor((values - low) * (N_LEVELS / (high - low)))
        levels = np.clip(np.nan_to_num(levels), 0, N_LEVELS - 1).astype(np.uint8)
        levels[values < low] = UNDER
        levels[values > high] = OVER
    levels[np.isnan(values)] = MISSING
    return levels


class PMTImageMonitor(Monitor):
    """Accumulates mean rate and HRV fraction per PMT per column; each of ``image_kinds``
    stores its colours of a closed column and draws its images."""

    tags = ("IO_MONIT",)
    default_interval_s = 20.0
    image_kinds: ClassVar[tuple[type[PMTImage], ...]]

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("-u", "--du", type=int, help="only this DU (default: all DUs)")
        parser.add_argument(
            "--columns", type=int, default=800, help="columns kept (800 × 20 s ≈ 4.4 h)"
        )

    @classmethod
    def configured_interval_s(cls, pipeline: PipelineConfig) -> float | None:
        return pipeline.pmt_rates.interval_s

    def __init__(self, context: Context) -> None:
        super().__init__(context)
        detector = self.detector = context.detector
        self.interval_s = context.freshness.render_interval_s
        self.n_columns = context.args.columns
        self.slots = OpticalSlots(detector, context.args.du)
        self.du_of_slot = detector.dom_du[self.slots.dom_index]
        n = len(self.slots)
        self.rate_sum = np.zeros((n, N_CHANNELS))
        self.hrv_sum = np.zeros((n, N_CHANNELS))
        self.packets = np.zeros(n)
        #: Means of the newest closed column (kHz, fraction), for the metrics.
        self.newest_rates_khz = np.full((n, N_CHANNELS), np.nan)
        self.newest_hrv = np.full((n, N_CHANNELS), np.nan)
        self.image_rows = self._image_rows_by_du()
        self.dus = sorted(self.image_rows)
        rows_by_du = {
            du: (
                np.flatnonzero(self.du_of_slot == du)[:, None] * N_CHANNELS + np.arange(N_CHANNELS)
            ).ravel()
            for du in self.dus
        }
        self.images = [
            kind(context, LevelColumns(rows_by_du, n * N_CHANNELS, self.n_columns))
            for kind in self.image_kinds
        ]
        self.ring = TimeRing(self.interval_s, self.n_columns, self._close_column)
        self.round_robin = RoundRobin()

    def _image_rows_by_du(self) -> dict[int, np.ndarray]:
        """Per DU, the row of its levels (``LevelColumns.of_du``) shown in each image row
        (0 = bottom floor's band)."""
        detector = self.detector
        rank = detector.channel_order.rank[:N_CHANNELS]
        row_in_band = (N_CHANNELS - 1) - rank
        floors = detector.dom_floor[self.slots.dom_index]
        rows = {}
        for du in np.unique(self.du_of_slot):
            slots = np.flatnonzero(self.du_of_slot == du)
            no_dom = len(slots) * N_CHANNELS
            image_rows = np.full(detector.n_floors * N_CHANNELS, no_dom)
            band_start = (floors[slots] - 1) * N_CHANNELS
            image_rows[band_start[:, None] + row_in_band[None, :]] = (
                np.arange(len(slots))[:, None] * N_CHANNELS + np.arange(N_CHANNELS)[None, :]
            )
            rows[int(du)] = image_rows
        return rows

    # -- accumulation -------------------------------------------------------------------

    def consume(self, messages: list[Message]) -> None:
        packets = decode_monitoring(self.context, messages)
        if not len(packets):
            return
        slots = self.slots.of(self.context.dom_index(packets["dom_id"]))
        time_s = packet_times_s(packets)
        self.context.saw_data_at(float(time_s.max()))
        columns = self.ring.numbers(time_s)
        use = slots >= 0
        rates, hrv = rates_hz(packets), hrv_bits(packets)
        for column in np.unique(columns[use]).tolist():
            self.ring.advance_to(column)
            chosen = use & (columns == column)
            add_rows(self.rate_sum, slots[chosen], rates[chosen])
            add_rows(self.hrv_sum, slots[chosen], hrv[chosen])
            add_rows(self.packets, slots[chosen], np.ones(int(chosen.sum())))

    def _close_column(self, position: int) -> None:
        with np.errstate(invalid="ignore", divide="ignore"):
            counts = self.packets[:, None]
            self.newest_rates_khz = np.where(counts > 0, self.rate_sum / counts / 1e3, np.nan)
            self.newest_hrv = np.where(counts > 0, self.hrv_sum / counts, np.nan)
        for image in self.images:
            levels = image.column_levels(self.newest_rates_khz, self.newest_hrv)
            image.levels.write(position, levels.ravel())
        self.rate_sum[:] = 0
        self.hrv_sum[:] = 0
        self.packets[:] = 0

    # -- rendering ----------------------------------------------------------------------

    def render(self) -> None:
        for image in self.images:
            if image.figure is None:
                image.figure = self._new_figure(image)
                height = image.figure.data_shape[0]  # a title of two lines leaves fewer
                image.pixel_rows = centre_samples(self.detector.n_floors * N_CHANNELS, height)
            self._redraw_frame(image)
        kinds = range(len(self.images))
        self.round_robin.start([(kind, du) for du in self.dus for kind in kinds])
        self.context.freshness.redraw_interval_s = self.round_robin.redraw_interval_s

    def render_more(self) -> bool:
        return self.round_robin.run(self.render_one)

    def _redraw_frame(self, image: PMTImage) -> None:
        """Time axis, stamps, and the ring columns each pixel column shows: the same for
        every DU of a tick."""
        assert image.figure is not None
        shown = self.ring.filled()
        self._time_axis(image.figure.axes, shown)
        self.context.redraw_frame(image.figure)
        image.frame_head = self.ring.head
        width = image.figure.data_shape[1]
        image.pixel_columns = shown[centre_samples(len(shown), width)]

    def render_one(self, key: tuple[int, int]) -> None:
        """Draw one image: ``key`` is (index of its kind in ``images``, DU)."""
        kind, du = key
        image = self.images[kind]
        assert image.figure is not None
        start = time.perf_counter()
        if self.ring.head != image.frame_head:  # a column closed during the tick
            self._redraw_frame(image)
        pixels = image.figure.start(image.title(du))
        rows = self.image_rows[du][::-1][image.pixel_rows]  # top row first
        levels = image.levels.of_du(du)
        pixels[image.figure.box] = levels[rows[:, None], image.pixel_columns[None, :]]
        png = image.figure.finish(pixels)
        self.context.save_png(image.filename_pattern.format(du=du), png, start)

    def _new_figure(self, image: PMTImage) -> PaletteFigure:
        import matplotlib.pyplot as plt
        from matplotlib.colors import ListedColormap, Normalize

        cmap = plt.get_cmap(image.colour_map)
        colours = [cmap((level + 0.5) / N_LEVELS) for level in range(N_LEVELS)]
        under, over, missing, highlight = image.special_colours
        figure, axes = plt.subplots(figsize=(10, 8), dpi=80)
        n_rows = self.detector.n_floors * N_CHANNELS
        axes.set_xlim(-0.5, self.n_columns - 0.5)
        axes.set_ylim(-0.5, n_rows - 0.5)
        axes.set_yticks(np.arange(self.detector.n_floors) * N_CHANNELS + N_CHANNELS / 2)
        axes.set_yticklabels([f"Floor {f}" for f in range(1, self.detector.n_floors + 1)])
        axes.tick_params(axis="y", length=0)
        axes.set_xlabel(f"UTC time [{self.interval_s:g} s per column]")
        axes.set_title(image.title(self.dus[0]))
        low, high, extend, label = image.colour_scale()
        level_map = ListedColormap(colours).with_extremes(under=under, over=over)
        scale = plt.cm.ScalarMappable(Normalize(low, high), level_map)
        colour_bar = figure.colorbar(scale, ax=axes, extend=extend, pad=0.01)
        colour_bar.set_label(label)
        fit_axes_to_cells(figure, axes, n_rows, self.n_columns, rect=(0, 0.03, 1, 1))
        return PaletteFigure(figure, axes, [*colours, under, over, missing, highlight])

    def _time_axis(self, axes: Axes, shown: np.ndarray) -> None:
        """Columns as in the ring's chronological order: the shown ones are the last."""
        first = self.n_columns - len(shown)
        starts = self.ring.starts_s[shown]
        axes.set_xlim(first - 0.5, self.n_columns - 0.5)
        if np.isnan(starts[0]):
            axes.set_xticks([])
            return
        ticks = np.unique(np.linspace(0, len(shown) - 1, num=8).astype(int))
        span_s = starts[ticks[-1]] - starts[ticks[0]]
        labels = [utc(starts[t])[11 : 19 if span_s < 600 else 16] for t in ticks]
        axes.set_xticks(first + ticks, labels, rotation=30)
