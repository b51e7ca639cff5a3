"""AHRS orientation of DOMs: yaw, pitch and roll from the compass board's A and H vectors.

The math is km3modules' ``fit_ahrs`` (``docs/daq-formats.md`` §7), vectorised over packets. Each
compass needs calibration constants (accelerometer and magnetometer offsets and rotation
matrices), found through three tables that exist both in the KM3NeT database and as text dumps:

* ``clbmap`` (StreamDS): DOM id → DU, floor, CLB UPI;
* ``integration`` (StreamDS): CLB UPI (``CONTAINER_UPI``) → compass UPI (``CONTENT_UPI`` holding
  ``AHRS`` or ``LSM303``); the compass serial number is the UPI's last ``.``-separated part;
* ``ahrscalib`` (StreamDS): calibration test results per compass serial; the latest usable test
  (by ``TESTEND``, then ``REVTIMEORDER``) is used. ``Aoff = ACC_OFFSET_*``, ``Arot = ACC_ROT_*``,
  ``Hoff`` = centre of ``MAG_*MIN``/``MAG_*MAX``, ``Hrot = MAG_ROT_*`` (row ``r``, column ``c`` from
  the ``_RC`` suffix).

DOMs without constants get identity constants and ``calibrated = False`` (logged once per DOM).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from km3mon.detector.database import OPERATOR_HINT, Database, DatabaseUnavailable, parse_table
from km3mon.detector.errors import DetectorError
from km3mon.detector.geometry import IdIndex

log = logging.getLogger(__name__)

AXES = "XYZ"
COMPASS_UPI_MARKERS = ("AHRS", "LSM303")


def fit_ahrs(
    a: np.ndarray,
    h: np.ndarray,
    a_offset: np.ndarray,
    a_rot: np.ndarray,
    h_offset: np.ndarray,
    h_rot: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Yaw in [0, 360), pitch in [-90, 90] and roll in (-180, 180], all in degrees.

    ``a``, ``h`` and the offsets have shape (..., 3), the rotations (..., 3, 3); constants
    broadcast, so one set can serve many packets. The calibrated vector is the row vector
    ``(v - offset) @ rot``; y and z are then negated because the DOM hangs upside down.
    """
    acc = np.einsum("...i,...ij->...j", np.asarray(a, float) - a_offset, a_rot)
    mag = np.einsum("...i,...ij->...j", np.asarray(h, float) - h_offset, h_rot)
    ax, ay, az = acc[..., 0], -acc[..., 1], -acc[..., 2]
    hx, hy, hz = mag[..., 0], -mag[..., 1], -mag[..., 2]
    roll = np.arctan2(-ay, -az)
    pitch = np.arctan2(ax, np.sqrt(ay * ay + az * az))
    sin_roll, cos_roll = np.sin(roll), np.cos(roll)
    sin_pitch = np.sin(pitch)
    yaw = np.arctan2(
        hz * sin_roll - hy * cos_roll,
        hx * np.cos(pitch) + hy * sin_pitch * sin_roll + hz * sin_pitch * cos_roll,
    )
    yaw_deg = np.degrees(yaw)
    return np.where(yaw_deg < 0, yaw_deg + 360.0, yaw_deg), np.degrees(pitch), np.degrees(roll)


@dataclass(frozen=True)
class AHRSConstants:
    """Calibration constants of one compass, from one calibration test."""

    serial: int
    test_name: str
    test_end: str
    rev_time_order: int
    a_offset: np.ndarray
    a_rot: np.ndarray
    h_offset: np.ndarray
    h_rot: np.ndarray


IDENTITY_CONSTANTS = AHRSConstants(
    serial=-1,
    test_name="none",
    test_end="",
    rev_time_order=0,
    a_offset=np.zeros(3),
    a_rot=np.eye(3),
    h_offset=np.zeros(3),
    h_rot=np.eye(3),
)


