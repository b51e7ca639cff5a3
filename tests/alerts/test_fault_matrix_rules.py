"""The rules the detection matrix (issue 22 C) found wanting: a hot PMT judged against its
own DOM (a glowing DOM raises nothing) and notified also while others are firing, an HRV
storm listed although its PMTs are also above the colour scale, the SN monitor's latched
alarms with their own rule, and ``process_down`` sparing a silent process that works."""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from km3mon.alerts.book import AlertBook, Lifecycle
from km3mon.alerts.rules import (
    Condition,
    Places,
    ProcessDown,
    Settings,
    SNAlarm,
    Snapshot,
    collapse,
    cpu_seconds,
)
from km3mon.config import PipelineConfig, load_pipeline
from km3mon.monitors.pmt_rates import MAX_FLAGGED, PMTRates
from km3mon.monitors.sn import SN, OpenFrame
from km3mon.physics.coincidences import Coincidences
from km3mon.runtime.freshness import Freshness, process_state
from km3mon.runtime.monitor import Context, monitor_in_process
from tests.alerts.test_rules import rules
from tests.conftest import wait_until
from tests.sim.test_simulator_support import ARCA21_DETX

N_CHANNELS = 31
BOOK_SETTINGS = Settings(hold_s=0, clear_s=20, reminder_s=3600)


def pmt_rates_monitor(folder: Path) -> PMTRates:
    args = argparse.Namespace(det_id=0, detx=ARCA21_DETX, du=None, columns=10, plot_dir=folder,
                              data_dir=folder)  # fmt: skip
    freshness = Freshness(process="pmt_rates", pid=0, started_at=time.time(), ligier="-",
                          tags=[], render_interval_s=20.0, stale_after_s=60.0)  # fmt: skip
    return PMTRates(Context(args, freshness, logging.getLogger("test"), load_pipeline(None)))


def snapshot_of(folder: Path, places: Places, now: float, **metrics: dict) -> Snapshot:
    (folder / "metrics").mkdir(parents=True, exist_ok=True)
    for name, document in metrics.items():
        (folder / "metrics" / f"{name}.json").write_text(json.dumps(document))
    return Snapshot(folder, now, {}, {}, None, places)


