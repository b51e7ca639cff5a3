"""The shared monitor runtime as a real process between a real ligier and real files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from km3mon.controlhost import Client
from km3mon.runtime.monitor import CONSUME_BYTES
from km3mon.runtime.streaming import _malloc_trim, release_free_memory
from km3mon.timetext import utc
from tests.conftest import REPO, free_port, wait_subscribed, wait_until
from tests.monitors.stamps import banner_fraction, png_text


def read_record(data_dir: Path) -> dict:
    path = data_dir / "freshness" / "counting.json"
    return json.loads(path.read_text()) if path.exists() else {}


def test_runtime_counts_renders_goes_stale_reconnects_and_stops(start_ligier, tmp_path) -> None:
    port = free_port()
    ligier = start_ligier(port=port)
    plots, data = tmp_path / "plots", tmp_path / "data"
    log_path = tmp_path / "monitor.log"
    monitor = subprocess.Popen(
        [sys.executable, "-m", "tests.monitors.counting", "-p", str(port), "-o", str(plots),
         "--data-dir", str(data), "-i", "0.5", "--stale-after", "1.5"],
        cwd=REPO, stdout=log_path.open("wb"), stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:
        wait_subscribed(port, "IO_EVT", name="counting")
        daq_time = 1_700_000_000.0
        with Client("127.0.0.1", port) as publisher:
            publisher.publish_many([("IO_EVT", b"n=%f" % daq_time)] * 300)
            publisher.publish_many([("IO_SUM", b"garbage")] * 7 + [("MSG", b"n=1")])
        wait_until(lambda: read_record(data).get("messages") == 307, what="307 messages")
        wait_until(lambda: read_record(data).get("decode_errors") == 7, what="7 errors")
        record = read_record(data)
        assert record["newest_data_at"] == daq_time
        assert record["dropped"] == 0
        wait_until(lambda: "counting.png" in read_record(data).get("outputs", {}), what="a plot")
        plot = plots / "counting.png"
        with Client("127.0.0.1", port) as publisher:  # data keep coming: a fresh plot
            deadline = time.monotonic() + 20
            while png_text(plot).get("stale") != "false" and time.monotonic() < deadline:
                publisher.publish("IO_EVT", b"n=%f" % daq_time)
                time.sleep(0.1)
        stamps = png_text(plot)  # the words drawn on the plot, also as PNG text chunks
        assert stamps["data_until"] == utc(daq_time)
        assert stamps["stale"] == "false" and banner_fraction(plot) == 0
        assert abs(time.mktime(time.strptime(stamps["rendered"], "%Y-%m-%d %H:%M:%S UTC"))
                   - time.mktime(time.gmtime())) < 30  # fmt: skip
        assert not list(plots.glob(".*.tmp")), "no temporary files left behind"

        # No more data: the monitor keeps running, its outputs turn stale.
        wait_until(lambda: read_record(data).get("state") == "stale", what="stale state")
        wait_until(
            lambda: read_record(data)["outputs"]["counting.png"]["stale"], what="a stale plot"
        )
        wait_until(lambda: png_text(plot).get("stale") == "true", what="a STALE stamp")
        assert banner_fraction(plot) > 0.3, "the STALE banner is drawn over the plot"
        assert png_text(plot)["data_until"] == utc(daq_time)
        assert monitor.poll() is None

        # The ligier restarts: the monitor reconnects by itself and takes data again.
        before = read_record(data)["messages"]
        ligier.process.stop()
        start_ligier(port=port)
        restart = time.monotonic()
        with Client("127.0.0.1", port) as publisher:
            while read_record(data)["messages"] <= before and time.monotonic() - restart < 60:
                publisher.publish("IO_EVT", b"n=%f" % (daq_time + 1))
                time.sleep(0.1)
            assert read_record(data)["messages"] > before, "no data after the ligier restart"
            deadline = time.monotonic() + 20  # data keep coming: "running" again
            while read_record(data).get("state") != "running":
                assert time.monotonic() < deadline, read_record(data)
                publisher.publish("IO_EVT", b"n=%f" % (daq_time + 1))
                time.sleep(0.1)
        assert read_record(data)["reconnects"] >= 1

        monitor.send_signal(signal.SIGTERM)
        assert monitor.wait(10) == 0
        assert read_record(data)["state"] == "stopped"
        log = log_path.read_text()
        assert "not a counting message: b'garbage' (1 such errors since the last report" in log
        assert "Traceback" not in log
    finally:
        if monitor.poll() is None:
            monitor.kill()


def start_counting(port: int, tmp_path: Path, data: Path, log_path: Path, *flags: str):
    """The counting monitor as a real process on ``port``, its output in ``log_path``."""
    return subprocess.Popen(
        [sys.executable, "-m", "tests.monitors.counting", "-p", str(port),
         "-o", str(tmp_path / "plots"), "--data-dir", str(data), *flags],
        cwd=REPO, stdout=log_path.open("wb"), stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip


@contextmanager
def counting(port: int, tmp_path: Path, data: Path, log_path: Path, *flags: str):
    """``start_counting`` for the block; stopped at its end by SIGTERM (exit status 0), or
    killed if the block failed."""
    monitor = start_counting(port, tmp_path, data, log_path, *flags)
    try:
        yield monitor
        monitor.send_signal(signal.SIGTERM)
        assert monitor.wait(30) == 0
    finally:
        if monitor.poll() is None:
            monitor.kill()


def test_a_stop_that_takes_longer_than_a_read_leaves_no_traceback(ligier, tmp_path) -> None:
    """The receiver's read (0.5 s) must end before its client closes: a read on a closed
    client raised in the thread, whose traceback reached the log of a monitor that took
    longer to exit (k40 waiting for a running fit; seen once in a fresh-clone make test)."""
    data, log_path = tmp_path / "data", tmp_path / "monitor.log"
    for attempt in range(3):  # the receiver must be inside a read at the stop: try a few
        with counting(ligier.port, tmp_path, data, log_path, "--slow-exit", "1.5"):
            wait_subscribed(ligier.port, "IO_EVT", name="counting")
            time.sleep(0.2 * attempt)
        log = log_path.read_text()
        assert "counting stopped after" in log, log
        assert "Traceback" not in log and "Exception in thread" not in log, log


def test_a_monitor_that_consumes_on_receipt_counts_while_it_draws(ligier, tmp_path) -> None:
    """k40 takes 64 MB/s at 230 DUs: what arrives while it draws (seconds) must be counted
    meanwhile, not queued. A monitor whose drawing takes 1 s gets a message every 20 ms: by
    default it consumes none of them during a drawing, with ``consume_on_receipt`` most of
    them, and in both cases every message in the end."""
    consumed_while_drawing = {}
    for on_receipt in (False, True):
        data, log_path = tmp_path / f"data-{on_receipt}", tmp_path / f"monitor-{on_receipt}.log"
        on_receipt_flag = ["--on-receipt"] if on_receipt else []
        monitor = start_counting(ligier.port, tmp_path, data, log_path, "-i", "0.5",
                                 "--slow-render", "1", *on_receipt_flag)  # fmt: skip
        try:
            wait_subscribed(ligier.port, "IO_EVT", name="counting")
            with Client("127.0.0.1", ligier.port) as publisher:
                for _ in range(200):  # 4 s: drawings of 1 s every 0.5 s, back to back
                    publisher.publish("IO_EVT", b"n=1700000000")
                    time.sleep(0.02)
            wait_until(lambda d=data: read_record(d).get("messages") == 200, what="200 messages")
            monitor.send_signal(signal.SIGTERM)
            assert monitor.wait(30) == 0
        finally:
            if monitor.poll() is None:
                monitor.kill()
        log = log_path.read_text()
        assert "Traceback" not in log, log
        counts = [int(line.rsplit(":", 1)[1]) for line in log.splitlines()
                  if "consumed while drawing" in line]  # fmt: skip
        assert len(counts) >= 2, log
        consumed_while_drawing[on_receipt] = counts
    assert not any(consumed_while_drawing[False]), consumed_while_drawing
    # at least one whole drawing while messages came (about 50 of them; 10 is only a hang)
    assert max(consumed_while_drawing[True]) >= 10, consumed_while_drawing


def test_a_backlog_is_consumed_in_parts_of_bounded_size(ligier, tmp_path) -> None:
    """What arrives while a monitor draws is handed to ``consume`` in parts of at most
    ``CONSUME_BYTES``: decoding a whole backlog at once made transient arrays of tens of MB
    at 230 DUs. 40 messages of 256 kB sent during a 2 s drawing: all counted, none given
    in a part larger than the bound."""
    data, log_path = tmp_path / "data", tmp_path / "monitor.log"
    message = b"n=1700000000".ljust(1 << 18, b"0")
    with counting(ligier.port, tmp_path, data, log_path, "-i", "0.5", "--slow-render", "2"):
        wait_subscribed(ligier.port, "IO_EVT", name="counting")
        wait_until(lambda: "consumed while drawing" in log_path.read_text(), what="a drawing")
        with Client("127.0.0.1", ligier.port) as publisher:
            publisher.publish_many([("IO_EVT", message)] * 40)
        wait_until(lambda: read_record(data).get("messages") == 40, what="40 messages")
    log = log_path.read_text()
    largest = int(log.split("largest consume:")[1].split()[0])
    assert len(message) <= largest <= CONSUME_BYTES, log


def test_record_says_disconnected_while_the_ligier_is_down(start_ligier, tmp_path) -> None:
    port = free_port()
    ligier = start_ligier(port=port)
    data = tmp_path / "data"
    monitor = subprocess.Popen(
        [sys.executable, "-m", "tests.monitors.counting", "-p", str(port), "-o",
         str(tmp_path / "plots"), "--data-dir", str(data), "-i", "0.5", "--stale-after", "120"],
        cwd=REPO, stdout=(tmp_path / "monitor.log").open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        wait_subscribed(port, name="counting")

        def publish_until_running() -> None:
            with Client("127.0.0.1", port) as publisher:
                deadline = time.monotonic() + 30
                while read_record(data).get("state") != "running":
                    assert time.monotonic() < deadline, read_record(data)
                    publisher.publish("IO_EVT", b"n=%f" % time.time())
                    time.sleep(0.1)

        publish_until_running()
        ligier.process.stop()
        wait_until(lambda: read_record(data).get("state") == "disconnected", what="disconnected")
        time.sleep(3)  # retrying all the while: still disconnected, data or not
        record = read_record(data)
        assert (record["state"], record["connected"]) == ("disconnected", False)
        assert time.time() - record["updated_at"] < 30, "the record is kept up to date"
        start_ligier(port=port)
        publish_until_running()
        assert read_record(data)["connected"] is True
    finally:
        monitor.kill()
        monitor.wait()


def test_outputs_turn_stale_after_three_intervals_and_at_least_a_minute(ligier, tmp_path) -> None:
    """The README's default rule, as the running process applies it (the other tests choose
    --stale-after to be quick), in the record the dashboard judges by."""
    processes = []
    try:
        for interval_s, expected_s in ((1, 60), (30, 90)):
            data = tmp_path / f"data{interval_s}"
            processes.append(subprocess.Popen(
                [sys.executable, "-m", "tests.monitors.counting", "-p", str(ligier.port),
                 "-o", str(tmp_path / "plots"), "--data-dir", str(data), "-i", str(interval_s)],
                cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            ))  # fmt: skip
            wait_until(lambda d=data, e=expected_s: read_record(d).get("stale_after_s") == e,
                       what=f"stale after {expected_s} s at {interval_s} s intervals",
                       show=lambda d=data: read_record(d))  # fmt: skip
    finally:
        for process in processes:
            process.terminate()
            process.wait(10)


def test_round_robin_draws_the_longest_waiting_first_and_ties_in_the_given_order() -> None:
    from km3mon.runtime.monitor import RoundRobin

    robin, drawn = RoundRobin(), []
    robin.start(["summary", 1, 2, 3])  # the detector-wide image first, not after every DU
    while robin.run(drawn.append):
        pass
    assert drawn == ["summary", 1, 2, 3]
    robin.rendered_at[1] = -1.0  # as if 1 had been drawn long before the others
    robin.start(["summary", 1, 2, 3])
    drawn.clear()
    while robin.run(drawn.append):
        pass
    assert drawn == [1, "summary", 2, 3]
    robin.rendered_at.pop(3)  # never drawn: it would come first, but for a new result
    robin.start(["summary", 1, 2, 3], first=("summary",))
    drawn.clear()
    while robin.run(drawn.append):
        pass
    assert drawn == ["summary", 3, 1, 2]


def test_memory_freed_by_another_thread_goes_back_to_the_system() -> None:
    """Payloads the receiver thread allocated and the main thread freed stay resident in the
    receiver's arena until ``release_free_memory`` (a backlog must not cost memory for good)."""
    if _malloc_trim() is None:
        pytest.skip("the C library has no malloc_trim")

    def resident_mb() -> float:
        return (
            int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6
        )

    backlog: list[bytes] = []
    receiver = threading.Thread(
        target=lambda: backlog.extend(os.urandom(80_000) for _ in range(2500))
    )
    receiver.start()
    receiver.join()
    del backlog[:-10]  # consumed: 200 MB freed, the newest messages still queued
    before = resident_mb()
    release_free_memory()
    assert resident_mb() < before - 100, (
        f"{before:.0f} MB resident before, {resident_mb():.0f} after"
    )
