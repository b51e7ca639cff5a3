"""A parsed detector saved once under ``data/detectors/`` and mapped by every process.

Our own because each of the suite's ~17 processes parsed the same DETX and kept its arrays
(~14 MB per process at 230 DUs, the parser's leftovers included). Saved as ``.npy`` files
and mapped copy-on-write, the arrays sit once in the page cache for all of them (writes, which
the suite does not make, would stay private), and a process starts without parsing.

A file's content names its folder (SHA-256 of the DETX text and of this format), so an edited
DETX is parsed anew and a folder never changes once written (written aside, then renamed).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from km3mon.detector.geometry import Detector, UTMReference

log = logging.getLogger(__name__)

#: Bumped when the saved fields change, so that old folders are not read.
FORMAT = b"km3mon detector 1\n"
ARRAYS = (
    "dom_ids", "dom_du", "dom_floor", "dom_pos_m", "dom_t0_ns", "n_pmts",
    "pmt_ids", "pmt_pos_m", "pmt_dir", "pmt_t0_ns", "pmt_status", "dom_status",
)  # fmt: skip
SCALARS = ("det_id", "version", "valid_from_s", "valid_until_s")
META = "detector.json"
#: Saved detectors kept (the newest): each DETX edit adds one, 9 MB at 230 DUs. Removing a
#: folder a running process maps is safe: its mapping stays until the process ends.
KEEP = 8


def key_of(text: bytes) -> str:
    return hashlib.sha256(FORMAT + text).hexdigest()


def mapped_detector(
    text: bytes, source: str, parse: Callable[[], Detector], folder: Path
) -> Detector:
    """The detector of DETX ``text``: mapped from ``folder`` if another process (or an
    earlier start) saved it, else parsed with ``parse``, saved and mapped. A folder that
    cannot be written or read costs only the sharing: the parsed detector is returned."""
    where = Path(folder) / key_of(text)
    if where.is_dir():
        try:
            return read(where, source)
        except (OSError, ValueError, KeyError) as error:
            log.warning("saved detector %s unreadable (%s): parsing %s again", where, error, source)
    detector = parse()
    try:
        write(detector, where)
        return read(where, source)
    except (OSError, ValueError, KeyError) as error:
        log.warning("cannot share the detector of %s in %s (%s): kept in memory", source,
                    folder, error)  # fmt: skip
        return detector


def write(detector: Detector, where: Path) -> None:
    """Save into a folder beside ``where``, then rename it into place (a concurrent writer
    of the same content has then done the same work: its folder stays)."""
    where.parent.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(dir=where.parent, prefix=f".{where.name}."))
    try:
        for name in ARRAYS:
            np.save(temporary / f"{name}.npy", np.ascontiguousarray(getattr(detector, name)))
        meta = {name: getattr(detector, name) for name in SCALARS}
        meta["utm"] = dataclasses.asdict(detector.utm) if detector.utm else None
        (temporary / META).write_text(json.dumps(meta))
        try:
            os.rename(temporary, where)
        except OSError:
            if not where.is_dir():
                raise
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    saved = sorted(
        (p for p in where.parent.iterdir() if p.is_dir() and not p.name.startswith(".")),
        key=lambda p: p.stat().st_mtime,
    )
    for old in saved[:-KEEP]:
        shutil.rmtree(old, ignore_errors=True)


def read(where: Path, source: str) -> Detector:
    """The detector saved in ``where``, its arrays mapped copy-on-write (plain ndarrays)."""
    meta = json.loads((where / META).read_text())
    arrays = {
        name: np.load(where / f"{name}.npy", mmap_mode="c").view(np.ndarray) for name in ARRAYS
    }
    utm = UTMReference(**meta["utm"]) if meta["utm"] else None
    scalars = {name: meta[name] for name in SCALARS}
    return Detector(**arrays, **scalars, utm=utm, source=source)
