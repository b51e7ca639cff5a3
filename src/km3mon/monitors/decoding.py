"""Decoding a batch of messages for the monitors, robust to bad payloads.

The batch decoders are all-or-nothing for speed; when one refuses a batch, the payloads are
decoded one by one so that only the bad ones are lost, each counted as an error.
"""

from __future__ import annotations

import numpy as np

from km3mon.controlhost import Message
from km3mon.daq import DAQFormatError, Summaryslice, decode_events_hits, decode_summaryslice
from km3mon.daq import decode_monitoring_batch as decode_monitoring_payloads
from km3mon.daq.event import EVENTS_DTYPE, HITS_DTYPE
from km3mon.monitors.runtime import Context


def payloads_of(messages: list[Message], tag: str) -> list[bytes]:
    return [message.payload for message in messages if message.tag == tag]


def decode_events_and_hits(
    context: Context, payloads: list[bytes]
) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """``(events, hits, kept)``: tables of every decodable ``IO_EVT`` payload, and for each
    event row the index of its payload in ``payloads``."""
    if not payloads:
        return np.zeros(0, EVENTS_DTYPE), np.zeros(0, HITS_DTYPE), []
    try:
        events, hits = decode_events_hits(payloads)
        return events, hits, list(range(len(payloads)))
    except DAQFormatError:
        pass
    events, hits, kept = [], [], []
    for index, payload in enumerate(payloads):
        try:
            one_event, its_hits = decode_events_hits([payload])
        except DAQFormatError as error:
            context.count_error("event unusable", error)
            continue
        its_hits = its_hits.copy()
        its_hits["event"] = len(events)
        events.append(one_event)
        hits.append(its_hits)
        kept.append(index)
    if not events:
        return np.zeros(0, EVENTS_DTYPE), np.zeros(0, HITS_DTYPE), []
    return np.concatenate(events), np.concatenate(hits), kept


def decode_summaryslices(context: Context, messages: list[Message]) -> list[Summaryslice]:
    """Every decodable ``IO_SUM`` of the batch."""
    slices = []
    for payload in payloads_of(messages, "IO_SUM"):
        try:
            slices.append(decode_summaryslice(payload))
        except DAQFormatError as error:
            context.count_error("summary slice unusable", error)
    return slices


def decode_monitoring(context: Context, messages: list[Message]) -> np.ndarray:
    """Every valid ``IO_MONIT`` packet of the batch as one structured array."""
    payloads = payloads_of(messages, "IO_MONIT")
    try:
        return decode_monitoring_payloads(payloads)
    except DAQFormatError as error:
        packets = decode_monitoring_payloads(payloads, skip_invalid=True)
        context.count_error("monitoring packets unusable", error, len(payloads) - len(packets))
        return packets


def packet_times_s(packets: np.ndarray) -> np.ndarray:
    """UTC seconds of monitoring packets or event rows (16 ns cycles included)."""
    return packets["utc_seconds"] + packets["utc_16ns_cycles"] * 16e-9
