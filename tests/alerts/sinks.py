"""Real receivers for the alert sinks: an HTTP server for the webhook, an SMTP server."""

from __future__ import annotations

import json
import threading
from email import message_from_bytes, policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.conftest import free_port


class WebhookReceiver:
    """Collects every JSON body POSTed to it, on a loopback port (``port``: a chosen one)."""

    def __init__(self, port: int = 0) -> None:
        bodies: list[dict] = []
        self.bodies = bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                bodies.append(json.loads(self.rfile.read(length)))
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *_: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/s3cret-token"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def of(self, rule: str, status: str | None = None) -> list[dict]:
        statuses = (status,) if status else ("firing", "resolved")
        return [b for b in self.bodies if b["rule"] == rule and b["status"] in statuses]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def alerts_pipeline(webhook_url: str, holds: dict[str, float], *, head: str = "",
                    tail: str = "", clear_s: float = 3) -> str:  # fmt: skip
    """pipeline.toml of an end-to-end alert test: ``head`` sections, the webhook, a short
    ``clear_s``, each rule's hold, then ``tail`` sections."""
    rules = "".join(f"\n[Alerts.{rule}]\nhold_s = {hold:g}\n" for rule, hold in holds.items())
    alerts = f'\n[Alerts]\nwebhook_url = "{webhook_url}"\nclear_s = {clear_s:g}\n'
    return head + alerts + rules + tail


class MailReceiver:
    """An SMTP server (aiosmtpd) that keeps every message it is sent."""

    def __init__(self) -> None:
        from aiosmtpd.controller import Controller

        messages: list = []
        self.messages = messages

        class Handler:
            async def handle_DATA(self, server, session, envelope) -> str:
                messages.append(message_from_bytes(envelope.content, policy=policy.default))
                return "250 OK"

        port = free_port()
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=port)
        self.controller.start()
        self.address = f"127.0.0.1:{port}"

    def subjects(self, text: str) -> list[str]:
        return [m["Subject"] for m in self.messages if text in m["Subject"]]

    def close(self) -> None:
        self.controller.stop()
