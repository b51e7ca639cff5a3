"""Field-by-field agreement with km3pipe 11's parsers, and the documented corrections where
km3pipe is wrong (signed rate byte, 55-byte legacy summary frames)."""

from __future__ import annotations

import io
import math
import struct
from types import SimpleNamespace

import km3pipe.io.daq as kd  # the reference peer: missing must fail, not skip
import numpy as np
import pytest

from km3mon import daq
from km3mon.daq.summaryslice import MIN_RATE_HZ, RATE_STEP
from tests.daq.conftest import messages


def km3pipe_event(payload: bytes, legacy: bool):
    stream = io.BytesIO(payload)
    kd.DAQPreamble(file_obj=stream)
    return kd.DAQEvent(stream, legacy=legacy)


@pytest.mark.parametrize("name", ["IO_EVT.dat", "IO_EVT_legacy.dat"])
def test_events_agree_with_daqevent(name: str) -> None:
    for message in messages(name):
        ours = daq.decode_event(message.payload)
        theirs = km3pipe_event(message.payload, legacy=ours.version is None)
        header = theirs.header
        assert (ours.header.det_id, ours.header.run) == (header.det_id, header.run)
        assert ours.header.frame_index == header.time_slice
        assert ours.header.utc_seconds == header.time_stamp
        assert ours.header.wr_status << 31 == header.wr_status
        assert ours.header.utc_16ns_cycles == header.ticks
        assert ours.trigger_counter == theirs.trigger_counter
        assert ours.trigger_mask == theirs.trigger_mask
        assert ours.overlays == theirs.overlays
        for column in ("dom_id", "time", "tot", "trigger_mask"):
            mine = "time_ns" if column == "time" else column
            assert np.array_equal(ours.triggered_hits[mine], theirs.triggered_hits[column])
        assert np.array_equal(ours.triggered_hits["channel"], theirs.triggered_hits.channel_id)
        for column in ("dom_id", "time", "tot"):
            mine = "time_ns" if column == "time" else column
            assert np.array_equal(ours.snapshot_hits[mine], theirs.snapshot_hits[column])
        assert np.array_equal(ours.snapshot_hits["channel"], theirs.snapshot_hits.channel_id)


def test_triggered_flags_agree_with_daqprocessor() -> None:
    payloads = [m.payload for m in messages("IO_EVT.dat")]
    _, hits = daq.decode_events_hits(payloads)
    processor = kd.DAQProcessor()
    for index, payload in enumerate(payloads):
        blob = processor.process({"CHPrefix": SimpleNamespace(tag="IO_EVT"), "CHData": payload})
        ours = hits[hits["event"] == index]
        theirs = blob["Hits"]
        assert np.array_equal(ours["dom_id"], theirs.dom_id)
        assert np.array_equal(ours["time_ns"], theirs.time)
        assert np.array_equal(ours["triggered"], theirs.triggered.astype(bool))
        info = blob["EventInfo"]
        assert info.trigger_counter[0] == daq.decode_event(payload).trigger_counter


def km3pipe_rate(signed_byte: int) -> float:
    return 0.0 if signed_byte == 0 else MIN_RATE_HZ * math.exp(signed_byte * RATE_STEP)


def test_summaryslices_agree_with_daqsummaryslice_except_signed_rates() -> None:
    wrong = 0
    for message in messages("IO_SUM.dat"):
        ours = daq.decode_summaryslice(message.payload)
        stream = io.BytesIO(message.payload)
        kd.DAQPreamble(file_obj=stream)
        theirs = kd.DAQSummaryslice(stream)
        assert theirs.n_summary_frames == len(ours.frames)
        assert theirs.header.time_slice == ours.header.frame_index
        assert list(theirs.summary_frames) == ours.dom_ids.tolist()
        for frame, rates_hz in zip(ours.frames, ours.rates_hz, strict=True):
            dom_id = int(frame["dom_id"])
            assert theirs.dq_status[dom_id] == frame["daq"].tobytes()
            status = frame[["status", "fifo", "status_3", "status_4"]].tolist()
            assert np.array_equal(np.array(theirs.dom_status[dom_id]).astype(np.uint32), status)
            raw = frame["rates"].astype(int)
            theirs_hz = np.array(theirs.summary_frames[dom_id])
            low = raw < 128
            assert np.allclose(theirs_hz[low], rates_hz[low], rtol=1e-12)
            # km3pipe reads the byte as int8: v >= 128 becomes v - 256
            expected_wrong = [km3pipe_rate(v - 256) for v in raw[~low]]
            assert np.allclose(theirs_hz[~low], expected_wrong, rtol=1e-12)
            wrong += int((~low).sum())
    assert wrong == 314  # rates read as signed bytes (docs/daq-formats.md §4)


