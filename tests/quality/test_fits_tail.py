"""The multi-DU fits ``km3mon quality`` reads from ``data/reco/fits.csv`` as reco appends them:
only new whole rows, single-DU fits and damaged rows left out, a rotated file read anew."""

from __future__ import annotations

import os
from pathlib import Path

import km3net_testdata
import numpy as np

from km3mon.detector import read_detx
from km3mon.monitors.quality import FitsTail
from km3mon.monitors.reco import FITS_HEADER
from km3mon.quality.accumulate import RunAccumulator

ARCA21 = km3net_testdata.data_path("detx/KM3NeT_00000133_20221025.detx")


def row(run: int, utc: float, kind: str, zenith: float) -> str:
    return f"{run},1,1,{utc},{kind},,{zenith},10,0,0,1,0,0,0,0,1,10,5,2\n"


def test_new_rows_only_and_a_rotated_file_from_its_start(tmp_path: Path) -> None:
    path = tmp_path / "fits.csv"
    path.write_text(FITS_HEADER + "\n" + row(7, 100.0, "multi-du", 30.0)
                    + row(7, 100.5, "single-du", 40.0) + "7,1,1,bad,multi-du,,x\n"
                    + "7,1,1,101.0,multi")  # a torn last row  # fmt: skip
    tail = FitsTail(path)
    runs, times, zenith = tail.read()
    assert runs.tolist() == [7] and times.tolist() == [100.0] and zenith.tolist() == [30.0]
    with path.open("a") as stream:
        stream.write("-du,,50.0,10,0,0,1,0,0,0,0,1,10,5,2\n" + row(8, 102.0, "multi-du", 120.0))
    runs, times, zenith = tail.read()
    assert runs.tolist() == [7, 8] and zenith.tolist() == [50.0, 120.0]
    assert tail.read()[0].tolist() == []
    os.replace(path, tmp_path / "fits_2026-12-05.csv")  # reco rotates at midnight
    path.write_text(FITS_HEADER + "\n" + row(8, 90000.0, "multi-du", 170.0))
    assert tail.read()[2].tolist() == [170.0]


def test_fits_give_the_reco_fraction_and_the_zenith_histogram() -> None:
    accumulator = RunAccumulator(read_detx(ARCA21), 7, 133)
    events = np.zeros(4, [("trigger_mask", "<u8"), ("n_snapshot", "<i4")])
    accumulator.add_events(events, np.full(4, 100.0))
    accumulator.add_fits(np.array([100.0, 100.0]), np.array([5.0, 95.0]))
    assert accumulator.quantities(0.5, 2.0)["reco_fraction"] == 0.5
    assert accumulator.zenith_histogram[[0, 9]].tolist() == [1, 1]
