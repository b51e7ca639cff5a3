"""reco: bounded CSVs and rings, and the whole monitor as a real process against a
simulated ARCA-21 with a DOM whose t0 is off."""

from __future__ import annotations

import csv
import time
from pathlib import Path

import numpy as np
import pytest

from km3mon.controlhost import query_status
from km3mon.history.reco import (
    DAY_S,
    FINE_EDGES_NS,
    Rings,
    RotatingCSV,
    histogram_quantiles,
)
from km3mon.reco.model import space_angle_deg
from km3mon.sim.sim_truth import read_truth
from km3mon.timetext import utc
from tests.conftest import read_json, wait_until
from tests.monitors.stamps import png_text
from tests.sim.test_simulator_support import ARCA21_DETX, ORCA6_DETX

HEADER = "a,b"


def test_csv_rotates_at_utc_midnight_and_keeps_a_bounded_number_of_files(tmp_path) -> None:
    now = [5 * DAY_S + 86_000.0]
    table = RotatingCSV(tmp_path / "fits.csv", HEADER, max_bytes=10**6, keep=2,
                        clock=lambda: now[0])  # fmt: skip
    table.write("1,2\n")
    now[0] += 500  # past midnight
    table.write("3,4\n")
    assert (tmp_path / "fits_1970-01-06.csv").read_text() == "a,b\n1,2\n"
    assert (tmp_path / "fits.csv").read_text() == "a,b\n3,4\n"
    for day in range(3):
        now[0] += DAY_S
        table.write(f"{day},x\n")
    table.close()
    rotated = sorted(p.name for p in tmp_path.glob("fits_*.csv"))
    assert len(rotated) == 2  # keep=2: the oldest went
    assert (tmp_path / "fits.csv").read_text().startswith("a,b\n")


def test_csv_rotates_by_size_and_cuts_a_torn_row(tmp_path) -> None:
    path = tmp_path / "time_residuals.csv"
    path.write_text("a,b\n1,2\n3,")  # a crash mid-row
    table = RotatingCSV(path, HEADER, max_bytes=40, keep=3, daily=False)
    assert path.read_text() == "a,b\n1,2\n"
    for i in range(20):
        table.write(f"{i},{i}\n")
    table.close()
    parts = list(tmp_path.glob("time_residuals_*.csv"))
    assert 1 <= len(parts) <= 3
    for part in [*parts, path]:
        assert part.stat().st_size <= 40
        rows = part.read_text().splitlines()
        assert rows[0] == HEADER and all(r.count(",") == 1 for r in rows)


def test_histogram_quantiles_match_the_samples() -> None:
    rng = np.random.default_rng(2)
    samples = [rng.normal(mu, 4, 2000) for mu in (-3.0, 0.0, 7.5)] + [rng.normal(0, 100, 500)]
    n_bins = len(FINE_EDGES_NS) + 1
    counts = np.array(
        [np.bincount(np.searchsorted(FINE_EDGES_NS, s), minlength=n_bins) for s in samples]
    )
    quantiles = histogram_quantiles(counts, FINE_EDGES_NS, (0.16, 0.5, 0.84))
    for row, s in zip(quantiles[:3], samples[:3], strict=True):
        np.testing.assert_allclose(row, np.percentile(s, [16, 50, 84]), atol=0.5)
    assert np.isnan(quantiles[3, [0, 2]]).all()  # beyond ±30 ns: not invented
    assert np.isnan(histogram_quantiles(np.zeros((1, 122)), FINE_EDGES_NS, (0.5,))).all()


def test_rings_are_saved_and_read_back_for_the_same_detector_only(tmp_path) -> None:
    rings = Rings(4, with_coarse=True)
    times = np.array([1000.0, 1001.0, 1700.0])
    rings.add_fine(times, np.array([0, 1, 3]), np.array([-1.0, 2.0, 40.0]))
    rings.add_counts(times, "tracks")
    rings.add_zenith(times, np.array([10.0, 20.0, 170.0]))
    rings.save(tmp_path / "state.npz", np.arange(4))
    again = Rings(4, with_coarse=True)
    assert again.load(tmp_path / "state.npz", np.arange(4))
    assert again.fine.sum() == 3 and again.counts.sum() == 3 and again.zenith.sum() == 3
    assert again.newest_s() == 1740.0
    assert not Rings(4, with_coarse=True).load(tmp_path / "state.npz", np.arange(1, 5))


