"""History and Top-10 pages in a real headless browser (Debian's chromium via Selenium).

Screenshots go to ``test-artifacts/``.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from km3mon.alerts.book import AlertBook, Lifecycle
from km3mon.alerts.rules import Condition, Settings
from km3mon.controlhost.prefix import encode_frame
from km3mon.history.store import HistoryStore
from km3mon.sim.sim_geometry import synthetic_detx
from tests.conftest import NEVER_LEAVE_OUT_S, free_port, wait_for_port, wait_subscribed, wait_until
from tests.web.conftest import needs_chromium, serve, visit
from tests.web.sites import AUTH
from tests.web.test_browser import ARTIFACTS

pytestmark = needs_chromium

DAYS = 30


def month_of_history(data, n_dus: int = 2) -> tuple[int, float]:
    """30 synthetic days of every DOM's rate, written through the store's hour path."""
    store = HistoryStore(data)
    metric, _ = store.metric("dom_rate_khz", "dom")
    places = {808400000 + 7 * (18 * (du - 1) + floor): (du, floor)
              for du in range(1, n_dus + 1) for floor in range(1, 19)}  # fmt: skip
    store.set_places(places)
    doms = np.array(sorted(places), np.int64)
    now_hour = int(time.time() // 3600)
    rng = np.random.default_rng(2)
    store.db.execute("BEGIN")
    for hour in range(now_hour - DAYS * 24, now_hour + 1):
        minutes = hour * 60 + np.arange(60)
        daily = 240 + 15 * np.sin(2 * np.pi * minutes / 1440)
        rates = (daily + rng.normal(0, 3, (len(doms), 60))).astype(np.float32)
        if hour % 200 == 0:
            rates[:, 10:40] = np.nan  # a DAQ stop: a gap
        store.write_hour(metric, hour, doms, rates)
    store.db.execute("COMMIT")
    for day in range(1, DAYS, 3):
        store.note_run(12000 + day, (now_hour - DAYS * 24) * 3600 + day * 86400.0)
    store.close()
    return int(doms[5]), now_hour * 3600.0


def test_history_draws_a_dom_over_30_days(spawn, tmp_path, browser) -> None:
    data = tmp_path / "data"
    dom, _ = month_of_history(data)
    port = serve(spawn, tmp_path, tmp_path / "plots", data)
    visit(browser, f"http://127.0.0.1:{port}/history?dom={dom}&last=30d")
    wait_until(lambda: browser.execute_script("return document.body.dataset.drawn"), 20,
               "the chart drawn")  # fmt: skip
    drawn_ms = float(browser.execute_script("return document.body.dataset.drawnMs"))
    points = int(browser.execute_script("return document.body.dataset.points"))
    info = browser.find_element("id", "info").text
    ARTIFACTS.mkdir(exist_ok=True)
    ready = "return document.getElementById('map').dataset.ready"
    wait_until(lambda: browser.execute_script(ready), 10, "the DU x floor map")
    browser.save_screenshot(str(ARTIFACTS / "history-30d.png"))
    assert drawn_ms > 0, f"page start to chart drawn: {drawn_ms:.0f} ms ({info})"
    assert points > 1000 and "10 run start(s)" in info, info
    assert browser.execute_script("return document.body.dataset.drawn") == "chart"

    # One click on the DU x floor map: the history of that DOM.
    map_element = browser.find_element("id", "map")
    browser.execute_script(
        "const m = arguments[0], box = m.getBoundingClientRect();"
        "m.dispatchEvent(new MouseEvent('click', {clientX: box.left + 33 * box.width / m.width,"
        " clientY: box.top + (14 + 17 * 10 + 5) * box.height / m.height}));",
        map_element,
    )
    wait_until(lambda: "dom=808400007" in browser.current_url, 10, "the bottom DOM of DU 1")
    wait_until(lambda: browser.execute_script("return document.body.dataset.drawn"), 20,
               "the DOM's chart")  # fmt: skip


@pytest.mark.slow
def test_top10_lists_events_with_plots_downloads_and_directions(
    ligier,
    spawn,
    tmp_path,
    browser,
) -> None:
    detx = tmp_path / "two_dus.detx"
    detx.write_text(synthetic_detx(2))
    plots, data = tmp_path / "plots", tmp_path / "data"
    spawn("ztplot", "--detx", detx, "-p", ligier.port, "-o", plots, "--data-dir", data, "-i", "1")
    wait_subscribed(ligier.port, name="ztplot")
    time.sleep(1)
    spawn("simulate", "--detx", detx, "-p", ligier.port, "--simulated-seconds", 20, "--seed", 4,
          "--max-lag", NEVER_LEAVE_OUT_S)  # fmt: skip
    folder = plots / "event_selection"

    def drawn() -> int:
        return len(list(folder.glob("*.png"))) if folder.exists() else 0

    wait_until(lambda: drawn() >= 10, 60, "ten top-10 plots", show=drawn)
    import sqlite3

    with sqlite3.connect(data / "event_selection.sqlite3") as db:
        run, frame, counter, utc = db.execute(
            "SELECT run, frame_index, trigger_counter, utc FROM event_selection "
            "ORDER BY n_hits DESC LIMIT 1"
        ).fetchone()
    (data / "reco").mkdir()
    (data / "reco" / "fits.csv").write_text(
        "run,frame_index,trigger_counter,utc,kind,du,zenith_deg,azimuth_deg,quality\n"
        f"{run},{frame},{counter},{utc - 1:.3f},single-du,1,30.0,,1.0\n"
        f"{run},{frame},{counter},{utc:.3f},multi-du,,42.5,123.4,0.8\n"
    )
    port = serve(spawn, tmp_path, plots, data)
    visit(browser, f"http://127.0.0.1:{port}/top10")
    wait_until(lambda: browser.execute_script(
        "return [...document.images].filter(i => i.complete && i.naturalWidth > 0).length") >= 10,
        20, "the z-t plots loaded")  # fmt: skip
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "top10.png"))
    sections = browser.execute_script(
        "return [...document.querySelectorAll('section.list')].map(s => s.ariaLabel)"
    )
    assert sections == [f"{scope} by {r}" for scope in (f"This run ({run})", "All time")
                        for r in ("hits", "triggered hits", "overlays")]  # fmt: skip
    page = browser.page_source
    assert "zenith 42.5°, azimuth 123.4°" in page, "the multi-DU fit of the best event"
    link = browser.execute_script("return document.querySelector('a[download]').href")
    status, first = browser.execute_async_script(
        "const done = arguments[1]; fetch(arguments[0]).then(async r => done([r.status,"
        " [...new Uint8Array(await r.arrayBuffer())].slice(0, 8)]));",
        link,
    )
    assert status == 200 and bytes(first) == encode_frame("IO_EVT", b"")[:8]


def test_alerts_page_silences_and_known_bad_in_a_browser(spawn, tmp_path, browser) -> None:
    """A shifter silences a DU and marks a PMT known-bad with the page's own forms; the
    silenced alert is greyed, the silence listed with who, why and until when."""
    from selenium.webdriver.support.ui import Select

    data = tmp_path / "data"
    book = AlertBook(data, Lifecycle())
    settings = {"silent_dom": Settings(hold_s=0, clear_s=60, reminder_s=0)}
    doms = [Condition("silent_dom", str(d), f"DOM {d} silent 400 s", dom_id=d, du=du, floor=3)
            for d, du in ((808400007, 1), (808400133, 2))]  # fmt: skip
    book.update({"silent_dom": doms}, settings)
    pipeline = tmp_path / "pipeline.toml"
    pipeline.write_text(f'[WebServer]\nusername = "{AUTH[0]}"\npassword = "{AUTH[1]}"\n'
                        '[Alerts]\nknown_bad = ["808400014 flooded since 2024"]\n')  # fmt: skip
    port = free_port()
    spawn("webserver", "-p", port, "--host", "127.0.0.1", "--plots", tmp_path / "plots",
          "--data", data, "--pipeline", pipeline)  # fmt: skip
    wait_for_port(port)
    visit(browser, f"http://127.0.0.1:{port}/alerts")

    def fill(form: str, **fields: str) -> None:
        element = browser.find_element("css selector", f"form[action='{form}']")
        for name, value in fields.items():
            field = element.find_element("name", name)
            if field.tag_name == "select":
                Select(field).select_by_value(value)
            else:
                field.clear()
                field.send_keys(value)
        element.find_element("css selector", "button").click()

    buttons = "tr[data-alert] td.silence-this button[data-kind=du]"
    du_buttons = {
        b.get_attribute("data-value"): b for b in browser.find_elements("css selector", buttons)
    }
    assert sorted(du_buttons) == ["1", "2"]
    du_buttons["2"].click()  # the alert's "silence DU" fills in what and which
    form = browser.find_element("css selector", "form[action='/alerts/silences']")
    assert form.find_element("name", "value").get_attribute("value") == "2"
    fill("/alerts/silences", hours="3", name="Ada", reason="DU 2 repair")
    wait_until(lambda: "Silenced du 2" in browser.page_source, 20, "the silence set")
    row = browser.find_element("css selector", "table[aria-label=silences] tr[data-silence]")
    assert "DU" in row.text and "Ada" in row.text and "DU 2 repair" in row.text
    book.update({"silent_dom": doms}, settings)  # the next evaluation: DU 2's DOM silenced
    book.close()
    fill("/alerts/known-bad", dom_id="808400021", channel="12", name="Bob", reason="hot PMT")
    wait_until(lambda: 'data-known-bad="808400021/12"' in browser.page_source, 20,
               "the known-bad PMT listed")  # fmt: skip
    listed = browser.find_elements(
        "css selector", "table[aria-label='known bad'] tr[data-known-bad]"
    )
    assert [r.get_attribute("data-known-bad") for r in listed] == ["808400014", "808400021/12"]
    assert "pipeline.toml" in listed[0].text and "Bob" in listed[1].text
    background = "return getComputedStyle(arguments[0].querySelector('td')).backgroundColor"
    silenced = browser.find_element("css selector", "tr[data-alert][data-silenced]")
    loud = browser.find_element("css selector", "tr.firing[data-alert]")
    assert "808400133" in silenced.text and "silenced: nobody notified" in silenced.text
    assert browser.execute_script(background, silenced) == "rgb(238, 238, 238)", "greyed"
    assert browser.execute_script(background, loud) != "rgb(238, 238, 238)"
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "alerts-silences.png"))
