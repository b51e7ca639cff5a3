"""What a 230-DU detector costs the suite: N processes each holding it, parsed in each
(as before ``data/detectors``), mapped from one saved copy (now), and, as the peer, read by
km3pipe's ``Detector`` in each.

Each process loads the detector, uses every array once (as monitors do: a sum), frees what
it can (``gc`` and ``malloc_trim``, as the monitors' runtime does every 10 s) and reports its
memory from ``/proc/self/smaps_rollup``; all N then stay alive together while the PSS is
read, so that shared pages are split among them as in the running suite. Reported per
process: RSS, PSS and private memory, above the same interpreter with numpy and nothing
loaded (the floor, measured the same way).

    .venv/bin/python bench/bench_detector_memory.py --processes 17 \\
        --json bench/results/detector_memory_230du.json
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import write_results

CHILD = r"""
import ctypes, gc, sys, time
import numpy as np
mode, detx, share = sys.argv[1:4]
def load():
    if mode == "floor":
        return None
    if mode == "km3pipe":
        import warnings
        warnings.simplefilter("ignore")
        from km3pipe.hardware import Detector
        return Detector(filename=detx)
    from km3mon.detector import load_detector
    return load_detector(None, detx, environ={}, share_in=share if mode == "mapped" else None)
started = time.perf_counter()
detector = load()
seconds = time.perf_counter() - started
if mode in ("parsed", "mapped"):
    total = sum(float(np.asarray(v).sum()) for v in vars(detector).values()
                if isinstance(v, np.ndarray) and v.dtype.kind in "if")
gc.collect()
ctypes.CDLL("libc.so.6").malloc_trim(0)
print(f"ready {seconds:.3f}", flush=True)
sys.stdin.readline()  # held until every sibling has loaded and been measured
"""


def rollup(pid: int) -> dict[str, float]:
    """RSS, PSS and private (clean + dirty) memory of ``pid`` in MB."""
    fields = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, value = line.split(":")[0], line.split()[1]
        fields[name] = int(value) / 1024
    private = fields["Private_Clean"] + fields["Private_Dirty"]
    return {"rss": fields["Rss"], "pss": fields["Pss"], "private": private}


def ready_after(child: subprocess.Popen) -> float:
    """The load time a child reports (km3pipe prints its own lines first)."""
    while not (line := child.stdout.readline()).startswith("ready"):
        if not line:
            raise RuntimeError("a child ended before it was ready")
    return float(line.split()[1])


def run(mode: str, n: int, detx: Path, share: Path) -> dict[str, float]:
    """N processes of ``mode`` alive together: medians per process, and the PSS sum."""
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, mode, str(detx), str(share)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(n)
    ]
    try:
        load_s = [ready_after(child) for child in children]
        time.sleep(0.5)
        memory = [rollup(child.pid) for child in children]
    finally:
        for child in children:
            child.communicate("\n", timeout=60)
    return {
        "processes": n,
        "load_s_median": statistics.median(load_s),
        "rss_mb_median": statistics.median(m["rss"] for m in memory),
        "pss_mb_median": statistics.median(m["pss"] for m in memory),
        "private_mb_median": statistics.median(m["private"] for m in memory),
        "pss_mb_sum": sum(m["pss"] for m in memory),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dus", type=int, default=230)
    parser.add_argument("--processes", type=int, default=17)
    parser.add_argument("--peer-processes", type=int, default=3, help="km3pipe's (slow)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    from km3mon.sim.sim_geometry import synthetic_detx

    with tempfile.TemporaryDirectory() as folder:
        detx = Path(folder) / f"{args.dus}_dus.detx"
        detx.write_text(synthetic_detx(args.dus, t0_seed=1))
        share = Path(folder) / "detectors"
        run("mapped", 1, detx, share)  # the first process of a suite saves it
        results = {}
        for mode, n in (("floor", args.processes), ("parsed", args.processes),
                        ("mapped", args.processes), ("km3pipe", args.peer_processes)):  # fmt: skip
            results[mode] = run(mode, n, detx, share)
        saved_mb = sum(f.stat().st_size for f in share.rglob("*") if f.is_file()) / 1e6
    floor = results["floor"]
    print(f"{args.dus} DUs, saved detector {saved_mb:.1f} MB")
    print(
        "| per process, above the floor | load s | RSS MB | PSS MB | private MB | PSS of all MB |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for mode, row in results.items():
        base = 0.0 if mode == "floor" else 1.0
        rss, pss, private = (
            row[f"{kind}_mb_median"] - base * floor[f"{kind}_mb_median"]
            for kind in ("rss", "pss", "private")
        )
        pss_all = row["pss_mb_sum"] - base * floor["pss_mb_median"] * row["processes"]
        print(f"| {mode} × {row['processes']} | {row['load_s_median']:.3f} | {rss:.1f} | "
              f"{pss:.1f} | {private:.1f} | {pss_all:.1f} |")  # fmt: skip
    write_results(args, {"saved_mb": saved_mb, **results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
