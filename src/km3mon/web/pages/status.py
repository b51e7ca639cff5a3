"""``/status``: every process, supervisord's state with its freshness record's numbers;
``/api/status`` the same as JSON with every panel's state, ``/api/metrics/<name>`` a monitor's
key numbers and ``/metrics`` gauges for Prometheus."""

from __future__ import annotations

import time
from pathlib import Path

from prometheus_client import CollectorRegistry, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from km3mon import published, registry
from km3mon.runtime.freshness import panel_states, process_state, read_records
from km3mon.supervision import supervisor_states
from km3mon.web.files import safe_path, snapshot_response
from km3mon.web.forms import APIError
from km3mon.web.site import Site
from km3mon.web.templates import render


async def status_page(request: Request) -> Response:
    processes = merged_processes(request.app.state.site)
    return render(request, "status.html", processes=processes, now=time.time())


async def api_status(request: Request) -> Response:
    site = request.app.state.site
    records = read_records(site.data_dir)
    return JSONResponse(
        {
            "time": time.time(),
            "processes": {p["process"]: p for p in merged_processes(site, records)},
            "panels": {k: v.as_dict() for k, v in panel_states(records).items()},
        }
    )


async def api_metrics(request: Request) -> Response:
    name = request.path_params["name"]
    folder = published.metrics_dir(request.app.state.site.data_dir)
    path = safe_path(folder, f"{name}.json", (".json",))
    if path is None:
        raise APIError(404, "no such metrics")
    return snapshot_response(path, request.headers, "application/json", "no-store")


async def prometheus(request: Request) -> Response:
    text = prometheus_text(request.app.state.site.data_dir)
    return Response(text, media_type=CONTENT_TYPE_LATEST)


def merged_processes(site: Site, records: dict | None = None) -> list[dict]:
    """Every process: supervisord's state when it runs, with the freshness record's numbers.

    A program that writes no record by design (a ligier, the web servers: see the registry)
    shows its supervisord state, in a neutral colour while it runs; only a program that
    should report and does not is flagged as "no record".
    """
    records = read_records(site.data_dir) if records is None else records
    states = supervisor_states(site.supervisor_socket)
    merged = {
        name: {**process_state(record), "supervisor": None, "neutral": False}
        for name, record in records.items()
    }
    for name, state in (states or {}).items():
        entry = merged.get(name)
        if entry is None:
            running = state["state"] in ("RUNNING", "STARTING")
            reports = registry.writes_freshness(name)
            entry = merged[name] = {
                "process": name,
                "state": "no record" if reports else "no record kept",
                "ok": running and not reports,
                "neutral": running and not reports,
            }
        entry["supervisor"] = state
        if state["state"] != "RUNNING":
            entry["ok"] = entry["neutral"] = False
    return sorted(merged.values(), key=lambda p: p["process"])


def prometheus_text(data_dir: Path) -> bytes:
    """Gauges per monitoring process, from the freshness records."""
    collector = CollectorRegistry()
    labels = ["process"]
    gauges = {
        "up": Gauge(
            "km3mon_process_up", "1 if the process reports running", labels, registry=collector
        ),
        "messages": Gauge("km3mon_messages", "messages consumed", labels, registry=collector),
        "dropped": Gauge("km3mon_dropped_messages", "messages dropped", labels, registry=collector),
        "errors": Gauge("km3mon_decode_errors", "unusable payloads", labels, registry=collector),
        "rate": Gauge("km3mon_message_rate_hz", "messages per second", labels, registry=collector),
        "age": Gauge(
            "km3mon_data_age_seconds", "age of the newest data", labels, registry=collector
        ),
    }
    for name, record in read_records(data_dir).items():
        state = process_state(record)
        gauges["up"].labels(name).set(1.0 if state["ok"] else 0.0)
        gauges["messages"].labels(name).set(record.get("messages", 0))
        gauges["dropped"].labels(name).set(record.get("dropped", 0))
        gauges["errors"].labels(name).set(record.get("decode_errors", 0))
        gauges["rate"].labels(name).set(record.get("message_rate_hz", 0.0))
        if state["data_age_s"] is not None:
            gauges["age"].labels(name).set(state["data_age_s"])
    return generate_latest(collector)


ROUTES = [
    Route("/status", status_page),
    Route("/status.html", status_page),
    Route("/api/status", api_status),
    Route("/api/metrics/{name}", api_metrics),
    Route("/metrics", prometheus),
]
