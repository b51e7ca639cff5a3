"""Alert rules: data in ``[Alerts]`` of pipeline.toml, evaluated over what the monitors publish.

A rule looks at one :class:`Snapshot` (freshness records, metrics JSON, supervisord states,
free disk space) and returns the :class:`Condition` s that hold now, one per affected thing
(process, DOM, PMT, DU), or None when it cannot tell (its input is missing), so that missing
input never reads as "resolved". The lifecycle (hold time, reminder, resolution, flapping) is
the same for every rule and lives in :mod:`.book`.

Built-in rules and their defaults are :data:`BUILTIN`; every ``[Alerts.<name>]`` table that
names no built-in rule and sets ``metric`` with ``above`` or ``below`` is a threshold rule on
that metric (:class:`ThresholdRule`), so a new rule is a config entry.

Hold times count wall-clock seconds from the first evaluation that saw the condition, except
for silences (``silent_dom``, ``du_lost``): there the silence itself is the condition and the
DAQ time since the last frame is compared with ``hold_s``, so a silence that began before
km3mon alerts started is not held twice.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from km3mon import published
from km3mon.config import AlertRuleSection, AlertsSection, ConfigError

#: A DOM with no summary frame in the newest this many DAQ seconds (10 slices) is silent.
SILENCE_S = 1.0
GIGABYTE = 1e9
#: RTTC offsets below this are never an alert, however quiet the baseline (ps jitter).
MIN_RTTC_OFFSET_PS = 20.0


@dataclass(frozen=True)
class Condition:
    """One thing that is wrong now: what (rule, summary), where (key and place), since when."""

    rule: str
    key: str
    summary: str
    #: Seconds the data say it has lasted (silences); None: held by the wall clock.
    held_s: float | None = None
    #: UTC seconds it began according to the data, when known.
    started_at: float | None = None
    dom_id: int | None = None
    du: int | None = None
    floor: int | None = None
    process: str | None = None
    #: Dashboard path that shows it (a plot, the status page, the history of a DOM).
    link: str | None = None

    def details(self) -> dict[str, Any]:
        return {
            name: getattr(self, name)
            for name in ("dom_id", "du", "floor", "process", "link")
            if getattr(self, name) is not None
        }


@dataclass
class Places:
    """Where each DOM sits (DU, floor), from the detector when one could be loaded."""

    du_floor: dict[int, tuple[int, int]] = field(default_factory=dict)
    #: DOMs and (DOM, channel) PMTs disabled in the DETX status: switched off on purpose,
    #: they raise no alert.
    disabled_doms: frozenset[int] = frozenset()
    disabled_pmts: frozenset[tuple[int, int]] = frozenset()

    @classmethod
    def of_detector(cls, detector: Any) -> Places:
        pmts = np.flatnonzero(detector.pmt_disabled)
        return cls(
            {
                int(dom): (int(du), int(floor))
                for dom, du, floor in zip(
                    detector.dom_ids, detector.dom_du, detector.dom_floor, strict=True
                )
            },
            frozenset(int(d) for d in detector.dom_ids[detector.dom_disabled]),
            frozenset(
                zip(
                    detector.dom_ids[detector.pmt_dom_index[pmts]].tolist(),
                    detector.pmt_channel[pmts].tolist(),
                    strict=True,
                )
            ),
        )

    def disabled(self, dom_id: int, channel: int | None = None) -> bool:
        """The DOM, or the PMT when a channel is given, is disabled in the DETX."""
        return dom_id in self.disabled_doms or (dom_id, channel) in self.disabled_pmts

    @cached_property
    def optical_by_du(self) -> dict[int, list[int]]:
        """DU -> its optical DOMs (a fact of the detector: worked out once)."""
        doms: dict[int, list[int]] = {}
        for dom_id, (du, floor) in self.du_floor.items():
            if floor > 0:
                doms.setdefault(du, []).append(dom_id)
        return doms

    def optical(self, dom_id: int) -> bool | None:
        place = self.du_floor.get(dom_id)
        return None if place is None else place[1] > 0

    def describe(self, dom_id: int) -> str:
        place = self.du_floor.get(dom_id)
        return f"DOM {dom_id}" + (f" (DU {place[0]}, floor {place[1]})" if place else "")

    def condition(self, rule: str, key: str, summary: str, dom_id: int, **extra: Any) -> Condition:
        du, floor = self.du_floor.get(dom_id, (None, None))
        return Condition(rule, key, summary, dom_id=dom_id, du=du, floor=floor, **extra)


@dataclass
class Snapshot:
    """Everything the rules look at in one evaluation."""

    data_dir: Path
    now: float
    records: dict[str, dict[str, Any]]
    panels: dict[str, Any]
    supervisor: dict[str, dict[str, Any]] | None
    places: Places
    _metrics: dict[str, dict[str, Any] | None] = field(default_factory=dict)

    def metrics(self, name: str) -> dict[str, Any] | None:
        """``data/metrics/<name>.json``, read once per evaluation; None if absent or damaged."""
        if name not in self._metrics:
            try:
                self._metrics[name] = json.loads(published.metrics(self.data_dir, name).read_text())
            except (OSError, ValueError):
                self._metrics[name] = None
        return self._metrics[name]


@dataclass(frozen=True)
class Settings:
    """A rule's effective settings: its defaults overridden by ``[Alerts.<rule>]``."""

    hold_s: float
    clear_s: float
    reminder_s: float
    enabled: bool = True
    fraction: float | None = None
    min_free_gb: float | None = None
    max_spreads: float | None = None
    metric: str | None = None
    above: float | None = None
    below: float | None = None
    clear_below: float | None = None
    clear_above: float | None = None


