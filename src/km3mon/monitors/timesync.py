"""timesync: White Rabbit time sync and UDP completeness of every DOM, from ``IO_TSSN``.

Each DataFilter sends an ``IO_TSSN`` per frame index with a frame for every DOM it serves,
hits or not (``timeslices.md`` §5.1), so every DOM's status words arrive every 100 ms. Per frame
(§6.2): the White Rabbit bit (``status`` bit 31: valid time sync) and complete UDP data (packets
received = highest sequence number + 1, trailer present). The frames of all DataFilters are
taken together by DAQ time, and a DOM of the detector that no DataFilter sent for
``--missing-after`` seconds is missing.

On a problem, an ``ALERT (MONITORING) <time>: ...`` line goes to the DAQ logging ligier as
``MSG`` (``-m``/``-q``), as the original's timesync_monitor did, at most one per
``--alert-interval`` seconds, naming the DOMs with DU and floor; msg_dumper then writes it to
``logs/MSG.log`` and the weblog highlights it. The original alerted on the WR bit of one
message at a time and listed every valid DOM; we check all three conditions over all
DataFilters, name the bad DOMs and count the good ones (a 4 140-DOM list helps nobody).
A lost frame now and then is normal: UDP is alerted when a DOM lost data in more than
``--udp-fraction`` of its frames over the last :data:`WINDOW_S` seconds.

Outputs: ``timesync.png`` (DU × floor map of each DOM's state), ``data/metrics/timesync.json``,
the freshness record.
"""

from __future__ import annotations

import argparse
import collections
import threading
import time
from typing import TYPE_CHECKING

import numpy as np

from km3mon.controlhost import Client, ControlHostError, Message
from km3mon.daq.timeslice import frames_complete, frames_white_rabbit
from km3mon.monitors.binning import OpticalSlots
from km3mon.monitors.decoding import locate_timeslices
from km3mon.monitors.plots import dom_states_map
from km3mon.monitors.runtime import Context, Monitor, register_monitor

if TYPE_CHECKING:
    import logging

WINDOW_S = 10
CHECK_EVERY_S = 1.0
MAX_NAMED = 20
JUMP_CONFIRM = 50  # messages (5 s of one DataFilter) before DAQ time going back is believed
STATES = ("OK", "incomplete UDP data", "White Rabbit lost", "missing")


class AlertSender(threading.Thread):
    """Publishes ALERT lines to the logging ligier from a thread of its own, so that an
    unreachable log ligier (reconnecting with backoff) never stalls the monitor."""

    def __init__(self, host: str, port: int, log: logging.Logger) -> None:
        super().__init__(name="alert-sender", daemon=True)
        self.client = Client(host, port, name="timesync")
        self.log = log
        self.queue: collections.deque[str] = collections.deque(maxlen=20)
        self.ready = threading.Event()
        self.sent = 0

    def send(self, text: str) -> None:
        self.queue.append(text)
        self.ready.set()

    def run(self) -> None:
        while True:
            self.ready.wait()
            self.ready.clear()
            while self.queue:
                text = self.queue[0]
                try:
                    self.client.publish("MSG", text)
                except ControlHostError as error:  # closed or failed twice: retry later
                    self.log.warning("cannot send the alert to the log ligier: %s", error)
                    time.sleep(1.0)
                    continue
                self.queue.popleft()
                self.sent += 1


