"""The life of every alert, in SQLite (``data/km3mon.sqlite3``, WAL), so a restart neither
forgets an alert nor repeats its notifications.

An alert is ``pending`` while its condition has held less than the rule's hold time (a pending
alert whose condition goes away is forgotten: nobody was told), ``firing`` once it has held
long enough (one "firing" notification, at most one reminder after ``reminder_s`` unless
acknowledged), and ``resolved`` when its condition has been absent for ``clear_s`` (one
"resolved" notification). Flapping is damped: an alert that fired ``flap_count`` times within
``flap_window_s`` needs ``flap_window_s`` of quiet before it resolves, so it stays one alert.

An alert covered by a silence (:mod:`.hygiene`) lives the same life but notifies no one: its
firing is announced only if it still fires once the silence has ended, and its resolution only
if its firing was announced.

Notifications are written to an outbox in the same transaction as the state change, one
delivery row per sink; :mod:`.sinks` sends them and marks them sent.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from km3mon import published
from km3mon.alerts.hygiene import active_silences, silence_for
from km3mon.alerts.rules import Condition, Settings

#: Settings of a rule that is no longer configured: its alerts resolve at once.
GONE = Settings(hold_s=0.0, clear_s=0.0, reminder_s=0.0)
SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY,
    rule TEXT NOT NULL,
    key TEXT NOT NULL,
    state TEXT NOT NULL,            -- pending, firing, resolved
    summary TEXT NOT NULL,
    details TEXT NOT NULL,          -- JSON: dom_id, du, floor, process, link
    started_at REAL NOT NULL,       -- UTC s the condition began (by the data where known)
    first_seen REAL NOT NULL,       -- UTC s this process first saw it
    last_seen REAL NOT NULL,        -- UTC s it last held
    fired_at REAL,
    reminded_at REAL,
    resolved_at REAL,
    acked_by TEXT,
    ack_comment TEXT,
    acked_at REAL,
    silenced_by INTEGER,            -- the silence covering it at the last evaluation
    announced INTEGER NOT NULL DEFAULT 1  -- 0: fired while silenced, nobody told yet
);
CREATE UNIQUE INDEX IF NOT EXISTS active_alert ON alerts (rule, key) WHERE state != 'resolved';
CREATE INDEX IF NOT EXISTS alerts_by_time ON alerts (fired_at);
CREATE TABLE IF NOT EXISTS notifications (
    id INTEGER PRIMARY KEY,
    alert_id INTEGER NOT NULL REFERENCES alerts (id),
    status TEXT NOT NULL,           -- firing, resolved
    reminder INTEGER NOT NULL,
    created_at REAL NOT NULL,
    body TEXT NOT NULL              -- JSON, the webhook body
);
CREATE TABLE IF NOT EXISTS deliveries (
    notification_id INTEGER NOT NULL REFERENCES notifications (id),
    sink TEXT NOT NULL,
    sent_at REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    error TEXT,
    PRIMARY KEY (notification_id, sink)
);
CREATE TABLE IF NOT EXISTS silences (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,             -- rule, dom, du
    value TEXT NOT NULL,            -- the rule's name, the DOM id, the DU number
    created_by TEXT NOT NULL,
    reason TEXT NOT NULL,
    created_at REAL NOT NULL,
    until REAL NOT NULL,            -- UTC s it ends by itself (or was ended)
    ended_by TEXT
);
CREATE TABLE IF NOT EXISTS known_bad (
    id INTEGER PRIMARY KEY,
    dom_id INTEGER NOT NULL,
    channel INTEGER,                -- NULL: the whole DOM
    reason TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at REAL NOT NULL,
    removed_at REAL,
    removed_by TEXT
);
CREATE TABLE IF NOT EXISTS rule_samples (
    rule TEXT NOT NULL, at REAL NOT NULL, value REAL NOT NULL, PRIMARY KEY (rule, at)
);
"""


def iso(timestamp: float | None) -> str | None:
    """UTC ISO 8601 with a Z, as webhooks and scripts expect."""
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def connect(data_dir: Path) -> sqlite3.Connection:
    """The alert database in WAL mode; readers (dashboard, report) never block the writer."""
    data_dir.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(published.alerts_db(data_dir), timeout=10.0, isolation_level=None)
    db.row_factory = sqlite3.Row
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.executescript(SCHEMA)
    columns = {row["name"] for row in db.execute("PRAGMA table_info(alerts)")}
    for column, kind in (("silenced_by", "INTEGER"), ("announced", "INTEGER NOT NULL DEFAULT 1")):
        if column not in columns:  # a database of an older km3mon
            db.execute(f"ALTER TABLE alerts ADD COLUMN {column} {kind}")
    return db