class Rule:
    """A named check with its defaults; ``evaluate`` returns the conditions holding now."""

    name: str = ""
    description: str = ""
    hold_s: float = 60.0
    defaults: dict[str, float] = {}  # noqa: RUF012 (read-only class defaults)

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def evaluate(self, snapshot: Snapshot) -> list[Condition] | None:
        raise NotImplementedError


class ProcessDown(Rule):
    """Down: FATAL/EXITED in supervisord, disconnected, or silent (no freshness record for
    3 render intervals + 30 s) *and* not working. A silent process that is alive and used CPU
    since the previous evaluation is slow (a long fit, a loaded machine), not down; only when
    it stays silent for :data:`BUSY_LIMIT_S` while busy (a loop that never ends) is it down."""

    name = "process_down"
    description = "a process that is silent and idle (hangs or died), disconnected, or FATAL/EXITED"
    hold_s = 60.0
    BAD_SUPERVISOR = frozenset({"FATAL", "EXITED", "BACKOFF", "UNKNOWN"})
    BUSY_LIMIT_S = 600.0

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        #: pid -> CPU seconds at the previous evaluation that saw it silent.
        self.cpu_seen: dict[int, float] = {}

    def evaluate(self, snapshot: Snapshot) -> list[Condition]:
        found = {}
        silent_pids = set()
        for name, record in snapshot.records.items():
            state = record["state"]
            supervised = (snapshot.supervisor or {}).get(name)
            if state not in ("silent", "disconnected") or (
                supervised and supervised["state"] == "STOPPED"
            ):
                continue
            if state == "disconnected":
                found[name] = f"{name} is disconnected"
                continue
            pid, age = int(record.get("pid") or 0), record["record_age_s"]
            silent_pids.add(pid)
            working = self.working(pid)
            if working and age < self.BUSY_LIMIT_S:
                continue
            found[name] = f"{name} is silent (no record for {age:.0f} s" + (
                ", busy: hung in a loop?)" if working else ")"
            )
        self.cpu_seen = {p: c for p, c in self.cpu_seen.items() if p in silent_pids}
        for name, info in (snapshot.supervisor or {}).items():
            if info["state"] in self.BAD_SUPERVISOR:
                found[name] = f"{name} is {info['state']} in supervisord ({info['description']})"
        return [
            Condition(self.name, name, text, process=name, link="/status")
            for name, text in sorted(found.items())
        ]

    def working(self, pid: int) -> bool:
        """The process is alive and used CPU since the previous look (the first look at a
        silent process counts as working when it is alive: the next one decides)."""
        cpu = cpu_seconds(pid)
        if cpu is None:
            self.cpu_seen.pop(pid, None)
            return False
        before = self.cpu_seen.get(pid)
        if before is None or cpu > before:
            self.cpu_seen[pid] = cpu
            return True
        return False


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a live process (``/proc``); None if it is gone (or a
    zombie, or this is no Linux)."""
    if pid <= 0:
        return None
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # after the command name, which may hold spaces
    if fields[0] in ("Z", "X"):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class PlotStale(Rule):
    name = "plot_stale"
    description = "plots of a running process not redrawn within their cadence, or without new data"
    hold_s = 120.0

    def evaluate(self, snapshot: Snapshot) -> list[Condition]:
        by_process: dict[str, list[tuple[str, str]]] = {}
        for output, panel in snapshot.panels.items():
            if not panel.stale or panel.process is None:
                continue
            if snapshot.records.get(panel.process, {}).get("state") in ("silent", "stopped"):
                continue  # the process itself is down: process_down says so
            by_process.setdefault(panel.process, []).append((output, panel.reason))
        conditions = []
        for process, outputs in sorted(by_process.items()):
            outputs.sort()
            shown = ", ".join(f"{o} ({r})" for o, r in outputs[:3])
            more = f" and {len(outputs) - 3} more" if len(outputs) > 3 else ""
            first = outputs[0][0].removesuffix(".png")
            conditions.append(
                Condition(
                    self.name,
                    process,
                    f"{len(outputs)} plot(s) of {process} stale: {shown}{more}",
                    process=process,
                    link=f"/plot/{first}",
                )
            )
        return conditions


def _silences(snapshot: Snapshot) -> dict[int, float] | None:
    """DOM id -> DAQ seconds since its last summary frame (NaN: not seen since start), for
    the optical DOMs that are silent now; None without dom_activity's metrics."""
    document = snapshot.metrics("dom_activity")
    if not document or "dom_id" not in document or "inactive_s" not in document:
        return None
    silent = {}
    for dom_id, inactive in zip(document["dom_id"], document["inactive_s"], strict=False):
        if snapshot.places.disabled(int(dom_id)):
            continue  # switched off on purpose (DETX status)
        known = snapshot.places.optical(int(dom_id))
        if inactive is None:
            if known:  # never seen although the detector has it; base modules send no slices
                silent[int(dom_id)] = math.nan
        elif inactive > SILENCE_S and known is not False:
            silent[int(dom_id)] = float(inactive)
    return silent


