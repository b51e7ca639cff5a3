"""Browser and plot folders for the dashboard tests.

``arca21_site``: the plots of ARCA-21 (the demo's detector) drawn by the real monitors from
the simulator through a real ligier, made once for the module that uses them; the processes
run while it runs, so the panels stay fresh, and stop after it (not at the session's end: they
would burn CPU beside every later test); the K40, SN and time-sync plots are drawn in-process
(``sites.calibration_plots``). ``arca230_site``: a synthetic 230-DU folder (690
AHRS images, 460 PMT images, summaries) drawn by the monitors' renderers in-process
(``sites.synthetic_site``).
"""

from __future__ import annotations

import base64
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import km3net_testdata
import pytest

from tests.conftest import Process, free_port, wait_for_port, wait_subscribed, wait_until
from tests.web.sites import AUTH, calibration_plots, synthetic_site

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
ARCA21 = km3net_testdata.data_path("detx/KM3NeT_00000133_20221025.detx")
#: A shifter's browser window (issue 15) and a control-room wall screen.
DESK, WALL = (1600, 1300), (1920, 1080)

needs_chromium = pytest.mark.skipif(
    (CHROMIUM is None or CHROMEDRIVER is None) and not os.environ.get("CI"),
    reason="Debian's chromium and chromium-driver are not installed (.ci/run installs them)",
)


@pytest.fixture
def open_browser() -> Iterator[Callable[..., object]]:
    """``open_browser(width, height)``: headless chromium with the dashboard's credentials."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    drivers = []

    def start(width: int = DESK[0], height: int = DESK[1]):
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                     "--no-first-run", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync", "--hide-scrollbars",
                     f"--window-size={width},{height}"):  # fmt: skip
            options.add_argument(flag)
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        token = base64.b64encode(":".join(AUTH).encode()).decode()
        driver.execute_cdp_cmd("Network.enable", {})
        driver.execute_cdp_cmd(
            "Network.setExtraHTTPHeaders", {"headers": {"Authorization": f"Basic {token}"}}
        )
        drivers.append(driver)
        return driver

    yield start
    for driver in drivers:
        driver.quit()


def visit(browser, url: str) -> None:
    """``browser.get(url)``, then wait until that document is completely loaded: on a loaded
    machine chromedriver can return from ``get`` before the new document is there (CI read an
    empty page source, and a half-parsed 230-DU page, right after it)."""
    browser.get(url)
    loaded = ("return document.readyState === 'complete'"
              " && location.href === new URL(arguments[0], location.href).href")  # fmt: skip
    wait_until(
        lambda: browser.execute_script(loaded, url),
        30,
        f"{url} loaded",
        show=lambda: browser.execute_script("return [location.href, document.readyState]"),
    )


@pytest.fixture
def browser(open_browser):
    return open_browser(1400, 1000)


class Dashboard:
    """A running ``km3mon webserver`` on a plot folder."""

    def __init__(self, folder: Path, processes: list[Process]) -> None:
        self.folder = folder
        self.processes = processes
        port = free_port()
        self.base = f"http://127.0.0.1:{port}"
        args = ["webserver", "-p", str(port), "--host", "127.0.0.1", "--plots",
                str(folder / "plots"), "--data", str(folder / "data"), "--pipeline",
                str(folder / "pipeline.toml")]  # fmt: skip
        processes.append(Process(args, folder / "webserver.log"))
        wait_for_port(port)


def serve(spawn: Callable[..., Process], tmp_path: Path, plots: Path, data: Path) -> int:
    """Start ``km3mon webserver`` on loopback with the test credentials; its port."""
    pipeline = tmp_path / "pipeline.toml"
    pipeline.write_text(f'[WebServer]\nusername = "{AUTH[0]}"\npassword = "{AUTH[1]}"\n')
    port = free_port()
    spawn("webserver", "-p", port, "--host", "127.0.0.1", "--plots", plots, "--data", data,
          "--pipeline", pipeline)  # fmt: skip
    wait_for_port(port)
    return port


def _stop(processes: list[Process]) -> None:
    for process in reversed(processes):
        process.stop()


@pytest.fixture(scope="module")
def arca230_site(tmp_path_factory) -> Iterator[Dashboard]:
    folder = synthetic_site(tmp_path_factory.mktemp("arca230"))
    processes: list[Process] = []
    yield Dashboard(folder, processes)
    _stop(processes)


ARCA21_PIPELINE = f"""[WebServer]
username = "{AUTH[0]}"
password = "{AUTH[1]}"

[PMTRates]
interval = 5

[CalibrateAHRS]
time_range = 1

[TriggerRate]
interval = 10

[TriggerMap]
max_events = 300
"""
#: Monitors and their render intervals [s]; the event monitors are left out (their panels
#: then say which process should draw them), to spare a loaded CI machine.
ARCA21_MONITORS = {"dom_activity": 5, "dom_rates": 5, "pmt_rates": 5, "ahrs_calibration": 10}


@pytest.fixture(scope="module")
def arca21_site(tmp_path_factory) -> Iterator[Dashboard]:
    """ARCA-21 from the simulator (a silent DOM and a hot PMT, as in the demo), real time."""
    folder = tmp_path_factory.mktemp("arca21")
    (folder / "pipeline.toml").write_text(ARCA21_PIPELINE)
    plots, data = folder / "plots", folder / "data"
    processes: list[Process] = []

    def start(*args: object) -> Process:
        process = Process([str(a) for a in args], folder / f"{args[0]}.log")
        processes.append(process)
        return process

    try:
        ligier_port, dm_port = free_port(), free_port()
        start("ligier", "-P", ligier_port, "--host", "127.0.0.1")
        start("detector-manager", "--detx", ARCA21, "-p", dm_port)
        wait_for_port(ligier_port)
        common = ["--detx", ARCA21, "-o", plots, "--data-dir", data,
                  "--pipeline", folder / "pipeline.toml"]  # fmt: skip
        for name, interval_s in ARCA21_MONITORS.items():
            start(name, "-p", ligier_port, "-i", interval_s, *common)
        start("rttc", "-l", f"127.0.0.1:{dm_port}", "-i", 5, *common)
        for name in ARCA21_MONITORS:
            wait_subscribed(ligier_port, name=name)
        start("simulate", "--detx", ARCA21, "-p", ligier_port, "--seed", 3,
              "--scenario", "silent-dom@0,hot-pmt@0")  # fmt: skip
        calibration_plots(folder, ARCA21)  # no K40/SN/time-sync stream: drawn while we wait
        wanted = ["pmt_rates_summary", "ahrs_summary", "dom_rates", "dom_activity", "rttc"]
        wanted += [f"{kind}_du{du}" for kind in ("pmt_rates", "pmt_hrv", "yaw_calib",
                   "pitch_calib", "roll_calib") for du in (5, 9, 32)]  # fmt: skip

        def missing() -> list[str]:
            return [name for name in wanted if not (plots / f"{name}.png").exists()]

        wait_until(lambda: not missing(), 300, "the ARCA-21 plots", show=missing)
        yield Dashboard(folder, processes)
    finally:
        _stop(processes)
