"""CLB monitoring packets (``IO_MONIT``, "TMCH"): one UDP datagram per DOM every 100 ms.

The payload is the raw datagram, **big-endian** throughout and packed, with no JDAQ preamble:
ASCII ``TMCH``, uint32 run, UDP sequence number, UTC seconds, 16 ns cycles, DOM id, four DOM
status words, 31 uint32 hit counts per 100 ms (so ``rate_Hz = 10 * count``), uint32 high-rate
veto bitmap (bit *i* = channel *i*), uint32 flags (bit 0 AHRS valid, bits 1-3 structure version
code: 0 -> v1, 1 -> v2, 3 -> v3), float32 yaw, pitch, roll (degrees), accelerometer A, gyroscope
G and magnetometer H (3 float32 each), uint16 temperature and humidity in hundredths (deg C,
%RH), uint32 TDC-full and AES-full bitmaps and flush count (v1 ends here: 236 bytes), uint32
timeslice duration (v2: 240 bytes), two uint16 supertime FIFO sizes (v3: 244 bytes).

Recorded packets are 244 bytes although their flags say v2; the length comes from the transport,
so bytes beyond the structure of the declared version are kept as ``trailer`` for an exact round
trip. The batch decoder reads all packets through one big-endian structured dtype over the joined
payloads -- no per-packet Python code -- which is why we do not use km3pipe's ``TMCHData``
(one ``struct.unpack`` per field per packet).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from km3mon.daq.errors import DAQFormatError
from km3mon.daq.summaryslice import N_CHANNELS, channel_bits

TAG = "IO_MONIT"
MAGIC = b"TMCH"
HIT_COUNT_TO_HZ = 10.0  # hit counts are per 100 ms
CENTI = 100.0  # temperature and humidity are sent in hundredths


PACKET_DTYPE = np.dtype(
    [
        ("data_type", "S4"),
        ("run", ">u4"),
        ("udp_sequence", ">u4"),
        ("utc_seconds", ">u4"),
        ("utc_16ns_cycles", ">u4"),
        ("dom_id", ">u4"),
        ("dom_status", ">u4", (4,)),
        ("hit_counts", ">u4", (N_CHANNELS,)),
        ("hrv", ">u4"),
        ("flags", ">u4"),
        ("yaw", ">f4"),
        ("pitch", ">f4"),
        ("roll", ">f4"),
        ("A", ">f4", (3,)),
        ("G", ">f4", (3,)),
        ("H", ">f4", (3,)),
        ("temperature", ">u2"),
        ("humidity", ">u2"),
        ("tdc_full", ">u4"),
        ("aes_full", ">u4"),
        ("flush_count", ">u4"),
        ("ts_duration", ">u4"),
        ("tdc_supertime_fifo_size", ">u2"),
        ("aes_supertime_fifo_size", ">u2"),
    ]
)

#: Structure version code (flags bits 1-3) -> version, and version -> datagram size.
VERSION_BY_CODE = {0: 1, 1: 2, 3: 3}
SIZE_BY_VERSION = {1: 236, 2: 240, 3: 244}
CODE_BY_VERSION = {version: code for code, version in VERSION_BY_CODE.items()}
AHRS_VALID_BIT = 0
_VERSION_SHIFT, _VERSION_MASK = 1, 0b111
#: Required size per version code; 0 marks an unknown code.
_SIZE_BY_CODE = np.array(
    [SIZE_BY_VERSION.get(VERSION_BY_CODE.get(code, 0), 0) for code in range(8)], np.int64
)

_V1 = struct.Struct(">4s5I4I31I2I3f3f3f3f2H3I")
_V2 = struct.Struct(">I")
_V3 = struct.Struct(">2H")


def structure_version(flags: int) -> int:
    """Structure version (1, 2, 3) from the flags word."""
    code = flags >> _VERSION_SHIFT & _VERSION_MASK
    if code not in VERSION_BY_CODE:
        raise DAQFormatError(f"TMCH flags 0x{flags:08x}: unknown structure version code {code}")
    return VERSION_BY_CODE[code]


def rates_hz(packets: np.ndarray) -> np.ndarray:
    """PMT rates in Hz, ``(n, 31)``, from a batch (or ``hit_counts`` of a packet)."""
    counts = packets["hit_counts"] if packets.dtype.names else packets
    return counts * HIT_COUNT_TO_HZ


def hrv_bits(packets: np.ndarray) -> np.ndarray:
    """High-rate veto per PMT, ``(n, 31)`` booleans."""
    return channel_bits(packets["hrv"])


def fifo_bits(packets: np.ndarray) -> np.ndarray:
    """TDC FIFO full per PMT, ``(n, 31)`` booleans (bit *i* of ``tdc_full``; inferred meaning)."""
    return channel_bits(packets["tdc_full"])


def temperature_c(packets: np.ndarray) -> np.ndarray:
    return packets["temperature"] / CENTI


def humidity_percent(packets: np.ndarray) -> np.ndarray:
    return packets["humidity"] / CENTI


@dataclass(eq=False, slots=True)
class MonitoringPacket:
    """One decoded TMCH datagram. ``temperature``/``humidity`` are raw hundredths."""

    run: int
    udp_sequence: int
    utc_seconds: int
    utc_16ns_cycles: int
    dom_id: int
    dom_status: tuple[int, int, int, int]
    hit_counts: np.ndarray = field(repr=False)
    hrv: int = 0
    flags: int = 0
    yaw: float = 0.0
    pitch: float = 0.0
    roll: float = 0.0
    A: tuple[float, float, float] = (0.0, 0.0, 0.0)
    G: tuple[float, float, float] = (0.0, 0.0, 0.0)
    H: tuple[float, float, float] = (0.0, 0.0, 0.0)
    temperature: int = 0
    humidity: int = 0
    tdc_full: int = 0
    aes_full: int = 0
    flush_count: int = 0
    ts_duration: int | None = None
    tdc_supertime_fifo_size: int | None = None
    aes_supertime_fifo_size: int | None = None
    trailer: bytes = b""

    @property
    def version(self) -> int:
        return structure_version(self.flags)

    @property
    def ahrs_valid(self) -> bool:
        return bool(self.flags >> AHRS_VALID_BIT & 1)

    @property
    def rates_hz(self) -> np.ndarray:
        return rates_hz(np.asarray(self.hit_counts))

    @property
    def hrv_bits(self) -> np.ndarray:
        return channel_bits(self.hrv)

    @property
    def fifo_bits(self) -> np.ndarray:
        return channel_bits(self.tdc_full)

    @property
    def temperature_c(self) -> float:
        return self.temperature / CENTI

    @property
    def humidity_percent(self) -> float:
        return self.humidity / CENTI

    @property
    def timestamp(self) -> float:
        return self.utc_seconds + self.utc_16ns_cycles * 16e-9

    def summary(self) -> dict[str, Any]:
        return {
            "run": self.run,
            "dom_id": self.dom_id,
            "utc_seconds": self.utc_seconds,
            "utc_ns": self.utc_16ns_cycles * 16,
            "version": self.version,
            "temperature_c": self.temperature_c,
            "humidity_percent": self.humidity_percent,
        }


def decode_monitoring(payload: bytes) -> MonitoringPacket:
    """Decode one ``IO_MONIT`` datagram."""
    if len(payload) < _V1.size:
        raise DAQFormatError(f"TMCH packet of {len(payload)} bytes, at least {_V1.size} needed")
    values = _V1.unpack_from(payload)
    if values[0] != MAGIC:
        raise DAQFormatError(f"TMCH packet starts with {values[0]!r} at offset 0, not {MAGIC!r}")
    flags = values[42]
    version = structure_version(flags)
    if len(payload) < SIZE_BY_VERSION[version]:
        raise DAQFormatError(
            f"TMCH v{version} packet (flags 0x{flags:08x} at offset 168) needs "
            f"{SIZE_BY_VERSION[version]} bytes, has {len(payload)}"
        )
    ts_duration = _V2.unpack_from(payload, _V1.size)[0] if version >= 2 else None
    fifo_sizes = _V3.unpack_from(payload, _V1.size + _V2.size) if version >= 3 else (None, None)
    return MonitoringPacket(
        *values[1:6],
        dom_status=values[6:10],
        hit_counts=np.array(values[10:41], np.uint32),
        hrv=values[41],
        flags=flags,
        yaw=values[43],
        pitch=values[44],
        roll=values[45],
        A=values[46:49],
        G=values[49:52],
        H=values[52:55],
        temperature=values[55],
        humidity=values[56],
        tdc_full=values[57],
        aes_full=values[58],
        flush_count=values[59],
        ts_duration=ts_duration,
        tdc_supertime_fifo_size=fifo_sizes[0],
        aes_supertime_fifo_size=fifo_sizes[1],
        trailer=payload[SIZE_BY_VERSION[version] :],
    )


def encode_monitoring(packet: MonitoringPacket) -> bytes:
    """The datagram of ``packet``: the structure of its version, then ``trailer``."""
    version = packet.version
    try:
        parts = [
            _V1.pack(
                MAGIC,
                packet.run,
                packet.udp_sequence,
                packet.utc_seconds,
                packet.utc_16ns_cycles,
                packet.dom_id,
                *packet.dom_status,
                *np.asarray(packet.hit_counts).tolist(),
                packet.hrv,
                packet.flags,
                packet.yaw,
                packet.pitch,
                packet.roll,
                *packet.A,
                *packet.G,
                *packet.H,
                packet.temperature,
                packet.humidity,
                packet.tdc_full,
                packet.aes_full,
                packet.flush_count,
            )
        ]
        if version >= 2:
            parts.append(_V2.pack(packet.ts_duration))
        if version >= 3:
            parts.append(_V3.pack(packet.tdc_supertime_fifo_size, packet.aes_supertime_fifo_size))
    except (struct.error, TypeError) as exc:
        raise DAQFormatError(f"TMCH v{version} packet of DOM {packet.dom_id}: {exc}") from None
    return b"".join((*parts, packet.trailer))


def decode_monitoring_batch(payloads: Sequence[bytes], *, skip_invalid: bool = False) -> np.ndarray:
    """Decode many ``IO_MONIT`` datagrams into one :data:`PACKET_DTYPE` array (big-endian).

    Packets of the usual common size are a zero-copy view of the joined payloads; shorter (v1,
    v2) packets are zero-padded, longer ones cut to 244 bytes. Invalid packets (wrong magic,
    unknown version code, too short for their version) raise :class:`DAQFormatError` naming the
    first one, or with ``skip_invalid`` are dropped (the caller counts and reports them:
    a warning per batch would flood the log under a stream of bad packets).
    """
    n = len(payloads)
    lengths = np.fromiter(map(len, payloads), np.int64, n)
    size = PACKET_DTYPE.itemsize
    if n and (lengths == size).all():
        packets = np.frombuffer(b"".join(payloads), PACKET_DTYPE)
    else:
        raw = np.zeros((n, size), np.uint8)
        for length in np.unique(lengths).tolist():
            rows = np.flatnonzero(lengths == length)
            joined = b"".join(payloads[row][:size] for row in rows.tolist())
            width = min(length, size)
            raw[rows, :width] = np.frombuffer(joined, np.uint8).reshape(len(rows), width)
        packets = raw.view(PACKET_DTYPE)[:, 0]
    code = packets["flags"] >> _VERSION_SHIFT & _VERSION_MASK
    required = _SIZE_BY_CODE[code]
    valid = (packets["data_type"] == MAGIC) & (required > 0) & (lengths >= required)
    if valid.all():
        return packets
    bad = np.flatnonzero(~valid)
    if skip_invalid:
        return packets[valid]
    first = int(bad[0])
    try:
        decode_monitoring(payloads[first])
    except DAQFormatError as exc:
        raise DAQFormatError(f"packet {first} of {n}: {exc}") from None
    raise DAQFormatError(f"packet {first} of {n}: invalid")


def new_packets(n: int, version: int = 3) -> np.ndarray:
    """``n`` zeroed packets with magic and version flags set, for simulators to fill in."""
    packets = np.zeros(n, PACKET_DTYPE)
    packets["data_type"] = MAGIC
    packets["flags"] = CODE_BY_VERSION[version] << _VERSION_SHIFT
    return packets


def encode_monitoring_batch(packets: np.ndarray, size: int | None = None) -> list[bytes]:
    """One datagram per row of a :data:`PACKET_DTYPE` array.

    Each datagram has the size of its structure version, or ``size`` bytes for all (at least
    the size of each version; bytes beyond 244 are zeros).
    """
    if packets.dtype != PACKET_DTYPE:
        raise DAQFormatError(f"TMCH batch must have PACKET_DTYPE, not {packets.dtype}")
    required = _SIZE_BY_CODE[packets["flags"] >> _VERSION_SHIFT & _VERSION_MASK]
    if (required == 0).any() or (size is not None and (required > size).any()):
        raise DAQFormatError(f"TMCH batch: unknown version code or size {size} too small")
    itemsize = PACKET_DTYPE.itemsize
    if size is None:
        buf = packets.tobytes()
        return [
            buf[start : start + length]
            for start, length in zip(range(0, len(buf), itemsize), required.tolist(), strict=True)
        ]
    rows = np.zeros((len(packets), max(size, itemsize)), np.uint8)
    rows[:, :itemsize] = np.ascontiguousarray(packets).view(np.uint8).reshape(-1, itemsize)
    buf = rows[:, :size].tobytes()
    return [buf[start : start + size] for start in range(0, len(buf), size)]
