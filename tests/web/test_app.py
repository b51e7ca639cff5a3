"""The dashboard in-process: pages, wildcard rows, safe plot serving, auth on every route."""

from __future__ import annotations

import base64
import json
import os
import time
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from km3mon.runtime.freshness import Freshness, OutputRecord
from km3mon.web.app import create_app
from km3mon.web.site import Site

PNG = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00"
    b"\x1f\x15\xc4\x89\x00\x00\x00\rIDATx\x9cc\xf8\x0f\x00\x00\x01\x01\x00\x05\x18\xd8N\x00\x00"
    b"\x00\x00IEND\xaeB`\x82"
)
PLOTS = ["dom_activity", "dom_rates", "pmt_rates_du2", "pmt_rates_du10", "pmt_rates_du9",
         "trigger_rates", "trigger_rates_lin", "ztplot", "triggermap", "rttc"]  # fmt: skip


@pytest.fixture
def site(tmp_path: Path) -> Site:
    plots, data = tmp_path / "plots", tmp_path / "data"
    plots.mkdir()
    for name in PLOTS:
        (plots / f"{name}.png").write_bytes(PNG)
    (plots / ".dom_rates.png.abc.tmp").write_bytes(b"half a file")
    (tmp_path / "pipeline.toml").write_text('[WebServer]\npassword = "secret"\n')
    (plots / "escape.png").symlink_to(tmp_path / "pipeline.toml")
    now = time.time()
    fresh = Freshness("dom_rates", 1, now, "127.0.0.1:5553", ["IO_SUM"], 30.0, 90.0,
                      state="running", last_message_at=now)  # fmt: skip
    fresh.outputs["dom_rates.png"] = OutputRecord(now, now, 0.2, False)
    fresh.write(data / "freshness" / "dom_rates.json")
    old = Freshness("pmt_rates", 2, now, "127.0.0.1:5553", ["IO_MONIT"], 20.0, 60.0,
                    state="stale", last_message_at=now - 900)  # fmt: skip
    old.outputs["pmt_rates_du2.png"] = OutputRecord(now, now - 900, 0.3, True)
    old.write(data / "freshness" / "pmt_rates.json")
    (data / "metrics").mkdir()
    (data / "metrics" / "dom_rates.json").write_text(json.dumps({"rate_khz": [250.0]}))
    return Site(plot_dir=plots, data_dir=data)


def test_every_page_renders_with_its_plots(site: Site) -> None:
    client = TestClient(create_app(site))
    for page in site.pages:
        response = client.get(f"/{page.slug}.html")
        assert response.status_code == 200, page.slug
    overview = client.get("/").text
    for name in ("dom_activity", "dom_rates", "trigger_rates", "ztplot", "triggermap"):
        assert f'data-plot="{name}"' in overview
    order = [overview.index(f'data-plot="pmt_rates_du{n}"') for n in (2, 9, 10)]
    assert order == sorted(order), "wildcard rows in natural DU order"
    assert "STALE 15 min" in overview, "the stale PMT panel says so in words"
    assert "pmt_rates_du2: STALE, no new data; newest data 15 min old" in overview
    assert client.get("/plot/rttc").status_code == 200
    assert client.get("/nonsense.html").status_code == 404


def test_new_plots_appear_without_a_restart(site: Site) -> None:
    client = TestClient(create_app(site))
    assert "pmt_rates_du33" not in client.get("/").text
    (site.plot_dir / "pmt_rates_du33.png").write_bytes(PNG)
    assert 'data-plot="pmt_rates_du33"' in client.get("/").text


def test_plots_are_served_and_nothing_else(site: Site) -> None:
    client = TestClient(create_app(site))
    response = client.get("/plots/dom_rates.png")
    assert response.status_code == 200 and response.content == PNG
    assert response.headers["content-type"] == "image/png"
    for attempt in [
        "/plots/../pipeline.toml",
        "/plots/%2e%2e/pipeline.toml",
        "/plots/..%2fpipeline.toml",
        "/plots/%2e%2e%2fpipeline.toml",
        "/plots/..%5cpipeline.toml",
        "/plots//etc/passwd",
        "/plots/%2Fetc%2Fpasswd",
        "/plots/escape.png",
        "/plots/.dom_rates.png.abc.tmp",
        "/plots/missing.png",
        "/plots/dom_rates.png%00.txt",
    ]:
        response = client.get(attempt)
        assert response.status_code == 404, attempt
        assert b"secret" not in response.content


def test_api_status_metrics_and_prometheus(site: Site) -> None:
    client = TestClient(create_app(site))
    status = client.get("/api/status").json()
    assert status["processes"]["dom_rates"]["state"] == "running"
    assert status["processes"]["pmt_rates"]["state"] == "stale"
    assert status["panels"]["pmt_rates_du2.png"]["stale"] is True
    assert status["panels"]["dom_rates.png"]["stale"] is False
    assert client.get("/api/metrics/dom_rates").json() == {"rate_khz": [250.0]}
    assert client.get("/api/metrics/..%2Ffreshness%2Fdom_rates").status_code == 404
    metrics = client.get("/metrics").text
    assert 'km3mon_process_up{process="dom_rates"} 1.0' in metrics
    assert 'km3mon_process_up{process="pmt_rates"} 0.0' in metrics
    page = client.get("/status").text
    assert "dom_rates" in page and "pmt_rates" in page