class TimeSync(Monitor):
    name = "timesync"
    tags = ("IO_TSSN",)
    help = "White Rabbit time sync and UDP completeness of every DOM (IO_TSSN), ALERTs to MSG"
    default_interval_s = 10.0

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "-m", "--log-ligier-ip", default="127.0.0.1", help="DAQ logging ligier host"
        )
        parser.add_argument(
            "-q", "--log-ligier-port", type=int, default=5553, help="DAQ logging ligier port"
        )
        parser.add_argument(
            "--missing-after", type=float, default=10.0, help="s without frames: missing (10)"
        )
        parser.add_argument(
            "--alert-interval", type=float, default=10.0, help="s between ALERT lines (10)"
        )
        parser.add_argument(
            "--udp-fraction",
            type=float,
            default=0.1,
            help=f"alert a DOM with incomplete UDP data in more than this fraction of its "
            f"frames over {WINDOW_S} s (0.1)",
        )

    def __init__(self, context: Context) -> None:
        super().__init__(context)
        args = context.args
        self.detector = context.detector
        self.slots = OpticalSlots(self.detector)
        n = len(self.slots)
        self.missing_after_s = args.missing_after
        self.alert_interval_s = args.alert_interval
        self.udp_fraction = args.udp_fraction
        #: DAQ time of each DOM's newest frame (NaN: never seen).
        self.last_seen_s = np.full(n, np.nan)
        #: Per second of DAQ time (a ring of WINDOW_S) and DOM: frames, WR lost, UDP incomplete.
        self.buckets = np.zeros((3, WINDOW_S, n), np.int64)
        self.bucket_second = np.full(WINDOW_S, -1, np.int64)
        self.first_s: float | None = None
        self.newest_s: float | None = None
        self.frames_per_index: collections.OrderedDict[tuple[int, int], int] = (
            collections.OrderedDict()
        )
        self.state = np.full(n, 3)  # missing until seen
        self.behind = 0
        self.last_check = 0.0
        self.last_alert = -np.inf
        self.alerts = 0
        self.last_alert_text: str | None = None
        self.sender = AlertSender(args.log_ligier_ip, args.log_ligier_port, self.log)
        self.sender.start()

    # -- consuming --------------------------------------------------------------------

    def consume(self, messages: list[Message]) -> None:
        for _, located in locate_timeslices(self.context, messages, "IO_TSSN"):
            header = located.header
            time_s = header.timestamp
            frames = located.frames
            slot = self.slots.of(self.context.dom_index(frames["dom_id"]))
            known = slot >= 0
            slot = slot[known]
            if self.newest_s is not None and time_s < self.newest_s - WINDOW_S:
                # older than the window: a late message, or the DAQ time went back (a replay
                # restarting, a new clock): after JUMP_CONFIRM such messages in a row, restart
                self.behind += 1
                if self.behind < JUMP_CONFIRM:
                    continue
                self.log.info("DAQ time went back to %s: starting afresh", time_s)
                self._reset()
            self.behind = 0
            second = int(time_s)
            position = second % WINDOW_S
            if self.bucket_second[position] != second:
                self.bucket_second[position] = second
                self.buckets[:, position] = 0
            np.add.at(self.buckets[0, position], slot, 1)
            np.add.at(self.buckets[1, position], slot, ~frames_white_rabbit(frames)[known])
            np.add.at(self.buckets[2, position], slot, ~frames_complete(frames)[known])
            self.last_seen_s[slot] = np.fmax(self.last_seen_s[slot], time_s)
            key = (header.run, header.frame_index)
            self.frames_per_index[key] = self.frames_per_index.get(key, 0) + int(known.sum())
            while len(self.frames_per_index) > 50:
                self.frames_per_index.popitem(last=False)
            self.first_s = time_s if self.first_s is None else min(self.first_s, time_s)
            self.newest_s = time_s if self.newest_s is None else max(self.newest_s, time_s)
            self.context.saw_data_at(time_s)

    def _reset(self) -> None:
        self.last_seen_s[:] = np.nan
        self.buckets[:] = 0
        self.bucket_second[:] = -1
        self.first_s = self.newest_s = None
        self.behind = 0

    def poll(self) -> None:
        now = time.monotonic()
        if now - self.last_check < CHECK_EVERY_S or self.newest_s is None:
            return
        self.last_check = now
        self.state = self.evaluate()
        if (self.state > 0).any() and now - self.last_alert >= self.alert_interval_s:
            self.last_alert = now
            self.alert(self.state)

    def evaluate(self) -> np.ndarray:
        """Each DOM's state (index into :data:`STATES`) over the last WINDOW_S seconds."""
        assert self.newest_s is not None
        recent = self.bucket_second > int(self.newest_s) - WINDOW_S
        frames, wr_lost, incomplete = self.buckets[:, recent].sum(axis=1)
        state = np.zeros(len(self.slots), np.int64)
        with np.errstate(invalid="ignore", divide="ignore"):
            udp_bad = (incomplete > 0) & (incomplete > self.udp_fraction * frames)
        state[udp_bad] = 1
        state[wr_lost > 0] = 2
        age = self.newest_s - self.last_seen_s
        watched = self.newest_s - (self.first_s or self.newest_s) >= self.missing_after_s
        missing = (np.isnan(age) & watched) | (age > self.missing_after_s)
        state[missing] = 3
        state[np.isnan(age) & ~watched] = 0  # too early to say
        return state

    def alert(self, state: np.ndarray) -> None:
        parts = []
        total = len(state)
        wr = state == 2
        if wr.any():
            parts.append(
                f"invalid time sync (White Rabbit) for DOM ID: {self._names(wr)} /// valid: "
                f"{int((state != 2).sum())} of {total} DOMs"
            )
        if (state == 1).any():
            parts.append(f"incomplete UDP data for DOM ID: {self._names(state == 1)}")
        if (state == 3).any():
            parts.append(
                f"no frames for more than {self.missing_after_s:g} s from DOM ID: "
                f"{self._names(state == 3)}"
            )
        stamp = time.strftime("%c", time.gmtime())
        text = f"ALERT (MONITORING) {stamp}: " + " /// ".join(parts)
        self.alerts += 1
        self.last_alert_text = text
        self.log.warning("%s", text)
        self.sender.send(text)

    def _names(self, mask: np.ndarray) -> str:
        dom = self.slots.dom_index[np.flatnonzero(mask)]
        names = [
            f"{self.detector.dom_ids[d]} (DU {self.detector.dom_du[d]}, floor "
            f"{self.detector.dom_floor[d]})"
            for d in dom[:MAX_NAMED]
        ]
        more = f" and {len(dom) - MAX_NAMED} more" if len(dom) > MAX_NAMED else ""
        return ", ".join(names) + more

    # -- outputs ----------------------------------------------------------------------

    def render(self) -> None:
        state = self.state if self.newest_s is not None else np.full(len(self.slots), 3)
        values = np.full(len(self.detector.dom_ids), -1)
        values[self.slots.dom_index] = state
        counts = [int((state == k).sum()) for k in range(len(STATES))]
        last_index = next(reversed(self.frames_per_index), None)
        title = (
            f"Time sync (White Rabbit) and UDP completeness, detector {self.detector.det_id} "
            f"(IO_TSSN, last {WINDOW_S} s)\n"
            + ", ".join(f"{c} {s}" for c, s in zip(counts, STATES, strict=True))
        )
        figure = dom_states_map(self.detector, values, STATES, title)
        self.context.save_figure("timesync.png", figure)
        self.context.save_metrics(
            "timesync",
            {
                "states": list(STATES),
                "dom_id": self.detector.dom_ids[self.slots.dom_index],
                "state": state,
                "white_rabbit_lost": self.detector.dom_ids[self.slots.dom_index[state == 2]],
                "udp_incomplete": self.detector.dom_ids[self.slots.dom_index[state == 1]],
                "missing": self.detector.dom_ids[self.slots.dom_index[state == 3]],
                "alerts": self.alerts,
                "alerts_sent": self.sender.sent,
                "last_alert": self.last_alert_text,
                "frames_in_newest_index": self.frames_per_index.get(last_index, 0)
                if last_index
                else 0,
            },
        )


def register(subparsers: argparse._SubParsersAction) -> None:
    register_monitor(subparsers, TimeSync)
