"""The reconstruction's fitted direction of a few chosen events, from ``data/reco/fits*.csv``.

``km3mon reco`` appends a row per fit (columns ``run, frame_index, trigger_counter, utc, kind,
du, zenith_deg, azimuth_deg, …``), in the order it fits, so rows are nearly sorted by ``utc``;
at ARCA rates a day's file has millions of rows. For the Top-10 page we need a handful, so we
bisect the file by byte offset on ``utc`` and read only the rows around each event's time,
instead of parsing the whole table.
"""

from __future__ import annotations

import csv
import io
from datetime import datetime
from pathlib import Path
from typing import Any

#: Rows within this many seconds of the event's time are searched (the fit order is not
#: strictly the time order).
WINDOW_S = 10.0
BISECT_STOP_BYTES = 64 * 1024
Key = tuple[int, int, int]


def _seconds(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        try:
            return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None


class FitTable:
    """One CSV of fits, searched by time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        with path.open("rb") as stream:
            header = stream.readline()
            self.data_start = stream.tell()
        self.columns = next(csv.reader([header.decode(errors="replace")]))
        self.index = {name.strip(): i for i, name in enumerate(self.columns)}
        self.size = path.stat().st_size

    def usable(self) -> bool:
        return {"run", "frame_index", "trigger_counter", "utc", "kind"} <= set(self.index)

    def _utc_at(self, stream: Any, offset: int) -> float | None:
        """The utc of the first whole row at or after ``offset``."""
        stream.seek(offset)
        if offset > self.data_start:
            stream.readline()  # the rest of a row cut by the seek
        while line := stream.readline():
            fields = line.decode(errors="replace").split(",")
            if len(fields) > self.index["utc"]:
                value = _seconds(fields[self.index["utc"]].strip())
                if value is not None:
                    return value
        return None

    def rows_near(self, utc_s: float) -> list[dict[str, str]]:
        with self.path.open("rb") as stream:
            low, high = self.data_start, self.size
            while high - low > BISECT_STOP_BYTES:
                middle = (low + high) // 2
                found = self._utc_at(stream, middle)
                if found is None or found >= utc_s - WINDOW_S:
                    high = middle
                else:
                    low = middle
            stream.seek(low)
            if low > self.data_start:
                stream.readline()
            rows = []
            for line in stream:
                fields = next(csv.reader(io.StringIO(line.decode(errors="replace"))), [])
                if len(fields) < len(self.index):
                    continue  # a torn last row
                row = {name: fields[i].strip() for name, i in self.index.items()}
                time_s = _seconds(row["utc"])
                if time_s is None:
                    continue
                if time_s > utc_s + WINDOW_S:
                    break
                if time_s >= utc_s - WINDOW_S:
                    rows.append(row)
            return rows


def fitted_directions(folder: Path, events: list[tuple[Key, float]]) -> dict[Key, dict[str, Any]]:
    """For ``((run, frame_index, trigger_counter), utc)`` of each event, its multi-DU fit
    (zenith, azimuth in degrees, quality) where the table has one."""
    tables = []
    for path in sorted(folder.glob("fits*.csv")):
        try:
            table = FitTable(path)
        except (OSError, StopIteration):
            continue
        if table.usable():
            tables.append(table)
    found: dict[Key, dict[str, Any]] = {}
    for key, utc_s in events:
        for table in tables:
            for row in table.rows_near(utc_s):
                if row["kind"] != "multi-du":
                    continue
                try:
                    row_key = (
                        int(row["run"]),
                        int(row["frame_index"]),
                        int(row["trigger_counter"]),
                    )
                except ValueError:
                    continue
                if row_key == key:
                    found[key] = {
                        name: _number(row.get(name))
                        for name in ("zenith_deg", "azimuth_deg", "quality", "n_dus", "n_hits")
                    }
            if key in found:
                break
    return found


def _number(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        return None
