"""The dashboard's one Jinja environment and the one way a page is answered.

Every page renders with the site (title, navigation) in its context and is never cached: a
shifter's reload must show what is true now.
"""

from __future__ import annotations

from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse

from km3mon.timetext import duration_text, utc_text
from km3mon.web.tiles import badge

NO_CACHE = {"Cache-Control": "no-store"}


def number(value: Any) -> str:
    """A quantity for a table cell."""
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


TEMPLATES = Environment(
    loader=PackageLoader("km3mon.web", "templates"), autoescape=select_autoescape()
)
TEMPLATES.globals.update(badge=badge, utc=utc_text, duration=duration_text, number=number)


def render(request: Request, template: str, **context: object) -> HTMLResponse:
    """``template`` as an uncached HTML answer, with the site and its pages in the context."""
    site = request.app.state.site
    html = TEMPLATES.get_template(template).render(site=site, pages=site.pages, **context)
    return HTMLResponse(html, headers=NO_CACHE)
