"""`km3mon shift-report --since 8h`: one shift in Markdown, for the e-logbook.

It reads what the suite keeps (``data/km3mon.sqlite3`` for alerts, ``data/history.sqlite3``
for process states and trigger rates, ``data/quality.sqlite3`` for the runs and their verdicts,
``data/event_selection.sqlite3`` for the Top-10 events,
``data/metrics/dom_activity.json`` for the DOMs silent now), so it runs on its own at any time,
also while the suite is down.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from km3mon import published
from km3mon.alerts.book import as_dict
from km3mon.history.store import HistoryError, HistoryStore
from km3mon.history.top10 import top_events
from km3mon.quality.store import QualityError, QualityStore
from km3mon.timetext import duration_text, parse_time, utc_text

UNITS_S = {"m": 60, "min": 60, "h": 3600, "d": 86400}
TRIGGER_TYPES = ("Overall", "3DMuon", "MXShower", "3DShower")


class ReportError(Exception):
    """The report cannot be made as asked (the message says what to change)."""


def parse_since(text: str, now: float) -> float:
    """``8h``, ``90m``, ``2d`` before now, or a UTC date/time."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(m|min|h|d)", text.strip())
    if match:
        return now - float(match[1]) * UNITS_S[match[2]]
    try:
        return parse_time(text, "--since")
    except ValueError as error:
        raise ReportError(f"{error} (or a duration like 8h, 90m, 2d)") from None


def _alerts(data_dir: Path, start: float, end: float) -> list[dict[str, Any]]:
    db = published.read_alerts(data_dir)
    if db is None:
        return []
    try:
        rows = db.execute(
            "SELECT * FROM alerts WHERE fired_at IS NOT NULL AND fired_at < ? "
            "AND (resolved_at IS NULL OR resolved_at >= ?) ORDER BY started_at",
            (end, start),
        ).fetchall()
    finally:
        db.close()
    return [as_dict(row) for row in rows]


