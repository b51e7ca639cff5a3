"""`km3mon ligier`: a ControlHost dispatcher, drop-in for Jpp's ``JLigier``.

Our own (no maintained Python dispatcher exists); asyncio protocols, no per-message
system calls: consecutive frames of one tag in a read are forwarded to each subscriber as
one slice of that read, so fan-out costs per read, not per message.

Decisions (``docs/controlhost.md`` marks where the sources leave them open):

* **Repeated ``_Subscri`` replaces** the connection's subscription (the reference
  dispatcher's documented behaviour; the only one where unsubscribe works). km3pipe's
  ``Client``/``CHPump`` re-send their whole cumulative list, so they work either way.
  ``--merge-subscriptions`` switches to union semantics for multi-tag KM3io.jl clients.
* **A new connection** has no subscription and no credit; it receives after ``_Always``
  (continuous) or one message per ``_Gime`` credit. Held messages are kept oldest first.
* **Slow ``any`` (w) subscribers** never slow anybody: messages the socket cannot take go
  into a per-connection queue bounded by ``--queue-bytes``; beyond it the oldest ``any``
  messages are dropped and counted (fresh data matter most to a monitor).
* **``all`` (a) subscribers** never lose a message. When one's backlog exceeds
  ``--all-backlog`` bytes the dispatcher stops reading from every connection (TCP
  back-pressure on publishers) until it drains to half; if it stays above the limit for
  ``--all-timeout`` seconds it is disconnected with a log line, so a zombie subscriber
  cannot block a detector's data flow forever.
* **Hostile input** (invalid tag, negative or oversized size, client-sent ``Born``/
  ``Died``/``WrongHdr``, malformed subscription) closes only the offending connection,
  with one log line that names it; everybody else carries on.
* **Control tags**: ``_Subscri _Always _Gime _MyId _UniqueI _WhereIs _ShowSta`` are
  implemented; ``_Version _Unlock _Debug+ _Debug-`` are consumed; ``_StopDis`` and
  ``_CloseAl`` only act with ``--allow-remote-stop``; any other tag is data.
* **``_ShowSta``** is answered like the reference dispatcher: a plain-text report without
  prefix, then the connection is closed. ``_WhereIs`` gets one framed ``_WhereIs`` reply.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
from collections import deque
from dataclasses import dataclass, field

from km3mon.controlhost.prefix import (
    DEFAULT_MAX_MESSAGE_SIZE,
    PREFIX_SIZE,
    PREFIX_STRUCT,
    ControlHostError,
    describe_bytes,
    encode_frame,
    normalise_tag,
)
from km3mon.controlhost.subscription import parse_subscription
from km3mon.runtime.streaming import release_free_memory, tune_garbage_collector

log = logging.getLogger("km3mon.ligier")

DEFAULT_PORT = 5553
#: Transport write buffer above which we queue ourselves (and can drop oldest).
WRITE_HIGH_WATER = 4 * 1024 * 1024
DEFAULT_QUEUE_BYTES = 64 * 1024 * 1024
DEFAULT_ALL_BACKLOG_BYTES = 256 * 1024 * 1024
DEFAULT_ALL_TIMEOUT_S = 30.0
CONSUMED_TAGS = frozenset({b"_Version", b"_Unlock", b"_Debug+", b"_Debug-"})
FORBIDDEN_TAGS = frozenset({b"Born", b"Died", b"WrongHdr"})
#: How often freed queue memory is handed back to the system: after a slow consumer's backlog
#: the heap would otherwise keep its peak for good (95 MB seen on the 230-DU monitoring ligier).
RELEASE_MEMORY_EVERY_S = 10.0


@dataclass(slots=True)
class Counters:
    messages_in: int = 0
    bytes_in: int = 0
    messages_out: int = 0
    bytes_out: int = 0
    dropped: int = 0

    def line(self) -> str:
        return (
            f"in {self.messages_in} msg / {self.bytes_in} B, "
            f"out {self.messages_out} msg / {self.bytes_out} B, dropped {self.dropped}"
        )


@dataclass(slots=True, eq=False)
class Tag:
    """A tag known to the dispatcher: its subscribers and its counters."""

    name: bytes
    padded: bytes
    control: bool
    subscribers: list[tuple[Connection, bool]] = field(default_factory=list)
    counters: Counters = field(default_factory=Counters)


@dataclass(slots=True)
class Settings:
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    queue_bytes: int = DEFAULT_QUEUE_BYTES
    all_backlog_bytes: int = DEFAULT_ALL_BACKLOG_BYTES
    all_timeout_s: float = DEFAULT_ALL_TIMEOUT_S
    merge_subscriptions: bool = False
    allow_remote_stop: bool = False
    stats_interval_s: float = 0.0


class Connection(asyncio.Protocol):
    """One client line: parses its frames, holds its subscription and outgoing queue."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        self.dispatcher = dispatcher
        self.number = dispatcher.next_number()
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        self.nickname: bytes = b""
        self.connected_at = time.time()
        self.subscription: dict[bytes, bool] = {}
        self.always = False
        self.credits = 0
        self.counters = Counters()
        self.closing = False
        self._in_pieces: list[bytes] = []
        self._in_pending = 0
        self._in_need = PREFIX_SIZE
        self._out: deque[tuple[bytes, int, bool, Tag]] = deque()
        self._out_bytes = 0
        self._out_all_bytes = 0
        self._write_paused = False
        self.over_all_limit_since: float | None = None
        self._last_drop_log = 0.0
        self._drops_since_log = 0

    # -- identity -----------------------------------------------------------------------

    def __str__(self) -> str:
        nick = f" '{self.nickname.decode('ascii', 'replace')}'" if self.nickname else ""
        return f"client #{self.number} {self.peer}{nick}"

    # -- asyncio protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)
        self.dispatcher.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        if self._in_pending:
            log.warning(
                "%s disconnected in the middle of a frame (%d bytes of %d received); "
                "partial frame discarded",
                self,
                self._in_pending,
                self._in_need,
            )
        self._out.clear()
        self._out_bytes = self._out_all_bytes = 0
        self.dispatcher.remove(self, exc)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        self._flush()

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        if self._in_pieces:
            self._in_pieces.append(data)
            self._in_pending += len(data)
            if self._in_pending < self._in_need:
                return
            data = b"".join(self._in_pieces)
            self._in_pieces.clear()
            self._in_pending = 0
            self._in_need = PREFIX_SIZE
        try:
            self._parse(data)
        except ControlHostError as error:
            self.abort(str(error))
        except Exception:  # a bug of ours must cost one connection, never the dispatcher
            log.exception("internal error while handling data from %s", self)
            self.abort("internal error (see the traceback above)")

    # -- input --------------------------------------------------------------------------

    def _parse(self, data: bytes) -> None:
        """Route every complete frame of ``data``; keep the incomplete rest."""
        dispatcher = self.dispatcher
        tags = dispatcher.raw_tags
        unpack_from = PREFIX_STRUCT.unpack_from
        max_size = dispatcher.settings.max_message_size
        end = len(data)
        pos = 0
        run_tag: Tag | None = None
        run_raw: bytes | None = None
        run_start = run_count = 0
        while end - pos >= PREFIX_SIZE:
            raw_tag, size, reserved = unpack_from(data, pos)
            if raw_tag == run_raw and not reserved and 0 <= size <= max_size:
                # Fast path: the next canonical frame of the current same-tag run.
                frame_end = pos + PREFIX_SIZE + size
                if frame_end > end:
                    break
                run_count += 1
                pos = frame_end
                continue
            tag = tags.get(raw_tag)
            if tag is None:
                tag = dispatcher.learn_tag(raw_tag, size, self)
            if size < 0 or size > max_size:
                raise ControlHostError(
                    f"wrong header: '{tag.name.decode()}' announces {size} bytes "
                    f"(0x{size & 0xFFFFFFFF:08x}), limit {max_size}"
                )
            frame_end = pos + PREFIX_SIZE + size
            if frame_end > end:
                break
            canonical = reserved == 0 and raw_tag == tag.padded
            if tag is run_tag and canonical:
                run_count += 1
            else:
                if run_count:
                    self._publish(run_tag, data, run_start, pos, run_count)  # type: ignore[arg-type]
                    run_count = 0
                    run_tag = run_raw = None
                if tag.control:
                    self._control(tag.name, data[pos + PREFIX_SIZE : frame_end])
                    if self.closing:
                        return
                elif canonical:
                    run_tag, run_raw, run_start, run_count = tag, raw_tag, pos, 1
                else:
                    rebuilt = encode_frame(tag.name, data[pos + PREFIX_SIZE : frame_end])
                    self._publish(tag, rebuilt, 0, len(rebuilt), 1)
            pos = frame_end
        if run_count:
            self._publish(run_tag, data, run_start, pos, run_count)  # type: ignore[arg-type]
        if pos < end:
            rest = data[pos:]
            self._in_pieces.append(rest)
            self._in_pending = len(rest)
            if len(rest) >= PREFIX_SIZE:
                self._in_need = PREFIX_SIZE + unpack_from(rest)[1]

    def _publish(self, tag: Tag, data: bytes, start: int, stop: int, count: int) -> None:
        """Fan out ``count`` whole frames ``data[start:stop]`` of one tag."""
        size = stop - start
        self.counters.messages_in += count
        self.counters.bytes_in += size
        tag.counters.messages_in += count
        tag.counters.bytes_in += size
        if not tag.subscribers:
            return
        chunk = data if (start == 0 and stop == len(data)) else data[start:stop]
        for connection, wants_all in tag.subscribers:
            connection.deliver(tag, chunk, count, wants_all)

    def _control(self, name: bytes, payload: bytes) -> None:
        dispatcher = self.dispatcher
        self.counters.messages_in += 1
        self.counters.bytes_in += PREFIX_SIZE + len(payload)
        if name == b"_Subscri":
            parsed = parse_subscription(payload)
            if dispatcher.settings.merge_subscriptions:
                parsed = {**self.subscription, **parsed}
            dispatcher.set_subscription(self, parsed)
            log.debug("%s subscribed: %s", self, payload.decode("ascii", "replace").strip())
        elif name == b"_Always":
            self.always = True
            self._release_held()
        elif name == b"_Gime":
            if not self.always:
                self.credits += 1
                self._release_held()
        elif name in (b"_MyId", b"_UniqueI"):
            dispatcher.set_nickname(self, payload.split(b"\x00", 1)[0], unique=name == b"_UniqueI")
        elif name == b"_WhereIs":
            self.write_direct(encode_frame("_WhereIs", dispatcher.where_is(payload)))
        elif name == b"_ShowSta":
            self.write_direct(dispatcher.status_report(exclude=self).encode())
            self.close_after_flush()
        elif name in (b"_StopDis", b"_CloseAl"):
            dispatcher.remote_stop(self, name, payload)
        elif name in FORBIDDEN_TAGS:
            raise ControlHostError(f"wrong header: clients may not send '{name.decode()}'")
        # CONSUMED_TAGS: accepted and ignored.

    # -- output -------------------------------------------------------------------------

    def deliver(self, tag: Tag, chunk: bytes, count: int, wants_all: bool) -> None:
        if self.closing:
            return
        if not self.always:
            self._hold(tag, chunk, wants_all)
            return
        if not self._out and not self._write_paused:
            assert self.transport is not None
            self.transport.write(chunk)
            self._count_out(tag, count, len(chunk))
            return
        self._enqueue(tag, chunk, count, wants_all)
        self._enforce_limits(tag)

    def _enqueue(self, tag: Tag, chunk: bytes, count: int, wants_all: bool) -> None:
        self._out.append((chunk, count, wants_all, tag))
        self._out_bytes += len(chunk)
        if wants_all:
            self._out_all_bytes += len(chunk)

    def _dequeue(self) -> None:
        """Write the oldest queued chunk to the socket."""
        chunk, count, wants_all, tag = self._out.popleft()
        self._out_bytes -= len(chunk)
        if wants_all:
            self._out_all_bytes -= len(chunk)
        assert self.transport is not None
        self.transport.write(chunk)
        self._count_out(tag, count, len(chunk))

    def _enforce_limits(self, tag: Tag) -> None:
        settings = self.dispatcher.settings
        if self._out_all_bytes > settings.all_backlog_bytes:
            self.dispatcher.all_backlog_exceeded(self)
        if self._out_bytes - self._out_all_bytes > settings.queue_bytes:
            self._drop_oldest_any(tag)

    def _check_drained(self) -> None:
        limit = self.dispatcher.settings.all_backlog_bytes
        if self.over_all_limit_since is not None and self._out_all_bytes <= limit // 2:
            self.dispatcher.all_backlog_drained(self)

    def _count_out(self, tag: Tag, count: int, size: int) -> None:
        self.counters.messages_out += count
        self.counters.bytes_out += size
        tag.counters.messages_out += count
        tag.counters.bytes_out += size

    def _drop_oldest_any(self, tag: Tag) -> None:
        """Keep the any-queue within its limit by dropping its oldest any-messages."""
        limit = self.dispatcher.settings.queue_bytes
        kept: deque[tuple[bytes, int, bool, Tag]] = deque()
        dropped = 0
        while self._out and self._out_bytes - self._out_all_bytes > limit:
            item = self._out.popleft()
            if item[2]:
                kept.append(item)
                continue
            self._out_bytes -= len(item[0])
            dropped += item[1]
            item[3].counters.dropped += item[1]
        kept.extend(self._out)
        self._out = kept
        self.counters.dropped += dropped
        self._drops_since_log += dropped
        now = time.monotonic()
        if now - self._last_drop_log > 10.0:
            log.warning(
                "%s is not reading fast enough: queue of %d bytes full, dropped %d oldest "
                "'any' messages since the last report",
                self,
                limit,
                self._drops_since_log,
            )
            self._last_drop_log = now
            self._drops_since_log = 0

    def _flush(self) -> None:
        transport = self.transport
        if transport is None or self.closing:
            return
        while self._out and not self._write_paused:
            self._dequeue()
        self._check_drained()

    @property
    def queued_bytes(self) -> int:
        return self._out_bytes

    # On-request (``_Gime``) delivery: frames are held one by one until credit arrives.
    def _hold(self, tag: Tag, chunk: bytes, wants_all: bool) -> None:
        pos = 0
        while pos < len(chunk):
            size = PREFIX_STRUCT.unpack_from(chunk, pos)[1]
            frame_end = pos + PREFIX_SIZE + size
            frame = chunk if (pos == 0 and frame_end == len(chunk)) else chunk[pos:frame_end]
            self._enqueue(tag, frame, 1, wants_all)
            pos = frame_end
        self._enforce_limits(tag)
        self._release_held()

    def _release_held(self) -> None:
        if self.always:
            self._flush()
            return
        while self.credits > 0 and self._out and not self.closing:
            self._dequeue()
            self.credits -= 1
        self._check_drained()

    def write_direct(self, data: bytes) -> None:
        if self.transport is not None and not self.closing:
            self.transport.write(data)

    def close_after_flush(self) -> None:
        self.closing = True
        if self.transport is not None:
            self.transport.close()

    def abort(self, reason: str) -> None:
        """Close this connection because of what it did; one log line says why."""
        if self.closing:
            return
        log.warning("closing %s: %s", self, reason)
        self.closing = True
        if self.transport is not None:
            self.transport.abort()


