"""Timeslices (``IO_TSL0/1/2``, ``IO_TSSN``; data types 1001-1005): all hits of 100 ms.

After the preamble, the int16 class version (1; 4 for the generic type 1001; absent in legacy
data) and the DAQ header comes an int32 frame count and that many variable-length
*superframes*, one per DOM. A superframe has its own preamble (length ``56 + 6 n_hits``, type
101, no class version), a copy of the DAQ header, int32 DOM id, the five status words of a summary
frame (``daq``, ``status``, ``fifo``, two spares), int32 ``n_hits`` and the hits: uint8 channel,
uint32 **big-endian** TDC time in ns, uint8 ToT in ns (6 bytes). Hits are time ordered per
channel, not per DOM.

Our own parser instead of km3pipe's ``TimesliceParser``: one short loop over superframes to find
them, then a single numpy gather of all headers and all hits (km3pipe unpacks hit by hit).
:func:`locate_frames` stops before the hits: the frame table and where each frame's hits start,
for consumers (the K40 counter) that read the 6-byte hits straight from the payload.

Status words (``docs/timeslices.md`` §2): ``status`` bit 31 is the White Rabbit (time sync) bit,
bits 0-30 the high-rate veto per channel; ``fifo`` bit 31 says the UDP trailer arrived; ``daq``
holds the number of UDP packets received (bits 0-15) and the highest sequence number (bits
16-31). A frame's data are complete when received = highest + 1 and the trailer is there
(:func:`frames_complete`).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from km3mon.daq.errors import DAQFormatError
from km3mon.daq.preamble import (
    COUNT,
    DAQSUPERFRAME,
    DAQTIMESLICE,
    DAQTIMESLICEL0,
    DAQTIMESLICEL1,
    DAQTIMESLICEL2,
    DAQTIMESLICESN,
    HEADER,
    TAG_BY_DATA_TYPE,
    DAQHeader,
    as_records,
    body_offset,
    decode_versioned,
    pack_start,
    read_count,
    read_header,
    records_at,
    records_in_blocks,
)
from km3mon.daq.summaryslice import UDP_COUNT_BITS, UDP_TRAILER_BIT, WHITE_RABBIT_BIT

DATA_TYPES = (DAQTIMESLICE, DAQTIMESLICEL0, DAQTIMESLICEL1, DAQTIMESLICEL2, DAQTIMESLICESN)
DATA_TYPE_BY_TAG = {TAG_BY_DATA_TYPE[data_type]: data_type for data_type in DATA_TYPES}

#: A superframe's fixed part as written (preamble included).
SUPERFRAME_DTYPE = np.dtype(
    [
        ("length", "<i4"),
        ("data_type", "<i4"),
        ("det_id", "<i4"),
        ("run", "<i4"),
        ("frame_index", "<i4"),
        ("utc_raw", "<u4"),
        ("utc_16ns_cycles", "<u4"),
        ("dom_id", "<i4"),
        ("daq", "<u4"),
        ("status", "<u4"),
        ("fifo", "<u4"),
        ("status_3", "<u4"),
        ("status_4", "<u4"),
        ("n_hits", "<i4"),
    ]
)
#: Per-frame table: the superframe without its preamble (``utc_raw`` keeps the WR bit 31).
FRAME_DTYPE = np.dtype([(name, SUPERFRAME_DTYPE[name]) for name in SUPERFRAME_DTYPE.names[2:]])
HIT_WIRE_DTYPE = np.dtype([("channel", "u1"), ("time_ns", ">u4"), ("tot", "u1")])
HITS_DTYPE = np.dtype([("dom_id", "<i4"), ("channel", "u1"), ("time_ns", "<u4"), ("tot", "u1")])

_FRAME_LAYOUT = struct.Struct("<ii")  # superframe length and type
_N_HITS_OFFSET = SUPERFRAME_DTYPE.fields["n_hits"][1]


@dataclass(eq=False, slots=True)
class TimesliceFrames:
    """A timeslice's frame table and, per frame, the payload offset of its first hit."""

    data_type: int
    header: DAQHeader
    frames: np.ndarray = field(repr=False)
    hit_offsets: np.ndarray = field(repr=False)
    version: int | None = 1

    @property
    def tag(self) -> str:
        return TAG_BY_DATA_TYPE[self.data_type]


@dataclass(eq=False, slots=True)
class Timeslice:
    """One timeslice: a :data:`FRAME_DTYPE` row per DOM and all hits (:data:`HITS_DTYPE`).

    ``hits`` are in frame order; frame *i* owns ``frames["n_hits"][i]`` consecutive hits.
    """

    data_type: int
    header: DAQHeader
    frames: np.ndarray = field(repr=False)
    hits: np.ndarray = field(repr=False)
    version: int | None = 1

    @property
    def tag(self) -> str:
        return TAG_BY_DATA_TYPE[self.data_type]

    def summary(self) -> dict[str, Any]:
        return {**self.header.summary(), "n_frames": len(self.frames), "n_hits": len(self.hits)}


