"""trigger_rates: event rates per trigger type per interval, over the last 24 hours.

Events are binned by their DAQ time, so a replay at any speed gives the true rates. Summary
slices (10 per second whatever the trigger does) are the clock that closes intervals: an
interval with slices but no events is a real 0 Hz, not a gap. Every closed interval is
appended to ``data/trigger_rates.csv`` and read back at start, so a restart keeps the day.
"""

from __future__ import annotations

import argparse
import csv
from collections import deque

import numpy as np

from km3mon.config import PipelineConfig
from km3mon.controlhost import Message
from km3mon.daq.triggers import trigger_mask
from km3mon.monitors.decoding import (
    decode_events_and_hits,
    decode_summaryslices,
    packet_times_s,
    payloads_of,
)
from km3mon.monitors.runtime import Context, Monitor, register_monitor

TYPES = ("Overall", "3DMuon", "MXShower", "3DShower")
MASKS = {name: trigger_mask(name) for name in TYPES[1:]}
KEEP_S = 24 * 3600
STYLE = {
    "Overall": ("D", "tomato"),
    "3DMuon": ("X", "dodgerblue"),
    "MXShower": ("v", "orange"),
    "3DShower": ("^", "olivedrab"),
}


class TriggerRates(Monitor):
    name = "trigger_rates"
    tags = ("IO_EVT", "IO_SUM")
    help = "trigger rates (Overall, 3DMuon, MXShower, 3DShower) per interval over 24 h"
    default_interval_s = 300.0

    @classmethod
    def configured_interval_s(cls, pipeline: PipelineConfig) -> float | None:
        return pipeline.trigger_rate.interval_s

    def __init__(self, context: Context) -> None:
        super().__init__(context)
        self.interval_s = context.freshness.render_interval_s
        self.csv_path = context.data_dir / "trigger_rates.csv"
        self.minor_ticks = context.pipeline.trigger_rate.with_minor_ticks
        self.history: deque[tuple[float, list[float]]] = deque(self._read_history())
        self.counts = dict.fromkeys(TYPES, 0)
        self.current_bin: int | None = None
        self.run: int | None = None
        self.run_changes: deque[tuple[float, int]] = deque()
        self.det_id: int | None = context.args.det_id or None
        self.late_events = 0

    def _read_history(self) -> list[tuple[float, list[float]]]:
        if not self.csv_path.exists():
            return []
        rows = []
        with self.csv_path.open() as stream:
            for row in csv.DictReader(stream):
                try:
                    timestamp = float(row["timestamp"])
                    rates = [float(row[name]) for name in TYPES]
                except (KeyError, TypeError, ValueError):
                    continue  # a torn last line after a crash: skip it
                rows.append((timestamp, rates))
        if rows:  # the last 24 h of DAQ time, which is not wall time in a replay
            newest = max(timestamp for timestamp, _ in rows)
            rows = [row for row in rows if row[0] >= newest - KEEP_S]
        self.log.info("read %d intervals of history from %s", len(rows), self.csv_path)
        return rows

    def consume(self, messages: list[Message]) -> None:
        events, _, _ = decode_events_and_hits(self.context, payloads_of(messages, "IO_EVT"))
        clock: list[tuple[float, int]] = []  # (DAQ time, run) of every usable message
        for summary in decode_summaryslices(self.context, messages):
            clock.append((summary.header.timestamp, summary.header.run))
            self.det_id = summary.header.det_id
        event_times = packet_times_s(events)
        clock += zip(event_times.tolist(), events["run"].tolist(), strict=True)
        if not clock:
            return
        if len(events):
            self.det_id = int(events["det_id"][-1])
        for timestamp, run in sorted(clock):
            self._note_run(timestamp, run)
        event_bins = (event_times // self.interval_s).astype(np.int64)
        clock_bins = np.array([int(t // self.interval_s) for t, _ in clock])
        for bin_number in np.unique(clock_bins).tolist():
            self._advance_to(bin_number)
            in_bin = events[event_bins == bin_number]
            if bin_number < self.current_bin:  # late: that interval is closed and written
                self.late_events += len(in_bin)
                continue
            self.counts["Overall"] += len(in_bin)
            for name, bit in MASKS.items():
                self.counts[name] += int(np.count_nonzero(in_bin["trigger_mask"] & np.uint64(bit)))
        self.context.saw_data_at(max(t for t, _ in clock))

    def _note_run(self, timestamp: float, run: int) -> None:
        if self.run is not None and run != self.run:
            self.run_changes.append((timestamp, run))
            self.log.info("run change %d -> %d", self.run, run)
        self.run = run

    def _advance_to(self, bin_number: int) -> None:
        if self.current_bin is None:
            self.current_bin = bin_number
        if bin_number <= self.current_bin:
            return
        self._close_bin(self.current_bin)
        # Intervals without any message at all are gaps (no DAQ), not zeros.
        self.current_bin = bin_number

    def _close_bin(self, bin_number: int) -> None:
        start = bin_number * self.interval_s
        rates = [self.counts[name] / self.interval_s for name in TYPES]
        self.history.append((start, rates))
        new_file = not self.csv_path.exists()
        self.csv_path.parent.mkdir(parents=True, exist_ok=True)
        with self.csv_path.open("a", newline="") as stream:
            writer = csv.writer(stream)
            if new_file:
                writer.writerow(["timestamp", *TYPES])
            writer.writerow([f"{start:.0f}", *(f"{r:.6g}" for r in rates)])
        self.counts = dict.fromkeys(TYPES, 0)
        newest = self.history[-1][0]
        while self.history and self.history[0][0] < newest - KEEP_S:
            self.history.popleft()
        while self.run_changes and self.run_changes[0][0] < newest - KEEP_S:
            self.run_changes.popleft()

    def render(self) -> None:
        for filename, log_scale in (("trigger_rates.png", True), ("trigger_rates_lin.png", False)):
            self.context.save_figure(filename, self._figure(log_scale))
        latest = self.history[-1] if self.history else None
        self.context.save_metrics(
            "trigger_rates",
            {
                "interval_s": self.interval_s,
                "latest_start": latest[0] if latest else None,
                "latest_hz": dict(zip(TYPES, latest[1], strict=True)) if latest else None,
                "run": self.run,
                "run_changes": [list(change) for change in self.run_changes],
                "late_events": self.late_events,
            },
        )

    def _figure(self, log_scale: bool):
        import matplotlib.dates as mdates
        import matplotlib.pyplot as plt

        figure, axes = plt.subplots(figsize=(16, 4))
        if self.history:
            starts = np.array([start for start, _ in self.history])
            rates = np.array([r for _, r in self.history])
            dates = (starts + self.interval_s / 2).astype("datetime64[s]")
            for column, name in enumerate(TYPES):
                values = rates[:, column]
                if log_scale:
                    values = np.where(values > 0, values, np.nan)
                marker, colour = STYLE[name]
                axes.plot(dates, values, marker=marker, ls=":", color=colour, label=name)
        for timestamp, run in self.run_changes:
            moment = np.datetime64(int(timestamp), "s")
            axes.axvline(moment, color="#ff0f5b", ls="--", alpha=0.7)
            axes.text(moment, 0.95, f" RUN {run}", transform=axes.get_xaxis_transform(),
                      rotation=60, color="0.4", fontsize=8, va="top")  # fmt: skip
        if log_scale:
            axes.set_yscale("log")
        axes.set_ylabel("trigger rate [Hz]")
        axes.set_xlabel("UTC time")
        axes.set_title(
            f"Trigger rates for detector {self.det_id or '?'} "
            f"({self.interval_s:g} s intervals, last 24 h)"
            + (" - log scale, zero rates not drawn" if log_scale else "")
        )
        locator = mdates.AutoDateLocator()
        axes.xaxis.set_major_locator(locator)
        axes.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
        axes.tick_params(labelright=True)
        if self.minor_ticks:
            axes.minorticks_on()
        axes.grid(True, which="both", alpha=0.3)
        if self.history:
            axes.legend(loc="upper left")
        figure.tight_layout(rect=(0, 0.05, 1, 1))
        return figure


def register(subparsers: argparse._SubParsersAction) -> None:
    register_monitor(subparsers, TriggerRates)
