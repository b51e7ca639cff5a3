"""``data/quality.sqlite3`` (WAL): run records, their minutes, overrides and reference choices.

``km3mon quality`` writes the records; the dashboard appends overrides and reference choices;
``km3mon grl``, the shift report and the ``run_quality`` alert read. WAL mode lets readers go on
while the writer writes. Overrides and reference choices are append-only, enforced by the
database itself (triggers refuse UPDATE and DELETE): every decision stays, with who, when and
why; the newest one counts.

Tables: ``runs`` (one row per run: state ``running`` or ``ended``, the quantities, tests and
verdict as JSON, the per-DOM rates as float32 for later references), ``minutes`` (per DAQ
minute of a run: its scalar quantities), ``accumulators`` (the counters of the runs not yet
ended, so a restart goes on where it stopped), ``overrides`` and ``reference_choices``.
"""

from __future__ import annotations

import json
import math
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from km3mon import published

VERDICTS = ("good", "bad", "purgatory")
#: Runs whose counters are kept (the current one and the few before it).
KEEP_ACCUMULATORS = 3

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run INTEGER PRIMARY KEY,
    detector INTEGER,
    state TEXT NOT NULL,
    utc_min REAL,
    utc_max REAL,
    updated_at REAL NOT NULL,
    ended_at REAL,
    quantities TEXT NOT NULL,
    verdict TEXT,
    reasons TEXT NOT NULL DEFAULT '[]',
    tests TEXT NOT NULL DEFAULT '[]',
    reference TEXT NOT NULL DEFAULT '{}',
    dom_ids BLOB,
    dom_rate_khz BLOB,
    histograms TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS minutes (
    run INTEGER NOT NULL,
    minute REAL NOT NULL,
    quantities TEXT NOT NULL,
    PRIMARY KEY (run, minute)
);
CREATE TABLE IF NOT EXISTS accumulators (
    run INTEGER PRIMARY KEY,
    document TEXT NOT NULL,
    arrays BLOB NOT NULL,
    saved_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS overrides (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run INTEGER NOT NULL,
    verdict TEXT NOT NULL,
    who TEXT NOT NULL,
    why TEXT NOT NULL,
    at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS reference_choices (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run INTEGER NOT NULL,
    who TEXT NOT NULL,
    why TEXT NOT NULL,
    at REAL NOT NULL
);
CREATE TRIGGER IF NOT EXISTS overrides_no_update BEFORE UPDATE ON overrides
    BEGIN SELECT RAISE(ABORT, 'overrides are append-only'); END;
CREATE TRIGGER IF NOT EXISTS overrides_no_delete BEFORE DELETE ON overrides
    BEGIN SELECT RAISE(ABORT, 'overrides are append-only'); END;
CREATE TRIGGER IF NOT EXISTS reference_choices_no_update BEFORE UPDATE ON reference_choices
    BEGIN SELECT RAISE(ABORT, 'reference choices are append-only'); END;
CREATE TRIGGER IF NOT EXISTS reference_choices_no_delete BEFORE DELETE ON reference_choices
    BEGIN SELECT RAISE(ABORT, 'reference choices are append-only'); END;
CREATE INDEX IF NOT EXISTS overrides_by_run ON overrides (run, id);
"""


class QualityError(Exception):
    """The quality store cannot be used (the message says why)."""


def _json(value: Any) -> str:
    return json.dumps(_finite(value), allow_nan=False)


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    if isinstance(value, np.generic):
        return _finite(value.item())
    return value


class QualityStore:
    """The quality database of a data folder; ``readonly`` for pages and reports."""

    def __init__(self, data_dir: Path, *, readonly: bool = False) -> None:
        self.path = published.quality_db(data_dir)
        if readonly:
            if not self.path.exists():
                raise QualityError(f"no {self.path}: `km3mon quality` has not run here")
            self.db = sqlite3.connect(
                f"file:{self.path}?mode=ro", uri=True, timeout=10.0, isolation_level=None
            )
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(self.path, timeout=10.0, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.executescript(SCHEMA)
        self.db.row_factory = sqlite3.Row

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> QualityStore:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # --- written by km3mon quality -------------------------------------------------------

    def save_run(
        self,
        record: dict[str, Any],
        *,
        state: str,
        dom_ids: np.ndarray,
        dom_rate_khz: np.ndarray,
        histograms: dict[str, list[int]],
        minutes: dict[int, dict[str, Any]],
        accumulator: tuple[dict[str, Any], bytes],
        judgement: dict[str, Any] | None = None,
    ) -> None:
        """Write a run's record (and its minutes, and its counters while it runs) at once."""
        quantities = record
        judgement = judgement or {}
        now = time.time()
        with self.transaction() as db:
            db.execute(
                "INSERT INTO runs (run, detector, state, utc_min, utc_max, updated_at, ended_at,"
                " quantities, verdict, reasons, tests, reference, dom_ids, dom_rate_khz,"
                " histograms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (run) DO UPDATE SET detector = excluded.detector,"
                " state = excluded.state, utc_min = excluded.utc_min, utc_max = excluded.utc_max,"
                " updated_at = excluded.updated_at, ended_at = excluded.ended_at,"
                " quantities = excluded.quantities, verdict = excluded.verdict,"
                " reasons = excluded.reasons, tests = excluded.tests,"
                " reference = excluded.reference, dom_ids = excluded.dom_ids,"
                " dom_rate_khz = excluded.dom_rate_khz, histograms = excluded.histograms",
                (
                    int(quantities["run"]),
                    quantities.get("detector"),
                    state,
                    quantities.get("utc_min"),
                    quantities.get("utc_max"),
                    now,
                    now if state == "ended" else None,
                    _json(quantities),
                    judgement.get("verdict"),
                    _json(judgement.get("reasons", [])),
                    _json(judgement.get("tests", [])),
                    _json(judgement.get("reference", {})),
                    np.asarray(dom_ids, "<i4").tobytes(),
                    np.asarray(dom_rate_khz, "<f4").tobytes(),
                    _json(histograms),
                ),
            )
            db.executemany(
                "INSERT OR REPLACE INTO minutes (run, minute, quantities) VALUES (?, ?, ?)",
                [(int(quantities["run"]), float(m), _json(q)) for m, q in minutes.items()],
            )
            document, arrays = accumulator
            db.execute(
                "INSERT OR REPLACE INTO accumulators (run, document, arrays, saved_at)"
                " VALUES (?, ?, ?, ?)",
                (int(quantities["run"]), _json(document), arrays, now),
            )
            # the counters of the newest few runs stay: a run that comes back after it was
            # ended (the DAQ paused longer than end_after_s) goes on where it stopped
            db.execute(
                "DELETE FROM accumulators WHERE run NOT IN"
                " (SELECT run FROM accumulators ORDER BY run DESC LIMIT ?)",
                (KEEP_ACCUMULATORS,),
            )

    def running_accumulators(self) -> list[tuple[dict[str, Any], bytes]]:
        """Saved counters of the runs not yet ended, newest first."""
        rows = self.db.execute(
            "SELECT a.document, a.arrays FROM accumulators a JOIN runs r ON a.run = r.run"
            " WHERE r.state = 'running' ORDER BY a.run DESC"
        ).fetchall()
        return [(json.loads(row["document"]), bytes(row["arrays"])) for row in rows]

    def accumulator(self, run: int) -> tuple[dict[str, Any], bytes] | None:
        """The saved counters of ``run``, if still kept."""
        row = self.db.execute(
            "SELECT document, arrays FROM accumulators WHERE run = ?", (run,)
        ).fetchone()
        return (json.loads(row["document"]), bytes(row["arrays"])) if row else None

    def forget_minutes(self, before_s: float) -> int:
        """Minutes older than ``before_s`` (DAQ time) are deleted (the run records stay)."""
        with self.transaction() as db:
            return db.execute("DELETE FROM minutes WHERE minute < ?", (before_s,)).rowcount

    # --- written by the dashboard --------------------------------------------------------

    def add_override(self, run: int, verdict: str, who: str, why: str) -> None:
        if verdict not in VERDICTS:
            raise QualityError(f"verdict must be one of {', '.join(VERDICTS)}, got {verdict!r}")
        if not who.strip() or not why.strip():
            raise QualityError("an override needs a name and a reason")
        with self.transaction() as db:
            db.execute(
                "INSERT INTO overrides (run, verdict, who, why, at) VALUES (?, ?, ?, ?, ?)",
                (run, verdict, who.strip(), why.strip(), time.time()),
            )

    def choose_reference(self, run: int, who: str, why: str) -> None:
        """``run`` as the reference of the runs to come (0: back to the automatic one)."""
        if not who.strip():
            raise QualityError("choosing a reference needs a name")
        with self.transaction() as db:
            db.execute(
                "INSERT INTO reference_choices (run, who, why, at) VALUES (?, ?, ?, ?)",
                (run, who.strip(), why.strip(), time.time()),
            )

    # --- read ----------------------------------------------------------------------------

    def reference_choice(self) -> dict[str, Any] | None:
        """The newest reference choice made on the dashboard, if any."""
        row = self.db.execute("SELECT * FROM reference_choices ORDER BY id DESC LIMIT 1").fetchone()
        return dict(row) if row else None

    def overrides(self, run: int) -> list[dict[str, Any]]:
        """Every override of ``run``, oldest first."""
        rows = self.db.execute("SELECT * FROM overrides WHERE run = ? ORDER BY id", (run,))
        return [dict(row) for row in rows]

    def _newest_overrides(self, runs: list[int]) -> dict[int, dict[str, Any]]:
        if not runs:
            return {}
        marks = ",".join("?" * len(runs))
        rows = self.db.execute(
            f"SELECT * FROM overrides WHERE id IN (SELECT MAX(id) FROM overrides"
            f" WHERE run IN ({marks}) GROUP BY run)",
            runs,
        )
        return {row["run"]: dict(row) for row in rows}

    def records(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        limit: int | None = None,
        with_doms: bool = False,
    ) -> list[dict[str, Any]]:
        """Runs newest first (optionally overlapping [since, until) in DAQ time), each with
        its effective verdict (the newest override, else the automatic one)."""
        clauses, values = [], []
        if since is not None:
            clauses.append("COALESCE(utc_max, utc_min, updated_at) >= ?")
            values.append(since)
        if until is not None:
            clauses.append("COALESCE(utc_min, updated_at) < ?")
            values.append(until)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        columns = "*" if with_doms else _LIGHT_COLUMNS
        query = f"SELECT {columns} FROM runs{where} ORDER BY run DESC"
        if limit is not None:
            query += f" LIMIT {int(limit)}"
        rows = self.db.execute(query, values).fetchall()
        overrides = self._newest_overrides([row["run"] for row in rows])
        return [_record(row, overrides.get(row["run"]), with_doms) for row in rows]

    def record(self, run: int) -> dict[str, Any] | None:
        row = self.db.execute("SELECT * FROM runs WHERE run = ?", (run,)).fetchone()
        if row is None:
            return None
        return _record(row, self._newest_overrides([run]).get(run), True)

    def minutes(self, run: int) -> list[dict[str, Any]]:
        rows = self.db.execute(
            "SELECT minute, quantities FROM minutes WHERE run = ? ORDER BY minute", (run,)
        )
        return [{"minute": row["minute"], **json.loads(row["quantities"])} for row in rows]

    def good_runs(self, detector: int | None, before_run: int, count: int) -> list[dict[str, Any]]:
        """The newest ``count`` ended runs before ``before_run`` whose effective verdict is
        good (of ``detector``, if given), with their per-DOM rates."""
        chosen: list[dict[str, Any]] = []
        offset, page = 0, 50
        while len(chosen) < count:
            rows = self.db.execute(
                "SELECT * FROM runs WHERE state = 'ended' AND run < ?"
                + (" AND detector = ?" if detector is not None else "")
                + " ORDER BY run DESC LIMIT ? OFFSET ?",
                (before_run, *(() if detector is None else (detector,)), page, offset),
            ).fetchall()
            if not rows:
                break
            overrides = self._newest_overrides([row["run"] for row in rows])
            for row in rows:
                record = _record(row, overrides.get(row["run"]), True)
                if record["verdict"] == "good":
                    chosen.append(record)
                    if len(chosen) == count:
                        break
            offset += page
        return chosen

    def size_bytes(self) -> int:
        return sum(
            p.stat().st_size
            for p in (self.path, Path(f"{self.path}-wal"), Path(f"{self.path}-shm"))
            if p.exists()
        )


_LIGHT_COLUMNS = (
    "run, detector, state, utc_min, utc_max, updated_at, ended_at, quantities, verdict,"
    " reasons, tests, reference, histograms"
)


def _record(row: sqlite3.Row, override: dict[str, Any] | None, with_doms: bool) -> dict[str, Any]:
    """A row as the dict pages, API and exports use."""
    record = {
        "run": row["run"],
        "detector": row["detector"],
        "state": row["state"],
        "utc_min": row["utc_min"],
        "utc_max": row["utc_max"],
        "updated_at": row["updated_at"],
        "ended_at": row["ended_at"],
        "quantities": json.loads(row["quantities"]),
        "automatic_verdict": row["verdict"],
        "reasons": json.loads(row["reasons"]),
        "tests": json.loads(row["tests"]),
        "reference": json.loads(row["reference"]),
        "histograms": json.loads(row["histograms"]),
        "override": override,
    }
    if row["state"] == "running":
        record["verdict"] = "running"
    else:
        record["verdict"] = override["verdict"] if override else row["verdict"]
    if with_doms:
        record["dom_ids"] = np.frombuffer(row["dom_ids"] or b"", "<i4")
        record["dom_rate_khz"] = np.frombuffer(row["dom_rate_khz"] or b"", "<f4")
    return record
