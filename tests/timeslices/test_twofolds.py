"""Twofold counting: km3pipe's ``add_to_twofold_matrix`` is the oracle of the definition."""

from __future__ import annotations

import km3net_testdata
import numpy as np
from km3modules import k40

from km3mon.controlhost import FrameDecoder
from km3mon.daq.files import iter_file
from km3mon.daq.timeslice import decode_timeslice, locate_frames
from km3mon.detector import Detector, parse_detx
from km3mon.sim.sim_geometry import DOM_ID_STEP, FIRST_DOM_ID, synthetic_detx
from km3mon.sim.simulator import Simulator
from km3mon.timeslices.twofolds import N_PAIRS, TwofoldCounter, pair_index
from tests.sim.test_simulator_support import orca6


def detector_with_dom_ids(dom_ids: list[int], det_id: int) -> str:
    """A one-DU synthetic DETX whose optical DOMs carry ``dom_ids`` (for testdata files)."""
    text = synthetic_detx(1, det_id=det_id, n_floors=len(dom_ids))
    for floor, dom_id in enumerate(dom_ids, start=1):
        text = text.replace(
            f"\n{FIRST_DOM_ID + floor * DOM_ID_STEP} 1 {floor} ", f"\n{dom_id} 1 {floor} "
        )
    return text


def km3pipe_counts(payloads: list[bytes]) -> dict[int, np.ndarray]:
    """km3pipe's TwofoldCounter loop: per timeslice and DOM, hits sorted by (raw) time."""
    counts: dict[int, np.ndarray] = {}
    for payload in payloads:
        hits = decode_timeslice(payload).hits
        for dom_id in np.unique(hits["dom_id"]):
            mine = hits[hits["dom_id"] == dom_id]
            order = np.argsort(mine["time_ns"], kind="quicksort")
            matrix = counts.setdefault(int(dom_id), np.zeros((N_PAIRS, 21)))
            k40.add_to_twofold_matrix(
                mine["time_ns"][order].astype(np.int64),
                mine["channel"][order].astype(np.int64),
                matrix,
                tmax=10,
            )
    return counts


def assert_same_counts(detector: Detector, payloads: list[bytes]) -> int:
    counter = TwofoldCounter(detector, raw_times=True)  # as km3pipe
    for payload in payloads:
        counter.add(payload, locate_frames(payload))
    expected = km3pipe_counts(payloads)
    for dom_id, matrix in expected.items():
        slot = counter.slot_of_index[detector.dom_index(np.array([dom_id]))[0]]
        assert (counter.counts[slot] == matrix).all(), dom_id
    assert counter.counts.sum() == sum(m.sum() for m in expected.values())
    return int(counter.counts.sum())


def test_counts_equal_km3pipe_on_simulated_l1_timeslices() -> None:
    simulator = Simulator(orca6(), seed=9, timeslices=True)
    data = b"".join(simulator.step().data for _ in range(5))
    payloads = [m.payload for m in FrameDecoder().feed(data) if m.tag == "IO_TSL1"]
    assert assert_same_counts(orca6(), payloads) > 10_000


def test_counts_equal_km3pipe_on_the_recorded_io_tsl1() -> None:
    path = km3net_testdata.data_path("daq/IO_TSL1_1003.dat")
    payloads = [m.payload for m in iter_file(path)]
    dom_ids = sorted({int(d) for p in payloads for d in decode_timeslice(p).frames["dom_id"]})
    detector = parse_detx(detector_with_dom_ids(dom_ids, det_id=48))
    assert assert_same_counts(detector, payloads) > 0


def test_pair_index_is_itertools_combinations_order() -> None:
    from itertools import combinations

    for index, (i, j) in enumerate(combinations(range(31), 2)):
        assert pair_index(i, j) == index == k40.get_comb_index(i, j)
