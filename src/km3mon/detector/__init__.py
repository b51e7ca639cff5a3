"""Detector geometry, hit calibration and AHRS orientation, from files or the KM3NeT database.

Monitors use :func:`load_detector` (``--detx FILE``, ``$DETX``, else the database) and the
batch lookups of :class:`Detector`; ztplot uses :class:`RunCalibration`; ahrs_calibration uses
:func:`load_ahrs_calibration`. Every failure is a :class:`DetectorError` telling the operator
what to provide.
"""

from km3mon.detector.ahrs import (
    AHRSCalibration,
    AHRSConstants,
    Orientation,
    fit_ahrs,
    load_ahrs_calibration,
)
from km3mon.detector.calibration import CALIBRATION_FIELDS, RunCalibration, calibrate_hits
from km3mon.detector.database import Database, DatabaseUnavailable
from km3mon.detector.detx import parse_detx, read_detx
from km3mon.detector.errors import DetectorError
from km3mon.detector.geometry import ChannelOrder, Detector, DOMLocation
from km3mon.detector.source import load_detector

__all__ = [
    "CALIBRATION_FIELDS",
    "AHRSCalibration",
    "AHRSConstants",
    "ChannelOrder",
    "DOMLocation",
    "Database",
    "DatabaseUnavailable",
    "Detector",
    "DetectorError",
    "Orientation",
    "RunCalibration",
    "calibrate_hits",
    "fit_ahrs",
    "load_ahrs_calibration",
    "load_detector",
    "parse_detx",
    "read_detx",
]
