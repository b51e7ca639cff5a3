"""pmt_rates: mean rate and high-rate-veto fraction of every PMT per interval, per DU, over the
last hours: ``pmt_rates_du<N>.png`` and ``pmt_hrv_du<N>.png`` from one decode of IO_MONIT.

Colour range from ``[PMTRates] lowest_rate/highest_rate`` (Hz); PMTs whose high-rate veto
was on in more than ``hrv_ratio_threshold`` of the interval's packets are drawn over in
orange. The metrics JSON lists the PMTs out of range in the newest column.

A PMT is *hot* (listed as ``hot``, alerted by ``pmt_hot``) when its mean rate is above
``highest_rate`` and more than ``hot_factor`` times the median of its DOM's PMTs in the same
interval. The colour scale's top alone is no alarm: bioluminescence lifts every PMT of a DOM
(quiet K40 background of a 3" PMT is 5-10 kHz, a burst doubles or triples it), a broken or
flashing PMT stands out of its own DOM.

Above the per-DU images, ``pmt_rates_summary.png`` shows the whole detector: per DOM the
number of PMTs out of range or in high-rate veto in the newest interval (hatched: the DOM
sent nothing), so a hot PMT or a silent DOM among 4 000 is one odd cell.
"""

from __future__ import annotations

import argparse
import time
import warnings
from typing import TYPE_CHECKING

import numpy as np

