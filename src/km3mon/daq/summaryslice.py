"""Summary slices (``IO_SUM``, JDAQSummaryslice, data type 2001): per-DOM rates every 100 ms.

After the preamble, the int16 class version (6) and the DAQ header comes an int32 frame count
and that many 55-byte summary frames, without padding: int32 DOM id, uint32 ``daq`` word (bits
16-31 highest UDP sequence number, bits 0-15 number of UDP packets received), uint32 ``status``
(bit *i* = high-rate veto on channel *i*, bit 31 = White Rabbit OK), uint32 ``fifo`` (bit *i* =
FIFO almost full on channel *i*, bit 31 = UDP trailer received), two spare uint32 words, and 31
rate bytes, one per channel.

A rate byte ``v`` is **unsigned**: 0 means "no rate", else ``rate = 2 kHz * 1000**(v / 255)``
(2 kHz .. 2 MHz, 2.7 % steps). km3pipe reads it as signed and gets every rate above 64 kHz wrong.

Legacy slices (2016 data) have no class version and 39-byte frames: DOM id, one status word
(HRV bits and bit 31 as above), 31 rate bytes. They decode into the same frame table with the
missing words set to zero.

Our own parser instead of km3pipe's ``DAQSummaryslice``: one zero-copy view of all frames and a
lookup table for the rates instead of a Python ``exp`` per byte; legacy frames decoded correctly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from km3mon.daq.errors import DAQFormatError
from km3mon.daq.preamble import (
    CLASS_VERSION,
    COUNT,
    DAQSUMMARYSLICE,
    HEADER,
    DAQHeader,
    as_records,
    body_offset,
    decode_versioned,
    pack_start,
    read_count,
    read_header,
)

TAG = "IO_SUM"
N_CHANNELS = 31

MIN_RATE_HZ = 2.0e3
MAX_RATE_HZ = 2.0e6
RATE_STEP = math.log(MAX_RATE_HZ / MIN_RATE_HZ) / 255  # ln(rate) per unit of the rate byte

#: Rate byte -> Hz for all 256 values.
RATES_HZ_LUT = np.where(np.arange(256) == 0, 0.0, MIN_RATE_HZ * np.exp(RATE_STEP * np.arange(256)))

#: Status bits shared by the top bit of the ``status`` and ``fifo`` words.
WHITE_RABBIT_BIT = 31
UDP_TRAILER_BIT = 31
UDP_COUNT_BITS = 16

FRAME_DTYPE = np.dtype(
    [
        ("dom_id", "<i4"),
        ("daq", "<u4"),
        ("status", "<u4"),
        ("fifo", "<u4"),
        ("status_3", "<u4"),
        ("status_4", "<u4"),
        ("rates", "u1", (N_CHANNELS,)),
    ]
)
LEGACY_FRAME_DTYPE = np.dtype(
    [("dom_id", "<i4"), ("status", "<u4"), ("rates", "u1", (N_CHANNELS,))]
)
_LEGACY_ABSENT = ("daq", "fifo", "status_3", "status_4")

_CHANNEL_BITS = np.uint32(1) << np.arange(N_CHANNELS, dtype=np.uint32)


def rates_to_hz(rate_bytes: np.ndarray) -> np.ndarray:
    """Rate bytes (any shape, uint8) to Hz."""
    return RATES_HZ_LUT[rate_bytes]


def hz_to_rates(rates_hz: np.ndarray) -> np.ndarray:
    """Inverse of :func:`rates_to_hz` (nearest byte; <= 2 kHz -> 0, >= 2 MHz -> 255)."""
    rates_hz = np.asarray(rates_hz, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        steps = np.floor(np.log(rates_hz / MIN_RATE_HZ) / RATE_STEP + 0.5)
    return np.where(rates_hz <= MIN_RATE_HZ, 0, np.clip(steps, 0, 255)).astype(np.uint8)


def channel_bits(words: np.ndarray) -> np.ndarray:
    """Bits 0-30 of each uint32 word as a boolean ``(n, 31)`` array (column = channel)."""
    return (np.asarray(words, dtype=np.uint32)[..., None] & _CHANNEL_BITS) != 0


def channel_word(bits: np.ndarray) -> np.ndarray:
    """Inverse of :func:`channel_bits`: ``(n, 31)`` booleans to uint32 words (bit 31 clear)."""
    return (np.asarray(bits, dtype=bool) * _CHANNEL_BITS).sum(axis=-1, dtype=np.uint32)


@dataclass(eq=False, slots=True)
class Summaryslice:
    """One summary slice; ``frames`` is a :data:`FRAME_DTYPE` view (read-only when decoded).

    ``version`` is the class version (6), ``None`` for legacy data.
    """

    header: DAQHeader
    frames: np.ndarray = field(repr=False)
    version: int | None = CLASS_VERSION[DAQSUMMARYSLICE]

    @property
    def dom_ids(self) -> np.ndarray:
        return self.frames["dom_id"]

    @property
    def rates_hz(self) -> np.ndarray:
        """PMT rates in Hz, ``(n_frames, 31)``."""
        return rates_to_hz(self.frames["rates"])

    @property
    def hrv(self) -> np.ndarray:
        """High-rate veto per PMT, ``(n_frames, 31)`` booleans."""
        return channel_bits(self.frames["status"])

    @property
    def fifo_full(self) -> np.ndarray:
        """FIFO almost full per PMT, ``(n_frames, 31)`` booleans."""
        return channel_bits(self.frames["fifo"])

    @property
    def white_rabbit(self) -> np.ndarray:
        """White Rabbit synchronised, per frame."""
        return (self.frames["status"] >> WHITE_RABBIT_BIT).astype(bool)

    @property
    def udp_trailer(self) -> np.ndarray:
        """UDP trailer received, per frame."""
        return (self.frames["fifo"] >> UDP_TRAILER_BIT).astype(bool)

    @property
    def udp_packets_received(self) -> np.ndarray:
        return self.frames["daq"] & ((1 << UDP_COUNT_BITS) - 1)

    @property
    def udp_max_sequence(self) -> np.ndarray:
        return self.frames["daq"] >> UDP_COUNT_BITS

    @property
    def complete(self) -> np.ndarray:
        """Per frame: all UDP packets of the timeslice arrived, trailer included."""
        return (self.udp_packets_received == self.udp_max_sequence + 1) & self.udp_trailer

    def summary(self) -> dict[str, Any]:
        return {**self.header.summary(), "n_frames": len(self.frames)}


def decode_summaryslice(payload: bytes) -> Summaryslice:
    """Decode one ``IO_SUM`` payload (current 55-byte or legacy 39-byte frames)."""
    return decode_versioned(payload, TAG, (DAQSUMMARYSLICE,), _parse_summaryslice)


def _parse_summaryslice(payload: bytes, version: int | None, _data_type: int) -> Summaryslice:
    offset = body_offset(version)
    header = read_header(payload, offset, TAG)
    offset += HEADER.size
    dtype = LEGACY_FRAME_DTYPE if version is None else FRAME_DTYPE
    n_frames = read_count(payload, offset, dtype.itemsize, "summary frames")
    offset += COUNT.size
    end = offset + n_frames * dtype.itemsize
    if end != len(payload):
        raise DAQFormatError(f"{n_frames} frames end at offset {end}, not {len(payload)}")
    frames = np.frombuffer(payload, dtype, n_frames, offset)
    if version is None:
        legacy, frames = frames, np.zeros(n_frames, FRAME_DTYPE)
        for name in LEGACY_FRAME_DTYPE.names:
            frames[name] = legacy[name]
    return Summaryslice(header, frames, version)


def encode_summaryslice(summaryslice: Summaryslice) -> bytes:
    """The ``IO_SUM`` payload (legacy frames if ``version`` is None)."""
    frames = as_records(summaryslice.frames, FRAME_DTYPE, "summary frames")
    if summaryslice.version is None:
        if any(frames[name].any() for name in _LEGACY_ABSENT):
            raise DAQFormatError(f"legacy summary frames cannot carry {_LEGACY_ABSENT}")
        frames = as_records(frames, LEGACY_FRAME_DTYPE, "legacy summary frames")
    length = body_offset(summaryslice.version) + HEADER.size + COUNT.size + frames.nbytes
    return b"".join(
        (
            pack_start(DAQSUMMARYSLICE, length, summaryslice.version, summaryslice.header),
            COUNT.pack(len(frames)),
            frames.tobytes(),
        )
    )
