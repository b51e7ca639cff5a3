"""HTTP Basic authentication for every route, as pure ASGI middleware.

One shared user and password from ``[WebServer]`` in pipeline.toml, like the original, but
applied to everything (pages, plots, API, events, metrics); compared in constant time.
"""

from __future__ import annotations

import base64
import hmac

from starlette.types import ASGIApp, Receive, Scope, Send

REALM = b'Basic realm="km3mon", charset="UTF-8"'


class BasicAuth:
    def __init__(self, app: ASGIApp, *, username: str, password: str) -> None:
        self.app = app
        self._expected = b"Basic " + base64.b64encode(f"{username}:{password}".encode())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or self._allowed(scope):
            await self.app(scope, receive, send)
            return
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [(b"www-authenticate", REALM), (b"content-type", b"text/plain")],
            }
        )
        await send({"type": "http.response.body", "body": b"authentication required\n"})

    def _allowed(self, scope: Scope) -> bool:
        given = next((v for k, v in scope["headers"] if k == b"authorization"), b"")
        return hmac.compare_digest(given, self._expected)


def protect(app: ASGIApp, username: str | None, password: str | None) -> ASGIApp:
    """``app`` behind Basic auth when credentials are configured, else as it is."""
    if username and password:
        return BasicAuth(app, username=username, password=password)
    return app
