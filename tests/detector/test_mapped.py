"""A parsed detector shared by the suite's processes through ``data/detectors``: read back
exactly, mapped (not copied), never stale after an edit, and no worse than parsing when the
folder is damaged or cannot be written."""

from __future__ import annotations

import dataclasses
import logging
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from km3mon.detector import detx as detx_module
from km3mon.detector import load_detector, mapped
from km3mon.detector.mapped import ARRAYS, key_of

from .conftest import DETX_DIR

#: v5 with DOM and PMT status, v3 without DOM positions, and ARCA-21 as the suite runs it.
FILES = ["detx_v5.detx", "detx_v3.detx", "KM3NeT_00000133_20221025.detx"]


def same(first, second) -> None:
    for field in dataclasses.fields(first):
        a, b = getattr(first, field.name), getattr(second, field.name)
        if isinstance(a, np.ndarray):
            assert a.dtype == b.dtype and np.array_equal(a, b, equal_nan=True), field.name
        elif field.name != "_index":
            assert a == b, field.name


def mapped_files() -> set[str]:
    """Files this process maps (``/proc/self/maps``)."""
    lines = Path("/proc/self/maps").read_text().splitlines()
    return {line.split(maxsplit=5)[5] for line in lines if len(line.split(maxsplit=5)) == 6}


def forbid_parsing(monkeypatch) -> None:
    def refuse(*_args, **_kwargs):
        raise AssertionError("parsed although a saved detector exists")

    monkeypatch.setattr(detx_module._DetxReader, "read", refuse)


@pytest.mark.parametrize("name", FILES)
def test_a_saved_detector_reads_back_as_parsed_and_is_mapped(name, tmp_path, monkeypatch) -> None:
    path = DETX_DIR / name
    parsed = load_detector(None, path, environ={})
    first = load_detector(None, path, environ={}, share_in=tmp_path)
    same(parsed, first)
    forbid_parsing(monkeypatch)
    second = load_detector(None, path, environ={}, share_in=tmp_path)
    same(parsed, second)
    assert second.source == str(path)
    folder = tmp_path / key_of(path.read_bytes())
    mapped = mapped_files()
    assert {str(folder / f"{array}.npy") for array in ARRAYS} <= mapped
    assert second.pmt_pos_m.flags.writeable  # copy-on-write: numba and numpy see plain arrays
    assert [p.name for p in tmp_path.iterdir()] == [folder.name]  # no temporary folder left


def test_an_edited_detx_is_parsed_anew_and_old_ones_are_pruned(tmp_path, monkeypatch) -> None:
    detx = tmp_path / "detector.detx"
    text = (DETX_DIR / "detx_v5.detx").read_text()
    detx.write_text(text)
    share = tmp_path / "detectors"
    before = load_detector(None, detx, environ={}, share_in=share)
    first_pmt = before.pmt_ids[0]
    line = re.compile(rf"^(\s*){first_pmt}(\s)", re.MULTILINE)
    line_edited = line.sub(rf"\g<1>{first_pmt + 7}\g<2>", text, count=1)
    detx.write_text(line_edited)
    after = load_detector(None, detx, environ={}, share_in=share)
    assert after.pmt_ids[0] == first_pmt + 7
    assert len(list(share.iterdir())) == 2
    monkeypatch.setattr(mapped, "KEEP", 2)
    detx.write_text(text + "# a third version\n")
    newest = load_detector(None, detx, environ={}, share_in=share)
    assert {p.name for p in share.iterdir()} == {
        key_of(version.encode()) for version in (line_edited, text + "# a third version\n")
    }
    assert newest.pmt_ids[0] == first_pmt


def test_a_damaged_saved_detector_is_parsed_again(tmp_path, caplog) -> None:
    path = DETX_DIR / "detx_v5.detx"
    parsed = load_detector(None, path, environ={})
    load_detector(None, path, environ={}, share_in=tmp_path)
    damaged = tmp_path / key_of(path.read_bytes()) / "pmt_pos_m.npy"
    damaged.write_bytes(damaged.read_bytes()[:100])
    with caplog.at_level(logging.WARNING, logger="km3mon.detector.mapped"):
        again = load_detector(None, path, environ={}, share_in=tmp_path)
    same(parsed, again)
    assert "unreadable" in caplog.text and "parsing" in caplog.text


def test_a_folder_that_cannot_be_written_costs_only_the_sharing(tmp_path, caplog) -> None:
    path = DETX_DIR / "detx_v5.detx"
    blocked = tmp_path / "detectors"
    blocked.write_text("a file where the folder should be")
    with caplog.at_level(logging.WARNING, logger="km3mon.detector.mapped"):
        detector = load_detector(None, path, environ={}, share_in=blocked)
    same(load_detector(None, path, environ={}), detector)
    assert "kept in memory" in caplog.text


def test_processes_starting_together_share_one_folder(tmp_path) -> None:
    """Six processes load the ARCA-21 DETX at once into an empty folder, as supervisord
    starts the suite: each gets the detector, one folder remains, no temporary one."""
    path = DETX_DIR / "KM3NeT_00000133_20221025.detx"
    share = tmp_path / "detectors"
    script = (
        "import sys; from km3mon.detector import load_detector;"
        f"d = load_detector(None, {str(path)!r}, environ={{}}, share_in={str(share)!r});"
        "print(d.det_id, len(d.pmt_ids), float(d.pmt_t0_ns.sum()))"
    )
    children = [
        subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
        for _ in range(6)
    ]
    answers = [child.communicate(timeout=300)[0].strip() for child in children]
    assert [child.returncode for child in children] == [0] * 6, answers
    parsed = load_detector(None, path, environ={})
    assert set(answers) == {f"{parsed.det_id} {len(parsed.pmt_ids)} {parsed.pmt_t0_ns.sum()}"}
    assert [p.name for p in share.iterdir()] == [key_of(path.read_bytes())]
