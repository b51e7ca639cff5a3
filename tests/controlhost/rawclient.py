"""A bare socket for tests that must send exactly the bytes they choose."""

from __future__ import annotations

import socket
import time

from km3mon.controlhost import FrameDecoder, Message, encode_frame


class RawClient:
    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.decoder = FrameDecoder()
        self.received: list[Message] = []

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def frame(self, tag: str, payload: bytes = b"") -> None:
        self.send(encode_frame(tag, payload))

    def subscribe(self, payload: bytes, always: bool = True) -> None:
        self.send(encode_frame("_Subscri", payload) + (encode_frame("_Always") if always else b""))

    def read(self, count: int, timeout_s: float = 5.0) -> list[Message]:
        """Wait until ``count`` messages have arrived in total; return them all."""
        deadline = time.monotonic() + timeout_s
        while len(self.received) < count and time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data = self.sock.recv(1 << 20)
            except TimeoutError:
                break
            if not data:
                break
            self.received += self.decoder.feed(data)
        return self.received

    def quiet_for(self, seconds: float) -> bool:
        """True if nothing at all arrives for ``seconds``."""
        self.sock.settimeout(seconds)
        try:
            data = self.sock.recv(1 << 16)
        except TimeoutError:
            return True
        self.received += self.decoder.feed(data)
        return False

    def closed_by_peer(self, timeout_s: float = 5.0) -> bool:
        self.sock.settimeout(timeout_s)
        try:
            while data := self.sock.recv(1 << 16):
                self.received += self.decoder.feed(data)
        except (TimeoutError, ConnectionResetError):
            return False
        return True

    def close(self) -> None:
        self.sock.close()
