"""k40: intra-DOM calibration from K40 coincidences in ``IO_TSL1`` (when it is mirrored).

Every L1 hit counts (the original's km3pipe chain could not keep up and was switched off in
2019). Per calibration period (``--period`` seconds of DAQ time, default 600), twofold
coincidences are counted per PMT pair in 1-ns bins of calibrated Δt within ±20 ns
(:mod:`km3mon.physics.twofolds`; a PMT's hits in a frame where it is in high-rate veto or
FIFO-full are dropped and the frame is not livetime of its pairs), the accidentals subtracted
from the singles of the summary slices, and each DOM solved for PMT offsets, widths and
relative efficiencies (:mod:`km3mon.physics.k40_fit`). Counting runs on the receiving
thread as the stream arrives (``consume_on_receipt``), the fit on a thread of its own, the
tables and figures on the main thread. PMTs and DOMs disabled in the DETX status are not calibrated.

Each PMT ends a period in one of these states: measured (an offset; **flagged** beyond
``--t0-tolerance``), **no K40 peak** (it has singles in the summary slices and its DOM's other
PMTs were measured, but none of its pairs shows a coincidence peak: typically a t0 wrong by
more than the DataFilter's L1 window, the fault a shifter most needs to see), **disabled** (DETX)
or not measured (no data).

Outputs per period:

* ``data/k40/offsets.csv`` (header; rotated at :data:`ROTATE_BYTES` into ``offsets.csv.1`` …
  ``.4``): ``utc_start, utc_end, dom_id, du, floor, channel, t0_ns, t0_err_ns, rel_eff,
  rel_eff_err, width_ns, n_coincidences, flagged``. ``t0_ns`` is the PMT's offset from the mean
  of its DOM's PMTs such that **DETX t0 + t0_ns** is the corrected t0.
* ``data/k40/t0_corrections_<UTC>.txt`` (and ``t0_corrections_latest.txt``): the proposed DETX t0
  corrections for an expert to review, the last :data:`KEEP_PROPOSALS` kept. The DETX itself
  is never written.
* metrics ``k40.json``: ``flagged`` and ``no_peak`` PMTs (the ``k40_t0`` and ``k40_no_peak``
  alert rules read them) and ``doms``, per measured DOM the RMS and largest offset of its PMTs
  (arrays parallel to ``doms.dom_id``, trended by ``history``).
* plots: ``intradom.png`` (pair means vs cos angle, before and after correction) and
  ``angular_k40rate_distribution.png`` (pair rates, before and after efficiency correction) for
  up to 18 DOMs (all of a small detector, else the worst), ``k40_summary.png`` (DU × floor: RMS
  of each DOM's offsets, its K40 rate, PMTs out of tolerance) and per DU ``k40_du<N>.png``
  (offset of every PMT, floor × channel), drawn by :mod:`km3mon.figures.k40`.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import os
import threading
import time
from pathlib import Path

import numpy as np

from km3mon.controlhost import Message
from km3mon.daq.summaryslice import N_CHANNELS
from km3mon.figures.k40 import K40Layout, K40Outcome, du_offsets, pair_panels, summary_map
from km3mon.physics.k40 import (
    PeriodResult,
    accidentals_per_bin,
    no_peak,
    out_of_tolerance,
    pair_cos_angles,
    pmt_sums,
    rms_ns,
)
from km3mon.physics.k40_fit import DEFAULT_L1_WINDOW_NS, FIT_DOMS, fit_period, solve_doms
from km3mon.physics.pmts import pmt_table
from km3mon.physics.twofolds import (
    DEFAULT_TMAX_NS,
    PAIR_I,
    PAIR_J,
    PeriodCounts,
    TwofoldCounter,
)
from km3mon.published import atomic_write
from km3mon.runtime.decoding import decode_summaryslices, locate_timeslices
from km3mon.runtime.monitor import Context, Monitor, RoundRobin, register_monitor
from km3mon.timetext import utc

ROTATE_BYTES = 100 * 1024 * 1024
KEEP_ROTATED = 4
KEEP_PROPOSALS = 10
MAX_FLAGGED = 1000
CSV_COLUMNS = (
    "utc_start", "utc_end", "dom_id", "du", "floor", "channel", "t0_ns", "t0_err_ns", "rel_eff",
    "rel_eff_err", "width_ns", "n_coincidences", "flagged",
)  # fmt: skip


#: Niceness of the fitting thread: a calibration (tens of CPU-seconds at 230 DUs) must not
#: take the CPU from the counting of IO_TSL1, which cannot wait (its messages would be dropped).
FIT_NICENESS = 10


def _yield_to_counting() -> None:
    """Lower the fitting thread's scheduling priority (Linux schedules threads one by one)."""
    with contextlib.suppress(AttributeError, OSError):  # elsewhere: fit at normal priority
        thread = threading.get_native_id()
        niceness = os.getpriority(os.PRIO_PROCESS, thread) + FIT_NICENESS
        os.setpriority(os.PRIO_PROCESS, thread, min(niceness, 19))


