"""Dashboard pages of the run-quality record, as routes ``app.py`` appends.

* ``/runs``: every run, newest first, its verdict in words and colour, live time and the tests
  it failed; the current run as "running" with its minute-by-minute record.
* ``/runs/<run>``: every quantity beside the reference's, every test with its score, the
  distributions drawn over the reference's, the override history, the override form and a
  button that makes the run the reference of the runs to come.
* ``/api/runs`` and ``/api/runs/<run>``: the same as JSON.

Overriding and choosing the reference are POSTs behind the dashboard's auth; a request whose
``Origin`` (or ``Referer``) is another site is refused, as for acknowledging alerts.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

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

from km3mon.quality.store import VERDICTS, QualityError, QualityStore
from km3mon.timetext import duration_text, utc_text
from km3mon.web.alerts_pages import same_origin

if TYPE_CHECKING:
    from km3mon.web.app import Site

NO_CACHE = {"Cache-Control": "no-store"}
RUNS_SHOWN = 500
#: Quantities of the run page, in this order, with their unit; JQAQC's names where the same.
QUANTITIES = (
    ("livetime_s", "s"), ("utc_min", "UTC"), ("utc_max", "UTC"), ("triggerrate", "Hz"),
    ("jdaqevent", ""), ("jtrigger3dmuon", ""), ("jtrigger3dshower", ""),
    ("jtriggermxshower", ""), ("jtriggernb", ""), ("jdaqsummaryslice", ""),
    ("jdaqtimeslice_sn", ""), ("daq", ""), ("whiterabbitstatus", ""), ("out_sync", ""),
    ("hrv", ""), ("fifo", ""), ("pmts", ""), ("pmts_norm", ""), ("meanrate", "kHz"),
    ("rmsrate", "kHz"), ("doms_active", ""), ("doms_expected", ""), ("reco_fraction", ""),
    ("zenith_shape", "q"),
)  # fmt: skip
MINUTE_COLUMNS = ("livetime_s", "triggerrate", "jdaqevent", "daq", "whiterabbitstatus", "hrv",
                  "fifo", "meanrate")  # fmt: skip


def number(value: Any) -> str:
    """A quantity for a table cell."""
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def histogram_lines(counts: list[float], reference: list[float] | None) -> dict[str, Any]:
    """SVG polylines (100 x 40 box) of a histogram and its reference, both normalised."""

    def points(values: list[float], top: float) -> str:
        steps = []
        for i, value in enumerate(values):
            y = 40 - 38 * value / top
            steps += [f"{100 * i / len(values):.2f},{y:.2f}",
                      f"{100 * (i + 1) / len(values):.2f},{y:.2f}"]  # fmt: skip
        return " ".join(steps)

    data = np.asarray(counts, np.float64)
    data = data / data.sum() if data.sum() else data
    ref = None
    if reference is not None and len(reference) == len(counts) and sum(reference):
        ref = np.asarray(reference, np.float64) / sum(reference)
    top = max(float(data.max(initial=0)), float(ref.max()) if ref is not None else 0) or 1.0
    return {
        "run": points(data.tolist(), top),
        "reference": points(ref.tolist(), top) if ref is not None else None,
        "bins": len(counts),
    }


def _jsonable(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k not in ("dom_ids", "dom_rate_khz")}


def runs_routes(site: Site) -> list[Route]:
    """The routes of this module, for ``create_app`` to append."""
    templates = Environment(
        loader=PackageLoader("km3mon.web", "templates"), autoescape=select_autoescape()
    )
    templates.globals.update(utc=utc_text, duration=duration_text, number=number)

    def render(template: str, **context: object) -> HTMLResponse:
        html = templates.get_template(template).render(site=site, pages=site.pages, **context)
        return HTMLResponse(html, headers=NO_CACHE)

    def store(readonly: bool = True) -> QualityStore:
        return QualityStore(site.data_dir, readonly=readonly)

    def records() -> tuple[list[dict[str, Any]], str]:
        try:
            with store() as opened:
                return opened.records(limit=RUNS_SHOWN), ""
        except QualityError as error:
            return [], str(error)

    async def runs_page(request: Request) -> Response:
        runs, error = records()
        current = next((r for r in runs if r["state"] == "running"), None)
        minutes = []
        if current is not None:
            with store() as opened:
                minutes = opened.minutes(current["run"])
        return render(
            "runs.html",
            page={"title": "Runs", "slug": "runs"},
            runs=runs,
            current=current,
            minutes=minutes,
            minute_columns=MINUTE_COLUMNS,
            error=error,
            now=time.time(),
        )

    async def run_page(request: Request) -> Response:
        run = request.path_params["run"]
        try:
            with store() as opened:
                record = opened.record(run)
                overrides = opened.overrides(run) if record else []
                choice = opened.reference_choice()
        except QualityError as error:
            return PlainTextResponse(f"{error}\n", status_code=404)
        if record is None:
            return PlainTextResponse("no such run\n", status_code=404)
        reference = record["reference"].get("quantities", {})
        histograms = {}
        with store() as opened:
            reference_records = [opened.record(r) for r in record["reference"].get("runs", [])]
        for name, counts in record["histograms"].items():
            shapes = [
                np.asarray(other["histograms"][name], np.float64)
                for other in reference_records
                if other and len(other["histograms"].get(name, ())) == len(counts)
            ]
            summed = np.sum(shapes, axis=0).tolist() if shapes else None
            histograms[name] = histogram_lines(counts, summed)
        return render(
            "run.html",
            page={"title": f"Run {run}", "slug": "runs"},
            record=record,
            quantities=QUANTITIES,
            reference=reference,
            histograms=histograms,
            overrides=overrides,
            choice=choice,
            verdicts=VERDICTS,
            message=request.query_params.get("message", ""),
            now=time.time(),
        )

    async def api_runs(request: Request) -> Response:
        runs, error = records()
        if error:
            return JSONResponse({"error": error}, status_code=404)
        document = {"time": time.time(), "runs": [_jsonable(r) for r in runs]}
        return Response(json.dumps(document), media_type="application/json", headers=NO_CACHE)

    async def api_run(request: Request) -> Response:
        run = request.path_params["run"]
        try:
            with store() as opened:
                record = opened.record(run)
                if record is None:
                    return JSONResponse({"error": "no such run"}, status_code=404)
                document = {**_jsonable(record), "overrides": opened.overrides(run),
                            "minutes": opened.minutes(run)}  # fmt: skip
        except QualityError as error:
            return JSONResponse({"error": str(error)}, status_code=404)
        return Response(json.dumps(document), media_type="application/json", headers=NO_CACHE)

    async def form(request: Request) -> dict[str, str] | Response:
        if not same_origin(request):
            return PlainTextResponse("refused: the form must come from this site\n", 403)
        body = await request.body()  # a urlencoded form (no multipart parser needed)
        if len(body) > 8192:
            return PlainTextResponse("form too large\n", 413)
        fields = parse_qs(body.decode(errors="replace"))
        return {key: values[0].strip()[:500] for key, values in fields.items()}

    async def override(request: Request) -> Response:
        fields = await form(request)
        if isinstance(fields, Response):
            return fields
        run = request.path_params["run"]
        try:
            with store(readonly=False) as opened:
                if opened.record(run) is None:
                    return PlainTextResponse("no such run\n", status_code=404)
                opened.add_override(
                    run, fields.get("verdict", ""), fields.get("name", "")[:80],
                    fields.get("reason", ""),
                )  # fmt: skip
        except QualityError as error:
            message = str(error).replace(" ", "+")
            return RedirectResponse(f"/runs/{run}?message={message}", 303)
        return RedirectResponse(f"/runs/{run}?message=Override+saved", 303)

    async def choose_reference(request: Request) -> Response:
        fields = await form(request)
        if isinstance(fields, Response):
            return fields
        run = request.path_params["run"]
        chosen = 0 if fields.get("automatic") else run
        try:
            with store(readonly=False) as opened:
                opened.choose_reference(chosen, fields.get("name", "")[:80],
                                        fields.get("reason", ""))  # fmt: skip
        except QualityError as error:
            return RedirectResponse(f"/runs/{run}?message={str(error).replace(' ', '+')}", 303)
        text = "Reference+chosen" if chosen else "Automatic+reference+again"
        return RedirectResponse(f"/runs/{run}?message={text}", 303)

    return [
        Route("/runs", runs_page),
        Route("/runs/{run:int}", run_page),
        Route("/runs/{run:int}/override", override, methods=["POST"]),
        Route("/runs/{run:int}/reference", choose_reference, methods=["POST"]),
        Route("/api/runs", api_runs),
        Route("/api/runs/{run:int}", api_run),
    ]
