"""`km3mon demo`: the whole suite on built-in defaults, from nothing, in one folder.

It writes a self-contained working folder (``setenv.sh``, ``pipeline.toml`` with demo
credentials and short intervals, ``supervisord.conf`` from the template plus a
``daq_simulation`` group standing in for the shore station: a DAQ ligier, a log ligier, the
simulator or a replay, the Detector Manager stand-in), then starts everything with
supervisord exactly as ``make start`` does, waits for the overview plots and prints where to
look. Ctrl-C (or ``--duration``) stops it all.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shlex
import signal
import socket
import sys
import time
from pathlib import Path

from km3mon.ops import OperationError, bin_dir, port_in_use, start, stop, supervisorctl

DEFAULT_PORTS = {
    "DAQ_LIGIER_PORT": 55531,
    "LOG_LIGIER_PORT": 55532,
    "MONITORING_LIGIER_PORT": 55530,
    "WEBSERVER_PORT": 8081,
    "LOGGING_PORT": 8082,
    "DETECTOR_MANAGER_PORT": 1302,
}
OVERVIEW = ("dom_activity", "dom_rates", "pmt_rates_du*", "trigger_rates", "ztplot", "triggermap")
DEMO_PIPELINE = """# km3mon demo: short intervals so that every plot appears within a minute or so.
[WebServer]
username = "demo"
password = "{password}"

[PMTRates]
interval = 5

[TriggerRate]
interval = 10

[TriggerMap]
max_events = 300

[CalibrateAHRS]
time_range = 1

# Alerts within a minute or two of the simulator's faults (production holds are minutes).
[Alerts.silent_dom]
hold_s = 60

[Alerts.pmt_hot]
hold_s = 60
"""
DAQ_GROUP = """
; --- the demo's stand-in for the shore station (not part of a production setup) ---
[group:daq_simulation]
programs=daq_ligier,log_ligier,{source},detector_manager
priority=0

[program:daq_ligier]
command=km3mon ligier --host 127.0.0.1 -P %(ENV_DAQ_LIGIER_PORT)s
autorestart=true
redirect_stderr=true
stdout_logfile=%(here)s/logs/%(program_name)s.log

[program:log_ligier]
command=km3mon ligier --host 127.0.0.1 -P %(ENV_LOG_LIGIER_PORT)s
autorestart=true
redirect_stderr=true
stdout_logfile=%(here)s/logs/%(program_name)s.log

[program:{source}]
command={source_command}
autorestart=true
startsecs=3
redirect_stderr=true
stdout_logfile=%(here)s/logs/%(program_name)s.log

