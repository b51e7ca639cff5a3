"""ahrs_calibration: calibrated yaw, pitch and roll of every DOM, per DU and floor, vs time.

Every monitoring packet is used (the original took every 29th): packets are fitted in
batches and averaged into time bins, ``time_range`` hours (``[CalibrateAHRS]``) in 2000
bins, yaw and roll as circular means so 359° and 1° average to 0°, not 180°. Base modules
have no compass and are skipped. Calibration constants come from the database when
reachable, else from ``--clbmap``/``--compass-map``/``--ahrscalib``; without any, the plots
show uncalibrated angles and say so in their titles. DOMs that have no constants while the
others do are drawn as grey crosses, named in the title ("uncalibrated: floors 5, 7") and
listed in the metrics: fitted with identity constants their yaw is ~10° off, which must not
pass for a rotation. (The original skipped them silently; here they stay visible as what
they are.)

``ahrs_summary.png`` shows the whole detector: per DOM the deviation of the newest yaw,
pitch and roll from the DOM's own median over the last 24 hours (or the window kept).
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
from km3mon.figures.ahrs import (
    ANGLES,
    DEVIATION_RANGE_DEG,
    deviation_colours,
    deviation_legend,
    deviation_levels,
    nice_ticks,
    row_medians,
    wrap_deg,
)
from km3mon.figures.palette_image import PaletteFigure
from km3mon.figures.summary_map import DUFloorMap, Panel
from km3mon.runtime.binning import Int16Columns, OpticalSlots, TimeRing, add_rows
from km3mon.runtime.decoding import decode_monitoring, packet_times_s
from km3mon.runtime.monitor import Context, Monitor, RoundRobin, register_monitor
from km3mon.timetext import utc

if TYPE_CHECKING:
    from matplotlib.axes import Axes

N_BINS = 2000
#: Bin means are kept to 0.02°: far below a compass's noise and the summary's colour steps
#: (0.4° for pitch and roll), in int16 (50 MB less than float32 at 230 DUs).
ANGLE_STEP_DEG = 0.02
CIRCULAR = {"yaw": True, "pitch": False, "roll": True}
UNCALIBRATED_COLOUR = "#8c8c8c"
#: The summary's baseline: each DOM's median over this window (or the whole ring if shorter).
BASELINE_H = 24.0
BASELINE_EVERY_S = 600.0
SUMMARY = "ahrs_summary"


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
        self.series = {name: Int16Columns(n, N_BINS, ANGLE_STEP_DEG) for name in ANGLES}
        self.ring = TimeRing(self.bin_s, N_BINS, self._close_bin)
        self.uncalibrated_packets = 0
        slot_dom_ids = detector.dom_ids[self.slots.dom_index]
        if self.calibration is None:
            self.calibrated_slot = np.zeros(n, bool)
        else:
            self.calibrated_slot = np.isin(slot_dom_ids, self.calibration.calibrated_dom_ids)
        self.round_robin = RoundRobin()
        du_of_slot = detector.dom_du[self.slots.dom_index]
        self.slots_by_du = {
            int(du): np.flatnonzero(du_of_slot == du) for du in np.unique(du_of_slot)
        }
        self._figure: PaletteFigure | None = None
        self._frame_head = 0  # ring head when the frame's time axis was drawn
        self._shown = np.zeros(0, np.intp)  # ring positions of the bins drawn, oldest first
        self._dot_columns = np.zeros(0, np.int64)  # pixel column of each of them
        self.summary: DUFloorMap | None = None
        self._baselines: dict[str, tuple[np.ndarray, np.ndarray]] | None = None
        self._baselines_at = -np.inf
        self._baseline_bins = 0

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
                self.series[name].store(position, self._mean(name))
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
        self.render_summary()

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
        calibrated = self.calibrated_slot[slots]
        if self.calibration is None:
            state, second_line = "UNCALIBRATED", "no calibration constants: every floor"
        elif calibrated.all():
            state, second_line = "calibrated", "every floor calibrated"
        else:
            state = "calibrated"
            second_line = "uncalibrated (grey ×, no constants): floors " + ", ".join(
                str(f) for f in sorted(floors[~calibrated])
            )
        for name in ANGLES:
            start = time.perf_counter()
            image = figure.start(
                f"AHRS {name} ({state}) on DU {du}, detector {self.detector.det_id}: "
                f"mean per {self.bin_s:.3g} s\n{second_line}"
            )
            values = self.series[name].read(slots, self._shown)
            ticks = nice_ticks(values)
            figure.draw_y_axis(image, f"{name} [deg]", ticks)
            crosses = ~calibrated if self.calibration is not None else np.zeros_like(calibrated)
            self._paint_dots(image[figure.box], values, floors, (ticks[0], ticks[-1]), crosses)
            png = figure.finish(image)
            self.context.save_png(f"{name}_calib_du{du}.png", png, start)

    def _paint_dots(
        self,
        box: np.ndarray,
        values: np.ndarray,
        floors: np.ndarray,
        y_range: tuple[float, float],
        crosses: np.ndarray,
    ) -> None:
        """A 2×2-pixel dot per floor and shown bin in the floor's colour, upper floors on
        top; floors marked in ``crosses`` (uncalibrated) as grey 3×3 crosses, beneath."""
        height, width = box.shape
        order = np.lexsort((floors, ~crosses))  # crosses first, then floors upwards
        values = values[order]
        columns = self._dot_columns
        low, high = y_range
        floor_of_row, bin_of_column = np.nonzero(np.isfinite(values))
        picked = values[floor_of_row, bin_of_column]
        rows = ((high - picked) * ((height - 1) / (high - low))).astype(np.int64)
        colours = (floors[order][floor_of_row] - 1).astype(np.uint8)
        cross = crosses[order][floor_of_row]
        colours[cross] = self._uncalibrated_index
        dot = ((0, 0), (0, 1), (1, 0), (1, 1))
        x_mark = ((-1, -1), (-1, 1), (0, 0), (1, -1), (1, 1))
        for offsets, chosen in ((x_mark, cross), (dot, ~cross)):
            for down, right in offsets:
                r, c = rows[chosen] + down, columns[bin_of_column[chosen]] + right
                inside = (r >= 0) & (r < height) & (c >= 0) & (c < width)
                box[r[inside], c[inside]] = colours[chosen][inside]

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
        self._uncalibrated_index = len(colours)
        figure, axes = plt.subplots(figsize=(16, 6), dpi=80)
        axes.xaxis_date(tz=UTC)
        locator = mdates.AutoDateLocator(tz=UTC)
        axes.xaxis.set_major_locator(locator)
        axes.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator, tz=UTC))
        axes.yaxis.get_major_formatter().set_useOffset(False)
        axes.set_xlabel("UTC time")
        axes.set_ylabel("yaw [deg]")
        axes.set_title("AHRS\n(second line)")  # room for two lines
        now = datetime.now(UTC)
        axes.set_xlim(now - timedelta(hours=1), now)
        handles = [
            Line2D([], [], marker="o", linestyle="", markersize=5, color=colour, label=f"Floor {f}")
            for f, colour in enumerate(colours[: self.detector.n_floors], start=1)
        ]
        if self.calibration is not None and not self.calibrated_slot.all():
            handles.append(
                Line2D(
                    [],
                    [],
                    marker="x",
                    linestyle="",
                    markersize=6,
                    color=UNCALIBRATED_COLOUR,
                    label="uncalibrated",
                )
            )
        axes.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
        figure.tight_layout(rect=(0, 0.03, 1, 1))
        return PaletteFigure(figure, axes, [*colours, UNCALIBRATED_COLOUR], y_axis_per_image=True)

    def latest(self) -> dict[str, object]:
        """Newest closed bin per DOM, for the API and for checks against the injected truth."""
        newest = self.ring.newest
        start = float(self.ring.starts_s[newest])
        uncalibrated = ~self.calibrated_slot
        floors = self.detector.dom_floor[self.slots.dom_index]
        return {
            "calibrated": self.calibration is not None,
            "uncalibrated_packets": self.uncalibrated_packets,
            "uncalibrated_dom_ids": self.detector.dom_ids[self.slots.dom_index[uncalibrated]],
            "uncalibrated_floors": {
                str(du): sorted(int(f) for f in floors[slots][uncalibrated[slots]])
                for du, slots in self.slots_by_du.items()
                if uncalibrated[slots].any()
            },
            "bin_start": start,
            "bin_start_utc": utc(start) if np.isfinite(start) else None,
            "dom_id": self.detector.dom_ids[self.slots.dom_index],
            **{f"{name}_deg": self.series[name].read(slice(None), newest) for name in ANGLES},
        }

    # -- the detector-wide summary ------------------------------------------------------

    def baselines(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Per angle and slot: a reference angle and the median of the values around it
        over the baseline window (for yaw and roll the reference is the circular mean, so
        359° and 1° are 2° apart). Recomputed every BASELINE_EVERY_S: a 24 h median does not
        move within minutes, and it is the costly part of the summary."""
        now = time.monotonic()
        window = self.ring.filled()[-max(1, round(BASELINE_H * 3600 / self.bin_s)) :]
        young = len(window) > 1.1 * self._baseline_bins  # the window still fills: follow it
        if (
            self._baselines is not None
            and now - self._baselines_at < BASELINE_EVERY_S
            and not young
        ):
            return self._baselines
        baselines = {}
        for name in ANGLES:
            values = self.series[name].read(slice(None), window)
            reference = np.zeros(len(values))
            if CIRCULAR[name]:
                radians = np.radians(values)  # the circular mean: arctan2 of the sums
                reference = np.degrees(
                    np.arctan2(np.nansum(np.sin(radians), 1), np.nansum(np.cos(radians), 1))
                )
                values = wrap_deg(values - reference[:, None])
            baselines[name] = (reference, row_medians(values))
        self._baselines, self._baselines_at, self._baseline_bins = baselines, now, len(window)
        return baselines

    def deviations(self) -> dict[str, np.ndarray]:
        """Per angle and slot: newest bin minus the DOM's median over the baseline window;
        NaN without data in the newest bin."""
        newest = self.ring.newest
        result = {}
        for name, (reference, median) in self.baselines().items():
            latest = self.series[name].read(slice(None), newest) - reference
            if CIRCULAR[name]:
                latest = wrap_deg(latest)
            result[name] = latest - median
        return result

    def render_summary(self) -> None:
        start = time.perf_counter()
        if self.summary is None:
            palette = deviation_colours()
            panels = [Panel(f"{name} − own median", deviation_legend(name)) for name in ANGLES]
            self.summary = DUFloorMap(self.detector, self.slots.dom_index, palette, panels)
        deviations = self.deviations()
        levels = [deviation_levels(deviations[name], DEVIATION_RANGE_DEG[name]) for name in ANGLES]
        self.context.redraw_frame(self.summary.figure)
        window_h = min(BASELINE_H, N_BINS * self.bin_s / 3600)
        title = (
            f"AHRS per DOM: newest {self.bin_s:.3g} s mean minus the DOM's own median over "
            f"{window_h:g} h, detector {self.detector.det_id}"
            + ("" if self.calibration is not None else " (UNCALIBRATED)")
        )
        png = self.summary.render(title, levels)
        self.context.save_png(f"{SUMMARY}.png", png, start)
        self.context.save_metrics(
            SUMMARY,
            {
                "bin_start": float(self.ring.starts_s[self.ring.newest]),
                "baseline_h": window_h,
                "dom_id": self.detector.dom_ids[self.slots.dom_index],
                **{f"{name}_deviation_deg": deviations[name] for name in ANGLES},
                "du_axis": self.summary.du_axis,
                "floor_axes": self.summary.floor_axes(),
            },
        )


def register(subparsers: argparse._SubParsersAction) -> None:
    register_monitor(subparsers, AHRSMonitor)
