"""Detector benchmark (issue 4): DETX loading, DOM-id lookup, AHRS fit, hit calibration.

Targets from the issue: loading the 115-DU DETX ≤ 1 s, DOM-id lookup for 100 000 ids ≤ 5 ms,
AHRS fit for 40 000 packets ≤ 50 ms. km3pipe/km3modules, the field's tools, are measured on the
same inputs as the baseline. Timings are medians of repeated runs in this process (warm caches,
numba already compiled); the cold numbers start a fresh interpreter, as a monitor does at start.

    .venv/bin/python bench/bench_detector.py              # about 1 minute
    .venv/bin/python bench/bench_detector.py --markdown /tmp/detector.md
"""

from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
from km3net_testdata import data_path

from km3mon.detector import calibrate_hits, fit_ahrs, read_detx
from km3mon.detector.ahrs import AHRSCalibration, AHRSConstants, CLBRecord

ORCA115 = Path(data_path("detx/orca_115strings_av20min17mhorizontal_18OMs_alt9mvertical_v2.detx"))
LARGEST = Path(data_path("detx/km3net_jul13_90m_r1494_corrected.detx"))


def median_s(call: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def cold_s(code: str, repeat: int = 3) -> float:
    """Wall time of a fresh interpreter running ``code`` (imports included)."""
    return median_s(lambda: subprocess.run([sys.executable, "-c", code], check=True), repeat)


def quiet_km3pipe():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import km3pipe
        from km3modules.ahrs import fit_ahrs as km3modules_fit_ahrs
        from km3pipe.calib import Calibration
    km3pipe.hardware.Detector.cprint = lambda *args, **kwargs: None
    return km3pipe, km3modules_fit_ahrs, Calibration


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markdown", type=Path, help="also write the result table here")
    args = parser.parse_args()
    km3pipe, km3modules_fit_ahrs, Calibration = quiet_km3pipe()
    rows: list[tuple[str, str, str, str]] = []

    def report(what: str, ours_s: float, theirs_s: float | None, target: str) -> None:
        theirs = f"{theirs_s * 1e3:,.1f} ms" if theirs_s is not None else "–"
        rows.append((what, f"{ours_s * 1e3:,.2f} ms", theirs, target))
        print(f"{what:58s} ours {ours_s * 1e3:10.2f} ms   km3pipe {theirs:>12s}   {target}")

    # --- DETX loading ---
    def km3pipe_load(path: Path) -> object:  # DOM positions are part of our loading
        return km3pipe.hardware.Detector(filename=str(path)).dom_positions

    for path in (ORCA115, LARGEST):
        ours = median_s(lambda p=path: read_detx(p), 5)
        theirs = median_s(lambda p=path: km3pipe_load(p), 3)
        mb = path.stat().st_size / 1e6
        report(f"load {path.name[:40]}… ({mb:.1f} MB)", ours, theirs, "≤ 1 s")
    ours_cold = cold_s(f"from km3mon.detector import read_detx; read_detx({str(ORCA115)!r})")
    theirs_cold = cold_s(
        "import km3pipe; km3pipe.hardware.Detector.cprint = lambda *a, **k: None; "
        f"km3pipe.hardware.Detector(filename={str(ORCA115)!r}).dom_positions"
    )
    report("load 115-DU DETX, fresh interpreter incl. imports", ours_cold, theirs_cold, "≤ 1 s")
    oracle = km3pipe.hardware.Detector(filename=str(ORCA115))

    # --- DOM-id lookup ---
    detector = read_detx(ORCA115)
    rng = np.random.default_rng(1)
    ids = rng.choice(detector.dom_ids, 100_000)
    ids[::10] = rng.integers(0, 2**31, 10_000)  # 10 % foreign ids
    ours = median_s(lambda: detector.locate(ids), 50)
    as_dict = median_s(lambda: [oracle.doms.get(i, (-1, -1))[:2] for i in ids.tolist()], 5)
    report("locate 100 000 DOM ids (km3pipe: its `doms` dict per id)", ours, as_dict, "≤ 5 ms")

    # --- AHRS ---
    n_packets, n_doms = 40_000, 2070
    a, h = rng.normal(size=(2, n_packets, 3))
    clbs = [CLBRecord(int(d), 1, 1 + i % 18, f"clb{i}") for i, d in enumerate(detector.dom_ids)]
    constants = {
        clb.dom_id: AHRSConstants(
            0, "v3", "", 1, rng.normal(size=3) * 0.01, np.eye(3), rng.normal(size=3), np.eye(3)
        )
        for clb in clbs
    }
    calibration = AHRSCalibration(clbs=clbs, constants=constants)
    packet_doms = rng.choice(detector.dom_ids[:n_doms], n_packets)
    ours = median_s(lambda: calibration.orientation(packet_doms, a, h), 20)
    c = constants[clbs[0].dom_id]
    sample = 2000
    per_packet = median_s(
        lambda: [
            km3modules_fit_ahrs(a[i], h[i], c.a_offset, c.a_rot, c.h_offset, c.h_rot)
            for i in range(sample)
        ],
        3,
    )
    report(
        "AHRS, 40 000 packets of 2070 DOMs (km3modules: ×20 of 2000)",
        ours,
        per_packet * 20,
        "≤ 50 ms",
    )
    one_set = median_s(lambda: fit_ahrs(a, h, c.a_offset, c.a_rot, c.h_offset, c.h_rot), 20)
    report("fit_ahrs alone, 40 000 packets, one constant set", one_set, None, "–")

    # --- hit calibration ---
    n_hits = 100_000
    hits = np.zeros(n_hits, dtype=[("dom_id", "<i4"), ("channel", "u1"), ("time_ns", "<u4")])
    hits["dom_id"] = rng.choice(detector.dom_ids, n_hits)
    hits["channel"] = rng.integers(0, 31, n_hits)
    hits["time_ns"] = rng.integers(0, 10**8, n_hits)
    ours = median_s(lambda: calibrate_hits(detector, hits), 20)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        calib = Calibration(filename=str(ORCA115))
        from km3pipe.dataclasses import Table
    table = Table(
        {
            "dom_id": hits["dom_id"],
            "channel_id": hits["channel"],
            "time": hits["time_ns"].astype(float),
            "tot": np.zeros(n_hits, "u1"),
        }
    )
    calib.apply(table, correct_slewing=False)  # numba compilation outside the timing
    theirs = median_s(lambda: calib.apply(table, correct_slewing=False), 5)
    report("calibrate 100 000 hits (km3pipe: Calibration.apply, no slewing)", ours, theirs, "–")

    if args.markdown:
        lines = [
            f"Machine: {platform.processor() or platform.machine()}, Python "
            f"{platform.python_version()}, numpy {np.__version__}, km3pipe {km3pipe.__version__}.",
            "",
            "| measurement | km3mon | km3pipe / km3modules | target |",
            "|---|---:|---:|---|",
            *(f"| {w} | {o} | {t} | {g} |" for w, o, t, g in rows),
        ]
        args.markdown.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
