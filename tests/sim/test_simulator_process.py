"""`km3mon simulate` as a real process publishing into a real ligier on loopback."""

from __future__ import annotations

import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from km3mon import daq
from km3mon.controlhost import Client, Message
from km3mon.sim.simulator import Simulator
from tests.conftest import KM3MON, NEVER_LEAVE_OUT_S, free_port, wait_subscribed, wait_until
from tests.sim.test_simulator_support import ORCA6_DETX, orca6

TAGS = ["IO_SUM", "IO_MONIT", "IO_EVT", "MSG"]


class Subscriber:
    """Collects every message of ``TAGS`` from a ligier in a background thread."""

    def __init__(self, port: int) -> None:
        self.messages: list[Message] = []
        self._stop = threading.Event()
        self._client = Client("127.0.0.1", port, name="test-subscriber")
        self._client.connect()
        self._client.subscribe(TAGS, mode="all")
        self._thread = threading.Thread(target=self._collect, daemon=True)
        self._thread.start()
        wait_subscribed(port, TAGS, name="test-subscriber")  # before anything is published

    def _collect(self) -> None:
        while not self._stop.is_set():
            self.messages.extend(self._client.receive_batch(timeout=0.1))

    def tags(self) -> Counter:
        return Counter(m.tag for m in self.messages)

    def stop(self) -> None:
        time.sleep(0.3)  # what is in flight arrives
        self._stop.set()
        self._thread.join(5)
        self._client.close()


@contextmanager
def subscribed(port: int) -> Iterator[Subscriber]:
    subscriber = Subscriber(port)
    try:
        yield subscriber
    finally:
        subscriber.stop()


def test_stream_through_a_ligier_decodes_and_shows_the_scenario(start_ligier, spawn) -> None:
    ligier = start_ligier()
    arguments = ["--seed", "5", "--scenario", "silent-dom@10"]
    with subscribed(ligier.port) as subscriber:
        process = spawn(
            "simulate", "--detx", ORCA6_DETX, "-p", ligier.port, "--speed", "10",
            "--simulated-seconds", "20", "--max-lag", NEVER_LEAVE_OUT_S, *arguments,
        )  # fmt: skip
        assert process.popen.wait(120) == 0
        n_slices = 200  # 20 simulated seconds at any load
        n_monit = 114 * n_slices - (n_slices - 100)  # minus the silent DOM
        wanted = {"IO_SUM": n_slices, "IO_MONIT": n_monit}
        wait_until(lambda: all(subscriber.tags().get(t, 0) >= n for t, n in wanted.items()),
                   30, "every timeslice's messages", show=subscriber.tags)  # fmt: skip
    counts = subscriber.tags()
    assert set(counts) == set(TAGS)
    assert counts["IO_SUM"] == n_slices
    assert counts["IO_MONIT"] == n_monit
    decoded = [daq.decode(m.tag, m.payload) for m in subscriber.messages]  # raises if bad

    planned = Simulator(orca6(), seed=5, scenarios=["silent-dom@10"]).scenarios[0]
    assert f"scenario {planned.describe()}" in process.log
    silent = planned.dom_ids[0]
    slices = [obj for obj in decoded if isinstance(obj, daq.Summaryslice)]
    assert [s.header.frame_index for s in slices] == list(range(1, len(slices) + 1))
    utc = np.array([s.header.timestamp for s in slices])
    assert np.allclose(np.diff(utc), 0.1)
    with_silent = [bool(np.isin(silent, s.dom_ids)) for s in slices]
    assert with_silent == [True] * 100 + [False] * (n_slices - 100)
    assert "stopped after" in process.log


def test_sigterm_stops_cleanly(start_ligier, spawn) -> None:
    ligier = start_ligier()
    with subscribed(ligier.port) as subscriber:
        process = spawn("simulate", "--detx", ORCA6_DETX, "-p", ligier.port)
        wait_until(lambda: subscriber.tags()["IO_SUM"] >= 2, 20, "two summary slices")
        assert process.stop() == 0
    assert "stopped after" in process.log


def test_log_lines_go_to_the_log_ligier(start_ligier, spawn) -> None:
    data_ligier, log_ligier = start_ligier(), start_ligier()
    with subscribed(data_ligier.port) as data, subscribed(log_ligier.port) as logs:
        process = spawn(
            "simulate", "--detx", ORCA6_DETX, "-p", data_ligier.port,
            "--log-port", log_ligier.port, "--speed", "20", "--simulated-seconds", "40",
            "--max-lag", NEVER_LEAVE_OUT_S,
        )  # fmt: skip
        assert process.popen.wait(300) == 0
    assert set(logs.tags()) == {"MSG"} and logs.tags()["MSG"] >= 4
    assert "MSG" not in data.tags() and data.tags()["IO_SUM"] > 0
    for message in logs.messages:
        assert daq.decode("MSG", message.payload).source is not None


def test_waits_for_a_ligier_that_is_not_there_yet_and_stops_on_sigterm(spawn) -> None:
    process = spawn("simulate", "--detx", ORCA6_DETX, "-p", free_port())
    wait_until(lambda: "retrying" in process.log, 20, "a retry message")
    assert process.stop() == 0


def test_daq_times_are_the_wall_clock_when_publishing_starts(start_ligier, spawn) -> None:
    """The stream's DAQ time is the wall clock: neither the set-up nor a wait for a ligier
    that comes late may age it (a monitor would report that as lag)."""
    port = free_port()
    process = spawn("simulate", "--detx", ORCA6_DETX, "-p", port)
    wait_until(lambda: "retrying" in process.log, 20, "the simulator waiting for its ligier")
    time.sleep(5)  # the ligier comes late
    ligier_up = time.time()
    start_ligier(port=port)
    with subscribed(port) as subscriber:
        wait_until(lambda: subscriber.tags()["IO_SUM"] >= 20, 120, "two seconds of stream",
                   show=subscriber.tags)  # fmt: skip
        arrived = time.time()
        stamps = [daq.decode("IO_SUM", m.payload).header.timestamp
                  for m in subscriber.messages if m.tag == "IO_SUM"]  # fmt: skip
    # Aged by the set-up or the wait, the first slice would be stamped before the ligier was
    # up (by the 5 s wait at least); however slowly a loaded machine delivers, never later
    # than its arrival. (Timestamps are whole seconds: 1 s of slack.)
    assert ligier_up - 1 <= min(stamps) <= max(stamps) <= arrived, (
        f"first slice at {min(stamps) - ligier_up:+.1f} s from the ligier's start, "
        f"newest {arrived - max(stamps):.1f} s before its arrival"
    )


def test_bad_input_exits_2_with_a_clear_message(tmp_path) -> None:
    cases = [
        (["--detx", str(tmp_path / "missing.detx")], "cannot read DETX file"),
        (["--detx", ORCA6_DETX, "--scenario", "dead-dom"], "unknown scenario 'dead-dom'"),
        (["--detx", ORCA6_DETX, "--speed", "0"], "--speed must be positive"),
    ]
    for arguments, message in cases:
        result = subprocess.run(
            [*KM3MON, "simulate", "-p", str(free_port()), *arguments],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert result.returncode == 2, result.stderr
        assert message in result.stderr
