"""The counters of a run record, against an independent count of the recorded testdata files
made with km3pipe's parsers, and the pieces of the judgement on their own."""

from __future__ import annotations

import io
import math

import km3net_testdata
import km3pipe.io.daq as kd
import numpy as np
import pytest
from scipy import stats

from km3mon import daq
from km3mon.config import ConfigError, PipelineConfig
from km3mon.daq.files import iter_file
from km3mon.detector import read_detx
from km3mon.quality.accumulate import RunAccumulator, hits_bin, scan_sn_timeslices
from km3mon.quality.judge import (
    TESTS,
    Reference,
    build_reference,
    check_settings,
    chi2_probability,
    judge,
    shape_test,
)
from km3mon.runtime.decoding import packet_times_s

ARCA21 = km3net_testdata.data_path("detx/KM3NeT_00000133_20221025.detx")
#: km3net-dataformat trigger bits (km3io's trigger definitions), written out here on purpose.
BITS = {"jtrigger3dshower": 1, "jtriggermxshower": 2, "jtrigger3dmuon": 4, "jtriggernb": 5}


def payloads(name: str) -> list[bytes]:
    return [m.payload for m in iter_file(km3net_testdata.data_path(f"daq/{name}"))]


def km3pipe_count() -> dict[str, float]:
    """Live time, events and events per trigger type, straight from the files with km3pipe."""
    slices = set()
    for payload in payloads("IO_SUM.dat"):
        stream = io.BytesIO(payload)
        kd.DAQPreamble(file_obj=stream)
        summary = kd.DAQSummaryslice(stream)
        slices.add((summary.header.run, summary.header.time_slice))
    counts = dict.fromkeys(BITS, 0)
    events = 0
    for payload in payloads("IO_EVT.dat"):
        stream = io.BytesIO(payload)
        kd.DAQPreamble(file_obj=stream)
        event = kd.DAQEvent(stream)
        events += 1
        for name, bit in BITS.items():
            counts[name] += bool(event.trigger_mask & (1 << bit))
    livetime_s = len(slices) * 0.1
    return {"livetime_s": livetime_s, "jdaqevent": events, "triggerrate": events / livetime_s,
            **counts}  # fmt: skip


def test_livetime_triggerrate_and_types_match_km3pipe_on_the_testdata() -> None:
    detector = read_detx(ARCA21)  # another detector: the frames count, their DOMs are unknown
    accumulator = RunAccumulator(detector, 6760, 44)
    slices = [daq.decode_summaryslice(p) for p in payloads("IO_SUM.dat")]
    # one slice twice (two DataFilters, or a replay): live time counts each timeslice once
    accumulator.add_summaryslices(slices[:2])
    accumulator.add_summaryslices(slices[1:])
    events, _ = daq.decode_events_hits(payloads("IO_EVT.dat"))
    accumulator.add_events(events, packet_times_s(events))
    scan, kept, problems = scan_sn_timeslices(payloads("IO_TSSN.dat"))
    assert kept == [0, 1, 2] and problems == []
    located = [daq.timeslice.locate_frames(p) for p in payloads("IO_TSSN.dat")]
    assert scan.frame_counts.tolist() == [len(t.frames) for t in located]
    accumulator.add_sn_timeslices(scan)
    ours = accumulator.quantities(active_dom_fraction=0.5, hot_dom_factor=2.0)
    theirs = km3pipe_count()
    assert ours["livetime_s"] == pytest.approx(theirs["livetime_s"])
    assert ours["triggerrate"] == pytest.approx(theirs["triggerrate"])
    for name in ("jdaqevent", *BITS):
        assert ours[name] == theirs[name], name
    assert ours["jdaqsummaryslice"] == 4  # messages, the repeated one included
    assert ours["jdaqtimeslice_sn"] == 3
    assert ours["out_sync"] == 0.0  # every superframe carries its timeslice's header
    assert ours["daq"] == 1.0 and ours["whiterabbitstatus"] == 1.0  # all complete, WR set


def test_hrv_fifo_and_rates_match_a_count_with_km3pipe() -> None:
    detector = read_detx(ARCA21)
    accumulator = RunAccumulator(detector, 6760, 44)
    accumulator.add_summaryslices([daq.decode_summaryslice(p) for p in payloads("IO_SUM.dat")])
    ours = accumulator.quantities(active_dom_fraction=0.5, hot_dom_factor=2.0)
    hrv = fifo = frames = 0
    for payload in payloads("IO_SUM.dat"):
        stream = io.BytesIO(payload)
        kd.DAQPreamble(file_obj=stream)
        summary = kd.DAQSummaryslice(stream)
        for dom_id in summary.summary_frames:
            status, fifo_word = (w & 0xFFFFFFFF for w in summary.dom_status[dom_id][:2])
            hrv += bin(status & 0x7FFFFFFF).count("1")
            fifo += bin(fifo_word & 0x7FFFFFFF).count("1")
            frames += 1
    assert ours["hrv"] == pytest.approx(hrv / (31 * frames))
    assert ours["fifo"] == pytest.approx(fifo / (31 * frames))
    # rates from the rate bytes by the formula (km3pipe reads the byte as signed: not here)
    rate_bytes = np.concatenate([
        np.frombuffer(p, np.uint8, offset=34).reshape(-1, 55)[:, 24:].ravel()
        for p in payloads("IO_SUM.dat")
    ])  # fmt: skip
    khz = 2.0 * 1000.0 ** (rate_bytes[rate_bytes > 0] / 255.0)
    assert ours["meanrate"] == pytest.approx(khz.mean())
    assert ours["rmsrate"] == pytest.approx(khz.std())


