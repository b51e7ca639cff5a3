"""rttc: cable round-trip time of every DU's base CLB, from the Detector Manager, vs time.

``RTTC = wr_mu - (wr_delta[0] + wr_delta[1] + wr_delta[2] + wr_delta[3])`` in ps, polled
through the Detector Manager's monitoring sessions (the protocol of km3pipe's ``DMMonitor``).
The DUs are the detector's (DETX or database), as in the original; the Detector Manager's
parameter listing, whose format we only know from our stand-in, is a cross-check at most.
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
from urllib.parse import quote

import numpy as np

from km3mon import published
from km3mon.controlhost.client import Backoff
from km3mon.runtime.guards import AHEAD_S
from km3mon.runtime.monitor import Context, Monitor, register_monitor
from km3mon.runtime.output import append_rows

BASE = "/mon/clb/outparams"
SESSION = "km3mon_rttc"
CSV_HEADER = ("timestamp", "du", "rttc_ps")
KEEP_S = 24 * 3600
TIMEOUT_S = 3.0
#: Polls kept per DU at most (24 h at the production 10 s needs 8 640).
MAX_POLLS = 20_000
#: Up to this many DUs, one panel each (the original's look); beyond, one summary image.
MAX_PANELS = 12
SUMMARY_HOURS, SUMMARY_COLUMN_S = 3, 60
OUTLIER_SPREADS = 5.0
BASELINE_EVERY_S = 60.0


class Series:
    """One DU's RTTC polls of the last 24 h, as numpy arrays (a ring): 230 DUs of deques of
    tuples would hold two million Python objects."""

    def __init__(self, capacity: int) -> None:
        self.times = np.full(capacity, np.nan)
        self.values = np.full(capacity, np.nan)
        self.count = 0

    def append(self, timestamp: float, value: float) -> None:
        position = self.count % len(self.times)
        self.times[position], self.values[position] = timestamp, value
        self.count += 1

    def since(self, start: float) -> tuple[np.ndarray, np.ndarray]:
        """Times and values from ``start`` on, in the order they came (oldest first)."""
        capacity = len(self.times)
        if self.count <= capacity:
            order = np.arange(self.count)
        else:
            order = (np.arange(capacity) + self.count) % capacity
        order = order[self.times[order] >= start]
        return self.times[order], self.values[order]

    def latest(self) -> tuple[float | None, float | None]:
        if not self.count:
            return None, None
        position = (self.count - 1) % len(self.times)
        return float(self.times[position]), float(self.values[position])


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
        self.csv_path = published.rttc(context.data_dir)
        self.capacity = min(MAX_POLLS, int(KEEP_S / max(self.interval_s, 0.1)) + 10)
        self.samples: dict[int, Series] = {}
        self._baselines: dict[int, tuple[float, float]] = {}
        self._baselines_at = -np.inf
        self._read_history()
        self.dus = [int(du) for du in context.detector.dus]
        self.session_paths: list[str] = []
        self._cross_checked = False
        self.backoff = Backoff(1.0, 60.0)
        self.next_poll = 0.0

    # -- Detector Manager ---------------------------------------------------------------

    def _get(self, path: str) -> bytes:
        try:
            with urllib.request.urlopen(self.url + path, timeout=TIMEOUT_S) as response:
                return response.read()
        except (urllib.error.URLError, OSError) as error:
            raise DetectorManagerError(f"{self.url}{path.split('?')[0]}: {error}") from error

    def _cross_check(self) -> None:
        """Compare the detector's DUs with the DUs the Detector Manager lists, once; a
        listing we cannot read is only mentioned."""
        self._cross_checked = True
        try:
            listing = json.loads(self._get(BASE))
            listed = {int(p.split("/")[1]) for p in listing if str(p).startswith("wr_mu/")}
        except (DetectorManagerError, ValueError, TypeError, IndexError) as error:
            self.log.info("parameter listing of %s%s not used (%s)", self.url, BASE, error)
            return
        missing, foreign = sorted(set(self.dus) - listed), sorted(listed - set(self.dus))
        if missing or foreign:
            self.log.warning(
                "the Detector Manager lists wr_mu for DUs %s; of the detector's, %s are not "
                "listed; %s listed are not in the detector",
                sorted(listed),
                missing or "none",
                foreign or "none",
            )

    def _define_session(self) -> None:
        if not self._cross_checked:
            self._cross_check()
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
            self._series(du).append(timestamp, rttc_ps)
            rows.append([f"{timestamp:.3f}", du, f"{rttc_ps:.1f}"])
        append_rows(self.csv_path, CSV_HEADER, rows)

    def _read_history(self) -> None:
        if not self.csv_path.exists():
            return
        now = time.time()
        with self.csv_path.open(newline="") as stream:
            for row in csv.DictReader(stream):
                try:
                    timestamp, du, value = (
                        float(row["timestamp"]),
                        int(row["du"]),
                        float(row["rttc_ps"]),
                    )
                except (KeyError, TypeError, ValueError):
                    continue  # a torn line after a crash
                if now - KEEP_S <= timestamp <= now + AHEAD_S:  # not from a clock gone wrong
                    self._series(du).append(timestamp, value)

    def _series(self, du: int) -> Series:
        series = self.samples.get(du)
        if series is None:
            series = self.samples[du] = Series(self.capacity)
        return series

    # -- output -------------------------------------------------------------------------

    def baselines(self, dus: list[int]) -> dict[int, tuple[float, float]]:
        """``baseline`` of every DU, recomputed at most once a minute (24 h barely move)."""
        now = time.monotonic()
        if now - self._baselines_at > BASELINE_EVERY_S or set(dus) - set(self._baselines):
            self._baselines = {du: self.baseline(du) for du in dus}
            self._baselines_at = now
        return self._baselines

    def baseline(self, du: int) -> tuple[float, float]:
        """Median and robust spread (1.4826 × MAD) of the last 24 h, in ps."""
        series = self.samples.get(du)
        if series is None:
            return float("nan"), float("nan")
        _, values = series.since(time.time() - KEEP_S)
        if not len(values):
            return float("nan"), float("nan")
        median = float(np.median(values))
        return median, float(1.4826 * np.median(np.abs(values - median)))

    def render(self) -> None:
        dus = self.dus
        baselines = self.baselines(dus)
        figure = (
            self._panels(dus, baselines)
            if len(dus) <= MAX_PANELS
            else self._summary(dus, baselines)
        )
        self.context.save_figure("rttc.png", figure, dpi=90)
        summary = {}
        for du in dus:
            median, spread = baselines[du]
            latest = self.samples[du].latest() if du in self.samples else (None, None)
            summary[str(du)] = {
                "time": latest[0],
                "rttc_ps": latest[1],
                "median_ps": median,
                "spread_ps": spread,
            }
        self.context.save_metrics("rttc", {"dus": summary})

    def _panels(self, dus: list[int], baselines: dict[int, tuple[float, float]]):
        import matplotlib.dates as mdates
        import matplotlib.pyplot as plt
        from matplotlib.ticker import ScalarFormatter

        columns = 1 if len(dus) <= 6 else 2
        rows = -(-len(dus) // columns)
        figure, axes_grid = plt.subplots(rows, columns, figsize=(16, 2.6 * rows), squeeze=False)
        since = time.time() - KEEP_S
        for axes, du in zip(axes_grid.flat, dus, strict=False):
            if du in self.samples:
                times, values = self.samples[du].since(since)
                axes.plot(times.astype("datetime64[s]"), values, "X", ms=4, ls="none", zorder=10)
            median, spread = baselines[du]
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

    def _summary(self, dus: list[int], baselines: dict[int, tuple[float, float]]):
        """All DUs in one image: RTTC minus its 24 h median per minute over the last hours,
        and the DUs whose latest value is far off their baseline."""
        import matplotlib.pyplot as plt

        n_columns = SUMMARY_HOURS * 3600 // SUMMARY_COLUMN_S
        end = time.time()
        start = end - n_columns * SUMMARY_COLUMN_S
        image = np.full((len(dus), n_columns), np.nan)
        outliers = []
        for row, du in enumerate(dus):
            median, spread = baselines[du]
            if du not in self.samples or not np.isfinite(median):
                continue
            times, values = self.samples[du].since(start)
            column = ((times - start) // SUMMARY_COLUMN_S).astype(np.int64).clip(0, n_columns - 1)
            counts = np.bincount(column, minlength=n_columns)
            sums = np.bincount(column, weights=values - median, minlength=n_columns)
            with np.errstate(invalid="ignore"):
                image[row] = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
            _, latest = self.samples[du].latest()
            if latest is not None and abs(latest - median) > OUTLIER_SPREADS * max(spread, 1.0):
                outliers.append((du, latest - median))
        spreads = [spread for _, spread in baselines.values() if np.isfinite(spread)]
        limit = max(20.0, 5 * float(np.median(spreads))) if spreads else 20.0
        figure, axes = plt.subplots(figsize=(16, 9))
        cmap = plt.get_cmap("RdBu_r").with_extremes(bad="#bdbdbd")
        drawn = axes.imshow(image, aspect="auto", origin="lower", interpolation="nearest",
                            cmap=cmap, vmin=-limit, vmax=limit,
                            extent=(0, SUMMARY_HOURS * 60, -0.5, len(dus) - 0.5))  # fmt: skip
        figure.colorbar(drawn, ax=axes, extend="both", pad=0.01).set_label(
            "RTTC − 24 h median [ps]"
        )
        labelled = sorted({0, len(dus) - 1, *range(0, len(dus), 10)})
        axes.set_yticks(labelled, [f"DU {dus[i]}" for i in labelled])
        axes.set_xlabel(f"minutes before {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(end))}")
        ticks = np.arange(0, SUMMARY_HOURS * 60 + 1, 30)
        axes.set_xticks(ticks, [str(SUMMARY_HOURS * 60 - t) for t in ticks])
        axes.set_title(
            f"Base CLB RTTC of {len(dus)} DUs minus each DU's 24 h median, mean per minute"
        )
        outliers.sort(key=lambda entry: -abs(entry[1]))
        lines = [f"DU {du}: {offset:+.0f} ps" for du, offset in outliers[:15]]
        if len(outliers) > 15:
            lines.append(f"and {len(outliers) - 15} more")
        text = "\n".join(lines) if lines else "none"
        figure.text(0.005, 0.5, f"latest > {OUTLIER_SPREADS:g} spreads\noff baseline:\n{text}",
                    va="center", fontsize=8, color="#b2182b" if lines else "0.3")  # fmt: skip
        figure.tight_layout(rect=(0.09, 0.03, 1, 1))
        return figure


def register(subparsers: argparse._SubParsersAction) -> None:
    register_monitor(subparsers, RTTC)
