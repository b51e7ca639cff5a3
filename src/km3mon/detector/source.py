"""Where a monitor gets its detector: a DETX file first, the KM3NeT database second."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path

from km3mon.detector.database import OPERATOR_HINT, Database, DatabaseUnavailable
from km3mon.detector.detx import parse_detx, read_detx
from km3mon.detector.errors import DetectorError
from km3mon.detector.geometry import Detector
from km3mon.detector.mapped import mapped_detector

log = logging.getLogger(__name__)


def load_detector(
    det_id: int | None = None,
    detx: str | Path | None = None,
    *,
    run: int | None = None,
    database: Database | None = None,
    environ: Mapping[str, str] | None = None,
    share_in: Path | None = None,
) -> Detector:
    """The detector from ``detx`` (or ``$DETX``), else from the database for ``det_id``.

    Raises DetectorError with a message telling the operator which of the two to provide; the
    database path gives up after the client's timeout instead of hanging. With ``share_in``
    (a suite's ``data/detectors``), the parsed arrays are mapped from there, shared by every
    process of the suite (``km3mon.detector.mapped``).
    """
    environ = os.environ if environ is None else environ
    path = detx or environ.get("DETX") or None
    if path is not None:
        detector = _from_file(Path(path), share_in)
        if det_id is not None and detector.det_id not in (det_id, -1):
            log.warning("DETX %s is for detector %d, not %d", path, detector.det_id, det_id)
        return detector
    if det_id is None:
        raise DetectorError(f"no detector given: {OPERATOR_HINT}, with -d DET_ID")
    database = database or Database(environ=environ)
    try:
        text = database.detx(det_id, run=run)
    except DatabaseUnavailable as err:
        raise DetectorError(f"cannot get the geometry of detector {det_id}: {err}") from err
    source = f"KM3NeT database (detector {det_id}, run {run})"
    if share_in is None:
        return parse_detx(text, source=source)
    return mapped_detector(text.encode(), source, lambda: parse_detx(text, source), share_in)


def _from_file(path: Path, share_in: Path | None) -> Detector:
    if share_in is None:
        return read_detx(path)
    try:
        content = path.read_bytes()
    except OSError:
        return read_detx(path)  # which says what is wrong with the file
    # a miss parses the bytes already read (decoded as read_detx does); a hit decodes nothing
    return mapped_detector(
        content,
        str(path),
        lambda: parse_detx(content.decode("ascii", errors="replace"), str(path)),
        share_in,
    )
