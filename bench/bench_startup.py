"""Start-up and memory of every `km3mon` command and of every running program.

Part 1, every command of ``km3mon --help``: the wall time of ``km3mon <cmd> --help`` (the
fastest and the median of ``--repeat`` runs: start-up is what a supervisord restart and every
test that starts a process pays), its peak resident memory, and which heavy packages it
imported only to print its help.

Part 2 (``--suite DUS``): the suite as ``km3mon demo`` builds it, for a detector of ``DUS``
DUs; after ``--warmup`` seconds every program's resident memory (children included) and which
heavy packages its process has loaded (their compiled extensions in ``/proc/<pid>/maps``:
numba, scipy, matplotlib; pure-Python Starlette is not visible there). Resident memory three
ways: RSS (a shared library's pages count once in every process that maps them, so the sum
overstates what the machine gives the suite), PSS (each shared page split among the processes
that map it: the sum is the suite's share of the machine's memory) and USS (pages of that
process alone: what stopping it would free); and, as a check that needs no accounting, how much
the machine's ``MemAvailable`` fell from before the start. ``--watch S`` then samples every
program's PSS every 15 s for S seconds: the total over a k40 period end (its fit holds two
periods' bins for a while) and its peak.

The interpreter and the ``km3mon`` under test are this one's (set PYTHONPATH to measure
another tree, e.g. the commit before a change):

    .venv/bin/python bench/bench_startup.py --json bench/results/startup.json
    .venv/bin/python bench/bench_startup.py --suite 230 --warmup 90
    .venv/bin/python bench/bench_startup.py --no-help --suite 230 --warmup 90 --watch 900

``--pipeline-extra`` adds lines to the suite's ``pipeline.toml``: ``$'[PMTRates]\ninterval = 1'``
fills pmt_rates' 800 columns (4.4 h at its 20 s) within a 15-minute watch.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import write_json

#: Packages a process should import only when it uses them.
HEAVY = ("numba", "scipy", "matplotlib", "starlette", "km3pipe", "pandas")
#: Their compiled extensions, as they appear in a process's memory map.
MAPPED = {"numba": "/numba/", "scipy": "/scipy/", "matplotlib": "/matplotlib/"}

PROBE = """
import json, sys, time
started = time.perf_counter()
from km3mon.cli import main
try:
    main([sys.argv[1], "--help"])
except SystemExit:
    pass
heavy = sorted(n for n in {heavy!r} if n in sys.modules)
print("\\0" + json.dumps(heavy))
"""


def commands() -> list[str]:
    """Every subcommand the CLI offers (works for the trees before and after the registry)."""
    from km3mon.commands import build_parser

    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    return list(action.choices)


def help_run(command: str) -> tuple[float, float, list[str]]:
    """Wall seconds and peak RSS [MB] of one ``km3mon <command> --help``; heavy imports."""
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-c", PROBE.format(heavy=HEAVY), command],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert process.stdout is not None
    with process.stdout:
        output = process.stdout.read()
    _, status, rusage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    heavy = json.loads(output.rsplit(b"\0", 1)[1]) if b"\0" in output else ["?"]
    return wall, rusage.ru_maxrss / 1024, heavy


def measure_help(repeat: int) -> dict[str, dict]:
    rows = {}
    for command in commands():
        runs = [help_run(command) for _ in range(repeat)]
        walls = [wall for wall, _, _ in runs]
        rows[command] = {
            "help_s_min": min(walls),
            "help_s_median": statistics.median(walls),
            "peak_rss_mb": max(rss for _, rss, _ in runs),
            "heavy_imports": runs[-1][2],
        }
        print(
            f"{command:18} --help {min(walls):5.2f} s (median {statistics.median(walls):5.2f}) "
            f"peak {rows[command]['peak_rss_mb']:6.1f} MB  {' '.join(runs[-1][2])}",
            flush=True,
        )
    return rows


def mapped_packages(pids: list[int]) -> list[str]:
    found = set()
    for pid in pids:
        try:
            maps = Path(f"/proc/{pid}/maps").read_text()
        except OSError:
            continue
        found |= {name for name, marker in MAPPED.items() if marker in maps}
    return sorted(found)


def proportional(pid: int) -> tuple[float, float]:
    """PSS and USS of one process in MB (0, 0 when it is gone)."""
    try:
        rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0.0, 0.0
    kb = {line.split(":")[0]: int(line.split()[1]) for line in rollup.splitlines()[1:]}
    return kb.get("Pss", 0) / 1024, (kb.get("Private_Clean", 0) + kb.get("Private_Dirty", 0)) / 1024


def mem_available_mb() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no MemAvailable in /proc/meminfo")


def program_members(mains: dict[str, int]) -> dict[str, list[int]]:
    """Every program's processes: its own, its children, the monitor it stands in for."""
    from full_suite import program_families

    return dict(sorted(program_families(mains).items()))