def _lost_dus(snapshot: Snapshot, silent: dict[int, float]) -> dict[int, list[float]]:
    """DU -> silences of its optical DOMs, for DUs whose optical DOMs are all silent (those
    disabled in the DETX aside)."""
    lost = {}
    for du, doms in snapshot.places.optical_by_du.items():
        enabled = [d for d in doms if not snapshot.places.disabled(d)]
        if enabled and all(d in silent for d in enabled):
            lost[du] = [silent[d] for d in enabled]
    return lost


def _held(silences: list[float], data_time: float | None) -> tuple[float | None, float | None]:
    """How long the silence has lasted (the shortest one), and when it began (DAQ time)."""
    finite = [s for s in silences if not math.isnan(s)]
    if len(finite) < len(silences) or not finite:
        return None, None  # some never seen: held by the wall clock
    held = min(finite)
    return held, (data_time - held if data_time else None)


class SilentDOM(Rule):
    name = "silent_dom"
    description = "an optical DOM without summary frames (the silence is the condition)"
    hold_s = 300.0

    def evaluate(self, snapshot: Snapshot) -> list[Condition] | None:
        silent = _silences(snapshot)
        if silent is None:
            return None
        lost_dus = _lost_dus(snapshot, silent)
        in_lost_du = {
            dom_id for dom_id, (du, _) in snapshot.places.du_floor.items() if du in lost_dus
        }
        data_time = (snapshot.metrics("dom_activity") or {}).get("data_time")
        conditions = []
        for dom_id, inactive in sorted(silent.items()):
            if dom_id in in_lost_du:
                continue  # du_lost says it once for the whole DU
            held, started = _held([inactive], data_time)
            what = "not seen since dom_activity started" if held is None else f"silent {held:.0f} s"
            conditions.append(
                snapshot.places.condition(
                    self.name,
                    str(dom_id),
                    f"{snapshot.places.describe(dom_id)} {what}",
                    dom_id,
                    held_s=held,
                    started_at=started,
                    link=f"/history?dom={dom_id}",
                )
            )
        return conditions


class DULost(Rule):
    name = "du_lost"
    description = "every optical DOM of a DU silent (the silence is the condition)"
    hold_s = 300.0

    def evaluate(self, snapshot: Snapshot) -> list[Condition] | None:
        silent = _silences(snapshot)
        if silent is None or not snapshot.places.du_floor:
            return None
        data_time = (snapshot.metrics("dom_activity") or {}).get("data_time")
        conditions = []
        for du, silences in sorted(_lost_dus(snapshot, silent).items()):
            held, started = _held(silences, data_time)
            what = "not seen since dom_activity started" if held is None else f"silent {held:.0f} s"
            conditions.append(
                Condition(
                    self.name,
                    f"DU {du}",
                    f"DU {du} lost: all {len(silences)} DOMs {what}",
                    held_s=held,
                    started_at=started,
                    du=du,
                    link=f"/history?du={du}",
                )
            )
        return conditions


class ListedRule(Rule):
    """A rule on a list a monitor writes into its metrics (``listed``, ``<file>.<key>``):
    None (cannot tell) while the file or the list is missing, else :meth:`conditions`."""

    listed = ""

    def source(self) -> str:
        return self.listed

    def evaluate(self, snapshot: Snapshot) -> list[Condition] | None:
        name, _, key = self.source().partition(".")
        document = snapshot.metrics(name)
        if document is None or not isinstance(document.get(key), list):
            return None
        return self.conditions(snapshot, document, document[key])

    def conditions(
        self, snapshot: Snapshot, document: dict[str, Any], listed: list[Any]
    ) -> list[Condition]:
        raise NotImplementedError


