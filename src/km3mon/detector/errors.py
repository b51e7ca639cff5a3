"""The one exception type of the detector layer."""

from __future__ import annotations


class DetectorError(Exception):
    """Geometry, calibration or database data is missing or malformed.

    Messages name the file and line, or the missing source, and say what the operator can do.
    """