def fits_rows(path: Path) -> list[dict[str, str]]:
    with path.open() as stream:
        return list(csv.DictReader(stream))


@pytest.mark.slow
@pytest.mark.timeout(900)  # its waits, not this, bound it; a loaded CI machine is slow
def test_reco_fits_every_event_and_flags_the_dom_with_a_wrong_t0(ligier, spawn, tmp_path) -> None:
    """ARCA-21 at 2x real time (the rings take what the TimeGate admits, also ahead of the
    wall clock), one DOM's hits 5 ns late against the DETX: within 10 minutes of data reco
    names it with its offset; fits and residuals are written in the KM3NeT conventions and
    agree with the truth; a restart reads the two hours back."""
    plots, data = tmp_path / "plots", tmp_path / "data"
    command = ("reco", "--detx", ARCA21_DETX, "-p", ligier.port, "-o", plots, "--data-dir",
               data, "-i", "2", "--timeres", data / "timeres.csv")  # fmt: skip
    monitor = spawn(*command)
    wait_until(lambda: "IO_EVT" in query_status(port=ligier.port), 180, "reco subscribed")
    truth_path = tmp_path / "truth.jsonl"
    simulator = spawn("simulate", "--detx", ARCA21_DETX, "-p", ligier.port, "--speed", "2",
                      "--scenario", "t0-offset@0", "--t0-offset-ns", "5", "--truth", truth_path,
                      "--seed", "5")  # fmt: skip
    metrics_path = data / "metrics" / "reco.json"

    def flagged() -> list[dict]:
        return read_json(metrics_path).get("flagged_doms", [])

    wait_until(lambda: flagged(), 600, "a flagged DOM", show=lambda: read_json(metrics_path))
    metrics = read_json(metrics_path)
    scenarios, events = read_truth(truth_path)
    (scenario,) = scenarios
    start_s = min(record["utc"] for record in events.values())
    assert metrics["data_time"] - start_s < 600  # within 10 minutes of data
    (dom,) = metrics["flagged_doms"]
    assert dom["dom_id"] == scenario["dom_ids"][0] and dom["du"] == scenario["du"]
    # flagged at >= 5 standard errors, so error < offset / 5; the first flag is often an upward
    # fluctuation (6.6 +- 1.3 ns seen in CI): the truth must be within 3 errors of it
    assert 0 < dom["error_ns"] < 1.5 and abs(dom["offset_ns"] - 5.0) < 3 * dom["error_ns"]
    assert dom["floor"] >= 1
    simulator.stop(timeout_s=60)  # its truth is line-buffered: complete even if killed
    _, events = read_truth(truth_path)
    wait_until(lambda: read_json(data / "freshness" / "reco.json").get("messages", 0)
               >= len(events), 60, "every event consumed")  # fmt: skip
    consumed_at = time.time()
    wait_until(lambda: metrics_path.stat().st_mtime > consumed_at + 0.1, 30,
               "a render after the last event")  # fmt: skip
    time.sleep(1)  # the last batch of fits written
    final = read_json(metrics_path)

    rows = fits_rows(data / "reco" / "fits.csv")
    multi = [r for r in rows if r["kind"] == "multi-du"]
    single = [r for r in rows if r["kind"] == "single-du"]
    assert len(multi) > 0.6 * len(events) and single
    assert all(r["du"] == "" for r in multi) and all(r["azimuth_deg"] == "" for r in single)
    assert all(r["dir_x"] == r["pos_x"] == "" for r in single)
    angles, zenith_errors = [], []
    for r in multi:
        if r["ambiguous"] == "1":  # a 2-DU fit the PMTs could not choose: no azimuth
            assert r["azimuth_deg"] == r["dir_x"] == ""
            continue
        true = events[(int(r["run"]), int(r["frame_index"]), int(r["trigger_counter"]))]
        if true.get("kind") == "k40":  # triggered by K40 alone: no muon to compare with
            continue
        fitted = np.array([float(r["dir_x"]), float(r["dir_y"]), float(r["dir_z"])])
        if int(r["n_dus"]) >= 3:
            true_dir = np.array([[true["dir_x"], true["dir_y"], true["dir_z"]]])
            angles.append(space_angle_deg(fitted[None], true_dir)[0])
            zenith_errors.append(abs(float(r["zenith_deg"]) - true["zenith_deg"]))
            az = (float(r["azimuth_deg"]) - true["azimuth_deg"] + 180) % 360 - 180
            if angles[-1] < 0.5 and true["zenith_deg"] > 5:
                assert abs(az) < 5  # the azimuth convention agrees with the truth's
    assert np.median(angles) < 1.5
    assert np.median(zenith_errors) < 1.0
    with (data / "timeres.csv").open() as stream:
        assert stream.readline().strip() == "run,timestamp,du,floor,dom_id,t_res,Q"
    # drawn from this stream (what they draw: test_plots_of_a_small_detector_...)
    for name in ("time_residuals", "ztplot_roy", "reco_zenith"):
        stamps = png_text(plots / f"{name}.png")
        assert stamps["stale"] == "false" and stamps["data_until"] >= utc(start_s), stamps

    # a restart reads the two hours back: without new data, every DOM's offset and flag are
    # those of the last render before the stop (whether the 5 ns DOM is still flagged at the
    # end depends on how many of its residuals this run's timing let through)
    monitor.stop()
    assert (data / "reco" / "state.npz").exists()
    metrics_path.unlink()
    restarted = spawn(*command)
    wait_until(metrics_path.exists, 120, "metrics after restart", show=lambda: restarted.log)
    assert "read the last two hours back" in restarted.log
    read_back = read_json(metrics_path)
    assert read_back["doms"] == final["doms"] and len(final["doms"]["dom_id"]) > 300
    assert read_back["flagged_doms"] == final["flagged_doms"]


