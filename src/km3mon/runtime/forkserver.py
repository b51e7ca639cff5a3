"""The fork server: monitors start as forks of one process that has already imported numpy,
matplotlib and numba, so those modules' memory is shared between them (copy on write) instead
of being built again in each: about 30 MB less per monitor at the same work.

Own code, not ``multiprocessing.forkserver``: that one serves only the process that started
it, while here supervisord must still start, stop and watch every program by itself.

How a program runs through it (``KM3MON_FORKSERVER`` names the server's socket):

- supervisord starts ``km3mon <monitor> ...`` as always. That process (the *stand-in*)
  imports nothing heavy: it hands its arguments, working folder, environment and standard
  streams to the server and gets back a pidfd of the monitor the server forked for it.
- The stand-in passes every signal on to the monitor and exits with the monitor's exit code,
  so ``supervisorctl stop``, restarts and FATAL work as for any program. When the stand-in is
  killed (supervisord's SIGKILL after ``stopwaitsecs``), the monitor sees its connection close
  and stops too: no monitor outlives its program.
- Without a reachable server (not configured, not started or not answering within ``WAIT_S``,
  not Linux) the command runs in its stand-in's process, as it does outside supervisord.

The monitor is a child of the server, not of its stand-in: ``served_pid`` finds it from the
stand-in's pidfd (``/proc/<pid>/fdinfo``), for tools that add up a program's memory and CPU.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib
import json
import logging
import os
import select
import signal
import socket
import struct
import sys
import threading
import time
from pathlib import Path

from km3mon import registry
from km3mon.logs import setup_logging

ENV = registry.FORKSERVER_ENV
#: How long a stand-in waits for the server, to connect (it starts beside the monitors and
#: imports for a few seconds, more on a loaded machine) and then for its answer (a fork takes
#: milliseconds; the server reads one request at a time, each for at most 10 s), before it
#: runs its command itself. The environment variable ``WAIT_ENV`` sets another time.
WAIT_S = 60.0
WAIT_ENV = "KM3MON_FORKSERVER_WAIT_S"
#: A monitor whose stand-in is gone gets SIGTERM, then is ended for good after this long.
ORPHAN_GRACE_S = 10.0
#: Signals a stand-in passes on to its monitor.
FORWARDED = (
    signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2
)  # fmt: skip
#: Imported before any fork besides the served programs' own modules: the heavy modules they
#: import only when they first draw or fit.
HEAVY_MODULES = (
    "numpy",
    "matplotlib.pyplot",
    "matplotlib.backends.backend_agg",
    "matplotlib.dates",
    "numba",
)
_LENGTH = struct.Struct("!I")
_MAX_REQUEST = 1 << 20

log = logging.getLogger("km3mon.forkserver")


# -- the stand-in ------------------------------------------------------------------------------


def run_served(argv: list[str], socket_path: str) -> int | None:
    """Run ``argv`` (a `km3mon` command line) as a fork of the server at ``socket_path``.

    Returns its exit code, or None when no server took it: the caller runs it itself.
    """
    if not hasattr(os, "pidfd_open"):
        return None
    try:
        wait_s = float(os.environ.get(WAIT_ENV, WAIT_S))
    except ValueError:
        wait_s = WAIT_S
    connection = _connect(socket_path, wait_s)
    if connection is None:
        return None
    with connection:
        request = {"argv": argv, "cwd": os.getcwd(), "env": dict(os.environ)}
        connection.settimeout(wait_s)
        try:
            socket.send_fds(connection, [_framed(request)], [0, 1, 2])
            reply, fds, _, _ = socket.recv_fds(connection, 4096, 1)
        except OSError as error:  # a timeout included: a monitor forked late finds no one
            _say(f"fork server at {socket_path} failed ({error}): running in this process")
            return None
        if not reply.startswith(b"P") or len(fds) != 1:
            for fd in fds:
                os.close(fd)
            _say(f"fork server did not start {argv[0]} ({reply[1:].decode(errors='replace')}): "
                 "running in this process")  # fmt: skip
            return None
        connection.settimeout(None)
        return _stand_in(connection, fds[0])


def _connect(socket_path: str, wait_s: float) -> socket.socket | None:
    deadline = time.monotonic() + wait_s
    said = False
    while True:
        connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            connection.connect(socket_path)
            return connection
        except OSError as error:
            connection.close()
            if time.monotonic() > deadline:
                _say(f"no fork server at {socket_path} after {wait_s:.0f} s ({error}): "
                     "running in this process")  # fmt: skip
                return None
            if not said:
                _say(f"waiting for the fork server at {socket_path} ({error})")
                said = True
            time.sleep(0.2)


def _stand_in(connection: socket.socket, pidfd: int) -> int:
    """Pass signals on until the monitor ends; its exit code, or 1 if it sent none."""

    def forward(signum: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            signal.pidfd_send_signal(pidfd, signum)

    for signum in FORWARDED:
        signal.signal(signum, forward)
    code: int | None = None
    try:
        ended = False
        while not ended:
            readable, _, _ = select.select([connection, pidfd], [], [])
            if connection in readable:
                data = connection.recv(2)
                if data[:1] == b"X" and len(data) == 2:
                    code = data[1]
                ended = not data or code is not None
            ended = ended or pidfd in readable
        if code is None:  # the monitor ended first; its last word may still be on the way
            connection.settimeout(2.0)
            with contextlib.suppress(OSError):
                data = connection.recv(2)
                code = data[1] if data[:1] == b"X" and len(data) == 2 else None
    finally:
        os.close(pidfd)
    if code is None:
        _say("the monitor ended without an exit code (killed by a signal?)")
        return 1
    return code


def _say(text: str) -> None:
    """One line on stderr in the log format, without setting up logging in the stand-in."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
    print(f"{stamp} WARNING km3mon.forkserver: {text}", file=sys.stderr, flush=True)


