"""Pieces shared by every JDAQ payload: preamble, class version and DAQ header.

A JDAQ payload (``IO_EVT``, ``IO_SUM``, ``IO_TSL0/1/2``, ``IO_TSSN``) is little-endian and tightly
packed. It opens with an 8-byte *preamble*: int32 ``length`` of the whole object including the
preamble, int32 ``data_type`` (10001 event, 2001 summaryslice, 1001-1005 timeslices, 101 the
superframe nested in a timeslice). Current data (Jpp >= v13) put an int16 *class version* right
after the top-level preamble (event 4, summaryslice 6, L0/L1/L2/SN timeslice 1, generic
timeslice 4); legacy data have no version, which is detected from the layout, not guessed.

The 20-byte *DAQ header* (chronometer) follows: int32 detector id, int32 run, int32 frame index
(one unit = one 100 ms timeslice), uint32 UTC seconds whose bit 31 is the White Rabbit status
flag, uint32 count of 16 ns cycles since that second.

The helpers below check every read against the payload size *before* touching memory, so a
corrupt count or length can never make us allocate more than the payload itself.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any, NamedTuple, TypeVar

import numpy as np

from km3mon.daq.errors import DAQFormatError

T = TypeVar("T")

PREAMBLE = struct.Struct("<ii")
VERSION = struct.Struct("<h")
HEADER = struct.Struct("<iiiII")
COUNT = struct.Struct("<i")

#: Preamble ``data_type`` codes (km3net-dataformat ``daqdatatypes``).
DAQSUPERFRAME = 101
DAQTIMESLICE = 1001
DAQTIMESLICEL0 = 1002
DAQTIMESLICEL1 = 1003
DAQTIMESLICEL2 = 1004
DAQTIMESLICESN = 1005
DAQSUMMARYSLICE = 2001
DAQEVENT = 10001

#: Top-level data type -> ControlHost tag. Type 1001 (generic, "erroneous" timeslice) has no
#: ligier tag of its own; ``IO_TSL`` names it in recordings and ``km3mon inspect``.
TAG_BY_DATA_TYPE: dict[int, str] = {
    DAQEVENT: "IO_EVT",
    DAQSUMMARYSLICE: "IO_SUM",
    DAQTIMESLICE: "IO_TSL",
    DAQTIMESLICEL0: "IO_TSL0",
    DAQTIMESLICEL1: "IO_TSL1",
    DAQTIMESLICEL2: "IO_TSL2",
    DAQTIMESLICESN: "IO_TSSN",
}

#: Class version written after the top-level preamble in the current format.
CLASS_VERSION: dict[int, int] = {
    DAQEVENT: 4,
    DAQSUMMARYSLICE: 6,
    DAQTIMESLICE: 4,
    DAQTIMESLICEL0: 1,
    DAQTIMESLICEL1: 1,
    DAQTIMESLICEL2: 1,
    DAQTIMESLICESN: 1,
}

WR_BIT = 31
UTC_SECONDS_MASK = (1 << WR_BIT) - 1
NS_PER_CYCLE = 16


class DAQHeader(NamedTuple):
    """Detector, run and time of a JDAQ object (a tuple: cheap to build, compare and hash).

    ``wr_status`` is bit 31 of the UTC word as written (KM3io.jl documents 0 as "White Rabbit
    synchronised"; the polarity is not confirmed by data).
    """

    det_id: int
    run: int
    frame_index: int
    utc_seconds: int
    utc_16ns_cycles: int
    wr_status: int = 0

    @property
    def utc_ns(self) -> int:
        """Nanoseconds since ``utc_seconds`` (start of the timeslice)."""
        return self.utc_16ns_cycles * NS_PER_CYCLE

    @property
    def timestamp(self) -> float:
        """UTC time in seconds (float), for display and time spans."""
        return self.utc_seconds + self.utc_ns * 1e-9

    def summary(self) -> dict[str, Any]:
        return {
            "det_id": self.det_id,
            "run": self.run,
            "frame_index": self.frame_index,
            "utc_seconds": self.utc_seconds,
            "utc_ns": self.utc_ns,
        }


_new_tuple = tuple.__new__


def need(payload: bytes, offset: int, size: int, what: str) -> None:
    """Raise unless ``size`` bytes are available at ``offset``."""
    if size < 0 or offset + size > len(payload):
        raise DAQFormatError(
            f"{what}: needs {size} bytes at offset {offset}, "
            f"payload has {len(payload) - offset} left (of {len(payload)})"
        )


def unpack(fmt: struct.Struct, payload: bytes, offset: int, what: str) -> tuple[Any, ...]:
    """``fmt.unpack_from`` with a bounds check that names the field."""
    need(payload, offset, fmt.size, what)
    return fmt.unpack_from(payload, offset)


def read_count(payload: bytes, offset: int, itemsize: int, what: str) -> int:
    """Read an int32 element count and check that the elements fit into the payload."""
    (count,) = unpack(COUNT, payload, offset, f"{what} count")
    available = (len(payload) - offset - COUNT.size) // itemsize
    if not 0 <= count <= available:
        raise DAQFormatError(
            f"{what} count {count} at offset {offset} does not fit: "
            f"at most {available} records of {itemsize} bytes remain"
        )
    return count


def read_preamble(payload: bytes, what: str, data_types: tuple[int, ...]) -> tuple[int, int]:
    """Check the preamble of a top-level payload; return ``(length, data_type)``."""
    length, data_type = unpack(PREAMBLE, payload, 0, f"{what} preamble")
    if data_type not in data_types:
        raise DAQFormatError(f"{what}: data type {data_type} at offset 4, expected {data_types}")
    if length != len(payload):
        raise DAQFormatError(
            f"{what}: preamble length {length} at offset 0 != payload size {len(payload)}"
        )
    return length, data_type


def read_header(payload: bytes, offset: int, what: str) -> DAQHeader:
    return header_from_words(*unpack(HEADER, payload, offset, f"{what} header"))


def header_from_words(
    det_id: int, run: int, frame_index: int, utc_raw: int, cycles: int
) -> DAQHeader:
    """The header from its five words as written (White Rabbit flag in bit 31 of ``utc_raw``)."""
    words = (det_id, run, frame_index, utc_raw & UTC_SECONDS_MASK, cycles, utc_raw >> WR_BIT)
    return _new_tuple(DAQHeader, words)  # skips NamedTuple's argument parsing: 3x faster


def pack_header(header: DAQHeader) -> bytes:
    if not 0 <= header.utc_seconds <= UTC_SECONDS_MASK or header.wr_status not in (0, 1):
        raise DAQFormatError(
            f"header: utc_seconds {header.utc_seconds} needs 31 bits and wr_status "
            f"{header.wr_status} one bit"
        )
    try:
        return HEADER.pack(
            header.det_id,
            header.run,
            header.frame_index,
            header.utc_seconds | header.wr_status << WR_BIT,
            header.utc_16ns_cycles,
        )
    except struct.error as exc:
        raise DAQFormatError(f"header: {exc}") from None


def pack_start(data_type: int, length: int, version: int | None, header: DAQHeader) -> bytes:
    """Preamble, optional class version (``None`` = legacy) and header of a top-level object."""
    try:
        start = PREAMBLE.pack(length, data_type)
        if version is not None:
            start += VERSION.pack(version)
    except struct.error as exc:
        raise DAQFormatError(f"preamble: {exc}") from None
    return start + pack_header(header)


def body_offset(version: int | None) -> int:
    """Offset of the DAQ header: after the preamble and, unless legacy, the class version."""
    return PREAMBLE.size + (0 if version is None else VERSION.size)


def as_records(array: Any, dtype: np.dtype, what: str) -> np.ndarray:
    """``array`` as contiguous records of the wire ``dtype``, copying fields by name.

    Accepts the wire arrays our decoders return (no copy) and any array with at least the
    named fields (e.g. a hits table with extra columns).
    """
    if isinstance(array, np.ndarray) and array.dtype == dtype and array.flags.c_contiguous:
        return array
    try:
        array = np.asarray(array)
        records = np.empty(array.shape[0] if array.ndim else 0, dtype)
        for name in dtype.names:
            records[name] = array[name]
    except (ValueError, TypeError, KeyError, IndexError, OverflowError) as exc:
        raise DAQFormatError(f"{what}: cannot convert to {dtype.descr}: {exc}") from None
    return records


def decode_versioned(
    payload: bytes,
    what: str,
    data_types: tuple[int, ...],
    parse: Callable[[bytes, int | None, int], T],
) -> T:
    """Decode the current layout if the class version says so, else (or if that fails) legacy.

    ``parse(payload, version, data_type)`` must check that the layout ends exactly at the
    preamble length; the first layout that does wins (legacy files carry no version, their
    bytes 8-9 are the low half of the detector id).
    """
    _, data_type = read_preamble(payload, what, data_types)
    (version,) = unpack(VERSION, payload, PREAMBLE.size, f"{what} version")
    candidates = (version, None) if version == CLASS_VERSION[data_type] else (None,)
    problems = []
    for candidate in candidates:
        try:
            return parse(payload, candidate, data_type)
        except DAQFormatError as exc:
            layout = "legacy layout" if candidate is None else f"version {candidate} layout"
            problems.append(f"{layout}: {exc}")
    if version != CLASS_VERSION[data_type]:
        problems.insert(0, f"version {version} at offset 8 is not {CLASS_VERSION[data_type]}")
    raise DAQFormatError(f"{what}: " + "; ".join(problems))


def records_at(buf: bytes, offsets: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Copies of the ``dtype`` records that start at byte ``offsets`` of ``buf`` (any alignment).

    A view with a stride of one byte has a record at every offset; fancy indexing copies the
    wanted ones into one contiguous array. Indexing raw ``void`` records and viewing the result
    is several times faster than indexing the structured dtype. Callers check the offsets.
    """
    positions = len(buf) - dtype.itemsize + 1
    if positions <= 0:
        return np.empty(0, dtype)
    raw = np.dtype((np.void, dtype.itemsize))
    return np.ndarray((positions,), raw, buffer=buf, strides=(1,))[offsets].view(dtype)


def records_in_blocks(
    buf: bytes, first: np.ndarray, counts: np.ndarray, dtype: np.dtype
) -> np.ndarray:
    """All records of back-to-back runs: ``counts[i]`` records from byte ``first[i]`` on."""
    before = np.cumsum(counts) - counts
    index = np.arange(before[-1] + counts[-1] if len(counts) else 0) - np.repeat(before, counts)
    return records_at(buf, np.repeat(first, counts) + dtype.itemsize * index, dtype)
