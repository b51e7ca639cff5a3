"""Reading and writing recorded ligier traffic, in three layouts.

* ``controlhost`` -- our recording format (``km3mon record``): the raw ControlHost frames back to
  back, each a 16-byte prefix (8-byte NUL-padded tag, big-endian int32 payload size, 4 zero
  bytes) and the payload, exactly as a ligier sends them, so a replay is byte-identical.
* ``jdaq`` -- the km3net-testdata ``IO_*.dat`` files: JDAQ payloads back to back, walked by the
  preamble length; the tag follows from the preamble data type.
* ``length-framed`` -- the testdata CLB dumps (``IO_MONIT.dat``, ``clb.dqd``): each datagram
  behind a little-endian uint32 length; ``TMCH`` datagrams get the tag ``IO_MONIT``, others their
  4-letter CLB type.

Readers stream the file and check every length against the bytes left in the file before
reading, so a corrupt length cannot make us allocate more than the file holds.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, NamedTuple

from km3mon.controlhost.prefix import (
    PREFIX_SIZE,
    PREFIX_STRUCT,
    ControlHostError,
    encode_prefix,
    normalise_tag,
)
from km3mon.daq.errors import DAQFormatError
from km3mon.daq.monitoring import MAGIC as TMCH_MAGIC
from km3mon.daq.monitoring import TAG as MONITORING_TAG
from km3mon.daq.preamble import PREAMBLE, TAG_BY_DATA_TYPE

CONTROLHOST = "controlhost"
JDAQ = "jdaq"
LENGTH_FRAMED = "length-framed"
LAYOUTS = (CONTROLHOST, JDAQ, LENGTH_FRAMED)

_DATAGRAM_LENGTH = struct.Struct("<I")
_CLB_TYPE_SIZE = 4
_TAG_BY_CLB_TYPE = {TMCH_MAGIC: MONITORING_TAG}


class RecordedMessage(NamedTuple):
    tag: str
    payload: bytes
    #: File offset where the message (its prefix, length word or preamble) starts.
    offset: int


def detect_layout(head: bytes, file_size: int) -> str:
    """Which layout a file starting with ``head`` (>= 16 bytes if the file has them) has."""
    if len(head) >= PREFIX_SIZE:
        raw_tag, size, _ = PREFIX_STRUCT.unpack_from(head)
        name = normalise_tag(raw_tag)
        padded = name is not None and raw_tag == name.ljust(8, b"\0")
        if padded and 0 <= size <= file_size - PREFIX_SIZE:
            return CONTROLHOST
    if len(head) >= PREAMBLE.size:
        length, data_type = PREAMBLE.unpack_from(head)
        if data_type in TAG_BY_DATA_TYPE and PREAMBLE.size <= length <= file_size:
            return JDAQ
    if len(head) >= _DATAGRAM_LENGTH.size + _CLB_TYPE_SIZE:
        (length,) = _DATAGRAM_LENGTH.unpack_from(head)
        clb_type = head[_DATAGRAM_LENGTH.size : _DATAGRAM_LENGTH.size + _CLB_TYPE_SIZE]
        if clb_type.isalpha() and clb_type.isupper() and length <= file_size - 4:
            return LENGTH_FRAMED
    raise DAQFormatError(
        f"unknown file layout (first bytes {head[:16].hex()}); expected one of {LAYOUTS}"
    )


def iter_file(path: str | os.PathLike[str], layout: str | None = None) -> Iterator[RecordedMessage]:
    """All messages of a recording, in file order (layout detected unless given)."""
    with open(path, "rb") as stream:
        size = os.fstat(stream.fileno()).st_size
        if size == 0:
            return
        if layout is None:
            layout = detect_layout(stream.read(PREFIX_SIZE), size)
            stream.seek(0)
        readers = {CONTROLHOST: _controlhost, JDAQ: _jdaq, LENGTH_FRAMED: _length_framed}
        if layout not in readers:
            raise DAQFormatError(f"unknown layout {layout!r}; expected one of {LAYOUTS}")
        yield from readers[layout](stream, size, Path(path).name)


def _read(stream: BinaryIO, offset: int, size: int, file_size: int, what: str) -> bytes:
    """Exactly ``size`` bytes, or an error if the file has fewer left (checked before reading)."""
    if size < 0 or offset + size > file_size:
        raise DAQFormatError(
            f"{what}: needs {size} bytes at offset {offset}, file has {file_size - offset} left"
        )
    data = stream.read(size)
    if len(data) != size:
        raise DAQFormatError(f"{what}: file shrank while reading at offset {offset}")
    return data


def _controlhost(stream: BinaryIO, file_size: int, name: str) -> Iterator[RecordedMessage]:
    offset = 0
    while offset < file_size:
        prefix = _read(stream, offset, PREFIX_SIZE, file_size, f"{name}: ControlHost prefix")
        raw_tag, size, _ = PREFIX_STRUCT.unpack(prefix)
        tag = normalise_tag(raw_tag)
        if tag is None:
            raise DAQFormatError(f"{name}: invalid tag {raw_tag!r} at offset {offset}")
        what = f"{name}: {tag.decode()} payload"
        payload = _read(stream, offset + PREFIX_SIZE, size, file_size, what)
        yield RecordedMessage(tag.decode(), payload, offset)
        offset += PREFIX_SIZE + size


def _jdaq(stream: BinaryIO, file_size: int, name: str) -> Iterator[RecordedMessage]:
    offset = 0
    while offset < file_size:
        preamble = _read(stream, offset, PREAMBLE.size, file_size, f"{name}: JDAQ preamble")
        length, data_type = PREAMBLE.unpack(preamble)
        if data_type not in TAG_BY_DATA_TYPE:
            raise DAQFormatError(f"{name}: unknown JDAQ data type {data_type} at offset {offset}")
        what = f"{name}: JDAQ type {data_type} of {length} bytes"
        rest = _read(stream, offset + PREAMBLE.size, length - PREAMBLE.size, file_size, what)
        yield RecordedMessage(TAG_BY_DATA_TYPE[data_type], preamble + rest, offset)
        offset += length


def _length_framed(stream: BinaryIO, file_size: int, name: str) -> Iterator[RecordedMessage]:
    offset = 0
    while offset < file_size:
        word = _read(stream, offset, _DATAGRAM_LENGTH.size, file_size, f"{name}: length word")
        (length,) = _DATAGRAM_LENGTH.unpack(word)
        what = f"{name}: datagram of {length} bytes"
        payload = _read(stream, offset + _DATAGRAM_LENGTH.size, length, file_size, what)
        clb_type = payload[:_CLB_TYPE_SIZE]
        tag = _TAG_BY_CLB_TYPE.get(clb_type, clb_type.decode("ascii", "replace"))
        yield RecordedMessage(tag, payload, offset)
        offset += _DATAGRAM_LENGTH.size + length


class RecordingWriter:
    """Writes ControlHost frames back to back (our recording format)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._stream = open(self.path, "wb")  # noqa: SIM115 -- closed in close()
        self.messages = 0
        self.bytes = 0

    def write(self, tag: str, payload: bytes) -> None:
        try:
            prefix = encode_prefix(tag, len(payload))
        except ControlHostError as exc:
            raise DAQFormatError(f"cannot record {tag!r}: {exc}") from None
        self.write_frame(prefix + payload)

    def write_frame(self, frame: bytes) -> None:
        """Write one complete frame (prefix and payload) as received."""
        self._stream.write(frame)
        self.messages += 1
        self.bytes += len(frame)

    def flush(self) -> None:
        self._stream.flush()

    def close(self) -> None:
        self._stream.close()

    def __enter__(self) -> RecordingWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
