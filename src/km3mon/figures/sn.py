"""The SN monitor's figures (``km3mon.monitors.sn``): the background distribution of the
statistic with the rolling background's model, the threshold and the current value; the peak
per second over time with the threshold."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from km3mon.physics.sn import negative_binomial_sf
from km3mon.timetext import utc

if TYPE_CHECKING:
    from matplotlib.figure import Figure

THRESHOLD_COLOUR = "#b2182b"


def selection_text(
    min_multiplicity: int,
    max_multiplicity: int,
    window_s: float,
    veto_window_ns: float,
    n_doms: int,
) -> str:
    """What the statistic counts, for the figures' titles."""
    return (
        f"coincidences of {min_multiplicity}-{max_multiplicity} PMTs in {window_s:g} s "
        f"windows, {n_doms} DOMs, muon veto ±{veto_window_ns:g} ns"
    )


def background_histogram(
    histogram: np.ndarray,
    latest: tuple[float, int] | None,
    *,
    expected: float,
    dispersion: float,
    active_doms: int,
    threshold: int | None,
    false_alarms_per_week: float,
    significance: Callable[[float], float],
    selection: str,
    note: str,
) -> Figure:
    """Windows per value of the statistic (log scale), the rolling hour's negative binomial
    for the ``active_doms``, the threshold, the ``latest`` (time, value) and, on top, the
    ``significance`` of a value."""
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(10, 6))
    values = np.arange(len(histogram))
    used = np.flatnonzero(histogram)
    total = int(histogram.sum())
    if total:
        top = max(int(used[-1]) + 2, threshold + 3 if threshold else 0)
        axes.bar(values[:top], histogram[:top], width=1.0, color="#92c5de",
                 label=f"background distribution ({total} windows)")  # fmt: skip
        if expected > 0:
            k = np.arange(top + 1)
            tails = np.array([negative_binomial_sf(i, expected, dispersion) for i in k])
            axes.plot(k[:-1], total * (tails[:-1] - tails[1:]), color="0.3", lw=1,
                      label=f"rolling hour: mean {expected:.1f} for {active_doms} "
                      f"DOMs, variance × {dispersion:.2f}")  # fmt: skip
        axes.set_yscale("log")
        axes.set_ylim(0.5, None)
        if threshold is not None:
            label = f"threshold {threshold} ({false_alarms_per_week:g} false alarms a week)"
            axes.axvline(threshold, color=THRESHOLD_COLOUR, ls="--", label=label)
        if latest is not None:
            axes.axvline(latest[1], color="black", lw=2,
                         label=f"current {latest[1]} ({utc(latest[0])})")  # fmt: skip
        if expected > 0:
            top_axis = axes.secondary_xaxis("top")
            ticks = [v for v in range(0, top) if v >= expected][:: max(1, top // 12)]
            top_axis.set_xticks(ticks)
            # + 0.0: a tail just short of the mean said "-0.0"
            top_axis.set_xticklabels([f"{round(significance(v), 1) + 0.0:.1f}" for v in ticks])
            top_axis.set_xlabel("significance of a value [σ, tail of the rolling background]")
        axes.legend(loc="upper right", fontsize=9)
    else:
        _no_data_yet(axes)
    axes.set_xlabel("selected coincidences per window")
    axes.set_ylabel("windows")
    figure.suptitle(f"SN background: {selection}\n({note})", fontsize=11)
    figure.tight_layout(rect=(0, 0.03, 1, 1))
    return figure


def _no_data_yet(axes) -> None:
    """What both SN figures say before the first IO_TSSN arrives."""
    axes.text(0.5, 0.5, "no IO_TSSN yet", ha="center", va="center", fontsize=14,
              transform=axes.transAxes)  # fmt: skip


def peak_history(
    peaks: Sequence[tuple[float, int]], threshold: int | None, selection: str, note: str
) -> Figure:
    """The statistic's peak per second (UTC seconds, value) over time, those at or above
    the threshold marked."""
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    # the histogram's size: the SN page shows the two side by side, and a wide figure in
    # half the page had 5-px text
    figure, axes = plt.subplots(figsize=(10, 6))
    if peaks:
        times = np.array([t for t, _ in peaks])
        values = np.array([v for _, v in peaks])
        dates = times.astype("datetime64[s]")
        axes.plot(dates, values, ".", ms=2, color="#2166ac", label="peak per second")
        if threshold is not None:
            above = values >= threshold
            axes.plot(dates[above], values[above], "o", ms=5, color=THRESHOLD_COLOUR,
                      label=f"above threshold ({int(above.sum())} s)")  # fmt: skip
            axes.axhline(threshold, color=THRESHOLD_COLOUR, ls="--", label="threshold")
        locator = mdates.AutoDateLocator()
        axes.xaxis.set_major_locator(locator)
        axes.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
        # above the plot: inside its corner it would hide a burst early in the hour
        axes.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), ncol=3, fontsize=9,
                    frameon=False, borderaxespad=0.2)  # fmt: skip
    else:
        _no_data_yet(axes)
    axes.set_xlabel("UTC time")
    axes.set_ylabel("selected coincidences per window (peak per second)")
    axes.grid(alpha=0.3)
    figure.suptitle(f"SN statistic history: {selection}\n({note})", fontsize=11)
    figure.tight_layout(rect=(0, 0.03, 1, 1))
    return figure
