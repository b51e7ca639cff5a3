"""K40 calibration against the simulator's truth: the numbers of BENCHMARKS.md's K40 table.

The scenario of ``tests/physics/test_k40_recovery.py`` (which asserts on it): ARCA-21's
DETX, every PMT's true delay off by N(0, 1.5 ns) clipped at 4 ns, PMTs at 5, 8, 15 and 30 ns and
a 3 ns ``pmt-t0``; ten simulated minutes through the ``k40`` monitor in-process. Prints what it
found against the truth and writes it as JSON.

    .venv/bin/python bench/k40_recovery.py --json bench/results/k40_recovery.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # the test's scenario, so both measure the same thing

from tests.physics.test_k40_recovery import recover  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="write the numbers here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        found = recover(Path(folder))
    t0_error, efficiency_error, relative = found.errors()
    measured = found.measured
    flagged = {pmt for pmt, row in measured.items() if row["flagged"] == "1"}
    numbers = {
        "pmts_compared": len(t0_error),
        "t0_rms_error_ns": float(np.sqrt(np.mean(t0_error**2))),
        "t0_max_error_ns": float(np.abs(t0_error).max()),
        "efficiency_rms_error": float(np.sqrt(np.mean(efficiency_error**2))),
        "efficiency_max_error": float(np.abs(efficiency_error).max()),
        "flagged": len(flagged),
        "truly_beyond_2_5_ns": sum(int(abs(relative[pmt]) > 2.5) for pmt in measured),
        "flagged_truly_within_1_5_ns": sum(int(abs(relative[pmt]) < 1.5) for pmt in flagged),
        "late_pmt_t0_ns": float(measured[found.late_pmt]["t0_ns"]),
        "late_pmt_true_ns": float(relative[found.late_pmt]),
        "large_offsets": {
            f"{offset:g} ns": float(measured[pmt]["t0_ns"]) if pmt in measured else "no peak"
            for pmt, offset in found.large.items()
        },
        "no_peak": [list(map(int, pmt)) for pmt in sorted(found.no_peak)],
        "disabled_not_calibrated": not found.disabled & set(measured),
    }
    for key, value in numbers.items():
        print(f"{key}: {value}")
    if args.json:
        args.json.write_text(json.dumps(numbers, indent=1) + "\n")


if __name__ == "__main__":
    main()
