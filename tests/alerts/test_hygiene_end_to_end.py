"""Inhibition and a silence through real processes: simulator → DAQ ligier → ligiermirror →
monitoring ligier → dom_activity → ``km3mon alerts`` → a webhook receiver on loopback, with the
silence set on the real dashboard (``km3mon webserver``) by a POST behind its auth, as the
alerts page sends it.

A simulated DU is lost for 25 s (18 silent DOMs, each also past a threshold rule on its
inactive time: one alert, not 36) while a DOM of another DU
is silent from 5 s to the end; a shifter silenced that DOM before. The webhook must receive
exactly the DU's firing and resolved notifications; the silenced DOM's alert is recorded and
shown on the dashboard, silenced. Then the DAQ ligier goes away: one alert, the mirror's.
"""

from __future__ import annotations

import base64
import json
import time
import urllib.request
from urllib.parse import urlencode

import pytest

from km3mon.detector import read_detx
from km3mon.sim.sim_geometry import synthetic_detx
from km3mon.sim.simulator import Simulator
from tests.alerts.sinks import WebhookReceiver, alerts_pipeline
from tests.conftest import (
    NEVER_LEAVE_OUT_S,
    free_port,
    read_json,
    wait_for_port,
    wait_subscribed,
    wait_until,
)

SEED = 12
SCENARIOS = "du-loss@5-30,silent-dom@5"
HOLD_S = 6
AUTH = ("shifter", "s3cret")


class Dashboard:
    """The real dashboard, spoken to as the alerts page's forms and scripts do."""

    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"
        token = base64.b64encode(":".join(AUTH).encode()).decode()
        self.headers = {"Authorization": f"Basic {token}"}

    def post(self, path: str, form: dict[str, str]) -> str:
        """POST a form from our own page; the page it is sent back to."""
        request = urllib.request.Request(
            self.base + path,
            data=urlencode(form).encode(),
            headers={**self.headers, "Origin": self.base},
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.url

    def alerts(self) -> dict:
        request = urllib.request.Request(self.base + "/api/alerts", headers=self.headers)
        with urllib.request.urlopen(request, timeout=10) as answer:
            return json.load(answer)


@pytest.fixture
def webhook():
    receiver = WebhookReceiver()
    yield receiver
    receiver.close()


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_lost_du_is_one_alert_and_a_silenced_dom_notifies_no_one(
    start_ligier, spawn, tmp_path, webhook
) -> None:
    detx = tmp_path / "three_dus.detx"
    detx.write_text(synthetic_detx(3))
    planned = {
        s.name: s for s in Simulator(read_detx(detx), seed=SEED, scenarios=[SCENARIOS]).scenarios
    }
    lost, silent = planned["du-loss"], planned["silent-dom"]
    assert silent.du != lost.du, "the seed puts the silent DOM in another DU"
    pipeline = tmp_path / "pipeline.toml"
    pipeline.write_text(
        alerts_pipeline(
            webhook.url,
            {"silent_dom": HOLD_S, "du_lost": HOLD_S, "process_down": 3},
            head=f'[WebServer]\nusername = "{AUTH[0]}"\npassword = "{AUTH[1]}"\n',
            tail="""
[Alerts.dom_inactive]  # a threshold rule per DOM: the lost DU's 18 DOMs, hidden by du_lost
metric = "dom_activity.inactive_s"
above = 2.0
hold_s = 3
""",
        )
    )
    data = tmp_path / "data"
    daq, ligier = start_ligier(), start_ligier()
    spawn("ligiermirror", "127.0.0.1", "-p", daq.port, "-q", ligier.port, "-m", "IO_SUM",
          "--data-dir", data)  # fmt: skip
    common = ["--detx", detx, "-p", ligier.port, "-o", tmp_path / "plots", "--data-dir", data,
              "--pipeline", pipeline]  # fmt: skip
    spawn("dom_activity", *common, "-i", "1")
    spawn("alerts", *common, "-i", "1")
    port = free_port()
    spawn("webserver", "-p", port, "--host", "127.0.0.1", "--plots", tmp_path / "plots",
          "--data", data, "--pipeline", pipeline)  # fmt: skip
    wait_for_port(port, 60)
    dashboard = Dashboard(port)
    wait_subscribed(ligier.port, name="dom_activity")
    wait_subscribed(daq.port, name="ligiermirror")
    wait_until(lambda: read_json(data / "freshness" / "alerts.json"), 30, "alerts running")

    # The shifter silences the DOM for an hour on the alerts page, with a name and a reason.
    form = {"kind": "dom", "value": str(silent.dom_ids[0]), "hours": "1", "name": "Ada",
            "reason": "DOM under investigation"}  # fmt: skip
    assert "Silenced+dom" in dashboard.post("/alerts/silences", form)
    (silence,) = dashboard.alerts()["silences"]
    assert silence["created_by"] == "Ada" and silence["value"] == str(silent.dom_ids[0])

    simulator = spawn("simulate", "--detx", detx, "-p", daq.port, "--seed", SEED,
          "--scenario", SCENARIOS, "--simulated-seconds", 50,
          "--max-lag", NEVER_LEAVE_OUT_S)  # fmt: skip

    def firing() -> dict[str, dict]:
        return {a["rule"]: a for a in dashboard.alerts()["firing"]}

    wait_until(lambda: webhook.of("du_lost"), 5 + HOLD_S + 60, "the du_lost webhook",
               show=lambda: webhook.bodies)  # fmt: skip
    wait_until(lambda: "silent_dom" in firing(), 30, "the silenced DOM's alert, recorded",
               show=firing)  # fmt: skip
    shown = firing()["silent_dom"]
    assert shown["silenced_by"] == silence["id"] and shown["details"]["dom_id"] == silent.dom_ids[0]
    wait_until(lambda: "dom_inactive" in firing(), 30, "the silenced DOM's threshold alert",
               show=firing)  # fmt: skip
    assert firing()["dom_inactive"]["key"] == str(silent.dom_ids[0]), "the lost DU's are hidden"
    assert firing()["dom_inactive"]["silenced_by"] == silence["id"]
    assert webhook.of("du_lost")[0]["du"] == lost.du
    wait_until(lambda: webhook.of("du_lost", "resolved"), 60, "the DU back: resolved",
               show=lambda: webhook.bodies)  # fmt: skip
    time.sleep(3)  # anything else would come within an evaluation or two
    assert [(b["rule"], b["status"]) for b in webhook.bodies] == [
        ("du_lost", "firing"), ("du_lost", "resolved")
    ], "one alert for 18 silent DOMs, nothing for the silenced one"  # fmt: skip
    assert len(dashboard.alerts()["firing"]) == 2, "the silenced DOM's two alerts"
    metrics = data / "metrics" / "alerts.json"
    wait_until(lambda: read_json(metrics).get("silenced") == 2, 20, "2 silenced in the metrics",
               show=lambda: read_json(metrics))  # fmt: skip

    # The DAQ ligier goes away: the mirror's one alert hides every consequence.
    wait_until(lambda: not simulator.alive(), 60, "the simulation's end")
    daq.process.stop()
    wait_until(lambda: webhook.of("process_down"), 60, "the mirror's alert",
               show=lambda: webhook.bodies)  # fmt: skip
    time.sleep(3)
    assert [(b["rule"], b["key"]) for b in webhook.bodies[2:]] == [("process_down", "ligiermirror")]
