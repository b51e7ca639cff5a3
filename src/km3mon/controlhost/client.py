"""Blocking ControlHost client: subscribe, publish, receive in batches, reconnect.

Written for throughput: one ``recv_into`` of up to ``read_size`` bytes yields every frame
in it (no per-message system calls), publishing many messages is one ``sendall``. A lost
dispatcher is reconnected with exponential backoff and the subscription re-sent, each
step logged, so a monitor never exits because a ligier restarted.
"""

from __future__ import annotations

import logging
import select
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from km3mon.controlhost.prefix import (
    DEFAULT_MAX_MESSAGE_SIZE,
    ControlHostError,
    FrameDecoder,
    Message,
    encode_frame,
)
from km3mon.controlhost.subscription import Subscription

log = logging.getLogger(__name__)

DEFAULT_PORT = 5553
READ_SIZE = 1 << 20


class Backoff:
    """Exponential reconnect delays: ``initial`` doubling up to ``maximum``."""

    def __init__(self, initial: float = 0.1, maximum: float = 10.0) -> None:
        self.initial = initial
        self.maximum = maximum
        self.next_delay = initial

    def reset(self) -> None:
        self.next_delay = self.initial

    def step(self) -> float:
        delay = self.next_delay
        self.next_delay = min(self.maximum, delay * 2)
        return delay


