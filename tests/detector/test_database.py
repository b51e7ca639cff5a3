"""Database access never hangs: no credentials, no server, a silent server, a loopback fake."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from km3mon.detector import Database, DatabaseUnavailable, DetectorError, load_detector

from .conftest import DETX_DIR

COOKIE = "_tester_127.0.0.1_abcdef"


class FakeKM3NeTDB(BaseHTTPRequestHandler):
    """Just enough of the database web API for detx, detectors and RunCalibration."""

    requests: ClassVar[list[tuple[str, dict[str, list[str]], str | None]]] = []

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query)
        self.requests.append((url.path, query, self.headers.get("Cookie")))
        if url.path == "/home.htm":
            body = f"sid={COOKIE}" if query.get("pwd") == ["right"] else "bad login"
        elif self.headers.get("Cookie") != f"sid={COOKIE}":
            body = "ERROR: not logged in"
        elif url.path == "/detx/44":
            body = (DETX_DIR / "detx_v4.detx").read_text()
        elif url.path == "/streamds/detectors.txt":
            body = "OID\tSERIALNUMBER\tLOCATIONID\nD_ORCA006\t49\tX\nD_ORCA002\t44\tY\n"
        elif url.path == "/apiv2.1.0/RunCalibration/s":
            data = [{"CalibrationType": "PMT_T0_CALIBRATION", "CalibrationId": "A0123"}]
            body = json.dumps({"Error": {"Code": "OK"}, "Data": data})
        else:
            body = "ERROR: unknown"
        encoded = body.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(encoded)))
        self.end_headers()
        self.wfile.write(encoded)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def fake_db() -> Iterator[str]:
    FakeKM3NeTDB.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeKM3NeTDB)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield listener.getsockname()[1]


def test_no_detx_and_no_credentials_fails_at_once(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.km3netdb_cookie
    started = time.monotonic()
    with pytest.raises(DetectorError) as caught:
        load_detector(44, environ={})
    assert time.monotonic() - started < 30  # generous: no network wait at all behind it
    message = str(caught.value)
    assert "detector 44" in message and "$DETX" in message and "KM3NET_DB_COOKIE" in message


def test_an_unanswered_database_times_out(silent_port: int) -> None:
    database = Database(url=f"http://127.0.0.1:{silent_port}", environ={"KM3NET_DB_COOKIE": "x"})
    started = time.monotonic()
    with pytest.raises(DetectorError, match=r"did not answer|timed out"):
        load_detector(44, database=database, environ={})
    assert time.monotonic() - started < 60  # generous: its timeout, not a hang


def test_closed_port_fails_fast(fake_db: str) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    database = Database(url=f"http://127.0.0.1:{closed}", environ={"KM3NET_DB_COOKIE": COOKIE})
    with pytest.raises(DatabaseUnavailable, match="not reachable"):
        database.detx(44)


def test_detector_for_a_run_comes_from_the_database(fake_db: str, tmp_path) -> None:
    cookie_file = tmp_path / "cookie"
    cookie_file.write_text(f"km3netdbweb.in2p3.fr\tTRUE\t/\tTRUE\t0\tsid\t{COOKIE}\n")
    database = Database(url=fake_db, environ={"KM3NET_DB_COOKIE_FILE": str(cookie_file)})
    detector = load_detector(44, run=6760, database=database, environ={})
    assert (detector.det_id, detector.version, len(detector.dom_ids)) == (44, 4, 90)
    assert detector.source == "KM3NeT database (detector 44, run 6760)"
    path, query, cookie = FakeKM3NeTDB.requests[-1]
    assert path == "/detx/44" and cookie == f"sid={COOKIE}"
    assert query["tcal"] == ["A0123"] and query["pcal"] == ["0"] and query["v"] == ["5"]
    run_query = next(q for p, q, _ in FakeKM3NeTDB.requests if "RunCalibration" in p)
    assert run_query["DetOId"] == ["D_ORCA002"]


def test_login_with_username_and_password(fake_db: str) -> None:
    good = Database(url=fake_db, environ={"KM3NET_DB_USERNAME": "u", "KM3NET_DB_PASSWORD": "right"})
    assert good.det_oid(49) == "D_ORCA006"
    bad = Database(url=fake_db, environ={"KM3NET_DB_USERNAME": "u", "KM3NET_DB_PASSWORD": "wrong"})
    with pytest.raises(DatabaseUnavailable, match="login failed"):
        bad.det_oid(49)


def test_error_answers_and_unknown_detectors(fake_db: str) -> None:
    database = Database(url=fake_db, environ={"KM3NET_DB_COOKIE": COOKIE})
    with pytest.raises(DatabaseUnavailable, match="refused"):
        database.stream("nonsense")
    with pytest.raises(DatabaseUnavailable, match="detector 7 is not in"):
        database.det_oid(7)
    assert "timeout_s=5" in repr(database)


def test_explicit_detx_wins_over_the_database(tmp_path) -> None:
    detector = load_detector(44, environ={"DETX": str(DETX_DIR / "km3net_offline.detx")})
    assert detector.version == 2
    assert load_detector(None, DETX_DIR / "detx_v4.detx", environ={}).version == 4
    with pytest.raises(DetectorError, match="no detector given"):
        load_detector(environ={})
