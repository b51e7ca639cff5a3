"""What every page of the dashboard shares: where it reads from and how it looks.

``create_app`` keeps one :class:`Site` on ``app.state.site``; the page modules read it from the
request, so routes are plain module-level functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from km3mon.web.layouts import DEFAULT_PAGES, Page

#: Seconds between two scans of the plots and freshness records for the live updates.
EVENT_POLL_S = 1.0


@dataclass(frozen=True)
class Site:
    """Where the dashboard reads from, and how it looks."""

    plot_dir: Path
    data_dir: Path
    log_dir: Path | None = None
    weblog_port: int | None = None
    supervisor_socket: Path | None = None
    pages: tuple[Page, ...] = DEFAULT_PAGES
    title: str = "km3mon"
    event_poll_s: float = EVENT_POLL_S
    #: Navigation links after the pages: (label, path).
    links: tuple[tuple[str, str], ...] = (("Logs", "/logs.html"), ("Status", "/status"))
    #: ``[Wall]``: pages the wall screen cycles through, seconds per page.
    wall_pages: tuple[str, ...] = ("index", "pmt", "ahrs", "trigger")
    wall_seconds: float = 30.0
    #: ``[Alerts] known_bad``: listed on /alerts with those set there.
    known_bad: tuple[str, ...] = ()