def watch_totals(mains: dict[str, int], seconds: float, every_s: float = 15.0) -> dict:
    """PSS of every program every ``every_s`` for ``seconds``: the monitoring machine's
    total over time (k40's period ends and fits, backlogs), its peak and who held what."""
    from full_suite import DAQ_STAND_IN

    samples = []
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        per_program = {
            name: sum(proportional(m)[0] for m in members)
            for name, members in program_members(mains).items()
            if name not in DAQ_STAND_IN
        }
        total = sum(per_program.values())
        samples.append({"t_s": round(time.monotonic() - started, 1), "pss_mb": per_program,
                        "total_pss_mb": total})  # fmt: skip
        print(f"  +{samples[-1]['t_s']:6.0f} s  monitoring machine PSS {total:7.1f} MB  "
              f"(k40 {per_program.get('k40', 0):.0f})", flush=True)  # fmt: skip
        time.sleep(every_s)
    peak = max(samples, key=lambda sample: sample["total_pss_mb"])
    totals = sorted(sample["total_pss_mb"] for sample in samples)
    print(f"monitoring machine PSS over {seconds:.0f} s: median {totals[len(totals) // 2]:.1f}, "
          f"peak {peak['total_pss_mb']:.1f} MB at +{peak['t_s']:.0f} s")  # fmt: skip
    return {"samples": samples, "peak": peak, "median_total_pss_mb": totals[len(totals) // 2]}


def measure_suite(
    dus: int, warmup_s: float, watch_s: float = 0.0, pipeline_extra: str = ""
) -> dict[str, dict]:
    """Resident memory and loaded heavy packages of every program of a running suite."""
    sys.path.insert(0, str(Path(__file__).parent))
    from full_suite import PRODUCTION_PIPELINE, usage
    from km3mon.demo import write_folder
    from km3mon.ops import start, stop
    from km3mon.sim.sim_geometry import synthetic_detx
    from km3mon.supervision import supervisor_states

    folder = Path(tempfile.mkdtemp(prefix=f"km3mon-startup-{dus}du-"))
    detx = folder / f"{dus}_dus.detx"
    detx.write_text(synthetic_detx(dus, t0_seed=1))
    options = argparse.Namespace(detx=detx, replay=None, scenario="", event_rate=200.0)
    environment, _ = write_folder(
        folder, options, PRODUCTION_PIPELINE + pipeline_extra, k40_args=""
    )
    rows: dict[str, dict] = {}
    available_before = mem_available_mb()
    try:
        start(folder, {**os.environ, **environment})
        time.sleep(warmup_s)
        states = supervisor_states(folder / "pids" / "supervisor.sock") or {}
        mains = {name: state["pid"] for name, state in states.items() if state["pid"]}
        for name, members in program_members(mains).items():
            rss = sum(seen[1] for m in members if (seen := usage(m)) is not None)
            pss, uss = (sum(column) for column in zip(*map(proportional, members), strict=True))
            rows[name] = {
                "rss_mb": rss, "pss_mb": pss, "uss_mb": uss, "loaded": mapped_packages(members)
            }  # fmt: skip
            print(
                f"{name:20} RSS {rss:7.1f}  PSS {pss:7.1f}  USS {uss:7.1f} MB  "
                + " ".join(rows[name]["loaded"]),
                flush=True,
            )
        rows["machine"] = {"mem_available_drop_mb": available_before - mem_available_mb()}
        if watch_s > 0:
            rows["watch"] = watch_totals(mains, watch_s)
    finally:
        stop(folder)
        shutil.rmtree(folder, ignore_errors=True)
    from full_suite import DAQ_STAND_IN

    programs = [row for name, row in rows.items() if "rss_mb" in row and name not in DAQ_STAND_IN]
    totals = {k: sum(row[k] for row in programs) for k in ("rss_mb", "pss_mb", "uss_mb")}
    print(
        f"{'monitoring machine':20} RSS {totals['rss_mb']:7.1f}  PSS {totals['pss_mb']:7.1f}  "
        f"USS {totals['uss_mb']:7.1f} MB; MemAvailable fell by "
        f"{rows.get('machine', {}).get('mem_available_drop_mb', float('nan')):.0f} MB"
    )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs of each --help")
    parser.add_argument("--suite", type=int, metavar="DUS", help="also run the suite at DUS DUs")
    parser.add_argument("--warmup", type=float, default=90.0, help="seconds before sampling")
    parser.add_argument(
        "--watch", type=float, default=0.0, help="then the suite's PSS every 15 s for so long [s]"
    )
    parser.add_argument("--no-help", action="store_true", help="skip part 1")
    parser.add_argument(
        "--pipeline-extra", default="", help="lines added to the suite's pipeline.toml"
    )
    parser.add_argument("--json", type=Path, help="write every number here as JSON too")
    args = parser.parse_args()
    result: dict = {"load_average": os.getloadavg(), "cores": os.cpu_count()}
    if not args.no_help:
        result["help"] = measure_help(args.repeat)
    if args.suite:
        result["suite"] = {
            "dus": args.suite,
            "pipeline_extra": args.pipeline_extra,
            "processes": measure_suite(args.suite, args.warmup, args.watch, args.pipeline_extra),
        }
    result["load_average_after"] = os.getloadavg()
    if args.json:
        write_json(args.json, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
