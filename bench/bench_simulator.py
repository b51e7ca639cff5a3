"""Simulator benchmark (issue 5): can `km3mon simulate` feed a 230-DU detector in real time?

Detectors: ORCA-6 (testdata DETX v5, base modules included), 33 DUs (generated), 115 DUs
(testdata ``KM3NeT_-00000001_20171212.detx``, no base modules), 230 DUs (generated, ARCA-like,
base modules included); generated ones by :func:`km3mon.sim.sim_geometry.synthetic_detx`.

Part 1, generation: ``Simulator.step()`` in this process, as fast as it goes (no socket): CPU
time per 100 ms timeslice (median of blocks), hence messages generated per CPU second and
the CPU share needed for real time (CPU per timeslice / 100 ms).

Part 2, real time through a ligier: ``km3mon ligier`` and ``km3mon simulate --speed 1
--duration D`` as processes, one subscriber (this process, ``any`` mode) counting messages per
tag. Reported: the simulator's own CPU share (its closing log line: process CPU / wall time of
the publishing loop), the message rates the subscriber received, and whether the simulator
fell behind its clock.

    .venv/bin/python bench/bench_simulator.py            # about 2 minutes
    .venv/bin/python bench/bench_simulator.py --quick    # smoke test, ~30 s
    .venv/bin/python bench/bench_simulator.py --markdown /tmp/simulator.md
"""

from __future__ import annotations

import argparse
import platform
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import km3net_testdata
import numpy as np

from km3mon.controlhost import Client
from km3mon.detector import Detector, parse_detx, read_detx
from km3mon.sim.sim_geometry import synthetic_detx
from km3mon.sim.simulator import Simulator

KM3MON = [sys.executable, "-m", "km3mon"]
TAGS = ["IO_SUM", "IO_MONIT", "IO_EVT", "MSG"]


@dataclass(frozen=True)
class Geometry:
    label: str
    n_dus: int
    testdata: str | None = None

    def detx_text(self) -> str:
        if self.testdata is not None:
            return Path(km3net_testdata.data_path(f"detx/{self.testdata}")).read_text()
        return synthetic_detx(self.n_dus)


GEOMETRIES = (
    Geometry("ORCA-6 (testdata)", 6, "detx_v5.detx"),
    Geometry("33 DUs (generated)", 33),
    Geometry("115 DUs (testdata)", 115, "KM3NeT_-00000001_20171212.detx"),
    Geometry("230 DUs (generated)", 230),
)


@dataclass
class GenerationResult:
    geometry: Geometry
    n_clbs: int
    cpu_ms_per_slice: float
    messages_per_slice: float
    events_per_slice: float
    bytes_per_slice: float

    @property
    def messages_per_cpu_s(self) -> float:
        return self.messages_per_slice / (self.cpu_ms_per_slice / 1e3)

    @property
    def cpu_share_real_time(self) -> float:
        return self.cpu_ms_per_slice / 100.0


def bench_generation(geometry: Geometry, detector: Detector, blocks: int, per_block: int):
    simulator = Simulator(detector, seed=1)
    for _ in range(5):
        simulator.step()
    cpu_ms, messages, events, size = [], 0, 0, 0
    for _ in range(blocks):
        start = time.process_time()
        outputs = [simulator.step() for _ in range(per_block)]
        cpu_ms.append((time.process_time() - start) / per_block * 1e3)
        messages += sum(o.n_messages for o in outputs)
        events += sum(o.n_events for o in outputs)
        size += sum(len(o.data) + len(o.log) for o in outputs)
    n = blocks * per_block
    return GenerationResult(
        geometry,
        len(detector.dom_ids),
        statistics.median(cpu_ms),
        messages / n,
        events / n,
        size / n,
    )


