"""Every message of every km3net-testdata DAQ file decodes, re-encodes byte for byte, and the
batch decoders agree with the single-message ones."""

from __future__ import annotations

import numpy as np
import pytest

from km3mon import daq
from km3mon.daq.event import decode_events_hits
from km3mon.daq.files import RecordedMessage
from km3mon.daq.monitoring import (
    decode_monitoring_batch,
    encode_monitoring_batch,
    hrv_bits,
    humidity_percent,
    rates_hz,
    temperature_c,
)
from tests.daq.conftest import DAQ_FILES, message_params, messages


@pytest.mark.parametrize("name", DAQ_FILES)
def test_file_holds_expected_number_of_messages(name: str) -> None:
    assert len(messages(name)) == DAQ_FILES[name]


@pytest.mark.parametrize("message", message_params())
def test_decode_encode_round_trip_is_byte_identical(message: RecordedMessage) -> None:
    obj = daq.decode(message.tag, message.payload)
    assert daq.encode(obj) == message.payload
    if message.tag.startswith("IO_TS") and obj.data_type != 1001:
        assert daq.tag_of(obj) == message.tag


def test_legacy_layouts_are_recognised() -> None:
    for name, legacy in [
        ("IO_EVT.dat", False),
        ("IO_EVT_legacy.dat", True),
        ("IO_SUM.dat", False),
        ("IO_SUM_legacy.dat", True),
        ("IO_TSSN.dat", False),
        ("IO_TSL0_legacy.dat", True),
    ]:
        for message in messages(name):
            assert (daq.decode(message.tag, message.payload).version is None) is legacy, name


def test_first_event_fields() -> None:
    event = daq.decode_event(messages("IO_EVT.dat")[0].payload)
    assert event.header == daq.DAQHeader(44, 6760, 88733, 1574432873, 18_750_000, 0)
    assert event.header.utc_ns == 300_000_000
    assert (event.trigger_counter, event.trigger_mask, event.overlays) == (2816, 0x16, 54)
    assert (len(event.triggered_hits), len(event.snapshot_hits)) == (182, 239)
    first = event.triggered_hits[0]
    assert (first["dom_id"], first["channel"], first["time_ns"], first["tot"]) == (
        806451572,
        23,
        40380598,
        27,
    )
    assert first["trigger_mask"] == 4
    # every triggered hit is a snapshot hit; event mask = OR of the hit masks
    assert event.hits["triggered"].sum() == 182
    assert np.bitwise_or.reduce(event.triggered_hits["trigger_mask"]) == event.trigger_mask
    assert set(event.hits["trigger_mask"][event.hits["triggered"]]) <= {2, 4, 20, 22}


def test_first_legacy_event_fields() -> None:
    event = daq.decode_event(messages("IO_EVT_legacy.dat")[0].payload)
    assert (event.header.det_id, event.header.run, event.header.frame_index) == (7, 139, 5443)
    assert event.header.utc_seconds == 1449571426
    assert (event.trigger_counter, event.trigger_mask, event.overlays) == (184, 0x12, 13)
    assert (len(event.triggered_hits), len(event.snapshot_hits)) == (13, 28)


def test_legacy_summaryslice_frames_are_39_bytes() -> None:
    first = daq.decode_summaryslice(messages("IO_SUM_legacy.dat")[0].payload)
    assert first.header.run == 2101 and len(first.frames) == 16
    assert first.dom_ids[:3].tolist() == [808430036, 808430449, 808447091]
    assert first.white_rabbit.all()
    assert not first.frames["daq"].any()


def test_summaryslice_status_words() -> None:
    for message in messages("IO_SUM.dat"):
        slice_ = daq.decode_summaryslice(message.payload)
        assert slice_.white_rabbit.all() and slice_.udp_trailer.all() and slice_.complete.all()
        assert slice_.rates_hz.shape == (len(slice_.frames), 31)


