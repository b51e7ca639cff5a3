"""timesync: White Rabbit time sync and UDP completeness of every DOM from ``IO_SUM``, and
which DataFilter stopped sending, from ``IO_TSSN``.

Per DOM, from the summary slices (``IO_SUM`` carries every frame the DataFilters received,
complete or not): the White Rabbit bit (``status`` bit 31: valid time sync),
complete UDP data (the ``daq`` word: packets received = highest sequence number + 1, and the
UDP trailer, ``fifo`` bit 31) and the frames per second against the 10 a DOM sends (100 ms
timeslices). The L1 and SN streams are no measure of completeness: the DataFilter leaves frames
with incomplete UDP data out of them (``docs/timeslices.md`` §1), so a DOM losing half its frames
looks complete there and one losing all looks absent. A DOM lost UDP data when incomplete
frames plus frames missing from the slices it was in exceed ``--udp-fraction`` of them over the
last :data:`WINDOW_S` seconds (a lost packet now and then is normal); a DOM with no frame for
``--missing-after`` seconds is missing.

DataFilters: nothing in a DAQ header names the DataFilter that sent it, but each one sends,
per frame index, one ``IO_TSSN`` with a frame for every DOM it serves (``docs/timeslices.md`` §1).
So a DataFilter is known by its DOMs: messages sharing DOMs come from the same one. One whose
messages stopped for ``--missing-after`` seconds while its DOMs still send summary frames is
named by its DUs and its DOMs are "DataFilter stopped" (when all its DOMs are silent, the DOMs are
the news: they are "missing", and ``silent_dom``/``du_lost`` alert on them). If every
message carries every DOM (one DataFilter, or DataFilters taking turns by frame index), there
is one group and nothing to tell apart.

On a problem, an ``ALERT (MONITORING) <time>: ...`` line goes to the DAQ logging ligier as
``MSG`` (``-m``/``-q``), as the original's timesync_monitor did, at most one per
``--alert-interval`` seconds, naming the DOMs with DU and floor; msg_dumper then writes it to
``logs/MSG.log`` and the weblog highlights it. The original alerted on the WR bit of one
``IO_TSSN`` at a time and listed every valid DOM; we name the bad DOMs and count the good ones
(a 4 140-DOM list helps nobody). ``km3mon alerts`` turns the lists of the metrics into alerts
(``time_sync``, ``udp_loss``, ``datafilter_down``).

The judgement of each DOM and the grouping by DataFilter are :mod:`km3mon.physics.timesync`.

Outputs: ``timesync.png`` (DU × floor map of each DOM's state, drawn by
:mod:`km3mon.figures.timesync`), ``data/metrics/timesync.json`` (the lists of bad DOMs and
DataFilters; per DOM under ``doms``: state, frames per second and the fraction of frames lost
or incomplete, which ``km3mon history`` records), the freshness record.
"""

from __future__ import annotations

import argparse
import collections
import threading
import time
from typing import TYPE_CHECKING

import numpy as np

from km3mon.controlhost import Client, ControlHostError, Message
from km3mon.daq import Summaryslice
from km3mon.figures.timesync import timesync_map
from km3mon.physics.timesync import (
    EXPECTED_FRAMES_PER_S,
    MISSING,
    STATES,
    UDP,
    WHITE_RABBIT,
    WINDOW_S,
    DataFilters,
    judge_doms,
)
from km3mon.runtime.binning import OpticalSlots
from km3mon.runtime.decoding import decode_summaryslices, locate_timeslices
from km3mon.runtime.monitor import Context, Monitor, register_monitor

if TYPE_CHECKING:
    import logging

