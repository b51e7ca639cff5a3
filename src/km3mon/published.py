"""The ``data/`` folder contract: where each process publishes what the others read.

The processes of the suite talk through files as much as through the ligier: monitors write
metrics and freshness records, reco writes its fits, alerts, history, quality and ztplot keep
SQLite databases, and the web server, the alert rules, the history sampler and the shift
report read them. Every path under ``data/`` (and the Top-10 files under ``plots/``) is named
here once, so a changed path is one edit. Standard library only: every layer may import it.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
from pathlib import Path

#: Per-process key numbers, ``data/metrics/<process>.json``.
METRICS = "metrics"
#: Per-process freshness records, ``data/freshness/<process>.json``.
FRESHNESS = "freshness"
#: The reconstruction's fits and state, ``data/reco/``.
RECO = "reco"
#: The life of every alert (``km3mon alerts``).
ALERTS_DB = "km3mon.sqlite3"
#: ztplot's Top-10 events; their figures and raw events live in ``plots/event_selection/``.
TOP10_DB = "event_selection.sqlite3"
TOP10_FILES = "event_selection"
#: Run records and verdicts (``km3mon quality``).
QUALITY_DB = "quality.sqlite3"
#: Minute samples of the monitors' metrics (``km3mon history``).
HISTORY_DB = "history.sqlite3"
#: Parsed detectors that every process maps (``km3mon.detector.mapped``).
DETECTORS = "detectors"


def atomic_write(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` in one rename (same folder, so same filesystem)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def metrics_dir(data_dir: Path) -> Path:
    return Path(data_dir) / METRICS


def metrics(data_dir: Path, process: str) -> Path:
    """The metrics document ``process`` writes (``save_metrics``) and the readers load."""
    return metrics_dir(data_dir) / f"{process}.json"


def freshness_dir(data_dir: Path) -> Path:
    return Path(data_dir) / FRESHNESS


def freshness(data_dir: Path, process: str) -> Path:
    """The freshness record of one long-running process."""
    return freshness_dir(data_dir) / f"{process}.json"


def reco_dir(data_dir: Path) -> Path:
    return Path(data_dir) / RECO


def reco_fits(data_dir: Path) -> Path:
    """One row per fit, appended by reco and tailed by quality (rotated daily)."""
    return reco_dir(data_dir) / "fits.csv"


def reco_state(data_dir: Path) -> Path:
    """reco's memory rings, saved at stop and read back at start."""
    return reco_dir(data_dir) / "state.npz"


def time_residuals(data_dir: Path) -> Path:
    """reco's time residuals when no ``--timeres`` path is given."""
    return Path(data_dir) / "time_residuals.csv"


def trigger_rates(data_dir: Path) -> Path:
    return Path(data_dir) / "trigger_rates.csv"


def rttc(data_dir: Path) -> Path:
    return Path(data_dir) / "rttc.csv"


def sn_state(data_dir: Path) -> Path:
    """The SN monitor's background estimate, kept across restarts."""
    return Path(data_dir) / "sn" / "state.json"


def alerts_db(data_dir: Path) -> Path:
    return Path(data_dir) / ALERTS_DB


def top10_db(data_dir: Path) -> Path:
    return Path(data_dir) / TOP10_DB


def top10_files(plot_dir: Path) -> Path:
    """The PNG and raw event of every event in a Top 10."""
    return Path(plot_dir) / TOP10_FILES


def quality_db(data_dir: Path) -> Path:
    return Path(data_dir) / QUALITY_DB


def history_db(data_dir: Path) -> Path:
    return Path(data_dir) / HISTORY_DB


def detectors_dir(data_dir: Path) -> Path:
    return Path(data_dir) / DETECTORS


def read_alerts(data_dir: Path) -> sqlite3.Connection | None:
    """The alert database opened read-only for the dashboard and the shift report, or None
    before ``km3mon alerts`` ever ran. Writers use :func:`km3mon.alerts.book.connect`."""
    path = alerts_db(data_dir)
    if not path.exists():
        return None
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0)
    db.row_factory = sqlite3.Row
    return db
