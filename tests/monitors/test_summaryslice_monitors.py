"""dom_activity and dom_rates as real processes, fed known summary slices through a ligier."""

from __future__ import annotations

import time

import km3net_testdata
import numpy as np
import pytest

from km3mon.controlhost import Client
from km3mon.daq.summaryslice import RATES_HZ_LUT, hz_to_rates
from km3mon.detector import read_detx
from tests.conftest import read_json, wait_subscribed, wait_until
from tests.monitors.daqfakes import T0, UNKNOWN_DOM, slice_payload

ARCA21 = km3net_testdata.data_path("detx/KM3NeT_00000133_20221025.detx")


@pytest.fixture(scope="module")
def detector():
    return read_detx(ARCA21)


def test_dom_rates_and_activity_show_what_was_injected(ligier, spawn, tmp_path, detector) -> None:
    plots, data = tmp_path / "plots", tmp_path / "data"
    common = ["--detx", ARCA21, "-p", ligier.port, "-o", plots, "--data-dir", data, "-i", "0.5"]
    rates = spawn("dom_rates", *common)
    activity = spawn("dom_activity", *common)
    for name in ("dom_rates", "dom_activity"):
        record = data / "freshness" / f"{name}.json"
        wait_subscribed(ligier.port, name=name)

    optical = detector.dom_ids[detector.dom_floor > 0]
    silent, hot = int(optical[5]), int(optical[40])
    start = float(int(time.time()) - 600)  # live data: a 400 s jump in DAQ time is plausible
    slices = [slice_payload(detector, start + 0.1 * step, {hot: 20e3}, set()) for step in range(10)]
    slices += [  # 400 s later the silent DOM has stopped sending
        slice_payload(detector, start + 400 + 0.1 * step, {hot: 20e3}, {silent})
        for step in range(3)
    ]
    with Client("127.0.0.1", ligier.port) as publisher:  # one batch: no render in between
        publisher.publish_many([("IO_SUM", payload) for payload in slices])

    inactive_log = f"inactive > 300 s: {silent} (DU"
    wait_until(lambda: inactive_log in activity.log, timeout_s=60, what="the silent DOM reported")
    wait_until(
        lambda: (
            read_json(data / "metrics" / "dom_activity.json").get("inactive_dom_ids") == [silent]
        ),
        what="the silent DOM in the activity metrics",
    )
    metrics = read_json(data / "metrics" / "dom_activity.json")
    since = dict(zip(metrics["dom_id"], metrics["inactive_s"], strict=True))
    assert since[silent] == pytest.approx(400.2 - 0.9, abs=0.01)
    assert since[hot] == 0
    assert metrics["data_time"] == pytest.approx(start + 400.2, abs=1e-3)

    expected_normal = 31 * RATES_HZ_LUT[hz_to_rates(np.array([7000.0]))[0]] / 1000
    expected_hot = 31 * RATES_HZ_LUT[hz_to_rates(np.array([20e3]))[0]] / 1000
    seen: dict[int, float] = {}

    def rates_rendered() -> bool:
        metrics = read_json(data / "metrics" / "dom_rates.json")
        for dom_id, rate in zip(
            metrics.get("dom_id", []), metrics.get("rate_khz", []), strict=True
        ):
            if rate is not None:
                seen[dom_id] = rate
        return hot in seen and int(optical[0]) in seen

    wait_until(rates_rendered, what="dom rates")
    assert seen[int(optical[0])] == pytest.approx(expected_normal, rel=1e-6)
    assert seen[hot] == pytest.approx(expected_hot, rel=1e-6)
    assert expected_hot > 400 > expected_normal > 200, "hot above, normal inside [DOMRates]"

    for name in ("dom_rates", "dom_activity"):
        path = data / "freshness" / f"{name}.json"
        wait_until(lambda p=path: read_json(p).get("unknown_doms") == 13, what="13 unknown")
        record = read_json(path)
        assert record["decode_errors"] == 0
        assert (plots / f"{name}.png").read_bytes().startswith(b"\x89PNG")
    assert rates.alive() and activity.alive()
    assert "DOM ids not in detector 133" in rates.log and f"{UNKNOWN_DOM}" in rates.log


def test_corrupt_summary_slices_are_counted_and_skipped(ligier, spawn, tmp_path, detector) -> None:
    data = tmp_path / "data"
    monitor = spawn("dom_rates", "--detx", ARCA21, "-p", ligier.port, "-o", tmp_path / "plots",
                    "--data-dir", data, "-i", "0.5")  # fmt: skip
    record = data / "freshness" / "dom_rates.json"
    wait_subscribed(ligier.port, name="dom_rates")
    rng = np.random.default_rng(1)
    good = slice_payload(detector, T0, {}, set())
    with Client("127.0.0.1", ligier.port) as publisher:
        publisher.publish_many([("IO_SUM", rng.bytes(300)) for _ in range(20)])
        publisher.publish_many([("IO_SUM", good[: len(good) // 2]), ("IO_SUM", good)])
    wait_until(lambda: read_json(record).get("messages") == 22, what="22 messages")
    wait_until(lambda: read_json(record).get("decode_errors") == 21, what="21 errors")
    assert monitor.alive()
    assert "summary slice unusable" in monitor.log
    assert monitor.log.count("summary slice unusable") == 1, "rate limited"


def test_a_dom_not_seen_yet_is_not_called_inactive_in_the_first_minutes(
    ligier, spawn, tmp_path, detector
) -> None:
    data = tmp_path / "data"
    activity = spawn("dom_activity", "--detx", ARCA21, "-p", ligier.port, "-o", tmp_path / "plots",
                     "--data-dir", data, "-i", "0.5")  # fmt: skip
    wait_subscribed(ligier.port, name="dom_activity")
    absent = int(detector.dom_ids[detector.dom_floor > 0][7])
    start = float(int(time.time()) - 900)
    metrics_path = data / "metrics" / "dom_activity.json"
    with Client("127.0.0.1", ligier.port) as publisher:  # the first minute of data
        publisher.publish_many(
            [("IO_SUM", slice_payload(detector, start + s, {}, {absent})) for s in range(60)]
        )
        wait_until(lambda: read_json(metrics_path).get("data_time") == start + 59, what="a minute")
        metrics = read_json(metrics_path)
        assert metrics["inactive_dom_ids"] == []
        assert metrics["not_seen_since_start_dom_ids"] == [absent]
        publisher.publish_many(  # five minutes later it has still not sent anything
            [("IO_SUM", slice_payload(detector, start + s, {}, {absent})) for s in (300, 361)]
        )
    wait_until(lambda: read_json(metrics_path).get("data_time") == start + 361, what="6 minutes")
    metrics = read_json(metrics_path)
    assert metrics["inactive_dom_ids"] == [absent]
    assert metrics["not_seen_since_start_dom_ids"] == []
    wait_until(lambda: f"inactive > 300 s: {absent}" in activity.log, what="reported once due")
    assert activity.log.count("inactive > 300 s") == 1
