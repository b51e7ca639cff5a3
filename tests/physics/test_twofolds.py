"""Twofold counting: km3pipe's ``add_to_twofold_matrix`` is the oracle of the definition."""

from __future__ import annotations

from dataclasses import replace

import km3net_testdata
import numpy as np
from km3modules import k40

from km3mon.controlhost import FrameDecoder
from km3mon.daq.files import iter_file
from km3mon.daq.timeslice import decode_timeslice, locate_frames
from km3mon.detector import Detector, parse_detx
from km3mon.physics.twofolds import N_PAIRS, TwofoldCounter, pair_index
from km3mon.sim.sim_geometry import DOM_ID_STEP, FIRST_DOM_ID, synthetic_detx
from km3mon.sim.simulator import Simulator
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
    counter = TwofoldCounter(detector, 10, raw_times=True)  # as km3pipe's k40calib
    for payload in payloads:
        counter.add(payload, locate_frames(payload))
    expected = km3pipe_counts(payloads)
    counts = counter.exact_counts()
    for dom_id, matrix in expected.items():
        slot = counter.slot_of_index[detector.dom_index(np.array([dom_id]))[0]]
        assert (counts[slot] == matrix).all(), dom_id
    assert counts.sum() == sum(m.sum() for m in expected.values())
    return int(counts.sum())


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


def test_a_bin_past_its_dtypes_maximum_is_carried_exactly() -> None:
    """Counting stays exact when bins wrap: 8-bit bins started at their maximum, so
    that every touched bin wraps (and the wrap buffer fills and is emptied many times),
    agree with 16-bit bins; exact counts of a range of slots are that range of the whole."""
    simulator = Simulator(orca6(), seed=9, timeslices=True)
    data = b"".join(simulator.step().data for _ in range(5))
    payloads = [m.payload for m in FrameDecoder().feed(data) if m.tag == "IO_TSL1"]
    wide = TwofoldCounter(orca6())
    narrow = TwofoldCounter(orca6(), count_dtype=np.uint8)
    narrow.binned[:] = 255
    # the smallest wrap buffer (room for one frame): it fills within and between messages
    longest = max(int(locate_frames(p).frames["n_hits"].max()) for p in payloads)
    narrow._wrap_buffer = np.empty(longest, np.int64)
    for payload in payloads:
        wide.add(payload, locate_frames(payload))
        narrow.add(payload, locate_frames(payload))
    expected = wide.exact_counts()
    wraps = sum(len(w) for w in narrow.take_counts(keep=True).wrapped)
    assert wraps > 10 * len(narrow._wrap_buffer), "the wrap buffer was emptied on the way"
    np.testing.assert_array_equal(narrow.exact_counts() - 255, expected)
    period = narrow.take_counts()
    np.testing.assert_array_equal(period.dense(7, 50) - 255, expected[7:50])
    assert not narrow.binned.any() and not narrow.wrapped, "counting goes on in fresh bins"
    period.pack(13)  # parts that neither the slots nor the ranges asked for line up with
    assert not period.binned.any(), "the packed bins' pages went back to the system"
    np.testing.assert_array_equal(period.dense(7, 50) - 255, expected[7:50])
    np.testing.assert_array_equal(period.dense() - 255, expected)


def test_pair_index_is_itertools_combinations_order() -> None:
    from itertools import combinations

    for index, (i, j) in enumerate(combinations(range(31), 2)):
        assert pair_index(i, j) == index == k40.get_comb_index(i, j)


def simulated_l1(detector: Detector, slices: int = 5) -> list[bytes]:
    simulator = Simulator(detector, seed=9, timeslices=True)
    data = b"".join(simulator.step().data for _ in range(slices))
    return [m.payload for m in FrameDecoder().feed(data) if m.tag == "IO_TSL1"]


