"""Cost of ``km3mon quality`` at ARCA-230 rates, and the size of a year of its records.

Part 1, CPU: the simulator makes ``--seconds`` of a 230-DU stream in-process (IO_SUM, IO_EVT at
its default 470 Hz, IO_TSSN of every DataFilter; IO_MONIT and IO_TSL1 left out: the program
does not subscribe to them), split into ControlHost messages beforehand. Then the real
``Quality`` monitor consumes it in one-second batches, as the runtime hands them over, and
renders (writes its record to SQLite) every 10 s of data; the CPU time of that
(``time.process_time``) per second of data is the cost in cores. Receiving from the socket
is not included (the runtime's receiver thread; see bench_controlhost.py for its cost per
message).

Part 2, storage: ``--runs`` ended runs of the 230-DU detector with 60 minutes each are written
through ``QualityStore.save_run``; the file size per run and per minute gives a year of 6-hour
runs with ``keep_minutes_days`` (90) of minutes.

    .venv/bin/python bench/bench_quality.py                 # 60 s of data, about 5 minutes
    .venv/bin/python bench/bench_quality.py --seconds 20    # quicker
"""

from __future__ import annotations

import argparse
import logging
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # tests.web.sites: the monitors' context, in-process

from tests.web.sites import _context  # noqa: E402

from km3mon.controlhost.prefix import Message  # noqa: E402
from km3mon.daq.files import iter_file  # noqa: E402
from km3mon.detector import read_detx  # noqa: E402
from km3mon.monitors.quality import Quality  # noqa: E402
from km3mon.quality.store import QualityStore  # noqa: E402
from km3mon.sim.sim_geometry import synthetic_detx  # noqa: E402
from km3mon.sim.simulator import Simulator  # noqa: E402

WANTED = ("IO_SUM", "IO_EVT", "IO_TSSN")


def make_stream(detx: Path, seconds: int, folder: Path) -> list[list[Message]]:
    """One batch of messages per second of simulated data."""
    detector = read_detx(detx)
    simulator = Simulator(detector, seed=1, timeslices=True, start_utc_s=time.time() - seconds)
    batches: list[list[Message]] = []
    scratch = folder / "slice.dat"
    for second in range(seconds):
        batch = []
        for _ in range(10):
            scratch.write_bytes(simulator.step().data)
            batch += [Message(m.tag, m.payload) for m in iter_file(scratch) if m.tag in WANTED]
        batches.append(batch)
        print(f"\rsimulated {second + 1}/{seconds} s", end="", file=sys.stderr)
    print(file=sys.stderr)
    return batches


def measure_cpu(detx: Path, batches: list[list[Message]], folder: Path) -> dict[str, float]:
    context = _context(folder, detx, "quality", 10.0)
    monitor = Quality(context)
    consume_s = render_s = 0.0
    for second, batch in enumerate(batches, start=1):
        start = time.process_time()
        monitor.consume(batch)
        consume_s += time.process_time() - start
        if second % 10 == 0:
            start = time.process_time()
            monitor.render()
            render_s += time.process_time() - start
    monitor.stop()
    messages = sum(len(b) for b in batches)
    return {
        "seconds": len(batches),
        "messages_per_s": messages / len(batches),
        "consume_cores": consume_s / len(batches),
        "render_cores": render_s / len(batches),
        "cores": (consume_s + render_s) / len(batches),
    }


def measure_storage(n_doms: int, runs: int, folder: Path) -> dict[str, float]:
    rng = np.random.default_rng(0)
    quantities = {name: float(rng.random()) for name in (
        "livetime_s", "triggerrate", "daq", "whiterabbitstatus", "out_sync", "hrv", "fifo",
        "meanrate", "rmsrate", "pmts_norm", "reco_fraction", "zenith_shape")}  # fmt: skip
    minute = dict(quantities)
    tests = [{"test": name, "status": "pass", "q": 0.5, "text": "x" * 80}
             for name in ("dom_rates", "trigger_rates", "hits_per_event", "zenith")]  # fmt: skip
    state = ({"run": 0, "minutes": {}}, rng.bytes(300_000))
    path = folder / "storage"
    path.mkdir()
    with QualityStore(path) as store:
        for run in range(1, runs + 1):
            start = 1.8e9 + run * 21600
            store.save_run(
                {**quantities, "run": run, "detector": 133, "utc_min": start,
                 "silent_doms": list(range(10)), "hot_doms": list(range(5))},
                state="ended", dom_ids=np.arange(n_doms),
                dom_rate_khz=rng.uniform(150, 300, n_doms),
                histograms={"hits_per_event": list(range(48)), "zenith": list(range(18))},
                minutes={int(start + 60 * m): minute for m in range(60)},
                accumulator=state,
                judgement={"verdict": "good", "reasons": [], "tests": tests,
                           "reference": {"runs": list(range(10)), "source": "medians"}},
            )  # fmt: skip
        store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db = sqlite3.connect(path / "quality.sqlite3")
    db.execute("VACUUM")
    pages = dict(db.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name").fetchall())
    db.close()
    per_run = (pages.get("runs", 0) + pages.get("sqlite_autoindex_runs_1", 0)) / runs
    per_minute = (pages.get("minutes", 0) + pages.get("sqlite_autoindex_minutes_1", 0)) / (
        60 * runs
    )
    accumulators = pages.get("accumulators", 0)
    runs_per_year = 365 * 4  # 6-hour runs
    kept_minutes = 90 * 1440
    return {
        "bytes_per_run": per_run,
        "bytes_per_minute": per_minute,
        "accumulator_bytes": accumulators,
        "year_bytes": runs_per_year * per_run + kept_minutes * per_minute + accumulators,
        "year_bytes_all_minutes": runs_per_year * per_run + 365 * 1440 * per_minute + accumulators,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=60, help="simulated seconds (60)")
    parser.add_argument("--runs", type=int, default=50, help="runs for the storage part (50)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        detx = folder / "arca230.detx"
        detx.write_text(synthetic_detx(230))
        batches = make_stream(detx, args.seconds, folder)
        cpu = measure_cpu(detx, batches, folder)
        storage = measure_storage(len(read_detx(detx).dom_ids), args.runs, folder)
    print(f"ARCA-230, {cpu['seconds']} s of data, {cpu['messages_per_s']:.0f} messages/s "
          f"(IO_SUM, IO_EVT, IO_TSSN)")  # fmt: skip
    print(f"  consume {cpu['consume_cores']:.4f} cores, render (SQLite) "
          f"{cpu['render_cores']:.4f} cores, total {cpu['cores']:.4f} cores")  # fmt: skip
    print(f"  storage: {storage['bytes_per_run'] / 1e3:.1f} kB per run, "
          f"{storage['bytes_per_minute']:.0f} B per minute, counters "
          f"{storage['accumulator_bytes'] / 1e6:.2f} MB")  # fmt: skip
    print(
        f"  a year of 6-hour runs: {storage['year_bytes'] / 1e6:.0f} MB with 90 days of "
        f"minutes, {storage['year_bytes_all_minutes'] / 1e6:.0f} MB keeping every minute"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
