"""File readers, the recording writer, and the ``inspect`` and ``record`` commands."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from km3mon import daq
from km3mon.cli import main
from km3mon.controlhost import Client, encode_frame
from km3mon.daq.files import (
    CONTROLHOST,
    JDAQ,
    LENGTH_FRAMED,
    RecordingWriter,
    detect_layout,
    iter_file,
)
from tests.conftest import Ligier, Process, wait_subscribed, wait_until
from tests.daq.conftest import DAQ_FILES, all_messages, data_path, messages


@pytest.mark.parametrize("name", DAQ_FILES)
def test_testdata_walk_ends_exactly_at_eof(name: str) -> None:
    path = Path(data_path(name))
    content = path.read_bytes()
    layout = detect_layout(content[:16], len(content))
    assert layout == (LENGTH_FRAMED if name == "IO_MONIT.dat" else JDAQ)
    framing = 4 if layout == LENGTH_FRAMED else 0
    assert sum(len(m.payload) + framing for m in messages(name)) == len(content)


def write_recording(path: Path) -> list[tuple[str, bytes]]:
    recorded = [(m.tag, m.payload) for _, _, m in all_messages()]
    with RecordingWriter(path) as writer:
        for tag, payload in recorded:
            writer.write(tag, payload)
    return recorded


def test_recording_replays_exactly(tmp_path: Path) -> None:
    path = tmp_path / "all.chr"
    recorded = write_recording(path)
    assert path.read_bytes() == b"".join(encode_frame(tag, payload) for tag, payload in recorded)
    read = list(iter_file(path))
    assert [(m.tag, m.payload) for m in read] == recorded
    assert detect_layout(path.read_bytes()[:16], path.stat().st_size) == CONTROLHOST
    assert read[1].offset == 16 + len(recorded[0][1])


def test_truncated_recording_names_the_offset(tmp_path: Path) -> None:
    path = tmp_path / "cut.chr"
    write_recording(path)
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(daq.DAQFormatError, match=r"payload: needs \d+ bytes at offset \d+"):
        list(iter_file(path))


def test_empty_file_has_no_messages(tmp_path: Path) -> None:
    (tmp_path / "empty").write_bytes(b"")
    assert list(iter_file(tmp_path / "empty")) == []


def test_inspect_text(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "all.chr"
    write_recording(path)
    assert main(["inspect", str(path), "--first", "2"]) == 0
    out = capsys.readouterr().out
    assert "147 messages" in out
    assert "IO_SUM          84" in out
    assert "detector ids: 7, 44, 48" in out
    assert "#1 @5740: tag=IO_EVT" in out


def test_inspect_json_lines(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", data_path("IO_EVT.dat"), "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["kind"] for line in lines] == ["message"] * 3 + ["summary"]
    assert lines[0]["triggers"] == ["3DShower", "MXShower", "3DMuon"]
    assert lines[0]["n_snapshot"] == 239
    assert lines[-1]["first_utc"] == "2019-11-22T14:27:53.300+00:00"


def test_inspect_reports_bad_messages(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.chr"
    with RecordingWriter(path) as writer:
        writer.write("IO_EVT", messages("IO_EVT.dat")[0].payload[:100])
        writer.write("MSG", b"hello F0 world")
    assert main(["inspect", str(path), "--json"]) == 1
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert "preamble length 5724" in lines[0]["error"]
    assert lines[1]["source"] == "DataFilter"


def test_inspect_broken_layout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "junk").write_bytes(b"\xff" * 40)
    assert main(["inspect", str(tmp_path / "junk")]) == 2
    assert "unknown file layout" in capsys.readouterr().err
    assert main(["inspect", str(tmp_path / "missing")]) == 2
    assert "No such file" in capsys.readouterr().err


def test_record_from_a_ligier(
    tmp_path: Path, ligier: Ligier, spawn: Callable[..., Process]
) -> None:
    output = tmp_path / "recorded.chr"
    tags = "IO_EVT, IO_MONIT"
    options = ("-H", "127.0.0.1", "-p", ligier.port, "-o", output, "--count", 9)
    recorder = spawn("record", "-m", tags, *options, name="record")
    wait_subscribed(ligier.port, "IO_EVT, IO_MONIT")
    sent = [(m.tag, m.payload) for m in (*messages("IO_EVT.dat"), *messages("IO_MONIT.dat"))]
    with Client("127.0.0.1", ligier.port, name="test") as client:
        client.publish("IO_SUM", messages("IO_SUM.dat")[0].payload)  # not subscribed
        client.publish_many(sent)
        wait_until(lambda: not recorder.alive(), timeout_s=60, what="record to stop")
    assert recorder.stop() == 0
    assert [(m.tag, m.payload) for m in iter_file(output)] == sent
    assert "wrote 9 messages" in recorder.log
