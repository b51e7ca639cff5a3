"""What a dashboard page shows: rows of plot tiles, built from the layout and ``plots/``.

A wildcard row (``pmt_rates_du*``) becomes one tile per matching PNG in natural DU order,
limited by the page's DU filter (``?du=9-16,23``), and is preceded by the detector-wide
summary image the registry names for it. A plot that does not exist becomes a placeholder
that says which process should draw it and in what state that process is, never a broken
image.
"""

from __future__ import annotations

import fnmatch
import json
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from km3mon import published, registry
from km3mon.runtime.freshness import PanelState

PER_DU = re.compile(r"_du(\d+)$")
#: At most this many DUs in one filter (a DU number is below 10 000 in any detector).
MAX_DU = 9999


@dataclass(frozen=True)
class PlotFile:
    mtime: float
    width: int
    height: int


class PlotIndex:
    """The PNGs of ``plots/`` with modification time and pixel size (read from the PNG
    header once per file version)."""

    def __init__(self, plot_dir: Path) -> None:
        self.plot_dir = plot_dir
        self.files: dict[str, PlotFile] = {}

    def scan(self) -> dict[str, PlotFile]:
        files = {}
        entries = self.plot_dir.glob("*.png") if self.plot_dir.is_dir() else []
        for path in entries:
            stem = path.stem
            try:
                mtime = path.stat().st_mtime
            except OSError:
                continue  # replaced or removed right now: seen at the next scan
            known = self.files.get(stem)
            if known is not None and known.mtime == mtime:
                files[stem] = known
                continue
            size = png_size(path)
            if size is not None:
                files[stem] = PlotFile(mtime, *size)
        self.files = files
        return files


def png_size(path: Path) -> tuple[int, int] | None:
    """(width, height) from the IHDR chunk, or None for a file that is not a PNG."""
    try:
        with path.open("rb") as stream:
            head = stream.read(24)
    except OSError:
        return None
    if len(head) < 24 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", head[16:24])
    return (width, height) if width and height else None


def natural_key(name: str) -> tuple[str, int]:
    """``pmt_rates_du9`` before ``pmt_rates_du10``."""
    head = name.rstrip("0123456789")
    tail = name[len(head) :]
    return (head, int(tail) if tail else -1)


def du_of(name: str) -> int | None:
    match = PER_DU.search(name)
    return int(match.group(1)) if match else None


class DUFilter:
    """``9-16,23``: DU numbers and inclusive ranges, separated by commas or spaces."""

    def __init__(self, text: str) -> None:
        self.text = text.strip()
        self.ranges: list[tuple[int, int]] = []
        for part in re.split(r"[,\s]+", self.text):
            if not part:
                continue
            match = re.fullmatch(r"(\d{1,4})(?:-(\d{1,4}))?", part)
            if match is None:
                raise ValueError(f"{part!r} is not a DU number or range like 9-16")
            low = int(match.group(1))
            high = int(match.group(2) or low)
            if high < low:
                raise ValueError(f"{part!r}: the range runs backwards")
            self.ranges.append((low, high))

    def __bool__(self) -> bool:
        return bool(self.ranges)

    def __contains__(self, du: int) -> bool:
        return any(low <= du <= high for low, high in self.ranges)

    def as_ranges(self) -> list[list[int]]:
        return [list(r) for r in self.ranges]


@dataclass
class Tile:
    """One plot on a page: its image (if it exists) and its freshness, or a placeholder."""

    name: str
    file: PlotFile | None
    state: PanelState | None
    du: int | None = None
    #: A sentence instead of the image: who should draw it and why it is not there.
    missing: str = ""
    #: For a detector-wide summary: where the DUs are along x, so a click opens a DU.
    du_axis: dict[str, Any] | None = None

    @property
    def aspect(self) -> tuple[int, int]:
        """Width and height of the image (the page reserves its space before loading it)."""
        assert self.file is not None, "a missing plot has no size"
        return (self.file.width, self.file.height)


@dataclass
class Row:
    tiles: list[Tile]
    summary: bool = False
    #: Said instead of tiles when a row is empty (e.g. no DU of the filter has this plot).
    note: str = ""


class Producers:
    """Sentences about the program that should write a plot (from the registry), with its
    state from supervisord when the dashboard knows it, else from its freshness record."""

    def __init__(
        self,
        records: dict[str, dict[str, Any]],
        supervisor: Callable[[], dict[str, dict] | None],
    ) -> None:
        self.records = records
        self._supervisor = supervisor
        self._states: dict[str, dict] | None = None
        self._asked = False

    @property
    def supervisor(self) -> dict[str, dict] | None:
        """supervisord's program states, asked once and only when a plot is missing."""
        if not self._asked:
            self._states, self._asked = self._supervisor(), True
        return self._states

    def sentence(self, plot: str) -> str:
        program = registry.producer_of(plot)
        if program is None:
            return f"{plot}: no process of km3mon's registry draws this plot"
        return f"{plot}: produced by {program.what} (`{program.command}`), {self.state(program)}"

    def state(self, program: registry.Program) -> str:
        record = self.records.get(program.name)
        if self.supervisor is not None:
            info = self.supervisor.get(program.name)
            if info is None:
                return "which is not part of this installation (not in supervisord.conf)"
            if info["state"] != "RUNNING":
                return f"which is not running (supervisord: {info['state']})"
        if record is None:
            if self.supervisor is not None:
                return "which runs but has not reported yet"
            return "which is not running (no freshness record)"
        state = record.get("state", "unknown")
        if state in ("running", "stale", "disconnected", "starting"):
            return f"which has not drawn it yet (it is {state})"
        return f"which is not running (its record says {state})"


