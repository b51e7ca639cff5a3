"""`km3mon demo` run again in the same folder: the previous run's plots do not count."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from km3mon.demo import OVERVIEW
from tests.conftest import KM3MON


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_rerun_does_not_count_the_previous_runs_plots(short_folder: Path) -> None:
    folder = short_folder / "demo"
    plots = folder / "plots"
    plots.mkdir(parents=True)
    an_hour_ago = time.time() - 3600
    for name in OVERVIEW:
        old = plots / f"{name.replace('*', '1')}.png"
        old.write_bytes(b"\x89PNG old run")
        os.utime(old, (an_hour_ago, an_hour_ago))
    result = subprocess.run(
        [*KM3MON, "demo", "--dir", str(folder), "--duration", "3"],
        capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert "all overview plots are there" not in result.stdout, result.stdout
    assert result.returncode == 1, "3 s are too short for this run's own overview plots"
    assert "overview plots missing" in result.stderr
