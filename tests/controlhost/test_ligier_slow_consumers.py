"""Slow-consumer policy: 'any' subscribers lose messages, 'all' subscribers throttle."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

from km3mon.controlhost import Client, encode_frame, query_status
from tests.conftest import Ligier, wait_subscribed, wait_until

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
    wait_subscribed(ligier.port, "IO_SUM", count=2)  # the stalled one and the live one
    count = 2000  # 200 MB through the dispatcher, far beyond the stalled client's queue
    received = 0

    def consume() -> None:
        nonlocal received
        while received < count:
            batch = live.receive_batch(timeout=60)
            if not batch:
                return
            received += len(batch)

    consumer = threading.Thread(target=consume)
    consumer.start()
    with Client("127.0.0.1", ligier.port, reconnect=False) as publisher:
        for batch in range(count // 20):
            # The live subscriber keeps up: never more than 1 MB behind (its queue holds 2 MB,
            # whatever the scheduler does on a busy machine); the stalled one falls behind.
            deadline = time.monotonic() + 60
            while received < 20 * batch - 10 and time.monotonic() < deadline:
                time.sleep(0.001)
            publisher.publish_many([("IO_SUM", PAYLOAD)] * 20)
    consumer.join(300)  # under a second alone; its speed: bench/bench_test_speeds.py
    assert received == count, f"the live subscriber received {received} of {count}"
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
    ligier: Ligier = start_ligier("--all-backlog", str(3_000_000), "--all-timeout", "6")
    stalled = stalled_subscriber(ligier.port, b" a IO_SUM")
    wait_subscribed(ligier.port, "IO_SUM")
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
    # Kernel socket buffers take some megabytes, then the publisher is held back (for the
    # whole --all-timeout: the check comes long before it ends).
    wait_until(lambda: "pausing publishers" in ligier.log, 30, "the publishers paused")
    time.sleep(0.5)
    held_at = sent
    time.sleep(0.5)
    assert not publisher_done.is_set() and sent == held_at < 400, "the publisher is held"
    assert publisher_done.wait(60), "after the stalled client is dropped, publishing resumes"
    assert time.monotonic() - start > 6
    log = ligier.log
    assert "'all' subscriber) has more than 3000000 bytes waiting; pausing publishers" in log
    assert "for more than 6 s; disconnecting so publishers can go on" in log
    stalled.close()
    publisher.close()


def resident_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for process {pid}")


def test_a_drained_backlog_goes_back_to_the_system(start_ligier) -> None:
    """A slow consumer's 50 MB backlog, drained while another client's queue sits above it
    on the heap: the ligier must hand the freed memory back, not keep its peak for good
    (95 MB seen on the 230-DU monitoring ligier; without the release this stays at ~86 MB)."""
    ligier: Ligier = start_ligier()
    pid = ligier.process.popen.pid
    slow = socket.create_connection(("127.0.0.1", ligier.port))
    slow.sendall(encode_frame("_Subscri", b" w IO_SUM") + encode_frame("_Always"))
    above = socket.create_connection(("127.0.0.1", ligier.port))  # never reads
    above.sendall(encode_frame("_Subscri", b" w IO_EVT") + encode_frame("_Always"))
    wait_subscribed(ligier.port, "IO_SUM")
    wait_subscribed(ligier.port, "IO_EVT")
    before = resident_mb(pid)
    with Client("127.0.0.1", ligier.port, reconnect=False) as publisher:
        for _ in range(25):
            publisher.publish_many([("IO_SUM", PAYLOAD)] * 20)  # 50 MB for the slow one
        wait_until(lambda: resident_mb(pid) > before + 40, 60, "the backlog held",
                   show=lambda: f"{resident_mb(pid):.0f} MB, {before:.0f} MB before")  # fmt: skip
        publisher.publish_many([("IO_EVT", PAYLOAD)] * 200)  # 20 MB above it, kept queued
    backlog = 500 * (len(PAYLOAD) + 16)
    drained = 0
    slow.settimeout(60)
    while drained < backlog:
        data = slow.recv(1 << 20)
        assert data, f"the ligier closed the slow consumer after {drained} of {backlog} bytes"
        drained += len(data)
    held = resident_mb(pid)
    wait_until(lambda: resident_mb(pid) < held - 30, 60, "the drained backlog released",
               show=lambda: f"{resident_mb(pid):.0f} MB, {held:.0f} MB at the drain")  # fmt: skip
    slow.close()
    above.close()
