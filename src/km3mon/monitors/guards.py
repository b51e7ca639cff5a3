"""Guards against corrupted DAQ header fields: implausible times and unconfirmed runs.

One flipped bit in a header must not take a monitor over. A UTC field of 0x7FFFFFFF would
set "newest data" to 2038, move a binning clock into the future and make every later good
message "late"; a corrupted run number would be drawn as a run change. Both guards judge a
value by the wall clock and by the stream around it, so a bad message never outvotes the good
ones.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass

import numpy as np

#: Before this (2015-01-01) no KM3NeT detector sent data: such times are unset clocks.
EARLIEST_S = 1_420_070_400.0
#: Never accepted: a time further ahead of the wall clock than this (a simulation sped up
#: for longer than a day would have to start in the past).
MAX_AHEAD_OF_WALL_S = 86_400.0
#: How far ahead of the wall clock, or of the stream's recent median, a time may be: live
#: data never come from the future (White Rabbit and NTP agree to far better than this),
#: so a flipped bit moves "newest data" by a few seconds at most.
AHEAD_S = 5.0
#: How far behind them (late data are harmless: they move no clock; they are counted late).
BEHIND_S = 3600.0
#: Recent times kept for the median: a jump to another time (a replay of another day) is
#: accepted once it is most of the last WINDOW messages.
WINDOW = 32
#: The stream window widens with the spread of the recent times (a fast replay of a file
#: puts many seconds of DAQ time into one batch): this many robust standard deviations,
#: once enough times are known for the spread to resist a minority of wild ones.
SPREAD_FACTOR = 4.0
SPREAD_NEEDS = WINDOW // 2
#: A new run number is the run once this many of the last RUN_WINDOW messages carry it.
CONFIRM_RUN = 5
RUN_WINDOW = 10


class TimeGuard:
    """Says which DAQ times are plausible: never far ahead of the wall clock; for a live
    stream (its recent median near the wall clock) not more than ``AHEAD_S`` ahead of the
    wall clock or of that median; otherwise (a replay, a sped-up simulation, a host whose
    clock is off) close to the median of the recent times. Every time that is not absurd
    joins the recent times, so a real jump is followed once most of the stream agrees."""

    def __init__(self) -> None:
        self.recent_s = np.zeros(0)

    def plausible(self, times_s: np.ndarray, now_s: float | None = None) -> np.ndarray:
        """True for each plausible time; the recent times are updated with these."""
        times_s = np.asarray(times_s, dtype=np.float64)
        if not len(times_s):
            return np.zeros(0, bool)
        now_s = time.time() if now_s is None else now_s
        with np.errstate(invalid="ignore"):
            candidate = (times_s >= EARLIEST_S) & (times_s <= now_s + MAX_AHEAD_OF_WALL_S)
        self._remember(times_s[candidate])
        near_wall = (times_s >= now_s - BEHIND_S) & (times_s <= now_s + AHEAD_S)
        recent = self.recent_s
        if not len(recent):
            return candidate & near_wall
        median = float(np.median(recent))
        if now_s - BEHIND_S <= median <= now_s + AHEAD_S:  # live: the wall clock rules
            # (or the stream, where it runs ahead: a simulation faster than real time)
            ceiling_s = max(now_s, median) + AHEAD_S
            return candidate & (times_s >= now_s - BEHIND_S) & (times_s <= ceiling_s)
        widening = 0.0
        if len(recent) >= SPREAD_NEEDS:
            widening = SPREAD_FACTOR * 1.4826 * float(np.median(np.abs(recent - median)))
        near_stream = (times_s >= median - max(BEHIND_S, widening)) & (
            times_s <= median + max(AHEAD_S, widening)
        )
        return candidate & (near_wall | near_stream)

    def _remember(self, times_s: np.ndarray) -> None:
        if len(times_s) > WINDOW:  # evenly spread over the batch, in its order
            times_s = times_s[np.linspace(0, len(times_s) - 1, WINDOW).astype(np.int64)]
        self.recent_s = np.concatenate([self.recent_s, times_s])[-WINDOW:]


@dataclass(frozen=True)
class RunChange:
    """A confirmed run change: the DAQ time of the first message of the new run."""

    time_s: float
    previous: int | None
    run: int


class RunTracker:
    """The current run, changed only when ``confirm`` of the last ``window`` messages carry
    the new one.

    A corrupted run number is random: it does not come again, so it never adds up (even
    when many messages are corrupted); a real run change is seen by every following
    message. Messages of the batch from the first that carried the new run on are given it,
    also those that came before the confirmation.
    """

    def __init__(self, confirm: int = CONFIRM_RUN, window: int = RUN_WINDOW) -> None:
        self.confirm = confirm
        self.run: int | None = None
        #: (run, DAQ time, index in the current batch or -1) of the last messages
        self._recent: deque[tuple[int, float, int]] = deque(maxlen=window)

    def update(self, runs: np.ndarray, times_s: np.ndarray) -> tuple[np.ndarray, list[RunChange]]:
        """Runs of messages in time order -> (the confirmed run of each message, -1 before
        any is known; the run changes confirmed)."""
        runs = np.asarray(runs, dtype=np.int64)
        changes: list[RunChange] = []
        if self.run is not None and (runs == self.run).all():  # nearly always: no loop
            tail = slice(max(0, len(runs) - (self._recent.maxlen or 0)), len(runs))
            self._recent.extend((self.run, float(t), -1) for t in times_s[tail].tolist())
            return np.full(len(runs), self.run, np.int64), changes
        confirmed = np.full(len(runs), -1, np.int64)
        self._recent = deque(((r, t, -1) for r, t, _ in self._recent), self._recent.maxlen)
        for index, (run, time_s) in enumerate(zip(runs.tolist(), times_s.tolist(), strict=True)):
            self._recent.append((run, time_s, index))
            if run != self.run:
                carrying = [entry for entry in self._recent if entry[0] == run]
                if len(carrying) >= self.confirm:
                    changes.append(RunChange(carrying[0][1], self.run, run))
                    self.run = run
                    in_batch = [i for _, _, i in carrying if i >= 0]
                    confirmed[in_batch[0] if in_batch else index : index] = run
            confirmed[index] = -1 if self.run is None else self.run
        return confirmed, changes
