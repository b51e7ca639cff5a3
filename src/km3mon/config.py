"""Operator configuration: the ``setenv.sh`` environment and the optional ``pipeline.toml``.

Both are read once at process start into frozen dataclasses with the original km3mon's defaults
(its ``pipeline.toml`` template), so a wrong value stops the process at once with a message
naming the variable or ``[Section] key`` instead of surfacing hours later in a plot thread.
Unknown sections and keys are logged as warnings (typos must not pass silently, and keys the
original read but this suite does not use are worth knowing about). Secrets never appear in
``repr`` or logs. TOML keys keep the original names; attributes carry their unit.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_PIPELINE_FILE = Path("pipeline.toml")


class ConfigError(Exception):
    """The configuration is unusable; the message names the file, variable or key."""


class Secret:
    """A string that does not show itself in ``repr``, ``str`` or f-strings."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret itself, for the one place that needs it (e.g. comparing a password)."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def option(
    default: Any,
    *,
    key: str | None = None,
    minimum: float | None = None,
    maximum: float | None = None,
    positive: bool = False,
) -> Any:
    """A dataclass field read from ``key`` (default: the attribute name) with a range check."""
    limits = {"key": key, "minimum": minimum, "maximum": maximum, "positive": positive}
    return field(default=default, metadata=limits)


# --- setenv.sh -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Environment:
    """The variables of ``setenv.sh`` (attribute = variable name in lower case)."""

    detector_id: int | None = option(None, minimum=-1)
    daq_ligier_ip: str = "127.0.0.1"
    daq_ligier_port: int = option(5553, minimum=1, maximum=65535)
    tags_to_mirror: tuple[str, ...] = ("IO_EVT", "IO_SUM", "IO_TSSN", "MSG", "IO_MONIT")
    log_ligier_ip: str = "127.0.0.1"
    log_ligier_port: int = option(5553, minimum=1, maximum=65535)
    ligier_cmd: str = "JLigier"
    monitoring_ligier_port: int = option(55530, minimum=1, maximum=65535)
    detector_manager_ip: str = "127.0.0.1"
    webserver_port: int = option(8081, minimum=1, maximum=65535)
    logging_port: int = option(8082, minimum=1, maximum=65535)
    detx: Path | None = None
    royfit_timeres: Path = Path("data/time_residuals.csv")

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Environment:
        """Read the variables; unset or empty ones keep their defaults."""
        environ = os.environ if environ is None else environ
        values = {}
        for spec, kind in _fields(cls):
            raw = environ.get(spec.name.upper(), "").strip()
            if raw:
                values[spec.name] = _from_text(raw, kind, f"${spec.name.upper()}")
                _check_range(values[spec.name], spec, f"${spec.name.upper()}")
        return cls(**values)


def _from_text(raw: str, kind: Any, name: str) -> Any:
    if kind is int:
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(f"{name}={raw!r} is not an integer") from None
    if kind is Path:
        return Path(raw)
    if kind == tuple[str, ...]:  # "IO_EVT, IO_SUM" (2019) or "IO_EVT IO_SUM" (later)
        return tuple(tag for tag in raw.replace(",", " ").split())
    return raw


# --- pipeline.toml ---------------------------------------------------------------------------


@dataclass(frozen=True)
class WebServerSection:
    """``[WebServer]``: HTTP basic auth of the dashboard; no password means no auth."""

    username: str | None = None
    password: Secret | None = field(default=None, repr=False)


@dataclass(frozen=True)
class DOMRatesSection:
    """``[DOMRates]``: colour range of the DOM-rate map."""

    lowest_rate_khz: float = option(200.0, key="lowest_rate", minimum=0)
    highest_rate_khz: float = option(400.0, key="highest_rate", positive=True)

    def __post_init__(self) -> None:
        _check_order(self, "lowest_rate_khz", "highest_rate_khz")