from km3mon.figures.summary_map import NO_DATA, DUFloorMap, Panel, hatch_legend_handle
from km3mon.runtime.monitor import Context, register_monitor
from km3mon.runtime.pmt_image import (
    HIGHLIGHT,
    N_CHANNELS,
    HRVImage,
    LevelColumns,
    PMTImage,
    PMTImageMonitor,
    scale_levels,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

#: PMTs listed per kind of flag in the metrics (counts per DOM are in the summary).
MAX_FLAGGED = 1000
UNDER_COLOUR, OVER_COLOUR, MISSING_COLOUR, HRV_COLOUR = "black", "#d01c8b", "#bdbdbd", "#e66101"
#: Summary levels: flagged PMTs of a DOM in [FLAG_BINS[k], FLAG_BINS[k + 1]) are level k,
#: drawn from pale blue (none) through a sequential orange-red (colour-blind safe: the
#: lightness alone orders them).
FLAG_BINS = (0, 1, 2, 3, 5, 9, 17, N_CHANNELS + 1)
FLAG_LABELS = ("0", "1", "2", "3–4", "5–8", "9–16", "17–31")
FLAG_COLOURS = ("#d6e4f0", "#fdd49e", "#fdae6b", "#f16913", "#d94801", "#a63603", "#4a1a03")
SUMMARY = "pmt_rates_summary"


class RateImage(PMTImage):
    """Mean rate, in the colour range of ``[PMTRates]``; PMTs in high-rate veto over
    ``hrv_ratio_threshold`` of the interval in orange."""

    filename_pattern = "pmt_rates_du{du}.png"
    colour_map = "cividis"
    special_colours = (UNDER_COLOUR, OVER_COLOUR, MISSING_COLOUR, HRV_COLOUR)

    def __init__(self, context: Context, levels: LevelColumns) -> None:
        super().__init__(context, levels)
        self.settings = context.pipeline.pmt_rates

    def column_levels(self, rates_khz: np.ndarray, hrv_fraction: np.ndarray) -> np.ndarray:
        low, high = self.settings.lowest_rate_hz / 1e3, self.settings.highest_rate_hz / 1e3
        levels = scale_levels(rates_khz, low, high)
        levels[hrv_fraction > self.settings.hrv_ratio_threshold] = HIGHLIGHT
        return levels

    def colour_scale(self) -> tuple[float, float, str, str]:
        low, high = self.settings.lowest_rate_hz / 1e3, self.settings.highest_rate_hz / 1e3
        return low, high, "both", "mean PMT rate [kHz]"

    def title(self, du: int) -> str:
        low, high = self.settings.lowest_rate_hz / 1e3, self.settings.highest_rate_hz / 1e3
        return (
            f"Mean PMT rates, detector {self.det_id} DU {du}: colours {low:g} to "
            f"{high:g} kHz\norange: high-rate veto in more than "
            f"{self.settings.hrv_ratio_threshold:.0%} of an interval"
        )


class PMTRates(PMTImageMonitor):
    name = "pmt_rates"
    help = (
        "mean rate and high-rate veto per PMT and interval, images per DU (all DUs in one process)"
    )
    image_kinds = (RateImage, HRVImage)

    def __init__(self, context: Context) -> None:
        super().__init__(context)
        self.settings = context.pipeline.pmt_rates
        self.summary: DUFloorMap | None = None

    def render(self) -> None:
        super().render()
        self.context.save_metrics("pmt_rates", self.newest_column_summary())
        self.render_summary()

    def flagged_per_dom(self) -> np.ndarray:
        """PMTs out of range or in high-rate veto per slot in the newest column (NaN: no data)."""
        rates_hz = self.newest_rates_khz * 1e3
        low, high = self.settings.lowest_rate_hz, self.settings.highest_rate_hz
        with np.errstate(invalid="ignore"):
            flagged = (rates_hz < low) | (rates_hz > high)
            flagged |= self.newest_hrv > self.settings.hrv_ratio_threshold
        count = flagged.sum(axis=1).astype(float)
        count[~np.isfinite(rates_hz).any(axis=1)] = np.nan
        return count

    def render_summary(self) -> None:
        start = time.perf_counter()
        if self.summary is None:
            panel = Panel("", self._summary_legend)
            self.summary = DUFloorMap(
                self.detector, self.slots.dom_index, FLAG_COLOURS, [panel], panel_height_in=4.2
            )
        count = self.flagged_per_dom()
        levels = np.full(len(count), NO_DATA, np.uint8)
        known = np.isfinite(count)
        levels[known] = np.searchsorted(FLAG_BINS, count[known], side="right") - 1
        self.context.redraw_frame(self.summary.figure)
        low, high = self.settings.lowest_rate_hz / 1e3, self.settings.highest_rate_hz / 1e3
        title = (
            f"PMTs out of range ({low:g}–{high:g} kHz) or in high-rate veto, per DOM: "
            f"detector {self.detector.det_id}, newest {self.interval_s:g} s interval"
        )
        png = self.summary.render(title, [levels])
        self.context.save_png(f"{SUMMARY}.png", png, start)
        self.context.save_metrics(
            SUMMARY,
            {
                "column_start": float(self.ring.starts_s[self.ring.newest]),
                "dom_id": self.detector.dom_ids[self.slots.dom_index],
                "flagged_pmts": count,
                "du_axis": self.summary.du_axis,
                "floor_axes": self.summary.floor_axes(),
                "levels": {"bins": FLAG_BINS, "colours": FLAG_COLOURS},
            },
        )

    @staticmethod
    def _summary_legend(figure: Figure, axes: Axes) -> None:
        import matplotlib.pyplot as plt
        from matplotlib.colors import BoundaryNorm, ListedColormap

        n = len(FLAG_COLOURS)
        scale = plt.cm.ScalarMappable(
            BoundaryNorm(np.arange(n + 1), n), ListedColormap(FLAG_COLOURS)
        )
        bar = figure.colorbar(scale, ax=axes, pad=0.01, fraction=0.04)
        bar.set_ticks(np.arange(n) + 0.5, labels=FLAG_LABELS)
        bar.set_label("PMTs out of range or in HRV")
        axes.legend(handles=[hatch_legend_handle("no data from the DOM")], loc="upper right",
                    bbox_to_anchor=(1.0, -0.09), frameon=False)  # fmt: skip

    def newest_column_summary(self) -> dict[str, object]:
        """Per DU the median rate of the newest column and the PMTs out of range or in HRV."""
        newest = self.ring.newest
        rates_hz = self.newest_rates_khz * 1e3
        hrv = self.newest_hrv
        low, high = self.settings.lowest_rate_hz, self.settings.highest_rate_hz
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a DOM without data: NaN median
            dom_median_hz = np.nanmedian(rates_hz, axis=1)
            hot = (rates_hz > high) & (rates_hz > self.settings.hot_factor * dom_median_hz[:, None])
        flagged: list[dict[str, object]] = []
        for kind, mask in (
            ("hot", hot),  # first: the list is capped, and these are the ones alerted on
            ("above", rates_hz > high),
            ("below", rates_hz < low),
            ("hrv", hrv > self.settings.hrv_ratio_threshold),
        ):
            # An HRV storm flags thousands: the first MAX_FLAGGED of each kind, so that the
            # storm's PMTs above the colour scale do not crowd its HRV PMTs out of the list.
            slots, channels = np.nonzero(mask)
            for slot, channel in zip(slots[:MAX_FLAGGED], channels[:MAX_FLAGGED], strict=True):
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
                        "dom_median_hz": round(float(dom_median_hz[slot]), 1),
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
