"""The quality store and its readers: append-only overrides, the good-run list (`km3mon grl`
as a process), the shift report's runs and the ``run_quality`` alert rule."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import time
from pathlib import Path

import km3net_testdata
import numpy as np
import pytest

from km3mon.alerts.report import shift_report
from km3mon.alerts.rules import Places, RunQuality, Settings, Snapshot
from km3mon.quality.store import QualityError, QualityStore
from tests.conftest import KM3MON

T0 = 1_790_000_000.0


def save(store: QualityStore, run: int, verdict: str, state: str = "ended") -> None:
    start = T0 + 600 * (run - 1)
    quantities = {"run": run, "detector": 133, "utc_min": start, "utc_max": start + 590,
                  "livetime_s": 590.0}  # fmt: skip
    judgement = {"verdict": verdict, "reasons": [] if verdict == "good" else ["min_daq: daq low"]}
    store.save_run(quantities, state=state, dom_ids=np.arange(3), dom_rate_khz=np.ones(3),
                   histograms={}, minutes={int(start): {"livetime_s": 60.0}},
                   accumulator=({"run": run}, b""), judgement=judgement)  # fmt: skip


@pytest.fixture
def data(tmp_path: Path) -> Path:
    with QualityStore(tmp_path) as store:
        save(store, 1, "good")
        save(store, 2, "bad")
        save(store, 3, "purgatory", state="running")
    return tmp_path


def rule_conditions(data: Path):
    snapshot = Snapshot(data, time.time(), {}, {}, None, Places())
    return RunQuality(Settings(hold_s=0, clear_s=60, reminder_s=0)).evaluate(snapshot)


def test_overrides_are_append_only_and_the_newest_counts(data: Path) -> None:
    with QualityStore(data) as store:
        store.add_override(2, "good", "rc", "DAQ test run")
        store.add_override(2, "purgatory", "rc2", "second thoughts")
        assert store.record(2)["verdict"] == "purgatory"
        assert [o["who"] for o in store.overrides(2)] == ["rc", "rc2"]
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            store.db.execute("UPDATE overrides SET verdict = 'good'")
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            store.db.execute("DELETE FROM overrides")
        with pytest.raises(QualityError):
            store.add_override(2, "good", "", "no name")
        with pytest.raises(QualityError):
            store.add_override(2, "excellent", "rc", "not a verdict")


def test_grl_lists_ended_runs_as_csv_and_json(data: Path) -> None:
    with QualityStore(data) as store:
        store.add_override(2, "good", "rc", "known DAQ test")

    def grl(*args: str) -> str:
        return subprocess.run([*KM3MON, "grl", "--data-dir", str(data), *args],
                              capture_output=True, text=True, check=True).stdout  # fmt: skip

    listed = json.loads(grl("--format", "json"))
    assert list(listed) == ["1", "2"]  # the running run left out
    assert listed["2"]["verdict"] == "good" and listed["2"]["automatic_verdict"] == "bad"
    assert listed["2"]["override"]["by"] == "rc" and listed["2"]["reasons"] == ["min_daq: daq low"]
    assert listed["1"]["livetime_s"] == 590.0 and listed["1"]["override"] is None
    current = json.loads(grl("--format", "json", "--include-current"))
    assert current["3"]["verdict"] == "running"
    since = json.loads(grl("--format", "json", "--since", "2026-09-21 14:23:15"))
    assert "1" not in since and "2" in since
    lines = grl().splitlines()
    assert lines[0].startswith("run,detector,verdict,automatic_verdict,livetime_s")
    assert lines[2].startswith("2,133,good,bad,590.0,")
    missing = subprocess.run([*KM3MON, "grl", "--data-dir", str(data / "nowhere")],
                             capture_output=True, text=True)  # fmt: skip
    assert missing.returncode == 2 and "has not run here" in missing.stderr


def test_run_quality_alert_fires_for_a_bad_run_until_overridden(data: Path) -> None:
    conditions = rule_conditions(data)
    assert [c.key for c in conditions] == ["run 2"] and conditions[0].link == "/runs/2"
    with QualityStore(data) as store:
        store.add_override(2, "good", "rc", "checked")
    assert rule_conditions(data) == []
    assert rule_conditions(data / "nowhere") is None  # no store: cannot tell


def test_shift_report_lists_the_shifts_runs(data: Path) -> None:
    report = shift_report(data, T0, T0 + 3 * 600)
    runs = report.split("## Runs", 1)[1].split("##", 1)[0]
    assert "| 1 | **good** |" in runs and "| 2 | **bad** |" in runs
    assert "| 3 | **running** |" in runs
    assert "No run in this period." in shift_report(data, T0 - 9000, T0 - 8000)


def test_reference_chosen_on_the_dashboard_is_used(data: Path, spawn, tmp_path: Path) -> None:
    import httpx

    from km3mon.monitors.quality import Quality
    from tests.web.conftest import serve
    from tests.web.sites import AUTH, _context

    port = serve(spawn, tmp_path, tmp_path / "plots", data)
    base = f"http://127.0.0.1:{port}"
    form = {"name": "run coordinator", "reason": "the calibration run"}
    with httpx.Client(auth=AUTH, base_url=base) as client:
        assert client.post("/runs/2/reference", data=form).status_code == 403  # no Origin
        assert client.post("/runs/2/reference", data=form, headers={"Origin": base}).is_redirect
    with QualityStore(data, readonly=True) as store:
        assert store.reference_choice()["run"] == 2
    detx = km3net_testdata.data_path("detx/KM3NeT_00000133_20221025.detx")
    context = _context(tmp_path, Path(detx), "quality", 10.0)
    context.data_dir = data
    monitor = Quality(context)
    reference = monitor._reference(5, 133)
    assert reference.runs == [2] and "chosen by run coordinator" in reference.source
    with httpx.Client(auth=AUTH, base_url=base) as client:
        client.post("/runs/2/reference", data={**form, "automatic": "1"}, headers={"Origin": base})
    automatic = monitor._reference(5, 133)
    assert automatic.runs == [1] and automatic.source == "medians of the last 1 good runs"
    monitor.store.close()
