"""The palette renderer against matplotlib drawing the same picture, and a PMT image's pixels."""

from __future__ import annotations

import argparse
import io
import logging
import time

import km3net_testdata
import matplotlib
import numpy as np
import pytest
from PIL import Image

from km3mon.config import load_pipeline
from km3mon.figures.palette_image import PaletteFigure
from km3mon.monitors.pmt_rates import OVER_COLOUR, PMTRates
from km3mon.runtime.freshness import Freshness
from km3mon.runtime.monitor import Context
from km3mon.runtime.pmt_image import MISSING as MISSING_LEVEL

matplotlib.use("Agg")
import matplotlib.pyplot as plt

ARCA21 = km3net_testdata.data_path("detx/KM3NeT_00000133_20221025.detx")
N_COLOURS = 16
N_CHANNELS_OF_TEST = 31


def decoded(png: bytes) -> np.ndarray:
    picture = Image.open(io.BytesIO(png))
    assert picture.mode == "P", "an 8-bit palette PNG"
    return np.asarray(picture.convert("RGB")).astype(int)


def centre_samples(size: int, pixels: int) -> np.ndarray:
    return (np.arange(pixels) * 2 + 1) * size // (2 * pixels)


@pytest.mark.parametrize("y_axis_per_image", [False, True])
def test_same_picture_as_matplotlib(y_axis_per_image: bool) -> None:
    colours = [plt.get_cmap("viridis")(i / (N_COLOURS - 1)) for i in range(N_COLOURS)]
    levels = np.random.default_rng(7).integers(0, N_COLOURS, (6, 10)).astype(np.uint8)
    figure, axes = plt.subplots(figsize=(6, 4), dpi=80)
    axes.set_xlim(-0.5, 9.5)
    axes.set_ylim(-0.5, 5.5)
    axes.set_xlabel("column")
    axes.set_title("placeholder")
    figure.tight_layout()
    ours = PaletteFigure(figure, axes, colours, y_axis_per_image=y_axis_per_image)
    ours.redraw_frame()
    height, width = ours.data_shape
    image = ours.start("a title")
    if y_axis_per_image:
        ours.draw_y_axis(image, "rows", [-0.5, 2.5, 5.5])
    top_first = levels[::-1]
    image[ours.box] = top_first[centre_samples(6, height)][:, centre_samples(10, width)]
    mine = decoded(ours.finish(image))

    rgb = (np.array([c[:3] for c in colours]) * 255).round().astype(np.uint8)
    axes.imshow(rgb[levels], origin="lower", extent=(-0.5, 9.5, -0.5, 5.5), aspect="auto",
                interpolation="nearest")  # fmt: skip
    axes.set_title("a title")
    if y_axis_per_image:
        axes.set_ylim(-0.5, 5.5)
        axes.set_yticks([-0.5, 2.5, 5.5])
        axes.set_ylabel("rows")
    figure.canvas.draw()
    theirs = np.asarray(figure.canvas.buffer_rgba())[..., :3].astype(int)
    plt.close(figure)

    assert mine.shape == theirs.shape
    close = (np.abs(mine - theirs) <= 16).all(axis=2)
    assert close[ours.box].mean() > 0.985, "the data box: only cell edges may differ"
    assert close.mean() > 0.985, "frame, title and axes as matplotlib draws them"


def pmt_rates_monitor(tmp_path, columns: int, du: int | None = None) -> tuple[PMTRates, Freshness]:
    """A pmt_rates monitor of ARCA-21 (or of its DU ``du``) keeping ``columns`` intervals, and
    its freshness record."""
    args = argparse.Namespace(
        det_id=0, detx=ARCA21, du=du, columns=columns, plot_dir=tmp_path, data_dir=tmp_path
    )
    freshness = Freshness(process="pmt_rates", pid=0, started_at=time.time(), ligier="-",
                          tags=[], render_interval_s=20.0, stale_after_s=60.0)  # fmt: skip
    context = Context(args, freshness, logging.getLogger("test"), load_pipeline(None))
    return PMTRates(context), freshness


