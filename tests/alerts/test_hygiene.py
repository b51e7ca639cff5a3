"""Alert hygiene on a clock we control: inhibition (a cause hides its consequences), silences,
known-bad DOMs and PMTs, and the hysteresis of threshold rules. The rules run on hand-written
metrics and freshness records exactly as ``km3mon alerts`` evaluates them."""

from __future__ import annotations

import json
import sqlite3

import pytest

from km3mon.alerts.book import AlertBook, Lifecycle, alert_rows, connect
from km3mon.alerts.hygiene import (
    KnownBad,
    add_known_bad,
    add_silence,
    end_silence,
    known_bad,
    prepare,
    remove_known_bad,
    run_stopped,
)
from km3mon.alerts.report import shift_report
from km3mon.alerts.rules import Places, Snapshot, build_rules
from km3mon.config import AlertRuleSection, AlertsSection, ConfigError
from km3mon.runtime.freshness import PanelState

T0 = 1_796_000_000.0
#: Three DUs of a base module and 18 optical DOMs each: DOM id = 100 * DU + floor.
PLACES = Places({100 * du + floor: (du, floor) for du in (1, 2, 3) for floor in range(19)})
OPTICAL = [100 * du + floor for du in (1, 2, 3) for floor in range(1, 19)]
MONITORS = ("dom_activity", "dom_rates", "pmt_rates", "trigger_rates")


class Suite:
    """The rules of an ``[Alerts]`` section, the book and the hygiene between them."""

    def __init__(self, tmp_path, section: AlertsSection | None = None) -> None:
        self.section = section or AlertsSection(clear_s=20)
        self.rules = build_rules(self.section)
        self.settings = {rule.name: rule.settings for rule in self.rules}
        self.book = AlertBook(tmp_path, Lifecycle(), sinks=["webhook"])
        self.data_dir = tmp_path
        (tmp_path / "metrics").mkdir(exist_ok=True)

    def write(self, **metrics: dict) -> None:
        for name, document in metrics.items():
            (self.data_dir / "metrics" / f"{name}.json").write_text(json.dumps(document))

    def evaluate(
        self,
        now: float,
        records: dict | None = None,
        panels: dict | None = None,
        supervisor: dict | None = None,
    ) -> list[str]:
        """One evaluation; the causes in force."""
        shot = Snapshot(self.data_dir, now, records or {}, panels or {}, supervisor, PLACES)
        evaluated = {rule.name: rule.evaluate(shot) for rule in self.rules}
        bad = known_bad(self.book.db, self.section.known_bad)
        inhibition = prepare(evaluated, shot, bad, self.section.max_per_rule)
        self.book.update(inhibition.results, self.settings, now, hidden=inhibition.hidden)
        return inhibition.causes

    def notifications(self) -> list[tuple[str, str, str]]:
        rows = self.book.db.execute(
            "SELECT n.status, a.rule, a.key FROM notifications n JOIN alerts a "
            "ON a.id = n.alert_id ORDER BY n.id"
        )
        return [tuple(row) for row in rows]


def activity(silent: dict[int, float], now: float = T0) -> dict:
    """dom_activity's metrics: every optical DOM active but those given (seconds silent)."""
    doms = [100 * du + floor for du in (1, 2, 3) for floor in range(19)]
    return {
        "data_time": now,
        "dom_id": doms,
        "inactive_s": [silent.get(d, 0.0) if d % 100 else None for d in doms],
    }


def record(state: str = "running", tags: tuple[str, ...] = ("IO_SUM",)) -> dict:
    return {"state": state, "tags": list(tags), "record_age_s": 1.0, "dropped": 0}


