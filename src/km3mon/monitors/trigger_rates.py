"""trigger_rates: event rates per trigger type per interval, over the last 24 hours.

Events are binned by their DAQ time, so a replay at any speed gives the true rates. Summary
slices (10 per second whatever the trigger does) are the clock: an interval's rate is its
events divided by its live time, the distinct slices seen in it × 0.1 s. An interval is
closed when the data are ``LATE_S`` past its end, so late events still count and one message
a few seconds ahead (a flipped bit) closes nothing early. An interval with
slices but no events is a real 0 Hz; one with less than half its live time (the first after
a start, the last before a DAQ stop) is drawn hollow, as a rough figure; intervals without
any data are a gap in the plot. Run changes count once confirmed by several messages, so a
corrupted run number is not one. Every closed interval is appended to
``data/trigger_rates.csv`` (with ``live_s``) and read back at start, so a restart keeps the day.
"""

from __future__ import annotations

import argparse
import csv
import math
import time
from collections import deque
from typing import NamedTuple

import numpy as np

from km3mon import published
from km3mon.config import PipelineConfig
from km3mon.controlhost import Message
from km3mon.daq.triggers import trigger_mask
from km3mon.runtime.decoding import decode_events_and_summaryslices, packet_times_s
from km3mon.runtime.guards import AHEAD_S, RunChange, RunTracker
from km3mon.runtime.monitor import Context, Monitor, register_monitor
from km3mon.runtime.output import append_rows

TYPES = ("Overall", "3DMuon", "MXShower", "3DShower")
MASKS = {name: trigger_mask(name) for name in TYPES[1:]}
CSV_HEADER = ("timestamp", *TYPES, "live_s")
KEEP_S = 24 * 3600
SLICE_S = 0.1
#: An interval stays open until the newest data are this far past its end: longer than
#: the data may lag the wall clock plus how far a flipped bit may move a time ahead of it.
LATE_S = 2 * AHEAD_S
#: Intervals with less live time than this fraction are drawn hollow, not as rates.
MIN_LIVE_FRACTION = 0.5
#: Run changes kept, and drawn at most (the newest): one render stays short.
KEEP_RUN_CHANGES = 1000
MAX_DRAWN_RUN_CHANGES = 20
STYLE = {
    "Overall": ("D", "tomato"),
    "3DMuon": ("X", "dodgerblue"),
    "MXShower": ("v", "orange"),
    "3DShower": ("^", "olivedrab"),
}


class Interval(NamedTuple):
    """One closed interval: start (DAQ time), rates in Hz (NaN: no live time) and live
    seconds (NaN: unknown, a row written before live time was recorded)."""

    start_s: float
    rates_hz: list[float]
    live_s: float


