"""The history store: what goes in comes out, per minute and as 10-minute means, and old
data leaves on time."""

from __future__ import annotations

import numpy as np
import pytest

from km3mon.history.store import HistoryStore

DOMS = np.array([30, 10, 20], np.int64)  # not sorted: the store sorts them
T0 = 1_796_000_400.0  # a whole hour


def minutes(store: HistoryStore, first: int, count: int, name: str = "dom_rate_khz") -> None:
    for minute in range(first, first + count):
        values = np.array([minute, 1000 + minute, np.nan if minute % 7 == 0 else 2000 + minute])
        store.write([(name, "dom", T0 + minute * 60 + 5.0, DOMS, values)])


def test_minutes_round_trip_through_hour_chunks_and_ten_minute_means(tmp_path) -> None:
    store = HistoryStore(tmp_path)
    minutes(store, 0, 150)  # two complete hours transposed, the third still in minutes
    (rows,) = store.db.execute("SELECT count(*) FROM chunks").fetchone()
    assert rows == 2 * len(DOMS)
    series = store.series("dom_rate_khz", 10, T0, T0 + 150 * 60)
    assert series.step_s == 60
    np.testing.assert_array_equal(series.times_s, T0 + np.arange(150) * 60)
    np.testing.assert_array_equal(series.values, 1000 + np.arange(150))
    gaps = store.series("dom_rate_khz", 20, T0, T0 + 150 * 60)
    assert len(gaps.values) == 150 - len(range(0, 150, 7)), "NaN minutes are gaps"
    coarse = store.series("dom_rate_khz", 30, T0, T0 + 120 * 60, step_s=600)
    np.testing.assert_allclose(coarse.values, np.arange(12) * 10 + 4.5)
    assert store.series("dom_rate_khz", 99, T0, T0 + 9000).values.size == 0


def test_a_late_minute_is_merged_and_old_data_expires(tmp_path) -> None:
    store = HistoryStore(tmp_path, keep_days=1, keep_coarse_days=3)
    minutes(store, 0, 61)
    minutes(store, 61, 1)
    store.write([("dom_rate_khz", "dom", T0 + 30 * 60, DOMS[:1], np.array([-1.0]))])  # late
    minutes(store, 62, 60)  # rolls hour 0 again with the late minute
    values = store.series("dom_rate_khz", 30, T0, T0 + 3600).values
    assert values[30] == -1 and values[29] == 29 and len(values) == 60
    minutes(store, 26 * 60, 61)  # a day later: hour 0 leaves the minute data
    assert store.series("dom_rate_khz", 30, T0, T0 + 3600, step_s=60).values.size == 0
    assert store.series("dom_rate_khz", 30, T0, T0 + 3600, step_s=600).values.size == 6
    minutes(store, 5 * 24 * 60, 61)
    assert store.series("dom_rate_khz", 30, T0, T0 + 3600, step_s=600).values.size == 0


def test_scalars_runs_places_and_reopening_read_only(tmp_path) -> None:
    store = HistoryStore(tmp_path)
    for minute in range(3):
        store.write([("trigger_rate_hz.Overall", "scalar", T0 + minute * 60, np.zeros(1, np.int64),
                      np.array([50.0 + minute]))])  # fmt: skip
    store.note_run(1234, T0 + 60)
    store.set_places({10: (1, 3)})
    store.close()
    reader = HistoryStore(tmp_path, readonly=True)
    assert reader.series("trigger_rate_hz.Overall", 0, T0, T0 + 600).values.tolist() == [50, 51, 52]
    assert reader.runs(T0, T0 + 600) == [(1234, T0 + 60)]
    assert reader.places() == {10: (1, 3)}
    assert ("trigger_rate_hz.Overall", "scalar") in reader.metrics()
    with pytest.raises(Exception, match="no metric"):
        reader.series("nothing", 0, T0, T0 + 60)
