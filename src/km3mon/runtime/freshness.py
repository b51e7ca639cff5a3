"""The freshness record: what every long-running process says about itself, as JSON.

Monitors, the ligier mirror and the web server all use it (the first two write it; the
dashboard, the alerts and the history read it and judge what is stale), so it lives below
all of them. Records are replaced atomically: a reader never sees half a record.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from km3mon import published
from km3mon.published import atomic_write


@dataclass
class OutputRecord:
    """Freshness of one output file (a PNG or a CSV)."""

    rendered_at: float
    newest_data_at: float | None
    render_s: float
    stale: bool


@dataclass
class Freshness:
    """What the dashboard and ``km3mon status`` read about one process.

    Times are UTC seconds since the epoch. ``newest_data_at`` is the time of the newest
    data the process has seen (DAQ time where the payload carries one); ``stale`` means no
    data for longer than ``stale_after_s``.
    """

    process: str
    pid: int
    started_at: float
    ligier: str
    tags: list[str]
    render_interval_s: float
    stale_after_s: float
    #: Seconds between two redraws of the same output, when a monitor cycles through many
    #: outputs (one per DU) within a time budget; 0 means every render interval.
    redraw_interval_s: float = 0.0
    state: str = "starting"
    updated_at: float = 0.0
    #: False from the moment the connection is lost until it is back (set while reconnecting).
    connected: bool = False
    reconnects: int = 0
    messages: int = 0
    bytes: int = 0
    message_rate_hz: float = 0.0
    dropped: int = 0
    decode_errors: int = 0
    unknown_doms: int = 0
    #: Data rows (events, slices, packets) whose DAQ time was implausible (far ahead of the
    #: wall clock or far from the stream's recent median): not used, and no clock moved.
    implausible_times: int = 0
    newest_data_at: float | None = None
    #: Arrival time minus DAQ time of the newest data, at the last batch: how far the
    #: monitor (and the chain before it) is behind the detector.
    data_lag_s: float | None = None
    last_message_at: float | None = None
    outputs: dict[str, OutputRecord] = field(default_factory=dict)

    def write(self, path: Path) -> None:
        self.updated_at = time.time()
        atomic_write(path, json.dumps(asdict(self), indent=1).encode())

    @classmethod
    def read(cls, path: Path) -> dict[str, Any]:
        return json.loads(path.read_text())


# -- reading the records --------------------------------------------------------------

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
    for path in sorted(published.freshness_dir(data_dir).glob("*.json")):
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
