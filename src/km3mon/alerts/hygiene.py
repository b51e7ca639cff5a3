"""What keeps a shifter's alerts few and true: inhibition, known-bad DOMs and PMTs, silences.

* **Inhibition**: a cause hides its consequences, in this order. The DAQ ligier or the mirror
  down hides every data alert; a stopped run (no summary slices from any DOM) hides the
  alerts of single DOMs and DUs; a lost DU hides the alerts of its DOMs; a monitor that is
  down hides the staleness of its own plots. A hidden alert is neither raised nor resolved:
  its truth cannot be told while the cause lasts.
* **Known bad**: DOMs and PMTs known to be broken, from ``[Alerts] known_bad`` or the alerts
  page, raise no alert at all (a newly broken one still does).
* **Silences**: a shifter mutes a rule, a DOM or a DU until a chosen time. Silenced alerts are
  recorded and shown, but notify no one; a silence ends by itself.

Silences and page-set known-bad entries live in the alert database, next to the alerts.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from km3mon.alerts.rules import Condition, Snapshot, _lost_dus, _silences, collapse

#: Rules about km3mon itself and its host, not the detector's data: never hidden by a
#: data source that is down (every other rule, built-in or configured, is a data rule).
SYSTEM_RULES = frozenset({"process_down", "dropped_messages", "disk_space"})
#: The process whose outage hides all data alerts, and the one that sees summary slices.
MIRROR = "ligiermirror"
SLICE_MONITOR = "dom_activity"
#: No summary slice reached dom_activity for this long (wall clock): the run stopped.
STOPPED_AFTER_S = 30.0
DOWN_STATES = frozenset({"silent", "disconnected", "stopped"})
BAD_SUPERVISOR = frozenset({"FATAL", "EXITED", "BACKOFF", "UNKNOWN", "STOPPED"})
SILENCE_KINDS = ("rule", "dom", "du")
Results = dict[str, list[Condition] | None]


# -- inhibition -------------------------------------------------------------------------------


@dataclass
class Inhibition:
    """The evaluation after inhibition: what stays, what is hidden and why."""

    results: Results
    #: (rule, key) of conditions that hold but are hidden: their alerts are kept as they are.
    hidden: set[tuple[str, str]]
    #: The causes in force, in words, for the log.
    causes: list[str]


def _down(snapshot: Snapshot, process: str) -> bool:
    record = snapshot.records.get(process)
    supervised = (snapshot.supervisor or {}).get(process)
    return bool(
        (record and record["state"] in DOWN_STATES)
        or (supervised and supervised["state"] in BAD_SUPERVISOR)
    )


def source_down(snapshot: Snapshot) -> str | None:
    """Why no data can reach the monitors, or None: the mirror is down or cut from the DAQ
    ligier, or (without a mirror) every monitor that reads a ligier is disconnected."""
    if MIRROR in snapshot.records or MIRROR in (snapshot.supervisor or {}):
        if _down(snapshot, MIRROR):
            state = snapshot.records.get(MIRROR, {}).get("state", "down")
            return f"the ligier mirror is {state}"
        return None
    readers = [r for r in snapshot.records.values() if r.get("tags")]
    if len(readers) >= 2 and all(r["state"] == "disconnected" for r in readers):
        return f"all {len(readers)} monitors are disconnected from their ligier"
    return None


def run_stopped(snapshot: Snapshot) -> bool:
    """No summary slices from any DOM: none reached dom_activity for ``STOPPED_AFTER_S``
    (by the wall clock: slices that come late still come), or all its DOMs are silent."""
    record = snapshot.records.get(SLICE_MONITOR)
    if record and record["state"] not in DOWN_STATES:
        last = record.get("last_message_at") or record.get("started_at")
        if last is not None and snapshot.now - last > STOPPED_AFTER_S:
            return True
    silent = _silences(snapshot)
    optical = [d for doms in snapshot.places.optical_by_du.values() for d in doms]
    return bool(silent is not None and optical and all(d in silent for d in optical))


def _du_of(condition: Condition, snapshot: Snapshot) -> int | None:
    if condition.du is not None:
        return condition.du
    if condition.dom_id is not None:
        return snapshot.places.du_floor.get(condition.dom_id, (None, None))[0]
    return None


def inhibit(results: Results, snapshot: Snapshot) -> Inhibition:
    """Hide the consequences of the causes in force (see the module's docstring)."""
    results = dict(results)
    hidden: set[tuple[str, str]] = set()
    causes: list[str] = []

    def hide(rule: str, keep) -> None:
        conditions = results.get(rule)
        if conditions is None:
            return
        hidden.update((rule, c.key) for c in conditions if not keep(c))
        results[rule] = [c for c in conditions if keep(c)]

    source = source_down(snapshot)
    if source is not None:
        causes.append(source)
        for rule in results:
            if rule not in SYSTEM_RULES:
                results[rule] = None  # cannot tell without data: firing alerts stay as they are
        down = results.get("process_down")
        if down is not None:  # one alert for the cause, not one per disconnected monitor
            disconnected = [
                c.key
                for c in down
                if c.key != MIRROR
                and snapshot.records.get(c.key, {}).get("state") == "disconnected"
            ]
            hide("process_down", lambda c: c.key not in disconnected)
            with_mirror = MIRROR in snapshot.records or MIRROR in (snapshot.supervisor or {})
            key = MIRROR if with_mirror else "ligier"
            if not any(c.key == key for c in results["process_down"] or []):
                also = f" ({', '.join(disconnected)} disconnected)" if disconnected else ""
                summary = f"no data reaches the monitors: {source}{also}"
                cause = Condition("process_down", key, summary, process=key, link="/status")
                results["process_down"] = [*(results["process_down"] or []), cause]
    elif run_stopped(snapshot):
        causes.append("the run stopped: no summary slices from any DOM")
        for rule in results:
            hide(rule, lambda c: c.dom_id is None and c.du is None)
        hide("plot_stale", lambda c: c.process == SLICE_MONITOR)
    else:
        silent = _silences(snapshot)
        lost = set(_lost_dus(snapshot, silent)) if silent and results.get("du_lost") else set()
        if lost:
            causes.append(f"DU {', '.join(map(str, sorted(lost)))} lost")
            for rule in results:
                if rule != "du_lost":
                    hide(rule, lambda c: _du_of(c, snapshot) not in lost)
    down = {c.process for c in results.get("process_down") or [] if c.process}
    if down & {c.process for c in results.get("plot_stale") or []}:
        causes.append(f"{', '.join(sorted(down))} down")
        hide("plot_stale", lambda c: c.process not in down)
    return Inhibition(results, hidden, causes)


def prepare(
    evaluated: Results, snapshot: Snapshot, bad: list[KnownBad], max_per_rule: int
) -> Inhibition:
    """One evaluation as the book takes it: known-bad DOMs and PMTs out, the consequences of
    the causes in force hidden, then more than ``max_per_rule`` conditions of a rule as one."""
    inhibition = inhibit(drop_known_bad(evaluated, bad), snapshot)
    inhibition.results = {
        rule: None if conditions is None else collapse(conditions, max_per_rule)
        for rule, conditions in inhibition.results.items()
    }
    return inhibition


# -- known bad --------------------------------------------------------------------------------


@dataclass(frozen=True)
class KnownBad:
    """A DOM (channel None) or one PMT known to be broken, and why."""

    dom_id: int
    channel: int | None
    reason: str
    by: str = "pipeline.toml"
    id: int | None = None  # the database row of one set on the alerts page
    created_at: float | None = None

    @classmethod
    def parse(cls, entry: str) -> KnownBad:
        """``"<dom id>[/<channel>] <reason>"`` (checked by the config)."""
        target, _, reason = entry.strip().partition(" ")
        dom, _, channel = target.partition("/")
        return cls(int(dom), int(channel) if channel else None, reason.strip())

    def covers(self, condition: Condition) -> bool:
        """A DOM covers every alert of that DOM; a PMT the alerts keyed ``<dom>/<channel>``."""
        if condition.dom_id != self.dom_id:
            return False
        return self.channel is None or condition.key == f"{self.dom_id}/{self.channel}"

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def known_bad(db: sqlite3.Connection, configured: Iterable[str] = ()) -> list[KnownBad]:
    """The configured entries, then those set on the alerts page and not removed."""
    rows = db.execute(
        "SELECT * FROM known_bad WHERE removed_at IS NULL ORDER BY created_at"
    ).fetchall()
    return [KnownBad.parse(entry) for entry in configured] + [
        KnownBad(r["dom_id"], r["channel"], r["reason"], r["created_by"], r["id"], r["created_at"])
        for r in rows
    ]


def drop_known_bad(results: Results, entries: list[KnownBad]) -> Results:
    """The conditions of no known-bad DOM or PMT."""
    if not entries:
        return results
    return {
        rule: None
        if conditions is None
        else [c for c in conditions if not any(e.covers(c) for e in entries)]
        for rule, conditions in results.items()
    }


def add_known_bad(
    db: sqlite3.Connection, dom_id: int, channel: int | None, name: str, reason: str
) -> int:
    cursor = db.execute(
        "INSERT INTO known_bad (dom_id, channel, reason, created_by, created_at)"
        " VALUES (?, ?, ?, ?, ?)",
        (dom_id, channel, reason, name, time.time()),
    )
    assert cursor.lastrowid is not None
    return cursor.lastrowid


def remove_known_bad(db: sqlite3.Connection, entry_id: int, name: str) -> bool:
    cursor = db.execute(
        "UPDATE known_bad SET removed_at = ?, removed_by = ? WHERE id = ? AND removed_at IS NULL",
        (time.time(), name, entry_id),
    )
    return cursor.rowcount == 1


# -- silences ---------------------------------------------------------------------------------


def add_silence(
    db: sqlite3.Connection, kind: str, value: str, until: float, name: str, reason: str
) -> int:
    """Mute a rule (its name), a DOM (its id) or a DU (its number) until ``until`` (UTC s)."""
    if kind not in SILENCE_KINDS:
        raise ValueError(f"a silence is for one of {', '.join(SILENCE_KINDS)}, not {kind!r}")
    if kind != "rule" and not value.isdigit():
        raise ValueError(f"a {kind.upper()} is a number, not {value!r}")
    cursor = db.execute(
        "INSERT INTO silences (kind, value, created_by, reason, created_at, until)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (kind, value, name, reason, time.time(), until),
    )
    assert cursor.lastrowid is not None
    return cursor.lastrowid


def end_silence(db: sqlite3.Connection, silence_id: int, name: str) -> bool:
    """End a silence before its time (the shifter who ends it is recorded)."""
    now = time.time()
    cursor = db.execute(
        "UPDATE silences SET until = ?, ended_by = ? WHERE id = ? AND until > ?",
        (now, name, silence_id, now),
    )
    return cursor.rowcount == 1


def active_silences(db: sqlite3.Connection, now: float | None = None) -> list[dict[str, Any]]:
    now = time.time() if now is None else now
    rows = db.execute("SELECT * FROM silences WHERE until > ? ORDER BY until", (now,))
    return [dict(row) for row in rows]


def silence_for(silences: list[dict[str, Any]], rule: str, details: dict[str, Any]) -> int | None:
    """The id of the first silence that covers an alert of ``rule`` at ``details``."""
    for silence in silences:
        kind, value = silence["kind"], silence["value"]
        if (
            (kind == "rule" and rule == value)
            or (kind == "dom" and str(details.get("dom_id")) == value)
            or (kind == "du" and str(details.get("du")) == value)
        ):
            return silence["id"]
    return None
