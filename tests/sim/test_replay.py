"""`km3mon replay` into a real ligier: every testdata file byte-exact, paced, robust."""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

import km3net_testdata
import pytest

from km3mon.controlhost import Client, Message
from km3mon.daq.files import iter_file
from km3mon.sim.replay import daq_time
from tests.conftest import KM3MON, wait_subscribed

DAQ_DIR = Path(km3net_testdata.data_path("daq/IO_EVT.dat")).parent
DAQ_FILES = sorted(p for p in DAQ_DIR.iterdir() if p.is_file())


class Collector:
    """Subscribes before the replay starts and keeps everything that arrives."""

    def __init__(self, port: int, tags: set[str]) -> None:
        self.client = Client("127.0.0.1", port, reconnect=False).connect()
        self.client.subscribe(sorted(tags))
        self.messages: list[Message] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        wait_subscribed(port, sorted(tags))
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.messages += self.client.receive_batch(timeout=0.1)

    def wait_for(self, count: int, timeout_s: float = 20) -> list[Message]:
        deadline = time.monotonic() + timeout_s
        while len(self.messages) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.2)  # anything beyond ``count`` would be a bug: let it show
        self._stop.set()
        self._thread.join()
        self.client.close()
        return self.messages


def replay(port: int, *args: str | Path, timeout_s: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*KM3MON, "replay", "-p", str(port), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )


@pytest.mark.parametrize("path", DAQ_FILES, ids=lambda p: p.name)
def test_every_testdata_file_arrives_byte_exact_in_order(ligier, path: Path) -> None:
    expected = [Message(m.tag, m.payload) for m in iter_file(path)]
    collector = Collector(ligier.port, {m.tag for m in expected})
    result = replay(ligier.port, "--max", path)
    assert result.returncode == 0, result.stderr
    assert collector.wait_for(len(expected)) == expected
    assert f"replayed {len(expected)} messages" in result.stderr


def test_replay_keeps_the_daq_pacing(ligier) -> None:
    path = DAQ_DIR / "IO_SUM_legacy.dat"  # 81 summary slices, DAQ times not in order
    times = [daq_time(m) for m in iter_file(path)]
    paced_s = (max(times) - times[0]) / 10  # the replay waits for each new latest DAQ time
    collector = Collector(ligier.port, {"IO_SUM"})
    start = time.monotonic()
    result = replay(ligier.port, "--speed", "10", path)
    elapsed = time.monotonic() - start
    assert result.returncode == 0, result.stderr
    assert len(collector.wait_for(81)) == 81
    # Paced: never faster than the DAQ times allow (and not stuck: the process ended).
    assert elapsed > paced_s - 0.05, f"{paced_s:.2f} s of pacing took only {elapsed:.2f} s"


def test_bad_files_are_reported_and_the_rest_is_replayed(ligier, tmp_path: Path) -> None:
    missing = tmp_path / "missing.dat"
    unknown = tmp_path / "random.bin"
    unknown.write_bytes(bytes(range(7, 250)) * 3)
    good = DAQ_DIR / "IO_EVT.dat"
    truncated = tmp_path / "truncated.dat"
    truncated.write_bytes(good.read_bytes()[:-100])
    expected = [Message(m.tag, m.payload) for m in iter_file(good)]
    collector = Collector(ligier.port, {"IO_EVT"})
    result = replay(ligier.port, "--max", missing, unknown, truncated, good)
    received = collector.wait_for(2 * len(expected) - 1)
    assert result.returncode == 1
    assert received == expected[:-1] + expected, "a truncated tail loses only the last message"
    log = result.stderr
    assert f"cannot read {missing}" in log
    assert f"{unknown}: unknown file layout" in log
    assert f"{truncated}:" in log and "going on with the next file" in log
    assert "3 of 4 files could not be replayed completely" in log
    assert "Traceback" not in log
