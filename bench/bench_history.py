"""The history store at ARCA-230 (4 140 DOMs): a synthetic month, its size, the cost of
writing it and the time to read one DOM's rate over 30 days back.

1. ``--measure-hours`` hours through the real path: every minute the monitors' metrics JSON
   are rewritten (dom_rates, pmt_rates with flagged PMTs, ahrs_calibration, trigger_rates,
   rttc; not timed), then ``km3mon history``'s sampling step (read the files, build samples,
   write, transpose the hour when it completes) is timed in process CPU seconds.
2. The rest of the month is filled through the same hour-transposing code without the JSON
   (``HistoryStore.write_hour``), in the same order, so the file has the real layout.
3. The file size, and one DOM's rate over 30 days read back (``HistoryStore.series``, first
   call and median of five), plus its JSON for ``/api/history``.
4. Yardstick, same data and same work for ``--measure-hours``: the obvious SQLite layout, one
   row per (metric, DOM, minute), for size per hour, write CPU per minute and read-back time.

    nice -n 10 .venv/bin/python bench/bench_history.py [--days 30] [--measure-hours 3]
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from km3mon.config import PipelineConfig
from km3mon.history.history import History
from km3mon.history.store import HistoryStore
from km3mon.published import atomic_write
from km3mon.runtime.freshness import Freshness
from km3mon.runtime.monitor import Context
from km3mon.sim.sim_geometry import synthetic_detx

N_DUS = 230
START = 1_790_000_000 // 86400 * 86400.0  # a whole UTC day


def write_metrics(folder: Path, t: float, rng, ids, optical, dus) -> None:
    """What the monitors publish in one minute at ARCA-230 (realistic sizes)."""
    rates = np.where(optical, rng.normal(240.0, 8.0, len(ids)), np.nan)
    flagged = [
        {"kind": kind, "dom_id": int(d), "du": 1, "floor": 1, "channel": 3,
         "rate_hz": 1e5, "hrv_fraction": 1.0}
        for kind, d in zip(rng.choice(["above", "below", "hrv"], 60),
                           rng.choice(ids[optical], 60), strict=True)
    ]  # fmt: skip
    documents = {
        "dom_rates": {"data_time": t, "dom_id": ids, "rate_khz": rates, "slices": 300},
        "pmt_rates": {"data_time": t, "column_start": t - 20, "flagged": flagged,
                      "median_rate_hz": {str(du): 7000.0 for du in range(1, N_DUS + 1)}},
        "ahrs_calibration": {"data_time": t, "bin_start": t - 60, "dom_id": ids[optical],
                             "yaw_deg": rng.uniform(0, 360, optical.sum()),
                             "pitch_deg": rng.normal(0, 1, optical.sum()),
                             "roll_deg": rng.normal(0, 1, optical.sum())},
        "trigger_rates": {"data_time": t, "latest_start": t - 60, "run": 12000,
                          "run_changes": [], "latest_hz": {"Overall": 460.0, "3DMuon": 300.0,
                                                           "MXShower": 100.0, "3DShower": 60.0}},
        "rttc": {"data_time": t, "dus": {str(du): {"rttc_ps": 4e7 + du, "median_ps": 4e7,
                                                   "spread_ps": 5.0} for du in dus}},
    }  # fmt: skip
    for name, document in documents.items():
        text = json.dumps(
            document, default=lambda a: [None if math.isnan(v) else v for v in a.tolist()]
        )
        atomic_write(folder / "metrics" / f"{name}.json", text.encode())


def make_history(data_dir: Path, detx: Path) -> History:
    args = argparse.Namespace(data_dir=data_dir, plot_dir=data_dir / "plots", det_id=0,
                              detx=str(detx))  # fmt: skip
    freshness = Freshness("history", 0, time.time(), "", [], 60.0, 180.0)
    context = Context(args, freshness, logging.getLogger("bench"), PipelineConfig())
    return History(context)


def yardstick(folder: Path, minutes: np.ndarray, ids: np.ndarray, values: np.ndarray) -> dict:
    """One row per (metric, DOM, minute): the obvious layout, for the same minutes."""
    db = sqlite3.connect(folder / "naive.sqlite3", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE v (metric INT, dom INT, minute INT, value REAL, "
               "PRIMARY KEY (metric, dom, minute)) WITHOUT ROWID")  # fmt: skip
    cpu = []
    for row, minute in enumerate(minutes.tolist()):
        start = time.process_time()
        db.execute("BEGIN")
        rows = zip(ids.tolist(), [minute] * len(ids), values[row].tolist(), strict=True)
        db.executemany("INSERT INTO v VALUES (1, ?, ?, ?)", rows)
        db.execute("COMMIT")
        cpu.append(time.process_time() - start)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    start = time.perf_counter()
    rows = db.execute("SELECT minute, value FROM v WHERE metric = 1 AND dom = ?",
                      (int(ids[100]),)).fetchall()  # fmt: skip
    read_s = time.perf_counter() - start
    size = (folder / "naive.sqlite3").stat().st_size
    db.close()
    return {"cpu_per_minute_s": statistics.mean(cpu), "bytes": size, "read_s": read_s,
            "rows": len(rows)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--measure-hours", type=int, default=3)
    parser.add_argument("--dir", type=Path, help="working folder (default: a temporary one)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory(dir=args.dir) as temporary:
        folder = Path(temporary)
        detx = folder / "arca230.detx"
        detx.write_text(synthetic_detx(N_DUS))
        data = folder / "data"
        history = make_history(data, detx)
        places = history.du_floor
        ids = np.array(sorted(places), np.int64)
        optical = np.array([places[d][1] > 0 for d in ids])
        dus = sorted({du for du, _ in places.values()})
        print(f"ARCA-{N_DUS}: {optical.sum()} optical DOMs, {len(ids)} CLBs")
        rng = np.random.default_rng(1)

        # 1. the real path, minute by minute
        measured = args.measure_hours * 60
        cpu = []
        naive_values = np.zeros((measured, len(ids)))
        for minute in range(measured):
            t = START + minute * 60 + 30
            write_metrics(data, t, rng, ids, optical, dus)
            naive_values[minute] = np.nan_to_num(rng.normal(240.0, 8.0, len(ids)))
            start = time.process_time()
            history.render()
            cpu.append(time.process_time() - start)
        cpu_per_minute = statistics.mean(cpu)
        print(f"sampling through the real path: {measured} minutes, CPU {cpu_per_minute * 1e3:.1f}"
              f" ms per minute (max {max(cpu) * 1e3:.0f} ms, an hour's transposition included)"
              f" = {100 * cpu_per_minute / 60:.3f} % of a core")  # fmt: skip

        # 2. the rest of the month, hour by hour through the transposing code
        store = history.store
        first_hour = int(START // 3600) + args.measure_hours
        last_hour = int(START // 3600) + args.days * 24
        per_dom = [store.metric(n)[0] for n in ("dom_rate_khz", "dom_pmts_out_of_range",
                                                 "dom_pmts_hrv")]  # fmt: skip
        per_du = [store.metric(n)[0] for n in ("du_yaw_deg", "du_pitch_deg", "du_roll_deg",
                                                "du_rttc_ps")]  # fmt: skip
        scalars = [store.metric(n)[0] for n, kind in store.metrics() if kind == "scalar"]
        du_ids = np.array(dus, np.int64)
        optical_ids = ids[optical]
        started = time.perf_counter()
        for hour in range(first_hour, last_hour):
            store.db.execute("BEGIN")
            rates = rng.normal(240.0, 8.0, (len(ids), 60)).astype(np.float32)
            rates[~optical] = np.nan
            store.write_hour(per_dom[0], hour, ids, rates)
            for metric in per_dom[1:]:
                counts = rng.poisson(0.01, (len(optical_ids), 60)).astype(np.float32)
                store.write_hour(metric, hour, optical_ids, counts)
            for metric in per_du:
                store.write_hour(
                    metric, hour, du_ids, rng.normal(0, 1, (len(dus), 60)).astype(np.float32)
                )
            for metric in scalars:
                store.write_hour(
                    metric,
                    hour,
                    np.zeros(1, np.int64),
                    rng.normal(0, 1, (1, 60)).astype(np.float32),
                )
            store.db.execute("COMMIT")
        fill_s = time.perf_counter() - started
        store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        size = (data / "history.sqlite3").stat().st_size
        (coarse_bytes,) = store.db.execute("SELECT sum(length(vals) + 20) FROM coarse").fetchone()
        print(f"filled {last_hour - first_hour} hours in {fill_s:.0f} s; {len(scalars)} scalar, "
              f"{len(per_du)} per-DU, {len(per_dom)} per-DOM metrics")  # fmt: skip
        print(
            f"store after {args.days} days: {size / 1e9:.2f} GB "
            f"({size / args.days / 1e6:.0f} MB per day, 10-minute means included)"
        )
        print(
            f"10-minute means for a year (projected from {args.days} days): "
            f"{coarse_bytes / args.days * 365 / 1e9:.2f} GB"
        )
        history.store.close()

        # 3. one DOM's rate over 30 days, read back
        reader = HistoryStore(data, readonly=True)
        dom = int(optical_ids[1234])
        end = START + args.days * 86400
        times = []
        for _ in range(6):
            start = time.perf_counter()
            series = reader.series("dom_rate_khz", dom, end - 30 * 86400, end)
            times.append(time.perf_counter() - start)
        start = time.perf_counter()
        text = json.dumps({"t": series.times_s.tolist(), "v": np.round(series.values, 3).tolist()})
        json_s = time.perf_counter() - start
        print(f"one DOM over 30 days: {len(series.values)} minutes read in {times[0] * 1e3:.0f} ms"
              f" (first), {statistics.median(times[1:]) * 1e3:.0f} ms (median of 5); JSON "
              f"{len(text) / 1e6:.1f} MB in {json_s * 1e3:.0f} ms")  # fmt: skip
        reader.close()

        # 4. yardstick: one row per (metric, DOM, minute), dom_rate only, same minutes
        naive = yardstick(folder, np.arange(measured), ids, naive_values)
        ours_per_hour = size / (args.days * 24 * (len(per_dom) + len(per_du) / 18))
        print(f"yardstick (row per DOM and minute, dom_rate only, {args.measure_hours} h): "
              f"{naive['bytes'] / args.measure_hours / 1e6:.1f} MB per hour and metric "
              f"(ours ~{ours_per_hour / 1e6:.2f}), write CPU "
              f"{naive['cpu_per_minute_s'] * 1e3:.0f} ms per minute for one metric, one DOM's "
              f"{naive['rows']} minutes read in {naive['read_s'] * 1e3:.1f} ms")  # fmt: skip


if __name__ == "__main__":
    main()