@pytest.mark.timeout(600)  # its waits, not this, bound it
def test_events_of_another_detector_show_as_unknown_doms_not_as_errors(
    ligier, spawn, tmp_path
) -> None:
    """reco on ARCA-21's DETX, fed ORCA-6 events (a detector file that does not match):
    every batch is taken without an error (the fit used to fail each one with an
    IndexError), nothing is fitted, and the hits' DOMs are counted on the status page."""
    data = tmp_path / "data"
    monitor = spawn("reco", "--detx", ARCA21_DETX, "-p", ligier.port, "-o", tmp_path / "plots",
                    "--data-dir", data, "-i", "2")  # fmt: skip
    wait_until(lambda: "IO_EVT" in query_status(port=ligier.port), 180, "reco subscribed")
    spawn("simulate", "--detx", ORCA6_DETX, "-p", ligier.port, "--speed", "4", "--seed", "3")
    freshness = data / "freshness" / "reco.json"

    def seen() -> dict:
        return read_json(freshness)

    wait_until(lambda: seen().get("messages", 0) >= 200 and seen().get("unknown_doms", 0), 300,
               "200 events taken and unknown DOMs counted", show=seen)  # fmt: skip
    state = seen()
    assert state["decode_errors"] == 0, monitor.log
    assert "DOM ids not in detector 133" in monitor.log
    fits = data / "reco" / "fits.csv"
    assert not fits.exists() or len(fits.read_text().splitlines()) <= 1
    assert monitor.alive()


