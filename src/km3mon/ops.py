"""Running the suite the way operators do: supervisord in a working folder.

``km3mon start`` checks what would otherwise fail late and obscurely (setenv.sh not sourced,
no supervisord.conf, no DETX, ports taken, already running), then starts supervisord with
the folder's ``supervisord.conf``; ``km3mon stop`` shuts it and every child down and waits
until they are gone; ``km3mon status`` is ``supervisorctl status``. The Makefile's
``start``/``stop``/``status`` call these.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

#: What setenv.sh must export (``setenv_template.sh`` sets each one).
REQUIRED = (
    "DETECTOR_ID",
    "DAQ_LIGIER_IP",
    "DAQ_LIGIER_PORT",
    "TAGS_TO_MIRROR",
    "LOG_LIGIER_IP",
    "LOG_LIGIER_PORT",
    "LIGIER_CMD",
    "MONITORING_LIGIER_PORT",
    "DETECTOR_MANAGER_IP",
    "WEBSERVER_PORT",
    "LOGGING_PORT",
)
LISTENING = ("MONITORING_LIGIER_PORT", "WEBSERVER_PORT", "LOGGING_PORT")
FOLDERS = ("logs", "pids", "plots", "data")
#: Longest path of a Unix socket (``sun_path`` holds 108 bytes with the final NUL).
MAX_SOCKET_PATH = 107


class OperationError(Exception):
    """Something the operator has to fix first; the message says what."""


def bin_dir() -> Path:
    """Where ``km3mon`` and ``supervisord`` of this installation live."""
    return Path(sys.executable).parent


def port_in_use(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("0.0.0.0", port))
        except OSError:
            return True
    return False


def supervisord_pid(folder: Path) -> int | None:
    """The pid of this folder's supervisord if it runs."""
    try:
        pid = int((folder / "pids" / "supervisord.pid").read_text())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def check(folder: Path, environ: Mapping[str, str]) -> None:
    """Everything ``start`` needs, or an OperationError saying what to do."""
    missing = [name for name in REQUIRED if not environ.get(name)]
    if missing:
        raise OperationError(
            f"{', '.join(missing)} not set: copy setenv_template.sh to setenv.sh, edit it, "
            "then `source setenv.sh` before `make start`"
        )
    if not (folder / "supervisord.conf").is_file():
        raise OperationError(
            f"no supervisord.conf in {folder}: `cp supervisord_template.conf supervisord.conf` "
            "(and adjust it if needed)"
        )
    detx = environ.get("DETX", "")
    if detx and not Path(folder, detx).is_file():
        raise OperationError(f"DETX={detx} does not exist (seen from {folder})")
    if not detx and not any(k.startswith("KM3NET_DB_") for k in environ):
        raise OperationError(
            "no DETX and no KM3NeT database credentials: set DETX in setenv.sh to a DETX file, "
            "or KM3NET_DB_COOKIE (or KM3NET_DB_USERNAME/PASSWORD) to use the database"
        )
    if supervisord_pid(folder) is not None:
        raise OperationError(f"already running in {folder}: `make status` or `make stop`")
    socket_path = folder.resolve() / "pids" / "supervisor.sock"
    if len(os.fsencode(socket_path)) > MAX_SOCKET_PATH:
        raise OperationError(
            f"{folder} is too deep for supervisord's control socket {socket_path} "
            f"({len(os.fsencode(socket_path))} bytes, Linux allows {MAX_SOCKET_PATH}): "
            "use a working folder with a shorter path"
        )
    for name in LISTENING:
        port = int(environ[name])
        if port_in_use(port):
            raise OperationError(
                f"port {port} ({name}) is already in use: pick another in setenv.sh"
            )


def start(folder: Path, environ: Mapping[str, str] | None = None) -> None:
    environ = dict(os.environ if environ is None else environ)
    check(folder, environ)
    for name in FOLDERS:
        (folder / name).mkdir(exist_ok=True)
    environ["PATH"] = f"{bin_dir()}{os.pathsep}{environ.get('PATH', '')}"
    result = subprocess.run(
        [str(bin_dir() / "supervisord"), "-c", "supervisord.conf"],
        cwd=folder, env=environ, capture_output=True, text=True,
    )  # fmt: skip
    if result.returncode != 0:
        raise OperationError(f"supervisord did not start: {result.stderr.strip() or result.stdout}")
    deadline = time.monotonic() + 15
    while not (folder / "pids" / "supervisor.sock").exists():
        if time.monotonic() > deadline:
            raise OperationError(f"supervisord did not come up; see {folder}/logs/supervisord.log")
        time.sleep(0.1)


def supervisorctl(folder: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(bin_dir() / "supervisorctl"), "-c", "supervisord.conf", *args],
        cwd=folder, capture_output=True, text=True,
    )  # fmt: skip


def stop(folder: Path, timeout_s: float = 60.0) -> None:
    """Shut supervisord and all its children down; return when they are gone."""
    pid = supervisord_pid(folder)
    if pid is None:
        return
    supervisorctl(folder, "shutdown")
    deadline = time.monotonic() + timeout_s
    while supervisord_pid(folder) is not None:
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            raise OperationError(f"supervisord (pid {pid}) did not stop in {timeout_s:g} s; killed")
        time.sleep(0.1)


def register(subparsers: argparse._SubParsersAction) -> None:
    for name, helptext in (
        ("start", "check the setup, then start supervisord with ./supervisord.conf"),
        ("stop", "stop supervisord and every monitoring process"),
        ("status", "supervisorctl status"),
    ):
        parser = subparsers.add_parser(name, help=helptext, description=helptext)
        parser.add_argument("--dir", type=Path, default=Path("."), help="working folder (.)")
        parser.set_defaults(func=run, action=name)


def run(args: argparse.Namespace) -> int:
    folder = args.dir.resolve()
    if not folder.is_dir():
        print(f"km3mon {args.action}: no folder {folder}", file=sys.stderr)
        return 1
    try:
        if args.action == "start":
            start(folder)
            print(f"km3mon started in {folder}; `make status` lists the processes")
        elif args.action == "stop":
            stop(folder)
            print("km3mon stopped")
        else:
            result = supervisorctl(folder, "status")
            print(result.stdout, end="")
            return 0 if supervisord_pid(folder) else 1
    except OperationError as error:
        print(f"km3mon {args.action}: {error}", file=sys.stderr)
        return 1
    return 0
