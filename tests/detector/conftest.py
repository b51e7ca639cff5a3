"""Fixtures: the km3net-testdata files and km3pipe as the oracle."""

from __future__ import annotations

import io
import struct
import warnings
from pathlib import Path

import numpy as np
import pytest
from km3net_testdata import data_path

DETX_DIR = Path(data_path("detx"))
DB_DIR = Path(data_path("db"))

#: Testdata DETX files that are valid; the multi-line-comment one is deliberately broken.
BROKEN_DETX = {"detx_v5_invalid_multiline_comments.detx"}
VALID_DETX = sorted(p.name for p in DETX_DIR.glob("*.detx") if p.name not in BROKEN_DETX)


def km3pipe_detector(name: str):
    """km3pipe's reading of a testdata DETX file (quietly)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import km3pipe

        return km3pipe.hardware.Detector(filename=str(DETX_DIR / name))


def read_messages(name: str, *, length_counts_itself: bool) -> list[bytes]:
    """Messages of a testdata ``daq/*.dat`` file, each after a uint32 LE length.

    DAQ preambles count their own 4 bytes (IO_EVT.dat); IO_MONIT.dat's framing does not.
    Preamble messages are returned with their length field, others without.
    """
    raw = Path(data_path(f"daq/{name}")).read_bytes()
    messages, offset = [], 0
    while offset < len(raw):
        (length,) = struct.unpack_from("<I", raw, offset)
        if length_counts_itself:
            messages.append(raw[offset : offset + length])
            offset += length
        else:
            messages.append(raw[offset + 4 : offset + 4 + length])
            offset += 4 + length
    return messages


@pytest.fixture(scope="session")
def io_evt_hits() -> list[np.ndarray]:
    """Snapshot hits of the three IO_EVT.dat events, decoded by km3pipe (the oracle)."""
    from km3pipe.io.daq import DAQEvent, DAQPreamble

    events = []
    for message in read_messages("IO_EVT.dat", length_counts_itself=True):
        stream = io.BytesIO(message)
        DAQPreamble(file_obj=stream)
        hits = DAQEvent(file_obj=stream).snapshot_hits
        events.append(
            np.array(
                [(h[0], h[1], h[2], h[3]) for h in hits],
                dtype=[("dom_id", "<i4"), ("channel", "u1"), ("time_ns", ">u4"), ("tot", "u1")],
            )
        )
    return events


@pytest.fixture(scope="session")
def io_monit_ah() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """DOM ids and raw A and H vectors of the IO_MONIT.dat packets, decoded by km3pipe."""
    from km3pipe.io.daq import TMCHData

    messages = read_messages("IO_MONIT.dat", length_counts_itself=False)
    packets = [TMCHData(io.BytesIO(message)) for message in messages]
    return (
        np.array([p.dom_id for p in packets]),
        np.array([p.A for p in packets], dtype=float),
        np.array([p.H for p in packets], dtype=float),
    )
