"""ztplot as a real process: calibrated positions and times, selection, a top 10 that persists."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import km3net_testdata
import matplotlib.pyplot as plt
import numpy as np

from km3mon.controlhost import Client, encode_frame
from km3mon.daq import decode_event
from km3mon.detector import calibrate_hits, read_detx
from tests.conftest import read_json, wait_subscribed, wait_until
from tests.monitors.daqfakes import make_event

ARCA21 = km3net_testdata.data_path("detx/KM3NeT_00000133_20221025.detx")


def start(spawn, ligier, tmp_path):
    (tmp_path / "data" / "freshness" / "ztplot.json").unlink(missing_ok=True)  # a previous run's
    process = spawn("ztplot", "--detx", ARCA21, "-p", ligier.port, "-o", tmp_path / "plots",
                    "--data-dir", tmp_path / "data", "-i", "0.5")  # fmt: skip
    wait_subscribed(ligier.port, name="ztplot")
    return process


def stored(tmp_path: Path) -> set[str]:
    path = tmp_path / "data" / "event_selection.sqlite3"
    if not path.exists():
        return set()
    with sqlite3.connect(path) as db:
        return {name for (name,) in db.execute("SELECT name FROM event_selection")}


def test_calibrated_hits_selection_and_persistent_top10(ligier, spawn, tmp_path) -> None:
    detector = read_detx(ARCA21)
    monitor = start(spawn, ligier, tmp_path)
    rng = np.random.default_rng(11)
    optical = detector.dom_ids[detector.dom_floor > 0]
    t0 = 1_700_000_000
    sent = [
        make_event(
            i,
            5,
            optical,
            rng,
            n_hits=20 + 7 * ((i * 37) % 30),
            overlays=(i * 11) % 23,
            time_s=t0 + 10 * i,
        )
        for i in range(30)
    ]
    too_small = make_event(99, 5, optical[:2], rng, n_hits=30, time_s=t0 + 400)  # 2 DOMs only
    with Client("127.0.0.1", ligier.port) as publisher:
        publisher.publish_many([("IO_EVT", payload) for payload, _ in sent])
        publisher.publish("IO_EVT", too_small[0])
    events = [decode_event(payload) for payload, _ in sent]
    by_hits = sorted(range(30), key=lambda i: len(events[i].hits), reverse=True)[:10]
    by_overlays = sorted(range(30), key=lambda i: events[i].overlays, reverse=True)[:10]
    by_triggered = sorted(range(30), key=lambda i: len(events[i].triggered_hits), reverse=True)
    chosen = set(by_hits) | set(by_overlays) | set(by_triggered[:10])
    expected = {f"ztplot_133_5_FI{i}_TC{i}" for i in chosen}
    wait_until(
        lambda: stored(tmp_path) == expected, what="the top 10s", show=lambda: stored(tmp_path)
    )
    selection = tmp_path / "plots" / "event_selection"
    for name in expected:
        wait_until(lambda n=name: (selection / f"{n}.png").exists(), 90, f"{name}.png")
        frame = encode_frame("IO_EVT", sent[int(name.split("_TC")[1])][0])
        assert (selection / f"{name}.dat").read_bytes() == frame, "the event's ControlHost frame"
    assert len(list(selection.iterdir())) == 2 * len(expected), "dropped-out events deleted"

    metrics_path = tmp_path / "data" / "metrics" / "ztplot.json"
    wait_until(lambda: read_json(metrics_path).get("selected_events") == 30, what="selection")
    metrics = read_json(metrics_path)
    shown = events[metrics["frame_index"]]
    calibrated = calibrate_hits(detector, shown.hits)
    assert metrics["hits"]["dom_id"] == calibrated["dom_id"].tolist()
    assert np.allclose(metrics["hits"]["pos_z_m"], calibrated["pos_z_m"])
    assert np.allclose(metrics["hits"]["time_ns"], calibrated["time_ns"])
    assert metrics["hits"]["triggered"] == calibrated["triggered"].tolist()
    assert (tmp_path / "plots" / "ztplot.png").exists()

    monitor.stop()
    start(spawn, ligier, tmp_path)
    big = make_event(500, 6, optical, rng, n_hits=2000, time_s=t0 + 1000)
    with Client("127.0.0.1", ligier.port) as publisher:
        publisher.publish("IO_EVT", big[0])
    wait_until(lambda: "ztplot_133_6_FI500_TC500" in stored(tmp_path), what="the new top event")
    # The new run's event pushes at most one event out of each all-time list.
    assert len(stored(tmp_path) & expected) >= len(expected) - 3, "the old top 10 survived"


def test_marker_size_is_the_20_ns_coincidence_multiplicity(tmp_path) -> None:
    """Hits of one event placed (after calibration) in coincidences of known size on a DOM;
    every hit's marker, triggered or not, is 30 × its multiplicity, as km3modules counts it."""
    import argparse
    import logging
    import time

    from km3modules.hits import count_multiplicities

    from km3mon.config import load_pipeline
    from km3mon.daq import DAQHeader, Event, decode_events_hits, encode_event
    from km3mon.daq.event import SNAPSHOT_HIT_DTYPE, TRIGGERED_HIT_DTYPE
    from km3mon.monitors.ztplot import Candidate, ZTPlot
    from km3mon.runtime.freshness import Freshness
    from km3mon.runtime.monitor import Context

    detector = read_detx(ARCA21)
    optical = np.flatnonzero(detector.dom_floor > 0)
    doms = detector.dom_ids[optical[[0, 1, 20, 40]]]  # two DUs
    # calibrated times (ns) per DOM: coincidences of 5 + 1, 1 + 2, 1, 1
    wanted = [[0, 3, 7, 15, 19, 40], [0, 25, 30], [5], [8]]
    expected = [5, 5, 5, 5, 5, 1, 1, 2, 2, 1, 1]
    hits = np.zeros(11, SNAPSHOT_HIT_DTYPE)
    row = 0
    for dom_id, times in zip(doms, wanted, strict=True):
        for channel, time_ns in enumerate(times):
            pmt = detector.pmt_rows(np.array([dom_id]), np.array([channel]))[0]
            t0_ns = detector.pmt_t0_ns[pmt]
            hits[row] = (dom_id, channel, round(600_000 + time_ns - t0_ns), 20)
            row += 1
    hits = hits[np.argsort(hits["time_ns"], kind="stable")]
    triggered = np.zeros(len(hits), TRIGGERED_HIT_DTYPE)
    for name in SNAPSHOT_HIT_DTYPE.names:
        triggered[name] = hits[name]
    triggered["trigger_mask"] = 16
    header = DAQHeader(133, 5, 1, 1_700_000_000, 0)
    payload = encode_event(Event(header, 1, 16, 0, triggered[::2], hits))

    args = argparse.Namespace(det_id=133, detx=ARCA21, plot_dir=tmp_path, data_dir=tmp_path)
    freshness = Freshness(process="ztplot", pid=0, started_at=time.time(), ligier="-", tags=[],
                          render_interval_s=10.0, stale_after_s=60.0)  # fmt: skip
    monitor = ZTPlot(Context(args, freshness, logging.getLogger("test"), load_pipeline(None)))
    events, _ = decode_events_hits([payload])
    figure, shown = monitor.figure(Candidate(payload, events[0], 11, len(hits[::2])))
    by_dom_time = np.lexsort((shown["time_ns"], shown["dom_id"]))
    reference = np.empty(len(shown), np.int64)
    for dom_id in np.unique(shown["dom_id"]):  # km3modules, one DOM at a time
        rows = by_dom_time[shown["dom_id"][by_dom_time] == dom_id]
        reference[rows] = count_multiplicities(shown["time_ns"][rows])[0]
    assert sorted(reference.tolist()) == sorted(expected)
    sizes, trig_sizes, trig_multiplicity = [], [], []
    for axes in figure.axes:
        if not axes.get_visible() or len(axes.collections) < 2:
            continue
        du = int(axes.get_title().split()[-1])
        on_du = shown["du"] == du
        all_hits, triggered_hits = axes.collections[-2:]
        sizes += list(all_hits.get_sizes())
        trig_sizes += list(triggered_hits.get_sizes())
        trig_multiplicity += reference[on_du & shown["triggered"]].tolist()
    assert sorted(sizes) == sorted(30 * reference)
    assert trig_sizes and sorted(trig_sizes) == sorted(30 * np.array(trig_multiplicity))
    plt.close(figure)
