"""Each scenario is visible in the decoded stream as intended, from its start time on."""

from __future__ import annotations

import numpy as np
import pytest

from km3mon.daq.monitoring import rates_hz as monit_rates_hz
from km3mon.daq.summaryslice import channel_bits
from km3mon.sim.scenarios import (
    DEFAULT_START_S,
    KINDS,
    effects_at,
    parse_scenario_names,
    plan_scenarios,
)
from km3mon.sim.sim_optical import HRV_THRESHOLD_HZ
from tests.sim.test_simulator_support import orca6, simulate

N_SLICES = 20
START_SLICE = 10  # scenarios start at 1 s = timeslice 10 (frame index 11)


def split(values: list, frame_index: list[int]) -> tuple[list, list]:
    before = [v for v, f in zip(values, frame_index, strict=True) if f <= START_SLICE]
    after = [v for v, f in zip(values, frame_index, strict=True) if f > START_SLICE]
    return before, after


def slice_index(packets: np.ndarray) -> np.ndarray:
    """Timeslice of each TMCH packet since the first one, from its UTC time."""
    tenths = packets["utc_seconds"].astype(np.int64) * 10 + packets["utc_16ns_cycles"] // 6_250_000
    return tenths - tenths.min()


def packets_per_slice(stream) -> list[np.ndarray]:
    packets = stream.packets()
    index = slice_index(packets)
    return [packets[index == i] for i in range(N_SLICES)]


@pytest.mark.parametrize("name", ["silent-dom", "du-loss"])
def test_silenced_clbs_vanish_from_summaries_tmch_and_events(name: str) -> None:
    stream = simulate(N_SLICES, [f"{name}@1"], seed=11)
    (scenario,) = stream.simulator.scenarios
    gone = np.array(scenario.dom_ids)
    detector = orca6()
    if name == "du-loss":
        assert set(gone.tolist()) == set(detector.dom_ids[detector.dom_du == scenario.du].tolist())
        assert len(gone) == 19  # 18 optical DOMs and the base module
    else:
        assert len(gone) == 1 and detector.du_floor(gone[0])[1] > 0
    for index, (summaryslice, packets) in enumerate(
        zip(stream.decoded("IO_SUM"), packets_per_slice(stream), strict=True)
    ):
        present = np.isin(gone, np.r_[summaryslice.dom_ids, packets["dom_id"]])
        if index < START_SLICE:
            assert present.all()
        else:
            assert not present.any()
            assert len(packets) == len(detector.dom_ids) - len(gone)
    events = stream.decoded("IO_EVT")
    _, after = split(events, [e.header.frame_index for e in events])
    assert after and not any(np.isin(e.snapshot_hits["dom_id"], gone).any() for e in after)


def test_hot_pmt_counts_far_above_range_with_hrv() -> None:
    stream = simulate(N_SLICES, ["hot-pmt@1"], seed=11)
    (scenario,) = stream.simulator.scenarios
    dom_id, channel = scenario.dom_ids[0], scenario.channel
    for summaryslice in stream.decoded("IO_SUM"):
        row = np.flatnonzero(summaryslice.dom_ids == dom_id)[0]
        rate_hz = summaryslice.rates_hz[row, channel]
        hot = summaryslice.header.frame_index > START_SLICE
        assert (rate_hz > 300_000) == hot and summaryslice.hrv[row, channel] == hot
        others = np.delete(summaryslice.rates_hz[row], channel)
        assert np.median(others) < 20_000
    packets = stream.packets()
    mine = packets[packets["dom_id"] == dom_id]
    assert (monit_rates_hz(mine)[START_SLICE:, channel] > 300_000).all()
    assert channel_bits(mine["hrv"])[START_SLICE:, channel].all()


def test_hrv_storm_sets_veto_bits_on_a_quarter_of_the_doms() -> None:
    stream = simulate(N_SLICES, ["hrv-storm@1"], seed=11)
    (scenario,) = stream.simulator.scenarios
    assert len(scenario.dom_ids) == round(0.25 * 108)
    for summaryslice in stream.decoded("IO_SUM"):
        stormy = np.isin(summaryslice.dom_ids, scenario.dom_ids)
        if summaryslice.header.frame_index > START_SLICE:
            assert summaryslice.hrv[stormy].mean() > 0.6
            assert (summaryslice.rates_hz[stormy] > HRV_THRESHOLD_HZ).mean() > 0.6
        else:
            assert summaryslice.hrv[stormy].mean() < 0.05
        assert summaryslice.hrv[~stormy].mean() < 0.05
    packets = stream.packets()
    stormy = np.isin(packets["dom_id"], scenario.dom_ids)
    late = slice_index(packets) >= START_SLICE
    assert channel_bits(packets["hrv"][stormy & late]).mean() > 0.6


