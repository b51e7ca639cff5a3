"""timesync, sn and k40 as real processes behind a real ligier, fed by the simulator or the
recorded testdata."""

from __future__ import annotations

import itertools
import re
import threading
import time
from pathlib import Path

import km3net_testdata
import pytest

from km3mon.controlhost import Client, query_status
from km3mon.daq.files import iter_file
from km3mon.daq.timeslice import decode_timeslice, frames_white_rabbit, locate_frames
from km3mon.detector import read_detx
from km3mon.sim.simulator import Simulator
from km3mon.timetext import utc
from tests.conftest import read_json, wait_until, wait_while_progressing
from tests.monitors.stamps import png_text
from tests.physics.test_twofolds import detector_with_dom_ids
from tests.sim.test_simulator_support import ARCA21_DETX, ORCA6_DETX

ALERT = re.compile(r"ALERT \(MONITORING\) (.+?): (.*)")


def subscribed(port: int, name: str, tag: str) -> bool:
    """The ligier's own status report lists the process's subscription to ``tag``."""
    return any(
        f"'{name}'" in line and "subscription" in line and tag in line
        for line in query_status("127.0.0.1", port).splitlines()
    )


class FirstWhiteRabbitLoss(threading.Thread):
    """Notes the wall time at which the first IO_TSSN frame without the WR bit arrives."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.client = Client("127.0.0.1", port, name="test-wr").connect()
        self.client.subscribe("IO_TSSN")
        self.seen_at: float | None = None
        self.dom_id: int | None = None

    def run(self) -> None:
        while self.seen_at is None:
            for message in self.client.receive_batch(timeout=0.5):
                frames = locate_frames(message.payload).frames
                lost = ~frames_white_rabbit(frames)
                if lost.any() and self.seen_at is None:
                    self.seen_at = time.time()
                    self.dom_id = int(frames["dom_id"][lost][0])
        self.client.close()


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_wr_loss_gives_an_alert_in_msg_log_within_10_s_and_one_per_10_s(
    start_ligier, spawn, tmp_path: Path
) -> None:
    data_ligier, log_ligier = start_ligier(), start_ligier()
    logs = tmp_path / "logs"
    logs.mkdir()
    spawn("msg_dumper", "-l", "127.0.0.1", "-p", log_ligier.port, "-f", logs / "MSG.log",
          "--data-dir", tmp_path / "data")  # fmt: skip
    spawn("timesync", "--detx", ORCA6_DETX, "-p", data_ligier.port, "-m", "127.0.0.1",
          "-q", log_ligier.port, "-o", tmp_path / "plots", "--data-dir", tmp_path / "data",
          "-i", "2")  # fmt: skip
    wait_until(lambda: subscribed(log_ligier.port, "msg_dumper", "MSG"), 30, "msg_dumper")
    wait_until(lambda: subscribed(data_ligier.port, "timesync", "IO_TSSN"), 30, "timesync")
    watcher = FirstWhiteRabbitLoss(data_ligier.port)
    watcher.start()
    scenario = "wr-loss@4"
    target = Simulator(read_detx(ORCA6_DETX), seed=4, scenarios=[scenario]).scenarios[0]
    spawn("simulate", "--detx", ORCA6_DETX, "-p", data_ligier.port, "--log-port",
          log_ligier.port, "--seed", 4, "--scenario", scenario,
          "--simulated-seconds", 150)  # fmt: skip
    wait_until(lambda: watcher.seen_at is not None, 60, "a frame without the White Rabbit bit")
    assert watcher.dom_id == target.dom_ids[0]

    alerts: list[tuple[float, str]] = []  # (wall time seen, line)

    def collect() -> int:
        lines = [line for line in (logs / "MSG.log").read_text().splitlines() if "ALERT" in line]
        for line in lines[len(alerts) :]:
            alerts.append((time.time(), line))
        return len(alerts)

    wait_until(lambda: collect() >= 1, 30, "an ALERT line in MSG.log")
    assert alerts[0][0] - watcher.seen_at < 10.0
    du, floor = read_detx(ORCA6_DETX).du_floor(target.dom_ids[0])
    line = alerts[0][1]
    assert f"{target.dom_ids[0]} (DU {du}, floor {floor})" in line
    assert "invalid time sync (White Rabbit)" in line and ALERT.search(line)
    deadline = time.monotonic() + 32
    while time.monotonic() < deadline:
        collect()
        time.sleep(0.1)
    assert 3 <= len(alerts) <= 5
    gaps = [later[0] - earlier[0] for earlier, later in itertools.pairwise(alerts)]
    assert min(gaps) > 9.0, gaps  # at most one per 10 s (seen through file polling)
    metrics = read_json(tmp_path / "data" / "metrics" / "timesync.json")
    assert metrics["white_rabbit_lost"] == [target.dom_ids[0]]
    # The map shows those states: each DOM's cell in its state's colour (hatched ones in part),
    # the lost DOM's in the White Rabbit colour. Metrics and image of one render: the next
    # render (every 2 s) may land between reading the two, so read them until they agree.
    seen: list[str] = []

    def map_shows_the_metrics() -> bool:
        metrics = read_json(tmp_path / "data" / "metrics" / "timesync.json")
        seen[:] = timesync_cells_disagreeing(tmp_path / "plots" / "timesync.png", metrics)
        return not seen and target.dom_ids[0] in metrics["white_rabbit_lost"]

    wait_until(map_shows_the_metrics, 60, "timesync.png showing the states of timesync.json",
               show=lambda: seen[:5])  # fmt: skip


def timesync_cells_disagreeing(png: Path, metrics: dict) -> list[str]:
    """The DOMs whose cell in ``png`` is not in the colour of their state in ``metrics``."""
    import matplotlib
    import numpy as np

    from km3mon.figures.dom_map import STATE_STYLES, dom_states_map
    from km3mon.monitors.timesync import STATES, WINDOW_S
    from tests.monitors.test_dom_maps import cell_pixels, colour_share

    matplotlib.use("Agg")
    detector = read_detx(ORCA6_DETX)
    values = np.full(len(detector.dom_ids), -1)
    index = {int(dom): i for i, dom in enumerate(detector.dom_ids)}
    doms = metrics["doms"]
    for dom, state in zip(doms["dom_id"], doms["state"], strict=True):
        values[index[dom]] = state
    states = np.asarray(doms["state"])
    counts = [int((states == k).sum()) for k in range(len(STATES))]
    rates = np.asarray(doms["frames_per_s"], float)
    seen = np.isfinite(rates) & (states != STATES.index("missing"))
    rate = (
        f"frames/s per DOM sending: median {np.median(rates[seen]):.1f}, lowest "
        f"{rates[seen].min():.1f} (of {metrics['expected_frames_per_s']})\n"
        if seen.any()
        else ""
    )
    title = (  # the same layout as the monitor's figure (its title's lines)
        f"Time sync and UDP completeness, detector {detector.det_id} "
        f"(IO_SUM, last {WINDOW_S} s)\n{rate}"
        + ", ".join(f"{c} {s}" for c, s in zip(counts, STATES, strict=True))
    )
    layout = dom_states_map(detector, values, STATES, title)
    image = np.round(matplotlib.image.imread(png)[..., :3] * 255).astype(int)
    assert image.shape[:2] == layout.canvas.get_width_height()[::-1], "the figure's size"
    wrong = []
    for dom, state in zip(doms["dom_id"], doms["state"], strict=True):
        du, floor = detector.du_floor(dom)
        centre = cell_pixels(layout, du, floor)[2]
        colour, hatch = STATE_STYLES[state]
        share = colour_share(image, centre, colour)
        if not (share == 1.0 if not hatch else 0.1 <= share < 1.0):
            wrong.append(f"DOM {dom} (DU {du}, floor {floor}): {STATES[state]}, {share:.2f}")
    matplotlib.pyplot.close(layout)
    return wrong


@pytest.mark.slow
@pytest.mark.timeout(900)  # a hang guard
def test_a_supernova_burst_stands_out_above_the_threshold(ligier, spawn, tmp_path: Path) -> None:
    data = tmp_path / "data"
    spawn("sn", "--detx", ARCA21_DETX, "-p", ligier.port, "-o", tmp_path / "plots",
          "--data-dir", data, "-i", "2")  # fmt: skip
    wait_until(lambda: subscribed(ligier.port, "sn", "IO_EVT"), 30, "sn subscribed")
    watcher = Client("127.0.0.1", ligier.port, name="test-sn").connect()
    watcher.subscribe("IO_TSSN")
    # the threshold needs a complete minute of background (DAQ time): up to 60 s until the
    # first minute boundary, 60 s more for a full one
    burst_s = 130.0
    # no --duration: a loaded machine may take a minute to compile the simulator's kernels,
    # and the burst must come whatever the wall clock did meanwhile
    spawn("simulate", "--detx", ARCA21_DETX, "-p", ligier.port, "--speed", 2, "--seed", 8,
          "--scenario", f"sn-burst@{burst_s:g}")  # fmt: skip
    first = None
    while first is None:
        for message in watcher.receive_batch(timeout=1.0):
            first = decode_timeslice(message.payload).header.timestamp
            break
    watcher.close()
    metrics_path = data / "metrics" / "sn.json"

    def above() -> int:
        return read_json(metrics_path).get("windows_above_threshold") or 0

    def newest_s() -> float:
        return read_json(metrics_path).get("latest_time") or 0.0

    wait_while_progressing(lambda: newest_s() > first + burst_s - 5, newest_s, 60,
                           "background before the burst",
                           show=lambda: read_json(metrics_path))  # fmt: skip
    # one reading: a second one may already hold the burst (seen in a fresh-clone run, where
    # one render took the statistic from 5 s before the burst into it); an alarm whose window
    # ends before the burst (1 s for where the simulator's clock starts) is a false one
    before = read_json(metrics_path)
    false_alarms = [a for a in before["alarm_log"] if a["end_time"] <= first + burst_s - 1]
    assert before["threshold"] is not None, f"no threshold before the burst: {before}"
    assert not false_alarms, f"no false alarm before the burst: {false_alarms}"
    # waits follow the stream's DAQ time (a loaded machine is slow, not wrong): the burst
    # must stand out within 30 s of it
    wait_while_progressing(lambda: above() > 0 or newest_s() > first + burst_s + 30, newest_s,
                           60, "the burst above threshold", show=lambda: before)  # fmt: skip
    metrics = read_json(metrics_path)
    assert above() > 0, f"no window above threshold 30 s into the burst: {metrics}"
    assert metrics["latest_time"] >= first + burst_s
    assert metrics["vetoed"] > 0  # the triggered muons' coincidences are vetoed
    wait_while_progressing(lambda: newest_s() > first + burst_s + 3, newest_s, 60,
                           "the burst's first seconds")  # fmt: skip
    metrics = read_json(metrics_path)
    assert metrics["highest_time"] >= first + burst_s and metrics["highest_significance"] > 5
    # drawn from this stream, the burst included (what they draw: tests/monitors/test_sn_figures.py)
    for name in ("sn_bg_histogram", "sn_pk_history"):
        stamps = png_text(tmp_path / "plots" / f"{name}.png")
        assert stamps["stale"] == "false" and stamps["data_until"] >= utc(first + burst_s), stamps


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_recorded_timeslices_go_through_timesync_sn_and_k40(ligier, spawn, tmp_path: Path) -> None:
    tssn = km3net_testdata.data_path("daq/IO_TSSN.dat")
    tsl1 = km3net_testdata.data_path("daq/IO_TSL1_1003.dat")
    orca = km3net_testdata.data_path("detx/detx_v4.detx")  # det 44: the DOMs of IO_TSSN.dat
    frames = [decode_timeslice(m.payload).frames for m in iter_file(tsl1)]
    dom_ids = sorted({int(d) for f in frames for d in f["dom_id"]})
    orca_48 = tmp_path / "det48.detx"  # IO_TSL1_1003.dat (det 48): its DOM ids on one DU
    orca_48.write_text(detector_with_dom_ids(dom_ids, det_id=48))
    data = tmp_path / "data"
    common = ["-p", ligier.port, "-o", tmp_path / "plots", "--data-dir", data, "-i", "2"]
    spawn("timesync", "--detx", orca, *common, "-m", "127.0.0.1", "-q", ligier.port)
    spawn("sn", "--detx", orca, *common)
    spawn("k40", "--detx", orca_48, *common, "--period", "3")
    for name, tag in (("timesync", "IO_TSSN"), ("sn", "IO_TSSN"), ("k40", "IO_TSL1")):
        wait_until(lambda n=name, t=tag: subscribed(ligier.port, n, t), 30, f"{name} subscribed")
    with Client("127.0.0.1", ligier.port) as client:  # one bad message of each: counted
        for path, tag in ((tssn, "IO_TSSN"), (tsl1, "IO_TSL1")):
            payload = next(iter(iter_file(path))).payload
            client.publish(tag, payload[: len(payload) - 7])
    spawn("replay", "-p", ligier.port, "--speed", 5, "--loop", "--no-progress", tssn, tsl1)

    def records() -> dict[str, dict]:
        return {n: read_json(data / "freshness" / f"{n}.json") for n in ("timesync", "sn", "k40")}

    wait_until(lambda: (data / "k40" / "offsets.csv").exists(), 90, "a K40 calibration",
               show=records)  # fmt: skip
    wait_until(lambda: all(r.get("messages", 0) > 3 for r in records().values()), 60,
               "every monitor fed", show=records)  # fmt: skip
    for name, record in records().items():
        assert record["decode_errors"] == 1 and record["unknown_doms"] == 0, (name, record)
        assert record["state"] == "running", (name, record)
    plots = tmp_path / "plots"
    names = ("intradom.png", "sn_bg_histogram.png")
    wait_until(lambda: all((plots / n).exists() for n in names), 30, "plots")
    assert (plots / "timesync.png").exists()
    timesync = read_json(data / "metrics" / "timesync.json")
    assert not timesync["white_rabbit_lost"] and not timesync["udp_incomplete"]
