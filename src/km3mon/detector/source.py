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

log = logging.getLogger(__name__)


def load_detector(
    det_id: int | None = None,
    detx: str | Path | None = None,
    *,
    run: int | None = None,
    database: Database | None = None,
    environ: Mapping[str, str] | None = None,
) -> Detector:
    """The detector from ``detx`` (or ``$DETX``), else from the database for ``det_id``.

    Raises DetectorError with a message telling the operator which of the two to provide; the
    database path gives up after the client's timeout instead of hanging.
    """
    environ = os.environ if environ is None else environ
    path = detx or environ.get("DETX") or None
    if path is not None:
        detector = read_detx(path)
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
    return parse_detx(text, source=f"KM3NeT database (detector {det_id}, run {run})")
