"""quality: a quality record for every run, compared with a reference, with a verdict.

Reads ``IO_SUM``, ``IO_EVT`` and ``IO_TSSN`` (and, where ``km3mon reco`` runs, its multi-DU fits
from ``data/reco/fits.csv``); keeps one :class:`~km3mon.quality.accumulate.RunAccumulator` per
run not yet ended and, every render interval, writes the run's record, its minutes and its
counters to ``data/quality.sqlite3`` (:mod:`km3mon.quality.store`), with the tests and verdict
so far. Runs are the confirmed runs of the stream (``RunTracker``: a corrupted run number is no
new run); a run ends once the next one is confirmed and its own last message is
``STRAGGLERS_S`` old, or after ``[Quality] end_after_s`` without its data; then its verdict is
final (:mod:`km3mon.quality.judge`). At start the counters of the
runs not yet ended are read back, so a restart loses nothing that was saved (at most one render
interval of data).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from km3mon import published
from km3mon.controlhost import Message
from km3mon.quality.accumulate import RunAccumulator, SNScan, scan_sn_timeslices
from km3mon.quality.judge import build_reference, check_settings, judge
from km3mon.quality.store import QualityStore
from km3mon.runtime.decoding import decode_events_and_summaryslices, packet_times_s, payloads_of
from km3mon.runtime.guards import RunTracker
from km3mon.runtime.monitor import Context, Monitor, register_monitor

FORGET_EVERY_S = 3600.0
#: A run replaced by the next stays open this long after its own last message: its summary
#: slices (DataQueue) and SN timeslices (DataFilters) come from other sources than the
#: messages that confirm the next run, and its last slice can arrive after them. Closed at
#: once, that slice was lost (29.9 s of a 30 s run, its HRV fraction 1 % off).
STRAGGLERS_S = 5.0


class FitsTail:
    """The rows ``km3mon reco`` appends to ``data/reco/fits.csv``, read as they come: run,
    time and zenith of each multi-DU fit. A rotated file is read from its start."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.inode: int | None = None
        self.offset = 0
        self.columns: dict[str, int] = {}

    def read(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """New multi-DU fits: (runs, times_s, zenith_deg)."""
        empty = (np.zeros(0, np.int64), np.zeros(0), np.zeros(0))
        try:
            stat = self.path.stat()
        except OSError:
            return empty
        if stat.st_ino != self.inode or stat.st_size < self.offset:
            self.inode, self.offset, self.columns = stat.st_ino, 0, {}
        if stat.st_size == self.offset:
            return empty
        with self.path.open("rb") as stream:
            stream.seek(self.offset)
            chunk = stream.read(min(stat.st_size - self.offset, 64 * 1024 * 1024))
        end = chunk.rfind(b"\n") + 1
        self.offset += end
        lines = chunk[:end].decode(errors="replace").splitlines()
        if not self.columns and lines:
            self.columns = {name: i for i, name in enumerate(lines.pop(0).split(","))}
        wanted = [self.columns.get(k) for k in ("run", "utc", "kind", "zenith_deg")]
        if None in wanted:
            return empty
        run_at, utc_at, kind_at, zenith_at = wanted
        runs, times, zeniths = [], [], []
        for line in lines:
            fields = line.split(",")
            if len(fields) <= max(wanted) or fields[kind_at] != "multi-du":
                continue
            try:
                parsed = int(fields[run_at]), float(fields[utc_at]), float(fields[zenith_at])
            except ValueError:
                continue  # a damaged row
            runs.append(parsed[0])
            times.append(parsed[1])
            zeniths.append(parsed[2])
        return np.array(runs, np.int64), np.array(times), np.array(zeniths)


class Quality(Monitor):
    name = "quality"
    tags = ("IO_SUM", "IO_EVT", "IO_TSSN")
    help = "run quality: a record per run and minute, tests against a reference, a verdict"
    default_interval_s = 10.0

    def __init__(self, context: Context) -> None:
        super().__init__(context)
        self.detector = context.detector
        self.section = context.pipeline.quality
        self.settings = check_settings(self.section)
        self.store = QualityStore(context.data_dir)
        self.runs = RunTracker()
        #: Runs not yet ended (normally the current one) and when their data last came.
        self.open: dict[int, RunAccumulator] = {}
        self.last_data_at: dict[int, float] = {}
        self.late_messages = 0
        self.fits = FitsTail(published.reco_fits(context.data_dir))
        self.forgot_at = 0.0
        self.ended: list[tuple[int, str]] = []
        for document, arrays in self.store.running_accumulators():
            self._restore(document, arrays)

    def _restore(self, document: dict, arrays: bytes) -> RunAccumulator | None:
        try:
            accumulator = RunAccumulator.from_state(self.detector, document, arrays)
        except (ValueError, KeyError, OSError) as error:
            self.log.warning("saved counters of run %s unusable: %s", document.get("run"), error)
            return None
        self.open[accumulator.run] = accumulator
        self.last_data_at[accumulator.run] = time.monotonic()
        self.log.info(
            "run %d read back from %s: %.1f s live time",
            accumulator.run,
            self.store.path,
            accumulator.livetime_s,
        )
        return accumulator

    def _accumulator(self, run: int, det_id: int) -> RunAccumulator:
        accumulator = self.open.get(run)
        if accumulator is None:
            saved = self.store.accumulator(run)  # a run that comes back after it ended
            accumulator = self._restore(*saved) if saved else None
            if accumulator is None:
                accumulator = self.open[run] = RunAccumulator(self.detector, run, det_id)
                self.log.info("run %d begins", run)
        return accumulator

    def consume(self, messages: list[Message]) -> None:
        events, slices = decode_events_and_summaryslices(self.context, messages)
        sn = self._sn_timeslices(messages)
        event_times = packet_times_s(events)
        slice_times = np.array([s.header.timestamp for s in slices])
        sn_times = sn.times_s()
        times = np.concatenate([slice_times, event_times, sn_times])
        if not len(times):
            return
        runs = np.concatenate([
            np.array([s.header.run for s in slices], np.int64),
            events["run"].astype(np.int64),
            sn.headers["run"].astype(np.int64),
        ])  # fmt: skip
        det_ids = np.concatenate([
            np.array([s.header.det_id for s in slices], np.int64),
            events["det_id"].astype(np.int64),
            sn.headers["det_id"].astype(np.int64),
        ])  # fmt: skip
        order = np.argsort(times, kind="stable")
        confirmed = np.empty(len(times), np.int64)
        confirmed[order], changes = self.runs.update(runs[order], times[order])
        for change in changes:
            if change.previous is not None:
                self.log.info("run change %d -> %d", change.previous, change.run)
        # a message counts for its own run if that run is confirmed for it, confirmed later in
        # this batch (the new run's first messages come before the ones that confirm it), or
        # still open (the replaced run's stragglers)
        new_runs = [change.run for change in changes]
        accepted = (runs == confirmed) | np.isin(runs, [*self.open, *new_runs])
        self.late_messages += int(np.count_nonzero(~accepted & (confirmed >= 0)))
        n_slices, n_events = len(slices), len(events)
        now = time.monotonic()
        for run in np.unique(runs[accepted]).tolist():
            chosen = accepted & (runs == run)
            det_id = int(det_ids[chosen][0])
            accumulator = self._accumulator(run, det_id)
            in_slices = chosen[:n_slices]
            accumulator.add_summaryslices(
                [s for s, keep in zip(slices, in_slices, strict=True) if keep]
            )
            in_events = chosen[n_slices : n_slices + n_events]
            accumulator.add_events(events[in_events], event_times[in_events])
            accumulator.add_sn_timeslices(sn.select(chosen[n_slices + n_events :]))
            self.last_data_at[run] = now
        self.context.saw_data_at(float(times.max()))

    def _sn_timeslices(self, messages: list[Message]) -> SNScan:
        """The batch's ``IO_TSSN`` with plausible times; unusable ones counted and logged."""
        scan, _, problems = scan_sn_timeslices(payloads_of(messages, "IO_TSSN"))
        if problems:
            self.context.count_error("IO_TSSN unusable", problems[0], len(problems))
        plausible = self.context.plausible_times(scan.times_s())
        return scan if plausible.all() else scan.select(plausible)

    def render(self) -> None:
        runs, fit_times, zeniths = self.fits.read()
        for run in np.unique(runs).tolist():
            if run in self.open:
                chosen = runs == run
                self.open[run].add_fits(fit_times[chosen], zeniths[chosen])
        now = time.monotonic()
        for run in sorted(self.open):
            quiet_s = now - self.last_data_at.get(run, now)
            replaced = self.runs.run is not None and run != self.runs.run
            ended = (replaced and quiet_s > STRAGGLERS_S) or quiet_s > self.section.end_after_s
            self._save(run, ended=ended)
        if time.time() - self.forgot_at > FORGET_EVERY_S:
            self.forgot_at = time.time()
            newest = self.context.data_time or time.time()
            self.store.forget_minutes(newest - self.section.keep_minutes_days * 86400)
        current = self.open.get(self.runs.run) if self.runs.run is not None else None
        self.context.save_metrics(
            "quality",
            {
                "run": self.runs.run,
                "livetime_s": current.livetime_s if current else None,
                "ended": [{"run": run, "verdict": verdict} for run, verdict in self.ended[-20:]],
                "late_messages": self.late_messages,
                "store_bytes": self.store.size_bytes(),
            },
        )

    def _reference(self, run: int, det_id: int):
        choice = self.store.reference_choice()
        chosen = choice["run"] if choice and choice["run"] else self.section.reference_run
        if chosen:
            record = self.store.record(chosen)
            if record is not None and record["state"] == "ended":
                who = f" (chosen by {choice['who']})" if choice and choice["run"] else ""
                return build_reference([record], f"run {chosen}{who}")
            self.log.warning("reference run %d is not an ended run here: ignored", chosen)
        good = self.store.good_runs(det_id, run, self.section.reference_runs)
        return build_reference(good, f"medians of the last {len(good)} good runs")

    def _save(self, run: int, ended: bool) -> None:
        """Write the run's record (and, if it ended, its final verdict)."""
        accumulator = self.open[run]
        quantities = accumulator.quantities(
            self.section.active_dom_fraction, self.section.hot_dom_factor
        )
        histograms = {"hits_per_event": accumulator.hits_histogram.tolist()}
        if accumulator.zenith_histogram.any():
            histograms["zenith"] = accumulator.zenith_histogram.tolist()
        record = {
            "quantities": quantities,
            "dom_ids": self.detector.dom_ids,
            "dom_rate_khz": accumulator.dom_rate_khz(),
            "histograms": histograms,
        }
        judgement = judge(
            record, self._reference(run, accumulator.det_id), self.section, self.settings
        )
        quantities["zenith_shape"] = judgement["zenith_shape"]
        self.store.save_run(
            quantities,
            state="ended" if ended else "running",
            dom_ids=self.detector.dom_ids,
            dom_rate_khz=record["dom_rate_khz"],
            histograms=histograms,
            minutes=accumulator.minute_quantities(),
            accumulator=accumulator.state(),
            judgement=judgement,
        )
        if ended:
            del self.open[run]
            self.last_data_at.pop(run, None)
            self.ended.append((run, judgement["verdict"]))
            self.log.warning(
                "run %d ended: %s (%s), %.1f s live time",
                run,
                judgement["verdict"],
                "; ".join(judgement["reasons"]) or "no reasons",
                quantities["livetime_s"],
            )

    def stop(self) -> None:
        for run in sorted(self.open):
            self._save(run, ended=False)
        self.store.close()


def register(subparsers: argparse._SubParsersAction) -> None:
    register_monitor(subparsers, Quality)
