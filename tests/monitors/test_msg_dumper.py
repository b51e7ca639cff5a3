"""msg_dumper as a real process: every delivered line written once, in order, across rotations."""

from __future__ import annotations

import json
import time
from pathlib import Path

from km3mon.controlhost import Client, query_status
from tests.conftest import free_port, wait_until


def all_lines(folder: Path) -> list[str]:
    """Archives in time order, then the current file."""
    files = [*sorted(folder.glob("MSG_*.log")), folder / "MSG.log"]
    return [line for f in files if f.exists() for line in f.read_text().splitlines()]


def subscribed(port: int) -> bool:
    try:
        return "subscription [w MSG]" in query_status("127.0.0.1", port)
    except OSError:
        return False


def test_100k_lines_in_order_across_rotations_and_a_ligier_restart(
    start_ligier, spawn, tmp_path
) -> None:
    port = free_port()
    ligier = start_ligier(port=port)
    logs, data = tmp_path / "logs", tmp_path / "data"
    dumper = spawn("msg_dumper", "-p", port, "-f", logs / "MSG.log", "--data-dir", data,
                   "--rotate-every", "1")  # fmt: skip
    wait_until(lambda: subscribed(port), what="msg_dumper subscribed")
    sources = ["F0", "Q0", "W0", "A0", "XX"]
    lines = [f"2026-11-23 12:00:00 DAQ {sources[i % 5]} STATUS line {i}" for i in range(100_000)]
    with Client("127.0.0.1", port) as publisher:
        for start in range(0, 50_000, 1000):
            publisher.publish_many([("MSG", line.encode()) for line in lines[start : start + 1000]])
            time.sleep(0.02)  # spread over ~1 s periods, so several rotations happen
    wait_until(lambda: len(all_lines(logs)) == 50_000, timeout_s=30, what="the first half")

    ligier.process.stop()
    start_ligier(port=port)
    wait_until(lambda: subscribed(port), timeout_s=15, what="msg_dumper back")
    with Client("127.0.0.1", port) as publisher:
        for start in range(50_000, 100_000, 5000):
            publisher.publish_many([("MSG", line.encode()) for line in lines[start : start + 5000]])
        publisher.publish("MSG", b"bad bytes \xff\xfe and a\nsecond line")
    wait_until(lambda: len(all_lines(logs)) == 100_001, timeout_s=30, what="everything")

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
