"""The alert lifecycle on a clock we control: hold, one reminder, acknowledgement, resolution,
flapping, restarts, unknown input; the rules on hand-written metrics; the shift report."""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pytest

from km3mon.alerts.book import AlertBook, Lifecycle, acknowledge, alert_rows
from km3mon.alerts.report import shift_report
from km3mon.alerts.rules import Condition, Places, Settings, Snapshot, ThresholdRule, build_rules
from km3mon.config import AlertRuleSection, AlertsSection, ConfigError
from km3mon.history.store import HistoryStore

T0 = 1_796_000_000.0
SETTINGS = {"silent_dom": Settings(hold_s=30, clear_s=20, reminder_s=600)}


def notifications(book: AlertBook) -> list[tuple[str, int, str]]:
    rows = book.db.execute(
        "SELECT n.status, n.reminder, a.key FROM notifications n JOIN alerts a "
        "ON a.id = n.alert_id ORDER BY n.id"
    )
    return [tuple(row) for row in rows]


def silent(key: str = "808") -> dict[str, list[Condition]]:
    return {"silent_dom": [Condition("silent_dom", key, f"DOM {key} silent", dom_id=int(key))]}


def test_hold_reminder_ack_resolution_and_restart(tmp_path) -> None:
    book = AlertBook(tmp_path, Lifecycle(), sinks=["webhook", "mail"])
    for step in range(4):  # pending for the hold time, nobody told
        book.update(silent(), SETTINGS, T0 + 10 * step)
    assert notifications(book) == [("firing", 0, "808")]
    book.close()
    book = AlertBook(tmp_path, Lifecycle(), sinks=["webhook", "mail"])  # a restart
    for step in range(4, 80):  # ten minutes on: exactly one reminder
        book.update(silent(), SETTINGS, T0 + 10 * step)
    assert notifications(book) == [("firing", 0, "808"), ("firing", 1, "808")]
    (deliveries,) = book.db.execute("SELECT count(*) FROM deliveries").fetchone()
    assert deliveries == 4, "one delivery per sink and notification"
    book.update({"silent_dom": []}, SETTINGS, T0 + 800)
    book.update(silent(), SETTINGS, T0 + 810)  # back within clear_s: the same alert
    book.update({"silent_dom": None}, SETTINGS, T0 + 900)  # unknown: not resolved
    assert len(notifications(book)) == 2
    book.update({"silent_dom": []}, SETTINGS, T0 + 931)
    assert notifications(book)[-1] == ("resolved", 0, "808")
    (alert,) = alert_rows(book.db)
    assert alert["state"] == "resolved" and alert["resolved_at"] == T0 + 931


def test_acknowledged_alerts_get_no_reminder_and_short_blips_none_at_all(tmp_path) -> None:
    book = AlertBook(tmp_path, Lifecycle(), sinks=["webhook"])
    book.update(silent("1"), SETTINGS, T0)
    book.update(silent("1"), SETTINGS, T0 + 30)
    (alert,) = alert_rows(book.db)
    assert acknowledge(book.db, alert["id"], "Ada", "diving robot on its way")
    book.update(silent("1"), SETTINGS, T0 + 1000)
    assert notifications(book) == [("firing", 0, "1")]
    book.update(silent("2"), SETTINGS, T0 + 1000)  # a blip shorter than the hold time
    book.update(silent("1"), SETTINGS, T0 + 1010)
    assert len(notifications(book)) == 1
    assert not book.db.execute("SELECT * FROM alerts WHERE key = '2'").fetchall()
    assert not acknowledge(book.db, 999, "Ada", "")


def test_flapping_is_damped(tmp_path) -> None:
    book = AlertBook(tmp_path, Lifecycle(flap_count=3, flap_window_s=3600), sinks=["webhook"])
    now = T0
    for _ in range(5):  # on for a minute, off for two, five times
        book.update(silent(), SETTINGS, now)
        book.update(silent(), SETTINGS, now + 30)
        book.update({"silent_dom": []}, SETTINGS, now + 60)
        book.update({"silent_dom": []}, SETTINGS, now + 180)
        now += 180
    statuses = [status for status, _, _ in notifications(book)]
    assert statuses == ["firing", "resolved", "firing", "resolved", "firing"]
    book.update({"silent_dom": []}, SETTINGS, now + 3600)
    assert notifications(book)[-1][0] == "resolved", "resolved after an hour of quiet"


