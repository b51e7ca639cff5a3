"""Framing: the 16-byte prefix and the streaming decoder."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from km3mon.controlhost import ControlHostError, FrameDecoder, Message, encode_frame, encode_prefix
from km3mon.controlhost.prefix import normalise_tag, tag_to_bytes

# Byte-level examples of docs/controlhost.md §5.
APPENDIX_A = [
    ("_Subscri", b" w IO_EVT", "5f53756273637269 00000009 00000000 20772049 4f5f455654"),
    ("_Always", b"", "5f416c7761797300 00000000 00000000"),
    ("_Gime", b"", "5f47696d65000000 00000000 00000000"),
    ("_MyId", b"mon1", "5f4d794964000000 00000004 00000000 6d6f6e31"),
    ("MSG", b"hello", "4d53470000000000 00000005 00000000 68656c6c6f"),
    ("IO_EVT", b"", "494f5f4556540000 00000000 00000000"),
]


@pytest.mark.parametrize(("tag", "payload", "hexdump"), APPENDIX_A)
def test_frames_match_the_specification_bytes(tag: str, payload: bytes, hexdump: str) -> None:
    expected = bytes.fromhex(hexdump.replace(" ", ""))
    assert encode_frame(tag, payload) == expected
    assert FrameDecoder().feed(expected) == [Message(tag, payload)]


def test_eight_character_tag_has_no_terminator() -> None:
    assert encode_prefix("IO_TSSN1", 3)[:8] == b"IO_TSSN1"
    assert FrameDecoder().feed(encode_frame("ABCDEFGH", b"xyz")) == [Message("ABCDEFGH", b"xyz")]


@pytest.mark.parametrize("bad", ["", "NINECHARS", "A B", "T\x01", "é"])
def test_invalid_tags_are_refused(bad: str) -> None:
    with pytest.raises(ControlHostError):
        tag_to_bytes(bad)


def test_tag_is_cut_at_the_first_nul() -> None:
    assert normalise_tag(b"MSG\x00abc\x00") == b"MSG"
    assert normalise_tag(b"\x00MSG\x00\x00\x00\x00") is None
    assert normalise_tag(b"M G\x00\x00\x00\x00\x00") is None


def test_reserved_bytes_are_ignored_and_garbage_after_nul_too() -> None:
    frame = b"MSG\x00abc\x00" + (2).to_bytes(4, "big") + b"\xff\xff\xff\xff" + b"hi"
    assert FrameDecoder().feed(frame) == [Message("MSG", b"hi")]


@pytest.mark.parametrize("size", [-1, 2**31 - 1])
def test_negative_or_oversized_size_is_a_protocol_error(size: int) -> None:
    raw = b"IO_EVT\x00\x00" + size.to_bytes(4, "big", signed=True) + bytes(4)
    with pytest.raises(ControlHostError, match="announces"):
        FrameDecoder(max_message_size=1024).feed(raw)


def test_garbage_tag_is_a_protocol_error() -> None:
    with pytest.raises(ControlHostError, match="invalid tag"):
        FrameDecoder().feed(b"\x01\x02 garbage and more bytes")


messages = st.lists(
    st.tuples(
        st.text(
            alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=8
        ),
        st.binary(max_size=300),
    ),
    max_size=30,
)


@given(messages, st.lists(st.integers(min_value=1, max_value=400), min_size=1, max_size=50))
def test_any_split_of_the_stream_gives_the_same_messages(
    sent: list[tuple[str, bytes]], cuts: list[int]
) -> None:
    stream = b"".join(encode_frame(tag, payload) for tag, payload in sent)
    decoder = FrameDecoder()
    received: list[Message] = []
    pos = 0
    index = 0
    while pos < len(stream):
        step = cuts[index % len(cuts)]
        received += decoder.feed(stream[pos : pos + step])
        pos += step
        index += 1
    assert received == [Message(tag, payload) for tag, payload in sent]
    assert decoder.buffered == 0


def test_large_message_in_small_reads_is_joined_once() -> None:
    payload = bytes(range(256)) * 4096  # 1 MiB
    stream = encode_frame("IO_TSL", payload) + encode_frame("MSG", b"after")
    decoder = FrameDecoder()
    received: list[Message] = []
    for pos in range(0, len(stream), 65536):
        received += decoder.feed(stream[pos : pos + 65536])
    assert received == [Message("IO_TSL", payload), Message("MSG", b"after")]