class FlaggedPMTs(Rule):
    """PMTs pmt_rates lists in its newest column as ``kind``, one condition (and alert) per
    PMT: a new one notifies while others are firing (unless more than ``max_per_rule``)."""

    kind = ""
    hold_s = 600.0

    def evaluate(self, snapshot: Snapshot) -> list[Condition] | None:
        document = snapshot.metrics("pmt_rates")
        if document is None:
            return None
        flags = document.get("flagged", [])
        hot = {(f["dom_id"], f["channel"]) for f in flags if f.get("kind") == "hot"}
        conditions = []
        for flag in flags:
            if flag.get("kind") != self.kind:
                continue
            dom_id, channel = int(flag["dom_id"]), int(flag["channel"])
            if snapshot.places.disabled(dom_id, channel) or self.hidden(flag, hot):
                continue
            du = flag.get("du")
            conditions.append(
                snapshot.places.condition(
                    self.name,
                    f"{dom_id}/{channel}",
                    f"{snapshot.places.describe(dom_id)} channel {channel}: {self.describe(flag)}",
                    dom_id,
                    link=f"/plot/pmt_rates_du{du}" if du is not None else None,
                )
            )
        return conditions

    def hidden(self, flag: dict[str, Any], hot: set[tuple[int, int]]) -> bool:
        """Shown by another rule: a consequence of a cause already alerted on."""
        return False

    def describe(self, flag: dict[str, Any]) -> str:
        raise NotImplementedError


class HotPMT(FlaggedPMTs):
    name = "pmt_hot"
    description = "a PMT above [PMTRates] highest_rate and hot_factor times its DOM's median rate"
    kind = "hot"

    def describe(self, flag: dict[str, Any]) -> str:
        median = flag.get("dom_median_hz")
        return f"{flag['rate_hz'] / 1e3:.0f} kHz" + (
            f", {flag['rate_hz'] / median:.0f}x its DOM's median {median / 1e3:.1f} kHz"
            if median
            else ""
        )


class HRVPMT(FlaggedPMTs):
    name = "pmt_hrv"
    description = "a PMT in high-rate veto more than [PMTRates] hrv_ratio_threshold of the time"
    kind = "hrv"

    def hidden(self, flag: dict[str, Any], hot: set[tuple[int, int]]) -> bool:
        return (flag["dom_id"], flag["channel"]) in hot  # its veto is pmt_hot's consequence

    def describe(self, flag: dict[str, Any]) -> str:
        return f"high-rate veto {flag['hrv_fraction']:.0%} of the time"


class K40PMTs(ListedRule):
    """PMTs k40 lists under ``key`` in its newest calibration, one condition per DOM. The list
    is capped (the worst first); ``doms.n_<key>`` counts them for every DOM."""

    key = ""
    hold_s = 0.0  # a calibration takes --period (10 min) of data: it is the hold

    def source(self) -> str:
        return f"k40.{self.key}"  # absent until the first calibration: cannot tell

    def conditions(
        self, snapshot: Snapshot, document: dict[str, Any], pmts: list[Any]
    ) -> list[Condition]:
        by_dom: dict[int, list[dict[str, Any]]] = {}
        listed = set()
        for pmt in pmts:
            dom_id, channel = int(pmt["dom_id"]), int(pmt["channel"])
            listed.add(dom_id)
            if not snapshot.places.disabled(dom_id, channel):
                by_dom.setdefault(dom_id, []).append(pmt)
        doms = document.get("doms") or {}
        for dom_id, count in zip(doms.get("dom_id", []), doms.get(f"n_{self.key}", []),
                                 strict=False):  # fmt: skip
            if count and int(dom_id) not in listed and not snapshot.places.disabled(int(dom_id)):
                by_dom[int(dom_id)] = []  # beyond the list's cap: counted, no details
        conditions = []
        for dom_id, pmts in sorted(by_dom.items()):
            du = snapshot.places.du_floor.get(dom_id, (None, None))[0]
            what = self.describe_pmts(pmts) if pmts else "PMTs listed in data/k40/offsets.csv"
            conditions.append(
                snapshot.places.condition(
                    self.name,
                    str(dom_id),
                    f"{snapshot.places.describe(dom_id)}: {what}",
                    dom_id,
                    link=f"/plot/k40_du{du}" if du is not None else "/plot/k40_summary",
                )
            )
        return conditions

    def describe_pmts(self, pmts: list[dict[str, Any]]) -> str:
        raise NotImplementedError


class K40T0(K40PMTs):
    name = "k40_t0"
    description = "PMTs of a DOM whose K40 time offset is beyond k40's --t0-tolerance"
    key = "flagged"

    def describe_pmts(self, pmts: list[dict[str, Any]]) -> str:
        offsets = ", ".join(f"channel {p['channel']} {p['t0_ns']:+.1f} ns" for p in pmts)
        return f"PMT t0 off by K40 ({offsets}); see t0_corrections_latest.txt"