@pytest.mark.parametrize("offset_ns", [5.0, 20.0])
def test_the_monitor_flags_a_dom_whose_hits_are_late_even_beyond_the_trigger_window(
    tmp_path, offset_ns: float
) -> None:
    """In-process, the monitor's own path (consume, rings, dom_offsets) on simulated ARCA-21
    with one DOM's hits late against the DETX. At 20 ns the trigger's causality window cuts
    that DOM's hits; its snapshot hits within the road around each track still measure it,
    and its late tail beyond the fine histogram (+30 ns) does not hide its spread: it is
    flagged with its offset, and it is the only DOM flagged."""
    import logging

    from km3mon.commands import build_parser
    from km3mon.config import PipelineConfig
    from km3mon.controlhost import FrameDecoder
    from km3mon.monitors.reco import Reco
    from km3mon.runtime.freshness import Freshness
    from km3mon.runtime.monitor import Context
    from km3mon.sim.simulator import Simulator
    from tests.sim.test_simulator_support import arca21

    argv = ["reco", "--detx", str(ARCA21_DETX), "-o", str(tmp_path / "plots"), "--data-dir",
            str(tmp_path / "data")]  # fmt: skip
    args = build_parser(argv).parse_args(argv)
    freshness = Freshness(process="reco", pid=0, started_at=time.time(), ligier="-", tags=[],
                          render_interval_s=30.0, stale_after_s=90.0)  # fmt: skip
    monitor = Reco(Context(args, freshness, logging.getLogger("test.reco"), PipelineConfig()))
    # data times of today: the rings take nothing far ahead of the wall clock
    simulator = Simulator(arca21(), seed=5, start_utc_s=float(int(time.time()) - 600),
                          scenarios=["t0-offset@0"], t0_offset_ns=offset_ns)  # fmt: skip
    (scenario,) = simulator.scenarios
    for _ in range(15):  # 150 s of data, 100 timeslices a batch as the ligier would give
        data = b"".join(simulator.step().data for _ in range(100))
        monitor.consume([m for m in FrameDecoder().feed(data) if m.tag == "IO_EVT"])
    offsets = monitor.dom_offsets()
    dom = int(monitor.detector.dom_index(np.array(scenario.dom_ids[:1]))[0])
    flagged = np.flatnonzero(offsets.flagged)
    assert flagged.tolist() == [dom], (offsets.offset_ns[flagged], offsets.count[dom])
    assert abs(offsets.offset_ns[dom] - offset_ns) < max(2.0, 0.15 * offset_ns), (
        offsets.offset_ns[dom], offsets.error_ns[dom])  # fmt: skip


