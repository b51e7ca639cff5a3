"""Guards against corrupted DAQ header fields: implausible times and unconfirmed runs.

One flipped bit in a header must not take a monitor over. A UTC field of 0x7FFFFFFF would
set "newest data" to 2038, move a binning clock into the future and make every later good
message "late"; a corrupted run number would be drawn as a run change. Both guards judge a
value by the wall clock and by the stream around it, so a bad message never outvotes the good
ones.

A real jump of DAQ time (a replay that skips a gap, a file of selected events) looks like a
wild time to its first messages. ``TimeGate`` holds such messages instead of dropping them:
once the following messages confirm the new time they are delivered, in order; a wild time,
which nothing confirms, is dropped after the stream has gone on without it.
"""

from __future__ import annotations

import itertools
import math
import struct
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from km3mon.daq.preamble import (
    CLASS_VERSION,
    PREAMBLE,
    TAG_BY_DATA_TYPE,
    UTC_SECONDS_MASK,
    VERSION,
)

if TYPE_CHECKING:
    from km3mon.controlhost import Message

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
        candidate = possible(times_s, now_s)
        self.remember(times_s[candidate])
        return candidate & self.inside(times_s, now_s)

    def inside(self, times_s: np.ndarray, now_s: float) -> np.ndarray:
        """True for each time that fits the recent times (or the wall clock), which are
        not changed."""
        candidate = possible(times_s, now_s)
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

    def remember(self, times_s: np.ndarray) -> int:
        """Add times (not absurd ones) to the recent ones; how many were added."""
        if len(times_s) > WINDOW:  # evenly spread over the batch, in its order
            times_s = times_s[np.linspace(0, len(times_s) - 1, WINDOW).astype(np.int64)]
        self.recent_s = np.concatenate([self.recent_s, times_s])[-WINDOW:]
        return len(times_s)


def possible(times_s: np.ndarray, now_s: float) -> np.ndarray:
    """False for times no detector can have sent: unset clocks, far ahead of the wall clock
    (and NaN, a message without a time)."""
    with np.errstate(invalid="ignore"):
        return (times_s >= EARLIEST_S) & (times_s <= now_s + MAX_AHEAD_OF_WALL_S)


#: Data type of each JDAQ tag (preamble, class version, DAQ header with the UTC time).
JDAQ_TAGS = {tag: data_type for data_type, tag in TAG_BY_DATA_TYPE.items()}
_UTC = struct.Struct("<II")
_MONITORING_UTC = struct.Struct(">II")
#: Byte offset of the UTC seconds in a JDAQ header (after det id, run, frame index).
_UTC_IN_HEADER = 12
_MONITORING_UTC_AT = 12


def message_time_s(tag: str, payload: bytes) -> float:
    """The DAQ time in a message's header, NaN where it has none or it cannot be read.

    Read without decoding the payload (the gate sees every message). Legacy JDAQ payloads
    have no class version: where bytes 8-9 do not hold the tag's class version, the header
    starts at byte 8 (as the decoders decide first, too)."""
    try:
        if tag == "IO_MONIT":
            seconds, cycles = _MONITORING_UTC.unpack_from(payload, _MONITORING_UTC_AT)
            return seconds + cycles * 16e-9
        data_type = JDAQ_TAGS.get(tag)
        if data_type is None:
            return math.nan
        (version,) = VERSION.unpack_from(payload, PREAMBLE.size)
        header_at = PREAMBLE.size + (VERSION.size if version == CLASS_VERSION[data_type] else 0)
        seconds, cycles = _UTC.unpack_from(payload, header_at + _UTC_IN_HEADER)
    except struct.error:  # too short: the decoder will count it
        return math.nan
    return (seconds & UTC_SECONDS_MASK) + cycles * 16e-9


#: A held message is dropped once the guard has taken this many newer times without its
#: time becoming plausible (the stream went on without it), or after ``HOLD_S`` (the stream
#: stopped: a new time that fewer than half a window of messages confirmed).
HOLD_TIMES = 2 * WINDOW
HOLD_S = 60.0
#: Held payloads are kept up to this size (the oldest dropped first).
MAX_HELD_BYTES = 256 * 1024 * 1024


@dataclass
class Held:
    """A message whose time did not fit the stream yet."""

    message: Message
    time_s: float
    #: ``TimeGate.taken`` when it was held, and the monotonic clock.
    taken: int
    since: float