@dataclass
class RealTimeResult:
    geometry: Geometry
    simulator_cpu_percent: float
    received_per_s: dict[str, float]
    behind: bool


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def bench_real_time(geometry: Geometry, detx_path: Path, duration_s: float) -> RealTimeResult:
    port = free_port()
    ligier = subprocess.Popen(
        [*KM3MON, "ligier", "-P", str(port), "--host", "127.0.0.1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    counts: Counter = Counter()
    stop = threading.Event()
    try:
        client = Client("127.0.0.1", port, name="bench-subscriber")
        client.connect()  # retries until the ligier listens
        client.subscribe(TAGS, mode="any")

        def count() -> None:
            while not stop.is_set():
                for message in client.receive_batch(timeout=0.1):
                    counts[message.tag] += 1

        thread = threading.Thread(target=count, daemon=True)
        thread.start()
        time.sleep(0.3)
        command = [*KM3MON, "simulate", "--detx", str(detx_path), "-p", str(port)]
        command += ["--speed", "1", "--duration", str(duration_s), "--seed", "1"]
        simulate = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=duration_s + 120,
            check=True,
        )
        time.sleep(0.5)
        stop.set()
        thread.join(5)
        client.close()
    finally:
        ligier.terminate()
        ligier.wait(10)
    match = re.search(r"CPU (\d+) %", simulate.stderr)
    if match is None:
        raise RuntimeError(f"no CPU figure in the simulator's log:\n{simulate.stderr}")
    return RealTimeResult(
        geometry,
        float(match[1]),
        {tag: counts[tag] / duration_s for tag in TAGS},
        "behind the simulated clock" in simulate.stderr,
    )


def markdown(generation: list[GenerationResult], real_time: list[RealTimeResult]) -> str:
    lines = [
        "Generation in-process (`Simulator.step()`, no socket), median CPU per 100 ms timeslice:",
        "",
        "| detector | CLBs | messages / timeslice | events / timeslice | MB / timeslice "
        "| CPU ms / timeslice | messages / CPU s | CPU share at real time |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in generation:
        lines.append(
            f"| {r.geometry.label} | {r.n_clbs} | {r.messages_per_slice:,.0f} "
            f"| {r.events_per_slice:.1f} | {r.bytes_per_slice / 1e6:.2f} "
            f"| {r.cpu_ms_per_slice:.1f} | {r.messages_per_cpu_s:,.0f} "
            f"| {100 * r.cpu_share_real_time:.0f} % |"
        )
    if real_time:
        lines += [
            "",
            "Real time through `km3mon ligier` (`km3mon simulate --speed 1`), one subscriber:",
            "",
            "| detector | simulator CPU | IO_MONIT / s | IO_SUM / s | IO_EVT / s | MSG / s "
            "| kept up |",
            "|---|---:|---:|---:|---:|---:|---|",
        ]
        for r in real_time:
            rates = r.received_per_s
            lines.append(
                f"| {r.geometry.label} | {r.simulator_cpu_percent:.0f} % "
                f"| {rates['IO_MONIT']:,.0f} | {rates['IO_SUM']:.1f} | {rates['IO_EVT']:.1f} "
                f"| {rates['MSG']:.1f} | {'no' if r.behind else 'yes'} |"
            )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short runs (smoke test)")
    parser.add_argument("--markdown", type=Path, help="also write the tables to this file")
    parser.add_argument("--no-real-time", action="store_true", help="skip part 2")
    args = parser.parse_args()
    blocks, per_block, duration_s = (3, 10, 3.0) if args.quick else (7, 20, 15.0)

    print(f"python {platform.python_version()}, numpy {np.__version__}, {platform.machine()}")
    generation, real_time = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for geometry in GEOMETRIES:
            detx_path = Path(tmp) / f"{geometry.n_dus}.detx"
            if geometry.testdata is None:
                detx_path.write_text(geometry.detx_text())
                detector = parse_detx(detx_path.read_text())
            else:
                detx_path = Path(km3net_testdata.data_path(f"detx/{geometry.testdata}"))
                detector = read_detx(detx_path)
            result = bench_generation(geometry, detector, blocks, per_block)
            generation.append(result)
            print(
                f"{geometry.label}: {result.cpu_ms_per_slice:.1f} ms CPU per timeslice, "
                f"{result.messages_per_cpu_s:,.0f} messages per CPU s",
                flush=True,
            )
            if not args.no_real_time:
                real_time.append(bench_real_time(geometry, detx_path, duration_s))
                print(f"  real time: {real_time[-1]}", flush=True)
    table = markdown(generation, real_time)
    print(table)
    if args.markdown:
        args.markdown.write_text(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
