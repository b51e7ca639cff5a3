"""asyncio ControlHost client, for processes that already run an event loop (the mirror,
the web server). Same behaviour as the blocking :class:`~km3mon.controlhost.Client`:
large reads parsed in one pass, batches, reconnect with backoff and re-subscription.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Iterable
from typing import Any

from km3mon.controlhost.client import DEFAULT_PORT, ClientBase
from km3mon.controlhost.prefix import (
    ControlHostError,
    Message,
    encode_frame,
)

log = logging.getLogger(__name__)


class AsyncClient(ClientBase):
    """A connection to a ligier for asyncio code.

    >>> async with AsyncClient("127.0.0.1", 5553) as client:   # doctest: +SKIP
    ...     await client.subscribe("IO_EVT, IO_SUM")
    ...     async for batch in client.batches():
    ...         ...
    """

    def __init__(self, host: str = "127.0.0.1", port: int = DEFAULT_PORT, **options: Any) -> None:
        super().__init__(host, port, **options)
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    @property
    def connected(self) -> bool:
        return self._writer is not None

    async def connect(self) -> AsyncClient:
        self._closed = False
        while self._writer is None:
            try:
                await self._open()
            except (TimeoutError, OSError) as error:
                if not self.reconnect:
                    raise ControlHostError(
                        f"cannot connect to ligier {self.host}:{self.port}: {error}"
                    ) from error
                reason = str(error) or type(error).__name__
                await asyncio.sleep(self._next_delay(reason, lost=False))
        return self

    async def _open(self) -> None:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(self.host, self.port, limit=self.read_size),
            self.connect_timeout_s,
        )
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        self._reader, self._writer = reader, writer
        self._decoder.reset()
        if greeting := self._greeting():
            writer.write(greeting)
            await writer.drain()
        if self.reconnects:
            log.info("reconnected to ligier %s:%d", self.host, self.port)
        self._backoff.reset()

    async def _lost(self, reason: str) -> None:
        self._drop()
        if self._closed:
            raise ControlHostError("client is closed")
        if not self.reconnect:
            raise ControlHostError(f"connection to ligier {self.host}:{self.port} lost: {reason}")
        self.reconnects += 1
        await asyncio.sleep(self._next_delay(reason, lost=True))
        await self.connect()

    def _drop(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None
        self._decoder.reset()

    async def close(self) -> None:
        self._closed = True
        writer = self._writer
        self._drop()
        if writer is not None:
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def __aenter__(self) -> AsyncClient:
        return await self.connect()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def send_raw(self, data: bytes) -> None:
        """Write already framed bytes (waits while the socket buffer is full)."""
        for _attempt in range(2):
            if self._writer is None:
                await self.connect()
            assert self._writer is not None
            try:
                self._writer.write(data)
                await self._writer.drain()
                return
            except OSError as error:
                await self._lost(str(error))
        raise ControlHostError(f"could not send to ligier {self.host}:{self.port}")

    async def publish(self, tag: str, payload: bytes | str = b"") -> None:
        if isinstance(payload, str):
            payload = payload.encode()
        await self.send_raw(encode_frame(tag, payload))

    async def subscribe(self, tags: str | Iterable[str], mode: str = "any") -> None:
        self.subscription.add(tags, mode)
        await self.send_raw(self._subscription_frames())

    async def unsubscribe(self, tags: str | Iterable[str]) -> None:
        self.subscription.remove(tags)
        await self.send_raw(self._subscription_frames())

    async def receive_batch(self) -> list[Message]:
        """Every message completed by the next read(s); never empty."""
        while True:
            if self._reader is None:
                await self.connect()
            assert self._reader is not None
            try:
                data = await self._reader.read(self.read_size)
            except OSError as error:
                await self._lost(str(error))
                continue
            if not data:
                await self._lost("closed by the ligier")
                continue
            self.bytes_received += len(data)
            try:
                messages = self._decoder.feed(data)
            except ControlHostError as error:
                await self._lost(str(error))
                continue
            if messages:
                self.messages_received += len(messages)
                return messages

    async def batches(self) -> AsyncIterator[list[Message]]:
        while True:
            yield await self.receive_batch()
