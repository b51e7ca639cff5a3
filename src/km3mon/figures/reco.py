"""The reco monitor's figures: time residuals, the z-t display with fitted curves, zenith.

Everything is drawn from the in-memory rings (:mod:`.reco_history`) and one kept event; no
file is read. Colours follow the other monitors: cividis/diverging maps that stay readable
for colour-blind shifters, flagged DOMs ringed in red and named in words as well.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from km3mon.figures.dom_map import du_label_step
from km3mon.history.reco import COARSE_EDGES_NS, ZENITH_EDGES_DEG
from km3mon.reco.model import azimuth_deg, line_time_ns, track_time_ns, zenith_deg
from km3mon.timetext import utc

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from km3mon.detector import Detector

MAX_PANELS = 16
FLAG_COLOUR = "#e41a1c"
#: Atmospheric muons under water: intensity ~ exp(-slant depth / ATTENUATION) [km w.e.],
#: a rough depth-intensity relation; enough to see a shape change, not a flux measurement.
MUON_ATTENUATION_KM_WE = 1.2
WATER_DENSITY = 1.03


@dataclass
class DomOffsets:
    """Per DOM (detector order): estimated time offset (median residual minus the detector's
    reference), its error and spread (ns), residuals used, and the flagged ones."""

    offset_ns: np.ndarray
    error_ns: np.ndarray
    spread_ns: np.ndarray
    count: np.ndarray
    reference_ns: float
    flagged: np.ndarray


def residual_histograms(
    detector: Detector, coarse: np.ndarray, flagged_text: list[str], span_text: str
) -> Figure:
    """Per floor, a step histogram per DU of single-DU fit residuals (the original's plot)."""
    import matplotlib.pyplot as plt

    n_floors = max(detector.n_floors, 1)
    columns = 3
    rows = int(np.ceil(n_floors / columns))
    figure, axes_grid = plt.subplots(rows, columns, figsize=(16, 2.2 * rows + 1.5), sharex=True)
    axes_list = np.atleast_1d(axes_grid).ravel()
    centres = 0.5 * (COARSE_EDGES_NS[1:] + COARSE_EDGES_NS[:-1])
    dus = detector.dus
    colours = plt.get_cmap("tab20")(np.linspace(0, 1, max(len(dus), 1)))
    for floor in range(1, n_floors + 1):
        axes = axes_list[floor - 1]
        for colour, du in zip(colours, dus.tolist(), strict=True):
            rows_of = np.flatnonzero((detector.dom_du == du) & (detector.dom_floor == floor))
            counts = coarse[rows_of].sum(axis=0) if len(rows_of) else np.zeros(len(centres))
            if counts.sum():
                axes.step(centres, counts, where="mid", color=colour, lw=1, label=f"DU {du}")
        axes.set_yscale("log")
        axes.set_title(f"floor {floor}", fontsize=9, pad=2)
        axes.grid(alpha=0.2)
    for axes in axes_list[n_floors:]:
        axes.set_visible(False)
    for axes in axes_list[-columns:]:
        axes.set_xlabel("time residual [ns]")
    handles, labels = axes_list[0].get_legend_handles_labels()
    for axes in axes_list[:n_floors]:
        h, lab = axes.get_legend_handles_labels()
        if len(h) > len(handles):
            handles, labels = h, lab
    if handles:
        figure.legend(handles, labels, loc="upper right", ncol=min(len(handles), 8), fontsize=8)
    title = f"Time residuals of single-DU (ROy) fits, {span_text}"
    if flagged_text:
        title += "\ntiming outliers: " + "; ".join(flagged_text[:6])
    figure.suptitle(title, x=0.01, ha="left", fontsize=11)
    figure.subplots_adjust(left=0.04, right=0.99, bottom=0.06, top=0.88, hspace=0.35)
    return figure


def residual_map(
    detector: Detector, offsets: DomOffsets, vmax_ns: float, flagged_text: list[str],
    span_text: str,
) -> Figure:  # fmt: skip
    """DU × floor maps of each DOM's time offset and of its residual spread."""
    import matplotlib.pyplot as plt

    optical = detector.dom_floor > 0
    du, floor = detector.dom_du[optical], detector.dom_floor[optical]
    n_dus = len(detector.dus)
    width_in = min(20.0, max(9.0, 2 + 0.35 * n_dus))
    size = 70 if n_dus <= 40 else max(3.0, 70 * 40 / n_dus)
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(width_in, 10), sharex=True)
    panels = (
        (top, offsets.offset_ns[optical], "RdBu_r", -vmax_ns, vmax_ns,
         "time offset: median residual − its floor's median [ns]"),
        (bottom, offsets.spread_ns[optical], "cividis", 0.0, 1.5 * vmax_ns,
         "residual spread (half the 16-84 % range) [ns]"),
    )  # fmt: skip
    flagged = offsets.flagged[optical]
    for axes, values, cmap, vmin, vmax, label in panels:
        missing = ~np.isfinite(values)
        points = axes.scatter(du[~missing], floor[~missing], c=values[~missing], s=size,
                              marker="s", cmap=cmap, vmin=vmin, vmax=vmax)  # fmt: skip
        axes.scatter(du[missing], floor[missing], s=size, marker="x", color="#bdbdbd",
                     label="no residuals")  # fmt: skip
        if flagged.any():
            axes.scatter(du[flagged], floor[flagged], s=size * 2.5, facecolors="none",
                         edgecolors=FLAG_COLOUR, linewidths=1.8,
                         label="timing outlier")  # fmt: skip
        figure.colorbar(points, ax=axes, extend="both", pad=0.01).set_label(label, fontsize=8)
        axes.set_ylabel("floor")
        axes.set_yticks(np.arange(1, detector.n_floors + 1, 2 if detector.n_floors > 12 else 1))
        axes.set_ylim(0.3, detector.n_floors + 0.7)
        axes.grid(alpha=0.2)
    dus = detector.dus
    step = du_label_step(len(dus), most=30)
    bottom.set_xticks(dus if step == 1 else dus[dus % step == 0])
    bottom.set_xlim(dus.min() - 0.7, dus.max() + 0.7)
    for axes in (top, bottom):  # both maps labelled, as every DOM map (sharex hides the top's)
        axes.tick_params(axis="x", labelbottom=True)
        axes.set_xlabel("DU")
    top.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), ncol=2, fontsize=8, frameon=False)
    title = f"Time residuals per DOM (multi-DU track fits, each DOM left out), {span_text}"
    title += "\ntiming outliers: " + ("; ".join(flagged_text[:6]) if flagged_text else "none")
    if len(flagged_text) > 6:
        title += f" and {len(flagged_text) - 6} more"
    figure.suptitle(title, x=0.01, ha="left", fontsize=11)
    figure.subplots_adjust(left=0.05, right=0.97, bottom=0.07, top=0.9, hspace=0.2)
    return figure


