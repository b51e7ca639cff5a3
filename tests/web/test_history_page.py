"""/history as a new user sees it in the first minutes: why it is empty, and when it will not
be; then the chart of what exists, without choosing a DOM first."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from starlette.testclient import TestClient

from km3mon.history.store import HistoryStore
from km3mon.runtime.freshness import Freshness
from km3mon.timetext import utc_text
from km3mon.web.app import create_app
from km3mon.web.site import Site
from tests.conftest import wait_until
from tests.web.conftest import needs_chromium, serve, visit

PLACES = {7: (1, 2), 8: (1, 3), 9: (2, 1)}


def empty_history(tmp_path: Path, started_s: float | None) -> Site:
    """The store as `km3mon history` creates it at its start; its record if it runs."""
    data = tmp_path / "data"
    HistoryStore(data).close()
    if started_s is not None:
        record = Freshness("history", 1, started_s, "none (reads data/metrics)", [], 60.0, 180.0)
        record.write(data / "freshness" / "history.json")
    return Site(plot_dir=tmp_path / "plots", data_dir=data)


def test_an_empty_history_says_when_its_first_minute_is_written(tmp_path) -> None:
    started = time.time() - 20
    client = TestClient(create_app(empty_history(tmp_path, started)))
    page = client.get("/history").text
    assert f"the first complete minute is written at {utc_text(started + 60)} UTC" in page
    assert 'data-waiting="1"' in page and "loading…" not in page


def test_an_empty_history_without_its_process_says_so(tmp_path) -> None:
    page = TestClient(create_app(empty_history(tmp_path, None))).get("/history").text
    assert "`km3mon history` has not started (no freshness record)" in page


def test_a_history_whose_monitors_have_not_published_says_so(tmp_path) -> None:
    client = TestClient(create_app(empty_history(tmp_path, time.time() - 300)))
    assert "the monitors have published no metrics yet" in client.get("/history").text


def first_minutes(data: Path) -> None:
    """Three minutes of every DOM's rate, as `km3mon history` writes them."""
    store = HistoryStore(data)
    store.set_places(PLACES)
    now = time.time()
    for minute in range(3):
        rates = np.array([200.0 + minute, 300.0, 250.0])
        store.write(
            [("dom_rate_khz", "dom", now - 180 + 60 * minute, np.array(sorted(PLACES)), rates)]
        )
    store.close()


@needs_chromium
def test_the_first_minutes_are_drawn_without_choosing_a_dom(spawn, tmp_path, browser) -> None:
    data = tmp_path / "data"
    port = serve(spawn, tmp_path, tmp_path / "plots", data)
    HistoryStore(data).close()
    visit(browser, f"http://127.0.0.1:{port}/history")
    drawn = "return document.body.dataset.drawn"
    wait_until(lambda: browser.execute_script(drawn), 60, "the page's verdict")
    assert browser.execute_script(drawn) == "waiting"
    assert "Nothing recorded yet" in browser.find_element("id", "info").text
    first_minutes(data)
    visit(browser, f"http://127.0.0.1:{port}/history")
    wait_until(lambda: browser.execute_script(drawn), 60, "the chart drawn",
               show=lambda: browser.find_element("id", "info").text)  # fmt: skip
    info = browser.find_element("id", "info").text
    assert browser.execute_script(drawn) == "chart", info
    assert browser.execute_script("return document.body.dataset.points") == "6", info  # DU 1
    assert info.startswith("dom_rate_khz: 2 series"), info
