"""Reading the monitors' freshness records and deciding what is stale."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Extra seconds beyond a process's render interval before its outputs count as late.
GRACE_S = 30.0


@dataclass(frozen=True)
class PanelState:
    """What a plot panel shows about its data: age, and stale or not, in words."""

    process: str | None
    newest_data_at: float | None
    rendered_at: float | None
    stale: bool
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def read_records(data_dir: Path) -> dict[str, dict[str, Any]]:
    """Every ``data/freshness/*.json``, keyed by process; unreadable files are skipped."""
    records = {}
    for path in sorted((data_dir / "freshness").glob("*.json")):
        try:
            records[path.stem] = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # being replaced right now, or damaged: the next poll will tell
    return records


def process_state(record: dict[str, Any], now: float | None = None) -> dict[str, Any]:
    """A record with its age and a verdict: running, stale, disconnected, stopped or silent."""
    now = time.time() if now is None else now
    cadence = record.get("render_interval_s", 60.0)
    updated_age = now - record.get("updated_at", 0.0)
    state = record.get("state", "unknown")
    if state != "stopped" and updated_age > max(3 * cadence, 10.0) + GRACE_S:
        state = "silent"  # the process itself stopped writing: crashed or hung
    last = record.get("last_message_at")
    return {
        **record,
        "state": state,
        "record_age_s": round(updated_age, 1),
        "data_age_s": None if last is None else round(now - last, 1),
        "ok": state == "running",
    }


def panel_states(
    records: dict[str, dict[str, Any]], now: float | None = None
) -> dict[str, PanelState]:
    """Per output file name, the state of its panel."""
    now = time.time() if now is None else now
    panels = {}
    for process, record in records.items():
        verdict = process_state(record, now)
        cadence = max(record.get("render_interval_s", 60.0), record.get("redraw_interval_s", 0))
        late_after = cadence * 2 + GRACE_S
        for name, output in record.get("outputs", {}).items():
            rendered = output.get("rendered_at")
            newest = output.get("newest_data_at")
            if verdict["state"] in ("silent", "stopped"):
                stale, reason = True, f"{process} is {verdict['state']}"
            elif output.get("stale"):
                stale, reason = True, "no new data"
            elif rendered is not None and now - rendered > late_after:
                stale, reason = True, f"not redrawn for {now - rendered:.0f} s"
            else:
                stale, reason = False, "fresh"
            panels[name] = PanelState(process, newest, rendered, stale, reason)
    return panels