def test_legacy_summaryslice_where_km3pipe_is_right() -> None:
    """km3pipe reads 55-byte frames in legacy data (39 bytes): only header and frame 0 agree."""
    payloads = [m.payload for m in messages("IO_SUM_legacy.dat")]
    ours = daq.decode_summaryslice(payloads[0])
    stream = io.BytesIO(b"".join(payloads))
    kd.DAQPreamble(file_obj=stream)
    theirs = kd.DAQSummaryslice(stream, legacy=True)
    assert stream.tell() == 8 + 24 + 16 * 55 != len(payloads[0])  # reads past the message
    assert theirs.n_summary_frames == len(ours.frames) == 16
    assert theirs.header.run == ours.header.run
    assert next(iter(theirs.summary_frames)) == ours.dom_ids[0]
    assert list(theirs.summary_frames)[1] != ours.dom_ids[1] == 808430449
    with pytest.raises(struct.error):  # on the message alone
        stream = io.BytesIO(payloads[0])
        kd.DAQPreamble(file_obj=stream)
        kd.DAQSummaryslice(stream, legacy=True)


def test_monitoring_agrees_with_tmchdata() -> None:
    for message in messages("IO_MONIT.dat"):
        ours = daq.decode_monitoring(message.payload)
        theirs = kd.TMCHData(io.BytesIO(message.payload))
        assert (ours.run, ours.udp_sequence, ours.dom_id) == (
            theirs.run,
            theirs.udp_sequence_number,
            theirs.dom_id,
        )
        assert ours.utc_seconds == theirs.utc_seconds
        assert ours.utc_16ns_cycles * 16 == theirs.nanoseconds
        assert ours.dom_status == (
            theirs.dom_status_0,
            theirs.dom_status_1,
            theirs.dom_status_2,
            theirs.dom_status_3,
        )
        assert ours.rates_hz.tolist() == theirs.pmt_rates
        assert (ours.hrv, ours.flags) == (theirs.hrvbmp, theirs.flags)
        assert (ours.yaw, ours.pitch, ours.roll) == (theirs.yaw, theirs.pitch, theirs.roll)
        assert (ours.A, ours.G, ours.H) == (theirs.A, theirs.G, theirs.H)
        assert ours.temperature_c == theirs.temp
        assert ours.humidity_percent == theirs.humidity
        assert (ours.tdc_full, ours.aes_full, ours.flush_count) == (
            theirs.tdcfull,
            theirs.aesfull,
            theirs.flushc,
        )
        assert ours.ts_duration == theirs.ts_duration_ms


@pytest.mark.parametrize(
    "name", ["IO_TSSN.dat", "IO_TSL1_1003.dat", "IO_TSL0_legacy.dat", "IO_TSL1_legacy.dat"]
)
def test_timeslices_agree_with_timesliceparser(name: str) -> None:
    for message in messages(name):
        ours = daq.decode_timeslice(message.payload)
        parser = kd.TimesliceParser(legacy=ours.version is None)
        blob = parser.process({"RawBytes": message.payload})
        info = blob["TimesliceInfo"]
        assert info.frame_index[0] == ours.header.frame_index
        assert info.n_frames[0] == len(ours.frames)
        hits = blob["TSHits"]
        assert np.array_equal(ours.hits["dom_id"], hits.dom_id)
        assert np.array_equal(ours.hits["channel"], hits.channel_id)
        assert np.array_equal(ours.hits["time_ns"], hits.time)
        assert np.array_equal(ours.hits["tot"], hits.tot)
        for frame in ours.frames:
            theirs = blob["TimesliceFrameInfos"][int(frame["dom_id"])]
            assert theirs.n_hits[0] == frame["n_hits"]
            assert theirs.dataqueue_status[0] == frame["daq"]
            status = frame[["status", "fifo", "status_3", "status_4"]].tolist()
            assert theirs.dom_status.tolist() == list(status)
