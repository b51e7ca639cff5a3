"""The run-quality pages.

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
from typing import Any

import numpy as np
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from km3mon.quality.store import VERDICTS, QualityError, QualityStore
from km3mon.web.forms import MAX_NAME_CHARS, APIError, see_page, shifter_form
from km3mon.web.templates import NO_CACHE, render

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


def store(request: Request, readonly: bool = True) -> QualityStore:
    return QualityStore(request.app.state.site.data_dir, readonly=readonly)


def records(request: Request) -> tuple[list[dict[str, Any]], str]:
    try:
        with store(request) as opened:
            return opened.records(limit=RUNS_SHOWN), ""
    except QualityError as error:
        return [], str(error)


async def runs_page(request: Request) -> Response:
    runs, error = records(request)
    current = next((r for r in runs if r["state"] == "running"), None)
    minutes = []
    if current is not None:
        with store(request) as opened:
            minutes = opened.minutes(current["run"])
    return render(
        request,
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
        with store(request) as opened:
            record = opened.record(run)
            overrides = opened.overrides(run) if record else []
            choice = opened.reference_choice()
    except QualityError as error:
        raise HTTPException(404, f"{error}\n") from None
    if record is None:
        raise HTTPException(404, "no such run\n")
    reference = record["reference"].get("quantities", {})
    histograms = {}
    with store(request) as opened:
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
        request,
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
    runs, error = records(request)
    if error:
        raise APIError(404, error)
    document = {"time": time.time(), "runs": [_jsonable(r) for r in runs]}
    return Response(json.dumps(document), media_type="application/json", headers=NO_CACHE)


async def api_run(request: Request) -> Response:
    run = request.path_params["run"]
    try:
        with store(request) as opened:
            record = opened.record(run)
            if record is None:
                raise APIError(404, "no such run")
            document = {**_jsonable(record), "overrides": opened.overrides(run),
                        "minutes": opened.minutes(run)}  # fmt: skip
    except QualityError as error:
        raise APIError(404, str(error)) from None
    return Response(json.dumps(document), media_type="application/json", headers=NO_CACHE)


async def override(request: Request) -> Response:
    fields = await shifter_form(request)
    run = request.path_params["run"]
    try:
        with store(request, readonly=False) as opened:
            if opened.record(run) is None:
                raise HTTPException(404, "no such run\n")
            opened.add_override(
                run, fields.get("verdict", ""), fields.get("name", "")[:MAX_NAME_CHARS],
                fields.get("reason", ""),
            )  # fmt: skip
    except QualityError as error:
        return see_page(f"/runs/{run}", str(error))
    return see_page(f"/runs/{run}", "Override saved")


async def choose_reference(request: Request) -> Response:
    fields = await shifter_form(request)
    run = request.path_params["run"]
    chosen = 0 if fields.get("automatic") else run
    try:
        with store(request, readonly=False) as opened:
            opened.choose_reference(chosen, fields.get("name", "")[:MAX_NAME_CHARS],
                                    fields.get("reason", ""))  # fmt: skip
    except QualityError as error:
        return see_page(f"/runs/{run}", str(error))
    return see_page(f"/runs/{run}", "Reference chosen" if chosen else "Automatic reference again")


ROUTES = [
    Route("/runs", runs_page),
    Route("/runs/{run:int}", run_page),
    Route("/runs/{run:int}/override", override, methods=["POST"]),
    Route("/runs/{run:int}/reference", choose_reference, methods=["POST"]),
    Route("/api/runs", api_runs),
    Route("/api/runs/{run:int}", api_run),
]