@dataclass(frozen=True)
class PMTRatesSection:
    """``[PMTRates]``: colour range and cadence of the per-DU PMT-rate plots."""

    lowest_rate_hz: float = option(5000.0, key="lowest_rate", minimum=0)
    highest_rate_hz: float = option(15000.0, key="highest_rate", positive=True)
    hrv_ratio_threshold: float = option(0.95, minimum=0, maximum=1)
    interval_s: float = option(20.0, key="interval", positive=True)
    #: A PMT is hot (``pmt_hot``) above ``highest_rate`` *and* this many times its DOM's
    #: median: bioluminescence and the colour scale's top raise whole DOMs, a hot PMT alone.
    hot_factor: float = option(3.0, minimum=1)

    def __post_init__(self) -> None:
        _check_order(self, "lowest_rate_hz", "highest_rate_hz")


@dataclass(frozen=True)
class TriggerRateSection:
    """``[TriggerRate]``: rate binning and axis style."""

    interval_s: float = option(300.0, key="interval", positive=True)
    with_minor_ticks: bool = False


@dataclass(frozen=True)
class TriggerMapSection:
    """``[TriggerMap]``: how many recent events the hit and trigger maps show."""

    max_events: int = option(1000, minimum=1)


@dataclass(frozen=True)
class ZTPlotSection:
    """``[ZTPlot]``: event selection and axis of the z–t display."""

    ytick_distance_m: float = option(200.0, key="ytick_distance", positive=True)
    min_dus: int = option(1, minimum=1)
    min_doms: int = option(4, minimum=1)


@dataclass(frozen=True)
class CalibrateAHRSSection:
    """``[CalibrateAHRS]``: time window of the yaw/pitch/roll plots."""

    time_range_h: float = option(72.0, key="time_range", positive=True)


@dataclass(frozen=True)
class AlertRuleSection:
    """``[Alerts.<rule>]``: one rule's hold time and thresholds (unset: the rule's default).

    A table named after no built-in rule, with ``metric`` and ``above`` or ``below``, is a
    threshold rule on that metric of ``data/metrics/`` (see km3mon.alerts.rules).
    """

    enabled: bool = True
    hold_s: float | None = option(None, minimum=0)
    clear_s: float | None = option(None, minimum=0)
    reminder_s: float | None = option(None, minimum=0)
    metric: str | None = None
    above: float | None = None
    below: float | None = None
    #: Hysteresis: an alert above ``above`` holds until the value drops below ``clear_below``
    #: (below ``below``: until it rises above ``clear_above``); unset: the threshold itself.
    clear_below: float | None = None
    clear_above: float | None = None
    fraction: float | None = option(None, minimum=0, maximum=1)
    min_free_gb: float | None = option(None, minimum=0)
    max_spreads: float | None = option(None, positive=True)


@dataclass(frozen=True)
class AlertsSection:
    """``[Alerts]``: where notifications go and how an alert lives (km3mon.alerts)."""

    webhook_url: Secret | None = field(default=None, repr=False)
    smtp: str | None = None  # "host:port"
    smtp_user: str | None = None
    smtp_password: Secret | None = field(default=None, repr=False)
    smtp_starttls: bool = False
    mail_from: str = "km3mon@localhost"
    mail_to: tuple[str, ...] = ()
    #: Base URL of the dashboard, for links in notifications (e.g. "http://shore:8081").
    dashboard_url: str | None = None
    reminder_s: float = option(4 * 3600.0, minimum=0)
    clear_s: float = option(60.0, minimum=0)
    flap_count: int = option(3, minimum=2)
    flap_window_s: float = option(3600.0, positive=True)
    max_per_rule: int = option(20, minimum=1)
    #: DOMs and PMTs known to be broken, no alert for them: "<dom id>[/<channel>] <reason>".
    known_bad: tuple[str, ...] = ()
    #: ``[Alerts.<rule>]`` tables by rule name.
    rules: dict[str, AlertRuleSection] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.smtp is not None:
            host, _, port = self.smtp.rpartition(":")
            if not host or not port.isdigit():
                raise ConfigError(f'smtp must be "host:port", got {self.smtp!r}')
        for entry in self.known_bad:
            target = entry.split(maxsplit=1)[0] if entry.strip() else ""
            dom, _, channel = target.partition("/")
            if not dom.isdigit() or (channel and not channel.isdigit()):
                raise ConfigError(
                    f'known_bad entries are "<dom id>[/<channel>] <reason>", got {entry!r}'
                )


