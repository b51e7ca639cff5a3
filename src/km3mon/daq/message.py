"""Log text (``MSG``): free UTF-8 text from the DAQ processes, no binary header.

The DAQ log ligier carries one line per message, e.g. ``... F0 ...`` from a DataFilter. The source
is recognised by the process code surrounded by spaces (km3mon's ``msg_dumper`` convention).
Undecodable bytes are kept as surrogate escapes so that ``encode(decode(x)) == x`` always holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from km3mon.daq.errors import DAQFormatError

TAG = "MSG"
ENCODING = "utf-8"
ERRORS = "surrogateescape"

#: Process code (as it appears between spaces) -> DAQ process name.
SOURCES: dict[str, str] = {
    "A0": "AcousticDataFilter",
    "F0": "DataFilter",
    "Q0": "DataQueue",
    "W0": "DataWriter",
}


@dataclass(frozen=True, slots=True)
class LogMessage:
    text: str

    @property
    def source(self) -> str | None:
        """The DAQ process that wrote the line, if recognised."""
        for code, name in SOURCES.items():
            if f" {code}" in self.text:
                return name
        return None

    def summary(self) -> dict[str, Any]:
        return {"source": self.source, "text": self.text}


def decode_message(payload: bytes) -> LogMessage:
    return LogMessage(payload.decode(ENCODING, ERRORS))


def encode_message(message: LogMessage) -> bytes:
    try:
        return message.text.encode(ENCODING, ERRORS)
    except UnicodeEncodeError as exc:
        raise DAQFormatError(f"{TAG} text not encodable: {exc}") from None