def test_trigger_zero_stops_the_events() -> None:
    stream = simulate(40, ["trigger-zero@1"], seed=11)
    frames = [e.header.frame_index for e in stream.decoded("IO_EVT")]
    assert frames and max(frames) <= START_SLICE
    assert len(stream.decoded("IO_SUM")) == 40  # the rest goes on


def test_wr_loss_clears_the_white_rabbit_bit_of_one_dom() -> None:
    stream = simulate(N_SLICES, ["wr-loss@1"], seed=11)
    (scenario,) = stream.simulator.scenarios
    dom_id = scenario.dom_ids[0]
    for summaryslice in stream.decoded("IO_SUM"):
        mine = summaryslice.dom_ids == dom_id
        lost = summaryslice.header.frame_index > START_SLICE
        assert summaryslice.white_rabbit[mine][0] == (not lost)
        assert summaryslice.white_rabbit[~mine].all()
    packets = stream.packets()
    wr_ok = packets["dom_status"][:, 0] >> 31 == 1
    mine = packets["dom_id"] == dom_id
    assert wr_ok[mine].tolist() == [True] * START_SLICE + [False] * (N_SLICES - START_SLICE)
    assert wr_ok[~mine].all()


def test_a_scenario_with_an_end_only_acts_in_its_window() -> None:
    stream = simulate(N_SLICES, ["hot-pmt@0.5-1.5"], seed=11)
    (scenario,) = stream.simulator.scenarios
    hot = []
    for summaryslice in stream.decoded("IO_SUM"):
        row = np.flatnonzero(summaryslice.dom_ids == scenario.dom_ids[0])[0]
        hot.append(bool(summaryslice.rates_hz[row, scenario.channel] > 300_000))
    assert hot == [False] * 5 + [True] * 10 + [False] * 5


def test_plans_are_deterministic_per_seed_and_documented() -> None:
    specs = parse_scenario_names(["silent-dom,du-loss", "hot-pmt@60", "wr-loss@5-20"])
    assert specs == [
        ("silent-dom", DEFAULT_START_S, None),
        ("du-loss", DEFAULT_START_S, None),
        ("hot-pmt", 60.0, None),
        ("wr-loss", 5.0, 20.0),
    ]
    detector = orca6()
    plan = plan_scenarios(specs, detector, seed=1)
    assert [s.describe() for s in plan] == [
        s.describe() for s in plan_scenarios(specs, detector, 1)
    ]
    texts = [s.describe() for s in plan]
    assert texts[0] == (
        f"silent-dom: DOM {plan[0].dom_ids[0]} of DU {plan[0].du}, from 10 s to the end"
    )
    assert texts[2].startswith(f"hot-pmt: channel {plan[2].channel} of DOM {plan[2].dom_ids[0]}")
    assert texts[3].endswith("from 5 s to 20 s")
    targets = {plan_scenarios(specs[:1], detector, seed)[0].dom_ids for seed in range(10)}
    assert len(targets) > 5


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("dead-dom", "unknown scenario 'dead-dom'; known: " + ", ".join(KINDS)),
        ("hot-pmt@soon", "expected NAME"),
        ("hot-pmt@20-10", "START_S < END_S"),
    ],
)
def test_bad_scenario_names_are_refused(value: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        parse_scenario_names([value])


def test_pmt_t0_15_delays_one_pmt_by_15_ns() -> None:
    """The large variant of pmt-t0: beyond the L1 window, what k40's "no K40 peak" is for."""
    (small, large) = plan_scenarios(parse_scenario_names(["pmt-t0@0,pmt-t0-15@0"]), orca6(), seed=3)
    effects = effects_at([large], 1.0, len(orca6().dom_ids), 31)
    (shifted,) = zip(*np.nonzero(effects.time_shift_ns), strict=True)
    assert shifted == (large.dom_index[0], large.channel)
    assert effects.time_shift_ns[shifted] == 15.0
    assert large.describe().endswith("delay DETX t0 + 15 ns, from 0 s to the end")
    assert effects_at([small], 1.0, len(orca6().dom_ids), 31).time_shift_ns.max() == 3.0
