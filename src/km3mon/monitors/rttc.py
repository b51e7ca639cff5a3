"""rttc: cable round-trip time of every DU's base CLB, from the Detector Manager, vs time.

``RTTC = wr_mu - (wr_delta[0] + wr_delta[1] + wr_delta[2] + wr_delta[3])`` in ps, polled
through the Detector Manager's monitoring sessions (the protocol of km3pipe's ``DMMonitor``).
The baseline is the median of the last 24 h with a robust spread (1.4826 × MAD), from our own
history in ``data/rttc.csv`` (read back at start), since the KM3NeT database history is not
reachable from every monitoring machine. An unreachable Detector Manager is retried with
backoff; the plot turns stale meanwhile and the process stays up.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
import urllib.error
import urllib.request
from collections import defaultdict, deque
from urllib.parse import quote

import numpy as np

from km3mon.controlhost.client import Backoff
from km3mon.monitors.runtime import Context, Monitor, register_monitor

BASE = "/mon/clb/outparams"
SESSION = "km3mon_rttc"
KEEP_S = 24 * 3600
TIMEOUT_S = 3.0


class DetectorManagerError(Exception):
    """The Detector Manager did not answer, or not as expected."""


class RTTC(Monitor):
    name = "rttc"
    tags = ()
    help = "cable round-trip time per DU base CLB from the Detector Manager (-l DM_IP[:PORT])"
    default_interval_s = 10.0

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--dm-port", type=int, default=1302, help="Detector Manager port")

    def __init__(self, context: Context) -> None:
        super().__init__(context)
        host, _, port = context.args.ligier_ip.partition(":")  # -l HOST or -l HOST:PORT
        self.url = f"http://{host}:{port or context.args.dm_port}"
        context.freshness.ligier = f"Detector Manager {self.url}"
        self.interval_s = context.freshness.render_interval_s
        self.csv_path = context.data_dir / "rttc.csv"
        self.samples: dict[int, deque[tuple[float, float]]] = defaultdict(deque)
        self._read_history()
        self.dus: list[int] = []
        self.session_paths: list[str] = []
        self.backoff = Backoff(1.0, 60.0)
        self.next_poll = 0.0

    # -- Detector Manager ---------------------------------------------------------------

    def _get(self, path: str) -> bytes:
        try:
            with urllib.request.urlopen(self.url + path, timeout=TIMEOUT_S) as response:
                return response.read()
        except (urllib.error.URLError, OSError) as error:
            raise DetectorManagerError(f"{self.url}{path.split('?')[0]}: {error}") from error

    def _define_session(self) -> None:
        parameters = json.loads(self._get(BASE))
        self.dus = sorted({int(p.split("/")[1]) for p in parameters if p.startswith("wr_mu/")})
        if not self.dus:
            raise DetectorManagerError(f"{self.url}{BASE} lists no wr_mu parameters")
        paths = []
        for du in self.dus:
            paths += [f"wr_mu/{du}/0"] + [f"wr_delta/{du}/0/{i}" for i in range(4)]
        joined = quote(",".join(f"{BASE}/{p}" for p in paths), safe="/,")
        answer = self._get(f"/monshortdef?name={SESSION}&paths={joined}")
        if answer.strip() != b"OK":
            raise DetectorManagerError(f"session not accepted: {answer[:100]!r}")
        self.session_paths = paths
        self.log.info("session with %d parameters for DUs %s", len(paths), self.dus)

    def poll(self) -> None:
        now = time.monotonic()
        if now < self.next_poll:
            return
        try:
            if not self.session_paths:
                self._define_session()
            values = [float(v["value"]) for v in json.loads(self._get(f"/monshort/{SESSION}"))]
            if len(values) != len(self.session_paths):
                raise DetectorManagerError(
                    f"{len(values)} values for {len(self.session_paths)} parameters"
                )
        except (DetectorManagerError, ValueError, KeyError, TypeError) as error:
            self.session_paths = []  # the DM may have restarted: define the session again
            delay = self.backoff.step()
            self.context.freshness.connected = False
            self.log.warning("Detector Manager not usable (%s); retrying in %.0f s", error, delay)
            self.next_poll = now + delay
            return
        self.backoff.reset()
        self.next_poll = now + self.interval_s
        self._store(time.time(), values)

    def _store(self, timestamp: float, values: list[float]) -> None:
        freshness = self.context.freshness
        freshness.connected = True
        freshness.messages += 1
        freshness.last_message_at = timestamp
        self.context.saw_data_at(timestamp)
        rows = []
        for index, du in enumerate(self.dus):
            wr_mu, *deltas = values[5 * index : 5 * index + 5]
            rttc_ps = wr_mu - sum(deltas)
            self.samples[du].append((timestamp, rttc_ps))
            rows.append([f"{timestamp:.3f}", du, f"{rttc_ps:.1f}"])
            while self.samples[du][0][0] < timestamp - KEEP_S:
                self.samples[du].popleft()
        new_file = not self.csv_path.exists()
        self.csv_path.parent.mkdir(parents=True, exist_ok=True)
        with self.csv_path.open("a", newline="") as stream:
            writer = csv.writer(stream)
            if new_file:
                writer.writerow(["timestamp", "du", "rttc_ps"])
            writer.writerows(rows)

    def _read_history(self) -> None:
        if not self.csv_path.exists():
            return
        cutoff = time.time() - KEEP_S
        with self.csv_path.open() as stream:
            for row in csv.DictReader(stream):
                try:
                    timestamp, du, value = (
                        float(row["timestamp"]),
                        int(row["du"]),
                        float(row["rttc_ps"]),
                    )
                except (KeyError, TypeError, ValueError):
                    continue
                if timestamp >= cutoff:
                    self.samples[du].append((timestamp, value))

    # -- output -------------------------------------------------------------------------

    def baseline(self, du: int) -> tuple[float, float]:
        """Median and robust spread (1.4826 × MAD) of the last 24 h, in ps."""
        values = np.array([value for _, value in self.samples[du]])
        if not len(values):
            return float("nan"), float("nan")
        median = float(np.median(values))
        return median, float(1.4826 * np.median(np.abs(values - median)))

    def render(self) -> None:
        dus = self.dus or sorted(self.samples)
        if not dus:
            return
        self.context.save_figure("rttc.png", self._figure(dus), dpi=90)
        summary = {}
        for du in dus:
            median, spread = self.baseline(du)
            latest = self.samples[du][-1] if self.samples[du] else (None, None)
            summary[str(du)] = {
                "time": latest[0],
                "rttc_ps": latest[1],
                "median_ps": median,
                "spread_ps": spread,
            }
        self.context.save_metrics("rttc", {"dus": summary})

    def _figure(self, dus: list[int]):
        import matplotlib.dates as mdates
        import matplotlib.pyplot as plt
        from matplotlib.ticker import ScalarFormatter

        columns = 1 if len(dus) <= 6 else 3
        rows = -(-len(dus) // columns)
        figure, axes_grid = plt.subplots(rows, columns, figsize=(16, 2.6 * rows), squeeze=False)
        for axes, du in zip(axes_grid.flat, dus, strict=False):
            samples = self.samples[du]
            if samples:
                times = np.array([t for t, _ in samples]).astype("datetime64[s]")
                axes.plot(times, [v for _, v in samples], "X", ms=4, ls="none", zorder=10)
            median, spread = self.baseline(du)
            if np.isfinite(median):
                axes.axhline(median, color="#b2182b", lw=2)
                axes.axhspan(median - spread, median + spread, color="#b2182b", alpha=0.15)
            axes.set_title(f"DU {du}: base CLB RTTC (line: 24 h median, band: robust spread)",
                           fontsize=9)  # fmt: skip
            axes.set_ylabel("RTTC [ps]")
            formatter = ScalarFormatter(useOffset=False)
            formatter.set_scientific(False)
            axes.yaxis.set_major_formatter(formatter)
            locator = mdates.AutoDateLocator()
            axes.xaxis.set_major_locator(locator)
            axes.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
        for axes in list(axes_grid.flat)[len(dus) :]:
            axes.set_visible(False)
        figure.suptitle("Cable round-trip time RTTC = wr_mu - (TX/RX slave + TX/RX master delays)")
        figure.tight_layout(rect=(0, 0.03, 1, 1))
        return figure


def register(subparsers: argparse._SubParsersAction) -> None:
    register_monitor(subparsers, RTTC)
