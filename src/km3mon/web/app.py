"""The dashboard application (Starlette): pages, plots, status, JSON API, metrics, live events.

One module per page under :mod:`km3mon.web.pages`, each with its routes as module-level
functions; what they share (the :class:`~km3mon.web.site.Site`, the plot index, the live-update
scan, caches) is on ``app.state``. Errors are raised as ``HTTPException`` and answered by the
handlers of :mod:`km3mon.web.forms`.
"""

from __future__ import annotations

from starlette.applications import Starlette

from km3mon.web import live
from km3mon.web.auth import protect
from km3mon.web.forms import EXCEPTION_HANDLERS
from km3mon.web.pages import alerts, history, logs, plots, runs, status, top10
from km3mon.web.site import Site
from km3mon.web.tiles import PlotIndex


def create_app(site: Site, *, username: str | None = None, password: str | None = None):
    routes = [
        *plots.ROUTES,
        *status.ROUTES,
        *logs.ROUTES,
        *live.ROUTES,
        *alerts.ROUTES,
        *history.ROUTES,
        *top10.ROUTES,
        *runs.ROUTES,
        plots.LAYOUT_PAGE,
    ]
    app = Starlette(routes=routes, exception_handlers=EXCEPTION_HANDLERS)
    app.state.site = site
    app.state.pages = {page.slug: page for page in site.pages}
    app.state.plot_index = PlotIndex(site.plot_dir)
    app.state.scan = live.SiteScan(site)
    app.state.log_counts = {}
    app.state.fits_cache = {}
    return protect(app, username, password)
