"""triggermap as a real process: hits per DOM equal the hits that were sent."""

from __future__ import annotations

import json

import km3net_testdata
import numpy as np

from km3mon.controlhost import Client
from km3mon.detector import read_detx
from tests.conftest import wait_subscribed, wait_until
from tests.monitors.daqfakes import make_event

ARCA21 = km3net_testdata.data_path("detx/KM3NeT_00000133_20221025.detx")


def test_hits_per_dom_equal_the_sent_hits(ligier, spawn, tmp_path) -> None:
    detector = read_detx(ARCA21)
    pipeline = tmp_path / "pipeline.toml"
    pipeline.write_text("[TriggerMap]\nmax_events = 150\n")
    data = tmp_path / "data"
    monitor = spawn("triggermap", "--detx", ARCA21, "-p", ligier.port, "-o", tmp_path / "plots",
                    "--data-dir", data, "-i", "1", "--pipeline", pipeline)  # fmt: skip
    record = data / "freshness" / "triggermap.json"
    wait_subscribed(ligier.port, name="triggermap")
    rng = np.random.default_rng(7)
    optical = detector.dom_ids[detector.dom_floor > 0]
    sent = [make_event(i, 7 if i < 120 else 8, optical, rng) for i in range(200)]
    corrupt = sent[0][0][:40]
    with Client("127.0.0.1", ligier.port) as publisher:
        publisher.publish_many([("IO_EVT", payload) for payload, _ in sent[:100]])
        publisher.publish("IO_EVT", corrupt)
        publisher.publish_many([("IO_EVT", payload) for payload, _ in sent[100:]])
    kept = np.concatenate([hits for _, hits in sent[-150:]])  # only the last 150 events count
    expected = {int(d): int(n) for d, n in zip(*np.unique(kept["dom_id"], return_counts=True),
                                                strict=True)}  # fmt: skip
    expected_triggered = {}
    for _, hits in sent[-150:]:
        for dom_id in hits["dom_id"][::3]:
            expected_triggered[int(dom_id)] = expected_triggered.get(int(dom_id), 0) + 1
    metrics_path = data / "metrics" / "triggermap.json"

    def counts() -> tuple[dict, dict]:
        if not metrics_path.exists():
            return {}, {}
        metrics = json.loads(metrics_path.read_text())
        if metrics["events"] != 150:
            return {}, {}
        hits = {d: n for d, n in zip(metrics["dom_id"], metrics["hits"], strict=True) if n}
        trig = {d: n for d, n in zip(metrics["dom_id"], metrics["triggered_hits"], strict=True)
                if n}  # fmt: skip
        return hits, trig

    wait_until(lambda: counts() == (expected, expected_triggered), what="counts per DOM")
    wait_until(lambda: json.loads(record.read_text())["decode_errors"] == 1, what="1 error")
    for name in ("hitmap.png", "triggermap.png"):
        assert (tmp_path / "plots" / name).exists()
    assert monitor.alive()


def test_triggermap_pooling_keeps_every_active_dom() -> None:
    from km3mon.monitors.triggermap import max_pooled_rows

    image = np.zeros((4140, 50), np.uint16)
    image[4139, 7] = 3  # one hit on the last DOM: drawn as it is, it falls between pixels
    image[1000, 0] = 1
    pooled, factor = max_pooled_rows(image, 600)
    assert factor == 7 and len(pooled) == 592
    assert pooled[4139 // factor, 7] == 3 and pooled[1000 // factor, 0] == 1
    assert pooled.sum() == 4
    assert max_pooled_rows(image[:500], 600)[1] == 1


def test_triggermap_draws_an_empty_frame_before_its_first_event(tmp_path) -> None:
    """A render before any event (a slow stream, a loaded machine) draws the empty frame:
    matplotlib refuses an image of no colours, which once ended that render with an error."""
    import logging
    import time
    from argparse import Namespace

    from km3mon.config import load_pipeline
    from km3mon.monitors.triggermap import TriggerMap
    from km3mon.runtime.freshness import Freshness
    from km3mon.runtime.monitor import Context

    args = Namespace(det_id=0, detx=ARCA21, plot_dir=tmp_path / "plots", data_dir=tmp_path / "data")
    freshness = Freshness(process="triggermap", pid=0, started_at=time.time(), ligier="-",
                          tags=[], render_interval_s=5.0, stale_after_s=15.0)  # fmt: skip
    TriggerMap(Context(args, freshness, logging.getLogger("test"), load_pipeline(None))).render()
    for name in ("hitmap.png", "triggermap.png"):
        assert (tmp_path / "plots" / name).stat().st_size > 0