class K40NoPeak(K40PMTs):
    name = "k40_no_peak"
    description = "PMTs with singles but no K40 coincidence peak (t0 off by more than the window)"
    key = "no_peak"

    def describe_pmts(self, pmts: list[dict[str, Any]]) -> str:
        channels = ", ".join(str(p["channel"]) for p in pmts)
        return (
            f"no K40 coincidence peak on channel(s) {channels} although they count singles: "
            "t0 off by more than the coincidence window, or no light in time with the others"
        )


class TriggerRate(Rule):
    """The original's alert (0 Hz), and a drop against the last day's median."""

    name = "trigger_rate"
    description = "overall trigger rate at 0 Hz, or below `fraction` of its 24 h median"
    hold_s = 300.0
    defaults = {"fraction": 0.5}  # noqa: RUF012
    KEEP_S = 24 * 3600.0
    #: Intervals needed before the median is trusted (the 0 Hz check needs none).
    MIN_SAMPLES = 6

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        #: (interval start, Overall Hz) seen; the book stores them so a restart keeps the day.
        self.samples: dict[float, float] = {}

    def evaluate(self, snapshot: Snapshot) -> list[Condition] | None:
        document = snapshot.metrics("trigger_rates")
        if not document or not document.get("latest_hz"):
            return None
        start, overall = document.get("latest_start"), document["latest_hz"].get("Overall")
        if start is None or overall is None:
            return None
        self.samples[float(start)] = float(overall)
        for old in [s for s in self.samples if s < start - self.KEEP_S]:
            del self.samples[old]
        day = list(self.samples.values())
        median = float(np.median(day)) if len(day) >= self.MIN_SAMPLES else None
        fraction = self.settings.fraction or 0.0
        if overall == 0:
            text = "overall trigger rate is 0 Hz"
        elif median and overall < fraction * median:
            text = (
                f"overall trigger rate {overall:.3g} Hz, below {fraction:.0%} of its "
                f"24 h median {median:.3g} Hz"
            )
        else:
            return []
        return [Condition(self.name, "Overall", text, link="/plot/trigger_rates")]


class DroppedMessages(Rule):
    name = "dropped_messages"
    description = "the mirror (or a monitor) dropping messages: its drop counter grew"
    hold_s = 0.0
    #: A growth of the counter keeps the condition this long (the counter only ever grows).
    WINDOW_S = 300.0

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.counts: dict[str, int] = {}
        self.grew_at: dict[str, float] = {}

    def evaluate(self, snapshot: Snapshot) -> list[Condition]:
        conditions = []
        for name, record in sorted(snapshot.records.items()):
            dropped = int(record.get("dropped") or 0)
            before = self.counts.get(name)
            self.counts[name] = dropped
            if before is not None and dropped > before:
                self.grew_at[name] = snapshot.now
            elif before is not None and dropped < before:
                self.grew_at.pop(name, None)  # the process restarted: counting anew
            if snapshot.now - self.grew_at.get(name, -math.inf) < self.WINDOW_S:
                conditions.append(
                    Condition(
                        self.name,
                        name,
                        f"{name} dropped messages ({dropped} since its start)",
                        process=name,
                        link="/status",
                    )
                )
        return conditions


class TimeSync(ListedRule):
    """DOMs the timesync monitor lists as without valid White Rabbit time."""

    name = "time_sync"
    description = "DOMs without valid time sync, where `km3mon timesync` runs"
    hold_s = 60.0
    #: The list timesync writes (``km3mon.monitors.timesync.WHITE_RABBIT_LOST``).
    METRIC = "timesync.white_rabbit_lost"

    def source(self) -> str:
        return self.settings.metric or self.METRIC

    def conditions(
        self, snapshot: Snapshot, document: dict[str, Any], dom_ids: list[Any]
    ) -> list[Condition]:
        name = self.source().partition(".")[0]
        return [
            snapshot.places.condition(
                self.name,
                str(int(dom_id)),
                f"{snapshot.places.describe(int(dom_id))}: time sync lost",
                int(dom_id),
                link=f"/plot/{name}",
            )
            for dom_id in dom_ids
        ]


class UDPLoss(ListedRule):
    """DOMs whose frames in ``IO_SUM`` lose UDP data (or whole frames) more often than
    timesync's ``--udp-fraction``."""

    name = "udp_loss"
    description = "DOMs losing UDP data: incomplete or missing frames in IO_SUM (timesync)"
    hold_s = 60.0
    listed = "timesync.udp_incomplete"

    def conditions(
        self, snapshot: Snapshot, document: dict[str, Any], dom_ids: list[Any]
    ) -> list[Condition]:
        doms = document.get("doms") or {}
        details = {
            int(dom): (lost, rate)
            for dom, lost, rate in zip(
                doms.get("dom_id") or [],
                doms.get("lost_fraction") or [],
                doms.get("frames_per_s") or [],
                strict=False,
            )
        }
        expected = document.get("expected_frames_per_s", 10)
        conditions = []
        for dom_id in dom_ids:
            lost, rate = details.get(int(dom_id), (None, None))
            numbers = ", ".join(
                text
                for text in (
                    f"{lost:.0%} of its frames incomplete or lost" if lost is not None else "",
                    f"{rate:.1f} frames/s of {expected}" if rate is not None else "",
                )
                if text
            )
            conditions.append(
                snapshot.places.condition(
                    self.name,
                    str(int(dom_id)),
                    f"{snapshot.places.describe(int(dom_id))}: UDP data lost"
                    + (f" ({numbers})" if numbers else ""),
                    int(dom_id),
                    link="/plot/timesync",
                )
            )
        return conditions


