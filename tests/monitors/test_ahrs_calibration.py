"""ahrs_calibration as a real process: yaw/pitch/roll follow the injected orientation."""

from __future__ import annotations

import km3net_testdata
import numpy as np
import pytest

from km3mon.controlhost import Client
from km3mon.daq.monitoring import encode_monitoring_batch, new_packets
from km3mon.detector import read_detx
from tests.conftest import read_json, wait_subscribed, wait_until

ARCA21 = km3net_testdata.data_path("detx/KM3NeT_00000133_20221025.detx")
T0 = 1_700_000_000


def sensor_vectors(yaw, pitch, roll) -> tuple[np.ndarray, np.ndarray]:
    """Accelerometer and magnetometer readings of a DOM with this orientation (degrees).

    Inverts the AHRS formulas of docs/daq-formats.md §7 for identity calibration:
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
    wait_subscribed(ligier.port, name="ahrs_calibration")

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


def calibration_files(folder, detector, uncalibrated: set[tuple[int, int]]):
    """clbmap, compass map and ahrscalib files for ``detector``: every optical DOM gets a
    compass with constants from the testdata table, except the (DU, floor) in
    ``uncalibrated``."""
    from km3mon.detector.ahrs import ahrscalib_rows, latest_per_compass

    ahrscalib = km3net_testdata.data_path("db/streamds_ahrscalib_1605699491.txt")
    with open(ahrscalib) as stream:
        serials = iter(sorted(latest_per_compass(ahrscalib_rows(stream.read()))))
    clbmap = ["DETOID\tDUID\tFLOORID\tSERIALNUMBER\tUPI\tDOMID"]
    compasses = ["CONTAINER_UPI\tCONTENT_UPI"]
    for dom_id, du, floor in zip(
        detector.dom_ids, detector.dom_du, detector.dom_floor, strict=True
    ):
        upi = f"3.4.3.2/V2-2-1/2.{dom_id}"
        clbmap.append(f"D_ARCA021\t{du}\t{floor}\t{dom_id}\t{upi}\t{dom_id}")
        if floor > 0 and (du, floor) not in uncalibrated:
            compasses.append(f"{upi}\t3.4.3.4/AHRS/1.{next(serials)}")
    (folder / "clbmap.txt").write_text("\n".join(clbmap) + "\n")
    (folder / "compass.txt").write_text("\n".join(compasses) + "\n")
    return folder / "clbmap.txt", folder / "compass.txt", ahrscalib


def grey_pixels_in_data_box(png) -> int:
    """Pixels of the uncalibrated marker's grey well inside the axes (no text there)."""
    from PIL import Image

    from km3mon.monitors.ahrs_calibration import UNCALIBRATED_COLOUR

    image = np.asarray(Image.open(png).convert("RGB"))
    height, width, _ = image.shape
    inner = image[int(0.2 * height) : int(0.85 * height), int(0.08 * width) : int(0.88 * width)]
    grey = tuple(int(UNCALIBRATED_COLOUR[i : i + 2], 16) for i in (1, 3, 5))
    return int(np.all(inner == grey, axis=-1).sum())


def test_doms_without_constants_are_drawn_apart_and_named(ligier, spawn, tmp_path) -> None:
    detector = read_detx(ARCA21)
    first, second = (int(du) for du in detector.dus[:2])
    missing = {(du, 5) for du in detector.dus} | {(first, 7)}
    clbmap, compass, ahrscalib = calibration_files(tmp_path, detector, missing)
    pipeline = tmp_path / "pipeline.toml"
    pipeline.write_text("[CalibrateAHRS]\ntime_range = 0.5\n")  # 0.9 s bins
    plots, data = tmp_path / "plots", tmp_path / "data"
    spawn("ahrs_calibration", "--detx", ARCA21, "-p", ligier.port, "-o", plots,
          "--data-dir", data, "-i", "1", "--pipeline", pipeline, "--clbmap", clbmap,
          "--compass-map", compass, "--ahrscalib", ahrscalib)  # fmt: skip
    wait_subscribed(ligier.port, name="ahrs_calibration")
    n = len(detector.dom_ids)
    a, h = sensor_vectors(np.full(n, 40.0), np.full(n, 2.0), np.full(n, -3.0))
    with Client("127.0.0.1", ligier.port) as publisher:
        for step in range(30):
            packets = new_packets(n)
            packets["dom_id"] = detector.dom_ids
            packets["utc_seconds"] = T0 + step // 10
            packets["utc_16ns_cycles"] = int((step % 10) * 0.1e9 / 16)
            packets["A"], packets["H"] = a, h
            publisher.publish_many([("IO_MONIT", p) for p in encode_monitoring_batch(packets)])

    metrics_path = data / "metrics" / "ahrs_calibration.json"
    wait_until(lambda: read_json(metrics_path).get("bin_start") is not None, what="a closed bin")
    metrics = read_json(metrics_path)
    assert metrics["calibrated"] is True
    expected = {str(du): [5, 7] if du == first else [5] for du in map(int, detector.dus)}
    assert metrics["uncalibrated_floors"] == expected
    no_constants = [d for d, du, f in zip(detector.dom_ids, detector.dom_du, detector.dom_floor,
                                          strict=True) if (du, f) in missing]  # fmt: skip
    assert sorted(metrics["uncalibrated_dom_ids"]) == sorted(int(d) for d in no_constants)

    for du, floors in ((first, 2), (second, 1)):
        png = plots / f"yaw_calib_du{du}.png"
        wait_until(png.exists, what=f"the yaw plot of DU {du}")
        wait_until(lambda p=png: grey_pixels_in_data_box(p) > 0, what="grey crosses drawn")
        crosses = grey_pixels_in_data_box(png)
        # a 5-pixel cross per uncalibrated floor and bin (some overlap): far more than noise
        assert crosses >= 5 * floors, (du, crosses)


def test_angles_are_kept_to_their_step_and_nan_stays_nan() -> None:
    from km3mon.runtime.binning import Int16Columns

    table = Int16Columns(4, 3, 0.02)
    table.store(1, np.array([359.987, -12.3456, np.nan, 1e6]))
    read = table.read(slice(None), 1)
    assert np.allclose(read[:2], [359.98, -12.34], atol=0.01 + 1e-9)
    assert np.isnan(read[2]), "no value stays no value"
    assert np.isnan(read[3]), "out of range is no value, never a wrapped-around angle"
    assert np.isnan(table.read(slice(None), 0)).all(), "a column never stored is empty"
    assert table.read(np.array([0, 1]), np.array([1, 2])).shape == (2, 2)
