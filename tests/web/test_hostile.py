"""The web server attacked: plots replaced while served, absurd names, slow clients, and the
status page beside a real supervisord."""

from __future__ import annotations

import contextlib
import io
import os
import select
import socket
import subprocess
import sys
import threading
import time
from email.utils import formatdate
from pathlib import Path

import httpx
import pytest
from starlette.testclient import TestClient

from km3mon.web.app import create_app
from km3mon.web.site import Site
from tests.conftest import free_port, wait_for_port, wait_until

AUTH = ("shifter", "s3cret")


def png_of_size(approximate_bytes: int, seed: int) -> bytes:
    """A valid PNG of about this size (noise does not compress)."""
    import numpy as np
    from PIL import Image

    side = int((approximate_bytes / 3) ** 0.5) + 1
    pixels = np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="png", compress_level=0)
    return buffer.getvalue()


def start_webserver(spawn, tmp_path: Path, *extra: object) -> str:
    plots, data = tmp_path / "plots", tmp_path / "data"
    plots.mkdir(exist_ok=True)
    pipeline = tmp_path / "pipeline.toml"
    pipeline.write_text(f'[WebServer]\nusername = "{AUTH[0]}"\npassword = "{AUTH[1]}"\n')
    port = free_port()
    spawn("webserver", "-p", port, "--host", "127.0.0.1", "--plots", plots, "--data", data,
          "--pipeline", pipeline, *extra)  # fmt: skip
    wait_for_port(port)
    return f"http://127.0.0.1:{port}"


def test_a_plot_replaced_every_few_ms_is_always_served_whole(spawn, tmp_path: Path) -> None:
    base = start_webserver(spawn, tmp_path)
    versions = [png_of_size(20_000, 1), png_of_size(90_000, 2), png_of_size(45_000, 3)]
    plot = tmp_path / "plots" / "dom_rates.png"
    plot.write_bytes(versions[0])
    stop = threading.Event()

    def monitor() -> None:  # as the runtime writes: temporary file, then rename
        index = 0
        while not stop.is_set():
            index += 1
            temporary = plot.with_name(f".dom_rates.png.{index}.tmp")
            temporary.write_bytes(versions[index % len(versions)])
            os.replace(temporary, plot)
            time.sleep(0.002)

    writer = threading.Thread(target=monitor)
    writer.start()
    broken: list[str] = []
    served = 0
    try:
        with httpx.Client(auth=AUTH, timeout=10) as client:
            deadline = time.monotonic() + 6
            while time.monotonic() < deadline or served < 300:
                try:
                    response = client.get(f"{base}/plots/dom_rates.png")
                except httpx.HTTPError as error:  # a cut or overlong body
                    broken.append(repr(error))
                    continue
                served += 1
                if response.status_code != 200 or response.content not in versions:
                    broken.append(f"{response.status_code}, {len(response.content)} bytes")
    finally:
        stop.set()
        writer.join()
    assert not broken, f"{len(broken)} of {served + len(broken)} broke: {broken[:3]}"


def test_a_browser_can_revalidate_a_plot(spawn, tmp_path: Path) -> None:
    base = start_webserver(spawn, tmp_path)
    plot = tmp_path / "plots" / "dom_rates.png"
    plot.write_bytes(png_of_size(5000, 1))
    with httpx.Client(auth=AUTH, timeout=10) as client:
        first = client.get(f"{base}/plots/dom_rates.png")
        tag = first.headers["etag"]
        again = client.get(f"{base}/plots/dom_rates.png", headers={"If-None-Match": tag})
        assert again.status_code == 304 and again.content == b""
        # Last-Modified has whole seconds: a plot written at a whole second is unmodified
        # since then, one rewritten within that second (its mtime has a fraction) is not.
        whole = float(int(plot.stat().st_mtime))
        os.utime(plot, (whole, whole))
        since = formatdate(whole, usegmt=True)
        unmodified = client.get(f"{base}/plots/dom_rates.png", headers={"If-Modified-Since": since})
        assert unmodified.status_code == 304 and unmodified.content == b""
        os.utime(plot, (whole + 0.5, whole + 0.5))
        within = client.get(f"{base}/plots/dom_rates.png", headers={"If-Modified-Since": since})
        assert within.status_code == 200 and within.content == plot.read_bytes()
        assert within.headers["last-modified"] == since
        temporary = plot.with_name(".dom_rates.png.x.tmp")
        temporary.write_bytes(png_of_size(6000, 2))
        os.replace(temporary, plot)  # the monitor redraws it
        changed = client.get(f"{base}/plots/dom_rates.png", headers={"If-None-Match": tag})
        assert changed.status_code == 200 and changed.headers["etag"] != tag
        assert changed.content == plot.read_bytes()


LONG = "x" * 300


