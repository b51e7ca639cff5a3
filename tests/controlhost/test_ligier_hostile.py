"""Hostile input never takes the dispatcher down and never disturbs well-behaved clients."""

from __future__ import annotations

import contextlib
import socket
import threading
import time

from km3mon.controlhost import Client, Message, encode_frame, encode_prefix
from tests.conftest import Ligier, wait_subscribed
from tests.controlhost.rawclient import RawClient

MAX_MESSAGE = 1 << 20


def garbage_prefix(port: int) -> None:
    RawClient(port).send(b"\x01\x02\x03garbage that is no prefix at all")


def negative_size(port: int) -> None:
    RawClient(port).send(b"IO_EVT\x00\x00" + (-5).to_bytes(4, "big", signed=True) + bytes(4))


def huge_size(port: int) -> None:
    RawClient(port).send(b"IO_EVT\x00\x00" + (2**31 - 1).to_bytes(4, "big") + bytes(4) + b"x" * 100)


def oversized_message(port: int) -> None:
    client = RawClient(port)
    with contextlib.suppress(OSError):  # the dispatcher may close before reading everything
        client.send(encode_frame("IO_EVT", b"o" * (MAX_MESSAGE + 1)))


def disconnect_mid_frame(port: int) -> None:
    client = RawClient(port)
    client.send(encode_prefix("IO_EVT", 1000) + b"only ten b")
    client.close()


def one_byte_per_second(port: int) -> None:
    """Drip a valid frame: the first bytes at 1 byte/s, the rest a little faster."""
    client = RawClient(port)
    frame = encode_frame("IO_EVT", b"drip")
    for index, byte in enumerate(frame):
        client.send(bytes([byte]))
        time.sleep(1.0 if index < 5 else 0.1)
    client.close()


def rapid_connects(port: int) -> None:
    for index in range(1000):
        with socket.create_connection(("127.0.0.1", port)) as sock:
            if index % 3 == 0:
                sock.sendall(encode_prefix("IO_EVT", 50))  # and gone
            elif index % 3 == 1:
                sock.sendall(encode_frame("_Subscri", b" a IO_EVT") + encode_frame("_Always"))


HOSTILE = [
    garbage_prefix,
    negative_size,
    huge_size,
    oversized_message,
    disconnect_mid_frame,
    one_byte_per_second,
    rapid_connects,
]


def test_hostile_clients_do_not_disturb_a_subscriber(start_ligier) -> None:
    ligier: Ligier = start_ligier("--max-message-size", str(MAX_MESSAGE))
    good = Client("127.0.0.1", ligier.port, reconnect=False).connect()
    good.subscribe("IO_EVT, IO_SUM")
    wait_subscribed(ligier.port, "IO_EVT, IO_SUM")
    sent = [("IO_EVT" if i % 2 else "IO_SUM", i.to_bytes(4, "big") * 50) for i in range(1500)]

    def publish() -> None:
        with Client("127.0.0.1", ligier.port, reconnect=False) as publisher:
            for index in range(0, len(sent), 15):
                publisher.publish_many(sent[index : index + 15])
                time.sleep(0.05)

    threads = [threading.Thread(target=publish)]
    threads += [threading.Thread(target=attack, args=(ligier.port,)) for attack in HOSTILE]
    for thread in threads:
        thread.start()
    received: list[Message] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (
        len(received) < len(sent) or any(t.is_alive() for t in threads)
    ):
        received += good.receive_batch(timeout=0.5)
    for thread in threads:
        thread.join()
    received += good.receive_batch(timeout=0.5)
    assert [(m.tag, m.payload) for m in received if m.payload != b"drip"] == sent
    assert Message("IO_EVT", b"drip") in received, "the slow client's frame arrives whole"
    assert good.reconnects == 0
    assert ligier.process.alive()

    log = ligier.log
    assert "invalid tag '\\x01\\x02\\x03garba'" in log
    assert "announces -5 bytes" in log
    assert f"announces {2**31 - 1} bytes" in log
    assert (
        f"announces {MAX_MESSAGE + 1} bytes (0x{MAX_MESSAGE + 1:08x}), limit {MAX_MESSAGE}" in log
    )
    assert "disconnected in the middle of a frame (26 bytes of 1016 received)" in log
    assert log.count("connected") >= 2 * 1000
    assert "Traceback" not in log
