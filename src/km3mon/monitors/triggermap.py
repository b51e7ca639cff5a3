"""triggermap: hits per DOM (``hitmap.png``) and triggered hits per DOM (``triggermap.png``)
for the last ``[TriggerMap] max_events`` events, DOM × event, log colour scale.

Every event counts; hit counts per DOM come from one ``bincount`` over a batch's hits table.
Rows are the optical DOMs ordered by DU and floor; run changes are marked once confirmed by
several events (a corrupted run number is no run change), the newest few at most.
"""

from __future__ import annotations

import argparse

import numpy as np

from km3mon.controlhost import Message
from km3mon.runtime.decoding import decode_events_and_hits, packet_times_s, payloads_of
from km3mon.runtime.guards import RunTracker
from km3mon.runtime.monitor import Context, Monitor, register_monitor

#: Image rows drawn at most: about the pixel rows of the plot (a block of DOMs per row).
MAX_IMAGE_ROWS = 600
#: Run changes marked at most (the newest), so that one render stays short.
MAX_DRAWN_RUN_CHANGES = 20


class TriggerMap(Monitor):
    name = "triggermap"
    tags = ("IO_EVT",)
    help = "hits and triggered hits per DOM for the last events (hitmap.png, triggermap.png)"
    default_interval_s = 50.0

    def __init__(self, context: Context) -> None:
        super().__init__(context)
        detector = self.detector = context.detector
        self.max_events = context.pipeline.trigger_map.max_events
        optical = np.flatnonzero(detector.dom_floor > 0)
        order = np.lexsort((detector.dom_floor[optical], detector.dom_du[optical]))
        self.row_dom = optical[order]  # detector DOM index of each image row
        self.row_of_dom = np.full(len(detector.dom_ids) + 1, -1)
        self.row_of_dom[self.row_dom] = np.arange(len(self.row_dom))
        n_rows = len(self.row_dom)
        self.hits = np.zeros((n_rows, self.max_events), np.uint16)
        self.triggered = np.zeros((n_rows, self.max_events), np.uint16)
        self.runs = np.full(self.max_events, -1, np.int64)  # confirmed run of each column
        self.run_tracker = RunTracker()
        self.head = 0
        self.events_seen = 0

    def consume(self, messages: list[Message]) -> None:
        payloads = payloads_of(messages, "IO_EVT")
        events, hits, _ = decode_events_and_hits(self.context, payloads)
        if not len(events):
            return
        index = self.context.dom_index(hits["dom_id"])
        rows = self.row_of_dom[index]
        known = rows >= 0
        n_events = len(events)
        columns = (self.head + np.arange(n_events)) % self.max_events
        known &= hits["event"] >= n_events - self.max_events  # the ring keeps the newest
        event, row = hits["event"][known], rows[known]
        for image, chosen in ((self.hits, slice(None)), (self.triggered, hits["triggered"][known])):
            image[:, columns] = 0
            # the (event, DOM) cells hit, not a dense count per cell: 1000 events of a
            # 230-DU batch made four 33 MB arrays
            cells, counts = np.unique(event[chosen].astype(np.int64) * len(image) + row[chosen],
                                      return_counts=True)  # fmt: skip
            image[cells % len(image), columns[cells // len(image)]] = np.minimum(counts, 65535)
        times = packet_times_s(events)
        self.runs[columns], _ = self.run_tracker.update(events["run"], times)
        self.head = (self.head + n_events) % self.max_events
        self.events_seen += n_events
        self.context.saw_data_at(float(times.max()))

    def chronological(self) -> np.ndarray:
        """Ring columns from the oldest stored event to the newest."""
        stored = min(self.events_seen, self.max_events)
        return (self.head - stored + np.arange(stored)) % self.max_events

    def render(self) -> None:
        columns = self.chronological()
        for filename, counts, what in (
            ("hitmap.png", self.hits, "Hits on DOMs"),
            ("triggermap.png", self.triggered, "Trigger map (triggered hits on DOMs)"),
        ):
            self.context.save_figure(filename, self._figure(counts[:, columns], columns, what))
        self.context.save_metrics(
            "triggermap",
            {
                "events": len(columns),
                "dom_id": self.detector.dom_ids[self.row_dom],
                "hits": self.hits[:, columns].sum(axis=1),
                "triggered_hits": self.triggered[:, columns].sum(axis=1),
                "run_changes": self.runs[columns][self._run_changes(self.runs[columns])],
            },
        )

    def _figure(self, image: np.ndarray, columns: np.ndarray, what: str):
        import matplotlib.pyplot as plt
        from matplotlib.cm import ScalarMappable
        from matplotlib.colors import LogNorm

        figure, axes = plt.subplots(figsize=(16, 8))
        pooled, rows_per_pixel = max_pooled_rows(image, MAX_IMAGE_ROWS)
        shown = np.where(pooled > 0, pooled, np.nan).astype(np.float32)
        vmax = max(2.0, float(np.nanmax(shown)) if np.isfinite(shown).any() else 2.0)
        cmap = plt.get_cmap("plasma").with_extremes(bad="white")
        norm = LogNorm(1, vmax)
        extent = (-0.5, image.shape[1] - 0.5, -0.5, len(pooled) * rows_per_pixel - 0.5)
        # coloured here: matplotlib resampling the counts themselves to the figure's pixels
        # took 100 MB at once (1000 events, 230 DUs), its colours 46 MB
        colours = cmap(norm(shown), bytes=True)
        if colours.size:  # no event yet: an empty frame (imshow refuses empty colours)
            axes.imshow(colours, aspect="auto", origin="lower", interpolation="nearest",
                        extent=extent)  # fmt: skip
        axes.set_ylim(-0.5, image.shape[0] - 0.5)
        scale = ScalarMappable(norm, cmap)
        figure.colorbar(scale, ax=axes, pad=0.01).set_label("number of hits")
        dus = self.detector.dom_du[self.row_dom]
        floors = self.detector.dom_floor[self.row_dom]
        labelled = np.flatnonzero(np.isin(floors, (1, 6, 12)))
        step = max(1, len(labelled) // 60)
        axes.set_yticks(labelled[::step], [f"DU{d}-DOM{f}" for d, f in
                                           zip(dus[labelled][::step], floors[labelled][::step],
                                               strict=True)], fontsize=6)  # fmt: skip
        runs = self.runs[columns]
        for change in self._run_changes(runs)[-MAX_DRAWN_RUN_CHANGES:]:
            axes.axvline(change - 0.5, color="#ff0f5b", lw=2)
            axes.text(change, len(self.row_dom) * 0.98, f" RUN {runs[change]}", color="0.3",
                      rotation=60, va="top", fontsize=8)  # fmt: skip
        axes.set_xlabel("event (latest on the right)")
        axes.set_xticks([])
        axes.set_title(
            f"{what} for detector {self.detector.det_id}, the last {len(columns)} events"
        )
        figure.tight_layout(rect=(0, 0.03, 1, 1))
        return figure

    @staticmethod
    def _run_changes(runs: np.ndarray) -> np.ndarray:
        """Columns where a confirmed run follows another (-1: before the first one)."""
        known = (runs[1:] >= 0) & (runs[:-1] >= 0)
        return np.flatnonzero((np.diff(runs) != 0) & known) + 1


def max_pooled_rows(image: np.ndarray, max_rows: int) -> tuple[np.ndarray, int]:
    """At most ``max_rows`` rows, each the maximum of a block of DOMs, and the block size.

    4140 DOMs in 600 pixel rows: drawn as they are, most DOMs would fall between pixels and
    not be shown at all; the maximum shows every active DOM.
    """
    factor = -(-len(image) // max_rows)
    if factor <= 1:
        return image, 1
    padded = np.zeros((-(-len(image) // factor) * factor, image.shape[1]), image.dtype)
    padded[: len(image)] = image
    return padded.reshape(-1, factor, image.shape[1]).max(axis=1), factor


def register(subparsers: argparse._SubParsersAction) -> None:
    register_monitor(subparsers, TriggerMap)