@dataclass
class Display:
    """A well-fitted event kept for ``ztplot_roy.png``: its calibrated hits and fits."""

    title: str
    hits: np.ndarray  # calibrated snapshot hits
    track: np.void | None
    lines: np.ndarray  # LINE_DTYPE rows of the event
    du_xy_m: dict[int, np.ndarray]


def quality_text(quality: float) -> str:
    """A fit's Q for a title or legend; "–" where no degree of freedom is left (a line on
    four floors has four parameters), not a "nan" a shifter has to decode."""
    return f"{quality:.2g}" if np.isfinite(quality) else "–"


#: Characters per line of the z-t title (12-inch figure, 10-pt text).
ZT_TITLE_CHARS = 140


def ztplot(display: Display, detector: Detector, ytick_m: float = 200.0) -> Figure:
    """z-t of the event per DU with the fitted t(z): the track's (solid) and each single-DU
    fit's (dashed)."""
    import matplotlib.pyplot as plt

    hits = display.hits
    all_dus, per_du = np.unique(hits["du"][hits["triggered"]], return_counts=True)
    dus = np.sort(all_dus[np.argsort(-per_du, kind="stable")[:MAX_PANELS]])
    columns = int(np.ceil(np.sqrt(max(len(dus), 1))))
    rows = int(np.ceil(max(len(dus), 1) / columns))
    figure, axes_grid = plt.subplots(
        rows, columns, figsize=(12, 3 + 9 * rows / columns), sharey=True, squeeze=False
    )
    triggered = hits["triggered"]
    offset = hits["time_ns"][triggered].min() if triggered.any() else hits["time_ns"].min()
    top_z = float(np.nanmax(detector.dom_pos_m[:, 2])) + 20
    z_curve = np.linspace(float(np.nanmin(detector.dom_pos_m[:, 2])) - 20, top_z, 200)
    for panel, (axes, du) in enumerate(zip(axes_grid.flat, dus.tolist(), strict=False)):
        on_du = hits[hits["du"] == du]
        axes.scatter(on_du["time_ns"] - offset, on_du["pos_z_m"], s=12, color="#09A9DE",
                     alpha=0.5, label="hits")  # fmt: skip
        mine = on_du[on_du["triggered"]]
        axes.scatter(mine["time_ns"] - offset, mine["pos_z_m"], marker="+", s=60,
                     color="#d7191c", label="triggered hits")  # fmt: skip
        if display.track is not None:
            xy = display.du_xy_m[du]
            points = np.column_stack((np.full_like(z_curve, xy[0]), np.full_like(z_curve, xy[1]),
                                      z_curve))  # fmt: skip
            track = display.track
            t_curve = track_time_ns(points, track["pos_m"], track["dir"], float(track["t_ns"]))
            axes.plot(t_curve - offset, z_curve, color="0.2", lw=1.2, label="multi-DU fit")
        for line in display.lines[display.lines["du"] == du]:
            t_line = line_time_ns(z_curve, line["d_c_m"], line["z_c_m"], line["cos_theta"],
                                  line["t_c_ns"])  # fmt: skip
            axes.plot(t_line - offset, z_curve, color="#1b9e77", lw=1.2, ls="--",
                      label=f"single-DU fit (Q {quality_text(line['quality'])})")  # fmt: skip
        times = mine["time_ns"] - offset
        if len(times):
            margin = max(150.0, 0.3 * float(np.ptp(times)))
            axes.set_xlim(times.min() - margin, times.max() + margin)
        axes.set_ylim(0, top_z)
        axes.set_yticks(np.arange(0, top_z, ytick_m))
        axes.set_title(f"DU {du}", fontsize=9)
        axes.set_xlabel("time − first triggered hit [ns]", fontsize=8)
        if panel % columns == 0:
            axes.set_ylabel("z [m]")
        axes.legend(loc="lower right", fontsize=6)
    for axes in list(axes_grid.flat)[len(dus) :]:
        axes.set_visible(False)
    # one line naming every DU's fit ran off both edges at 230 DUs
    title = "\n".join(textwrap.fill(line, ZT_TITLE_CHARS) for line in display.title.split("\n"))
    figure.suptitle(title, fontsize=10)
    figure.subplots_adjust(left=0.07, right=0.98, bottom=0.07, top=0.86, wspace=0.08, hspace=0.45)
    return figure


