"""``/alerts``: firing alerts newest first (what, where, since when, a link to the plot), the
acknowledgement form, and the alerts of the last week; ``/api/alerts`` the same as JSON, which
the navigation bar's count badge polls.

Acknowledging, silencing (a rule, a DOM or a DU for a chosen time) and marking a DOM or PMT
known-bad are POSTs behind the dashboard's auth, each with the shifter's name and reason, from
our own pages only (:func:`km3mon.web.forms.shifter_form`).
"""

from __future__ import annotations

import math
import sqlite3
import time
from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
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
from km3mon.timetext import utc_text
from km3mon.web.forms import MAX_NAME_CHARS, see_page, shifter_form
from km3mon.web.site import Site
from km3mon.web.templates import NO_CACHE, render

WEEK_S = 7 * 86400.0
#: Longest silence a shifter can set (a week: longer is a known issue, not a silence).
MAX_SILENCE_H = 7 * 24.0


def current_alerts(site: Site) -> dict[str, list[dict]]:
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
        bad = [b.as_dict() for b in known_bad(db, site.known_bad)] if tables == 2 else configured
    finally:
        db.close()
    return {
        "firing": [a for a in rows if a["state"] == "firing"],
        "resolved": [a for a in rows if a["state"] == "resolved"],
        "silences": silences,
        "known_bad": bad,
    }


async def alerts_page(request: Request) -> Response:
    current = current_alerts(request.app.state.site)
    return render(
        request,
        "alerts.html",
        page={"title": "Alerts", "slug": "alerts"},
        **current,
        silence_kinds=SILENCE_KINDS,
        rules=rule_table(),
        now=time.time(),
        message=request.query_params.get("message", ""),
    )


async def api_alerts(request: Request) -> Response:
    current = current_alerts(request.app.state.site)
    return JSONResponse(
        {"time": time.time(), "count": len(current["firing"]), **current}, headers=NO_CACHE
    )


def back(message: str) -> Response:
    return see_page("/alerts", message)


def write(request: Request, action: Callable[[sqlite3.Connection], bool | None]) -> bool | None:
    """Run ``action`` on the alert database (created if km3mon alerts never ran)."""
    db = connect(request.app.state.site.data_dir)
    try:
        return action(db)
    finally:
        db.close()


async def signed_form(request: Request) -> tuple[dict[str, str], str]:
    """The shifter's form and the name they signed it with."""
    form = await shifter_form(request)
    return form, form.get("name", "")[:MAX_NAME_CHARS]


async def signed_action(
    request: Request,
    purpose: str,
    action: Callable[[sqlite3.Connection, dict[str, str], str], bool],
    done: str,
    not_found: str,
) -> Response:
    """A POST that needs the shifter's name: ``action(db, form, name)`` on the alert database."""
    form, name = await signed_form(request)
    if not name:
        return back(f"Give your name to {purpose}")
    return back(done if write(request, lambda db: action(db, form, name)) else not_found)


async def acknowledge_alert(request: Request) -> Response:
    alert_id = int(request.path_params["id"])
    return await signed_action(
        request, "acknowledge",
        lambda db, form, name: acknowledge(db, alert_id, name, form.get("comment", "")),
        "Acknowledged", "No such firing alert",
    )  # fmt: skip


async def silence(request: Request) -> Response:
    form, name = await signed_form(request)
    reason, kind, value = form.get("reason", ""), form.get("kind", ""), form.get("value", "")
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
        write(request, lambda db: add_silence(db, kind, value[:80], until, name, reason))
    except ValueError as error:
        return back(str(error))
    return back(f"Silenced {kind} {value} until {utc_text(until)}")


async def end_silence_now(request: Request) -> Response:
    silence_id = int(request.path_params["id"])
    return await signed_action(
        request, "end a silence", lambda db, form, name: end_silence(db, silence_id, name),
        "Silence ended", "No such silence in force",
    )  # fmt: skip


async def mark_known_bad(request: Request) -> Response:
    form, name = await signed_form(request)
    reason, dom, channel = form.get("reason", ""), form.get("dom_id", ""), form.get("channel", "")
    if not name or not reason:
        return back("Give your name and a reason to mark a DOM or PMT known-bad")
    if not dom.isdigit() or (channel and not (channel.isdigit() and int(channel) < 31)):
        return back("A DOM id is a number, a channel 0 to 30")
    pmt = int(channel) if channel else None
    write(request, lambda db: add_known_bad(db, int(dom), pmt, name, reason))
    return back(f"DOM {dom}" + (f" channel {pmt}" if pmt is not None else "") + " known bad")


async def unmark_known_bad(request: Request) -> Response:
    entry_id = int(request.path_params["id"])
    return await signed_action(
        request, "remove a known-bad entry",
        lambda db, form, name: remove_known_bad(db, entry_id, name),
        "Removed from the known-bad list", "No such known-bad entry",
    )  # fmt: skip


ROUTES = [
    Route("/alerts", alerts_page),
    Route("/alerts/{id:int}/ack", acknowledge_alert, methods=["POST"]),
    Route("/alerts/silences", silence, methods=["POST"]),
    Route("/alerts/silences/{id:int}/end", end_silence_now, methods=["POST"]),
    Route("/alerts/known-bad", mark_known_bad, methods=["POST"]),
    Route("/alerts/known-bad/{id:int}/remove", unmark_known_bad, methods=["POST"]),
    Route("/api/alerts", api_alerts),
]
