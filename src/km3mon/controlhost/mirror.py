"""`km3mon ligiermirror`: forward chosen tags from one ligier to another.

Same flags as km3pipe's ``ligiermirror``. Unlike it, both sides reconnect on their own
(with backoff) and the mirror never exits on a lost connection: messages read while the
target is away wait in a bounded queue (``-s``, oldest dropped and counted beyond it).
Frames are forwarded byte-exact (canonical prefix + unchanged payload), one write per batch.
Every 2 s it writes a status record like the monitors' (``data/freshness/ligiermirror.json``:
forwarded messages and bytes, rate, drops, connected), so the dashboard and the benchmarks
see the first link of the chain too.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import time
from collections import deque
from pathlib import Path

from km3mon import published
from km3mon.controlhost.aio import AsyncClient
from km3mon.controlhost.client import DEFAULT_PORT
from km3mon.controlhost.subscription import split_tags
from km3mon.runtime.freshness import Freshness
from km3mon.runtime.streaming import tune_garbage_collector

log = logging.getLogger("km3mon.ligiermirror")
STATUS_EVERY_S = 2.0
#: Nothing forwarded for this long while connected: "stale" (a DAQ without a run, or a
#: source that stopped publishing); IO_SUM alone comes 10 times a second during a run.
STALE_AFTER_S = 60.0


class Mirror:
    def __init__(
        self,
        source: AsyncClient,
        target: AsyncClient,
        tags: list[str],
        *,
        max_queue: int = 20000,
        report_interval_s: float = 60.0,
        status_path: Path | None = None,
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
        self.status_path = status_path
        self.status = Freshness(
            process="ligiermirror",
            pid=os.getpid(),
            started_at=time.time(),
            ligier=f"{source.host}:{source.port} -> {target.host}:{target.port}",
            tags=list(tags),
            render_interval_s=STATUS_EVERY_S,
            stale_after_s=STALE_AFTER_S,
        )

    async def run(self) -> None:
        # The status record first: it must say "disconnected" while a side is not there yet.
        tasks = [asyncio.create_task(self._report()), asyncio.create_task(self._keep_status())]
        try:
            await self.source.connect()
            await self.source.subscribe(self.tags, mode="any")
            await self.target.connect()
            tasks += [asyncio.create_task(self._read()), asyncio.create_task(self._write())]
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
                self.status.last_message_at = time.time()

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

    async def _keep_status(self) -> None:
        last_count, last_time = self.forwarded, time.monotonic()
        while True:
            now = time.monotonic()
            rate = (self.forwarded - last_count) / max(now - last_time, 1e-9)
            last_count, last_time = self.forwarded, now
            self.write_status(round(rate, 2))
            await asyncio.sleep(STATUS_EVERY_S)

    def write_status(self, message_rate_hz: float, state: str | None = None) -> None:
        """The record as the monitors write it: running, stale, disconnected or stopped."""
        status = self.status
        status.connected = self.source.connected and self.target.connected
        status.reconnects = self.source.reconnects + self.target.reconnects
        status.messages, status.bytes = self.forwarded, self.forwarded_bytes
        status.message_rate_hz, status.dropped = message_rate_hz, self.dropped
        if state is None:
            last = status.last_message_at
            silent = last is None or time.time() - last > status.stale_after_s
            state = "disconnected" if not status.connected else "stale" if silent else "running"
        status.state = state
        if self.status_path is not None:
            try:
                status.write(self.status_path)
            except OSError as error:  # a full disk must not stop the data
                log.warning("cannot write %s: %s", self.status_path, error)


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
    parser.add_argument(
        "--data-dir", default="data", help="where the status record goes (data/freshness/)"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from km3mon.logs import setup_logging

    level = args.debug.upper()
    setup_logging(int(level) if level.isdigit() else level)
    tags = split_tags(args.tags)
    source = AsyncClient(args.source_ip, args.source_port, name="ligiermirror")
    target = AsyncClient(args.target_ip, args.target_port)
    mirror = Mirror(
        source,
        target,
        tags,
        max_queue=args.queue,
        report_interval_s=args.report_interval,
        status_path=published.freshness(Path(args.data_dir), "ligiermirror"),
    )
    log.warning(
        "mirroring %s from %s:%d to %s:%d",
        ", ".join(tags),
        args.source_ip,
        args.source_port,
        args.target_ip,
        args.target_port,
    )
    tune_garbage_collector()
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
        mirror.write_status(0.0, state="stopped")
        log.warning(
            "mirror stopped: forwarded %d messages, dropped %d", mirror.forwarded, mirror.dropped
        )
