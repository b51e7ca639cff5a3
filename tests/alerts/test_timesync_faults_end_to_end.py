"""The simulator's ``wr-loss`` and ``udp-loss`` reach the shifter: simulator → ligier →
timesync and dom_activity → ``km3mon alerts`` → a webhook on loopback, exactly one firing and
one resolved notification per fault, and nothing else."""

from __future__ import annotations

import time

import pytest

from km3mon.detector import read_detx
from km3mon.sim.sim_geometry import synthetic_detx
from km3mon.sim.simulator import Simulator
from tests.alerts.sinks import WebhookReceiver, alerts_pipeline
from tests.conftest import NEVER_LEAVE_OUT_S, read_json, wait_subscribed, wait_until

SEED = 5
FAULT_START_S, FAULT_END_S = 5, 30
SCENARIOS = f"wr-loss@{FAULT_START_S}-{FAULT_END_S},udp-loss@{FAULT_START_S}-{FAULT_END_S}"
HOLD_S = 3


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_wr_loss_and_udp_loss_each_give_one_firing_and_one_resolved(
    start_ligier, spawn, tmp_path
) -> None:
    webhook = WebhookReceiver()
    try:
        detx = tmp_path / "two_dus.detx"
        detx.write_text(synthetic_detx(2))
        planned = Simulator(read_detx(detx), seed=SEED, scenarios=[SCENARIOS]).scenarios
        wr_dom, udp_dom = (s.dom_ids[0] for s in planned)
        assert wr_dom != udp_dom
        pipeline = tmp_path / "pipeline.toml"
        pipeline.write_text(alerts_pipeline(webhook.url, {"time_sync": HOLD_S, "udp_loss": HOLD_S}))
        data = tmp_path / "data"
        data_ligier, log_ligier = start_ligier(), start_ligier()
        common = ["--detx", detx, "-p", data_ligier.port, "-o", tmp_path / "plots",
                  "--data-dir", data, "--pipeline", pipeline, "-i", "1"]  # fmt: skip
        spawn("timesync", *common, "-m", "127.0.0.1", "-q", log_ligier.port)
        spawn("dom_activity", *common)
        spawn("alerts", *common)
        wait_subscribed(data_ligier.port, ("IO_SUM", "IO_TSSN"), name="timesync")
        wait_subscribed(data_ligier.port, name="dom_activity")
        wait_until(lambda: read_json(data / "freshness" / "alerts.json"), what="alerts running")
        started = time.monotonic()
        spawn("simulate", "--detx", detx, "-p", data_ligier.port, "--seed", SEED,
              "--scenario", SCENARIOS, "--simulated-seconds", FAULT_END_S + 45,
              "--max-lag", NEVER_LEAVE_OUT_S)  # fmt: skip

        # Firing: within the hold time, the 10 s window of timesync and a margin for load.
        for rule in ("time_sync", "udp_loss"):
            deadline_s = FAULT_START_S + HOLD_S + 40 - (time.monotonic() - started)
            wait_until(lambda r=rule: webhook.of(r), deadline_s, f"the {rule} webhook",
                       show=lambda: webhook.bodies)  # fmt: skip
        (wr,) = webhook.of("time_sync")
        assert (wr["status"], wr["dom_id"]) == ("firing", wr_dom)
        assert wr["summary"].endswith("time sync lost") and wr["floor"] >= 1
        (udp,) = webhook.of("udp_loss")
        assert (udp["status"], udp["dom_id"]) == ("firing", udp_dom)
        assert "UDP data lost (" in udp["summary"] and "frames/s of 10" in udp["summary"]

        # Resolved once the fault is over (the window empties, then clear_s).
        for rule in ("time_sync", "udp_loss"):
            deadline_s = FAULT_END_S + 60 - (time.monotonic() - started)
            wait_until(lambda r=rule: webhook.of(r, "resolved"), deadline_s,
                       f"the resolved {rule}", show=lambda: webhook.bodies)  # fmt: skip
        time.sleep(3)
        for rule in ("time_sync", "udp_loss"):
            assert [b["status"] for b in webhook.of(rule)] == ["firing", "resolved"], rule
        others = [b for b in webhook.bodies if b["rule"] not in ("time_sync", "udp_loss")]
        assert not others, f"nothing else fired: {others}"
    finally:
        webhook.close()
