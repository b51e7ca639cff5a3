"""Command-line options shared by the data sources that publish into a ligier."""

from __future__ import annotations

import argparse


def add_publishing_arguments(parser: argparse.ArgumentParser, what: str) -> None:
    """``-H``/``-p`` of the ligier and ``--speed``/``--max`` pacing of ``what``."""
    parser.add_argument("-H", "--host", default="127.0.0.1", help="ligier host (127.0.0.1)")
    parser.add_argument("-p", "--port", type=int, default=5553, help="ligier port (5553)")
    pace = parser.add_mutually_exclusive_group()
    pace.add_argument("--speed", type=float, default=1.0, help=f"{what} (1 = real time)")
    pace.add_argument("--max", action="store_true", help="as fast as possible, no pacing")


def speed_of(args: argparse.Namespace) -> float | None:
    """The pacing speed, None for ``--max``; ValueError for a speed that is not positive."""
    if args.max:
        return None
    if args.speed <= 0:
        raise ValueError("--speed must be positive (use --max for no pacing)")
    return args.speed
