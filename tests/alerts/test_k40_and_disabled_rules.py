"""k40's flagged and no-peak PMTs become alerts, one per DOM; what the DETX disables never
alerts (silent_dom, du_lost, pmt_hot, pmt_hrv, k40)."""

from __future__ import annotations

import json

from km3mon.alerts.rules import Places, Snapshot, build_rules
from km3mon.config import AlertsSection
from km3mon.detector import parse_detx
from km3mon.sim.sim_geometry import synthetic_detx

T0 = 1_700_000_000.0


def snapshot(tmp_path, metrics: dict, places: Places) -> Snapshot:
    (tmp_path / "metrics").mkdir(parents=True, exist_ok=True)
    for name, document in metrics.items():
        (tmp_path / "metrics" / f"{name}.json").write_text(json.dumps(document))
    return Snapshot(tmp_path, T0, {}, {}, None, places)


def rules() -> dict:
    return {rule.name: rule for rule in build_rules(AlertsSection())}


def test_k40_flags_are_one_alert_per_dom_with_the_offsets(tmp_path) -> None:
    places = Places({11: (1, 1), 12: (1, 2), 13: (1, 3)}, disabled_pmts=frozenset({(13, 4)}))
    k40 = {
        "flagged": [
            {"dom_id": 11, "du": 1, "floor": 1, "channel": 3, "t0_ns": 3.04},
            {"dom_id": 11, "du": 1, "floor": 1, "channel": 20, "t0_ns": -2.61},
            {"dom_id": 12, "du": 1, "floor": 2, "channel": 0, "t0_ns": 7.9},
        ],
        "no_peak": [
            {"dom_id": 12, "du": 1, "floor": 2, "channel": 9, "singles_khz": 7.1},
            {"dom_id": 13, "du": 1, "floor": 3, "channel": 4, "singles_khz": 6.5},
        ],
    }
    # beyond the list's cap DOM 14 is only counted, DOM 13's count is its disabled PMT's
    k40["doms"] = {"dom_id": [11, 12, 13, 14], "n_flagged": [2, 1, 0, 3], "n_no_peak": [0, 1, 1, 0]}
    places.du_floor[14] = (2, 1)
    shot = snapshot(tmp_path, {"k40": k40}, places)
    found = rules()
    t0 = found["k40_t0"].evaluate(shot)
    assert [(c.key, c.dom_id, c.du, c.floor) for c in t0] == [
        ("11", 11, 1, 1), ("12", 12, 1, 2), ("14", 14, 2, 1)]  # fmt: skip
    assert "offsets.csv" in t0[2].summary and t0[2].link == "/plot/k40_du2"
    assert "channel 3 +3.0 ns, channel 20 -2.6 ns" in t0[0].summary
    assert t0[0].summary.startswith("DOM 11 (DU 1, floor 1)") and t0[0].link == "/plot/k40_du1"
    (no_peak,) = found["k40_no_peak"].evaluate(shot)  # DOM 13's PMT 4 is disabled
    assert (no_peak.key, no_peak.dom_id) == ("12", 12) and "channel(s) 9" in no_peak.summary
    assert found["k40_t0"].settings.hold_s == 0, "a calibration period is the hold"


def test_k40_rules_cannot_tell_before_a_calibration(tmp_path) -> None:
    shot = snapshot(tmp_path, {"k40": {"calibrations": 0, "period_s": 600}}, Places())
    assert rules()["k40_t0"].evaluate(shot) is None
    assert rules()["k40_no_peak"].evaluate(shot) is None
    assert rules()["k40_t0"].evaluate(snapshot(tmp_path / "none", {}, Places())) is None


def test_a_dom_or_pmt_disabled_in_the_detx_raises_nothing(tmp_path) -> None:
    """Floor 2 of DUs 1 and 2 disabled (MODULE_DISABLE), DU 1 floor 1 channel 7 too
    (PMT_DISABLE). Silent: DU 1 floor 2, DU 2 floor 1: only the latter alerts, as a DOM (DU 2
    is not lost); then DU 2's floor 3 falls silent too: DU 2 is lost, its disabled DOM aside."""
    lines = synthetic_detx(2, det_id=5, n_floors=3).splitlines()
    detector = parse_detx("\n".join(lines) + "\n")
    dom = {(int(du), int(fl)): int(d) for d, du, fl in zip(
        detector.dom_ids, detector.dom_du, detector.dom_floor, strict=True)}  # fmt: skip
    pmt_of = {int(p): k for k, p in enumerate(detector.pmt_ids)}
    for k, line in enumerate(lines):
        fields = line.split()
        if fields[:1] in ([str(dom[1, 2])], [str(dom[2, 2])]) and len(fields) == 13:
            lines[k] = " ".join([*fields[:-2], "1", fields[-1]])
        elif len(fields) == 9 and int(fields[0]) in pmt_of:
            row = pmt_of[int(fields[0])]
            if (detector.pmt_dom_index[row], detector.pmt_channel[row]) == (
                detector.dom_index([dom[1, 1]])[0], 7):  # fmt: skip
                lines[k] = " ".join([*fields[:-1], "1"])
    disabled = parse_detx("\n".join(lines) + "\n")
    places = Places.of_detector(disabled)
    assert places.disabled(dom[1, 2]) and places.disabled(dom[1, 1], 7)
    assert not places.disabled(dom[1, 1]) and not places.disabled(dom[1, 1], 6)
    ids = [dom[1, 1], dom[1, 2], dom[1, 3], dom[2, 1], dom[2, 2], dom[2, 3]]
    activity = {"data_time": T0, "dom_id": ids,
                "inactive_s": [0.0, 900.0, 0.0, 800.0, None, 0.0]}  # fmt: skip
    pmt_rates = {"flagged": [
        {"dom_id": dom[1, 1], "du": 1, "channel": 7, "kind": "hot", "rate_hz": 6e5},
        {"dom_id": dom[1, 2], "du": 1, "channel": 3, "kind": "hrv", "hrv_fraction": 0.9},
        {"dom_id": dom[1, 1], "du": 1, "channel": 8, "kind": "hot", "rate_hz": 6e5},
    ]}  # fmt: skip
    shot = snapshot(tmp_path, {"dom_activity": activity, "pmt_rates": pmt_rates}, places)
    found = rules()
    assert [c.dom_id for c in found["silent_dom"].evaluate(shot)] == [dom[2, 1]]
    assert found["du_lost"].evaluate(shot) == []
    assert [c.key for c in found["pmt_hot"].evaluate(shot)] == [f"{dom[1, 1]}/8"]
    assert found["pmt_hrv"].evaluate(shot) == []
    activity["inactive_s"][-1] = 700.0
    shot = snapshot(tmp_path, {"dom_activity": activity}, places)
    assert found["silent_dom"].evaluate(shot) == []
    (lost,) = found["du_lost"].evaluate(shot)
    assert (lost.du, lost.held_s) == (2, 700.0) and "all 2 DOMs" in lost.summary
