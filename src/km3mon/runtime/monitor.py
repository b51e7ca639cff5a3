"""The one runtime every monitoring process shares.

It owns what the original km3mon repeated in every script: command line, ligier
connection (reconnect with backoff), receiving in batches on a thread of its own, handing
whole batches to the monitor, rendering on a clock of its own (so a stopped stream shows
up as stale instead of as a frozen plot), atomic output, the freshness record, error
counting with rate-limited logs, and a clean stop on SIGTERM. A monitor holds only its
own logic: which tags, what it accumulates from a batch, what it draws.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from km3mon import published
from km3mon.controlhost import Client, Message
from km3mon.published import atomic_write
from km3mon.runtime.freshness import Freshness, OutputRecord
from km3mon.runtime.guards import TimeGate, TimeGuard, possible
from km3mon.runtime.output import png_stamps, save_figure
from km3mon.runtime.streaming import release_free_memory, tune_garbage_collector
from km3mon.timetext import utc

if TYPE_CHECKING:
    from matplotlib.artist import Artist
    from matplotlib.figure import Figure

    from km3mon.config import PipelineConfig
    from km3mon.detector import Detector
    from km3mon.figures.palette_image import PaletteFigure

#: Received data waiting for the monitor beyond this are dropped (oldest first) and counted.
MAX_QUEUED_BYTES = 512 * 1024 * 1024
#: Payload bytes handed to one ``consume`` at most (a larger message goes alone): a render
#: of a few seconds leaves a backlog, and reco's decode and hit selection take 26 times the
#: bytes of its events (a 5 MB backlog: 140 MB at once, at 230 DUs).
CONSUME_BYTES = 1024 * 1024
FRESHNESS_EVERY_S = 2.0
#: Free memory is handed back to the system this often (``release_free_memory``).
RELEASE_MEMORY_EVERY_S = 10.0
#: How long a stopping monitor waits for its receiver's read to end (reads time out at 0.5 s).
RECEIVER_STOP_S = 2.0
ERROR_LOG_EVERY_S = 10.0


class Monitor:
    """Base of a monitoring process; subclasses set ``name`` and ``tags``."""

    name: ClassVar[str]
    tags: ClassVar[tuple[str, ...]]
    help: ClassVar[str] = ""
    default_interval_s: ClassVar[float] = 30.0
    #: Consume each batch on the receiving thread as it arrives, not on the main thread
    #: between drawings: for a stream so large that a few seconds of drawing queue hundreds
    #: of MB (k40's IO_TSL1 at 230 DUs, 64 MB/s). ``consume`` must then be safe beside
    #: ``render`` and ``poll``, which go on on the main thread.
    consume_on_receipt: ClassVar[bool] = False

    def __init__(self, context: Context) -> None:
        self.context = context
        self.log = context.log

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """Flags of this monitor beyond the common ones."""

    @classmethod
    def configured_interval_s(cls, pipeline: PipelineConfig) -> float | None:
        """The render interval from pipeline.toml, where the original had one there."""
        return None

    def consume(self, messages: list[Message]) -> None:
        """Accumulate one batch; raise only for a batch that cannot be used at all."""
        raise NotImplementedError

    def render(self) -> None:
        """Draw and save outputs with ``self.context.save_figure``; called on the clock."""
        raise NotImplementedError

    def render_more(self) -> bool:
        """Go on with a render tick too long to do at once (see ``RoundRobin``); the runtime
        calls it between batches while it returns True."""
        return False

    def poll(self) -> None:
        """Called about 20 times a second; monitors without tags fetch their data here."""

    def stop(self) -> None:
        """Called once when the process stops (SIGTERM): save what must survive a restart."""


class Context:
    """What the runtime offers a monitor: settings, output, bookkeeping."""

    def __init__(
        self,
        args: argparse.Namespace,
        freshness: Freshness,
        log: logging.Logger,
        pipeline: PipelineConfig,
    ) -> None:
        self.args = args
        #: ``pipeline.toml`` of the working folder (defaults where it is missing).
        self.pipeline = pipeline
        self.plot_dir = Path(args.plot_dir)
        self.data_dir = Path(args.data_dir)
        self.freshness = freshness
        self.log = log
        self._errors_since_log = 0
        self._last_error_log = 0.0
        self._unknown_since_log: set[int] = set()
        self._last_unknown_log = 0.0
        self.time_guard = TimeGuard()
        #: Set by the runtime of a monitor with tags: every message is judged by its DAQ
        #: time before the monitor sees it, and the decoders only refuse absurd times.
        self.gate: TimeGate | None = None
        self._implausible_since_log = 0
        self._last_implausible_log = 0.0
        self._jumps_since_log = 0
        self._last_jump_log = 0.0

    @cached_property
    def detector(self) -> Detector:
        """From ``--detx`` / ``$DETX``, else the KM3NeT database for ``-d DET_ID``."""
        from km3mon.detector import load_detector

        return load_detector(
            self.args.det_id or None,
            self.args.detx,
            share_in=published.detectors_dir(self.data_dir),
        )

    @property
    def data_time(self) -> float | None:
        """DAQ time of the newest data if the monitor reported one, else its arrival time."""
        return self.freshness.newest_data_at or self.freshness.last_message_at

    @property
    def stale(self) -> bool:
        newest = self.freshness.last_message_at
        return newest is None or time.time() - newest > self.freshness.stale_after_s

    def saw_data_at(self, timestamp: float) -> None:
        """Record the DAQ time of the newest data (shown on plots and in the record); an
        implausible time is counted instead."""
        if not self.plausible_times(np.array([timestamp])).all():
            return
        newest = self.freshness.newest_data_at
        if newest is None or timestamp > newest:
            self.freshness.newest_data_at = timestamp

    def plausible_times(self, times_s: np.ndarray) -> np.ndarray:
        """Which DAQ times may be used (see ``TimeGuard``; behind the gate only absurd
        times are left to refuse); the others are counted in the record as
        ``implausible_times`` and logged at most every ERROR_LOG_EVERY_S."""
        times_s = np.asarray(times_s, dtype=np.float64)
        if self.gate is None:
            plausible = self.time_guard.plausible(times_s)
        else:
            plausible = possible(times_s, time.time())
        if not plausible.all():
            self._count_implausible(times_s[~plausible])
        return plausible

    def admit(self, messages: list[Message]) -> list[Message]:
        """The messages a monitor may use now (see ``TimeGate``): held ones whose new time
        is confirmed come first; held ones that stayed wild are counted as implausible."""
        if self.gate is None:
            return messages
        admitted = self.gate.admit(messages)
        if admitted.rejected_s:
            self._count_implausible(np.array(admitted.rejected_s))
        if admitted.released:
            self._jumps_since_log += 1
            now = time.monotonic()
            if now - self._last_jump_log >= ERROR_LOG_EVERY_S:
                self.log.info(
                    "DAQ time jumped to %s: %d messages held until the stream confirmed it "
                    "(%d such jumps since the last report)",
                    utc(float(np.median(self.time_guard.recent_s))),
                    admitted.released,
                    self._jumps_since_log,
                )
                self._last_jump_log = now
                self._jumps_since_log = 0
        return admitted.messages

    def _count_implausible(self, wild_s: np.ndarray) -> None:
        self.freshness.implausible_times += len(wild_s)
        self._implausible_since_log += len(wild_s)
        now = time.monotonic()
        if now - self._last_implausible_log >= ERROR_LOG_EVERY_S:
            self.log.warning(
                "implausible DAQ times ignored, e.g. %s (%d since the last report, %d in total)",
                ", ".join(_describe_time(t) for t in wild_s[:3].tolist()),
                self._implausible_since_log,
                self.freshness.implausible_times,
            )
            self._last_implausible_log = now
            self._implausible_since_log = 0

    def count_error(self, what: str, error: Exception | str, count: int = 1) -> None:
        """Count unusable input; log it at most every ERROR_LOG_EVERY_S seconds."""
        self.freshness.decode_errors += count
        self._errors_since_log += count
        now = time.monotonic()
        if now - self._last_error_log >= ERROR_LOG_EVERY_S:
            self.log.warning(
                "%s: %s (%d such errors since the last report, %d in total)",
                what,
                error,
                self._errors_since_log,
                self.freshness.decode_errors,
            )
            self._last_error_log = now
            self._errors_since_log = 0

    def dom_index(self, dom_ids: np.ndarray) -> np.ndarray:
        """Detector index of each DOM id; ids not in the detector are -1, counted and logged."""
        index = self.detector.dom_index(dom_ids)
        unknown = index < 0
        if unknown.any():
            self.count_unknown_doms(np.asarray(dom_ids)[unknown])
        return index

    def count_unknown_doms(self, dom_ids: np.ndarray) -> None:
        """DOM ids that are not in the detector: counted, logged at most every 10 s."""
        self.freshness.unknown_doms += len(dom_ids)
        self._unknown_since_log.update(int(d) for d in np.unique(dom_ids)[:100])
        now = time.monotonic()
        if now - self._last_unknown_log >= ERROR_LOG_EVERY_S:
            self.log.warning(
                "DOM ids not in detector %d (%s): %s (%d rows of data on such DOMs in total)",
                self.detector.det_id,
                self.detector.source,
                ", ".join(map(str, sorted(self._unknown_since_log)[:20])),
                self.freshness.unknown_doms,
            )
            self._unknown_since_log.clear()
            self._last_unknown_log = now

    def save_metrics(self, name: str, metrics: dict[str, object]) -> None:
        """The numbers behind a plot, as JSON for the API (NaN becomes null)."""
        document = {"process": self.freshness.process, "data_time": self.data_time, **metrics}
        text = json.dumps(_finite(document), default=_json_value, allow_nan=False)
        atomic_write(published.metrics(self.data_dir, name), text.encode())

    def save_figure(
        self,
        filename: str,
        figure: Figure,
        dpi: int = 100,
        keep: bool = False,
        archived: bool = False,
    ) -> None:
        """Stamp the figure with the time of its data (and STALE if so), write it atomically.

        ``keep=True`` for figures a monitor reuses: the stamps are removed again after saving.
        ``archived=True`` for figures drawn once and kept (an event display), which are
        therefore not among the outputs whose freshness the record tracks.
        """
        start = time.perf_counter()
        rendered_at = time.time()
        stamps = stamp_figure(figure, self.data_time, self.stale, rendered_at)
        try:
            text = png_stamps(self.data_time, rendered_at, self.stale)
            save_figure(figure, self.plot_dir / filename, dpi=dpi, text=text)
        finally:
            if keep:
                for artist in stamps:
                    artist.remove()
            else:
                import matplotlib.pyplot as plt

                plt.close(figure)
                # A figure is a web of reference cycles; with the collector tuned for
                # streaming (km3mon.runtime.streaming) it would wait long to be freed.
                gc.collect()
        if not archived:
            self._record_output(filename, start)

    def redraw_frame(self, figure: PaletteFigure) -> None:
        """A palette figure's frame for this tick, with the stamps ``save_figure`` puts on
        every plot (the STALE banner drawn over the data), also as its PNGs' text chunks."""
        rendered_at = time.time()
        stamps = stamp_figure(figure.figure, self.data_time, self.stale, rendered_at)
        figure.png_text = png_stamps(self.data_time, rendered_at, self.stale)
        try:
            figure.redraw_frame(overlays=stamps[1:])
        finally:
            for artist in stamps:
                artist.remove()

    def save_png(self, filename: str, png: bytes, started: float) -> None:
        """A PNG drawn without matplotlib's savefig (stamps already in it), started at
        ``time.perf_counter()`` value ``started``."""
        atomic_write(self.plot_dir / filename, png)
        self._record_output(filename, started)

    def _record_output(self, filename: str, started: float) -> None:
        self.freshness.outputs[filename] = OutputRecord(
            rendered_at=time.time(),
            newest_data_at=self.data_time,
            render_s=round(time.perf_counter() - started, 4),
            stale=self.stale,
        )


