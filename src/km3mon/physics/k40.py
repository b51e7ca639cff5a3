"""K40 PMT-pair geometry, a calibration period's result and what it says about each PMT.

The counting is :mod:`.twofolds`, the fits :mod:`.k40_fit`; the monitor that schedules them
is :mod:`km3mon.monitors.k40`, its figures :mod:`km3mon.figures.k40`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from km3mon.daq.summaryslice import N_CHANNELS
from km3mon.physics.twofolds import PAIR_I, PAIR_J

if TYPE_CHECKING:
    from km3mon.physics.k40_fit import DOMCalibration

#: A PMT with at least this mean singles rate (summary slices, veto excluded) "has singles".
MIN_SINGLES_HZ = 1000.0
#: "No K40 peak": the net coincidences of the PMT's pairs below this share of what a PMT of
#: its DOM has on average, when that average is at least MIN_EXPECTED_COINCIDENCES (a short
#: period cannot tell a missing peak from a small one).
NO_PEAK_FRACTION = 0.25
MIN_EXPECTED_COINCIDENCES = 200.0
#: Pair -> its two PMTs, as a (465, 31) incidence matrix (sums over a PMT's pairs).
PMT_OF_PAIR = np.zeros((len(PAIR_I), N_CHANNELS))
PMT_OF_PAIR[np.arange(len(PAIR_I)), PAIR_I] = PMT_OF_PAIR[np.arange(len(PAIR_I)), PAIR_J] = 1.0


@dataclass
class PeriodResult:
    """One calibration period: its DAQ time span, livetime and solution."""

    utc_start: float
    utc_end: float
    livetime_s: np.ndarray
    calibration: DOMCalibration
    mean_ns: np.ndarray
    rate_hz: np.ndarray
    valid: np.ndarray
    #: Mean singles rate per slot and channel over the period's summary slices (veto: 0).
    singles_hz: np.ndarray
    #: Net (background-subtracted) coincidences of each PMT's pairs, fitted or not.
    pmt_net: np.ndarray


def accidentals_per_bin(
    rates_product_sum: np.ndarray, summary_frames: np.ndarray, livetime_s: np.ndarray
) -> np.ndarray:
    """Accidental coincidences expected in each 1-ns Δt bin of each DOM's pairs over a period:
    the mean of r_i r_j over its summary slices (``rates_product_sum`` / ``summary_frames``)
    × 1 ns × the DOM's ``livetime_s``. A slice in high-rate veto counts r = 0, so the mean
    over all slices × the livetime of all is the sum over the live ones. A DOM without
    summary slices gets 0: its pairs are fitted without subtraction."""
    frames = np.maximum(summary_frames, 1)
    mean_product = rates_product_sum.astype(np.float64) / frames[:, None]
    background = mean_product * 1e-9 * livetime_s[:, None]
    background[summary_frames == 0] = 0.0
    return background


def pair_cos_angles(directions: np.ndarray) -> np.ndarray:
    """Cosine of the angle between the two PMTs of every pair, per DOM, from (slot, channel,
    3) PMT directions (NaN where a PMT is missing gives 0)."""
    d = np.nan_to_num(directions)
    return np.einsum("npk,npk->np", d[:, PAIR_I], d[:, PAIR_J])


def pmt_sums(per_pair: np.ndarray) -> np.ndarray:
    """Per DOM and PMT, the sum over the PMT's pairs of a (slot, pair) quantity."""
    return per_pair @ PMT_OF_PAIR


def out_of_tolerance(t0_ns: np.ndarray, t0_error_ns: np.ndarray, tolerance_ns: float):
    """PMTs whose offset is out of tolerance (and measured well enough to say so)."""
    with np.errstate(invalid="ignore"):
        return (np.abs(t0_ns) > tolerance_ns) & (t0_error_ns < tolerance_ns / 2)


def no_peak(
    present: np.ndarray, t0_ns: np.ndarray, pmt_net: np.ndarray, singles_hz: np.ndarray
) -> np.ndarray:
    """PMTs with singles but without a coincidence peak, where their DOM's measured PMTs
    have so many coincidences that a missing peak is no chance: light arrives, but not in
    time with the other PMTs' (t0 far off)."""
    measured = np.isfinite(t0_ns)
    typical = np.where(measured, pmt_net, 0.0).sum(axis=1) / np.maximum(measured.sum(axis=1), 1)
    return (
        present
        & ~measured
        & (singles_hz >= MIN_SINGLES_HZ)
        & (typical >= MIN_EXPECTED_COINCIDENCES)[:, None]
        & (pmt_net < NO_PEAK_FRACTION * typical[:, None])
    )


def rms_ns(offsets_ns: np.ndarray) -> np.ndarray:
    """RMS of each DOM's measured PMT offsets (NaN for a DOM without any)."""
    measured = np.isfinite(offsets_ns)
    count = measured.sum(axis=1)
    squares = np.where(measured, offsets_ns, 0.0) ** 2
    return np.where(count > 0, np.sqrt(squares.sum(axis=1) / np.maximum(count, 1)), np.nan)
