"""``/history``: a DOM's, a DU's or a detector-wide metric over a chosen range, drawn in the
browser from ``/api/history`` (bucketed to the chart's width), with run boundaries and a DU ×
floor map that drills down to a DOM with one click (``/api/history/latest``).
``/history?dom=<id>`` and ``/history?du=<n>`` are the links other pages use.
"""

from __future__ import annotations

import json
import math
import time
from typing import Any

import numpy as np
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from km3mon.history.store import HistoryError, HistoryStore
from km3mon.runtime.freshness import read_records
from km3mon.timetext import parse_time, utc_text
from km3mon.web.forms import APIError
from km3mon.web.templates import NO_CACHE, render

RANGES_S = {"6h": 6 * 3600, "24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400}
MAX_POINTS = 20_000
HISTORY = {"title": "History", "slug": "history"}


class QueryError(ValueError):
    """A request parameter that cannot be used; the message says which and why."""


def _query_time(text: str, name: str) -> float:
    try:
        return parse_time(text, name)
    except ValueError as error:
        raise QueryError(str(error)) from None


def time_range(params: Any, now: float) -> tuple[float, float]:
    """``from``/``to`` (default: ``last``, default 24 h, up to now)."""
    end = _query_time(params["to"], "to") if params.get("to") else now
    if params.get("from"):
        start = _query_time(params["from"], "from")
    else:
        last = params.get("last", "24h")
        if last not in RANGES_S:
            raise QueryError(f"last={last!r}: one of {', '.join(RANGES_S)}")
        start = end - RANGES_S[last]
    if start >= end:
        raise QueryError("from must be before to")
    return start, end


def bucketed(times: np.ndarray, values: np.ndarray, start: float, end: float, points: int):
    """Mean, min and max per bucket when there are more values than ``points``."""
    if len(values) <= points:
        return times, values, None, None
    width = (end - start) / points
    bucket = np.clip(((times - start) // width).astype(np.int64), 0, points - 1)
    counts = np.bincount(bucket, minlength=points)
    used = counts > 0
    sums = np.bincount(bucket, weights=values, minlength=points)
    low = np.full(points, np.inf)
    high = np.full(points, -np.inf)
    np.minimum.at(low, bucket, values)
    np.maximum.at(high, bucket, values)
    centres = start + (np.arange(points) + 0.5) * width
    return centres[used], sums[used] / counts[used], low[used], high[used]


def _rounded(values: np.ndarray | None) -> list[float] | None:
    if values is None:
        return None
    return [round(float(v), 4) for v in values]


def history_answer(store: HistoryStore, params: Any, now: float) -> dict[str, Any]:
    """``/api/history``: one series per entity asked for (a DU of a per-DOM metric: its DOMs)."""
    metric = params.get("metric", "dom_rate_khz")
    known = dict(store.metrics())
    if metric not in known:
        raise QueryError(f"metric={metric!r} is not in the history; known: {', '.join(known)}")
    kind = known[metric]
    start, end = time_range(params, now)
    try:
        points = int(params.get("points", MAX_POINTS))
        step = int(params["step"]) if params.get("step") else None
        dom = int(params["dom"]) if params.get("dom") else None
        du = int(params["du"]) if params.get("du") else None
        floor = int(params["floor"]) if params.get("floor") else None
    except ValueError as error:
        raise QueryError(f"not an integer: {error}") from None
    if step not in (None, 60, 600):
        raise QueryError("step must be 60 (minutes) or 600 (10-minute means)")
    places = store.places()
    entities: list[tuple[int, str]] = []
    if kind == "scalar":
        entities = [(0, metric)]
    elif kind == "du":
        if du is None:
            raise QueryError(f"{metric} is per DU: give du=<n>")
        entities = [(du, f"DU {du}")]
    else:
        if dom is None and du is not None and floor is not None:
            dom = next((d for d, place in places.items() if place == (du, floor)), None)
            if dom is None:
                raise QueryError(f"no DOM at DU {du} floor {floor}")
        if dom is not None:
            entities = [(dom, _dom_label(dom, places))]
        elif du is not None:
            doms = sorted((place[1], d) for d, place in places.items() if place[0] == du)
            entities = [(d, _dom_label(d, places)) for f, d in doms if f > 0]
            if not entities:
                raise QueryError(f"no DOMs of DU {du} known to the history")
        else:
            raise QueryError(f"{metric} is per DOM: give dom=<id>, du=<n> or du=<n>&floor=<f>")
    series = []
    step_s = None
    for entity, label in entities:
        found = store.series(metric, entity, start, end, step)
        step_s = found.step_s
        times, values, low, high = bucketed(found.times_s, found.values, start, end, points)
        series.append(
            {
                "entity": entity,
                "label": label,
                "t": [round(float(t), 1) for t in times],
                "v": _rounded(values),
                "min": _rounded(low),
                "max": _rounded(high),
            }
        )
    return {
        "metric": metric,
        "kind": kind,
        "from": start,
        "to": end,
        "step_s": step_s,
        "series": series,
        "runs": [[run, at] for run, at in store.runs(start, end)],
    }


def first_minute_note(record: dict[str, Any] | None, now: float) -> tuple[str, float]:
    """Why the history is still empty, from ``km3mon history``'s freshness record, and in
    how many seconds the page should look again."""
    if record is None:
        return "Nothing recorded yet: `km3mon history` has not started (no freshness record).", 60.0
    interval_s = float(record.get("render_interval_s") or 60.0)
    first_s = float(record.get("started_at") or now) + interval_s
    if first_s > now:
        return (
            "Nothing recorded yet: the first complete minute is written at "
            f"{utc_text(first_s)} UTC (`km3mon history` started at "
            f"{utc_text(first_s - interval_s)} UTC and samples once a minute what the monitors "
            "have published).",
            first_s - now + 5.0,
        )
    return (
        f"Nothing recorded yet: `km3mon history` has run since "
        f"{utc_text(first_s - interval_s)} UTC, but the monitors have published no metrics yet "
        "(data/metrics/); it samples again every minute.",
        interval_s,
    )


def _dom_label(dom: int, places: dict[int, tuple[int, int]]) -> str:
    place = places.get(dom)
    return f"DOM {dom}" + (f" (DU {place[0]}, floor {place[1]})" if place else "")


def open_store(request: Request) -> HistoryStore:
    return HistoryStore(request.app.state.site.data_dir, readonly=True)


async def history_page(request: Request) -> Response:
    try:
        store = open_store(request)
    except HistoryError as error:
        return render(
            request, "history.html", page=HISTORY, error=str(error), metrics=[], places={},
            params={},
        )  # fmt: skip
    try:
        metrics = store.metrics()
        places = store.places()
        empty = store.newest_time() is None
    finally:
        store.close()
    now = time.time()
    records = read_records(request.app.state.site.data_dir)
    waiting, reload_s = first_minute_note(records.get("history"), now)
    return render(
        request,
        "history.html",
        page=HISTORY,
        error="",
        metrics=metrics,
        places=places,
        first_du=min((du for du, floor in places.values() if floor > 0), default=None),
        waiting=waiting if empty else "",
        reload_s=reload_s if empty else None,
        params=dict(request.query_params),
        ranges=list(RANGES_S),
    )


def open_api_store(request: Request) -> HistoryStore:
    """The history for an API answer; no history yet is a 404."""
    try:
        return open_store(request)
    except HistoryError as error:
        raise APIError(404, str(error)) from None


async def api_history(request: Request) -> Response:
    store = open_api_store(request)
    try:
        answer = history_answer(store, request.query_params, time.time())
    except (QueryError, HistoryError) as error:
        raise APIError(400, str(error)) from None
    finally:
        store.close()
    return Response(
        json.dumps(answer, allow_nan=False), media_type="application/json", headers=NO_CACHE
    )


async def api_history_latest(request: Request) -> Response:
    """The newest minute of a per-DOM metric with every DOM's place, for the map."""
    store = open_api_store(request)
    try:
        metric = request.query_params.get("metric", "dom_rate_khz")
        ids, values = store.latest(metric)
        places = store.places()
    except HistoryError as error:
        raise APIError(400, str(error)) from None
    finally:
        store.close()
    doms = [
        [int(d), *places[int(d)], None if not math.isfinite(v) else round(float(v), 3)]
        for d, v in zip(ids.tolist(), values.tolist(), strict=True)
        if int(d) in places and places[int(d)][1] > 0
    ]
    return JSONResponse({"metric": metric, "doms": doms}, headers=NO_CACHE)


ROUTES = [
    Route("/history", history_page),
    Route("/api/history", api_history),
    Route("/api/history/latest", api_history_latest),
]
