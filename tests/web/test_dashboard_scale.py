"""The dashboard at detector scale, in real headless chromium: ARCA-21 from the real monitors
and a 230-DU folder. Every assertion is read from the rendered page (getBoundingClientRect,
the Performance API); screenshots of every page go to ``test-artifacts/``.
"""

from __future__ import annotations

import os
import time

import pytest

from tests.conftest import REPO, wait_until
from tests.web.conftest import DESK, WALL, needs_chromium, visit

ARTIFACTS = REPO / "test-artifacts"
pytestmark = [needs_chromium, pytest.mark.slow]
ARCA21_DUS = [5, 9, 10, 11, 12, 13, 14, 15, 16, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 30, 32]

#: Per tile: on screen?, image width, share of the image under the badge, loaded or a
#: labelled placeholder; null while the document is still loading.
TILES_JS = """
if (document.readyState !== "complete") return null;  // a page reloading for a new DU
const onScreen = (r) => r.width > 0 && r.bottom > 0 && r.right > 0 &&
                        r.top < innerHeight && r.left < innerWidth;
return [...document.querySelectorAll(".tile")].map((tile) => {
  const frame = tile.querySelector(".frame");
  const img = frame.querySelector("img");
  const box = (img || frame).getBoundingClientRect();
  const badge = tile.querySelector(".badge").getBoundingClientRect();
  const dx = Math.max(0, Math.min(box.right, badge.right) - Math.max(box.left, badge.left));
  const dy = Math.max(0, Math.min(box.bottom, badge.bottom) - Math.max(box.top, badge.top));
  return {
    name: tile.dataset.name, du: tile.dataset.du ? Number(tile.dataset.du) : null,
    visible: onScreen(box), width: box.width, tileWidth: tile.getBoundingClientRect().width,
    natural: img ? img.naturalWidth : 0,
    covered: dx * dy / (box.width * box.height),
    loaded: !!img && img.complete && img.naturalWidth > 0 && img.classList.contains("loaded"),
    placeholder: frame.classList.contains("placeholder") && !!frame.getAttribute("aria-label"),
    hasImage: !!img, requested: !!img && !!img.getAttribute("src"),
  };
});
"""
#: Resolves after every image on screen is decoded and two frames were painted.
PAINTED_JS = """
const done = arguments[arguments.length - 1];
const shown = [...document.images].filter((i) => i.getAttribute("src"));
Promise.allSettled(shown.map((i) => i.decode())).then(() =>
  requestAnimationFrame(() => requestAnimationFrame(() => done(true))));
"""
PLOT_REQUESTS_JS = """
return performance.getEntriesByType("resource").filter((e) => e.name.includes("/plots/"))
  .map((e) => e.name);
"""


def tiles(browser) -> list[dict]:
    found: list[dict] | None = None

    def read() -> bool:
        nonlocal found
        found = browser.execute_script(TILES_JS)
        return found is not None

    wait_until(read, 30, "a completely loaded page")
    return found


def settled(browser) -> bool:
    """Every tile on screen shows its image or a labelled placeholder."""
    shown = [t for t in tiles(browser) if t["visible"]]
    return bool(shown) and all(t["loaded"] or t["placeholder"] for t in shown)


def check_page(browser, url: str, shot: str, static: bool = False) -> list[dict]:
    """Open ``url``, wait for the first screen, assert it is readable; screenshot. On a
    ``static`` plot folder the page must not reload itself meanwhile (a live update reloads
    it for a new DU's plot only)."""
    visit(browser, url)
    browser.execute_script("window.sameDocument = true")
    wait_until(lambda: settled(browser), 30, f"the first screen of {url}",
               show=lambda: [t for t in tiles(browser) if t["visible"]][:3])  # fmt: skip
    found = tiles(browser)
    shown = [t for t in found if t["visible"]]
    for tile in shown:
        assert tile["tileWidth"] >= 360, (url, tile)  # README: tiles at least 360 CSS px
        assert tile["width"] >= 300, (url, tile)  # the plot itself, inside the tile's frame
        assert tile["covered"] <= 0.15, (url, tile)
        assert tile["loaded"] or tile["placeholder"], (url, tile)
    broken = browser.execute_script(
        "return [...document.images].filter((i) => i.getAttribute('src') && i.complete"
        " && i.naturalWidth === 0 && !i.parentElement.classList.contains('placeholder'))"
        ".map((i) => i.dataset.plot)"
    )
    assert not broken, (url, broken)
    ARTIFACTS.mkdir(exist_ok=True)
    browser.execute_async_script(PAINTED_JS)
    browser.save_screenshot(str(ARTIFACTS / f"{shot}.png"))
    if static:
        assert browser.execute_script("return window.sameDocument === true"), (url, "reloaded")
    return found


