"""sn: a supernova monitor page from ``IO_TSSN`` (a monitor, not the collaboration's SN trigger).

A Galactic core-collapse supernova shows up as a detector-wide rise of DOM-local coincidences
(``docs/timeslices.md`` §4). Per timeslice, every DOM's coincidences are found with their
multiplicity (distinct PMTs within 10 ns, :mod:`km3mon.physics.coincidences`); those with a
multiplicity in ``[SN] min_multiplicity..max_multiplicity`` (7-11, the range of the KM3NeT CCSN
search [recall]) count, unless they fall in the **muon veto**: from ``veto_window`` ns (1 µs)
before the first to ``veto_window`` ns after the last hit of any triggered event (``IO_EVT``) of
the same frame, on every DOM. The window covers an ARCA muon's crossing time (a few µs) plus
the spread of the PMT t0s; at ARCA-230's ~500 events/s it removes ~0.3 % of the live time.

The statistic: selected coincidences summed over the detector in a sliding ``window`` (0.5 s,
stepped by 100 ms). Frames are closed 0.5 s of DAQ time after they arrive, so that every
DataFilter's message and the events of the frame are in.

The threshold (:class:`~km3mon.physics.sn.RollingBackground`): the background is not Poisson.
One atmospheric muon lights several DOMs in the same window, so the counts are over-dispersed,
and a threshold from a Poisson median over all time raises false alarms. The monitor keeps the
last hour of windows as sums per minute: the mean count per *active* DOM (DOMs that sent an SN
frame; a lost DU lowers the expected count instead of looking like a quiet sky) and the variance
around it. A negative binomial with that mean (for the DOMs active now) and that variance gives
the threshold where background would pass it ``[SN] false_alarms_per_week`` times in a week (one
chance per 100 ms step of the window). Windows above the threshold do not join the background (a
burst does not raise its own threshold). The background distribution, the rolling hour and the
peak per second are kept (``data/sn/state.json``, read back at start).

Alarms: a run of consecutive windows at or above the threshold is one alarm. The newest
:data:`ALARMS_KEPT` are latched in the metrics (``alarm_log``: DAQ start and end, wall-clock
start and end, peak significance, peak multiplicity, i.e. selected coincidences in the window,
the threshold and the active DOMs) and in the state file, so the ``sn_alarm`` rule can notify
each alarm once although ``significance`` is only the newest window's.

Plots: ``sn_bg_histogram.png`` (background distribution, current value, threshold, significance
scale on top) and ``sn_pk_history.png`` (peak per second vs time, threshold), drawn by
:mod:`km3mon.figures.sn`.
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import time
from dataclasses import dataclass, field

import numpy as np

from km3mon import published
from km3mon.controlhost import Message
from km3mon.figures.sn import background_histogram, peak_history, selection_text
from km3mon.physics.coincidences import CoincidenceFinder, Coincidences
from km3mon.physics.sn import TIMESLICE_S, RollingBackground, event_extents, inside_windows
from km3mon.published import atomic_write
from km3mon.runtime.decoding import decode_events_and_hits, locate_timeslices, payloads_of
from km3mon.runtime.monitor import Context, Monitor, register_monitor
from km3mon.timetext import utc

CLOSE_AFTER_FRAMES = 5
CLOSE_AFTER_WALL_S = 5.0
KEEP_PEAKS_S = 24 * 3600
SAVE_STATE_EVERY_S = 60.0
MONITOR_NOTE = "a monitor, not the KM3NeT supernova trigger"
#: Alarms latched in the metrics and the state file, the newest last.
ALARMS_KEPT = 50


@dataclass
class OpenFrame:
    """What arrived for one (run, frame index): coincidences of every DataFilter, vetoes."""

    time_s: float
    arrived: float
    coincidences: list[Coincidences] = field(default_factory=list)
    #: Frames of DOMs of the detector in the DataFilters' messages: the active DOMs.
    active_doms: int = 0
    vetoes: list[np.ndarray] = field(default_factory=list)


class SN(Monitor):
    name = "sn"
    tags = ("IO_TSSN", "IO_EVT")
    help = "supernova monitor: selected coincidences per sliding window (IO_TSSN, muon veto)"
    default_interval_s = 10.0

    def __init__(self, context: Context) -> None:
        super().__init__(context)
        self.settings = context.pipeline.sn
        self.detector = context.detector
        self.finder = CoincidenceFinder(self.detector)
        self.n_doms = int((self.detector.n_pmts > 0).sum())
        self.window_frames = max(1, round(self.settings.window_s / TIMESLICE_S))
        self.open: dict[tuple[int, int], OpenFrame] = {}
        self.newest_index: dict[int, int] = {}
        self.recent: collections.deque[tuple[int, int, int]] = collections.deque(
            maxlen=self.window_frames
        )  # (run, frame index, selected count) of the newest closed frames
        self.histogram = np.zeros(64, np.int64)
        self.background = RollingBackground(self.settings.false_alarms_per_week)
        #: Active DOMs of the newest window (mean over its frames).
        self.active_doms = 0
        self.recent_active: collections.deque[int] = collections.deque(maxlen=self.window_frames)
        #: Alarms: runs of consecutive windows above the threshold.
        self.alarms = 0
        self.was_above = False
        self.peaks: collections.deque[tuple[float, int]] = collections.deque()
        self.latest: tuple[float, int] | None = None
        self.highest: tuple[float, int] | None = None  # since start
        self.multiplicities = np.zeros(32, np.int64)
        self.vetoed = 0
        self.selected_total = 0
        self.above_threshold = 0
        self.last_alarm_log = 0.0
        #: The newest alarms (see the module's docstring), the open one last while it lasts.
        self.alarm_log: collections.deque[dict[str, float | int | None]] = collections.deque(
            maxlen=ALARMS_KEPT
        )
        self.state_path = published.sn_state(context.data_dir)
        self.last_saved = time.monotonic()
        self._read_state()

    # -- consuming --------------------------------------------------------------------

    def consume(self, messages: list[Message]) -> None:
        for payload, located in locate_timeslices(self.context, messages, "IO_TSSN"):
            header = located.header
            coincidences, unknown = self.finder.find(payload, located)
            if len(unknown):
                self.context.count_unknown_doms(unknown)
            frame = self._frame(header.run, header.frame_index, header.timestamp)
            frame.coincidences.append(coincidences)
            frame.active_doms += len(located.frames) - len(unknown)
            self.context.saw_data_at(header.timestamp)
        self._add_vetoes(payloads_of(messages, "IO_EVT"))
        self._close_frames()

    def _frame(self, run: int, frame_index: int, time_s: float) -> OpenFrame:
        key = (run, frame_index)
        frame = self.open.get(key)
        if frame is None:
            frame = self.open[key] = OpenFrame(time_s, time.monotonic())
        self.newest_index[run] = max(self.newest_index.get(run, frame_index), frame_index)
        return frame

    def _add_vetoes(self, payloads: list[bytes]) -> None:
        """Veto windows (calibrated ns) of the triggered events, per frame."""
        events, hits, _ = decode_events_and_hits(self.context, payloads)
        if not len(events) or not len(hits):
            return
        dom_index = self.detector.dom_index(hits["dom_id"])
        known = dom_index >= 0
        hits, dom_index = hits[known], dom_index[known]
        times = self.finder.calibrated_ns(dom_index, hits["channel"], hits["time_ns"])
        first, last = event_extents(hits["event"], times, len(events))
        margin = int(self.settings.veto_window_ns)
        for row in np.flatnonzero(last >= first).tolist():
            event = events[row]
            time_s = float(event["utc_seconds"] + event["utc_16ns_cycles"] * 16e-9)
            frame = self._frame(int(event["run"]), int(event["frame_index"]), time_s)
            frame.vetoes.append(np.array([first[row] - margin, last[row] + margin]))

    def _close_frames(self, everything: bool = False) -> None:
        now = time.monotonic()
        due = [
            key
            for key, frame in self.open.items()
            if everything
            or key[1] <= self.newest_index.get(key[0], key[1]) - CLOSE_AFTER_FRAMES
            or key[0] < max(self.newest_index)
            or now - frame.arrived > CLOSE_AFTER_WALL_S
        ]
        for key in sorted(due):
            self._close(key, self.open.pop(key))

    def _close(self, key: tuple[int, int], frame: OpenFrame) -> None:
        if not frame.coincidences:
            return  # events only: no SN data for this frame
        multiplicity = np.concatenate([c.multiplicity for c in frame.coincidences])
        times = np.concatenate([c.time_ns for c in frame.coincidences])
        np.add.at(self.multiplicities, np.minimum(multiplicity, 31), 1)
        selected = (multiplicity >= self.settings.min_multiplicity) & (
            multiplicity <= self.settings.max_multiplicity
        )
        if frame.vetoes and selected.any():
            inside = inside_windows(times, np.array(frame.vetoes))
            self.vetoed += int((selected & inside).sum())
            selected &= ~inside
        count = int(selected.sum())
        self.selected_total += count
        run, frame_index = key
        if self.recent and (self.recent[-1][0] != run or self.recent[-1][1] != frame_index - 1):
            self.recent.clear()  # a gap: windows must be whole
            self.recent_active.clear()
        self.recent.append((run, frame_index, count))
        self.recent_active.append(frame.active_doms)
        if len(self.recent) == self.window_frames:
            self.active_doms = round(sum(self.recent_active) / len(self.recent_active))
            self._statistic(frame.time_s, sum(c for _, _, c in self.recent))

    def _statistic(self, time_s: float, value: int) -> None:
        threshold = self.threshold()
        above = threshold is not None and value >= threshold
        if not above:  # a burst does not raise its own threshold
            self.background.add(time_s, value, self.active_doms)
        if value >= len(self.histogram):
            grown = np.zeros(max(2 * len(self.histogram), value + 1), np.int64)
            grown[: len(self.histogram)] = self.histogram
            self.histogram = grown
        self.histogram[value] += 1
        self.latest = (time_s, value)
        if self.highest is None or value > self.highest[1]:
            self.highest = (time_s, value)
        second = float(int(time_s))
        if self.peaks and self.peaks[-1][0] == second:
            if value > self.peaks[-1][1]:
                self.peaks[-1] = (second, value)
        else:
            self.peaks.append((second, value))
            while self.peaks and self.peaks[0][0] < second - KEEP_PEAKS_S:
                self.peaks.popleft()
        self._latch(time_s, value, threshold, above)
        if above:
            self.above_threshold += 1
            self.alarms += not self.was_above
            now = time.monotonic()
            if now - self.last_alarm_log > 10:
                self.last_alarm_log = now
                self.log.warning(
                    "SN statistic %d at %s is above the threshold %d (expected %.1f from %d "
                    "active DOMs, %.1f sigma); %s",
                    value,
                    utc(time_s),
                    threshold,
                    self.expected(),
                    self.active_doms,
                    self.significance(value),
                    MONITOR_NOTE,
                )
        self.was_above = above

    def _latch(self, time_s: float, value: int, threshold: int | None, above: bool) -> None:
        """Open, grow or close the alarm in ``alarm_log`` for this window."""
        if above and self.was_above and self.alarm_log:
            alarm = self.alarm_log[-1]
            if value > alarm["multiplicity"]:
                alarm.update(multiplicity=value, significance=self.significance(value))
            return
        if above:
            self.alarm_log.append(
                {
                    "time": time_s,
                    "end_time": None,
                    "raised_at": time.time(),
                    "ended_at": None,
                    "significance": self.significance(value),
                    "multiplicity": value,
                    "threshold": threshold,
                    "active_doms": self.active_doms,
                }
            )
        elif self.was_above and self.alarm_log:
            self.alarm_log[-1].update(end_time=time_s, ended_at=time.time())
        else:
            return
        self.last_saved = -math.inf  # the state file keeps it from the next render on

    # -- statistics -------------------------------------------------------------------

    def expected(self) -> float:
        """The background count expected for the DOMs active now."""
        return self.background.model(self.active_doms)[0]

    def threshold(self) -> int | None:
        """The threshold count for the DOMs active now (see ``RollingBackground``)."""
        return self.background.threshold(self.active_doms)

    def significance(self, value: float) -> float:
        return self.background.significance(value, self.active_doms)

    # -- state ------------------------------------------------------------------------

    def _read_state(self) -> None:
        try:
            state = json.loads(self.state_path.read_text())
            histogram = np.asarray(state["histogram"], np.int64)
            peaks = [(float(t), int(v)) for t, v in state["peaks"]]
            settings = state["settings"]
            background = state.get("background")  # absent in states of before issue 22
            active_doms = int(state.get("active_doms", 0))
            alarm_log = [dict(alarm) for alarm in state.get("alarm_log", [])]
        except FileNotFoundError:
            return
        except (OSError, ValueError, KeyError, TypeError) as error:
            self.log.warning("cannot read %s (%s): starting afresh", self.state_path, error)
            return
        if settings != self._settings_key():
            self.log.info("[SN] settings changed: background distribution starts afresh")
            return
        try:
            if background is not None:
                self.background.restore(background)
        except (ValueError, KeyError, TypeError) as error:
            self.log.warning("cannot read %s (%s): starting afresh", self.state_path, error)
            return
        self.histogram = histogram if len(histogram) else self.histogram
        self.peaks.extend(peaks)
        self.active_doms = active_doms
        for alarm in alarm_log:  # one still open when the monitor stopped ended then
            alarm["ended_at"] = alarm.get("ended_at") or self.state_path.stat().st_mtime
            alarm["end_time"] = alarm.get("end_time") or alarm.get("time")
        self.alarm_log.extend(alarm_log)
        self.log.info(
            "read %d windows of background (%d in the rolling hour) from %s",
            histogram.sum(),
            self.background.windows,
            self.state_path,
        )

    def _settings_key(self) -> list[float]:
        s = self.settings
        return [s.min_multiplicity, s.max_multiplicity, s.window_s, s.veto_window_ns, self.n_doms]

    def _save_state(self) -> None:
        state = {
            "settings": self._settings_key(),
            "histogram": self.histogram.tolist(),
            "peaks": [list(p) for p in self.peaks],
            "background": self.background.state(),
            "active_doms": self.active_doms,
            "alarm_log": list(self.alarm_log),
        }
        atomic_write(self.state_path, json.dumps(state).encode())
        self.last_saved = time.monotonic()

    # -- outputs ----------------------------------------------------------------------

    def poll(self) -> None:
        if self.open:
            self._close_frames()

    def render(self) -> None:
        expected, dispersion = self.background.model(self.active_doms)
        threshold = self.threshold()
        latest = self.latest[1] if self.latest else None
        s = self.settings
        selection = selection_text(s.min_multiplicity, s.max_multiplicity, s.window_s,
                                   s.veto_window_ns, self.n_doms)  # fmt: skip
        histogram = background_histogram(
            self.histogram,
            self.latest,
            expected=expected,
            dispersion=dispersion,
            active_doms=self.active_doms,
            threshold=threshold,
            false_alarms_per_week=s.false_alarms_per_week,
            significance=self.significance,
            selection=selection,
            note=MONITOR_NOTE,
        )
        self.context.save_figure("sn_bg_histogram.png", histogram)
        history = peak_history(self.peaks, threshold, selection, MONITOR_NOTE)
        self.context.save_figure("sn_pk_history.png", history)
        self.context.save_metrics(
            "sn",
            {
                "note": MONITOR_NOTE,
                "multiplicity_range": [
                    self.settings.min_multiplicity,
                    self.settings.max_multiplicity,
                ],
                "window_s": self.settings.window_s,
                "veto_window_ns": self.settings.veto_window_ns,
                "latest_time": self.latest[0] if self.latest else None,
                "latest": latest,
                "active_doms": self.active_doms,
                "background_expected": expected,
                "background_dispersion": dispersion,
                "background_windows": self.background.windows,
                "false_alarms_per_week": self.settings.false_alarms_per_week,
                "threshold": threshold,
                "significance": self.significance(latest) if latest is not None else None,
                "highest_time": self.highest[0] if self.highest else None,
                "highest": self.highest[1] if self.highest else None,
                "highest_significance": self.significance(self.highest[1])
                if self.highest
                else None,
                "windows": int(self.histogram.sum()),
                "windows_above_threshold": self.above_threshold,
                "alarms": self.alarms,
                "alarm_log": list(self.alarm_log),
                "selected": self.selected_total,
                "vetoed": self.vetoed,
                "coincidences_by_multiplicity": self.multiplicities,
            },
        )
        if time.monotonic() - self.last_saved > SAVE_STATE_EVERY_S:
            self._save_state()


def register(subparsers: argparse._SubParsersAction) -> None:
    register_monitor(subparsers, SN)
