"""The fork server with real processes: a monitor forked for its stand-in, its streams and exit
code passed through, signals passed on, no monitor outliving its stand-in, garbage requests
refused while the server goes on, and a stand-in without a server running its command itself."""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
from collections.abc import Callable
from pathlib import Path

import km3net_testdata
import pytest

from km3mon.runtime.forkserver import ENV, ORPHAN_GRACE_S, WAIT_ENV, served_pid
from tests.conftest import Process, parent_of, read_json, running, wait_until

ARCA21 = km3net_testdata.data_path("detx/KM3NeT_00000133_20221025.detx")


@pytest.fixture
def server(spawn: Callable[..., Process], short_folder: Path) -> tuple[Process, Path]:
    socket_path = short_folder / "forkserver.sock"  # a Unix socket's path has 107 bytes at most
    process = spawn("forkserver", "--socket", socket_path)
    wait_until(lambda: "fork server ready" in process.log or not process.alive(), 180,
               "the fork server to import its modules and listen",
               show=lambda: process.log[-1000:])  # fmt: skip
    assert process.alive(), process.log
    return process, socket_path


def start_dom_rates(
    spawn, tmp_path: Path, port: int, socket_path: Path, wait_s: str | None = None
) -> Process:
    env = {ENV: str(socket_path)} | ({WAIT_ENV: wait_s} if wait_s else {})
    return spawn("dom_rates", "--detx", ARCA21, "-p", port, "-o", tmp_path / "plots",
                 "--data-dir", tmp_path / "data", "-i", "1", env=env)  # fmt: skip


def runs_in_its_own_process(stand_in: Process, tmp_path: Path) -> None:
    record = tmp_path / "data" / "freshness" / "dom_rates.json"
    wait_until(lambda: read_json(record).get("pid") == stand_in.popen.pid, 120,
               "dom_rates to run in the stand-in's own process",
               show=lambda: (read_json(record).get("pid"), stand_in.log[-1000:]))  # fmt: skip


def forked_monitor(stand_in: Process, tmp_path: Path) -> int:
    """The pid of the monitor serving ``stand_in``, once it publishes its record."""
    record = tmp_path / "data" / "freshness" / "dom_rates.json"

    def published() -> int | None:
        pid = served_pid(stand_in.popen.pid)
        return pid if pid is not None and read_json(record).get("pid") == pid else None

    wait_until(published, 120, "the forked dom_rates to publish its record",
               show=lambda: (served_pid(stand_in.popen.pid), read_json(record).get("pid"),
                             stand_in.log[-1000:]))  # fmt: skip
    pid = published()
    assert pid is not None
    return pid


def test_a_monitor_runs_as_a_fork_of_the_server_and_stops_with_its_stand_in(
    server, spawn, ligier, tmp_path
) -> None:
    process, socket_path = server
    stand_in = start_dom_rates(spawn, tmp_path, ligier.port, socket_path)
    monitor = forked_monitor(stand_in, tmp_path)
    assert monitor != stand_in.popen.pid
    assert parent_of(monitor) == process.popen.pid
    title = Path(f"/proc/{monitor}/cmdline").read_bytes().decode().rstrip("\0")
    assert title.startswith("km3mon dom_rates --detx") and title.endswith("(forked)")

    stand_in.popen.send_signal(signal.SIGTERM)  # what `supervisorctl stop` sends
    assert stand_in.popen.wait(60) == 0
    wait_until(lambda: not running(monitor), 30, "the monitor to end with its stand-in")
    # The monitor wrote on its stand-in's stdout: supervisord's log of the program.
    assert "dom_rates stopped after" in stand_in.log
    assert "started dom_rates as pid" in process.log