def _finite(value: object) -> object:
    """NaN and infinities (floats are JSON-serialisable, but not these) become null."""
    if isinstance(value, float):
        return value if np.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


def _json_value(value: object) -> object:
    if isinstance(value, np.ndarray):
        if value.dtype.kind == "f":
            return [None if np.isnan(v) else round(float(v), 6) for v in value]
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def _describe_time(timestamp: float) -> str:
    if 0 <= timestamp < 2**33:
        return f"{timestamp:.0f} ({utc(timestamp)})"
    return f"{timestamp:g}"


def stamp_figure(
    figure: Figure, newest_data_at: float | None, stale: bool, rendered_at: float
) -> list[Artist]:
    """The time of the newest data on every plot, and a STALE banner in words and colour."""
    text = f"data until {utc(newest_data_at)}\nrendered {utc(rendered_at)}"
    stamps = [figure.text(0.995, 0.005, text, ha="right", va="bottom", fontsize=7, color="0.3")]
    if stale:
        stamps.append(
            figure.text(
                0.5,
                0.5,
                f"STALE: no data since {utc(newest_data_at)}",
                ha="center",
                va="center",
                fontsize=20,
                color="white",
                bbox={"facecolor": "#b2182b", "alpha": 0.85, "edgecolor": "none"},
                zorder=1000,
            )
        )
    return stamps


