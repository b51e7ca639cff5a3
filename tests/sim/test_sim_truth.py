"""The simulator's truth file and the t0-offset scenario (what the reco monitor must find)."""

from __future__ import annotations

import json

import numpy as np

from km3mon.reco.model import track_time_ns, zenith_deg
from km3mon.sim.sim_truth import TruthWriter, read_truth
from tests.reco.simulated import arca21_sample
from tests.sim.test_simulator_support import arca21


def test_truth_file_has_one_record_per_event_keyed_as_the_event(tmp_path) -> None:
    path = tmp_path / "truth.jsonl"
    sample = arca21_sample(0, scenarios=["t0-offset@1"])
    writer = TruthWriter(path, sample.simulator.scenarios)
    sample.simulator.on_event = writer
    for _ in range(15):
        sample.simulator.step()
    # on disk before close: a simulator killed after sending still left the truth of all it sent
    assert len(read_truth(path)[1]) == sample.simulator.trigger_counter
    writer.close()
    scenarios, events = read_truth(path)
    (scenario,) = scenarios
    assert scenario["scenario"] == "t0-offset" and scenario["offset_ns"] == 8.0
    assert "+8 ns against the DETX" in scenario["describe"]
    assert len(events) == sample.simulator.trigger_counter > 30
    record = events[(10_000, 1, 1)]
    direction = np.array([record["dir_x"], record["dir_y"], record["dir_z"]])
    assert abs(np.linalg.norm(direction) - 1) < 1e-6
    assert record["zenith_deg"] == round(float(zenith_deg(direction[2])), 6)
    assert record["n_signal_hits"] >= 6
    # a torn last line (the simulator still writing) is skipped
    with path.open("a") as stream:
        stream.write('{"run": 10000, "frame_')
    assert len(read_truth(path)[1]) == len(events)
    json.loads(path.read_text().splitlines()[0])


def test_t0_offset_makes_one_doms_hits_late_by_the_offset() -> None:
    sample = arca21_sample(60, scenarios=["t0-offset@0"], t0_offset_ns=12.0)
    (scenario,) = sample.simulator.scenarios
    dom_id = scenario.dom_ids[0]
    hits = sample.hits
    k = hits["event"].astype(int)
    positions = np.column_stack((hits["pos_x_m"], hits["pos_y_m"], hits["pos_z_m"]))
    delay = np.array(
        [
            hits["time_ns"][i]
            - track_time_ns(positions[i : i + 1], sample.true_pos_m[e], sample.true_dir[e],
                            sample.true_t_ns[e])[0]
            for i, e in enumerate(k.tolist())
        ]
    )  # fmt: skip
    muon = np.isfinite(delay)  # events triggered by K40 alone have no muon
    mine = (hits["dom_id"] == dom_id) & muon
    assert mine.sum() >= 5
    # the leading edge (direct light), not the median: the late tail depends on distance
    shift = np.percentile(delay[mine], 20) - np.percentile(delay[~mine & muon], 20)
    assert 9.0 < shift < 15.0
    assert arca21().du_floor(dom_id)[0] == scenario.du
