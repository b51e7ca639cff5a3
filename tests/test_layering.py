"""Imports point downstream only: the transport, the formats, the detector and the freshness
record load nothing of the monitors or the web server."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

LOWER = ["km3mon.published", "km3mon.runtime.freshness", "km3mon.controlhost", "km3mon.controlhost.mirror", "km3mon.daq",
         "km3mon.detector", "km3mon.registry", "km3mon.logs"]  # fmt: skip


@pytest.mark.parametrize("module", LOWER)
def test_lower_layers_import_nothing_above_them(module: str) -> None:
    probe = (
        f"import sys, {module}; "
        "print(' '.join(m for m in sys.modules if m.startswith(('km3mon.monitors', 'km3mon.web'))))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "", f"{module} pulls in {result.stdout.strip()}"


#: The processes behind the dashboard: each runs without the web server's code.
BACKENDS = ["km3mon.runtime.monitor", "km3mon.monitors.reco", "km3mon.monitors.k40",
            "km3mon.monitors.sn", "km3mon.monitors.timesync", "km3mon.alerts.alerts",
            "km3mon.alerts.report", "km3mon.history.history", "km3mon.sim.simulator",
            "km3mon.reco", "km3mon.physics"]  # fmt: skip


@pytest.mark.parametrize("module", BACKENDS)
def test_backends_import_nothing_of_the_web_server(module: str) -> None:
    probe = (
        f"import sys, {module}; "
        "print(' '.join(m for m in sys.modules if m.startswith('km3mon.web')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "", f"{module} pulls in {result.stdout.strip()}"


def test_no_module_imports_the_cli_back() -> None:
    """The CLI imports the command modules; none of them imports it (function-level imports
    included): what they share, such as the log format, lives below them (km3mon.logs)."""
    source = Path(__file__).resolve().parents[1] / "src" / "km3mon"
    importers = []
    for path in sorted(source.rglob("*.py")):
        if path.name == "__main__.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = [node.module] if isinstance(node, ast.ImportFrom) else []
            names += [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            if "km3mon.cli" in names:
                importers.append(str(path.relative_to(source)))
    assert not importers, f"import km3mon.cli: {importers}"
