"""`km3mon ligiermirror` between two real ligiers."""

from __future__ import annotations

import time
from pathlib import Path

from km3mon.controlhost import Client, Message
from tests.conftest import free_port, read_json, wait_until


def publish_until_received(
    source_port: int, subscriber: Client, tag: str, payload: bytes, timeout_s: float = 60
) -> float:
    """Publish on the source until the message shows up behind the mirror (both sides
    reconnect by themselves); seconds it took."""
    start = time.monotonic()
    with Client("127.0.0.1", source_port, backoff_max_s=0.2) as publisher:
        while time.monotonic() - start < timeout_s:
            publisher.publish(tag, payload)
            batch = subscriber.receive_batch(timeout=0.2)
            if Message(tag, payload) in batch:
                return time.monotonic() - start
    raise AssertionError(f"{tag} did not come through the mirror within {timeout_s} s")


def test_mirror_forwards_chosen_tags_and_survives_restarts(
    start_ligier, spawn, tmp_path: Path
) -> None:
    source_port, target_port = free_port(), free_port()
    source = start_ligier(port=source_port)
    target = start_ligier(port=target_port)
    mirror = spawn(
        "ligiermirror",
        "-m", "IO_EVT, IO_SUM",
        "-p", source_port,
        "-q", target_port,
        "-t", "127.0.0.1",
        "--report-interval", "1",
        "--data-dir", tmp_path / "data",
        "127.0.0.1",
    )  # fmt: skip
    subscriber = Client("127.0.0.1", target_port, backoff_max_s=0.2).connect()
    subscriber.subscribe("IO_EVT, IO_SUM, MSG")
    wait_until(lambda: "subscription [w IO_EVT w IO_SUM]" in _status(source_port), what="mirror")
    sent = [("IO_EVT", b"event %d" % i) for i in range(50)] + [("MSG", b"not mirrored")]
    sent += [("IO_SUM", bytes(228_000)), ("IO_TSL", b"not mirrored")]
    with Client("127.0.0.1", source_port) as publisher:
        publisher.publish_many(sent)
    received: list[Message] = []
    wait_until(
        lambda: received.extend(subscriber.receive_batch(timeout=0.1)) or len(received) >= 51
    )
    assert subscriber.receive_batch(timeout=0.5) == []
    assert [(m.tag, m.payload) for m in received] == [
        s for s in sent if s[0] in ("IO_EVT", "IO_SUM")
    ]

    source.process.stop()
    start_ligier(port=source_port)
    publish_until_received(source_port, subscriber, "IO_EVT", b"after source restart")

    target.process.stop()
    start_ligier(port=target_port)
    publish_until_received(source_port, subscriber, "IO_SUM", b"after target restart")

    assert mirror.alive()
    wait_until(lambda: "forwarded" in mirror.log, what="a rate report")
    assert f"connection to ligier 127.0.0.1:{source_port} lost" in mirror.log


def test_mirror_writes_a_status_record(start_ligier, spawn, tmp_path: Path) -> None:
    source, target = start_ligier(), start_ligier()
    record_path = tmp_path / "data" / "freshness" / "ligiermirror.json"
    mirror = spawn(
        "ligiermirror", "-m", "IO_SUM", "-p", source.port, "-q", target.port,
        "--data-dir", tmp_path / "data", "127.0.0.1",
    )  # fmt: skip
    wait_until(lambda: "subscription [w IO_SUM]" in _status(source.port), what="mirror")
    with Client("127.0.0.1", source.port) as publisher:
        publisher.publish_many([("IO_SUM", b"slice %d" % i) for i in range(20)])

    def record() -> dict:
        return read_json(record_path)

    wait_until(lambda: record().get("messages") == 20, what="20 forwarded", show=record)
    running = record()
    assert running["process"] == "ligiermirror" and running["tags"] == ["IO_SUM"]
    assert running["connected"] and running["state"] == "running" and running["dropped"] == 0
    assert running["bytes"] > 20 * len(b"slice 10") and running["outputs"] == {}
    assert running["ligier"] == f"127.0.0.1:{source.port} -> 127.0.0.1:{target.port}"
    assert time.time() - running["last_message_at"] < 10

    target.process.stop()  # the mirror notices when it next writes
    with Client("127.0.0.1", source.port, backoff_max_s=0.2) as publisher:

        def disconnected() -> bool:
            publisher.publish("IO_SUM", b"into the void")
            return record().get("state") == "disconnected"

        wait_until(disconnected, what="state disconnected", show=record)
    assert not record()["connected"]

    mirror.stop()
    assert record()["state"] == "stopped"


def _status(port: int) -> str:
    from km3mon.controlhost import query_status

    return query_status("127.0.0.1", port)
