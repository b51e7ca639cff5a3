"""ahrs_calibration as a real process: yaw/pitch/roll follow the injected orientation."""

from __future__ import annotations

import km3net_testdata
import numpy as np
import pytest

from km3mon.controlhost import Client
from km3mon.daq.monitoring import encode_monitoring_batch, new_packets
from km3mon.detector import read_detx
from tests.conftest import read_json, wait_until

ARCA21 = km3net_testdata.data_path("detx/KM3NeT_00000133_20221025.detx")
T0 = 1_700_000_000


def sensor_vectors(yaw, pitch, roll) -> tuple[np.ndarray, np.ndarray]:
    """Accelerometer and magnetometer readings of a DOM with this orientation (degrees).

    Inverts the AHRS formulas of shared/docs/daq-formats.md §5 for identity calibration:
    A is gravity tilted by pitch and roll; H is a horizontal field at angle yaw in the
    tilt-compensated frame. y and z are negated because the DOM hangs upside down.
    """
    y, p, r = (np.radians(np.asarray(v, float)) for v in (yaw, pitch, roll))
    a = np.stack([np.sin(p), np.cos(p) * np.sin(r), np.cos(p) * np.cos(r)], axis=-1)
    u = np.stack([np.cos(p), np.sin(p) * np.sin(r), np.sin(p) * np.cos(r)], axis=-1)
    v = np.stack([np.zeros_like(r), -np.cos(r), np.sin(r)], axis=-1)
    h_frame = np.cos(y)[..., None] * u + np.sin(y)[..., None] * v
    h = h_frame * np.array([1.0, -1.0, -1.0])
    return a, h


def angular_distance(a: float, b: float) -> float:
    return abs((a - b + 180.0) % 360.0 - 180.0)


def test_yaw_pitch_roll_follow_the_injected_orientation(ligier, spawn, tmp_path) -> None:
    detector = read_detx(ARCA21)
    pipeline = tmp_path / "pipeline.toml"
    pipeline.write_text("[CalibrateAHRS]\ntime_range = 0.5\n")  # 0.9 s bins
    plots, data = tmp_path / "plots", tmp_path / "data"
    monitor = spawn("ahrs_calibration", "--detx", ARCA21, "-p", ligier.port, "-o", plots,
                    "--data-dir", data, "-i", "1", "--pipeline", pipeline)  # fmt: skip
    record = data / "freshness" / "ahrs_calibration.json"
    wait_until(lambda: read_json(record).get("connected"), what="connected")

    n = len(detector.dom_ids)
    yaw = 20.0 + 10 * detector.dom_floor  # each floor its own heading
    pitch = np.full(n, 2.5)
    roll = np.full(n, -3.0)
    first = int(np.flatnonzero(detector.dom_floor == 1)[0])
    with Client("127.0.0.1", ligier.port) as publisher:
        for step in range(30):
            packets = new_packets(n)
            packets["dom_id"] = detector.dom_ids
            packets["utc_seconds"] = T0 + step // 10
            packets["utc_16ns_cycles"] = int((step % 10) * 0.1e9 / 16)
            step_yaw = yaw.copy()
            step_yaw[first] = 359.5 if step % 2 else 0.5  # wraps around north: mean 0, not 180
            a, h = sensor_vectors(step_yaw, pitch, roll)
            packets["A"], packets["H"] = a, h
            publisher.publish_many([("IO_MONIT", p) for p in encode_monitoring_batch(packets)])

    metrics_path = data / "metrics" / "ahrs_calibration.json"
    wait_until(lambda: read_json(metrics_path).get("bin_start") is not None, what="a closed bin")
    metrics = read_json(metrics_path)
    assert metrics["calibrated"] is False, "no constants given: says uncalibrated"
    by_dom = {d: i for i, d in enumerate(metrics["dom_id"])}
    optical = detector.dom_floor > 0
    assert len(by_dom) == int(optical.sum()), "base modules are skipped"
    for dom in np.flatnonzero(optical):
        row = by_dom[int(detector.dom_ids[dom])]
        expected_yaw = 0.0 if dom == first else yaw[dom]
        tolerance = 0.1 if dom == first else 1e-3  # a bin may hold one more 0.5° than 359.5°
        assert angular_distance(metrics["yaw_deg"][row], expected_yaw) < tolerance
        assert metrics["pitch_deg"][row] == pytest.approx(2.5, abs=1e-3)
        assert metrics["roll_deg"][row] == pytest.approx(-3.0, abs=1e-3)
    du = int(detector.dus[0])
    for name in ("yaw", "pitch", "roll"):
        wait_until(lambda n=name: (plots / f"{n}_calib_du{du}.png").exists(), what=f"{name} plot")
    assert "showing UNCALIBRATED yaw/pitch/roll" in monitor.log
    assert monitor.alive()
