"""ahrs_calibration: calibrated yaw, pitch and roll of every DOM, per DU and floor, vs time.

Every monitoring packet is used (the original took every 29th): packets are fitted in
batches and averaged into time bins, ``time_range`` hours (``[CalibrateAHRS]``) in 2000
bins, yaw and roll as circular means so 359° and 1° average to 0°, not 180°. Base modules
have no compass and are skipped. Calibration constants come from the database when
reachable, else from ``--clbmap``/``--compass-map``/``--ahrscalib``; without any, the plots
show uncalibrated angles and say so in their titles.
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import numpy as np

from km3mon.controlhost import Message
from km3mon.detector import DetectorError, fit_ahrs, load_ahrs_calibration
from km3mon.detector.ahrs import IDENTITY_CONSTANTS, AHRSCalibration
from km3mon.monitors.binning import OpticalSlots, TimeRing, add_rows
from km3mon.monitors.decoding import decode_monitoring, packet_times_s
from km3mon.monitors.output import utc
from km3mon.monitors.palette_image import PaletteFigure
from km3mon.monitors.runtime import Context, Monitor, RoundRobin, register_monitor

if TYPE_CHECKING:
    from matplotlib.axes import Axes

N_BINS = 2000
ANGLES = ("yaw", "pitch", "roll")
CIRCULAR = {"yaw": True, "pitch": False, "roll": True}


class AHRSMonitor(Monitor):
    name = "ahrs_calibration"
    tags = ("IO_MONIT",)
    help = "calibrated yaw, pitch, roll per DU and floor vs time"
    default_interval_s = 60.0

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--clbmap", help="CLB map file (clbmap.txt format)")
        parser.add_argument("--compass-map", help="CLB -> compass file (integration table)")
        parser.add_argument("--ahrscalib", help="AHRS constants (StreamDS ahrscalib format)")

    def __init__(self, context: Context) -> None:
        super().__init__(context)
        detector = self.detector = context.detector
        self.calibration = self._load_calibration(context.args)
        hours = context.pipeline.calibrate_ahrs.time_range_h
        self.bin_s = hours * 3600 / N_BINS
        self.slots = OpticalSlots(detector)  # base modules have no compass
        n = len(self.slots)
        # Per open bin: sums of cos/sin (circular) or values, and packet counts.
        self.sums = {name: np.zeros((n, 2)) for name in ANGLES}
        self.counts = np.zeros(n)
        self.series = {name: np.full((n, N_BINS), np.nan, np.float32) for name in ANGLES}
        self.ring = TimeRing(self.bin_s, N_BINS, self._close_bin)
        self.uncalibrated_packets = 0
        self.round_robin = RoundRobin()
        du_of_slot = detector.dom_du[self.slots.dom_index]
        self.slots_by_du = {
            int(du): np.flatnonzero(du_of_slot == du) for du in np.unique(du_of_slot)
        }
        self._figure: PaletteFigure | None = None
        self._frame_head = 0  # ring head when the frame's time axis was drawn
        self._shown = np.zeros(0, np.intp)  # ring positions of the bins drawn, oldest first
        self._dot_columns = np.zeros(0, np.int64)  # pixel column of each of them

    def _load_calibration(self, args: argparse.Namespace) -> AHRSCalibration | None:
        try:
            return load_ahrs_calibration(
                args.det_id or None,
                clbmap=args.clbmap,
                compass_map=args.compass_map,
                ahrscalib=args.ahrscalib,
            )
        except DetectorError as error:
            self.log.warning("showing UNCALIBRATED yaw/pitch/roll: %s", error)
            return None

    # -- accumulation -------------------------------------------------------------------

    def consume(self, messages: list[Message]) -> None:
        packets = decode_monitoring(self.context, messages)
        slots = self.slots.of(self.context.dom_index(packets["dom_id"]))
        packets, slots = packets[slots >= 0], slots[slots >= 0]
        if not len(packets):
            return
        angles = self._orientation(packets)
        time_s = packet_times_s(packets)
        self.context.saw_data_at(float(time_s.max()))
        bins = self.ring.numbers(time_s)
        for value in np.unique(bins).tolist():
            self.ring.advance_to(value)
            chosen = bins == value
            for name in ANGLES:
                degrees = angles[name][chosen]
                if CIRCULAR[name]:
                    radians = np.radians(degrees)
                    pair = np.stack([np.cos(radians), np.sin(radians)], axis=1)
                else:
                    pair = np.stack([degrees, np.zeros_like(degrees)], axis=1)
                add_rows(self.sums[name], slots[chosen], pair)
            add_rows(self.counts, slots[chosen], np.ones(int(chosen.sum())))

    def _orientation(self, packets: np.ndarray) -> dict[str, np.ndarray]:
        a = packets["A"].astype(np.float64)
        h = packets["H"].astype(np.float64)
        if self.calibration is None:
            c = IDENTITY_CONSTANTS
            yaw, pitch, roll = fit_ahrs(a, h, c.a_offset, c.a_rot, c.h_offset, c.h_rot)
            self.uncalibrated_packets += len(packets)
        else:
            fitted = self.calibration.orientation(packets["dom_id"], a, h)
            yaw, pitch, roll = fitted.yaw_deg, fitted.pitch_deg, fitted.roll_deg
            self.uncalibrated_packets += int((~fitted.calibrated).sum())
        return {"yaw": yaw, "pitch": pitch, "roll": roll}

    def _close_bin(self, position: int) -> None:
        with np.errstate(invalid="ignore", divide="ignore"):
            for name in ANGLES:
                self.series[name][:, position] = self._mean(name)
                self.sums[name][:] = 0
        self.counts[:] = 0

    def _mean(self, name: str) -> np.ndarray:
        sums, counts = self.sums[name], self.counts
        if CIRCULAR[name]:
            mean = np.degrees(np.arctan2(sums[:, 1], sums[:, 0]))
            if name == "yaw":
                mean = np.mod(mean, 360.0)
        else:
            mean = sums[:, 0] / counts
        return np.where(counts > 0, mean, np.nan)

    # -- rendering ----------------------------------------------------------------------

    def render(self) -> None:
        if self._figure is None:
            self._figure = self._new_figure()
        self._redraw_frame()
        self.round_robin.start(sorted(self.slots_by_du))
        self.context.freshness.redraw_interval_s = self.round_robin.redraw_interval_s
        self.context.save_metrics("ahrs_calibration", self.latest())

    def render_more(self) -> bool:
        return self.round_robin.run(self.render_du)

    def _redraw_frame(self) -> None:
        """Time axis, stamps, and the bins shown with their pixel columns: the same for
        every DU of a tick."""
        assert self._figure is not None
        self._shown = self.ring.filled()
        self._time_axis(self._figure.axes)
        self.context.redraw_frame(self._figure)
        self._frame_head = self.ring.head
        width = self._figure.data_shape[1]
        shown_bins = len(self._shown)
        self._dot_columns = ((np.arange(shown_bins) + 0.5) * width / shown_bins).astype(np.int64)

    def render_du(self, du: int) -> None:
        assert self._figure is not None
        if self.ring.head != self._frame_head:  # a bin closed during the tick
            self._redraw_frame()
        figure = self._figure
        slots = self.slots_by_du[du]
        floors = self.detector.dom_floor[self.slots.dom_index[slots]]
        state = "calibrated" if self.calibration is not None else "UNCALIBRATED"
        for name in ANGLES:
            start = time.perf_counter()
            image = figure.start(
                f"AHRS {name} ({state}) on DU {du}, detector {self.detector.det_id}: "
                f"mean per {self.bin_s:.0f} s"
            )
            values = self.series[name][slots][:, self._shown]
            ticks = nice_ticks(values)
            figure.draw_y_axis(image, f"{name} [deg]", ticks)
            self._paint_dots(image[figure.box], values, floors, (ticks[0], ticks[-1]))
            png = figure.finish(image)
            self.context.save_png(f"{name}_calib_du{du}.png", png, start)

    def _paint_dots(
        self,
        box: np.ndarray,
        values: np.ndarray,
        floors: np.ndarray,
        y_range: tuple[float, float],
    ) -> None:
        """A 2×2-pixel dot per floor and shown bin, in the floor's colour, upper floors on
        top."""
        height, width = box.shape
        order = np.argsort(floors, kind="stable")
        values = values[order]
        columns = self._dot_columns
        low, high = y_range
        floor_of_row, bin_of_column = np.nonzero(np.isfinite(values))
        picked = values[floor_of_row, bin_of_column]
        rows = ((high - picked) * ((height - 1) / (high - low))).astype(np.int64)
        colours = (floors[order][floor_of_row] - 1).astype(np.uint8)
        for down, right in ((0, 0), (0, 1), (1, 0), (1, 1)):
            r, c = rows + down, columns[bin_of_column] + right
            inside = (r >= 0) & (r < height) & (c >= 0) & (c < width)
            box[r[inside], c[inside]] = colours[inside]

    def _time_axis(self, axes: Axes) -> None:
        starts = self.ring.starts_s[self._shown]
        if np.isnan(starts[0]):
            now = time.time()
            begin, end = now - self.bin_s, now
        else:
            begin = starts[0]
            end = starts[-1] + self.bin_s
        axes.set_xlim(datetime.fromtimestamp(begin, UTC), datetime.fromtimestamp(end, UTC))

    def _new_figure(self) -> PaletteFigure:
        import matplotlib.dates as mdates
        import matplotlib.pyplot as plt
        from matplotlib.lines import Line2D

        n_floors = max(self.detector.n_floors, 2)
        colours = [plt.get_cmap("viridis")(f / (n_floors - 1)) for f in range(n_floors)]
        figure, axes = plt.subplots(figsize=(16, 6), dpi=80)
        axes.xaxis_date(tz=UTC)
        locator = mdates.AutoDateLocator(tz=UTC)
        axes.xaxis.set_major_locator(locator)
        axes.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator, tz=UTC))
        axes.yaxis.get_major_formatter().set_useOffset(False)
        axes.set_xlabel("UTC time")
        axes.set_ylabel("yaw [deg]")
        axes.set_title("AHRS")
        now = datetime.now(UTC)
        axes.set_xlim(now - timedelta(hours=1), now)
        handles = [
            Line2D([], [], marker="o", linestyle="", markersize=5, color=colour, label=f"Floor {f}")
            for f, colour in enumerate(colours[: self.detector.n_floors], start=1)
        ]
        axes.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
        figure.tight_layout(rect=(0, 0.03, 1, 1))
        return PaletteFigure(figure, axes, colours, y_axis_per_image=True)

    def latest(self) -> dict[str, object]:
        """Newest closed bin per DOM, for the API and for checks against the injected truth."""
        newest = self.ring.newest
        start = float(self.ring.starts_s[newest])
        return {
            "calibrated": self.calibration is not None,
            "uncalibrated_packets": self.uncalibrated_packets,
            "bin_start": start,
            "bin_start_utc": utc(start) if np.isfinite(start) else None,
            "dom_id": self.detector.dom_ids[self.slots.dom_index],
            **{f"{name}_deg": self.series[name][:, newest] for name in ANGLES},
        }


def nice_ticks(values: np.ndarray) -> list[float]:
    """Round y ticks around the finite values; the first and last are the axis limits."""
    from matplotlib.ticker import MaxNLocator

    finite = values[np.isfinite(values)]
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    if high - low < 1e-3:
        low, high = low - 0.5, high + 0.5
    ticks = MaxNLocator(nbins=6).tick_values(low, high)
    return [round(float(t), 9) for t in ticks]


def register(subparsers: argparse._SubParsersAction) -> None:
    register_monitor(subparsers, AHRSMonitor)
