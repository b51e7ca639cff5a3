"""msg_dumper: every DAQ log line from the log ligier into ``logs/MSG.log``, tagged by source.

Lines look like the original's, ``MSG.log [DataFilter]: <text>`` (sources from the process
codes F0, Q0, W0, A0, else ``Other``), one line per message: a newline inside a message
is written as ``\\n`` and bytes that are not UTF-8 as ``\\xNN``. Each batch is written and
flushed at once. At UTC midnight (or every ``--rotate-every`` seconds) the file is renamed to
``MSG_YYYY-MM-DD.log`` and a new one started; a line belongs to the period in which it
arrived, so no line is lost or written twice, also across restarts.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import BinaryIO

from km3mon.controlhost import Message
from km3mon.daq.message import SOURCES
from km3mon.runtime.monitor import Context, Monitor, register_monitor

DAY_S = 86400


def source_of(text: str) -> str:
    """The source of a log line by its process code; with several codes in a line the last
    in ``A0, F0, Q0, W0`` wins, as in the original msg_dumper (it tested them in that
    order, each match overriding the one before)."""
    for code, name in reversed(SOURCES.items()):
        if f" {code}" in text:
            return name
    return "Other"


class MSGDumper(Monitor):
    name = "msg_dumper"
    tags = ("MSG",)
    help = "write the DAQ log (MSG) to logs/MSG.log, tagged by source, rotated at UTC midnight"
    default_interval_s = 1.0

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("-f", "--file", default="logs/MSG.log", help="log file (logs/MSG.log)")
        parser.add_argument(
            "--rotate-every",
            type=int,
            default=DAY_S,
            help="seconds per file, aligned to UTC midnight (86400: one file per UTC day)",
        )

    def __init__(self, context: Context) -> None:
        super().__init__(context)
        self.path = Path(context.args.file)
        self.period_s = context.args.rotate_every
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists() and self.path.stat().st_size:
            self._archive_if_older(self._period(self.path.stat().st_mtime))
        self.period = self._period(time.time())
        self.stream: BinaryIO = self.path.open("ab")

    def _period(self, timestamp: float) -> int:
        return int(timestamp // self.period_s)

    def archive_name(self, period: int) -> Path:
        start = time.gmtime(period * self.period_s)
        stamp = time.strftime(
            "%Y-%m-%d" if self.period_s % DAY_S == 0 else "%Y-%m-%d_%H%M%S", start
        )
        return self.path.with_name(f"{self.path.stem}_{stamp}{self.path.suffix}")

    def _archive_if_older(self, file_period: int) -> None:
        """A file left from an earlier period (we were down at midnight) is archived first."""
        if file_period < self._period(time.time()):
            self._move_to_archive(file_period)

    def _move_to_archive(self, period: int) -> None:
        target = self.archive_name(period)
        if target.exists():  # a restart within the period: keep appending, never overwrite
            with target.open("ab") as archive:
                archive.write(self.path.read_bytes())
            self.path.unlink()
        else:
            os.replace(self.path, target)
        self.log.info("log file rotated: %s -> %s", self.path.name, target.name)

    def _rotate_if_due(self) -> None:
        now_period = self._period(time.time())
        if now_period == self.period:
            return
        self.stream.close()
        if self.path.exists():
            self._move_to_archive(self.period)
        self.period = now_period
        self.stream = self.path.open("ab")

    def consume(self, messages: list[Message]) -> None:
        self._rotate_if_due()
        prefix = self.path.name
        lines = []
        for message in messages:
            text = message.payload.decode("utf-8", "backslashreplace").rstrip("\r\n")
            text = text.replace("\r", "\\r").replace("\n", "\\n")
            lines.append(f"{prefix} [{source_of(text)}]: {text}\n")
        self.stream.write("".join(lines).encode())
        self.stream.flush()
        self.context.saw_data_at(time.time())

    def render(self) -> None:
        """No plot: the clock only rotates the file at midnight, also when the log is quiet."""
        self._rotate_if_due()


def register(subparsers: argparse._SubParsersAction) -> None:
    register_monitor(subparsers, MSGDumper)
