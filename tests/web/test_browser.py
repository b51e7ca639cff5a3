"""The dashboard in a real headless browser (Debian's chromium via chromedriver and Selenium).

Screenshots go to ``test-artifacts/`` in the repository (ignored by git, kept by CI).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from km3mon.runtime.freshness import Freshness, OutputRecord
from tests.conftest import REPO, free_port, wait_for_port, wait_until
from tests.web.conftest import needs_chromium, serve, visit
from tests.web.sites import AUTH

ARTIFACTS = REPO / "test-artifacts"
pytestmark = needs_chromium


def png(colour: str) -> bytes:
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(4, 3))
    axes.set_facecolor(colour)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return buffer.getvalue()


def write_record(data: Path, stale: bool) -> None:
    now = time.time()
    record = Freshness("dom_rates", 1, now, "127.0.0.1:5553", ["IO_SUM"], 1.0, 3.0,
                       state="stale" if stale else "running",
                       last_message_at=now - (600 if stale else 0))  # fmt: skip
    for name in ("dom_rates.png", "dom_activity.png"):
        record.outputs[name] = OutputRecord(now, now - (600 if stale else 0), 0.1, stale)
    record.write(data / "freshness" / "dom_rates.json")


def test_overview_loads_updates_live_and_shows_staleness(spawn, tmp_path, browser) -> None:
    plots, data = tmp_path / "plots", tmp_path / "data"
    plots.mkdir()
    overview = (
        "dom_activity",
        "dom_rates",
        "trigger_rates",
        "pmt_rates_du1",
        "ztplot",
        "triggermap",
    )
    for name in overview:
        (plots / f"{name}.png").write_bytes(png("#a6cee3"))
    write_record(data, stale=False)
    port = serve(spawn, tmp_path, plots, data)
    ARTIFACTS.mkdir(exist_ok=True)

    visit(browser, f"http://127.0.0.1:{port}/")
    # images on screen are fetched (lazily), each completely
    loaded = (
        "return [...document.images].filter(i => i.getAttribute('src'))"
        ".map(i => i.complete && i.naturalWidth > 0)"
    )

    def all_loaded() -> bool:
        states = browser.execute_script(loaded)
        return len(states) >= 2 and all(states)

    wait_until(all_loaded, what="the plot images on screen loaded")
    wait_until(lambda: badge(browser, "dom_rates").endswith(" s"), what="a live badge")
    assert "fresh" in panel_class(browser, "dom_rates")
    assert "dom_rates: fresh, newest data" in browser.execute_script(
        "return document.querySelector('[data-badge=\"dom_rates\"]').title"
    )
    browser.save_screenshot(str(ARTIFACTS / "overview.png"))

    before = plot_src(browser, "dom_rates")
    (plots / "dom_rates.png").write_bytes(png("#fb9a99"))  # the monitor redraws it
    wait_until(lambda: plot_src(browser, "dom_rates") != before, timeout_s=60,
               what="the panel to reload its image")  # fmt: skip
    wait_until(lambda: browser.execute_script(
        "const i = document.querySelector('img[data-plot=\"dom_rates\"]');"
        "return i.complete && i.naturalWidth > 0"), what="the new image loaded")  # fmt: skip

    new_du = "return !!document.querySelector('img[data-plot=\"pmt_rates_du2\"]')"
    assert not browser.execute_script(new_du)
    (plots / "pmt_rates_du2.png").write_bytes(png("#b2df8a"))  # a new DU starts sending
    wait_until(lambda: browser.execute_script(new_du), timeout_s=60, what="the new DU's panel")
    wait_until(lambda: all(browser.execute_script(loaded)), what="the reloaded page's images")

    write_record(data, stale=True)  # the stream stopped
    wait_until(lambda: badge(browser, "dom_rates").startswith("STALE"), timeout_s=60,
               what="a stale badge")  # fmt: skip
    assert "stale" in panel_class(browser, "dom_rates")
    browser.save_screenshot(str(ARTIFACTS / "overview-stale.png"))

    visit(browser, f"http://127.0.0.1:{port}/status")
    assert "dom_rates" in browser.page_source
    browser.save_screenshot(str(ARTIFACTS / "status.png"))


def badge(browser, name: str) -> str:
    return browser.execute_script(
        f"return document.querySelector('[data-badge=\"{name}\"] .short').textContent"
    )


def panel_class(browser, name: str) -> str:
    return browser.execute_script(
        f"return document.querySelector('.tile[data-name=\"{name}\"]').className"
    )


def plot_src(browser, name: str) -> str:
    return browser.execute_script(f"return document.querySelector('img[data-plot=\"{name}\"]').src")


def test_log_viewer_shows_a_new_line_live(spawn, tmp_path, browser) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    log = logs / "MSG.log"
    log.write_text("".join(f"MSG.log [DataQueue]: 11:59 Q0 INFO line {i}\n" for i in range(500)))
    pipeline = tmp_path / "pipeline.toml"
    pipeline.write_text(f'[WebServer]\nusername = "{AUTH[0]}"\npassword = "{AUTH[1]}"\n')
    port = free_port()
    spawn("weblog", "-p", port, "--host", "127.0.0.1", "-f", log, "--pipeline", pipeline)
    wait_for_port(port)
    visit(browser, f"http://127.0.0.1:{port}/")
    count = "return document.getElementById('log').childElementCount"
    wait_until(lambda: browser.execute_script(count) == 200, what="the last 200 lines")
    with log.open("a") as stream:
        stream.write("MSG.log [DataFilter]: 12:00 F0 ERROR something broke\n")
    last = "return document.getElementById('log').lastElementChild.textContent"
    wait_until(lambda: "something broke" in browser.execute_script(last), timeout_s=60,
               what="the new line in the browser, without a reload")  # fmt: skip
    style = browser.execute_script(
        "return document.getElementById('log').lastElementChild.getAttribute('style')"
    )
    assert "font-weight: bold" in style, "ERROR lines are red and bold"
    os.replace(log, logs / "MSG_2026-11-23.log")  # the midnight rotation
    log.write_text("MSG.log [DataWriter]: 00:00 W0 STATUS new day\n")
    wait_until(lambda: "new day" in browser.execute_script(last), timeout_s=60,
               what="a line of the new file")  # fmt: skip
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "weblog.png"))
