"""ztplot: z versus time of the calibrated hits of a selected event, one panel per DU.

Events qualify with triggered hits on at least ``[ZTPlot] min_dus`` DUs and ``min_doms``
DOMs. ``ztplot.png`` shows at most one event per minute of event time; an event that enters
a top 10 (by hits, triggered hits or overlays, all time or this run) is always drawn, and kept
with its raw event in ``plots/event_selection/`` and a row in ``data/event_selection.sqlite3``
(:mod:`.event_selection`), so the top 10 survives restarts.
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from km3mon.controlhost import Message
from km3mon.daq import Event, decode_event
from km3mon.daq.triggers import trigger_names
from km3mon.detector import Database, RunCalibration
from km3mon.monitors.decoding import decode_events_and_hits, packet_times_s, payloads_of
from km3mon.monitors.event_selection import EventSelection
from km3mon.monitors.output import utc
from km3mon.monitors.runtime import Context, Monitor, register_monitor

PLOT_EVERY_S = 60.0
DPI = 72  # 12-inch figures: 864 px, enough for a z-t display, half the cost of 100 dpi
RENDER_BUDGET = 0.1  # of the render interval, for top-10 plots (they may come a bit later)
#: Panels drawn at most: the DUs with the most hits (an ARCA muon can cross dozens).
MAX_PANELS = 16


@dataclass
class Candidate:
    """A selected event: its numbers from the batch tables, the full event decoded on demand."""

    payload: bytes
    row: np.void  # one EVENTS_DTYPE row
    n_hits: int
    n_triggered: int

    @property
    def overlays(self) -> int:
        return int(self.row["overlays"])

    @property
    def name(self) -> str:
        r = self.row
        return f"ztplot_{r['det_id']}_{r['run']}_FI{r['frame_index']}_TC{r['trigger_counter']}"

    @cached_property
    def event(self) -> Event:
        return decode_event(self.payload)


class ZTPlot(Monitor):
    name = "ztplot"
    tags = ("IO_EVT",)
    help = "z-t plot of calibrated hits of selected events, one panel per DU; top-10 kept"
    default_interval_s = 10.0

    def __init__(self, context: Context) -> None:
        super().__init__(context)
        self.settings = context.pipeline.ztplot
        from_file = context.args.detx or os.environ.get("DETX")
        self.calibration = RunCalibration(
            context.detector, database=None if from_file else Database()
        )
        self.selection = EventSelection(
            context.data_dir / "event_selection.sqlite3", context.plot_dir / "event_selection"
        )
        self.last_plotted_s = -np.inf
        self.to_plot: Candidate | None = None
        self.new_top: list[Candidate] = []
        self.selected = 0
        self.detector = context.detector
        # ztplot.png shows one event per minute of event time, drawn at the next tick.
        context.freshness.redraw_interval_s = PLOT_EVERY_S + context.freshness.render_interval_s

    def consume(self, messages: list[Message]) -> None:
        payloads = payloads_of(messages, "IO_EVT")
        events, hits, kept = decode_events_and_hits(self.context, payloads)
        if not len(events):
            return
        times = packet_times_s(events)
        self.context.saw_data_at(float(times.max()))
        triggered = hits[hits["triggered"]]
        index = self.context.dom_index(triggered["dom_id"])
        known = index >= 0
        event_of_hit = triggered["event"][known].astype(np.int64)
        n_doms = distinct_per_event(event_of_hit, triggered["dom_id"][known], len(events))
        n_dus = distinct_per_event(event_of_hit, self.detector.dom_du[index[known]], len(events))
        passing = (n_dus >= self.settings.min_dus) & (n_doms >= self.settings.min_doms)
        for row in np.flatnonzero(passing).tolist():
            self.selected += 1
            candidate = Candidate(
                payloads[kept[row]],
                events[row],
                int(events["n_snapshot"][row]),
                int(events["n_triggered"][row]),
            )
            if self.selection.qualifies(candidate):
                self.selection.add(candidate, float(times[row]))
                self.new_top.append(candidate)
            if times[row] - self.last_plotted_s >= PLOT_EVERY_S:
                self.to_plot = candidate
                self.last_plotted_s = float(times[row])

    def render(self) -> None:
        self._render_new_top(budget_s=RENDER_BUDGET * self.context.freshness.render_interval_s)
        if self.to_plot is None:
            return
        figure, hits = self.figure(self.to_plot)
        self.context.save_figure("ztplot.png", figure, dpi=DPI)
        row = self.to_plot.row
        self.context.save_metrics(
            "ztplot",
            {
                "run": int(row["run"]),
                "frame_index": int(row["frame_index"]),
                "trigger_counter": int(row["trigger_counter"]),
                "selected_events": self.selected,
                "top10": self.selection.names(),
                "hits": {
                    name: hits[name]
                    for name in ("dom_id", "channel", "du", "pos_z_m", "time_ns", "triggered")
                },
            },
        )
        self.to_plot = None

    def _render_new_top(self, budget_s: float) -> None:
        """Plots of new top-10 events, newest first, within a time budget; the rest next tick."""
        start = time.monotonic()
        kept = set(self.selection.names())
        self.new_top = [c for c in self.new_top if c.name in kept]  # some dropped out again
        while self.new_top and time.monotonic() - start < budget_s:
            candidate = self.new_top.pop()
            figure, _ = self.figure(candidate)
            self.context.save_figure(
                f"event_selection/{candidate.name}.png", figure, dpi=DPI, archived=True
            )

    def figure(self, candidate: Candidate):
        """The z-t figure of one event, and the calibrated hits it shows."""
        import matplotlib.pyplot as plt

        event = candidate.event
        hits = self.calibration.apply(event.hits, event.header.run)
        hits = hits[hits["calibrated"]]
        offset = hits["time_ns"][hits["triggered"]].min() if hits["triggered"].any() else 0.0
        all_dus, hits_per_du = np.unique(hits["du"], return_counts=True)
        dus = np.sort(all_dus[np.argsort(-hits_per_du, kind="stable")[:MAX_PANELS]])
        columns = int(np.ceil(np.sqrt(len(dus))))
        rows = int(np.ceil(len(dus) / columns))
        figure, axes_grid = plt.subplots(
            rows, columns, figsize=(12, 12 * rows / max(columns, 1)), sharey=True, squeeze=False
        )
        detector = self.calibration.detector
        top_z = float(np.nanmax(detector.pmt_pos_m[:, 2])) + 10 if len(detector.pmt_pos_m) else 1
        for panel, (axes, du) in enumerate(zip(axes_grid.flat, dus, strict=False)):
            on_du = hits[hits["du"] == du]
            _, inverse, counts = np.unique(on_du["dom_id"], return_inverse=True, return_counts=True)
            multiplicity = counts[inverse]
            floors_z = detector.dom_pos_m[(detector.dom_du == du) & (detector.dom_floor > 0), 2]
            axes.hlines(floors_z, 0, 1, transform=axes.get_yaxis_transform(), lw=1,
                        color="0.8", ls="--", zorder=0)  # fmt: skip
            axes.scatter(on_du["time_ns"] - offset, on_du["pos_z_m"], s=30 * multiplicity,
                         color="#09A9DE", alpha=0.5, label="hits (size: hits per DOM)")  # fmt: skip
            triggered = on_du[on_du["triggered"]]
            axes.scatter(triggered["time_ns"] - offset, triggered["pos_z_m"], marker="+",
                         color="#d7191c", s=60, label="triggered hits")  # fmt: skip
            axes.set_title(f"DU {du}")
            axes.set_ylim(0, top_z)
            axes.set_yticks(np.arange(0, top_z, self.settings.ytick_distance_m))
            axes.set_xlabel("time − first triggered hit [ns]")
            if panel % columns == 0:
                axes.set_ylabel("z [m]")
        for axes in list(axes_grid.flat)[len(dus) :]:
            axes.set_visible(False)
        axes_grid.flat[0].legend(loc="upper left", fontsize=8)
        h = event.header
        figure.suptitle(
            f"Detector {h.det_id}, run {h.run}, frame index {h.frame_index}, trigger counter "
            f"{event.trigger_counter}, overlays {event.overlays}, "
            f"{'/'.join(trigger_names(event.trigger_mask)) or 'no known trigger'}\n"
            f"{utc(h.timestamp)}: {candidate.n_hits} hits, {candidate.n_triggered} triggered"
            + (
                f", the {len(dus)} of {len(all_dus)} DUs with most hits"
                if len(dus) < len(all_dus)
                else ""
            )
        )
        # Fixed margins: tight_layout costs as much as drawing the panels.
        figure.subplots_adjust(
            left=0.07, right=0.98, bottom=0.06, top=0.9, wspace=0.08, hspace=0.35
        )
        return figure, hits


def distinct_per_event(event: np.ndarray, value: np.ndarray, n_events: int) -> np.ndarray:
    """How many distinct ``value``s each event has (rows given by ``event``)."""
    if not len(event):
        return np.zeros(n_events, np.int64)
    pairs = np.unique(np.stack([event, value.astype(np.int64)]), axis=1)
    return np.bincount(pairs[0], minlength=n_events)


def register(subparsers: argparse._SubParsersAction) -> None:
    register_monitor(subparsers, ZTPlot)
