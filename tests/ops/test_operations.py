"""Operating the suite as operators do: templates, make start / status / stop, make demo."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import km3net_testdata
import pytest

from tests.conftest import (
    KM3MON,
    REPO,
    free_port,
    parent_of,
    read_json,
    running,
    wait_for_port,
    wait_until,
)

ARCA21 = km3net_testdata.data_path("detx/KM3NeT_00000133_20221025.detx")
OVERVIEW = ("dom_activity", "dom_rates", "pmt_rates_du5", "trigger_rates", "ztplot", "triggermap")
PROGRAMS = ("ligiers:monitoring_ligier", "ligiers:ligiermirror", "logging:msg_dumper",
            "logging:weblog", "monitoring_process:dom_rates", "monitoring_process:ztplot",
            "webserver", "forkserver")  # fmt: skip


def make(*args: str, env: dict[str, str], timeout_s: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "-s", "-C", str(REPO), *args], env=env, capture_output=True,
                          text=True, timeout=timeout_s)  # fmt: skip


def setenv(ports: dict[str, int]) -> dict[str, str]:
    """What `source setenv.sh` gives, for a setup on this machine."""
    return {
        "DETECTOR_ID": "133",
        "DAQ_LIGIER_IP": "127.0.0.1",
        "DAQ_LIGIER_PORT": str(ports["daq"]),
        "TAGS_TO_MIRROR": "IO_EVT, IO_SUM, IO_MONIT",
        "LOG_LIGIER_IP": "127.0.0.1",
        "LOG_LIGIER_PORT": str(ports["log"]),
        "LIGIER_CMD": "km3mon ligier --host 127.0.0.1",
        "MONITORING_LIGIER_PORT": str(ports["monitoring"]),
        "DETECTOR_MANAGER_IP": f"127.0.0.1:{ports['dm']}",
        "WEBSERVER_PORT": str(ports["web"]),
        "LOGGING_PORT": str(ports["logging"]),
        "DETX": ARCA21,
        "ROYFIT_TIMERES": "data/time_residuals.csv",
    }


def processes_in(folder: Path) -> list[int]:
    """Pids of processes whose working folder is ``folder`` (supervisord and its children)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if Path(os.readlink(entry / "cwd")) == folder:
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def fresh(folder: Path, name: str) -> bool:
    for record_path in (folder / "data" / "freshness").glob("*.json"):
        try:
            output = json.loads(record_path.read_text())["outputs"].get(f"{name}.png")
        except (OSError, ValueError, KeyError):
            continue
        if output and not output["stale"] and time.time() - output["rendered_at"] < 120:
            return True
    return False


def program_pid(folder: Path, program: str) -> int | None:
    result = subprocess.run([str(Path(sys.executable).parent / "supervisorctl"), "pid", program],
                            cwd=folder, capture_output=True, text=True)  # fmt: skip
    return int(result.stdout) if result.stdout.strip().isdigit() and int(result.stdout) else None


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_make_start_status_restart_and_stop(spawn, short_folder: Path) -> None:
    folder = short_folder / "shore_station"
    folder.mkdir()
    shutil.copy(REPO / "supervisord_template.conf", folder / "supervisord.conf")
    (folder / "pipeline.toml").write_text(
        '[WebServer]\nusername = "op"\npassword = "pw"\n[PMTRates]\ninterval = 5\n'
        "[TriggerRate]\ninterval = 10\n"
    )
    ports = {name: free_port() for name in ("daq", "log", "monitoring", "web", "logging", "dm")}
    # The shore station: a DAQ ligier fed by the simulator, a log ligier, the Detector Manager.
    for name in ("daq", "log"):
        spawn("ligier", "-P", ports[name], "--host", "127.0.0.1", name=f"{name}_ligier")
        wait_for_port(ports[name])
    spawn("simulate", "--detx", ARCA21, "-p", ports["daq"], "--log-port", ports["log"])
    spawn("detector-manager", "--detx", ARCA21, "-p", ports["dm"])
    env = {**os.environ, **setenv(ports), "WORKDIR": str(folder)}
    try:
        result = make("start", env=env)
        assert result.returncode == 0, result.stderr
        assert "started" in result.stdout
        again = make("start", env=env)
        assert again.returncode != 0 and "already running" in again.stderr

        def status() -> str:
            return make("status", env=env).stdout

        def all_running() -> bool:
            lines = {line.split()[0]: line.split()[1] for line in status().splitlines() if line}
            return all(lines.get(program) == "RUNNING" for program in PROGRAMS)

        def stale_overview() -> list[str]:
            return [name for name in OVERVIEW if not fresh(folder, name)]

        wait_until(all_running, 60, "every program RUNNING", show=status)
        wait_until(lambda: not stale_overview(), 150, "fresh overview plots", show=stale_overview)
        base = f"http://127.0.0.1:{ports['web']}"
        assert httpx.get(f"{base}/", timeout=10).status_code == 401
        page = httpx.get(f"{base}/", auth=("op", "pw"), timeout=10).text
        for name in OVERVIEW:
            assert f'data-plot="{name}"' in page
            response = httpx.get(f"{base}/plots/{name}.png", auth=("op", "pw"), timeout=10)
            assert response.status_code == 200 and response.content[:4] == b"\x89PNG"

        processes = httpx.get(f"{base}/api/status", auth=("op", "pw"), timeout=10).json()
        processes = processes["processes"]
        assert processes["dom_rates"]["supervisor"]["state"] == "RUNNING"
        assert processes["dom_rates"]["state"] == "running"
        assert processes["monitoring_ligier"]["supervisor"]["state"] == "RUNNING"
        status_page = httpx.get(f"{base}/status", auth=("op", "pw"), timeout=10).text
        assert "RUNNING" in status_page and "ligiermirror" in status_page

        # dom_rates runs as a fork of the fork server; supervisord watches its stand-in.
        record_path = folder / "data" / "freshness" / "dom_rates.json"
        forked = read_json(record_path)["pid"]
        assert parent_of(forked) == program_pid(folder, "forkserver")
        assert forked != program_pid(folder, "monitoring_process:dom_rates")
        # Killed, the stand-in takes its monitor with it and supervisord restarts both;
        # killed, the monitor takes its stand-in with it, and the same happens.
        for victim_is_the_stand_in in (True, False):
            stand_in = program_pid(folder, "monitoring_process:dom_rates")
            victim = stand_in if victim_is_the_stand_in else forked
            assert victim is not None
            os.kill(victim, signal.SIGKILL)
            killed_at = time.time()

            def restarted(stand_in: int | None = stand_in) -> bool:
                return program_pid(folder, "monitoring_process:dom_rates") not in (None, stand_in)

            def redrawn(killed_at: float = killed_at) -> bool:
                output = read_json(record_path).get("outputs", {}).get("dom_rates.png")
                return output is not None and output["rendered_at"] > killed_at  # a new process

            wait_until(restarted, 90, "supervisord to restart dom_rates", show=status)
            wait_until(redrawn, 90, "dom_rates fresh again", show=lambda: read_json(record_path))
            wait_until(lambda forked=forked: not running(forked), 60,
                       "the killed dom_rates' monitor to be gone")  # fmt: skip
            forked = read_json(record_path)["pid"]
            assert parent_of(forked) == program_pid(folder, "forkserver")
    finally:
        stopped = make("stop", env=env)
    assert stopped.returncode == 0, stopped.stderr
    wait_until(lambda: not processes_in(folder), timeout_s=60, what="no process of ours left",
               show=lambda: processes_in(folder))  # fmt: skip


