"""``/logs.html``: the archived daily log files with their counts, and the live log (served by
``km3mon weblog`` on its own port); ``/logs/<name>`` one archived file."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from km3mon.web.files import archived_logs, log_file_response
from km3mon.web.templates import render


async def logs_page(request: Request) -> Response:
    site = request.app.state.site
    archives = archived_logs(site.log_dir, request.app.state.log_counts) if site.log_dir else []
    live = f"http://{request.url.hostname}:{site.weblog_port}/" if site.weblog_port else None
    return render(request, "logs.html", archives=archives, live=live)


async def log_file(request: Request) -> Response:
    return log_file_response(request.app.state.site.log_dir, request.path_params["name"])


ROUTES = [Route("/logs.html", logs_page), Route("/logs/{name}", log_file)]
