"""Hit-time residuals against a true muon, for the simulator and for KM3NeT's own MC.

The residual of a hit is its calibrated time minus the direct Cherenkov time of the true muon
at its PMT (``t = t0 + (l - d / tan θc) / c + d n_g / (c sin θc)``, the simulator's constants),
positive = late; no time-slewing correction on either side (both as the DAQ writes them).
``bench/sim_residuals.py`` compares the two and the tests hold the simulator to the MC.

- KM3NeT MC: :data:`MC_FILE` of km3net-testdata (ORCA-6, ν_μ CC 50-500 GeV, KM3Sim light,
  JTriggerEfficiency hits: scattering, showers, PMT simulation and K40 included). Hit times are
  in the frame; the MC time of a hit is ``t - (mc_t - (frame_index - 1) * 100 ms)``. Only hits
  whose emission point lies on the muon (after the vertex, before its end) are kept, so hits
  upstream of the vertex do not count as early.
- The simulator on a detector (ORCA-6, ``detx_v5.detx``, is the MC's det 49), calibrated with
  the DETX as the monitors do, against its truth (the leading muon).
"""

from __future__ import annotations

import warnings

import km3net_testdata
import numpy as np

from km3mon.controlhost import FrameDecoder
from km3mon.daq import decode_events_hits
from km3mon.detector import Detector, calibrate_hits
from km3mon.sim.sim_events import (
    GROUP_INDEX,
    SIN_CHERENKOV,
    SPEED_OF_LIGHT_M_NS,
    TAN_CHERENKOV,
)
from km3mon.sim.simulator import Simulator

MC_FILE = "offline/mcv6.0.gsg_muon_highE-CC_50-500GeV.km3sim.jterbr00008357.jorcarec.aanet.905.root"
QUANTILES = (5, 16, 50, 84, 95)
FRAME_NS = 100_000_000


def cherenkov_residuals(
    pos_m: np.ndarray, time_ns: np.ndarray, point_m: np.ndarray, direction: np.ndarray, t0_ns: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(residual ns, distance m of the PMT to the track, emission point along the track m)."""
    offset = pos_m - point_m
    along = offset @ direction
    distance = np.sqrt(np.maximum(np.einsum("ij,ij->i", offset, offset) - along**2, 0.0))
    emission = along - distance / TAN_CHERENKOV
    expected = (
        t0_ns
        + emission / SPEED_OF_LIGHT_M_NS
        + distance * GROUP_INDEX / (SIN_CHERENKOV * SPEED_OF_LIGHT_M_NS)
    )
    return time_ns - expected, distance, emission


def kmc_residuals() -> dict[str, np.ndarray]:
    """Residuals of the MC file's hits against its first muon, with triggered flags."""
    import km3io

    warnings.filterwarnings("ignore", module="uproot")
    reader = km3io.OfflineReader(km3net_testdata.data_path(MC_FILE))
    parts: dict[str, list] = {"residual_ns": [], "distance_m": [], "triggered": []}
    for event in reader.events:
        tracks = event.mc_tracks
        muons = np.flatnonzero(np.abs(np.asarray(tracks.pdgid)) == 13)
        if not len(muons):
            continue
        k = int(muons[0])
        point = np.array([tracks.pos_x[k], tracks.pos_y[k], tracks.pos_z[k]], float)
        direction = np.array([tracks.dir_x[k], tracks.dir_y[k], tracks.dir_z[k]], float)
        hits = event.hits
        pos = np.column_stack([np.asarray(hits[f"pos_{a}"], float) for a in "xyz"])
        frame_start_ns = float(event.mc_t) - (int(event.frame_index) - 1) * FRAME_NS
        time_ns = np.asarray(hits.t, float) - frame_start_ns
        residual, distance, emission = cherenkov_residuals(
            pos, time_ns, point, direction, float(tracks.t[k])
        )
        on_track = (emission > 0) & (emission < max(float(tracks.len[k]), 1.0))
        parts["residual_ns"].append(residual[on_track])
        parts["distance_m"].append(distance[on_track])
        parts["triggered"].append(np.asarray(hits.trig)[on_track] > 0)
    return {name: np.concatenate(values) for name, values in parts.items()}


def simulator_residuals(
    detector: Detector, seconds: float, seed: int, *, single_only: bool
) -> dict[str, np.ndarray]:
    """Residuals of the simulator's triggered hits against the leading muon (K40-only events
    left out; with ``single_only`` bundles too, as the MC has one muon)."""
    simulator = Simulator(detector, seed=seed, start_utc_s=1.7e9)
    truth: dict[tuple[int, int], object] = {}
    simulator.on_event = lambda header, counter, event: truth.__setitem__(
        (header.frame_index, counter), event
    )
    data = b"".join(simulator.step().data for _ in range(round(seconds * 10)))
    payloads = [m.payload for m in FrameDecoder().feed(data) if m.tag == "IO_EVT"]
    events, hits = decode_events_hits(payloads)
    hits = calibrate_hits(detector, hits[hits["triggered"]])
    parts: dict[str, list] = {"residual_ns": [], "distance_m": [], "triggered": []}
    for row, key in enumerate(
        zip(events["frame_index"].tolist(), events["trigger_counter"].tolist(), strict=True)
    ):
        event = truth[key]
        if event.kind == "k40" or (single_only and event.n_muons > 1):
            continue
        mine = hits[hits["event"] == row]
        pos = np.column_stack([mine[f"pos_{a}_m"] for a in "xyz"])
        residual, distance, _ = cherenkov_residuals(
            pos, mine["time_ns"], event.track_point_m, event.track_direction, event.track_time_ns
        )
        parts["residual_ns"].append(residual)
        parts["distance_m"].append(distance)
        parts["triggered"].append(np.ones(len(mine), bool))
    return {name: np.concatenate(values) for name, values in parts.items()}


def summary(residual_ns: np.ndarray) -> dict[str, float]:
    quantiles = np.percentile(residual_ns, QUANTILES) if len(residual_ns) else [np.nan] * 5
    return {
        "hits": len(residual_ns),
        **{f"q{q}_ns": float(v) for q, v in zip(QUANTILES, quantiles, strict=True)},
        "late_5ns": float(np.mean(residual_ns > 5)) if len(residual_ns) else np.nan,
        "late_20ns": float(np.mean(residual_ns > 20)) if len(residual_ns) else np.nan,
        "early_5ns": float(np.mean(residual_ns < -5)) if len(residual_ns) else np.nan,
    }