def ahrscalib_rows(text: str, source: str = "ahrscalib") -> list[AHRSConstants]:
    """All usable rows (complete numeric constants) of a StreamDS ``ahrscalib`` table."""
    usable = []
    for row in parse_table(text, source):
        try:
            a_offset = [float(row[f"ACC_OFFSET_{axis}"]) for axis in AXES]
            a_rot = [[float(row[f"ACC_ROT_{r}{c}"]) for c in AXES] for r in AXES]
            h_rot = [[float(row[f"MAG_ROT_{r}{c}"]) for c in AXES] for r in AXES]
            h_offset = [
                (float(row[f"MAG_{axis}MIN"]) + float(row[f"MAG_{axis}MAX"])) / 2 for axis in AXES
            ]
            serial = int(row["SERIALNUMBER"])
        except ValueError:  # empty cells: a test without results
            continue
        except KeyError as err:
            raise DetectorError(f"{source}: no column {err.args[0]} in the header") from None
        usable.append(
            AHRSConstants(
                serial=serial,
                test_name=row["TESTNAME"],
                test_end=row["TESTEND"],
                rev_time_order=int(row["REVTIMEORDER"] or 0),
                a_offset=np.array(a_offset),
                a_rot=np.array(a_rot),
                h_offset=np.array(h_offset),
                h_rot=np.array(h_rot),
            )
        )
    return usable


def latest_per_compass(rows: list[AHRSConstants]) -> dict[int, AHRSConstants]:
    """The most recent calibration of each compass (latest TESTEND, then REVTIMEORDER 1 first)."""
    latest: dict[int, AHRSConstants] = {}
    for row in sorted(rows, key=lambda r: (r.test_end, -r.rev_time_order)):
        latest[row.serial] = row
    return latest


@dataclass(frozen=True)
class CLBRecord:
    """One line of the CLB map."""

    dom_id: int
    du: int
    floor: int
    clb_upi: str


def read_clbmap(text: str, source: str = "clbmap") -> list[CLBRecord]:
    """Rows of a StreamDS ``clbmap`` table (DETOID, DUID, FLOORID, SERIALNUMBER, UPI, DOMID)."""
    try:
        return [
            CLBRecord(int(row["DOMID"]), int(row["DUID"]), int(row["FLOORID"]), row["UPI"])
            for row in parse_table(text, source)
        ]
    except (KeyError, ValueError) as err:
        raise DetectorError(f"{source}: not a clbmap table ({err})") from None


def read_compass_map(text: str, source: str = "compass map") -> dict[str, int]:
    """CLB UPI → compass serial from a StreamDS ``integration`` table.

    Columns used: CONTAINER_UPI (the CLB) and CONTENT_UPI (the compass, among other parts).
    """
    mapping: dict[str, int] = {}
    for row in parse_table(text, source):
        try:
            container, content = row["CONTAINER_UPI"], row["CONTENT_UPI"]
        except KeyError as err:
            raise DetectorError(f"{source}: no column {err.args[0]} in the header") from None
        if any(marker in content for marker in COMPASS_UPI_MARKERS):
            mapping.setdefault(container, _compass_serial(content, source))
    return mapping


def _compass_serial(upi: str, source: str) -> int:
    try:
        return int(upi.rsplit(".", 1)[-1])
    except ValueError:
        raise DetectorError(f"{source}: no serial number at the end of UPI {upi!r}") from None


@dataclass(frozen=True)
class Orientation:
    """Yaw, pitch, roll (degrees) per packet; ``calibrated`` False where constants were missing."""

    yaw_deg: np.ndarray
    pitch_deg: np.ndarray
    roll_deg: np.ndarray
    calibrated: np.ndarray


