"""The dashboard application (Starlette): pages, plots, status, JSON API, metrics, live events.

Live updates are pushed as server-sent events: the server watches the modification times of
``plots/*.png`` and of the freshness records once a second and tells every open page which
plot changed and which panels are stale, so a page never polls and never shows a frozen plot
without saying so.
"""

from __future__ import annotations

import asyncio
import json
import math
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
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Route

from km3mon import published, registry
from km3mon.runtime.freshness import panel_states, process_state, read_records
from km3mon.supervision import supervisor_states
from km3mon.web.alerts_pages import alerts_routes
from km3mon.web.auth import protect
from km3mon.web.files import archived_logs, log_file_response, safe_path, snapshot_response
from km3mon.web.layouts import DEFAULT_PAGES, Page
from km3mon.web.runs_pages import runs_routes
from km3mon.web.tiles import (
    MAX_DU,
    DUFilter,
    PlotIndex,
    Producers,
    badge,
    build_rows,
    du_of,
)

EVENT_POLL_S = 1.0
#: File times come from the kernel's coarse clock, a few ms behind ``time.time()``.
MTIME_SLACK_S = 0.05
#: Panel states are pushed when one changes, and at least this often (ages tick in the page).
STATUS_EVERY_S = 5.0
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
    #: Navigation links after the pages: (label, path).
    links: tuple[tuple[str, str], ...] = (("Logs", "/logs.html"), ("Status", "/status"))
    #: ``[Wall]``: pages the wall screen cycles through, seconds per page.
    wall_pages: tuple[str, ...] = ("index", "pmt", "ahrs", "trigger")
    wall_seconds: float = 30.0
    #: ``[Alerts] known_bad``: listed on /alerts with those set there.
    known_bad: tuple[str, ...] = ()


def create_app(site: Site, *, username: str | None = None, password: str | None = None):
    templates = Environment(
        loader=PackageLoader("km3mon.web", "templates"), autoescape=select_autoescape()
    )
    templates.globals["badge"] = badge
    pages = {page.slug: page for page in site.pages}
    plot_index = PlotIndex(site.plot_dir)

    def render(template: str, **context: object) -> HTMLResponse:
        html = templates.get_template(template).render(site=site, pages=site.pages, **context)
        return HTMLResponse(html, headers=NO_CACHE)

    def plot_page(
        request: Request,
        chosen: Page,
        *,
        wall: bool = False,
        next_url: str | None = None,
        du: int | None = None,
    ) -> HTMLResponse:
        """A page of plot tiles (a layout page, a single plot, a DU's page, a wall page)."""
        scanned_at = time.time()
        files = plot_index.scan()
        records = read_records(site.data_dir)
        panels = panel_states(records)
        text = request.query_params.get("du", "")
        error = ""
        try:
            du_filter = DUFilter(text)
        except ValueError as problem:
            du_filter, error = DUFilter(""), str(problem)
        producers = Producers(records, lambda: supervisor_states(site.supervisor_socket))
        rows = build_rows(chosen.rows, files, panels, producers, site.data_dir, du_filter)
        wildcards = [name for row in chosen.rows for name in row if "*" in name]
        neighbours = (None, None)
        if du is not None:
            dus = sorted({d for d in map(du_of, files) if d is not None})
            neighbours = (
                max((d for d in dus if d < du), default=None),
                min((d for d in dus if d > du), default=None),
            )
        return render(
            "page.html",
            page=chosen,
            rows=rows,
            now=time.time(),
            scanned_at=scanned_at,
            wildcards=wildcards,
            du_filter=du_filter,
            du_error=error,
            wall=wall or request.query_params.get("wall") == "1",
            next_url=next_url,
            wall_seconds=site.wall_seconds,
            du=du,
            neighbours=neighbours,
        )

    async def page(request: Request) -> Response:
        slug = request.path_params.get("slug", "index")
        chosen = pages.get(slug)
        if chosen is None:
            return PlainTextResponse("no such page\n", status_code=404)
        return plot_page(request, chosen)

    async def single_plot(request: Request) -> Response:
        name = request.path_params["name"]
        if safe_path(site.plot_dir, f"{name}.png", (".png",)) is None:
            return PlainTextResponse("no such plot\n", status_code=404)
        return plot_page(request, Page("plot", name, [[name]]))

    async def du_page(request: Request) -> Response:
        du = request.path_params["du"]
        if du > MAX_DU:
            return PlainTextResponse("no such DU\n", status_code=404)
        rows = [[name.format(du=du) for name in row] for row in registry.DU_PAGE]
        return plot_page(request, Page("du", f"DU {du}", rows), du=du)

    async def wall(request: Request) -> Response:
        """The wall screen: one page of ``[Wall] pages`` after the other."""
        cycle = [pages[slug] for slug in site.wall_pages if slug in pages] or [site.pages[0]]
        try:
            step = int(request.query_params.get("step", "0")) % len(cycle)
        except ValueError:
            step = 0
        next_url = f"/wall?step={(step + 1) % len(cycle)}"
        return plot_page(request, cycle[step], wall=True, next_url=next_url)

    async def plot_file(request: Request) -> Response:
        path = safe_path(site.plot_dir, request.path_params["path"], (".png",))
        if path is None:
            return PlainTextResponse("no such plot\n", status_code=404)
        return snapshot_response(path, request.headers, "image/png")

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
        path = safe_path(published.metrics_dir(site.data_dir), f"{name}.json", (".json",))
        if path is None:
            return JSONResponse({"error": "no such metrics"}, status_code=404)
        return snapshot_response(path, request.headers, "application/json", "no-store")

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
        Route("/du/{du:int}", du_page),
        Route("/wall", wall),
        Route("/{slug}.html", page),
    ]
    routes[-1:-1] = alerts_routes(site)  # before the catch-all /{slug}.html
    routes[-1:-1] = runs_routes(site)
    return protect(Starlette(routes=routes), username, password)


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


