"""Shared fixtures: real processes on free loopback ports."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import settings

# Per-example deadlines flake on a loaded 2-core CI machine; hangs are caught by pytest-timeout.
settings.register_profile("km3mon", deadline=None)
settings.load_profile("km3mon")

REPO = Path(__file__).resolve().parent.parent
KM3MON = [sys.executable, "-m", "km3mon"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


#: Starting a `km3mon` process takes well under a second alone, several under load: a minute
#: is for a hang only.
START_TIMEOUT_S = 60.0
#: ``simulate --max-lag`` for tests that need every simulated timeslice: on a loaded machine
#: the simulator falls behind the clock and catches up, instead of leaving timeslices out
#: as the DAQ would (a fault scenario's timeslices among them).
NEVER_LEAVE_OUT_S = 1e6


class QuietClock:
    """Seconds as a quiet machine would have had them: wall time divided by how
    oversubscribed the machine is (load average per core, at least 1). A deadline counted on
    it stretches while other work shares the cores, so that only a hang misses it."""

    def __init__(self) -> None:
        self.started = self._at = time.monotonic()
        self.seconds = 0.0
        self.worst_load = 0.0

    def tick(self) -> float:
        now = time.monotonic()
        load = os.getloadavg()[0] / (os.cpu_count() or 1)
        self.worst_load = max(self.worst_load, load)
        self.seconds += (now - self._at) / max(1.0, load)
        self._at = now
        return self.seconds

    def describe(self) -> str:
        wall_s = time.monotonic() - self.started
        return f"{wall_s:.0f} s of wall time, load average up to {self.worst_load:.1f} per core"


def wait_for_port(
    port: int, timeout_s: float = START_TIMEOUT_S, process: Process | None = None
) -> None:
    """Wait until something accepts connections on ``port``; with ``process``, fail at once
    (with its log) if it ended instead. ``timeout_s`` counts on a :class:`QuietClock`."""
    clock = QuietClock()
    last_error: OSError | None = None
    while clock.tick() < timeout_s:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError as error:
            last_error = error
        if process is not None and not process.alive():
            raise RuntimeError(
                f"{' '.join(process.args)} ended with {process.popen.returncode} before "
                f"listening on {port}; its log ends: {process.log[-2000:]}"
            )
        time.sleep(0.02)
    raise TimeoutError(
        f"nothing listens on 127.0.0.1:{port} after {timeout_s} s ({clock.describe()}); "
        f"last seen: {last_error!r}"
    )


def wait_until(
    condition: Callable[[], object],
    timeout_s: float = START_TIMEOUT_S,
    what: str = "",
    show: Callable[[], object] | None = None,
) -> None:
    """Poll ``condition`` for ``timeout_s`` on a :class:`QuietClock`; on timeout say what was
    awaited and what was seen last (``show``'s answer, else the condition's last value)."""
    clock = QuietClock()
    last: object = None
    while clock.tick() < timeout_s:
        last = condition()
        if last:
            return
        time.sleep(0.02)
    seen = show() if show is not None else last
    raise TimeoutError(
        f"timed out after {timeout_s} s ({clock.describe()}) waiting for {what or condition}; "
        f"last seen: {seen!r}"
    )


def wait_while_progressing(
    condition: Callable[[], object],
    progress: Callable[[], object],
    stall_s: float,
    what: str = "",
    show: Callable[[], object] | None = None,
) -> None:
    """Poll ``condition`` for as long as ``progress`` (read after it) keeps changing: fail
    only when nothing moved for ``stall_s`` (on a :class:`QuietClock`), so a slow machine
    waits and a hang fails."""
    clock, last = QuietClock(), None
    while not condition():
        if (now := progress()) != last:
            clock, last = QuietClock(), now
        elif clock.tick() > stall_s:
            seen = f"; last seen: {show()!r}" if show is not None else ""
            raise TimeoutError(
                f"nothing moved for {stall_s} s ({clock.describe()}) waiting for {what}{seen}"
            )
        time.sleep(0.5)


def subscribers(port: int) -> list[tuple[str | None, dict[str, str]]]:
    """The clients of our ligier on ``port`` from its own status report (``_ShowSta``): each
    client's nickname (None without ``_MyId``) and subscription, tag -> mode (``w``/``a``)."""
    from km3mon.controlhost import query_status

    report = query_status("127.0.0.1", port)
    clients = []
    for line in report.split("Active clients:", 1)[-1].splitlines():
        subscription = re.search(r"subscription \[([^\]]*)\]", line)
        if subscription is None:
            continue
        name = re.search(r" '([^']*)' since ", line)
        tokens = subscription.group(1).split()
        clients.append(
            (name.group(1) if name else None, dict(zip(tokens[1::2], tokens[::2], strict=True)))
        )
    return clients