class K40(Monitor):
    name = "k40"
    tags = ("IO_TSL1", "IO_SUM")
    help = "K40 intra-DOM calibration from IO_TSL1: PMT time offsets, widths, efficiencies"
    default_interval_s = 600.0
    #: 64 MB/s at 230 DUs: counted as it arrives, while the main thread draws and writes
    #: tables (its counting kernel runs without the GIL), instead of queued meanwhile.
    consume_on_receipt = True

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--period", type=float, default=600.0, help="seconds of DAQ time per calibration (600)"
        )
        parser.add_argument(
            "--t0-tolerance",
            type=float,
            default=2.0,
            help="ns: PMTs whose offset from their DOM's mean exceeds this are flagged (2)",
        )
        parser.add_argument(
            "--tmax",
            type=int,
            default=DEFAULT_TMAX_NS,
            help=f"coincidence window, ns ({DEFAULT_TMAX_NS}, km3pipe's TwofoldCounter default)",
        )
        parser.add_argument(
            "--l1-window",
            type=float,
            default=DEFAULT_L1_WINDOW_NS,
            help="the DataFilter's L1 window in ns, modelled in the fit (10); 0: hits not "
            "selected by an L1 window",
        )

    def __init__(self, context: Context) -> None:
        super().__init__(context)
        args = context.args
        if args.period <= 0 or args.t0_tolerance <= 0:
            raise ValueError("--period and --t0-tolerance must be positive")
        self.period_s = float(args.period)
        self.tolerance_ns = float(args.t0_tolerance)
        self.detector = context.detector
        self.counter = TwofoldCounter(self.detector, args.tmax)
        self.l1_window_ns = args.l1_window if args.l1_window > 0 else None
        self.slots = self.counter.dom_index
        n = len(self.slots)
        self._rates_product = np.zeros((n, len(PAIR_I)), np.float32)
        self._singles_sum = np.zeros((n, N_CHANNELS))
        self._product = np.zeros((n, len(PAIR_I)), np.float32)
        self._summary_frames = np.zeros(n)
        self.period: int | None = None
        self.period_start_s: float | None = None
        self.period_end_s: float | None = None
        directions = pmt_table(self.detector, self.slots, self.detector.pmt_dir, np.nan)
        #: Calibrated PMTs: present and not disabled in the DETX.
        self.present = np.isfinite(directions[:, :, 0]) & self.counter.enabled
        #: PMTs switched off on purpose (DETX status): drawn as "disabled", never alerted.
        self.disabled = np.isfinite(directions[:, :, 0]) & ~self.counter.enabled
        self.cos_angles = pair_cos_angles(directions)
        self._worker = concurrent.futures.ThreadPoolExecutor(
            1, thread_name_prefix="k40-fit", initializer=_yield_to_counting
        )
        self._pending: concurrent.futures.Future[PeriodResult] | None = None
        #: ``_pending`` is set by consume (receiving thread) and taken by poll (main thread).
        self._handover = threading.Lock()
        #: Fits done, for poll to write and draw (set aside under ``_handover``).
        self._finished: list[concurrent.futures.Future[PeriodResult]] = []
        self.result: PeriodResult | None = None
        self.calibrations = 0
        self.out_dir = context.data_dir / "k40"
        self.robin = RoundRobin()
        self.dus = self.detector.dus
        self.layout = K40Layout(self.detector, self.slots, self.cos_angles, self.present,
                                self.disabled, self.tolerance_ns, self.period_s)  # fmt: skip

    # -- consuming --------------------------------------------------------------------

    def consume(self, messages: list[Message]) -> None:
        for payload, located in locate_timeslices(self.context, messages, "IO_TSL1"):
            time_s = located.header.timestamp
            self._advance_to(time_s)
            result = self.counter.add(payload, located)
            if len(result.unknown_dom_ids):
                self.context.count_unknown_doms(result.unknown_dom_ids)
            if result.bad_channels:
                self.context.count_error("hits on channels above 30", "skipped", 1)
            self.period_end_s = max(self.period_end_s or time_s, time_s + 0.1)
            self.context.saw_data_at(time_s)
        for summary in decode_summaryslices(self.context, messages):
            self._add_singles(summary.dom_ids, summary.rates_hz, summary.hrv | summary.fifo_full)

    def _add_singles(self, dom_ids: np.ndarray, rates_hz: np.ndarray, vetoed: np.ndarray) -> None:
        """Σ r_i r_j per DOM and pair over the period's summary slices (high-rate veto or
        FIFO-full: hits dropped, r = 0), for the accidentals; float32 keeps it a few ms per
        230-DU slice. Σ r_i too, to tell a PMT without a K40 peak from one without light."""
        slot = self.counter.slot_of_index[self.context.dom_index(dom_ids)]
        keep = slot >= 0
        slot, unique = np.unique(slot[keep], return_index=True)
        rates = np.where(vetoed, 0.0, rates_hz)[keep][unique].astype(np.float32)
        self._singles_sum[slot] += rates
        product = self._product[: len(slot)]
        np.multiply(rates[:, PAIR_I], rates[:, PAIR_J], out=product)
        self._rates_product[slot] += product
        self._summary_frames[slot] += 1

    def _advance_to(self, time_s: float) -> None:
        period = int(time_s // self.period_s)
        if self.period is None:
            self.period, self.period_start_s = period, time_s
        elif period > self.period:
            self._close_period()
            self.period, self.period_start_s, self.period_end_s = period, time_s, None

    def _close_period(self) -> None:
        """Hand the period's counts to the fitting thread; counting goes on at once."""
        counts = self.counter.take_counts()  # the bins themselves: counting goes on in new ones
        livetime = self.counter.pair_livetime_s
        background = accidentals_per_bin(
            self._rates_product, self._summary_frames, self.counter.livetime_s
        )
        singles = self._singles_sum / np.maximum(self._summary_frames, 1)[:, None]
        start, end = self.period_start_s, self.period_end_s or self.period_start_s
        shift = self.counter.bin_shift_ns
        self.counter.reset()
        self._rates_product[:] = 0
        self._singles_sum[:] = 0
        self._summary_frames[:] = 0
        with self._handover:
            self._set_aside_finished()
            if self._pending is not None:
                self.log.warning(
                    "previous calibration still running; period %s skipped", utc(start)
                )
                return
            self._pending = self._worker.submit(
                self._calibrate, counts, background, livetime, shift, singles, start, end
            )

    def _calibrate(
        self,
        counts: PeriodCounts,
        background: np.ndarray,
        livetime: np.ndarray,
        shift: np.ndarray,
        singles: np.ndarray,
        start: float,
        end: float,
    ) -> PeriodResult:
        started = time.perf_counter()
        counts.pack(FIT_DOMS)  # 158 MB at 230 DUs to 52, while the new period fills its bins
        fits = fit_period(counts, background, livetime, shift, self.l1_window_ns)
        counts.drop()
        calibration = solve_doms(fits, self.cos_angles, self.present)
        self.log.info(
            "calibrated %d DOMs (%s to %s, %d pairs fitted) in %.1f s",
            int((calibration.n_pairs > 0).sum()),
            utc(start),
            utc(end),
            int(fits.valid.sum()),
            time.perf_counter() - started,
        )
        pmt_net = pmt_sums(np.nan_to_num(fits.net_coincidences))
        # copies: the fits are views into one (8, DOMs, pairs) array (62 MB at 230 DUs)
        return PeriodResult(
            start, end, livetime.max(axis=1, initial=0.0), calibration, fits.mean_ns.copy(),
            fits.rate_hz.copy(), fits.valid, singles, pmt_net,
        )  # fmt: skip

    # -- outputs ----------------------------------------------------------------------

    @property
    def calibrating(self) -> bool:
        """A closed period is being fitted on the worker thread, or its result not yet
        written (``poll`` does that)."""
        return self._pending is not None or bool(self._finished)

    def _set_aside_finished(self) -> None:
        """A finished fit leaves ``_pending`` for ``poll`` (hold ``_handover``)."""
        if self._pending is not None and self._pending.done():
            self._finished.append(self._pending)
            self._pending = None

    def poll(self) -> None:
        with self._handover:
            self._set_aside_finished()
            finished, self._finished = self._finished, []
        for future in finished:
            try:
                self.result = future.result()
            except Exception:  # a fitting bug must not end the monitor
                self.log.exception("calibration failed")
                continue
            self.calibrations += 1
            self._write_tables(self.result)
            self.render(new_result=True)

    def flagged(self, result: PeriodResult) -> np.ndarray:
        """PMTs whose offset is out of tolerance (and measured well enough to say so)."""
        cal = result.calibration
        return out_of_tolerance(cal.t0_ns, cal.t0_error_ns, self.tolerance_ns)

    def no_peak(self, result: PeriodResult) -> np.ndarray:
        """PMTs with singles but no coincidence peak (:func:`km3mon.physics.k40.no_peak`)."""
        t0_ns = result.calibration.t0_ns
        return no_peak(self.present, t0_ns, result.pmt_net, result.singles_hz)

    def _write_tables(self, result: PeriodResult) -> None:
        cal = result.calibration
        flagged = self.flagged(result)
        slots, channels = np.nonzero(np.isfinite(cal.t0_ns))
        dom = self.slots[slots]
        columns = (
            np.full(len(slots), f"{result.utc_start:.1f}"),
            np.full(len(slots), f"{result.utc_end:.1f}"),
            self.detector.dom_ids[dom],
            self.detector.dom_du[dom],
            self.detector.dom_floor[dom],
            channels,
            np.char.mod("%.3f", cal.t0_ns[slots, channels]),
            np.char.mod("%.3f", cal.t0_error_ns[slots, channels]),
            np.char.mod("%.4f", cal.relative_efficiency[slots, channels]),
            np.char.mod("%.4f", cal.relative_efficiency_error[slots, channels]),
            np.char.mod("%.3f", cal.width_ns[slots, channels]),
            np.rint(cal.n_coincidences[slots, channels]).astype(np.int64),
            flagged[slots, channels].astype(int),
        )
        rows = [",".join(map(str, row)) for row in zip(*columns, strict=True)]
        append_rows(self.out_dir / "offsets.csv", ",".join(CSV_COLUMNS), rows)
        self._write_proposal(result, flagged)
        n_flagged = int(flagged.sum())
        if n_flagged:
            names = [
                f"{self.describe(slot)} channel {channel}: {cal.t0_ns[slot, channel]:+.2f} ns"
                for slot, channel in zip(*np.nonzero(flagged), strict=True)
            ][:20]
            self.log.warning(
                "%d PMTs out of the %.1f ns tolerance: %s",
                n_flagged,
                self.tolerance_ns,
                "; ".join(names),
            )
        no_peak = self.no_peak(result)
        if no_peak.any():
            names = [
                f"{self.describe(slot)} channel {channel}: "
                f"{result.singles_hz[slot, channel] / 1e3:.1f} kHz singles"
                for slot, channel in zip(*np.nonzero(no_peak), strict=True)
            ][:20]
            self.log.warning(
                "%d PMTs without a K40 coincidence peak although they have singles (t0 off by "
                "more than the window?): %s",
                int(no_peak.sum()),
                "; ".join(names),
            )

    def describe(self, slot: int) -> str:
        dom = self.slots[slot]
        return (
            f"DOM {self.detector.dom_ids[dom]} (DU {self.detector.dom_du[dom]}, "
            f"floor {self.detector.dom_floor[dom]})"
        )

    def _write_proposal(self, result: PeriodResult, flagged: np.ndarray) -> None:
        cal = result.calibration
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(result.utc_end))
        t0_abs = pmt_table(self.detector, self.slots, self.detector.pmt_t0_ns, np.nan)
        pmt_id = pmt_table(self.detector, self.slots, self.detector.pmt_ids.astype(np.int64), 0)
        lines = [
            f"# Proposed PMT t0 corrections from K40 coincidences, km3mon k40, {utc(time.time())}",
            f"# detector {self.detector.det_id}, geometry {self.detector.source}",
            f"# data {utc(result.utc_start)} to {utc(result.utc_end)}",
            "# new_t0_ns = detx_t0_ns + correction_ns (each DOM's mean t0 unchanged).",
            "# Review before use: this file is a proposal; the DETX is never changed by km3mon.",
            f"# flagged = |correction| > {self.tolerance_ns:g} ns",
            "dom_id du floor channel pmt_id detx_t0_ns correction_ns error_ns new_t0_ns flagged",
        ]
        for slot, channel in zip(*np.nonzero(np.isfinite(cal.t0_ns)), strict=True):
            dom = self.slots[slot]
            correction = cal.t0_ns[slot, channel]
            lines.append(
                f"{self.detector.dom_ids[dom]} {self.detector.dom_du[dom]} "
                f"{self.detector.dom_floor[dom]} {channel} {pmt_id[slot, channel]} "
                f"{t0_abs[slot, channel]:.3f} {correction:+.3f} "
                f"{cal.t0_error_ns[slot, channel]:.3f} {t0_abs[slot, channel] + correction:.3f} "
                f"{int(flagged[slot, channel])}"
            )
        text = ("\n".join(lines) + "\n").encode()
        atomic_write(self.out_dir / f"t0_corrections_{stamp}.txt", text)
        atomic_write(self.out_dir / "t0_corrections_latest.txt", text)
        proposals = sorted(self.out_dir.glob("t0_corrections_2*.txt"))
        for old in proposals[:-KEEP_PROPOSALS]:
            old.unlink(missing_ok=True)

    def render(self, new_result: bool = False) -> None:
        detector_wide = ("intradom", "angular", "summary")
        self.robin.start([*detector_wide, *self.dus.tolist()],
                         first=detector_wide if new_result else ())  # fmt: skip
        # with many DUs a tick may not finish: say how often each plot really is redrawn
        self.context.freshness.redraw_interval_s = self.robin.redraw_interval_s
        self.render_more()
        result = self.result
        metrics: dict[str, object] = {
            "period_s": self.period_s,
            "calibrations": self.calibrations,
            "collecting_since": self.period_start_s,
            "t0_tolerance_ns": self.tolerance_ns,
        }
        if result is not None:
            cal = result.calibration
            flagged = self.flagged(result)
            slots, channels = np.nonzero(flagged)
            worst_first = np.argsort(-np.abs(cal.t0_ns[slots, channels]), kind="stable")
            slots, channels = slots[worst_first], channels[worst_first]
            no_peak = self.no_peak(result)
            measured = np.flatnonzero(np.isfinite(cal.t0_ns).any(axis=1))
            dom = self.slots[measured]
            with np.errstate(invalid="ignore"):
                largest = np.nanmax(np.abs(cal.t0_ns[measured]), axis=1, initial=0.0)
            metrics.update(
                {
                    "utc_start": result.utc_start,
                    "utc_end": result.utc_end,
                    "median_k40_rate_hz": float(np.median(cal.k40_rate_hz[cal.n_pairs > 0]))
                    if (cal.n_pairs > 0).any()
                    else None,
                    "dom_id": self.detector.dom_ids[self.slots],
                    "t0_rms_ns": rms_ns(cal.t0_ns) if np.isfinite(cal.t0_ns).any() else None,
                    "flagged": [
                        {
                            "dom_id": int(self.detector.dom_ids[self.slots[s]]),
                            "du": int(self.detector.dom_du[self.slots[s]]),
                            "floor": int(self.detector.dom_floor[self.slots[s]]),
                            "channel": int(c),
                            "t0_ns": round(float(cal.t0_ns[s, c]), 3),
                        }
                        for s, c in list(zip(slots, channels, strict=True))[:MAX_FLAGGED]
                    ],
                    "no_peak": [
                        {
                            "dom_id": int(self.detector.dom_ids[self.slots[s]]),
                            "du": int(self.detector.dom_du[self.slots[s]]),
                            "floor": int(self.detector.dom_floor[self.slots[s]]),
                            "channel": int(c),
                            "singles_khz": round(float(result.singles_hz[s, c]) / 1e3, 2),
                        }
                        for s, c in list(zip(*np.nonzero(no_peak), strict=True))[:MAX_FLAGGED]
                    ],
                    "disabled_pmts": int(self.disabled.sum()),
                    "doms": {
                        "dom_id": self.detector.dom_ids[dom],
                        "du": self.detector.dom_du[dom],
                        "floor": self.detector.dom_floor[dom],
                        "t0_rms_ns": np.round(rms_ns(cal.t0_ns[measured]), 3),
                        "t0_max_abs_ns": np.round(largest, 3),
                        "n_flagged": flagged[measured].sum(axis=1),
                        "n_no_peak": no_peak[measured].sum(axis=1),
                    },
                }
            )
        with np.errstate(invalid="ignore", divide="ignore"):
            self.context.save_metrics("k40", metrics)

    def render_more(self) -> bool:
        return self.robin.run(self._render_one)

    def _render_one(self, key: object) -> None:
        outcome = self._outcome()
        collected = self._collected_s()
        if key == "intradom":
            figure = pair_panels(self.layout, outcome, rates=False, collected_s=collected)
            self.context.save_figure("intradom.png", figure)
        elif key == "angular":
            figure = pair_panels(self.layout, outcome, rates=True, collected_s=collected)
            self.context.save_figure("angular_k40rate_distribution.png", figure)
        elif key == "summary":
            figure = summary_map(self.layout, outcome, collected)
            self.context.save_figure("k40_summary.png", figure)
        else:
            figure = du_offsets(self.layout, outcome, int(key), collected)
            self.context.save_figure(f"k40_du{key}.png", figure)

    def _outcome(self) -> K40Outcome | None:
        """The newest solution with the PMTs it flags, for the figures."""
        if self.result is None:
            return None
        return K40Outcome(self.result, self.flagged(self.result), self.no_peak(self.result))

    def _collected_s(self) -> float:
        """DAQ seconds of IO_TSL1 in the open period."""
        if self.period_start_s is None or self.period_end_s is None:
            return 0.0
        return self.period_end_s - self.period_start_s


def append_rows(path: Path, header: str, rows: list[str]) -> None:
    """Append CSV rows; a new file gets the header, a torn last line (a crash mid-write) is cut
    off first, and above :data:`ROTATE_BYTES` the file is rotated (``.1`` … ``.4`` kept)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and path.stat().st_size > ROTATE_BYTES:
        for number in range(KEEP_ROTATED - 1, 0, -1):
            older = path.with_name(f"{path.name}.{number}")
            if older.exists():
                os.replace(older, path.with_name(f"{path.name}.{number + 1}"))
        os.replace(path, path.with_name(f"{path.name}.1"))
    with path.open("a+b") as stream:
        size = stream.seek(0, os.SEEK_END)
        if size:
            stream.seek(max(0, size - 65536))
            tail = stream.read()
            if not tail.endswith(b"\n"):
                cut = tail.rfind(b"\n")
                stream.truncate(size - len(tail) + cut + 1 if cut >= 0 else 0)
        stream.seek(0, os.SEEK_END)
        text = "\n".join(rows) + "\n"
        if stream.tell() == 0:
            text = header + "\n" + text
        stream.write(text.encode())


def register(subparsers: argparse._SubParsersAction) -> None:
    register_monitor(subparsers, K40)
