"""Imports point downstream only: the transport, the formats, the detector and the freshness
record load nothing of the monitors or the web server; kernels and drawing load nothing of the
process framework; ``monitors/`` holds only programs."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from km3mon.registry import PROGRAMS

SOURCE = Path(__file__).resolve().parents[1] / "src" / "km3mon"

LOWER = ["km3mon.published", "km3mon.runtime.freshness", "km3mon.controlhost",
         "km3mon.controlhost.mirror", "km3mon.daq", "km3mon.detector", "km3mon.registry",
         "km3mon.logs"]  # fmt: skip


def imported_names(path: Path) -> list[str]:
    """Every module ``path`` imports, at any level (functions, TYPE_CHECKING blocks)."""
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
            names += [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
    return names


def importers_of(folders: list[str], forbidden: tuple[str, ...]) -> list[str]:
    found = []
    for folder in folders:
        for path in sorted((SOURCE / folder).rglob("*.py")):
            bad = [n for n in imported_names(path) if n.startswith(forbidden)]
            if bad:
                found.append(f"{path.relative_to(SOURCE)}: {sorted(set(bad))}")
    return found


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


def test_kernels_and_figures_import_nothing_of_the_processes() -> None:
    """physics/, reco/ and figures/ are pure: no runtime, monitors, web or alerts, not even in
    a function or a TYPE_CHECKING block."""
    forbidden = ("km3mon.runtime", "km3mon.monitors", "km3mon.web", "km3mon.alerts")
    assert importers_of(["physics", "reco", "figures"], forbidden) == []


@pytest.mark.parametrize("package", ["km3mon.physics", "km3mon.figures", "km3mon.reco"])
def test_kernels_and_figures_load_no_process_framework(package: str) -> None:
    """Transitively too: importing every module of the package loads no runtime module."""
    modules = sorted(
        f"{package}.{path.stem}"
        for path in (SOURCE / package.split(".")[1]).glob("*.py")
        if path.stem != "__init__"
    )
    probe = (
        f"import sys; import {', '.join(modules)}; "
        "print(' '.join(m for m in sys.modules if m.startswith(('km3mon.runtime', "
        "'km3mon.monitors', 'km3mon.web'))))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "", f"{package} pulls in {result.stdout.strip()}"


#: Monitors whose figures are drawn in figures/ (issue 24): no matplotlib of their own.
DRAWN_IN_FIGURES = ["reco", "k40", "sn", "timesync"]


@pytest.mark.parametrize("monitor", DRAWN_IN_FIGURES)
def test_monitors_draw_through_figures(monitor: str) -> None:
    """Their drawing stays in figures/: the monitor module imports nothing of matplotlib."""
    names = imported_names(SOURCE / "monitors" / f"{monitor}.py")
    assert [n for n in names if n.startswith("matplotlib")] == []


def test_monitors_holds_only_programs() -> None:
    """Every module in monitors/ is the module of a program in the registry."""
    programs = {p.module for p in PROGRAMS}
    modules = {
        f"km3mon.monitors.{path.stem}"
        for path in (SOURCE / "monitors").glob("*.py")
        if path.stem != "__init__"
    }
    assert sorted(modules - programs) == []


def test_no_module_imports_the_cli_back() -> None:
    """The CLI imports the command modules; none of them imports it (function-level imports
    included): what they share, such as the log format, lives below them (km3mon.logs)."""
    importers = []
    for path in sorted(SOURCE.rglob("*.py")):
        if path.name == "__main__.py":
            continue
        if "km3mon.cli" in imported_names(path):
            importers.append(str(path.relative_to(SOURCE)))
    assert not importers, f"import km3mon.cli: {importers}"
