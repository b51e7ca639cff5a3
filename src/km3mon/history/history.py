"""`km3mon history`: once a minute, the monitors' key metrics into ``data/history.sqlite3``.

One process samples what every monitor already publishes (``data/metrics/*.json`` and the
freshness records) instead of every monitor writing a database of its own: monitors stay
unchanged, and one writer keeps SQLite simple. Each sample is stored at the DAQ time of its
data, and a metric whose data did not move since the last sample is not stored again (a gap
is the truth). What is recorded (the table, every numeric top-level field of every metrics
file as a scalar, and every per-DOM array a monitor publishes under ``doms``):

========================  ======  ===============================================================
dom_rate_khz              DOM     dom_rates: summed PMT rate
dom_pmts_out_of_range     DOM     pmt_rates: PMTs above or below the colour range (newest column)
dom_pmts_hrv              DOM     pmt_rates: PMTs in high-rate veto (newest column)
du_yaw_deg, _pitch, _roll DU      ahrs_calibration: mean over the DU's floors (yaw: circular)
trigger_rate_hz.<type>    scalar  trigger_rates: Overall, 3DMuon, MXShower, 3DShower per interval
du_rttc_ps                DU      rttc: newest round-trip time
process_up.<process>      scalar  1 running, 0.5 stale (connected, no data), 0 otherwise
<file>.<key>              DOM     ``doms.<key>`` of ``data/metrics/<file>.json``: numeric arrays
                                  parallel to ``doms.dom_id`` (reco: ``offset_ns``, ``error_ns``,
                                  ``spread_ns``; timesync: ``state``, ``frames_per_s``, ...)
========================  ======  ===============================================================

The ``doms`` convention is how a monitor gets a per-DOM trend on ``/history`` without a change
here: an object with a ``dom_id`` list and lists of numbers (or null) of the same length.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from km3mon import published
from km3mon.history.store import HistoryStore
from km3mon.runtime.freshness import process_state, read_records
from km3mon.runtime.monitor import Context, Monitor, register_monitor

Sample = tuple[str, str, float, np.ndarray, np.ndarray]
#: Keys of a ``doms`` object that say where a DOM is, not what it measured.
PLACE_KEYS = frozenset({"dom_id", "du", "floor"})
#: Top-level fields that are settings or bookkeeping, not measurements.
NOT_MEASURED = frozenset({"data_time", "interval_s", "n_channels", "column_start", "bin_start",
                          "latest_start", "run", "frame_index", "trigger_counter"})  # fmt: skip
STATE_VALUE = {"running": 1.0, "stale": 0.5}


def _array(values: list[Any]) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


class History(Monitor):
    name = "history"
    tags = ()
    help = "samples the monitors' key metrics once a minute into data/history.sqlite3"
    default_interval_s = 60.0

    def __init__(self, context: Context) -> None:
        super().__init__(context)
        settings = context.pipeline.history
        self.store = HistoryStore(
            context.data_dir,
            keep_days=settings.keep_days,
            keep_coarse_days=settings.keep_coarse_days,
        )
        #: metric -> time of the data last stored (not stored again until it moves).
        self.stored_at: dict[str, float] = {}
        self.runs: set[int] = set()
        self.du_floor: dict[int, tuple[int, int]] = {}
        try:
            detector = context.detector
            self.du_floor = {
                int(d): (int(u), int(f))
                for d, u, f in zip(
                    detector.dom_ids, detector.dom_du, detector.dom_floor, strict=True
                )
            }
            self.store.set_places(self.du_floor)
        except Exception as error:  # no DETX, no database: per-DU metrics need the detector
            self.log.warning("no detector (%s): per-DU metrics are not recorded", error)
        context.freshness.connected = True
        context.freshness.ligier = "none (reads data/metrics)"

    def render(self) -> None:
        started = time.perf_counter()
        metrics = self._read_metrics()
        samples = [s for s in self.samples(metrics) if self._new(s)]
        self._note_runs(metrics.get("trigger_rates"))
        stored = self.store.write(samples)
        freshness = self.context.freshness
        freshness.messages += stored
        freshness.last_message_at = time.time()
        if samples:
            self.context.saw_data_at(max(s[2] for s in samples))
        self.context.save_metrics(
            "history",
            {"stored": stored, "write_s": round(time.perf_counter() - started, 4)},
        )

    def _read_metrics(self) -> dict[str, dict[str, Any]]:
        documents = {}
        for path in sorted(published.metrics_dir(self.context.data_dir).glob("*.json")):
            if path.stem == "history":
                continue
            try:
                documents[path.stem] = json.loads(path.read_text())
            except (OSError, ValueError) as error:
                self.context.count_error(f"cannot read {path.name}", error)
        return documents

    def _new(self, sample: Sample) -> bool:
        name, _, time_s, _, _ = sample
        if self.stored_at.get(name) == time_s:
            return False
        self.stored_at[name] = time_s
        return True

    def _note_runs(self, document: dict[str, Any] | None) -> None:
        if not document or document.get("run") is None:
            return
        changes = [(float(t), int(r)) for t, r in document.get("run_changes", [])]
        if document["run"] not in self.runs and not changes:
            changes.append((float(document.get("data_time") or time.time()), int(document["run"])))
        for start, run in changes:
            if run not in self.runs:
                self.store.note_run(run, start)
                self.runs.add(run)

    def samples(self, metrics: dict[str, dict[str, Any]]) -> Iterator[Sample]:
        yield from self._dom_rates(metrics.get("dom_rates"))
        yield from self._pmt_flags(metrics.get("pmt_rates"), metrics.get("dom_rates"))
        yield from self._ahrs(metrics.get("ahrs_calibration"))
        yield from self._trigger_rates(metrics.get("trigger_rates"))
        yield from self._rttc(metrics.get("rttc"))
        for name, document in metrics.items():
            yield from self._per_dom(name, document)
            yield from self._scalars(name, document)
        yield from self._process_states()

    def _dom_rates(self, document: dict[str, Any] | None) -> Iterator[Sample]:
        if document and document.get("data_time") and "rate_khz" in document:
            ids = np.asarray(document["dom_id"], np.int64)
            yield "dom_rate_khz", "dom", document["data_time"], ids, _array(document["rate_khz"])

    def _pmt_flags(
        self, document: dict[str, Any] | None, rates: dict[str, Any] | None
    ) -> Iterator[Sample]:
        if not document or document.get("column_start") is None:
            return
        if self.du_floor:
            ids = np.array(sorted(d for d, (_, f) in self.du_floor.items() if f > 0), np.int64)
        elif rates:
            ids = np.asarray(rates["dom_id"], np.int64)
        else:
            ids = np.array(sorted({f["dom_id"] for f in document.get("flagged", [])}), np.int64)
        counts = {"out": np.zeros(len(ids)), "hrv": np.zeros(len(ids))}
        for flag in document.get("flagged", []):
            index = np.searchsorted(ids, flag["dom_id"])
            if index < len(ids) and ids[index] == flag["dom_id"]:
                counts["hrv" if flag["kind"] == "hrv" else "out"][index] += 1
        time_s = document["column_start"]
        yield "dom_pmts_out_of_range", "dom", time_s, ids, counts["out"]
        yield "dom_pmts_hrv", "dom", time_s, ids, counts["hrv"]

    def _ahrs(self, document: dict[str, Any] | None) -> Iterator[Sample]:
        if not document or document.get("bin_start") is None or not self.du_floor:
            return
        dus = np.array([self.du_floor.get(int(d), (-1, 0))[0] for d in document["dom_id"]])
        known = sorted(set(dus.tolist()) - {-1})
        for angle in ("yaw", "pitch", "roll"):
            values = _array(document.get(f"{angle}_deg", []))
            if len(values) != len(dus):
                continue
            means = []
            for du in known:
                chosen = values[(dus == du) & np.isfinite(values)]
                if not len(chosen):
                    means.append(np.nan)
                elif angle == "yaw":  # circular: 359° and 1° average to 0°, not 180°
                    radians = np.radians(chosen)
                    mean = np.degrees(np.arctan2(np.sin(radians).mean(), np.cos(radians).mean()))
                    means.append(float(np.mod(mean, 360.0)))
                else:
                    means.append(float(chosen.mean()))
            yield (f"du_{angle}_deg", "du", document["bin_start"], np.array(known, np.int64),
                   np.array(means))  # fmt: skip

    def _trigger_rates(self, document: dict[str, Any] | None) -> Iterator[Sample]:
        if not document or not document.get("latest_hz") or document.get("latest_start") is None:
            return
        for kind, value in document["latest_hz"].items():
            yield (f"trigger_rate_hz.{kind}", "scalar", document["latest_start"],
                   np.zeros(1, np.int64), _array([value]))  # fmt: skip

    def _rttc(self, document: dict[str, Any] | None) -> Iterator[Sample]:
        if not document or not document.get("dus") or not document.get("data_time"):
            return
        dus = sorted(document["dus"], key=int)
        values = _array([document["dus"][du].get("rttc_ps") for du in dus])
        yield "du_rttc_ps", "du", document["data_time"], np.array(dus, np.int64), values

    def _per_dom(self, name: str, document: dict[str, Any]) -> Iterator[Sample]:
        """The numeric arrays under ``doms`` (see the module's docstring)."""
        doms = document.get("doms")
        time_s = document.get("data_time")
        if not time_s or not isinstance(doms, dict) or not isinstance(doms.get("dom_id"), list):
            return
        try:
            ids = np.asarray(doms["dom_id"], np.int64)
        except (TypeError, ValueError) as error:
            self.context.count_error(f"{name}.json: doms.dom_id is no list of ids", error)
            return
        if not len(ids):
            return
        for key, value in doms.items():
            parallel = key not in PLACE_KEYS and isinstance(value, list) and len(value) == len(ids)
            numbers = parallel and all(
                v is None or (isinstance(v, int | float) and not isinstance(v, bool)) for v in value
            )
            if numbers:
                yield f"{name}.{key}", "dom", time_s, ids, _array(value)

    def _scalars(self, name: str, document: dict[str, Any]) -> Iterator[Sample]:
        time_s = document.get("data_time")
        if not time_s:
            return
        flat = {}
        for key, value in document.items():
            if isinstance(value, dict):
                flat.update({f"{key}.{k}": v for k, v in value.items()})
            else:
                flat[key] = value
        for key, value in flat.items():
            numeric = isinstance(value, int | float) and not isinstance(value, bool)
            if numeric and key not in NOT_MEASURED:
                yield f"{name}.{key}", "scalar", time_s, np.zeros(1, np.int64), _array([value])

    def _process_states(self) -> Iterator[Sample]:
        now = time.time()
        for name, record in read_records(self.context.data_dir).items():
            state = process_state(record, now)["state"]
            yield (f"process_up.{name}", "scalar", now, np.zeros(1, np.int64),
                   np.array([STATE_VALUE.get(state, 0.0)]))  # fmt: skip


def register(subparsers: argparse._SubParsersAction) -> None:
    register_monitor(subparsers, History)
