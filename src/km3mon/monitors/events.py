"""Decoding a batch of ``IO_EVT`` payloads for the event monitors, robust to bad ones.

The batch decoder is all-or-nothing for speed; when it refuses a batch, the payloads are
decoded one by one so that only the bad events are lost (and counted).
"""

from __future__ import annotations

import numpy as np

from km3mon.daq import DAQFormatError, decode_events_hits
from km3mon.daq.event import EVENTS_DTYPE, HITS_DTYPE
from km3mon.monitors.runtime import Context


def decode_events_and_hits(
    context: Context, payloads: list[bytes]
) -> tuple[np.ndarray, np.ndarray]:
    """``(events, hits)`` tables of every decodable payload; the others counted as errors."""
    if not payloads:
        return np.zeros(0, EVENTS_DTYPE), np.zeros(0, HITS_DTYPE)
    try:
        return decode_events_hits(payloads)
    except DAQFormatError:
        pass
    events, hits = [], []
    for payload in payloads:
        try:
            one_event, its_hits = decode_events_hits([payload])
        except DAQFormatError as error:
            context.count_error("event unusable", error)
            continue
        its_hits = its_hits.copy()
        its_hits["event"] = len(events)
        events.append(one_event)
        hits.append(its_hits)
    if not events:
        return np.zeros(0, EVENTS_DTYPE), np.zeros(0, HITS_DTYPE)
    return np.concatenate(events), np.concatenate(hits)


def decode_events(context: Context, payloads: list[bytes]) -> np.ndarray:
    return decode_events_and_hits(context, payloads)[0]
