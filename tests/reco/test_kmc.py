"""The fits on KM3NeT's own MC (ORCA-6, KM3Sim light, real t0s; ``km3mon.reco.kmc``) through
the real reco code path, and the per-DOM residuals of a DOM whose t0 is off.

The bounds are what the fit reaches today with margin (BENCHMARKS.md, "KM3NeT MC"); the
issue's goals are reached: single DU (7°) 5.7° (5.8° with the light model fitted on the other
half of the events only), >= 3 DUs (3.3°) 3.26° (3.26° so too), with the PMT likelihood
choosing where the time fit and the PMTs disagree; 3.45° without that choice.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import pytest

from km3mon.controlhost import FrameDecoder
from km3mon.daq import decode_events_hits
from km3mon.detector import calibrate_hits, parse_detx
from km3mon.reco import kernels, kmc
from km3mon.reco.fit import Reconstruction, Settings
from km3mon.reco.model import space_angle_deg, zenith_deg
from km3mon.sim.simulator import Simulator
from tests.conftest import read_json, wait_until
from tests.reco.simulated import SIMULATOR
from tests.sim.test_simulator_support import START_UTC_S, arca21


@cache
def mc_fitted():
    mc = kmc.load()
    truth = mc.arrays()
    detector = parse_detx(mc.detx_text, "KM3NeT MC")
    events, hits = decode_events_hits(mc.payloads)
    hits = calibrate_hits(detector, hits)
    result = Reconstruction(detector).run(len(events), hits)
    triggered = hits[hits["triggered"] & hits["calibrated"]]
    keys = np.unique(triggered["event"].astype(np.int64) * 1000 + triggered["du"])
    n_dus = np.bincount(keys // 1000, minlength=len(events))
    return mc, truth, result, n_dus


def test_the_mc_is_encoded_as_the_daq_sends_it() -> None:
    """Raw TDC + the DETX's t0 gives back the MC's hit time (to the ns rounding); the t0s
    are the real ORCA-6 ones (~207 µs), not zero."""
    mc, truth, _, _ = mc_fitted()
    detector = parse_detx(mc.detx_text)
    assert 150_000 < np.median(detector.pmt_t0_ns) < 250_000
    assert np.ptp(detector.pmt_t0_ns) > 100
    _events, hits = decode_events_hits(mc.payloads[:5])
    assert (hits["triggered"].sum() > 0) and (hits["time_ns"] < 100_000_000).all()
    assert (truth["cut_du"] == 0).sum() >= 150 and (truth["cut_du"] > 0).sum() >= 300
    assert np.isfinite(truth["true_pos"]).all() and np.isfinite(truth["true_t"]).all()


def test_multi_du_fits_on_kmc() -> None:
    _, truth, result, n_dus = mc_fitted()
    tracks = result.tracks
    wanted = (truth["cut_du"] == 0) & (n_dus >= 3)
    assert wanted.sum() > 140
    fitted = np.isin(np.flatnonzero(wanted), tracks["event"])
    assert fitted.mean() >= 0.97  # measured 99.3 %
    rows = tracks[wanted[tracks["event"]]]
    angle = space_angle_deg(rows["dir"], truth["true_dir"][rows["event"]])
    # measured 3.26° (goal 3.3°; the file's Jpp chain 2.9°); one event more or less within
    # the median moves it by ~0.15°
    assert np.median(angle) < 3.6
    bright = n_dus[rows["event"]] >= 5
    assert np.median(angle[bright]) < 2.5  # measured 1.7°
    few = ~bright
    assert np.mean(angle[few] < 10.0) >= 0.46  # measured 52 % (46 % before the likelihood chose)
    assert np.median(angle[few]) < 13.0  # measured 9.0° (14.1° before; Jpp 8-9°)
    assert sum(result.unfitted.values()) > 0 and "multi_du_no_fit" in result.unfitted


def test_the_pmt_likelihood_chooses_where_the_time_fit_and_the_pmts_disagree() -> None:
    """Events whose fits on the times alone find another minimum about as low as the kept
    track's, or lower (the PMT-facing term chose against it): the PMT likelihood takes the
    rival where it is more likely. On the MC (>= 3 DUs) that brings 8 events within 10° of
    the truth and takes none out; the residuals of a replaced track are not reported."""
    mc, truth, result, n_dus = mc_fitted()
    detector = parse_detx(mc.detx_text, "KM3NeT MC")
    events, hits = decode_events_hits(mc.payloads)
    hits = calibrate_hits(detector, hits)
    alone = Reconstruction(detector, Settings(alternative_starts=0)).run(len(events), hits)
    assert alone.chosen_by_likelihood == 0
    assert 20 <= result.chosen_by_likelihood <= 50  # measured 34 of 150 tracks
    wanted = (truth["cut_du"] == 0) & (n_dus >= 3)
    angle = {}
    for name, tracks in (("alone", alone.tracks), ("chosen", result.tracks)):
        assert (tracks["event"] == alone.tracks["event"]).all()
        angle[name] = space_angle_deg(tracks["dir"], truth["true_dir"][tracks["event"]])
    multi = wanted[alone.tracks["event"]]
    into = (angle["alone"] >= 10) & (angle["chosen"] < 10) & multi
    out = (angle["alone"] < 10) & (angle["chosen"] >= 10) & multi
    assert into.sum() >= 6 and out.sum() == 0  # measured 8 and 0
    moved = np.flatnonzero(angle["alone"] != angle["chosen"])  # only the replaced tracks
    assert len(moved) == result.chosen_by_likelihood
    assert set(alone.tracks["n_dus"][moved]) <= {3, 4, 5, 6}  # alternative_max_dus
    # a replaced track keeps no leave-one-DOM-out residuals (they were against the old one):
    # its residuals are only those of the road, on DOMs without triggered hits
    triggered = hits[hits["triggered"] & hits["calibrated"]]
    for fit in moved:
        mine = triggered["event"] == result.tracks["event"][fit]
        in_fit = detector.dom_index(triggered["dom_id"][mine])
        rows = result.dom_residuals[result.dom_residuals["fit"] == fit]
        assert not np.isin(rows["dom"], in_fit).any()


def test_single_du_fits_on_kmc() -> None:
    _, truth, result, _ = mc_fitted()
    cuts = np.flatnonzero(truth["cut_du"] > 0)
    lines = result.lines[np.isin(result.lines["event"], cuts)]
    assert len(np.unique(lines["event"])) >= 0.9 * len(cuts)  # measured 100 %
    error = np.abs(
        zenith_deg(lines["cos_theta"]) - zenith_deg(truth["true_dir"][lines["event"], 2])
    )
    # measured 5.7° (8.5° by the line fit alone, 10.8° on the times alone; the goal 7°)
    assert np.median(error) < 7.0
    assert np.median(error[lines["n_hits"] >= 6]) < 5.0  # measured 4.2° (5.4°, 6.2°)
    assert np.median(error[lines["n_hits"] <= 5]) < 11.0  # measured 8.9° (14.7°)
    assert np.mean(error < 10.0) >= 0.6  # measured 65 % (54 %, 48 %)


def test_two_du_fits_are_chosen_by_the_pmts_or_marked_ambiguous() -> None:
    """Without the PMT directions every 2-DU fit is a coin flip between mirror images; with
    them the choice is made where they tell, and marked ambiguous where they do not."""
    mc, _truth, _, _n_dus = mc_fitted()
    detector = parse_detx(mc.detx_text)
    events, hits = decode_events_hits(mc.payloads)
    hits = calibrate_hits(detector, hits)
    blind = Reconstruction(detector, Settings(facing_weight=0.0)).run(len(events), hits)
    seeing = Reconstruction(detector).run(len(events), hits)
    two_blind = blind.tracks[blind.tracks["n_dus"] == 2]
    two = seeing.tracks[seeing.tracks["n_dus"] == 2]
    assert len(two) >= 3
    assert np.isfinite(two["mirror_cost"]).all()
    assert two_blind["ambiguous"].sum() > two["ambiguous"].sum()  # 6 and 0 seen


@pytest.mark.slow
@pytest.mark.parametrize("offset_ns", [3.0, 20.0])
def test_a_dom_off_in_time_shows_in_its_residuals(offset_ns: float) -> None:
    """A DOM 3 ns or 20 ns late (the simulator's t0-offset): its per-DOM residuals, from its
    triggered hits and from snapshot hits within the road, sit at the offset; a DOM so far
    off that the trigger drops its hits is still measured from the snapshot hits."""
    detector = arca21()
    simulator = Simulator(detector, seed=5, start_utc_s=START_UTC_S, scenarios=["t0-offset@0"],
                          t0_offset_ns=offset_ns)  # fmt: skip
    (scenario,) = simulator.scenarios
    dom = int(detector.dom_index(np.array(scenario.dom_ids[:1]))[0])
    data = b"".join(simulator.step().data for _ in range(1000))
    payloads = [m.payload for m in FrameDecoder().feed(data) if m.tag == "IO_EVT"]
    reconstruction = Reconstruction(detector, SIMULATOR)
    residuals = []
    for first in range(0, len(payloads), 200):
        events, hits = decode_events_hits(payloads[first : first + 200])
        result = reconstruction.run(len(events), calibrate_hits(detector, hits))
        residuals.append(result.dom_residuals)
    table = np.concatenate(residuals)
    mine = table["t_res_ns"][table["dom"] == dom]
    others = table["t_res_ns"][table["dom"] != dom]
    assert len(mine) >= 20
    shift = np.median(mine) - np.median(others)
    assert abs(shift - offset_ns) < max(2.0, 0.15 * offset_ns), shift  # 3.7 and 17.8 seen


@pytest.mark.slow
@pytest.mark.timeout(900)  # its waits, not this, bound it; a loaded CI machine is slow
def test_reco_process_fits_the_kmc_replayed_through_a_ligier(ligier, spawn, tmp_path) -> None:
    """The MC as a recording, ``km3mon replay`` into our ligier, ``km3mon reco`` (a real
    process) fits it: every >= 3-DU event gets a fit, unfitted events are counted by reason
    in the metrics, ambiguous rows carry no azimuth, and the single-DU cuts meet the goal."""
    from km3mon.daq.files import RecordingWriter

    mc = kmc.load(max_events=60)
    truth = mc.arrays()
    detx = tmp_path / "kmc.detx"
    detx.write_text(mc.detx_text)
    recording = tmp_path / "kmc.dat"
    with RecordingWriter(recording) as writer:
        for payload in mc.payloads:
            writer.write("IO_EVT", payload)
    data = tmp_path / "data"
    spawn("reco", "--detx", detx, "-p", ligier.port, "-o", tmp_path / "plots", "--data-dir",
          data, "-i", "2")  # fmt: skip
    from km3mon.controlhost import query_status

    wait_until(lambda: "IO_EVT" in query_status(port=ligier.port), 180, "reco subscribed")
    spawn("replay", recording, "-p", ligier.port, "--max", "--no-progress")
    freshness = data / "freshness" / "reco.json"
    wait_until(lambda: read_json(freshness).get("messages", 0) >= len(mc.payloads), 300,
               "every event consumed", show=lambda: read_json(freshness))  # fmt: skip
    metrics_path = data / "metrics" / "reco.json"
    wait_until(lambda: read_json(metrics_path).get("totals", {}).get("events", 0)
               >= len(mc.payloads), 120, "the metrics of every event",
               show=lambda: read_json(metrics_path).get("totals"))  # fmt: skip
    metrics = read_json(metrics_path)
    assert set(metrics["unfitted"]) >= {"multi_du_too_few_doms", "multi_du_no_fit",
                                        "single_du_too_few_floors"}  # fmt: skip
    # the tracks the PMT likelihood took from the time fits, for the shifter (18 in-process)
    assert metrics["totals"]["chosen_by_likelihood"] >= 9
    import csv

    with (data / "reco" / "fits.csv").open() as stream:
        rows = list(csv.DictReader(stream))
    multi = {int(r["frame_index"]): r for r in rows if r["kind"] == "multi-du"}
    whole = np.flatnonzero(truth["cut_du"] == 0)
    fitted = [i for i in whole if int(truth["frame_index"][i]) in multi]
    assert len(fitted) >= 0.9 * len(whole)
    for r in multi.values():
        assert r["ambiguous"] in ("0", "1")
        if r["ambiguous"] == "1":
            assert r["azimuth_deg"] == r["dir_x"] == "" and r["zenith_deg"] != ""
    angles = [
        space_angle_deg(np.array([[float(multi[f]["dir_x"]), float(multi[f]["dir_y"]),
                                   float(multi[f]["dir_z"])]]), truth["true_dir"][i][None])[0]
        for i in fitted
        if (f := int(truth["frame_index"][i])) and multi[f]["ambiguous"] == "0"
        and int(multi[f]["n_dus"]) >= 5
    ]  # fmt: skip
    assert np.median(angles) < 5.0
    # the single-DU cuts, refined by the PMT likelihood inside the process
    single = {int(r["frame_index"]): float(r["zenith_deg"]) for r in rows
              if r["kind"] == "single-du"}  # fmt: skip
    cuts = np.flatnonzero(truth["cut_du"] > 0)
    zenith_error = [abs(single[f] - zenith_deg(truth["true_dir"][i, 2]))
                    for i in cuts if (f := int(truth["frame_index"][i])) in single]  # fmt: skip
    assert len(zenith_error) >= 0.9 * len(cuts)
    assert np.median(zenith_error) < 7.0, np.median(zenith_error)


def test_the_hit_counts_point_to_the_track_whatever_the_light_yield() -> None:
    """Hit counts per DOM that follow the direct light of a track (more near it, fewer far
    away) cost least at that track, and the same for any overall light yield: the term
    compares shares, not an absolute number of hits per distance."""
    rng = np.random.default_rng(3)
    doms = rng.uniform(-60, 60, (12, 3))
    direction = np.array([0.3, -0.2, -0.93]) / np.linalg.norm([0.3, -0.2, -0.93])
    along = doms @ direction
    rho = np.linalg.norm(doms - along[:, None] * direction, axis=1)
    light = np.exp(-rho / (kernels.SIN_C * kernels.ATTENUATION_M)) / np.maximum(rho, 1.0)
    costs = []
    for yield_ in (20.0, 80.0):
        counts = np.maximum(np.rint(yield_ * light / light.sum() * len(doms)), 1).astype(int)
        pos = np.repeat(doms, counts, axis=0)
        first = np.r_[True, np.repeat(np.arange(len(doms)), counts)[1:] != np.repeat(
            np.arange(len(doms)), counts)[:-1]]  # fmt: skip
        x, y, z = (np.ascontiguousarray(pos[:, k]) for k in range(3))
        here = kernels._multiplicity_cost(x, y, z, first, len(x), direction, np.zeros(3))
        shifted = [
            kernels._multiplicity_cost(x, y, z, first, len(x), direction, np.array(offset))
            for offset in ([25.0, 0.0, 0.0], [0.0, 25.0, 0.0], [-20.0, 10.0, 5.0])
        ]
        assert here < min(shifted), (here, shifted)
        costs.append(here)
    assert np.isfinite(costs).all()


def test_the_pmt_likelihood_moves_only_the_lines_of_events_without_a_track() -> None:
    mc, _, result, _ = mc_fitted()
    detector = parse_detx(mc.detx_text, "KM3NeT MC")
    events, hits = decode_events_hits(mc.payloads)
    hits = calibrate_hits(detector, hits)
    alone = Reconstruction(detector, Settings(line_likelihood_azimuths=0)).run(len(events), hits)
    before = alone.lines
    lines = result.lines
    assert np.array_equal(lines["event"], before["event"])
    tracked = np.isin(lines["event"], result.tracks["event"])
    assert tracked.sum() > 100 and (~tracked).sum() > 300, tracked.sum()
    for name in lines.dtype.names:
        np.testing.assert_array_equal(lines[name][tracked], before[name][tracked])
    moved = np.abs(lines["cos_theta"] - before["cos_theta"])[~tracked] > 1e-6
    assert moved.mean() > 0.5, moved.mean()
    assert np.isfinite(lines["quality"][lines["n_hits"] > 4]).all()

    # a moved line's residuals and Q are its hits' times against it, as every line's: the
    # time_residuals plot must not show the likelihood's time scale (found on review:
    # median -2.6 ns and Q 2.5 where the line fit alone gives +0.9 ns and 0.9)
    def residual_median(fitted) -> float:
        trackless = ~np.isin(fitted.lines["event"], fitted.tracks["event"])
        return float(np.median(fitted.line_residuals["t_res_ns"][trackless[
            fitted.line_residuals["fit"]]]))  # fmt: skip

    assert abs(residual_median(result) - residual_median(alone)) < 1.0
    assert np.nanmedian(lines["quality"][~tracked]) < 1.3 * np.nanmedian(
        before["quality"][~tracked]
    )
