"""The ``udp-loss`` scenario: one DOM's UDP loss shows in IO_SUM as the DAQ shows it (the
``daq`` word and the trailer bit, frames lost whole), and its incomplete frames are left out of
the DataFilters' timeslices."""

from __future__ import annotations

import numpy as np

from km3mon.daq.timeslice import frames_complete
from km3mon.sim.sim_optical import LOSSY_FRAME_LOSS_PROBABILITY
from tests.sim.test_simulator_support import START_UTC_S, simulate

N_SLICES = 200
START_S = 1.0


def test_udp_loss_shows_in_the_daq_word_the_trailer_and_missing_frames() -> None:
    stream = simulate(N_SLICES, [f"udp-loss@{START_S:g}"], seed=3, timeslices=True)
    (scenario,) = stream.simulator.scenarios
    target = scenario.dom_ids[0]
    present, complete, rates, other_incomplete = {}, {}, {}, 0
    for summary in stream.decoded("IO_SUM"):
        index = summary.header.frame_index
        mine = summary.dom_ids == target
        other_incomplete += int((~summary.complete[~mine]).sum())
        present[index] = bool(mine.any())
        if mine.any():
            complete[index] = bool(summary.complete[mine][0])
            rates[index] = float(summary.rates_hz[mine].sum())
            received = int(summary.udp_packets_received[mine][0])
            highest = int(summary.udp_max_sequence[mine][0])
            assert received <= highest + 1, "a packet is counted once"
    first_lossy = round(START_S * 10) + 1
    before = [i for i in present if i < first_lossy]
    during = [i for i in present if i >= first_lossy]
    assert all(present[i] and complete[i] for i in before)
    arrived = [i for i in during if present[i]]
    missing = len(during) - len(arrived)
    expected_missing = LOSSY_FRAME_LOSS_PROBABILITY * len(during)
    assert 0.3 * expected_missing <= missing <= 2.5 * expected_missing, missing
    incomplete = [i for i in arrived if not complete[i]]
    assert 0.3 * len(arrived) <= len(incomplete) <= 0.8 * len(arrived), len(incomplete)
    assert other_incomplete <= 5, "everybody else loses a packet only now and then"
    # the DataFilter counts only the hits that arrived
    full = np.median([rates[i] for i in arrived if complete[i]] + [rates[i] for i in before])
    assert np.median([rates[i] for i in incomplete]) < full

    # IO_TSSN and IO_TSL1: only the complete frames of the DOM, every frame complete
    for tag in ("IO_TSSN", "IO_TSL1"):
        sent = set()
        for timeslice in stream.decoded(tag):
            assert frames_complete(timeslice.frames).all()
            if (timeslice.frames["dom_id"] == target).any():
                sent.add(timeslice.header.frame_index)
        assert sent == {i for i in present if present[i] and complete[i]}, tag
    assert stream.decoded("IO_SUM")[0].header.timestamp == START_UTC_S