class RoundRobin:
    """Renders many outputs (one per DU) in short slices, longest-waiting first.

    A 230-DU detector has hundreds of plots; drawing them in one go would stop the
    monitor from consuming for many seconds, so its queue and its lag would grow. A tick
    (``start``) queues every output; the runtime then calls ``run`` between batches, each
    call drawing for about ``SLICE_S``. Outputs a tick did not reach come first in the next.
    """

    SLICE_S = 0.25

    def __init__(self) -> None:
        self.rendered_at: dict[object, float] = {}
        self.queue: list = []
        #: Seconds between two redraws of the same output when ticks did not finish, else 0.
        self.redraw_interval_s = 0.0

    def start(self, keys: list, first: tuple = ()) -> None:
        """Queue ``keys``; ``first`` (some of them) before all others, e.g. the summaries of
        a new result, which would otherwise wait for hundreds of never-drawn DU images."""
        now = time.monotonic()
        if self.queue:  # the previous tick did not finish: say how late outputs are
            self.redraw_interval_s = max(now - self.rendered_at.get(k, now) for k in keys)
        else:
            self.redraw_interval_s = 0.0
        # longest-waiting (never drawn first) at the end, where ``run`` pops; equally long
        # waiting outputs in the order given (a detector-wide summary listed first comes
        # before 230 DU images, not after them)
        self.queue = sorted(keys, key=lambda k: (k not in first, self.rendered_at.get(k, 0.0)))[
            ::-1
        ]

    def run(self, render_one: Callable[[object], None]) -> bool:
        """Render queued outputs for about one slice; True while some are left."""
        start = time.monotonic()
        while self.queue and time.monotonic() - start < self.SLICE_S:
            key = self.queue.pop()
            render_one(key)
            self.rendered_at[key] = time.monotonic()
        return bool(self.queue)


