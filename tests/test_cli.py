"""The CLI imports only the module of the command it runs: a ligier does not carry the
monitors' numba, scipy and matplotlib or the web server's Starlette (memory, start-up)."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable

from km3mon import registry
from tests.conftest import free_port, wait_for_port, wait_subscribed

HEAVY = ("numba", "scipy", "matplotlib", "starlette")
#: Runs a command through the CLI; at its exit prints the heavy packages it had imported.
PROBE = (
    "import atexit, sys\n"
    f"atexit.register(lambda: print('HEAVY', *sorted(set({HEAVY!r}) & set(sys.modules))))\n"
    "from km3mon.cli import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


def heavy_imports_of_running(*argv: object, ready: Callable[[], None]) -> list[str]:
    """The heavy packages a `km3mon` process imported while it ran: started, ``ready()``
    waits until it works, then it is stopped by SIGTERM."""
    process = subprocess.Popen(
        [sys.executable, "-c", PROBE, *map(str, argv)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        ready()
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
    lines = [line for line in output.splitlines() if line.startswith("HEAVY")]
    assert lines, f"no exit report; output: {output[-2000:]}"
    return lines[-1].split()[1:]


def test_a_running_ligier_imports_no_heavy_package() -> None:
    port = free_port()
    assert (
        heavy_imports_of_running(
            "ligier", "--host", "127.0.0.1", "-P", port, ready=lambda: wait_for_port(port)
        )
        == []
    )


def test_a_running_mirror_imports_no_heavy_package(ligier) -> None:
    target = free_port()
    target_ligier = subprocess.Popen(
        [sys.executable, "-m", "km3mon", "ligier", "--host", "127.0.0.1", "-P", str(target)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(target)
        heavy = heavy_imports_of_running(
            "ligiermirror", "-m", "IO_EVT", "-q", target, "-p", ligier.port, "127.0.0.1",
            ready=lambda: wait_subscribed(ligier.port, "IO_EVT"),
        )  # fmt: skip
    finally:
        target_ligier.terminate()
        target_ligier.wait(60)
    assert heavy == []


def test_the_list_of_commands_imports_no_command_module() -> None:
    """``km3mon --help`` lists every command from the registry alone."""
    probe = (
        "import sys\nfrom km3mon.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print(' '.join(sorted(m for m in sys.modules if m.startswith('km3mon.'))))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    assert all(f"    {name} " in result.stdout or f"    {name}\n" in result.stdout
               for name in registry.commands()), result.stdout  # fmt: skip
    imported = set(result.stdout.splitlines()[-1].split())
    modules = {command.module for command in registry.commands().values()}
    assert not imported & modules, f"km3mon --help imported {sorted(imported & modules)}"


def test_an_operation_on_a_missing_folder_says_so(tmp_path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "km3mon", "status", "--dir", str(tmp_path / "nope")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 1
    assert f"km3mon status: no folder {tmp_path / 'nope'}" in result.stderr, result.stderr
