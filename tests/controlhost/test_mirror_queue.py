"""The README's promise for a target that does not keep up: `ligiermirror` drops the oldest
queued messages, counts them, and goes on with the newest."""

from __future__ import annotations

import socket
import struct
from pathlib import Path

from km3mon.controlhost import Client, FrameDecoder
from tests.conftest import free_port, read_json, wait_until

PAYLOAD_BYTES = 100_000
PUBLISHED = 400
MAX_QUEUE = 20


def test_a_stalled_target_loses_the_oldest_messages_counted(
    start_ligier, spawn, tmp_path: Path
) -> None:
    source = start_ligier()
    target_port = free_port()
    stalled = socket.create_server(("127.0.0.1", target_port))  # accepts, then reads nothing
    mirror = spawn(
        "ligiermirror",
        "-m", "IO_SUM",
        "-p", source.port,
        "-q", target_port,
        "-s", MAX_QUEUE,
        "--data-dir", tmp_path / "data",
        "127.0.0.1",
    )  # fmt: skip
    connection, _ = stalled.accept()
    connection.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    wait_until(lambda: "subscription [w IO_SUM]" in _status(source.port), what="the mirror")
    with Client("127.0.0.1", source.port) as publisher:
        for number in range(PUBLISHED):
            publisher.publish("IO_SUM", struct.pack(">I", number) + bytes(PAYLOAD_BYTES))
    record_path = tmp_path / "data" / "freshness" / "ligiermirror.json"
    wait_until(lambda: read_json(record_path).get("dropped", 0) > 0, what="drops counted")
    wait_until(lambda: "not keeping up" in mirror.log, what="the drop logged")

    # The target wakes up and reads everything the mirror still has for it.
    received: list[int] = []
    decoder = FrameDecoder()
    connection.settimeout(3.0)
    try:
        while not received or received[-1] != PUBLISHED - 1:
            chunk = connection.recv(1 << 20)
            if not chunk:
                break
            received += [struct.unpack(">I", m.payload[:4])[0] for m in decoder.feed(chunk)]
    except TimeoutError:
        pass
    finally:
        connection.close()
        stalled.close()
    dropped = read_json(record_path)["dropped"]
    assert received == sorted(received) and received[-1] == PUBLISHED - 1  # the newest kept
    assert len(received) + dropped == PUBLISHED  # every message either delivered or counted
    missing = sorted(set(range(PUBLISHED)) - set(received))
    # What was lost is one run between what was already on its way when the target stalled
    # and the newest (at most MAX_QUEUE) kept in the queue: the oldest queued went first.
    assert missing == list(range(missing[0], missing[-1] + 1))
    assert 0 < PUBLISHED - 1 - missing[-1] <= MAX_QUEUE
    assert mirror.alive()


def _status(port: int) -> str:
    from km3mon.controlhost import query_status

    return query_status("127.0.0.1", port)
