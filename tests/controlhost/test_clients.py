"""Our blocking and asyncio clients against our ligier: batches, publishing, reconnects."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from km3mon.controlhost import AsyncClient, Client, ControlHostError, Message, query_status
from tests.conftest import free_port, wait_subscribed


def test_batches_hold_many_messages_per_read(ligier) -> None:
    with Client("127.0.0.1", ligier.port) as subscriber:
        subscriber.subscribe("IO_MONIT")
        wait_subscribed(ligier.port, "IO_MONIT")
        with Client("127.0.0.1", ligier.port) as publisher:
            publisher.publish_many([("IO_MONIT", bytes(244))] * 5000)
        batches = []
        while sum(map(len, batches)) < 5000:
            batches.append(subscriber.receive_batch(timeout=5))
        assert all(m == Message("IO_MONIT", bytes(244)) for batch in batches for m in batch)
        assert len(batches) < 100, "a read returns hundreds of packets, not one"
        assert subscriber.receive_batch(timeout=0.2) == []


def test_blocking_client_reconnects_and_resubscribes(start_ligier, caplog) -> None:
    caplog.set_level(logging.INFO, logger="km3mon.controlhost")
    port = free_port()
    first = start_ligier(port=port)
    subscriber = Client("127.0.0.1", port, name="dom_rates", backoff_max_s=0.5).connect()
    subscriber.subscribe("IO_SUM")
    first.process.stop()
    second = start_ligier(port=port)
    received: list[Message] = []
    deadline = time.monotonic() + 15
    with Client("127.0.0.1", port) as publisher:
        while not received and time.monotonic() < deadline:
            publisher.publish("IO_SUM", b"after restart")
            received = subscriber.receive_batch(timeout=0.3)
    assert received and received[0] == Message("IO_SUM", b"after restart")
    assert subscriber.reconnects >= 1
    assert f"connection to ligier 127.0.0.1:{port} lost" in caplog.text
    assert "'dom_rates'" in query_status("127.0.0.1", second.port)  # nickname sent again
    subscriber.close()


def test_without_reconnect_a_lost_ligier_is_an_error(ligier) -> None:
    client = Client("127.0.0.1", ligier.port, reconnect=False).connect()
    client.subscribe("MSG")
    ligier.process.stop()
    with pytest.raises(ControlHostError, match="lost"):
        client.receive_batch(timeout=5)


def test_connect_retries_until_a_ligier_appears(start_ligier) -> None:
    port = free_port()
    client = Client("127.0.0.1", port, backoff_max_s=0.3)
    start = time.monotonic()

    async def later() -> None:
        await asyncio.sleep(0.8)
        start_ligier(port=port)

    import threading

    starter = threading.Thread(target=lambda: asyncio.run(later()))
    starter.start()
    client.connect()
    starter.join()  # its wait for the port is over before the fixture stops this ligier
    assert time.monotonic() - start >= 0.7
    client.close()


def test_async_client_publishes_subscribes_and_reconnects(start_ligier) -> None:
    port = free_port()
    ligier = start_ligier(port=port)

    async def scenario() -> list[Message]:
        async with AsyncClient("127.0.0.1", port, backoff_max_s=0.3) as subscriber:
            await subscriber.subscribe("IO_EVT, MSG")
            await asyncio.to_thread(wait_subscribed, port, "IO_EVT, MSG")
            async with AsyncClient("127.0.0.1", port) as publisher:
                await publisher.publish("IO_EVT", b"e" * 100_000)
                await publisher.publish("MSG", "log line")
            received = await subscriber.receive_batch()
            while len(received) < 2:
                received += await subscriber.receive_batch()
            ligier.process.stop()
            start_ligier(port=port)
            for _ in range(100):
                async with AsyncClient("127.0.0.1", port) as publisher:
                    await publisher.publish("MSG", "after restart")
                try:
                    batch = await asyncio.wait_for(subscriber.receive_batch(), 0.3)
                except TimeoutError:
                    continue
                return received + batch
            raise AssertionError("no message after the ligier restart")

    received = asyncio.run(scenario())
    assert received[:2] == [Message("IO_EVT", b"e" * 100_000), Message("MSG", b"log line")]
    assert received[2] == Message("MSG", b"after restart")
