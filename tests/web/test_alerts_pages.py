"""Alerts, history and Top-10 routes in-process: acknowledgement only from our own pages,
behind the auth; the history API's answers and errors; raw events without path tricks."""

from __future__ import annotations

import numpy as np
from starlette.testclient import TestClient

from km3mon.alerts.book import AlertBook, Lifecycle
from km3mon.alerts.rules import Condition, Settings
from km3mon.history.store import HistoryStore
from km3mon.web.app import Site, create_app

T0 = 1_796_000_040.0


def make_site(tmp_path) -> Site:
    plots, data = tmp_path / "plots", tmp_path / "data"
    (plots / "event_selection").mkdir(parents=True)
    (plots / "event_selection" / "ztplot_1_2_FI3_TC4.dat").write_bytes(b"IO_EVT\0\0raw")
    book = AlertBook(data, Lifecycle())
    settings = {"silent_dom": Settings(hold_s=0, clear_s=60, reminder_s=0)}
    condition = Condition("silent_dom", "7", "DOM 7 silent 400 s", dom_id=7, du=1, floor=2)
    book.update({"silent_dom": [condition]}, settings)
    book.close()
    store = HistoryStore(data)
    store.set_places({7: (1, 2), 8: (1, 3)})
    for minute in range(5):
        store.write([("dom_rate_khz", "dom", T0 + 60 * minute, np.array([7, 8]),
                      np.array([200.0 + minute, 300.0]))])  # fmt: skip
    store.close()
    return Site(plot_dir=plots, data_dir=data)


def test_acknowledge_needs_auth_and_our_own_origin(tmp_path) -> None:
    client = TestClient(create_app(make_site(tmp_path), username="u", password="p"))
    assert client.get("/api/alerts").status_code == 401
    auth = ("u", "p")
    answer = client.get("/api/alerts", auth=auth).json()
    assert answer["count"] == 1 and answer["firing"][0]["details"]["dom_id"] == 7
    alert_id = answer["firing"][0]["id"]
    form = {"name": "Ada", "comment": "known, DOM in repair"}
    foreign = client.post(f"/alerts/{alert_id}/ack", data=form, auth=auth,
                          headers={"Origin": "http://evil.example"})  # fmt: skip
    assert foreign.status_code == 403
    assert client.post(f"/alerts/{alert_id}/ack", data=form, auth=auth).status_code == 403
    ours = client.post(f"/alerts/{alert_id}/ack", data=form, auth=auth, follow_redirects=False,
                       headers={"Origin": "http://testserver"})  # fmt: skip
    assert ours.status_code == 303
    page = client.get("/alerts", auth=auth).text
    assert "Ada" in page and "known, DOM in repair" in page and "DOM 7 silent 400 s" in page
    assert client.get("/api/alerts", auth=auth).json()["firing"][0]["acked_by"] == "Ada"


def test_history_api_and_raw_events(tmp_path) -> None:
    client = TestClient(create_app(make_site(tmp_path)))
    query = f"/api/history?metric=dom_rate_khz&from={T0}&to={T0 + 600}"
    answer = client.get(f"{query}&dom=7").json()
    assert answer["series"][0]["v"] == [200, 201, 202, 203, 204]
    assert answer["series"][0]["label"] == "DOM 7 (DU 1, floor 2)"
    by_place = client.get(f"{query}&du=1&floor=3").json()
    assert by_place["series"][0]["v"] == [300] * 5
    assert len(client.get(f"{query}&du=1").json()["series"]) == 2, "a DU: its DOMs"
    assert client.get(f"{query}").status_code == 400
    assert "not in the history" in client.get("/api/history?metric=nope&dom=7").json()["error"]
    assert client.get("/api/history?metric=dom_rate_khz&dom=7&from=yesterday").status_code == 400
    assert client.get("/history?dom=7").status_code == 200
    assert client.get("/top10").status_code == 200
    raw = client.get("/top10/ztplot_1_2_FI3_TC4.dat")
    assert raw.status_code == 200 and raw.content == b"IO_EVT\0\0raw"
    assert "attachment" in raw.headers["content-disposition"]
    assert client.get("/top10/..%2F..%2Fpipeline.dat").status_code == 404
