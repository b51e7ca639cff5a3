"""trigger_rates as a real process: counts from DAQ time, zeros not gaps, runs, restarts."""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import km3net_testdata
import numpy as np

from km3mon.controlhost import Client
from km3mon.daq import DAQHeader, decode_event, decode_events_hits, encode_event
from km3mon.daq.files import iter_file
from km3mon.daq.summaryslice import FRAME_DTYPE, Summaryslice, encode_summaryslice
from km3mon.daq.triggers import trigger_mask
from tests.conftest import read_json, wait_subscribed, wait_until

DAQ_DIR = Path(km3net_testdata.data_path("daq/IO_EVT.dat")).parent
TYPES = ("Overall", "3DMuon", "MXShower", "3DShower")


def header(time_s: float, run: int) -> DAQHeader:
    cycles = int((time_s % 1) * 1e9 / 16)
    return DAQHeader(det_id=133, run=run, frame_index=int(time_s * 10) % 2**31,
                     utc_seconds=int(time_s), utc_16ns_cycles=cycles)  # fmt: skip


def summary_slice(time_s: float, run: int) -> bytes:
    return encode_summaryslice(Summaryslice(header(time_s, run), np.zeros(1, FRAME_DTYPE)))


def csv_rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with path.open() as stream:
        return list(csv.DictReader(stream))


def start(spawn, ligier, tmp_path: Path, interval: str):
    pipeline = tmp_path / "pipeline.toml"
    pipeline.write_text(f"[TriggerRate]\ninterval = {interval}\n")
    process = spawn("trigger_rates", "-p", ligier.port, "-o", tmp_path / "plots",
                    "--data-dir", tmp_path / "data", "--pipeline", pipeline)  # fmt: skip
    wait_subscribed(ligier.port, name="trigger_rates")
    return process


