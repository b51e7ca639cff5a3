"""``km3mon history`` as a real process sampling the metrics the monitors write: per-DOM arrays
under ``doms`` of any monitor (reco's time offsets, timesync's states), the built-in metrics,
scalars and process states; data that did not move are not stored again."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import numpy as np

from km3mon.detector import read_detx
from km3mon.history.store import HistoryError, HistoryStore
from km3mon.sim.sim_geometry import synthetic_detx
from tests.conftest import read_json, wait_until


def write_metrics(data: Path, name: str, document: dict) -> None:
    folder = data / "metrics"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.tmp").write_text(json.dumps({"process": name, **document}))
    (folder / f"{name}.tmp").replace(folder / f"{name}.json")


def reco(data_time: float, dom_ids: list[int], offsets: list[float | None]) -> dict:
    return {
        "data_time": data_time,
        "offset_threshold_ns": 3.0,
        "flagged_doms": [],
        "doms": {
            "dom_id": dom_ids,
            "du": [1] * len(dom_ids),
            "floor": list(range(1, len(dom_ids) + 1)),
            "offset_ns": offsets,
            "residuals": [120] * len(dom_ids),
        },
    }


def series(data: Path, metric: str, entity: int, since: float) -> list[float]:
    store = HistoryStore(data, readonly=True)
    try:
        return store.series(metric, entity, since, time.time() + 60).values.tolist()
    finally:
        store.close()


def known_metrics(data: Path) -> dict[str, str]:
    """The metrics in the history; {} while the writer has not created it yet."""
    try:
        store = HistoryStore(data, readonly=True)
    except HistoryError:
        return {}
    try:
        return dict(store.metrics())
    except sqlite3.OperationalError:  # the file is there, its tables not yet
        return {}
    finally:
        store.close()


def test_history_records_per_dom_arrays_of_any_monitor_and_skips_unmoved_data(
    spawn, tmp_path
) -> None:
    detx = tmp_path / "one_du.detx"
    detx.write_text(synthetic_detx(1))
    doms = [int(d) for d in read_detx(detx).optical_dom_ids[:3]]
    data = tmp_path / "data"
    first = (time.time() // 60 - 3) * 60  # three minutes ago, on a minute
    write_metrics(data, "reco", reco(first, doms, [0.4, 6.2, None]))
    write_metrics(data, "timesync", {
        "data_time": first + 5, "white_rabbit_lost": [doms[1]], "alerts": 2,
        "doms": {"dom_id": doms, "state": [0, 2, 1], "frames_per_s": [10.0, 10.0, 9.1],
                 "lost_fraction": [0.0, 0.0, 0.45]},
    })  # fmt: skip
    write_metrics(data, "dom_rates", {"data_time": first, "dom_id": doms,
                                      "rate_khz": [230.0, 240.0, 250.0]})  # fmt: skip
    write_metrics(data, "broken", {"data_time": first, "doms": {"dom_id": "not a list"}})
    spawn("history", "--detx", detx, "--data-dir", data, "-o", tmp_path / "plots", "-i", "1")

    wanted = {"reco.offset_ns": "dom", "reco.residuals": "dom", "timesync.state": "dom",
              "timesync.frames_per_s": "dom", "timesync.lost_fraction": "dom",
              "dom_rate_khz": "dom", "timesync.alerts": "scalar",
              "reco.offset_threshold_ns": "scalar", "process_up.history": "scalar"}  # fmt: skip
    wait_until(lambda: wanted.items() <= known_metrics(data).items(), 30, "the first sample",
               show=lambda: known_metrics(data))  # fmt: skip
    names = known_metrics(data)
    assert not {"reco.du", "reco.floor", "reco.dom_id", "timesync.dom_id"} & set(names)

    # A minute later reco has news, dom_rates has not: only the news is stored.
    write_metrics(data, "reco", reco(first + 60, doms, [0.5, 7.9, 1.1]))
    wait_until(lambda: len(series(data, "reco.offset_ns", doms[1], first)) == 2, 30,
               "the second reco sample",
               show=lambda: series(data, "reco.offset_ns", doms[1], first))  # fmt: skip
    assert np.allclose(series(data, "reco.offset_ns", doms[1], first), [6.2, 7.9], atol=0.01)
    assert series(data, "reco.offset_ns", doms[2], first) == [1.100000023841858]
    assert series(data, "timesync.state", doms[1], first) == [2.0]
    assert np.allclose(series(data, "timesync.lost_fraction", doms[2], first), [0.45])
    time.sleep(2.5)  # two more samples of unchanged data
    assert series(data, "dom_rate_khz", doms[0], first) == [230.0]
    assert len(series(data, "reco.offset_ns", doms[1], first)) == 2
    record = read_json(data / "freshness" / "history.json")
    assert record["decode_errors"] == 0, "a malformed doms is skipped, not an error"
