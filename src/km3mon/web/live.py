"""Live updates as server-sent events.

The server watches the modification times of ``plots/*.png`` and of the freshness records
once a second and tells every open page which plot changed and which panels are stale, so a
page never polls and never shows a frozen plot without saying so.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from km3mon.runtime.freshness import panel_states, read_records
from km3mon.web.site import Site
from km3mon.web.templates import NO_CACHE

#: File times come from the kernel's coarse clock, a few ms behind ``time.time()``.
MTIME_SLACK_S = 0.05
#: Panel states are pushed when one changes, and at least this often (ages tick in the page).
STATUS_EVERY_S = 5.0


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


async def events(request: Request) -> Response:
    return StreamingResponse(
        event_stream(request.app.state.scan, request),
        media_type="text/event-stream",
        headers=NO_CACHE,
    )


ROUTES = [Route("/events", events)]