def with_slices(payloads: list[bytes], interval_s: float) -> list[tuple[str, bytes]]:
    """Recorded events in time order, with a summary slice every 0.1 s through each interval
    that holds one (the live time) and the interval before, of the events' detector and run."""
    events, _ = decode_events_hits(payloads)
    times = events["utc_seconds"] + events["utc_16ns_cycles"] * 16e-9
    stream = [(float(t), "IO_EVT", p) for t, p in zip(times, payloads, strict=True)]
    with_events = np.unique(times // interval_s).astype(int)
    for first in np.union1d(with_events, with_events - 1).tolist():
        for tenth in range(int(interval_s * 10)):
            when = (first * int(interval_s * 10) + tenth) / 10
            head = DAQHeader(det_id=int(events["det_id"][0]), run=int(events["run"][0]),
                             frame_index=tenth, utc_seconds=int(when),
                             utc_16ns_cycles=int((when % 1) * 1e9 / 16))  # fmt: skip
            slice_payload = encode_summaryslice(Summaryslice(head, np.zeros(1, FRAME_DTYPE)))
            stream.append((when, "IO_SUM", slice_payload))
    return [(tag, payload) for _, tag, payload in sorted(stream, key=lambda item: item[0])]


def test_recorded_events_counts_match_the_trigger_masks(ligier, spawn, tmp_path) -> None:
    monitor = start(spawn, ligier, tmp_path, "10")
    files = [DAQ_DIR / "IO_EVT_legacy.dat", DAQ_DIR / "IO_EVT.dat"]  # 2015, then 2019
    expected = dict.fromkeys(TYPES, 0)
    last_time = 0.0
    record = tmp_path / "data" / "freshness" / "trigger_rates.json"
    sent = 0
    with Client("127.0.0.1", ligier.port) as publisher:
        for path in files:  # one after the other, as a replay of the two files would
            payloads = [m.payload for m in iter_file(path)]
            events, _ = decode_events_hits(payloads)
            expected["Overall"] += len(events)
            for name in TYPES[1:]:
                bit = np.uint64(trigger_mask(name))
                expected[name] += int(np.count_nonzero(events["trigger_mask"] & bit))
            messages = with_slices(payloads, 10.0)
            publisher.publish_many(messages)
            sent += len(messages)
            wait_until(lambda n=sent: read_json(record).get("messages") == n, what="consumed")
            last_time = float(events["utc_seconds"].max())
        publisher.publish("IO_SUM", summary_slice(last_time // 10 * 10 + 20.05, 1))
    path = tmp_path / "data" / "trigger_rates.csv"

    def totals() -> dict[str, int]:  # counts are rates times live time
        return {n: round(sum(float(r[n] or 0) * float(r["live_s"]) for r in csv_rows(path)))
                for n in TYPES}  # fmt: skip

    wait_until(lambda: totals() == expected, what=f"totals {expected}", show=totals)
    assert expected["Overall"] == 41 and expected["3DMuon"] > 0
    # the jump from 2015 to 2019 is taken at once: the recent messages agree on it
    assert read_json(record)["implausible_times"] <= 16
    assert monitor.alive()


def test_rates_are_divided_by_live_time_gaps_and_torn_rows_kept_apart(
    ligier, spawn, tmp_path
) -> None:
    """A 50 Hz stream started 7 s into a 10 s interval is 50 Hz there too (with 3 s of live
    time), a DAQ stop leaves no rows, and a crash's torn row and an older file header do not
    spoil the history."""
    data = tmp_path / "data"
    data.mkdir()
    first_bin = 170_000_000
    old_rows = [f"{(first_bin - 10 + i) * 10},42,40,1,1" for i in range(3)]
    torn = "1700000000,4"  # a crash in the middle of a row
    old = "\n".join(["timestamp,Overall,3DMuon,MXShower,3DShower", *old_rows, torn])
    (data / "trigger_rates.csv").write_text(old)
    monitor = start(spawn, ligier, tmp_path, "10")
    template = decode_event(next(iter_file(DAQ_DIR / "IO_EVT.dat")).payload)
    muon = dataclasses.replace(template, trigger_mask=trigger_mask("3DMuon"))

    def second(time_s: float) -> list[tuple[str, bytes]]:  # 10 slices and 50 events
        tenths = round(time_s * 10)
        messages = [("IO_SUM", summary_slice((tenths + k) / 10, 7)) for k in range(10)]
        for k in range(50):
            event = dataclasses.replace(muon, header=header(time_s + 0.02 * k + 0.001, 7))
            messages.append(("IO_EVT", encode_event(event)))
        return messages

    begin = first_bin * 10 + 7  # 7 s into an interval
    seconds = [begin + s for s in range(23)] + [begin + 33 + s for s in range(21)]  # a 10 s stop
    with Client("127.0.0.1", ligier.port) as publisher:
        for time_s in seconds:
            publisher.publish_many(second(time_s))
    path = data / "trigger_rates.csv"

    def new_rows() -> list[tuple[int, float, float]]:
        rows = csv_rows(path)[3:]
        if not all(r.get("live_s") for r in rows):  # the first one not written yet
            return []
        return [(int(r["timestamp"]), float(r["Overall"]), float(r["live_s"])) for r in rows]

    bin_s = first_bin * 10
    expected = [(bin_s, 50.0, 3.0), (bin_s + 10, 50.0, 10.0), (bin_s + 20, 50.0, 10.0),
                (bin_s + 40, 50.0, 10.0)]  # fmt: skip
    wait_until(lambda: new_rows() == expected, what=f"rows {expected}", show=new_rows)
    lines = path.read_text().splitlines()
    assert lines[0] == "timestamp,Overall,3DMuon,MXShower,3DShower,live_s"
    assert lines[1:4] == old_rows, "the old rows are kept as they were"
    assert torn not in path.read_text()
    monitor.stop()
    restarted = start(spawn, ligier, tmp_path, "10")
    wait_until(lambda: "read 7 intervals of history" in restarted.log, what="all rows read back")


def test_zero_rate_is_zero_runs_are_marked_and_history_survives(ligier, spawn, tmp_path) -> None:
    monitor = start(spawn, ligier, tmp_path, "1")
    template = decode_event(next(iter_file(DAQ_DIR / "IO_EVT.dat")).payload)
    muon = dataclasses.replace(template, trigger_mask=trigger_mask("3DMuon"))
    t0 = 1_700_000_000.0
    with Client("127.0.0.1", ligier.port) as publisher:
        for step in range(160):  # 16 s of DAQ time; events at 5 Hz in the first 2 s only
            now, run = t0 + 0.1 * step, 100 if step < 30 else 101
            publisher.publish("IO_SUM", summary_slice(now, run))
            if step < 20 and step % 2 == 0:
                event = dataclasses.replace(muon, header=header(now + 0.01, run))
                publisher.publish("IO_EVT", encode_event(event))
    path = tmp_path / "data" / "trigger_rates.csv"
    wait_until(lambda: len(csv_rows(path)) == 5, what="5 closed intervals")
    rows = csv_rows(path)
    assert [float(r["Overall"]) for r in rows] == [5.0, 5.0, 0.0, 0.0, 0.0]
    assert [float(r["3DMuon"]) for r in rows] == [5.0, 5.0, 0.0, 0.0, 0.0]
    assert [float(r["MXShower"]) for r in rows] == [0.0] * 5
    metrics_path = tmp_path / "data" / "metrics" / "trigger_rates.json"
    wait_until(lambda: metrics_path.exists() and json.loads(metrics_path.read_text())["run"] == 101,
               what="run 101")  # fmt: skip
    changes = json.loads(metrics_path.read_text())["run_changes"]
    assert [run for _, run in changes] == [101]
    assert abs(changes[0][0] - (t0 + 3.0)) < 0.01
    for name in ("trigger_rates.png", "trigger_rates_lin.png"):
        wait_until(lambda n=name: (tmp_path / "plots" / n).exists(), what=name)

    monitor.stop()
    metrics_path.unlink()  # what the restarted monitor says comes from the history it read
    restarted = start(spawn, ligier, tmp_path, "1")
    wait_until(lambda: "read 5 intervals of history" in restarted.log, what="history read back")

    def latest() -> tuple[float | None, float | None]:
        metrics = read_json(metrics_path)
        return metrics.get("latest_start"), (metrics.get("latest_hz") or {}).get("Overall")

    last_row = (float(rows[-1]["timestamp"]), float(rows[-1]["Overall"]))
    wait_until(lambda: latest() == last_row, what=f"the newest interval {last_row}", show=latest)


def test_figure_draws_gaps_hollow_partial_intervals_and_few_run_marks(tmp_path) -> None:
    import argparse
    import logging
    import time

    from matplotlib.colors import to_hex

    from km3mon.config import load_pipeline
    from km3mon.monitors.trigger_rates import Interval, TriggerRates
    from km3mon.runtime.freshness import Freshness
    from km3mon.runtime.guards import RunChange
    from km3mon.runtime.monitor import Context

    args = argparse.Namespace(det_id=133, plot_dir=tmp_path, data_dir=tmp_path)
    freshness = Freshness(process="trigger_rates", pid=0, started_at=time.time(), ligier="-",
                          tags=[], render_interval_s=10.0, stale_after_s=60.0)  # fmt: skip
    monitor = TriggerRates(Context(args, freshness, logging.getLogger("test"), load_pipeline(None)))
    t0 = 1_700_000_000.0
    rates = [50.0, 40.0, 1.0, 9.0]
    monitor.history.extend(  # a partial first interval, then a 20 s stop
        Interval(t0 + start, rates, live) for start, live in
        ((0, 3.0), (10, 10.0), (20, 10.0), (50, 10.0), (60, 10.0))
    )  # fmt: skip
    monitor.run_changes.extend(RunChange(t0 + 0.1 * i, i, i + 1) for i in range(500))
    figure = monitor._figure(log_scale=False)
    axes = figure.axes[0]
    overall = next(line for line in axes.lines if line.get_label() == "Overall")
    drawn = np.asarray(overall.get_ydata(), dtype=float)
    assert np.isnan(drawn).tolist() == [True, False, False, True, False, False], (
        "the partial interval is not on the line, and no line crosses the stop"
    )
    hollow = [line for line in axes.lines if line.get_markerfacecolor() == "none"]
    assert [len(line.get_ydata()) for line in hollow] == [1, 1, 1, 1]
    assert np.asarray(hollow[0].get_ydata()).tolist() == [50.0]
    run_marks = [line for line in axes.lines if to_hex(line.get_color()) == "#ff0f5b"]
    assert len(run_marks) == 20
    assert "480 older run changes not drawn" in axes.get_title()