def build_rows(
    layout: list[list[str]],
    files: dict[str, PlotFile],
    panels: dict[str, PanelState],
    producers: Producers,
    data_dir: Path,
    du_filter: DUFilter,
) -> list[Row]:
    """The rows of a page: summaries before the first per-DU row, DUs filtered, and a
    placeholder for every plot that is not there."""
    available = sorted(files, key=natural_key)
    rows: list[Row] = []
    summaries = _summaries(layout)
    summaries_placed = False
    for names in layout:
        row = Row([])
        per_du_row = any("*" in name for name in names)
        if per_du_row and summaries and not summaries_placed:
            summary_row = Row(
                [_tile(s, files, panels, producers, data_dir, True) for s in summaries],
                summary=True,
            )
            rows.append(summary_row)
            summaries_placed = True
        for name in names:
            if "*" not in name:
                row.tiles.append(_tile(name, files, panels, producers, data_dir))
                continue
            matches = fnmatch.filter(available, name)
            chosen = [m for m in matches if not du_filter or (du_of(m) or -1) in du_filter]
            if not matches:
                row.tiles.append(_tile(name, files, panels, producers, data_dir))
            for match in chosen:
                row.tiles.append(_tile(match, files, panels, producers, data_dir))
            if matches and not chosen:
                row.note += f"{name}: none of DUs {du_filter.text}. "
        rows.append(row)
    return rows


def _summaries(layout: list[list[str]]) -> list[str]:
    """Distinct summary images of the per-DU patterns of a layout (unless listed already)."""
    listed = {name for row in layout for name in row}
    found: list[str] = []
    for row in layout:
        for name in row:
            summary = registry.summary_of(name) if "*" in name else None
            if summary and summary not in found and summary not in listed:
                found.append(summary)
    return found


def _tile(
    name: str,
    files: dict[str, PlotFile],
    panels: dict[str, PanelState],
    producers: Producers,
    data_dir: Path,
    summary: bool = False,
) -> Tile:
    file = files.get(name)
    tile = Tile(name, file, panels.get(f"{name}.png"), du_of(name))
    if file is None:
        tile.missing = producers.sentence(name)
    elif summary:
        tile.du_axis = du_axis(data_dir, name)
    return tile


def du_axis(data_dir: Path, name: str) -> dict[str, Any] | None:
    """The ``du_axis`` a monitor wrote next to a summary image (``data/metrics/<name>.json``):
    ``x0``/``x1`` (fractions of the image width) and the DUs in order, one column each."""
    path = published.metrics(data_dir, name)
    try:
        axis = json.loads(path.read_text()).get("du_axis")
    except (OSError, ValueError, AttributeError):
        return None
    if not isinstance(axis, dict) or not isinstance(axis.get("dus"), list):
        return None
    return {"x0": float(axis["x0"]), "x1": float(axis["x1"]), "dus": axis["dus"]}


@dataclass(frozen=True)
class Badge:
    """A tile's state: ``kind`` for the frame, a few words for the corner, a sentence for
    hover and screen readers."""

    kind: str
    short: str
    sentence: str


def age_text(seconds: float) -> str:
    """``12 s``, ``8 min``, ``5 h``, ``3 d`` (the page's script says it the same way)."""
    seconds = max(seconds, 0.0)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} d"


def badge(tile: Tile, now: float) -> Badge:
    if tile.file is None:
        return Badge("missing", "no plot", tile.missing)
    state = tile.state
    if state is None:
        drawn = age_text(now - tile.file.mtime)
        return Badge(
            "unknown",
            "no status",
            f"{tile.name}: no process reports on this plot, so its freshness is unknown "
            f"(file written {drawn} ago)",
        )
    if state.newest_data_at is None:
        words = "STALE no data" if state.stale else "no data"
        return Badge(
            "stale" if state.stale else "unknown",
            words,
            f"{tile.name}: {words}: {state.process} has seen no data yet ({state.reason})",
        )
    age = age_text(now - state.newest_data_at)
    if state.stale:
        return Badge(
            "stale",
            f"STALE {age}",
            f"{tile.name}: STALE, {state.reason}; newest data {age} old (process {state.process})",
        )
    return Badge(
        "fresh", age, f"{tile.name}: fresh, newest data {age} old (process {state.process})"
    )
