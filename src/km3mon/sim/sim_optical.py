"""PMT rates and CLB slow control of every DOM, encoded as ``IO_SUM`` and ``IO_MONIT`` payloads.

Rates: each PMT has a K40-like base rate (log-normal around :data:`MEDIAN_RATE_HZ`, so most
lie in 6.5-8.5 kHz and a DOM sums to 220-250 kHz, like quiet real DOMs), each DOM a slow drift
and occasional bioluminescence bursts (a jump to ``BURST_FACTOR_*`` x the base rate, decaying
with :data:`BURST_DECAY_S`). The hits counted in a timeslice (normal approximation of Poisson,
fine for ~700 counts per 100 ms) feed both the TMCH hit counts and the summary-slice rate
bytes, so both streams agree for the same DOM and time (up to the 2.7 % steps of the rate
byte). PMTs above :data:`HRV_THRESHOLD_HZ` get their high-rate-veto bit, above
:data:`FIFO_THRESHOLD_HZ` their FIFO-almost-full bit.

Orientation: every DOM has a heading that swings slowly by a few degrees (the DU twisting in
the current, :data:`YAW_SWING_DEG`) and a small tilt; the A (gravity, g) and H (Earth field,
gauss) vectors are built so that :func:`km3mon.detector.fit_ahrs` with identity calibration
returns exactly that yaw, pitch and roll (plus sensor noise).

Speed: all of it is numpy over ``(n_clbs, 31)`` arrays; the TMCH packets live in one
pre-framed array (ControlHost prefix + packet per row) whose dynamic fields are overwritten in
place, so a timeslice of 4370 packets is a handful of array assignments and one ``tobytes``.
"""

from __future__ import annotations

import numpy as np

from km3mon.controlhost import encode_prefix
from km3mon.daq.monitoring import PACKET_DTYPE, new_packets
from km3mon.daq.monitoring import TAG as MONIT_TAG
from km3mon.daq.preamble import DAQHeader
from km3mon.daq.summaryslice import (
    FRAME_DTYPE,
    N_CHANNELS,
    UDP_COUNT_BITS,
    UDP_TRAILER_BIT,
    WHITE_RABBIT_BIT,
    Summaryslice,
    channel_word,
    encode_summaryslice,
    hz_to_rates,
)
from km3mon.detector import Detector

TIMESLICE_S = 0.1
MEDIAN_RATE_HZ = 7_400.0  # x 31 PMTs: ~230 kHz per DOM, as quiet real DOMs (220-250 kHz)
RATE_SPREAD = 0.12  # sigma of ln(rate) between PMTs
DRIFT_AMPLITUDE = 0.05
DRIFT_PERIOD_S = (300.0, 1800.0)
BURST_PROBABILITY_PER_S = 1.0 / 900.0  # per DOM
BURST_FACTOR_MEDIAN = 2.5
BURST_FACTOR_SPREAD = 0.8  # sigma of ln(factor - 1)
BURST_DECAY_S = 2.0
BURST_SENSITIVITY = (0.6, 1.4)  # range of the per-PMT share of a DOM's burst
HRV_THRESHOLD_HZ = 20_000.0
FIFO_THRESHOLD_HZ = 200_000.0
MAX_COUNTS = 200_000  # per 100 ms: the 2 MHz top of the rate byte

#: Bytes of hit data per UDP datagram and per hit (optical TTDC stream).
UDP_PAYLOAD_BYTES = 8_972
HIT_BYTES = 6
UDP_LOSS_PROBABILITY = 2e-4  # per DOM and timeslice
#: A DOM of the ``udp-loss`` scenario: a timeslice whose packets all fail to arrive (no frame
#: at all), and otherwise each packet (trailer included) lost on its own: about half of its
#: frames incomplete, 9 of 10 frames per second.
LOSSY_FRAME_LOSS_PROBABILITY = 0.1
LOSSY_PACKET_LOSS_PROBABILITY = 0.04

