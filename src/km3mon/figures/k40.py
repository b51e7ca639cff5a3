"""The K40 monitor's figures (``km3mon.monitors.k40``): pair means or rates against the cosine
of the pair angle for the worst DOMs, the DU × floor summary and each DU's PMT offsets.

Drawn from a calibration period's solution and the PMTs the monitor flagged in it; before the
first solution every figure says how much IO_TSL1 has been collected.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from km3mon.daq.summaryslice import N_CHANNELS
from km3mon.figures.dom_map import (
    DISABLED_DOM_COLOUR,
    DISABLED_EDGE_COLOUR,
    DISABLED_HATCH,
    MISSING_COLOUR,
    MISSING_HATCH,
    disabled_cells,
    dom_cells,
    du_floor_axes,
)
from km3mon.physics.k40 import rms_ns
from km3mon.timetext import utc

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from km3mon.detector import Detector
    from km3mon.physics.k40 import PeriodResult
    from km3mon.physics.k40_fit import DOMCalibration

#: DOMs drawn on the pair figures (6 × 3 panels).
PANELS = 18
BEFORE_COLOUR, AFTER_COLOUR = "#2166ac", "#d6604d"
NO_PEAK_COLOUR = "#000000"


@dataclass(frozen=True)
class K40Layout:
    """What every K40 figure is drawn against: the calibrated DOMs (``slots``: detector rows),
    the cosine of each of their pairs' angle, their PMTs calibrated (``present``) and disabled
    in the DETX (slot, channel), the offset tolerance and the calibration period."""

    detector: Detector
    slots: np.ndarray
    cos_angles: np.ndarray
    present: np.ndarray
    disabled: np.ndarray
    tolerance_ns: float
    period_s: float


@dataclass(frozen=True)
class K40Outcome:
    """A period's solution with the PMTs (slot, channel) the monitor found out of tolerance
    and with singles but no K40 peak."""

    result: PeriodResult
    flagged: np.ndarray
    no_peak: np.ndarray


def _waiting(figure: Figure, layout: K40Layout, collected_s: float) -> None:
    figure.text(
        0.5,
        0.5,
        f"no calibration yet: {collected_s:.0f} s of {layout.period_s:g} s of IO_TSL1 "
        "collected\n(is IO_TSL1 mirrored? see README: K40)",
        ha="center",
        va="center",
        fontsize=14,
    )


def shown_slots(layout: K40Layout, calibration: DOMCalibration) -> np.ndarray:
    """Up to :data:`PANELS` DOMs: all if few, else the worst offset RMS, by (DU, floor)."""
    measured = np.flatnonzero(calibration.n_pairs > 0)
    if len(measured) > PANELS:
        with np.errstate(invalid="ignore"):
            rms = np.nan_to_num(rms_ns(calibration.t0_ns[measured]))
        measured = measured[np.argsort(-rms, kind="stable")[:PANELS]]
    dom = layout.slots[measured]
    detector = layout.detector
    return measured[np.lexsort((detector.dom_floor[dom], detector.dom_du[dom]))]


def pair_panels(
    layout: K40Layout, outcome: K40Outcome | None, rates: bool, collected_s: float
) -> Figure:
    """Pair means (``rates``: pair rates) vs the cosine of the pair angle, measured and after
    correction, one panel per DOM of :func:`shown_slots`."""
    import matplotlib.pyplot as plt

    detector = layout.detector
    # fixed margins, not tight_layout (a second drawing): at 230 DUs the k40 process queues
    # its 64 MB/s stream while it draws, so every second of drawing is resident memory
    figure, axes = plt.subplots(6, 3, figsize=(16, 20), sharex=True, sharey=True)
    figure.subplots_adjust(left=0.06, right=0.98, bottom=0.04, top=0.93, wspace=0.1, hspace=0.2)
    what = "K40 pair rate [Hz]" if rates else "mean Δt of the pair [ns]"
    figure.suptitle(
        f"K40 intra-DOM calibration, detector {detector.det_id}: {what} vs cosine of the "
        f"PMT pair angle\nblue: measured, red: after correction"
        + (" (rates / efficiencies)" if rates else " (means - offset differences)")
    )
    if outcome is None:
        _waiting(figure, layout, collected_s)
    else:
        result = outcome.result
        cal = result.calibration
        for axis, slot in zip(axes.ravel(), shown_slots(layout, cal), strict=False):
            valid = result.valid[slot]
            ct = layout.cos_angles[slot][valid]
            before = (result.rate_hz if rates else result.mean_ns)[slot][valid]
            after = (cal.corrected_rate_hz if rates else cal.corrected_mean_ns)[slot][valid]
            axis.plot(ct, before, ".", color=BEFORE_COLOUR, ms=4)
            axis.plot(ct, after, ".", color=AFTER_COLOUR, ms=4)
            dom = layout.slots[slot]
            axis.set_title(
                f"DOM {detector.dom_ids[dom]} (DU {detector.dom_du[dom]}, floor "
                f"{detector.dom_floor[dom]})",
                fontsize=9,
            )
            axis.grid(alpha=0.3)
        axes[0, 0].set_ylim((0, 10) if rates else (-10, 10))
        axes[0, 0].set_xlim(-1, 1)
        axes[0, 0].set_xticks([-1, -0.5, 0, 0.5, 1])
        for axis in axes[-1]:
            axis.set_xlabel("cos(angle between the PMTs)")
        for axis in axes[:, 0]:
            axis.set_ylabel(what)
    return figure


def summary_map(layout: K40Layout, outcome: K40Outcome | None, collected_s: float) -> Figure:
    """DU × floor maps: RMS of each DOM's offsets, its K40 rate, its PMTs out of tolerance
    or without a peak; DOMs not measured and disabled drawn as such."""
    import matplotlib.pyplot as plt

    detector, tolerance_ns = layout.detector, layout.tolerance_ns
    figure, axes = plt.subplots(3, 1, figsize=(min(20, 8 + 0.35 * len(detector.dus)), 14))
    figure.suptitle(f"K40 calibration summary, detector {detector.det_id}")
    if outcome is None:
        _waiting(figure, layout, collected_s)
        return figure
    result = outcome.result
    cal = result.calibration
    with np.errstate(invalid="ignore"):
        rms = rms_ns(cal.t0_ns)
    rate = np.where(cal.n_pairs > 0, cal.k40_rate_hz, np.nan)
    out = (outcome.flagged | outcome.no_peak).sum(axis=1).astype(float)
    out[cal.n_pairs == 0] = np.nan
    dom = layout.slots
    du, floor = detector.dom_du[dom], detector.dom_floor[dom]
    disabled = ~layout.present.any(axis=1)  # the DOM, or all its PMTs, off in the DETX
    panels = (
        (rms, "RMS of the DOM's PMT offsets [ns]", "cividis", 0, 2 * tolerance_ns),
        (rate, "K40 twofold rate of the DOM [Hz]", "cividis", 0, 1000),
        (out, f"PMTs with |offset| > {tolerance_ns:g} ns or no K40 peak", "magma_r", 0, 5),
    )
    for axis, (values, label, cmap, low, high) in zip(axes, panels, strict=True):
        missing = np.isnan(values) & ~disabled
        shown = ~np.isnan(values) & ~disabled
        points = dom_cells(axis, du[shown], floor[shown], array=values[shown], cmap=cmap)
        points.set_clim(low, high)
        if missing.any():  # a legend entry only for what is on the map
            label_missing = f"not measured ({int(missing.sum())})"
            dom_cells(axis, du[missing], floor[missing], facecolor=MISSING_COLOUR,
                      hatch=MISSING_HATCH, label=label_missing)  # fmt: skip
        disabled_cells(axis, du[disabled], floor[disabled])
        figure.colorbar(points, ax=axis, pad=0.01, extend="max").set_label(label)
        du_floor_axes(axis, detector)
        axis.set_title(label, fontsize=10)
        if missing.any() or disabled.any():
            # above the map, right of the title: a box inside would cover the last DUs
            axis.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), fontsize=8,
                        frameon=False, borderaxespad=0.1)  # fmt: skip
    figure.text(0.01, 0.005, f"data {utc(result.utc_start)} to {utc(result.utc_end)}",
                fontsize=8)  # fmt: skip
    figure.tight_layout(rect=(0, 0.02, 1, 0.97))
    return figure


def du_offsets(
    layout: K40Layout, outcome: K40Outcome | None, du: int, collected_s: float
) -> Figure:
    """The offset of every PMT of DU ``du`` (floor × channel), the flagged ones ringed, those
    without a K40 peak and those disabled in the DETX in cells of their own."""
    import matplotlib.pyplot as plt

    detector, tolerance_ns = layout.detector, layout.tolerance_ns
    figure, axis = plt.subplots(figsize=(12, 6))
    if outcome is None:
        _waiting(figure, layout, collected_s)
        return figure
    result = outcome.result
    of_du = np.flatnonzero(detector.dom_du[layout.slots] == du)
    floors = detector.dom_floor[layout.slots[of_du]]
    image = np.full((detector.n_floors, N_CHANNELS), np.nan)
    image[floors - 1] = result.calibration.t0_ns[of_du]
    limit = 2 * tolerance_ns
    extent = (-0.5, 30.5, 0.5, detector.n_floors + 0.5)
    colours = plt.get_cmap("RdBu_r").with_extremes(bad="#bdbdbd")
    shown = axis.imshow(image, origin="lower", aspect="auto", cmap=colours, vmin=-limit,
                        vmax=limit, extent=extent)  # fmt: skip
    rows, channels = np.nonzero(outcome.flagged[of_du])
    if len(rows):  # a legend entry only for rings that are drawn
        axis.scatter(channels, floors[rows], s=160, facecolors="none", edgecolors="black",
                     linewidths=1.5, clip_on=False,
                     label=f"|offset| > {tolerance_ns:g} ns ({len(rows)})")  # fmt: skip
    marked = len(rows)
    for states, colour, hatch, label in (
        (outcome.no_peak[of_du], NO_PEAK_COLOUR, "", "singles but no K40 peak"),
        (layout.disabled[of_du], DISABLED_DOM_COLOUR, DISABLED_HATCH, "disabled (DETX)"),
    ):
        rows, channels = np.nonzero(states)
        marked += len(rows)
        if len(rows):
            label = f"{label} ({len(rows)})"
            dom_cells(axis, channels, floors[rows], size=0.9, facecolor=colour, hatch=hatch,
                      edgecolor=DISABLED_EDGE_COLOUR, label=label)  # fmt: skip
    figure.colorbar(shown, ax=axis, extend="both").set_label("PMT t0 correction [ns]")
    axis.set_xlabel("TDC channel")
    axis.set_ylabel("floor")
    axis.set_title(
        f"K40 PMT offsets, detector {detector.det_id} DU {du} "
        f"({utc(result.utc_start)} to {utc(result.utc_end)}); grey: not measured"
    )
    if marked:  # below the map: inside, it hid the PMTs of the top floors' last channels
        axis.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=3, frameon=False)
    figure.tight_layout()
    return figure