def test_a_process_that_stopped_writing_is_silent(site: Site) -> None:
    record = site.data_dir / "freshness" / "dom_rates.json"
    document = json.loads(record.read_text())
    document["updated_at"] -= 600
    record.write_text(json.dumps(document))
    client = TestClient(create_app(site))
    status = client.get("/api/status").json()
    assert status["processes"]["dom_rates"]["state"] == "silent"
    panel = status["panels"]["dom_rates.png"]
    assert (panel["stale"], panel["reason"]) == (True, "dom_rates is silent")


def test_the_mirror_is_a_process_without_panels(site: Site) -> None:
    now = time.time()
    mirror = Freshness("ligiermirror", 3, now, "10.0.0.1:5553 -> 127.0.0.1:55530", ["IO_SUM"],
                       2.0, 60.0, state="running", connected=True, messages=1234,
                       last_message_at=now)  # fmt: skip
    mirror.write(site.data_dir / "freshness" / "ligiermirror.json")
    client = TestClient(create_app(site))
    status = client.get("/api/status").json()
    assert status["processes"]["ligiermirror"]["ok"] is True
    assert not any(panel["process"] == "ligiermirror" for panel in status["panels"].values())
    row = client.get("/status").text.split('data-process="ligiermirror"')[1].split("</tr>")[0]
    assert ">running<" in row and ">1234<" in row and "10.0.0.1:5553 -&gt; 127.0.0.1" in row
    assert 'km3mon_process_up{process="ligiermirror"} 1.0' in client.get("/metrics").text


ROUTES = ["/", "/index.html", "/trigger.html", "/status", "/api/status", "/api/metrics/dom_rates",
          "/metrics", "/events", "/plots/dom_rates.png", "/plot/dom_rates"]  # fmt: skip


def credentials(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def test_every_route_needs_the_credentials(site: Site) -> None:
    client = TestClient(create_app(site, username="shifter", password="s3cret"))
    for route in ROUTES:
        for headers in ({}, credentials("shifter", "wrong"), credentials("other", "s3cret")):
            response = client.get(route, headers=headers)
            assert response.status_code == 401, (route, headers)
            assert response.headers["www-authenticate"].startswith("Basic")
    for route in ROUTES:
        if route == "/events":
            continue  # an endless stream: checked with a real server
        assert client.get(route, headers=credentials("shifter", "s3cret")).status_code == 200


def test_no_environment_leaks_into_pages(site: Site) -> None:
    os.environ.setdefault("KM3MON_TEST_SECRET", "do-not-show")
    client = TestClient(create_app(site))
    assert "do-not-show" not in client.get("/status").text


def test_layouts_from_pipeline_toml(site: Site, tmp_path: Path) -> None:
    from km3mon.config import ConfigError, load_pipeline
    from km3mon.web.layouts import configured_pages

    config = tmp_path / "layouts.toml"
    config.write_text('[Layouts]\nindex = [["rttc"], ["pmt_rates_du*"]]\nwall = [["ztplot"]]\n')
    pages = configured_pages(load_pipeline(config).layouts)
    client = TestClient(create_app(Site(site.plot_dir, site.data_dir, pages=pages)))
    overview = client.get("/").text
    assert 'data-plot="rttc"' in overview and 'data-plot="dom_rates"' not in overview
    assert 'data-plot="ztplot"' in client.get("/wall.html").text
    assert "Wall" in overview, "new pages appear in the navigation"
    config.write_text('[Layouts]\nindex = ["dom_rates"]\n')
    with pytest.raises(ConfigError, match=r"\[Layouts\] index must be a list of rows"):
        load_pipeline(config)


def test_logs_page_lists_archives_with_counts(site: Site, tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "MSG.log").write_text("today\n")
    (logs / "MSG_2026-11-22.log").write_text("a ERROR x\nb WARNING y\nc ERROR z\n")
    (logs / "other.txt").write_text("not a log")
    app = create_app(Site(site.plot_dir, site.data_dir, log_dir=logs, weblog_port=8082))
    client = TestClient(app)
    page = client.get("/logs.html").text
    assert "MSG_2026-11-22.log" in page and "<td>2</td><td>1</td>" in page
    assert "http://testserver:8082/" in page
    assert "c ERROR z" in client.get("/logs/MSG_2026-11-22.log").text
    for attempt in ("/logs/other.txt", "/logs/..%2Fpipeline.toml", "/logs/%2Fetc%2Fpasswd"):
        assert client.get(attempt).status_code == 404, attempt
