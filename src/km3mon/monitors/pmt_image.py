"""Shared by pmt_rates and pmt_hrv: a per-DU image of every PMT (rows) against time (columns).

Every monitoring packet counts. Packets are binned by their DAQ time into columns of
``interval`` seconds; a rolling window keeps the last ``--columns`` of them. One process
serves all DUs (``-u DU`` restricts it to one, as in the original), so a 230-DU detector
needs one process. Rows are floor × 31 channels, the channels of a floor ordered by PMT
direction (top of the band = upward-looking PMTs).

Rendering reuses one figure per DU and spends at most half a render interval per tick;
DUs not reached are drawn first on the next tick, so a large detector never starves the
receiver and every plot still carries the time of its data.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from km3mon.controlhost import Message
from km3mon.daq.monitoring import hrv_bits, rates_hz
from km3mon.monitors.binning import OpticalSlots, TimeRing, add_rows
from km3mon.monitors.decoding import decode_monitoring, packet_times_s
from km3mon.monitors.output import utc
from km3mon.monitors.runtime import Context, Monitor, RoundRobin

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from matplotlib.image import AxesImage

    from km3mon.config import PipelineConfig

N_CHANNELS = 31
RENDER_BUDGET = 0.25  # of the render interval: the rest is for decoding at full rate


@dataclass
class DUPlot:
    figure: Figure
    image: AxesImage
    overlay: AxesImage | None


class PMTImageMonitor(Monitor):
    """Accumulates mean rate and HRV fraction per PMT per column; subclasses draw one of them."""

    tags = ("IO_MONIT",)
    default_interval_s = 20.0
    filename_pattern: ClassVar[str]

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
        n = len(self.slots)
        self.rate_sum = np.zeros((n, N_CHANNELS))
        self.hrv_sum = np.zeros((n, N_CHANNELS))
        self.packets = np.zeros(n)
        # float16 rings (kHz and fractions): 4 140 DOMs × 31 × 800 columns fit in 2 × 205 MB.
        self.rates_khz = np.full((n, N_CHANNELS, self.n_columns), np.nan, dtype=np.float16)
        self.hrv = np.full((n, N_CHANNELS, self.n_columns), np.nan, dtype=np.float16)
        self.ring = TimeRing(self.interval_s, self.n_columns, self._close_column)
        self.rows_by_du = self._rows_by_du()
        self.plots: dict[int, DUPlot] = {}
        self.round_robin = RoundRobin()
        self.dus = sorted(self.rows_by_du)

    def _rows_by_du(self) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """Per DU: the slots of its DOMs and the first image row of each (floor band)."""
        detector = self.detector
        rank = detector.channel_order.rank
        self.row_in_band = (N_CHANNELS - 1) - rank[:N_CHANNELS]
        rows = {}
        dus = detector.dom_du[self.slots.dom_index]
        floors = detector.dom_floor[self.slots.dom_index]
        for du in np.unique(dus):
            slots = np.flatnonzero(dus == du)
            rows[int(du)] = (slots, (floors[slots] - 1) * N_CHANNELS)
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
            self.rates_khz[:, :, position] = np.where(
                counts > 0, self.rate_sum / counts / 1e3, np.nan
            )
            self.hrv[:, :, position] = np.where(counts > 0, self.hrv_sum / counts, np.nan)
        self.rate_sum[:] = 0
        self.hrv_sum[:] = 0
        self.packets[:] = 0

    def du_image(self, ring: np.ndarray, du: int) -> np.ndarray:
        """(floors × 31, columns) image of one DU, oldest column left, from a ring array."""
        slots, band_start = self.rows_by_du[du]
        image = np.full((self.detector.n_floors * N_CHANNELS, self.n_columns), np.nan, np.float32)
        rows = band_start[:, None] + self.row_in_band[None, :]
        image[rows] = ring[slots][:, :, self.ring.chronological()]
        return image

    # -- rendering ----------------------------------------------------------------------

    def render(self) -> None:
        done = self.round_robin.run(self.dus, self.render_du, RENDER_BUDGET * self.interval_s)
        self.context.freshness.redraw_interval_s = self.round_robin.redraw_interval_s(
            len(self.dus), done, self.interval_s
        )

    def render_du(self, du: int) -> None:
        plot = self.plots.get(du) or self._new_plot(du)
        self.plots[du] = plot
        self.update_images(plot, du)
        self._time_axis(plot)
        plot.figure.axes[0].set_title(self.title(du))
        self.context.save_figure(
            self.filename_pattern.format(du=du), plot.figure, dpi=80, keep=True
        )

    def _new_plot(self, du: int) -> DUPlot:
        import matplotlib.pyplot as plt

        figure, axes = plt.subplots(figsize=(10, 8))
        n_rows = self.detector.n_floors * N_CHANNELS
        extent = (-0.5, self.n_columns - 0.5, -0.5, n_rows - 0.5)
        image, overlay = self.draw_images(axes, extent)
        axes.set_yticks(np.arange(self.detector.n_floors) * N_CHANNELS + N_CHANNELS / 2)
        axes.set_yticklabels([f"Floor {f}" for f in range(1, self.detector.n_floors + 1)])
        axes.set_xlabel(f"UTC time [{self.interval_s:g} s per column]")
        axes.set_title(self.title(du))
        figure.tight_layout(rect=(0, 0.03, 1, 1))
        return DUPlot(figure, image, overlay)

    def _time_axis(self, plot: DUPlot) -> None:
        axes = plot.figure.axes[0]
        starts = self.ring.starts_s[self.ring.chronological()]
        known = np.flatnonzero(~np.isnan(starts))
        if not len(known):
            axes.set_xticks([])
            return
        # Until the window has filled, show only the columns that have data.
        axes.set_xlim(known[0] - 0.5, self.n_columns - 0.5)
        ticks = np.unique(np.linspace(known[0], self.n_columns - 1, num=8).astype(int))
        span_s = starts[ticks[-1]] - starts[ticks[0]]
        labels = [utc(starts[t])[11 : 19 if span_s < 600 else 16] for t in ticks]
        axes.set_xticks(ticks, labels, rotation=30)

    # Subclasses: what to draw.
    def draw_images(
        self, axes: object, extent: tuple[float, float, float, float]
    ) -> tuple[AxesImage, AxesImage | None]:
        raise NotImplementedError

    def update_images(self, plot: DUPlot, du: int) -> None:
        raise NotImplementedError

    def title(self, du: int) -> str:
        raise NotImplementedError
