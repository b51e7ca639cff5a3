"""Dashboard pages of alerts, history and the Top-10 events, as routes ``app.py`` appends.

* ``/alerts``: firing alerts newest first (what, where, since when, a link to the plot), the
  acknowledgement form, and the alerts of the last week; ``/api/alerts`` the same as JSON, which
  the navigation bar's count badge polls.
* ``/history``: a DOM's, a DU's or a detector-wide metric over a chosen range, drawn in the
  browser from ``/api/history`` (bucketed to the chart's width), with run boundaries and a DU ×
  floor map that drills down to a DOM with one click. ``/history?dom=<id>`` and
  ``/history?du=<n>`` are the links other pages use.
* ``/top10``: ztplot's Top-10 events by hits, triggered hits and overlays, this run and all
  time, with their z-t plots, raw-event downloads and, once ``km3mon reco`` runs, their fitted
  direction.

Acknowledging, silencing (a rule, a DOM or a DU for a chosen time) and marking a DOM or PMT
known-bad are POSTs behind the dashboard's auth, each with the shifter's name and reason; a
request whose ``Origin`` (or ``Referer``) is another site is refused, so a foreign page cannot
act for a shifter.
"""

from __future__ import annotations

import json
import math
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import numpy as np
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from starlette.routing import Route

from km3mon import published
from km3mon.alerts.book import acknowledge, alert_rows, connect
from km3mon.alerts.hygiene import (
    SILENCE_KINDS,
    KnownBad,
    active_silences,
    add_known_bad,
    add_silence,
    end_silence,
    known_bad,
    remove_known_bad,
)
from km3mon.alerts.rules import rule_table
from km3mon.history.fits import fitted_directions
from km3mon.history.store import HistoryError, HistoryStore
from km3mon.history.top10 import RANKINGS, top_events
from km3mon.runtime.freshness import read_records
from km3mon.timetext import duration_text, parse_time, utc_text
from km3mon.web.files import safe_path

if TYPE_CHECKING:
    from km3mon.web.app import Site