def test_state_survives_a_round_trip() -> None:
    detector = read_detx(ARCA21)
    accumulator = RunAccumulator(detector, 6760, 44)
    accumulator.add_summaryslices([daq.decode_summaryslice(p) for p in payloads("IO_SUM.dat")])
    document, arrays = accumulator.state()
    again = RunAccumulator.from_state(detector, document, arrays)
    assert again.quantities(0.5, 2.0) == accumulator.quantities(0.5, 2.0)
    again.add_summaryslices([daq.decode_summaryslice(payloads("IO_SUM.dat")[0])])
    assert again.livetime_s == accumulator.livetime_s  # a timeslice seen before: no live time


def test_hits_bins_are_half_octaves() -> None:
    assert hits_bin(np.array([0, 1, 2, 3, 7, 100])).tolist() == [0, 2, 3, 4, 6, 13]


@pytest.mark.parametrize("dof", [3, 10, 47])
def test_chi2_probability_is_close_to_scipy(dof: int) -> None:
    for chi2 in (0.5 * dof, dof, 2 * dof, 4 * dof):
        exact = stats.chi2.sf(chi2, dof)
        assert chi2_probability(chi2, dof) == pytest.approx(exact, rel=0.15, abs=1e-4)


#: The zenith of a quiet 3-DU run in the sped-up quiet run (10° bins): a sparse tail.
ZENITH_SHAPE = np.array([120, 583, 927, 1059, 1126, 1119, 1071, 899, 199, 96, 59, 37, 14, 14,
                         11, 13, 6, 2], float)  # fmt: skip


def test_a_run_drawn_like_its_reference_passes_as_often_as_the_thresholds_say() -> None:
    """Runs of 2 000 fits from the same shape as a 24 000-fit reference: q must be near
    uniform (a few in 1 000 warn, none fails), however sparse the tail. With each sample's
    own counts as variances a bin empty in the short run adds its whole reference count: the
    sped-up quiet run judged a clean run bad at chi2/ndf 68/17, q = 7e-8."""
    rng = np.random.default_rng(5)
    shape = ZENITH_SHAPE / ZENITH_SHAPE.sum()
    reference = Reference(runs=[1], source="test", dom_rate_khz={}, trigger_rates_hz={},
                          histograms={"zenith": rng.multinomial(24_000, shape).astype(float)},
                          quantities={})  # fmt: skip
    settings = TESTS["zenith"]
    q = np.array([shape_test("zenith", rng.multinomial(2_000, shape), reference, settings)["q"]
                  for _ in range(2_000)])  # fmt: skip
    # Tail bins expecting < 1 fit make the chi-square approximation a little liberal: 0.25 %
    # of clean runs warn (4 000 runs, seed 5), 7.5 % fall below q = 0.05; none fails.
    assert (q < settings.fail).sum() == 0
    assert (q < settings.warn).sum() <= 10, "about 5 expected"
    assert 0.03 <= (q < 0.05).mean() <= 0.09, "q near uniform: 5-8 % below 0.05"
    # the fits of the run 10004 that was judged bad: a clean sample
    run = [35, 161, 243, 252, 266, 330, 284, 237, 51, 26, 18, 13, 1, 1, 3, 5, 0, 0]
    summed = Reference(runs=[1], source="test", dom_rate_khz={}, trigger_rates_hz={},
                       histograms={"zenith": np.array([388, 1872, 3001, 3464, 3681, 3733, 3482,
                                   2905, 573, 296, 174, 121, 56, 57, 32, 34, 26, 11], float)},
                       quantities={})  # fmt: skip
    assert shape_test("zenith", run, summed, settings)["status"] == "pass"


def test_a_run_of_another_shape_fails() -> None:
    rng = np.random.default_rng(6)
    shape = ZENITH_SHAPE / ZENITH_SHAPE.sum()
    reference = Reference(runs=[1], source="test", dom_rate_khz={}, trigger_rates_hz={},
                          histograms={"zenith": rng.multinomial(24_000, shape).astype(float)},
                          quantities={})  # fmt: skip
    tilted = shape.copy()
    tilted[9:] *= 3  # three times the up-going fits (a wrong t0 map mirrors tracks)
    result = shape_test("zenith", rng.multinomial(2_000, tilted / tilted.sum()), reference,
                        TESTS["zenith"])  # fmt: skip
    assert result["status"] == "fail", result


