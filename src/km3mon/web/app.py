"""The dashboard application (Starlette): pages, plots, status, JSON API, metrics, live events.

Live updates are pushed as server-sent events: the server watches the modification times of
``plots/*.png`` and of the freshness records once a second and tells every open page which
plot changed and which panels are stale, so a page never polls and never shows a frozen plot
without saying so.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from jinja2 import Environment, PackageLoader, select_autoescape
from prometheus_client import CollectorRegistry, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Route

from km3mon.web.alerts_pages import alerts_routes
from km3mon.web.auth import protect
from km3mon.web.files import archived_logs, log_file_response, safe_path
from km3mon.web.freshness import panel_states, process_state, read_records
from km3mon.web.layouts import DEFAULT_PAGES, Page, expand
from km3mon.web.supervisor import supervisor_states

EVENT_POLL_S = 1.0
NO_CACHE = {"Cache-Control": "no-store"}


@dataclass(frozen=True)
class Site:
    """Where the dashboard reads from, and how it looks."""

    plot_dir: Path
    data_dir: Path
    log_dir: Path | None = None
    weblog_port: int | None = None
    supervisor_socket: Path | None = None
    pages: tuple[Page, ...] = DEFAULT_PAGES
    title: str = "km3mon"
    event_poll_s: float = EVENT_POLL_S


def create_app(site: Site, *, username: str | None = None, password: str | None = None):
    templates = Environment(
        loader=PackageLoader("km3mon.web", "templates"), autoescape=select_autoescape()
    )
    pages = {page.slug: page for page in site.pages}

    def render(template: str, **context: object) -> HTMLResponse:
        html = templates.get_template(template).render(site=site, pages=site.pages, **context)
        return HTMLResponse(html, headers=NO_CACHE)

    async def page(request: Request) -> Response:
        slug = request.path_params.get("slug", "index")
        chosen = pages.get(slug)
        if chosen is None:
            return PlainTextResponse("no such page\n", status_code=404)
        rows = expand(chosen.rows, site.plot_dir)
        panels = panel_states(read_records(site.data_dir))
        wildcards = [name for row in chosen.rows for name in row if "*" in name]
        return render(
            "page.html", page=chosen, rows=rows, panels=panels, now=time.time(), wildcards=wildcards
        )

    async def single_plot(request: Request) -> Response:
        name = request.path_params["name"]
        if safe_path(site.plot_dir, f"{name}.png", (".png",)) is None:
            return PlainTextResponse("no such plot\n", status_code=404)
        panels = panel_states(read_records(site.data_dir))
        chosen = Page("plot", name, [[name]])
        return render(
            "page.html", page=chosen, rows=[[name]], panels=panels, now=time.time(), wildcards=[]
        )

    async def plot_file(request: Request) -> Response:
        path = safe_path(site.plot_dir, request.path_params["path"], (".png",))
        if path is None:
            return PlainTextResponse("no such plot\n", status_code=404)
        return FileResponse(path, headers=NO_CACHE)

    async def status_page(request: Request) -> Response:
        processes = merged_processes(site)
        return render("status.html", processes=processes, now=time.time())

    counts_cache: dict = {}

    async def logs_page(request: Request) -> Response:
        archives = archived_logs(site.log_dir, counts_cache) if site.log_dir else []
        live = f"http://{request.url.hostname}:{site.weblog_port}/" if site.weblog_port else None
        return render("logs.html", archives=archives, live=live)

    async def log_file(request: Request) -> Response:
        return log_file_response(site.log_dir, request.path_params["name"])

    async def api_status(request: Request) -> Response:
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
        path = safe_path(site.data_dir / "metrics", f"{name}.json", (".json",))
        if path is None:
            return JSONResponse({"error": f"no metrics named {name!r}"}, status_code=404)
        return Response(path.read_bytes(), media_type="application/json", headers=NO_CACHE)

    async def prometheus(request: Request) -> Response:
        return Response(prometheus_text(site.data_dir), media_type=CONTENT_TYPE_LATEST)

    scan = SiteScan(site)

    async def events(request: Request) -> Response:
        return StreamingResponse(
            event_stream(scan, request), media_type="text/event-stream", headers=NO_CACHE
        )

    routes = [
        Route("/", page),
        Route("/index.html", page),
        Route("/status", status_page),
        Route("/status.html", status_page),
        Route("/logs.html", logs_page),
        Route("/logs/{name}", log_file),
        Route("/api/status", api_status),
        Route("/api/metrics/{name}", api_metrics),
        Route("/metrics", prometheus),
        Route("/events", events),
        Route("/plots/{path:path}", plot_file),
        Route("/plot/{name}", single_plot),
        Route("/{slug}.html", page),
    ]
    routes[-1:-1] = alerts_routes(site)  # before the catch-all /{slug}.html
    return protect(Starlette(routes=routes), username, password)


def merged_processes(site: Site, records: dict | None = None) -> list[dict]:
    """Every process: supervisord's state when it runs, with the freshness record's numbers."""
    records = read_records(site.data_dir) if records is None else records
    states = supervisor_states(site.supervisor_socket)
    merged = {
        name: {**process_state(record), "supervisor": None} for name, record in records.items()
    }
    for name, state in (states or {}).items():
        entry = merged.setdefault(name, {"process": name, "state": "no record", "ok": False})
        entry["supervisor"] = state
        if state["state"] != "RUNNING":
            entry["ok"] = False
    return sorted(merged.values(), key=lambda p: p["process"])


class SiteScan:
    """Plot modification times and panel states, scanned at most once per poll period.

    Every open page holds a live-update stream; they all share one scan instead of each
    listing ``plots/`` and reading every freshness record on its own.
    """

    def __init__(self, site: Site) -> None:
        self.site = site
        self._scanned_at = -float("inf")
        self.mtimes: dict[str, float] = {}
        self.status_event = ""

    def refresh(self) -> None:
        if time.monotonic() - self._scanned_at < self.site.event_poll_s:
            return
        self._scanned_at = time.monotonic()
        mtimes = {}
        for path in self.site.plot_dir.glob("*.png") if self.site.plot_dir.is_dir() else []:
            try:
                mtimes[path.stem] = path.stat().st_mtime
            except OSError:
                continue  # replaced or removed right now: seen at the next scan
        self.mtimes = mtimes
        panels = {
            k.removesuffix(".png"): v.as_dict()
            for k, v in panel_states(read_records(self.site.data_dir)).items()
        }
        status = json.dumps({"time": time.time(), "panels": panels})
        self.status_event = f"event: status\ndata: {status}\n\n"


async def event_stream(scan: SiteScan, request: Request) -> AsyncIterator[str]:
    """``plot`` events for rewritten PNGs, a ``status`` event with every panel's state."""
    seen: dict[str, float] | None = None
    while not await request.is_disconnected():
        scan.refresh()
        for name, mtime in scan.mtimes.items():
            if seen is not None and seen.get(name) != mtime:
                yield f"event: plot\ndata: {json.dumps({'name': name, 'mtime': mtime})}\n\n"
        seen = scan.mtimes
        yield scan.status_event
        await asyncio.sleep(scan.site.event_poll_s)


def prometheus_text(data_dir: Path) -> bytes:
    """Gauges per monitoring process, from the freshness records."""
    registry = CollectorRegistry()
    labels = ["process"]
    gauges = {
        "up": Gauge(
            "km3mon_process_up", "1 if the process reports running", labels, registry=registry
        ),
        "messages": Gauge("km3mon_messages", "messages consumed", labels, registry=registry),
        "dropped": Gauge("km3mon_dropped_messages", "messages dropped", labels, registry=registry),
        "errors": Gauge("km3mon_decode_errors", "unusable payloads", labels, registry=registry),
        "rate": Gauge("km3mon_message_rate_hz", "messages per second", labels, registry=registry),
        "age": Gauge(
            "km3mon_data_age_seconds", "age of the newest data", labels, registry=registry
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
    return generate_latest(registry)
