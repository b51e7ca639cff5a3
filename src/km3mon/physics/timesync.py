"""The time-sync monitor's judgement of each DOM (``km3mon.monitors.timesync``): White Rabbit,
UDP completeness and silence over the last :data:`WINDOW_S` seconds of summary slices, and the
DataFilters, each known by the DOMs of its ``IO_TSSN`` messages.

The counts are per second of DAQ time in a ring of :data:`WINDOW_S` seconds, per DOM slot:
``counts[0]`` summary frames, ``counts[1]`` frames without White Rabbit time, ``counts[2]``
frames with incomplete UDP data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: Seconds of summary slices a DOM is judged on.
WINDOW_S = 10
#: Frames a DOM sends per second: one per 100 ms timeslice.
EXPECTED_FRAMES_PER_S = 10
STATES = ("OK", "incomplete UDP", "White Rabbit lost", "missing", "DataFilter stopped")
OK, UDP, WHITE_RABBIT, MISSING, NO_TIMESLICES = range(len(STATES))


class DataFilters:
    """The DataFilters seen in ``IO_TSSN``, each known by its DOMs (slots): a message whose
    DOMs overlap those of a known DataFilter comes from it (overlapping groups are merged)."""

    def __init__(self, n_slots: int) -> None:
        #: DataFilter number of each DOM slot (-1: in no message yet).
        self.of_slot = np.full(n_slots, -1)
        #: DAQ time of each DataFilter's newest message (NaN: merged into another).
        self.last_seen_s: list[float] = []

    def saw(self, slots: np.ndarray, time_s: float) -> None:
        if not len(slots):
            return
        known = np.unique(self.of_slot[slots])
        known = known[known >= 0]
        if not len(known):
            number = len(self.last_seen_s)
            self.last_seen_s.append(time_s)
        else:
            number = int(known[0])
            for other in known[1:].tolist():  # one DataFilter after all
                self.of_slot[self.of_slot == other] = number
                self.last_seen_s[number] = max(self.last_seen_s[number], self.last_seen_s[other])
                self.last_seen_s[other] = math.nan
        self.of_slot[slots] = number
        self.last_seen_s[number] = max(self.last_seen_s[number], time_s)

    def numbers(self) -> list[int]:
        return [n for n, seen in enumerate(self.last_seen_s) if not math.isnan(seen)]


@dataclass
class Judgement:
    """Per DOM slot: its state (index into :data:`STATES`), frames per second over the whole
    seconds of the window and the fraction of its frames lost or incomplete (NaN: no frame
    expected); and the DataFilters that stopped."""

    state: np.ndarray
    frames_per_s: np.ndarray
    lost_fraction: np.ndarray
    stopped: list[int]


def judge_doms(
    counts: np.ndarray,
    second: np.ndarray,
    slices: np.ndarray,
    last_seen_s: np.ndarray,
    *,
    first_s: float | None,
    newest_s: float,
    data_filters: DataFilters,
    missing_after_s: float,
    udp_fraction: float,
) -> Judgement:
    """Each DOM's state over the last :data:`WINDOW_S` seconds of DAQ time up to ``newest_s``
    from the ring of ``counts`` (3, WINDOW_S, slots; see the module), the DAQ ``second`` of
    each ring position, the summary ``slices`` seen in it and each DOM's newest frame time.

    UDP loss: incomplete frames plus frames missing from the slices of the seconds the DOM
    was in, above ``udp_fraction`` of those (seconds without any frame of it are "missing",
    not UDP loss). Missing: no frame for ``missing_after_s`` (never seen: only once the data
    span that long). A DataFilter stopped: no ``IO_TSSN`` for ``missing_after_s`` while some of
    its DOMs still send summary frames (when all of them are silent, the DOMs are the news).
    """
    newest_second = int(newest_s)
    recent = np.flatnonzero(second > newest_second - WINDOW_S)
    frames, wr_lost, incomplete = counts[:, recent].sum(axis=1)
    expected = (slices[recent][:, None] * (counts[0, recent] > 0)).sum(axis=0)
    bad = incomplete + np.maximum(expected - frames, 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        lost_fraction = np.where(expected > 0, bad / expected, np.nan)
    n_slots = counts.shape[2]
    whole = recent[second[recent] < newest_second]  # the newest is partial
    frames_per_s = (
        counts[0, whole].sum(axis=0) / len(whole) if len(whole) else np.full(n_slots, np.nan)
    )
    state = np.zeros(n_slots, np.int64)
    age = newest_s - last_seen_s
    sending = age <= missing_after_s
    of_slot = data_filters.of_slot
    stopped = [
        n
        for n in data_filters.numbers()
        if newest_s - data_filters.last_seen_s[n] > missing_after_s and sending[of_slot == n].any()
    ]
    state[np.isin(of_slot, stopped)] = NO_TIMESLICES
    state[(bad > 0) & (bad > udp_fraction * expected)] = UDP
    state[wr_lost > 0] = WHITE_RABBIT
    never_seen = np.isnan(age)
    if newest_s - (first_s or newest_s) < missing_after_s:
        state[never_seen] = OK  # too early to say
    else:
        state[never_seen] = MISSING
    state[age > missing_after_s] = MISSING
    return Judgement(state, frames_per_s, lost_fraction, stopped)
