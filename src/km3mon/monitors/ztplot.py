"""ztplot: z versus time of the calibrated hits of a selected event, one panel per DU.

Events qualify with triggered hits on at least ``[ZTPlot] min_dus`` DUs and ``min_doms``
DOMs. A hit's marker size is the multiplicity of its coincidence, the hits on the same DOM
within 20 ns (as km3modules' ztplot), which tells multi-PMT muon light from K40 singles.
``ztplot.png`` shows at most one event per minute of event time; an event that enters
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

from km3mon import published
from km3mon.controlhost import Message
from km3mon.daq import Event, decode_event
from km3mon.daq.triggers import trigger_names
from km3mon.detector import Database, RunCalibration
from km3mon.history.top10 import EventSelection
from km3mon.runtime.decoding import decode_events_and_hits, packet_times_s, payloads_of
from km3mon.runtime.monitor import Context, Monitor, register_monitor
from km3mon.timetext import utc

PLOT_EVERY_S = 60.0
DPI = 72  # 12-inch figures: 864 px, enough for a z-t display, half the cost of 100 dpi
RENDER_BUDGET = 0.1  # of the render interval, for top-10 plots (they may come a bit later)
#: Panels drawn at most: the DUs with the most hits (an ARCA muon can cross dozens).
MAX_PANELS = 16
#: Hits on one DOM within this time of the coincidence's first hit belong to it.
COINCIDENCE_NS = 20.0
MARKER_AREA_PER_HIT = 30


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
            published.top10_db(context.data_dir), published.top10_files(context.plot_dir)
        )
        self.last_plotted_s = -np.inf
        self.to_plot: Candidate | None = None
        #: The plotted event's numbers for the metrics (run, frame, trigger, its hits).
        self.shown: dict | None = None
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
        if self.to_plot is not None:
            figure, hits = self.figure(self.to_plot)
            self.context.save_figure("ztplot.png", figure, dpi=DPI)
            row = self.to_plot.row
            self.shown = {
                "run": int(row["run"]),
                "frame_index": int(row["frame_index"]),
                "trigger_counter": int(row["trigger_counter"]),
                "hits": {
                    **{
                        name: hits[name]
                        for name in ("dom_id", "channel", "du", "pos_z_m", "time_ns", "triggered")
                    },
                    "multiplicity": coincidence_multiplicity(hits["dom_id"], hits["time_ns"]),
                },
            }
            self.to_plot = None
        if self.shown is None:
            return
        # every tick, not only with a new plot (one a minute): the counts stay current
        self.context.save_metrics(
            "ztplot",
            {**self.shown, "selected_events": self.selected, "top10": self.selection.names()},
        )

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
        multiplicities = coincidence_multiplicity(hits["dom_id"], hits["time_ns"])
        for panel, (axes, du) in enumerate(zip(axes_grid.flat, dus, strict=False)):
            chosen = hits["du"] == du
            on_du, multiplicity = hits[chosen], multiplicities[chosen]
            floors_z = detector.dom_pos_m[(detector.dom_du == du) & (detector.dom_floor > 0), 2]
            axes.hlines(floors_z, 0, 1, transform=axes.get_yaxis_transform(), lw=1,
                        color="0.8", ls="--", zorder=0)  # fmt: skip
            area = MARKER_AREA_PER_HIT * multiplicity
            axes.scatter(on_du["time_ns"] - offset, on_du["pos_z_m"], s=area, color="#09A9DE",
                         alpha=0.5, label="hits (size: hits on the DOM within 20 ns)")  # fmt: skip
            triggered = on_du["triggered"]
            axes.scatter(on_du["time_ns"][triggered] - offset, on_du["pos_z_m"][triggered],
                         marker="+", color="#d7191c", s=area[triggered],
                         label="triggered hits")  # fmt: skip
            axes.set_title(f"DU {du}")
            axes.set_ylim(0, top_z)
            axes.set_yticks(np.arange(0, top_z, self.settings.ytick_distance_m))
            axes.set_xlabel("time − first triggered hit [ns]")
            if panel % columns == 0:
                axes.set_ylabel("z [m]")
        for axes in list(axes_grid.flat)[len(dus) :]:
            axes.set_visible(False)
        legend = axes_grid.flat[0].legend(loc="upper left", fontsize=8)
        for handle in legend.legend_handles:  # one hit's size, whatever the first panel has
            handle.set_sizes([MARKER_AREA_PER_HIT])
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


def coincidence_multiplicity(
    dom_ids: np.ndarray, times_ns: np.ndarray, window_ns: float = COINCIDENCE_NS
) -> np.ndarray:
    """Per hit, the number of hits in its coincidence: on each DOM in time order, a
    coincidence starts at a hit and takes every later hit within ``window_ns`` of it; the
    next hit starts the next one (km3modules' ``count_multiplicities``, per DOM).

    Vectorised over DOMs: each step moves every DOM on to its next coincidence, so the
    loop runs as often as the busiest DOM has coincidences, not once per hit.
    """
    n_hits = len(times_ns)
    if not n_hits:
        return np.zeros(0, np.int64)
    order = np.lexsort((times_ns, dom_ids))
    times = np.asarray(times_ns, dtype=np.float64)[order]
    doms = np.asarray(dom_ids)[order]
    new_dom = np.r_[True, doms[1:] != doms[:-1]]
    dom_number = np.cumsum(new_dom) - 1
    dom_start = np.flatnonzero(new_dom)
    dom_end = np.r_[dom_start[1:], n_hits]
    # one sorted key for (DOM, time): a DOM's keys lie below the next DOM's by > window_ns
    span = times.max() - times.min() + 2 * window_ns + 1
    keys = dom_number * span + (times - times.min())
    after_window = np.searchsorted(keys, keys + window_ns, side="right")
    # The keys round differently from ``t[j] - t[i] > window_ns``: settle the boundary hits
    # with that very test, as the reference does.
    hit = np.arange(n_hits)
    end_of_dom = dom_end[dom_number]
    while True:
        back = (after_window - 1 > hit) & (times[after_window - 1] - times > window_ns)
        ahead = after_window < end_of_dom
        ahead[ahead] = times[after_window[ahead]] - times[ahead] <= window_ns
        if not (back.any() or ahead.any()):
            break
        after_window = after_window - back + ahead
    starts_coincidence = np.zeros(n_hits, bool)
    current, end = dom_start, dom_end
    while len(current):
        starts_coincidence[current] = True
        current = after_window[current]
        more = current < end
        current, end = current[more], end[more]
    coincidence = np.cumsum(starts_coincidence) - 1
    multiplicity = np.empty(n_hits, np.int64)
    multiplicity[order] = np.bincount(coincidence)[coincidence]
    return multiplicity


def distinct_per_event(event: np.ndarray, value: np.ndarray, n_events: int) -> np.ndarray:
    """How many distinct ``value``s each event has (rows given by ``event``)."""
    if not len(event):
        return np.zeros(n_events, np.int64)
    pairs = np.unique(np.stack([event, value.astype(np.int64)]), axis=1)
    return np.bincount(pairs[0], minlength=n_events)


def register(subparsers: argparse._SubParsersAction) -> None:
    register_monitor(subparsers, ZTPlot)
