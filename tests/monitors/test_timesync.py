"""timesync as a real process behind a real ligier, fed by the simulator in this process (so
that one DataFilter's IO_TSSN can be held back): UDP loss judged on IO_SUM against
``--udp-fraction``, frames per second, a missing DOM, a DataFilter that stopped, and ALERT lines
to the logging ligier at most one per ``--alert-interval``."""

from __future__ import annotations

import calendar
import logging
import threading
import time

import km3net_testdata
import numpy as np
import pytest

from km3mon.commands import build_parser
from km3mon.config import PipelineConfig
from km3mon.controlhost import Client, FrameDecoder
from km3mon.daq.files import iter_file
from km3mon.daq.summaryslice import decode_summaryslice
from km3mon.daq.timeslice import locate_frames
from km3mon.monitors.timesync import MISSING, UDP, WHITE_RABBIT, TimeSync
from km3mon.runtime.freshness import Freshness
from km3mon.runtime.monitor import Context
from km3mon.sim.simulator import Simulator
from tests.conftest import read_json, wait_subscribed, wait_until
from tests.physics.test_twofolds import detector_with_dom_ids
from tests.sim.test_simulator_support import ORCA6_DETX, orca6

ALERT_INTERVAL_S = 3.0
MISSING_AFTER_S = 4.0
FAULTS_FROM_S = 2.0
STOP_FILTER_AT_S = 3.0