def check_every_page(dashboard, open_browser, size: str, du: int, static: bool) -> None:
    browser = open_browser(*DESK)
    for path, name in (("/", "overview"), ("/pmt.html", "pmt"), ("/ahrs.html", "ahrs"),
                       (f"/du/{du}", "du"), ("/reco.html", "reco")):  # fmt: skip
        found = check_page(browser, dashboard.base + path, f"{size}-{name}", static)
        if name == "du":
            assert {t["du"] for t in found if t["du"] is not None} == {du}
        if name == "reco":  # nothing produces these here: the page says who should
            sentence = browser.find_element("css selector", ".placeholder").get_attribute(
                "aria-label"
            )
            assert "produced by the reconstruction (`km3mon reco`)" in sentence
    wall = open_browser(*WALL)
    found = check_page(wall, f"{dashboard.base}/wall?step=1", f"{size}-wall")
    assert not wall.find_elements("css selector", "nav"), "no navigation on the wall"
    assert any(t["visible"] for t in found)
    font = wall.execute_script("return parseFloat(getComputedStyle(document.body).fontSize)")
    assert font >= 20, "large text on the wall"


def check_calibration_pages(dashboard, open_browser, size: str, k40_dus: list[int],
                            static: bool) -> None:  # fmt: skip
    """The K40, SN and time-sync pages: each shows its plots, in the layout's order."""
    browser = open_browser(*DESK)
    found = check_page(browser, f"{dashboard.base}/k40.html", f"{size}-k40", static)
    names = [t["name"] for t in found]
    assert names == ["k40_summary", "intradom", "angular_k40rate_distribution",
                     *(f"k40_du{du}" for du in k40_dus)], names  # fmt: skip
    summary = found[0]
    assert summary["visible"] and summary["loaded"], "the summary map is on the first screen"
    assert summary["width"] >= 1200, ("every DU's column needs the page's width", summary)
    per_du = [t for t in found if t["name"].startswith("k40_du")]
    assert [t["du"] for t in per_du] == k40_dus, "every DU image tile says its DU"
    browser.execute_script("document.querySelector(`[data-name='k40_du${arguments[0]}']`)"
                           ".scrollIntoView()", k40_dus[0])  # fmt: skip
    wait_until(lambda: settled(browser), 30, "the K40 DU images scrolled into view",
               show=lambda: [t for t in tiles(browser) if t["visible"]][:3])  # fmt: skip
    shown = [t for t in tiles(browser) if t["visible"] and t["name"].startswith("k40_du")]
    assert shown and all(t["loaded"] and t["width"] >= 300 for t in shown), shown
    browser.execute_async_script(PAINTED_JS)
    browser.save_screenshot(str(ARTIFACTS / f"{size}-k40-dus.png"))

    found = check_page(browser, f"{dashboard.base}/sn.html", f"{size}-sn", static)
    assert [t["name"] for t in found] == ["sn_bg_histogram", "sn_pk_history"]
    assert all(t["visible"] and t["loaded"] for t in found), found
    for tile in found:  # side by side: neither plot's text shrunk to unreadable
        assert tile["width"] >= 0.6 * tile["natural"], tile

    found = check_page(browser, f"{dashboard.base}/timesync.html", f"{size}-timesync", static)
    assert [(t["name"], t["visible"], t["loaded"]) for t in found] == [("timesync", True, True)]
    assert found[0]["width"] >= 1200, ("the DOM map needs the page's width", found[0])