def test_hot_pmt_is_drawn_in_its_floor_band_in_the_newest_columns(tmp_path) -> None:
    monitor, freshness = pmt_rates_monitor(tmp_path, columns=40)
    detector = monitor.detector
    slot = 100
    dom = monitor.slots.dom_index[slot]
    du, floor = int(detector.dom_du[dom]), int(detector.dom_floor[dom])
    now = time.time()
    freshness.newest_data_at = freshness.last_message_at = now
    first = int(now // 20) - 40
    for column in range(40):  # a full window of 7 kHz, the PMT hot in the last 10 columns
        monitor.ring.advance_to(first + column)
        monitor.rate_sum[:] = 7000.0
        if column >= 30:
            monitor.rate_sum[slot, 5] = 50_000.0
        monitor.packets[:] = 1
    monitor.ring.advance_to(first + 40)
    monitor.render()
    slices = 1
    while monitor.render_more():  # the runtime calls it between batches
        slices += 1

    png = (tmp_path / f"pmt_rates_du{du}.png").read_bytes()
    box = decoded(png)[monitor.images[0].figure.box]
    over = np.array(matplotlib.colors.to_rgb(OVER_COLOUR)) * 255
    rows, columns = np.nonzero((np.abs(box - over) <= 2).all(axis=2))
    height, width = box.shape[:2]
    assert len(rows) > 0, "the hot PMT is drawn in the over-range colour"
    band = detector.n_floors - floor  # bands counted from the top of the image
    assert (rows * detector.n_floors // height == band).all(), f"only in floor {floor}'s band"
    assert columns.min() >= width * 30 // 40 - 1, "only in the newest quarter of the window"
    assert (tmp_path / f"pmt_rates_du{du + 1}.png").exists(), "every DU drawn in one tick"
    assert freshness.redraw_interval_s == 0.0
    assert slices >= 1


def test_every_pmt_and_every_column_has_a_pixel(tmp_path) -> None:
    """ARCA's 18 floors x 31 PMTs and the 800 columns kept (4.4 h): the figure grows until
    nearest sampling leaves none of them out (in 800 x 640 pixels, 32 PMT rows of each DU
    and 194 of the columns were never drawn)."""
    monitor, _ = pmt_rates_monitor(tmp_path, columns=800)
    first = int(time.time() // 20) - 800
    for column in range(801):
        monitor.ring.advance_to(first + column)
    monitor.render()
    n_rows = monitor.detector.n_floors * 31
    for image in monitor.images:
        assert np.array_equal(np.unique(image.pixel_rows), np.arange(n_rows))
        assert np.array_equal(np.unique(image.pixel_columns), np.arange(800))


def test_every_palette_image_is_stamped_also_after_a_column_closes_mid_tick(tmp_path) -> None:
    """A stale pmt_rates tick: every DU's image says STALE in its pixels and in its text
    chunks, also those drawn after a column closed in the middle of the tick (the frame is
    then redrawn, and must be redrawn with the stamps)."""
    from km3mon.timetext import utc
    from tests.monitors.stamps import banner_fraction, png_text

    monitor, freshness = pmt_rates_monitor(tmp_path, columns=40)
    newest = time.time() - 600  # the last data came ten minutes ago: stale
    freshness.newest_data_at, freshness.last_message_at = newest, newest
    first = int(newest // 20) - 10
    for column in range(10):
        monitor.ring.advance_to(first + column)
        monitor.rate_sum[:] = 7000.0
        monitor.packets[:] = 1
    monitor.render()
    dus = list(monitor.dus)
    monitor.render_one(monitor.round_robin.queue.pop())  # the first DU of the tick
    monitor.ring.advance_to(first + 11)  # late data close a column in the middle of the tick
    while monitor.render_more():
        pass
    for du in dus:
        png = tmp_path / f"pmt_rates_du{du}.png"
        assert png_text(png) == {
            "data_until": utc(newest),
            "rendered": png_text(png)["rendered"],
            "stale": "true",
        }, du
        assert banner_fraction(png) > 0.3, f"DU {du}: the STALE banner over the data"


def test_stored_levels_read_back_as_written_across_blocks_and_wraps() -> None:
    """The compressed store against a plain ring of columns: every DU's levels equal after
    each write, over three turns of a ring whose size is no multiple of the block."""
    from km3mon.runtime.pmt_image import BLOCK_COLUMNS, MISSING, LevelColumns

    rng = np.random.default_rng(3)
    n_rows, n_columns = 7 * N_CHANNELS_OF_TEST, 2 * BLOCK_COLUMNS + 11
    # DUs whose rows are not contiguous, as DOMs of a DETX need not be
    owner = rng.permutation(np.repeat([1, 2, 5], [3, 2, 2]).repeat(N_CHANNELS_OF_TEST))
    rows_by_du = {du: np.flatnonzero(owner == du) for du in (1, 2, 5)}
    store = LevelColumns(rows_by_du, n_rows, n_columns)
    plain = np.full((n_rows, n_columns), MISSING, np.uint8)
    for step in range(3 * n_columns):
        position = step % n_columns
        column = rng.integers(0, 164, n_rows).astype(np.uint8)
        store.write(position, column)
        plain[:, position] = column
        if step % 17 == 0 or step >= 3 * n_columns - 2:
            for du, rows in rows_by_du.items():
                levels = store.of_du(du)
                assert np.array_equal(levels[:-1], plain[rows]), (step, du)
                assert (levels[-1] == MISSING).all()
    assert sum(len(packed) for packed in store.packed) == 2 * len(rows_by_du)


def test_one_du_stores_the_levels_the_whole_detector_stores_for_it(tmp_path) -> None:
    """``-u DU`` (one process per DU, as in the original) against the all-DU process, fed the
    same rates over more than a turn of the ring: the DU's levels are the same."""
    whole, _ = pmt_rates_monitor(tmp_path / "all", columns=70)
    du = whole.dus[len(whole.dus) // 2]
    alone, _ = pmt_rates_monitor(tmp_path / "one", columns=70, du=du)
    assert alone.dus == [du]
    mine = whole.du_of_slot == du
    rng = np.random.default_rng(11)
    first = int(time.time() // 20) - 100
    for column in range(100):
        rates = rng.normal(7000.0, 2000.0, whole.rate_sum.shape)
        hrv = rng.random(whole.rate_sum.shape) < 0.1
        for monitor, rows in ((whole, slice(None)), (alone, mine)):
            monitor.ring.advance_to(first + column)
            monitor.rate_sum[:] = rates[rows]
            monitor.hrv_sum[:] = hrv[rows]
            monitor.packets[:] = 1
    for monitor in (whole, alone):
        monitor.ring.advance_to(first + 100)
    for kind in range(len(whole.images)):
        expected = whole.images[kind].levels.of_du(du)
        assert np.array_equal(alone.images[kind].levels.of_du(du), expected)
        assert (expected[:-1] < MISSING_LEVEL).any()
