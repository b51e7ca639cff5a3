"""One hit of a timeslice frame read straight from the payload bytes, inside numba kernels.

A hit is 6 bytes (``docs/daq-formats.md`` §5): PMT channel, big-endian 32-bit TDC time in ns, ToT.
The counting kernels read them in place instead of building a hit table per message.
"""

from __future__ import annotations

import numpy as np
from numba import njit

HIT_SIZE = 6


@njit(cache=True, nogil=True, inline="always")
def raw_time_ns(buffer: np.ndarray, at: int) -> np.int64:
    """The TDC time of the hit starting at byte ``at`` of ``buffer`` (uint8)."""
    return (
        (np.int64(buffer[at + 1]) << 24)
        | (np.int64(buffer[at + 2]) << 16)
        | (np.int64(buffer[at + 3]) << 8)
        | np.int64(buffer[at + 4])
    )
