"""Every long-running process stops on one SIGTERM, also while its ligier is gone.

supervisord sends one SIGTERM at `make stop` (then SIGKILL after its stopwaitsecs); a process
stuck in its reconnect loop would be killed instead of closing its files and writing its
"stopped" record.
"""

from __future__ import annotations

import km3net_testdata
import pytest

from tests.conftest import wait_until

ARCA21 = km3net_testdata.data_path("detx/KM3NeT_00000133_20221025.detx")
IO_SUM = km3net_testdata.data_path("daq/IO_SUM_legacy.dat")

#: name -> the command after ``km3mon`` ({port}: the ligier that goes away).
COMMANDS = {
    "simulate": ["simulate", "--detx", ARCA21, "-p", "{port}"],
    "replay": ["replay", "-p", "{port}", "--speed", "5", "--loop", "--no-progress", IO_SUM],
    "record": ["record", "-p", "{port}", "-m", "IO_SUM", "-o", "{tmp}/recording.ch"],
    "ligiermirror": ["ligiermirror", "-m", "IO_SUM", "-p", "{port}", "-q", "{port}",
                     "--data-dir", "{tmp}/data", "127.0.0.1"],
    "dom_rates": ["dom_rates", "--detx", ARCA21, "-p", "{port}", "--data-dir", "{tmp}/data",
                  "-o", "{tmp}/plots"],
    "msg_dumper": ["msg_dumper", "-p", "{port}", "-f", "{tmp}/MSG.log", "--data-dir",
                   "{tmp}/data"],
    "timesync": ["timesync", "--detx", ARCA21, "-p", "{port}", "-m", "127.0.0.1", "-q", "{port}",
                 "--data-dir", "{tmp}/data", "-o", "{tmp}/plots"],
}  # fmt: skip
#: How the ligier's status report shows the process once connected (else by its name).
CONNECTED_AS = {"simulate": "'simulator'", "ligiermirror": "subscription [w IO_SUM]"}


@pytest.mark.parametrize("name", COMMANDS)
def test_one_sigterm_stops_it_while_its_ligier_is_gone(name, start_ligier, spawn, tmp_path):
    ligier = start_ligier()
    args = [str(a).format(port=ligier.port, tmp=tmp_path) for a in COMMANDS[name]]
    process = spawn(*args)
    seen_as = CONNECTED_AS.get(name, f"'{name}'")
    wait_until(lambda: seen_as in _status(ligier.port), 60, f"{name} connected")
    ligier.process.stop()
    wait_until(lambda: "cannot connect" in process.log or "lost" in process.log, 60,
               f"{name} waiting for its ligier", show=lambda: process.log[-500:])  # fmt: skip
    process.popen.terminate()
    assert process.popen.wait(30) == 0, process.log[-2000:]


def _status(port: int) -> str:
    from km3mon.controlhost import query_status

    try:
        return query_status("127.0.0.1", port)
    except OSError:
        return ""