class DataFilterDown(ListedRule):
    """A DataFilter whose timeslices stopped while the others go on (timesync knows each
    one by the DOMs of its ``IO_TSSN`` messages)."""

    name = "datafilter_down"
    description = "a DataFilter that stopped sending its timeslices (timesync)"
    hold_s = 60.0
    listed = "timesync.data_filters"

    def conditions(
        self, snapshot: Snapshot, document: dict[str, Any], data_filters: list[Any]
    ) -> list[Condition]:
        return [
            Condition(
                self.name,
                str(data_filter["name"]),
                f"{data_filter['name']} stopped sending timeslices "
                f"({data_filter['silent_s']:.0f} s, {data_filter['n_doms']} DOMs)",
                link="/plot/timesync",
            )
            for data_filter in data_filters
            if data_filter.get("stopped")
        ]


class RecoT0(ListedRule):
    """DOMs whose reconstruction residuals say their time calibration is off (reco's
    ``flagged_doms``: offset beyond ``--offset-threshold`` at ``--offset-significance``)."""

    name = "reco_t0"
    description = "a DOM's time offset from the track fits' residuals (reco's flagged DOMs)"
    hold_s = 300.0
    listed = "reco.flagged_doms"

    def conditions(
        self, snapshot: Snapshot, document: dict[str, Any], flags: list[Any]
    ) -> list[Condition]:
        conditions = []
        for flag in flags:
            dom_id = int(flag["dom_id"])
            conditions.append(
                snapshot.places.condition(
                    self.name,
                    str(dom_id),
                    f"{snapshot.places.describe(dom_id)}: time offset "
                    f"{flag['offset_ns']:+.1f} ± {flag['error_ns']:.1f} ns "
                    f"(track residuals, {flag['residuals']} hits)",
                    dom_id,
                    link=f"/history?dom={dom_id}&metric=reco.offset_ns",
                )
            )
        return conditions


class RTTCOff(Rule):
    name = "rttc_off"
    description = "a DU's RTTC more than `max_spreads` spreads (and 20 ps) off its 24 h median"
    hold_s = 300.0
    defaults = {"max_spreads": 5.0}  # noqa: RUF012

    def evaluate(self, snapshot: Snapshot) -> list[Condition] | None:
        document = snapshot.metrics("rttc")
        if document is None:
            return None
        spreads = self.settings.max_spreads or 5.0
        conditions = []
        for du, values in sorted(document.get("dus", {}).items(), key=lambda kv: int(kv[0])):
            latest, median, spread = (
                values.get("rttc_ps"),
                values.get("median_ps"),
                values.get("spread_ps"),
            )
            if latest is None or median is None or spread is None:
                continue
            offset = latest - median
            if abs(offset) > max(spreads * spread, MIN_RTTC_OFFSET_PS):
                conditions.append(
                    Condition(
                        self.name,
                        f"DU {du}",
                        f"DU {du} RTTC {offset:+.0f} ps off its 24 h median "
                        f"(spread {spread:.0f} ps)",
                        du=int(du),
                        link="/plot/rttc",
                    )
                )
        return conditions


class DiskSpace(Rule):
    name = "disk_space"
    description = "free space of the working folder's disk below `min_free_gb`"
    hold_s = 60.0
    defaults = {"min_free_gb": 5.0}  # noqa: RUF012

    def evaluate(self, snapshot: Snapshot) -> list[Condition] | None:
        folder = snapshot.data_dir if snapshot.data_dir.exists() else Path(".")
        try:
            free = shutil.disk_usage(folder).free
        except OSError:
            return None
        limit = self.settings.min_free_gb if self.settings.min_free_gb is not None else 5.0
        if free >= limit * GIGABYTE:
            return []
        return [
            Condition(
                self.name,
                "data",
                f"only {free / GIGABYTE:.1f} GB free on the disk of {folder.resolve()} "
                f"(limit {limit:g} GB)",
            )
        ]


