"""The simulator's faults, seen by the real monitors: simulator → ligier → monitors."""

from __future__ import annotations

import time

import pytest

from km3mon.detector import read_detx
from km3mon.sim.sim_geometry import synthetic_detx
from km3mon.sim.simulator import Simulator
from tests.conftest import NEVER_LEAVE_OUT_S, read_json, wait_subscribed, wait_until

SEED = 3
SCENARIOS = "silent-dom@5,hot-pmt@0"


@pytest.mark.slow
def test_silent_dom_and_hot_pmt_show_up(ligier, spawn, tmp_path) -> None:
    detx = tmp_path / "two_dus.detx"
    detx.write_text(synthetic_detx(2))
    planned = Simulator(read_detx(detx), seed=SEED, scenarios=[SCENARIOS]).scenarios
    silent = next(s for s in planned if s.name == "silent-dom").dom_ids[0]
    hot = next(s for s in planned if s.name == "hot-pmt")
    data = tmp_path / "data"
    common = ["--detx", detx, "-p", ligier.port, "-o", tmp_path / "plots", "--data-dir", data]
    for name in ("dom_activity", "dom_rates"):
        spawn(name, *common, "-i", "1")
    spawn("pmt_rates", *common, "-i", "2", "--columns", "30")
    for name in ("dom_activity", "dom_rates", "pmt_rates"):
        wait_subscribed(ligier.port, name=name)
    simulator = spawn("simulate", "--detx", detx, "-p", ligier.port, "--speed", "40",
                      "--seed", SEED, "--scenario", SCENARIOS, "--simulated-seconds", 800,
                      "--max-lag", NEVER_LEAVE_OUT_S)  # fmt: skip

    activity = data / "metrics" / "dom_activity.json"

    def inactive() -> list[int] | None:
        return read_json(activity).get("inactive_dom_ids")

    wait_until(lambda: inactive() == [silent], 40, f"DOM {silent} inactive", show=inactive)

    def hot_flagged() -> bool:
        flagged = read_json(data / "metrics" / "pmt_rates.json").get("flagged", [])
        target = (hot.dom_ids[0], hot.channel)
        return any(f["kind"] == "above" and (f["dom_id"], f["channel"]) == target for f in flagged)

    wait_until(hot_flagged, timeout_s=120, what="the hot PMT above range")
    rates = read_json(data / "metrics" / "dom_rates.json")
    by_dom = dict(zip(rates["dom_id"], rates["rate_khz"], strict=True))
    assert by_dom[silent] is None, "no frames from the silent DOM: missing, not zero"
    others = [r for d, r in by_dom.items() if r is not None and d != hot.dom_ids[0]]
    assert by_dom[hot.dom_ids[0]] > max(others), "the hot PMT lifts its DOM's summed rate"
    assert simulator.alive() or simulator.popen.returncode == 0


@pytest.mark.slow
def test_trigger_rates_count_simulated_events_and_show_a_zero_rate(ligier, spawn, tmp_path) -> None:
    import csv
    import threading

    import numpy as np

    from km3mon.controlhost import Client
    from km3mon.daq import decode_events_hits
    from km3mon.daq.triggers import trigger_mask

    detx = tmp_path / "two_dus.detx"
    detx.write_text(synthetic_detx(2))
    pipeline = tmp_path / "pipeline.toml"
    pipeline.write_text("[TriggerRate]\ninterval = 10\n")
    data = tmp_path / "data"
    spawn("trigger_rates", "-p", ligier.port, "-o", tmp_path / "plots", "--data-dir", data,
          "--pipeline", pipeline)  # fmt: skip
    wait_subscribed(ligier.port, name="trigger_rates")
    received: list[bytes] = []
    collector = Client("127.0.0.1", ligier.port).connect()
    collector.subscribe("IO_EVT")
    done = threading.Event()

    def collect() -> None:
        while not done.is_set():
            received.extend(m.payload for m in collector.receive_batch(timeout=0.2))

    thread = threading.Thread(target=collect)
    thread.start()
    simulator = spawn("simulate", "--detx", detx, "-p", ligier.port, "--speed", "20",
                      "--seed", 5, "--event-rate", "20", "--scenario", "trigger-zero@60",
                      "--simulated-seconds", 120, "--max-lag", NEVER_LEAVE_OUT_S)  # fmt: skip
    wait_until(lambda: not simulator.alive(), timeout_s=120, what="the simulation to end")
    time.sleep(1)
    done.set()
    thread.join()
    collector.close()
    events, _ = decode_events_hits(received)
    times = events["utc_seconds"] + events["utc_16ns_cycles"] * 16e-9
    bins = (times // 10).astype(int)
    path = data / "trigger_rates.csv"
    wait_until(lambda: len(list(csv.DictReader(path.open()))) >= 8, what="8 closed intervals")
    rows = list(csv.DictReader(path.open()))
    for row in rows:  # rates are counts per live second (written with 6 digits)
        in_bin = events[bins == int(float(row["timestamp"])) // 10]
        live_s = float(row["live_s"])
        if live_s < 10:  # a partial interval: the first, or one where the simulation ran
            continue  # ahead of the wall clock before the time guard followed it
        assert round(float(row["Overall"]) * live_s) == len(in_bin)
        for name in ("3DMuon", "MXShower", "3DShower"):
            fired = np.count_nonzero(in_bin["trigger_mask"] & np.uint64(trigger_mask(name)))
            assert round(float(row[name]) * live_s) == fired
    assert sum(float(r["live_s"]) == 10 for r in rows) >= 6
    first = float(rows[0]["timestamp"])
    after_zero = [r for r in rows if float(r["timestamp"]) >= first + 70]
    assert after_zero and all(float(r["Overall"]) == 0 for r in after_zero), "zero, not a gap"
    assert any(float(r["Overall"]) > 0 for r in rows)