def test_timeslice_legacy_l0_first_hit() -> None:
    timeslice = daq.decode_timeslice(messages("IO_TSL0_legacy.dat")[0].payload)
    assert timeslice.data_type == 1001 and timeslice.frames["dom_id"].tolist() == [808447031]
    first = timeslice.hits[0]
    assert (first["channel"], first["time_ns"], first["tot"]) == (13, 650330, 25)
    assert len(timeslice.hits) == 200


def test_monitoring_packet_fields() -> None:
    packet = daq.decode_monitoring(messages("IO_MONIT.dat")[0].payload)
    assert (packet.run, packet.dom_id, packet.version) == (86, 806472270, 2)
    assert packet.yaw == pytest.approx(199.0598, abs=1e-4)
    assert packet.pitch == pytest.approx(0.5398, abs=1e-4)
    assert packet.roll == pytest.approx(-0.2243, abs=1e-4)
    assert np.allclose(packet.A, (0.00709, 0.00214, -0.86457), atol=1e-5)
    assert np.allclose(packet.G, (-2.877, -0.833, -0.290), atol=1e-3)
    assert np.allclose(packet.H, (-0.2621, 0.0236, 0.1430), atol=1e-4)
    assert (packet.temperature_c, packet.humidity_percent) == (32.35, 16.77)
    assert packet.trailer == b"\0" * 4  # 244-byte datagram with v2 flags


def test_monitoring_batch_agrees_with_single_decoder() -> None:
    payloads = [m.payload for m in messages("IO_MONIT.dat")]
    batch = decode_monitoring_batch(payloads)
    singles = [daq.decode_monitoring(p) for p in payloads]
    assert batch["dom_id"].tolist() == [p.dom_id for p in singles]
    assert batch["utc_16ns_cycles"].tolist() == [p.utc_16ns_cycles for p in singles]
    assert batch["yaw"].tolist() == [p.yaw for p in singles]
    assert np.array_equal(batch["H"], [p.H for p in singles])
    assert np.array_equal(rates_hz(batch), [p.rates_hz for p in singles])
    assert np.array_equal(hrv_bits(batch), [p.hrv_bits for p in singles])
    assert temperature_c(batch).tolist() == [p.temperature_c for p in singles]
    assert humidity_percent(batch).tolist() == [p.humidity_percent for p in singles]
    assert b"".join(encode_monitoring_batch(batch, size=244)) == b"".join(payloads)
    assert [len(p) for p in encode_monitoring_batch(batch)] == [240] * 6


def test_monitoring_batch_pads_mixed_sizes() -> None:
    payloads = [m.payload for m in messages("IO_MONIT.dat")]
    mixed = [payloads[0][:240], payloads[1], payloads[2] + b"extra"]
    batch = decode_monitoring_batch(mixed)
    assert np.array_equal(batch, decode_monitoring_batch(payloads[:3]))


@pytest.mark.parametrize("name", ["IO_EVT.dat", "IO_EVT_legacy.dat"])
def test_events_batch_agrees_with_single_decoder(name: str) -> None:
    payloads = [m.payload for m in messages(name)]
    events, hits = decode_events_hits(payloads)
    singles = [daq.decode_event(p) for p in payloads]
    assert events["trigger_counter"].tolist() == [e.trigger_counter for e in singles]
    assert events["frame_index"].tolist() == [e.header.frame_index for e in singles]
    assert events["n_snapshot"].tolist() == [len(e.snapshot_hits) for e in singles]
    assert events["legacy"].tolist() == [e.version is None for e in singles]
    expected = np.concatenate([e.hits for e in singles])
    expected["event"] = np.repeat(np.arange(len(singles)), [len(e.hits) for e in singles])
    assert np.array_equal(hits, expected)


def test_events_batch_of_nothing() -> None:
    events, hits = decode_events_hits([])
    assert len(events) == 0 and len(hits) == 0