@dataclass(frozen=True)
class HistorySection:
    """``[History]``: retention of the history store (km3mon.history)."""

    keep_days: float = option(30.0, positive=True)
    keep_coarse_days: float = option(365.0, positive=True)


@dataclass(frozen=True)
class WallSection:
    """``[Wall]``: the control-room wall screen (``/wall``) cycles through these pages."""

    pages: tuple[str, ...] = ("index", "pmt", "ahrs", "trigger")
    seconds: float = option(30.0, positive=True)


@dataclass(frozen=True)
class SNSection:
    """``[SN]``: the supernova monitor's coincidence selection, sliding window and threshold."""

    min_multiplicity: int = option(7, minimum=2, maximum=31)
    max_multiplicity: int = option(11, minimum=2, maximum=31)
    window_s: float = option(0.5, key="window", minimum=0.1, maximum=60)
    veto_window_ns: float = option(1000.0, key="veto_window", minimum=0)
    #: The threshold: background passes it this often (see ``monitors/sn.py``).
    false_alarms_per_week: float = option(1.0, positive=True)

    def __post_init__(self) -> None:
        if self.min_multiplicity > self.max_multiplicity:
            raise ConfigError(
                f"min_multiplicity ({self.min_multiplicity}) must not be above "
                f"max_multiplicity ({self.max_multiplicity})"
            )


@dataclass(frozen=True)
class QualityTestSection:
    """``[Quality.<test>]``: a quality test's thresholds on its score q in [0, 1] (fail below
    ``fail``, warning below ``warn``), entries needed for a verdict, its own parameters
    (unset: the test's default, see km3mon.quality.judge)."""

    enabled: bool = True
    warn: float | None = option(None, minimum=0, maximum=1)
    fail: float | None = option(None, minimum=0, maximum=1)
    min_entries: int | None = option(None, minimum=0)
    band: float | None = option(None, positive=True)
    min_spread: float | None = option(None, minimum=0)


@dataclass(frozen=True)
class QualitySection:
    """``[Quality]``: the run-quality record's reference, vetoes and tests (km3mon quality)."""

    #: A run chosen as the reference (0: the last ``reference_runs`` good runs).
    reference_run: int = option(0, minimum=0)
    reference_runs: int = option(10, minimum=1)
    min_livetime_s: float = option(300.0, minimum=0)
    min_daq: float = option(0.99, minimum=0, maximum=1)
    min_doms_active: float = option(0.97, minimum=0, maximum=1)
    max_out_sync: float = option(0.01, minimum=0, maximum=1)
    min_whiterabbitstatus: float = option(0.99, minimum=0, maximum=1)
    #: A DOM (a PMT) is active with frames (a non-zero rate) in this fraction of the slices.
    active_dom_fraction: float = option(0.5, minimum=0, maximum=1)
    hot_dom_factor: float = option(2.0, positive=True)
    #: A run without data for this long has ended (also when no new run follows).
    end_after_s: float = option(120.0, positive=True)
    keep_minutes_days: float = option(90.0, positive=True)
    #: ``[Quality.<test>]`` tables by test name.
    tests: dict[str, QualityTestSection] = field(default_factory=dict)