[program:detector_manager]
command=km3mon detector-manager --detx %(ENV_DETX)s -p %(ENV_DETECTOR_MANAGER_PORT)s
autorestart=true
redirect_stderr=true
stdout_logfile=%(here)s/logs/%(program_name)s.log
"""


def free_port(preferred: int, taken: set[int]) -> int:
    if preferred not in taken and not port_in_use(preferred):
        return preferred
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port not in taken:
            return port


#: ``--check`` fails when the overview is not complete within this many seconds.
CHECK_DURATION_S = 300.0


def default_detx() -> str:
    import km3net_testdata

    return km3net_testdata.data_path("detx/KM3NeT_00000133_20221025.detx")


def enable_k40(template: str, extra_args: str = "") -> str:
    """The template with its commented-out ``k40`` program switched on (``extra_args`` added
    to its command line): the demo mirrors IO_TSL1, so it can show the K40 calibration."""
    head, marker, rest = template.partition("; --- k40 (IO_TSL1) ---\n")
    block, end, tail = rest.partition("; --- end k40 ---\n")
    if not marker or not end:
        return template
    lines = []
    for line in block.splitlines(keepends=True):
        if line.startswith(";") and not line.startswith("; "):  # a commented-out setting
            line = line[1:]
            if line.startswith("command=") and extra_args:
                line = line.rstrip("\n") + f" {extra_args}\n"
        lines.append(line)
    return head + marker + "".join(lines) + end + tail


def write_folder(
    folder: Path,
    args: argparse.Namespace,
    pipeline: str = DEMO_PIPELINE,
    k40_args: str | None = "--period 60 -i 60",
    k40_reads_daq: bool = False,
) -> tuple[dict[str, str], str]:
    """The demo's setenv.sh, pipeline.toml and supervisord.conf; returns environment, password.

    ``pipeline`` is the text of pipeline.toml with a ``{password}`` field for the dashboard;
    the benchmark passes production settings instead of the demo's short intervals (and
    ``k40_args=""`` for the K40 calibration's production period). ``k40_args=None`` leaves
    k40 out as the operator's template does, and IO_TSL1 unmirrored; ``k40_reads_daq`` runs
    k40 on the DAQ ligier itself, the cheaper layout the template recommends (IO_TSL1 unmirrored).
    """
    from km3mon.detector import read_detx

    folder.mkdir(parents=True, exist_ok=True)
    detx = str(Path(args.detx or default_detx()).resolve())
    taken: set[int] = set()
    ports = {}
    for name, preferred in DEFAULT_PORTS.items():
        ports[name] = free_port(preferred, taken)
        taken.add(ports[name])
    environment = {
        "DETECTOR_ID": str(read_detx(detx).det_id),
        "DAQ_LIGIER_IP": "127.0.0.1",
        "DAQ_LIGIER_PORT": str(ports["DAQ_LIGIER_PORT"]),
        "TAGS_TO_MIRROR": "IO_EVT, IO_SUM, IO_MONIT, IO_TSSN"
        + (", IO_TSL1" if k40_args is not None and not k40_reads_daq else ""),
        "LOG_LIGIER_IP": "127.0.0.1",
        "LOG_LIGIER_PORT": str(ports["LOG_LIGIER_PORT"]),
        "LIGIER_CMD": "km3mon ligier --host 127.0.0.1",
        "MONITORING_LIGIER_PORT": str(ports["MONITORING_LIGIER_PORT"]),
        "DETECTOR_MANAGER_IP": f"127.0.0.1:{ports['DETECTOR_MANAGER_PORT']}",
        "DETECTOR_MANAGER_PORT": str(ports["DETECTOR_MANAGER_PORT"]),
        "WEBSERVER_PORT": str(ports["WEBSERVER_PORT"]),
        "LOGGING_PORT": str(ports["LOGGING_PORT"]),
        "DETX": detx,
        "ROYFIT_TIMERES": "data/time_residuals.csv",
    }
    lines = ["#!/bin/bash", "# Generated by `km3mon demo`; `source setenv.sh` to use it."]
    lines += [f"export {name}={shlex.quote(value)}" for name, value in environment.items()]
    (folder / "setenv.sh").write_text("\n".join(lines) + "\n")
    password = secrets.token_urlsafe(9)
    (folder / "pipeline.toml").write_text(pipeline.format(password=password))
    if args.replay:
        files = " ".join(shlex.quote(str(Path(f).resolve())) for f in args.replay)
        source, command = (
            "replay",
            (f"km3mon replay -p %(ENV_DAQ_LIGIER_PORT)s --loop --no-progress {files}"),
        )
    else:
        source, command = (
            "simulator",
            (
                "km3mon simulate --detx %(ENV_DETX)s -p %(ENV_DAQ_LIGIER_PORT)s "
                f"--log-port %(ENV_LOG_LIGIER_PORT)s --scenario {shlex.quote(args.scenario)}"
            ),
        )
        if args.event_rate is not None:
            command += f" --event-rate {args.event_rate:g}"
    # The operator's template at the repository root (km3mon is installed editable there).
    template = (Path(__file__).resolve().parents[2] / "supervisord_template.conf").read_text()
    if k40_args is not None:
        daq = " -l %(ENV_DAQ_LIGIER_IP)s -p %(ENV_DAQ_LIGIER_PORT)s" if k40_reads_daq else ""
        template = enable_k40(template, (k40_args + daq).strip())
    (folder / "supervisord.conf").write_text(
        template + DAQ_GROUP.format(source=source, source_command=command)
    )
    return environment, password


def overview_ready(folder: Path, since: float) -> list[str]:
    """Overview plots not written since ``since`` (UTC seconds): a previous demo's PNGs in
    the same folder do not count."""
    plots = folder / "plots"
    return [
        name
        for name in OVERVIEW
        if not any(_written_since(p, since) for p in plots.glob(f"{name}.png"))
    ]


def _written_since(path: Path, since: float) -> bool:
    try:
        return path.stat().st_mtime >= since
    except OSError:
        return False


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="the whole suite on a simulated detector, dashboard included, in ./demo",
        description=__doc__.split("\n\n")[0],
    )
    parser.add_argument("--dir", type=Path, default=Path("demo"), help="working folder (demo)")
    parser.add_argument("--detx", help="detector (default: ARCA-21 from km3net-testdata)")
    parser.add_argument("--replay", nargs="+", metavar="FILE", help="replay these, no simulator")
    parser.add_argument(
        "--scenario", default="silent-dom@30,hot-pmt@20", help="simulator faults to show"
    )
    parser.add_argument(
        "--event-rate", type=float, help="simulated trigger rate in Hz (default: 10 + 2 per DU)"
    )
    parser.add_argument("--duration", type=float, help="stop after this many seconds")
    parser.add_argument(
        "--check",
        action="store_true",
        help="a smoke test of the installation: stop as soon as every overview plot is "
        f"drawn (exit 0), fail if they are not within --duration ({CHECK_DURATION_S:g} s)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    folder = args.dir.resolve()
    if (folder / "pids" / "supervisord.pid").exists():
        stop(folder)  # a previous demo left running
    environment, password = write_folder(folder, args)
    since = time.time() - 1.0  # file times may be truncated to the second
    try:
        start(folder, {**os.environ, **environment})
    except OperationError as error:
        print(f"km3mon demo: {error}", file=sys.stderr)
        return 1
    web, logs = environment["WEBSERVER_PORT"], environment["LOGGING_PORT"]
    print(
        f"km3mon demo running in {folder}\n"
        f"  dashboard: http://127.0.0.1:{web}/   (user demo, password {password})\n"
        f"  DAQ log:   http://127.0.0.1:{logs}/\n"
        f"  processes: cd {folder} && {bin_dir() / 'supervisorctl'} status\n"
        "Ctrl-C stops everything.",
        flush=True,
    )
    stopping = False

    def interrupt(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)
    started = time.monotonic()
    reported = False
    duration_s = args.duration
    if args.check and duration_s is None:
        duration_s = CHECK_DURATION_S
    try:
        while not stopping:
            elapsed = time.monotonic() - started
            if not reported and not overview_ready(folder, since):
                print(f"all overview plots are there after {elapsed:.0f} s", flush=True)
                reported = True
                if args.check:
                    break
            if duration_s is not None and elapsed >= duration_s:
                break
            time.sleep(0.5)
    finally:
        status = supervisorctl(folder, "status").stdout
        stop(folder)
    print("km3mon demo stopped")
    missing = overview_ready(folder, since)
    if missing:
        print(f"overview plots missing: {', '.join(missing)}\n{status}", file=sys.stderr)
        return 1
    return 0
