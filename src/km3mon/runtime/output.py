"""Everything a monitor writes: plots atomically, history files appended safely.

A reader (the web server, a shifter's browser) must never see half a PNG, so every plot is
written to a temporary file in the same folder and renamed. A history file is appended to;
a crash mid-write leaves a torn last line, which is cut off before the next rows go in.
Every PNG carries its stamps also as text chunks (``data_until``, ``rendered``, ``stale``),
so what a plot says about itself can be read back without reading its pixels.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from km3mon.published import atomic_write
from km3mon.timetext import utc

if TYPE_CHECKING:
    from matplotlib.figure import Figure

log = logging.getLogger("km3mon.output")

#: Bytes read at a time when looking backwards for the end of the last complete line.
_TAIL_CHUNK = 1 << 16


def save_figure(
    figure: Figure, path: Path, dpi: int = 100, text: dict[str, str] | None = None
) -> None:
    """The figure as a PNG, with ``text`` as PNG text chunks (tEXt)."""
    buffer = io.BytesIO()
    # zlib level 1: twice as fast as the default for ~20 % larger files; rendering is our hot path.
    figure.savefig(buffer, format="png", dpi=dpi, metadata=text or {},
                   pil_kwargs={"compress_level": 1})  # fmt: skip
    atomic_write(path, buffer.getvalue())


def png_stamps(newest_data_at: float | None, rendered_at: float, stale: bool) -> dict[str, str]:
    """The text chunks of a plot: the same words the stamps draw on it."""
    return {
        "data_until": utc(newest_data_at),
        "rendered": utc(rendered_at),
        "stale": "true" if stale else "false",
    }


def append_rows(path: Path, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Append CSV ``rows`` to ``path``, which starts with ``header``.

    Before appending, a torn last line (a crash or a full disk mid-write) is cut off, so a
    new row never continues half of an old one. A missing file gets the header; a file with
    an older header that lacks columns at its end gets the new header (old rows read back
    with those columns empty); a file with any other header is moved aside.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    header_line = _csv_text([header])
    try:
        stream = path.open("r+b")
    except FileNotFoundError:
        stream = path.open("w+b")
    with stream:
        end = _cut_torn_line(stream, path)
        if end == 0:
            stream.write(header_line)
        else:
            stream.seek(0)
            first = stream.readline()
            if _fields(first) != list(header):
                stream.close()
                _adopt_header(path, first, header_line)
                append_rows(path, header, rows)
                return
            stream.seek(end)
        stream.write(_csv_text(rows))


def _csv_text(rows: Sequence[Sequence[object]]) -> bytes:
    text = io.StringIO()
    csv.writer(text, lineterminator="\n").writerows(rows)
    return text.getvalue().encode()


def _fields(line: bytes) -> list[str]:
    return next(csv.reader([line.decode(errors="replace")]), [])


def _cut_torn_line(stream: io.BufferedRandom, path: Path) -> int:
    """Truncate ``stream`` after its last newline; return the new size."""
    size = stream.seek(0, os.SEEK_END)
    if size == 0:
        return 0
    end = size
    while end > 0:
        start = max(0, end - _TAIL_CHUNK)
        stream.seek(start)
        chunk = stream.read(end - start)
        if end == size and chunk.endswith(b"\n"):
            return size
        newline = chunk.rfind(b"\n")
        if newline >= 0:
            end = start + newline + 1
            break
        end = start
    log.warning("%s: torn last line (%d bytes) cut off before appending", path, size - end)
    stream.truncate(end)
    stream.seek(end)
    return end


def _adopt_header(path: Path, old_line: bytes, header_line: bytes) -> None:
    old, new = _fields(old_line), _fields(header_line)
    if old and new[: len(old)] == old:
        rest = path.read_bytes()[len(old_line) :]
        atomic_write(path, header_line + rest)
        log.warning("%s: header extended by %s", path, ", ".join(new[len(old) :]))
        return
    aside = path.with_name(f"{path.stem}_{time.strftime('%Y%m%dT%H%M%S')}{path.suffix}")
    os.replace(path, aside)
    log.warning("%s: unexpected header %r; moved aside to %s", path, old_line[:80], aside.name)
