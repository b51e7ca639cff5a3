"""Hit-time residuals of the simulator against those of KM3NeT's own MC (issue 21, part 3).

Residuals against the true muon (:mod:`km3mon.sim.residuals`): the KM3NeT MC file of
km3net-testdata (ORCA-6, ν_μ CC 50-500 GeV, KM3Sim) and the simulator on the same detector
(testdata ``detx_v5.detx``, det 49), seed 1, both without time-slewing correction. Reported for
triggered hits (and, for the MC, all hits within ±1 µs): quantiles, the fraction late by more
than 5 and 20 ns and early by more than 5 ns, per distance of the PMT to the muon.

    .venv/bin/python bench/sim_residuals.py                # ~20 s
    .venv/bin/python bench/sim_residuals.py --json bench/results/sim_residuals.json
"""

from __future__ import annotations

import argparse
from pathlib import Path

import km3net_testdata
import numpy as np

from benchlib import write_results
from km3mon.detector import read_detx
from km3mon.sim.residuals import QUANTILES, kmc_residuals, simulator_residuals, summary

DETX = "detx/detx_v5.detx"
DISTANCE_BINS_M = ((0, 10), (10, 20), (20, 40), (40, 80), (80, 150))


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
    detector = read_detx(km3net_testdata.data_path(DETX))
    kmc = kmc_residuals()
    single = simulator_residuals(detector, args.seconds, args.seed, single_only=True)
    everything = simulator_residuals(detector, args.seconds, args.seed, single_only=False)
    results = {
        "KM3NeT MC, triggered": describe(kmc, kmc["triggered"]),
        "KM3NeT MC, all within ±1 µs": describe(kmc, np.abs(kmc["residual_ns"]) < 1000),
        "simulator, triggered, single muons": describe(single, single["triggered"]),
        "simulator, triggered, with bundles": describe(everything, everything["triggered"]),
    }
    print(table(results))
    write_results(args, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
