"""reco: live muon reconstruction of every triggered event, and a time-calibration monitor.

Every ``IO_EVT`` event is calibrated (DETX or database, as ztplot) and fitted in batches
(:mod:`km3mon.reco.fit`): a multi-DU track fit when its triggered hits span >= 2 DUs, a
single-DU ROy fit for every DU with triggered hits on >= 4 floors (refined by the PMT
likelihood where the event has no track). No event is skipped.

Outputs, all bounded:

- ``data/reco/fits.csv``: one row per fit (``kind`` multi-du / single-du), KM3NeT
  conventions; rotated at UTC midnight to ``fits_YYYY-MM-DD.csv``, oldest deleted. A 2-DU
  fit whose mirror solution the PMT directions cannot rule out has ``ambiguous`` 1 and
  empty azimuth, dir_x and dir_y (its zenith is measured; its azimuth is not).
- ``$ROYFIT_TIMERES`` (``--timeres``): the original's residual CSV, one row per hit of a
  single-DU fit, ``run,timestamp,du,floor,dom_id,t_res,Q``; rotated by size.
- ``plots/time_residuals.png``, ``plots/ztplot_roy.png``, ``plots/reco_zenith.png``, drawn
  from memory rings of the last two hours (``data/reco/state.npz``, read back at start).
- ``data/metrics/reco.json``: fit rates, per-DOM time offsets and the DOMs flagged as timing
  outliers (median leave-one-out residual off by >= ``--offset-threshold`` ns, at
  ``--offset-significance`` sigma).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from km3mon import published
from km3mon.controlhost import Message
from km3mon.daq.triggers import trigger_names
from km3mon.detector import Database, RunCalibration, calibrate_hits
from km3mon.figures.reco import (
    Display,
    DomOffsets,
    quality_text,
    residual_histograms,
    residual_map,
    track_angles,
    zenith_figure,
    ztplot,
)
from km3mon.history.reco import (
    FINE_EDGES_NS,
    KEEP_S,
    Rings,
    RotatingCSV,
    format_rows,
    histogram_quantiles,
)
from km3mon.reco.fit import BatchResult, Reconstruction, Settings
from km3mon.reco.model import zenith_deg
from km3mon.runtime.decoding import decode_events_and_hits, packet_times_s, payloads_of
from km3mon.runtime.monitor import Context, Monitor, register_monitor
from km3mon.timetext import utc

FITS_HEADER = (
    "run,frame_index,trigger_counter,utc,kind,du,zenith_deg,azimuth_deg,dir_x,dir_y,dir_z,"
    "pos_x,pos_y,pos_z,t,quality,n_hits,n_doms,n_dus,ambiguous"
)
FITS_FORMATS = "%d %d %d %.6f %s %s %.4f %.4f %.6f %.6f %.6f %.2f %.2f %.2f %.2f %.4g %d %d %d %d"
TIMERES_HEADER = "run,timestamp,du,floor,dom_id,t_res,Q"
TIMERES_FORMATS = "%d %.6f %d %d %d %.3f %.4g"
#: At most this many DUs get per-floor residual histograms; above, a DU × floor map.
MAX_HISTOGRAM_DUS = 12
SAVE_EVERY_S = 300.0
#: Residuals per DOM the offset estimate aims at: newer blocks first, older ones added
#: until a DOM has this many (so a new offset shows quickly, a quiet DOM still gets one).
TARGET_DOM_RESIDUALS = 300
#: A "well-fitted" event for the z-t display: multi-DU, Q below this.
DISPLAY_MAX_QUALITY = 3.0


class Reco(Monitor):
    name = "reco"
    tags = ("IO_EVT",)
    help = (
        "live muon reconstruction of every event (multi-DU track and single-DU ROy fits), "
        "time residuals per DOM, timing-outlier DOMs"
    )
    default_interval_s = 30.0

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--timeres",
            help="residual CSV of the single-DU fits (default: $ROYFIT_TIMERES, else "
            "DATA_DIR/time_residuals.csv)",
        )
        parser.add_argument(
            "--timeres-max-mb",
            type=float,
            default=200.0,
            help="size at which the residual CSV is rotated, MB (200)",
        )
        parser.add_argument(
            "--fits-max-mb",
            type=float,
            default=2000.0,
            help="size at which data/reco/fits.csv is rotated before midnight, MB (2000)",
        )
        parser.add_argument(
            "--keep-files",
            type=int,
            default=7,
            help="rotated files kept of each CSV, oldest deleted (7)",
        )
        parser.add_argument(
            "--offset-threshold",
            type=float,
            default=3.0,
            help="flag a DOM whose time offset is at least this many ns (3)",
        )
        parser.add_argument(
            "--offset-significance",
            type=float,
            default=5.0,
            help="... and at least this many standard errors from 0 (5)",
        )
        parser.add_argument(
            "--pmt-facing-weight",
            type=float,
            default=Settings.facing_weight,
            help="weight of which PMTs were hit (the light must reach a PMT from in front) in "
            "the track fit; 0 for data without PMT angular acceptance "
            f"({Settings.facing_weight:g})",
        )
        parser.add_argument(
            "--min-dom-residuals",
            type=int,
            default=30,
            help="residuals a DOM needs before it can be flagged (30)",
        )

    def __init__(self, context: Context) -> None:
        super().__init__(context)
        args = context.args
        detector = context.detector
        self.detector = detector
        from_file = args.detx or os.environ.get("DETX")
        self.calibration = RunCalibration(detector, database=None if from_file else Database())
        self.settings = Settings(facing_weight=args.pmt_facing_weight)
        self.reconstruction = Reconstruction(detector, self.settings)
        self.warm = False
        megabyte = 1024 * 1024
        self.fits = RotatingCSV(
            published.reco_fits(context.data_dir),
            FITS_HEADER,
            max_bytes=int(args.fits_max_mb * megabyte),
            keep=args.keep_files,
        )
        timeres = args.timeres or os.environ.get("ROYFIT_TIMERES")
        self.timeres = RotatingCSV(
            Path(timeres) if timeres else published.time_residuals(context.data_dir),
            TIMERES_HEADER,
            max_bytes=int(args.timeres_max_mb * megabyte),
            keep=args.keep_files,
            daily=False,
        )
        self.state_path = published.reco_state(context.data_dir)
        self.rings = Rings(len(detector.dom_ids), len(detector.dus) <= MAX_HISTOGRAM_DUS)
        self.newest_s: float | None = None
        if self.state_path.exists() and self.rings.load(self.state_path, detector.dom_ids):
            self.newest_s = self.rings.newest_s()
            self.log.info("read the last two hours back from %s", self.state_path)
        self.saved_at = time.monotonic()
        self.display: Display | None = None
        self.display_doms = 0
        self.totals = dict.fromkeys(
            ("events", "tried", "tracks", "lines", "chosen_by_likelihood"), 0
        )
        #: events (multi-DU) and DUs (single-DU) not fitted, by reason, since the start
        self.unfitted: dict[str, int] = {}

    def consume(self, messages: list[Message]) -> None:
        if not self.warm:
            # compiled (or loaded from numba's cache) while the receiver already queues
            started = time.monotonic()
            self.reconstruction.warm_up()
            self.log.info("fit kernels ready in %.1f s", time.monotonic() - started)
            self.warm = True
        payloads = payloads_of(messages, "IO_EVT")
        events, hits, _ = decode_events_and_hits(self.context, payloads)
        if not len(events):
            return
        times_s = packet_times_s(events)
        self.context.saw_data_at(float(times_s.max()))
        # snapshot hits too: the per-DOM residuals use those within a road around each track
        calibrated = self._calibrate(events, hits)
        foreign = calibrated["triggered"] & ~calibrated["calibrated"]
        if foreign.any():  # a detector file that does not match: on the status page, logged
            self.context.dom_index(calibrated["dom_id"][foreign])
        result = self.reconstruction.run(len(events), calibrated)
        self._write_fits(events, times_s, result)
        self._fill_rings(times_s, result)
        self._keep_display(events, hits, result)
        self.totals["events"] += len(events)
        self.totals["tried"] += int(result.track_tried.sum())
        self.totals["tracks"] += len(result.tracks)
        self.totals["lines"] += len(result.lines)
        self.totals["chosen_by_likelihood"] += result.chosen_by_likelihood
        for reason, count in result.unfitted.items():
            self.unfitted[reason] = self.unfitted.get(reason, 0) + count

    def _calibrate(self, events: np.ndarray, hits: np.ndarray) -> np.ndarray:
        runs = events["run"][hits["event"]]
        parts = [self.calibration.apply(hits[runs == run], int(run)) for run in np.unique(runs)]
        if not parts:
            return calibrate_hits(self.detector, hits)
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def _write_fits(self, events: np.ndarray, times_s: np.ndarray, result: BatchResult) -> None:
        tracks, lines = result.tracks, result.lines
        rows = []
        if len(tracks):
            e = tracks["event"]
            n = len(tracks)
            zenith, azimuth = track_angles(tracks["dir"])
            direction, position = tracks["dir"], tracks["pos_m"]
            ambiguous = tracks["ambiguous"]
            azimuth = np.where(ambiguous, np.nan, azimuth)
            dir_xy = np.where(ambiguous[:, None], np.nan, direction[:, :2])
            columns = [
                events["run"][e], events["frame_index"][e], events["trigger_counter"][e],
                times_s[e], ["multi-du"] * n, [""] * n, zenith, azimuth, dir_xy[:, 0],
                dir_xy[:, 1], direction[:, 2], position[:, 0], position[:, 1],
                position[:, 2], tracks["t_ns"], tracks["quality"], tracks["n_hits"],
                tracks["n_doms"], tracks["n_dus"], ambiguous.astype(np.int64),
            ]  # fmt: skip
            rows.append(format_rows(columns, FITS_FORMATS))
        if len(lines):
            e = lines["event"]
            n = len(lines)
            empty = np.full(n, np.nan)
            columns = [
                events["run"][e], events["frame_index"][e], events["trigger_counter"][e],
                times_s[e], ["single-du"] * n, lines["du"], zenith_deg(lines["cos_theta"]),
                empty, empty, empty, lines["cos_theta"], empty, empty, lines["z_c_m"],
                lines["t_c_ns"], lines["quality"], lines["n_hits"], lines["n_hits"],
                np.ones(n, np.int64), np.zeros(n, np.int64),
            ]  # fmt: skip
            rows.append(format_rows(columns, FITS_FORMATS))
            residuals = result.line_residuals
            fit_event = lines["event"][residuals["fit"]]
            columns = [
                events["run"][fit_event], times_s[fit_event], residuals["du"],
                residuals["floor"], self.detector.dom_ids[residuals["dom"]],
                residuals["t_res_ns"], lines["quality"][residuals["fit"]],
            ]  # fmt: skip
            self.timeres.write(format_rows(columns, TIMERES_FORMATS))
        self.fits.write("".join(rows))

    def _fill_rings(self, times_s: np.ndarray, result: BatchResult) -> None:
        """Times come through the monitor's TimeGate, which holds back wild DAQ times; a
        wall-clock bound here would also refuse a simulation sped up for a quiet run."""
        rings = self.rings
        newest = float(times_s.max())
        self.newest_s = newest if self.newest_s is None else max(self.newest_s, newest)
        rings.add_counts(times_s, "events")
        rings.add_counts(times_s[result.track_tried], "tried")
        tracks, lines = result.tracks, result.lines
        track_times = times_s[tracks["event"]]
        rings.add_counts(track_times, "tracks")
        rings.add_zenith(track_times, zenith_deg(tracks["dir"][:, 2]))
        line_times = times_s[lines["event"]]
        rings.add_counts(line_times, "lines")
        dom = result.dom_residuals
        rings.add_fine(track_times[dom["fit"]], dom["dom"], dom["t_res_ns"])
        residuals = result.line_residuals
        rings.add_coarse(line_times[residuals["fit"]], residuals["dom"], residuals["t_res_ns"])

    def _keep_display(self, events: np.ndarray, hits: np.ndarray, result: BatchResult) -> None:
        """The best-fitted event of this render interval (most DOMs, Q below the cut)."""
        tracks = result.tracks
        good = np.flatnonzero((tracks["n_dus"] >= 2) & (tracks["quality"] < DISPLAY_MAX_QUALITY))
        if not len(good):
            return
        best = good[np.argmax(tracks["n_doms"][good])]
        if tracks["n_doms"][best] <= self.display_doms:
            return
        track = tracks[best]
        e = int(track["event"])
        row = events[e]
        event_hits = hits[hits["event"] == e]
        calibrated = self.calibration.apply(event_hits, int(row["run"]))
        calibrated = calibrated[calibrated["calibrated"]]
        lines = result.lines[result.lines["event"] == e]
        dus = np.unique(calibrated["du"])
        du_xy = dict(zip(dus.tolist(), self.reconstruction.du_axis(dus), strict=True))
        zenith, azimuth = track_angles(track["dir"][None, :])
        q_lines = ", ".join(f"DU {ln['du']}: {quality_text(ln['quality'])}" for ln in lines)
        title = (
            f"ROy live reconstruction: multi-DU Q={track['quality']:.2g} "
            f"(zenith {zenith[0]:.1f}°, azimuth {azimuth[0]:.1f}°, {track['n_doms']} DOMs on "
            f"{track['n_dus']} DUs)" + (f"; single-DU Q: {q_lines}" if q_lines else "") + "\n"
            f"Det ID {row['det_id']}, run {row['run']}, FI {row['frame_index']}, "
            f"TC {row['trigger_counter']}, overlays {row['overlays']}, trigger "
            f"{'/'.join(trigger_names(int(row['trigger_mask']))) or 'none'}\n"
            f"{utc(float(packet_times_s(events[e : e + 1])[0]))}"
        )
        self.display = Display(title, calibrated, track.copy(), lines.copy(), du_xy)
        self.display_doms = int(track["n_doms"])

    # --- outputs on the clock -----------------------------------------------------------

    def dom_offsets(self) -> DomOffsets:
        """Per DOM: median leave-one-out residual minus the detector's median, newest blocks
        first until a DOM has TARGET_DOM_RESIDUALS, and whether it is flagged."""
        args = self.context.args
        n_doms = len(self.detector.dom_ids)
        slots = self.rings.recent_blocks(self.newest_s) if self.newest_s is not None else []
        if not len(slots):
            empty = np.full(n_doms, np.nan)
            return DomOffsets(empty, empty, empty, np.zeros(n_doms, np.int64), np.nan,
                              np.zeros(n_doms, bool))  # fmt: skip
        cumulative = np.cumsum(self.rings.fine[slots].astype(np.int64), axis=0)
        totals = cumulative.sum(axis=2)  # (blocks, DOMs)
        enough = totals >= TARGET_DOM_RESIDUALS
        depth = np.where(enough.any(axis=0), np.argmax(enough, axis=0), len(slots) - 1)
        histogram = cumulative[depth, np.arange(n_doms)]
        count = histogram.sum(axis=1)
        quantiles = histogram_quantiles(histogram, FINE_EDGES_NS, (0.16, 0.5, 0.84))
        median = quantiles[:, 1]
        # a DOM tens of ns off has one tail beyond the fine bins: its spread from the other
        below, above = median - quantiles[:, 0], quantiles[:, 2] - median
        spread = np.where(np.isnan(below + above), np.fmin(below, above), 0.5 * (below + above))
        usable = (count >= args.min_dom_residuals) & np.isfinite(median)
        reference = float(np.median(median[usable])) if usable.any() else np.nan
        offset = median - self._floor_references(median, usable, reference)
        with np.errstate(divide="ignore", invalid="ignore"):
            error = 1.2533 * spread / np.sqrt(count)
        flagged = (
            usable
            & (np.abs(offset) >= args.offset_threshold)
            & (np.abs(offset) >= args.offset_significance * error)
        )
        return DomOffsets(offset, error, spread, count, reference, flagged)

    def _floor_references(
        self, median: np.ndarray, usable: np.ndarray, overall: float
    ) -> np.ndarray:
        """Per DOM, the median residual of its floor across DUs (where >= 3 DOMs of the floor
        have enough residuals), else the detector's. The earliest-hit selection leaves a
        floor-dependent bias (top and bottom floors see muons from one side, ~1-2 ns in
        the simulation) that must not read as a DOM offset; one bad DOM cannot move it."""
        floors = self.detector.dom_floor
        reference = np.full(len(median), overall)
        for floor in np.unique(floors[usable]).tolist():
            mine = usable & (floors == floor)
            if mine.sum() >= 3:
                reference[floors == floor] = np.median(median[mine])
        return reference

    def _flag_texts(self, offsets: DomOffsets) -> list[str]:
        d = self.detector
        order = np.flatnonzero(offsets.flagged)
        order = order[np.argsort(-np.abs(offsets.offset_ns[order]))]
        return [
            f"DOM {d.dom_ids[i]} (DU {d.dom_du[i]}, floor {d.dom_floor[i]}) "
            f"{offsets.offset_ns[i]:+.1f} ± {offsets.error_ns[i]:.1f} ns"
            for i in order.tolist()
        ]

    def render(self) -> None:
        offsets = self.dom_offsets()
        flagged_text = self._flag_texts(offsets)
        span = f"last {KEEP_S / 3600:g} h until {utc(self.newest_s)}"
        if self.rings.coarse.shape[1]:
            slots = self.rings.recent_blocks(self.newest_s) if self.newest_s else []
            coarse = self.rings.coarse[np.asarray(slots, np.int64)].sum(axis=0)
            figure = residual_histograms(self.detector, coarse, flagged_text, span)
        else:
            figure = residual_map(self.detector, offsets, 10.0, flagged_text, span)
        self.context.save_figure("time_residuals.png", figure, dpi=80)
        if self.display is not None:
            figure = ztplot(self.display, self.detector)
            self.context.save_figure("ztplot_roy.png", figure, dpi=72)
            self.display_doms = 0  # the next interval picks a new one
        self._render_zenith()
        self._save_metrics(offsets)
        if time.monotonic() - self.saved_at >= SAVE_EVERY_S:
            self.save_state()

    def _render_zenith(self) -> None:
        rings = self.rings
        newest = self.newest_s if self.newest_s is not None else time.time()
        _, last = rings.recent_minutes(newest, 3600.0)
        _, before = rings.recent_minutes(newest - 3600.0, 3600.0)
        minutes_s, slots = rings.recent_minutes(newest, KEEP_S)
        figure = zenith_figure(
            self.detector,
            rings.zenith[last].sum(axis=0),
            rings.zenith[before].sum(axis=0),
            minutes_s,
            rings.counts[slots, 2],
            rings.counts[slots, 0],
        )
        self.context.save_figure("reco_zenith.png", figure, dpi=80)

    def _save_metrics(self, offsets: DomOffsets) -> None:
        d = self.detector
        rings = self.rings
        newest = self.newest_s if self.newest_s is not None else time.time()
        _, slots = rings.recent_minutes(newest, 600.0)
        counts = rings.counts[slots].sum(axis=0)
        seconds = max(len(slots), 1) * 60.0
        flagged = np.flatnonzero(offsets.flagged)
        measured = np.flatnonzero(offsets.count > 0)
        self.context.save_metrics(
            "reco",
            {
                "totals": self.totals,
                "unfitted": self.unfitted,
                "last_10_min": {
                    "events_hz": counts[0] / seconds,
                    "multi_du_fits_hz": counts[2] / seconds,
                    "single_du_fits_hz": counts[3] / seconds,
                    "multi_du_efficiency": counts[2] / counts[1] if counts[1] else None,
                },
                "reference_residual_ns": offsets.reference_ns,
                "offset_threshold_ns": self.context.args.offset_threshold,
                "flagged_doms": [
                    {
                        "dom_id": int(d.dom_ids[i]),
                        "du": int(d.dom_du[i]),
                        "floor": int(d.dom_floor[i]),
                        "offset_ns": round(float(offsets.offset_ns[i]), 2),
                        "error_ns": round(float(offsets.error_ns[i]), 2),
                        "residuals": int(offsets.count[i]),
                    }
                    for i in flagged.tolist()
                ],
                "doms": {
                    "dom_id": d.dom_ids[measured],
                    "du": d.dom_du[measured],
                    "floor": d.dom_floor[measured],
                    "offset_ns": np.round(offsets.offset_ns[measured], 2),
                    "error_ns": np.round(offsets.error_ns[measured], 2),
                    "spread_ns": np.round(offsets.spread_ns[measured], 2),
                    "residuals": offsets.count[measured],
                },
            },
        )

    def stop(self) -> None:
        self.save_state()
        self.fits.close()
        self.timeres.close()

    def save_state(self) -> None:
        self.rings.save(self.state_path, self.detector.dom_ids)
        self.saved_at = time.monotonic()


def register(subparsers: argparse._SubParsersAction) -> None:
    register_monitor(subparsers, Reco)