@dataclass(frozen=True)
class PipelineConfig:
    """All sections of ``pipeline.toml``; a missing file or section means the defaults."""

    web_server: WebServerSection = field(default_factory=WebServerSection)
    dom_rates: DOMRatesSection = field(default_factory=DOMRatesSection)
    pmt_rates: PMTRatesSection = field(default_factory=PMTRatesSection)
    trigger_rate: TriggerRateSection = field(default_factory=TriggerRateSection)
    trigger_map: TriggerMapSection = field(default_factory=TriggerMapSection)
    ztplot: ZTPlotSection = field(default_factory=ZTPlotSection)
    calibrate_ahrs: CalibrateAHRSSection = field(default_factory=CalibrateAHRSSection)
    alerts: AlertsSection = field(default_factory=AlertsSection)
    history: HistorySection = field(default_factory=HistorySection)
    wall: WallSection = field(default_factory=WallSection)
    sn: SNSection = field(default_factory=SNSection)
    quality: QualitySection = field(default_factory=QualitySection)
    #: ``[Layouts]``: dashboard page → rows of plot names (``*`` allowed), e.g.
    #: ``index = [["dom_activity", "dom_rates"], ["pmt_rates_du*"]]``.
    layouts: dict[str, list[list[str]]] = field(default_factory=dict)

    #: TOML section name → attribute.
    SECTIONS: typing.ClassVar[dict[str, str]] = {
        "WebServer": "web_server",
        "DOMRates": "dom_rates",
        "PMTRates": "pmt_rates",
        "TriggerRate": "trigger_rate",
        "TriggerMap": "trigger_map",
        "ZTPlot": "ztplot",
        "CalibrateAHRS": "calibrate_ahrs",
        "History": "history",
        "Wall": "wall",
        "SN": "sn",
    }

    @classmethod
    def from_mapping(cls, document: Mapping[str, Any], source: str) -> PipelineConfig:
        """Validate a parsed TOML document; ConfigError names ``source`` and the key."""
        kinds = typing.get_type_hints(cls)
        sections = {}
        for section, table in document.items():
            if section == "Layouts":
                sections["layouts"] = _layouts(table, source)
                continue
            if section == "Alerts":
                sections["alerts"] = _with_tables(
                    "Alerts", AlertsSection, AlertRuleSection, "rules", table, source
                )
                continue
            if section == "Quality":
                sections["quality"] = _with_tables(
                    "Quality", QualitySection, QualityTestSection, "tests", table, source
                )
                continue
            attribute = cls.SECTIONS.get(section)
            if attribute is None:
                log.warning("%s: unknown section [%s] ignored", source, section)
                continue
            if not isinstance(table, Mapping):
                raise ConfigError(f"{source}: [{section}] must be a table, got {table!r}")
            try:
                sections[attribute] = _section(kinds[attribute], section, table, source)
            except ConfigError as err:
                raise ConfigError(f"{source}: {err}") from None
        return cls(**sections)


def _layouts(table: Any, source: str) -> dict[str, list[list[str]]]:
    """``[Layouts]``: every value a list of rows, every row a list of plot names."""
    if not isinstance(table, Mapping):
        raise ConfigError(f"{source}: [Layouts] must be a table, got {table!r}")
    for page, rows in table.items():
        if not (
            isinstance(rows, list)
            and all(isinstance(row, list) and all(isinstance(n, str) for n in row) for row in rows)
        ):
            raise ConfigError(
                f"{source}: [Layouts] {page} must be a list of rows of plot names, "
                f'e.g. [["dom_activity", "dom_rates"], ["pmt_rates_du*"]], got {rows!r}'
            )
    return {str(page): [list(row) for row in rows] for page, rows in table.items()}


def _with_tables(section: str, cls: type, item_cls: type, field: str, table: Any, source: str):
    """``[<section>]`` keys, and its ``[<section>.<name>]`` tables as the ``field`` mapping
    (the rules of ``[Alerts]``, the tests of ``[Quality]``)."""
    if not isinstance(table, Mapping):
        raise ConfigError(f"{source}: [{section}] must be a table, got {table!r}")
    keys = {k: v for k, v in table.items() if not isinstance(v, Mapping) and k != field}
    try:
        items = {
            str(name): _section(item_cls, f"{section}.{name}", item, source)
            for name, item in table.items()
            if isinstance(item, Mapping)
        }
        return dataclasses.replace(_section(cls, section, keys, source), **{field: items})
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from None


