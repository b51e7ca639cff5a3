"""The SN threshold: set from a rolling background per active DOM for a target false-alarm
rate, measured on simulated background; and the SN state read back at start."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from km3mon.config import PipelineConfig
from km3mon.monitors.sn import SN, OpenFrame
from km3mon.physics.coincidences import Coincidences
from km3mon.physics.sn import RollingBackground, negative_binomial_sf, poisson_sf
from km3mon.runtime.monitor import monitor_in_process
from tests.conftest import REPO, read_json, wait_until
from tests.sim.test_simulator_support import ARCA21_DETX


def test_negative_binomial_tail_is_poisson_without_extra_variance_and_heavier_with_it() -> None:
    for k, mean in ((3, 8.9), (20, 8.9), (45, 8.9)):
        assert negative_binomial_sf(k, mean, 1.0) == pytest.approx(poisson_sf(k, mean))
    assert negative_binomial_sf(30, 8.9, 2.0) > 100 * poisson_sf(30, 8.9)
    # the tail of a negative binomial drawn at random
    rng = np.random.default_rng(4)
    mean, dispersion = 9.0, 2.0
    draws = rng.negative_binomial(mean / (dispersion - 1), 1 / dispersion, 400_000)
    assert negative_binomial_sf(25, mean, dispersion) == pytest.approx(
        (draws >= 25).mean(), rel=0.05
    )


def test_the_expected_count_follows_the_active_doms() -> None:
    """A lost DU lowers the expected count and the threshold: it is no quiet sky."""
    background = RollingBackground(false_alarms_per_week=1.0)
    rng = np.random.default_rng(5)
    for index in range(1800):  # 3 minutes of windows, 378 DOMs and then 360
        doms = 378 if index < 900 else 360
        background.add(1_700_000_000 + 0.1 * index, int(rng.poisson(doms * 0.025)), doms)
    full, without_du = background.model(378)[0], background.model(360)[0]
    assert full == pytest.approx(378 * 0.025, rel=0.05)
    assert without_du == pytest.approx(full * 360 / 378)
    assert background.model(378)[1] == pytest.approx(1.0, abs=0.1), "Poisson: no extra variance"
    assert background.threshold(360) <= background.threshold(378)
    assert background.threshold(0) is None


def run_bench(*flags: str) -> dict[str, float]:
    output = subprocess.run(
        [sys.executable, str(REPO / "bench" / "sn_false_alarms.py"), *flags],
        capture_output=True, text=True, check=True, timeout=600,
    ).stdout  # fmt: skip
    pairs = (line.split(":") for line in output.splitlines() if ":" in line)
    return {key.strip(): float(value) for key, value in pairs}


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_simulated_background_gives_a_sane_false_alarm_rate() -> None:
    """An hour of the simulator's background, a DU lost halfway, an ``sn-burst`` after it:
    the burst is seen, nothing else alarms (at 1 a week, a false alarm would come in an hour
    with 0.6 % probability), and the threshold followed the DU. On a background as correlated
    as the triggered muons, the old threshold (Poisson tail of the median) alarms many times
    in half an hour, the rolling one does not."""
    simulated = run_bench("--hours", "1", "--lose-du", "--seed", "7", "--burst-at", "0.75")
    assert simulated["alarms_in_burst"] >= 1, simulated
    assert simulated["alarms"] == simulated["alarms_in_burst"], "no false alarm"
    assert simulated["active_doms_end"] == 378 - 18, "one DU of 18 DOMs lost"
    assert simulated["threshold_min"] < simulated["threshold_max"], "it followed the DU"
    assert 1.0 < simulated["dispersion"] < 1.5, "muons light DOMs together"
    correlated = run_bench("--hours", "0.5", "--muons", "triggered", "--seed", "8")
    assert correlated["alarms"] == 0 and correlated["old_alarms"] >= 3, correlated
    assert correlated["dispersion"] > 2


def sn_in_process(folder: Path) -> SN:
    return monitor_in_process(SN, ARCA21_DETX, folder, PipelineConfig())


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_sn_state_is_read_back_at_start(spawn, tmp_path: Path) -> None:
    """Two and a half minutes of background, saved; a new ``km3mon sn`` starts from them: the
    same background, threshold and peaks, before any data came."""
    first = sn_in_process(tmp_path)
    rng = np.random.default_rng(9)
    for index in range(1500):
        count = int(rng.poisson(9))
        multiplicity = np.full(count, 8, np.int64)
        frame = OpenFrame(1_700_000_000 + 0.1 * index, 0.0, active_doms=378)
        frame.coincidences.append(Coincidences(multiplicity, multiplicity, multiplicity,
                                               multiplicity))  # fmt: skip
        first._close((1, index), frame)
    first._save_state()
    state = json.loads((tmp_path / "data" / "sn" / "state.json").read_text())
    assert state["background"]["blocks"], "at least one complete minute"
    expected = (first.background.windows, first.threshold(), first.histogram.sum())

    data = tmp_path / "data"
    # no ligier on port 1: no data comes, what it shows was read back
    process = spawn("sn", "--detx", ARCA21_DETX, "-p", "1", "-o", tmp_path / "plots",
                    "--data-dir", data, "-i", "1")  # fmt: skip
    metrics_path = data / "metrics" / "sn.json"
    wait_until(lambda: "background_windows" in read_json(metrics_path), 120,
               "the first sn metrics", show=lambda: process.log[-2000:])  # fmt: skip
    metrics = read_json(metrics_path)
    assert (metrics["background_windows"], metrics["threshold"], metrics["windows"]) == expected
    assert metrics["active_doms"] == 378
    assert f"read {expected[2]} windows of background" in process.log


def test_a_state_of_before_the_rolling_background_keeps_its_distribution(tmp_path: Path) -> None:
    """A state.json written before issue 22 (no rolling hour) is read: its distribution and
    peaks are kept, the rolling background starts empty."""
    monitor = sn_in_process(tmp_path)
    old_state = {"settings": monitor._settings_key(), "histogram": [0, 5, 300, 20],
                 "peaks": [[1_700_000_000.0, 3]]}  # fmt: skip
    path = tmp_path / "data" / "sn" / "state.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(old_state))
    monitor = sn_in_process(tmp_path)
    assert monitor.histogram.sum() == 325 and list(monitor.peaks) == [(1_700_000_000.0, 3)]
    assert monitor.background.windows == 0 and monitor.threshold() is None