def test_a_hot_pmt_stands_out_of_its_dom_and_a_storms_veto_is_listed(tmp_path) -> None:
    """One interval of the simulator's model: K40 background (log-normal around 7.4 kHz), a
    DOM glowing (bioluminescence: every PMT x1.6-6.6, many above 15 kHz), a PMT at 80x its
    rate, and a storm of 40 DOMs (1240 PMTs above the colour scale and in high-rate veto)."""
    monitor = pmt_rates_monitor(tmp_path)
    n = len(monitor.slots)
    rng = np.random.default_rng(22)
    rates = 7_400.0 * np.exp(0.12 * rng.standard_normal((n, N_CHANNELS)))
    hrv = np.zeros((n, N_CHANNELS))
    glowing, hot_slot, hot_channel, storm = 10, 20, 8, slice(40, 80)
    rates[glowing] *= 1 + 4 * rng.uniform(0.6, 1.4, N_CHANNELS)
    rates[hot_slot, hot_channel] *= 80
    hrv[hot_slot, hot_channel] = 1.0
    rates[storm] *= 6
    hrv[storm] = 1.0
    first = int(time.time() // 20)
    monitor.ring.advance_to(first)
    monitor.rate_sum[:], monitor.hrv_sum[:], monitor.packets[:] = rates, hrv, 1
    monitor.ring.advance_to(first + 1)  # the column closes
    document = monitor.newest_column_summary()

    by_kind: dict[str, list[dict]] = {}
    for flag in document["flagged"]:
        by_kind.setdefault(flag["kind"], []).append(flag)
    detector = monitor.detector
    hot_dom = int(detector.dom_ids[monitor.slots.dom_index[hot_slot]])
    glowing_dom = int(detector.dom_ids[monitor.slots.dom_index[glowing]])
    assert [(f["dom_id"], f["channel"]) for f in by_kind["hot"]] == [(hot_dom, hot_channel)]
    assert any(f["dom_id"] == glowing_dom for f in by_kind["above"]), "glows above 15 kHz"
    assert len(by_kind["above"]) == MAX_FLAGGED, "the storm's 1240 PMTs, capped"
    assert len(by_kind["hrv"]) == MAX_FLAGGED, "the storm's veto is listed all the same"

    places = Places.of_detector(detector)
    shot = snapshot_of(tmp_path, places, time.time(), pmt_rates=document)
    (hot,) = rules()["pmt_hot"].evaluate(shot)
    assert hot.key == f"{hot_dom}/{hot_channel}" and "x its DOM's median" in hot.summary
    hrv_conditions = rules()["pmt_hrv"].evaluate(shot)
    assert hot.key not in {c.key for c in hrv_conditions}, "its veto is pmt_hot's consequence"
    assert len(hrv_conditions) >= MAX_FLAGGED - 1 - len(places.disabled_pmts), "DETX-disabled"
    (storm_alert,) = collapse(hrv_conditions, 20)
    assert storm_alert.key == "*" and storm_alert.rule == "pmt_hrv"


def notified(book: AlertBook) -> list[tuple[str, str]]:
    rows = book.db.execute(
        "SELECT n.status, a.key FROM notifications n JOIN alerts a ON a.id = n.alert_id "
        "ORDER BY n.id"
    ).fetchall()
    return [(row[0], row[1]) for row in rows]


def test_a_new_hot_pmt_notifies_while_another_is_firing(tmp_path) -> None:
    """One alert per PMT: the second hot PMT is its own notification, not hidden in the
    first's alert; each resolves on its own."""
    places = Places({808: (3, 12), 809: (3, 13)})
    book = AlertBook(tmp_path / "book", Lifecycle(), sinks=["webhook"])
    rule = rules()["pmt_hot"]
    now = 1_796_000_000.0

    def hot(*pmts: tuple[int, int]) -> list[Condition]:
        flagged = [{"dom_id": d, "du": 3, "channel": c, "kind": "hot", "rate_hz": 5e5,
                    "dom_median_hz": 7e3} for d, c in pmts]  # fmt: skip
        return rule.evaluate(snapshot_of(tmp_path, places, now, pmt_rates={"flagged": flagged}))

    book.update({"pmt_hot": hot((808, 7))}, {"pmt_hot": BOOK_SETTINGS}, now)
    now += 10
    book.update({"pmt_hot": hot((808, 7), (809, 3))}, {"pmt_hot": BOOK_SETTINGS}, now)
    assert notified(book) == [("firing", "808/7"), ("firing", "809/3")]
    for _ in range(4):  # the first one cools down, the second stays hot
        now += 10
        book.update({"pmt_hot": hot((809, 3))}, {"pmt_hot": BOOK_SETTINGS}, now)
    assert notified(book) == [("firing", "808/7"), ("firing", "809/3"), ("resolved", "808/7")]


def sn_frame(index: int, count: int) -> OpenFrame:
    multiplicity = np.full(count, 8, np.int64)
    frame = OpenFrame(1_700_000_000 + 0.1 * index, 0.0, active_doms=378)
    frame.coincidences.append(Coincidences(multiplicity, multiplicity, multiplicity,
                                           multiplicity))  # fmt: skip
    return frame


def test_sn_alarms_are_latched_kept_and_each_notified_once(tmp_path) -> None:
    """Two bursts of a second in 3 minutes of background: two alarms in ``alarm_log`` with
    their peak, in the metrics and the state file; ``sn_alarm`` gives one alert each, which
    resolves once the alarm is ``LATCH_S`` old, although ``significance`` is long back to
    background."""
    monitor = monitor_in_process(SN, ARCA21_DETX, tmp_path, PipelineConfig())
    rng = np.random.default_rng(9)
    bursts = {1500: 80, 1600: 95}  # first frame index: coincidences per frame for 1 s
    index = 0
    for index in range(1800):
        start = max((b for b in bursts if b <= index), default=None)
        burst = start is not None and index < start + 10
        monitor._close((1, index), sn_frame(index, bursts[start] if burst else rng.poisson(9)))
    first, second = monitor.alarm_log
    assert first["time"] == pytest.approx(1_700_000_000 + 0.1 * 1500)
    assert first["multiplicity"] == 5 * 80 and second["multiplicity"] == 5 * 95
    assert second["significance"] > first["significance"] > 5
    assert first["end_time"] is not None and second["ended_at"] is not None
    assert monitor.alarms == 2

    monitor.render()
    metrics = json.loads((tmp_path / "data" / "metrics" / "sn.json").read_text())
    assert metrics["alarm_log"] == [first, second]
    assert metrics["significance"] < 5, "the newest window is background again"
    again = monitor_in_process(SN, ARCA21_DETX, tmp_path, PipelineConfig())
    assert list(again.alarm_log) == [first, second], "kept in the state file"

    places = Places()
    now = time.time()
    shot = snapshot_of(tmp_path / "data", places, now)
    conditions = SNAlarm(BOOK_SETTINGS).evaluate(shot)
    assert len(conditions) == 2 and len({c.key for c in conditions}) == 2
    assert "400 coincidences in a window" in conditions[0].summary
    assert "not the KM3NeT supernova trigger" in conditions[0].summary
    book = AlertBook(tmp_path / "book", Lifecycle(), sinks=["webhook"])
    settings = {"sn_alarm": BOOK_SETTINGS}
    for step in range(0, 100, 10):  # the same metrics, re-read every 10 s
        book.update({"sn_alarm": SNAlarm(BOOK_SETTINGS).evaluate(snapshot_of(
            tmp_path / "data", places, now + step))}, settings, now + step)  # fmt: skip
    statuses = [status for status, _ in notified(book)]
    assert statuses == ["firing", "firing", "resolved", "resolved"], notified(book)
    assert SNAlarm(BOOK_SETTINGS).evaluate(snapshot_of(tmp_path / "data", places, now + 61)) == []
    assert SNAlarm(BOOK_SETTINGS).evaluate(snapshot_of(tmp_path / "none", places, now)) is None


def silent_record(pid: int) -> dict:
    """A freshness record last written 200 s ago (render interval 10 s): silent."""
    return process_state({"state": "running", "updated_at": time.time() - 200,
                          "render_interval_s": 10.0, "pid": pid})  # fmt: skip


@pytest.fixture
def child():
    started: list[subprocess.Popen] = []

    def start(code: str) -> subprocess.Popen:
        """A Python child running ``code`` once it said "ready" (its start-up done)."""
        process = subprocess.Popen([sys.executable, "-c", f"print('ready', flush=True)\n{code}"],
                                   stdout=subprocess.PIPE, text=True)  # fmt: skip
        started.append(process)
        assert process.stdout is not None and process.stdout.readline() == "ready\n"
        return process

    yield start
    for process in started:
        process.kill()
        process.wait()


@pytest.mark.timeout(900)
def test_process_down_spares_a_silent_process_that_works_and_names_an_idle_one(
    tmp_path, child
) -> None:
    """Three real processes whose records stopped 200 s ago: one computing (slow, under load),
    one sleeping (hung), one gone. Only the hung and the gone one are down; the computing one
    too once it has been silent for BUSY_LIMIT_S."""
    busy = child("while True: pass")
    idle = child("import time; time.sleep(600)")
    gone = child("pass")
    gone.wait()
    rule = ProcessDown(BOOK_SETTINGS)

    def down() -> dict[str, str]:
        records = {name: silent_record(p.pid) for name, p in
                   (("reco", busy), ("k40", idle), ("rttc", gone))}  # fmt: skip
        shot = Snapshot(tmp_path, time.time(), records, {}, None, Places())
        return {c.key: c.summary for c in rule.evaluate(shot)}

    assert down() == {"rttc": "rttc is silent (no record for 200 s)"}, "first look: alive"
    used = cpu_seconds(busy.pid)
    wait_until(lambda: cpu_seconds(busy.pid) > used, 60, "the busy child used CPU",
               show=lambda: cpu_seconds(busy.pid))  # fmt: skip
    assert sorted(down()) == ["k40", "rttc"], "the sleeper used no CPU since: hung"
    assert down()["k40"] == "k40 is silent (no record for 200 s)"

    rule.BUSY_LIMIT_S = 100.0  # a loop that never ends: silent longer than the limit
    used = cpu_seconds(busy.pid)
    wait_until(lambda: cpu_seconds(busy.pid) > used, 60, "the busy child used CPU")
    assert down()["reco"] == "reco is silent (no record for 200 s, busy: hung in a loop?)"