def test_quality_thresholds_come_from_pipeline_toml() -> None:
    config = PipelineConfig.from_mapping(
        {"Quality": {"min_livetime_s": 60, "dom_rates": {"band": 0.2, "fail": 0.9}}}, "test"
    )
    settings = check_settings(config.quality)
    assert config.quality.min_livetime_s == 60.0
    assert settings["dom_rates"].band == 0.2 and settings["dom_rates"].fail == 0.9
    assert settings["dom_rates"].warn == 0.97  # the default
    with pytest.raises(ConfigError, match="no quality test"):
        check_settings(
            PipelineConfig.from_mapping({"Quality": {"typo": {"warn": 0.5}}}, "test").quality
        )
    with pytest.raises(ConfigError, match=r"\[Quality\] min_daq"):
        PipelineConfig.from_mapping({"Quality": {"min_daq": 2}}, "test")


def record(run: int, rates: list[float], events: int, livetime_s: float = 600.0) -> dict:
    quantities = {"run": run, "livetime_s": livetime_s, "jdaqevent": events, "daq": 1.0,
                  "whiterabbitstatus": 1.0, "doms_active": len(rates),
                  "doms_expected": len(rates), "out_sync": 0.0}  # fmt: skip
    return {
        "run": run,
        "quantities": quantities,
        "dom_ids": np.arange(len(rates), dtype=np.int32) + 100,
        "dom_rate_khz": np.array(rates, np.float32),
        "histograms": {"hits_per_event": [0, 10 * events, 20 * events, 5 * events]},
    }


def test_verdicts_against_a_reference() -> None:
    section = PipelineConfig().quality
    settings = check_settings(section)
    reference = build_reference([record(r, [200.0] * 100, 6000) for r in (1, 2, 3)], "test")
    assert judge(record(4, [200.0] * 100, 6010), reference, section, settings)["verdict"] == "good"
    dead = judge(record(5, [200.0] * 85 + [math.nan] * 15, 6000), reference, section, settings)
    assert dead["verdict"] == "bad"
    assert any("dom_rates failed" in r for r in dead["reasons"])
    noisy = judge(record(6, [200.0] * 95 + [500.0] * 5, 6000), reference, section, settings)
    assert noisy["verdict"] == "purgatory"  # 5 % of the DOMs glow: a warning, a human decides
    assert settings["dom_rates"].warn == 0.97
    no_events = judge(record(7, [200.0] * 100, 0), reference, section, settings)
    assert no_events["verdict"] == "bad"
    short = judge(record(8, [200.0] * 100, 100, livetime_s=10.0), reference, section, settings)
    assert short["verdict"] == "bad"
    assert short["reasons"][0].startswith("min_livetime_s")
    first = judge(record(9, [200.0] * 100, 6000), None, section, settings)
    assert first["verdict"] == "good"  # no reference yet: judged by the vetoes alone
    assert {t["status"] for t in first["tests"]} == {"no reference"}


def test_sn_scan_leaves_out_damaged_timeslices_and_counts_out_of_sync_frames() -> None:
    good = payloads("IO_TSSN.dat")
    truncated = good[2][:-3]
    retyped = bytearray(good[2])
    retyped[38:42] = (999).to_bytes(4, "little")  # the first superframe's data type
    scan, kept, problems = scan_sn_timeslices([good[0], truncated, bytes(retyped), b"xx", good[2]])
    assert kept == [0, 4] and len(problems) == 3
    assert scan.frame_counts.tolist() == [1, 33]
    shifted = bytearray(good[2])  # the first superframe one timeslice late
    index_at = 34 + 16
    frame_index = int.from_bytes(shifted[index_at : index_at + 4], "little")
    shifted[index_at : index_at + 4] = (frame_index + 1).to_bytes(4, "little")
    accumulator = RunAccumulator(read_detx(ARCA21), 6760, 44)
    accumulator.add_sn_timeslices(scan_sn_timeslices([bytes(shifted)])[0])
    assert accumulator.quantities(0.5, 2.0)["out_sync"] == pytest.approx(1 / 33)


def test_a_slice_off_the_run_clock_adds_no_live_time() -> None:
    accumulator = RunAccumulator(read_detx(ARCA21), 6760, 44)
    slices = [daq.decode_summaryslice(p) for p in payloads("IO_SUM.dat")]
    accumulator.add_summaryslices(slices)
    flipped = daq.decode_summaryslice(payloads("IO_SUM.dat")[0])
    flipped.header = flipped.header._replace(utc_seconds=flipped.header.utc_seconds - 2048)
    renumbered = daq.decode_summaryslice(payloads("IO_SUM.dat")[1])
    renumbered.header = renumbered.header._replace(frame_index=renumbered.header.frame_index + 64)
    accumulator.add_summaryslices([flipped, renumbered])
    quantities = accumulator.quantities(0.5, 2.0)
    assert quantities["livetime_s"] == pytest.approx(0.3)
    assert quantities["slices_inconsistent"] == 2
    assert quantities["utc_min"] == slices[0].header.timestamp
