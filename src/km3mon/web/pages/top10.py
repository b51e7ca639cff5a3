"""``/top10``: ztplot's Top-10 events by hits, triggered hits and overlays, this run and all
time, with their z-t plots, raw-event downloads and, once ``km3mon reco`` runs, their fitted
direction."""

from __future__ import annotations

import time
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from km3mon import published
from km3mon.history.fits import fitted_directions
from km3mon.history.top10 import RANKINGS, top_events
from km3mon.web.files import safe_path
from km3mon.web.templates import NO_CACHE, render

RANKING_TITLES = {"n_hits": "hits", "n_triggered": "triggered hits", "overlays": "overlays"}
#: Seconds before an event without a fit is looked up again.
RETRY_FIT_S = 60


def directions(request: Request, events: list[dict]) -> None:
    """Each event's multi-DU fit, looked up once per event (misses again after a minute)."""
    cache: dict[str, tuple[float, dict[str, Any] | None]] = request.app.state.fits_cache
    now = time.time()
    wanted = [
        e for e in events if e["name"] not in cache or (
            cache[e["name"]][1] is None and now - cache[e["name"]][0] > RETRY_FIT_S)
    ]  # fmt: skip
    if wanted:
        keys = [((e["run"], e["frame_index"], e["trigger_counter"]), e["utc"]) for e in wanted]
        found = fitted_directions(published.reco_dir(request.app.state.site.data_dir), keys)
        for event, (key, _) in zip(wanted, keys, strict=True):
            cache[event["name"]] = (now, found.get(key))
    for event in events:
        event["fit"] = cache.get(event["name"], (0, None))[1]


async def top10_page(request: Request) -> Response:
    site = request.app.state.site
    selection = top_events(site.data_dir)
    events = [e for rows in selection["lists"].values() for e in rows]
    directions(request, events)
    sections = [
        (
            "This run" + (f" ({selection['run']})" if selection["run"] is not None else ""),
            [(RANKING_TITLES[r], selection["lists"].get(("run", r), [])) for r in RANKINGS],
        ),
        (
            "All time",
            [(RANKING_TITLES[r], selection["lists"].get(("all", r), [])) for r in RANKINGS],
        ),
    ]
    folder = published.top10_files(site.plot_dir)
    plots = {e["name"] for e in events if (folder / f"{e['name']}.png").exists()}
    return render(
        request,
        "top10.html",
        page={"title": "Top 10", "slug": "top10"},
        sections=sections,
        plots=plots,
        now=time.time(),
    )


async def raw_event(request: Request) -> Response:
    name = request.path_params["name"]
    folder = published.top10_files(request.app.state.site.plot_dir)
    path = safe_path(folder, f"{name}.dat", (".dat",))
    if path is None:
        raise HTTPException(404, "no such event\n")
    return Response(
        path.read_bytes(),
        media_type="application/octet-stream",
        headers={"Content-Disposition": f'attachment; filename="{path.name}"', **NO_CACHE},
    )


ROUTES = [
    Route("/top10", top10_page),
    Route("/top10.html", top10_page),
    Route("/top10/{name}.dat", raw_event),
]
