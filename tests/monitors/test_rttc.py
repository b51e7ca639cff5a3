"""rttc against the Detector Manager stand-in: injected values, outage, recovery."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from km3mon.sim.detector_manager import (
    BASE,
    DetectorManagerHandler,
    DetectorManagerServer,
    WhiteRabbitModel,
)
from km3mon.sim.sim_geometry import synthetic_detx
from tests.conftest import free_port, read_json, wait_for_port, wait_until


def detx_with(tmp_path: Path, n_dus: int) -> Path:
    """A DETX of DUs 1..n_dus: rttc takes its DUs from the detector."""
    path = tmp_path / f"{n_dus}_dus.detx"
    path.write_text(synthetic_detx(n_dus))
    return path


def test_rttc_plots_injected_values_and_survives_an_outage(spawn, tmp_path) -> None:
    dm_port = free_port()
    manager = spawn("detector-manager", "--dus", "1-3", "--seed", "4", "-p", dm_port)
    wait_for_port(dm_port)
    data = tmp_path / "data"
    monitor = spawn("rttc", "-l", "127.0.0.1", "--dm-port", dm_port, "-o", tmp_path / "plots",
                    "--data-dir", data, "-i", "0.3", "--stale-after", "2",
                    "--detx", detx_with(tmp_path, 3))  # fmt: skip
    metrics_path = data / "metrics" / "rttc.json"
    record = data / "freshness" / "rttc.json"
    wait_until(lambda: read_json(record).get("messages", 0) >= 5, what="five polls")
    wait_until(lambda: read_json(metrics_path).get("dus"), what="metrics")
    truth = WhiteRabbitModel([1, 2, 3], seed=4)
    for du, entry in read_json(metrics_path)["dus"].items():
        assert abs(entry["rttc_ps"] - truth.rttc(int(du), entry["time"])) < 30  # noise: 4 ps
        assert entry["spread_ps"] < 20
    assert (tmp_path / "plots" / "rttc.png").exists()

    manager.stop()
    wait_until(lambda: "Detector Manager not usable" in monitor.log, what="the outage logged")
    wait_until(lambda: read_json(record).get("state") == "disconnected", what="disconnected")
    wait_until(lambda: read_json(record)["outputs"]["rttc.png"]["stale"], what="a stale plot")
    assert monitor.alive()
    # the backoff grows while the Detector Manager is away (seen before it comes back: on a
    # loaded machine the restarted one could answer the second try already)
    wait_until(lambda: "retrying in 2 s" in monitor.log, what="a second, longer retry")
    assert "retrying in 1 s" in monitor.log
    polls = read_json(record)["messages"]
    spawn("detector-manager", "--dus", "1-3", "--seed", "4", "-p", dm_port)
    start = time.monotonic()
    wait_until(lambda: read_json(record).get("messages", 0) > polls, timeout_s=60, what="recovery")
    assert time.monotonic() - start < 20


def test_thirty_dus_in_one_summary_image_with_history_read_back(spawn, tmp_path) -> None:
    dm_port = free_port()
    spawn("detector-manager", "--dus", "1-30", "--seed", "5", "-p", dm_port)
    wait_for_port(dm_port)
    data = tmp_path / "data"
    data.mkdir()
    two_hours_ago = time.time() - 7200
    history = ["timestamp,du,rttc_ps"] + [
        f"{two_hours_ago + 10 * i:.3f},{du},{(500_000 if du == 7 else 1000) + i % 3:.1f}"
        for i in range(200)
        for du in range(1, 31)
    ]
    (data / "rttc.csv").write_text("\n".join(history) + "\n")
    spawn("rttc", "-l", f"127.0.0.1:{dm_port}", "-o", tmp_path / "plots", "--data-dir", data,
          "-i", "0.5", "--detx", detx_with(tmp_path, 30))  # fmt: skip
    metrics_path = data / "metrics" / "rttc.json"
    wait_until(lambda: len(read_json(metrics_path).get("dus", {})) == 30, what="30 DUs")
    truth = WhiteRabbitModel(list(range(1, 31)), seed=5)
    entries = read_json(metrics_path)["dus"]
    for du, entry in entries.items():
        assert abs(entry["rttc_ps"] - truth.rttc(int(du), entry["time"])) < 30
    # 200 polls of history against a few new ones: the baseline is the history's
    assert entries["7"]["median_ps"] == 500_001.0 and entries["8"]["median_ps"] == 1001.0
    assert (tmp_path / "plots" / "rttc.png").exists()


class OtherListingHandler(DetectorManagerHandler):
    """A Detector Manager whose parameter listing is not our stand-in's JSON list."""

    def do_GET(self) -> None:
        if self.path.rstrip("/") == BASE:
            self._reply(200, "<html><body>clb/outparams: wr_mu, wr_delta</body></html>",
                        "text/html")  # fmt: skip
        else:
            super().do_GET()


@pytest.fixture
def other_listing_manager() -> Iterator[int]:
    server = DetectorManagerServer(("127.0.0.1", 0), WhiteRabbitModel([1, 2, 3], seed=6))
    server.RequestHandlerClass = OtherListingHandler
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_dus_come_from_the_detector_whatever_the_listing_says(
    other_listing_manager: int, spawn, tmp_path
) -> None:
    data = tmp_path / "data"
    monitor = spawn("rttc", "-l", f"127.0.0.1:{other_listing_manager}", "-o", tmp_path / "plots",
                    "--data-dir", data, "-i", "0.3", "--detx", detx_with(tmp_path, 3))  # fmt: skip
    metrics_path = data / "metrics" / "rttc.json"

    def polled_dus() -> list[str]:
        dus = read_json(metrics_path).get("dus", {})
        return sorted(du for du, entry in dus.items() if entry["rttc_ps"] is not None)

    wait_until(lambda: polled_dus() == ["1", "2", "3"], what="RTTC of DUs 1-3", show=polled_dus)
    truth = WhiteRabbitModel([1, 2, 3], seed=6)
    for du, entry in read_json(metrics_path)["dus"].items():
        assert abs(entry["rttc_ps"] - truth.rttc(int(du), entry["time"])) < 30
    assert (tmp_path / "plots" / "rttc.png").exists()
    assert "parameter listing of" in monitor.log and "not used" in monitor.log
    assert monitor.alive()


def test_a_torn_history_row_is_cut_before_appending(spawn, tmp_path) -> None:
    dm_port = free_port()
    spawn("detector-manager", "--dus", "1-2", "--seed", "4", "-p", dm_port)
    wait_for_port(dm_port)
    data = tmp_path / "data"
    data.mkdir()
    now = time.time()
    torn = f"timestamp,du,rttc_ps\n{now - 20:.3f},1,1000.0\n{now - 20:.3f},2,10"
    (data / "rttc.csv").write_text(torn)  # a crash in the middle of a row
    spawn("rttc", "-l", f"127.0.0.1:{dm_port}", "-o", tmp_path / "plots", "--data-dir", data,
          "-i", "0.3", "--detx", detx_with(tmp_path, 2))  # fmt: skip
    record = data / "freshness" / "rttc.json"
    wait_until(lambda: read_json(record).get("messages", 0) >= 2, what="two polls")
    lines = (data / "rttc.csv").read_text().splitlines()
    assert lines[:2] == ["timestamp,du,rttc_ps", f"{now - 20:.3f},1,1000.0"]
    for line in lines[2:]:
        timestamp, du, value = line.split(",")
        assert du in ("1", "2") and abs(float(timestamp) - now) < 60, line
        assert 0.97e9 < float(value) < 0.99e9, "a whole new row, no torn prefix"
