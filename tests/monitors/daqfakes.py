"""Hand-made DAQ payloads with known content, for feeding monitors in tests."""

from __future__ import annotations

import numpy as np

from km3mon.daq import DAQHeader, Event, encode_event
from km3mon.daq.event import SNAPSHOT_HIT_DTYPE, TRIGGERED_HIT_DTYPE


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