def test_start_refuses_what_would_fail_later(tmp_path: Path) -> None:
    folder = tmp_path / "setup"
    folder.mkdir()
    base_env = {k: v for k, v in os.environ.items() if k not in ("DETECTOR_ID", "DETX")}

    def start(env: dict[str, str]) -> subprocess.CompletedProcess:
        return subprocess.run([*KM3MON, "start", "--dir", str(folder)], env=env,
                              capture_output=True, text=True, timeout=60)  # fmt: skip

    result = start(base_env)
    assert result.returncode == 1 and "source setenv.sh" in result.stderr
    ports = {name: free_port() for name in ("daq", "log", "monitoring", "web", "logging", "dm")}
    env = {**base_env, **setenv(ports)}
    result = start(env)
    assert (
        result.returncode == 1 and "cp supervisord_template.conf supervisord.conf" in result.stderr
    )
    shutil.copy(REPO / "supervisord_template.conf", folder / "supervisord.conf")
    result = start({**env, "DETX": "missing.detx"})
    assert result.returncode == 1 and "DETX=missing.detx does not exist" in result.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", ports["web"]))
        taken.listen()
        result = start(env)
    assert result.returncode == 1
    assert f"port {ports['web']} (WEBSERVER_PORT) is already in use" in result.stderr
    assert not processes_in(folder)
    deep = tmp_path / ("d" * 40) / ("e" * 40)
    deep.mkdir(parents=True)
    shutil.copy(REPO / "supervisord_template.conf", deep / "supervisord.conf")
    result = subprocess.run([*KM3MON, "start", "--dir", str(deep)], env=env,
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 1 and "too deep for supervisord's control socket" in result.stderr


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_make_demo_reaches_a_served_fresh_overview(short_folder: Path) -> None:
    folder = short_folder / "demo"
    result = subprocess.run(
        ["make", "-s", "-C", str(REPO), "demo", f"DEMO_ARGS=--dir {folder} --check"],
        capture_output=True, text=True, timeout=400,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "dashboard: http://127.0.0.1:" in result.stdout and "password" in result.stdout
    assert "all overview plots are there after" in result.stdout  # then --check stops it
    assert not processes_in(folder)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_demo_on_a_recording_instead_of_the_simulator(
    ligier, spawn, tmp_path: Path, short_folder: Path
) -> None:
    recording = tmp_path / "arca21.ch"
    simulator = spawn("simulate", "--detx", ARCA21, "-p", ligier.port)
    record = subprocess.run(
        [*KM3MON, "record", "-p", str(ligier.port), "-m", "IO_EVT, IO_SUM, IO_MONIT, MSG",
         "-o", str(recording), "--duration", "12"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert record.returncode == 0, record.stderr
    simulator.stop()
    folder = short_folder / "replay_demo"
    result = subprocess.run(
        [*KM3MON, "demo", "--dir", str(folder), "--detx", ARCA21, "--replay", str(recording),
         "--check"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "all overview plots are there" in result.stdout
    assert "replay" in (folder / "supervisord.conf").read_text()
    assert not processes_in(folder)