class Intake:
    """Hands received batches to the monitor: the record's counts, the time gate, consume."""

    def __init__(self, monitor: Monitor, context: Context) -> None:
        self.monitor = monitor
        self.context = context
        self._count = 0  # messages since the last ``counted()``
        self._count_lock = threading.Lock()

    def counted(self) -> int:
        """Messages taken in since the last call (the record's message rate)."""
        with self._count_lock:
            count, self._count = self._count, 0
        return count

    def take_in(self, messages: list[Message], size: int) -> None:
        freshness = self.context.freshness
        if messages:
            freshness.messages += len(messages)
            freshness.bytes += size
            freshness.last_message_at = time.time()
            with self._count_lock:
                self._count += len(messages)
        usable = self.context.admit(messages)
        for part in _parts(usable, CONSUME_BYTES):
            try:
                self.monitor.consume(part)
            except Exception as error:  # a bad batch must not end the monitor
                self.context.count_error(f"batch of {len(part)} messages unusable", error)
            if freshness.newest_data_at is not None:
                freshness.data_lag_s = round(time.time() - freshness.newest_data_at, 3)


def _parts(messages: list[Message], most_bytes: int) -> Iterator[list[Message]]:
    """``messages`` in order, in runs of at most ``most_bytes`` of payload (a larger
    message is a run of its own)."""
    first, size = 0, 0
    for index, message in enumerate(messages):
        if size and size + len(message.payload) > most_bytes:
            yield messages[first:index]
            first, size = index, 0
        size += len(message.payload)
    if first < len(messages):
        yield messages[first:]


