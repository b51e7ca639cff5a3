"""``km3mon compile-kernels`` (run by ``make install``) leaves every kernel the numba-using
programs call in numba's cache: a later process compiles nothing."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

#: In a fresh process: the same in-process run, then numba's cache statistics of every
#: dispatcher in km3mon's modules.
CHECK = """
import json, sys
from numba.core.registry import CPUDispatcher
from km3mon.kernels import compile_kernels
compile_kernels()
hit, missed = [], []
for name, module in list(sys.modules.items()):
    if not name.startswith("km3mon."):
        continue
    for attribute, value in vars(module).items():
        if isinstance(value, CPUDispatcher):
            if sum(value.stats.cache_hits.values()):
                hit.append(name)
            if sum(value.stats.cache_misses.values()):
                missed.append(f"{name}.{attribute}")
print(json.dumps({"hit": sorted(set(hit)), "missed": sorted(set(missed))}))
"""


@pytest.mark.timeout(1800)  # a cold cache on a loaded machine: minutes of compiling
def test_after_compile_kernels_a_new_process_compiles_nothing() -> None:
    first = subprocess.run(
        [sys.executable, "-m", "km3mon", "compile-kernels"], capture_output=True, text=True
    )
    assert first.returncode == 0, first.stderr
    for step in ("simulator", "reco", "k40", "sn"):
        assert f"{step}: kernels ready in " in first.stdout, first.stdout
    second = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True)
    assert second.returncode == 0, second.stderr
    stats = json.loads(second.stdout.strip().splitlines()[-1])
    assert not stats["missed"], f"compiled again: {stats['missed']}"
    # every module with kernels was run: reco's fits, K40 counting and fit, SN, the simulator
    assert set(stats["hit"]) >= {"km3mon.reco.kernels", "km3mon.physics.twofolds",
                                 "km3mon.physics.k40_fit", "km3mon.physics.coincidences",
                                 "km3mon.sim.sim_timeslices"}, stats  # fmt: skip