def wait_subscribed(
    port: int,
    tags: str | list[str] | tuple[str, ...] | None = None,
    *,
    name: str | None = None,
    count: int = 1,
    timeout_s: float = 60.0,
) -> None:
    """Wait until the ligier on ``port`` itself reports ``count`` clients (named ``name``, if
    given) subscribed to every tag of ``tags``: only then does a message published to them
    reach them. An open socket, or a freshness record saying ``connected``, is not enough.
    Without ``tags``: subscribed to anything (a monitor, whose tags the caller need not know)."""
    wanted = [tags] if isinstance(tags, str) else list(tags or ())
    wanted = [tag.strip() for item in wanted for tag in item.split(",") if tag.strip()]

    def ready() -> int:
        return sum(
            1
            for client, subscription in subscribers(port)
            if (name is None or client == name)
            and subscription
            and all(tag in subscription for tag in wanted)
        )

    what = f"{count} client(s){f' named {name}' if name else ''} subscribed to {wanted}"
    wait_until(lambda: ready() >= count, timeout_s, what, show=lambda: subscribers(port))


def parent_of(pid: int) -> int | None:
    """The parent's pid, or None when ``pid`` is gone."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def running(pid: int) -> bool:
    """Alive and not a zombie waiting to be collected."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def read_json(path: Path) -> dict:
    """A JSON file a process writes (atomically); {} while it does not exist yet."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


class Process:
    """A km3mon subcommand running as a real process, its log in a file."""

    def __init__(self, args: list[str], log_path: Path, env: dict[str, str] | None = None) -> None:
        self.args = args
        self.log_path = log_path
        self._log = log_path.open("ab")
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.popen = subprocess.Popen(
            [*KM3MON, *args], stdout=self._log, stderr=subprocess.STDOUT, env=env
        )

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout_s: float = 10.0) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self._log.close()
        return self.popen.returncode


@pytest.fixture(autouse=True)
def close_figures() -> Iterator[None]:
    """Close the pyplot figures a test drew, as the monitors' runtime does once it has saved
    them: dozens left open in one worker only make matplotlib warn about memory."""
    yield
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is not None:
        pyplot.close("all")


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., Process]]:
    """Start ``km3mon <args>`` (``env``: variables added to the environment); every process
    is stopped at the end of the test."""
    processes: list[Process] = []

    def start(*args: str, name: str | None = None, env: dict[str, str] | None = None) -> Process:
        log_path = tmp_path / f"{name or args[0]}-{len(processes)}.log"
        process = Process([str(a) for a in args], log_path, env)
        processes.append(process)
        return process

    yield start
    for process in processes:
        process.stop()


@pytest.fixture
def short_folder() -> Iterator[Path]:
    """A working folder with a short path (pytest's, with a worker's name in it, can be too
    long for supervisord's control socket): an operator's folder such as /home/km3net/mon."""
    folder = Path(tempfile.mkdtemp(prefix="km3mon-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


class Ligier:
    def __init__(self, process: Process, port: int) -> None:
        self.process = process
        self.port = port

    @property
    def log(self) -> str:
        return self.process.log


@pytest.fixture
def start_ligier(spawn: Callable[..., Process]) -> Callable[..., Ligier]:
    def start(*extra: str, port: int | None = None) -> Ligier:
        port = port or free_port()
        process = spawn("ligier", "-P", port, "--host", "127.0.0.1", "-d", "1", *extra)
        wait_for_port(port, process=process)
        return Ligier(process, port)

    return start


@pytest.fixture
def ligier(start_ligier: Callable[..., Ligier]) -> Ligier:
    return start_ligier()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Files with tests marked ``slow`` (end-to-end runs of minutes) first, the rest in their
    order: ``make test``'s workers take whole files in collection order
    (``--no-loadscope-reorder``; xdist's default puts files with few tests last, and a
    one-test file of three minutes taken last left the other workers idle)."""
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_files)


#: The words of ``needs_chromium``'s skip reason (tests/web/conftest.py) that mark a browser test.
BROWSER_SKIP = "chromium and chromium-driver are not installed"


def pytest_unconfigure(config: pytest.Config) -> None:
    """One clear line after everything else when the browser tests were skipped: pytest's own
    skip summary is easy to miss, and `make test` still exits 0."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None:
        return
    skipped = [
        report
        for report in reporter.stats.get("skipped", [])
        if BROWSER_SKIP in str(getattr(report, "longrepr", ""))
    ]
    if skipped:
        reporter.write_line(
            f"{len(skipped)} browser tests SKIPPED: chromium is not installed; "
            "install it with `sudo apt-get install chromium chromium-driver`",
            yellow=True,
            bold=True,
        )