class Receiver(threading.Thread):
    """Reads batches from the ligier so that rendering never stalls the socket; with an
    ``intake`` (``Monitor.consume_on_receipt``) it also consumes them there."""

    def __init__(
        self,
        client: Client,
        tags: list[str],
        freshness: Freshness,
        stop: threading.Event,
        intake: Intake | None = None,
    ) -> None:
        super().__init__(name="receiver", daemon=True)
        self.client = client
        self.tags = tags
        self.freshness = freshness
        self.stop = stop
        self.intake = intake
        self.batches: deque[list[Message]] = deque()
        self.queued_bytes = 0
        self.lock = threading.Lock()
        #: Set when the connection is lost or back: the record is written at once.
        self.connection_changed = threading.Event()
        # Told by the client itself, also while it waits and retries inside a call: the
        # record says "disconnected" during the whole outage.
        client.on_connection = self._connection_changed

    def _connection_changed(self, connected: bool) -> None:
        self.freshness.connected = connected
        self.freshness.reconnects = self.client.reconnects
        self.connection_changed.set()

    def run(self) -> None:
        try:
            self._receive()
        except Exception:
            if not self.stop.is_set():
                raise
            # the client closed under a read on the way out: nothing is lost, say nothing

    def _receive(self) -> None:
        self.client.connect()  # retries with backoff until the ligier is there
        self.client.subscribe(self.tags)
        while not self.stop.is_set():
            batch = self.client.receive_batch(timeout=0.5)
            size = sum(len(m.payload) for m in batch)
            if self.intake is not None:  # also without a batch: held messages are due
                try:
                    self.intake.take_in(batch, size)
                except Exception as error:  # a bug there must not end the receiving
                    self.intake.context.count_error(f"batch of {len(batch)} not taken in", error)
                continue
            if not batch:
                continue
            with self.lock:
                self.batches.append(batch)
                self.queued_bytes += size
                while self.queued_bytes > MAX_QUEUED_BYTES and len(self.batches) > 1:
                    dropped = self.batches.popleft()
                    self.queued_bytes -= sum(len(m.payload) for m in dropped)
                    self.freshness.dropped += len(dropped)

    def take(self) -> tuple[list[Message], int]:
        """Everything received since the last call, and its payload bytes."""
        with self.lock:
            batches = list(self.batches)
            size = self.queued_bytes
            self.batches.clear()
            self.queued_bytes = 0
        return [message for batch in batches for message in batch], size


def run_monitor(monitor_class: type[Monitor], args: argparse.Namespace) -> int:
    from km3mon.logs import setup_logging

    setup_logging(args.log_level)
    log = logging.getLogger(f"km3mon.{monitor_class.name}")
    from km3mon.config import ConfigError, load_pipeline

    try:
        pipeline = load_pipeline(args.pipeline)
    except ConfigError as error:
        log.error("%s cannot start: %s", monitor_class.name, error)
        return 2
    interval_s = (
        args.interval
        or monitor_class.configured_interval_s(pipeline)
        or monitor_class.default_interval_s
    )
    freshness = Freshness(
        process=monitor_class.name,
        pid=os.getpid(),
        started_at=time.time(),
        ligier=f"{args.ligier_ip}:{args.ligier_port}",
        tags=list(monitor_class.tags),
        render_interval_s=interval_s,
        stale_after_s=args.stale_after
        if args.stale_after is not None
        else default_stale_after_s(interval_s),
    )
    context = Context(args, freshness, log, pipeline)
    try:
        monitor = monitor_class(context)
    except Exception as error:  # configuration: say what to fix, let supervisord report it
        log.error("%s cannot start: %s", monitor_class.name, error)
        return 2
    tune_garbage_collector()
    record_path = published.freshness(Path(args.data_dir), monitor_class.name)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())

    log.warning(
        "%s: %s from %s every %g s into %s",
        monitor_class.name,
        ", ".join(monitor_class.tags) or "polling",
        freshness.ligier,
        interval_s,
        context.plot_dir,
    )
    intake = Intake(monitor, context)
    receiver = None
    if monitor_class.tags:
        context.gate = TimeGate(context.time_guard)
        client = Client(args.ligier_ip, args.ligier_port, name=monitor_class.name)
        on_receipt = intake if monitor_class.consume_on_receipt else None
        receiver = Receiver(client, list(monitor_class.tags), freshness, stop, on_receipt)
        receiver.start()
    next_render = time.monotonic() + interval_s
    rendering = False  # a tick with outputs left to draw
    next_record = 0.0
    next_release = time.monotonic() + RELEASE_MEMORY_EVERY_S
    rate_since = time.monotonic()
    while not stop.is_set():
        messages, size = receiver.take() if receiver is not None else ([], 0)
        try:
            monitor.poll()
        except Exception:  # a bug in polling must not end the monitor
            log.exception("polling failed")
        if receiver is None or receiver.intake is None:
            intake.take_in(messages, size)
        now_mono = time.monotonic()
        if now_mono >= next_render:
            next_render = max(next_render + interval_s, now_mono + 0.1 * interval_s)
            _render(monitor, context)
            rendering = True
        elif rendering:
            rendering = _render_more(monitor, context)
        changed = receiver is not None and receiver.connection_changed.is_set()
        if now_mono >= next_record or changed:
            if changed:
                receiver.connection_changed.clear()
            next_record = now_mono + FRESHNESS_EVERY_S
            elapsed, rate_since = max(now_mono - rate_since, 1e-9), now_mono
            freshness.message_rate_hz = round(intake.counted() / elapsed, 2)
            if receiver is not None:
                freshness.reconnects = receiver.client.reconnects
            freshness.state = _state(freshness, context)
            freshness.write(record_path)
        if now_mono >= next_release:
            next_release = now_mono + RELEASE_MEMORY_EVERY_S
            release_free_memory()
        if not messages and not rendering:
            stop.wait(0.05)
    if receiver is not None:
        # let its read (or its consume) end before the monitor stops and the socket goes: a
        # read on a closed client raises in the thread, and the traceback reached the log when
        # the exit took longer than the read (k40 waiting for a running fit)
        receiver.join(timeout=RECEIVER_STOP_S)
    try:
        monitor.stop()
    except Exception:  # saving on the way out must not hide the stop itself
        log.exception("stopping failed")
    freshness.state = "stopped"
    freshness.write(record_path)
    if receiver is not None:
        receiver.client.close()
    log.warning(
        "%s stopped after %d messages (%d dropped, %d errors)",
        monitor_class.name,
        freshness.messages,
        freshness.dropped,
        freshness.decode_errors,
    )
    return 0


