"""AHRS: the math against km3modules' fit_ahrs, the tables, and the per-DOM calibration."""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pytest

from km3mon.detector import DetectorError, fit_ahrs, load_ahrs_calibration
from km3mon.detector.ahrs import (
    ahrscalib_rows,
    calibration_from_tables,
    latest_per_compass,
    read_clbmap,
    read_compass_map,
)

from .conftest import DB_DIR

AHRSCALIB = DB_DIR / "streamds_ahrscalib_1605699491.txt"
CLBMAP = DB_DIR / "clbmap.txt"


@pytest.fixture(scope="module")
def rows():
    return ahrscalib_rows(AHRSCALIB.read_text())


def _angle_difference_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs((np.asarray(a) - np.asarray(b) + 180.0) % 360.0 - 180.0)


def test_all_usable_rows_agree_with_km3modules(rows, io_monit_ah) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from km3modules.ahrs import fit_ahrs as km3modules_fit_ahrs
    assert len(rows) == 810
    _, a, h = io_monit_ah
    a_offset = np.array([r.a_offset for r in rows])
    a_rot = np.array([r.a_rot for r in rows])
    h_offset = np.array([r.h_offset for r in rows])
    h_rot = np.array([r.h_rot for r in rows])
    for packet in range(len(a)):  # every packet against every row, in one call each
        ours = fit_ahrs(a[packet], h[packet], a_offset, a_rot, h_offset, h_rot)
        expected = np.array(
            [km3modules_fit_ahrs(a[packet], h[packet], *_constants(r)) for r in rows]
        ).T
        for angle in range(3):
            assert _angle_difference_deg(ours[angle], expected[angle]).max() < 1e-9


def _constants(row):
    return row.a_offset, row.a_rot, row.h_offset, row.h_rot


def test_reference_values_of_the_format_notes(rows, io_monit_ah) -> None:
    _, a, h = io_monit_ah
    serial_42 = next(r for r in rows if r.serial == 42 and r.test_name.endswith("v3"))
    np.testing.assert_allclose(
        fit_ahrs(a[0], h[0], *_constants(serial_42)), (175.49, -0.29, 179.36), atol=0.005
    )
    identity = (np.zeros(3), np.eye(3), np.zeros(3), np.eye(3))
    np.testing.assert_allclose(fit_ahrs(a[0], h[0], *identity), (185.25, 0.47, 179.86), atol=0.005)


def test_angle_ranges_over_random_vectors() -> None:
    rng = np.random.default_rng(3)
    a, h = rng.normal(size=(2, 40_000, 3))
    yaw, pitch, roll = fit_ahrs(a, h, np.zeros(3), np.eye(3), np.zeros(3), np.eye(3))
    assert yaw.shape == (40_000,)
    assert np.all((yaw >= 0) & (yaw < 360))
    assert np.all((pitch >= -90) & (pitch <= 90))
    assert np.all((roll >= -180) & (roll <= 180))


def test_latest_calibration_per_compass(rows) -> None:
    latest = latest_per_compass(rows)
    assert len(latest) == len({r.serial for r in rows})
    for serial, chosen in latest.items():
        candidates = [r for r in rows if r.serial == serial]
        assert chosen.test_end == max(r.test_end for r in candidates)


def compass_map_text(clbmap_text: str, serials: list[int], skip_floor: int) -> str:
    """An integration table linking each optical CLB to a compass, and to a PMT for noise."""
    lines = ["CONTAINER_UPI\tCONTENT_UPI"]
    clbs = [c for c in read_clbmap(clbmap_text) if c.floor > 0 and c.floor != skip_floor]
    for clb, serial in zip(clbs, serials, strict=False):
        lines.append(f"{clb.clb_upi}\t3.4.3.4/AHRS/1.{serial}")
        lines.append(f"{clb.clb_upi}\t3.4.2.3/HAMAMATSU-R12199/2.{serial + 10_000}")
    return "\n".join(lines) + "\n"


def test_per_dom_calibration_marks_missing_constants(rows, io_monit_ah, caplog) -> None:
    clbmap_text = CLBMAP.read_text()
    serials = sorted({r.serial for r in rows})
    compass_map = read_compass_map(compass_map_text(clbmap_text, serials, skip_floor=5))
    calibration = calibration_from_tables(
        clbmap_text, compass_map, AHRSCALIB.read_text(), source="testdata"
    )
    clbs = read_clbmap(clbmap_text)
    optical = [c for c in clbs if c.floor > 0]
    assert len(clbs) == 57 and len(optical) == 54
    assert len(calibration.calibrated_dom_ids) == 54 - 3  # floor 5 of DUs 1, 3, 4 unmapped

    _, a, h = io_monit_ah
    dom_ids = np.array([c.dom_id for c in optical] + [1234])  # plus a foreign DOM
    packets_a = np.resize(a, (len(dom_ids), 3))
    packets_h = np.resize(h, (len(dom_ids), 3))
    with caplog.at_level(logging.WARNING):
        result = calibration.orientation(dom_ids, packets_a, packets_h)
        calibration.orientation(dom_ids, packets_a, packets_h)
    missing = [c.dom_id for c in optical if c.floor == 5] + [1234]
    np.testing.assert_array_equal(result.calibrated, ~np.isin(dom_ids, missing))
    assert caplog.text.count("no AHRS calibration for DOM") == len(missing)  # once per DOM

    latest = latest_per_compass(rows)
    by_upi = {c.dom_id: compass_map.get(c.clb_upi) for c in optical}
    for i, dom_id in enumerate(dom_ids):
        serial = by_upi.get(int(dom_id))
        constants = (
            _constants(latest[serial])
            if serial is not None
            else (np.zeros(3), np.eye(3), np.zeros(3), np.eye(3))
        )
        expected = fit_ahrs(packets_a[i], packets_h[i], *constants)
        got = (result.yaw_deg[i], result.pitch_deg[i], result.roll_deg[i])
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)


def test_files_are_used_when_the_database_is_not_reachable(tmp_path, monkeypatch) -> None:
    for variable in ("KM3NET_DB_COOKIE", "KM3NET_DB_COOKIE_FILE", "KM3NET_DB_USERNAME"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    compass = tmp_path / "compass.txt"
    compass.write_text(compass_map_text(CLBMAP.read_text(), [42, 43, 44], skip_floor=0))
    calibration = load_ahrs_calibration(49, clbmap=CLBMAP, compass_map=compass, ahrscalib=AHRSCALIB)
    assert len(calibration.calibrated_dom_ids) >= 1
    with pytest.raises(DetectorError, match="no AHRS calibration: no KM3NeT database credentials"):
        load_ahrs_calibration(49, clbmap=CLBMAP)
    with pytest.raises(DetectorError, match="cannot read"):
        load_ahrs_calibration(clbmap=CLBMAP, compass_map=compass, ahrscalib=tmp_path / "none")


def test_malformed_tables_name_the_problem() -> None:
    with pytest.raises(DetectorError, match="no column CONTENT_UPI"):
        read_compass_map("CONTAINER_UPI\tOTHER\na\tb\n", "map.txt")
    with pytest.raises(DetectorError, match=r"map.txt:2: 1 columns, header has 2"):
        read_compass_map("CONTAINER_UPI\tCONTENT_UPI\nonly-one\n", "map.txt")
    with pytest.raises(DetectorError, match="no serial number"):
        read_compass_map("CONTAINER_UPI\tCONTENT_UPI\nclb\t3.4/AHRS/x\n", "map.txt")
    with pytest.raises(DetectorError, match="not a clbmap table"):
        read_clbmap("A\tB\n1\t2\n")
