"""``km3mon compile-kernels``: fill numba's on-disk cache once, at install, for every program
that compiles kernels (reco, k40, sn and the simulator).

numba compiles a kernel at its first call in each process until its cache holds it. On a
fresh install the first reco otherwise spends minutes compiling (14 minutes were seen on a
loaded 2-core machine) with its plots stale meanwhile, and every process started before the
cache is written compiles again. Here each of those monitors runs in-process for a few
seconds of a simulated three-DU detector, so every kernel is compiled on the paths the
programs take. The cache sits in ``__pycache__`` beside the sources; a changed source file
is compiled again at its first call, as without this step.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

from km3mon.logs import setup_logging

log = logging.getLogger("km3mon.kernels")

#: Seconds of simulated data: enough events for multi-DU fits, K40 pairs and SN windows.
SIMULATED_S = 3.0
#: k40's default ``--period`` [s]: periods are aligned to its multiples in DAQ time.
K40_PERIOD_S = 600.0


def compile_kernels(simulated_s: float = SIMULATED_S) -> dict[str, float]:
    """Run the simulator and the numba-using monitors in-process; seconds spent per step."""
    from km3mon.config import PipelineConfig
    from km3mon.controlhost import FrameDecoder
    from km3mon.detector import read_detx
    from km3mon.monitors.k40 import K40
    from km3mon.monitors.reco import Reco
    from km3mon.monitors.sn import SN
    from km3mon.runtime.monitor import monitor_in_process
    from km3mon.sim.sim_geometry import synthetic_detx
    from km3mon.sim.simulator import TIMESLICE_S, Simulator

    spent: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="km3mon-kernels-") as name:
        folder = Path(name)
        detx = folder / "three_dus.detx"
        detx.write_text(synthetic_detx(3, t0_seed=1))
        started = time.monotonic()
        # timeslices (k40's IO_TSL1) across the end of one of k40's periods: its fit runs too
        period_end_s = (time.time() // K40_PERIOD_S - 1) * K40_PERIOD_S
        simulator = Simulator(
            read_detx(detx), seed=1, timeslices=True, start_utc_s=period_end_s - simulated_s / 2
        )
        decoder = FrameDecoder()
        n_timeslices = int(simulated_s / TIMESLICE_S)
        batches = [decoder.feed(simulator.step().data) for _ in range(n_timeslices)]
        spent["simulator"] = time.monotonic() - started
        for monitor_class in (Reco, K40, SN):
            started = time.monotonic()
            monitor = monitor_in_process(
                monitor_class, detx, folder / monitor_class.name, PipelineConfig()
            )
            for messages in batches:
                monitor.consume([m for m in messages if m.tag in monitor_class.tags])
            while isinstance(monitor, K40) and monitor.calibrating:
                monitor.poll()
                time.sleep(0.05)
            monitor.render()
            while monitor.render_more():
                pass
            monitor.stop()
            spent[monitor_class.name] = time.monotonic() - started
    return spent


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "compile-kernels",
        help="compile the numba kernels once (make install does), so programs start quickly",
        description=__doc__.split("\n\n")[0],
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    setup_logging(logging.WARNING)  # the monitors' INFO lines say nothing to an installer
    for step, seconds in compile_kernels().items():
        print(f"{step}: kernels ready in {seconds:.1f} s")
    return 0