def _section(cls: type, section: str, table: Mapping[str, Any], source: str) -> Any:
    by_key = {spec.metadata.get("key") or spec.name: (spec, kind) for spec, kind in _fields(cls)}
    values = {}
    for key, value in table.items():
        if key not in by_key:
            log.warning("%s: unknown key [%s] %s ignored", source, section, key)
            continue
        spec, kind = by_key[key]
        name = f"[{section}] {key}"
        values[spec.name] = _typed(value, kind, name)
        _check_range(values[spec.name], spec, name)
    try:
        return cls(**values)
    except ConfigError as err:
        raise ConfigError(f"[{section}] {err}") from None


def _typed(value: Any, kind: Any, name: str) -> Any:
    if kind is Secret and isinstance(value, str):
        return Secret(value)
    if kind is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if kind is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind in (bool, str) and isinstance(value, kind):
        return value
    strings = isinstance(value, list) and all(isinstance(item, str) for item in value)
    if kind == tuple[str, ...] and strings:
        return tuple(value)
    shown = "***" if kind is Secret else repr(value)
    expected = {
        Secret: "a string",
        float: "a number",
        int: "an integer",
        bool: "true or false",
        tuple[str, ...]: "a list of strings",
    }
    raise ConfigError(f"{name} must be {expected.get(kind, 'a string')}, got {shown}")


def _check_range(value: Any, spec: dataclasses.Field, name: str) -> None:
    limits = spec.metadata
    if limits.get("minimum") is not None and value < limits["minimum"]:
        raise ConfigError(f"{name} must be at least {limits['minimum']}, got {value!r}")
    if limits.get("maximum") is not None and value > limits["maximum"]:
        raise ConfigError(f"{name} must be at most {limits['maximum']}, got {value!r}")
    if limits.get("positive") and value <= 0:
        raise ConfigError(f"{name} must be positive, got {value!r}")


def _check_order(section: Any, low: str, high: str) -> None:
    keys = {
        spec.name: spec.metadata.get("key") or spec.name for spec in dataclasses.fields(section)
    }
    if getattr(section, low) >= getattr(section, high):
        raise ConfigError(
            f"{keys[low]} ({getattr(section, low)}) must be below "
            f"{keys[high]} ({getattr(section, high)})"
        )


def _fields(cls: type) -> list[tuple[dataclasses.Field, Any]]:
    """Fields with their resolved types; ``X | None`` resolves to ``X``."""
    hints = typing.get_type_hints(cls)
    resolved = []
    for spec in dataclasses.fields(cls):
        kind = hints[spec.name]
        if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
            kind = next(arg for arg in typing.get_args(kind) if arg is not type(None))
        resolved.append((spec, kind))
    return resolved


def load_pipeline(path: str | Path | None = None) -> PipelineConfig:
    """``pipeline.toml`` from ``path``, or from the working folder if it exists there."""
    if path is None:
        if not DEFAULT_PIPELINE_FILE.is_file():
            return PipelineConfig()
        path = DEFAULT_PIPELINE_FILE
    path = Path(path)
    try:
        with path.open("rb") as stream:
            document = tomllib.load(stream)
    except OSError as err:
        raise ConfigError(f"cannot read {path}: {err.strerror}") from err
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: {err}") from err
    return PipelineConfig.from_mapping(document, str(path))


@dataclass(frozen=True)
class Config:
    """Everything an operator configures."""

    environment: Environment
    pipeline: PipelineConfig


def load_config(
    pipeline_path: str | Path | None = None, environ: Mapping[str, str] | None = None
) -> Config:
    """Read the environment and ``pipeline.toml``; raises ConfigError on the first bad value."""
    return Config(Environment.from_environ(environ), load_pipeline(pipeline_path))
