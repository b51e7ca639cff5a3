"""trigger_rates as a real process: counts from DAQ time, zeros not gaps, runs, restarts."""

from __future__ import annotations

import csv
import dataclasses
import json
import subprocess
from pathlib import Path

import km3net_testdata
import numpy as np

from km3mon.controlhost import Client
from km3mon.daq import DAQHeader, decode_event, decode_events_hits, encode_event
from km3mon.daq.files import iter_file
from km3mon.daq.summaryslice import FRAME_DTYPE, Summaryslice, encode_summaryslice
from km3mon.daq.triggers import trigger_mask
from tests.conftest import KM3MON, wait_until

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
    record = tmp_path / "data" / "freshness" / "trigger_rates.json"
    wait_until(lambda: record.exists() and json.loads(record.read_text())["connected"],
               what="trigger_rates connected")  # fmt: skip
    return process


def test_replayed_testdata_counts_match_the_trigger_masks(ligier, spawn, tmp_path) -> None:
    monitor = start(spawn, ligier, tmp_path, "10")
    files = [DAQ_DIR / "IO_EVT.dat", DAQ_DIR / "IO_EVT_legacy.dat"]
    payloads = [m.payload for f in files for m in iter_file(f)]
    events, _ = decode_events_hits(payloads)
    expected = {"Overall": len(events)}
    for name in TYPES[1:]:
        expected[name] = int(
            np.count_nonzero(events["trigger_mask"] & np.uint64(trigger_mask(name)))
        )
    result = subprocess.run([*KM3MON, "replay", "--max", "-p", str(ligier.port), *map(str, files)],
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 0, result.stderr
    with Client("127.0.0.1", ligier.port) as publisher:  # a later slice closes the last interval
        publisher.publish("IO_SUM", summary_slice(2.0e9, 1))
    path = tmp_path / "data" / "trigger_rates.csv"

    def totals() -> dict[str, int]:
        return {n: round(sum(float(r[n]) * 10 for r in csv_rows(path))) for n in TYPES}

    wait_until(lambda: totals() == expected, what=f"totals {expected}")
    assert expected["Overall"] == 41 and expected["3DMuon"] > 0
    assert monitor.alive()


def test_zero_rate_is_zero_runs_are_marked_and_history_survives(ligier, spawn, tmp_path) -> None:
    monitor = start(spawn, ligier, tmp_path, "1")
    template = decode_event(next(iter_file(DAQ_DIR / "IO_EVT.dat")).payload)
    muon = dataclasses.replace(template, trigger_mask=trigger_mask("3DMuon"))
    t0 = 1_700_000_000.0
    with Client("127.0.0.1", ligier.port) as publisher:
        for step in range(60):  # 6 s of DAQ time; events at 5 Hz in the first 2 s only
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
    restarted = start(spawn, ligier, tmp_path, "1")
    wait_until(lambda: "read 5 intervals of history" in restarted.log, what="history read back")