def test_a_vetoed_pmt_loses_its_hits_and_its_pairs_livetime_in_that_frame() -> None:
    """High-rate veto (``status``) or FIFO-full (``fifo``) on a channel: the PMT's hits of that
    frame are incomplete, so they are not counted and the frame is no livetime of its pairs;
    the DOM's other pairs keep their full livetime (km3pipe's -r would drop the frame whole)."""
    detector = orca6()
    payloads = simulated_l1(detector)
    plain, vetoed = TwofoldCounter(detector), TwofoldCounter(detector)
    target = int(detector.optical_dom_ids[4])
    hrv_channel, fifo_channel = 5, 17
    for payload in payloads:
        located = locate_frames(payload)
        plain.add(payload, located)
        frames = located.frames.copy()
        mine = frames["dom_id"] == target
        frames["status"][mine] |= np.uint32(1 << hrv_channel)
        frames["fifo"][mine] |= np.uint32(1 << fifo_channel)
        vetoed.add(payload, replace(located, frames=frames))
    slot = vetoed.slot_of_index[detector.dom_index(np.array([target]))[0]]
    i, j = np.triu_indices(31, 1)
    touched = np.isin(i, [hrv_channel, fifo_channel]) | np.isin(j, [hrv_channel, fifo_channel])
    frames = vetoed.frames[slot]
    assert frames == plain.frames[slot] > 0
    assert plain.exact_counts()[slot][touched].sum() > 0
    assert vetoed.exact_counts()[slot][touched].sum() == 0
    np.testing.assert_array_equal(vetoed.dead_frames[slot], np.where(touched, frames, 0))
    np.testing.assert_allclose(vetoed.pair_livetime_s[slot][touched], 0.0)
    np.testing.assert_allclose(vetoed.pair_livetime_s[slot][~touched], frames * 0.1)
    others = np.arange(len(vetoed.frames)) != slot
    np.testing.assert_array_equal(vetoed.exact_counts()[others], plain.exact_counts()[others])
    assert not vetoed.dead_frames[others].any()


def test_pmts_disabled_in_the_detx_are_not_counted() -> None:
    """``PMT_DISABLE`` (bit 0 of the PMT status) on one PMT, ``MODULE_DISABLE`` on one DOM."""
    text = synthetic_detx(1, det_id=7)
    lines = text.splitlines()
    detector = parse_detx(text)
    first = int(np.flatnonzero(detector.n_pmts > 0)[0])
    second = int(np.flatnonzero(detector.n_pmts > 0)[1])
    pmt_line = lines.index(next(ln for ln in lines if ln.split()[:1] == [str(detector.pmt_ids[
        detector.pmt_offset[first] + 3])]))  # fmt: skip
    fields = lines[pmt_line].split()
    lines[pmt_line] = " ".join([*fields[:-1], "1"])  # PMT_DISABLE
    dom_line = next(k for k, ln in enumerate(lines)
                    if ln.split()[:1] == [str(detector.dom_ids[second])])  # fmt: skip
    fields = lines[dom_line].split()
    lines[dom_line] = " ".join([*fields[:-2], "1", fields[-1]])  # MODULE_DISABLE
    disabled = parse_detx("\n".join(lines) + "\n")
    assert disabled.pmt_disabled.sum() == 1 + disabled.n_pmts[second]
    assert disabled.dom_disabled.tolist() == [k == second for k in range(len(detector.dom_ids))]
    counter = TwofoldCounter(disabled)
    for payload in simulated_l1(disabled):
        counter.add(payload, locate_frames(payload))
    slot_first, slot_second = counter.slot_of_index[[first, second]]
    i, j = np.triu_indices(31, 1)
    assert not counter.enabled[slot_first, 3] and counter.enabled[slot_first].sum() == 30
    assert counter.exact_counts()[slot_first][(i == 3) | (j == 3)].sum() == 0
    assert counter.exact_counts()[slot_first].sum() > 0
    assert counter.exact_counts()[slot_second].sum() == 0 and not counter.enabled[slot_second].any()