def check_du_filter(dashboard, browser, available: set[int]) -> None:
    visit(browser, f"{dashboard.base}/pmt.html?du=9-16,23")
    wait_until(lambda: settled(browser), 30, "the filtered PMT page")
    shown = {t["du"] for t in tiles(browser) if t["du"] is not None}
    assert shown == {du for du in available if 9 <= du <= 16 or du == 23}
    field = browser.find_element("css selector", ".du-filter input")
    assert field.get_attribute("value") == "9-16,23", "the filter stays in the URL and the box"
    nav_ahrs = browser.find_element("css selector", 'nav a[href^="/ahrs.html"]')
    assert nav_ahrs.get_attribute("href").endswith("/ahrs.html?du=9-16%2C23")


def click_summary_column(browser, base: str, du: int) -> None:
    """Click the summary image in the middle of ``du``'s column: its DU page opens."""
    from selenium.webdriver.common.action_chains import ActionChains

    visit(browser, f"{base}/pmt.html")
    wait_until(lambda: settled(browser), 30, "the PMT page")
    frame = browser.find_element("css selector", ".summary [data-du-axis]")
    axis = browser.execute_script("return JSON.parse(arguments[0].dataset.duAxis)", frame)
    width, height = frame.size["width"], frame.size["height"]
    column = axis["dus"].index(du)
    x = (axis["x0"] + (column + 0.5) / len(axis["dus"]) * (axis["x1"] - axis["x0"])) * width
    ActionChains(browser).move_to_element_with_offset(
        frame, int(x - width / 2), int(height * 0.4 - height / 2)
    ).click().perform()
    wait_until(lambda: browser.current_url.endswith(f"/du/{du}"), 10, f"DU {du}'s page",
               show=lambda: browser.current_url)  # fmt: skip


@pytest.mark.timeout(900)
def test_arca21_from_the_real_monitors(arca21_site, open_browser) -> None:
    check_every_page(arca21_site, open_browser, "arca21", du=9, static=False)
    check_calibration_pages(arca21_site, open_browser, "arca21", ARCA21_DUS, static=False)
    browser = open_browser(*DESK)
    dus = set(ARCA21_DUS)
    wait_until(lambda: all((arca21_site.folder / "plots" / f"pmt_rates_du{d}.png").exists()
                           for d in dus), 60, "every DU's PMT plot")  # fmt: skip
    check_du_filter(arca21_site, browser, dus)
    click_summary_column(browser, arca21_site.base, 12)


@pytest.mark.timeout(900)
def test_230_dus_first_screen_fetches_only_what_it_shows(arca230_site, open_browser) -> None:
    check_every_page(arca230_site, open_browser, "arca230", du=117, static=True)
    check_calibration_pages(arca230_site, open_browser, "arca230", [1, 2, 3, 4, 230], static=True)
    browser = open_browser(*DESK)
    check_du_filter(arca230_site, browser, set(range(1, 231)))
    click_summary_column(browser, arca230_site.base, 200)

    found = check_page(browser, f"{arca230_site.base}/ahrs.html", "arca230-ahrs-first-screen",
                       static=True)  # fmt: skip
    assert sum(t["hasImage"] for t in found) == 691, "690 per-DU images and the summary"
    time.sleep(1.5)  # anything else the page would fetch by itself
    shown = [t for t in tiles(browser) if t["visible"] and t["hasImage"]]
    requests = browser.execute_script(PLOT_REQUESTS_JS)
    assert len(requests) <= len(shown), (len(requests), len(shown))
    requested = [t["name"] for t in tiles(browser) if t["requested"]]
    assert sorted(requested) == sorted(t["name"] for t in shown)

    # A live update reloads an image on screen at once, one off screen when it comes on.
    on_screen, off_screen = shown[-1]["name"], "roll_calib_du230"
    plots = arca230_site.folder / "plots"
    later = int(time.time()) + 5
    for name in (on_screen, off_screen):
        os.utime(plots / f"{name}.png", (later, later))
    src = "return document.querySelector(`img[data-plot='${arguments[0]}']`).getAttribute('src')"
    wait_until(lambda: str(later) in (browser.execute_script(src, on_screen) or ""), 10,
               "the image on screen reloaded")  # fmt: skip
    assert browser.execute_script(src, off_screen) is None, "not fetched while off screen"
    browser.execute_script(
        "document.querySelector(`img[data-plot='${arguments[0]}']`).scrollIntoView()", off_screen
    )
    wait_until(lambda: str(later) in (browser.execute_script(src, off_screen) or ""), 10,
               "the newest version when it comes on screen")  # fmt: skip
