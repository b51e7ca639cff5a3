"""``km3mon quality`` fed a simulated ARCA-21 and, for half a minute, about 200 messages a
second of mutated real payloads (the monitors' fuzzer): it must not crash, must count what it
cannot use, and must not record a run the stream never had nor a quantity out of its range."""

from __future__ import annotations

import math
import threading
import time

import pytest

from km3mon.quality.store import QualityStore
from tests.conftest import read_json, wait_subscribed, wait_until
from tests.monitors.test_fuzz import ARCA21, Fuzzer

FUZZ_S = 30.0
FRACTIONS = ("daq", "whiterabbitstatus", "out_sync", "hrv", "fifo", "pmts_norm")


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_quality_stays_truthful_under_fuzzing(ligier, spawn, tmp_path) -> None:
    data = tmp_path / "data"
    quality = spawn("quality", "--detx", ARCA21, "-p", ligier.port, "-o", tmp_path / "plots",
                    "--data-dir", data, "-i", 2)  # fmt: skip
    wait_subscribed(ligier.port, name="quality")
    started = time.time()
    spawn("simulate", "--detx", ARCA21, "-p", ligier.port, "--no-timeslices", "--seed", 5)
    stop = threading.Event()
    fuzzer = Fuzzer(ligier.port, stop)
    fuzzer.start()
    time.sleep(FUZZ_S)
    stop.set()
    fuzzer.join(10)
    record_path = data / "freshness" / "quality.json"
    wait_until(lambda: read_json(record_path).get("decode_errors", 0) > 0, 30,
               "unusable payloads counted", show=lambda: read_json(record_path))  # fmt: skip
    time.sleep(3)  # one more render
    assert quality.alive(), quality.log[-2000:]
    elapsed_s = time.time() - started
    with QualityStore(data, readonly=True) as store:
        records = store.records()
    assert [r["run"] for r in records] == [10_000], [r["run"] for r in records]
    quantities = records[0]["quantities"]
    assert 0 < quantities["livetime_s"] <= elapsed_s + 1
    assert started - 5 <= quantities["utc_min"] <= quantities["utc_max"] <= time.time() + 5
    for name in FRACTIONS:
        value = quantities[name]
        assert value is None or 0.0 <= value <= 1.0, (name, value)
    assert math.isfinite(quantities["meanrate"]) and quantities["doms_expected"] == 378
