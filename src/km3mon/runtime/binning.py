"""Accumulating per-DOM values into fixed-width bins of DAQ time, kept in a ring.

pmt_rates (rate and HRV images) and ahrs_calibration sum the packets of the open bin and turn
the sums into means when DAQ time moves past it; the ring keeps the last ``size`` bins.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from km3mon.detector import Detector


class TimeRing:
    """Bins of ``width_s`` seconds; ``close(position)`` stores the open bin's means there."""

    def __init__(self, width_s: float, size: int, close: Callable[[int], None]) -> None:
        self.width_s = width_s
        self.size = size
        self.starts_s = np.full(size, np.nan)
        self.head = 0  # ring position the open bin will be stored at
        self.current: int | None = None
        self._close = close

    def numbers(self, times_s: np.ndarray) -> np.ndarray:
        return np.floor(np.asarray(times_s) / self.width_s).astype(np.int64)

    def advance_to(self, number: int) -> None:
        """Close every bin before ``number``; a long gap skips the empty ones. Late data join
        the open bin."""
        if self.current is None:
            self.current = number
        while number > self.current:
            self._close(self.head)
            self.starts_s[self.head] = self.current * self.width_s
            self.head = (self.head + 1) % self.size
            self.current += 1
            if number - self.current > self.size:
                self.current = number - self.size

    @property
    def newest(self) -> int:
        """Ring position of the newest closed bin."""
        return (self.head - 1) % self.size

    def chronological(self) -> np.ndarray:
        """Ring positions from the oldest bin to the newest."""
        return (np.arange(self.size) + self.head) % self.size

    def filled(self) -> np.ndarray:
        """Ring positions from the oldest bin with data to the newest (what a plot shows
        until the ring has filled); just the newest position while there are none."""
        chronological = self.chronological()
        known = np.flatnonzero(~np.isnan(self.starts_s[chronological]))
        return chronological[known[0] if len(known) else -1 :]


class OpticalSlots:
    """Dense row numbers ("slots") for the optical DOMs of a detector, optionally of one DU."""

    def __init__(self, detector: Detector, du: int | None = None) -> None:
        chosen = detector.dom_floor > 0
        if du is not None:
            chosen &= detector.dom_du == du
            if not chosen.any():
                raise ValueError(f"DU {du} is not in detector {detector.det_id}")
        self.dom_index = np.flatnonzero(chosen)
        # one extra entry at the end: index -1 (a foreign DOM) lands there, as "no slot"
        self._slot_of_index = np.full(len(detector.dom_ids) + 1, -1)
        self._slot_of_index[self.dom_index] = np.arange(len(self.dom_index))

    def __len__(self) -> int:
        return len(self.dom_index)

    def of(self, dom_index: np.ndarray) -> np.ndarray:
        """Slot of each detector DOM index (-1 for DOMs not covered, and for -1 itself)."""
        return self._slot_of_index[dom_index]


def add_rows(target: np.ndarray, rows: np.ndarray, values: np.ndarray) -> None:
    """``target[rows] += values`` with repeated rows summed, like ``np.add.at`` but with one
    ``bincount`` (1.5× faster on a second of 230-DU packets, numpy 2).

    ``target`` is (n, k) or (n,), ``values`` (m, k) or (m,), ``rows`` (m,) indices into target.
    """
    width = target.shape[1] if target.ndim == 2 else 1
    flat = (rows[:, None] * width + np.arange(width)).ravel()
    sums = np.bincount(flat, weights=np.asarray(values, np.float64).ravel(), minlength=target.size)
    target += sums.reshape(target.shape)


class Int16Columns:
    """A (rows, columns) table of floats kept as int16 multiples of ``step`` (NaN: no value):
    a quarter of float64's memory, for long histories whose values need no more precision
    than ``step`` and stay within ±32 766 steps (out of range is stored as no value)."""

    EMPTY = np.iinfo(np.int16).min

    def __init__(self, n_rows: int, n_columns: int, step: float) -> None:
        self.step = step
        self.steps = np.full((n_rows, n_columns), self.EMPTY, np.int16)

    def store(self, column: int, values: np.ndarray) -> None:
        """Set one column from ``values`` (one per row)."""
        with np.errstate(invalid="ignore"):
            steps = np.round(np.asarray(values, np.float64) / self.step)
            fits = np.abs(steps) < -self.EMPTY  # False for NaN
        stored = np.full(len(steps), self.EMPTY, np.int16)
        stored[fits] = steps[fits]
        self.steps[:, column] = stored

    def read(self, rows: np.ndarray | slice, columns: np.ndarray | int) -> np.ndarray:
        """The values at ``rows`` × ``columns`` (NumPy indexing of each axis), NaN where none."""
        steps = self.steps[rows][:, columns]
        return np.where(steps == self.EMPTY, np.nan, steps * self.step)
