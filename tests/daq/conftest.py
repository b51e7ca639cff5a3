"""Testdata messages of every km3net-testdata DAQ file, split with our file readers."""

from __future__ import annotations

from functools import cache

import km3net_testdata
import pytest

from km3mon.daq.files import RecordedMessage, iter_file

#: km3net-testdata DAQ files and the number of messages each holds.
DAQ_FILES = {
    "IO_EVT.dat": 3,
    "IO_EVT_legacy.dat": 38,
    "IO_SUM.dat": 3,
    "IO_SUM_legacy.dat": 81,
    "IO_MONIT.dat": 6,
    "IO_TSSN.dat": 3,
    "IO_TSL1_1003.dat": 10,
    "IO_TSL0_legacy.dat": 1,
    "IO_TSL1_legacy.dat": 1,
    "IO_TSL2_legacy.dat": 1,
}


def data_path(name: str) -> str:
    return km3net_testdata.data_path(f"daq/{name}")


@cache
def messages(name: str) -> tuple[RecordedMessage, ...]:
    return tuple(iter_file(data_path(name)))


def all_messages() -> list[tuple[str, int, RecordedMessage]]:
    return [(name, i, m) for name in DAQ_FILES for i, m in enumerate(messages(name))]


def message_params() -> list:
    return [pytest.param(m, id=f"{name}#{i}") for name, i, m in all_messages()]
