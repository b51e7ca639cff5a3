"""Subscription strings (``_Subscri`` payloads): building them and parsing them.

Grammar (``docs/controlhost.md`` §3): whitespace-separated pairs ``MODES TAG``; mode
letters ``w`` (any), ``a`` (all), and the historical ``s m W S`` which we treat as ``w``;
only the first 8 bytes of a tag count; NUL bytes end a tag (KM3io.jl sends NUL padding);
a mode without a tag at the end is ignored; a repeated tag ORs its modes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from km3mon.controlhost.prefix import TAG_SIZE, ControlHostError, encode_frame, tag_to_bytes

MODES = {"any": "w", "all": "a"}
_MODE_LETTERS = frozenset(b"wasmWS")
_SEPARATORS = re.compile(rb"\s+")


def split_tags(tags: str | Iterable[str]) -> list[str]:
    """``"IO_EVT, IO_SUM"`` or ``["IO_EVT", "IO_SUM"]`` -> ``["IO_EVT", "IO_SUM"]``."""
    items = tags.replace(",", " ").split() if isinstance(tags, str) else list(tags)
    for tag in items:
        tag_to_bytes(tag)
    return items


class Subscription:
    """The complete subscription set of one client, sent whole on every change."""

    def __init__(self) -> None:
        self._modes: dict[str, str] = {}

    def add(self, tags: str | Iterable[str], mode: str = "any") -> None:
        if mode not in MODES:
            raise ControlHostError(f"subscription mode must be 'any' or 'all', not {mode!r}")
        for tag in split_tags(tags):
            self._modes[tag] = mode

    def remove(self, tags: str | Iterable[str]) -> None:
        for tag in split_tags(tags):
            self._modes.pop(tag, None)

    @property
    def tags(self) -> list[str]:
        return list(self._modes)

    def payload(self) -> bytes:
        """``" w IO_EVT a MSG"``, the form every KM3NeT client sends."""
        return "".join(f" {MODES[mode]} {tag}" for tag, mode in self._modes.items()).encode()

    def frame(self) -> bytes:
        return encode_frame("_Subscri", self.payload())

    def __bool__(self) -> bool:
        return bool(self._modes)

    def __str__(self) -> str:
        return self.payload().decode().strip()


def parse_subscription(payload: bytes) -> dict[bytes, bool]:
    """Parse a ``_Subscri`` payload into ``{tag name: wants_all}``.

    Raises ``ControlHostError`` for an unknown mode letter or an invalid tag; the
    dispatcher then closes the connection, as the reference dispatcher does.
    """
    # A NUL ends a token (KM3io.jl pads tags with NULs inside the subscription string).
    cut = (token.split(b"\x00", 1)[0] for token in _SEPARATORS.split(payload))
    tokens = [token for token in cut if token]
    result: dict[bytes, bool] = {}
    for index in range(0, len(tokens) - 1, 2):
        modes, tag = tokens[index], tokens[index + 1][:TAG_SIZE]
        unknown = set(modes) - _MODE_LETTERS
        if unknown:
            raise ControlHostError(
                f"unknown subscription mode {modes.decode('ascii', 'replace')!r}"
                f" in {payload[:200]!r}"
            )
        if not all(0x21 <= byte <= 0x7E for byte in tag):
            raise ControlHostError(f"invalid tag {tag!r} in subscription {payload[:200]!r}")
        result[tag] = result.get(tag, False) or ord("a") in modes
    return result
