"""What the reco monitor keeps: bounded CSV files and the last two hours in memory rings.

At ARCA scale the fits come at hundreds per second, so the plots cannot re-read files as
the original did (it re-read an ever-growing CSV every minute). The rings hold histograms
per DOM and per 10-minute block, and counts per minute; they are saved to one ``.npz`` now
and then and read back at start, so a restart keeps the two hours.
"""

from __future__ import annotations

import io
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import numpy as np

from km3mon.published import atomic_write

log = logging.getLogger(__name__)

DAY_S = 86400
BLOCK_S = 600.0
MINUTE_S = 60.0
KEEP_S = 2 * 3600.0
#: Blocks kept: two hours of full blocks plus the one being filled.
N_BLOCKS = int(KEEP_S // BLOCK_S) + 1
N_MINUTES = int(KEEP_S // MINUTE_S) + 1
#: Fine residual bins (ns) for per-DOM medians: 0.5 ns in ±30 ns, plus one bin each side
#: for everything beyond, so that a median stays right whatever the tails.
FINE_EDGES_NS = np.arange(-30.0, 30.0 + 0.25, 0.5)
#: The original's histogram: 100 bins over |t_res| < 500 ns.
COARSE_EDGES_NS = np.linspace(-500.0, 500.0, 101)
ZENITH_EDGES_DEG = np.linspace(0.0, 180.0, 37)
#: Per-minute counters: events, events with a track fit tried, multi-DU fits, single-DU fits.
COUNTERS = ("events", "tried", "tracks", "lines")


class RotatingCSV:
    """An appended CSV with a header, rotated at UTC midnight and above ``max_bytes``.

    The file ``name.csv`` becomes ``name_YYYY-MM-DD.csv`` (``_2``, ``_3``... for size parts
    of one day); only the newest ``keep`` rotated files are kept, so the total stays below
    ``(keep + 1) * max_bytes``. A torn last row (a crash mid-write) is cut off at start.
    """

    def __init__(
        self,
        path: Path,
        header: str,
        *,
        max_bytes: int,
        keep: int,
        daily: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = Path(path)
        self.clock = clock
        self.header = header.rstrip("\n") + "\n"
        self.max_bytes = max_bytes
        self.keep = keep
        self.daily = daily
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._cut_torn_row()
        if self.path.exists() and self.path.stat().st_size:
            if self.daily and _day(self.path.stat().st_mtime) < _day(clock()):
                self._rotate(_day(self.path.stat().st_mtime))
            elif self._first_line() != self.header:
                self._rotate(_day(clock()))  # another format: keep it, start anew
        self.day = _day(clock())
        self.stream = self._open()

    def _cut_torn_row(self) -> None:
        if not self.path.exists():
            return
        with self.path.open("rb+") as stream:
            size = stream.seek(0, os.SEEK_END)
            if not size:
                return
            stream.seek(max(0, size - 65536))
            tail = stream.read()
            if tail.endswith(b"\n"):
                return
            cut = tail.rfind(b"\n")
            keep = size - len(tail) + cut + 1 if cut >= 0 else 0
            stream.truncate(keep)
        log.warning("%s: cut a torn last row (%d bytes)", self.path, size - keep)

    def _first_line(self) -> str:
        with self.path.open(encoding="utf-8", errors="replace") as stream:
            return stream.readline()

    def _open(self) -> BinaryIO:
        stream = self.path.open("ab")
        if stream.tell() == 0:
            stream.write(self.header.encode())
            stream.flush()
        return stream

    def _rotate(self, day: int) -> None:
        stamp = time.strftime("%Y-%m-%d", time.gmtime(day * DAY_S))
        target = self.path.with_name(f"{self.path.stem}_{stamp}{self.path.suffix}")
        part = 1
        while target.exists():
            part += 1
            target = self.path.with_name(f"{self.path.stem}_{stamp}_{part}{self.path.suffix}")
        os.replace(self.path, target)
        rotated = sorted(
            self.path.parent.glob(f"{self.path.stem}_*{self.path.suffix}"),
            key=lambda p: p.stat().st_mtime,
        )
        for old in rotated[: max(0, len(rotated) - self.keep)]:
            old.unlink(missing_ok=True)

    def write(self, text: str) -> None:
        """Append rows (complete lines); rotates first when the day or the size says so."""
        if not text:
            return
        today = _day(self.clock())
        if (self.daily and today != self.day) or self.stream.tell() + len(text) > self.max_bytes:
            self.stream.close()
            self._rotate(self.day if self.daily else today)
            self.day = today
            self.stream = self._open()
        self.stream.write(text.encode())
        self.stream.flush()

    def close(self) -> None:
        self.stream.close()


def _day(timestamp: float) -> int:
    return int(timestamp // DAY_S)


def format_rows(columns: list, formats: str) -> str:
    """CSV text of columns (same length), one ``%``-format per column (``formats``: separated
    by spaces); NaN becomes an empty field."""
    if not len(columns) or not len(columns[0]):
        return ""
    parts = []
    for column, fmt in zip(columns, formats.split(), strict=True):
        if isinstance(column, np.ndarray) and column.dtype.kind == "f":
            finite = np.isfinite(column).tolist()
            texts = [fmt % v if ok else "" for v, ok in zip(column.tolist(), finite, strict=True)]
        else:
            texts = [fmt % v for v in (column.tolist() if hasattr(column, "tolist") else column)]
        parts.append(texts)
    return "".join(",".join(row) + "\n" for row in zip(*parts, strict=True))


class Rings:
    """Residual histograms per DOM and 10-minute block, counts and zenith per minute.

    ``fine``: leave-one-out residuals of the multi-DU fits (the per-DOM time-offset monitor);
    ``coarse``: single-DU fit residuals as the original histogrammed them (only for detectors
    small enough to draw them per floor, else zero-sized).
    """

    def __init__(self, n_doms: int, with_coarse: bool) -> None:
        self.n_doms = n_doms
        self.block_keys = np.full(N_BLOCKS, -1, np.int64)
        self.fine = np.zeros((N_BLOCKS, n_doms, len(FINE_EDGES_NS) + 1), np.uint32)
        n_coarse = len(COARSE_EDGES_NS) - 1 if with_coarse else 0
        self.coarse = np.zeros((N_BLOCKS, n_doms if with_coarse else 0, n_coarse), np.uint32)
        self.minute_keys = np.full(N_MINUTES, -1, np.int64)
        self.counts = np.zeros((N_MINUTES, len(COUNTERS)), np.int64)
        self.zenith = np.zeros((N_MINUTES, len(ZENITH_EDGES_DEG) - 1), np.int64)

    def _blocks(self, times_s: np.ndarray) -> np.ndarray:
        """Ring slot of each time's block, starting blocks that are new (oldest dropped)."""
        keys = (times_s // BLOCK_S).astype(np.int64)
        for key in np.unique(keys).tolist():
            slot = key % N_BLOCKS
            if self.block_keys[slot] != key:
                if self.block_keys[slot] > key:
                    continue  # older than the ring: these rows are ignored below
                self.block_keys[slot] = key
                self.fine[slot] = 0
                self.coarse[slot] = 0
        slots = keys % N_BLOCKS
        return np.where(self.block_keys[slots] == keys, slots, -1)

    def _minutes(self, times_s: np.ndarray) -> np.ndarray:
        keys = (times_s // MINUTE_S).astype(np.int64)
        for key in np.unique(keys).tolist():
            slot = key % N_MINUTES
            if self.minute_keys[slot] != key and self.minute_keys[slot] < key:
                self.minute_keys[slot] = key
                self.counts[slot] = 0
                self.zenith[slot] = 0
        slots = keys % N_MINUTES
        return np.where(self.minute_keys[slots] == keys, slots, -1)

    def add_fine(self, times_s: np.ndarray, dom: np.ndarray, residual_ns: np.ndarray) -> None:
        slots = self._blocks(times_s)
        bins = np.searchsorted(FINE_EDGES_NS, residual_ns)
        ok = slots >= 0
        np.add.at(self.fine, (slots[ok], dom[ok], bins[ok]), 1)

    def add_coarse(self, times_s: np.ndarray, dom: np.ndarray, residual_ns: np.ndarray) -> None:
        if not self.coarse.shape[1]:
            return
        slots = self._blocks(times_s)
        bins = np.searchsorted(COARSE_EDGES_NS, residual_ns) - 1
        ok = (slots >= 0) & (bins >= 0) & (bins < self.coarse.shape[2])
        np.add.at(self.coarse, (slots[ok], dom[ok], bins[ok]), 1)

    def add_counts(self, times_s: np.ndarray, counter: str, weights: np.ndarray | None = None):
        slots = self._minutes(times_s)
        ok = slots >= 0
        column = COUNTERS.index(counter)
        np.add.at(self.counts[:, column], slots[ok], 1 if weights is None else weights[ok])

    def add_zenith(self, times_s: np.ndarray, zenith_deg: np.ndarray) -> None:
        slots = self._minutes(times_s)
        bins = np.clip(
            np.searchsorted(ZENITH_EDGES_DEG, zenith_deg) - 1, 0, self.zenith.shape[1] - 1
        )
        ok = slots >= 0
        np.add.at(self.zenith, (slots[ok], bins[ok]), 1)

    def recent_blocks(self, newest_s: float, span_s: float = KEEP_S) -> np.ndarray:
        """Slots of the blocks within ``span_s`` of ``newest_s``, newest first."""
        newest = int(newest_s // BLOCK_S)
        oldest = int((newest_s - span_s) // BLOCK_S)
        keys = self.block_keys
        slots = np.flatnonzero((keys >= oldest) & (keys <= newest))
        return slots[np.argsort(-keys[slots])]

    def recent_minutes(self, newest_s: float, span_s: float) -> tuple[np.ndarray, np.ndarray]:
        """(minute start times, slots) within ``span_s`` of ``newest_s``, oldest first."""
        newest = int(newest_s // MINUTE_S)
        oldest = int((newest_s - span_s) // MINUTE_S)
        keys = self.minute_keys
        slots = np.flatnonzero((keys > oldest) & (keys <= newest))
        slots = slots[np.argsort(keys[slots])]
        return keys[slots] * MINUTE_S, slots

    def newest_s(self) -> float | None:
        """End of the newest minute with data (after a read-back), None when empty."""
        newest = int(self.minute_keys.max())
        return (newest + 1) * MINUTE_S if newest >= 0 else None

    def save(self, path: Path, dom_ids: np.ndarray) -> None:
        buffer = io.BytesIO()
        np.savez_compressed(
            buffer,
            dom_ids=dom_ids,
            block_keys=self.block_keys,
            fine=self.fine,
            coarse=self.coarse,
            minute_keys=self.minute_keys,
            counts=self.counts,
            zenith=self.zenith,
        )
        atomic_write(path, buffer.getvalue())

    def load(self, path: Path, dom_ids: np.ndarray) -> bool:
        """Read a saved state back if it is for the same DOMs; False if not usable."""
        try:
            with np.load(path) as saved:
                if not np.array_equal(saved["dom_ids"], dom_ids):
                    log.warning("%s is for another detector: not read", path)
                    return False
                arrays = {name: saved[name] for name in saved.files}
        except (OSError, ValueError, KeyError) as error:
            log.warning("%s not read: %s", path, error)
            return False
        for name in ("block_keys", "fine", "coarse", "minute_keys", "counts", "zenith"):
            if arrays[name].shape != getattr(self, name).shape:
                log.warning("%s has another layout (%s): not read", path, name)
                return False
        for name in ("block_keys", "fine", "coarse", "minute_keys", "counts", "zenith"):
            setattr(self, name, arrays[name].astype(getattr(self, name).dtype))
        return True


def histogram_quantiles(counts: np.ndarray, edges: np.ndarray, q: tuple[float, ...]) -> np.ndarray:
    """Quantiles per row of histograms (rows, bins) with under/overflow bins at both ends
    (``len(edges) + 1`` bins), interpolated linearly inside a bin; NaN for empty rows or a
    quantile in an overflow bin."""
    counts = np.asarray(counts, np.float64)
    total = counts.sum(axis=1)
    cumulative = np.cumsum(counts, axis=1)
    out = np.full((len(counts), len(q)), np.nan)
    for column, fraction in enumerate(q):
        target = fraction * total
        index = np.argmax(cumulative >= target[:, None], axis=1)
        before = np.where(index > 0, cumulative[np.arange(len(counts)), index - 1], 0.0)
        inside = counts[np.arange(len(counts)), index]
        with np.errstate(divide="ignore", invalid="ignore"):
            share = np.where(inside > 0, (target - before) / inside, 0.5)
        interior = (index >= 1) & (index <= len(edges) - 1)
        lo = edges[np.clip(index - 1, 0, len(edges) - 2)]
        width = np.diff(edges)[np.clip(index - 1, 0, len(edges) - 2)]
        out[:, column] = np.where(interior & (total > 0), lo + share * width, np.nan)
    return out
