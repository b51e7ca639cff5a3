"""A detector's PMTs laid out as (slot, channel) tables: one row per chosen DOM, one column
per TDC channel. Kernels work on these dense tables instead of the DETX's flat PMT list."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from km3mon.daq.summaryslice import N_CHANNELS

if TYPE_CHECKING:
    from km3mon.detector import Detector


def pmt_table(
    detector: Detector, dom_index: np.ndarray, values: np.ndarray, fill: object
) -> np.ndarray:
    """``values`` (one per DETX PMT, any trailing shape) as a (slot, channel, ...) table.

    Slot ``i`` is the DOM ``dom_index[i]``; PMTs of other DOMs and channels beyond the 31 of
    a DOM are left out, and cells without a PMT hold ``fill``.
    """
    values = np.asarray(values)
    slot_of_dom = np.full(len(detector.dom_ids) + 1, -1)
    slot_of_dom[dom_index] = np.arange(len(dom_index))
    slot = slot_of_dom[detector.pmt_dom_index]
    usable = (slot >= 0) & (detector.pmt_channel < N_CHANNELS)
    table = np.full((len(dom_index), N_CHANNELS, *values.shape[1:]), fill, values.dtype)
    table[slot[usable], detector.pmt_channel[usable]] = values[usable]
    return table
