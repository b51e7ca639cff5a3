"""Drawing of the AHRS monitor: angles folded for display, each DOM's median, and the colour
scale of the DU × floor deviation summary (``km3mon.monitors.ahrs_calibration``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from km3mon.figures.summary_map import NO_DATA, hatch_legend_handle

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

ANGLES = ("yaw", "pitch", "roll")
#: Colour range of the summary's deviations, ± degrees; beyond it the darkest colours.
DEVIATION_RANGE_DEG = {"yaw": 10.0, "pitch": 2.0, "roll": 2.0}
N_DEVIATION_LEVELS = 10


def wrap_deg(degrees: np.ndarray) -> np.ndarray:
    """Angles folded into [-180, 180)."""
    return (degrees + 180.0) % 360.0 - 180.0


def row_medians(values: np.ndarray) -> np.ndarray:
    """Median of the finite values of each row (NaN for none): one sort, no per-row loop
    (``np.nanmedian`` is 5× slower on 4 140 DOMs × 667 bins)."""
    ordered = np.sort(np.where(np.isnan(values), np.inf, values), axis=1)
    count = np.isfinite(values).sum(axis=1)
    rows = np.arange(len(values))
    low = ordered[rows, np.maximum(count - 1, 0) // 2]
    high = ordered[rows, np.maximum(count, 1) // 2 - (count == 0)]
    with np.errstate(invalid="ignore"):
        return np.where(count > 0, (low + high) / 2, np.nan)


def deviation_colours() -> list[object]:
    """A diverging, colour-blind-safe scale (PuOr) of N_DEVIATION_LEVELS, then the two
    beyond-range colours (darker than its ends)."""
    import matplotlib.pyplot as plt

    cmap = plt.get_cmap("PuOr_r")
    levels = [cmap((k + 0.5) / N_DEVIATION_LEVELS) for k in range(N_DEVIATION_LEVELS)]
    return [*levels, "#1f0033", "#4a2300"]


def deviation_levels(deviation_deg: np.ndarray, range_deg: float) -> np.ndarray:
    """Level of each deviation: 0 … N-1 inside ±range, N below, N+1 above, NO_DATA for NaN."""
    with np.errstate(invalid="ignore"):
        scaled = np.floor((deviation_deg + range_deg) / (2 * range_deg) * N_DEVIATION_LEVELS)
        levels = np.clip(np.nan_to_num(scaled), 0, N_DEVIATION_LEVELS - 1).astype(np.uint8)
        levels[deviation_deg < -range_deg] = N_DEVIATION_LEVELS
        levels[deviation_deg > range_deg] = N_DEVIATION_LEVELS + 1
    levels[np.isnan(deviation_deg)] = NO_DATA
    return levels


def deviation_legend(name: str):
    """The colour bar of one angle's deviation panel (and, under the last, the no-data key)."""

    def legend(figure: Figure, axes: Axes) -> None:
        import matplotlib.pyplot as plt
        from matplotlib.colors import ListedColormap, Normalize

        colours = deviation_colours()
        inside = ListedColormap(colours[:N_DEVIATION_LEVELS]).with_extremes(
            under=colours[N_DEVIATION_LEVELS], over=colours[N_DEVIATION_LEVELS + 1]
        )
        limit = DEVIATION_RANGE_DEG[name]
        scale = plt.cm.ScalarMappable(Normalize(-limit, limit), inside)
        bar = figure.colorbar(scale, ax=axes, extend="both", pad=0.01, fraction=0.04)
        bar.set_label(f"{name} deviation [deg]")
        if name == ANGLES[-1]:
            axes.legend(handles=[hatch_legend_handle("no data in the newest bin")],
                        loc="upper right", bbox_to_anchor=(1.0, -0.1), frameon=False)  # fmt: skip

    return legend


def nice_ticks(values: np.ndarray) -> list[float]:
    """Round y ticks around the finite values; the first and last are the axis limits."""
    from matplotlib.ticker import MaxNLocator

    finite = values[np.isfinite(values)]
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    if high - low < 1e-3:
        low, high = low - 0.5, high + 0.5
    ticks = MaxNLocator(nbins=6).tick_values(low, high)
    return [round(float(t), 9) for t in ticks]
