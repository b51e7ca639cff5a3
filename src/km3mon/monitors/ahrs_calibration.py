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

import numpy as np

from km3mon.controlhost import Message
from km3mon.daq import DAQFormatError, decode_monitoring_batch
from km3mon.detector import DetectorError, fit_ahrs, load_ahrs_calibration
from km3mon.detector.ahrs import IDENTITY_CONSTANTS, AHRSCalibration
from km3mon.monitors.output import utc
from km3mon.monitors.runtime import Context, Monitor, RoundRobin, register_monitor

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
        optical = np.flatnonzero(detector.dom_floor > 0)
        self.dom_index = optical
        self.slot_of_dom = np.full(len(detector.dom_ids) + 1, -1)
        self.slot_of_dom[optical] = np.arange(len(optical))
        n = len(optical)
        # Per open bin: sums of cos/sin (circular) or values, and packet counts.
        self.sums = {name: np.zeros((n, 2)) for name in ANGLES}
        self.counts = np.zeros(n)
        self.series = {name: np.full((n, N_BINS), np.nan, np.float32) for name in ANGLES}
        self.bin_start_s = np.full(N_BINS, np.nan)
        self.head = 0
        self.current_bin: int | None = None
        self.uncalibrated_packets = 0
        self.round_robin = RoundRobin()

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
        payloads = [m.payload for m in messages if m.tag == "IO_MONIT"]
        if not payloads:
            return
        try:
            packets = decode_monitoring_batch(payloads)
        except DAQFormatError as error:
            packets = decode_monitoring_batch(payloads, skip_invalid=True)
            self.context.count_error(
                "monitoring packets unusable", error, len(payloads) - len(packets)
            )
        index = self.detector.dom_index(packets["dom_id"])
        if (index < 0).any():
            self.context.count_unknown_doms(packets["dom_id"][index < 0])
        slots = self.slot_of_dom[index]
        packets, slots = packets[slots >= 0], slots[slots >= 0]  # base modules: no compass
        if not len(packets):
            return
        angles = self._orientation(packets)
        time_s = packets["utc_seconds"] + packets["utc_16ns_cycles"] * 16e-9
        self.context.saw_data_at(float(time_s.max()))
        bins = np.floor(time_s / self.bin_s).astype(np.int64)
        for value in np.unique(bins):
            self._advance_to(int(value))
            chosen = bins == value
            for name in ANGLES:
                degrees = angles[name][chosen]
                if CIRCULAR[name]:
                    radians = np.radians(degrees)
                    pair = np.stack([np.cos(radians), np.sin(radians)], axis=1)
                else:
                    pair = np.stack([degrees, np.zeros_like(degrees)], axis=1)
                np.add.at(self.sums[name], slots[chosen], pair)
            np.add.at(self.counts, slots[chosen], 1)

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

    def _advance_to(self, bin_number: int) -> None:
        if self.current_bin is None:
            self.current_bin = bin_number
        while bin_number > self.current_bin:
            self._close_bin()
            self.current_bin += 1
            if bin_number - self.current_bin > N_BINS:
                self.current_bin = bin_number - N_BINS

    def _close_bin(self) -> None:
        with np.errstate(invalid="ignore", divide="ignore"):
            for name in ANGLES:
                self.series[name][:, self.head] = self._mean(name)
                self.sums[name][:] = 0
        assert self.current_bin is not None
        self.bin_start_s[self.head] = self.current_bin * self.bin_s
        self.head = (self.head + 1) % N_BINS
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
        dus = [int(du) for du in self.detector.dus]
        budget_s = 0.5 * self.context.freshness.render_interval_s
        self.round_robin.run(dus, self.render_du, budget_s)
        self.context.save_metrics("ahrs_calibration", self.latest())

    def render_du(self, du: int) -> None:
        import matplotlib.dates as mdates
        import matplotlib.pyplot as plt

        chronological = (np.arange(N_BINS) + self.head) % N_BINS
        times = self.bin_start_s[chronological] + self.bin_s / 2
        has_time = ~np.isnan(times)
        dates = times[has_time].astype("datetime64[s]")
        slots = np.flatnonzero(self.detector.dom_du[self.dom_index] == du)
        floors = self.detector.dom_floor[self.dom_index[slots]]
        colours = plt.get_cmap("viridis")(np.linspace(0, 1, max(self.detector.n_floors, 2)))
        state = "calibrated" if self.calibration is not None else "UNCALIBRATED"
        for name in ANGLES:
            figure, axes = plt.subplots(figsize=(16, 6))
            values = self.series[name][slots][:, chronological][:, has_time]
            for slot_values, floor in sorted(zip(values, floors, strict=True), key=lambda x: x[1]):
                axes.plot(dates, slot_values, ".", ms=2, color=colours[floor - 1],
                          label=f"Floor {floor}")  # fmt: skip
            axes.set_title(
                f"AHRS {name} ({state}) on DU {du}, detector {self.detector.det_id}: "
                f"mean per {self.bin_s:.0f} s"
            )
            axes.set_ylabel(f"{name} [deg]")
            axes.set_xlabel("UTC time")
            locator = mdates.AutoDateLocator()
            axes.xaxis.set_major_locator(locator)
            axes.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
            axes.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), markerscale=4, fontsize=8)
            figure.tight_layout(rect=(0, 0.03, 1, 1))
            self.context.save_figure(f"{name}_calib_du{du}.png", figure)

    def latest(self) -> dict[str, object]:
        """Newest closed bin per DOM, for the API and for checks against the injected truth."""
        newest = (self.head - 1) % N_BINS
        return {
            "calibrated": self.calibration is not None,
            "uncalibrated_packets": self.uncalibrated_packets,
            "bin_start": self.bin_start_s[newest],
            "bin_start_utc": utc(self.bin_start_s[newest])
            if not np.isnan(self.bin_start_s[newest])
            else None,
            "dom_id": self.detector.dom_ids[self.dom_index],
            **{f"{name}_deg": self.series[name][:, newest] for name in ANGLES},
        }


def register(subparsers: argparse._SubParsersAction) -> None:
    register_monitor(subparsers, AHRSMonitor)
