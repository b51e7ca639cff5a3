"""The history store: per-minute metrics of the whole detector in one SQLite file (WAL).

Why SQLite and this layout: the workload is one write of a few detector-wide arrays a minute
and reads of *one* DOM over days. SQLite is in the standard library, crash-safe in WAL mode,
readable by the dashboard while the writer goes on, and copied or inspected with one file;
DuckDB/Parquet would add a dependency and favour scans over the whole detector, which we never
need. The trick is the layout, in three tables:

* ``minutes``: the current hour as it comes, one row per metric and minute with the values of
  every entity (DOM, DU) packed as float32 (16 kB for ARCA-230's 4 140 DOMs) and a reference to
  the entity ids (``idsets``, stored once while the detector does not change).
* ``chunks``: when an hour is complete it is transposed to one row per metric, hour and entity
  holding 60 float32 minutes (240 bytes). Reading one DOM over 30 days is 720 point lookups of
  240 bytes instead of 720 × 60 rows of 16 kB. The key (metric, hour, entity) makes every hour
  an append at the end of its metric's range, so pages stay full.
* ``coarse``: 10-minute means, one row per metric, day and entity (144 values), written with
  every hour; they outlive the minute data (``keep_days``, default 30) for ``keep_coarse_days``
  (365). Per-DOM means are float16 (0.1 % resolution, half the size of a year of them: 1.4 GB
  at ARCA-230), the others float32 (an RTTC of 4e7 ps does not fit a float16). Deleted pages
  are reused, so the file stops growing once retention starts.

Times are DAQ times where the metric carries one (the minute of the data, not of the sample).
Missing values are NaN. A late minute for an hour already transposed is merged into its chunk.
"""

from __future__ import annotations

import hashlib
import sqlite3
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from km3mon import published

MINUTES_PER_HOUR = 60
SLOTS_PER_DAY = 144  # 10-minute means
SCHEMA = """
CREATE TABLE IF NOT EXISTS metrics (
    id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL, kind TEXT NOT NULL  -- dom, du, scalar
);
CREATE TABLE IF NOT EXISTS idsets (id INTEGER PRIMARY KEY, digest TEXT UNIQUE, ids BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS minutes (
    metric INTEGER NOT NULL, minute INTEGER NOT NULL, idset INTEGER NOT NULL, vals BLOB NOT NULL,
    PRIMARY KEY (metric, minute)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS chunks (
    metric INTEGER NOT NULL, hour INTEGER NOT NULL, entity INTEGER NOT NULL, vals BLOB NOT NULL,
    PRIMARY KEY (metric, hour, entity)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS coarse (
    metric INTEGER NOT NULL, day INTEGER NOT NULL, entity INTEGER NOT NULL, vals BLOB NOT NULL,
    PRIMARY KEY (metric, day, entity)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS runs (run INTEGER PRIMARY KEY, start REAL NOT NULL);
CREATE TABLE IF NOT EXISTS places (dom_id INTEGER PRIMARY KEY, du INTEGER, floor INTEGER);
"""


class HistoryError(Exception):
    """The history store cannot answer (no such metric, no store yet)."""


@dataclass(frozen=True)
class Series:
    """One entity's values: times (UTC s, start of minute or 10-minute slot), values."""

    times_s: np.ndarray
    values: np.ndarray
    step_s: int


