"""Supernova trigger statistics: the muon veto's time windows, the over-dispersed background
of the SN coincidence counts and the threshold a false-alarm rate gives (the monitor is
:mod:`km3mon.monitors.sn`, its figures :mod:`km3mon.figures.sn`).

One atmospheric muon lights several DOMs in the same window, so the counts are not Poisson.
:class:`RollingBackground` keeps an hour of sums per minute, models the counts as a negative
binomial with the rate per active DOM and the measured dispersion, and finds the count that
background passes only as often as asked.
"""

from __future__ import annotations

import collections
import math
from statistics import NormalDist

import numpy as np

TIMESLICE_S = 0.1
MIN_BACKGROUND_WINDOWS = 300  # 30 s of data
WEEK_S = 7 * 86400.0
#: The rolling background: sums per minute of DAQ time, the last hour of them.
BLOCK_S = 60.0
BACKGROUND_BLOCKS = 60
#: Sums kept per block: windows, counts, counts², active DOMs, active DOMs², counts × DOMs.
N_SUMS = 6


def event_extents(
    event: np.ndarray, times_ns: np.ndarray, n_events: int
) -> tuple[np.ndarray, np.ndarray]:
    """First and last hit time of each of ``n_events`` events from its hits' times (``event``:
    each hit's event row); an event without hits gets first > last."""
    first = np.full(n_events, np.iinfo(np.int64).max)
    last = np.full(n_events, np.iinfo(np.int64).min)
    np.minimum.at(first, event, times_ns)
    np.maximum.at(last, event, times_ns)
    return first, last


def inside_windows(times_ns: np.ndarray, windows_ns: np.ndarray) -> np.ndarray:
    """Which times fall inside any of the (start, end) windows, overlapping ones included:
    the coincidences a muon veto removes."""
    windows_ns = windows_ns[np.argsort(windows_ns[:, 0])]
    reach = np.maximum.accumulate(windows_ns[:, 1])
    position = np.searchsorted(windows_ns[:, 0], times_ns, side="right") - 1
    return (position >= 0) & (times_ns <= reach[np.maximum(position, 0)])


def poisson_sf(k: int, mean: float) -> float:
    """P(X >= k) for a Poisson mean (summed upwards, precise far in the tail)."""
    if k <= 0:
        return 1.0
    if mean <= 0:
        return 0.0
    if k <= mean:
        below = sum(math.exp(j * math.log(mean) - mean - math.lgamma(j + 1)) for j in range(k))
        return max(1.0 - below, 0.0)
    total, j = 0.0, k
    while True:
        term = math.exp(j * math.log(mean) - mean - math.lgamma(j + 1))
        total += term
        if term < 1e-18 * total or j > k + 10_000:
            return total
        j += 1


def negative_binomial_sf(k: int, mean: float, dispersion: float) -> float:
    """P(X >= k) for counts of this mean and variance ``dispersion`` × mean (Poisson at 1)."""
    if dispersion <= 1.0 + 1e-9:
        return poisson_sf(k, mean)
    if k <= 0:
        return 1.0
    if mean <= 0:
        return 0.0
    size = mean / (dispersion - 1.0)  # successes; p = 1 / dispersion
    log_p, log_q = -math.log(dispersion), math.log1p(-1.0 / dispersion)

    def term(j: int) -> float:
        log = math.lgamma(j + size) - math.lgamma(size) - math.lgamma(j + 1)
        return math.exp(log + size * log_p + j * log_q)

    if k <= mean:
        return max(1.0 - sum(term(j) for j in range(k)), 0.0)
    total, j = 0.0, k
    while True:
        value = term(j)
        total += value
        if value < 1e-18 * total or j > k + 100_000:
            return total
        j += 1


def sigma_of_tail(tail: float) -> float:
    """The Gaussian sigma of a one-sided tail probability."""
    return -NormalDist().inv_cdf(min(max(tail, 1e-300), 0.5))


