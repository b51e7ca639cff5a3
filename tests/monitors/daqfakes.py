"""Hand-made DAQ payloads with known content, for feeding monitors in tests."""

from __future__ import annotations

import numpy as np

from km3mon.daq import DAQHeader, Event, encode_event, encode_summaryslice
from km3mon.daq.event import SNAPSHOT_HIT_DTYPE, TRIGGERED_HIT_DTYPE
from km3mon.daq.summaryslice import FRAME_DTYPE, Summaryslice, hz_to_rates

T0 = 1_700_000_000.0
UNKNOWN_DOM = 123


def header(time_s: float, run: int, det_id: int = 133, frame_index: int | None = None) -> DAQHeader:
    cycles = int((time_s % 1) * 1e9 / 16)
    frame = int(time_s * 10) % 2**31 if frame_index is None else frame_index
    return DAQHeader(det_id=det_id, run=run, frame_index=frame, utc_seconds=int(time_s),
                     utc_16ns_cycles=cycles)  # fmt: skip


def make_event(
    number: int,
    run: int,
    dom_ids: np.ndarray,
    rng: np.random.Generator,
    *,
    n_hits: int | None = None,
    overlays: int = 0,
    time_s: float | None = None,
) -> tuple[bytes, np.ndarray]:
    """An event with random snapshot hits on ``dom_ids``, every third of them triggered."""
    n_hits = int(rng.integers(5, 60)) if n_hits is None else n_hits
    snapshot = np.zeros(n_hits, SNAPSHOT_HIT_DTYPE)
    snapshot["dom_id"] = rng.choice(dom_ids, n_hits)
    snapshot["channel"] = rng.integers(0, 31, n_hits)
    snapshot["time_ns"] = np.sort(rng.integers(0, 100_000_000, n_hits))
    snapshot["tot"] = rng.integers(1, 60, n_hits)
    chosen = snapshot[::3]
    triggered = np.zeros(len(chosen), TRIGGERED_HIT_DTYPE)
    for name in SNAPSHOT_HIT_DTYPE.names:
        triggered[name] = chosen[name]
    triggered["trigger_mask"] = 16
    when = 1_700_000_000 + number if time_s is None else time_s
    event = Event(header(when, run, frame_index=number), number, 16, overlays, triggered, snapshot)
    return encode_event(event), snapshot


def slice_payload(detector, time_s: float, rates_hz: dict[int, float], skip: set[int]) -> bytes:
    """A summary slice with a frame per optical DOM (7 kHz per PMT unless given), minus
    ``skip``, plus one frame of a DOM that is not in the detector."""
    optical = detector.dom_ids[detector.dom_floor > 0]
    dom_ids = [d for d in optical if d not in skip] + [UNKNOWN_DOM]
    frames = np.zeros(len(dom_ids), dtype=FRAME_DTYPE)
    frames["dom_id"] = dom_ids
    frames["status"] = np.uint32(1) << 31
    for row, dom_id in enumerate(dom_ids):
        frames["rates"][row] = hz_to_rates(np.full(31, rates_hz.get(int(dom_id), 7000.0)))
    when = header(time_s, 42, frame_index=int((time_s - T0) * 10))
    return encode_summaryslice(Summaryslice(header=when, frames=frames))