class AlertLines(threading.Thread):
    """Every MSG line of the logging ligier with the wall time it arrived."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.client = Client("127.0.0.1", port, name="test-alerts").connect()
        self.client.subscribe("MSG")
        self.lines: list[tuple[float, str]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            for message in self.client.receive_batch(timeout=0.2):
                self.lines.append((time.monotonic(), message.payload.decode()))
        self.client.close()


def publish_in_real_time(simulator: Simulator, port: int, seconds: float, held: set[int]) -> None:
    """The simulated stream at 10 timeslices a second; from STOP_FILTER_AT_S on, the IO_TSSN
    of the DataFilter serving ``held`` is left out (that DataFilter stopped)."""
    decoder = FrameDecoder()
    started = time.monotonic()
    with Client("127.0.0.1", port, name="test-daq") as client:
        while simulator.elapsed_s < seconds:
            elapsed = simulator.elapsed_s
            output = simulator.step()
            messages = []
            for message in decoder.feed(output.data):
                if message.tag == "IO_TSSN" and elapsed >= STOP_FILTER_AT_S:
                    doms = locate_frames(message.payload).frames["dom_id"]
                    if held & set(doms.tolist()):
                        continue
                messages.append((message.tag, message.payload))
            client.publish_many(messages)
            time.sleep(max(0.0, started + simulator.elapsed_s - time.monotonic()))


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_udp_loss_missing_dom_stopped_datafilter_and_the_alert_interval(
    start_ligier, spawn, tmp_path
) -> None:
    detector = orca6()
    simulator = Simulator(
        detector,
        seed=12,
        scenarios=[f"udp-loss@{FAULTS_FROM_S:g}", f"silent-dom@{FAULTS_FROM_S:g}"],
        timeslices=True,
        data_filters=3,
    )
    lossy, silent = (s.dom_ids[0] for s in simulator.scenarios)
    model = simulator.timeslices
    assert model is not None
    optical = detector.dom_ids[model.optical_rows]
    filter_of = dict(zip(optical.tolist(), model.data_filter.tolist(), strict=True))
    stopped = next(f for f in range(3) if f not in (filter_of[lossy], filter_of[silent]))
    held = {d for d, f in filter_of.items() if f == stopped}
    held_dus = sorted({detector.du_floor(d)[0] for d in held})

    data_ligier, log_ligier = start_ligier(), start_ligier()
    data = tmp_path / "data"
    spawn("timesync", "--detx", ORCA6_DETX, "-p", data_ligier.port, "-m", "127.0.0.1",
          "-q", log_ligier.port, "-o", tmp_path / "plots", "--data-dir", data, "-i", "1",
          "--alert-interval", ALERT_INTERVAL_S, "--missing-after", MISSING_AFTER_S,
          "--udp-fraction", 0.2)  # fmt: skip
    wait_subscribed(data_ligier.port, name="timesync", tags=("IO_SUM", "IO_TSSN"))
    alerts = AlertLines(log_ligier.port)
    alerts.start()
    simulator.start_clock(time.time())
    publish_in_real_time(simulator, data_ligier.port, 20.0, held)

    metrics_path = data / "metrics" / "timesync.json"

    def settled() -> bool:
        metrics = read_json(metrics_path)
        return bool(metrics.get("missing")) and any(
            f["stopped"] for f in metrics.get("data_filters", [])
        )

    wait_until(settled, 30, "the faults in the metrics", show=lambda: read_json(metrics_path))
    metrics = read_json(metrics_path)
    assert metrics["udp_incomplete"] == [lossy]
    assert metrics["missing"] == [silent]
    assert metrics["white_rabbit_lost"] == []
    name = f"DataFilter of DUs {held_dus[0]}-{held_dus[-1]}"
    assert [(f["name"], f["stopped"]) for f in metrics["data_filters"] if f["stopped"]] == [
        (name, True)
    ]
    assert len(metrics["data_filters"]) == 3
    doms = metrics["doms"]
    state = dict(zip(doms["dom_id"], doms["state"], strict=True))
    frames_per_s = dict(zip(doms["dom_id"], doms["frames_per_s"], strict=True))
    lost = dict(zip(doms["dom_id"], doms["lost_fraction"], strict=True))
    assert {d for d, s in state.items() if s == 4} == held, "the DOMs of the stopped DataFilter"
    assert 0.25 < lost[lossy] < 0.9, lost[lossy]
    assert 7.0 < frames_per_s[lossy] < 10.0, frames_per_s[lossy]
    healthy = [d for d in state if d not in (lossy, silent)]
    assert np.median([frames_per_s[d] for d in healthy]) == pytest.approx(10.0, abs=0.5)
    assert max(lost[d] for d in healthy) < 0.05

    alerts.stop.set()
    alerts.join(5)
    lines = [(at, text) for at, text in alerts.lines if "ALERT (MONITORING)" in text]
    assert lines, "ALERT lines in the logging ligier"
    last = lines[-1][1]
    assert f"incomplete UDP data for DOM ID: {lossy} (DU " in last
    assert f"{name} sent no IO_TSSN for more than 4 s" in last
    assert f"no frames for more than 4 s from DOM ID: {silent} (DU " in last
    assert not any(str(d) in last for d in held), "the DataFilter is named, not its DOMs"
    # the time each line was made, from its stamp (whole seconds): a line held up on a
    # loaded machine must not look like two alerts in a row
    made = [calendar.timegm(time.strptime(text.split(": ", 1)[0][19:], "%c")) for _, text in lines]
    gaps = np.diff(made)
    assert len(lines) >= 3 and gaps.min() >= ALERT_INTERVAL_S - 1, gaps
    assert np.median(gaps) < 2 * ALERT_INTERVAL_S, "the interval asked for, not the default"


def in_process(tmp_path, detx, *flags: str) -> TimeSync:
    """timesync in this process (its ALERT sender never sends: ``alert`` is not called)."""
    argv = ["timesync", "--detx", str(detx), "-o", str(tmp_path / "plots"),
            "--data-dir", str(tmp_path / "data"), "-q", "1", *flags]  # fmt: skip
    args = build_parser(argv).parse_args(argv)
    freshness = Freshness("timesync", 0, time.time(), "in-process", ["IO_SUM"], 10, 10)
    return TimeSync(Context(args, freshness, logging.getLogger("test"), PipelineConfig()))


def test_recorded_summary_slices_are_complete_and_legacy_ones_not_judged(tmp_path) -> None:
    """Real IO_SUM (ORCA det 44, every frame complete) and legacy IO_SUM (det 7, no daq and
    fifo words: completeness not judged): no UDP loss, no White Rabbit loss made up."""
    current = in_process(tmp_path, km3net_testdata.data_path("detx/detx_v4.detx"))
    current.consume(list(iter_file(km3net_testdata.data_path("daq/IO_SUM.dat"))))
    state = current.evaluate()
    seen = ~np.isnan(current.last_seen_s)
    assert seen.sum() == 69 and (state == 0).all()
    assert (current.lost_fraction[seen] == 0).all()

    messages = list(iter_file(km3net_testdata.data_path("daq/IO_SUM_legacy.dat")))
    dom_ids = sorted({int(d) for m in messages for d in decode_summaryslice(m.payload).dom_ids})
    detx = tmp_path / "det7.detx"
    detx.write_text(detector_with_dom_ids(dom_ids, det_id=7))
    legacy = in_process(tmp_path, detx)
    legacy.consume(messages)
    state = legacy.evaluate()
    assert legacy.context.freshness.decode_errors == 0
    assert not (state == UDP).any() and not (state == WHITE_RABBIT).any()
    # a frame missing from a slice now and then (real data): counted, below --udp-fraction
    assert (legacy.lost_fraction[~np.isnan(legacy.last_seen_s)] < 0.1).all()


def test_a_lost_du_is_no_stopped_datafilter(tmp_path) -> None:
    """A DataFilter serving one DU that went dark sends nothing, but its DOMs are the news
    (silent_dom, du_lost): it is not called stopped. Fed in-process with the simulator."""
    monitor = in_process(tmp_path, ORCA6_DETX, "--missing-after", "2")
    simulator = Simulator(orca6(), seed=3, scenarios=["du-loss@1"], timeslices=True,
                          data_filters=6)  # fmt: skip
    simulator.start_clock(time.time() - 10)
    decoder = FrameDecoder()
    for _ in range(60):
        monitor.consume(decoder.feed(simulator.step().data))
    state = monitor.evaluate()
    (scenario,) = simulator.scenarios
    lost = np.isin(orca6().dom_ids[monitor.slots.dom_index], scenario.dom_ids)
    assert len(monitor.data_filters.numbers()) == 6
    assert monitor.stopped == []
    assert (state[lost] == MISSING).all() and (state[~lost] == 0).all()
