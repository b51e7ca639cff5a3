"""Process settings for programs that handle tens of thousands of messages a second.

CPython's cyclic garbage collector runs a young-generation pass every 700 net allocations.
A monitor receiving 44 000 messages/s allocates a few objects per message, and each pass
also walks the survivors, so with a large heap the collector costs more than the parsing:
receiving a message takes 2.2 times as long with the default settings (``bench/bench_gc.py``).
Messages are freed by reference counting anyway; the collector is only
needed for cycles, which these programs create rarely (figures, reconnects).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
from collections.abc import Callable
from functools import cache

#: Young-generation threshold: a pass every 50 000 net allocations, about once a second at
#: full ARCA rate, instead of 60 times a second.
YOUNG_THRESHOLD = 50_000


def tune_garbage_collector() -> None:
    """Collect once, move what exists after start-up (modules, detector, tables) out of the
    collector's sight for good, and let young passes run rarely."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)


@cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None where the C library has none (musl, macOS)."""
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        return None


def release_free_memory() -> None:
    """Hand the C allocator's free pages back to the system.

    Received payloads are allocated by the receiver thread in an arena of its own and freed by
    the main thread; glibc returns an arena's memory only from its top, so after one backlog
    (a busy start-up: seconds of a 64 MB/s stream queued) the process would keep that peak
    resident for good. ``malloc_trim`` releases the free pages of every arena."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