def test_no_monitor_outlives_its_stand_in_and_no_stand_in_its_monitor(
    server, spawn, ligier, tmp_path
) -> None:
    process, socket_path = server
    # supervisord's SIGKILL after stopwaitsecs: the monitor stops by itself.
    first = start_dom_rates(spawn, tmp_path, ligier.port, socket_path)
    monitor = forked_monitor(first, tmp_path)
    first.popen.kill()
    first.popen.wait()
    wait_until(lambda: not running(monitor), ORPHAN_GRACE_S + 60,
               "the monitor of a killed stand-in to end")  # fmt: skip
    # A monitor killed (or crashed): its stand-in ends with an error, for supervisord to
    # restart the program.
    second = start_dom_rates(spawn, tmp_path, ligier.port, socket_path)
    monitor = forked_monitor(second, tmp_path)
    os.kill(monitor, signal.SIGKILL)
    assert second.popen.wait(60) == 1
    assert "ended without an exit code" in second.log
    # A monitor that cannot start: its exit code and words reach the stand-in's caller.
    third = spawn("dom_rates", "--detx", tmp_path / "missing.detx", "-p", ligier.port,
                  "-o", tmp_path / "plots", "--data-dir", tmp_path / "data",
                  env={ENV: str(socket_path)})  # fmt: skip
    assert third.popen.wait(120) == 2
    assert "missing.detx" in third.log
    assert process.alive() and process.log.count("started dom_rates as pid") == 3


def _request(argv: object, **fields: object) -> bytes:
    body = json.dumps({"argv": argv, "cwd": "/", "env": {}, **fields}).encode()
    return struct.pack("!I", len(body)) + body


def _frame(value: object) -> bytes:
    body = json.dumps(value).encode()
    return struct.pack("!I", len(body)) + body


def test_the_server_refuses_garbage_and_goes_on_serving(server, spawn, ligier, tmp_path) -> None:
    process, socket_path = server
    attacks = [
        lambda s: None,  # connect and hang up
        lambda s: s.sendall(b"garbage, no frame"),
        lambda s: s.sendall(_request(["dom_rates"])),  # no streams passed
        lambda s: socket.send_fds(s, [_request("dom_rates")], [0, 1, 2]),  # argv not a list
        lambda s: socket.send_fds(s, [struct.pack("!I", 1 << 30) + b"{"], [0, 1, 2]),
        lambda s: socket.send_fds(s, [_frame(["dom_rates"])], [0, 1, 2]),  # JSON, no object
        lambda s: socket.send_fds(s, [_frame({"argv": ["dom_rates"]})], [0, 1, 2]),
        lambda s: socket.send_fds(s, [_request(["dom_rates"], env=[1])], [0, 1, 2]),
    ]
    for attack in attacks:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as attacker:
            attacker.connect(str(socket_path))
            attack(attacker)
            attacker.shutdown(socket.SHUT_WR)
            attacker.settimeout(60)
            reply = attacker.recv(300)
            assert reply.startswith(b"E") or reply == b"", reply
    wait_until(lambda: f"refused a request ({len(attacks)} so far)" in process.log, 60,
               "every garbage request refused", show=lambda: process.log[-2000:])  # fmt: skip
    assert "started" not in process.log.split("fork server ready")[1]
    stand_in = start_dom_rates(spawn, tmp_path, ligier.port, socket_path)
    assert parent_of(forked_monitor(stand_in, tmp_path)) == process.popen.pid


def test_without_a_server_the_command_runs_in_its_own_process(spawn, ligier, tmp_path) -> None:
    stand_in = start_dom_rates(spawn, tmp_path, ligier.port, tmp_path / "nobody.sock", "1")
    runs_in_its_own_process(stand_in, tmp_path)
    assert "running in this process" in stand_in.log


def test_a_server_that_never_answers_is_given_up(spawn, ligier, tmp_path, short_folder) -> None:
    """A hung server (here a socket that accepts and says nothing) costs a stand-in its wait,
    not its monitor: it then runs the command itself."""
    socket_path = short_folder / "mute.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as mute:
        mute.bind(str(socket_path))
        mute.listen(4)
        stand_in = start_dom_rates(spawn, tmp_path, ligier.port, socket_path, "2")
        runs_in_its_own_process(stand_in, tmp_path)
    assert "failed (timed out): running in this process" in stand_in.log
