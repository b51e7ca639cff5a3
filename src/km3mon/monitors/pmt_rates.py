"""pmt_rates: mean rate of every PMT per interval, per DU, over the last hours.

Colour range from ``[PMTRates] lowest_rate/highest_rate`` (Hz); PMTs whose high-rate veto
was on in more than ``hrv_ratio_threshold`` of the interval's packets are drawn over in
orange. The metrics JSON lists the PMTs out of range in the newest column.
"""

from __future__ import annotations

import argparse

import numpy as np

from km3mon.monitors.pmt_image import N_CHANNELS, DUPlot, PMTImageMonitor
from km3mon.monitors.runtime import Context, register_monitor

MAX_FLAGGED = 1000
UNDER_COLOUR, OVER_COLOUR, MISSING_COLOUR, HRV_COLOUR = "black", "#d01c8b", "#bdbdbd", "#e66101"


class PMTRates(PMTImageMonitor):
    name = "pmt_rates"
    help = "mean rate per PMT and interval, one image per DU (all DUs in one process)"
    filename_pattern = "pmt_rates_du{du}.png"

    def __init__(self, context: Context) -> None:
        super().__init__(context)
        self.settings = context.pipeline.pmt_rates

    def draw_images(self, axes, extent):
        import matplotlib.pyplot as plt
        from matplotlib.colors import ListedColormap

        cmap = plt.get_cmap("cividis").with_extremes(
            under=UNDER_COLOUR, over=OVER_COLOUR, bad=MISSING_COLOUR
        )
        blank = np.full((2, 2), np.nan)
        image = axes.imshow(
            blank, origin="lower", aspect="auto", interpolation="nearest", extent=extent,
            cmap=cmap, vmin=self.settings.lowest_rate_hz / 1e3,
            vmax=self.settings.highest_rate_hz / 1e3,
        )  # fmt: skip
        overlay = axes.imshow(
            np.ma.masked_all((2, 2)), origin="lower", aspect="auto", interpolation="nearest",
            extent=extent, cmap=ListedColormap([HRV_COLOUR]), vmin=0, vmax=1,
        )  # fmt: skip
        colour_bar = axes.figure.colorbar(image, ax=axes, extend="both", pad=0.01)
        colour_bar.set_label("mean PMT rate [kHz]")
        return image, overlay

    def update_images(self, plot: DUPlot, du: int) -> None:
        plot.image.set_data(self.du_image(self.rates_khz, du))
        hrv = self.du_image(self.hrv, du)
        assert plot.overlay is not None
        plot.overlay.set_data(np.ma.masked_where(~(hrv > self.settings.hrv_ratio_threshold), hrv))

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
        rates_hz = self.rates_khz[:, :, newest].astype(np.float64) * 1e3
        hrv = self.hrv[:, :, newest].astype(np.float64)
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
        with np.errstate(all="ignore"):
            median = {
                str(du): float(np.nanmedian(rates_hz[self.rows_by_du[du][0]]))
                if np.isfinite(rates_hz[self.rows_by_du[du][0]]).any()
                else None
                for du in self.dus
            }
        return {
            "column_start": float(self.ring.starts_s[newest]),
            "median_rate_hz": median,
            "flagged": flagged,
            "n_channels": N_CHANNELS,
        }


def register(subparsers: argparse._SubParsersAction) -> None:
    register_monitor(subparsers, PMTRates)
