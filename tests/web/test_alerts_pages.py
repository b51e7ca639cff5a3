"""Alerts, history and Top-10 routes in-process: acknowledgement only from our own pages,
behind the auth; the history API's answers and errors; raw events without path tricks."""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
from starlette.testclient import TestClient

from km3mon.alerts.book import AlertBook, Lifecycle
from km3mon.alerts.rules import Condition, Settings
from km3mon.history.store import HistoryStore
from km3mon.web.app import create_app
from km3mon.web.site import Site

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


def test_silences_and_known_bad_need_auth_our_origin_a_name_and_a_reason(tmp_path) -> None:
    site = replace(make_site(tmp_path), known_bad=("808 flooded in 2024",))
    client = TestClient(create_app(site, username="u", password="p"))
    auth, ours = ("u", "p"), {"Origin": "http://testserver"}
    form = {"kind": "du", "value": "1", "hours": "2", "name": "Ada", "reason": "DU 1 repair"}
    assert client.post("/alerts/silences", data=form).status_code == 401
    assert client.post("/alerts/silences", data=form, auth=auth,
                       headers={"Origin": "http://evil.example"}).status_code == 403  # fmt: skip
    for missing in ("name", "reason"):
        answer = client.post("/alerts/silences", data={**form, missing: ""}, auth=auth,
                             headers=ours)  # fmt: skip
        assert "Give+your+name+and+a+reason" in str(answer.url)
    assert "at+most+168" in str(client.post("/alerts/silences", data={**form, "hours": "999"},
                                            auth=auth, headers=ours).url)  # fmt: skip
    assert "is+a+number" in str(client.post("/alerts/silences", data={**form, "value": "one"},
                                            auth=auth, headers=ours).url)  # fmt: skip
    done = client.post("/alerts/silences", data=form, auth=auth, headers=ours)
    assert "Silenced+du+1+until" in str(done.url)
    (silence,) = client.get("/api/alerts", auth=auth).json()["silences"]
    assert (silence["kind"], silence["value"], silence["created_by"]) == ("du", "1", "Ada")
    assert 7100 < silence["until"] - time.time() <= 7200
    book = AlertBook(tmp_path / "data", Lifecycle())  # the next evaluation sees the silence
    settings = {"silent_dom": Settings(hold_s=0, clear_s=60, reminder_s=0)}
    condition = Condition("silent_dom", "7", "DOM 7 silent 400 s", dom_id=7, du=1, floor=2)
    book.update({"silent_dom": [condition]}, settings)
    book.close()
    page = client.get("/alerts", auth=auth).text
    assert f'data-silenced="{silence["id"]}"' in page and "DU 1 repair" in page
    assert "silenced: nobody notified" in page

    bad = {"dom_id": "809", "channel": "12", "name": "Bob", "reason": "hot PMT, ticket 7"}
    assert client.post("/alerts/known-bad", data=bad, auth=auth).status_code == 403
    assert "channel+0+to+30" in str(client.post("/alerts/known-bad", data={**bad, "channel": "31"},
                                                auth=auth, headers=ours).url)  # fmt: skip
    assert client.post("/alerts/known-bad", data=bad, auth=auth, headers=ours).status_code == 200
    entries = client.get("/api/alerts", auth=auth).json()["known_bad"]
    assert [(e["dom_id"], e["channel"], e["by"]) for e in entries] == [
        (808, None, "pipeline.toml"), (809, 12, "Bob")
    ]  # fmt: skip
    page = client.get("/alerts", auth=auth).text
    assert 'data-known-bad="809/12"' in page and "flooded in 2024" in page
    end = {"name": "Cy"}
    assert client.post(f"/alerts/known-bad/{entries[1]['id']}/remove", data=end, auth=auth,
                       headers=ours).status_code == 200  # fmt: skip
    assert len(client.get("/api/alerts", auth=auth).json()["known_bad"]) == 1
    assert client.post(f"/alerts/silences/{silence['id']}/end", data=end, auth=auth,
                       headers={"Origin": "http://evil.example"}).status_code == 403  # fmt: skip
    client.post(f"/alerts/silences/{silence['id']}/end", data=end, auth=auth, headers=ours)
    assert client.get("/api/alerts", auth=auth).json()["silences"] == []
