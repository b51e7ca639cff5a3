"""The live DAQ log viewer: following the file across rotations, routes, auth."""

from __future__ import annotations

import base64
import os
from pathlib import Path

from starlette.testclient import TestClient

from km3mon.web.weblog import LogFollower, create_weblog


def append(path: Path, *lines: str) -> None:
    with path.open("a") as stream:
        stream.writelines(f"{line}\n" for line in lines)


def test_follower_tails_then_follows_across_a_rotation(tmp_path: Path) -> None:
    log = tmp_path / "MSG.log"
    append(log, *[f"old {i}" for i in range(300)])
    follower = LogFollower(log)
    assert follower.tail(200) == [f"old {i}" for i in range(100, 300)]
    assert follower.new_lines() == []
    append(log, "new 1")
    with log.open("a") as stream:
        stream.write("half a li")  # a line still being written is not shown yet
    assert follower.new_lines() == ["new 1"]
    with log.open("a") as stream:
        stream.write("ne\n")
    assert follower.new_lines() == ["half a line"]
    os.replace(log, tmp_path / "MSG_2026-11-23.log")  # msg_dumper's midnight rotation
    append(log, "first of the day")
    assert follower.new_lines() == ["first of the day"]


def auth(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_routes_archives_and_auth(tmp_path: Path) -> None:
    log = tmp_path / "MSG.log"
    append(log, "MSG.log [DataFilter]: 12:00 F0 STATUS running")
    append(tmp_path / "MSG_2026-11-22.log", "x ERROR a", "x ERROR b", "x WARNING c", "x INFO d")
    (tmp_path / "secret.txt").write_text("not for you")
    app = create_weblog(log, username="shifter", password="s3cret")
    client = TestClient(app)
    for route in ("/", "/archives", "/logs/MSG_2026-11-22.log", "/stream"):
        assert client.get(route).status_code == 401, route
    good = auth("shifter", "s3cret")
    page = client.get("/", headers=good).text
    assert '"[DataFilter]"' in page and "ERROR" in page  # the highlight rules
    assert client.get("/archives", headers=good).json() == [
        {"name": "MSG_2026-11-22.log", "bytes": 41, "errors": 2, "warnings": 1}
    ]
    assert "x ERROR a" in client.get("/logs/MSG_2026-11-22.log", headers=good).text
    for attempt in ("/logs/..%2Fsecret.txt", "/logs/secret.txt", "/logs/%2Fetc%2Fpasswd"):
        assert client.get(attempt, headers=good).status_code == 404, attempt
