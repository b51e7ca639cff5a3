"""The Detector Manager stand-in, queried by km3pipe's ``DMMonitor`` (a client we did not write)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import km3net_testdata
import pytest
from km3pipe.io.daq import DMMonitor

from tests.conftest import free_port, wait_for_port

ARCA21 = km3net_testdata.data_path("detx/KM3NeT_00000133_20221025.detx")


@pytest.fixture
def detector_manager(spawn) -> int:
    port = free_port()
    spawn("detector-manager", "--detx", ARCA21, "-p", port)
    wait_for_port(port)
    return port


def test_km3pipe_dmmonitor_session_gives_plausible_rttc(detector_manager: int) -> None:
    monitor = DMMonitor("127.0.0.1", port=detector_manager, base="clb/outparams")
    available = monitor.available_parameters
    dus = sorted({int(p.split("/")[1]) for p in available})
    assert len(dus) == 21
    paths = []
    for du in dus:
        paths += [f"wr_mu/{du}/0"] + [f"wr_delta/{du}/0/{i}" for i in range(4)]
    session = monitor.start_session("rttc_monitoring", paths, interval=0)
    rttcs = []
    for _ in range(3):
        values = next(session)
        assert len(values) == len(paths)
        first = [v["value"] for v in values[:5]]
        rttcs.append(first[0] - sum(first[1:]))
    assert all(9.7e8 < r < 1.0e9 for r in rttcs), rttcs
    assert max(rttcs) - min(rttcs) < 100, "noise of a few ps, not a random walk"
    assert monitor.get(f"wr_delta/{dus[0]}/0/0")["value"] == values[1]["value"]


def test_unknown_parameters_and_sessions_are_404(detector_manager: int) -> None:
    base = f"http://127.0.0.1:{detector_manager}"
    for url in [
        f"{base}/mon/clb/outparams/wr_mu/999/0",
        f"{base}/monshort/never-defined",
        f"{base}/monshortdef?name=x&paths=/mon/clb/outparams/nonsense/1/0",
        f"{base}/../../etc/passwd",
    ]:
        with pytest.raises(urllib.error.HTTPError) as error:
            urllib.request.urlopen(url, timeout=5)
        assert error.value.code in (400, 404)
    with urllib.request.urlopen(f"{base}/mon/clb/outparams", timeout=5) as response:
        assert len(json.loads(response.read())) == 21 * 5
