"""Property tests: decode(encode(obj)) == obj for generated objects of every format."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from km3mon import daq
from km3mon.daq import event as event_module
from km3mon.daq.event import decode_events_hits
from km3mon.daq.monitoring import (
    PACKET_DTYPE,
    decode_monitoring_batch,
    encode_monitoring_batch,
)
from km3mon.daq.summaryslice import hz_to_rates, rates_to_hz
from tests.daq.conftest import messages
from tests.daq.strategies import daq_objects, events, monitoring_packets, same

SETTINGS = settings(max_examples=300, deadline=None)
BATCH_SETTINGS = settings(max_examples=60, deadline=None)  # each example holds up to 6 objects


@SETTINGS
@given(daq_objects)
def test_decode_of_encode_is_identity(obj: daq.DAQObject) -> None:
    payload = daq.encode(obj)
    decoded = daq.decode(daq.tag_of(obj), payload)
    assert same(decoded, obj)
    assert daq.encode(decoded) == payload


@SETTINGS
@given(st.binary(max_size=300))
def test_log_messages_keep_arbitrary_bytes(payload: bytes) -> None:
    assert daq.encode(daq.decode("MSG", payload)) == payload


@BATCH_SETTINGS
@given(st.lists(events(), max_size=6))
def test_events_batch_equals_single_decodes(batch: list[daq.Event]) -> None:
    payloads = [daq.encode(event) for event in batch]
    table, hits = decode_events_hits(payloads)
    assert table["n_snapshot"].tolist() == [len(e.snapshot_hits) for e in batch]
    assert table["trigger_mask"].tolist() == [e.trigger_mask for e in batch]
    assert table["legacy"].tolist() == [e.version is None for e in batch]
    singles = [daq.decode_event(p).hits for p in payloads]
    for index, single in enumerate(singles):
        mine = hits[hits["event"] == index]
        for name in ("dom_id", "channel", "time_ns", "tot", "trigger_mask", "triggered"):
            assert np.array_equal(mine[name], single[name]), name


@BATCH_SETTINGS
@given(st.lists(monitoring_packets(), max_size=6))
def test_monitoring_batch_round_trip(packets: list[daq.MonitoringPacket]) -> None:
    payloads = [daq.encode(p)[: len(daq.encode(p)) - len(p.trailer)] for p in packets]
    batch = decode_monitoring_batch(payloads)
    assert batch.dtype == PACKET_DTYPE and len(batch) == len(packets)
    assert encode_monitoring_batch(batch) == payloads
    assert batch["dom_id"].tolist() == [p.dom_id for p in packets]


@given(st.floats(0, 3e6))
def test_rate_encoding_picks_the_nearest_step(rate_hz: float) -> None:
    byte = hz_to_rates(np.array([rate_hz]))
    decoded = rates_to_hz(byte)[0]
    if 2.0e3 < rate_hz < 2.0e6:
        assert abs(np.log(decoded / rate_hz)) <= 0.5 * np.log(1000) / 255 + 1e-12


KEYS = st.lists(st.tuples(st.integers(0, 5), st.integers(0, 5)), max_size=60)


def as_keys(pairs: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    array = np.array(pairs, np.uint64).reshape(-1, 2)
    return array[:, 0].copy(), array[:, 1].copy()


@SETTINGS
@given(KEYS, KEYS)
def test_hash_join_and_sorted_fallback_find_equal_keys(table: list, wanted: list) -> None:
    for find in (event_module._find, event_module._find_sorted):
        found = find(as_keys(table), as_keys(wanted)).tolist()
        for key, index in zip(wanted, found, strict=True):
            assert table[index] == key if key in table else index == -1


def test_batch_falls_back_to_sorting_on_long_probe_sequences(monkeypatch) -> None:
    payloads = [m.payload for m in messages("IO_EVT.dat")]
    expected = decode_events_hits(payloads)[1]
    monkeypatch.setattr(event_module, "_MAX_PROBE_ROUNDS", 0)
    assert np.array_equal(decode_events_hits(payloads)[1], expected)
