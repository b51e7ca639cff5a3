"""Bad input raises only DAQFormatError, with a message saying what and where; never another
exception, never a hang, never an allocation sized by a corrupt length field."""

from __future__ import annotations

import random
import struct
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from km3mon import daq
from km3mon.daq import DAQFormatError
from km3mon.daq.event import decode_events_hits
from km3mon.daq.files import iter_file
from km3mon.daq.monitoring import decode_monitoring_batch
from tests.daq.conftest import DAQ_FILES, all_messages, messages

TAGS = sorted(daq.DECODERS)
BINARY_TAGS = [tag for tag in TAGS if tag != "MSG"]
#: Every testdata message once per tag of its own kind, as (tag, payload).
SAMPLES = [(m.tag, m.payload) for _, _, m in all_messages()]


def decoders_for(tag: str) -> list[Callable[[bytes], object]]:
    """The single decoder and, where one exists, the batch decoder of a tag."""
    single = [lambda payload: daq.decode(tag, payload)]
    if tag == "IO_EVT":
        return [*single, lambda payload: decode_events_hits([payload])]
    if tag == "IO_MONIT":
        return [*single, lambda payload: decode_monitoring_batch([payload])]
    return single


def decodes_or_rejects(tag: str, payload: bytes) -> None:
    for decoder in decoders_for(tag):
        try:
            decoder(payload)
        except DAQFormatError as exc:
            assert str(exc)


