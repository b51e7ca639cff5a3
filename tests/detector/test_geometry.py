"""The batch id lookup behind Detector.locate, against a plain dict; the PMT row order."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from km3mon.detector import read_detx
from km3mon.detector.geometry import IdIndex
from tests.detector.conftest import DETX_DIR

dom_ids = st.integers(min_value=-(2**31), max_value=2**32)


@settings(max_examples=200, deadline=None)
@given(st.lists(dom_ids, max_size=300), st.lists(dom_ids, max_size=300))
def test_lookup_equals_a_dict_first_occurrence_wins(known: list[int], extra: list[int]) -> None:
    reference: dict[int, int] = {}
    for position, dom_id in enumerate(known):
        reference.setdefault(dom_id, position)
    queries = np.array(known + extra, dtype=np.int64)
    expected = [reference.get(int(q), -1) for q in queries]
    np.testing.assert_array_equal(
        IdIndex(np.array(known, dtype=np.int64)).lookup(queries), expected
    )


def test_real_dom_ids_with_clustered_values() -> None:
    ids = 808_400_000 + np.arange(0, 2070 * 97, 97)  # ids close together, as on a real DU
    index = IdIndex(ids)
    np.testing.assert_array_equal(index.lookup(ids[::-1]), np.arange(len(ids))[::-1])
    assert index.lookup(np.array([808_400_001, 0])).tolist() == [-1, -1]


@pytest.mark.parametrize(
    "name", ["KM3NeT_00000133_20221025.detx", "D_ORCA006_t.A02181836.p.A02181837.r.A02182001.detx"]
)
def test_pmt_rows_are_km3pipes_ordered_pmt_ids_as_the_original_used_them(name: str) -> None:
    from km3pipe.hardware import ORDERED_PMT_IDS  # the original: row from the bottom

    order = read_detx(DETX_DIR / name).channel_order
    rows_from_top = np.argsort(-np.array(ORDERED_PMT_IDS))
    np.testing.assert_array_equal(order.channels, rows_from_top)


def test_each_ring_runs_around_the_dom_whatever_the_dom_rotations() -> None:
    detector = read_detx(DETX_DIR / "KM3NeT_00000133_20221025.detx")
    rng = np.random.default_rng(3)
    yaw = rng.uniform(0, 2 * np.pi, len(detector.dom_ids))[detector.pmt_dom_index]
    x, y = detector.pmt_dir[:, 0], detector.pmt_dir[:, 1]
    rotated_dir = np.stack(
        [x * np.cos(yaw) - y * np.sin(yaw), x * np.sin(yaw) + y * np.cos(yaw),
         detector.pmt_dir[:, 2]], axis=1,
    )  # fmt: skip
    rotated = dataclasses.replace(detector, pmt_dir=rotated_dir)
    order = rotated.channel_order
    np.testing.assert_array_equal(order.channels, detector.channel_order.channels)
    dom = np.flatnonzero(detector.n_pmts == 31)[5]
    directions = rotated.pmt_dir[rotated.pmt_offset[dom] + order.channels]
    azimuth_deg = np.degrees(np.arctan2(directions[:, 1], directions[:, 0]))
    ring = order.ring[order.channels]
    for number in range(5):  # six PMTs per ring: neighbours 60° apart, counter-clockwise
        steps = np.diff(azimuth_deg[ring == number]) % 360
        np.testing.assert_allclose(steps, 60, atol=1)
