"""``km3mon record``: subscribe to tags on a ligier and write the frames to a file.

The file holds the ControlHost frames back to back (see :mod:`km3mon.daq.files`), so
``km3mon replay`` sends exactly what was received and ``km3mon inspect`` reads it. Stops after
``--duration`` seconds or ``--count`` messages, on Ctrl-C or SIGTERM, always closing the file.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
import time

from km3mon.controlhost import Client, ControlHostError
from km3mon.controlhost.client import DEFAULT_PORT
from km3mon.daq.files import RecordingWriter
from km3mon.logs import setup_logging

log = logging.getLogger(__name__)

POLL_S = 1.0  # longest wait for messages before checking the stop conditions
REPORT_INTERVAL_S = 10.0


def run(args: argparse.Namespace) -> int:
    setup_logging(args.debug)
    stop = threading.Event()  # set by SIGTERM: the loop ends cleanly between batches
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    tags = [tag.strip() for tag in args.tags.split(",") if tag.strip()]
    start = time.monotonic()
    deadline = None if args.duration is None else start + args.duration
    with RecordingWriter(args.output) as writer:
        try:
            record(args, tags, writer, stop, deadline)
        except KeyboardInterrupt:
            log.info("interrupted")
        except ControlHostError:  # SIGTERM while the ligier was away
            if not stop.is_set():
                raise
    log.info("wrote %d messages, %d bytes to %s", writer.messages, writer.bytes, args.output)
    return 0


def record(
    args: argparse.Namespace,
    tags: list[str],
    writer: RecordingWriter,
    stop: threading.Event,
    deadline: float | None,
) -> None:
    """Receive and write until ``stop``, ``deadline`` or ``--count``."""
    next_report = time.monotonic() + REPORT_INTERVAL_S
    with Client(args.host, args.port, name="record", stop=stop) as client:
        client.subscribe(tags, mode=args.mode)
        log.info(
            "recording %s from %s:%d to %s", ", ".join(tags), args.host, args.port, args.output
        )
        while not stop.is_set():
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                break
            wait = POLL_S if deadline is None else min(POLL_S, deadline - now)
            for message in client.receive_batch(timeout=wait):
                writer.write_frame(message.frame())
                if writer.messages == args.count:
                    stop.set()
                    break
            writer.flush()
            if now >= next_report:
                log.info("%d messages, %d bytes", writer.messages, writer.bytes)
                next_report = now + REPORT_INTERVAL_S


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "record",
        help="record tags from a ligier into a replayable file",
        description="Subscribe to tags on a ligier and write the raw ControlHost frames to FILE.",
    )
    parser.add_argument("-H", dest="host", default="127.0.0.1", help="ligier host")
    parser.add_argument("-p", dest="port", type=int, default=DEFAULT_PORT, help="ligier port")
    parser.add_argument(
        "-m", dest="tags", default="IO_EVT, IO_SUM", help='tags, e.g. "IO_EVT, IO_SUM"'
    )
    parser.add_argument("-o", dest="output", required=True, metavar="FILE")
    parser.add_argument("--duration", type=float, help="stop after this many seconds")
    parser.add_argument("--count", type=int, help="stop after this many messages")
    parser.add_argument(
        "--mode",
        choices=("any", "all"),
        default="any",
        help="subscription mode: any (default; the ligier may skip messages for a slow "
        "recorder) or all (never skip; a slow disk then slows the ligier)",
    )
    parser.add_argument("-d", dest="debug", default="INFO", help="log level")
    parser.set_defaults(func=run)
