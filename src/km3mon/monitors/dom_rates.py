"""dom_rates: the summed PMT rate of each DOM in kHz, averaged over the render interval.

Every summary slice counts (the original showed one sampled slice); the average is over the
slices that arrived since the last render, and a DOM without a frame in that time is missing.
"""

from __future__ import annotations

import argparse

import numpy as np

from km3mon.controlhost import Message
from km3mon.figures.dom_map import dom_map
from km3mon.runtime.decoding import decode_summaryslices
from km3mon.runtime.monitor import Context, Monitor, register_monitor


class DOMRates(Monitor):
    name = "dom_rates"
    tags = ("IO_SUM",)
    help = "summed PMT rate per DOM in kHz, averaged over the render interval (DU × floor map)"
    default_interval_s = 30.0

    def __init__(self, context: Context) -> None:
        super().__init__(context)
        self.detector = context.detector
        self.settings = context.pipeline.dom_rates
        self.sum_khz = np.zeros(len(self.detector.dom_ids))
        self.frames = np.zeros(len(self.detector.dom_ids), dtype=np.int64)
        self.last_mean_khz = np.full(len(self.detector.dom_ids), np.nan)
        self.last_slices = 0

    def consume(self, messages: list[Message]) -> None:
        for summary in decode_summaryslices(self.context, messages):
            index = self.context.dom_index(summary.dom_ids)
            known = index >= 0
            dom_khz = summary.rates_hz.sum(axis=1) / 1000.0
            np.add.at(self.sum_khz, index[known], dom_khz[known])
            np.add.at(self.frames, index[known], 1)
            self.context.saw_data_at(summary.header.timestamp)

    def mean_khz(self) -> np.ndarray:
        """Mean summed rate per DOM since the last render; NaN where no frame arrived."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.frames > 0, self.sum_khz / self.frames, np.nan)

    def render(self) -> None:
        slices = int(self.frames.max(initial=0))
        if slices:
            self.last_mean_khz, self.last_slices = self.mean_khz(), slices
            self.sum_khz[:] = 0
            self.frames[:] = 0
        # Without new slices the last mean is drawn again; the runtime marks it stale in time.
        mean, slices = self.last_mean_khz, self.last_slices
        figure = dom_map(
            self.detector,
            mean,
            vmin=self.settings.lowest_rate_khz,
            vmax=self.settings.highest_rate_khz,
            label="summed PMT rate [kHz]",
            title=f"DOM rates for detector {self.detector.det_id}, mean of {slices} summary slices",
        )
        self.context.save_figure("dom_rates.png", figure)
        self.context.save_metrics(
            "dom_rates",
            {"dom_id": self.detector.dom_ids, "rate_khz": mean, "slices": slices},
        )


def register(subparsers: argparse._SubParsersAction) -> None:
    register_monitor(subparsers, DOMRates)