class SiteScan:
    """Plot modification times and panel states, scanned at most once per poll period.

    Every open page holds a live-update stream; they all share one scan instead of each
    listing ``plots/`` and reading every freshness record on its own. Panel states are sent
    as a new ``status`` event when one changes its verdict, and every ``STATUS_EVERY_S``
    (pages tick the ages themselves in between).
    """

    def __init__(self, site: Site) -> None:
        self.site = site
        self._scanned_at = -float("inf")
        self._status_at = -float("inf")
        self._verdicts: object = None
        self.mtimes: dict[str, float] = {}
        self.status_event = ""
        self.status_version = 0

    def refresh(self) -> None:
        now = time.monotonic()
        if now - self._scanned_at < self.site.event_poll_s:
            return
        self._scanned_at = now
        mtimes = {}
        for path in self.site.plot_dir.glob("*.png") if self.site.plot_dir.is_dir() else []:
            try:
                mtimes[path.stem] = path.stat().st_mtime
            except OSError:
                continue  # replaced or removed right now: seen at the next scan
        self.mtimes = mtimes
        panels = {
            k.removesuffix(".png"): [v.newest_data_at, v.stale, v.reason, v.process]
            for k, v in panel_states(read_records(self.site.data_dir)).items()
        }
        verdicts = {name: (state[1], state[2]) for name, state in panels.items()}
        if verdicts != self._verdicts or now - self._status_at >= STATUS_EVERY_S:
            self._verdicts, self._status_at = verdicts, now
            status = json.dumps({"time": time.time(), "panels": panels})
            self.status_event = f"event: status\ndata: {status}\n\n"
            self.status_version += 1


async def event_stream(scan: SiteScan, request: Request) -> AsyncIterator[str]:
    """``plot`` events for rewritten PNGs, ``status`` events with every panel's state.

    ``?since=`` is when the page listed the plots: a plot written between that listing and
    this stream's first scan (a new DU, a redraw) is announced too, not missed until its next
    redraw.
    """
    try:
        since = float(request.query_params.get("since", "inf")) - MTIME_SLACK_S
    except ValueError:
        since = math.inf
    if math.isnan(since):
        since = math.inf
    seen: dict[str, float] | None = None
    sent_version = -1
    while not await request.is_disconnected():
        scan.refresh()
        if seen is None:  # what the page listed: the plots written before its listing
            seen = {name: mtime for name, mtime in scan.mtimes.items() if mtime <= since}
        for name, mtime in scan.mtimes.items():
            if seen.get(name) != mtime:
                yield f"event: plot\ndata: {json.dumps({'name': name, 'mtime': mtime})}\n\n"
        seen = scan.mtimes
        if scan.status_version != sent_version:
            sent_version = scan.status_version
            yield scan.status_event
        else:
            yield ": keep-alive\n\n"
        await asyncio.sleep(scan.site.event_poll_s)


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
