"""The pages of plot tiles: the layout pages (``/`` and ``/<slug>.html``), one plot
(``/plot/<name>``), a DU's page (``/du/<n>``), the wall screen (``/wall``) and the PNG files
themselves (``/plots/<path>``)."""

from __future__ import annotations

import time

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from km3mon import registry
from km3mon.runtime.freshness import panel_states, read_records
from km3mon.supervision import supervisor_states
from km3mon.web.files import safe_path, snapshot_response
from km3mon.web.layouts import Page
from km3mon.web.templates import render
from km3mon.web.tiles import MAX_DU, DUFilter, Producers, build_rows, du_of


def plot_page(
    request: Request,
    chosen: Page,
    *,
    wall: bool = False,
    next_url: str | None = None,
    du: int | None = None,
) -> HTMLResponse:
    """A page of plot tiles (a layout page, a single plot, a DU's page, a wall page)."""
    site = request.app.state.site
    scanned_at = time.time()
    files = request.app.state.plot_index.scan()
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
        request,
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
    chosen = request.app.state.pages.get(slug)
    if chosen is None:
        raise HTTPException(404, "no such page\n")
    return plot_page(request, chosen)


async def single_plot(request: Request) -> Response:
    name = request.path_params["name"]
    if safe_path(request.app.state.site.plot_dir, f"{name}.png", (".png",)) is None:
        raise HTTPException(404, "no such plot\n")
    return plot_page(request, Page("plot", name, [[name]]))


async def du_page(request: Request) -> Response:
    du = request.path_params["du"]
    if du > MAX_DU:
        raise HTTPException(404, "no such DU\n")
    rows = [[name.format(du=du) for name in row] for row in registry.DU_PAGE]
    return plot_page(request, Page("du", f"DU {du}", rows), du=du)


async def wall(request: Request) -> Response:
    """The wall screen: one page of ``[Wall] pages`` after the other."""
    site, pages = request.app.state.site, request.app.state.pages
    cycle = [pages[slug] for slug in site.wall_pages if slug in pages] or [site.pages[0]]
    try:
        step = int(request.query_params.get("step", "0")) % len(cycle)
    except ValueError:
        step = 0
    next_url = f"/wall?step={(step + 1) % len(cycle)}"
    return plot_page(request, cycle[step], wall=True, next_url=next_url)


async def plot_file(request: Request) -> Response:
    path = safe_path(request.app.state.site.plot_dir, request.path_params["path"], (".png",))
    if path is None:
        raise HTTPException(404, "no such plot\n")
    return snapshot_response(path, request.headers, "image/png")


ROUTES = [
    Route("/", page),
    Route("/index.html", page),
    Route("/plots/{path:path}", plot_file),
    Route("/plot/{name}", single_plot),
    Route("/du/{du:int}", du_page),
    Route("/wall", wall),
]
#: Last of all routes: any other ``/<slug>.html`` is a layout page (or a 404).
LAYOUT_PAGE = Route("/{slug}.html", page)
