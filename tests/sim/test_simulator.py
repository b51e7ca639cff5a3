"""The simulated stream, in-process: it decodes, matches the DETX and is physically consistent."""

from __future__ import annotations

import io
import re
import threading
import time

import numpy as np
import pytest

from km3mon.controlhost import FrameDecoder
from km3mon.daq import decode, decode_monitoring, encode_monitoring_batch
from km3mon.daq.event import Event
from km3mon.daq.monitoring import rates_hz as monit_rates_hz
from km3mon.daq.summaryslice import RATE_STEP, Summaryslice, channel_bits
from km3mon.daq.triggers import is_triggered_by
from km3mon.detector import calibrate_hits, fit_ahrs, parse_detx
from km3mon.sim.sim_events import (
    GROUP_INDEX,
    INDEX_OF_REFRACTION,
    SPEED_OF_LIGHT_M_NS,
    MuonEventGenerator,
    slewing_ns,
)
from km3mon.sim.sim_geometry import synthetic_detx
from km3mon.sim.sim_log import PROCESSES
from km3mon.sim.sim_optical import HRV_THRESHOLD_HZ
from km3mon.sim.simulator import CYCLES_PER_SLICE, FIRST_RUN, Simulator, run_simulation
from tests.sim.test_simulator_support import START_UTC_S, arca21, orca6, simulate

N_SLICES = 30


@pytest.fixture(scope="module")
def stream():
    return simulate(N_SLICES)


def test_one_summaryslice_per_timeslice_with_a_frame_per_optical_dom(stream) -> None:
    detector = orca6()
    slices: list[Summaryslice] = stream.decoded("IO_SUM")
    assert len(slices) == N_SLICES
    for index, summaryslice in enumerate(slices):
        header = summaryslice.header
        assert header.det_id == detector.det_id == 49
        assert (header.run, header.frame_index) == (FIRST_RUN, index + 1)
        assert header.timestamp == pytest.approx(START_UTC_S + 0.1 * index)
        assert header.utc_16ns_cycles % CYCLES_PER_SLICE == 0
        assert summaryslice.dom_ids.tolist() == detector.optical_dom_ids.tolist()
        assert summaryslice.white_rabbit.all() and summaryslice.complete.mean() > 0.99


def test_one_tmch_packet_per_clb_per_timeslice_base_modules_included(stream) -> None:
    detector = orca6()
    packets = stream.packets()
    assert len(packets) == N_SLICES * len(detector.dom_ids) == N_SLICES * 114
    per_slice = packets["dom_id"].reshape(N_SLICES, -1)
    assert (per_slice == detector.dom_ids).all()
    assert set(detector.dom_floor[np.isin(detector.dom_ids, detector.base_dom_ids)]) == {0}
    location = detector.locate(packets["dom_id"])
    assert location.known.all()
    base = location.floor == 0
    assert (packets["hit_counts"][base] == 0).all() and not (packets["flags"][base] & 1).any()
    assert (packets["flags"][~base] & 1).all()
    assert (packets["run"] == FIRST_RUN).all() and (packets["dom_status"][:, 0] >> 31 == 1).all()
    temperature_c = packets["temperature"] / 100
    humidity = packets["humidity"] / 100
    assert 20 < temperature_c.min() < temperature_c.max() < 45
    assert 5 < humidity.min() < humidity.max() < 30


def test_rates_realistic_and_the_same_in_summary_slices_and_tmch(stream) -> None:
    detector = orca6()
    optical = ~np.isin(detector.dom_ids, detector.base_dom_ids)
    packets = stream.packets().reshape(N_SLICES, -1)[:, optical]
    for summaryslice, slice_packets in zip(stream.decoded("IO_SUM"), packets, strict=True):
        assert (slice_packets["utc_seconds"] == summaryslice.header.utc_seconds).all()
        assert (slice_packets["dom_id"] == summaryslice.dom_ids).all()
        tmch_hz = monit_rates_hz(slice_packets)
        step = np.exp(RATE_STEP / 2) + 1e-9  # half a rate-byte step either way
        assert (summaryslice.rates_hz <= tmch_hz * step).all()
        assert (summaryslice.rates_hz >= tmch_hz / step).all()
        assert (channel_bits(slice_packets["hrv"]) == summaryslice.hrv).all()
        assert (summaryslice.hrv == (tmch_hz > HRV_THRESHOLD_HZ)).all()
    rates_hz = np.concatenate([s.rates_hz for s in stream.decoded("IO_SUM")])
    assert 5_000 < np.median(rates_hz) < 8_000
    assert 0.05 < np.std(np.log(rates_hz)) < 0.5