CHECK_EVERY_S = 1.0
MAX_NAMED = 20
JUMP_CONFIRM = 50  # summary slices (5 s) before DAQ time going back is believed
#: The metrics key of the DOMs without White Rabbit time (``km3mon alerts``' ``time_sync``).
WHITE_RABBIT_LOST = "white_rabbit_lost"


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
    tags = ("IO_SUM", "IO_TSSN")
    help = (
        "White Rabbit, UDP completeness and frames of every DOM (IO_SUM), DataFilters that "
        "stopped (IO_TSSN); ALERTs to MSG"
    )
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
            "--missing-after",
            type=float,
            default=10.0,
            help="s without frames: a DOM missing, a DataFilter stopped (10)",
        )
        parser.add_argument(
            "--alert-interval", type=float, default=10.0, help="s between ALERT lines (10)"
        )
        parser.add_argument(
            "--udp-fraction",
            type=float,
            default=0.1,
            help=f"alert a DOM with more than this fraction of its frames incomplete or lost "
            f"over {WINDOW_S} s (0.1)",
        )

    def __init__(self, context: Context) -> None:
        super().__init__(context)
        args = context.args
        self.detector = context.detector
        self.slots = OpticalSlots(self.detector)
        self.missing_after_s = args.missing_after
        self.alert_interval_s = args.alert_interval
        self.udp_fraction = args.udp_fraction
        self._reset()
        self.state = np.full(len(self.slots), MISSING)  # missing until seen
        self.frames_per_s = np.full(len(self.slots), np.nan)
        self.lost_fraction = np.full(len(self.slots), np.nan)
        self.stopped: list[int] = []
        self.last_check = 0.0
        self.last_alert = -np.inf
        self.alerts = 0
        self.last_alert_text: str | None = None
        self.sender = AlertSender(args.log_ligier_ip, args.log_ligier_port, self.log)
        self.sender.start()

    def _reset(self) -> None:
        n = len(self.slots)
        #: DAQ time of each DOM's newest summary frame (NaN: never seen).
        self.last_seen_s = np.full(n, np.nan)
        #: Per second of DAQ time (a ring of WINDOW_S) and DOM: frames, WR lost, incomplete.
        self.buckets = np.zeros((3, WINDOW_S, n), np.int64)
        self.bucket_second = np.full(WINDOW_S, -1, np.int64)
        #: Per second: the summary slices seen, as (run, frame index).
        self.slices: list[set[tuple[int, int]]] = [set() for _ in range(WINDOW_S)]
        self.data_filters = DataFilters(n)
        self.first_s: float | None = None
        self.newest_s: float | None = None
        self.behind = 0

    # -- consuming --------------------------------------------------------------------

    def consume(self, messages: list[Message]) -> None:
        for summary in decode_summaryslices(self.context, messages):
            self._count(summary)
        for _, located in locate_timeslices(self.context, messages, "IO_TSSN"):
            time_s = located.header.timestamp
            if self.newest_s is not None and time_s < self.newest_s - WINDOW_S:
                continue  # late, or from before a restart of the DAQ time
            slot = self.slots.of(self.context.dom_index(located.frames["dom_id"]))
            self.data_filters.saw(slot[slot >= 0], time_s)
            self.newest_s = time_s if self.newest_s is None else max(self.newest_s, time_s)
            self.first_s = time_s if self.first_s is None else self.first_s
            self.context.saw_data_at(time_s)

    def _count(self, summary: Summaryslice) -> None:
        header = summary.header
        time_s = header.timestamp
        if self.newest_s is not None and time_s < self.newest_s - WINDOW_S:
            # older than the window: a late message, or the DAQ time went back (a replay
            # restarting, a new clock): after JUMP_CONFIRM such messages in a row, restart
            self.behind += 1
            if self.behind < JUMP_CONFIRM:
                return
            self.log.info("DAQ time went back to %s: starting afresh", time_s)
            self._reset()
        self.behind = 0
        frames = summary.frames
        slot = self.slots.of(self.context.dom_index(frames["dom_id"]))
        known = slot >= 0
        slot = slot[known]
        second = int(time_s)
        position = second % WINDOW_S
        if self.bucket_second[position] != second:
            self.bucket_second[position] = second
            self.buckets[:, position] = 0
            self.slices[position] = set()
        self.slices[position].add((header.run, header.frame_index))
        # legacy summary frames have no daq and fifo words: nothing to say about UDP
        legacy = summary.version is None
        complete = np.ones(len(slot), bool) if legacy else summary.complete[known]
        np.add.at(self.buckets[0, position], slot, 1)
        np.add.at(self.buckets[1, position], slot, ~summary.white_rabbit[known])
        np.add.at(self.buckets[2, position], slot, ~complete)
        self.last_seen_s[slot] = np.fmax(self.last_seen_s[slot], time_s)
        self.first_s = time_s if self.first_s is None else min(self.first_s, time_s)
        self.newest_s = time_s if self.newest_s is None else max(self.newest_s, time_s)
        self.context.saw_data_at(time_s)

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
        """Each DOM's state (index into :data:`STATES`) over the last WINDOW_S seconds; also
        sets the frames per second, the fraction of frames lost or incomplete and the
        DataFilters that stopped (:func:`km3mon.physics.timesync.judge_doms`)."""
        assert self.newest_s is not None
        judgement = judge_doms(
            self.buckets,
            self.bucket_second,
            np.array([len(seen) for seen in self.slices], np.int64),
            self.last_seen_s,
            first_s=self.first_s,
            newest_s=self.newest_s,
            data_filters=self.data_filters,
            missing_after_s=self.missing_after_s,
            udp_fraction=self.udp_fraction,
        )
        self.frames_per_s = judgement.frames_per_s
        self.lost_fraction = judgement.lost_fraction
        self.stopped = judgement.stopped
        return judgement.state

    def alert(self, state: np.ndarray) -> None:
        parts = []
        total = len(state)
        wr = state == WHITE_RABBIT
        if wr.any():
            parts.append(
                f"invalid time sync (White Rabbit) for DOM ID: {self._names(wr)} /// valid: "
                f"{int((~wr).sum())} of {total} DOMs"
            )
        if (state == UDP).any():
            parts.append(f"incomplete UDP data for DOM ID: {self._names(state == UDP)}")
        for number in self.stopped:
            parts.append(
                f"{self.data_filter_name(number)} sent no IO_TSSN for more than "
                f"{self.missing_after_s:g} s"
            )
        stopped = np.isin(self.data_filters.of_slot, self.stopped)
        missing = (state == MISSING) & ~stopped  # said once for the DataFilter
        if missing.any():
            parts.append(
                f"no frames for more than {self.missing_after_s:g} s from DOM ID: "
                f"{self._names(missing)}"
            )
        if not parts:
            return
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

    def data_filter_name(self, number: int) -> str:
        """ "DataFilter of DUs 1-3": its DUs are what an operator knows it by."""
        dus = np.unique(
            self.detector.dom_du[self.slots.dom_index[self.data_filters.of_slot == number]]
        )
        return f"DataFilter of DU{'s' if len(dus) > 1 else ''} {_ranges(dus.tolist())}"

    # -- outputs ----------------------------------------------------------------------

    def render(self) -> None:
        state = self.state if self.newest_s is not None else np.full(len(self.slots), MISSING)
        figure = timesync_map(self.detector, self.slots.dom_index, state, self.frames_per_s)
        self.context.save_figure("timesync.png", figure)
        index = self.slots.dom_index
        ids = self.detector.dom_ids
        data_filters = []
        for number in self.data_filters.numbers():
            silent_s = (self.newest_s or 0.0) - self.data_filters.last_seen_s[number]
            data_filters.append(
                {
                    "name": self.data_filter_name(number),
                    "n_doms": int((self.data_filters.of_slot == number).sum()),
                    "silent_s": round(silent_s, 1),
                    "stopped": number in self.stopped,
                }
            )
        self.context.save_metrics(
            "timesync",
            {
                "states": list(STATES),
                WHITE_RABBIT_LOST: ids[index[state == WHITE_RABBIT]],
                "udp_incomplete": ids[index[state == UDP]],
                "missing": ids[index[state == MISSING]],
                "expected_frames_per_s": EXPECTED_FRAMES_PER_S,
                "data_filters": data_filters,
                "alerts": self.alerts,
                "alerts_sent": self.sender.sent,
                "last_alert": self.last_alert_text,
                "doms": {
                    "dom_id": ids[index],
                    "du": self.detector.dom_du[index],
                    "floor": self.detector.dom_floor[index],
                    "state": state,
                    "frames_per_s": np.round(self.frames_per_s, 2),
                    "lost_fraction": np.round(self.lost_fraction, 4),
                },
            },
        )


def _ranges(numbers: list[int]) -> str:
    """[1, 2, 3, 5] -> "1-3, 5"."""
    runs: list[list[int]] = []
    for number in numbers:
        if runs and runs[-1][1] == number - 1:
            runs[-1][1] = number
        else:
            runs.append([number, number])
    return ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in runs)


def register(subparsers: argparse._SubParsersAction) -> None:
    register_monitor(subparsers, TimeSync)
