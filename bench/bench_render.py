"""Per-DU images at 230 DUs: our palette renderer against matplotlib drawing the same figure.

Both draw one PMT-rate image of an ARCA DU (18 floors × 31 PMTs × 800 columns; the figure
grown until every cell has a pixel, ~1030 × 675 px; colour bar, labels, title, time axis)
into a PNG in memory; matplotlib as the monitors did before (``imshow`` + ``savefig``, figure
reused), ours as ``pmt_rates`` does now (the frame drawn once per tick, then per image a
gather into palette indices and an 8-bit PNG). Also the AHRS plot (18 floors × 2000 bins of
dots): matplotlib ``plot`` + ``savefig`` against the palette path with its per-image y axis.

    .venv/bin/python bench/bench_render.py
"""

from __future__ import annotations

import io
import statistics
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from km3mon.figures.palette_image import PaletteFigure, centre_samples, fit_axes_to_cells

ROWS, COLUMNS, REPEATS = 18 * 31, 800, 15


def timed(draw, repeats: int = REPEATS) -> float:
    """Median seconds of ``draw()`` (after one warm-up call)."""
    draw()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        draw()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def pmt_figure():
    figure, axes = plt.subplots(figsize=(10, 8), dpi=80)
    axes.set_xlim(-0.5, COLUMNS - 0.5)
    axes.set_ylim(-0.5, ROWS - 0.5)
    axes.set_yticks(np.arange(18) * 31 + 15.5, [f"Floor {f}" for f in range(1, 19)])
    axes.set_xticks(np.linspace(0, COLUMNS - 1, 8), [f"{h:02d}:00" for h in range(8)])
    axes.set_xlabel("UTC time [20 s per column]")
    axes.set_title("Mean PMT rates, detector 999 DU 17: colours 5 to 15 kHz")
    return figure, axes


def pmt_images(rates_khz: np.ndarray) -> tuple[float, float]:
    """Seconds per image: matplotlib, palette."""
    figure, axes = pmt_figure()
    image = axes.imshow(rates_khz, origin="lower", aspect="auto", interpolation="nearest",
                        extent=(-0.5, COLUMNS - 0.5, -0.5, ROWS - 0.5), cmap="cividis",
                        vmin=5, vmax=15)  # fmt: skip
    figure.colorbar(image, ax=axes, extend="both", pad=0.01).set_label("mean PMT rate [kHz]")
    fit_axes_to_cells(figure, axes, ROWS, COLUMNS)  # as pmt_rates: a pixel for every cell

    def with_matplotlib() -> bytes:
        image.set_data(rates_khz)
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=80, pil_kwargs={"compress_level": 1})
        return buffer.getvalue()

    reference = timed(with_matplotlib)
    plt.close(figure)

    figure, axes = pmt_figure()
    cmap = plt.get_cmap("cividis")
    colours = [cmap((level + 0.5) / 160) for level in range(160)]
    scale = plt.cm.ScalarMappable(
        matplotlib.colors.Normalize(5, 15), matplotlib.colors.ListedColormap(colours)
    )
    figure.colorbar(scale, ax=axes, extend="both", pad=0.01).set_label("mean PMT rate [kHz]")
    fit_axes_to_cells(figure, axes, ROWS, COLUMNS)
    palette = PaletteFigure(figure, axes, [*colours, "black", "#d01c8b", "#bdbdbd", "#e66101"])
    palette.redraw_frame()
    levels = np.clip((rates_khz - 5) * 16, 0, 159).astype(np.uint8)[::-1]
    height, width = palette.data_shape
    rows = centre_samples(ROWS, height)
    columns = centre_samples(COLUMNS, width)

    def with_palette() -> bytes:
        picture = palette.start("Mean PMT rates, detector 999 DU 17: colours 5 to 15 kHz")
        picture[palette.box] = levels[rows[:, None], columns[None, :]]
        return palette.finish(picture)

    ours = timed(with_palette)
    plt.close(figure)
    return reference, ours


def ahrs_images(yaw_deg: np.ndarray) -> tuple[float, float]:
    """Seconds per AHRS plot: matplotlib, palette."""
    colours = [plt.get_cmap("viridis")(f / 17) for f in range(18)]
    figure, axes = plt.subplots(figsize=(16, 6), dpi=80)
    for floor, values in enumerate(yaw_deg):
        axes.plot(np.arange(values.size), values, ".", ms=2, color=colours[floor],
                  label=f"Floor {floor + 1}")  # fmt: skip
    axes.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    axes.set_title("AHRS yaw on DU 17")
    axes.set_ylabel("yaw [deg]")
    figure.tight_layout()

    def with_matplotlib() -> bytes:
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=80, pil_kwargs={"compress_level": 1})
        return buffer.getvalue()

    reference = timed(with_matplotlib)
    plt.close(figure)

    figure, axes = plt.subplots(figsize=(16, 6), dpi=80)
    axes.set_xlim(0, yaw_deg.shape[1])
    handles = [matplotlib.lines.Line2D([], [], marker="o", ls="", color=c, label=f"Floor {f}")
               for f, c in enumerate(colours, start=1)]  # fmt: skip
    axes.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    axes.set_title("AHRS yaw on DU 17")
    figure.tight_layout()
    palette = PaletteFigure(figure, axes, colours, y_axis_per_image=True)
    palette.redraw_frame()
    height, width = palette.data_shape
    floor, column = np.nonzero(np.isfinite(yaw_deg))
    x = (column * width // yaw_deg.shape[1]).astype(np.int64)
    ticks = [0.0, 60.0, 120.0, 180.0, 240.0, 300.0, 360.0]

    def with_palette() -> bytes:
        picture = palette.start("AHRS yaw on DU 17")
        palette.draw_y_axis(picture, "yaw [deg]", ticks)
        y = ((360 - yaw_deg[floor, column]) * (height - 1) / 360).astype(np.int64)
        picture[palette.box][y, x] = floor.astype(np.uint8)
        return palette.finish(picture)

    ours = timed(with_palette)
    plt.close(figure)
    return reference, ours


def main() -> int:
    rng = np.random.default_rng(3)
    rates = rng.normal(7.0, 1.0, (ROWS, COLUMNS))
    yaw = (rng.uniform(0, 360, (18, 1)) + rng.normal(0, 2, (18, 2000))) % 360
    print("| image | matplotlib [ms] | palette [ms] | ratio | 460 PMT / 690 AHRS images [cores] |")
    print("|---|---:|---:|---:|---|")
    for name, (reference, ours), count, interval in (
        ("PMT rates, one DU", pmt_images(rates), 460, 20.0),
        ("AHRS yaw, one DU", ahrs_images(yaw), 690, 60.0),
    ):
        cores = (
            f"matplotlib {reference * count / interval:.2f}, palette {ours * count / interval:.3f}"
        )
        print(
            f"| {name} | {reference * 1e3:.1f} | {ours * 1e3:.1f} | {reference / ours:.0f}× | "
            f"{cores} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