def test_ahrs_vectors_give_the_reported_orientation_smoothly(stream) -> None:
    packets = stream.packets().reshape(N_SLICES, -1)
    optical = (packets["flags"][0] & 1).astype(bool)
    packets = packets[:, optical]
    identity = np.eye(3)
    yaw, pitch, roll = fit_ahrs(
        packets["A"].astype(float), packets["H"].astype(float), 0, identity, 0, identity
    )
    yaw_error = (yaw - packets["yaw"] + 180) % 360 - 180
    assert np.abs(yaw_error).max() < 2.0
    assert np.abs(pitch - packets["pitch"]).max() < 1.0
    assert np.abs(roll - packets["roll"]).max() < 1.0
    assert np.abs(packets["pitch"]).max() < 15 and np.abs(packets["roll"]).max() < 15
    assert np.abs((np.diff(yaw, axis=0) + 180) % 360 - 180).max() < 3.0
    assert np.ptp(packets["yaw"][0]) > 90  # DOMs face different ways


def test_events_lie_on_the_detector_with_triggered_hits_a_subset_of_snapshot_hits(stream) -> None:
    detector = orca6()
    events: list[Event] = stream.decoded("IO_EVT")
    rate_hz = len(events) / (N_SLICES * 0.1)
    assert 10 < rate_hz < 50
    assert [e.trigger_counter for e in events] == list(range(1, len(events) + 1))
    masks = np.array([e.trigger_mask for e in events], np.uint64)
    for name in ("3DMuon", "3DShower", "MXShower"):
        assert 0.1 < is_triggered_by(masks, name).mean() < 0.95
    for event in events:
        hits = event.hits
        assert hits["triggered"].sum() == len(event.triggered_hits) > 0
        assert np.isin(hits["dom_id"], detector.optical_dom_ids).all()
        assert (hits["channel"] < 31).all() and (hits["time_ns"] < 100_000_000).all()
        hit_masks = event.triggered_hits["trigger_mask"]
        assert np.bitwise_or.reduce(hit_masks) == event.trigger_mask and (hit_masks != 0).all()
        assert event.overlays >= 0 and event.header.frame_index >= 1


def test_triggered_hits_are_causal_like_light_from_one_muon(stream) -> None:
    """Hardly two calibrated triggered hits further apart in time than light in water needs
    between them, up to scattering delays (raw times are not: they still hold the PMT
    delays)."""
    detector = orca6()
    acausal, pairs = 0, 0
    for event in stream.decoded("IO_EVT"):
        hits = calibrate_hits(detector, event.triggered_hits)
        position_m = np.column_stack([hits[f"pos_{axis}_m"] for axis in "xyz"])
        time_ns = hits["time_ns"]
        distance_m = np.linalg.norm(position_m[:, None] - position_m[None], axis=-1)
        light_ns = distance_m * GROUP_INDEX / SPEED_OF_LIGHT_M_NS
        apart_ns = np.abs(time_ns[:, None] - time_ns[None])
        acausal += int((apart_ns > light_ns + 100).sum())
        pairs += apart_ns.size
        assert (apart_ns <= light_ns + 1_000).all()
        assert np.ptp(time_ns) < 5_000
    assert acausal / pairs < 0.03  # the scattering tail


