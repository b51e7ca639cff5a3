"""Rate formula and HRV/FIFO bit order against the reference text dump of a summaryslice.

``online/KM3NeT_00000049_00008456.summaryslice-167941.txt`` prints, per DOM, each PMT's rate in
kHz (one decimal) followed by two digits: HRV bit, FIFO bit. The raw frames of the same slice
are in the matching ROOT file; in the ROOT streamer the frame is big-endian (dom id, five status
words, 31 rate bytes), so we read the basket bytes directly.
"""

from __future__ import annotations

import km3net_testdata
import numpy as np
import pytest

from km3mon.daq.preamble import DAQHeader
from km3mon.daq.summaryslice import (
    FRAME_DTYPE,
    RATES_HZ_LUT,
    Summaryslice,
    channel_bits,
    hz_to_rates,
    rates_to_hz,
)

STEM = "online/KM3NeT_00000049_00008456.summaryslice-167941"
ROOT_FRAME_DTYPE = FRAME_DTYPE.newbyteorder(">")
VECTOR_HEADER_SIZE = 10  # ROOT byte count (4), version (2), element count (4)


def reference() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """DOM ids, rates in kHz, HRV and FIFO digits from the text dump."""
    dom_ids, rates_khz, hrv, fifo = [], [], [], []
    with open(km3net_testdata.data_path(f"{STEM}.txt")) as text:
        for line in text:
            fields = line.split()
            dom_ids.append(int(fields[0]))
            rates_khz.append([float(v) for v in fields[1::2]])
            hrv.append([flags[0] == "1" for flags in fields[2::2]])
            fifo.append([flags[1] == "1" for flags in fields[2::2]])
    return np.array(dom_ids), np.array(rates_khz), np.array(hrv), np.array(fifo)


def test_rate_lut_matches_documented_values() -> None:
    assert RATES_HZ_LUT[0] == 0
    assert RATES_HZ_LUT[1] == pytest.approx(2054.9, abs=0.05)
    assert RATES_HZ_LUT[51] == pytest.approx(7962.1, abs=0.05)
    assert RATES_HZ_LUT[128] == pytest.approx(64108, abs=0.5)
    assert RATES_HZ_LUT[255] == pytest.approx(2.0e6)
    assert np.array_equal(hz_to_rates(RATES_HZ_LUT), np.arange(256))


def test_text_dump_rates_are_values_of_the_formula() -> None:
    """Every printed rate is within print precision of a decoded byte value."""
    _, rates_khz, _, _ = reference()
    nearest = rates_to_hz(hz_to_rates(rates_khz * 1e3)) / 1e3
    assert np.abs(nearest - rates_khz).max() <= 0.05 + 1e-9
    assert (rates_khz == 2000.0).sum() == 15 and (rates_khz == 0).sum() == 9


def test_root_frames_decode_to_the_text_dump() -> None:
    import uproot  # the reference reader: missing must fail, not skip

    with uproot.open(km3net_testdata.data_path(f"{STEM}.root")) as root:
        tree = root["KM3NET_SUMMARYSLICE"]
        basket = tree["vector<KM3NETDAQ::JDAQSummaryFrame>"].basket(0)
        raw = basket.data.tobytes()
    frames = np.frombuffer(raw, ROOT_FRAME_DTYPE, offset=VECTOR_HEADER_SIZE).astype(FRAME_DTYPE)
    dom_ids, rates_khz, hrv, fifo = reference()
    slice_ = Summaryslice(DAQHeader(49, 8456, 167941, 0, 0), frames)
    assert np.array_equal(slice_.dom_ids, dom_ids)
    assert np.abs(slice_.rates_hz / 1e3 - rates_khz).max() <= 0.05 + 1e-9
    assert np.array_equal(slice_.hrv, hrv)
    assert np.array_equal(slice_.fifo_full, fifo)
    assert hrv.sum() > 100 and fifo.sum() > 0  # the comparison is not vacuous
    assert slice_.white_rabbit.all() and slice_.udp_trailer.all()


def test_channel_bits_lsb_is_channel_0() -> None:
    bits = channel_bits(np.array([0b101, 1 << 30 | 1 << 31], np.uint32))
    assert np.flatnonzero(bits[0]).tolist() == [0, 2]
    assert np.flatnonzero(bits[1]).tolist() == [30]
