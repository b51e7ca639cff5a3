"""`km3mon grl`: the good-run list, from ``data/quality.sqlite3`` alone.

One row (CSV) or entry (JSON, keyed by the run number as a string) per run that has ended:
verdict (the newest override, else the automatic one), reasons, live time and the override, if
any. The current run is left out unless ``--include-current`` (then its verdict is
``running``). It reads only the data folder, so it works while the suite is down.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from pathlib import Path
from typing import Any

from km3mon.quality.store import QualityError, QualityStore
from km3mon.timetext import parse_time, utc_text

CSV_COLUMNS = ("run", "detector", "verdict", "automatic_verdict", "livetime_s", "utc_min",
               "utc_max", "reasons", "override_by", "override_at", "override_reason")  # fmt: skip


def entries(
    data_dir: Path, since: float | None, until: float | None, include_current: bool
) -> list[dict[str, Any]]:
    """The runs of the list, oldest first (QualityError without a store)."""
    with QualityStore(data_dir, readonly=True) as store:
        records = store.records(since=since, until=until)
    chosen = []
    for record in reversed(records):
        if record["state"] != "ended" and not include_current:
            continue
        override = record["override"]
        chosen.append(
            {
                "run": record["run"],
                "detector": record["detector"],
                "verdict": record["verdict"],
                "automatic_verdict": record["automatic_verdict"],
                "reasons": list(record["reasons"]),
                "livetime_s": record["quantities"].get("livetime_s"),
                "utc_min": record["utc_min"],
                "utc_max": record["utc_max"],
                "override": None
                if override is None
                else {
                    "verdict": override["verdict"],
                    "by": override["who"],
                    "at": override["at"],
                    "reason": override["why"],
                },
            }
        )
    return chosen


def as_json(runs: list[dict[str, Any]]) -> str:
    document = {str(entry["run"]): {k: v for k, v in entry.items() if k != "run"} for entry in runs}
    return json.dumps(document, indent=1) + "\n"


def as_csv(runs: list[dict[str, Any]]) -> str:
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for entry in runs:
        override = entry["override"] or {}
        writer.writerow([
            entry["run"], entry["detector"], entry["verdict"], entry["automatic_verdict"],
            entry["livetime_s"], utc_text(entry["utc_min"]), utc_text(entry["utc_max"]),
            "; ".join(entry["reasons"]), override.get("by", ""),
            utc_text(override["at"]) if override else "", override.get("reason", ""),
        ])  # fmt: skip
    return text.getvalue()


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "grl",
        help="the good-run list (verdict, reasons, live time, override per run) as CSV or JSON",
        description=__doc__.split("\n\n")[0],
    )
    parser.add_argument("--since", help="runs that end after this UTC date/time")
    parser.add_argument("--until", help="runs that begin before this UTC date/time")
    parser.add_argument("--format", choices=("csv", "json"), default="csv", help="(csv)")
    parser.add_argument("--data-dir", type=Path, default=Path("data"), help="data folder (data)")
    parser.add_argument("-o", "--output", type=Path, help="write to this file (default: stdout)")
    parser.add_argument(
        "--include-current", action="store_true", help="list the current run too, as 'running'"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        since = parse_time(args.since, "--since") if args.since else None
        until = parse_time(args.until, "--until") if args.until else None
        runs = entries(args.data_dir, since, until, args.include_current)
    except (ValueError, QualityError) as error:
        print(f"km3mon grl: {error}", file=sys.stderr)
        return 2
    text = as_json(runs) if args.format == "json" else as_csv(runs)
    if args.output:
        args.output.write_text(text)
    else:
        sys.stdout.write(text)
    return 0
