"""Process states from supervisord's XML-RPC interface (its control socket in ``pids/``).

Read by the dashboard, the alerts and the benchmarks alike, so it lives below them.
"""

from __future__ import annotations

import xmlrpc.client
from pathlib import Path
from typing import Any


def supervisor_states(socket_path: Path | None) -> dict[str, dict[str, Any]] | None:
    """``{program: {"group", "state", "description", "pid"}}``, or None without supervisord.

    ``pid`` is 0 for a program that does not run.
    """
    if socket_path is None or not socket_path.exists():
        return None
    from supervisor.xmlrpc import SupervisorTransport

    transport = SupervisorTransport(None, None, f"unix://{socket_path}")
    proxy = xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)
    try:
        infos = proxy.supervisor.getAllProcessInfo()
    except (OSError, xmlrpc.client.Error):
        return None
    return {
        info["name"]: {
            "group": info["group"],
            "state": info["statename"],
            "description": info["description"],
            "pid": info["pid"],
        }
        for info in infos
    }
