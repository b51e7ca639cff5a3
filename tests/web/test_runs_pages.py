"""The /runs pages in headless chromium, at 21 and 230 DUs.

The quality store is made by the real ``Quality`` monitor, in-process, from the simulator's
stream (clean runs, a run in a bioluminescence storm, a run still going on); the dashboard
serves it. Every assertion is read from the rendered page.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from pathlib import Path

import pytest

from km3mon.config import PipelineConfig
from km3mon.daq.files import iter_file
from km3mon.detector import read_detx
from km3mon.monitors import quality as quality_module
from km3mon.monitors.quality import Quality
from km3mon.sim.sim_geometry import synthetic_detx
from km3mon.sim.simulator import Simulator
from tests.conftest import wait_until
from tests.web.conftest import needs_chromium, serve, visit
from tests.web.sites import _context

pytestmark = [needs_chromium, pytest.mark.slow]

SLICES_PER_RUN = 120  # 12 s runs: enough summary slices for the DOM-rate test


def quality_site(folder: Path, n_dus: int) -> None:
    """Four runs of an ``n_dus`` detector into ``folder/data``: two clean, one in an HRV storm,
    the fourth still running."""
    detx = folder / "detector.detx"
    detx.write_text(synthetic_detx(n_dus))
    detector = read_detx(detx)
    context = _context(folder, detx, "quality", 10.0)
    quality_section = dataclasses.replace(PipelineConfig().quality, min_livetime_s=5.0)
    context.pipeline = dataclasses.replace(PipelineConfig(), quality=quality_section)
    monitor = Quality(context)
    simulator = Simulator(detector, seed=2, scenarios=["hrv-storm@24-36"], run_minutes=0.2,
                          start_utc_s=time.time() - 60, event_rate_hz=20.0)  # fmt: skip
    stream = folder / "stream.dat"
    for _ in range(3 * SLICES_PER_RUN + 40):
        with stream.open("wb") as file:
            file.write(simulator.step().data)
        monitor.consume([m for m in iter_file(stream) if m.tag != "IO_MONIT"])
    with pytest.MonkeyPatch.context() as patch:  # the whole stream is in: no straggler to wait for
        patch.setattr(quality_module, "STRAGGLERS_S", 0.0)
        monitor.render()
    monitor.stop()


@pytest.fixture(scope="module", params=[21, 230], ids=["21 DUs", "230 DUs"])
def site(request) -> tuple[Path, int]:
    folder = Path(tempfile.mkdtemp(prefix="km3mon-runs-"))
    quality_site(folder, request.param)
    (folder / "plots").mkdir(exist_ok=True)
    return folder, request.param


ROWS_JS = """
return [...document.querySelectorAll("tr[data-run]")].map((row) => {
  const verdict = row.querySelector(".verdict");
  return {run: Number(row.dataset.run), verdict: verdict.textContent.trim(),
          colour: getComputedStyle(verdict).backgroundColor,
          width: row.getBoundingClientRect().width};
});
"""


def test_runs_pages_in_the_browser(site, spawn, tmp_path: Path, browser) -> None:
    folder, n_dus = site
    port = serve(spawn, tmp_path, folder / "plots", folder / "data")
    base = f"http://127.0.0.1:{port}"
    visit(browser, f"{base}/runs")
    rows = browser.execute_script(ROWS_JS)
    verdicts = {row["run"]: row["verdict"] for row in rows}
    assert [row["run"] for row in rows] == sorted(verdicts, reverse=True)  # newest first
    assert verdicts[10000] in ("good", "bad")  # the first may miss its first slices
    assert verdicts[10001] == "good" and verdicts[10002] == "bad", verdicts
    assert verdicts[10003] == "running"
    colours = {row["verdict"]: row["colour"] for row in rows}
    assert len({colours["good"], colours["bad"], colours["running"]}) == 3
    current = browser.find_element("id", "current-run")
    assert current.get_attribute("data-run") == "10003"
    minutes = browser.find_elements(
        "css selector", "table[aria-label='minutes of the current run'] tr"
    )
    assert len(minutes) >= 2  # a header and at least one minute
    width = browser.execute_script("return [document.documentElement.scrollWidth, innerWidth]")
    assert width[0] <= width[1] + 1, f"the runs page scrolls sideways: {width}"

    visit(browser, f"{base}/runs/10002")
    assert browser.find_element("id", "verdict").text == "bad"
    tests = browser.execute_script(
        "return Object.fromEntries([...document.querySelectorAll('tr[data-test]')]"
        ".map((r) => [r.dataset.test, r.cells[1].textContent.trim()]))"
    )
    assert tests["dom_rates"] == "fail", tests
    quantities = browser.execute_script(
        "return Object.fromEntries([...document.querySelectorAll('tr[data-quantity]')]"
        ".map((r) => [r.dataset.quantity, [r.cells[1].textContent, r.cells[2].textContent]]))"
    )
    assert float(quantities["livetime_s"][0]) == pytest.approx(12.0, abs=0.2)
    assert int(quantities["doms_expected"][0]) == 18 * n_dus
    lines = browser.execute_script(
        "return [...document.querySelectorAll('svg.shape')].map((s) =>"
        " s.querySelectorAll('polyline').length)"
    )
    assert lines and all(n == 2 for n in lines), lines  # the run over its reference
    width = browser.execute_script("return [document.documentElement.scrollWidth, innerWidth]")
    assert width[0] <= width[1] + 1, f"the run page scrolls sideways: {width}"

    # the override form posts from the page itself (same origin) and the history shows it
    browser.find_element("css selector", "form[aria-label='override the verdict'] select"
                         ).send_keys("purgatory")  # fmt: skip
    for name, text in (("name", "run coordinator"), ("reason", "DU back after a reboot")):
        browser.find_element(
            "css selector", f"form[aria-label='override the verdict'] input[name={name}]"
        ).send_keys(text)
    browser.find_element("css selector", "form[aria-label='override the verdict'] button").click()
    wait_until(lambda: "Override saved" in browser.page_source, 30, "the override saved")
    history = browser.find_element("css selector", "table[aria-label='override history']").text
    assert "run coordinator" in history and "DU back after a reboot" in history
    assert browser.find_element("id", "verdict").text == "purgatory"