class ClientBase:
    """What both clients share: where to connect, the subscription, counters, backoff."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        *,
        name: str | None = None,
        reconnect: bool = True,
        backoff_initial_s: float = 0.1,
        backoff_max_s: float = 10.0,
        connect_timeout_s: float = 5.0,
        read_size: int = READ_SIZE,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    ) -> None:
        self.host = host
        self.port = port
        self.name = name
        self.reconnect = reconnect
        self.connect_timeout_s = connect_timeout_s
        self.read_size = read_size
        self.subscription = Subscription()
        self.always = True
        self.messages_received = 0
        self.bytes_received = 0
        self.reconnects = 0
        self._backoff = Backoff(backoff_initial_s, backoff_max_s)
        self._decoder = FrameDecoder(max_message_size)
        self._closed = False
        #: Called with True when a connection is made and False when it is lost, also in
        #: the middle of a call that then waits and retries (a freshness record follows it).
        self.on_connection: Callable[[bool], None] | None = None

    def _connection_changed(self, connected: bool) -> None:
        if self.on_connection is not None:
            self.on_connection(connected)

    def _greeting(self) -> bytes:
        """Sent on every (re)connection: nickname, subscription, delivery mode."""
        frames = []
        if self.name:
            frames.append(encode_frame("_MyId", self.name.encode()))
        if self.subscription:
            frames.append(self._subscription_frames())
        return b"".join(frames)

    def _subscription_frames(self) -> bytes:
        frames = self.subscription.frame()
        return frames + encode_frame("_Always") if self.always else frames

    def _next_delay(self, reason: str, *, lost: bool) -> float:
        """Log a lost connection or a failed attempt; return the wait before the next try."""
        delay = self._backoff.step()
        address = f"ligier {self.host}:{self.port}"
        if lost:
            log.warning(
                "connection to %s lost (%s); reconnecting in %.1f s", address, reason, delay
            )
        else:
            log.warning("cannot connect to %s (%s); retrying in %.1f s", address, reason, delay)
        return delay


class Client(ClientBase):
    """A connection to a ligier (JLigier or ``km3mon ligier``).

    >>> with Client("127.0.0.1", 5553, name="dom_rates") as client:   # doctest: +SKIP
    ...     client.subscribe(["IO_SUM"])
    ...     for batch in client.iter_batches(timeout=1.0):
    ...         process(batch)

    With ``reconnect=True`` (default) every method survives a lost dispatcher: it waits
    (backoff from ``backoff_initial_s`` to ``backoff_max_s``), reconnects, sends the
    nickname and the subscription again. Messages in flight during the outage are lost.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        *,
        stop: threading.Event | None = None,
        **options: Any,
    ) -> None:
        super().__init__(host, port, **options)
        #: Set it to end a wait for the ligier: the call then raises ControlHostError, so a
        #: process asked to stop during an outage stops instead of retrying for ever.
        self.stop = stop
        self._socket: socket.socket | None = None
        self._ready: deque[Message] = deque()
        self._read_buffer = bytearray(self.read_size)

    # -- connection ---------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._socket is not None

    def connect(self) -> Client:
        """Open the connection, retrying with backoff when ``reconnect`` is set."""
        self._closed = False
        while self._socket is None:
            try:
                self._open()
            except OSError as error:
                if not self.reconnect:
                    raise ControlHostError(
                        f"cannot connect to ligier {self.host}:{self.port}: {error}"
                    ) from error
                self._wait(self._next_delay(str(error), lost=False))
        return self

    def _wait(self, delay_s: float) -> None:
        """The back-off between two attempts, cut short by ``stop``."""
        if self.stop is None:
            time.sleep(delay_s)
        elif self.stop.wait(delay_s):
            raise ControlHostError(f"stopped while waiting for ligier {self.host}:{self.port}")

    def _open(self) -> None:
        sock = socket.create_connection((self.host, self.port), timeout=self.connect_timeout_s)
        sock.settimeout(None)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        self._socket = sock
        self._decoder.reset()
        if greeting := self._greeting():
            sock.sendall(greeting)
        self._connection_changed(True)
        if self.reconnects or self._backoff.next_delay != self._backoff.initial:
            log.info(
                "connected to ligier %s:%d%s",
                self.host,
                self.port,
                f", subscribed to {self.subscription}" if self.subscription else "",
            )
        self._backoff.reset()

    def _lost(self, reason: str) -> None:
        """Drop the socket; reconnect (with backoff) or raise, as configured."""
        self._drop_socket()
        if self._closed:
            raise ControlHostError("client is closed")
        if not self.reconnect:
            raise ControlHostError(f"connection to ligier {self.host}:{self.port} lost: {reason}")
        self.reconnects += 1
        self._wait(self._next_delay(reason, lost=True))
        self.connect()

    def _drop_socket(self) -> None:
        if self._socket is not None:
            try:
                self._socket.close()
            finally:
                self._socket = None
                self._connection_changed(False)
        self._decoder.reset()

    def close(self) -> None:
        self._closed = True
        self._drop_socket()

    def __enter__(self) -> Client:
        return self.connect()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- sending ------------------------------------------------------------------------

    def send_raw(self, data: bytes | bytearray | memoryview) -> None:
        """Write already framed bytes; after a reconnect the write is repeated once."""
        if self._socket is None:
            self.connect()
        for _attempt in range(2):
            assert self._socket is not None
            try:
                self._socket.sendall(data)
                return
            except OSError as error:
                self._lost(str(error))
        raise ControlHostError(f"could not send to ligier {self.host}:{self.port}")

    def publish(self, tag: str, payload: bytes | bytearray | memoryview | str = b"") -> None:
        if isinstance(payload, str):
            payload = payload.encode()
        self.send_raw(encode_frame(tag, payload))

    def publish_many(self, messages: Iterable[tuple[str, bytes]]) -> None:
        """Publish a batch of ``(tag, payload)`` with one system call."""
        self.send_raw(b"".join(encode_frame(tag, payload) for tag, payload in messages))

    def subscribe(self, tags: str | Iterable[str], mode: str = "any") -> None:
        """Add tags (``"IO_EVT, IO_SUM"`` or a list) in mode ``any`` (w) or ``all`` (a)."""
        self.subscription.add(tags, mode)
        self._send_subscription()

    def unsubscribe(self, tags: str | Iterable[str]) -> None:
        self.subscription.remove(tags)
        self._send_subscription()

    def _send_subscription(self) -> None:
        self.send_raw(self._subscription_frames())

    def request_one(self) -> None:
        """On-request delivery: switch ``_Always`` off for reconnects and ask for one message."""
        self.always = False
        self.send_raw(encode_frame("_Gime"))

    # -- receiving ----------------------------------------------------------------------

    def _read(self, timeout: float | None) -> bool:
        """One read from the socket into the decoder; False if nothing arrived in time."""
        if self._socket is None:
            self.connect()
        assert self._socket is not None
        if timeout is not None:
            readable, _, _ = select.select([self._socket], [], [], max(timeout, 0.0))
            if not readable:
                return False
        try:
            count = self._socket.recv_into(self._read_buffer)
        except OSError as error:
            self._lost(str(error))
            return True
        if count == 0:
            self._lost("closed by the ligier")
            return True
        self.bytes_received += count
        try:
            messages = self._decoder.feed(memoryview(self._read_buffer)[:count])
        except ControlHostError as error:
            self._lost(str(error))
            return True
        self.messages_received += len(messages)
        self._ready.extend(messages)
        return True

    def receive_batch(
        self, timeout: float | None = None, max_messages: int | None = None
    ) -> list[Message]:
        """Every message available now (at least one unless ``timeout`` expires first)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._ready:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return []
            self._read(remaining)
        if max_messages is None or max_messages >= len(self._ready):
            batch = list(self._ready)
            self._ready.clear()
            return batch
        return [self._ready.popleft() for _ in range(max_messages)]

    def receive(self, timeout: float | None = None) -> Message | None:
        """The next message, or None when ``timeout`` expires."""
        batch = self.receive_batch(timeout, max_messages=1)
        return batch[0] if batch else None

    def iter_batches(self, timeout: float | None = None) -> Iterator[list[Message]]:
        """Endless batches; with a timeout, an empty batch marks a quiet period."""
        while True:
            yield self.receive_batch(timeout)

    def __iter__(self) -> Iterator[Message]:
        while True:
            yield from self.receive_batch()


def query_status(host: str = "127.0.0.1", port: int = DEFAULT_PORT, timeout_s: float = 5.0) -> str:
    """Ask a dispatcher for its ``_ShowSta`` text report (read until it closes)."""
    with socket.create_connection((host, port), timeout=timeout_s) as sock:
        sock.sendall(encode_frame("_ShowSta"))
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks).decode("utf-8", errors="replace")