@dataclass(eq=False)
class AHRSCalibration:
    """Calibration constants of every optical DOM of a detector, as arrays for batch fits."""

    clbs: list[CLBRecord]
    constants: Mapping[int, AHRSConstants]
    source: str = "<memory>"
    _dom_ids: np.ndarray = field(init=False, repr=False)
    _index: IdIndex = field(init=False, repr=False)
    _stacked: tuple[np.ndarray, ...] = field(init=False, repr=False)
    _has_constants: np.ndarray = field(init=False, repr=False)
    _warned: set[int] = field(init=False, repr=False, default_factory=set)

    def __post_init__(self) -> None:
        optical = sorted(
            (clb.dom_id, self.constants.get(clb.dom_id)) for clb in self.clbs if clb.floor > 0
        )
        self._dom_ids = np.array([dom_id for dom_id, _ in optical], dtype=np.int64)
        self._index = IdIndex(self._dom_ids)
        # one identity row appended at the end: index -1 (a foreign DOM) lands on it
        chosen = [found or IDENTITY_CONSTANTS for _, found in optical] + [IDENTITY_CONSTANTS]
        self._has_constants = np.array([found is not None for _, found in optical] + [False])
        self._stacked = tuple(
            np.array([getattr(c, name) for c in chosen])
            for name in ("a_offset", "a_rot", "h_offset", "h_rot")
        )

    @property
    def calibrated_dom_ids(self) -> np.ndarray:
        """DOMs with calibration constants."""
        return self._dom_ids[self._has_constants[:-1]]

    def orientation(self, dom_ids: np.ndarray, a: np.ndarray, h: np.ndarray) -> Orientation:
        """Yaw/pitch/roll for packets of the given DOMs (``a``, ``h`` of shape (n, 3))."""
        dom_ids = np.asarray(dom_ids, dtype=np.int64)
        index = self._index.lookup(dom_ids)
        calibrated = self._has_constants[index]
        self._warn_once(dom_ids[~calibrated])
        a_offset, a_rot, h_offset, h_rot = (stack[index] for stack in self._stacked)
        yaw, pitch, roll = fit_ahrs(a, h, a_offset, a_rot, h_offset, h_rot)
        return Orientation(yaw, pitch, roll, calibrated)

    def _warn_once(self, dom_ids: np.ndarray) -> None:
        for dom_id in np.unique(dom_ids).tolist():
            if dom_id not in self._warned:
                self._warned.add(dom_id)
                log.warning(
                    "no AHRS calibration for DOM %d (%s): showing uncalibrated values",
                    dom_id,
                    self.source,
                )


def calibration_from_tables(
    clbmap_text: str, compass_map: Mapping[str, int], ahrscalib_text: str, source: str
) -> AHRSCalibration:
    """Join the three tables into per-DOM constants."""
    clbs = read_clbmap(clbmap_text, f"{source} clbmap")
    latest = latest_per_compass(ahrscalib_rows(ahrscalib_text, f"{source} ahrscalib"))
    constants = {
        clb.dom_id: latest[compass_map[clb.clb_upi]]
        for clb in clbs
        if clb.clb_upi in compass_map and compass_map[clb.clb_upi] in latest
    }
    return AHRSCalibration(clbs=clbs, constants=constants, source=source)


def load_ahrs_calibration(
    det_id: int | None = None,
    *,
    clbmap: str | Path | None = None,
    compass_map: str | Path | None = None,
    ahrscalib: str | Path | None = None,
    database: Database | None = None,
) -> AHRSCalibration:
    """AHRS constants from the database when reachable, else from the three local files."""
    files = (clbmap, compass_map, ahrscalib)
    reason = "no detector id for a database query"
    if det_id is not None:
        try:
            return _calibration_from_database(database or Database(), det_id)
        except DatabaseUnavailable as err:
            reason = str(err)
            log.warning("AHRS constants not from the database: %s", err)
    if any(path is None for path in files):
        raise DetectorError(
            f"no AHRS calibration: {reason}; give --clbmap, --compass-map and --ahrscalib files "
            f"or {OPERATOR_HINT}"
        )
    texts = [_read(path) for path in files]  # type: ignore[arg-type]
    return calibration_from_tables(
        texts[0], read_compass_map(texts[1], str(compass_map)), texts[2], source=str(ahrscalib)
    )


def _calibration_from_database(database: Database, det_id: int) -> AHRSCalibration:
    clbmap_text = database.stream("clbmap", detoid=database.det_oid(det_id))
    compass_map: dict[str, int] = {}
    for clb in read_clbmap(clbmap_text, "database clbmap"):
        if clb.floor > 0:
            integration = database.stream("integration", container_upi=clb.clb_upi)
            compass_map.update(read_compass_map(integration, f"database integration {clb.clb_upi}"))
    return calibration_from_tables(
        clbmap_text, compass_map, database.stream("ahrscalib"), source="KM3NeT database"
    )


def _read(path: str | Path) -> str:
    try:
        return Path(path).read_text()
    except OSError as err:
        raise DetectorError(f"cannot read {path}: {err.strerror}") from err