#: AHRS model: Earth field in the Mediterranean, heading swing and tilt of the DOMs. A DU
#: twists slowly with the sea current: a few degrees over hours (tidal and inertial periods of
#: 12-18 h), not tens of degrees in minutes, so a DOM's 1.8 s mean stays within a few degrees of
#: its median over the hour. Sensor noise per reading as the CLB's compass and accelerometer
#: (a few mgauss and mg): 0.4° in yaw and 0.1° in pitch and roll.
EARTH_FIELD_GAUSS = 0.45
FIELD_INCLINATION_DEG = 55.0
GRAVITY_G = 1.0
YAW_SWING_DEG = (0.5, 3.0)
YAW_PERIOD_S = (12 * 3600.0, 18 * 3600.0)
TILT_SIGMA_DEG = 2.0
WOBBLE_DEG = 0.1
WOBBLE_PERIOD_S = (20.0, 60.0)
A_NOISE_G = 0.002
H_NOISE_GAUSS = 0.002
GYRO_NOISE_DEG_S = 0.3

TEMPERATURE_C = (31.0, 2.0)  # mean, sigma between DOMs
HUMIDITY_PERCENT = (17.0, 2.0)
TEMPERATURE_DAILY_C = 0.3  # amplitude of a daily swing
TEMPERATURE_NOISE_C = 0.02
HUMIDITY_NOISE_PERCENT = 0.05
DAY_S = 86_400.0
SUPERTIME_FIFO_MAX = 16
TS_DURATION_US = 100_000
PACKET_SIZE = PACKET_DTYPE.itemsize

#: Count per 100 ms -> summary-slice rate byte, for every possible count.
RATE_BYTE_BY_COUNT = hz_to_rates(np.arange(MAX_COUNTS + 1) / TIMESLICE_S)

#: A TMCH packet with its ControlHost prefix: the row layout of the pre-framed buffer.
FRAMED_PACKET_DTYPE = np.dtype([("prefix", "S16"), ("packet", PACKET_DTYPE)])

_WR = np.uint32(1 << WHITE_RABBIT_BIT)