def decode_timeslice(payload: bytes) -> Timeslice:
    """Decode one timeslice payload of any of the types 1001-1005 (current or legacy)."""
    return decode_versioned(payload, "timeslice", DATA_TYPES, _parse_timeslice)


def locate_frames(payload: bytes) -> TimesliceFrames:
    """The frame table of one timeslice payload and where each frame's hits start (checked)."""
    return decode_versioned(payload, "timeslice", DATA_TYPES, _locate_frames)


def frames_white_rabbit(frames: np.ndarray) -> np.ndarray:
    """Per frame: White Rabbit time sync valid (``status`` bit 31)."""
    return (frames["status"] >> WHITE_RABBIT_BIT).astype(bool)


def frames_complete(frames: np.ndarray) -> np.ndarray:
    """Per frame: all UDP packets arrived (received = highest sequence + 1) and the trailer."""
    received = frames["daq"] & ((1 << UDP_COUNT_BITS) - 1)
    trailer = (frames["fifo"] >> UDP_TRAILER_BIT).astype(bool)
    return (received == (frames["daq"] >> UDP_COUNT_BITS) + 1) & trailer


def _parse_timeslice(payload: bytes, version: int | None, data_type: int) -> Timeslice:
    located = _locate_frames(payload, version, data_type)
    frames = located.frames
    n_hits = frames["n_hits"].astype(np.int64)
    wire = records_in_blocks(payload, located.hit_offsets, n_hits, HIT_WIRE_DTYPE)
    hits = np.empty(len(wire), HITS_DTYPE)
    hits["dom_id"] = np.repeat(frames["dom_id"], n_hits)
    for name in HIT_WIRE_DTYPE.names:
        hits[name] = wire[name]
    return Timeslice(data_type, located.header, frames, hits, version)


def _locate_frames(payload: bytes, version: int | None, data_type: int) -> TimesliceFrames:
    offset = body_offset(version)
    header = read_header(payload, offset, "timeslice")
    offset += HEADER.size
    n_frames = read_count(payload, offset, SUPERFRAME_DTYPE.itemsize, "superframes")
    offset += COUNT.size
    starts = np.empty(n_frames, np.int64)
    for index in range(n_frames):
        if offset + SUPERFRAME_DTYPE.itemsize > len(payload):
            raise DAQFormatError(f"superframe {index} at offset {offset} is truncated")
        length, frame_type = _FRAME_LAYOUT.unpack_from(payload, offset)
        (n_hits,) = COUNT.unpack_from(payload, offset + _N_HITS_OFFSET)
        expected = SUPERFRAME_DTYPE.itemsize + HIT_WIRE_DTYPE.itemsize * n_hits
        if frame_type != DAQSUPERFRAME or n_hits < 0 or length != expected:
            raise DAQFormatError(
                f"superframe {index} at offset {offset}: type {frame_type}, length {length}, "
                f"{n_hits} hits (expected type {DAQSUPERFRAME}, length 56 + 6 * hits)"
            )
        starts[index] = offset
        offset += length
    if offset != len(payload):
        raise DAQFormatError(f"{n_frames} superframes end at offset {offset}, not {len(payload)}")

    superframes = records_at(payload, starts, SUPERFRAME_DTYPE)
    frames = as_records(superframes, FRAME_DTYPE, "superframes")
    return TimesliceFrames(data_type, header, frames, starts + SUPERFRAME_DTYPE.itemsize, version)


def encode_timeslice(timeslice: Timeslice) -> bytes:
    """The payload of ``timeslice`` (legacy layout if ``version`` is None)."""
    frames = as_records(timeslice.frames, FRAME_DTYPE, "timeslice frames")
    hits = as_records(timeslice.hits, HIT_WIRE_DTYPE, "timeslice hits")
    n_hits = frames["n_hits"].astype(np.int64)
    if (n_hits < 0).any() or n_hits.sum() != len(hits):
        raise DAQFormatError(
            f"timeslice frames announce {n_hits.sum()} hits, {len(hits)} hits given"
        )
    if timeslice.data_type not in DATA_TYPES:
        raise DAQFormatError(f"timeslice data type {timeslice.data_type} not in {DATA_TYPES}")
    superframes = np.empty(len(frames), SUPERFRAME_DTYPE)
    superframes["length"] = SUPERFRAME_DTYPE.itemsize + HIT_WIRE_DTYPE.itemsize * n_hits
    superframes["data_type"] = DAQSUPERFRAME
    for name in FRAME_DTYPE.names:
        superframes[name] = frames[name]
    hit_bytes = hits.tobytes()
    ends = np.cumsum(n_hits) * HIT_WIRE_DTYPE.itemsize
    parts = []
    starts = ends - n_hits * HIT_WIRE_DTYPE.itemsize
    for superframe, start, end in zip(superframes, starts, ends, strict=True):
        parts += (superframe.tobytes(), hit_bytes[start:end])
    body = b"".join(parts)
    length = body_offset(timeslice.version) + HEADER.size + COUNT.size + len(body)
    start = pack_start(timeslice.data_type, length, timeslice.version, timeslice.header)
    return b"".join((start, COUNT.pack(len(frames)), body))
