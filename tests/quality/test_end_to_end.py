"""``km3mon quality`` through a real ligier, fed by the simulator's scenarios run after run, its
numbers checked against an independent count of a recording of the same stream (km3pipe's
parser), its verdicts exported by ``km3mon grl``, an override made on the dashboard and kept
across a restart."""

from __future__ import annotations

import io
import json
import subprocess
from pathlib import Path

import httpx
import km3net_testdata
import km3pipe.io.daq as kd
import pytest

from km3mon.daq.files import iter_file
from km3mon.quality.store import QualityStore
from km3mon.sim.scenarios import HRV_STORM_FRACTION
from tests.conftest import (
    KM3MON,
    NEVER_LEAVE_OUT_S,
    free_port,
    wait_for_port,
    wait_subscribed,
    wait_until,
)
from tests.web.sites import AUTH

ARCA21 = km3net_testdata.data_path("detx/KM3NeT_00000133_20221025.detx")
FIRST_RUN = 10_000
RUN_S = 30.0  # simulated seconds per run (--run-minutes 0.5)
#: Scenario of each run after the clean ones (the first runs may be cut short while the
#: simulator starts up); the last run is cut short on purpose.
SCENARIOS = {3: "du-loss", 4: "trigger-zero", 5: "hrv-storm", 6: "wr-loss"}
SHORT_RUN = FIRST_RUN + 7
SPEED = 2.0
PIPELINE = f"""[WebServer]
username = "{AUTH[0]}"
password = "{AUTH[1]}"

[Quality]
min_livetime_s = 20.0
end_after_s = 8.0
"""


def independent_count(path: Path) -> dict[int, dict[str, float]]:
    """Per run, from the recording with km3pipe's summary-slice parser: live time (distinct
    timeslices x 0.1 s), hrv, daq and the fraction of frames without White Rabbit."""
    runs: dict[int, dict] = {}
    for message in iter_file(path):
        if message.tag != "IO_SUM":
            continue
        stream = io.BytesIO(message.payload)
        kd.DAQPreamble(file_obj=stream)
        summary = kd.DAQSummaryslice(stream)
        run = runs.setdefault(summary.header.run, {"slices": set(), "frames": 0, "hrv": 0,
                                                   "complete": 0, "no_wr": 0})  # fmt: skip
        run["slices"].add(summary.header.time_slice)
        for dom_id in summary.summary_frames:
            # km3pipe gives the status words as signed ints and the daq word as raw bytes
            status, fifo = (word & 0xFFFFFFFF for word in summary.dom_status[dom_id][:2])
            daq = int.from_bytes(summary.dq_status[dom_id], "little")
            run["frames"] += 1
            run["hrv"] += bin(status & 0x7FFFFFFF).count("1")
            run["no_wr"] += not status >> 31
            run["complete"] += (daq & 0xFFFF) == (daq >> 16) + 1 and fifo >> 31 == 1
    return {
        number: {
            "livetime_s": len(run["slices"]) * 0.1,
            "hrv": run["hrv"] / (31 * run["frames"]),
            "daq": run["complete"] / run["frames"],
            "no_white_rabbit": run["no_wr"] / run["frames"],
        }
        for number, run in runs.items()
    }


