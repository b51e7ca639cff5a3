"""The one exception type of the DAQ-format layer."""

from __future__ import annotations


class DAQFormatError(ValueError):
    """A payload or file does not match the DAQ format it claims to be.

    The message names the message type, the field and the byte offset, so that an operator can
    find the bad message in a recording (``km3mon inspect``) and tell a corrupt stream from a
    format change.
    """