@pytest.mark.parametrize(
    "route",
    [
        f"/plots/{LONG}.png",
        f"/plots/sub/{LONG}.png",
        f"/plots/{'é' * 130}.png",  # 260 bytes in UTF-8
        f"/plot/{LONG}",
        f"/logs/{LONG}.log",
        f"/logs/MSG_{LONG}.log",
        f"/api/metrics/{LONG}",
        f"/{LONG}.html",
        f"/du/{'9' * 300}",
    ],
)
def test_a_name_too_long_for_the_filesystem_is_not_found(route: str, tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    site = Site(plot_dir=tmp_path / "plots", data_dir=tmp_path / "data", log_dir=logs)
    (tmp_path / "plots").mkdir()
    client = TestClient(create_app(site), raise_server_exceptions=False)
    response = client.get(route)
    assert response.status_code == 404, (route, response.status_code, response.text[:200])


def slow_client(port: int, first_bytes: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setblocking(False)
    if first_bytes:
        sock.send(first_bytes)
    return sock


def closed_by_server(sock: socket.socket) -> bool:
    readable, _, _ = select.select([sock], [], [], 0)
    if not readable:
        return False
    try:
        return sock.recv(4096) == b""
    except ConnectionError:
        return True
    except BlockingIOError:
        return False


@pytest.mark.slow
def test_slow_clients_are_cut_off_while_the_dashboard_keeps_answering(spawn, tmp_path) -> None:
    base = start_webserver(spawn, tmp_path)
    (tmp_path / "plots" / "dom_rates.png").write_bytes(png_of_size(5000, 1))
    port = int(base.rsplit(":", 1)[1])
    head = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "
    dribbling = [slow_client(port, head[:10]) for _ in range(200)]  # slowloris
    idle = [slow_client(port, b"") for _ in range(20)]  # connect and say nothing
    opened = time.monotonic()
    answered = []
    with httpx.Client(auth=AUTH, timeout=10) as client:
        while time.monotonic() - opened < 20:
            for sock in dribbling:  # one more header byte each, for ever
                with contextlib.suppress(OSError):
                    sock.send(b"a")
            for path in ("/", "/plots/dom_rates.png", "/api/status"):
                answered.append(client.get(f"{base}{path}").status_code)
            if all(closed_by_server(s) for s in [*dribbling, *idle]):
                break
            time.sleep(0.5)
    still_open = [s for s in [*dribbling, *idle] if not closed_by_server(s)]
    for sock in [*dribbling, *idle]:
        sock.close()
    assert answered and set(answered) == {200}, "legitimate requests answered meanwhile"
    assert not still_open, f"{len(still_open)} of 220 slow connections still open after 20 s"


def test_a_request_malformed_after_its_answer_is_closed_without_a_traceback(
    spawn, tmp_path: Path
) -> None:
    """The 401 goes out before the body is read; then the body's chunk size is garbage.
    uvicorn would answer 400 on top of the 401, which h11 refuses with a traceback."""
    base = start_webserver(spawn, tmp_path)
    port = int(base.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(b"POST /alerts/1/ack HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")  # fmt: skip
        answer = sock.recv(65536)
        assert answer.startswith(b"HTTP/1.1 401 "), answer
        sock.sendall(b"not a chunk size\r\n\r\n")
        rest = b""
        while chunk := sock.recv(65536):  # the server closes the connection
            rest += chunk
    assert b"HTTP/1.1 400" not in rest, rest
    with httpx.Client(auth=AUTH, timeout=30) as client:
        assert client.get(f"{base}/status").status_code == 200  # and logs its warning first
    log = (tmp_path / "webserver-0.log").read_text()
    assert "Invalid HTTP request received" in log, log
    assert "Traceback" not in log, log


@pytest.fixture
def supervisord(tmp_path: Path):
    """A real supervisord running a monitor that should report, and programs that never do."""
    folder = tmp_path / "sv"
    folder.mkdir()
    programs = ["monitoring_ligier", "weblog", "simulator", "detector_manager", "dom_rates"]
    sleeper = f"{sys.executable} -c 'import time; time.sleep(600)'"
    sections = "".join(
        f"[program:{name}]\ncommand={sleeper}\nstartsecs=0\nstopasgroup=true\n\n"
        for name in programs
    )
    sections += "[program:rttc]\ncommand=false\nstartsecs=0\nautorestart=false\n\n"
    (folder / "supervisord.conf").write_text(
        f"[unix_http_server]\nfile={folder}/supervisor.sock\n\n"
        f"[supervisord]\nlogfile={folder}/supervisord.log\npidfile={folder}/supervisord.pid\n"
        "nodaemon=true\n\n"
        "[rpcinterface:supervisor]\n"
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n\n"
        + sections
    )
    binary = Path(sys.executable).parent / "supervisord"
    process = subprocess.Popen([str(binary), "-c", str(folder / "supervisord.conf")])
    yield folder / "supervisor.sock"
    process.terminate()
    process.wait(30)


def test_programs_without_records_are_neutral_and_a_silent_monitor_is_not(
    supervisord: Path, tmp_path: Path
) -> None:
    site = Site(
        plot_dir=tmp_path / "plots", data_dir=tmp_path / "data", supervisor_socket=supervisord
    )
    client = TestClient(create_app(site))

    def rows() -> dict[str, str]:
        page = client.get("/status").text
        found = {}
        for chunk in page.split("<tr class=")[1:]:
            name = chunk.split('data-process="')[1].split('"')[0]
            found[name] = chunk.split('"')[1]
        return found

    wait_until(lambda: len(rows()) == 6, what="supervisord's six programs", show=rows)
    wait_until(lambda: "EXITED" in client.get("/status").text, what="rttc exited")
    classes = rows()
    for name in ("monitoring_ligier", "weblog", "simulator", "detector_manager"):
        assert classes[name] == "neutral", (name, classes)
    assert classes["dom_rates"] == "bad", "a monitor that runs without reporting is an alarm"
    assert classes["rttc"] == "bad", "a program that is not running is an alarm"
    row = client.get("/status").text.split('data-process="weblog"')[1].split("</tr>")[0]
    assert "RUNNING" in row and "no record kept" in row
    reco = client.get("/reco.html").text
    assert (
        "time_residuals: produced by the reconstruction (`km3mon reco`), which is not part "
        "of this installation (not in supervisord.conf)" in reco
    )
    rttc = client.get("/rttc.html").text
    assert (
        "rttc: produced by the cable round-trip-time monitor (`km3mon rttc`), which is not "
        "running (supervisord: EXITED)" in rttc
    )
