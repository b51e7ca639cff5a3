"""``km3mon inspect FILE``: what is in a recording, readable or as JSON lines.

Counts messages and bytes per tag, lists detector and run ids and the UTC time span, and shows
the first messages. Undecodable messages are counted and shown with the decoder's message;
the exit code is 1 if there were any, 2 if the file layout itself is broken.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from km3mon.daq import DECODERS, DAQFormatError, DAQObject, decode
from km3mon.daq.files import LAYOUTS, RecordedMessage, iter_file


@dataclass
class Inventory:
    """Running totals over the messages of a file."""

    counts: Counter[str] = field(default_factory=Counter)
    sizes: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    det_ids: set[int] = field(default_factory=set)
    runs: set[int] = field(default_factory=set)
    first_time: float | None = None
    last_time: float | None = None

    def add(self, message: RecordedMessage, summary: dict[str, Any]) -> None:
        self.counts[message.tag] += 1
        self.sizes[message.tag] += len(message.payload)
        if "error" in summary:
            self.errors[message.tag] += 1
        if "det_id" in summary:
            self.det_ids.add(summary["det_id"])
        if "run" in summary:
            self.runs.add(summary["run"])
        if "utc_seconds" in summary:
            time = summary["utc_seconds"] + summary["utc_ns"] * 1e-9
            if self.first_time is None or self.last_time is None:
                self.first_time = self.last_time = time
            self.first_time = min(time, self.first_time)
            self.last_time = max(time, self.last_time)

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": "summary",
            "messages": sum(self.counts.values()),
            "counts": dict(self.counts),
            "bytes": dict(self.sizes),
            "errors": dict(self.errors),
            "det_ids": sorted(self.det_ids),
            "runs": sorted(self.runs),
            "first_utc": _iso(self.first_time),
            "last_utc": _iso(self.last_time),
        }


def describe(index: int, message: RecordedMessage) -> dict[str, Any]:
    """One JSON-able line about a message: where, what, and its decoded summary or error."""
    line: dict[str, Any] = {
        "kind": "message",
        "index": index,
        "offset": message.offset,
        "tag": message.tag,
        "size": len(message.payload),
    }
    if message.tag not in DECODERS:
        return line
    try:
        obj: DAQObject = decode(message.tag, message.payload)
    except DAQFormatError as exc:
        return {**line, "error": str(exc)}
    return {**line, **obj.summary()}


def _iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds")


def _text_line(line: dict[str, Any]) -> str:
    fields = " ".join(
        f"{key}={value}" for key, value in line.items() if key not in ("kind", "index", "offset")
    )
    return f"  #{line['index']} @{line['offset']}: {fields}"


def run(args: argparse.Namespace) -> int:
    inventory = Inventory()
    first: list[str] = []
    out = sys.stdout
    try:
        for index, message in enumerate(iter_file(args.file, args.layout)):
            line = describe(index, message)
            inventory.add(message, line)
            if args.json:
                out.write(json.dumps(line) + "\n")
            elif index < args.first:
                first.append(_text_line(line))
    except (DAQFormatError, OSError) as exc:
        print(f"{args.file}: {exc}", file=sys.stderr)
        return 2
    summary = inventory.as_dict()
    if args.json:
        out.write(json.dumps(summary) + "\n")
    else:
        _print_summary(args.file, summary, first)
    return 1 if inventory.errors else 0


def _print_summary(path: str, summary: dict[str, Any], first: list[str]) -> None:
    print(f"{path}: {summary['messages']} messages")
    print(f"  {'tag':<10}{'count':>8}{'bytes':>12}{'errors':>8}")
    for tag, count in sorted(summary["counts"].items()):
        errors = summary["errors"].get(tag, 0)
        print(f"  {tag:<10}{count:>8}{summary['bytes'][tag]:>12}{errors:>8}")
    print(f"  detector ids: {', '.join(map(str, summary['det_ids'])) or '-'}")
    print(f"  runs: {', '.join(map(str, summary['runs'])) or '-'}")
    print(f"  time span: {summary['first_utc'] or '-'} .. {summary['last_utc'] or '-'}")
    if first:
        print("  first messages:")
        print("\n".join(first))


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "inspect",
        help="summarise a recording (km3mon record, ligier dumps, km3net-testdata files)",
        description="Count messages per tag, list detector/run ids and the time span, show the "
        "first messages. The file layout (ControlHost frames, JDAQ payloads, length-framed CLB "
        "datagrams) is detected automatically.",
    )
    parser.add_argument("file", metavar="FILE")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument("--first", type=int, default=5, help="messages to show (default 5)")
    parser.add_argument("--layout", choices=LAYOUTS, help="skip layout detection")
    parser.set_defaults(func=run)
