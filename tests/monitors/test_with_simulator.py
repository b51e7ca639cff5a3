"""The simulator's faults, seen by the real monitors: simulator → ligier → monitors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from km3mon.detector import read_detx
from km3mon.sim.sim_geometry import synthetic_detx
from km3mon.sim.simulator import Simulator
from tests.conftest import wait_until

SEED = 3
SCENARIOS = "silent-dom@5,hot-pmt@0"


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


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
        record = data / "freshness" / f"{name}.json"
        wait_until(lambda r=record: read_json(r).get("connected"), what=f"{name} connected")
    simulator = spawn("simulate", "--detx", detx, "-p", ligier.port, "--speed", "40",
                      "--seed", SEED, "--scenario", SCENARIOS, "--duration", "20")  # fmt: skip

    activity = data / "metrics" / "dom_activity.json"

    def inactive() -> list[int] | None:
        return read_json(activity).get("inactive_dom_ids")

    wait_until(lambda: inactive() == [silent], 40, f"DOM {silent} inactive", show=inactive)

    def hot_flagged() -> bool:
        flagged = read_json(data / "metrics" / "pmt_rates.json").get("flagged", [])
        target = (hot.dom_ids[0], hot.channel)
        return any(f["kind"] == "above" and (f["dom_id"], f["channel"]) == target for f in flagged)

    wait_until(hot_flagged, timeout_s=30, what="the hot PMT above range")
    rates = read_json(data / "metrics" / "dom_rates.json")
    by_dom = dict(zip(rates["dom_id"], rates["rate_khz"], strict=True))
    assert by_dom[silent] is None, "no frames from the silent DOM: missing, not zero"
    others = [r for d, r in by_dom.items() if r is not None and d != hot.dom_ids[0]]
    assert by_dom[hot.dom_ids[0]] > max(others), "the hot PMT lifts its DOM's summed rate"
    assert simulator.alive() or simulator.popen.returncode == 0
