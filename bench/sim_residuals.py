"""Hit-time residuals of the simulator against those of KM3NeT's own MC (issue 21, part 3).

The residual of a hit is its calibrated time minus the direct Cherenkov time of the true muon
at its PMT (``t = t0 + (l - d / tan θc) / c + d n_g / (c sin θc)``, the simulator's constants),
positive = late. Both sides as the DAQ writes them: no time-slewing correction.

- KM3NeT MC: ``offline/mcv6.0.gsg_muon_highE-CC_50-500GeV.km3sim.jterbr00008357...root`` of
  km3net-testdata (ORCA-6, ν_μ CC 50-500 GeV, KM3Sim light, JTriggerEfficiency hits: scattering,
  showers, PMT simulation and K40 included). Hit times are in the frame; the MC time of a hit is
  ``t - (mc_t - (frame_index - 1) * 100 ms)``. Only hits whose emission point lies on the muon
  (after the vertex, before the muon's end) are kept, so upstream hits do not count as early.
- The simulator on ORCA-6 (testdata ``detx_v5.detx``, det 49: the MC's detector), seed 1,
  calibrated with the DETX as the monitors do, against its truth (the leading muon).

Reported for triggered hits (and, for the MC, all hits within ±1 µs): quantiles, the fraction
late by more than 5 and 20 ns and early by more than 5 ns, per distance of the PMT to the muon.

    .venv/bin/python bench/sim_residuals.py                # ~1 minute
    .venv/bin/python bench/sim_residuals.py --json bench/results/sim_residuals.json
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import km3net_testdata
import numpy as np

from km3mon.controlhost import FrameDecoder
from km3mon.daq import decode_events_hits
from km3mon.detector import calibrate_hits, read_detx
from km3mon.sim.sim_events import (
    GROUP_INDEX,
    SIN_CHERENKOV,
    SPEED_OF_LIGHT_M_NS,
    TAN_CHERENKOV,
)
from km3mon.sim.simulator import Simulator

MC_FILE = "offline/mcv6.0.gsg_muon_highE-CC_50-500GeV.km3sim.jterbr00008357.jorcarec.aanet.905.root"
DETX = "detx/detx_v5.detx"
DISTANCE_BINS_M = ((0, 10), (10, 20), (20, 40), (40, 80), (80, 150))
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


def simulator_residuals(seconds: float, seed: int, single_only: bool) -> dict[str, np.ndarray]:
    """Residuals of the simulator's triggered hits against the leading muon (K40-only events
    left out; with ``single_only`` bundles too, as the MC has one muon)."""
    detector = read_detx(km3net_testdata.data_path(DETX))
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


def describe(data: dict[str, np.ndarray], selection: np.ndarray) -> dict:
    rows = {"all": summary(data["residual_ns"][selection])}
    for low, high in DISTANCE_BINS_M:
        near = selection & (data["distance_m"] >= low) & (data["distance_m"] < high)
        rows[f"{low}-{high} m"] = summary(data["residual_ns"][near])
    return rows


def table(results: dict[str, dict]) -> str:
    lines = [
        "| hits | distance | hits | 5 % | 16 % | median | 84 % | 95 % | > 5 ns late "
        "| > 20 ns late | > 5 ns early |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, rows in results.items():
        for distance, row in rows.items():
            if not row["hits"]:
                continue
            quantiles = " | ".join(f"{row[f'q{q}_ns']:.1f}" for q in QUANTILES)
            lines.append(
                f"| {name} | {distance} | {row['hits']} | {quantiles} | "
                f"{100 * row['late_5ns']:.0f} % | {100 * row['late_20ns']:.0f} % | "
                f"{100 * row['early_5ns']:.0f} % |"
            )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="simulated seconds")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, help="write the numbers here as JSON too")
    args = parser.parse_args()
    kmc = kmc_residuals()
    single = simulator_residuals(args.seconds, args.seed, single_only=True)
    everything = simulator_residuals(args.seconds, args.seed, single_only=False)
    results = {
        "KM3NeT MC, triggered": describe(kmc, kmc["triggered"]),
        "KM3NeT MC, all within ±1 µs": describe(kmc, np.abs(kmc["residual_ns"]) < 1000),
        "simulator, triggered, single muons": describe(single, single["triggered"]),
        "simulator, triggered, with bundles": describe(everything, everything["triggered"]),
    }
    print(table(results))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"args": vars(args) | {"json": str(args.json)},
                                         "results": results}, indent=1))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
