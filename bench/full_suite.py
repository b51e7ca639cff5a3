"""The complete km3mon suite, in its production configuration, follows a simulated detector
in real time: what each process costs, and whether everything keeps up.

Per detector size it builds a working folder as ``km3mon demo`` does (setenv.sh, the
operator's supervisord template plus the shore-station stand-in) but with a production
pipeline.toml (every monitor at its default interval) and a simulator without faults,
starts it under supervisord as ``make start`` does, warms up, then samples every program
(children included) from /proc and every freshness record. Per process: CPU, memory and its
growth, messages, drops (its own and what the ligiers dropped for it), errors, data lag,
render times, plot ages against their cadence and the latency from publish to plot. The
simulator, DAQ and log ligiers and Detector Manager stand in for the shore station, which
is not the monitoring machine in production, so they are reported apart.

    .venv/bin/python bench/full_suite.py --dus 6 33 --duration 60
    .venv/bin/python bench/full_suite.py --json bench/results/full_suite.json  # 6-230 DUs
    .venv/bin/python bench/full_suite.py --dus 230 --event-rate 500 --keep
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchlib import write_results
from km3mon.controlhost import query_status
from km3mon.demo import write_folder
from km3mon.ops import start, stop, supervisord_pid
from km3mon.runtime.freshness import read_records
from km3mon.sim.sim_geometry import synthetic_detx
from km3mon.supervision import supervisor_states

#: On the shore station in production, not on the monitoring machine.
DAQ_STAND_IN = ("daq_ligier", "log_ligier", "simulator", "detector_manager")
#: Processes with a freshness record but, by design, no plots.
NO_PLOTS = ("ligiermirror", "msg_dumper", "alerts", "history", "quality")
LIGIERS = {
    "daq_ligier": "DAQ_LIGIER_PORT",
    "log_ligier": "LOG_LIGIER_PORT",
    "monitoring_ligier": "MONITORING_LIGIER_PORT",
}
#: A plot is fresh while its age is at most its cadence plus this.
GRACE_S = 10.0
SUITE_CORES = 2.0
TICKS = os.sysconf("SC_CLK_TCK")
PRODUCTION_PIPELINE = """# km3mon full-suite benchmark: production settings (monitor defaults).
[WebServer]
username = "bench"
password = "{password}"
"""


@dataclass
class Sample:
    """One look at every program: CPU seconds per pid, RSS, main pid, freshness records."""

    at: float
    in_window: bool
    cpu_s: dict[str, dict[int, float]] = field(default_factory=dict)
    rss_mb: dict[str, float] = field(default_factory=dict)
    main_pid: dict[str, int] = field(default_factory=dict)
    states: dict[str, str] = field(default_factory=dict)
    records: dict[str, dict[str, Any]] = field(default_factory=dict)


def parents() -> dict[int, int]:
    """Parent pid of every process, to find the children of a program."""
    table = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                table[int(entry.name)] = int(
                    (entry / "stat").read_text().rsplit(")", 1)[1].split()[1]
                )
            except (OSError, IndexError, ValueError):
                continue  # ended meanwhile
    return table


def family(pid: int, table: dict[int, int], others: set[int]) -> list[int]:
    """``pid`` and its descendants, except the ``others`` (supervisord's own programs)."""
    members = [pid]
    for member in members:  # grows while we walk it: breadth first
        members += [c for c, parent in table.items() if parent == member and c not in others]
    return members


def program_families(mains: dict[str, int]) -> dict[str, list[int]]:
    """Every program's processes: its own and its descendants, and the monitor its process
    stands in for when it runs as a fork of the fork server (a child of the server, counted
    with its program, not with the server)."""
    from km3mon.runtime.forkserver import served_pid

    table = parents()
    served = {name: served_pid(pid) for name, pid in mains.items()}
    roots = set(mains.values()) | {pid for pid in served.values() if pid}
    families = {}
    for name, pid in mains.items():
        families[name] = family(pid, table, roots - {pid})
        if (fork := served[name]) is not None:
            families[name] += family(fork, table, roots - {fork})
    return families


def usage(pid: int) -> tuple[float, float] | None:
    """CPU seconds (user + system) and RSS in MB, or None when the process is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    rss_kb = next(
        (int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0
    )
    return (int(fields[11]) + int(fields[12])) / TICKS, rss_kb / 1024


def take_sample(folder: Path, in_window: bool) -> Sample:
    sample = Sample(time.time(), in_window)
    states = supervisor_states(folder / "pids" / "supervisor.sock") or {}
    sample.states = {name: state["state"] for name, state in states.items()}
    mains = {name: state["pid"] for name, state in states.items() if state["pid"]}
    if pid := supervisord_pid(folder):
        mains = {"supervisord": pid, **mains}
    families = program_families(mains)
    for name, pid in mains.items():
        sample.main_pid[name] = pid
        sample.cpu_s[name], sample.rss_mb[name] = {}, 0.0
        for member in families[name]:
            if (seen := usage(member)) is not None:
                sample.cpu_s[name][member] = seen[0]
                sample.rss_mb[name] += seen[1]
    sample.records = read_records(folder / "data")
    return sample


def follow(folder: Path, warmup_s: float, duration_s: float, every_s: float) -> list[Sample]:
    """Samples every ``every_s`` through warm-up (for restarts) and the measured window."""
    offsets = [(k * every_s, False) for k in range(math.ceil(warmup_s / every_s))]
    steps = math.ceil(duration_s / every_s)
    offsets += [(warmup_s + min(k * every_s, duration_s), True) for k in range(steps + 1)]
    started = time.monotonic()
    samples = []
    for offset, in_window in offsets:
        time.sleep(max(0.0, started + offset - time.monotonic()))
        samples.append(take_sample(folder, in_window))
    return samples


def ligier_drops(ports: dict[str, int]) -> tuple[dict[str, int], dict[str, int]]:
    """Messages the ligiers dropped: per active client name (``unnamed`` without one), and
    per ligier over its tags, which also counts clients gone meanwhile (a restart)."""
    clients: dict[str, int] = {}
    ligiers = dict.fromkeys(ports, 0)
    for ligier, port in ports.items():
        for line in query_status("127.0.0.1", port).splitlines():
            if "dropped " not in line:
                continue
            count = int(line.split("dropped ")[1].split(",")[0])
            if "client #" in line:
                name = line.split("'")[1] if "'" in line else "unnamed"
                clients[name] = clients.get(name, 0) + count
            else:
                ligiers[ligier] += count
    return clients, ligiers


def log_errors(path: Path) -> list[str]:
    """The ERROR lines and tracebacks of a log, each with the 12 lines after it (what a
    report must show: the folder with the log is removed after a test)."""
    if not path.exists():
        return []
    lines = path.read_text(errors="replace").splitlines()
    found = [i for i, line in enumerate(lines) if " ERROR " in line or line.startswith("Traceback")]
    return ["\n".join(lines[i : i + 13]) for i in found]


def cadence_s(record: dict[str, Any]) -> float:
    """Seconds between two redraws of an output, as the process publishes it."""
    return max(record["render_interval_s"], record.get("redraw_interval_s", 0.0))


def summarise(name: str, samples: list[Sample], drops: dict[str, int], logs: Path) -> dict:
    """One row: CPU and memory over the window, the freshness record's numbers at its end."""
    window = [s for s in samples if s.in_window and name in s.cpu_s]
    row = resources(name, samples, window) | {
        "part": "daq" if name in DAQ_STAND_IN else "suite",
        "log_errors": log_errors(logs / f"{name}.log"),
        "dropped": drops.get(name),
    }
    if name in window[-1].records:
        row |= freshness(name, window, drops.get(name, 0))
    return row


def resources(name: str, samples: list[Sample], window: list[Sample]) -> dict[str, Any]:
    """CPU share, memory and its growth over the window; restarts over the whole run."""
    first, last = window[0], window[-1]
    elapsed = last.at - first.at
    cpu = 0.0
    for pid in {pid for s in window for pid in s.cpu_s[name]}:
        seen = [s.cpu_s[name][pid] for s in window if pid in s.cpu_s[name]]
        cpu += seen[-1] - (seen[0] if pid in first.cpu_s[name] else 0.0)
    times, rss = [s.at - first.at for s in window], [s.rss_mb[name] for s in window]
    return {
        "cpu_cores": cpu / elapsed,
        "rss_start_mb": rss[0],
        "rss_end_mb": rss[-1],
        "rss_max_mb": max(rss),
        "rss_slope_mb_per_h": statistics.linear_regression(times, rss).slope * 3600,
        "restarts": len({s.main_pid[name] for s in samples if name in s.main_pid}) - 1,
    }


def freshness(name: str, window: list[Sample], ligier_dropped: int) -> dict[str, Any]:
    """The freshness records' numbers: messages in the window, drops, renders, plot ages."""
    first, last = window[0], window[-1]
    elapsed = last.at - first.at
    record = last.records[name]
    before = first.records.get(name, {}).get("messages", 0)
    messages = record["messages"] - before if record["messages"] >= before else record["messages"]
    renders = {}  # every render seen in the window, by output and time
    for sample in window:
        for filename, output in sample.records.get(name, {}).get("outputs", {}).items():
            if output["rendered_at"] >= first.at:
                newest = output["newest_data_at"]
                latency = None if newest is None else output["rendered_at"] - newest
                renders[filename, output["rendered_at"]] = (output["render_s"], latency)
    render_s = [r for r, _ in renders.values()]
    latencies = [latency for _, latency in renders.values() if latency is not None]
    lags = [s.records[name].get("data_lag_s") for s in window if name in s.records]
    lags = [lag for lag in lags if lag is not None]
    outputs = record["outputs"]
    ages = {f: (last.at - o["rendered_at"], cadence_s(record)) for f, o in outputs.items()}
    stale = {f: age for f, (age, cadence) in ages.items() if age > cadence + GRACE_S}
    stale |= {f: age for f, (age, _) in ages.items() if outputs[f]["stale"]}
    overdue = sorted(ages.values(), key=lambda age_cadence: age_cadence[0] - age_cadence[1])
    worst = overdue[-1] if overdue else (None, None)
    due = last.at - record["started_at"] > cadence_s(record) + GRACE_S
    return {
        "state": record["state"],
        "messages": messages,
        "rate_hz": messages / elapsed,
        "dropped": record["dropped"] + ligier_dropped,
        "dropped_own": record["dropped"],
        "decode_errors": record["decode_errors"],
        "unknown_doms": record["unknown_doms"],
        "data_lag_max_s": max(lags, default=None),
        "outputs": len(outputs),
        "missing_outputs": not outputs and due and name not in NO_PLOTS,
        "renders": len(renders),
        "render_median_s": statistics.median(render_s) if render_s else None,
        "render_max_s": max(render_s, default=None),
        "worst_age_s": worst[0],
        "worst_cadence_s": worst[1],
        "stale_outputs": {f: [round(age), ages[f][1]] for f, age in stale.items()},
        "latency_median_s": statistics.median(latencies) if latencies else None,
        "latency_max_s": max(latencies, default=None),
    }


def run_size(dus: int, args: argparse.Namespace) -> dict:
    """Start the whole suite for a ``dus``-DU detector, follow it, stop it; the numbers."""
    folder = Path(tempfile.mkdtemp(prefix=f"km3mon-full-{dus}du-"))
    detx = folder / f"{dus}_dus.detx"
    detx.write_text(synthetic_detx(dus, t0_seed=1))  # t0s like a real detector's
    options = argparse.Namespace(detx=detx, replay=None, scenario="", event_rate=args.event_rate)
    k40_args = None if args.no_k40 else args.k40_args
    environment, _ = write_folder(
        folder,
        options,
        PRODUCTION_PIPELINE + args.pipeline_extra,
        k40_args=k40_args,
        k40_reads_daq=args.k40_reads_daq,
    )
    try:
        start(folder, {**os.environ, **environment})
        samples = follow(folder, args.warmup, args.duration, args.sample_every)
        ports = {ligier: int(environment[variable]) for ligier, variable in LIGIERS.items()}
        drops, ligier_totals = ligier_drops(ports)
    except BaseException:
        print(f"(working folder kept: {folder})", file=sys.stderr)
        raise
    finally:
        stop(folder)
    window = [s for s in samples if s.in_window]
    names = dict.fromkeys(name for s in window for name in s.main_pid)
    names = [name for name in names if sum(name in s.cpu_s for s in window) >= 2]
    rows = {name: summarise(name, samples, drops, folder / "logs") for name in names}
    rows = dict(sorted(rows.items(), key=lambda item: item[1]["part"] == "daq"))
    if args.keep:
        print(f"(working folder kept: {folder})")
    else:
        shutil.rmtree(folder)
    return {
        "dus": dus,
        "event_rate_hz": args.event_rate,
        "warmup_s": args.warmup,
        "measured_s": window[-1].at - window[0].at,
        "folder": str(folder) if args.keep else None,
        "unnamed_client_drops": drops.get("unnamed", 0),
        "ligier_drops": ligier_totals,
        # Every drop once: the processes' own and the ligiers' (over all their clients).
        "total_dropped": sum(r.get("dropped_own", 0) for r in rows.values())
        + sum(ligier_totals.values()),
        "rows": rows,
        "totals": totals(rows),
        "verdict": verdict(rows, drops.get("unnamed", 0), ligier_totals, window[-1].states),
    }


def totals(rows: dict[str, dict]) -> dict[str, dict[str, float]]:
    suite = [row for row in rows.values() if row["part"] == "suite"]
    return {
        part: {
            "cpu_cores": sum(row["cpu_cores"] for row in members),
            "rss_end_mb": sum(row["rss_end_mb"] for row in members),
            "rss_slope_mb_per_h": sum(row["rss_slope_mb_per_h"] for row in members),
        }
        for part, members in (("suite", suite), ("machine", list(rows.values())))
    }


def verdict(
    rows: dict[str, dict], unnamed: int, ligiers: dict[str, int], states: dict[str, str]
) -> dict[str, Any]:
    dropped = {name: row["dropped"] for name, row in rows.items() if row["dropped"]}
    if unnamed:
        dropped["unnamed clients"] = unnamed
    dropped |= {f"{ligier} (all clients)": n for ligier, n in ligiers.items() if n}
    stale = [
        (f"{name}/{filename}", age, cadence)
        for name, row in rows.items()
        for filename, (age, cadence) in row.get("stale_outputs", {}).items()
    ]
    stale.sort(key=lambda item: item[2] - item[1])
    missing = [name for name, row in rows.items() if row.get("missing_outputs")]
    suite_cores = sum(row["cpu_cores"] for row in rows.values() if row["part"] == "suite")
    return {
        "dropped": dropped,
        "stale": stale,
        "missing": missing,
        "suite_cpu_ok": suite_cores < SUITE_CORES,
        "not_running": {n: s for n, s in states.items() if s != "RUNNING" or n not in rows},
        "restarts": {name: row["restarts"] for name, row in rows.items() if row["restarts"]},
        "log_errors": {
            name: len(row["log_errors"]) for name, row in rows.items() if row["log_errors"]
        },
    }


def number(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def pair(first: float | None, second: float | None, digits: int = 1) -> str:
    return "-" if first is None else f"{number(first, digits)} / {number(second, digits)}"


def report(result: dict) -> str:
    dus = result["dus"]
    lines = [
        f"### {dus} DUs: {dus * 19 * 10} IO_MONIT/s, 10 IO_SUM/s of {dus * 18} frames, "
        f"{result['event_rate_hz']:g} Hz events; {result['measured_s']:.0f} s measured after "
        f"{result['warmup_s']:.0f} s warm-up",
        "",
        "| process | CPU [cores] | RSS start → end [MB] | RSS slope [MB/h] | messages | msg/s | "
        "dropped | decode errors | unknown DOMs | data lag max [s] | plots | render median / "
        "max [s] | most overdue plot: age / cadence [s] | latency median / max [s] |",
        "|---|" + "---:|" * 13,
    ]
    part = "suite"
    for name, row in result["rows"].items():
        if row["part"] != part:
            part = row["part"]
            lines.append("| **DAQ stand-in** |" + " |" * 13)
        lines.append(
            f"| {name} | {row['cpu_cores']:.3f} | {row['rss_start_mb']:.0f} → "
            f"{row['rss_end_mb']:.0f} | {row['rss_slope_mb_per_h']:+.0f} | "
            f"{row.get('messages', '-')} | {number(row.get('rate_hz'))} | "
            f"{'-' if row['dropped'] is None else row['dropped']} | "
            f"{row.get('decode_errors', '-')} | {row.get('unknown_doms', '-')} | "
            f"{number(row.get('data_lag_max_s'), 2)} | {row.get('outputs', '-')} | "
            f"{pair(row.get('render_median_s'), row.get('render_max_s'), 2)} | "
            f"{pair(row.get('worst_age_s'), row.get('worst_cadence_s'), 0)} | "
            f"{pair(row.get('latency_median_s'), row.get('latency_max_s'))} |"
        )
    for part, label in (("suite", "monitoring suite"), ("machine", "everything on the machine")):
        total = result["totals"][part]
        lines.append(
            f"| **{label}** | **{total['cpu_cores']:.2f}** | {total['rss_end_mb']:.0f} | "
            f"{total['rss_slope_mb_per_h']:+.0f} |" + " |" * 10
        )
    v = result["verdict"]
    stale = [f"{name} {age} s > {cadence:g}+{GRACE_S:g} s" for name, age, cadence in v["stale"]]
    stale += [f"{name}: no plot" for name in v["missing"]]
    suite_cores = result["totals"]["suite"]["cpu_cores"]
    lines += [
        "",
        f"Verdict: zero drops: {yes_no(not v['dropped'], v['dropped'])}; "
        f"all plots fresh: {yes_no(not stale, ', '.join(stale[:5]))}; "
        f"suite CPU {suite_cores:.2f} < {SUITE_CORES:g} cores: {yes_no(v['suite_cpu_ok'])}; "
        f"not running: {v['not_running'] or 'none'}; restarts: {v['restarts'] or 'none'}; "
        f"errors in logs: {v['log_errors'] or 'none'}.",
    ]
    for name, row in result["rows"].items():
        for error in row["log_errors"][:3]:
            lines += ["", f"{name}.log:", "", *("    " + line for line in error.splitlines())]
    return "\n".join(lines)


def yes_no(ok: bool, detail: object = "") -> str:
    return "yes" if ok else f"no ({detail})" if detail else "no"


def summary(results: list[dict]) -> str:
    lines = [
        "### Summary",
        "",
        "| DUs | events [Hz] | suite [cores] | machine [cores] | suite RSS [MB] | dropped | "
        "stale plots | max RSS slope [MB/h] |",
        "|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for result in results:
        suite, machine, rows = (
            result["totals"]["suite"],
            result["totals"]["machine"],
            result["rows"],
        )
        worst = max(rows, key=lambda name: rows[name]["rss_slope_mb_per_h"])
        v = result["verdict"]
        lines.append(
            f"| {result['dus']} | {result['event_rate_hz']:g} | {suite['cpu_cores']:.2f} | "
            f"{machine['cpu_cores']:.2f} | {suite['rss_end_mb']:.0f} | "
            f"{result['total_dropped']} | {len(v['stale']) + len(v['missing'])} | "
            f"{rows[worst]['rss_slope_mb_per_h']:+.0f} ({worst}) |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dus", type=int, nargs="+", default=[6, 33, 115, 230])
    parser.add_argument("--event-rate", type=float, default=200.0, help="trigger rate in Hz")
    parser.add_argument("--warmup", type=float, default=60.0, help="seconds before measuring")
    parser.add_argument("--duration", type=float, default=300.0, help="measured seconds")
    parser.add_argument("--sample-every", type=float, default=10.0, help="seconds between samples")
    parser.add_argument(
        "--pipeline-extra",
        default="",
        help="TOML appended to the production pipeline.toml (e.g. shorter intervals for tests)",
    )
    parser.add_argument(
        "--k40-args",
        default="",
        help="extra flags of k40, which runs on the mirrored IO_TSL1 as in the demo "
        "(default: production, a 600 s calibration period)",
    )
    parser.add_argument(
        "--no-k40",
        action="store_true",
        help="the operator's template as it is: k40 commented out, IO_TSL1 not mirrored",
    )
    parser.add_argument(
        "--k40-reads-daq",
        action="store_true",
        help="k40 subscribes to the DAQ ligier itself (the template's cheaper layout): "
        "IO_TSL1 crosses no mirror and no monitoring ligier",
    )
    parser.add_argument("--json", type=Path, help="write every number here as JSON too")
    parser.add_argument("--keep", action="store_true", help="keep the working folders")
    args = parser.parse_args()
    # Ctrl-C and a plain kill both stop supervisord and every program in run_size's finally.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    results = []
    for dus in args.dus:
        results.append(run_size(dus, args))
        print(report(results[-1]) + "\n", flush=True)
    print(summary(results))
    write_results(args, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
