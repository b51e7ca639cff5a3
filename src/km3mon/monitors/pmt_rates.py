"""pmt_rates: mean rate of every PMT per interval, per DU, over the last hours.

Colour range from ``[PMTRates] lowest_rate/highest_rate`` (Hz); PMTs whose high-rate veto
was on in more than ``hrv_ratio_threshold`` of the interval's packets are drawn over in
orange. The metrics JSON lists the PMTs out of range in the newest column.
"""

from __future__ import annotations

import argparse

import numpy as np

from km3mon.monitors.pmt_image import HIGHLIGHT, N_CHANNELS, PMTImageMonitor
from km3mon.monitors.runtime import Context, register_monitor

MAX_FLAGGED = 1000
UNDER_COLOUR, OVER_COLOUR, MISSING_COLOUR, HRV_COLOUR = "black", "#d01c8b", "#bdbdbd", "#e66101"


class PMTRates(PMTImageMonitor):
    name = "pmt_rates"
    help = "mean rate per PMT and interval, one image per DU (all DUs in one process)"
    filename_pattern = "pmt_rates_du{du}.png"
    colour_map = "cividis"
    special_colours = (UNDER_COLOUR, OVER_COLOUR, MISSING_COLOUR, HRV_COLOUR)

    def __init__(self, context: Context) -> None:
        super().__init__(context)
        self.settings = context.pipeline.pmt_rates

    def column_levels(self, rates_khz: np.ndarray, hrv_fraction: np.ndarray) -> np.ndarray:
        low, high = self.settings.lowest_rate_hz / 1e3, self.settings.highest_rate_hz / 1e3
        levels = self.scale_levels(rates_khz, low, high)
        levels[hrv_fraction > self.settings.hrv_ratio_threshold] = HIGHLIGHT
        return levels

    def colour_scale(self) -> tuple[float, float, str, str]:
        low, high = self.settings.lowest_rate_hz / 1e3, self.settings.highest_rate_hz / 1e3
        return low, high, "both", "mean PMT rate [kHz]"

    def title(self, du: int) -> str:
        low, high = self.settings.lowest_rate_hz / 1e3, self.settings.highest_rate_hz / 1e3
        return (
            f"Mean PMT rates, detector {self.detector.det_id} DU {du}: colours {low:g} to "
            f"{high:g} kHz\norange: high-rate veto in more than "
            f"{self.settings.hrv_ratio_threshold:.0%} of an interval"
        )

    def render(self) -> None:
        super().render()
        self.context.save_metrics("pmt_rates", self.newest_column_summary())

    def newest_column_summary(self) -> dict[str, object]:
        """Per DU the median rate of the newest column and the PMTs out of range or in HRV."""
        newest = self.ring.newest
        rates_hz = self.newest_rates_khz * 1e3
        hrv = self.newest_hrv
        low, high = self.settings.lowest_rate_hz, self.settings.highest_rate_hz
        flagged: list[dict[str, object]] = []
        for kind, mask in (
            ("above", rates_hz > high),
            ("below", rates_hz < low),
            ("hrv", hrv > self.settings.hrv_ratio_threshold),
        ):
            room = MAX_FLAGGED - len(flagged)  # an HRV storm flags thousands: list the first
            slots, channels = np.nonzero(mask)
            for slot, channel in zip(slots[:room], channels[:room], strict=True):
                dom = self.slots.dom_index[slot]
                flagged.append(
                    {
                        "kind": kind,
                        "dom_id": int(self.detector.dom_ids[dom]),
                        "du": int(self.detector.dom_du[dom]),
                        "floor": int(self.detector.dom_floor[dom]),
                        "channel": int(channel),
                        "rate_hz": round(float(rates_hz[slot, channel]), 1),
                        "hrv_fraction": round(float(hrv[slot, channel]), 3),
                    }
                )
        median = {}
        for du in self.dus:
            of_du = rates_hz[self.du_of_slot == du]
            median[str(du)] = float(np.nanmedian(of_du)) if np.isfinite(of_du).any() else None
        return {
            "column_start": float(self.ring.starts_s[newest]),
            "median_rate_hz": median,
            "flagged": flagged,
            "n_channels": N_CHANNELS,
        }


def register(subparsers: argparse._SubParsersAction) -> None:
    register_monitor(subparsers, PMTRates)