def _render(monitor: Monitor, context: Context) -> None:
    try:
        monitor.render()
    except Exception:  # a plotting bug must not end the monitor; the record shows the age
        context.log.exception("rendering failed")


def _render_more(monitor: Monitor, context: Context) -> bool:
    try:
        return monitor.render_more()
    except Exception:  # as in _render
        context.log.exception("rendering failed")
        return False


def _state(freshness: Freshness, context: Context) -> str:
    if not freshness.connected:
        return "disconnected"
    return "stale" if context.stale else "running"


def default_stale_after_s(interval_s: float) -> float:
    """No data for three render intervals, and at least a minute: stale (README)."""
    return max(3 * interval_s, 60.0)


def add_common_arguments(parser: argparse.ArgumentParser, default_interval_s: float) -> None:
    parser.add_argument("-d", "--det-id", type=int, default=0, help="detector id")
    parser.add_argument("-l", "--ligier-ip", default="127.0.0.1", help="ligier host")
    parser.add_argument("-p", "--ligier-port", type=int, default=5553, help="ligier port")
    parser.add_argument("-o", "--plot-dir", default="plots", help="where the PNGs go (plots)")
    parser.add_argument("--data-dir", default="data", help="history and freshness records (data)")
    parser.add_argument(
        "-i",
        "--interval",
        type=float,
        default=None,
        help=f"seconds between renders ({default_interval_s:g})",
    )
    parser.add_argument(
        "--stale-after",
        type=float,
        help="seconds without data before outputs are stale (3 intervals, at least 60)",
    )
    parser.add_argument("--detx", help="DETX file (default: $DETX, else the KM3NeT database)")
    parser.add_argument(
        "--pipeline", help="pipeline.toml with plot ranges (default: ./pipeline.toml if present)"
    )
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING")


def monitor_in_process(
    monitor_class: type[Monitor], detx: str | Path, folder: Path, pipeline: PipelineConfig
) -> Monitor:
    """A monitor built in this process with its default arguments, its plots and data under
    ``folder`` and no ligier: benchmarks and tests feed it directly (no network, no clock)."""
    parser = argparse.ArgumentParser()
    add_common_arguments(parser, monitor_class.default_interval_s)
    monitor_class.add_arguments(parser)
    args = parser.parse_args(["--detx", str(detx), "-o", str(folder / "plots"),
                              "--data-dir", str(folder / "data")])  # fmt: skip
    freshness = Freshness(process=monitor_class.name, pid=0, started_at=0.0, ligier="-",
                          tags=[], render_interval_s=10.0, stale_after_s=60.0)  # fmt: skip
    return monitor_class(
        Context(args, freshness, logging.getLogger(f"km3mon.{monitor_class.name}"), pipeline)
    )


def register_monitor(subparsers: argparse._SubParsersAction, monitor_class: type[Monitor]) -> None:
    parser = subparsers.add_parser(
        monitor_class.name, help=monitor_class.help, description=monitor_class.help
    )
    add_common_arguments(parser, monitor_class.default_interval_s)
    monitor_class.add_arguments(parser)
    parser.set_defaults(func=lambda args: run_monitor(monitor_class, args))
