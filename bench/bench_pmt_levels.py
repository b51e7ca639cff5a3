"""pmt_rates' stored history at 230 DUs: levels kept compressed per DU against one plain array.

Both sides are the real ``PMTRates`` monitor of a 230-DU detector with 800 columns of 20 s
(4.4 h), filled with the same rates: per PMT a rate of its own (7 kHz, spread 0.7 kHz) plus
``--noise-hz`` per column, and the high-rate veto on in ``--hrv`` of the intervals. The plain
side stores every level in a (PMTs, columns) array, as pmt_rates did before; ours keeps the
block being written as it is and the others zlib-compressed per DU (``LevelColumns``).
Reported: the bytes stored per kind, the CPU of closing the 800 columns and of one render tick
(460 images), and a check that both sides give every DU the same levels to draw (the PNGs
themselves differ by their time stamps).

    .venv/bin/python bench/bench_pmt_levels.py --json bench/results/pmt_levels.json
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import tempfile
import time
from pathlib import Path

import numpy as np

from benchlib import write_results
from km3mon.config import load_pipeline
from km3mon.monitors.pmt_rates import PMTRates
from km3mon.runtime.freshness import Freshness
from km3mon.runtime.monitor import Context
from km3mon.runtime.pmt_image import MISSING, LevelColumns
from km3mon.sim.sim_geometry import synthetic_detx

COLUMNS, INTERVAL_S = 800, 20.0


class PlainColumns(LevelColumns):
    """The levels in one (PMTs, columns) array: what pmt_rates stored before."""

    def __init__(self, rows_by_du: dict[int, np.ndarray], n_rows: int, n_columns: int) -> None:
        self.rows_by_du = rows_by_du
        self.levels = np.full((n_rows, n_columns), MISSING, np.uint8)

    def write(self, position: int, levels: np.ndarray) -> None:
        self.levels[:, position] = levels

    def of_du(self, du: int) -> np.ndarray:
        rows = self.rows_by_du[du]
        return np.vstack([self.levels[rows], np.full((1, self.levels.shape[1]), MISSING, np.uint8)])

    def stored_bytes(self) -> int:
        return self.levels.nbytes


def stored_bytes(levels: LevelColumns) -> int:
    if isinstance(levels, PlainColumns):
        return levels.stored_bytes()
    packed = sum(len(data) for block in levels.packed for data in block.values())
    return packed + levels.open.nbytes


def run(folder: Path, detx: Path, plain: bool, noise_hz: float, hrv: float) -> dict:
    args = argparse.Namespace(det_id=0, detx=detx, du=None, columns=COLUMNS,
                              plot_dir=folder / "plots", data_dir=folder)  # fmt: skip
    freshness = Freshness(process="pmt_rates", pid=0, started_at=time.time(), ligier="-",
                          tags=[], render_interval_s=INTERVAL_S, stale_after_s=60.0)  # fmt: skip
    monitor = PMTRates(Context(args, freshness, logging.getLogger("bench"), load_pipeline(None)))
    if plain:
        for image in monitor.images:
            image.levels = PlainColumns(image.levels.rows_by_du, monitor.rate_sum.size, COLUMNS)
    rng = np.random.default_rng(1)
    own_rate = rng.normal(7000.0, 700.0, monitor.rate_sum.shape)
    first = int(time.time() // INTERVAL_S) - COLUMNS
    started = time.process_time()
    for column in range(COLUMNS):
        monitor.ring.advance_to(first + column)
        monitor.rate_sum[:] = own_rate + rng.normal(0.0, noise_hz, own_rate.shape)
        monitor.hrv_sum[:] = rng.random(own_rate.shape) < hrv
        monitor.packets[:] = 1
    monitor.ring.advance_to(first + COLUMNS)
    closing_s = time.process_time() - started
    digest = hashlib.sha256()  # before drawing: a tick may close a column of its own
    for image in monitor.images:
        for du in monitor.dus:
            digest.update(image.levels.of_du(du).tobytes())
    freshness.newest_data_at = freshness.last_message_at = time.time()
    ticks = []
    for _ in range(3):
        started = time.process_time()
        monitor.render()
        while monitor.render_more():
            pass
        ticks.append(time.process_time() - started)
    plots = sorted((folder / "plots").glob("pmt_*_du*.png"))
    return {
        "stored_mb_per_kind": [stored_bytes(image.levels) / 1e6 for image in monitor.images],
        "closing_800_columns_cpu_s": closing_s,
        "render_tick_cpu_s": min(ticks[1:]),  # the first tick also draws the frames
        "images": len(plots),
        "levels_sha256": digest.hexdigest(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dus", type=int, default=230)
    parser.add_argument("--noise-hz", type=float, default=100.0, help="rate noise per column")
    parser.add_argument("--hrv", type=float, default=0.01, help="share of vetoed intervals")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory(prefix="km3mon-bench-") as name:
        detx = Path(name) / f"{args.dus}_dus.detx"
        detx.write_text(synthetic_detx(args.dus))
        for side, plain in (("plain array (before)", True), ("compressed per DU (ours)", False)):
            folder = Path(name) / ("plain" if plain else "ours")
            results[side] = run(folder, detx, plain, args.noise_hz, args.hrv)
            row = results[side]
            print(f"{side:26} stored per kind (rates, HRV) "
                  f"{row['stored_mb_per_kind'][0]:6.1f} / {row['stored_mb_per_kind'][1]:6.1f} MB"
                  f"  closing 800 columns {row['closing_800_columns_cpu_s']:5.2f} CPU-s"
                  f"  render tick {row['render_tick_cpu_s']:5.2f} CPU-s ({row['images']} images)",
                  flush=True)  # fmt: skip
    same = len({row["levels_sha256"] for row in results.values()}) == 1
    print(f"same levels of every DU on both sides: {same}")
    write_results(args, results | {"same_levels": same})
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
