"""Monitors at full detector rate: simulator → ligier → monitors, all real processes on
loopback, in real time. ``--set optical``: dom_activity, dom_rates, pmt_rates (rates and HRV),
ahrs_calibration; ``--set events``: trigger_rates, triggermap, ztplot (``--event-rate 500``);
``--set timeslices``: k40 (the whole IO_TSL1 stream), sn, timesync; ``--set reco``.

Reports per process its CPU share, messages in, drops (its own and the ligier's for it),
decode errors and render times; and, as the peer, what the original design would cost:
one pmt_rates process per DU, each decoding the whole IO_MONIT stream with km3pipe's
``TMCHData``.

    .venv/bin/python bench/bench_monitors.py --dus 230 --duration 60
    .venv/bin/python bench/bench_monitors.py --dus 230 --set events --event-rate 500
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

KM3MON = [sys.executable, "-m", "km3mon"]
#: Monitor sets and their production render intervals.
SETS = {
    "optical": {
        "dom_activity": ["-i", "30"],
        "dom_rates": ["-i", "30"],
        "pmt_rates": ["-i", "20"],  # the rate and the HRV images
        "ahrs_calibration": ["-i", "60"],
    },
    "events": {"trigger_rates": ["-i", "60"], "triggermap": ["-i", "50"], "ztplot": []},
    # the simulator publishes IO_TSL1 and IO_TSSN by default; k40 at its production period
    "timeslices": {"k40": [], "sn": [], "timesync": []},
    "reco": {"reco": []},
}
TICKS = os.sysconf("SC_CLK_TCK")


def stop_all(processes) -> None:
    """SIGTERM to every process, then wait for each (killed after 10 s)."""
    for process in processes:
        process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def wait_for_port(port: int) -> None:
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing on port {port}")


def ligier_drops(port: int) -> dict[str, int]:
    from km3mon.controlhost import query_status

    drops = {}
    for line in query_status("127.0.0.1", port).splitlines():
        if "client #" in line and "'" in line:
            name = line.split("'")[1]
            drops[name] = int(line.split("dropped ")[1].split(",")[0])
    return drops


def km3pipe_us_per_packet(n: int = 20000) -> float:
    """The original's decoder: km3pipe TMCHData on one real IO_MONIT packet, n times."""
    import io

    import km3net_testdata
    from km3pipe.io.daq import TMCHData

    from km3mon.daq.files import iter_file

    payload = next(iter_file(km3net_testdata.data_path("daq/IO_MONIT.dat"))).payload
    start = time.perf_counter()
    for _ in range(n):
        TMCHData(io.BytesIO(payload))
    return (time.perf_counter() - start) / n * 1e6


def run(
    dus: int, duration_s: float, warmup_s: float, monitors: dict, event_rate: float | None
) -> dict:
    from km3mon.sim.sim_geometry import synthetic_detx

    folder = Path(tempfile.mkdtemp(prefix="km3mon-bench-"))
    detx = folder / f"{dus}_dus.detx"
    detx.write_text(synthetic_detx(dus))
    port = free_port()
    processes: dict[str, subprocess.Popen] = {}
    logs = folder / "logs"
    logs.mkdir()

    def start(name: str, *args: object) -> None:
        log = (logs / f"{name}.log").open("wb")
        processes[name] = subprocess.Popen(
            [*KM3MON, *map(str, args)], stdout=log, stderr=subprocess.STDOUT, cwd=folder
        )

    try:
        start("ligier", "ligier", "-P", port, "--host", "127.0.0.1")
        wait_for_port(port)
        for name, extra in monitors.items():
            start(name, name, "--detx", detx, "-p", port, "-o", folder / "plots",
                  "--data-dir", folder / "data", *extra)  # fmt: skip
        time.sleep(3)
        rate = ["--event-rate", event_rate] if event_rate else []
        start("simulator", "simulate", "--detx", detx, "-p", port, "--seed", 1, *rate)
        time.sleep(warmup_s)
        before = {name: cpu_seconds(p.pid) for name, p in processes.items()}
        t0 = time.monotonic()
        time.sleep(duration_s)
        elapsed = time.monotonic() - t0
        after = {name: cpu_seconds(p.pid) for name, p in processes.items()}
        memory = {name: rss_mb(p.pid) for name, p in processes.items()}
        dropped_by_ligier = ligier_drops(port)
        rows = {}
        for name in processes:
            row = {"cpu": (after[name] - before[name]) / elapsed, "rss_mb": memory[name]}
            record_path = folder / "data" / "freshness" / f"{name}.json"
            if record_path.exists():
                record = json.loads(record_path.read_text())
                renders = [o["render_s"] for o in record["outputs"].values()]
                row |= {
                    "messages": record["messages"],
                    "rate_hz": record["message_rate_hz"],
                    "dropped": record["dropped"] + dropped_by_ligier.get(name, 0),
                    "errors": record["decode_errors"] + record["unknown_doms"],
                    "outputs": len(renders),
                    "render_median_s": statistics.median(renders) if renders else None,
                    "render_max_s": max(renders) if renders else None,
                    "lag_s": time.time() - (record["last_message_at"] or 0),
                }
            rows[name] = row
        return {"dus": dus, "duration_s": elapsed, "rows": rows, "folder": str(folder)}
    finally:
        stop_all(processes.values())


def report(result: dict, km3pipe_us: float) -> str:
    dus = result["dus"]
    packets_per_s = dus * 19 * 10
    lines = [
        f"Simulated {dus}-DU detector in real time ({packets_per_s} IO_MONIT/s, 10 IO_SUM/s of "
        f"{dus * 18} frames, events), {result['duration_s']:.0f} s measured after warm-up.",
        "",
        "| process | CPU (cores) | RSS MB | messages | msg/s | dropped | errors | plots | "
        "render median / max [s] |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name, row in result["rows"].items():
        render = (
            f"{row['render_median_s']:.2f} / {row['render_max_s']:.2f}"
            if row.get("render_median_s") is not None
            else "-"
        )
        lines.append(
            f"| {name} | {row['cpu']:.2f} | {row['rss_mb']:.0f} | {row.get('messages', '-')} | "
            f"{row.get('rate_hz', '-')} | {row.get('dropped', '-')} | {row.get('errors', '-')} | "
            f"{row.get('outputs', '-')} | {render} |"
        )
    if "pmt_rates" not in result["rows"]:
        return "\n".join(lines)
    ours = result["rows"]["pmt_rates"]["cpu"]
    original = km3pipe_us * 1e-6 * packets_per_s * dus
    lines += [
        "",
        f"Peer, a model (not run): km3pipe `TMCHData` decodes one packet in "
        f"{km3pipe_us:.1f} µs (measured in this run), so one original pmt_rates process (one "
        f"DU, decoding the whole stream) would need {km3pipe_us * 1e-6 * packets_per_s:.2f} "
        f"cores for decoding alone, and {dus} of them {original:.0f} cores; our single "
        f"pmt_rates for all {dus} DUs used {ours:.2f} cores (measured).",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dus", type=int, default=230)
    parser.add_argument("--duration", type=float, default=60.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=30.0, help="seconds before measuring")
    parser.add_argument("--set", choices=SETS, default="optical", help="which monitors")
    parser.add_argument("--event-rate", type=float, help="simulated trigger rate in Hz")
    args = parser.parse_args()
    km3pipe_us = km3pipe_us_per_packet()
    result = run(args.dus, args.duration, args.warmup, SETS[args.set], args.event_rate)
    print(report(result, km3pipe_us))
    print(f"\n(plots and logs in {result['folder']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