class HistoryStore:
    def __init__(
        self,
        data_dir: Path,
        *,
        keep_days: float = 30.0,
        keep_coarse_days: float = 365.0,
        readonly: bool = False,
    ) -> None:
        path = published.history_db(data_dir)
        if readonly:
            if not path.exists():
                raise HistoryError(f"no history yet ({path} does not exist)")
            self.db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10.0)
        else:
            data_dir.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(path, timeout=10.0, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.executescript(SCHEMA)
        self.keep_hours = int(keep_days * 24)
        self.keep_coarse_days = int(keep_coarse_days)
        self._metric_ids: dict[str, tuple[int, str]] = {}
        self._kinds: dict[int, str] = {}
        self._idsets: dict[int, np.ndarray] = {}
        self._idset_by_digest: dict[str, int] = {}

    def close(self) -> None:
        self.db.close()

    # -- writing --------------------------------------------------------------------------

    def metric(self, name: str, kind: str | None = None) -> tuple[int, str]:
        """Id and kind of a metric; with ``kind``, created if new."""
        if name not in self._metric_ids:
            row = self.db.execute("SELECT id, kind FROM metrics WHERE name = ?", (name,)).fetchone()
            if row is None:
                if kind is None:
                    raise HistoryError(f"no metric {name!r} in the history")
                cursor = self.db.execute(
                    "INSERT INTO metrics (name, kind) VALUES (?, ?)", (name, kind)
                )
                row = (cursor.lastrowid, kind)
            self._metric_ids[name] = (int(row[0]), str(row[1]))
        return self._metric_ids[name]

    def _idset(self, ids: np.ndarray) -> int:
        packed = np.ascontiguousarray(ids, dtype=np.int64).tobytes()
        digest = hashlib.blake2b(packed, digest_size=16).hexdigest()
        if digest not in self._idset_by_digest:
            row = self.db.execute("SELECT id FROM idsets WHERE digest = ?", (digest,)).fetchone()
            if row is None:
                row = (
                    self.db.execute(
                        "INSERT INTO idsets (digest, ids) VALUES (?, ?)", (digest, packed)
                    ).lastrowid,
                )
            self._idset_by_digest[digest] = int(row[0])
        return self._idset_by_digest[digest]

    def _ids(self, idset: int) -> np.ndarray:
        if idset not in self._idsets:
            (packed,) = self.db.execute("SELECT ids FROM idsets WHERE id = ?", (idset,)).fetchone()
            self._idsets[idset] = np.frombuffer(packed, dtype=np.int64)
        return self._idsets[idset]

    def write(
        self,
        samples: Iterable[tuple[str, str, float, np.ndarray, np.ndarray]],
    ) -> int:
        """Store ``(metric, kind, time_s, entity_ids, values)`` samples (one transaction), then
        transpose every hour before the newest minute written. Returns the samples stored."""
        stored, newest = 0, None
        self.db.execute("BEGIN IMMEDIATE")
        try:
            for name, kind, time_s, ids, values in samples:
                metric, _ = self.metric(name, kind)
                minute = int(time_s // 60)
                order = np.argsort(ids, kind="stable")
                packed = np.asarray(values, dtype=np.float32)[order].tobytes()
                self.db.execute(
                    "INSERT OR REPLACE INTO minutes VALUES (?, ?, ?, ?)",
                    (metric, minute, self._idset(np.asarray(ids)[order]), packed),
                )
                stored += 1
                newest = minute if newest is None else max(newest, minute)
            if newest is not None:
                self._roll(newest // MINUTES_PER_HOUR)
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        return stored

    def _roll(self, current_hour: int) -> None:
        """Transpose complete hours (before ``current_hour``) and apply retention."""
        pending = self.db.execute(
            "SELECT DISTINCT metric, minute / 60 FROM minutes WHERE minute < ?",
            (current_hour * MINUTES_PER_HOUR,),
        ).fetchall()
        for metric, hour in pending:
            rows = self.db.execute(
                "SELECT minute, idset, vals FROM minutes WHERE metric = ? AND minute >= ? "
                "AND minute < ?",
                (metric, hour * 60, hour * 60 + 60),
            ).fetchall()
            entities = np.unique(np.concatenate([self._ids(idset) for _, idset, _ in rows]))
            matrix = np.full((len(entities), MINUTES_PER_HOUR), np.nan, np.float32)
            for minute, idset, packed in rows:
                index = np.searchsorted(entities, self._ids(idset))
                matrix[index, minute - hour * 60] = np.frombuffer(packed, np.float32)
            self.write_hour(metric, hour, entities, matrix)
            self.db.execute(
                "DELETE FROM minutes WHERE metric = ? AND minute >= ? AND minute < ?",
                (metric, hour * 60, hour * 60 + 60),
            )
        if pending:
            self._expire(current_hour)

    def write_hour(self, metric: int, hour: int, entities: np.ndarray, matrix: np.ndarray) -> None:
        """One hour of minutes (entities × 60 float32) into ``chunks`` and its 10-minute
        means into ``coarse``; values already stored for that hour are kept where new is NaN."""
        entities = np.asarray(entities, dtype=np.int64)
        old = dict(
            self.db.execute(
                "SELECT entity, vals FROM chunks WHERE metric = ? AND hour = ?", (metric, hour)
            ).fetchall()
        )
        if old:  # a late minute: merge with the hour already written
            for row, entity in enumerate(entities.tolist()):
                if entity in old:
                    before = np.frombuffer(old[entity], np.float32)
                    matrix[row] = np.where(np.isnan(matrix[row]), before, matrix[row])
        self.db.executemany(
            "INSERT OR REPLACE INTO chunks VALUES (?, ?, ?, ?)",
            zip(
                [metric] * len(entities),
                [hour] * len(entities),
                entities.tolist(),
                [row.tobytes() for row in matrix],
                strict=True,
            ),
        )
        with warnings.catch_warnings():  # all-NaN slots (no data) are NaN, no warning
            warnings.simplefilter("ignore", RuntimeWarning)
            means = np.nanmean(matrix.reshape(len(entities), 6, 10), axis=2).astype(np.float32)
        day, slot = divmod(hour, 24)
        stored = dict(
            self.db.execute(
                "SELECT entity, vals FROM coarse WHERE metric = ? AND day = ?", (metric, day)
            ).fetchall()
        )
        dtype = self._coarse_dtype(metric)
        rows = []
        for index, entity in enumerate(entities.tolist()):
            packed = stored.get(entity)
            slots = (
                np.frombuffer(packed, dtype).copy()
                if packed is not None
                else np.full(SLOTS_PER_DAY, np.nan, dtype)
            )
            slots[slot * 6 : slot * 6 + 6] = means[index]
            rows.append((metric, day, entity, slots.tobytes()))
        self.db.executemany("INSERT OR REPLACE INTO coarse VALUES (?, ?, ?, ?)", rows)

    def _coarse_dtype(self, metric: int) -> type:
        if metric not in self._kinds:
            row = self.db.execute("SELECT kind FROM metrics WHERE id = ?", (metric,)).fetchone()
            self._kinds[metric] = row[0] if row else "scalar"
        return np.float16 if self._kinds[metric] == "dom" else np.float32

    def _expire(self, current_hour: int) -> None:
        for (metric,) in self.db.execute("SELECT id FROM metrics").fetchall():
            self.db.execute(
                "DELETE FROM chunks WHERE metric = ? AND hour < ?",
                (metric, current_hour - self.keep_hours),
            )
            self.db.execute(
                "DELETE FROM coarse WHERE metric = ? AND day < ?",
                (metric, current_hour // 24 - self.keep_coarse_days),
            )

    def note_run(self, run: int, start_s: float) -> None:
        self.db.execute("INSERT OR IGNORE INTO runs VALUES (?, ?)", (int(run), float(start_s)))

    def set_places(self, places: dict[int, tuple[int, int]]) -> None:
        self.db.execute("BEGIN IMMEDIATE")
        self.db.execute("DELETE FROM places")
        self.db.executemany(
            "INSERT INTO places VALUES (?, ?, ?)",
            [(dom, du, floor) for dom, (du, floor) in places.items()],
        )
        self.db.execute("COMMIT")

    # -- reading --------------------------------------------------------------------------

    def series(
        self, name: str, entity: int, start_s: float, end_s: float, step_s: int | None = None
    ) -> Series:
        """One entity's finite values in [start, end); ``step_s`` 60 (minutes, kept
        ``keep_days``) or 600 (10-minute means); default: minutes for ranges up to that long."""
        metric, _ = self.metric(name)
        if step_s is None:  # a day of slack: "the last 30 days" is minutes
            step_s = 60 if end_s - start_s <= (self.keep_hours + 24) * 3600 else 600
        if step_s == 60:
            times, values = self._minute_series(metric, entity, start_s, end_s)
        else:
            times, values = self._coarse_series(metric, entity, start_s, end_s)
        keep = np.isfinite(values) & (times + step_s > start_s) & (times < end_s)
        order = np.argsort(times[keep], kind="stable")
        return Series(times[keep][order], values[keep][order].astype(np.float64), step_s)

    def _minute_series(
        self, metric: int, entity: int, start_s: float, end_s: float
    ) -> tuple[np.ndarray, np.ndarray]:
        hours = list(range(int(start_s // 3600), int(end_s // 3600) + 1))
        times, values = [], []
        offsets = np.arange(MINUTES_PER_HOUR, dtype=np.float64) * 60
        for chunk in _batched(hours, 900):
            marks = ",".join("?" * len(chunk))
            for hour, packed in self.db.execute(
                f"SELECT hour, vals FROM chunks WHERE metric = ? AND hour IN ({marks}) "
                "AND entity = ?",
                (metric, *chunk, entity),
            ):
                times.append(hour * 3600.0 + offsets)
                values.append(np.frombuffer(packed, np.float32))
        for minute, idset, packed in self.db.execute(
            "SELECT minute, idset, vals FROM minutes WHERE metric = ? AND minute >= ? "
            "AND minute < ?",
            (metric, int(start_s // 60), int(end_s // 60) + 1),
        ):
            ids = self._ids(idset)
            index = np.searchsorted(ids, entity)
            if index < len(ids) and ids[index] == entity:
                times.append(np.array([minute * 60.0]))
                values.append(np.frombuffer(packed, np.float32)[index : index + 1])
        if not times:
            return np.zeros(0), np.zeros(0, np.float32)
        return np.concatenate(times), np.concatenate(values)

    def _coarse_series(
        self, metric: int, entity: int, start_s: float, end_s: float
    ) -> tuple[np.ndarray, np.ndarray]:
        days = list(range(int(start_s // 86400), int(end_s // 86400) + 1))
        offsets = np.arange(SLOTS_PER_DAY, dtype=np.float64) * 600
        dtype = self._coarse_dtype(metric)
        times, values = [], []
        for chunk in _batched(days, 900):
            marks = ",".join("?" * len(chunk))
            for day, packed in self.db.execute(
                f"SELECT day, vals FROM coarse WHERE metric = ? AND day IN ({marks}) "
                "AND entity = ?",
                (metric, *chunk, entity),
            ):
                times.append(day * 86400.0 + offsets)
                values.append(np.frombuffer(packed, dtype).astype(np.float32))
        if not times:
            return np.zeros(0), np.zeros(0, np.float32)
        return np.concatenate(times), np.concatenate(values)

    def metrics(self) -> list[tuple[str, str]]:
        return [
            tuple(row) for row in self.db.execute("SELECT name, kind FROM metrics ORDER BY name")
        ]

    def entities(self, name: str) -> np.ndarray:
        """Entity ids of a metric's newest data."""
        metric, _ = self.metric(name)
        row = self.db.execute(
            "SELECT idset FROM minutes WHERE metric = ? ORDER BY minute DESC LIMIT 1", (metric,)
        ).fetchone()
        if row is not None:
            return self._ids(row[0])
        row = self.db.execute("SELECT max(hour) FROM chunks WHERE metric = ?", (metric,)).fetchone()
        if row is None or row[0] is None:
            return np.zeros(0, np.int64)
        return np.array(
            [
                entity
                for (entity,) in self.db.execute(
                    "SELECT entity FROM chunks WHERE metric = ? AND hour = ?", (metric, row[0])
                )
            ],
            np.int64,
        )

    def latest(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """Entity ids and values of a metric's newest minute (for the DU × floor map)."""
        metric, _ = self.metric(name)
        row = self.db.execute(
            "SELECT idset, vals FROM minutes WHERE metric = ? ORDER BY minute DESC LIMIT 1",
            (metric,),
        ).fetchone()
        if row is not None:
            return self._ids(row[0]), np.frombuffer(row[1], np.float32).astype(np.float64)
        (hour,) = self.db.execute(
            "SELECT max(hour) FROM chunks WHERE metric = ?", (metric,)
        ).fetchone()
        rows = self.db.execute(
            "SELECT entity, vals FROM chunks WHERE metric = ? AND hour = ?", (metric, hour)
        ).fetchall()
        ids = np.array([entity for entity, _ in rows], np.int64)
        values = np.full(len(rows), np.nan)
        for index, (_, packed) in enumerate(rows):  # each entity's last minute with a value
            minutes = np.frombuffer(packed, np.float32)
            finite = np.flatnonzero(np.isfinite(minutes))
            if len(finite):
                values[index] = minutes[finite[-1]]
        return ids, values

    def newest_time(self) -> float | None:
        row = self.db.execute("SELECT max(minute) FROM minutes").fetchone()
        if row[0] is not None:
            return row[0] * 60.0
        row = self.db.execute("SELECT max(hour) FROM chunks").fetchone()
        return None if row[0] is None else row[0] * 3600.0 + 3540.0

    def runs(self, start_s: float, end_s: float) -> list[tuple[int, float]]:
        return [
            (int(run), float(start))
            for run, start in self.db.execute(
                "SELECT run, start FROM runs WHERE start >= ? AND start < ? ORDER BY start",
                (start_s, end_s),
            )
        ]

    def places(self) -> dict[int, tuple[int, int]]:
        return {
            int(dom): (int(du), int(floor))
            for dom, du, floor in self.db.execute("SELECT dom_id, du, floor FROM places")
        }


def _batched(items: list[int], size: int) -> Iterable[list[int]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
