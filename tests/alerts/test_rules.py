"""Every built-in rule on its real input: freshness records as the processes write them (read
through ``process_state``/``panel_states``), metrics documents in the monitors' own layout,
the free disk space; the merging of many conditions; the outbox retrying a receiver that
was down."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from km3mon.alerts.book import AlertBook, Lifecycle, connect
from km3mon.alerts.rules import (
    Condition,
    Places,
    Settings,
    Snapshot,
    TimeSync,
    build_rules,
    collapse,
)
from km3mon.alerts.sinks import Courier, WebhookSink
from km3mon.config import AlertRuleSection, AlertsSection
from km3mon.monitors.timesync import WHITE_RABBIT_LOST
from km3mon.runtime.freshness import panel_states, process_state
from tests.alerts.sinks import WebhookReceiver
from tests.conftest import free_port, wait_until

NOW = 1_796_000_000.0
PLACES = Places({808: (3, 12), 809: (3, 13), 810: (4, 1)})


def rules(**sections: AlertRuleSection) -> dict:
    return {rule.name: rule for rule in build_rules(AlertsSection(rules=sections))}


def snapshot(
    folder: Path,
    metrics: dict | None = None,
    records: dict | None = None,
    supervisor: dict | None = None,
    now: float = NOW,
) -> Snapshot:
    for name, document in (metrics or {}).items():
        (folder / "metrics").mkdir(parents=True, exist_ok=True)
        (folder / "metrics" / f"{name}.json").write_text(json.dumps(document))
    raw = records or {}
    return Snapshot(
        folder,
        now,
        {name: process_state(record, now) for name, record in raw.items()},
        panel_states(raw, now),
        supervisor,
        PLACES,
    )


def record(updated_ago_s: float, state: str = "running", **extra) -> dict:
    return {"state": state, "updated_at": NOW - updated_ago_s, "render_interval_s": 10.0, **extra}


def test_process_down_names_silent_disconnected_and_fatal_processes(tmp_path) -> None:
    shot = snapshot(
        tmp_path,
        records={
            "dom_rates": record(2),
            "pmt_rates": record(120),  # its record stopped: hangs or died
            "rttc": record(2, state="disconnected"),
            "k40": record(300),  # stopped on purpose in supervisord: not an alert
        },
        supervisor={
            "k40": {"state": "STOPPED", "description": "Not started"},
            "reco": {"state": "FATAL", "description": "Exited too quickly"},
        },
    )
    found = {c.key: c for c in rules()["process_down"].evaluate(shot)}
    assert sorted(found) == ["pmt_rates", "reco", "rttc"]
    assert found["pmt_rates"].summary == "pmt_rates is silent (no record for 120 s)"
    assert "FATAL in supervisord (Exited too quickly)" in found["reco"].summary
    assert found["rttc"].process == "rttc" and found["rttc"].link == "/status"
    assert rules()["process_down"].evaluate(snapshot(tmp_path, records={"a": record(1)})) == []


def test_plot_stale_groups_stale_plots_per_running_process(tmp_path) -> None:
    outputs = {f"pmt_rates_du{du}.png": {"rendered_at": NOW - 200} for du in range(1, 6)}
    shot = snapshot(
        tmp_path,
        records={
            "pmt_rates": record(2, outputs=outputs),  # running, but no plot redrawn for 200 s
            "dom_rates": record(2, outputs={"dom_rates.png": {"rendered_at": NOW - 5}}),
            "trigger_rates": record(2, outputs={"trigger_rates.png": {"stale": True}}),
            "rttc": record(500, outputs={"rttc.png": {"rendered_at": NOW - 500}}),  # down
        },
    )
    found = {c.key: c for c in rules()["plot_stale"].evaluate(shot)}
    assert sorted(found) == ["pmt_rates", "trigger_rates"], "rttc: process_down says it"
    assert found["pmt_rates"].summary.startswith("5 plot(s) of pmt_rates stale: ")
    assert "not redrawn for 200 s" in found["pmt_rates"].summary
    assert found["pmt_rates"].summary.endswith("and 2 more")
    assert found["pmt_rates"].link == "/plot/pmt_rates_du1"
    assert "no new data" in found["trigger_rates"].summary


def test_dropped_messages_holds_five_minutes_after_the_counter_grew(tmp_path) -> None:
    rule = rules()["dropped_messages"]
    assert rule.settings.hold_s == 0

    def evaluate(dropped: int, now: float) -> list[str]:
        shot = snapshot(tmp_path, records={"ligiermirror": record(1, dropped=dropped)}, now=now)
        return [c.summary for c in rule.evaluate(shot)]

    assert evaluate(10, NOW) == [], "drops before our start are not news"
    assert evaluate(10, NOW + 10) == []
    assert evaluate(25, NOW + 20) == ["ligiermirror dropped messages (25 since its start)"]
    assert evaluate(25, NOW + 300) != []
    assert evaluate(25, NOW + 321) == [], "five minutes without new drops"
    assert evaluate(3, NOW + 330) == [], "a restart counts anew"
    assert evaluate(4, NOW + 340) == ["ligiermirror dropped messages (4 since its start)"]


def timesync_document(**lists: list[int]) -> dict:
    return {
        "data_time": NOW,
        WHITE_RABBIT_LOST: lists.get("wr", []),
        "udp_incomplete": lists.get("udp", []),
        "missing": [],
        "expected_frames_per_s": 10,
        "data_filters": lists.get("filters", []),
        "doms": {
            "dom_id": [808, 809, 810],
            "state": [2, 1, 0],
            "frames_per_s": [10.0, 8.9, 10.0],
            "lost_fraction": [0.0, 0.55, 0.0],
        },
    }


def test_time_sync_reads_the_list_timesync_writes(tmp_path) -> None:
    assert f"timesync.{WHITE_RABBIT_LOST}" == TimeSync.METRIC, "one key on both sides"
    rule = rules()["time_sync"]
    assert rule.evaluate(snapshot(tmp_path)) is None, "no timesync: cannot tell"
    (lost,) = rule.evaluate(snapshot(tmp_path, {"timesync": timesync_document(wr=[808])}))
    assert (lost.key, lost.dom_id, lost.du, lost.floor) == ("808", 808, 3, 12)
    assert lost.summary == "DOM 808 (DU 3, floor 12): time sync lost"
    assert rule.evaluate(snapshot(tmp_path, {"timesync": timesync_document()})) == []
    assert rule.evaluate(snapshot(tmp_path, {"timesync": {"data_time": NOW}})) is None


def test_udp_loss_and_a_stopped_datafilter(tmp_path) -> None:
    stopped = {"name": "DataFilter of DUs 4-6", "n_doms": 54, "silent_s": 31.0, "stopped": True}
    running = {"name": "DataFilter of DUs 1-3", "n_doms": 54, "silent_s": 0.1, "stopped": False}
    document = timesync_document(udp=[809], filters=[running, stopped])
    shot = snapshot(tmp_path, {"timesync": document})
    (udp,) = rules()["udp_loss"].evaluate(shot)
    assert (udp.key, udp.du, udp.floor) == ("809", 3, 13)
    assert udp.summary == (
        "DOM 809 (DU 3, floor 13): UDP data lost (55% of its frames incomplete or lost, "
        "8.9 frames/s of 10)"
    )
    (down,) = rules()["datafilter_down"].evaluate(shot)
    assert down.key == "DataFilter of DUs 4-6"
    assert down.summary == "DataFilter of DUs 4-6 stopped sending timeslices (31 s, 54 DOMs)"


def test_reco_t0_is_one_alert_per_flagged_dom_with_its_offset(tmp_path) -> None:
    rule = rules()["reco_t0"]
    assert rule.evaluate(snapshot(tmp_path)) is None
    flagged = [
        {"dom_id": 808, "du": 3, "floor": 12, "offset_ns": 5.123, "error_ns": 0.41,
         "residuals": 300},
        {"dom_id": 810, "du": 4, "floor": 1, "offset_ns": -3.9, "error_ns": 0.7,
         "residuals": 120},
    ]  # fmt: skip
    shot = snapshot(tmp_path, {"reco": {"data_time": NOW, "flagged_doms": flagged, "doms": {}}})
    found = rule.evaluate(shot)
    assert [(c.key, c.dom_id, c.du, c.floor) for c in found] == [
        ("808", 808, 3, 12),
        ("810", 810, 4, 1),
    ]
    assert found[0].summary == (
        "DOM 808 (DU 3, floor 12): time offset +5.1 ± 0.4 ns (track residuals, 300 hits)"
    )
    assert found[1].link == "/history?dom=810&metric=reco.offset_ns"
    assert rule.settings.hold_s == 300


def test_rttc_off_against_the_24_h_median(tmp_path) -> None:
    dus = {
        "1": {"rttc_ps": 40_000_100.0, "median_ps": 40_000_000.0, "spread_ps": 10.0},  # 10 σ
        "2": {"rttc_ps": 40_000_015.0, "median_ps": 40_000_000.0, "spread_ps": 1.0},  # < 20 ps
        "3": {"rttc_ps": 40_000_030.0, "median_ps": 40_000_000.0, "spread_ps": 10.0},  # 3 σ
        "4": {"rttc_ps": None, "median_ps": 40_000_000.0, "spread_ps": 10.0},
    }
    (off,) = rules()["rttc_off"].evaluate(snapshot(tmp_path, {"rttc": {"dus": dus}}))
    assert (off.key, off.du) == ("DU 1", 1)
    assert off.summary == "DU 1 RTTC +100 ps off its 24 h median (spread 10 ps)"
    strict = rules(rttc_off=AlertRuleSection(max_spreads=2.5))["rttc_off"]
    found = strict.evaluate(snapshot(tmp_path, {"rttc": {"dus": dus}}))
    assert [c.key for c in found] == ["DU 1", "DU 3"]


def test_disk_space_below_the_limit(tmp_path) -> None:
    assert rules()["disk_space"].evaluate(snapshot(tmp_path)) == []
    greedy = rules(disk_space=AlertRuleSection(min_free_gb=1e9))["disk_space"]
    (full,) = greedy.evaluate(snapshot(tmp_path))
    assert full.key == "data" and "limit 1e+09 GB" in full.summary
    assert str(tmp_path.resolve()) in full.summary


def test_pmt_hot_and_pmt_hrv_fire_on_the_flags_of_pmt_rates(tmp_path) -> None:
    flagged = [
        {
            "dom_id": 808,
            "du": 3,
            "channel": 7,
            "kind": "hot",
            "rate_hz": 512_000.0,
            "dom_median_hz": 7_300.0,
        },
        {"dom_id": 808, "du": 3, "channel": 7, "kind": "above", "rate_hz": 512_000.0},
        {"dom_id": 808, "du": 3, "channel": 7, "kind": "hrv", "hrv_fraction": 1.0},  # hot's
        {"dom_id": 809, "du": 3, "channel": 2, "kind": "above", "rate_hz": 25_000.0},  # glows
        {"dom_id": 809, "du": 3, "channel": 30, "kind": "hrv", "hrv_fraction": 0.62},
        {"dom_id": 810, "du": 4, "channel": 2, "kind": "below", "rate_hz": 0.0},
    ]
    shot = snapshot(tmp_path, {"pmt_rates": {"data_time": NOW, "flagged": flagged}})
    (hot,) = rules()["pmt_hot"].evaluate(shot)
    assert (hot.key, hot.dom_id, hot.du, hot.floor) == ("808/7", 808, 3, 12)
    assert hot.summary == (
        "DOM 808 (DU 3, floor 12) channel 7: 512 kHz, 70x its DOM's median 7.3 kHz"
    ), "above the colour scale alone (DOM 809's glow) is not hot"
    assert hot.link == "/plot/pmt_rates_du3"
    (hrv,) = rules()["pmt_hrv"].evaluate(shot)
    assert hrv.key == "809/30", "the hot PMT's veto is pmt_hot's consequence"
    assert hrv.summary == "DOM 809 (DU 3, floor 13) channel 30: high-rate veto 62% of the time"


def test_more_than_max_per_rule_conditions_are_one_alert(tmp_path) -> None:
    conditions = [
        Condition("pmt_hrv", f"{dom}/1", f"DOM {dom} channel 1", dom_id=dom, held_s=held)
        for dom, held in zip(range(100, 125), [None] * 25, strict=True)
    ]
    assert collapse(conditions[:20], 20) == conditions[:20]
    (merged,) = collapse(conditions, 20)
    assert merged.key == "*" and merged.rule == "pmt_hrv"
    assert merged.summary.startswith("25 at once, e.g. DOM 100 channel 1; DOM 101 channel 1")
    silences = [Condition("silent_dom", str(d), "", held_s=float(d)) for d in range(30)]
    assert collapse(silences, 20)[0].held_s == 29.0, "the longest silence decides"
    # through the book: one firing notification for the storm
    book = AlertBook(tmp_path, Lifecycle(), sinks=["webhook"])
    settings = {"pmt_hrv": Settings(hold_s=0, clear_s=20, reminder_s=3600)}
    book.update({"pmt_hrv": collapse(conditions, 20)}, settings, NOW)
    book.update({"pmt_hrv": collapse(conditions[:24], 20)}, settings, NOW + 10)
    rows = book.db.execute("SELECT status FROM notifications").fetchall()
    assert [row[0] for row in rows] == ["firing"]


def test_the_outbox_retries_a_receiver_that_was_down(tmp_path) -> None:
    port = free_port()  # nothing listens there yet
    book = AlertBook(tmp_path, Lifecycle(), sinks=["webhook"])
    settings = {"silent_dom": Settings(hold_s=0, clear_s=20, reminder_s=3600)}
    now = time.time()
    book.update(
        {"silent_dom": [Condition("silent_dom", "808", "DOM 808 silent", dom_id=808)]},
        settings,
        now,
    )
    stop = threading.Event()
    courier = Courier(tmp_path, {"webhook": WebhookSink(f"http://127.0.0.1:{port}/hook")}, stop)
    courier.start()
    try:
        wait_until(lambda: courier.failed >= 1, 20, "the first failed delivery")
        db = connect(tmp_path)
        attempts, error = db.execute("SELECT attempts, error FROM deliveries").fetchone()
        assert attempts == 1 and error == "webhook not reachable (ConnectionRefusedError)"
        receiver = WebhookReceiver(port=port)  # the chat server is back
        try:
            wait_until(lambda: receiver.bodies, 30, "the retried delivery (5 s backoff)")
            assert [(b["status"], b["dom_id"]) for b in receiver.bodies] == [("firing", 808)]
            wait_until(
                lambda: db.execute("SELECT sent_at FROM deliveries").fetchone()[0], 10, "sent"
            )
            time.sleep(1.5)
            assert len(receiver.bodies) == 1, "delivered once"
        finally:
            receiver.close()
        db.close()
    finally:
        stop.set()
        courier.wake()
        courier.join(10)