NO_CACHE = {"Cache-Control": "no-store"}
WEEK_S = 7 * 86400.0
RANGES_S = {"6h": 6 * 3600, "24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400}
MAX_POINTS = 20_000
HISTORY = {"title": "History", "slug": "history"}
RANKING_TITLES = {"n_hits": "hits", "n_triggered": "triggered hits", "overlays": "overlays"}
#: Longest silence a shifter can set (a week: longer is a known issue, not a silence).
MAX_SILENCE_H = 7 * 24.0


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


def same_origin(request: Request) -> bool:
    """The form was sent by one of our own pages (Origin, else Referer, names our host)."""
    source = request.headers.get("origin") or request.headers.get("referer")
    if not source:
        return False
    host = request.headers.get("host", "")
    return urlsplit(source).netloc == host


def alerts_routes(site: Site) -> list[Route]:
    """The routes of this module, for ``create_app`` to append."""
    templates = Environment(
        loader=PackageLoader("km3mon.web", "templates"), autoescape=select_autoescape()
    )
    templates.globals.update(utc=utc_text, duration=duration_text)
    fits_cache: dict[str, tuple[float, dict[str, Any] | None]] = {}

    def render(template: str, **context: object) -> HTMLResponse:
        html = templates.get_template(template).render(site=site, pages=site.pages, **context)
        return HTMLResponse(html, headers=NO_CACHE)

    def current_alerts() -> dict[str, list[dict]]:
        """Firing and resolved alerts, silences in force, known-bad DOMs and PMTs."""
        db = published.read_alerts(site.data_dir)
        configured = [KnownBad.parse(entry).as_dict() for entry in site.known_bad]
        if db is None:
            return {"firing": [], "resolved": [], "silences": [], "known_bad": configured}
        try:
            rows = alert_rows(db, since=time.time() - WEEK_S)
            (tables,) = db.execute(  # none in a database of an older km3mon alerts
                "SELECT count(*) FROM sqlite_master WHERE name IN ('silences', 'known_bad')"
            ).fetchone()
            silences = active_silences(db) if tables == 2 else []
            bad = (
                [b.as_dict() for b in known_bad(db, site.known_bad)] if tables == 2 else configured
            )
        finally:
            db.close()
        return {
            "firing": [a for a in rows if a["state"] == "firing"],
            "resolved": [a for a in rows if a["state"] == "resolved"],
            "silences": silences,
            "known_bad": bad,
        }

    async def alerts_page(request: Request) -> Response:
        current = current_alerts()
        return render(
            "alerts.html",
            page={"title": "Alerts", "slug": "alerts"},
            **current,
            silence_kinds=SILENCE_KINDS,
            rules=rule_table(),
            now=time.time(),
            message=request.query_params.get("message", ""),
        )

    async def api_alerts(request: Request) -> Response:
        current = current_alerts()
        return JSONResponse(
            {"time": time.time(), "count": len(current["firing"]), **current}, headers=NO_CACHE
        )

    async def shifter_form(request: Request) -> dict[str, str] | Response:
        """The fields of a form from our own pages, or the answer refusing it."""
        if not same_origin(request):
            return PlainTextResponse("refused: the form must come from this site\n", 403)
        body = await request.body()  # a urlencoded form (no multipart parser needed)
        if len(body) > 8192:
            return PlainTextResponse("form too large\n", 413)
        form = parse_qs(body.decode(errors="replace"))
        return {key: values[0].strip()[:500] for key, values in form.items()}

    def back(message: str) -> Response:
        return RedirectResponse(f"/alerts?message={message.replace(' ', '+')}", 303)

    def write(action) -> bool:
        """Run ``action`` on the alert database (created if km3mon alerts never ran)."""
        db = connect(site.data_dir)
        try:
            return action(db)
        finally:
            db.close()

    async def silence(request: Request) -> Response:
        form = await shifter_form(request)
        if isinstance(form, Response):
            return form
        name, reason = form.get("name", "")[:80], form.get("reason", "")
        kind, value = form.get("kind", ""), form.get("value", "")
        if not name or not reason:
            return back("Give your name and a reason to silence")
        try:
            hours = float(form.get("hours", ""))
        except ValueError:
            hours = math.nan
        if not 0 < hours <= MAX_SILENCE_H:
            return back(f"Silence for more than 0 and at most {MAX_SILENCE_H:g} hours")
        until = time.time() + hours * 3600.0
        try:
            write(lambda db: add_silence(db, kind, value[:80], until, name, reason))
        except ValueError as error:
            return back(str(error))
        return back(f"Silenced {kind} {value} until {utc_text(until)}")

    async def end_silence_now(request: Request) -> Response:
        form = await shifter_form(request)
        if isinstance(form, Response):
            return form
        name = form.get("name", "")[:80]
        if not name:
            return back("Give your name to end a silence")
        done = write(lambda db: end_silence(db, int(request.path_params["id"]), name))
        return back("Silence ended" if done else "No such silence in force")

    async def mark_known_bad(request: Request) -> Response:
        form = await shifter_form(request)
        if isinstance(form, Response):
            return form
        name, reason = form.get("name", "")[:80], form.get("reason", "")
        dom, channel = form.get("dom_id", ""), form.get("channel", "")
        if not name or not reason:
            return back("Give your name and a reason to mark a DOM or PMT known-bad")
        if not dom.isdigit() or (channel and not (channel.isdigit() and int(channel) < 31)):
            return back("A DOM id is a number, a channel 0 to 30")
        pmt = int(channel) if channel else None
        write(lambda db: add_known_bad(db, int(dom), pmt, name, reason))
        return back(f"DOM {dom}" + (f" channel {pmt}" if pmt is not None else "") + " known bad")

    async def unmark_known_bad(request: Request) -> Response:
        form = await shifter_form(request)
        if isinstance(form, Response):
            return form
        name = form.get("name", "")[:80]
        if not name:
            return back("Give your name to remove a known-bad entry")
        done = write(lambda db: remove_known_bad(db, int(request.path_params["id"]), name))
        return back("Removed from the known-bad list" if done else "No such known-bad entry")

    async def acknowledge_alert(request: Request) -> Response:
        if not same_origin(request):
            return PlainTextResponse("refused: the form must come from this site\n", 403)
        body = await request.body()  # a urlencoded form (no multipart parser needed)
        if len(body) > 8192:
            return PlainTextResponse("form too large\n", 413)
        form = parse_qs(body.decode(errors="replace"))
        name = form.get("name", [""])[0].strip()[:80]
        comment = form.get("comment", [""])[0].strip()[:500]
        if not name:
            return RedirectResponse("/alerts?message=Give+your+name+to+acknowledge", 303)
        alert_id = int(request.path_params["id"])
        done = write(lambda db: acknowledge(db, alert_id, name, comment))
        message = "Acknowledged" if done else "No such firing alert"
        return RedirectResponse(f"/alerts?message={message.replace(' ', '+')}", 303)

    def open_store() -> HistoryStore:
        return HistoryStore(site.data_dir, readonly=True)

    async def history_page(request: Request) -> Response:
        try:
            store = open_store()
        except HistoryError as error:
            return render(
                "history.html", page=HISTORY, error=str(error), metrics=[], places={}, params={}
            )
        try:
            metrics = store.metrics()
            places = store.places()
            empty = store.newest_time() is None
        finally:
            store.close()
        now = time.time()
        waiting, reload_s = first_minute_note(read_records(site.data_dir).get("history"), now)
        return render(
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

    async def api_history(request: Request) -> Response:
        try:
            store = open_store()
        except HistoryError as error:
            return JSONResponse({"error": str(error)}, status_code=404)
        try:
            answer = history_answer(store, request.query_params, time.time())
        except (QueryError, HistoryError) as error:
            return JSONResponse({"error": str(error)}, status_code=400)
        finally:
            store.close()
        return Response(
            json.dumps(answer, allow_nan=False), media_type="application/json", headers=NO_CACHE
        )

    async def api_history_latest(request: Request) -> Response:
        """The newest minute of a per-DOM metric with every DOM's place, for the map."""
        try:
            store = open_store()
        except HistoryError as error:
            return JSONResponse({"error": str(error)}, status_code=404)
        try:
            metric = request.query_params.get("metric", "dom_rate_khz")
            ids, values = store.latest(metric)
            places = store.places()
        except HistoryError as error:
            return JSONResponse({"error": str(error)}, status_code=400)
        finally:
            store.close()
        doms = [
            [int(d), *places[int(d)], None if not math.isfinite(v) else round(float(v), 3)]
            for d, v in zip(ids.tolist(), values.tolist(), strict=True)
            if int(d) in places and places[int(d)][1] > 0
        ]
        return JSONResponse({"metric": metric, "doms": doms}, headers=NO_CACHE)

    def directions(events: list[dict]) -> None:
        """Each event's multi-DU fit, looked up once per event (misses again after a minute)."""
        now = time.time()
        wanted = [
            e for e in events if e["name"] not in fits_cache or (
                fits_cache[e["name"]][1] is None and now - fits_cache[e["name"]][0] > 60)
        ]  # fmt: skip
        if wanted:
            keys = [((e["run"], e["frame_index"], e["trigger_counter"]), e["utc"]) for e in wanted]
            found = fitted_directions(published.reco_dir(site.data_dir), keys)
            for event, (key, _) in zip(wanted, keys, strict=True):
                fits_cache[event["name"]] = (now, found.get(key))
        for event in events:
            event["fit"] = fits_cache.get(event["name"], (0, None))[1]

    async def top10_page(request: Request) -> Response:
        selection = top_events(site.data_dir)
        events = [e for rows in selection["lists"].values() for e in rows]
        directions(events)
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
            "top10.html",
            page={"title": "Top 10", "slug": "top10"},
            sections=sections,
            plots=plots,
            now=time.time(),
        )

    async def raw_event(request: Request) -> Response:
        name = request.path_params["name"]
        path = safe_path(published.top10_files(site.plot_dir), f"{name}.dat", (".dat",))
        if path is None:
            return PlainTextResponse("no such event\n", status_code=404)
        return Response(
            path.read_bytes(),
            media_type="application/octet-stream",
            headers={"Content-Disposition": f'attachment; filename="{path.name}"', **NO_CACHE},
        )

    return [
        Route("/alerts", alerts_page),
        Route("/alerts/{id:int}/ack", acknowledge_alert, methods=["POST"]),
        Route("/alerts/silences", silence, methods=["POST"]),
        Route("/alerts/silences/{id:int}/end", end_silence_now, methods=["POST"]),
        Route("/alerts/known-bad", mark_known_bad, methods=["POST"]),
        Route("/alerts/known-bad/{id:int}/remove", unmark_known_bad, methods=["POST"]),
        Route("/api/alerts", api_alerts),
        Route("/history", history_page),
        Route("/api/history", api_history),
        Route("/api/history/latest", api_history_latest),
        Route("/top10", top10_page),
        Route("/top10.html", top10_page),
        Route("/top10/{name}.dat", raw_event),
    ]
