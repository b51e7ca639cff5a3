"""Trigger bits, rate and channel-bit helpers, encoder checks."""

from __future__ import annotations

import numpy as np
import pytest

from km3mon import daq
from km3mon.daq.summaryslice import channel_bits, channel_word
from km3mon.daq.triggers import TRIGGERS, is_triggered_by, trigger_mask, trigger_names
from tests.daq.conftest import messages


def test_trigger_bits_from_the_table() -> None:
    assert {t.name: t.bit for t in TRIGGERS} == {
        "3DShower": 1,
        "MXShower": 2,
        "3DMuon": 4,
        "NB": 5,
        "FactoryLimit": 31,
    }
    assert trigger_mask("3DShower", "MXShower", "3DMuon") == 0x16
    assert trigger_names(0x12) == ["3DShower", "3DMuon"]
    assert trigger_names(0x1) == []
    assert is_triggered_by(0x16, "3DMuon") and not is_triggered_by(0x16, "NB")
    masks = np.array([0x2, 0x10, 0x16], np.uint64)
    assert is_triggered_by(masks, "3DMuon").tolist() == [False, True, True]
    with pytest.raises(ValueError, match="unknown trigger 'Muon'"):
        trigger_mask("Muon")


def test_channel_word_inverts_channel_bits() -> None:
    words = np.array([0, 1, 0x7FFFFFFF, 0x12345678 & 0x7FFFFFFF], np.uint32)
    assert np.array_equal(channel_word(channel_bits(words)), words)


def test_legacy_summaryslice_cannot_carry_current_only_words() -> None:
    slice_ = daq.decode_summaryslice(messages("IO_SUM_legacy.dat")[0].payload)
    frames = slice_.frames.copy()
    frames["fifo"][0] = 1
    with pytest.raises(daq.DAQFormatError, match="legacy summary frames cannot carry"):
        daq.encode(daq.Summaryslice(slice_.header, frames, None))


def test_timeslice_encoder_checks_hit_counts() -> None:
    timeslice = daq.decode_timeslice(messages("IO_TSSN.dat")[2].payload)
    with pytest.raises(daq.DAQFormatError, match="announce 54 hits, 53 hits given"):
        daq.encode(
            daq.Timeslice(
                timeslice.data_type, timeslice.header, timeslice.frames, timeslice.hits[:-1]
            )
        )


def test_monitoring_packet_derived_values() -> None:
    packet = daq.decode_monitoring(messages("IO_MONIT.dat")[0].payload)
    assert packet.rates_hz.shape == (31,) and not packet.hrv_bits.any()
    assert not packet.fifo_bits.any() and not packet.ahrs_valid
    assert packet.timestamp == pytest.approx(541.5)
    assert daq.tag_of(packet) == "IO_MONIT"
    with pytest.raises(daq.DAQFormatError, match="unknown structure version code 2"):
        daq.encode(daq.MonitoringPacket(**{**_fields(packet), "flags": 0b100}))


def _fields(packet: daq.MonitoringPacket) -> dict:
    return {name: getattr(packet, name) for name in packet.__dataclass_fields__}