def _table(header: list[str], rows: list[list[object]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [str(cell).replace("|", "\\|").replace("\n", " ") for cell in row]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def alerts_section(alerts: list[dict[str, Any]], end: float) -> list[str]:
    lines = ["## Alerts", ""]
    if not alerts:
        return [*lines, "No alert fired.", ""]
    rows = []
    for alert in alerts:
        until = alert["resolved_at"] or end
        muted = " (silenced: nobody notified)" if alert.get("announced") == 0 else ""
        rows.append([
            alert["rule"],
            alert["summary"] + muted,
            utc_text(alert["started_at"]),
            utc_text(alert["resolved_at"]) if alert["resolved_at"] else "**still firing**",
            duration_text(until - alert["started_at"]),
            (f"{alert['acked_by']}: {alert['ack_comment']}" if alert["acked_by"] else "–"),
        ])  # fmt: skip
    firing = sum(1 for a in alerts if a["resolved_at"] is None)
    counts = {}
    for alert in alerts:
        counts[alert["rule"]] = counts.get(alert["rule"], 0) + 1
    summary = ", ".join(f"{n} {rule}" for rule, n in sorted(counts.items()))
    return [
        *lines,
        f"{len(alerts)} alerts ({summary}); {firing} still firing at the end of the shift.",
        "",
        *_table(["rule", "what", "began (UTC)", "resolved (UTC)", "lasted", "acknowledged"], rows),
        "",
    ]


def downtime_section(store: HistoryStore | None, start: float, end: float) -> list[str]:
    lines = ["## Downtime per process", ""]
    if store is None:
        return [*lines, "No history store (`km3mon history` not running): no process states.", ""]
    rows = []
    for name, _ in store.metrics():
        if not name.startswith("process_up."):
            continue
        values = store.series(name, 0, start, end, step_s=60).values
        if not len(values):
            continue
        down, stale = int(np.sum(values == 0)), int(np.sum(values == 0.5))
        rows.append([name.removeprefix("process_up."), len(values), f"{down} min",
                     f"{stale} min", f"{100 * np.mean(values == 1):.1f} %"])  # fmt: skip
    if not rows:
        return [*lines, "No process states recorded in this period.", ""]
    note = "From the states sampled once a minute (down: silent, disconnected or stopped)."
    header = ["process", "minutes sampled", "down", "stale (no data)", "running"]
    return [*lines, note, "", *_table(header, rows), ""]


def _trigger_series(store: HistoryStore | None, data_dir: Path, start: float, end: float):
    """Per trigger type: (times, rates) from the history, else from trigger_rates.csv."""
    found = {}
    if store is not None:
        for kind in TRIGGER_TYPES:
            try:
                series = store.series(f"trigger_rate_hz.{kind}", 0, start, end, step_s=60)
            except HistoryError:
                continue
            found[kind] = series.values
    if any(len(v) for v in found.values()):
        return found, "history"
    path = published.trigger_rates(data_dir)
    if not path.exists():
        return {}, None
    columns: dict[str, list[float]] = {kind: [] for kind in TRIGGER_TYPES}
    with path.open() as stream:
        for row in csv.DictReader(stream):
            try:
                if start <= float(row["timestamp"]) < end:
                    for kind in TRIGGER_TYPES:
                        columns[kind].append(float(row[kind]))
            except (KeyError, TypeError, ValueError):
                continue  # a torn row
    return {k: np.array(v) for k, v in columns.items()}, "data/trigger_rates.csv"


def trigger_section(store: HistoryStore | None, data_dir: Path, start: float, end: float):
    lines = ["## Trigger rates", ""]
    series, source = _trigger_series(store, data_dir, start, end)
    rows = []
    for kind in TRIGGER_TYPES:
        values = series.get(kind, np.zeros(0))
        if len(values):
            rows.append([kind, len(values), f"{np.mean(values):.3g}", f"{np.median(values):.3g}",
                         f"{np.min(values):.3g}", f"{np.max(values):.3g}",
                         int(np.sum(values == 0))])  # fmt: skip
    if not rows:
        return [*lines, "No trigger rates recorded in this period.", ""]
    header = ["trigger", "intervals", "mean [Hz]", "median [Hz]", "min [Hz]", "max [Hz]", "at 0 Hz"]
    return [*lines, f"From {source}.", "", *_table(header, rows), ""]


def silent_section(alerts: list[dict[str, Any]], data_dir: Path, end: float) -> list[str]:
    lines = ["## Silent DOMs", ""]
    rows = []
    for alert in alerts:
        if alert["rule"] not in ("silent_dom", "du_lost"):
            continue
        details = alert["details"]
        until = alert["resolved_at"]
        rows.append([
            details.get("dom_id", "whole DU"),
            details.get("du", "–"),
            details.get("floor", "–"),
            utc_text(alert["started_at"]),
            utc_text(until) if until else "still silent",
            duration_text((until or end) - alert["started_at"]),
        ])  # fmt: skip
    try:
        activity = json.loads(published.metrics(data_dir, "dom_activity").read_text())
        now_silent = activity.get("inactive_dom_ids", [])
    except (OSError, ValueError):
        now_silent = None
    if rows:
        lines += _table(["DOM", "DU", "floor", "silent from (UTC)", "until", "lasted"], rows)
    else:
        lines.append("No DOM was silent long enough to alert.")
    if now_silent is not None:
        shown = ", ".join(map(str, now_silent[:30])) + (" …" if len(now_silent) > 30 else "")
        lines += ["", f"dom_activity lists {len(now_silent)} DOMs inactive now" + (
            f": {shown}" if now_silent else ".")]  # fmt: skip
    return [*lines, ""]


def top10_section(data_dir: Path, start: float, end: float) -> list[str]:
    lines = ["## Top-10 events", ""]
    selection = top_events(data_dir)
    events = {e["name"]: e for rows in selection["lists"].values() for e in rows}
    chosen = sorted(
        (e for e in events.values() if start <= e["utc"] < end), key=lambda e: -e["n_hits"]
    )[:10]
    if not chosen:
        return [*lines, "No event of the Top-10 lists in this period.", ""]
    rows = [
        [utc_text(e["utc"]), e["run"], e["frame_index"], e["trigger_counter"], e["n_hits"],
         e["n_triggered"], e["overlays"], e["triggers"], f"`/top10/{e['name']}.dat`"]
        for e in chosen
    ]  # fmt: skip
    header = ["time (UTC)", "run", "frame", "trigger counter", "hits", "triggered", "overlays",
              "triggers", "raw event"]  # fmt: skip
    return [*lines, "Kept Top-10 events of this period, most hits first.", "",
            *_table(header, rows), ""]  # fmt: skip


def runs_section(data_dir: Path, start: float, end: float) -> list[str]:
    """The shift's runs with their verdicts (``km3mon quality``)."""
    lines = ["## Runs", ""]
    try:
        with QualityStore(data_dir, readonly=True) as store:
            records = store.records(since=start, until=end)
    except (QualityError, sqlite3.Error):
        return [*lines, "No run-quality record (`km3mon quality` not running).", ""]
    if not records:
        return [*lines, "No run in this period.", ""]
    rows = []
    for record in reversed(records):
        override = record["override"]
        rows.append([
            record["run"], f"**{record['verdict']}**", utc_text(record["utc_min"]),
            duration_text(record["quantities"].get("livetime_s") or 0),
            "; ".join(record["reasons"]) or "–",
            f"{override['who']}: {override['why']}" if override else "–",
        ])  # fmt: skip
    header = ["run", "verdict", "began (UTC)", "live time", "reasons", "override"]
    return [*lines, *_table(header, rows), ""]


def shift_report(data_dir: Path, start: float, end: float) -> str:
    try:
        store: HistoryStore | None = HistoryStore(data_dir, readonly=True)
    except HistoryError:
        store = None
    alerts = _alerts(data_dir, start, end)
    lines = [
        f"# Shift report {utc_text(start)[:16]} – {utc_text(end)[:16]} UTC "
        f"({duration_text(end - start)})",
        "",
        *alerts_section(alerts, end),
        *runs_section(data_dir, start, end),
        *downtime_section(store, start, end),
        *trigger_section(store, data_dir, start, end),
        *silent_section(alerts, data_dir, end),
        *top10_section(data_dir, start, end),
        f"_Made by `km3mon shift-report` at {utc_text(time.time())} UTC._",
    ]
    if store is not None:
        store.close()
    return "\n".join(lines) + "\n"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "shift-report",
        help="a shift's alerts, runs, downtime, trigger rates, silent DOMs and Top-10 as Markdown",
        description=__doc__.split("\n\n")[0],
    )
    parser.add_argument("--since", default="8h", help="8h, 90m, 2d, or a UTC date/time (8h)")
    parser.add_argument("--until", help="end: a UTC date/time (default: now)")
    parser.add_argument("--data-dir", type=Path, default=Path("data"), help="data folder (data)")
    parser.add_argument("-o", "--output", type=Path, help="write to this file (default: stdout)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    now = time.time()
    try:
        end = parse_time(args.until, "--until") if args.until else now
        start = parse_since(args.since, end)
    except (ReportError, ValueError) as error:
        print(f"km3mon shift-report: {error}", file=sys.stderr)
        return 2
    if start >= end:
        print("km3mon shift-report: --since must be before --until", file=sys.stderr)
        return 2
    text = shift_report(args.data_dir, start, end)
    if args.output:
        args.output.write_text(text)
    else:
        sys.stdout.write(text)
    return 0