@pytest.mark.parametrize(("tag", "payload"), SAMPLES)
def test_truncation_is_rejected(tag: str, payload: bytes) -> None:
    # a TMCH datagram may lose its trailer: the samples are v2 (240 bytes) sent in 244
    end = 240 if tag == "IO_MONIT" else len(payload)
    for size in sorted({*range(0, end, max(1, end // 100)), end - 1}):
        for decoder in decoders_for(tag):
            with pytest.raises(DAQFormatError):
                decoder(payload[:size])


@pytest.mark.parametrize(("tag", "payload"), SAMPLES)
def test_extension_is_rejected_for_jdaq(tag: str, payload: bytes) -> None:
    if tag == "IO_MONIT":  # datagram length comes from the transport; extra bytes are kept
        assert daq.encode(daq.decode(tag, payload + b"\0\1")) == payload + b"\0\1"
        return
    for decoder in decoders_for(tag):
        with pytest.raises(DAQFormatError, match=r"length|offset"):
            decoder(payload + b"\0" * 18)


BIT_FLIP_MESSAGES, BIT_FLIPS = 4, 1000  # the long run is bench/fuzz_daq.py


@pytest.mark.parametrize("name", DAQ_FILES)
def test_bit_flips_decode_or_raise_daqformaterror(name: str) -> None:
    rng = random.Random(name)
    for message in messages(name)[:BIT_FLIP_MESSAGES]:
        positions = range(len(message.payload) * 8)
        sample = rng.sample(positions, min(len(positions), BIT_FLIPS))
        for bit in sample:
            corrupt = bytearray(message.payload)
            corrupt[bit // 8] ^= 1 << bit % 8
            decodes_or_rejects(message.tag, bytes(corrupt))


@settings(max_examples=500, deadline=5000)  # a hang, not a busy machine
@given(st.sampled_from(BINARY_TAGS), st.binary(max_size=2000))
def test_random_payloads(tag: str, payload: bytes) -> None:
    decodes_or_rejects(tag, payload)


@settings(max_examples=300, deadline=5000)
@given(st.sampled_from(SAMPLES), st.data())
def test_random_mutations_of_real_messages(sample: tuple[str, bytes], data: st.DataObject) -> None:
    tag, payload = sample
    corrupt = bytearray(payload)
    for _ in range(data.draw(st.integers(1, 8))):
        corrupt[data.draw(st.integers(0, len(corrupt) - 1))] = data.draw(st.integers(0, 255))
    decodes_or_rejects(tag, bytes(corrupt))


def test_messages_say_what_and_where() -> None:
    event = messages("IO_EVT.dat")[0].payload
    corrupt = event[:50] + struct.pack("<i", 10**6) + event[54:]
    with pytest.raises(DAQFormatError, match=r"IO_EVT.*triggered hits count 1000000 at offset 50"):
        daq.decode("IO_EVT", corrupt)
    with pytest.raises(DAQFormatError, match=r"event 1 of 2: IO_EVT"):
        decode_events_hits([event, corrupt])
    monit = messages("IO_MONIT.dat")[0].payload
    with pytest.raises(DAQFormatError, match=r"packet 1 of 2: TMCH packet starts with b'XMCH'"):
        decode_monitoring_batch([monit, b"X" + monit[1:]])
    assert len(decode_monitoring_batch([monit, b"X" + monit[1:]], skip_invalid=True)) == 1
    with pytest.raises(DAQFormatError, match="no decoder for tag 'IO_FOO'"):
        daq.decode("IO_FOO", b"")


HUGE = 2**31 - 1


def corrupt_counts() -> list[tuple[str, bytes]]:
    """Real messages with one count or length field set to 2**31 - 1."""
    event = messages("IO_EVT.dat")[0].payload
    summary = messages("IO_SUM.dat")[0].payload
    timeslice = messages("IO_TSSN.dat")[2].payload
    huge = struct.pack("<i", HUGE)
    return [
        ("IO_EVT", event[:50] + huge + event[54:]),
        ("IO_EVT", event[: 54 + 18 * 182] + huge + event[58 + 18 * 182 :]),
        ("IO_SUM", summary[:30] + huge + summary[34:]),
        ("IO_TSSN", timeslice[:30] + huge + timeslice[34:]),
        ("IO_TSSN", timeslice[: 34 + 52] + huge + timeslice[34 + 56 :]),
        ("IO_EVT", huge + event[4:]),
    ]


@pytest.mark.parametrize(("tag", "payload"), corrupt_counts())
def test_corrupt_counts_allocate_nothing_big(tag: str, payload: bytes) -> None:
    tracemalloc.start()
    try:
        for decoder in decoders_for(tag):
            with pytest.raises(DAQFormatError):
                decoder(payload)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * len(payload) + 100_000


@pytest.mark.parametrize(
    ("content", "layout", "match"),
    [
        (b"IO_EVT\0\0" + struct.pack(">iI", HUGE, 0) + b"x" * 100, "controlhost", HUGE),
        (struct.pack("<ii", HUGE, 10001) + b"x" * 100, "jdaq", HUGE - 8),
        (struct.pack("<I", 2**32 - 1) + b"TMCH" + b"x" * 100, "length-framed", 2**32 - 1),
        (b"\xff" * 64, None, "unknown file layout"),
    ],
)
def test_corrupt_file_lengths_are_rejected_before_reading(
    tmp_path: Path, content: bytes, layout: str | None, match: int | str
) -> None:
    match = f"needs {match} bytes" if isinstance(match, int) else match
    path = tmp_path / "corrupt.dat"
    path.write_bytes(content)
    tracemalloc.start()
    try:
        with pytest.raises(DAQFormatError, match=match):
            list(iter_file(path, layout))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000


def test_encoders_reject_out_of_range_values() -> None:
    event = daq.decode_event(messages("IO_EVT.dat")[0].payload)
    header = daq.DAQHeader(1, 2, 3, 2**31, 0)
    with pytest.raises(DAQFormatError, match="utc_seconds"):
        daq.encode(daq.Event(header, 0, 0, 0, event.triggered_hits, event.snapshot_hits))
    with pytest.raises(DAQFormatError, match="event info"):
        daq.encode(daq.Event(event.header, -1, 0, 0, event.triggered_hits, event.snapshot_hits))
    with pytest.raises(DAQFormatError, match="cannot convert"):
        daq.encode(daq.Event(event.header, 0, 0, 0, event.triggered_hits, [1, 2]))
    with pytest.raises(DAQFormatError, match="cannot encode"):
        daq.encode("not a DAQ object")  # type: ignore[arg-type]