def test_plots_of_a_small_detector_show_the_originals_histograms(tmp_path) -> None:
    """Up to 12 DUs: per-floor histograms of single-DU residuals per DU; the z-t display
    and the zenith plot draw from the rings and a kept event (ORCA-6, simulated)."""
    import matplotlib

    matplotlib.use("Agg")
    from km3mon.figures.reco import Display, residual_histograms, zenith_figure, ztplot
    from km3mon.reco.fit import Reconstruction
    from km3mon.runtime.output import save_figure
    from tests.reco.simulated import SIMULATOR, simulate
    from tests.sim.test_simulator_support import orca6

    sample = simulate(orca6(), 100)
    reconstruction = Reconstruction(sample.detector, SIMULATOR)
    result = reconstruction.run(len(sample.events), sample.hits)
    rings = Rings(len(sample.detector.dom_ids), with_coarse=True)
    times = 1_700_000_000.0 + sample.events["frame_index"] * 0.1
    lines = result.lines
    residuals = result.line_residuals
    rings.add_coarse(times[lines["event"][residuals["fit"]]], residuals["dom"],
                     residuals["t_res_ns"])  # fmt: skip
    # the histograms span |t_res| < 500 ns, as the original's; the scattering tail leaves some out
    inside = int((np.abs(residuals["t_res_ns"]) < 500).sum())
    assert rings.coarse.sum() == inside > 20 and inside > 0.98 * len(residuals)
    coarse = rings.coarse.sum(axis=0)
    figure = residual_histograms(sample.detector, coarse, ["DOM 1 +5 ns"], "x")
    # each floor's panel draws each DU's residual counts of that floor, nothing else
    detector = sample.detector
    for floor, axes in enumerate(figure.axes[: detector.n_floors], start=1):
        drawn = {line.get_label(): line.get_ydata() for line in axes.lines}
        for du in detector.dus.tolist():
            counts = coarse[(detector.dom_du == du) & (detector.dom_floor == floor)].sum(axis=0)
            assert np.array_equal(drawn[f"DU {du}"], counts) if counts.sum() else (
                f"DU {du}" not in drawn)  # fmt: skip
    assert "timing outliers: DOM 1 +5 ns" in figure._suptitle.get_text()
    save_figure(figure, tmp_path / "time_residuals.png")
    track = result.tracks[np.argmax(result.tracks["n_doms"])]
    e = int(track["event"])
    of_event = sample.hits[sample.hits["event"] == e]
    dus = np.unique(of_event["du"])
    display = Display("title", of_event, track, lines[lines["event"] == e],
                      dict(zip(dus.tolist(), reconstruction.du_axis(dus),
                               strict=True)))  # fmt: skip
    figure = ztplot(display, sample.detector)
    # every triggered hit of the event is a red cross at its time and height on its DU's panel
    first = of_event["time_ns"][of_event["triggered"]].min()
    for axes in (a for a in figure.axes if a.get_visible()):
        du = int(axes.get_title().split()[1])
        mine = of_event[(of_event["du"] == du) & of_event["triggered"]]
        crosses = axes.collections[1].get_offsets()
        assert np.allclose(crosses, np.column_stack((mine["time_ns"] - first, mine["pos_z_m"])))
        assert any(line.get_label() == "multi-DU fit" for line in axes.lines)
    save_figure(figure, tmp_path / "ztplot_roy.png")
    zenith = np.histogram(np.degrees(np.arccos(-result.tracks["dir"][:, 2])), 36, (0, 180))[0]
    figure = zenith_figure(sample.detector, zenith, zenith, times[:3], np.ones(3), np.ones(3))
    last_hour = figure.axes[0].lines[0]
    assert np.array_equal(last_hour.get_ydata(), zenith)
    assert last_hour.get_label() == f"last hour ({len(result.tracks)} muons)"
    save_figure(figure, tmp_path / "reco_zenith.png")


def test_the_display_title_shows_a_line_without_degrees_of_freedom_as_a_dash() -> None:
    """A line on four floors has four parameters and no Q: the z-t title and its panels'
    legends said "Q nan"."""
    from km3mon.figures.reco import quality_text

    assert quality_text(float("nan")) == "–"
    assert quality_text(1.234) == "1.2"


def test_a_z_t_title_naming_many_dus_is_wrapped_within_the_figure() -> None:
    """At 230 DUs the title lists a dozen single-DU fits' Q: one line of ~250 characters
    ran off both edges of the z-t figure. It is wrapped, every word kept."""
    from km3mon.figures.reco import ZT_TITLE_CHARS, Display, ztplot
    from km3mon.reco.fit import LINE_DTYPE, TRACK_DTYPE, Reconstruction
    from tests.reco.simulated import arca21_sample

    sample = arca21_sample(30)
    hits = sample.hits[sample.hits["event"] == sample.hits["event"][0]]
    q_lines = ", ".join(f"DU {du}: 1.2" for du in range(100, 130))
    title = f"ROy live reconstruction: multi-DU Q=1.9; single-DU Q: {q_lines}\nDet ID 999\nUTC"
    reconstruction = Reconstruction(sample.detector)
    dus = np.unique(hits["du"])
    du_xy = dict(zip(dus.tolist(), reconstruction.du_axis(dus), strict=True))
    display = Display(title, hits, np.zeros(1, TRACK_DTYPE)[0], np.zeros(0, LINE_DTYPE), du_xy)
    drawn = ztplot(display, sample.detector)._suptitle.get_text()
    assert max(map(len, drawn.split("\n"))) <= ZT_TITLE_CHARS < len(title.split("\n")[0])
    assert drawn.split() == title.split()
