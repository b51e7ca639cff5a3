"""Decoding a batch of messages for the monitors, robust to bad payloads.

The batch decoders are all-or-nothing for speed; when one refuses a batch, the payloads are
decoded one by one so that only the bad ones are lost, each counted as an error. Rows whose
DAQ time is implausible (``Context.plausible_times``) are dropped here too, and counted, so
that no monitor bins, plots or clocks by a wild time.
"""

from __future__ import annotations

import numpy as np

from km3mon.controlhost import Message
from km3mon.daq import DAQFormatError, Summaryslice, decode_events_hits, decode_summaryslice
from km3mon.daq import decode_monitoring_batch as decode_monitoring_payloads
from km3mon.daq.event import EVENTS_DTYPE, HITS_DTYPE
from km3mon.daq.timeslice import TimesliceFrames, locate_frames
from km3mon.runtime.monitor import Context


def payloads_of(messages: list[Message], tag: str) -> list[bytes]:
    return [message.payload for message in messages if message.tag == tag]


def decode_events_and_hits(
    context: Context, payloads: list[bytes]
) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """``(events, hits, kept)``: tables of every decodable ``IO_EVT`` payload with a
    plausible time, and for each event row the index of its payload in ``payloads``."""
    events, hits, kept = _decode_events(context, payloads)
    return _chosen_events(events, hits, kept, context.plausible_times(packet_times_s(events)))


def decode_events_and_summaryslices(
    context: Context, messages: list[Message]
) -> tuple[np.ndarray, list[Summaryslice]]:
    """Events and summary slices of a batch with plausible times, judged together (judged
    one tag after the other, the first would be judged without the second's times)."""
    events, hits, kept = _decode_events(context, payloads_of(messages, "IO_EVT"))
    slices = _decode_summaryslices(context, messages)
    slice_times = np.array([s.header.timestamp for s in slices], dtype=np.float64)
    plausible = context.plausible_times(np.concatenate([packet_times_s(events), slice_times]))
    n_events = len(events)
    events, _, _ = _chosen_events(events, hits, kept, plausible[:n_events])
    return events, [s for s, keep in zip(slices, plausible[n_events:], strict=True) if keep]


def _chosen_events(
    events: np.ndarray, hits: np.ndarray, kept: list[int], chosen: np.ndarray
) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """The ``chosen`` event rows, their hits renumbered."""
    if chosen.all():
        return events, hits, kept
    new_number = np.cumsum(chosen) - 1  # event row -> row among the chosen ones
    hits = hits[chosen[hits["event"]]]
    hits["event"] = new_number[hits["event"]]
    kept = [index for index, keep in zip(kept, chosen.tolist(), strict=True) if keep]
    return events[chosen], hits, kept


def _decode_events(
    context: Context, payloads: list[bytes]
) -> tuple[np.ndarray, np.ndarray, list[int]]:
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
    """Every decodable ``IO_SUM`` of the batch with a plausible time."""
    slices = _decode_summaryslices(context, messages)
    plausible = context.plausible_times(np.array([s.header.timestamp for s in slices]))
    return [s for s, keep in zip(slices, plausible.tolist(), strict=True) if keep]


def locate_timeslices(
    context: Context, messages: list[Message], tag: str
) -> list[tuple[bytes, TimesliceFrames]]:
    """Every usable timeslice payload of ``tag`` (``IO_TSL1``, ``IO_TSSN``, ...) with its
    frame table, in order; unusable ones and implausible times counted and left out."""
    located = []
    for payload in payloads_of(messages, tag):
        try:
            located.append((payload, locate_frames(payload)))
        except DAQFormatError as error:
            context.count_error(f"{tag} unusable", error)
    plausible = context.plausible_times(np.array([f.header.timestamp for _, f in located]))
    return [item for item, keep in zip(located, plausible.tolist(), strict=True) if keep]


def _decode_summaryslices(context: Context, messages: list[Message]) -> list[Summaryslice]:
    slices = []
    for payload in payloads_of(messages, "IO_SUM"):
        try:
            slices.append(decode_summaryslice(payload))
        except DAQFormatError as error:
            context.count_error("summary slice unusable", error)
    return slices


def decode_monitoring(context: Context, messages: list[Message]) -> np.ndarray:
    """Every valid ``IO_MONIT`` packet of the batch with a plausible time, as one
    structured array."""
    payloads = payloads_of(messages, "IO_MONIT")
    try:
        packets = decode_monitoring_payloads(payloads)
    except DAQFormatError as error:
        packets = decode_monitoring_payloads(payloads, skip_invalid=True)
        context.count_error("monitoring packets unusable", error, len(payloads) - len(packets))
    plausible = context.plausible_times(packet_times_s(packets))
    return packets if plausible.all() else packets[plausible]


def packet_times_s(packets: np.ndarray) -> np.ndarray:
    """UTC seconds of monitoring packets or event rows (16 ns cycles included)."""
    return packets["utc_seconds"] + packets["utc_16ns_cycles"] * 16e-9
