"""The simulated IO_TSL1 / IO_TSSN: what the DataFilters would send, from the same model."""

from __future__ import annotations

import numpy as np
import pytest

from km3mon.daq import decode_events_hits
from km3mon.daq.timeslice import frames_complete, frames_white_rabbit
from km3mon.physics.coincidences import CoincidenceFinder
from km3mon.sim.sim_timeslices import K40_ANGULAR_PARAMETERS, burst_total_hz
from tests.sim.test_simulator_support import START_UTC_S, arca21, orca6, simulate

N_SLICES = 20


@pytest.fixture(scope="module")
def stream():
    return simulate(N_SLICES, ["wr-loss@0.5"], seed=5, timeslices=True, data_filters=3)


def test_one_message_per_data_filter_and_frame_index_with_every_dom(stream) -> None:
    detector = orca6()
    wr_lost = next(s for s in stream.simulator.scenarios if s.name == "wr-loss").dom_ids[0]
    for tag in ("IO_TSL1", "IO_TSSN"):
        slices = stream.decoded(tag)
        assert len(slices) == 3 * N_SLICES  # 3 DataFilters
        by_index: dict[int, list] = {}
        for timeslice in slices:
            by_index.setdefault(timeslice.header.frame_index, []).append(timeslice)
            frames = timeslice.frames
            # whole DUs per DataFilter, frames with no hits included
            dus = {detector.du_floor(int(d))[0] for d in frames["dom_id"]}
            assert len(dus) == 2 and len(frames) == 36
            assert frames_complete(frames).all()  # incomplete frames go to IO_TS, not here
            wr_ok = frames_white_rabbit(frames)
            lost = frames["dom_id"] == wr_lost
            assert wr_ok[~lost].all()
            assert not wr_ok[lost].any() or timeslice.header.timestamp < START_UTC_S + 0.5
        for frame_index, messages in by_index.items():
            doms = np.concatenate([m.frames["dom_id"] for m in messages])
            assert sorted(doms.tolist()) == sorted(detector.optical_dom_ids.tolist()), frame_index
    lost_frames = [
        t.frames[t.frames["dom_id"] == wr_lost]
        for t in stream.decoded("IO_TSSN")
        if t.header.timestamp >= START_UTC_S + 0.5
    ]
    lost_frames = [f for f in lost_frames if len(f)]
    assert len(lost_frames) >= N_SLICES - 6
    assert not any(frames_white_rabbit(f)[0] for f in lost_frames)


def test_sn_stream_holds_only_groups_of_four_pmts_and_the_events_muon_light(stream) -> None:
    detector = orca6()
    finder = CoincidenceFinder(detector, window_ns=11)  # the L1 window on integer TDC times
    from km3mon.daq.timeslice import locate_frames

    multiplicities = []
    for payload in stream.payloads("IO_TSSN"):
        coincidences, unknown = finder.find(payload, locate_frames(payload))
        assert not len(unknown)
        multiplicities.append(coincidences.multiplicity)
    multiplicity = np.concatenate(multiplicities)
    assert len(multiplicity) and (multiplicity >= 4).mean() > 0.97
    # every hit of a triggered event's group of >= 4 PMTs on a DOM is in IO_TSSN, same time
    events, hits = decode_events_hits(stream.payloads("IO_EVT"))
    sn_hits = {
        (int(h["dom_id"]), int(h["channel"]), int(h["time_ns"]))
        for t in stream.decoded("IO_TSSN")
        for h in t.hits
    }
    triggered = hits[hits["triggered"]]
    keys = {(int(h["dom_id"]), int(h["channel"]), int(h["time_ns"])) for h in triggered}
    assert len(events) and len(keys & sn_hits) > 0.2 * len(keys)


def test_l1_rates_and_k40_pairs_as_the_angular_model_says() -> None:
    stream = simulate(N_SLICES, seed=6, detector=arca21(), timeslices=True)
    detector = arca21()
    n_doms = len(detector.optical_dom_ids)
    l1_hits = sum(len(t.hits) for t in stream.decoded("IO_TSL1"))
    per_dom_hz = l1_hits / (N_SLICES * 0.1) / n_doms
    # 656 Hz genuine twofolds + ~580 Hz accidentals (230 kHz singles) + higher multiplicities
    assert 2_200 < per_dom_hz < 2_800
    model = stream.simulator.timeslices
    per_dom = model.pair_rate_hz.sum(axis=1)
    efficiency = stream.simulator.calibration.efficiency
    assert 540 < np.median(per_dom) < 780  # 656 Hz for unit efficiencies
    assert efficiency.std() > 0.05  # per-PMT efficiencies are in the model
    p1, p2, p3, p4 = K40_ANGULAR_PARAMETERS
    assert np.exp(p1 + 0.5 * (p2 + 0.5 * (p3 + 0.5 * p4))) == pytest.approx(1.8, abs=0.05)


def test_sn_burst_profile_has_the_documented_amplitude() -> None:
    # 0.2 Hz per DOM in multiplicities 7-11 during the accretion phase, then a third, decaying
    from km3mon.sim.sim_timeslices import SN_BURST_SELECTED_HZ, burst_multiplicity_weights

    weights = burst_multiplicity_weights()
    selected = burst_total_hz(0.1) * weights[7:12].sum() / weights.sum()
    assert selected == pytest.approx(SN_BURST_SELECTED_HZ)
    assert burst_total_hz(0.6) == pytest.approx(burst_total_hz(0.1) / 3, rel=0.05)
    assert burst_total_hz(9.5) < burst_total_hz(1.0) / 10
