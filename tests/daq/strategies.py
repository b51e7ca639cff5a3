"""Hypothesis strategies for DAQ objects, and an equality that understands numpy fields."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from hypothesis import strategies as st

from km3mon.daq import DAQHeader, Event, LogMessage, MonitoringPacket, Summaryslice, Timeslice
from km3mon.daq.event import SNAPSHOT_HIT_DTYPE, TRIGGERED_HIT_DTYPE
from km3mon.daq.monitoring import CODE_BY_VERSION
from km3mon.daq.summaryslice import FRAME_DTYPE, LEGACY_FRAME_DTYPE
from km3mon.daq.timeslice import DATA_TYPES, HIT_WIRE_DTYPE, HITS_DTYPE
from km3mon.daq.timeslice import FRAME_DTYPE as TIMESLICE_FRAME_DTYPE

INT32 = st.integers(-(2**31), 2**31 - 1)
UINT32 = st.integers(0, 2**32 - 1)
UINT16 = st.integers(0, 2**16 - 1)
FLOAT32 = st.floats(width=32, allow_nan=False)
MAX_RECORDS = 40

headers = st.builds(
    DAQHeader, INT32, INT32, INT32, st.integers(0, 2**31 - 1), UINT32, st.integers(0, 1)
)


def exactly(dtype: np.dtype, count: int) -> st.SearchStrategy[np.ndarray]:
    """Arrays of ``count`` records of arbitrary bytes (every bit pattern is valid on the wire)."""
    size = count * dtype.itemsize
    return st.binary(min_size=size, max_size=size).map(lambda raw: np.frombuffer(raw, dtype).copy())


def records(dtype: np.dtype) -> st.SearchStrategy[np.ndarray]:
    return st.integers(0, MAX_RECORDS).flatmap(lambda count: exactly(dtype, count))


def _legacy_safe(header: DAQHeader, version: int | None, class_version: int) -> bool:
    """A legacy object whose det_id low half equals the class version is ambiguous on the wire."""
    return version is not None or header.det_id & 0xFFFF != class_version


@st.composite
def events(draw: st.DrawFn) -> Event:
    version = draw(st.sampled_from([4, None]))
    header = draw(headers.filter(lambda h: _legacy_safe(h, version, 4)))
    return Event(
        header,
        draw(st.integers(0, 2**64 - 1)),
        draw(st.integers(0, 2**64 - 1)),
        draw(UINT32),
        draw(records(TRIGGERED_HIT_DTYPE)),
        draw(records(SNAPSHOT_HIT_DTYPE)),
        version,
    )


@st.composite
def summaryslices(draw: st.DrawFn) -> Summaryslice:
    version = draw(st.sampled_from([6, None]))
    header = draw(headers.filter(lambda h: _legacy_safe(h, version, 6)))
    if version is None:
        legacy = draw(records(LEGACY_FRAME_DTYPE))
        frames = np.zeros(len(legacy), FRAME_DTYPE)
        for name in LEGACY_FRAME_DTYPE.names:
            frames[name] = legacy[name]
    else:
        frames = draw(records(FRAME_DTYPE))
    return Summaryslice(header, frames, version)


@st.composite
def timeslices(draw: st.DrawFn) -> Timeslice:
    data_type = draw(st.sampled_from(DATA_TYPES))
    version = draw(st.sampled_from([4 if data_type == 1001 else 1, None]))
    header = draw(headers.filter(lambda h: _legacy_safe(h, version, 4 if data_type == 1001 else 1)))
    n_hits = draw(st.lists(st.integers(0, 12), max_size=8))
    frames = draw(exactly(TIMESLICE_FRAME_DTYPE, len(n_hits)))
    frames["n_hits"] = n_hits
    wire = draw(exactly(HIT_WIRE_DTYPE, sum(n_hits)))
    hits = np.empty(len(wire), HITS_DTYPE)
    hits["dom_id"] = np.repeat(frames["dom_id"], n_hits)
    for name in HIT_WIRE_DTYPE.names:
        hits[name] = wire[name]
    return Timeslice(data_type, header, frames, hits, version)


@st.composite
def monitoring_packets(draw: st.DrawFn) -> MonitoringPacket:
    version = draw(st.sampled_from([1, 2, 3]))
    flags = draw(UINT32) & ~0b1110 | CODE_BY_VERSION[version] << 1
    vector = st.tuples(FLOAT32, FLOAT32, FLOAT32)
    counts = draw(st.lists(UINT32, min_size=31, max_size=31))
    return MonitoringPacket(
        *draw(st.tuples(UINT32, UINT32, UINT32, UINT32, UINT32)),
        dom_status=draw(st.tuples(UINT32, UINT32, UINT32, UINT32)),
        hit_counts=np.array(counts, np.uint32),
        hrv=draw(UINT32),
        flags=flags,
        yaw=draw(FLOAT32),
        pitch=draw(FLOAT32),
        roll=draw(FLOAT32),
        A=draw(vector),
        G=draw(vector),
        H=draw(vector),
        temperature=draw(UINT16),
        humidity=draw(UINT16),
        tdc_full=draw(UINT32),
        aes_full=draw(UINT32),
        flush_count=draw(UINT32),
        ts_duration=draw(UINT32) if version >= 2 else None,
        tdc_supertime_fifo_size=draw(UINT16) if version >= 3 else None,
        aes_supertime_fifo_size=draw(UINT16) if version >= 3 else None,
        trailer=draw(st.binary(max_size=8)),
    )


log_messages = st.builds(LogMessage, st.text())

daq_objects = st.one_of(events(), summaryslices(), timeslices(), monitoring_packets(), log_messages)


def same(a: Any, b: Any) -> bool:
    """Equality through dataclass fields, numpy arrays (by value and field) and tuples."""
    if dataclasses.is_dataclass(a):
        return type(a) is type(b) and all(
            same(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a)
        )
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        if a.dtype.names:
            return a.dtype.names == b.dtype.names and all(
                np.array_equal(a[name], b[name]) for name in a.dtype.names
            )
        return np.array_equal(a, b)
    if isinstance(a, tuple | list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return a == b
