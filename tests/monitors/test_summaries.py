"""The detector-wide summary images: simulator faults seen in them, read back from the PNG.

simulator → ligier → pmt_rates / ahrs_calibration (real processes); the test finds a DOM's
cell from the ``du_axis`` and ``floor_axes`` the monitor writes next to the image and reads
its pixels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from km3mon.detector import parse_detx, read_detx
from km3mon.figures.dom_map import DISABLED_DOM_COLOUR, DISABLED_EDGE_COLOUR
from km3mon.figures.summary_map import HATCH_COLOURS
from km3mon.sim.sim_geometry import synthetic_detx
from km3mon.sim.simulator import Simulator
from tests.conftest import NEVER_LEAVE_OUT_S, read_json, wait_subscribed, wait_until

SEED = 4
#: Only the hot PMT is out of this range, and the high-rate veto never counts (ratio > 1).
PIPELINE = "[PMTRates]\nlowest_rate = 1000.0\nhighest_rate = 100000.0\nhrv_ratio_threshold = 1.0\n"


def rgb(colour: str) -> tuple[int, int, int]:
    return tuple(int(colour[i : i + 2], 16) for i in (1, 3, 5))  # type: ignore[return-value]


def cell_colours(png: Path, metrics: dict, du: int, floor: int, panel: int = 0) -> set[tuple]:
    """The colours in the middle of the cell of (``du``, ``floor``) of a summary image."""
    image = np.asarray(Image.open(png).convert("RGB"))
    height, width, _ = image.shape
    axis, floors = metrics["du_axis"], metrics["floor_axes"][panel]
    column = axis["dus"].index(du)
    n_floors = 18
    x = (axis["x0"] + (column + 0.5) / len(axis["dus"]) * (axis["x1"] - axis["x0"])) * width
    top, bottom = floors["y0"] * height, floors["y1"] * height
    y = top + (n_floors - floor + 0.5) / n_floors * (bottom - top)
    patch = image[int(y) - 3 : int(y) + 4, int(x) - 3 : int(x) + 4].reshape(-1, 3)
    return {tuple(int(v) for v in pixel) for pixel in patch}


def run_pmt_rates(
    ligier, spawn, tmp_path: Path, scenario: str, detx_text: str | None = None
) -> tuple[Path, Path, object]:
    detx = tmp_path / "four_dus.detx"
    detx.write_text(detx_text or synthetic_detx(4))
    pipeline = tmp_path / "pipeline.toml"
    pipeline.write_text(PIPELINE)
    plots, data = tmp_path / "plots", tmp_path / "data"
    spawn("pmt_rates", "--detx", detx, "-p", ligier.port, "-o", plots, "--data-dir", data,
          "-i", "2", "--columns", "30", "--pipeline", pipeline)  # fmt: skip
    wait_subscribed(ligier.port, name="pmt_rates")
    spawn("simulate", "--detx", detx, "-p", ligier.port, "--speed", "10", "--seed", SEED,
          "--scenario", scenario, "--simulated-seconds", 300,
          "--max-lag", NEVER_LEAVE_OUT_S)  # fmt: skip
    planned = Simulator(read_detx(detx), seed=SEED, scenarios=[scenario]).scenarios[0]
    return plots / "pmt_rates_summary.png", data / "metrics" / "pmt_rates_summary.json", planned


def dom_place(detx_path: Path, dom_id: int) -> tuple[int, int]:
    detector = read_detx(detx_path)
    index = int(np.flatnonzero(detector.dom_ids == dom_id)[0])
    return int(detector.dom_du[index]), int(detector.dom_floor[index])


@pytest.mark.slow
def test_a_hot_pmt_is_one_flagged_cell_of_the_pmt_summary(ligier, spawn, tmp_path) -> None:
    png, metrics_path, hot = run_pmt_rates(ligier, spawn, tmp_path, "hot-pmt@0")
    hot_dom = hot.dom_ids[0]

    def flagged() -> dict[int, float]:
        metrics = read_json(metrics_path)
        counts = dict(zip(metrics.get("dom_id", []), metrics.get("flagged_pmts", []), strict=True))
        return {dom: count for dom, count in counts.items() if count}

    wait_until(lambda: flagged() == {hot_dom: 1}, 40, "the hot PMT alone flagged", show=flagged)
    metrics = read_json(metrics_path)
    du, floor = dom_place(tmp_path / "four_dus.detx", hot_dom)
    colours = metrics["levels"]["colours"]
    assert cell_colours(png, metrics, du, floor) == {rgb(colours[1])}, "level 1: one PMT"
    others = [
        (d, f) for d in metrics["du_axis"]["dus"] for f in (1, 9, 18) if (d, f) != (du, floor)
    ]
    for other in others:
        assert cell_colours(png, metrics, *other) == {rgb(colours[0])}, other


@pytest.mark.slow
def test_a_silent_dom_is_a_hatched_cell_of_the_pmt_summary(ligier, spawn, tmp_path) -> None:
    png, metrics_path, silent = run_pmt_rates(ligier, spawn, tmp_path, "silent-dom@0")
    silent_dom = silent.dom_ids[0]

    def without_data() -> list[int]:
        metrics = read_json(metrics_path)
        pairs = zip(metrics.get("dom_id", []), metrics.get("flagged_pmts", []), strict=True)
        return [dom for dom, count in pairs if count is None]

    wait_until(lambda: without_data() == [silent_dom], 40, "only the silent DOM without data",
               show=without_data)  # fmt: skip
    metrics = read_json(metrics_path)
    du, floor = dom_place(tmp_path / "four_dus.detx", silent_dom)
    hatch = {rgb(c) for c in HATCH_COLOURS}
    assert cell_colours(png, metrics, du, floor) == hatch, "hatched: no data from the DOM"
    neighbour = (du, floor + 1 if floor < 18 else floor - 1)
    assert not cell_colours(png, metrics, *neighbour) & hatch


@pytest.mark.slow
def test_a_dom_disabled_in_the_detx_is_drawn_disabled_on_the_pmt_summary(
    ligier, spawn, tmp_path
) -> None:
    """MODULE_DISABLE on one DOM (the simulator still sends its data): its cell is striped
    "disabled" whatever its count, its neighbours are drawn as before."""
    lines = synthetic_detx(4).splitlines()
    plain = parse_detx("\n".join(lines) + "\n")
    dom_id = int(plain.optical_dom_ids[20])
    at = next(k for k, line in enumerate(lines) if line.split()[:1] == [str(dom_id)])
    fields = lines[at].split()
    lines[at] = " ".join([*fields[:-2], "1", fields[-1]])
    png, metrics_path, _ = run_pmt_rates(
        ligier, spawn, tmp_path, "hot-pmt@0", detx_text="\n".join(lines) + "\n"
    )
    wait_until(lambda: png.exists() and read_json(metrics_path).get("du_axis"), 40,
               "the PMT summary")  # fmt: skip
    metrics = read_json(metrics_path)
    du, floor = dom_place(tmp_path / "four_dus.detx", dom_id)
    disabled = {rgb(DISABLED_DOM_COLOUR), rgb(DISABLED_EDGE_COLOUR)}
    assert cell_colours(png, metrics, du, floor) == disabled
    neighbour = (du, floor + 1 if floor < 18 else floor - 1)
    assert not cell_colours(png, metrics, *neighbour) & disabled
