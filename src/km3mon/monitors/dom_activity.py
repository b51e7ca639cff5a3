"""dom_activity: how long ago each DOM last sent a summary-slice frame.

Times are DAQ times (the slices' own UTC), measured against the newest slice, so a replay at
any speed shows the truth; if the whole stream stops, the runtime marks the plot stale. A DOM
not seen yet is "inactive > 5 min" only once the process has watched for 5 min; before, it is
"not seen since start".
"""

from __future__ import annotations

import argparse

import numpy as np

from km3mon.controlhost import Message
from km3mon.figures.dom_map import dom_map
from km3mon.runtime.decoding import decode_summaryslices
from km3mon.runtime.monitor import Context, Monitor, register_monitor

COLOUR_RANGE_S = 15 * 60
INACTIVE_AFTER_S = 5 * 60


class DOMActivity(Monitor):
    name = "dom_activity"
    tags = ("IO_SUM",)
    help = "time since each DOM last appeared in a summary slice (DU × floor map)"
    default_interval_s = 30.0

    def __init__(self, context: Context) -> None:
        super().__init__(context)
        self.detector = context.detector
        self.last_seen_s = np.full(len(self.detector.dom_ids), np.nan)
        self.newest_s: float | None = None
        self.first_s: float | None = None  # DAQ time of the first slice seen
        self.reported_inactive: set[int] = set()

    def consume(self, messages: list[Message]) -> None:
        for summary in decode_summaryslices(self.context, messages):
            time_s = summary.header.timestamp
            index = self.context.dom_index(summary.dom_ids)
            index = index[index >= 0]
            self.last_seen_s[index] = np.fmax(self.last_seen_s[index], time_s)
            self.newest_s = time_s if self.newest_s is None else max(self.newest_s, time_s)
            self.first_s = time_s if self.first_s is None else min(self.first_s, time_s)
            self.context.saw_data_at(time_s)

    def inactive_s(self) -> np.ndarray:
        """Seconds since each DOM's last frame, relative to the newest slice (NaN: never)."""
        if self.newest_s is None:
            return np.full_like(self.last_seen_s, np.nan)
        return self.newest_s - self.last_seen_s

    def watched_s(self) -> float:
        """DAQ seconds from the first slice seen to the newest one."""
        if self.newest_s is None or self.first_s is None:
            return 0.0
        return self.newest_s - self.first_s

    def render(self) -> None:
        since = self.inactive_s()
        # a DOM disabled in the DETX sends nothing on purpose: never "inactive"
        optical = (self.detector.dom_floor > 0) & ~self.detector.dom_disabled
        never_seen = optical & np.isnan(self.last_seen_s)
        watched_long_enough = self.watched_s() > INACTIVE_AFTER_S
        with np.errstate(invalid="ignore"):
            inactive = optical & (since > INACTIVE_AFTER_S)
        if watched_long_enough:
            inactive |= never_seen
        not_seen = never_seen & ~inactive
        self._log_changes(inactive)
        minutes = INACTIVE_AFTER_S // 60
        title = (
            f"DOM activity for detector {self.detector.det_id} (via summary slices)\n"
            f"{int(inactive.sum())} of {int(optical.sum())} DOMs inactive > {minutes} min (ringed)"
        )
        if not_seen.any():
            title += (
                f", {int(not_seen.sum())} not seen since start "
                f"({self.watched_s():.0f} s of data so far)"
            )
        figure = dom_map(
            self.detector,
            since,
            vmin=0,
            vmax=COLOUR_RANGE_S,
            label="time since last summary frame [s]",
            title=title,
            marked=inactive,
            marked_label=f"inactive > {minutes} min",
        )
        self.context.save_figure("dom_activity.png", figure)
        self.context.save_metrics(
            "dom_activity",
            {
                "dom_id": self.detector.dom_ids,
                "inactive_s": since,
                "inactive_dom_ids": self.detector.dom_ids[inactive],
                "not_seen_since_start_dom_ids": self.detector.dom_ids[not_seen],
                "watched_s": self.watched_s(),
            },
        )

    def _log_changes(self, inactive: np.ndarray) -> None:
        if self.newest_s is None:
            return  # no data yet: nothing is known about any DOM
        now_inactive = {int(d) for d in self.detector.dom_ids[inactive]}
        new = now_inactive - self.reported_inactive
        back = self.reported_inactive - now_inactive
        if new:
            self.log.warning("inactive > %d s: %s", INACTIVE_AFTER_S, self._describe(new))
        if back:
            self.log.info("active again: %s", self._describe(back))
        self.reported_inactive = now_inactive

    def _describe(self, dom_ids: set[int]) -> str:
        names = []
        for dom_id in sorted(dom_ids)[:50]:
            du, floor = self.detector.du_floor(dom_id)
            names.append(f"{dom_id} (DU{du} F{floor})")
        more = f" and {len(dom_ids) - 50} more" if len(dom_ids) > 50 else ""
        return ", ".join(names) + more


def register(subparsers: argparse._SubParsersAction) -> None:
    register_monitor(subparsers, DOMActivity)
