"""The `km3mon` console script: one subcommand per supervisord program.

Each command module exposes ``register(subparsers)`` which adds its parser and sets
``func`` (called with the parsed namespace, returns an exit code). Modules are imported
lazily by name so that `km3mon ligier` does not pay for matplotlib.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import time

#: Modules that register subcommands, in the order they appear in ``km3mon --help``.
COMMAND_MODULES: tuple[str, ...] = (
    "km3mon.controlhost.ligier",
    "km3mon.controlhost.mirror",
    "km3mon.sim.simulator",
    "km3mon.sim.replay",
    "km3mon.sim.detector_manager",
    "km3mon.monitors.dom_activity",
    "km3mon.monitors.dom_rates",
    "km3mon.monitors.pmt_rates",
    "km3mon.monitors.pmt_hrv",
    "km3mon.monitors.ahrs_calibration",
    "km3mon.monitors.msg_dumper",
    "km3mon.monitors.trigger_rates",
    "km3mon.monitors.triggermap",
    "km3mon.monitors.rttc",
    "km3mon.monitors.ztplot",
    "km3mon.alerts.alerts",
    "km3mon.alerts.report",
    "km3mon.history.history",
    "km3mon.monitors.reco",
    "km3mon.monitors.timesync",
    "km3mon.monitors.k40",
    "km3mon.monitors.sn",
    "km3mon.monitors.quality",
    "km3mon.quality.grl",
    "km3mon.web.server",
    "km3mon.web.weblog",
    "km3mon.ops",
    "km3mon.demo",
    "km3mon.daq.inspect",
    "km3mon.daq.record",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="km3mon",
        description="Online monitoring suite for the KM3NeT neutrino telescopes.",
    )
    from km3mon import __version__

    parser.add_argument("--version", action="version", version=f"km3mon {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def setup_logging(level: int | str = logging.INFO) -> None:
    """One log format for every process: UTC time, level, logger name, message."""
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%Y-%m-%dT%H:%M:%S",
        stream=sys.stderr,
    )
    logging.Formatter.converter = time.gmtime


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
