"""Resident memory of ``km3mon k40`` over its first minutes at 230 DUs, alone with its stream.

A ligier, the simulator (timeslices on, 200 events/s) and k40 on a synthetic 230-DU DETX,
all real processes on loopback; every ``--every`` seconds k40's RSS, its anonymous memory
(``/proc/<pid>/smaps_rollup``) and, from its freshness record, the messages it has taken
and its data lag (a lag of seconds means that much of the 64 MB/s stream is queued in it).
The count bins fill as DOM pairs see coincidences, so memory grows over the first minutes;
the suite benchmark (``bench_startup.py --suite``) samples only once. Calibration periods
end at multiples of ``--period`` in DAQ time (UTC): a short one (``--period 120``) puts the
hand-over to the fit and the fit itself into the run.

    .venv/bin/python bench/k40_memory.py --duration 300
    PYTHONPATH=/path/to/other/src .venv/bin/python bench/k40_memory.py  # another tree
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_monitors import KM3MON, free_port, rss_mb, stop_all, wait_for_port
from benchlib import write_json


def anonymous_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Anonymous:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dus", type=int, default=230)
    parser.add_argument("--duration", type=float, default=300.0, help="seconds of streaming")
    parser.add_argument("--every", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("--period", type=float, help="k40's --period (default: its own, 600 s)")
    parser.add_argument("--json", type=Path, help="write the samples here as JSON too")
    args = parser.parse_args()
    from km3mon.sim.sim_geometry import synthetic_detx

    folder = Path(tempfile.mkdtemp(prefix="km3mon-k40-memory-"))
    detx = folder / f"{args.dus}_dus.detx"
    detx.write_text(synthetic_detx(args.dus, t0_seed=1))
    port = free_port()
    processes: dict[str, subprocess.Popen] = {}

    def start(name: str, *command: object) -> None:
        log = (folder / f"{name}.log").open("wb")
        processes[name] = subprocess.Popen(
            [*KM3MON, *map(str, command)], stdout=log, stderr=subprocess.STDOUT, cwd=folder
        )

    samples = []
    load_before = os.getloadavg()
    try:
        start("ligier", "ligier", "-P", port, "--host", "127.0.0.1")
        wait_for_port(port)
        period = ["--period", args.period] if args.period else []
        start("k40", "k40", "--detx", detx, "-p", port, "-o", folder / "plots",
              "--data-dir", folder / "data", *period)  # fmt: skip
        time.sleep(3)
        start("simulator", "simulate", "--detx", detx, "-p", port, "--seed", 1,
              "--event-rate", 200)  # fmt: skip
        started = time.monotonic()
        record_path = folder / "data" / "freshness" / "k40.json"
        while (elapsed := time.monotonic() - started) < args.duration:
            time.sleep(min(args.every, args.duration - elapsed))
            pid = processes["k40"].pid
            record = json.loads(record_path.read_text()) if record_path.exists() else {}
            sample = {
                "s": round(time.monotonic() - started, 1),
                "rss_mb": rss_mb(pid),
                "anonymous_mb": anonymous_mb(pid),
                "messages": record.get("messages"),
                "dropped": record.get("dropped"),
                "data_lag_s": record.get("data_lag_s"),
                "calibrations": (folder / "k40.log").read_text().count("calibrated "),
            }
            samples.append(sample)
            print(
                f"{sample['s']:6.0f} s  RSS {sample['rss_mb']:6.0f} MB  anonymous "
                f"{sample['anonymous_mb']:6.0f} MB  messages {sample['messages']}  dropped "
                f"{sample['dropped']}  data lag {sample['data_lag_s']} s  calibrations "
                f"{sample['calibrations']}",
                flush=True,
            )
    finally:
        stop_all(processes.values())
        shutil.rmtree(folder, ignore_errors=True)
    peak = max((s["rss_mb"] for s in samples), default=float("nan"))
    print(f"peak RSS {peak:.0f} MB; load average {load_before} -> {os.getloadavg()}")
    if args.json:
        write_json(args.json, {"load_average": load_before, "load_average_after": os.getloadavg(),
                               "dus": args.dus, "samples": samples})  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
