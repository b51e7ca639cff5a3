"""Dashboard under load: page and plot load times with 0 and with 50 open live-update
(server-sent events) connections, against a real ``km3mon webserver`` process with auth.

    .venv/bin/python bench/bench_web.py [--clients 50] [--requests 300]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from benchlib import wait_for_http

AUTH = ("shifter", "s3cret")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make_site(folder: Path, n_dus: int) -> None:
    """A dashboard folder like a running 30-DU detector's: PNGs and freshness records."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from km3mon.runtime.freshness import Freshness, OutputRecord

    plots = folder / "plots"
    plots.mkdir(parents=True)
    figure, axes = plt.subplots(figsize=(10, 8))
    axes.imshow(np.random.default_rng(0).random((558, 800)), aspect="auto")
    figure.savefig(plots / "template.png")
    names = ["dom_activity", "dom_rates", "trigger_rates", "ztplot", "triggermap"]
    names += [f"pmt_rates_du{du}" for du in range(1, n_dus + 1)]
    now = time.time()
    record = Freshness("pmt_rates", 1, now, "127.0.0.1:55530", ["IO_MONIT"], 20, 60,
                       state="running", last_message_at=now)  # fmt: skip
    for name in names:
        shutil.copy(plots / "template.png", plots / f"{name}.png")
        record.outputs[f"{name}.png"] = OutputRecord(now, now, 0.2, False)
    (plots / "template.png").unlink()
    record.write(folder / "data" / "freshness" / "pmt_rates.json")
    (folder / "pipeline.toml").write_text(
        f'[WebServer]\nusername = "{AUTH[0]}"\npassword = "{AUTH[1]}"\n'
    )


async def hold_events(base: str, stop: asyncio.Event, received: list[int]) -> None:
    async with (
        httpx.AsyncClient(auth=AUTH, timeout=None) as client,
        client.stream("GET", f"{base}/events") as stream,
    ):
        async for line in stream.aiter_lines():
            if line.startswith("event:"):
                received.append(1)
            if stop.is_set():
                return


async def load(base: str, requests: int, sse_clients: int) -> dict[str, float]:
    stop = asyncio.Event()
    received: list[int] = []
    holders = [asyncio.create_task(hold_events(base, stop, received)) for _ in range(sse_clients)]
    await asyncio.sleep(2.0 if sse_clients else 0.0)
    page_s, plot_s = [], []
    async with httpx.AsyncClient(auth=AUTH, timeout=30) as client:
        for index in range(requests):
            start = time.perf_counter()
            response = await client.get(f"{base}/")
            response.raise_for_status()
            page_s.append(time.perf_counter() - start)
            start = time.perf_counter()
            (await client.get(f"{base}/plots/pmt_rates_du{index % 30 + 1}.png")).raise_for_status()
            plot_s.append(time.perf_counter() - start)
    stop.set()
    for holder in holders:
        holder.cancel()
    await asyncio.gather(*holders, return_exceptions=True)

    def p95(values: list[float]) -> float:
        return statistics.quantiles(values, n=20)[-1]

    return {
        "page_median_ms": statistics.median(page_s) * 1e3,
        "page_p95_ms": p95(page_s) * 1e3,
        "plot_median_ms": statistics.median(plot_s) * 1e3,
        "plot_p95_ms": p95(plot_s) * 1e3,
        "sse_events": len(received),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=50, help="open SSE connections")
    parser.add_argument("--requests", type=int, default=300, help="page + plot loads")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="km3mon-web-"))
    make_site(folder, 30)
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "km3mon", "webserver", "-p", str(port), "--host", "127.0.0.1",
         "--plots", folder / "plots", "--data", folder / "data",
         "--pipeline", folder / "pipeline.toml"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(base)
        idle = asyncio.run(load(base, args.requests, 0))
        busy = asyncio.run(load(base, args.requests, args.clients))
    finally:
        server.terminate()
        server.wait(10)
    print("| condition | page median / p95 [ms] | plot median / p95 [ms] | SSE events |")
    print("|---|---|---|---:|")
    for label, result in (("no live clients", idle), (f"{args.clients} SSE clients", busy)):
        print(
            f"| {label} | {result['page_median_ms']:.1f} / {result['page_p95_ms']:.1f} | "
            f"{result['plot_median_ms']:.1f} / {result['plot_p95_ms']:.1f} | "
            f"{result['sse_events']} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
