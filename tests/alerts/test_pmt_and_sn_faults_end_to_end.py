"""The simulator's ``hot-pmt`` (twice, the second while the first is firing), ``hrv-storm``
and ``sn-burst`` reach the shifter: simulator → ligier → pmt_rates and sn → ``km3mon alerts``
→ a webhook on loopback. Each fault gives exactly one firing and one resolved notification per
alert, by its own rule, and the background between them (bioluminescent glows above the
colour scale included) gives nothing. On ARCA-21: its storm of 95 DOMs puts more PMTs above
the colour scale than pmt_rates lists, and a 10 kpc supernova is too faint for 3 DUs."""

from __future__ import annotations

import time

import pytest

from km3mon.alerts.rules import SNAlarm
from km3mon.detector import read_detx
from km3mon.sim.simulator import Simulator
from tests.alerts.sinks import WebhookReceiver, alerts_pipeline
from tests.conftest import NEVER_LEAVE_OUT_S, read_json, wait_subscribed, wait_until
from tests.sim.test_simulator_support import ARCA21_DETX

SEED = 3
SCENARIOS = "hot-pmt@5-45,hot-pmt@20-45,hrv-storm@55-85,sn-burst@95-105"
DURATION_S = 120
#: Longer than two of pmt_rates' columns: a glow keeps a DOM's PMTs in veto for one column
#: at most, a storm for all of them.
HOLD_S = 10
COLUMN_S = 4


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_hot_pmts_an_hrv_storm_and_an_sn_burst_each_notify_once(
    start_ligier, spawn, tmp_path
) -> None:
    webhook = WebhookReceiver()
    try:
        detx = ARCA21_DETX
        planned = Simulator(read_detx(detx), seed=SEED, scenarios=[SCENARIOS]).scenarios
        hot_keys = [f"{s.dom_ids[0]}/{s.channel}" for s in planned if s.name == "hot-pmt"]
        assert len(set(hot_keys)) == 2, "two different PMTs"
        pipeline = tmp_path / "pipeline.toml"
        pipeline.write_text(
            alerts_pipeline(
                webhook.url,
                {"pmt_hot": HOLD_S, "pmt_hrv": HOLD_S},
                head=f"[PMTRates]\ninterval = {COLUMN_S}\n",
            )
        )
        data = tmp_path / "data"
        ligier = start_ligier()
        common = ["--detx", detx, "-p", ligier.port, "-o", tmp_path / "plots",
                  "--data-dir", data, "--pipeline", pipeline]  # fmt: skip
        spawn("pmt_rates", *common)
        spawn("sn", *common, "-i", "2")
        spawn("alerts", *common, "-i", "1")
        wait_subscribed(ligier.port, ("IO_MONIT",), name="pmt_rates", timeout_s=120)
        wait_subscribed(ligier.port, ("IO_TSSN",), name="sn", timeout_s=120)
        wait_until(lambda: read_json(data / "freshness" / "alerts.json"), 60, "alerts running")
        started = time.monotonic()
        spawn("simulate", "--detx", detx, "-p", ligier.port, "--seed", SEED,
              "--scenario", SCENARIOS, "--simulated-seconds", DURATION_S,
              "--max-lag", NEVER_LEAVE_OUT_S)  # fmt: skip

        def wait_for(rule: str, status: str, count: int, by_s: float) -> None:
            deadline_s = by_s - (time.monotonic() - started)
            wait_until(lambda: len(webhook.of(rule, status)) >= count, max(deadline_s, 5),
                       f"{count} {status} {rule}", show=lambda: webhook.bodies)  # fmt: skip

        # Firing within the hold, two columns and a margin for load; the second hot PMT
        # while the first one's alert is firing.
        wait_for("pmt_hot", "firing", 2, 20 + HOLD_S + 2 * COLUMN_S + 60)
        assert [b["key"] for b in webhook.of("pmt_hot", "firing")] == hot_keys
        wait_for("pmt_hot", "resolved", 2, 45 + 2 * COLUMN_S + 60)
        wait_for("pmt_hrv", "firing", 1, 55 + HOLD_S + 2 * COLUMN_S + 60)
        wait_for("sn_alarm", "firing", 1, 105 + 60)
        (alarm,) = webhook.of("sn_alarm", "firing")
        assert "SN alarm at " in alarm["summary"] and "sigma" in alarm["summary"]
        wait_for("pmt_hrv", "resolved", 1, 85 + 2 * COLUMN_S + 60)
        wait_for("sn_alarm", "resolved", 1, 105 + SNAlarm.LATCH_S + 60)
        time.sleep(3)
        seen = [(b["rule"], b["status"]) for b in webhook.bodies]
        for rule, alerts in (("pmt_hot", 2), ("pmt_hrv", 1), ("sn_alarm", 1)):
            assert seen.count((rule, "firing")) == alerts, seen
            assert seen.count((rule, "resolved")) == alerts, seen
        assert len(seen) == 8, f"nothing else: {seen}"
    finally:
        webhook.close()
