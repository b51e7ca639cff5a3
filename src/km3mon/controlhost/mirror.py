"""`km3mon ligiermirror`: forward chosen tags from one ligier to another.

Same flags as km3pipe's ``ligiermirror``. Unlike it, both sides reconnect on their own
(with backoff) and the mirror never exits on a lost connection: messages read while the
target is away wait in a bounded queue (``-s``, oldest dropped and counted beyond it).
Frames are forwarded byte-exact (canonical prefix + unchanged payload), one write per batch.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import time
from collections import deque

from km3mon.controlhost.aio import AsyncClient
from km3mon.controlhost.client import DEFAULT_PORT
from km3mon.controlhost.subscription import split_tags

log = logging.getLogger("km3mon.ligiermirror")


class Mirror:
    def __init__(
        self,
        source: AsyncClient,
        target: AsyncClient,
        tags: list[str],
        *,
        max_queue: int = 20000,
        report_interval_s: float = 60.0,
    ) -> None:
        self.source = source
        self.target = target
        self.tags = tags
        self.max_queue = max_queue
        self.report_interval_s = report_interval_s
        self.forwarded = 0
        self.forwarded_bytes = 0
        self.dropped = 0
        self._queue: deque[tuple[bytes, int]] = deque()
        self._queued_messages = 0
        self._wakeup = asyncio.Event()

    async def run(self) -> None:
        await self.source.connect()
        await self.source.subscribe(self.tags, mode="any")
        await self.target.connect()
        tasks = [
            asyncio.create_task(self._read()),
            asyncio.create_task(self._write()),
            asyncio.create_task(self._report()),
        ]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()

    async def _read(self) -> None:
        while True:
            batch = await self.source.receive_batch()
            wanted = [m for m in batch if m.tag in self.tags]
            if len(wanted) != len(batch):
                log.warning(
                    "source sent %d messages of unsubscribed tags", len(batch) - len(wanted)
                )
            if not wanted:
                continue
            self._queue.append((b"".join(m.frame() for m in wanted), len(wanted)))
            self._queued_messages += len(wanted)
            while self._queued_messages > self.max_queue and len(self._queue) > 1:
                _, count = self._queue.popleft()
                self._queued_messages -= count
                self.dropped += count
                log.warning(
                    "target %s:%d not keeping up: queue above %d messages, dropped %d oldest",
                    self.target.host,
                    self.target.port,
                    self.max_queue,
                    count,
                )
            self._wakeup.set()

    async def _write(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._queue:
                chunks = list(self._queue)
                self._queue.clear()
                count = sum(n for _, n in chunks)
                self._queued_messages -= count
                data = b"".join(chunk for chunk, _ in chunks)
                await self.target.send_raw(data)
                self.forwarded += count
                self.forwarded_bytes += len(data)

    async def _report(self) -> None:
        last_count, last_bytes, last_time = 0, 0, time.monotonic()
        while True:
            await asyncio.sleep(self.report_interval_s)
            now = time.monotonic()
            elapsed = now - last_time
            log.info(
                "forwarded %.1f msg/s, %.2f MB/s (total %d messages, %d dropped)",
                (self.forwarded - last_count) / elapsed,
                (self.forwarded_bytes - last_bytes) / elapsed / 1e6,
                self.forwarded,
                self.dropped,
            )
            last_count, last_bytes, last_time = self.forwarded, self.forwarded_bytes, now


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "ligiermirror",
        help="forward tags from one ligier to another (like km3pipe's ligiermirror)",
        description="Subscribe to tags on the SOURCE_IP ligier and publish them to a target "
        "ligier. Both connections reconnect by themselves; the mirror never exits on a lost "
        "connection.",
    )
    parser.add_argument("source_ip", metavar="SOURCE_IP")
    parser.add_argument("-t", dest="target_ip", default="127.0.0.1", help="target IP")
    parser.add_argument("-p", dest="source_port", type=int, default=DEFAULT_PORT)
    parser.add_argument("-q", dest="target_port", type=int, default=DEFAULT_PORT)
    parser.add_argument(
        "-m", dest="tags", default="IO_EVT, IO_SUM", help="comma separated tags (IO_EVT, IO_SUM)"
    )
    parser.add_argument(
        "-s", dest="queue", type=int, default=20000, help="messages kept while the target is slow"
    )
    parser.add_argument(
        "-x", dest="timeout", type=int, default=604800, help="accepted for compatibility; unused"
    )
    parser.add_argument(
        "-d", dest="debug", default="INFO", help="log level (DEBUG, INFO, WARNING, ...)"
    )
    parser.add_argument(
        "--report-interval", type=float, default=60.0, help="seconds between rate reports"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from km3mon.cli import setup_logging

    level = args.debug.upper()
    setup_logging(int(level) if level.isdigit() else level)
    tags = split_tags(args.tags)
    source = AsyncClient(args.source_ip, args.source_port, name="ligiermirror")
    target = AsyncClient(args.target_ip, args.target_port)
    mirror = Mirror(
        source, target, tags, max_queue=args.queue, report_interval_s=args.report_interval
    )
    log.warning(
        "mirroring %s from %s:%d to %s:%d",
        ", ".join(tags),
        args.source_ip,
        args.source_port,
        args.target_ip,
        args.target_port,
    )
    asyncio.run(_run_until_signal(mirror))
    return 0


async def _run_until_signal(mirror: Mirror) -> None:
    loop = asyncio.get_running_loop()
    task = asyncio.create_task(mirror.run())
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, task.cancel)
    try:
        await task
    except asyncio.CancelledError:
        log.warning(
            "mirror stopped: forwarded %d messages, dropped %d", mirror.forwarded, mirror.dropped
        )
