"""Helpers of the reconstruction tests (no tests here): simulated events with their truth,
produced in-process (fast, deterministic), decoded and calibrated as the monitor does."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np

from km3mon.controlhost import FrameDecoder
from km3mon.daq import decode_events_hits
from km3mon.detector import Detector, calibrate_hits, parse_detx
from km3mon.reco.fit import Settings
from km3mon.sim.sim_geometry import synthetic_detx
from km3mon.sim.simulator import Simulator
from tests.sim.test_simulator_support import START_UTC_S, arca21

#: Fit settings for the simulator's events: the production defaults, since its photons reach
#: the PMTs through Jpp's angular acceptance as real light does.
SIMULATOR = Settings()


@cache
def arca230() -> Detector:
    """230 DUs on ARCA's grid, with t0s like a real detector's (~480 µs)."""
    return parse_detx(synthetic_detx(230, t0_seed=1))


@dataclass
class Sample:
    detector: Detector
    events: np.ndarray
    hits: np.ndarray  # calibrated triggered hits
    #: per event row: true direction of travel, point, time
    true_dir: np.ndarray
    true_pos_m: np.ndarray
    true_t_ns: np.ndarray
    simulator: Simulator
    #: per event row: muons in the event (bundles have more than one)
    n_muons: np.ndarray | None = None


def simulate(detector: Detector, n_slices: int, seed: int = 3, **options: object) -> Sample:
    """Muon events only unless asked: the truth of an event triggered by K40 alone has no
    direction to compare a fit with."""
    options.setdefault("noise_event_fraction", 0.0)
    simulator = Simulator(detector, seed=seed, start_utc_s=START_UTC_S, **options)
    truth = {}
    simulator.on_event = lambda header, counter, event: truth.__setitem__(
        (header.frame_index, counter), event
    )
    data = b"".join(simulator.step().data for _ in range(n_slices))
    payloads = [m.payload for m in FrameDecoder().feed(data) if m.tag == "IO_EVT"]
    events, hits = decode_events_hits(payloads)
    keys = zip(events["frame_index"].tolist(), events["trigger_counter"].tolist(), strict=True)
    true = [truth[key] for key in keys]
    return Sample(
        detector,
        events,
        calibrate_hits(detector, hits[hits["triggered"]]),
        np.array([e.track_direction for e in true]),
        np.array([e.track_point_m for e in true]),
        np.array([e.track_time_ns for e in true]),
        simulator,
        np.array([e.n_muons for e in true]),
    )


def arca21_sample(n_slices: int, **options: object) -> Sample:
    return simulate(arca21(), n_slices, **options)
