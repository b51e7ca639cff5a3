"""Opening the dashboard's largest pages at 230 DUs in headless chromium.

A 230-DU plot folder (690 AHRS images, 460 PMT images, both summaries: ``tests/web/sites``)
served by a real ``km3mon webserver`` with auth. For ``/ahrs.html`` (691 tiles) and
``/pmt.html`` (461) the browser's own timings (Navigation and Resource Timing) give the
time to the HTML, to DOMContentLoaded, to the load event and to the last image of the first
screen, and the number of image requests against the number of images on screen. Side by
side, the same 691 images on a page of plain ``<img>`` tags, as the original km3mon's pages
were built (every image fetched at once), loaded from a file by the same browser.

    .venv/bin/python bench/bench_dashboard.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import base64
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # the test suite's plot-folder builder

from tests.web.sites import AUTH, synthetic_site  # noqa: E402

from benchlib import wait_for_http  # noqa: E402

TIMINGS_JS = """
const nav = performance.getEntriesByType("navigation")[0];
const plots = performance.getEntriesByType("resource").filter((e) => e.name.includes("/plots/"));
const onScreen = (r) => r.width > 0 && r.bottom > 0 && r.top < innerHeight;
const images = [...document.images];
return {
  html_ms: nav.responseEnd, dom_ms: nav.domContentLoadedEventEnd, load_ms: nav.loadEventEnd,
  images_ms: plots.length ? Math.max(...plots.map((e) => e.responseEnd)) : 0,
  requests: plots.length, images: images.length,
  on_screen: images.filter((i) => onScreen(i.getBoundingClientRect())).length,
  loaded: images.filter((i) => i.complete && i.naturalWidth > 0).length,
};
"""


def browser(width: int = 1600, height: int = 1300):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking", f"--window-size={width},{height}"):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    token = base64.b64encode(":".join(AUTH).encode()).decode()
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd(
        "Network.setExtraHTTPHeaders", {"headers": {"Authorization": f"Basic {token}"}}
    )
    return driver


def open_page(driver, url: str, wait_for_all: bool) -> dict:
    """Navigate with an empty cache; wait until the page stops fetching, return timings."""
    driver.execute_cdp_cmd("Network.clearBrowserCache", {})
    driver.get("about:blank")
    driver.get(url)
    deadline = time.monotonic() + 120
    previous = None
    while time.monotonic() < deadline:
        timings = driver.execute_script(TIMINGS_JS)
        done = timings["load_ms"] > 0 and timings["loaded"] >= (
            timings["images"] if wait_for_all else timings["on_screen"]
        )
        if done and timings == previous:
            return timings
        previous = timings
        time.sleep(0.5)
    raise TimeoutError(f"{url} did not settle: {previous}")


def eager_page(folder: Path, base: str, names: list[str]) -> Path:
    """The original km3mon's way: every image of the page requested at once."""
    tags = "\n".join(f'<img src="{base}/plots/{n}.png" style="width:24%">' for n in names)
    path = folder / "eager.html"
    head = "<script>performance.setResourceTimingBufferSize(5000)</script>"  # default: 250
    path.write_text(f"<!doctype html><html><head>{head}</head><body>{tags}</body></html>")
    return path


def median_of(runs: list[dict], key: str) -> float:
    return statistics.median(run[key] for run in runs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    folder = synthetic_site(Path(tempfile.mkdtemp(prefix="km3mon-dashboard-")))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "km3mon", "webserver", "-p", str(port), "--host", "127.0.0.1",
         "--plots", folder / "plots", "--data", folder / "data",
         "--pipeline", folder / "pipeline.toml"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    driver = None
    try:
        wait_for_http(base)
        html_s = []
        with httpx.Client(auth=AUTH, timeout=30) as client:
            for _ in range(20):
                start = time.perf_counter()
                client.get(f"{base}/ahrs.html").raise_for_status()
                html_s.append(time.perf_counter() - start)
        driver = browser()
        results = {}
        for path in ("/ahrs.html", "/pmt.html"):
            results[path] = [open_page(driver, base + path, False) for _ in range(args.repeats)]
        names = ["ahrs_summary"] + [
            f"{angle}_calib_du{du}" for angle in ("yaw", "pitch", "roll") for du in range(1, 231)
        ]
        eager = eager_page(folder, base, names).as_uri()
        results["plain <img> page (original design)"] = [
            open_page(driver, eager, True) for _ in range(args.repeats)
        ]
    finally:
        if driver is not None:
            driver.quit()
        server.terminate()
        server.wait(10)
    print(f"median of {args.repeats} openings, 1600 × 1300 window, empty cache; shared machine")
    print(f"server: /ahrs.html (691 tiles) rendered in {statistics.median(html_s) * 1e3:.0f} ms")
    print("| page | HTML [ms] | DOMContentLoaded [ms] | load event [ms] | last image [ms] | "
          "images requested / on screen / on page |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---|")
    for label, runs in results.items():
        print(
            f"| {label} | {median_of(runs, 'html_ms'):.0f} | {median_of(runs, 'dom_ms'):.0f} | "
            f"{median_of(runs, 'load_ms'):.0f} | {median_of(runs, 'images_ms'):.0f} | "
            f"{median_of(runs, 'requests'):.0f} / {median_of(runs, 'on_screen'):.0f} / "
            f"{median_of(runs, 'images'):.0f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
