"""Slow-consumer policy: 'any' subscribers lose messages, 'all' subscribers throttle."""

from __future__ import annotations

import socket
import threading
import time

from km3mon.controlhost import Client, encode_frame, query_status
from tests.conftest import Ligier

PAYLOAD = b"s" * 100_000


def stalled_subscriber(port: int, subscription: bytes) -> socket.socket:
    """Subscribes, then never reads: a crashed consumer whose socket stays open."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.sendall(encode_frame("_Subscri", subscription) + encode_frame("_Always"))
    return sock


def test_stalled_any_subscriber_does_not_slow_a_live_one(start_ligier) -> None:
    ligier: Ligier = start_ligier("--queue-bytes", str(2_000_000))
    stalled = stalled_subscriber(ligier.port, b" w IO_SUM")
    live = Client("127.0.0.1", ligier.port, reconnect=False).connect()
    live.subscribe("IO_SUM")
    time.sleep(0.2)
    count = 2000  # 200 MB through the dispatcher, far beyond the stalled client's queue
    received = 0

    def consume() -> None:
        nonlocal received
        while received < count:
            batch = live.receive_batch(timeout=5)
            if not batch:
                return
            received += len(batch)

    consumer = threading.Thread(target=consume)
    consumer.start()
    start = time.monotonic()
    with Client("127.0.0.1", ligier.port, reconnect=False) as publisher:
        for batch in range(count // 20):
            # The live subscriber keeps up: never more than 1 MB behind (its queue holds 2 MB,
            # whatever the scheduler does on a busy machine); the stalled one falls behind.
            deadline = time.monotonic() + 10
            while received < 20 * batch - 10 and time.monotonic() < deadline:
                time.sleep(0.001)
            publisher.publish_many([("IO_SUM", PAYLOAD)] * 20)
    consumer.join(60)
    elapsed = time.monotonic() - start
    assert received == count
    assert elapsed < 30, f"publishing 200 MB took {elapsed:.1f} s"
    report = query_status("127.0.0.1", ligier.port)
    drops = sorted(
        int(line.split("dropped ")[1].split(",")[0])
        for line in report.splitlines()
        if "subscription [w IO_SUM]" in line
    )
    assert drops[0] == 0, "the live subscriber loses nothing"
    assert drops[1] > count // 2, "the stalled one loses most, oldest first"
    assert "is not reading fast enough" in ligier.log
    stalled.close()


def test_stalled_all_subscriber_throttles_then_is_disconnected(start_ligier) -> None:
    ligier: Ligier = start_ligier("--all-backlog", str(3_000_000), "--all-timeout", "2")
    stalled = stalled_subscriber(ligier.port, b" a IO_SUM")
    time.sleep(0.2)
    publisher = Client("127.0.0.1", ligier.port, reconnect=False).connect()
    publisher_done = threading.Event()
    sent = 0

    def publish() -> None:
        nonlocal sent
        for _ in range(400):  # 40 MB: impossible to buffer below a 3 MB backlog
            publisher.publish("IO_SUM", PAYLOAD)
            sent += 1
        publisher_done.set()

    thread = threading.Thread(target=publish, daemon=True)
    start = time.monotonic()
    thread.start()
    time.sleep(1.5)
    # Kernel socket buffers take some megabytes, then the publisher is held back.
    assert not publisher_done.is_set(), "the publisher must be throttled while 'all' lags"
    assert sent < 400
    assert publisher_done.wait(30), "after the stalled client is dropped, publishing resumes"
    assert time.monotonic() - start > 2
    log = ligier.log
    assert "'all' subscriber) has more than 3000000 bytes waiting; pausing publishers" in log
    assert "for more than 2 s; disconnecting so publishers can go on" in log
    stalled.close()
    publisher.close()