class RunQuality(Rule):
    """The newest run ``km3mon quality`` ended, when its verdict is bad."""

    name = "run_quality"
    description = "the newest ended run is bad (km3mon quality); an override or a good run ends it"
    hold_s = 0.0

    def evaluate(self, snapshot: Snapshot) -> list[Condition] | None:
        from km3mon.quality.store import QualityError, QualityStore

        try:
            with QualityStore(snapshot.data_dir, readonly=True) as store:
                ended = [r for r in store.records(limit=5) if r["state"] == "ended"]
        except (QualityError, sqlite3.Error):
            return None
        if not ended or ended[0]["verdict"] != "bad":
            return []
        run = ended[0]["run"]
        reasons = "; ".join(ended[0]["reasons"][:2]) or "see its page"
        return [Condition(self.name, f"run {run}", f"run {run} ended bad: {reasons}",
                          link=f"/runs/{run}")]  # fmt: skip


class SNAlarm(ListedRule):
    """The alarms the sn monitor latched (``alarm_log``), one alert each: firing while the
    alarm lasts and for ``LATCH_S`` after it, so a burst of a few windows is notified once
    (``significance`` alone is the newest window, gone before anyone renders it)."""

    name = "sn_alarm"
    description = "an SN monitor alarm: windows above its false-alarm-rate threshold (sn)"
    hold_s = 0.0  # the threshold is set for [SN] false_alarms_per_week: it is the hold
    LATCH_S = 60.0
    listed = "sn.alarm_log"

    def conditions(
        self, snapshot: Snapshot, document: dict[str, Any], alarms: list[Any]
    ) -> list[Condition]:
        conditions = []
        for alarm in alarms:
            ended = alarm.get("ended_at")
            if ended is not None and snapshot.now - ended > self.LATCH_S:
                continue
            when = utc_text(alarm["time"])
            conditions.append(
                Condition(
                    self.name,
                    when,
                    f"SN alarm at {when}: {alarm['significance']:.1f} sigma, "
                    f"{alarm['multiplicity']} coincidences in a window (threshold "
                    f"{alarm['threshold']}, {alarm['active_doms']} active DOMs); "
                    f"{document.get('note', 'a monitor, not the KM3NeT supernova trigger')}",
                    started_at=alarm.get("raised_at"),
                    link="/plot/sn_pk_history",
                )
            )
        return conditions


def utc_text(seconds: float) -> str:
    """UTC time to a tenth of a second: an SN alarm's name."""
    stamp = datetime.fromtimestamp(seconds, UTC)
    return stamp.strftime("%Y-%m-%d %H:%M:%S.") + f"{stamp.microsecond // 100_000}"


class ThresholdRule(Rule):
    """``[Alerts.<name>] metric = "<metrics file>.<key>[.<key>…]"`` with ``above``/``below``.

    Keys walk the JSON; ``*`` takes every key of an object or element of a list. A list of
    numbers at the end gives one condition per element, keyed by DOM id where the document
    has a ``dom_id`` list of the same length (so ``dom_rates.rate_khz`` is per DOM).

    Hysteresis: a key past ``above`` stays in alarm until its value drops below
    ``clear_below`` (past ``below``: until above ``clear_above``), so a value wobbling around
    the threshold is one alert, not a firing and a resolution per wobble.
    """

    hold_s = 300.0

    def __init__(self, name: str, settings: Settings) -> None:
        super().__init__(settings)
        self.name = name
        #: Keys in alarm; km3mon alerts seeds it with the rule's active alerts at start.
        self.alarmed: set[str] = set()
        assert settings.metric is not None
        self.file, _, path = settings.metric.partition(".")
        self.path = [part for part in path.split(".") if part]
        self.description = f"{settings.metric} " + " or ".join(
            f"{word} {value:g}"
            for word, value in (("above", settings.above), ("below", settings.below))
            if value is not None
        )

    def evaluate(self, snapshot: Snapshot) -> list[Condition] | None:
        document = snapshot.metrics(self.file)
        if document is None:
            return None
        dom_ids = document.get("dom_id") if isinstance(document.get("dom_id"), list) else None
        conditions = []
        for where, value in _walk(document, self.path, []):
            if isinstance(value, list):
                keyed_by_dom = dom_ids is not None and len(dom_ids) == len(value) and not where
                for index, item in enumerate(value):
                    dom = int(dom_ids[index]) if keyed_by_dom and dom_ids else None
                    label = [str(dom)] if dom is not None else [str(index)]
                    conditions += self._check([*where, *label], item, snapshot, dom)
            else:
                conditions += self._check(where, value, snapshot, None)
        return conditions

    def _check(
        self, where: list[str], value: object, snapshot: Snapshot, dom_id: int | None
    ) -> list[Condition]:
        if not isinstance(value, int | float) or isinstance(value, bool):
            return []
        key = "/".join(where) or self.settings.metric or self.name
        relation = self._relation(key, float(value))
        if relation is None:
            self.alarmed.discard(key)
            return []
        self.alarmed.add(key)
        label = snapshot.places.describe(dom_id) if dom_id is not None else key
        text = f"{self.settings.metric} of {label} = {value:.4g}, {relation}"
        if dom_id is not None:
            return [
                snapshot.places.condition(
                    self.name, key, text, dom_id, link=f"/history?dom={dom_id}"
                )
            ]
        return [Condition(self.name, key, text, link=f"/api/metrics/{self.file}")]

    def _relation(self, key: str, value: float) -> str | None:
        """Why ``key`` is in alarm at ``value`` (past a threshold, or not yet back past
        its clearing value), None when it is not."""
        settings, alarmed = self.settings, key in self.alarmed
        above, below = settings.above, settings.below
        if above is not None:
            clear = settings.clear_below if settings.clear_below is not None else above
            if value > above or (alarmed and value >= clear and clear < above):
                return f"above {above:g}" + (f" (clears below {clear:g})" if clear < above else "")
        if below is not None:
            clear = settings.clear_above if settings.clear_above is not None else below
            if value < below or (alarmed and value <= clear and clear > below):
                return f"below {below:g}" + (f" (clears above {clear:g})" if clear > below else "")
        return None


