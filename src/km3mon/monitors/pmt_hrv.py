"""pmt_hrv: fraction of monitoring packets with the high-rate veto on, per PMT and interval."""

from __future__ import annotations

import argparse

import numpy as np

from km3mon.monitors.pmt_image import DUPlot, PMTImageMonitor
from km3mon.monitors.runtime import register_monitor


class PMTHRV(PMTImageMonitor):
    name = "pmt_hrv"
    help = "fraction of time each PMT was in high-rate veto, one image per DU"
    filename_pattern = "pmt_hrv_du{du}.png"

    def draw_images(self, axes, extent):
        import matplotlib.pyplot as plt

        cmap = plt.get_cmap("viridis").with_extremes(bad="#bdbdbd")
        image = axes.imshow(
            np.full((2, 2), np.nan), origin="lower", aspect="auto", interpolation="nearest",
            extent=extent, cmap=cmap, vmin=0, vmax=1,
        )  # fmt: skip
        colour_bar = axes.figure.colorbar(image, ax=axes, pad=0.01)
        colour_bar.set_label("fraction of packets with high-rate veto")
        return image, None

    def update_images(self, plot: DUPlot, du: int) -> None:
        plot.image.set_data(self.du_image(self.hrv, du))

    def title(self, du: int) -> str:
        return f"High-rate veto ratio, detector {self.detector.det_id} DU {du}"


def register(subparsers: argparse._SubParsersAction) -> None:
    register_monitor(subparsers, PMTHRV)