@pytest.mark.parametrize("detector", [orca6(), arca21()], ids=["ORCA-6", "ARCA-21"])
def test_calibrated_signal_hits_arrive_at_the_cherenkov_time_of_the_true_muon(detector) -> None:
    """Raw hit times are true times minus the PMT delays, as the DAQ writes them: calibrated
    with the DETX (ARCA-21: t0 ~480 µs, spread over µs) and corrected for the ToT slewing,
    they lie on the true muon's Cherenkov times at their PMTs, up to jitter and scattering
    delays (single muons: a bundle's other muons light DOMs earlier)."""
    generator = MuonEventGenerator(detector, np.random.default_rng(5), noise_fraction=0.0)
    n_optical = len(detector.optical_dom_ids)
    events = generator.generate(80, np.ones(n_optical, bool), np.full(n_optical, 200_000.0))
    assert len(events) == 80
    residuals_ns = []
    for event in (e for e in events if e.n_muons == 1):
        assert (event.snapshot_hits["time_ns"] < 100_000_000).all()
        hits = calibrate_hits(detector, event.triggered_hits)
        assert hits["calibrated"].all()
        pmt_pos_m = np.column_stack([hits[f"pos_{axis}_m"] for axis in "xyz"])
        offset_m = pmt_pos_m - event.track_point_m
        along_m = offset_m @ event.track_direction
        distance_m = np.linalg.norm(offset_m - along_m[:, None] * event.track_direction, axis=1)
        tan_c = np.tan(np.arccos(1 / INDEX_OF_REFRACTION))
        expected_ns = (
            event.track_time_ns
            + (along_m - distance_m / tan_c) / SPEED_OF_LIGHT_M_NS
            + distance_m * GROUP_INDEX / (np.sin(np.arctan(tan_c)) * SPEED_OF_LIGHT_M_NS)
        )
        residuals_ns.append(hits["time_ns"] - slewing_ns(hits["tot"]) - expected_ns)
        assert event.n_signal_hits == len(hits)
    residuals_ns = np.concatenate(residuals_ns)
    assert len(residuals_ns) > 1000
    assert residuals_ns.min() > -12  # 2 ns jitter (and 0.5 ns rounding), never early beyond it
    assert 0 < np.median(residuals_ns) < 10  # dispersion and scattering delays, a few ns
    assert np.percentile(np.abs(residuals_ns), 90) < 40


def test_raw_hit_times_stay_inside_the_frame_whatever_the_pmt_delays() -> None:
    """With µs-spread t0s an event near a frame edge must be moved, not cut."""
    generator = MuonEventGenerator(arca21(), np.random.default_rng(9))
    n_optical = len(arca21().optical_dom_ids)
    events = generator.generate(400, np.ones(n_optical, bool), np.full(n_optical, 200_000.0))
    times = np.concatenate([e.snapshot_hits["time_ns"] for e in events]).astype(np.int64)
    assert times.min() >= 0 and times.max() < 100_000_000
    # nothing clipped onto the edges
    assert not np.isin(times, [0, 100_000_000 - 1]).any()


def test_a_stalled_connection_leaves_a_gap_instead_of_a_burst() -> None:
    simulator = Simulator(orca6(), start_utc_s=START_UTC_S)
    stop = threading.Event()
    sent: list[bytes] = []

    def send(data: bytes) -> None:
        sent.append(data)
        if len(sent) == 3:
            time.sleep(0.5)  # 5 timeslices at speed 10
        if len(sent) == 10:
            stop.set()

    stats = run_simulation(
        simulator, send, lambda _: None, speed=10, duration_s=None, stop=stop, max_lag_s=0.2
    )
    frames = [decode("IO_SUM", FrameDecoder().feed(data)[0].payload).header for data in sent]
    steps = np.diff([h.frame_index for h in frames])
    assert stats.skipped >= 3 and steps.max() == stats.skipped + 1 and steps.min() == 1
    assert np.allclose(np.diff([h.timestamp for h in frames]), 0.1 * steps)