def _framed(request: dict) -> bytes:
    body = json.dumps(request).encode()
    return _LENGTH.pack(len(body)) + body


def served_pid(stand_in_pid: int) -> int | None:
    """The pid of the monitor a stand-in holds a pidfd of, or None (not a stand-in, gone)."""
    fd_folder = Path(f"/proc/{stand_in_pid}/fd")
    try:
        entries = list(fd_folder.iterdir())
    except OSError:
        return None
    for entry in entries:
        try:
            if os.readlink(entry) != "anon_inode:[pidfd]":
                continue
            info = Path(f"/proc/{stand_in_pid}/fdinfo/{entry.name}").read_text()
        except OSError:
            continue
        for line in info.splitlines():
            if line.startswith("Pid:") and int(line.split()[1]) > 0:
                return int(line.split()[1])
    return None


# -- the server --------------------------------------------------------------------------------


def serve(socket_path: Path, modules: tuple[str, ...]) -> int:
    """Import ``modules``, then fork a monitor for every stand-in that connects."""
    setup_logging()
    started = time.perf_counter()
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as error:  # the monitor will import it itself, and say what fails
            log.warning("could not preload %s: %s", name, error)
    gc.collect()
    gc.freeze()  # the collector must not touch (and so copy) what the forks share
    listener = _listen(socket_path)
    took_s = time.perf_counter() - started
    log.warning("fork server ready at %s (pid %d, %d modules imported in %.1f s)",
                socket_path, os.getpid(), len(sys.modules), took_s)  # fmt: skip
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    served = refused = 0
    try:
        while not stop.is_set():
            _reap()
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            except InterruptedError:
                continue
            try:
                started_pid = _fork_for(connection, listener)
                served += 1
                log.warning("started %s as pid %d (%d served)", started_pid[0], started_pid[1],
                            served)  # fmt: skip
            except (OSError, ValueError) as error:
                refused += 1
                log.error("refused a request (%d so far): %s", refused, error)
                with contextlib.suppress(OSError):
                    connection.sendall(b"E" + str(error).encode()[:200])
            finally:
                connection.close()
    finally:
        listener.close()
        with contextlib.suppress(OSError):
            socket_path.unlink()
    log.warning("fork server stopped; the %d monitors it started run on", served)
    return 0


def _listen(socket_path: Path) -> socket.socket:
    socket_path.parent.mkdir(parents=True, exist_ok=True)
    if socket_path.is_socket():
        socket_path.unlink()  # a previous server's; a live one would still own its pid file
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_mask = os.umask(0o177)  # only this user may ask for a process: it runs as us
    try:
        listener.bind(str(socket_path))
    finally:
        os.umask(old_mask)
    listener.listen(32)
    listener.settimeout(1.0)
    return listener


