"""`km3mon weblog`: the live DAQ log (``logs/MSG.log``) in the browser, behind the same auth.

Replaces the original's unauthenticated frontail. The page loads the last lines, then new
lines are pushed as server-sent events; the browser keeps the newest 10 000, can pause,
filter and highlight (rules like frontail.json's, overridable with ``--rules FILE``). The
server follows the file across the daily rotation (a new inode or a shorter file means a new
file: it starts reading that one from its beginning). Archived ``MSG_*.log`` files are listed
with their error and warning counts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Route

from km3mon.web.auth import protect
from km3mon.web.files import archived_logs, log_file_response
from km3mon.web.forms import EXCEPTION_HANDLERS
from km3mon.web.templates import NO_CACHE, TEMPLATES

log = logging.getLogger("km3mon.weblog")

FIRST_LINES = 200
KEEP_LINES = 10_000
POLL_S = 0.25
#: Highlighting as in the original frontail.json: (substring, CSS), first match wins per kind.
DEFAULT_RULES = {
    "lines": [
        {"match": "ERROR", "style": "color: #b2182b; font-weight: bold"},
        {"match": "ALERT", "style": "color: #c51b7d; font-weight: bold"},
        {"match": "WARNING", "style": "color: #b35806"},
        {"match": "STATUS", "style": "color: #2166ac"},
    ],
    "words": {
        "[DataFilter]": "background: #c7e9c0",
        "[DataQueue]": "background: #fdd0a2",
        "[DataWriter]": "background: #c6dbef",
        "[AcousticDataFilter]": "background: #dadaeb",
        "ALERT (MONITORING)": "background: #fde0ef",
    },
}


class LogFollower:
    """Reads what is appended to a file, and notices when the file is replaced (rotation)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.inode: int | None = None
        self.offset = 0
        self.rest = b""

    def tail(self, count: int) -> list[str]:
        """The last ``count`` lines now; reading continues after them."""
        try:
            data = self.path.read_bytes()
            self.inode = os.stat(self.path).st_ino
        except OSError:
            return []
        self.offset = len(data)
        complete, _, self.rest = data.rpartition(b"\n")
        self.offset -= len(self.rest)
        self.rest = b""
        lines = complete.decode("utf-8", "replace").splitlines()
        return lines[-count:]

    def new_lines(self) -> list[str]:
        try:
            status = os.stat(self.path)
        except OSError:
            return []
        if status.st_ino != self.inode or status.st_size < self.offset:
            self.inode, self.offset, self.rest = status.st_ino, 0, b""  # rotated: a new file
        if status.st_size == self.offset:
            return []
        with self.path.open("rb") as stream:
            stream.seek(self.offset)
            data = stream.read(status.st_size - self.offset)
        self.offset += len(data)
        data = self.rest + data
        complete, _, self.rest = data.rpartition(b"\n")
        if not complete and not data.endswith(b"\n"):
            self.rest = data
            return []
        return complete.decode("utf-8", "replace").splitlines()


def create_weblog(
    log_file: Path,
    *,
    rules: dict | None = None,
    username: str | None = None,
    password: str | None = None,
    poll_s: float = POLL_S,
):
    folder = log_file.parent
    rules = rules or DEFAULT_RULES
    counts_cache: dict = {}

    template = TEMPLATES.get_template("weblog.html")

    async def page(request: Request) -> Response:
        html = template.render(rules=rules, keep=KEEP_LINES)
        return HTMLResponse(html, headers=NO_CACHE)

    async def stream(request: Request) -> Response:
        return StreamingResponse(follow(request), media_type="text/event-stream", headers=NO_CACHE)

    async def follow(request: Request) -> AsyncIterator[str]:
        follower = LogFollower(log_file)
        yield f"event: lines\ndata: {json.dumps(follower.tail(FIRST_LINES))}\n\n"
        while not await request.is_disconnected():
            lines = follower.new_lines()
            if lines:
                yield f"event: lines\ndata: {json.dumps(lines)}\n\n"
            else:
                yield ": keep-alive\n\n"
            await asyncio.sleep(poll_s)

    async def archives(request: Request) -> Response:
        return JSONResponse(archived_logs(folder, counts_cache))

    async def archive_file(request: Request) -> Response:
        return log_file_response(folder, request.path_params["name"])

    routes = [
        Route("/", page),
        Route("/stream", stream),
        Route("/archives", archives),
        Route("/logs/{name}", archive_file),
    ]
    app = Starlette(routes=routes, exception_handlers=EXCEPTION_HANDLERS)
    return protect(app, username, password)


def register(subparsers: argparse._SubParsersAction) -> None:
    from km3mon.web.server import add_guard_arguments

    parser = subparsers.add_parser(
        "weblog", help="live DAQ log viewer (logs/MSG.log) with the dashboard's auth"
    )
    parser.add_argument("-p", "--port", type=int, default=8082, help="port (8082)")
    parser.add_argument("-f", "--file", type=Path, default=Path("logs/MSG.log"))
    parser.add_argument("--host", help="address (default 0.0.0.0 with auth, else 127.0.0.1)")
    parser.add_argument("--rules", type=Path, help="highlight rules (JSON, like frontail.json)")
    parser.add_argument("--pipeline", help="pipeline.toml (default: ./pipeline.toml if present)")
    add_guard_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from km3mon.config import ConfigError, load_pipeline
    from km3mon.logs import setup_logging
    from km3mon.web.guard import serve
    from km3mon.web.server import credentials_and_host

    setup_logging()
    try:
        rules = json.loads(args.rules.read_text()) if args.rules else None
        settings = load_pipeline(args.pipeline).web_server
    except (OSError, ValueError, ConfigError) as error:
        log.error("cannot start: %s", error)
        return 2
    username, password, host = credentials_and_host(settings, args.host, log)
    app = create_weblog(args.file, rules=rules, username=username, password=password)
    log.warning("DAQ log viewer for %s on http://%s:%d/", args.file, host, args.port)
    serve(app, host, args.port, args.header_timeout)
    return 0