class OpticalModel:
    """Rates, bits and slow control of all CLBs (detector DOM order), one timeslice per call."""

    def __init__(self, detector: Detector, rng: np.random.Generator) -> None:
        self.rng = rng
        n = len(detector.dom_ids)
        self.optical = detector.n_pmts > 0
        has_pmt = np.arange(N_CHANNELS) < detector.n_pmts[:, None]
        self.base_rate_hz = np.where(
            has_pmt, MEDIAN_RATE_HZ * np.exp(RATE_SPREAD * rng.standard_normal((n, N_CHANNELS))), 0
        )
        self.burst_sensitivity = rng.uniform(*BURST_SENSITIVITY, (n, N_CHANNELS))
        self.burst = np.zeros(n)
        self.drift_period_s = rng.uniform(*DRIFT_PERIOD_S, n)
        self.drift_phase = rng.uniform(0, 2 * np.pi, n)

        self.yaw0_deg = rng.uniform(0, 360, n)
        self.yaw_swing_deg = rng.uniform(*YAW_SWING_DEG, n)
        self.yaw_period_s = rng.uniform(*YAW_PERIOD_S, n)
        self.tilt0_deg = rng.normal(0, TILT_SIGMA_DEG, (2, n))
        self.wobble_period_s = rng.uniform(*WOBBLE_PERIOD_S, (2, n))
        self.phase = rng.uniform(0, 2 * np.pi, (3, n))
        self.temperature_c = rng.normal(*TEMPERATURE_C, n)
        self.humidity_percent = rng.normal(*HUMIDITY_PERCENT, n)

        self.monit = np.zeros(n, FRAMED_PACKET_DTYPE)
        self.monit["prefix"] = encode_prefix(MONIT_TAG, PACKET_SIZE)
        packets = self.monit["packet"]
        packets[:] = new_packets(n, version=3)
        packets["dom_id"] = detector.dom_ids
        packets["flags"] |= self.optical.astype(np.uint32)  # AHRS valid where there is one
        packets["ts_duration"] = TS_DURATION_US

        self.frames = np.zeros(int(self.optical.sum()), FRAME_DTYPE)
        self.frames["dom_id"] = detector.dom_ids[self.optical]

        self.counts = np.zeros((n, N_CHANNELS), np.int64)
        self.rates_hz = np.zeros((n, N_CHANNELS))

    # -- physics ------------------------------------------------------------------------

    def update(self, elapsed_s: float, rate_factor: np.ndarray) -> None:
        """Advance to the timeslice starting ``elapsed_s`` after the start; count its hits."""
        n = len(self.burst)
        self.burst *= np.exp(-TIMESLICE_S / BURST_DECAY_S)
        starts = self.optical & (self.rng.random(n) < BURST_PROBABILITY_PER_S * TIMESLICE_S)
        if starts.any():
            size = BURST_FACTOR_MEDIAN * np.exp(BURST_FACTOR_SPREAD * self.rng.standard_normal())
            self.burst[starts] += size
        drift = 1 + DRIFT_AMPLITUDE * np.sin(
            2 * np.pi * elapsed_s / self.drift_period_s + self.drift_phase
        )
        factor = drift[:, None] * (1 + self.burst[:, None] * self.burst_sensitivity)
        expected = self.base_rate_hz * factor * rate_factor * TIMESLICE_S
        noise = self.rng.standard_normal(expected.shape, dtype=np.float32)
        counts = np.rint(expected + np.sqrt(expected) * noise)
        self.counts = np.clip(counts, 0, MAX_COUNTS).astype(np.int64)
        self.rates_hz = self.counts / TIMESLICE_S

    def orientation_deg(self, elapsed_s: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """True yaw, pitch, roll of every CLB at ``elapsed_s`` (slow, continuous)."""
        yaw = self.yaw0_deg + self.yaw_swing_deg * np.sin(
            2 * np.pi * elapsed_s / self.yaw_period_s + self.phase[0]
        )
        tilt = self.tilt0_deg + WOBBLE_DEG * np.sin(
            2 * np.pi * elapsed_s / self.wobble_period_s + self.phase[1:]
        )
        return np.mod(yaw, 360.0), tilt[0], tilt[1]

    def ahrs_vectors(
        self, yaw_deg: np.ndarray, pitch_deg: np.ndarray, roll_deg: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Raw accelerometer and magnetometer vectors ``(n, 3)`` that give these angles.

        Inverts the tilt-compensated compass of ``fit_ahrs``: gravity in the (y, z negated)
        sensor frame is ``g (sin p, -cos p sin r, -cos p cos r)``; the field's horizontal
        components along the heading and the vertical one are rotated back through the
        orthonormal tilt matrix whose first two rows are the ones ``fit_ahrs`` applies.
        """
        yaw, pitch, roll = np.radians(yaw_deg), np.radians(pitch_deg), np.radians(roll_deg)
        sp, cp, sr, cr = np.sin(pitch), np.cos(pitch), np.sin(roll), np.cos(roll)
        acc = GRAVITY_G * np.column_stack((sp, -cp * sr, -cp * cr))
        inclination = np.radians(FIELD_INCLINATION_DEG)
        horizontal = EARTH_FIELD_GAUSS * np.cos(inclination)
        along = np.column_stack(
            (
                horizontal * np.cos(yaw),
                horizontal * np.sin(yaw),
                np.full_like(yaw, EARTH_FIELD_GAUSS * np.sin(inclination)),
            )
        )
        zero = np.zeros_like(yaw)
        row_x = np.stack((cp, sp * sr, sp * cr), axis=-1)
        row_y = np.stack((zero, -cr, sr), axis=-1)
        tilt = np.stack((row_x, row_y, np.cross(row_x, row_y)), axis=1)
        mag = np.einsum("nij,ni->nj", tilt, along)
        flip = np.array([1.0, -1.0, -1.0])  # the DOM hangs upside down
        noise = self.rng.standard_normal((2, *acc.shape))
        return acc * flip + A_NOISE_G * noise[0], mag * flip + H_NOISE_GAUSS * noise[1]

    # -- encoding -----------------------------------------------------------------------

    def summaryslice(
        self,
        header: DAQHeader,
        silent: np.ndarray,
        wr_lost: np.ndarray,
        udp_lossy: np.ndarray | None = None,
    ) -> bytes:
        """The ``IO_SUM`` payload: one frame per optical DOM that is not silent.

        UDP packets of a frame carry sequence numbers 0, 1, ... and a trailer; the frame's
        ``daq`` word counts those received (low 16 bits) and holds the highest sequence number
        received (high 16 bits), the trailer sets ``fifo`` bit 31. Lost packets lose their hits,
        so the rates count only those that arrived; a frame of which nothing arrived does not
        exist. ``self.frames`` keeps every optical DOM's frame (one that did not arrive: no
        packets, no trailer), for the timeslices of the same slice.
        """
        optical_counts = self.counts[self.optical]
        frames = self.frames
        hits = optical_counts.sum(axis=1)
        n_udp = 1 + -(-hits * HIT_BYTES // UDP_PAYLOAD_BYTES)
        received = n_udp - (self.rng.random(len(hits)) < UDP_LOSS_PROBABILITY)
        highest = n_udp - 1
        trailer = np.ones(len(hits), bool)
        alive = ~silent[self.optical]
        lossy = [] if udp_lossy is None else np.flatnonzero(udp_lossy[self.optical]).tolist()
        counts = optical_counts.copy() if lossy else optical_counts
        for row in lossy:
            arrived = self.rng.random(n_udp[row] + 1) >= LOSSY_PACKET_LOSS_PROBABILITY
            if self.rng.random() < LOSSY_FRAME_LOSS_PROBABILITY:
                arrived[:] = False
            data = arrived[:-1]  # the trailer comes last
            received[row] = data.sum()
            highest[row] = np.flatnonzero(data)[-1] if data.any() else 0
            trailer[row] = arrived[-1]
            alive[row] &= bool(arrived.any())
            counts[row] = counts[row] * received[row] // n_udp[row]
        frames["rates"] = RATE_BYTE_BY_COUNT[counts]
        frames["daq"] = highest << UDP_COUNT_BITS | received
        wr_ok = ~wr_lost[self.optical]
        frames["status"] = channel_word(self.rates_hz[self.optical] > HRV_THRESHOLD_HZ) | (
            wr_ok * _WR
        )
        frames["fifo"] = self.fifo_words()[self.optical] | (
            trailer * np.uint32(1 << UDP_TRAILER_BIT)
        )
        return encode_summaryslice(Summaryslice(header, frames if alive.all() else frames[alive]))

    def fifo_words(self) -> np.ndarray:
        return channel_word(self.rates_hz > FIFO_THRESHOLD_HZ)

    def monitoring_frames(
        self, header: DAQHeader, elapsed_s: float, silent: np.ndarray, wr_lost: np.ndarray
    ) -> bytes:
        """ControlHost frames of the ``IO_MONIT`` packets of every CLB that is not silent."""
        packets = self.monit["packet"]
        n = len(packets)
        packets["run"] = header.run
        packets["utc_seconds"] = header.utc_seconds
        packets["utc_16ns_cycles"] = header.utc_16ns_cycles
        packets["dom_status"][:, 0] = (~wr_lost) * _WR
        packets["hit_counts"] = self.counts
        packets["hrv"] = channel_word(self.rates_hz > HRV_THRESHOLD_HZ)
        packets["tdc_full"] = self.fifo_words()
        yaw, pitch, roll = self.orientation_deg(elapsed_s)
        acc, mag = self.ahrs_vectors(yaw, pitch, roll)
        optical = self.optical[:, None]
        packets["yaw"] = np.where(self.optical, yaw, 0)
        packets["pitch"] = np.where(self.optical, pitch, 0)
        packets["roll"] = np.where(self.optical, roll, 0)
        packets["A"] = np.where(optical, acc, 0)
        packets["H"] = np.where(optical, mag, 0)
        packets["G"] = np.where(optical, GYRO_NOISE_DEG_S * self.rng.standard_normal((n, 3)), 0)
        daily = TEMPERATURE_DAILY_C * np.sin(2 * np.pi * elapsed_s / DAY_S)
        temperature = self.temperature_c + daily + TEMPERATURE_NOISE_C * self.rng.standard_normal(n)
        humidity = self.humidity_percent + HUMIDITY_NOISE_PERCENT * self.rng.standard_normal(n)
        packets["temperature"] = np.rint(np.clip(temperature, 0, 100) * 100)
        packets["humidity"] = np.rint(np.clip(humidity, 0, 100) * 100)
        packets["tdc_supertime_fifo_size"] = self.rng.integers(0, SUPERTIME_FIFO_MAX, n)
        monit = self.monit if not silent.any() else self.monit[~silent]
        return monit.tobytes()
