"""The speeds the tests used to assert, measured here instead (tests only fail on a hang).

1. ``reco``: CPU seconds of the fit of one hostile event (every DOM of ARCA-21 hit), the
   event of ``tests/reco/test_fit.py::test_a_huge_event_costs_bounded_work`` (was: < 5 s).
2. ``slow``: wall seconds for 200 MB through our ligier to a live subscriber while a stalled
   'any' subscriber keeps its socket open, as in
   ``tests/controlhost/test_ligier_slow_consumers.py`` (was: < 30 s).
3. ``history``: page start to the drawn chart of one DOM over 30 days on ``/history`` in
   headless chromium, as in ``tests/web/test_alerts_pages_browser.py`` (was: <= 1000 ms).

    .venv/bin/python bench/bench_test_speeds.py [--repeat 5] [--json FILE]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # the tests' event and history builders

from tests.conftest import KM3MON, free_port, wait_for_port, wait_subscribed  # noqa: E402

from benchlib import write_json  # noqa: E402


def reco_huge_event_cpu_s() -> float:
    import numpy as np
    from tests.reco.simulated import arca21_sample
    from tests.reco.test_fit import exact_event

    from km3mon.reco.fit import Reconstruction

    detector = arca21_sample(1).detector
    reconstruction = Reconstruction(detector)
    direction = np.array([0.1, -0.2, -0.97]) / np.linalg.norm([0.1, -0.2, -0.97])
    hits = exact_event(detector, direction, 21, slice(0, 18))
    reconstruction.run(1, hits)  # compiled and warm, as in a running process
    started = time.process_time()
    reconstruction.run(1, hits)
    return time.process_time() - started


def slow_consumer_wall_s() -> float:
    from tests.controlhost.test_ligier_slow_consumers import PAYLOAD, stalled_subscriber

    from km3mon.controlhost import Client

    port = free_port()
    ligier = subprocess.Popen(
        [*KM3MON, "ligier", "-P", str(port), "--host", "127.0.0.1", "--queue-bytes", "2000000"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port)
        stalled = stalled_subscriber(port, b" w IO_SUM")
        live = Client("127.0.0.1", port, reconnect=False).connect()
        live.subscribe("IO_SUM")
        wait_subscribed(port, "IO_SUM", count=2)
        count, received = 2000, 0

        def consume() -> None:
            nonlocal received
            while received < count and (batch := live.receive_batch(timeout=60)):
                received += len(batch)

        consumer = threading.Thread(target=consume)
        consumer.start()
        started = time.monotonic()
        with Client("127.0.0.1", port, reconnect=False) as publisher:
            for batch in range(count // 20):
                while received < 20 * batch - 10:
                    time.sleep(0.001)
                publisher.publish_many([("IO_SUM", PAYLOAD)] * 20)
        consumer.join()
        elapsed = time.monotonic() - started
        stalled.close()
        live.close()
        return elapsed
    finally:
        ligier.terminate()
        ligier.wait()


def history_chart_ms() -> float:
    sys.path.insert(0, str(REPO / "bench"))
    from tests.web.sites import AUTH
    from tests.web.test_alerts_pages_browser import month_of_history

    from bench_dashboard import browser

    with tempfile.TemporaryDirectory() as folder:
        data, plots = Path(folder, "data"), Path(folder, "plots")
        plots.mkdir()
        dom, _ = month_of_history(data)
        pipeline = Path(folder, "pipeline.toml")
        pipeline.write_text(f'[WebServer]\nusername = "{AUTH[0]}"\npassword = "{AUTH[1]}"\n')
        port = free_port()
        server = subprocess.Popen(
            [*KM3MON, "webserver", "-p", str(port), "--host", "127.0.0.1", "--plots",
             str(plots), "--data", str(data), "--pipeline", str(pipeline)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        driver = browser(1400, 1000)
        try:
            wait_for_port(port)
            driver.get(f"http://127.0.0.1:{port}/history?dom={dom}&last=30d")
            deadline = time.monotonic() + 120
            while not driver.execute_script("return document.body.dataset.drawn"):
                if time.monotonic() > deadline:
                    raise TimeoutError("the history chart was not drawn in 120 s")
                time.sleep(0.05)
            return float(driver.execute_script("return document.body.dataset.drawnMs"))
        finally:
            driver.quit()
            server.terminate()
            server.wait()


MEASURES = {
    "reco": reco_huge_event_cpu_s,
    "slow": slow_consumer_wall_s,
    "history": history_chart_ms,
}
UNITS = {"reco": "CPU s", "slow": "s", "history": "ms"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--only", nargs="+", choices=sorted(MEASURES), default=sorted(MEASURES))
    parser.add_argument("--json", type=Path, help="write every number here as JSON too")
    args = parser.parse_args()
    result: dict = {"load_average": os.getloadavg(), "cores": os.cpu_count()}
    for name in args.only:
        values = [MEASURES[name]() for _ in range(args.repeat)]
        result[name] = values
        print(
            f"{name:8} median {statistics.median(values):8.3f} {UNITS[name]}, "
            f"min {min(values):.3f}, max {max(values):.3f} ({args.repeat} runs)",
            flush=True,
        )
    result["load_average_after"] = os.getloadavg()
    if args.json:
        write_json(args.json, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