def test_a_test_run_catches_up_and_stops_at_its_simulated_time() -> None:
    """With a high ``max_lag_s`` a stall is caught up, nothing is left out (a fault scenario
    of a test must not fall into a gap on a loaded machine), and ``simulated_s`` ends the
    run after exactly that much simulated time, however long it took."""
    simulator = Simulator(orca6(), start_utc_s=START_UTC_S)
    sent: list[bytes] = []

    def send(data: bytes) -> None:
        sent.append(data)
        if len(sent) == 3:
            time.sleep(0.5)  # 5 timeslices at speed 10

    stats = run_simulation(simulator, send, lambda _: None, speed=10, duration_s=None,
                           stop=threading.Event(), max_lag_s=1e6, simulated_s=1.2)  # fmt: skip
    frames = [decode("IO_SUM", FrameDecoder().feed(data)[0].payload).header for data in sent]
    assert stats.skipped == 0 and stats.timeslices == len(sent) == 12
    assert (np.diff([h.frame_index for h in frames]) == 1).all()


def test_log_lines_in_the_daq_format_with_source_markers(stream) -> None:
    lines = [m.payload.decode() for m in stream.log_messages]
    assert len(lines) >= 4  # every process announces the run
    pattern = re.compile(
        r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) (\d+\.\d+\.\d+\.\d+) (A0|F0|Q0|W0) "
        r"(STATUS|INFO|WARNING|ERROR) (.+)"
    )
    for line in lines:
        match = pattern.fullmatch(line)
        assert match, line
        assert match[5].startswith(PROCESSES[match[3]][0])
    assert f"run {FIRST_RUN} started" in lines[0]
    assert lines[0].startswith("2023-11-14 22:13:20.000")


def test_log_levels_mostly_status_and_info() -> None:
    lines = [m.payload.decode() for m in simulate(600, detector=orca6()).log_messages]
    levels = [line.split()[4] for line in lines]
    assert len(lines) > 100
    assert (levels.count("STATUS") + levels.count("INFO")) / len(levels) > 0.8
    assert {"WARNING", "ERROR"} <= set(levels)
    assert {line.split()[3] for line in lines} == set(PROCESSES)


def test_runs_change_every_run_minutes_and_frame_index_restarts() -> None:
    stream = simulate(25, run_minutes=1 / 60)  # 10 timeslices per run
    headers = [s.header for s in stream.decoded("IO_SUM")]
    assert [h.run for h in headers] == [FIRST_RUN] * 10 + [FIRST_RUN + 1] * 10 + [FIRST_RUN + 2] * 5
    assert [h.frame_index for h in headers] == [*range(1, 11), *range(1, 11), *range(1, 6)]
    counters = [(e.header.run, e.trigger_counter) for e in stream.decoded("IO_EVT")]
    second_run = [c for run, c in counters if run == FIRST_RUN + 1]
    assert second_run == list(range(1, len(second_run) + 1))
    lines = [m.payload.decode() for m in stream.log_messages]
    assert any(f"run {FIRST_RUN} stopped" in line for line in lines)
    assert any(f"run {FIRST_RUN + 2} started" in line for line in lines)
    assert all(p["run"] in (FIRST_RUN, FIRST_RUN + 1, FIRST_RUN + 2) for p in stream.packets())


def test_a_run_change_inside_a_gap_still_resets_the_counter_and_is_announced() -> None:
    simulator = Simulator(orca6(), run_minutes=1 / 60, event_rate_hz=200, start_utc_s=START_UTC_S)
    simulator.step()
    simulator.skip(14)  # into the middle of the second run
    output = simulator.step()
    assert (output.header.run, output.header.frame_index) == (FIRST_RUN + 1, 6)
    lines = [m.payload.decode() for m in FrameDecoder().feed(output.log)]
    assert any(f"run {FIRST_RUN + 1} started" in line for line in lines)
    messages = FrameDecoder().feed(output.data)
    counters = [decode(m.tag, m.payload).trigger_counter for m in messages if m.tag == "IO_EVT"]
    assert counters == list(range(1, len(counters) + 1)) and counters


