"""Where notifications go: the DAQ log (``MSG`` into the logging ligier), a webhook, e-mail.

A :class:`Courier` thread sends the outbox of :mod:`.book` (its own SQLite connection), marks
each delivery sent, and retries a failed one with backoff for up to a day, so a chat server or
mail relay that is down delays notifications without losing them or stalling the rules. The
webhook URL and the SMTP password are secrets: they are never logged (errors are reported by
their kind only).
"""

from __future__ import annotations

import json
import logging
import select
import smtplib
import socket
import threading
import time
import urllib.error
import urllib.request
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from km3mon.alerts.book import connect
from km3mon.config import AlertsSection
from km3mon.controlhost import Client, ControlHostError

log = logging.getLogger("km3mon.alerts")

TIMEOUT_S = 5.0
GIVE_UP_S = 24 * 3600.0
MAX_RETRY_DELAY_S = 300.0


class SinkError(Exception):
    """A notification could not be delivered (the message says why, without secrets)."""


def headline(body: dict[str, Any]) -> str:
    word = "RESOLVED" if body["status"] == "resolved" else "REMINDER" if body["reminder"] else ""
    return f"{word + ' ' if word else ''}{body['rule']}: {body['summary']}"


class Sink:
    name = ""

    def send(self, body: dict[str, Any]) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Release connections."""


class WebhookSink(Sink):
    """One JSON POST per notification (Mattermost, Rocket.Chat and Slack show ``text``)."""

    name = "webhook"

    def __init__(self, url: str) -> None:
        self._url = url

    def send(self, body: dict[str, Any]) -> None:
        request = urllib.request.Request(
            self._url,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json", "User-Agent": "km3mon-alerts"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
                response.read()
        except urllib.error.HTTPError as error:
            raise SinkError(f"webhook answered HTTP {error.code}") from None
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise SinkError(f"webhook not reachable ({type(reason).__name__})") from None


class MailSink(Sink):
    """One e-mail per notification to every address of ``mail_to``."""

    name = "mail"

    def __init__(self, settings: AlertsSection) -> None:
        assert settings.smtp is not None
        host, _, port = settings.smtp.rpartition(":")
        self.host, self.port = host, int(port)
        self.user = settings.smtp_user
        self._password = settings.smtp_password
        self.starttls = settings.smtp_starttls
        self.sender = settings.mail_from
        self.recipients = list(settings.mail_to)

    def send(self, body: dict[str, Any]) -> None:
        message = EmailMessage()
        message["Subject"] = f"[km3mon] {headline(body)}"
        message["From"] = self.sender
        message["To"] = ", ".join(self.recipients)
        lines = [body["text"], ""]
        lines += [f"{key}: {value}" for key, value in body.items() if value not in (None, "")]
        message.set_content("\n".join(lines))
        try:
            with smtplib.SMTP(self.host, self.port, timeout=TIMEOUT_S) as smtp:
                if self.starttls:
                    smtp.starttls()
                if self.user and self._password is not None:
                    smtp.login(self.user, self._password.reveal())
                smtp.send_message(message)
        except (smtplib.SMTPException, OSError) as error:
            raise SinkError(
                f"mail via {self.host}:{self.port} failed ({type(error).__name__})"
            ) from None


class LogLigierSink(Sink):
    """``ALERT (MONITORING) <UTC>: …`` as an ``MSG`` into the DAQ logging ligier, as the
    original's timesync monitor wrote them (so they appear in MSG.log and the log viewer)."""

    name = "msg"

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.client: Client | None = None

    def send(self, body: dict[str, Any]) -> None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
        line = f"ALERT (MONITORING) {stamp}: {headline(body)}"
        try:
            if self.client is None or self._closed_by_peer():
                self.close()
                self.client = Client(
                    self.host, self.port, name="km3mon_alerts", reconnect=False,
                    connect_timeout_s=TIMEOUT_S,
                ).connect()  # fmt: skip
            self.client.publish("MSG", line)
        except (ControlHostError, OSError) as error:
            self.close()
            raise SinkError(f"log ligier {self.host}:{self.port}: {error}") from None

    def _closed_by_peer(self) -> bool:
        """A ligier that went away shows as a readable socket with nothing to read."""
        assert self.client is not None
        sock = self.client._socket
        if sock is None:
            return True
        readable, _, _ = select.select([sock], [], [], 0)
        if not readable:
            return False
        try:
            return sock.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None


def configured_sinks(
    settings: AlertsSection, log_ligier: tuple[str, int] | None
) -> dict[str, Sink]:
    sinks: dict[str, Sink] = {}
    if log_ligier is not None:
        sinks["msg"] = LogLigierSink(*log_ligier)
    if settings.webhook_url is not None:
        sinks["webhook"] = WebhookSink(settings.webhook_url.reveal())
    if settings.smtp is not None and settings.mail_to:
        sinks["mail"] = MailSink(settings)
    return sinks


class Courier(threading.Thread):
    """Sends queued deliveries; ``wake()`` after queueing for an immediate round."""

    def __init__(self, data_dir: Path, sinks: dict[str, Sink], stop: threading.Event) -> None:
        super().__init__(name="courier", daemon=True)
        self.data_dir = data_dir
        self.sinks = sinks
        self.stop = stop
        self._wake = threading.Event()
        self.sent = 0
        self.failed = 0

    def wake(self) -> None:
        self._wake.set()

    def run(self) -> None:
        db = connect(self.data_dir)
        try:
            while not self.stop.is_set():
                self._wake.clear()
                try:
                    self.deliver(db)
                except Exception:  # a bug here must not end deliveries for good
                    log.exception("delivering notifications failed")
                self._wake.wait(1.0)
        finally:
            for sink in self.sinks.values():
                sink.close()
            db.close()

    def deliver(self, db: Any) -> None:
        now = time.time()
        due = db.execute(
            "SELECT d.notification_id, d.sink, d.attempts, n.body, n.created_at"
            " FROM deliveries d JOIN notifications n ON n.id = d.notification_id"
            " WHERE d.sent_at IS NULL AND d.next_attempt_at <= ? ORDER BY d.notification_id",
            (now,),
        ).fetchall()
        for row in due:
            if self.stop.is_set():
                return
            sink = self.sinks.get(row["sink"])
            key = (row["notification_id"], row["sink"])
            if sink is None or now - row["created_at"] > GIVE_UP_S:
                db.execute(
                    "UPDATE deliveries SET next_attempt_at = 1e300, error = ?"
                    " WHERE notification_id = ? AND sink = ?",
                    ("gave up" if sink else "sink no longer configured", *key),
                )
                continue
            try:
                sink.send(json.loads(row["body"]))
            except SinkError as error:
                attempts = row["attempts"] + 1
                delay = min(MAX_RETRY_DELAY_S, 5.0 * 2 ** (attempts - 1))
                log.warning(
                    "%s: notification %d not delivered (%s); retry %d in %.0f s",
                    sink.name, key[0], error, attempts, delay,
                )  # fmt: skip
                db.execute(
                    "UPDATE deliveries SET attempts = ?, next_attempt_at = ?, error = ?"
                    " WHERE notification_id = ? AND sink = ?",
                    (attempts, time.time() + delay, str(error), *key),
                )
                self.failed += 1  # counted once written: a reader of the table sees it
                continue
            db.execute(
                "UPDATE deliveries SET sent_at = ?, attempts = attempts + 1, error = NULL"
                " WHERE notification_id = ? AND sink = ?",
                (time.time(), *key),
            )
            self.sent += 1