class OpenInterval:
    """What an interval not yet closed has collected: events per type, slices seen."""

    def __init__(self) -> None:
        self.counts = dict.fromkeys(TYPES, 0)
        self.slices: set[int] = set()  # summary slices, in 0.1 s steps since the epoch


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
        self.csv_path = published.trigger_rates(context.data_dir)
        self.minor_ticks = context.pipeline.trigger_rate.with_minor_ticks
        self.history: deque[Interval] = deque(self._read_history())
        self.open: dict[int, OpenInterval] = {}
        #: The newest interval closed (and written): also after a restart, none twice.
        self.closed_until: int | None = None
        if self.history:
            self.closed_until = int(max(i.start_s for i in self.history) // self.interval_s)
        self.clock_s = -math.inf  # DAQ time of the newest data
        self.runs = RunTracker()
        self.run_changes: deque[RunChange] = deque(maxlen=KEEP_RUN_CHANGES)
        self.det_id: int | None = context.args.det_id or None
        self.late_events = 0

    @property
    def run(self) -> int | None:
        return self.runs.run

    def _read_history(self) -> list[Interval]:
        """The CSV's rows (also those written before ``live_s`` existed); torn rows and rows
        dated in the future (written from a wild DAQ time) are skipped."""
        if not self.csv_path.exists():
            return []
        rows, future = [], 0
        latest_s = time.time() + AHEAD_S
        with self.csv_path.open(newline="") as stream:
            for row in csv.DictReader(stream):
                if any(row.get(name) is None for name in ("timestamp", *TYPES)):
                    continue  # a torn line after a crash
                try:
                    timestamp = float(row["timestamp"])
                    rates = [_number(row[name]) for name in TYPES]
                    live_s = _number(row.get("live_s"))
                except ValueError:
                    continue  # a damaged line
                if not timestamp <= latest_s:
                    future += 1
                    continue
                rows.append(Interval(timestamp, rates, live_s))
        if rows:  # the last 24 h of DAQ time, which is not wall time in a replay
            newest = max(row.start_s for row in rows)
            rows = [row for row in rows if row.start_s >= newest - KEEP_S]
        self.log.info("read %d intervals of history from %s", len(rows), self.csv_path)
        if future:
            self.log.warning("%d rows of %s dated in the future skipped", future, self.csv_path)
        return rows

    def consume(self, messages: list[Message]) -> None:
        events, slices = decode_events_and_summaryslices(self.context, messages)
        if slices:
            self.det_id = slices[-1].header.det_id
        if len(events):
            self.det_id = int(events["det_id"][-1])
        slice_times = np.array([s.header.timestamp for s in slices], dtype=np.float64)
        event_times = packet_times_s(events)
        times = np.concatenate([slice_times, event_times])
        if not len(times):
            return
        runs = np.concatenate([np.array([s.header.run for s in slices], np.int64), events["run"]])
        order = np.argsort(times, kind="stable")
        _, changes = self.runs.update(runs[order], times[order])
        for change in changes:
            if change.previous is not None:
                self.run_changes.append(change)
                self.log.info("run change %d -> %d", change.previous, change.run)
        event_bins = (event_times // self.interval_s).astype(np.int64)
        slice_bins = (slice_times // self.interval_s).astype(np.int64)
        slice_numbers = np.round(slice_times / SLICE_S).astype(np.int64)
        event_in_time = self._in_time(event_bins, event_times)
        slice_in_time = self._in_time(slice_bins, slice_times)
        self.late_events += int(np.count_nonzero(~event_in_time))
        for bin_number in np.unique(
            np.concatenate([slice_bins[slice_in_time], event_bins[event_in_time]])
        ).tolist():
            in_bin = events[event_in_time & (event_bins == bin_number)]
            interval = self.open.setdefault(bin_number, OpenInterval())
            interval.counts["Overall"] += len(in_bin)
            for name, bit in MASKS.items():
                fired = np.count_nonzero(in_bin["trigger_mask"] & np.uint64(bit))
                interval.counts[name] += int(fired)
            chosen = slice_in_time & (slice_bins == bin_number)
            interval.slices.update(slice_numbers[chosen].tolist())
        self.clock_s = max(self.clock_s, float(times.max()))
        for bin_number in sorted(self.open):
            if (bin_number + 1) * self.interval_s + LATE_S > self.clock_s:
                break
            self._close_bin(bin_number, self.open.pop(bin_number))
        self.context.saw_data_at(float(times.max()))

    def _in_time(self, bins: np.ndarray, times_s: np.ndarray) -> np.ndarray:
        """False for data of an interval already closed, or overdue when they arrived (the
        newest data that arrived before them were ``LATE_S`` past its end): late data, or
        a time flipped into the past, which must not open an old interval again."""
        before_s = np.maximum.accumulate(np.r_[self.clock_s, times_s])[:-1]
        in_time = (bins + 1) * self.interval_s + LATE_S > before_s
        if self.closed_until is not None:
            in_time &= bins > self.closed_until
        return in_time

    def _close_bin(self, bin_number: int, interval: OpenInterval) -> None:
        """Write the interval; intervals without any message at all are gaps, not zeros."""
        start = bin_number * self.interval_s
        live_s = min(len(interval.slices) * SLICE_S, self.interval_s)
        counts = interval.counts
        rates = [counts[name] / live_s if live_s > 0 else math.nan for name in TYPES]
        self.history.append(Interval(start, rates, live_s))
        row = [f"{start:.0f}", *("" if math.isnan(r) else f"{r:.6g}" for r in rates)]
        append_rows(self.csv_path, CSV_HEADER, [[*row, f"{live_s:.1f}"]])
        self.closed_until = bin_number
        newest = self.history[-1].start_s
        while self.history and self.history[0].start_s < newest - KEEP_S:
            self.history.popleft()

    def render(self) -> None:
        for filename, log_scale in (("trigger_rates.png", True), ("trigger_rates_lin.png", False)):
            self.context.save_figure(filename, self._figure(log_scale))
        latest = self.history[-1] if self.history else None
        self.context.save_metrics(
            "trigger_rates",
            {
                "interval_s": self.interval_s,
                "latest_start": latest.start_s if latest else None,
                "latest_hz": dict(zip(TYPES, latest.rates_hz, strict=True)) if latest else None,
                "latest_live_s": latest.live_s if latest else None,
                "run": self.run,
                "run_changes": [[c.time_s, c.run] for c in list(self.run_changes)[-50:]],
                "late_events": self.late_events,
            },
        )

    def _any_positive_rate(self) -> bool:
        return any(rate > 0 for interval in self.history for rate in interval.rates_hz)

    def _figure(self, log_scale: bool):
        import matplotlib.dates as mdates
        import matplotlib.pyplot as plt
        from matplotlib.lines import Line2D

        figure, axes = plt.subplots(figsize=(16, 4))
        first_start = math.inf
        if self.history:
            intervals = sorted(self.history)
            first_start = intervals[0].start_s
            starts = np.array([i.start_s for i in intervals])
            rates = np.array([i.rates_hz for i in intervals], dtype=np.float64)
            live = np.array([i.live_s for i in intervals], dtype=np.float64)
            full = np.isnan(live) | (live >= MIN_LIVE_FRACTION * self.interval_s)
            centres = starts + self.interval_s / 2
            # No line across a gap: a NaN point after every interval that has no successor.
            gaps = np.flatnonzero(np.diff(starts) > 1.5 * self.interval_s) + 1
            line_x = np.insert(centres, gaps, centres[gaps - 1] + self.interval_s)
            line_y = np.insert(np.where(full[:, None], rates, np.nan), gaps, np.nan, axis=0)
            if log_scale:
                with np.errstate(invalid="ignore"):
                    rates = np.where(rates > 0, rates, np.nan)
                    line_y = np.where(line_y > 0, line_y, np.nan)
            for column, name in enumerate(TYPES):
                marker, colour = STYLE[name]
                axes.plot(line_x.astype("datetime64[s]"), line_y[:, column], marker=marker,
                          ls=":", color=colour, label=name)  # fmt: skip
                partial = ~full & np.isfinite(rates[:, column])
                axes.plot(centres[partial].astype("datetime64[s]"), rates[partial, column],
                          marker=marker, ls="none", mfc="none", color=colour)  # fmt: skip
        changes = [c for c in self.run_changes if c.time_s >= first_start]
        for change in changes[-MAX_DRAWN_RUN_CHANGES:]:
            moment = np.datetime64(int(change.time_s), "s")
            axes.axvline(moment, color="#ff0f5b", ls="--", alpha=0.7)
            axes.text(moment, 0.95, f" RUN {change.run}", transform=axes.get_xaxis_transform(),
                      rotation=60, color="0.4", fontsize=8, va="top")  # fmt: skip
        if log_scale:
            axes.set_yscale("log")
            if not np.any(np.isfinite(axes.get_ylim())) or not self._any_positive_rate():
                axes.set_ylim(0.1, 100)  # nothing to draw on a log scale: an empty one
        axes.set_ylabel("trigger rate [Hz]")
        axes.set_xlabel("UTC time")
        hidden = len(changes) - MAX_DRAWN_RUN_CHANGES
        axes.set_title(
            f"Trigger rates for detector {self.det_id or '?'} "
            f"({self.interval_s:g} s intervals, last 24 h)"
            + (" - log scale, zero rates not drawn" if log_scale else "")
            + (f" - {hidden} older run changes not drawn" if hidden > 0 else "")
        )
        locator = mdates.AutoDateLocator()
        axes.xaxis.set_major_locator(locator)
        axes.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
        axes.tick_params(labelright=True)
        if self.minor_ticks:
            axes.minorticks_on()
        axes.grid(True, which="both", alpha=0.3)
        if self.history:
            handles, labels = axes.get_legend_handles_labels()
            hollow = Line2D([], [], marker="o", ls="none", mfc="none", color="0.3")
            axes.legend([*handles, hollow],
                        [*labels, f"< {MIN_LIVE_FRACTION:.0%} live time (rough)"],
                        loc="upper left")  # fmt: skip
        figure.tight_layout(rect=(0, 0.05, 1, 1))
        return figure


def _number(text: str | None) -> float:
    """A CSV field as a number; empty (no live time) or absent (an older file) is NaN."""
    return float(text) if text else math.nan


def register(subparsers: argparse._SubParsersAction) -> None:
    register_monitor(subparsers, TriggerRates)