def expected_zenith_shape(detector: Detector) -> np.ndarray:
    """Expected share of down-going atmospheric muons per zenith bin: intensity falling
    with slant depth, times the area the instrumented cylinder shows at that angle."""
    positions = detector.dom_pos_m[detector.dom_floor > 0]
    centre = positions.mean(axis=0)
    radius = float(np.max(np.hypot(*(positions[:, :2] - centre[:2]).T))) + 20.0
    height = float(np.ptp(positions[:, 2])) + 40.0
    sea_level_z = -(detector.utm.z_m if detector.utm else -3000.0)
    depth_km_we = max(sea_level_z - centre[2], 500.0) * WATER_DENSITY / 1000.0
    fine = np.linspace(0, 90, 1801)[1:-1]
    theta = np.radians(fine)
    intensity = np.exp(-depth_km_we / np.cos(theta) / MUON_ATTENUATION_KM_WE)
    area = 2 * radius * height * np.sin(theta) + np.pi * radius**2 * np.cos(theta)
    rate = intensity * area * np.sin(theta)  # per dθ, solid angle included
    share, _ = np.histogram(fine, ZENITH_EDGES_DEG, weights=rate)
    return share / share.sum()


def zenith_figure(
    detector: Detector,
    last_hour: np.ndarray,
    hour_before: np.ndarray,
    minute_times_s: np.ndarray,
    tracks_per_minute: np.ndarray,
    events_per_minute: np.ndarray,
) -> Figure:
    """Zenith distribution of the last hour against the expected shape and the hour before,
    and the rate of reconstructed muons per minute."""
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(14, 5))
    centres = 0.5 * (ZENITH_EDGES_DEG[1:] + ZENITH_EDGES_DEG[:-1])
    n_last = int(last_hour.sum())
    left.step(centres, last_hour, where="mid", color="#2166ac", lw=1.5,
              label=f"last hour ({n_last} muons)")  # fmt: skip
    if hour_before.sum():
        scaled = hour_before * n_last / hour_before.sum()
        left.step(centres, scaled, where="mid", color="0.5", lw=1, ls="--",
                  label="the hour before (scaled)")  # fmt: skip
    expected = expected_zenith_shape(detector) * n_last
    left.plot(centres, expected, color="#b2182b", lw=1.2,
              label="atmospheric muons at this depth (rough model, shape)")  # fmt: skip
    if n_last and hour_before.sum():
        used = (scaled > 0) | (last_hour > 0)
        chi2 = float(np.sum((last_hour - scaled)[used] ** 2 / np.maximum(scaled[used], 1.0)))
        change = chi2 / max(int(used.sum()), 1)
        left.set_title("zenith of multi-DU fits (0° = down-going); shape change against the "
                       f"hour before: χ²/bin {change:.1f}", fontsize=10)  # fmt: skip
    elif n_last:
        left.set_title("zenith of multi-DU fits (0° = down-going)", fontsize=10)
    else:
        left.set_title("zenith of multi-DU fits (0° = down-going): none in the last hour")
    left.set_xlabel("zenith [deg]")
    left.set_ylabel("muons per 5°")
    left.set_xlim(0, 180)
    left.axvline(90, color="0.7", lw=0.8)
    left.legend(fontsize=8)
    left.grid(alpha=0.2)
    if len(minute_times_s):
        times = (minute_times_s - minute_times_s[-1]) / 60.0
        right.step(times, tracks_per_minute / 60.0, where="post", color="#2166ac",
                   label="reconstructed muons (multi-DU fits)")  # fmt: skip
        right.step(times, events_per_minute / 60.0, where="post", color="0.6", lw=0.8,
                   label="triggered events")  # fmt: skip
        right.set_xlabel(f"minutes before {utc(minute_times_s[-1])}")
    right.set_ylabel("rate [Hz]")
    right.set_ylim(bottom=0)
    right.set_title("rate per minute, last 2 hours", fontsize=10)
    right.legend(fontsize=8, loc="lower left")
    right.grid(alpha=0.2)
    figure.subplots_adjust(left=0.06, right=0.98, bottom=0.12, top=0.9, wspace=0.2)
    return figure


def track_angles(direction: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(zenith, azimuth) in degrees, KM3NeT convention, of directions of travel (n, 3)."""
    return zenith_deg(direction[:, 2]), azimuth_deg(direction[:, 0], direction[:, 1])
