"""The SN muon veto's kernels: each event's time extent, and which coincidences fall in the
veto windows (overlapping or nested windows included)."""

from __future__ import annotations

import numpy as np

from km3mon.physics.sn import event_extents, inside_windows


def test_each_event_spans_its_first_to_its_last_hit_and_an_empty_one_nothing() -> None:
    event = np.array([0, 0, 2, 0, 2])
    times = np.array([50, 10, 700, 30, 900], np.int64)
    first, last = event_extents(event, times, 3)
    assert first[[0, 2]].tolist() == [10, 700] and last[[0, 2]].tolist() == [50, 900]
    assert first[1] > last[1], "event 1 has no hits: no window"


def test_times_inside_any_window_are_vetoed_whatever_the_order_and_overlap() -> None:
    # unsorted; the second nested in the first; the last overlapping the third
    windows = np.array([[100, 500], [200, 300], [1000, 1100], [1050, 1300]], np.int64)
    times = np.array([99, 100, 250, 400, 500, 501, 999, 1200, 1300, 1301], np.int64)
    assert inside_windows(times, windows[[2, 0, 3, 1]]).tolist() == [
        False, True, True, True, True, False, False, True, True, False,
    ]  # fmt: skip
