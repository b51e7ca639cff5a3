"""Decoders and encoders for every payload on the ligier: ``km3mon.daq.decode(tag, payload)``.

One module per format (:mod:`.event`, :mod:`.summaryslice`, :mod:`.monitoring`,
:mod:`.timeslice`, :mod:`.message`); :mod:`.files` reads recordings. Monitors use the batch
decoders :func:`decode_monitoring_batch` and :func:`decode_events_hits`. Every failure is a
:class:`DAQFormatError`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from km3mon.daq.errors import DAQFormatError
from km3mon.daq.event import Event, decode_event, decode_events_hits, encode_event
from km3mon.daq.message import LogMessage, decode_message, encode_message
from km3mon.daq.monitoring import (
    MonitoringPacket,
    decode_monitoring,
    decode_monitoring_batch,
    encode_monitoring,
    encode_monitoring_batch,
)
from km3mon.daq.preamble import DAQHeader
from km3mon.daq.summaryslice import Summaryslice, decode_summaryslice, encode_summaryslice
from km3mon.daq.timeslice import DATA_TYPE_BY_TAG, Timeslice, decode_timeslice, encode_timeslice

DAQObject = Event | Summaryslice | Timeslice | MonitoringPacket | LogMessage

#: ControlHost tag -> decoder of its payload.
DECODERS: dict[str, Callable[[bytes], Any]] = {
    "IO_EVT": decode_event,
    "IO_SUM": decode_summaryslice,
    "IO_MONIT": decode_monitoring,
    "MSG": decode_message,
    **dict.fromkeys(DATA_TYPE_BY_TAG, decode_timeslice),
}

_ENCODERS: dict[type, Callable[[Any], bytes]] = {
    Event: encode_event,
    Summaryslice: encode_summaryslice,
    Timeslice: encode_timeslice,
    MonitoringPacket: encode_monitoring,
    LogMessage: encode_message,
}
_TAGS: dict[type, str] = {
    Event: "IO_EVT",
    Summaryslice: "IO_SUM",
    MonitoringPacket: "IO_MONIT",
    LogMessage: "MSG",
}


def decode(tag: str, payload: bytes) -> DAQObject:
    """Decode the payload of a ControlHost message with ``tag``."""
    try:
        decoder = DECODERS[tag]
    except KeyError:
        raise DAQFormatError(f"no decoder for tag {tag!r}; known: {', '.join(DECODERS)}") from None
    return decoder(payload)


def encode(obj: DAQObject) -> bytes:
    """The payload bytes of a decoded (or built) object."""
    try:
        encoder = _ENCODERS[type(obj)]
    except KeyError:
        raise DAQFormatError(f"cannot encode {type(obj).__name__}") from None
    return encoder(obj)


def tag_of(obj: DAQObject) -> str:
    """The ControlHost tag an object travels under."""
    if isinstance(obj, Timeslice):
        return obj.tag
    try:
        return _TAGS[type(obj)]
    except KeyError:
        raise DAQFormatError(f"no tag for {type(obj).__name__}") from None


__all__ = [
    "DECODERS",
    "DAQFormatError",
    "DAQHeader",
    "DAQObject",
    "Event",
    "LogMessage",
    "MonitoringPacket",
    "Summaryslice",
    "Timeslice",
    "decode",
    "decode_event",
    "decode_events_hits",
    "decode_monitoring",
    "decode_monitoring_batch",
    "decode_summaryslice",
    "decode_timeslice",
    "encode",
    "encode_monitoring_batch",
    "tag_of",
]
