"""The batch id lookup behind Detector.locate, against a plain dict."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from km3mon.detector.geometry import IdIndex

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
