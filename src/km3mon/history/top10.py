"""ztplot's Top-10 events, kept in SQLite (``data/event_selection.sqlite3``, WAL) and as files.

Three rankings (hits, triggered hits, overlays), each for all time and for the current run (the
run of the newest selected event): an event in any of these six lists is kept, with its z-t
plot and its raw event under ``plots/event_selection/<name>.png|.dat``, and deleted with its
files when it falls out of all of them. The ``.dat`` is the event's ``IO_EVT`` ControlHost
frame (prefix + payload), our recording format, so ``km3mon inspect`` and ``km3mon replay``
read it as they read any recording. The dashboard's ``/top10`` page and the shift report read
the table with :func:`top_events`.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from km3mon import published
from km3mon.controlhost import encode_frame
from km3mon.daq.triggers import trigger_names
from km3mon.published import atomic_write

TOP = 10
RANKINGS = ("n_hits", "n_triggered", "overlays")
SCOPES = ("all", "run")


class Candidate(Protocol):
    """What ztplot hands over: the event's numbers, its raw payload and its file name."""

    payload: bytes
    row: np.void
    n_hits: int
    n_triggered: int

    @property
    def overlays(self) -> int: ...

    @property
    def name(self) -> str: ...


class EventSelection:
    """Which events are in a top 10, their rows and their files."""

    def __init__(self, database_path: Path, folder: Path) -> None:
        self.folder = folder
        database_path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(database_path)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS event_selection (name TEXT PRIMARY KEY, det_id INT, "
            "run INT, frame_index INT, trigger_counter INT, utc REAL, n_hits INT, "
            "n_triggered INT, overlays INT, triggers TEXT)"
        )
        self.db.commit()
        newest = self.db.execute("SELECT run FROM event_selection ORDER BY utc DESC LIMIT 1")
        row = newest.fetchone()
        self.run: int | None = None if row is None else int(row[0])
        self.thresholds = self._thresholds()

    def _ranked(self, ranking: str, scope: str) -> list[tuple[str, int]]:
        where, parameters = ("WHERE run = ?", (self.run,)) if scope == "run" else ("", ())
        return self.db.execute(
            f"SELECT name, {ranking} FROM event_selection {where} ORDER BY {ranking} DESC, utc "
            "LIMIT ?",
            (*parameters, TOP),
        ).fetchall()

    def _thresholds(self) -> dict[tuple[str, str], int]:
        """The value an event must beat to enter each list (-1 while a list is not full)."""
        thresholds = {}
        for scope in SCOPES:
            for ranking in RANKINGS:
                rows = self._ranked(ranking, scope)
                thresholds[scope, ranking] = rows[-1][1] if len(rows) == TOP else -1
        return thresholds

    def qualifies(self, candidate: Candidate) -> bool:
        run = int(candidate.row["run"])
        if run != self.run:  # a new run: its lists start empty, the old run's are dropped
            self.run = run
            self._prune()
            self.thresholds = self._thresholds()
        return any(
            getattr(candidate, ranking) > self.thresholds[scope, ranking]
            for scope in SCOPES
            for ranking in RANKINGS
        )

    def add(self, candidate: Candidate, utc_s: float) -> None:
        r = candidate.row
        with self.db:
            self.db.execute(
                "INSERT OR REPLACE INTO event_selection VALUES (?,?,?,?,?,?,?,?,?,?)",
                (candidate.name, int(r["det_id"]), int(r["run"]), int(r["frame_index"]),
                 int(r["trigger_counter"]), utc_s, candidate.n_hits, candidate.n_triggered,
                 candidate.overlays, " ".join(trigger_names(int(r["trigger_mask"])))),
            )  # fmt: skip
        atomic_write(
            self.folder / f"{candidate.name}.dat", encode_frame("IO_EVT", candidate.payload)
        )
        self._prune()
        self.thresholds = self._thresholds()

    def _prune(self) -> None:
        keep = {name for scope in SCOPES for r in RANKINGS for name, _ in self._ranked(r, scope)}
        stored = {name for (name,) in self.db.execute("SELECT name FROM event_selection")}
        with self.db:
            for name in stored - keep:
                self.db.execute("DELETE FROM event_selection WHERE name = ?", (name,))
                for suffix in (".png", ".dat"):
                    (self.folder / f"{name}{suffix}").unlink(missing_ok=True)

    def names(self) -> list[str]:
        return [name for (name,) in self.db.execute("SELECT name FROM event_selection")]


def top_events(data_dir: Path) -> dict[str, Any]:
    """For readers: the current run and, per scope and ranking, the top events (dicts)."""
    path = published.top10_db(data_dir)
    if not path.exists():
        return {"run": None, "lists": {}}
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0)
    db.row_factory = sqlite3.Row
    try:
        newest = db.execute("SELECT run FROM event_selection ORDER BY utc DESC LIMIT 1").fetchone()
        run = None if newest is None else int(newest["run"])
        lists = {}
        for scope in SCOPES:
            for ranking in RANKINGS:
                where, parameters = ("WHERE run = ?", (run,)) if scope == "run" else ("", ())
                rows = db.execute(
                    f"SELECT * FROM event_selection {where} ORDER BY {ranking} DESC, utc LIMIT ?",
                    (*parameters, TOP),
                ).fetchall()
                lists[scope, ranking] = [dict(row) for row in rows]
    finally:
        db.close()
    return {"run": run, "lists": lists}
