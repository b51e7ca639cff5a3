"""Helpers of the simulator tests (no tests here): simulated streams, produced in-process
(fast, deterministic) and decoded with km3mon.daq."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

import km3net_testdata
import numpy as np

from km3mon.controlhost import FrameDecoder, Message
from km3mon.daq import decode, decode_monitoring_batch
from km3mon.detector import Detector, read_detx
from km3mon.sim.simulator import Simulator

#: ORCA-6 in DETX v5: 6 DUs with base modules (floor 0, no PMTs) and 108 optical DOMs.
ORCA6_DETX = km3net_testdata.data_path("detx/detx_v5.detx")
#: ARCA-21 as deployed (the demo's detector): real PMT t0s of ~480 µs, spread over µs.
ARCA21_DETX = km3net_testdata.data_path("detx/KM3NeT_00000133_20221025.detx")
START_UTC_S = 1_700_000_000.0


@cache
def orca6() -> Detector:
    return read_detx(ORCA6_DETX)


@cache
def arca21() -> Detector:
    return read_detx(ARCA21_DETX)


@dataclass
class Stream:
    """The decoded output of ``n`` timeslices, by tag, in publishing order."""

    simulator: Simulator
    messages: list[Message]
    log_messages: list[Message]

    def payloads(self, tag: str) -> list[bytes]:
        return [m.payload for m in self.messages if m.tag == tag]

    def decoded(self, tag: str) -> list:
        return [decode(tag, payload) for payload in self.payloads(tag)]

    def packets(self) -> np.ndarray:
        return decode_monitoring_batch(self.payloads("IO_MONIT"))


def simulate(
    n_slices: int,
    scenarios: Sequence[str] = (),
    *,
    seed: int = 7,
    detector: Detector | None = None,
    **options: object,
) -> Stream:
    simulator = Simulator(
        detector or orca6(), seed=seed, scenarios=scenarios, start_utc_s=START_UTC_S, **options
    )
    outputs = [simulator.step() for _ in range(n_slices)]
    data = FrameDecoder().feed(b"".join(o.data for o in outputs))
    log = FrameDecoder().feed(b"".join(o.log for o in outputs))
    return Stream(simulator, data, log)