class Dispatcher:
    """Connections, tags and subscriptions of one ligier."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings()
        self.connections: dict[int, Connection] = {}
        self.tags: dict[bytes, Tag] = {}
        self.raw_tags: dict[bytes, Tag] = {}
        self.reading_paused = False
        self.over_all_limit: set[Connection] = set()
        self.started = time.time()
        self.stopped = asyncio.Event()
        self._numbers = 0

    def next_number(self) -> int:
        self._numbers += 1
        return self._numbers

    # -- tags ---------------------------------------------------------------------------

    def tag(self, name: bytes) -> Tag:
        tag = self.tags.get(name)
        if tag is None:
            control = name.startswith(b"_") and name in CONTROL_TAGS
            tag = Tag(name, name.ljust(8, b"\x00"), control or name in FORBIDDEN_TAGS)
            self.tags[name] = tag
        return tag

    def learn_tag(self, raw_tag: bytes, size: int, sender: Connection) -> Tag:
        name = normalise_tag(raw_tag)
        if name is None:
            raise ControlHostError(
                f"wrong header: invalid tag '{describe_bytes(raw_tag)}' size {size} "
                f"(0x{size & 0xFFFFFFFF:08x})"
            )
        tag = self.tag(name)
        if len(self.raw_tags) < 65536:
            self.raw_tags[raw_tag] = tag
        return tag

    def set_subscription(self, connection: Connection, subscription: dict[bytes, bool]) -> None:
        for name in connection.subscription:
            tag = self.tags[name]
            tag.subscribers = [pair for pair in tag.subscribers if pair[0] is not connection]
        connection.subscription = subscription
        for name, wants_all in subscription.items():
            self.tag(name).subscribers.append((connection, wants_all))

    # -- connections --------------------------------------------------------------------

    def add(self, connection: Connection) -> None:
        self.connections[connection.number] = connection
        if self.reading_paused and connection.transport is not None:
            connection.transport.pause_reading()
        log.info("%s connected", connection)

    def remove(self, connection: Connection, exc: Exception | None) -> None:
        if self.connections.pop(connection.number, None) is None:
            return
        self.set_subscription(connection, {})
        if connection in self.over_all_limit:
            self.all_backlog_drained(connection)
        log.info(
            "%s disconnected%s; %s",
            connection,
            f" ({exc})" if exc else "",
            connection.counters.line(),
        )
        if connection.nickname:
            self.announce(b"Died", connection.nickname)

    def announce(self, tag_name: bytes, payload: bytes) -> None:
        """Born/Died: generated here, delivered like data to their subscribers."""
        tag = self.tag(tag_name)
        frame = encode_frame(tag_name, payload)
        tag.counters.messages_in += 1
        tag.counters.bytes_in += len(frame)
        for connection, wants_all in list(tag.subscribers):
            connection.deliver(tag, frame, 1, wants_all)

    def set_nickname(self, connection: Connection, nickname: bytes, *, unique: bool) -> None:
        if connection.nickname:
            self.announce(b"Died", connection.nickname)
            connection.nickname = b""
        if not nickname:
            return
        if unique and any(
            other.nickname == nickname and other is not connection
            for other in self.connections.values()
        ):
            connection.abort(f"nickname {nickname!r} is already in use (_UniqueI)")
            return
        connection.nickname = nickname
        self.announce(b"Born", nickname)

    def where_is(self, nickname: bytes) -> bytes:
        nickname = nickname.split(b"\x00", 1)[0]
        hosts = [
            c.peer.rsplit(":", 1)[0]
            for c in self.connections.values()
            if nickname and c.nickname == nickname
        ]
        return " ".join(hosts).encode()

    def remote_stop(self, requester: Connection, name: bytes, payload: bytes) -> None:
        if not self.settings.allow_remote_stop:
            log.warning("%s sent %s; ignored (start with --allow-remote-stop)", requester, name)
            return
        if name == b"_StopDis":
            log.warning("%s asked the dispatcher to stop", requester)
            self.stopped.set()
            return
        nickname = payload.split(b"\x00", 1)[0]
        for connection in list(self.connections.values()):
            if not nickname or connection.nickname == nickname:
                connection.abort(f"_CloseAl from {requester}")

    # -- back-pressure for 'all' subscribers ----------------------------------------------

    def all_backlog_exceeded(self, connection: Connection) -> None:
        if connection in self.over_all_limit:
            return
        connection.over_all_limit_since = time.monotonic()
        self.over_all_limit.add(connection)
        log.warning(
            "%s ('all' subscriber) has more than %d bytes waiting; pausing publishers",
            connection,
            self.settings.all_backlog_bytes,
        )
        self._set_reading(paused=True)

    def all_backlog_drained(self, connection: Connection) -> None:
        connection.over_all_limit_since = None
        self.over_all_limit.discard(connection)
        if not self.over_all_limit:
            log.info("'all' backlog drained; resuming publishers")
            self._set_reading(paused=False)

    def _set_reading(self, *, paused: bool) -> None:
        if self.reading_paused == paused:
            return
        self.reading_paused = paused
        for connection in self.connections.values():
            transport = connection.transport
            if transport is None or connection.closing:
                continue
            if paused:
                transport.pause_reading()
            else:
                transport.resume_reading()

    def check_stalled(self) -> None:
        now = time.monotonic()
        for connection in list(self.over_all_limit):
            since = connection.over_all_limit_since
            if since is not None and now - since > self.settings.all_timeout_s:
                connection.abort(
                    f"'all' backlog above {self.settings.all_backlog_bytes} bytes for more "
                    f"than {self.settings.all_timeout_s:g} s; disconnecting so publishers can go on"
                )
                self.all_backlog_drained(connection)

    # -- reports ------------------------------------------------------------------------

    def status_report(self, exclude: Connection | None = None) -> str:
        now = time.time()
        lines = [
            f"km3mon ligier status at {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(now))} UTC"
            f" (up {now - self.started:.0f} s)",
            "Tag statistics:",
        ]
        for name, tag in sorted(self.tags.items()):
            if tag.control:
                continue
            lines.append(
                f"  {name.decode():<8} {tag.counters.line()}, subscribers {len(tag.subscribers)}"
            )
        lines.append("Active clients:")
        for connection in self.connections.values():
            if connection is exclude:
                continue
            subscription = " ".join(
                f"{'a' if wants_all else 'w'} {name.decode()}"
                for name, wants_all in connection.subscription.items()
            )
            lines.append(
                f"  {connection} since "
                f"{time.strftime('%H:%M:%S', time.gmtime(connection.connected_at))} UTC, "
                f"subscription [{subscription}], {connection.counters.line()}, "
                f"queued {connection.queued_bytes} B"
            )
        return "\n".join(lines) + "\n"


CONTROL_TAGS = frozenset(
    {
        b"_Subscri",
        b"_Always",
        b"_Gime",
        b"_MyId",
        b"_UniqueI",
        b"_WhereIs",
        b"_ShowSta",
        b"_StopDis",
        b"_CloseAl",
        *CONSUMED_TAGS,
    }
)


async def serve(
    host: str, port: int, settings: Settings, ready: asyncio.Event | None = None
) -> None:
    """Run a dispatcher until SIGTERM/SIGINT (or ``_StopDis`` when allowed)."""
    loop = asyncio.get_running_loop()
    dispatcher = Dispatcher(settings)
    # before listening: a client may connect (and a supervisor stop us) as soon as we listen
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, dispatcher.stopped.set)
    server = await loop.create_server(
        lambda: Connection(dispatcher), host, port, reuse_address=True, backlog=1024
    )
    bound = ", ".join(str(s.getsockname()[:2]) for s in server.sockets)
    log.warning("ligier listening on %s (pid %d)", bound, os.getpid())
    if ready is not None:
        ready.set()
    stats_task = asyncio.create_task(_housekeeping(dispatcher))
    await dispatcher.stopped.wait()
    log.warning("ligier shutting down: %d connections", len(dispatcher.connections))
    stats_task.cancel()
    server.close()
    for connection in list(dispatcher.connections.values()):
        if connection.transport is not None:
            connection.transport.close()
    await asyncio.sleep(0.05)
    log.warning("ligier stopped\n%s", dispatcher.status_report())


async def _housekeeping(dispatcher: Dispatcher) -> None:
    interval = dispatcher.settings.stats_interval_s
    next_stats = time.monotonic() + interval
    next_release = time.monotonic() + RELEASE_MEMORY_EVERY_S
    while True:
        await asyncio.sleep(0.5)
        dispatcher.check_stalled()
        now = time.monotonic()
        if interval > 0 and now >= next_stats:
            next_stats += interval
            log.info("statistics\n%s", dispatcher.status_report().rstrip())
        if now >= next_release:
            next_release = now + RELEASE_MEMORY_EVERY_S
            release_free_memory()


# -- command line ---------------------------------------------------------------------


def debug_level_to_logging(level: int) -> int:
    """JLigier's ``-d`` levels: 0 warnings only, 1-2 info (with periodic statistics), 3+ debug."""
    if level <= 0:
        return logging.WARNING
    return logging.INFO if level < 3 else logging.DEBUG


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "ligier",
        help="ControlHost dispatcher (drop-in for Jpp's JLigier)",
        description="ControlHost dispatcher, a drop-in for Jpp's JLigier: "
        "`km3mon ligier -d3 -P 55530` behaves like `JLigier -d3 -P 55530`.",
    )
    parser.add_argument("-P", "--port", type=int, default=DEFAULT_PORT, help="TCP port (5553)")
    parser.add_argument(
        "-d", "--debug", type=int, default=0, help="0 warnings, 1-2 info + statistics, 3 debug"
    )
    parser.add_argument(
        "--host", default="0.0.0.0", help="address to listen on (default: all, like JLigier)"
    )
    parser.add_argument(
        "--max-message-size",
        type=int,
        default=DEFAULT_MAX_MESSAGE_SIZE,
        help="largest accepted payload in bytes (64 MiB)",
    )
    parser.add_argument(
        "--queue-bytes",
        type=int,
        default=DEFAULT_QUEUE_BYTES,
        help="per-client queue for 'any' subscriptions; oldest dropped beyond it (64 MiB)",
    )
    parser.add_argument(
        "--all-backlog",
        type=int,
        default=DEFAULT_ALL_BACKLOG_BYTES,
        help="'all' backlog in bytes above which publishers are paused (256 MiB)",
    )
    parser.add_argument(
        "--all-timeout",
        type=float,
        default=DEFAULT_ALL_TIMEOUT_S,
        help="seconds an 'all' client may stay above its backlog before it is dropped (30)",
    )
    parser.add_argument(
        "--stats-interval",
        type=float,
        default=60.0,
        help="seconds between statistics reports at -d >= 1 (60)",
    )
    parser.add_argument(
        "--merge-subscriptions",
        action="store_true",
        help="union of successive _Subscri instead of replace (multi-tag KM3io.jl clients)",
    )
    parser.add_argument(
        "--allow-remote-stop", action="store_true", help="obey _StopDis and _CloseAl"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from km3mon.logs import setup_logging

    setup_logging(debug_level_to_logging(args.debug))
    settings = Settings(
        max_message_size=args.max_message_size,
        queue_bytes=args.queue_bytes,
        all_backlog_bytes=args.all_backlog,
        all_timeout_s=args.all_timeout,
        merge_subscriptions=args.merge_subscriptions,
        allow_remote_stop=args.allow_remote_stop,
        stats_interval_s=args.stats_interval if args.debug >= 1 else 0.0,
    )
    tune_garbage_collector()
    try:
        asyncio.run(serve(args.host, args.port, settings))
    except OSError as error:
        log.error("cannot listen on %s:%d: %s", args.host, args.port, error)
        return 1
    return 0
