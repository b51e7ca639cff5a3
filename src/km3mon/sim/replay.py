"""`km3mon replay`: publish recorded DAQ data into a ligier, paced like the DAQ sent it.

Reads the km3net-testdata layouts and our raw ControlHost recordings (see
:mod:`km3mon.daq.files`). Pacing follows the DAQ timestamps inside the payloads (summary
slices, events, timeslices, monitoring packets); messages without one (``MSG``) go out with
their predecessor. A jump of more than ``MAX_GAP_S`` in DAQ time (a new run, a gap in the
recording) is not waited for. SIGTERM/SIGINT stop it cleanly (exit 0), also while it waits
for its ligier.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from pathlib import Path

from km3mon.controlhost import Client, ControlHostError, encode_frame
from km3mon.daq import DAQFormatError, decode
from km3mon.daq.files import RecordedMessage, iter_file
from km3mon.sim.publishing import add_publishing_arguments, speed_of

log = logging.getLogger("km3mon.replay")

MAX_GAP_S = 10.0
#: Messages sent with one system call when no pacing separates them.
BATCH_MESSAGES = 256


def daq_time(message: RecordedMessage) -> float | None:
    """UTC seconds of a DAQ payload, or None when it carries no time (or does not decode)."""
    if message.tag == "MSG":
        return None
    try:
        obj = decode(message.tag, message.payload)
    except DAQFormatError:
        return None
    header = getattr(obj, "header", None)
    if header is not None:
        return float(header.timestamp)
    timestamp = getattr(obj, "timestamp", None)
    return float(timestamp) if timestamp is not None else None


class Pacer:
    """Maps DAQ time onto wall time at ``speed``; ``None`` speed means as fast as possible."""

    def __init__(self, speed: float | None, stop: threading.Event | None = None) -> None:
        self.speed = speed
        self.stop = stop or threading.Event()
        self._daq_origin: float | None = None
        self._wall_origin = 0.0
        self._last_daq: float | None = None

    def wait_for(self, message: RecordedMessage) -> None:
        if self.speed is None:
            return
        daq = daq_time(message)
        if daq is None:
            return
        if (
            self._daq_origin is None
            or self._last_daq is None
            or abs(daq - self._last_daq) > MAX_GAP_S
        ):
            if self._last_daq is not None:
                log.info("DAQ time jumps by %.1f s; not waiting for it", daq - self._last_daq)
            self._daq_origin, self._wall_origin = daq, time.monotonic()
        self._last_daq = daq
        delay = self._wall_origin + (daq - self._daq_origin) / self.speed - time.monotonic()
        if delay > 0:
            self.stop.wait(delay)


class Progress:
    """One status line on stderr, refreshed at most once a second."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.messages = 0
        self.bytes = 0
        self._shown = 0.0
        self._start = time.monotonic()

    def update(
        self, path: Path, fraction: float, count: int, size: int, force: bool = False
    ) -> None:
        self.messages += count
        self.bytes += size
        now = time.monotonic()
        if not self.enabled or (now - self._shown < 1.0 and not force):
            return
        self._shown = now
        filled = int(fraction * 30)
        rate = self.messages / max(now - self._start, 1e-9)
        sys.stderr.write(
            f"\r{path.name}: [{'#' * filled}{'.' * (30 - filled)}] {fraction:4.0%} "
            f"{self.messages} msg, {self.bytes / 1e6:.1f} MB, {rate:.0f} msg/s"
        )
        sys.stderr.flush()
        if force:
            sys.stderr.write("\n")


def replay_file(
    path: Path, client: Client, pacer: Pacer, progress: Progress, tags: set[str] | None
) -> int:
    """Publish every message of one file; returns the number sent. Raises DAQFormatError."""
    size = max(path.stat().st_size, 1)
    sent = 0
    pending: list[bytes] = []

    def flush(offset: int) -> None:
        nonlocal sent
        if pending:
            data = b"".join(pending)
            client.send_raw(data)
            progress.update(path, offset / size, len(pending), len(data))
            sent += len(pending)
            pending.clear()

    try:
        for message in iter_file(path):
            if pacer.stop.is_set():
                break
            if tags is not None and message.tag not in tags:
                continue
            if pacer.speed is not None:
                flush(message.offset)
                pacer.wait_for(message)
            pending.append(encode_frame(message.tag, message.payload))
            if len(pending) >= BATCH_MESSAGES:
                flush(message.offset)
    finally:  # what was read before a corrupt tail still goes out (unless asked to stop)
        if not pacer.stop.is_set():
            flush(size)
        progress.update(path, 1.0, 0, 0, force=True)
    return sent


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "replay",
        help="publish recorded DAQ data (testdata .dat files, km3mon recordings) into a ligier",
        description="Replay recorded data into a ligier with the DAQ's original pacing "
        "(or faster), each payload under its ControlHost tag.",
    )
    parser.add_argument("files", metavar="FILE", nargs="+", type=Path)
    add_publishing_arguments(parser, "time compression")
    parser.add_argument("--loop", action="store_true", help="start over after the last file")
    parser.add_argument("-m", "--tags", help="only these tags (comma separated)")
    parser.add_argument("--no-progress", action="store_true", help="no progress line on stderr")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from km3mon.logs import setup_logging

    setup_logging()
    stop = threading.Event()
    try:
        pacer = Pacer(speed_of(args), stop)
    except ValueError as error:
        log.error("%s", error)
        return 2
    for signum in (signal.SIGTERM, signal.SIGINT):  # stop cleanly, also while the ligier is away
        signal.signal(signum, lambda *_: stop.set())
    tags = {t.strip() for t in args.tags.split(",")} if args.tags else None
    progress = Progress(enabled=not args.no_progress and sys.stderr.isatty())
    try:
        failures = replay_all(args, Client(args.host, args.port, name="replay", stop=stop),
                              pacer, progress, tags)  # fmt: skip
    except ControlHostError:
        if not stop.is_set():
            raise
        log.info("stopped")
        return 0
    if failures:
        log.error("%d of %d files could not be replayed completely", failures, len(args.files))
        return 1
    return 0


def replay_all(
    args: argparse.Namespace,
    client: Client,
    pacer: Pacer,
    progress: Progress,
    tags: set[str] | None,
) -> int:
    """Every file (in a loop with ``--loop``) until done or stopped; the number that failed."""
    failures = 0
    with client:
        while not pacer.stop.is_set():
            for path in args.files:
                try:
                    sent = replay_file(path, client, pacer, progress, tags)
                except OSError as error:
                    failures += 1
                    log.error("cannot read %s: %s; going on with the next file", path, error)
                except DAQFormatError as error:
                    failures += 1
                    log.error("%s: %s; going on with the next file", path, error)
                else:
                    log.info("%s: replayed %d messages", path, sent)
            if not args.loop or failures == len(args.files):
                break
    return failures
