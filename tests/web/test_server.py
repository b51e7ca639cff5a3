"""`km3mon webserver` as a real process next to a real monitor: API, metrics, live events."""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx
import km3net_testdata

from km3mon.controlhost import Client
from km3mon.detector import read_detx
from tests.conftest import free_port, wait_for_port, wait_subscribed, wait_until
from tests.monitors.daqfakes import T0, slice_payload
from tests.web.conftest import serve

ARCA21 = km3net_testdata.data_path("detx/KM3NeT_00000133_20221025.detx")
AUTH = ("shifter", "s3cret")


def test_dashboard_serves_what_a_running_monitor_writes(ligier, spawn, tmp_path: Path) -> None:
    plots, data = tmp_path / "plots", tmp_path / "data"
    pipeline = tmp_path / "pipeline.toml"
    pipeline.write_text(f'[WebServer]\nusername = "{AUTH[0]}"\npassword = "{AUTH[1]}"\n')
    spawn("dom_rates", "--detx", ARCA21, "-p", ligier.port, "-o", plots, "--data-dir", data,
          "-i", "0.5")  # fmt: skip
    port = free_port()
    server = spawn("webserver", "-p", port, "--host", "127.0.0.1", "--plots", plots,
                   "--data", data, "--pipeline", pipeline)  # fmt: skip
    wait_for_port(port)
    base = f"http://127.0.0.1:{port}"
    detector = read_detx(ARCA21)
    wait_subscribed(ligier.port, name="dom_rates")
    with Client("127.0.0.1", ligier.port) as publisher:
        for step in range(5):
            publisher.publish("IO_SUM", slice_payload(detector, T0 + 0.1 * step, {}, set()))

    def status() -> dict:
        response = httpx.get(f"{base}/api/status", auth=AUTH, timeout=5)
        return response.json()["processes"].get("dom_rates", {})

    wait_until(lambda: status().get("messages") == 5, what="the monitor's record via the API")
    assert status()["state"] == "running"
    assert httpx.get(f"{base}/api/status", timeout=5).status_code == 401
    wait_until(lambda: (plots / "dom_rates.png").exists(), what="the plot")
    image = httpx.get(f"{base}/plots/dom_rates.png", auth=AUTH, timeout=5)
    assert image.status_code == 200 and image.content.startswith(b"\x89PNG")
    metrics = httpx.get(f"{base}/metrics", auth=AUTH, timeout=5).text
    assert 'km3mon_messages{process="dom_rates"} 5.0' in metrics

    seen: list[str] = []
    with httpx.stream("GET", f"{base}/events", auth=AUTH, timeout=10) as stream:
        lines = stream.iter_lines()
        deadline = time.monotonic() + 15
        touched = False
        for line in lines:
            seen.append(line)
            if line == "event: status" and not touched:
                os.utime(plots / "dom_rates.png")  # as if the monitor had redrawn it
                touched = True
            if line.startswith("data:") and '"name": "dom_rates"' in line:
                break
            assert time.monotonic() < deadline, seen[-5:]
    assert "event: plot" in seen
    assert "secret" not in server.log.lower().replace("s3cret", "")  # nothing but the name
    assert "s3cret" not in server.log


def test_without_credentials_it_listens_on_loopback_only(spawn, tmp_path: Path) -> None:
    port = free_port()
    server = spawn("webserver", "-p", port, "--plots", tmp_path / "plots", "--data",
                   tmp_path / "data", "--pipeline", tmp_path / "none.toml")  # fmt: skip
    wait_until(lambda: "cannot start" in server.log or "OPEN" in server.log, what="a start line")
    assert "cannot read" in server.log  # a pipeline.toml that was asked for must exist
    (tmp_path / "empty.toml").write_text("")
    server = spawn("webserver", "-p", port, "--plots", tmp_path / "plots", "--data",
                   tmp_path / "data", "--pipeline", tmp_path / "empty.toml")  # fmt: skip
    wait_for_port(port)
    assert "OPEN to anyone who can reach 127.0.0.1 (loopback only" in server.log
    assert httpx.get(f"http://127.0.0.1:{port}/", timeout=5).status_code == 200


def test_a_plot_written_before_the_live_stream_opens_is_announced(spawn, tmp_path: Path) -> None:
    """A new DU's plot written after the page listed the plots, before its live-update stream
    took its first look: the stream still announces it (``?since=`` the listing)."""
    plots, data = tmp_path / "plots", tmp_path / "data"
    plots.mkdir()
    (plots / "dom_rates.png").write_bytes(b"\x89PNG old")
    listed_at = time.time()
    os.utime(plots / "dom_rates.png", (listed_at - 10, listed_at - 10))  # drawn long before
    (plots / "pmt_rates_du7.png").write_bytes(b"\x89PNG new")  # between listing and stream
    port = serve(spawn, tmp_path, plots, data)

    def first_scan(query: str) -> list[str]:
        """The event names and plots of the stream's first look (up to its first status)."""
        lines = []
        url = f"http://127.0.0.1:{port}/events{query}"
        with httpx.stream("GET", url, auth=AUTH, timeout=10) as stream:
            for line in stream.iter_lines():
                lines.append(line)
                if line == "event: status":
                    return lines
        raise AssertionError(lines)

    announced = first_scan(f"?since={listed_at}")
    assert any('"name": "pmt_rates_du7"' in line for line in announced), announced
    assert not any('"name": "dom_rates"' in line for line in announced), "listed: not again"
    for query in ("", "?since=nonsense", "?since=nan"):
        assert not any(line.startswith("event: plot") for line in first_scan(query)), query
