"""`km3mon webserver`: the dashboard on uvicorn, reading ``plots/``, ``data/`` and
``pipeline.toml`` from its working folder like the original.

With ``[WebServer] username/password`` set every route needs them; without, the server binds
to 127.0.0.1 only (unless ``--host`` is given explicitly) and says so.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from km3mon.config import WebServerSection

log = logging.getLogger("km3mon.webserver")
#: Seconds a client has to send a complete request head (see ``km3mon.web.guard``).
HEADER_TIMEOUT_S = 10.0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "webserver",
        help="the dashboard: pages of plots, status, JSON API, Prometheus metrics",
        description="Serve the dashboard from plots/ and data/ of the working folder.",
    )
    parser.add_argument("-p", "--port", type=int, default=8081, help="port (8081)")
    parser.add_argument("--host", help="address (default 0.0.0.0 with auth, else 127.0.0.1)")
    parser.add_argument("--plots", type=Path, default=Path("plots"), help="plot folder")
    parser.add_argument("--data", type=Path, default=Path("data"), help="data folder")
    parser.add_argument("--logs", type=Path, default=Path("logs"), help="DAQ log folder")
    parser.add_argument(
        "--weblog-port", type=int, help="port of `km3mon weblog`, linked from the logs page"
    )
    parser.add_argument(
        "--supervisor-socket",
        type=Path,
        default=Path("pids/supervisor.sock"),
        help="supervisord's control socket, for process states (pids/supervisor.sock)",
    )
    parser.add_argument("--pipeline", help="pipeline.toml (default: ./pipeline.toml if present)")
    add_guard_arguments(parser)
    parser.set_defaults(func=run)


def add_guard_arguments(parser: argparse.ArgumentParser) -> None:
    """``--header-timeout`` (see ``km3mon.web.guard``)."""
    parser.add_argument(
        "--header-timeout",
        type=float,
        default=HEADER_TIMEOUT_S,
        help=f"seconds a client has to send a request head ({HEADER_TIMEOUT_S:g})",
    )


def credentials_and_host(
    settings: WebServerSection, host: str | None, logger: logging.Logger
) -> tuple[str | None, str | None, str]:
    """``[WebServer]`` credentials and the address to bind: loopback only when there are none."""
    username = settings.username
    password = settings.password.reveal() if settings.password else None
    protected = bool(username and password)
    address = host or ("0.0.0.0" if protected else "127.0.0.1")
    if not protected:
        logger.warning(
            "no [WebServer] username/password in pipeline.toml: OPEN to anyone who can reach %s%s",
            address,
            "" if host else " (loopback only; give --host to change that)",
        )
    return username, password, address


def run(args: argparse.Namespace) -> int:
    from km3mon.config import ConfigError, load_pipeline
    from km3mon.logs import setup_logging
    from km3mon.web.app import create_app
    from km3mon.web.guard import serve
    from km3mon.web.layouts import configured_pages
    from km3mon.web.site import Site

    setup_logging()
    try:
        pipeline = load_pipeline(args.pipeline)
    except ConfigError as error:
        log.error("cannot start: %s", error)
        return 2
    username, password, host = credentials_and_host(pipeline.web_server, args.host, log)
    site = Site(
        plot_dir=args.plots,
        data_dir=args.data,
        log_dir=args.logs,
        weblog_port=args.weblog_port,
        pages=configured_pages(pipeline.layouts),
        supervisor_socket=args.supervisor_socket,
        wall_pages=pipeline.wall.pages,
        wall_seconds=pipeline.wall.seconds,
        known_bad=pipeline.alerts.known_bad,
    )
    app = create_app(site, username=username, password=password)
    log.warning("dashboard on http://%s:%d/", host, args.port)
    serve(app, host, args.port, args.header_timeout)
    return 0