def grl(data: Path, *extra: str) -> dict:
    result = subprocess.run([*KM3MON, "grl", "--data-dir", str(data), "--format", "json",
                             *extra], capture_output=True, text=True, check=True)  # fmt: skip
    return json.loads(result.stdout)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_scenario_runs_get_their_verdicts_and_counts(spawn, ligier, tmp_path: Path) -> None:
    pipeline = tmp_path / "pipeline.toml"
    pipeline.write_text(PIPELINE)
    data, plots = tmp_path / "data", tmp_path / "plots"
    common = ["-p", ligier.port, "--detx", ARCA21, "--data-dir", data, "-o", plots, "-i", 2,
              "--pipeline", pipeline]  # fmt: skip
    quality = spawn("quality", *common)
    recording = tmp_path / "stream.dat"
    spawn("record", "-p", ligier.port, "-m", "IO_SUM", "--mode", "all", "-o", recording)
    wait_subscribed(ligier.port, name="quality")
    wait_subscribed(ligier.port, "IO_SUM", count=2)
    scenarios = ",".join(
        f"{name}@{run * RUN_S:g}-{(run + 1) * RUN_S:g}" for run, name in SCENARIOS.items()
    )
    # Every timeslice sent, however loaded the machine: the clean runs must reach the
    # livetime and active-DOM limits (a simulator behind the clock leaves timeslices out, as
    # the DAQ would, and both clean runs were judged bad beside another test run).
    simulator = spawn("simulate", "--detx", ARCA21, "-p", ligier.port, "--seed", 7,
                      "--run-minutes", RUN_S / 60, "--speed", SPEED,
                      "--max-lag", NEVER_LEAVE_OUT_S, "--scenario", scenarios)  # fmt: skip

    def seen() -> list[int]:
        if not (data / "quality.sqlite3").exists():
            return []
        with QualityStore(data, readonly=True) as store:
            return sorted(r["run"] for r in store.records())

    # The short run is cut by stopping the simulator as soon as quality records it: a
    # --duration in wall seconds fell short of it when a loaded machine made the simulator
    # skip timeslices. Read from the store, not by `km3mon grl`: seconds matter here.
    simulated_s = (SHORT_RUN - FIRST_RUN) * RUN_S
    wait_until(lambda: SHORT_RUN in seen(), simulated_s / SPEED + 300, "the short run begun",
               show=seen)  # fmt: skip
    simulator.stop()

    def ended() -> dict:
        return grl(data)

    wait_until(lambda: str(SHORT_RUN) in ended(), 120, "the short run ended", show=ended)
    runs = ended()
    truth = independent_count(recording)
    assert "good" in [runs.get(str(FIRST_RUN + n), {}).get("verdict") for n in (1, 2)], runs

    du_loss = runs[str(FIRST_RUN + 3)]
    assert du_loss["verdict"] == "bad", du_loss
    assert any(r.startswith(("min_doms_active", "dom_rates failed")) for r in du_loss["reasons"])
    trigger_zero = runs[str(FIRST_RUN + 4)]
    assert trigger_zero["verdict"] == "bad"
    assert any(r.startswith("trigger_rates failed") for r in trigger_zero["reasons"])
    storm = runs[str(FIRST_RUN + 5)]
    assert storm["verdict"] in ("purgatory", "bad"), storm
    assert runs[str(SHORT_RUN)]["verdict"] == "bad"
    assert runs[str(SHORT_RUN)]["reasons"][0].startswith("min_livetime_s")

    with QualityStore(data, readonly=True) as store:
        records = {r["run"]: r["quantities"] for r in store.records()}
    for run in range(FIRST_RUN + 3, SHORT_RUN):  # runs the quality process saw whole
        ours, theirs = records[run], truth[run]
        # to 1 %: on a loaded machine the ligier may skip a message for one of the two clients
        assert ours["livetime_s"] == pytest.approx(theirs["livetime_s"], rel=0.01), run
        assert ours["hrv"] == pytest.approx(theirs["hrv"], rel=0.01, abs=1e-6), run
        assert ours["daq"] == pytest.approx(theirs["daq"], rel=0.01), run
        no_wr = 1 - ours["whiterabbitstatus"]
        assert no_wr == pytest.approx(theirs["no_white_rabbit"], rel=0.01, abs=1e-6), run
    # the storm: a quarter of the DOMs glowing, most of their PMTs above the veto threshold
    storm_hrv = records[FIRST_RUN + 5]["hrv"]
    assert 0.6 * HRV_STORM_FRACTION < storm_hrv < 1.1 * HRV_STORM_FRACTION, storm_hrv
    assert records[FIRST_RUN + 2]["hrv"] < 0.02
    # wr-loss: one DOM of the 378 without White Rabbit from the start of its run
    assert 1 - records[FIRST_RUN + 6]["whiterabbitstatus"] == pytest.approx(1 / 378, rel=0.05)

    # an override on the dashboard: shown, exported, kept across restarts
    port = free_port()
    webserver = spawn("webserver", "-p", port, "--host", "127.0.0.1", "--plots", plots,
                      "--data", data, "--pipeline", pipeline)  # fmt: skip
    wait_for_port(port)
    base = f"http://127.0.0.1:{port}"
    form = {"verdict": "good", "name": "run coordinator", "reason": "trigger test on purpose"}
    run = FIRST_RUN + 4
    with httpx.Client(auth=AUTH, base_url=base) as client:
        foreign = client.post(f"/runs/{run}/override", data=form,
                              headers={"Origin": "http://evil.example"})  # fmt: skip
        assert foreign.status_code == 403
        done = client.post(f"/runs/{run}/override", data=form, headers={"Origin": base})
        assert done.status_code == 303
        assert httpx.get(f"{base}/api/runs").status_code == 401  # behind the auth
    exported = grl(data)[str(run)]
    assert exported["verdict"] == "good" and exported["override"]["by"] == "run coordinator"
    assert exported["override"]["reason"] == "trigger test on purpose"
    quality.stop()
    webserver.stop()
    spawn("quality", *common)
    port = free_port()
    spawn("webserver", "-p", port, "--host", "127.0.0.1", "--plots", plots, "--data", data,
          "--pipeline", pipeline)  # fmt: skip
    wait_for_port(port)
    page = httpx.get(f"http://127.0.0.1:{port}/runs", auth=AUTH).text
    assert "overridden by run coordinator" in page
    assert grl(data)[str(run)]["verdict"] == "good"
    csv_text = subprocess.run([*KM3MON, "grl", "--data-dir", str(data)], capture_output=True,
                              text=True, check=True).stdout  # fmt: skip
    assert f"{run},133,good,bad," in csv_text


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_restart_goes_on_with_the_current_run(spawn, ligier, tmp_path: Path) -> None:
    data = tmp_path / "data"
    common = ["-p", ligier.port, "--detx", ARCA21, "--data-dir", data, "-o", tmp_path / "plots",
              "-i", 1]  # fmt: skip
    quality = spawn("quality", *common)
    wait_subscribed(ligier.port, name="quality")
    spawn("simulate", "--detx", ARCA21, "-p", ligier.port, "--no-timeslices", "--run-minutes",
          10, "--simulated-seconds", 600)  # fmt: skip

    def livetime() -> float:
        try:
            with QualityStore(data, readonly=True) as store:
                current = store.records(limit=1)
        except Exception:  # not written yet
            return 0.0
        return current[0]["quantities"]["livetime_s"] if current else 0.0

    wait_until(lambda: livetime() >= 8, 90, "8 s of live time", show=livetime)
    quality.stop()
    before = livetime()
    spawn("quality", *common)
    wait_until(lambda: livetime() >= before + 5, 90, "the run going on", show=livetime)
    with QualityStore(data, readonly=True) as store:
        current = store.records(limit=1)[0]
        minutes = store.minutes(current["run"])
    assert current["state"] == "running" and current["run"] == FIRST_RUN
    assert minutes[0]["minute"] <= current["utc_min"] + 60  # the minutes before the restart
