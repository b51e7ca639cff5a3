"""Serving under uvicorn so that slow or idle clients cannot exhaust the dashboard.

uvicorn bounds the header size (h11), the idle time between requests (``timeout_keep_alive``)
and, optionally, the number of connections (``limit_concurrency``, answered with 503), but it
has no deadline for a request's headers: a client that opens a connection and sends nothing,
or sends its headers one byte at a time (slowloris), holds the connection for ever. This
protocol closes a connection whose request headers are not complete within
``header_timeout_s`` of its opening or of the previous response.

It also closes quietly a connection whose request turns out malformed after it has been
answered (a 401 goes out before the body is read; a broken chunk of that body follows):
uvicorn would answer 400 a second time, which h11 refuses with a traceback in the log.
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

#: Seconds an idle keep-alive connection stays open after a response.
KEEP_ALIVE_S = 5.0
#: Open connections (event streams included) beyond which new requests get 503.
MAX_CONNECTIONS = 500
#: Largest request head in bytes (h11 answers 431 beyond it).
MAX_HEAD_BYTES = 16 * 1024


class HeadDeadlineProtocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for every request head."""

    header_timeout_s = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_deadline()
        super().connection_lost(exc)

    def handle_events(self) -> None:
        cycle = self.cycle
        super().handle_events()
        if self.cycle is not cycle:  # a request head was complete
            self._disarm_head_deadline()

    def on_response_complete(self) -> None:
        self._arm_head_deadline()  # for the next request on this connection
        super().on_response_complete()

    def send_400_response(self, msg: str) -> None:
        """400 for a malformed request, unless this request has been answered already."""
        if self.conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            super().send_400_response(msg)
        elif not self.transport.is_closing():
            self.transport.close()

    def _arm_head_deadline(self) -> None:
        self._disarm_head_deadline()
        self._head_deadline = self.loop.call_later(self.header_timeout_s, self._head_too_slow)

    def _disarm_head_deadline(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _head_too_slow(self) -> None:
        self._head_deadline = None
        if not self.transport.is_closing():
            self.transport.close()


def server_settings(header_timeout_s: float) -> dict[str, Any]:
    """Keyword arguments for ``uvicorn.run`` with the limits above and this head deadline."""
    protocol = type(
        "HeadDeadlineProtocol", (HeadDeadlineProtocol,), {"header_timeout_s": header_timeout_s}
    )
    return {
        "http": protocol,
        "timeout_keep_alive": KEEP_ALIVE_S,
        "limit_concurrency": MAX_CONNECTIONS,
        "h11_max_incomplete_event_size": MAX_HEAD_BYTES,
    }


def serve(app: Any, host: str, port: int, header_timeout_s: float) -> None:
    """Run ``app`` on uvicorn with the limits above, without uvicorn's access log."""
    import uvicorn

    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        **server_settings(header_timeout_s),
    )
