"""msg_dumper as a real process: every delivered line written once, in order, across rotations."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from km3mon.controlhost import Client
from tests.conftest import free_port, wait_subscribed, wait_until


def all_lines(folder: Path) -> list[str]:
    """Archives in time order, then the current file."""
    files = [*sorted(folder.glob("MSG_*.log")), folder / "MSG.log"]
    return [line for f in files if f.exists() for line in f.read_text().splitlines()]


def test_100k_lines_in_order_across_rotations_and_a_ligier_restart(
    start_ligier, spawn, tmp_path
) -> None:
    port = free_port()
    ligier = start_ligier(port=port)
    logs, data = tmp_path / "logs", tmp_path / "data"
    dumper = spawn("msg_dumper", "-p", port, "-f", logs / "MSG.log", "--data-dir", data,
                   "--rotate-every", "1")  # fmt: skip
    wait_subscribed(port, "MSG", name="msg_dumper")
    sources = ["F0", "Q0", "W0", "A0", "XX"]
    lines = [f"2026-11-23 12:00:00 DAQ {sources[i % 5]} STATUS line {i}" for i in range(100_000)]
    with Client("127.0.0.1", port) as publisher:
        for start in range(0, 50_000, 1000):
            publisher.publish_many([("MSG", line.encode()) for line in lines[start : start + 1000]])
            time.sleep(0.06)  # spread over 3 s of 1 s periods: at least two rotations
    wait_until(lambda: len(all_lines(logs)) == 50_000, timeout_s=120, what="the first half")

    ligier.process.stop()
    start_ligier(port=port)
    wait_subscribed(port, "MSG", name="msg_dumper")  # back by itself
    with Client("127.0.0.1", port) as publisher:
        for start in range(50_000, 100_000, 5000):
            publisher.publish_many([("MSG", line.encode()) for line in lines[start : start + 5000]])
        publisher.publish("MSG", b"bad bytes \xff\xfe and a\nsecond line")
    wait_until(lambda: len(all_lines(logs)) == 100_001, timeout_s=120, what="everything")

    written = all_lines(logs)
    tags = {"F0": "DataFilter", "Q0": "DataQueue", "W0": "DataWriter", "A0": "AcousticDataFilter"}
    expected = [f"MSG.log [{tags.get(line.split()[3], 'Other')}]: {line}" for line in lines]
    assert written[:-1] == expected
    assert written[-1] == "MSG.log [Other]: bad bytes \\xff\\xfe and a\\nsecond line"
    assert len(list(logs.glob("MSG_*.log"))) >= 2, "rotated at least twice"
    record = json.loads((data / "freshness" / "msg_dumper.json").read_text())
    assert record["reconnects"] >= 1
    assert dumper.alive()


def test_a_line_with_two_process_codes_is_tagged_as_the_original_tagged_it() -> None:
    from km3mon.monitors.msg_dumper import source_of

    # The original tested " A0", " F0", " Q0", " W0" in this order, each match overriding
    # the one before: the last of them present wins, wherever it stands in the line.
    precedence = ["A0", "F0", "Q0", "W0"]
    names = {"A0": "AcousticDataFilter", "F0": "DataFilter", "Q0": "DataQueue",
             "W0": "DataWriter"}  # fmt: skip
    for first in precedence:
        for second in precedence:
            line = f"2026-11-23 12:00:00 {first} forwarded to {second} done"
            winner = max(first, second, key=precedence.index)
            assert source_of(line) == names[winner], line
    assert source_of("no code here") == "Other"


def test_the_log_is_rotated_at_utc_midnight(tmp_path, monkeypatch) -> None:
    """The default period (a UTC day) across a real UTC midnight, on the monitor's own code
    with its clock set to the last seconds of a day: lines that arrive before midnight go to
    the archive named after the day that ended, later ones to a new MSG.log; a restart the
    next day archives a file left from before (a dumper that was down at midnight)."""
    import argparse
    import logging

    from km3mon.config import load_pipeline
    from km3mon.controlhost import Message
    from km3mon.monitors import msg_dumper
    from km3mon.runtime.freshness import Freshness
    from km3mon.runtime.monitor import Context

    midnight = 1_796_083_200.0  # 2026-12-01 00:00:00 UTC
    clock = [midnight - 3.0]
    monkeypatch.setattr(msg_dumper.time, "time", lambda: clock[0])
    logs = tmp_path / "logs"
    args = argparse.Namespace(file=str(logs / "MSG.log"), rotate_every=msg_dumper.DAY_S,
                              plot_dir=tmp_path, data_dir=tmp_path, det_id=0,
                              detx=None)  # fmt: skip
    freshness = Freshness(process="msg_dumper", pid=0, started_at=clock[0], ligier="-",
                          tags=["MSG"], render_interval_s=1.0, stale_after_s=60.0)  # fmt: skip
    dumper = msg_dumper.MSGDumper(
        Context(args, freshness, logging.getLogger("test"), load_pipeline(None))
    )
    lines = [f"2026-11-30 DAQ F0 STATUS line {i}" for i in range(12)]
    for line in lines:  # one line every half second: 6 before midnight, 6 after
        dumper.consume([Message("MSG", line.encode())])
        clock[0] += 0.5
        dumper.render()
    archive = logs / "MSG_2026-11-30.log"
    assert sorted(p.name for p in logs.iterdir()) == ["MSG.log", archive.name]
    tagged = [f"MSG.log [DataFilter]: {line}" for line in lines]
    assert archive.read_text().splitlines() == tagged[:6]
    assert (logs / "MSG.log").read_text().splitlines() == tagged[6:]
    dumper.stream.close()

    written_s = clock[0]
    os.utime(logs / "MSG.log", (written_s, written_s))  # last written on the fake clock
    clock[0] = midnight + 86_400 + 60  # restarted the next day: yesterday's file archived
    dumper = msg_dumper.MSGDumper(
        Context(args, freshness, logging.getLogger("test"), load_pipeline(None))
    )
    dumper.stream.close()
    assert (logs / "MSG_2026-12-01.log").read_text().splitlines() == tagged[6:]