class RollingBackground:
    """The SN statistic's background over the last hour and the threshold it gives.

    Per window it takes the count and the active DOMs. The expected count is the rate per
    active DOM times the DOMs active now; the spread is the variance of the counts around
    that expectation, as a dispersion index (variance / mean, 1 for Poisson). The threshold
    is the smallest count whose negative binomial tail is at most ``false_alarms_per_week``
    in a week of steps of the sliding window.
    """

    def __init__(self, false_alarms_per_week: float) -> None:
        # an alarm can start at every step of the sliding window: a week has WEEK_S /
        # TIMESLICE_S chances (counting one per window length instead, a day of simulated
        # background alarmed three times as often as asked)
        self.tail = false_alarms_per_week * TIMESLICE_S / WEEK_S
        self.blocks: collections.deque[np.ndarray] = collections.deque(maxlen=BACKGROUND_BLOCKS)
        self.current = np.zeros(N_SUMS)
        self.current_block: int | None = None
        self._cache: dict[int, int] = {}  # active DOMs -> threshold, for the completed blocks

    def add(self, time_s: float, count: int, active_doms: int) -> None:
        block = int(time_s // BLOCK_S)
        if self.current_block is not None and block != self.current_block:
            if self.current[0]:
                self.blocks.append(self.current)
            self.current = np.zeros(N_SUMS)
            self._cache.clear()
        self.current_block = block
        self.current += (1, count, count * count, active_doms, active_doms**2, count * active_doms)

    def sums(self) -> np.ndarray:
        """The completed blocks' sums, or the current block's while none is complete."""
        return np.sum(self.blocks, axis=0) if self.blocks else self.current

    @property
    def windows(self) -> int:
        return int(self.sums()[0])

    def model(self, active_doms: int) -> tuple[float, float]:
        """(expected count, dispersion index) for ``active_doms`` DOMs."""
        n, counts, squares, doms, doms_squared, products = self.sums().tolist()
        if not n or not doms or not counts:
            return 0.0, 1.0
        rate = counts / doms
        residual = (squares - 2 * rate * products + rate**2 * doms_squared) / n
        return rate * active_doms, max(residual / (counts / n), 1.0)

    def threshold(self, active_doms: int) -> int | None:
        """The count that background passes ``false_alarms_per_week`` times a week, once
        :data:`MIN_BACKGROUND_WINDOWS` windows are known; None before."""
        if self.windows < MIN_BACKGROUND_WINDOWS or active_doms <= 0:
            return None
        cached = self._cache.get(active_doms) if self.blocks else None
        if cached is not None:
            return cached
        mean, dispersion = self.model(active_doms)
        k = max(math.ceil(mean), 1)
        step = max(1, math.ceil(math.sqrt(mean * dispersion)))
        while negative_binomial_sf(k + step, mean, dispersion) > self.tail:  # coarse, then fine
            k += step
        while negative_binomial_sf(k, mean, dispersion) > self.tail:
            k += 1
        if self.blocks:
            self._cache[active_doms] = k
        return k

    def significance(self, count: float, active_doms: int) -> float:
        """Gaussian sigma of the background tail above ``count`` (negative below the mean)."""
        mean, dispersion = self.model(active_doms)
        if mean <= 0:
            return 0.0
        if count <= mean:
            return (count - mean) / math.sqrt(mean * dispersion)
        return sigma_of_tail(negative_binomial_sf(math.ceil(count), mean, dispersion))

    def state(self) -> dict[str, object]:
        return {
            "block": self.current_block,
            "blocks": [b.tolist() for b in self.blocks],
            "current": self.current.tolist(),
        }

    def restore(self, state: dict) -> None:
        blocks = [np.asarray(b, float) for b in state["blocks"]]
        current = np.asarray(state["current"], float)
        if any(b.shape != (N_SUMS,) for b in [*blocks, current]):
            raise ValueError("rolling background sums of the wrong shape")
        self.blocks.extend(blocks)
        self.current = current
        self.current_block = None if state["block"] is None else int(state["block"])
        self._cache.clear()
