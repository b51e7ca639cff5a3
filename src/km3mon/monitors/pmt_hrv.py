"""pmt_hrv: fraction of monitoring packets with the high-rate veto on, per PMT and interval."""

from __future__ import annotations

import argparse

import numpy as np

from km3mon.runtime.monitor import register_monitor
from km3mon.runtime.pmt_image import PMTImageMonitor


class PMTHRV(PMTImageMonitor):
    name = "pmt_hrv"
    help = "fraction of time each PMT was in high-rate veto, one image per DU"
    filename_pattern = "pmt_hrv_du{du}.png"
    colour_map = "viridis"
    special_colours = ("black", "white", "#bdbdbd", "white")

    def column_levels(self, rates_khz: np.ndarray, hrv_fraction: np.ndarray) -> np.ndarray:
        return self.scale_levels(hrv_fraction, 0.0, 1.0)

    def colour_scale(self) -> tuple[float, float, str, str]:
        return 0.0, 1.0, "neither", "fraction of packets with high-rate veto"

    def title(self, du: int) -> str:
        return f"High-rate veto ratio, detector {self.detector.det_id} DU {du}"


def register(subparsers: argparse._SubParsersAction) -> None:
    register_monitor(subparsers, PMTHRV)
