"""Hit calibration: against km3pipe's Calibration on real events, and against a per-hit loop."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from km3mon.detector import (
    DatabaseUnavailable,
    DetectorError,
    RunCalibration,
    calibrate_hits,
    read_detx,
)

from .conftest import DETX_DIR

#: Both testdata DETX files of detector 44 cover every DOM of IO_EVT.dat (det 44, run 6760).
DET44_FILES = ["detx_v4.detx", "km3net_offline.detx"]


@pytest.mark.parametrize("name", DET44_FILES)
def test_io_evt_hits_agree_with_km3pipe_calibration(name: str, io_evt_hits) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from km3pipe.calib import Calibration
        from km3pipe.dataclasses import Table

        oracle = Calibration(filename=str(DETX_DIR / name))
    detector = read_detx(DETX_DIR / name)
    for hits in io_evt_hits:
        ours = calibrate_hits(detector, hits)
        table = Table(
            {
                "dom_id": hits["dom_id"],
                "channel_id": hits["channel"],
                "time": hits["time_ns"].astype(np.float64),
                "tot": hits["tot"],
            }
        )
        expected = oracle.apply(table, correct_slewing=False)
        assert ours["calibrated"].all()
        np.testing.assert_array_equal(ours["time_ns"], expected.time)
        np.testing.assert_array_equal(ours["t0_ns"], expected.t0)
        for axis in "xyz":
            np.testing.assert_array_equal(ours[f"pos_{axis}_m"], expected[f"pos_{axis}"])
            np.testing.assert_array_equal(ours[f"dir_{axis}"], expected[f"dir_{axis}"])
        np.testing.assert_array_equal(ours["du"], expected.du)
        np.testing.assert_array_equal(ours["floor"], expected.floor)
        np.testing.assert_array_equal(ours["tot"], hits["tot"])


def _per_hit(detector, dom_id: int, channel: int) -> tuple[int, float, np.ndarray] | None:
    """The straightforward lookup: walk the DOMs, then the PMTs, in file order."""
    for i, candidate in enumerate(detector.dom_ids):
        if candidate == dom_id and channel < detector.n_pmts[i]:
            row = detector.pmt_offset[i] + channel
            return int(detector.dom_floor[i]), detector.pmt_t0_ns[row], detector.pmt_pos_m[row]
    return None


def test_vectorised_equals_per_hit_with_foreign_hits() -> None:
    detector = read_detx(DETX_DIR / "KM3NeT_00000133_20221025.detx")
    rng = np.random.default_rng(7)
    n = 500
    hits = np.zeros(n, dtype=[("dom_id", "<i4"), ("channel_id", "u1"), ("time", "<u4")])
    hits["dom_id"] = rng.choice(detector.dom_ids, n)
    hits["dom_id"][::25] = 12345  # a foreign DOM
    hits["channel_id"] = rng.integers(0, 32, n)  # channel 31 does not exist
    hits["time"] = rng.integers(0, 10**8, n)
    out = calibrate_hits(detector, hits)
    for hit, calibrated in zip(hits, out, strict=True):
        expected = _per_hit(detector, int(hit["dom_id"]), int(hit["channel_id"]))
        if expected is None:
            assert not calibrated["calibrated"]
            assert np.isnan(calibrated["time"]) and calibrated["du"] == -1
        else:
            floor, t0_ns, pos_m = expected
            assert calibrated["calibrated"] and calibrated["floor"] == floor
            assert calibrated["time"] == hit["time"] + t0_ns
            assert (calibrated["pos_x_m"], calibrated["pos_y_m"], calibrated["pos_z_m"]) == tuple(
                pos_m
            )
    assert 0 < (~out["calibrated"]).sum() < n


def test_empty_hits_and_missing_fields() -> None:
    detector = read_detx(DETX_DIR / "detx_v4.detx")
    empty = np.zeros(0, dtype=[("dom_id", "<i4"), ("channel", "u1"), ("time_ns", "<u4")])
    assert len(calibrate_hits(detector, empty)) == 0
    with pytest.raises(DetectorError, match="hits need dom_id, channel and time_ns"):
        calibrate_hits(detector, np.zeros(3, dtype=[("dom_id", "<i4"), ("tot", "u1")]))


class FakeDatabase:
    """Answers ``detx`` from a text, or fails as an unreachable database does."""

    def __init__(self, text: str | None) -> None:
        self.text = text
        self.calls: list[tuple[int, int | None]] = []

    def detx(self, det_id: int, run: int | None = None) -> str:
        self.calls.append((det_id, run))
        if self.text is None:
            raise DatabaseUnavailable("KM3NeT database not reachable")
        return self.text


def test_run_calibration_uses_the_database_once_per_run() -> None:
    file_detector = read_detx(DETX_DIR / "km3net_offline.detx")
    database = FakeDatabase((DETX_DIR / "detx_v4.detx").read_text())
    calibration = RunCalibration(file_detector, database=database)  # type: ignore[arg-type]
    assert calibration.for_run(6760).version == 4
    assert calibration.for_run(6760).version == 4
    assert database.calls == [(44, 6760)]


def test_run_calibration_falls_back_and_retries_later(caplog) -> None:
    now = [0.0]
    file_detector = read_detx(DETX_DIR / "km3net_offline.detx")
    database = FakeDatabase(None)
    calibration = RunCalibration(
        file_detector,
        database=database,  # type: ignore[arg-type]
        retry_s=60,
        clock=lambda: now[0],
    )
    assert calibration.for_run(1) is file_detector
    assert "keeping calibration from" in caplog.text
    now[0] = 30.0
    calibration.for_run(1)
    assert len(database.calls) == 1  # not before the retry delay
    now[0] = 61.0
    database.text = (DETX_DIR / "detx_v4.detx").read_text()
    assert calibration.for_run(1).version == 4
    assert len(database.calls) == 2
    assert calibration.for_run(2).version == 4  # a new run asks again at once
    assert database.calls[-1] == (44, 2)


def test_run_calibration_without_database_applies_the_file(io_evt_hits) -> None:
    detector = read_detx(DETX_DIR / "detx_v4.detx")
    calibrated = RunCalibration(detector).apply(io_evt_hits[0], run=6760)
    np.testing.assert_array_equal(calibrated, calibrate_hits(detector, io_evt_hits[0]))