@dataclass(frozen=True)
class Lifecycle:
    """The ``[Alerts]`` settings the book needs besides each rule's own."""

    flap_count: int = 3
    flap_window_s: float = 3600.0
    dashboard_url: str | None = None


class AlertBook:
    """Applies conditions to the stored alerts and queues notifications for ``sinks``."""

    def __init__(self, data_dir: Path, lifecycle: Lifecycle, sinks: Iterable[str] = ()) -> None:
        self.db = connect(data_dir)
        self.lifecycle = lifecycle
        self.sinks = list(sinks)
        self.silences: list[dict[str, Any]] = []

    def close(self) -> None:
        self.db.close()

    def update(
        self,
        results: dict[str, list[Condition] | None],
        settings: dict[str, Settings],
        now: float | None = None,
        hidden: Iterable[tuple[str, str]] = (),
    ) -> list[int]:
        """Apply one evaluation (rule -> conditions, None: cannot tell); new notification ids.

        ``hidden`` (rule, key) hold but are inhibited by their cause: kept as they are."""
        now = time.time() if now is None else now
        notified: list[int] = []
        self.db.execute("BEGIN IMMEDIATE")
        try:
            self.silences = active_silences(self.db, now)
            active = {
                (row["rule"], row["key"]): row
                for row in self.db.execute("SELECT * FROM alerts WHERE state != 'resolved'")
            }
            seen = set(hidden)
            for rule, conditions in results.items():
                if conditions is None:  # cannot tell: keep its alerts as they are
                    seen.update(key for key in active if key[0] == rule)
                    continue
                for condition in conditions:
                    seen.add((rule, condition.key))
                    row = active.get((rule, condition.key))
                    notified += self._apply(condition, row, settings[rule], now)
            for identity, row in active.items():
                if identity not in seen:  # a rule no longer configured resolves its alerts
                    notified += self._absent(row, settings.get(identity[0], GONE), now)
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        return notified

    def _apply(
        self, condition: Condition, row: sqlite3.Row | None, settings: Settings, now: float
    ) -> list[int]:
        silenced = silence_for(self.silences, condition.rule, condition.details())
        details = json.dumps(condition.details())
        if row is None:
            started = condition.started_at if condition.started_at is not None else now
            cursor = self.db.execute(
                "INSERT INTO alerts (rule, key, state, summary, details, started_at, first_seen,"
                " last_seen) VALUES (?, ?, 'pending', ?, ?, ?, ?, ?)",
                (condition.rule, condition.key, condition.summary, details, started, now, now),
            )
            row = self.db.execute(
                "SELECT * FROM alerts WHERE id = ?", (cursor.lastrowid,)
            ).fetchone()
        else:
            self.db.execute(
                "UPDATE alerts SET last_seen = ?, summary = ?, details = ? WHERE id = ?",
                (now, condition.summary, details, row["id"]),
            )
        assert row is not None
        self.db.execute("UPDATE alerts SET silenced_by = ? WHERE id = ?", (silenced, row["id"]))
        if row["state"] == "pending":
            held = condition.held_s if condition.held_s is not None else now - row["first_seen"]
            if held < settings.hold_s:
                return []
            self.db.execute(
                "UPDATE alerts SET state = 'firing', fired_at = ?, announced = ? WHERE id = ?",
                (now, int(silenced is None), row["id"]),
            )
            return [] if silenced is not None else [self._notify(row["id"], "firing", now)]
        if not row["announced"]:  # fired during a silence: told once the silence is over
            if silenced is not None:
                return []
            self.db.execute("UPDATE alerts SET announced = 1 WHERE id = ?", (row["id"],))
            return [self._notify(row["id"], "firing", now)]
        due = row["fired_at"] + settings.reminder_s
        if (
            silenced is None
            and settings.reminder_s > 0
            and row["reminded_at"] is None
            and row["acked_at"] is None
            and now >= due
        ):
            self.db.execute("UPDATE alerts SET reminded_at = ? WHERE id = ?", (now, row["id"]))
            return [self._notify(row["id"], "firing", now, reminder=True)]
        return []

    def _absent(self, row: sqlite3.Row, settings: Settings, now: float) -> list[int]:
        if row["state"] == "pending":
            self.db.execute("DELETE FROM alerts WHERE id = ?", (row["id"],))
            return []
        clear_s = settings.clear_s
        if self.flapping(row["rule"], row["key"], now):
            clear_s = max(clear_s, self.lifecycle.flap_window_s)
        if now - row["last_seen"] < clear_s:
            return []
        self.db.execute(
            "UPDATE alerts SET state = 'resolved', resolved_at = ? WHERE id = ?", (now, row["id"])
        )
        if not row["announced"]:  # nobody was told it fired
            return []
        return [self._notify(row["id"], "resolved", now)]

    def flapping(self, rule: str, key: str, now: float) -> bool:
        (fired,) = self.db.execute(
            "SELECT count(*) FROM alerts WHERE rule = ? AND key = ? AND fired_at >= ?",
            (rule, key, now - self.lifecycle.flap_window_s),
        ).fetchone()
        return fired >= self.lifecycle.flap_count

    def _notify(self, alert_id: int, status: str, now: float, reminder: bool = False) -> int:
        row = self.db.execute("SELECT * FROM alerts WHERE id = ?", (alert_id,)).fetchone()
        body = notification_body(dict(row), status, reminder, self.lifecycle.dashboard_url)
        cursor = self.db.execute(
            "INSERT INTO notifications (alert_id, status, reminder, created_at, body)"
            " VALUES (?, ?, ?, ?, ?)",
            (alert_id, status, int(reminder), now, json.dumps(body)),
        )
        for sink in self.sinks:
            self.db.execute(
                "INSERT INTO deliveries (notification_id, sink, next_attempt_at) VALUES (?, ?, ?)",
                (cursor.lastrowid, sink, now),
            )
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def active_keys(self, rule: str) -> set[str]:
        """Keys of the rule's pending and firing alerts (a restart's threshold rule resumes)."""
        rows = self.db.execute(
            "SELECT key FROM alerts WHERE rule = ? AND state != 'resolved'", (rule,)
        )
        return {key for (key,) in rows}

    # -- samples a rule keeps across restarts (the trigger rate's day) --------------------

    def save_samples(self, rule: str, samples: dict[float, float]) -> None:
        self.db.execute("BEGIN IMMEDIATE")
        self.db.execute("DELETE FROM rule_samples WHERE rule = ?", (rule,))
        self.db.executemany(
            "INSERT INTO rule_samples VALUES (?, ?, ?)",
            [(rule, at, value) for at, value in samples.items()],
        )
        self.db.execute("COMMIT")

    def load_samples(self, rule: str) -> dict[float, float]:
        return {
            row["at"]: row["value"]
            for row in self.db.execute("SELECT at, value FROM rule_samples WHERE rule = ?", (rule,))
        }


