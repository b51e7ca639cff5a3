"""What the bench scripts share: how a script's results are written for BENCHMARKS.md.

The scripts run as ``python bench/<script>.py``, so this folder is on ``sys.path`` and they
import this module by its bare name.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def write_json(path: Path, document: object, default: Callable[[Any], Any] | None = None) -> None:
    """``document`` as indented JSON at ``path``, its folder created."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=1, default=default))


def write_results(args: argparse.Namespace, results: object) -> None:
    """The results with the arguments that produced them, to ``--json`` when it was given."""
    if args.json:
        write_json(args.json, {"args": vars(args) | {"json": str(args.json)}, "results": results})


def wait_for_http(url: str, tries: int = 100, pause_s: float = 0.1) -> None:
    """Return once ``url`` answers at all (any status): the server is listening."""
    import httpx  # only the web benchmarks need it

    for _ in range(tries):
        try:
            httpx.get(url, timeout=0.5)
            return
        except httpx.TransportError:
            time.sleep(pause_s)