@dataclass
class Admitted:
    """What the gate did with a batch."""

    #: The messages to use, in the order they arrived (held ones before the batch).
    messages: list[Message]
    #: Times of the held messages that were dropped: wild after all.
    rejected_s: list[float]
    #: Held messages delivered now (a new time confirmed).
    released: int


class TimeGate:
    """Judges every message by the DAQ time in its header before a monitor sees it.

    A time that fits the stream (``TimeGuard``), before or after this batch, passes. One
    that does not is held, not dropped: if it was the first of a new time (a replay that
    skipped a gap), the following messages move the guard's median to it within half a
    window and the held messages are delivered then, ahead of the batch that confirmed
    them. A wild time is never confirmed (a minority does not move the median) and is
    dropped once ``HOLD_TIMES`` newer times have come. Messages without a time, or with
    one no detector can have sent, pass: the decoders decide about them and count them.
    """

    def __init__(self, guard: TimeGuard) -> None:
        self.guard = guard
        self.held: deque[Held] = deque()
        self.held_bytes = 0
        #: Times the guard has taken (its recent window moves on by these).
        self.taken = 0

    def admit(
        self, messages: list[Message], now_s: float | None = None, now_mono: float | None = None
    ) -> Admitted:
        """Judge a batch in arrival order. A batch that spans jumps of DAQ time (a monitor
        that was busy while a replay went on) is judged one stretch of time after the
        other, as if it had come in pieces."""
        if not messages and not self.held:
            return Admitted(messages, [], 0)
        now_s = time.time() if now_s is None else now_s
        now_mono = time.monotonic() if now_mono is None else now_mono
        times_s = np.fromiter(
            (message_time_s(m.tag, m.payload) for m in messages), np.float64, len(messages)
        )
        candidate = possible(times_s, now_s)
        timed = np.flatnonzero(candidate)
        jumps = timed[1:][np.abs(np.diff(times_s[timed])) > AHEAD_S]
        if not len(jumps):
            return self._admit(messages, times_s, candidate, now_s, now_mono)
        result = Admitted([], [], 0)
        bounds = [0, *jumps.tolist(), len(messages)]
        for start, stop in itertools.pairwise(bounds):
            part = self._admit(messages[start:stop], times_s[start:stop],
                               candidate[start:stop], now_s, now_mono)  # fmt: skip
            result.messages += part.messages
            result.rejected_s += part.rejected_s
            result.released += part.released
        return result

    def _admit(
        self,
        messages: list[Message],
        times_s: np.ndarray,
        candidate: np.ndarray,
        now_s: float,
        now_mono: float,
    ) -> Admitted:
        before = self.guard.recent_s
        self.taken += self.guard.remember(times_s[candidate])
        fits = self.guard.inside(times_s, now_s)
        if not fits[candidate].all():  # fits the stream as it was before these?
            after, self.guard.recent_s = self.guard.recent_s, before
            fits |= self.guard.inside(times_s, now_s)
            self.guard.recent_s = after
        wild = candidate & ~fits
        if not self.held and not wild.any():  # nearly always
            return Admitted(messages, [], 0)
        delivered, rejected_s, released = self._release(now_s, now_mono)
        for message, time_s, hold in zip(messages, times_s.tolist(), wild.tolist(), strict=True):
            if hold:
                self.held.append(Held(message, time_s, self.taken, now_mono))
                self.held_bytes += len(message.payload)
            else:
                delivered.append(message)
        while self.held_bytes > MAX_HELD_BYTES and self.held:
            dropped = self.held.popleft()
            self.held_bytes -= len(dropped.message.payload)
            rejected_s.append(dropped.time_s)
        return Admitted(delivered, rejected_s, released)

    def _release(self, now_s: float, now_mono: float) -> tuple[list[Message], list[float], int]:
        """Held messages whose time the stream has reached (delivered, in order), those it
        went on without (dropped); the others stay."""
        if not self.held:
            return [], [], 0
        times_s = np.array([h.time_s for h in self.held])
        fits = self.guard.inside(times_s, now_s).tolist()
        delivered, rejected_s, kept = [], [], deque()
        for entry, fit in zip(self.held, fits, strict=True):
            if fit:
                delivered.append(entry.message)
            elif self.taken - entry.taken >= HOLD_TIMES or now_mono - entry.since > HOLD_S:
                rejected_s.append(entry.time_s)
            else:
                kept.append(entry)
                continue
            self.held_bytes -= len(entry.message.payload)
        self.held = kept
        return delivered, rejected_s, len(delivered)


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
