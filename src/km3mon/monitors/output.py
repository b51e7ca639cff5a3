"""Everything a monitor writes: plots and freshness records, always atomically.

A reader (the web server, a shifter's browser) must never see half a PNG or half a JSON
record, so every file is written to a temporary file in the same folder and renamed.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def atomic_write(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` in one rename (same folder, so same filesystem)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def save_figure(figure: Figure, path: Path, dpi: int = 100) -> None:
    buffer = io.BytesIO()
    # zlib level 1: twice as fast as the default for ~20 % larger files; rendering is our hot path.
    figure.savefig(buffer, format="png", dpi=dpi, pil_kwargs={"compress_level": 1})
    atomic_write(path, buffer.getvalue())


def utc(timestamp: float | None) -> str:
    if timestamp is None:
        return "never"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(timestamp))


@dataclass
class OutputRecord:
    """Freshness of one output file (a PNG or a CSV)."""

    rendered_at: float
    newest_data_at: float | None
    render_s: float
    stale: bool


@dataclass
class Freshness:
    """What the dashboard and ``km3mon status`` read about one monitoring process.

    Times are UTC seconds since the epoch. ``newest_data_at`` is the time of the newest
    data the monitor has seen (DAQ time where the payload carries one); ``stale`` means no
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
    connected: bool = False
    reconnects: int = 0
    messages: int = 0
    bytes: int = 0
    message_rate_hz: float = 0.0
    dropped: int = 0
    decode_errors: int = 0
    unknown_doms: int = 0
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