def _reap() -> None:
    """Collect ended monitors (they are the server's children), so none stays a zombie."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _fork_for(connection: socket.socket, listener: socket.socket) -> tuple[str, int]:
    connection.settimeout(10.0)
    uid = struct.unpack("3i", connection.getsockopt(
        socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))[1]  # fmt: skip
    if uid != os.getuid():
        raise ValueError(f"a process of user {uid} asked; only {os.getuid()} may")
    data, fds, _, _ = socket.recv_fds(connection, 65536, 3)
    try:
        while len(data) >= _LENGTH.size and len(data) < _LENGTH.size + _LENGTH.unpack_from(data)[0]:
            if len(data) > _MAX_REQUEST:
                raise ValueError("request too large")
            more = connection.recv(65536)
            if not more:
                raise ValueError("request cut short")
            data += more
        if len(data) < _LENGTH.size or len(fds) != 3:
            raise ValueError(f"malformed request ({len(data)} bytes, {len(fds)} streams)")
        request = json.loads(data[_LENGTH.size :])
        if not isinstance(request, dict) or not {"argv", "cwd", "env"} <= request.keys():
            raise ValueError("no command line, folder and environment in the request")
        argv, cwd, env = request["argv"], request["cwd"], request["env"]
        if not (isinstance(argv, list) and argv and all(isinstance(a, str) for a in argv)):
            raise ValueError("malformed command line")
        if (
            not isinstance(cwd, str)
            or not isinstance(env, dict)
            or not all(isinstance(k, str) and isinstance(v, str) for k, v in env.items())
        ):
            raise ValueError("malformed folder or environment")
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                code = _become(argv, cwd, env, fds, connection, listener)
            finally:
                os._exit(code)
        return argv[0], pid
    finally:
        for fd in fds:
            os.close(fd)


def _become(
    argv: list[str],
    cwd: str,
    env: dict[str, str],
    fds: list[int],
    connection: socket.socket,
    listener: socket.socket,
) -> int:
    """In the fork: take the stand-in's streams, folder and environment, then run ``argv``."""
    listener.close()
    for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(signum, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    os.setsid()  # out of the server's process group: stopping the server stops no monitor
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
    for fd in fds:
        os.close(fd)
    _title(f"km3mon {' '.join(argv)} (forked)")  # before the environment changes: see _title
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    sys.argv = ["km3mon", *argv]
    logging.root.handlers.clear()  # the command sets up its own, on the stand-in's stderr
    if "numpy" in sys.modules:
        sys.modules["numpy"].random.seed()  # the legacy global generator was the server's
    connection.settimeout(None)
    try:
        pidfd = os.pidfd_open(os.getpid())
    except OSError as error:  # a kernel before 5.3: the stand-in runs the command itself
        connection.sendall(b"E" + f"no pidfd: {error}".encode())
        return 1
    socket.send_fds(connection, [b"P"], [pidfd])
    os.close(pidfd)
    threading.Thread(target=_end_with_stand_in, args=(connection,), daemon=True).start()
    from km3mon.commands import run

    try:
        code = run(argv)
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
        if isinstance(stop.code, str):
            print(stop.code, file=sys.stderr)
    except BaseException:
        logging.getLogger("km3mon").exception("%s ended with an error", argv[0])
        code = 1
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    code = code & 0xFF
    with contextlib.suppress(OSError):
        connection.sendall(b"X" + bytes([code]))
    return code


def _end_with_stand_in(connection: socket.socket) -> None:
    """Stop this monitor when its stand-in is gone (killed), as supervisord expects."""
    with contextlib.suppress(OSError):
        while connection.recv(64):
            pass
    logging.getLogger("km3mon.forkserver").warning(
        "the stand-in of this monitor is gone: stopping (ended for good in %.0f s)",
        ORPHAN_GRACE_S,
    )
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(ORPHAN_GRACE_S)
    os._exit(1)


def _title(title: str) -> None:
    """What ``ps`` and ``top`` show for this process: the program, not the server.

    setproctitle finds the memory it rewrites through the C environment, which must still be
    the one the process started with."""
    try:
        import setproctitle
    except ImportError:
        return
    setproctitle.setproctitle(title)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "forkserver",
        help="start monitors as forks sharing numpy, matplotlib and numba (less memory)",
        description=__doc__.split("\n\n")[0],
    )
    parser.add_argument(
        "--socket",
        type=Path,
        default=os.environ.get(ENV),
        help=f"its Unix socket (default: ${ENV})",
    )
    parser.set_defaults(
        func=lambda args: (
            serve(args.socket, registry.forked_modules() + HEAVY_MODULES)
            if args.socket
            else _no_socket()
        )
    )


def _no_socket() -> int:
    _say(f"no socket given: use --socket or set {ENV}")
    return 2