def _walk(value: Any, path: list[str], where: list[str]) -> Iterator[tuple[list[str], Any]]:
    if not path:
        yield where, value
        return
    head, rest = path[0], path[1:]
    if head == "*":
        items = value.items() if isinstance(value, dict) else enumerate(value or [])
        for key, item in items if isinstance(value, dict | list) else []:
            yield from _walk(item, rest, [*where, str(key)])
    elif isinstance(value, dict) and head in value:
        yield from _walk(value[head], rest, where)


#: Built-in rules by name, in the order they are listed in README and on the alerts page.
BUILTIN: dict[str, type[Rule]] = {
    rule.name: rule
    for rule in (
        ProcessDown,
        PlotStale,
        SilentDOM,
        DULost,
        HotPMT,
        HRVPMT,
        K40T0,
        K40NoPeak,
        TriggerRate,
        DroppedMessages,
        TimeSync,
        UDPLoss,
        DataFilterDown,
        RecoT0,
        RTTCOff,
        DiskSpace,
        RunQuality,
        SNAlarm,
    )
}


def build_rules(alerts: AlertsSection) -> list[Rule]:
    """The enabled rules with their settings; ConfigError names a bad ``[Alerts.<rule>]``."""
    rules: list[Rule] = []
    for name, section in alerts.rules.items():
        if name not in BUILTIN and section.metric is None:
            raise ConfigError(
                f"[Alerts.{name}] is no built-in rule ({', '.join(BUILTIN)}) and has no "
                'metric: a threshold rule needs metric = "<metrics file>.<key>" and above or below'
            )
        if name not in BUILTIN and section.above is None and section.below is None:
            raise ConfigError(f"[Alerts.{name}] needs above or below")
        above, below = section.above, section.below
        if section.clear_below is not None and (above is None or section.clear_below > above):
            raise ConfigError(f"[Alerts.{name}] clear_below needs above, and not more than it")
        if section.clear_above is not None and (below is None or section.clear_above < below):
            raise ConfigError(f"[Alerts.{name}] clear_above needs below, and not less than it")
    for name, kind in BUILTIN.items():
        settings = _settings(alerts, alerts.rules.get(name), kind.hold_s, kind.defaults)
        if settings.enabled:
            rules.append(kind(settings))
    for name, section in alerts.rules.items():
        if name not in BUILTIN and section.enabled:
            rules.append(ThresholdRule(name, _settings(alerts, section, ThresholdRule.hold_s, {})))
    return rules


def _settings(
    alerts: AlertsSection,
    section: AlertRuleSection | None,
    hold_s: float,
    defaults: dict[str, float],
) -> Settings:
    base = Settings(hold_s=hold_s, clear_s=alerts.clear_s, reminder_s=alerts.reminder_s)
    base = replace(base, **defaults)
    if section is None:
        return base
    given = {
        name: getattr(section, name)
        for name in (
            "enabled",
            "hold_s",
            "clear_s",
            "reminder_s",
            "fraction",
            "min_free_gb",
            "max_spreads",
            "metric",
            "above",
            "below",
            "clear_below",
            "clear_above",
        )
        if getattr(section, name) is not None
    }
    return replace(base, **given)


def collapse(conditions: list[Condition], limit: int) -> list[Condition]:
    """More than ``limit`` conditions of one rule become one (an HRV storm is one alert, not
    a thousand); the longest-held silence decides when it fires."""
    if len(conditions) <= limit:
        return conditions
    first = conditions[0]
    held = [c.held_s for c in conditions]
    examples = "; ".join(c.summary for c in conditions[:3])
    return [
        Condition(
            first.rule,
            "*",
            f"{len(conditions)} at once, e.g. {examples}",
            held_s=None if None in held else max(h for h in held if h is not None),
            link=first.link,
        )
    ]


def rule_table() -> list[tuple[str, float, str]]:
    """Rule name, default hold time and description, for the alerts page."""
    return [(name, kind.hold_s, kind.description) for name, kind in BUILTIN.items()]
