"""A `km3mon` command line run in this process: the parser of the command it names, then the
command.

The commands come from ``km3mon.registry``. Only the module of the command being run is
imported (its ``register(subparsers)`` adds the real parser, with ``func``: called with the
parsed namespace, returns an exit code); every other command is a one-line entry for
``km3mon --help``. So `km3mon ligier` starts without numba, scipy, matplotlib or Starlette,
which the monitors and the web server need and the ligier does not.

Below the console script (``km3mon.cli``), so that the fork server runs a command in a fork
with the same code and without importing the CLI back.
"""

from __future__ import annotations

import argparse
import importlib

from km3mon import registry


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser for ``argv``: the full parser of the command it names, a stub for the rest.

    Without ``argv`` (or without a known command in it) no command module is imported.
    """
    from km3mon import __version__

    parser = argparse.ArgumentParser(
        prog="km3mon",
        description="Online monitoring suite for the KM3NeT neutrino telescopes.",
    )
    parser.add_argument("--version", action="version", version=f"km3mon {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    commands = registry.commands()
    chosen = commands.get(command_word(argv or []))
    if chosen is not None:
        importlib.import_module(chosen.module).register(subparsers)
    for command in commands.values():
        if command.name not in subparsers.choices:  # a module may register several (ops)
            subparsers.add_parser(command.name, help=command.help, add_help=False)
    return parser


def command_word(argv: list[str]) -> str:
    """The subcommand named in ``argv`` (the first word that is no option), or ``""``."""
    return next((word for word in argv if not word.startswith("-")), "")


def run(argv: list[str]) -> int:
    """Run a command in this process."""
    args = build_parser(argv).parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