def test_same_seed_same_stream_other_seed_other_stream() -> None:
    first, again, other = (simulate(5, ["hot-pmt"], seed=seed) for seed in (3, 3, 4))
    assert [m.payload for m in first.messages] == [m.payload for m in again.messages]
    assert [m.payload for m in first.messages] != [m.payload for m in other.messages]
    assert first.simulator.scenarios[0].describe() == again.simulator.scenarios[0].describe()


def test_monitoring_frames_are_what_the_daq_batch_encoder_writes(stream) -> None:
    packets = stream.packets()
    assert encode_monitoring_batch(packets) == stream.payloads("IO_MONIT")
    first = decode_monitoring(stream.payloads("IO_MONIT")[0])
    assert first.version == 3 and first.ts_duration == 100_000


def test_event_rate_scales_with_detector_size_and_can_be_set() -> None:
    assert Simulator(orca6()).event_rate_hz == pytest.approx(22)
    big = parse_detx(synthetic_detx(115))
    assert Simulator(big).event_rate_hz == pytest.approx(240)
    stream = simulate(20, event_rate_hz=0)
    assert stream.payloads("IO_EVT") == []


def test_synthetic_geometry_has_base_modules_and_31_pmt_doms() -> None:
    detector = parse_detx(synthetic_detx(7, n_floors=3))
    assert len(detector.dus) == 7 and len(detector.dom_ids) == 7 * 4
    assert len(detector.base_dom_ids) == 7 and set(detector.n_pmts.tolist()) == {0, 31}
    assert len(np.unique(detector.dom_ids)) == len(detector.dom_ids)
    assert np.allclose(np.linalg.norm(detector.pmt_dir, axis=1), 1, atol=1e-5)
    assert detector.channel_order.ring.max() == 5  # six rings of PMTs


@pytest.mark.parametrize(
    ("option", "value"), [("seed", -1), ("run_minutes", 0), ("event_rate_hz", -1.0)]
)
def test_bad_options_are_refused_with_the_option_named(option: str, value: float) -> None:
    with pytest.raises(ValueError, match=option.split("_")[0]):
        Simulator(orca6(), **{option: value})


def test_one_sample_of_each_type_decodes_with_km3pipe(stream) -> None:
    import km3pipe.io.daq as kd  # a reference peer: missing must fail, not skip

    summary_payload = stream.payloads("IO_SUM")[0]
    ours = stream.decoded("IO_SUM")[0]
    reader = io.BytesIO(summary_payload)
    kd.DAQPreamble(file_obj=reader)
    theirs = kd.DAQSummaryslice(reader)
    assert theirs.header.det_id == 49 and theirs.header.run == FIRST_RUN
    assert list(theirs.summary_frames) == ours.dom_ids.tolist()
    low = ours.frames["rates"] < 128  # km3pipe reads the rate byte as signed
    theirs_hz = np.array([theirs.summary_frames[d] for d in ours.dom_ids.tolist()])
    assert low.mean() > 0.99 and np.allclose(theirs_hz[low], ours.rates_hz[low])

    packet = kd.TMCHData(io.BytesIO(stream.payloads("IO_MONIT")[1]))
    mine = decode_monitoring(stream.payloads("IO_MONIT")[1])
    assert (packet.dom_id, packet.run, packet.version - 1) == (mine.dom_id, FIRST_RUN, 3)
    assert np.allclose(packet.pmt_rates, mine.rates_hz)
    assert np.allclose(packet.A, mine.A) and np.allclose(packet.H, mine.H)
    assert packet.temp == mine.temperature_c

    event_payload = stream.payloads("IO_EVT")[0]
    event = stream.decoded("IO_EVT")[0]
    reader = io.BytesIO(event_payload)
    kd.DAQPreamble(file_obj=reader)
    theirs_event = kd.DAQEvent(reader)
    assert theirs_event.trigger_mask == event.trigger_mask
    assert theirs_event.n_triggered_hits == len(event.triggered_hits)
    assert np.array_equal(theirs_event.snapshot_hits["dom_id"], event.snapshot_hits["dom_id"])
    assert np.array_equal(theirs_event.snapshot_hits["time"], event.snapshot_hits["time_ns"])