def test_a_du_outage_is_one_notification_not_eighteen(tmp_path) -> None:
    suite = Suite(tmp_path, AlertsSection(clear_s=20, rules={
        "dom_rate_low": AlertRuleSection(metric="dom_rates.rate_khz", below=1, hold_s=0),
    }))  # fmt: skip
    du2 = [d for d in OPTICAL if d // 100 == 2]
    for step in range(40):  # 400 s of a lost DU 2, whose DOMs also count 0 kHz
        silence = 10.0 * step + 5
        suite.write(
            dom_activity=activity(dict.fromkeys(du2, silence), T0 + 10 * step),
            dom_rates={"dom_id": OPTICAL, "rate_khz": [0.0 if d in du2 else 7.0 for d in OPTICAL]},
            pmt_rates={"flagged": [{"dom_id": 205, "channel": 3, "kind": "hot", "rate_hz": 6e5}]},
        )
        causes = suite.evaluate(T0 + 10 * step)
    assert causes == ["DU 2 lost"]
    assert suite.notifications() == [("firing", "du_lost", "DU 2")]
    for step in range(40, 45):  # DU 2 back
        suite.write(
            dom_activity=activity({}, T0 + 10 * step), dom_rates={"dom_id": [], "rate_khz": []}
        )
        suite.evaluate(T0 + 10 * step)
    assert suite.notifications()[1:] == [("resolved", "du_lost", "DU 2")]


def test_a_mirror_outage_is_one_notification(tmp_path) -> None:
    suite = Suite(tmp_path)
    suite.write(
        dom_activity=activity({}), trigger_rates={"latest_start": T0, "latest_hz": {"Overall": 0.0}}
    )
    mirror_down = {"ligiermirror": record("silent"), **{m: record() for m in MONITORS}}
    panels = {
        f"{m}.png": PanelState(m, T0 - 300, T0, True, "no new data") for m in MONITORS
    }  # every plot without new data, the trigger rate at 0 Hz: consequences, not causes
    for step in range(40):
        causes = suite.evaluate(T0 + 10 * step, mirror_down, panels, {})
    assert causes == ["the ligier mirror is silent"]
    assert suite.notifications() == [("firing", "process_down", "ligiermirror")]
    running = {"ligiermirror": record(), **{m: record() for m in MONITORS}}
    suite.write(trigger_rates={"latest_start": T0 + 500, "latest_hz": {"Overall": 50.0}})
    for step in range(40, 45):
        suite.evaluate(T0 + 10 * step, running, {}, {})
    assert suite.notifications()[1:] == [("resolved", "process_down", "ligiermirror")]


@pytest.mark.parametrize(
    ("mirror", "monitors", "supervisor", "summary"),
    [
        ("stopped", "running", {"ligiermirror": {"state": "STOPPED", "description": ""}},
         "no data reaches the monitors: the ligier mirror is stopped"),
        ("disconnected", "disconnected", {},  # the monitoring ligier is down
         "ligiermirror is disconnected"),
    ],
)  # fmt: skip
def test_any_mirror_outage_is_one_alert(tmp_path, mirror, monitors, supervisor, summary) -> None:
    suite = Suite(tmp_path)
    suite.write(dom_activity=activity({}))
    records = {"ligiermirror": record(mirror), **{m: record(monitors) for m in MONITORS}}
    for step in range(10):
        suite.evaluate(T0 + 10 * step, records, {}, supervisor)
    assert suite.notifications() == [("firing", "process_down", "ligiermirror")]
    (alert,) = alert_rows(suite.book.db)
    assert alert["summary"] == summary


def test_a_ligier_down_without_mirror_is_one_alert(tmp_path) -> None:
    suite = Suite(tmp_path)
    suite.write(dom_activity=activity({}))
    records = {m: record("disconnected") for m in MONITORS}
    for step in range(10):
        causes = suite.evaluate(T0 + 10 * step, records)
    assert causes == ["all 4 monitors are disconnected from their ligier"]
    assert suite.notifications() == [("firing", "process_down", "ligier")]


def test_a_stopped_run_hides_per_dom_alerts_and_a_monitor_down_its_plots(tmp_path) -> None:
    suite = Suite(tmp_path)
    suite.write(
        dom_activity=activity(dict.fromkeys(OPTICAL, 400.0)),
        pmt_rates={"flagged": [{"dom_id": 205, "channel": 3, "kind": "hot", "rate_hz": 6e5}]},
    )
    records = {m: record() for m in MONITORS}
    panels = {f"{m}.png": PanelState(m, T0 - 300, T0, True, "no new data") for m in MONITORS}
    for step in range(70):
        causes = suite.evaluate(T0 + 10 * step, records, panels)
    assert causes == ["the run stopped: no summary slices from any DOM"]
    assert suite.notifications() == [("firing", "plot_stale", "dom_activity")]
    late = {"dom_activity": {**record(), "last_message_at": T0 - 10}}  # slow, but it comes
    assert not run_stopped(Snapshot(tmp_path, T0, late, {}, None, Places()))
    late["dom_activity"]["last_message_at"] = T0 - 31
    assert run_stopped(Snapshot(tmp_path, T0, late, {}, None, Places()))

    suite = Suite(tmp_path / "down")
    records["pmt_rates"] = record("disconnected")
    panels = {"pmt_rates_du1.png": PanelState("pmt_rates", T0 - 300, T0, True, "no new data")}
    for step in range(20):
        causes = suite.evaluate(T0 + 10 * step, records, panels)
    assert causes == ["pmt_rates down"]
    assert suite.notifications() == [("firing", "process_down", "pmt_rates")]


def test_known_bad_doms_and_pmts_raise_nothing_a_newly_broken_one_once(tmp_path) -> None:
    suite = Suite(tmp_path, AlertsSection(clear_s=20, known_bad=("105 flooded in 2024",)))
    add_known_bad(suite.book.db, 207, 3, "Ada", "hot since the repair")
    hot = [{"dom_id": 207, "channel": 3, "kind": "hot", "rate_hz": 6e5},
           {"dom_id": 207, "channel": 4, "kind": "hot", "rate_hz": 6e5}]  # fmt: skip
    for step in range(100):
        suite.write(dom_activity=activity({105: 10.0 * step + 5, 310: 10.0 * step + 5}),
                    pmt_rates={"flagged": hot})  # fmt: skip
        suite.evaluate(T0 + 10 * step)
    assert sorted(suite.notifications()) == [
        ("firing", "pmt_hot", "207/4"),
        ("firing", "silent_dom", "310"),
    ], "exactly one alert each for the newly broken PMT and DOM, none for the known ones"
    entries = known_bad(suite.book.db, suite.section.known_bad)
    assert [(e.dom_id, e.channel, e.by) for e in entries] == [(105, None, "pipeline.toml"),
                                                               (207, 3, "Ada")]  # fmt: skip
    assert remove_known_bad(suite.book.db, entries[1].id, "Bob")
    assert not remove_known_bad(suite.book.db, entries[1].id, "Bob")
    assert [e.dom_id for e in known_bad(suite.book.db)] == []
    with pytest.raises(ConfigError, match="known_bad"):
        AlertsSection(known_bad=("DOM-105 broken",))
    assert KnownBad.parse("808/12 hot PMT, ticket 7") == KnownBad(808, 12, "hot PMT, ticket 7")


def test_silenced_alerts_are_recorded_but_notify_no_one_until_the_silence_ends(tmp_path) -> None:
    suite = Suite(tmp_path)
    db = suite.book.db
    (rule_silence,) = [add_silence(db, "rule", "silent_dom", T0 + 600, "Ada", "DU 1 repair")]
    add_silence(db, "du", "3", T0 + 5000, "Bob", "DU 3 being redeployed")
    add_silence(db, "dom", "999", T0 + 5000, "Bob", "an unrelated DOM")
    for step in range(90):  # DOM 105 silent through the end of the rule's silence
        suite.write(dom_activity=activity({105: 10.0 * step + 5, 310: 10.0 * step + 5}))
        suite.evaluate(T0 + 10 * step)
        if step == 50:
            firing = {a["key"]: a for a in alert_rows(db) if a["state"] == "firing"}
            assert firing["105"]["silenced_by"] == rule_silence and firing["310"]["silenced_by"]
            assert suite.notifications() == [], "recorded, firing and silent"
    assert suite.notifications() == [("firing", "silent_dom", "105")], "told once it ended"
    for step in range(90, 100):  # both recover: only the announced one is resolved aloud
        suite.write(dom_activity=activity({}, T0 + 10 * step))
        suite.evaluate(T0 + 10 * step)
    assert suite.notifications()[1:] == [("resolved", "silent_dom", "105")]
    (resolved_silently,) = [a for a in alert_rows(db) if a["key"] == "310"]
    assert resolved_silently["state"] == "resolved" and resolved_silently["announced"] == 0
    report = shift_report(tmp_path, T0, T0 + 1000)
    assert "DOM 310 (DU 3, floor 10) silent 895 s (silenced: nobody notified)" in report
    assert "DOM 105 (DU 1, floor 5) silent 895 s |" in report
    with pytest.raises(ValueError, match="number"):
        add_silence(db, "dom", "DOM 7", T0 + 10, "Ada", "typo")


def test_silence_ends_early_and_older_databases_gain_the_columns(tmp_path) -> None:
    old = sqlite3.connect(tmp_path / "km3mon.sqlite3")
    old.execute("CREATE TABLE alerts (id INTEGER PRIMARY KEY, rule TEXT NOT NULL, key TEXT NOT "
                "NULL, state TEXT NOT NULL, summary TEXT NOT NULL, details TEXT NOT NULL, "
                "started_at REAL NOT NULL, first_seen REAL NOT NULL, last_seen REAL NOT NULL, "
                "fired_at REAL, reminded_at REAL, resolved_at REAL, acked_by TEXT, "
                "ack_comment TEXT, acked_at REAL)")  # fmt: skip
    old.execute("INSERT INTO alerts VALUES (1, 'du_lost', 'DU 2', 'firing', 'DU 2 lost', '{}', "
                "1, 1, 1, 1, NULL, NULL, NULL, NULL, NULL)")  # fmt: skip
    old.commit()
    old.close()
    db = connect(tmp_path)
    assert tuple(db.execute("SELECT announced, silenced_by FROM alerts").fetchone()) == (1, None)
    silence = add_silence(db, "rule", "du_lost", 4e9, "Ada", "test")
    assert end_silence(db, silence, "Bob") and not end_silence(db, silence, "Bob")


def test_hysteresis_one_firing_and_one_resolution_for_a_wobbling_value(tmp_path) -> None:
    suite = Suite(tmp_path, AlertsSection(clear_s=20, flap_window_s=3600, rules={
        "rate_high": AlertRuleSection(metric="dom_rates.rate_khz", above=300, clear_below=250,
                                      hold_s=60),
        "rate_low": AlertRuleSection(metric="dom_rates.rate_khz", below=5, clear_above=6,
                                     hold_s=60),
    }))  # fmt: skip
    for step in range(720):  # two hours of a rate wobbling around 300 kHz every 10 s
        value = 310.0 if step % 2 else 290.0
        suite.write(dom_rates={"dom_id": [105], "rate_khz": [value if step < 700 else 200.0]})
        suite.evaluate(T0 + 10 * step)
    assert suite.notifications() == [
        ("firing", "rate_high", "105"), ("resolved", "rate_high", "105")
    ]  # fmt: skip
    (alert,) = alert_rows(suite.book.db)
    assert "clears below 250" in alert["summary"]
    suite.write(dom_rates={"dom_id": [105], "rate_khz": [310.0]})
    for step in range(10):  # firing again, then km3mon alerts restarts
        suite.evaluate(T0 + 7200 + 10 * step)
    told = suite.notifications()
    assert told[-1] == ("firing", "rate_high", "105")
    restarted = Suite(tmp_path, suite.section)
    restarted.rules[-2].alarmed = restarted.book.active_keys("rate_high")  # as Alerts starts
    suite.write(dom_rates={"dom_id": [105], "rate_khz": [280.0]})
    for step in range(10):  # within the band: still firing after the restart
        restarted.evaluate(T0 + 7300 + 10 * step)
    assert restarted.notifications() == told
    with pytest.raises(ConfigError, match="clear_below"):
        build_rules(AlertsSection(rules={
            "bad": AlertRuleSection(metric="dom_rates.rate_khz", above=300, clear_below=350)
        }))  # fmt: skip
    with pytest.raises(ConfigError, match="clear_above"):
        build_rules(AlertsSection(rules={
            "bad": AlertRuleSection(metric="dom_rates.rate_khz", above=300, clear_above=350)
        }))  # fmt: skip