def notification_body(
    alert: dict[str, Any], status: str, reminder: bool, dashboard_url: str | None
) -> dict[str, Any]:
    """The webhook body: Slack/Mattermost/Rocket.Chat show ``text``; scripts read the rest."""
    details = json.loads(alert["details"]) if isinstance(alert["details"], str) else {}
    word = "RESOLVED" if status == "resolved" else "REMINDER" if reminder else "FIRING"
    link = details.get("link")
    url = f"{dashboard_url.rstrip('/')}{link}" if dashboard_url and link else None
    body = {
        "status": status,
        "rule": alert["rule"],
        "key": alert["key"],
        "summary": alert["summary"],
        "text": f"[{word}] {alert['rule']}: {alert['summary']}" + (f" <{url}>" if url else ""),
        "started_at": iso(alert["started_at"]),
        "fired_at": iso(alert["fired_at"]),
        "resolved_at": iso(alert["resolved_at"]),
        "reminder": reminder,
        "alert_id": alert["id"],
        "dom_id": details.get("dom_id"),
        "du": details.get("du"),
        "floor": details.get("floor"),
        "process": details.get("process"),
        "url": url,
    }
    return body


# -- reading, for the dashboard and the shift report ----------------------------------------


def alert_rows(db: sqlite3.Connection, since: float | None = None) -> list[dict[str, Any]]:
    """Firing alerts, then resolved ones that fired after ``since``, newest first."""
    rows = db.execute(
        "SELECT * FROM alerts WHERE state = 'firing' OR (state = 'resolved' AND fired_at >= ?)"
        " ORDER BY (state = 'firing') DESC, fired_at DESC",
        (since if since is not None else 0.0,),
    ).fetchall()
    return [as_dict(row) for row in rows]


def as_dict(row: sqlite3.Row) -> dict[str, Any]:
    alert = dict(row)
    alert["details"] = json.loads(alert["details"])
    for name in ("started_at", "fired_at", "resolved_at", "acked_at"):
        alert[f"{name}_utc"] = iso(alert[name])
    return alert


def acknowledge(db: sqlite3.Connection, alert_id: int, name: str, comment: str) -> bool:
    """A shifter takes an alert (no reminder for it); False if there is no such firing alert."""
    cursor = db.execute(
        "UPDATE alerts SET acked_by = ?, ack_comment = ?, acked_at = ?"
        " WHERE id = ? AND state = 'firing'",
        (name, comment, time.time(), alert_id),
    )
    return cursor.rowcount == 1
