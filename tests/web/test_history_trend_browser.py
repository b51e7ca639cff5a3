"""A DOM's time offset has a trend on /history: reco's per-DOM offsets, sampled by the real
``km3mon history`` process, drawn by the page in headless chromium."""

from __future__ import annotations

import time

import pytest

from km3mon.detector import read_detx
from km3mon.sim.sim_geometry import synthetic_detx
from tests.conftest import wait_until
from tests.history.test_sampler import known_metrics, reco, series, write_metrics
from tests.web.conftest import needs_chromium, serve, visit
from tests.web.test_browser import ARTIFACTS

pytestmark = needs_chromium
MINUTES = 6


@pytest.mark.slow
def test_a_doms_time_offset_has_a_trend_on_the_history_page(spawn, tmp_path, browser) -> None:
    detx = tmp_path / "one_du.detx"
    detx.write_text(synthetic_detx(1))
    doms = [int(d) for d in read_detx(detx).optical_dom_ids[:3]]
    data = tmp_path / "data"
    first = (time.time() // 60 - MINUTES - 1) * 60
    write_metrics(data, "reco", reco(first, doms, [0.0, 0.0, 0.0]))
    spawn("history", "--detx", detx, "--data-dir", data, "-o", tmp_path / "plots", "-i", "1")
    wait_until(lambda: "reco.offset_ns" in known_metrics(data), 30, "the first sample")
    for minute in range(1, MINUTES):  # a DOM drifting away by 1.5 ns a minute
        write_metrics(data, "reco", reco(first + 60 * minute, doms, [0.1, 1.5 * minute, 0.0]))
        wait_until(lambda m=minute: len(series(data, "reco.offset_ns", doms[1], first)) > m, 30,
                   f"minute {minute} stored")  # fmt: skip

    port = serve(spawn, tmp_path, tmp_path / "plots", data)
    visit(browser, f"http://127.0.0.1:{port}/history?dom={doms[1]}&metric=reco.offset_ns&last=6h")
    wait_until(lambda: browser.execute_script("return document.body.dataset.drawn"), 20,
               "the chart drawn")  # fmt: skip
    info = browser.find_element("id", "info").text
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "history-reco-offset.png"))
    assert browser.execute_script("return document.body.dataset.drawn") == "chart", info
    assert int(browser.execute_script("return document.body.dataset.points")) == MINUTES, info
    assert "reco.offset_ns" in info
    selected = browser.execute_script("return document.getElementById('metric').value")
    assert selected == "reco.offset_ns"
