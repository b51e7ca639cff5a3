"""Corrupted DAQ header fields against the guards and against real monitor processes: a
wild time moves no clock, a wild run number is no run change."""

from __future__ import annotations

import csv
import struct
import time
from pathlib import Path

import km3net_testdata
import numpy as np
from PIL import Image

from km3mon.controlhost import Client
from km3mon.daq.monitoring import encode_monitoring_batch, new_packets
from km3mon.detector import read_detx
from km3mon.runtime.guards import MAX_AHEAD_OF_WALL_S, WINDOW, RunTracker, TimeGuard
from km3mon.timetext import utc
from tests.conftest import read_json, wait_subscribed, wait_until
from tests.monitors.daqfakes import make_event, slice_payload
from tests.monitors.test_trigger_rates import summary_slice

ARCA21 = km3net_testdata.data_path("detx/KM3NeT_00000133_20221025.detx")
#: Byte offset of the UTC seconds: after preamble and class version (JDAQ), after the
#: type, run and UDP sequence words (CLB monitoring packets, big-endian).
UTC_OFFSET = {"IO_EVT": (22, "<I"), "IO_SUM": (22, "<I"), "IO_MONIT": (12, ">I")}


def with_utc(tag: str, payload: bytes, utc_seconds: int) -> bytes:
    offset, layout = UTC_OFFSET[tag]
    changed = bytearray(payload)
    struct.pack_into(layout, changed, offset, utc_seconds)
    return bytes(changed)


def test_time_guard_rejects_wild_times_and_follows_a_real_jump() -> None:
    now = time.time()
    guard = TimeGuard()
    live = now - 5 + np.arange(50) * 0.1
    assert guard.plausible(live, now).all()
    wild = np.array([2**31 - 1, 2**32 - 1, now + 2 * MAX_AHEAD_OF_WALL_S, now + 1800, 0, np.nan])
    assert not guard.plausible(wild, now).any()
    assert guard.plausible(np.array([now - 600]), now).all(), "late live data are harmless"
    # a replay of another day: refused while it is a minority, followed once most agree
    replay = 1_574_432_873.0 + np.arange(WINDOW) * 0.1
    assert not guard.plausible(replay[:3], now).any()
    assert guard.plausible(replay[3:], now).all()
    assert not guard.plausible(np.array([replay[-1] + 1800]), now).any()
    # a simulation running 40 times faster than the wall clock: followed once it is ahead
    fast = TimeGuard()
    accepted = [fast.plausible(now + 2 * step + np.arange(20) * 0.1, now + 0.05 * step).mean()
                for step in range(400)]  # fmt: skip
    assert min(accepted[10:]) == 1.0 and np.mean(accepted) > 0.95


def test_run_tracker_ignores_corrupted_runs_and_confirms_a_real_change() -> None:
    tracker = RunTracker()
    runs = np.array([7] * 6 + [2111421706] + [7] * 3 + [-5] + [7] * 2)
    confirmed, changes = tracker.update(runs, np.arange(len(runs), dtype=float))
    assert confirmed.tolist() == [7] * len(runs)
    assert [(c.previous, c.run) for c in changes] == [(None, 7)]
    rng = np.random.default_rng(2)
    runs = np.array([7, 8, 8, 99, 8, 8, 8, 8, 8])  # a real change, with a blip inside
    confirmed, changes = tracker.update(runs, 100 + np.arange(len(runs), dtype=float))
    assert [(c.time_s, c.previous, c.run) for c in changes] == [(101.0, 7, 8)]
    assert confirmed.tolist() == [7, 8, 8, 8, 8, 8, 8, 8, 8], "from the first 8 on"
    runs = np.where(np.arange(400) % 3 == 1, rng.integers(0, 2**31, 400), 8)  # a third wild
    confirmed, changes = tracker.update(runs, 200 + np.arange(len(runs), dtype=float))
    assert changes == [] and (confirmed == 8).all()
    runs = np.where(np.arange(40) % 3 == 1, rng.integers(0, 2**31, 40), 9)
    _, changes = tracker.update(runs, 700 + np.arange(len(runs), dtype=float))
    assert [(c.time_s, c.run) for c in changes] == [(700.0, 9)]


def write_pipeline(tmp_path: Path) -> Path:
    path = tmp_path / "pipeline.toml"
    path.write_text(
        "[TriggerRate]\ninterval = 1\n[ZTPlot]\nmin_dus = 1\nmin_doms = 1\n"
        "[PMTRates]\ninterval = 1\n"
    )
    return path


def monitoring_packets(detector, time_s: float) -> list[bytes]:
    packets = new_packets(len(detector.dom_ids))
    packets["dom_id"] = detector.dom_ids
    packets["run"] = 42
    packets["utc_seconds"] = int(time_s)
    packets["hit_counts"] = 700
    return encode_monitoring_batch(packets)