def snapshot(tmp_path, metrics: dict, places: Places | None = None) -> Snapshot:
    for name, document in metrics.items():
        (tmp_path / "metrics").mkdir(exist_ok=True)
        (tmp_path / "metrics" / f"{name}.json").write_text(json.dumps(document))
    return Snapshot(tmp_path, T0, {}, {}, None, places or Places())


def test_silence_is_the_condition_and_a_lost_du_is_one_alert(tmp_path) -> None:
    places = Places({1: (1, 0), 2: (1, 1), 3: (1, 2), 4: (2, 0), 5: (2, 1), 6: (2, 2)})
    rules = {r.name: r for r in build_rules(AlertsSection())}
    activity = {"data_time": T0, "dom_id": [1, 2, 3, 4, 5, 6],
                "inactive_s": [None, 0.0, 400.0, None, 500.0, 700.0]}  # fmt: skip
    shot = snapshot(tmp_path, {"dom_activity": activity}, places)
    assert rules["silent_dom"].evaluate(shot) == [
        Condition("silent_dom", "3", "DOM 3 (DU 1, floor 2) silent 400 s", held_s=400.0,
                  started_at=T0 - 400, dom_id=3, du=1, floor=2, link="/history?dom=3")
    ]  # fmt: skip
    (lost,) = rules["du_lost"].evaluate(shot)
    assert (lost.key, lost.held_s, lost.du) == ("DU 2", 500.0, 2)
    assert rules["pmt_hot"].evaluate(shot) is None, "no pmt_rates metrics: cannot tell"


def test_threshold_rules_are_config_entries(tmp_path) -> None:
    section = AlertsSection(rules={
        "dom_rate_high": AlertRuleSection(metric="dom_rates.rate_khz", above=300),
        "muons_low": AlertRuleSection(metric="trigger_rates.latest_hz.3DMuon", below=1),
        "rttc_far": AlertRuleSection(metric="rttc.dus.*.rttc_ps", above=5e7, hold_s=0),
    })  # fmt: skip
    rules = {r.name: r for r in build_rules(section)}
    assert isinstance(rules["dom_rate_high"], ThresholdRule)
    shot = snapshot(tmp_path, {
        "dom_rates": {"dom_id": [10, 11], "rate_khz": [250.0, 350.0]},
        "trigger_rates": {"latest_hz": {"3DMuon": 0.5}},
        "rttc": {"dus": {"1": {"rttc_ps": 4e7}, "2": {"rttc_ps": 6e7}}},
    }, Places({11: (3, 7)}))  # fmt: skip
    (high,) = rules["dom_rate_high"].evaluate(shot)
    assert (high.key, high.dom_id, high.du, high.floor) == ("11", 11, 3, 7)
    assert "above 300" in high.summary
    assert [c.key for c in rules["muons_low"].evaluate(shot)] == ["trigger_rates.latest_hz.3DMuon"]
    assert [c.key for c in rules["rttc_far"].evaluate(shot)] == ["2"]
    assert rules["rttc_far"].settings.hold_s == 0
    with pytest.raises(ConfigError, match=r"\[Alerts.typo\]"):
        build_rules(AlertsSection(rules={"typo": AlertRuleSection(hold_s=3)}))


def test_shift_report_lists_alerts_downtime_and_trigger_rates(tmp_path) -> None:
    book = AlertBook(tmp_path, Lifecycle())
    book.update(silent(), SETTINGS, T0 + 100)
    book.update(silent(), SETTINGS, T0 + 200)
    book.update({"silent_dom": []}, SETTINGS, T0 + 400)
    book.close()
    store = HistoryStore(tmp_path)
    zero = np.zeros(1, np.int64)
    for minute in range(60):
        up = 0.0 if 10 <= minute < 15 else 1.0
        store.write([
            ("process_up.dom_rates", "scalar", T0 + 60 * minute, zero, np.array([up])),
            ("trigger_rate_hz.Overall", "scalar", T0 + 60 * minute, zero,
             np.array([0.0 if minute == 30 else 50.0])),
        ])  # fmt: skip
    store.close()
    report = shift_report(tmp_path, T0, T0 + 3600)
    assert "| silent_dom | DOM 808 silent |" in report
    assert "| dom_rates | 60 | 5 min | 0 min | 91.7 % |" in report
    assert "| Overall | 60 | 49.2 | 50 | 0 | 50 | 1 |" in report
    assert "| 808 |" in report, "the silent DOM"
    with sqlite3.connect(tmp_path / "km3mon.sqlite3") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
