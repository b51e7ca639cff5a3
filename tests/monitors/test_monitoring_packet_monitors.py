"""pmt_rates (rate and HRV images) as a real process, fed known monitoring packets via a ligier."""

from __future__ import annotations

import io
from pathlib import Path

import km3net_testdata
import matplotlib
import numpy as np
from PIL import Image

from km3mon.controlhost import Client
from km3mon.daq.monitoring import encode_monitoring_batch, new_packets
from km3mon.detector import read_detx
from km3mon.runtime.pmt_image import N_LEVELS
from tests.conftest import read_json, wait_subscribed, wait_until

ARCA21 = km3net_testdata.data_path("detx/KM3NeT_00000133_20221025.detx")
T0 = 1_700_000_000


def packets_for(
    detector, time_s: float, hot: tuple[int, int], veto: tuple[int, int]
) -> list[bytes]:
    packets = new_packets(len(detector.dom_ids))
    packets["dom_id"] = detector.dom_ids
    packets["run"] = 42
    packets["utc_seconds"] = int(time_s)
    packets["utc_16ns_cycles"] = int((time_s % 1) * 1e9 / 16)
    packets["hit_counts"] = 700  # 7 kHz
    hot_row = int(np.flatnonzero(detector.dom_ids == hot[0])[0])
    packets["hit_counts"][hot_row, hot[1]] = 5000  # 50 kHz
    veto_row = int(np.flatnonzero(detector.dom_ids == veto[0])[0])
    packets["hrv"][veto_row] = 1 << veto[1]
    return encode_monitoring_batch(packets)


def pixels_of(png: Path, colour: tuple[float, ...]) -> int:
    """Pixels of ``png`` drawn in ``colour`` (RGB in 0..1)."""
    rgb = np.asarray(Image.open(io.BytesIO(png.read_bytes())).convert("RGB")).astype(int)
    wanted = np.round(np.array(colour[:3]) * 255).astype(int)
    return int((np.abs(rgb - wanted) <= 2).all(axis=2).sum())


def test_hot_pmt_and_veto_show_in_the_right_pixel(ligier, spawn, tmp_path) -> None:
    detector = read_detx(ARCA21)
    plots, data = tmp_path / "plots", tmp_path / "data"
    common = ["--detx", ARCA21, "-p", ligier.port, "-o", plots, "--data-dir", data, "-i", "1",
              "--columns", "60"]  # fmt: skip
    rates = spawn("pmt_rates", *common)
    one_du = tmp_path / "one_du"  # a host split by DU
    one_du_rates = spawn("pmt_rates", *common, "-o", one_du, "--data-dir", tmp_path / "one_du_data",
                         "-u", int(detector.dom_du[0]))  # fmt: skip
    wait_subscribed(ligier.port, name="pmt_rates", count=2)
    optical = detector.dom_ids[detector.dom_floor > 0]
    hot, veto = (int(optical[100]), 17), (int(optical[3]), 4)
    with Client("127.0.0.1", ligier.port) as publisher:
        for step in range(35):  # 3.5 s of DAQ time: three closed 1 s columns
            payloads = packets_for(detector, T0 + 0.1 * step, hot, veto)
            publisher.publish_many([("IO_MONIT", p) for p in payloads])

    def flagged() -> list[dict]:
        return read_json(data / "metrics" / "pmt_rates.json").get("flagged", [])

    # the hot PMT twice: above the colour scale, and hot against its DOM's median
    wait_until(
        lambda: len(flagged()) == 3, timeout_s=60, what="the hot PMT and the veto", show=flagged
    )
    du, floor = detector.du_floor(hot[0])
    for kind in ("above", "hot"):
        assert {
            "kind": kind, "dom_id": hot[0], "du": du, "floor": floor, "channel": 17,
            "rate_hz": 50000.0, "hrv_fraction": 0.0, "dom_median_hz": 7000.0,
        } in flagged()  # fmt: skip
    veto_entry = next(f for f in flagged() if f["kind"] == "hrv")
    assert (veto_entry["dom_id"], veto_entry["channel"], veto_entry["hrv_fraction"]) == (
        veto[0], 4, 1.0,
    )  # fmt: skip
    medians = read_json(data / "metrics" / "pmt_rates.json")["median_rate_hz"]
    assert set(medians.values()) == {7000.0}
    dus = [int(d) for d in detector.dus]
    wanted = [plots / f"{kind}_du{d}.png" for kind in ("pmt_rates", "pmt_hrv") for d in dus]
    wait_until(
        lambda: all(path.exists() for path in wanted),
        timeout_s=90,
        what="21 rate and 21 HRV plots from one process",
        show=lambda: [path.name for path in wanted if not path.exists()],
    )
    # the vetoed PMT in the top colour of the HRV scale (fraction 1), only in its DU's image
    # (every image has that colour in its colour bar, the same number of pixels)
    vetoed = matplotlib.colormaps["viridis"]((N_LEVELS - 0.5) / N_LEVELS)
    veto_du = detector.du_floor(veto[0])[0]

    def top_colour_pixels() -> dict[int, int]:
        return {d: pixels_of(plots / f"pmt_hrv_du{d}.png", vetoed) for d in dus}

    def veto_drawn() -> bool:
        counts = top_colour_pixels()
        return counts[veto_du] > max(n for d, n in counts.items() if d != veto_du)

    wait_until(
        veto_drawn, what=f"the vetoed PMT in pmt_hrv_du{veto_du}.png", show=top_colour_pixels
    )
    assert len({n for d, n in top_colour_pixels().items() if d != veto_du}) == 1
    one_du_images = [one_du / f"{kind}_du{dus[0]}.png" for kind in ("pmt_rates", "pmt_hrv")]
    wait_until(lambda: all(p.exists() for p in one_du_images), what="one DU's rate and HRV plots")
    assert sorted(p.name for p in one_du.glob("*_du*.png")) == sorted(p.name for p in one_du_images)
    record_path = data / "freshness" / "pmt_rates.json"
    expected = 35 * len(detector.dom_ids)
    wait_until(
        lambda: read_json(record_path).get("messages") == expected,
        what=f"{expected} messages in the record (written every 2 s)",
        show=lambda: read_json(record_path).get("messages"),
    )
    record = read_json(record_path)
    assert record["unknown_doms"] == 0 and record["decode_errors"] == 0
    assert rates.alive() and one_du_rates.alive()