def test_wild_daq_times_move_no_clock(ligier, spawn, tmp_path) -> None:
    detector = read_detx(ARCA21)
    plots, data = tmp_path / "plots", tmp_path / "data"
    common = ["--detx", ARCA21, "-p", ligier.port, "-o", plots, "--data-dir", data,
              "--pipeline", write_pipeline(tmp_path)]  # fmt: skip
    names = ("trigger_rates", "ztplot", "dom_activity", "pmt_rates")
    for name in names:
        spawn(name, *common, *([] if name == "trigger_rates" else ["-i", "0.5"]))
    for name in names:
        record = data / "freshness" / f"{name}.json"
        wait_subscribed(ligier.port, name=name)

    rng = np.random.default_rng(5)
    optical = detector.dom_ids[detector.dom_floor > 0]
    newest_s = float(int(time.time()))
    start_s = newest_s - 20
    wild_utc = (0x7FFFFFFF, 0xFFFFFFFF, int(newest_s + 3 * 86400), int(newest_s + 1800))
    messages: list[tuple[str, bytes]] = []
    first_event, _ = make_event(0, 42, optical, rng, time_s=start_s)
    messages.append(("IO_EVT", with_utc("IO_EVT", first_event, 0x7FFFFFFF)))  # wild first
    good_events = []
    for step in range(201):  # 20 s: slices and events at 10 Hz, monitoring packets at 1 Hz
        time_s = start_s + 0.1 * step
        payload, _ = make_event(step + 1, 42, optical, rng, time_s=time_s + 0.01)
        good_events.append(step + 1)
        messages += [("IO_SUM", slice_payload(detector, time_s, {}, set())), ("IO_EVT", payload)]
        if step % 10 == 0:
            messages += [("IO_MONIT", p) for p in monitoring_packets(detector, time_s)]
        if step % 15 == 7:  # the same kinds of message with wild times
            wild = wild_utc[(step // 15) % len(wild_utc)]
            messages += [
                ("IO_SUM", with_utc("IO_SUM", slice_payload(detector, time_s, {}, set()), wild)),
                ("IO_EVT", with_utc("IO_EVT", payload, wild)),
                ("IO_MONIT", with_utc("IO_MONIT", monitoring_packets(detector, time_s)[0], wild)),
            ]
    with Client("127.0.0.1", ligier.port) as publisher:
        for index in range(0, len(messages), 50):
            publisher.publish_many(messages[index : index + 50])

    for name in names:
        path = data / "freshness" / f"{name}.json"
        # the last good message is at newest_s: wait for it, then no wild time may be newer
        wait_until(lambda p=path: (read_json(p).get("newest_data_at") or 0) >= newest_s - 0.5,
                   120, f"{name} reaching the last good message",
                   show=lambda p=path: read_json(p))  # fmt: skip
        record = read_json(path)
        assert record["newest_data_at"] <= newest_s + 1, (name, record["newest_data_at"])
        assert record.get("implausible_times", 0) >= 4, (name, record)
    rows_path = data / "trigger_rates.csv"
    wait_until(lambda: rows_path.exists() and len(rows_path.read_text().splitlines()) >= 5,
               120, "trigger rate intervals")  # fmt: skip
    with rows_path.open() as stream:
        rows = list(csv.DictReader(stream))
    assert all(float(row["timestamp"]) <= newest_s for row in rows), "no rows in the future"
    assert [float(row["Overall"]) for row in rows[1:4]] == [10.0] * 3
    wait_until(lambda: read_json(data / "metrics" / "trigger_rates.json").get("run") == 42,
               120, "trigger_rates metrics")  # fmt: skip
    assert read_json(data / "metrics" / "trigger_rates.json")["late_events"] == 0
    zt_metrics = data / "metrics" / "ztplot.json"
    wait_until(lambda: read_json(zt_metrics).get("frame_index") in good_events,
               120, "ztplot drawing a good event after the wild one")  # fmt: skip
    for plot in ("trigger_rates.png", "ztplot.png", "dom_activity.png"):
        wait_until(lambda p=plot: (plots / p).exists(), 120, plot)
        stamped = Image.open(plots / plot).text["data_until"]
        assert stamped <= utc(newest_s + 1), (plot, stamped)


def test_corrupted_run_numbers_are_no_run_changes(ligier, spawn, tmp_path) -> None:
    detector = read_detx(ARCA21)
    data = tmp_path / "data"
    common = ["--detx", ARCA21, "-p", ligier.port, "-o", tmp_path / "plots", "--data-dir", data,
              "--pipeline", write_pipeline(tmp_path)]  # fmt: skip
    rates = spawn("trigger_rates", *common)
    spawn("triggermap", *common, "-i", "0.5")
    for name in ("trigger_rates", "triggermap"):
        wait_subscribed(ligier.port, name=name)
    rng = np.random.default_rng(6)
    optical = detector.dom_ids[detector.dom_floor > 0]
    start_s = float(int(time.time()) - 10)
    messages = []
    for step in range(80):  # run 10000 becomes 10001 half way; every 4th event a wild run
        time_s, run = start_s + 0.1 * step, 10000 if step < 40 else 10001
        wild = step % 4 == 1
        event_run = int(rng.integers(0, 2**31)) if wild else run
        payload, _ = make_event(step, event_run, optical, rng, time_s=time_s + 0.01)
        messages += [("IO_SUM", summary_slice(time_s, run)), ("IO_EVT", payload)]
    with Client("127.0.0.1", ligier.port) as publisher:
        publisher.publish_many(messages)
    metrics_path = data / "metrics" / "trigger_rates.json"

    def changes() -> list:
        return read_json(metrics_path).get("run_changes")

    wait_until(lambda: read_json(metrics_path).get("run") == 10001, what="run 10001", show=changes)
    assert [run for _, run in changes()] == [10001]
    assert abs(changes()[0][0] - (start_s + 4.0)) < 0.5  # once 5 messages in a row agree
    map_metrics = data / "metrics" / "triggermap.json"
    wait_until(lambda: read_json(map_metrics).get("events") == 80, what="80 events in the map")
    assert read_json(map_metrics)["run_changes"] == [10001], "one run change marked"
    assert "run change 10000 -> 10001" in rates.log
    assert rates.log.count("run change") == 1
