"""Interoperability with peers we did not write: km3pipe's ControlHost ``Client`` and ``CHPump``."""

from __future__ import annotations

import socket
import threading

import pytest
from km3pipe.controlhost import Client as Km3pipeClient
from km3pipe.io.ch import CHPump

from km3mon.controlhost import Client, FrameDecoder, Message, encode_frame
from tests.conftest import Ligier, wait_subscribed, wait_until

SIZES = [1, 200, 4096, 228_000, 17, 65_536, 3]


def sample_messages(tag: str, count: int) -> list[bytes]:
    """Distinct payloads of varied sizes (including an ARCA summary slice's 228 kB)."""
    return [
        (index.to_bytes(4, "big") * (SIZES[index % len(SIZES)] // 4 + 1))[
            : SIZES[index % len(SIZES)]
        ]
        for index in range(count)
    ]


def receive_km3pipe(client: Km3pipeClient, count: int) -> list[tuple[str, bytes]]:
    received = []
    for _ in range(count):
        prefix, data = client.get_message()
        received.append((str(prefix.tag), data))
    return received


@pytest.mark.parametrize("mode", ["any", "all"])
def test_km3pipe_client_receives_byte_exact_in_order(ligier: Ligier, mode: str) -> None:
    peer = Km3pipeClient("127.0.0.1", ligier.port)
    peer._connect()
    peer.subscribe("IO_EVT", mode=mode)
    peer.subscribe("IO_SUM", mode=mode)
    wait_subscribed(ligier.port, "IO_EVT, IO_SUM")  # on another connection than the publisher's
    payloads = sample_messages("IO_EVT", 60)
    sent = [("IO_EVT" if i % 3 else "IO_SUM", p) for i, p in enumerate(payloads)]
    with Client("127.0.0.1", ligier.port, reconnect=False) as publisher:
        publisher.publish("IO_TSL", b"not subscribed")
        publisher.publish_many(sent)
    assert receive_km3pipe(peer, len(sent)) == sent
    peer._disconnect()


@pytest.mark.parametrize("mode", ["any", "all"])
def test_chpump_receives_byte_exact_in_order(ligier: Ligier, mode: str) -> None:
    pump = CHPump(
        host="127.0.0.1",
        port=ligier.port,
        tags="IO_EVT, MSG",
        subscription_mode=mode,
        max_queue=1000,
    )
    try:
        wait_subscribed(ligier.port, "IO_EVT, MSG")
        sent = [("MSG" if i % 2 else "IO_EVT", p) for i, p in enumerate(sample_messages("x", 40))]
        with Client("127.0.0.1", ligier.port, reconnect=False) as publisher:
            publisher.publish_many(sent)
        received = []
        for _ in sent:
            blob = next(pump)
            received.append((str(blob["CHPrefix"].tag), blob["CHData"]))
        assert received == sent
    finally:
        pump.finish()


def test_km3pipe_put_message_reaches_our_subscribers(ligier: Ligier) -> None:
    with Client("127.0.0.1", ligier.port, reconnect=False) as subscriber:
        subscriber.subscribe("MSG, IO_EVT")
        wait_subscribed(ligier.port, "MSG, IO_EVT")
        peer = Km3pipeClient("127.0.0.1", ligier.port)
        peer._connect()
        peer.put_message(
            "MSG", "2026-11-23 12:00:00 F0 STATUS hello"
        )  # str, as timesync_monitor does
        peer.put_message("IO_EVT", b"\x00\x01\x02" * 1000)
        received: list[Message] = []
        wait_until(
            lambda: received.extend(subscriber.receive_batch(timeout=0.2)) or len(received) >= 2
        )
        assert received == [
            Message("MSG", b"2026-11-23 12:00:00 F0 STATUS hello"),
            Message("IO_EVT", b"\x00\x01\x02" * 1000),
        ]
        peer._disconnect()


class RecordingServer:
    """A loopback socket that records what a client sends and replays a canned stream."""

    def __init__(self, reply: bytes = b"") -> None:
        self.reply = reply
        self.received = bytearray()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        connection, _ = self.listener.accept()
        with connection:
            connection.settimeout(0.5)
            if self.reply:
                connection.sendall(self.reply)
            try:
                while chunk := connection.recv(65536):
                    self.received += chunk
            except OSError:
                pass

    def close(self) -> bytes:
        self.thread.join(5)
        self.listener.close()
        return bytes(self.received)


def test_our_client_sends_what_km3pipe_sends() -> None:
    """The CHPump subscription pattern, recorded from km3pipe and from ours, byte for byte."""
    recorded = RecordingServer()
    peer = Km3pipeClient("127.0.0.1", recorded.port)
    peer._connect()
    for tag in ["IO_EVT", " IO_SUM"]:
        peer.subscribe(tag.strip())
    peer.subscribe("MSG", mode="all")
    peer.put_message("MSG", "hello")
    peer._disconnect()
    theirs = recorded.close()

    recorded = RecordingServer()
    with Client("127.0.0.1", recorded.port, reconnect=False) as ours:
        ours.subscribe("IO_EVT")
        ours.subscribe("IO_SUM")
        ours.subscribe("MSG", mode="all")
        ours.publish("MSG", "hello")
    assert recorded.close() == theirs
    # ... and both equal the capture documented in docs/controlhost.md §5.
    assert theirs == b"".join(
        [
            encode_frame("_Subscri", b" w IO_EVT"),
            encode_frame("_Always"),
            encode_frame("_Subscri", b" w IO_EVT w IO_SUM"),
            encode_frame("_Always"),
            encode_frame("_Subscri", b" w IO_EVT w IO_SUM a MSG"),
            encode_frame("_Always"),
            encode_frame("MSG", b"hello"),
        ]
    )


def test_our_client_reads_a_stream_that_km3pipe_reads_the_same_way() -> None:
    stream = b"".join(
        encode_frame(t, p) for t, p in [("IO_EVT", b"a" * 5000), ("MSG", b"m"), ("MSG", b"")]
    )
    server = RecordingServer(reply=stream)
    peer = Km3pipeClient("127.0.0.1", server.port)
    peer._connect()
    peer.valid_tags = ["IO_EVT", "MSG"]
    theirs = [(str(p.tag), d) for p, d in (peer.get_message() for _ in range(3))]
    peer._disconnect()
    server.close()
    server = RecordingServer(reply=stream)
    with Client("127.0.0.1", server.port, reconnect=False) as ours:
        received: list[Message] = []
        while len(received) < 3:
            received += ours.receive_batch(timeout=2)
    server.close()
    assert [(m.tag, m.payload) for m in received] == theirs
    assert FrameDecoder().feed(stream) == received
