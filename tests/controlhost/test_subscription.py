"""Subscription strings, built by our clients and parsed by our dispatcher."""

from __future__ import annotations

import pytest

from km3mon.controlhost import ControlHostError, Subscription, parse_subscription


def test_client_sends_the_km3pipe_form() -> None:
    subscription = Subscription()
    subscription.add("IO_EVT, IO_SUM")
    subscription.add(["MSG"], mode="all")
    assert subscription.payload() == b" w IO_EVT w IO_SUM a MSG"
    subscription.remove("IO_SUM")
    assert subscription.payload() == b" w IO_EVT a MSG"


def test_unknown_mode_name_is_refused() -> None:
    with pytest.raises(ControlHostError, match="'any' or 'all'"):
        Subscription().add("IO_EVT", mode="wait")


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b" w IO_EVT w IO_SUM a MSG", {b"IO_EVT": False, b"IO_SUM": False, b"MSG": True}),
        (b"a Born a Died", {b"Born": True, b"Died": True}),
        (b"\t w  IO_EVT \n", {b"IO_EVT": False}),
        (b" w IO_EVT\x00\x00", {b"IO_EVT": False}),  # KM3io.jl pads the tag with NULs
        (b" w IO_EVT w IO_EVT\x00\x00 a IO_EVT", {b"IO_EVT": True}),  # repeated: modes OR-ed
        (b" w TOOLONGTAGNAME", {b"TOOLONGT": False}),  # only 8 bytes count
        (b" am IO_EVT wS IO_SUM", {b"IO_EVT": True, b"IO_SUM": False}),
        (b" w IO_EVT a", {b"IO_EVT": False}),  # trailing mode without tag is ignored
        (b"", {}),
    ],
)
def test_parse_subscription(payload: bytes, expected: dict[bytes, bool]) -> None:
    assert parse_subscription(payload) == expected


@pytest.mark.parametrize("payload", [b" x IO_EVT", b" w IO\x01EVT", b" q MSG w IO_EVT"])
def test_malformed_subscription_is_refused(payload: bytes) -> None:
    with pytest.raises(ControlHostError):
        parse_subscription(payload)
