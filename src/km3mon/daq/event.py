"""Triggered events (``IO_EVT``, JDAQEvent, data type 10001).

Layout after the preamble, the int16 class version (4; absent in legacy data) and the DAQ
header: uint64 trigger counter, uint64 trigger mask (bits: :mod:`km3mon.daq.triggers`), uint32
number of overlays (merged events), then int32 ``n_triggered`` and that many 18-byte triggered
hits, then int32 ``n_snapshot`` and that many 10-byte snapshot hits. A hit is int32 DOM id, uint8
channel (0-30), uint32 TDC time in ns since the timeslice start -- the one **big-endian** field --
and uint8 time over threshold in ns; a triggered hit adds its own uint64 trigger mask.
Total size: ``58 + 18 n_triggered + 10 n_snapshot`` (legacy ``56 + ...``).

Every triggered hit is also a snapshot hit (same DOM, channel, time and ToT); the hits table
flags the snapshot hits that triggered and carries their per-hit mask (km3pipe's
``DAQProcessor`` finds them with a per-hit Python dictionary and drops the mask).

Our own parser instead of km3pipe's ``DAQEvent``: zero-copy views, vectorised batch decoding of
many events into one hits table, strict bounds checks.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from km3mon.daq.errors import DAQFormatError
from km3mon.daq.preamble import (
    CLASS_VERSION,
    COUNT,
    DAQEVENT,
    HEADER,
    PREAMBLE,
    UTC_SECONDS_MASK,
    WR_BIT,
    DAQHeader,
    as_records,
    body_offset,
    decode_versioned,
    header_from_words,
    pack_start,
    read_count,
    read_header,
    records_at,
    records_in_blocks,
    unpack,
)
from km3mon.daq.triggers import trigger_names

TAG = "IO_EVT"

#: Trigger counter, trigger mask, overlays, n_triggered (after the DAQ header).
EVENT_INFO = struct.Struct("<QQIi")

SNAPSHOT_HIT_DTYPE = np.dtype(
    [("dom_id", "<i4"), ("channel", "u1"), ("time_ns", ">u4"), ("tot", "u1")]
)
TRIGGERED_HIT_DTYPE = np.dtype([*SNAPSHOT_HIT_DTYPE.descr, ("trigger_mask", "<u8")])

#: Hits table (native byte order): snapshot hits with the mask of the matching triggered hit.
#: ``event`` is the index of the event in a batch (0 for a single event).
HITS_DTYPE = np.dtype(
    [
        ("event", "<u4"),
        ("dom_id", "<i4"),
        ("channel", "u1"),
        ("time_ns", "<u4"),
        ("tot", "u1"),
        ("trigger_mask", "<u8"),
        ("triggered", "?"),
    ]
)

#: One row per event of a batch (native byte order).
EVENTS_DTYPE = np.dtype(
    [
        ("det_id", "<i4"),
        ("run", "<i4"),
        ("frame_index", "<i4"),
        ("utc_seconds", "<u4"),
        ("utc_16ns_cycles", "<u4"),
        ("wr_status", "u1"),
        ("trigger_counter", "<u8"),
        ("trigger_mask", "<u8"),
        ("overlays", "<u4"),
        ("n_triggered", "<i4"),
        ("n_snapshot", "<i4"),
        ("legacy", "?"),
    ]
)

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)  # 2**64 / golden ratio, for Fibonacci hashing
_MAX_PROBE_ROUNDS = 64
#: A hit's first 10 bytes as two words (see ``_hit_keys``), per record size.
_KEY_DTYPES = {
    dtype.itemsize: np.dtype(
        {
            "names": ["head", "tail"],
            "formats": ["<u8", "<u2"],
            "offsets": [0, 8],
            "itemsize": dtype.itemsize,
        }
    )
    for dtype in (SNAPSHOT_HIT_DTYPE, TRIGGERED_HIT_DTYPE)
}

#: DAQ header and event info as read in one go by the batch decoder.
_BATCH_INFO_DTYPE = np.dtype(
    [
        ("det_id", "<i4"),
        ("run", "<i4"),
        ("frame_index", "<i4"),
        ("utc_raw", "<u4"),
        ("utc_16ns_cycles", "<u4"),
        ("trigger_counter", "<u8"),
        ("trigger_mask", "<u8"),
        ("overlays", "<u4"),
        ("n_triggered", "<i4"),
    ]
)
#: Preamble, class version, DAQ header and event info of a current-format event.
_CURRENT_FIXED = struct.Struct("<iih" + HEADER.format[1:] + EVENT_INFO.format[1:])
_CURRENT_MIN_SIZE = _CURRENT_FIXED.size + COUNT.size
_CURRENT_VERSION = CLASS_VERSION[DAQEVENT]
_TRIGGERED_AT = _CURRENT_FIXED.size
_TRIGGERED_SIZE = TRIGGERED_HIT_DTYPE.itemsize
_SNAPSHOT_SIZE = SNAPSHOT_HIT_DTYPE.itemsize
_START_DTYPE = np.dtype([("length", "<i4"), ("data_type", "<i4"), ("version", "<i2")])
_COUNT_DTYPE = np.dtype("<i4")
_INFO_SIZE = HEADER.size + EVENT_INFO.size
_MIN_SIZE = PREAMBLE.size + _INFO_SIZE + COUNT.size  # legacy event without hits


@dataclass(eq=False)
class Event:
    """A triggered event; hit arrays are zero-copy views in wire dtypes.

    ``version`` is the class version (4), ``None`` for legacy data without one.
    """

    header: DAQHeader
    trigger_counter: int
    trigger_mask: int
    overlays: int
    triggered_hits: np.ndarray = field(repr=False)
    snapshot_hits: np.ndarray = field(repr=False)
    version: int | None = CLASS_VERSION[DAQEVENT]

    @cached_property
    def hits(self) -> np.ndarray:
        """Snapshot hits as a :data:`HITS_DTYPE` table with ``triggered`` and per-hit mask."""
        snapshot = as_records(self.snapshot_hits, SNAPSHOT_HIT_DTYPE, "snapshot hits")
        triggered = as_records(self.triggered_hits, TRIGGERED_HIT_DTYPE, "triggered hits")
        hits = np.zeros(len(snapshot), HITS_DTYPE)
        for name in SNAPSHOT_HIT_DTYPE.names:
            hits[name] = snapshot[name]
        _flag_triggered(hits, snapshot, triggered, np.zeros(len(triggered), np.uint32))
        return hits

    def summary(self) -> dict[str, Any]:
        return {
            **self.header.summary(),
            "trigger_counter": self.trigger_counter,
            "triggers": trigger_names(self.trigger_mask),
            "overlays": self.overlays,
            "n_triggered": len(self.triggered_hits),
            "n_snapshot": len(self.snapshot_hits),
        }


def decode_event(payload: bytes) -> Event:
    """Decode one ``IO_EVT`` payload (current or legacy layout).

    The common case -- a well-formed current event -- takes a fast path with one ``struct``
    call for the fixed part; anything else goes through the checked, layout-detecting parser.
    """
    if len(payload) >= _CURRENT_MIN_SIZE:
        (length, data_type, version, *header, counter, mask, overlays, n_triggered) = (
            _CURRENT_FIXED.unpack_from(payload)
        )
        snapshot_at = _TRIGGERED_AT + _TRIGGERED_SIZE * n_triggered
        if (
            length == len(payload)
            and data_type == DAQEVENT
            and version == _CURRENT_VERSION
            and n_triggered >= 0
            and snapshot_at + COUNT.size <= length
        ):
            (n_snapshot,) = COUNT.unpack_from(payload, snapshot_at)
            if snapshot_at + COUNT.size + _SNAPSHOT_SIZE * n_snapshot == length:
                return Event(
                    header_from_words(*header),
                    counter,
                    mask,
                    overlays,
                    np.frombuffer(payload, TRIGGERED_HIT_DTYPE, n_triggered, _TRIGGERED_AT),
                    np.frombuffer(
                        payload, SNAPSHOT_HIT_DTYPE, n_snapshot, snapshot_at + COUNT.size
                    ),
                    version,
                )
    return decode_versioned(payload, TAG, (DAQEVENT,), _parse_event)


def _parse_event(payload: bytes, version: int | None, _data_type: int) -> Event:
    offset = body_offset(version)
    header = read_header(payload, offset, TAG)
    offset += HEADER.size
    counter, mask, overlays, _ = unpack(EVENT_INFO, payload, offset, f"{TAG} event info")
    offset += EVENT_INFO.size - COUNT.size
    n_triggered = read_count(payload, offset, TRIGGERED_HIT_DTYPE.itemsize, "triggered hits")
    offset += COUNT.size
    triggered = np.frombuffer(payload, TRIGGERED_HIT_DTYPE, n_triggered, offset)
    offset += n_triggered * TRIGGERED_HIT_DTYPE.itemsize
    n_snapshot = read_count(payload, offset, SNAPSHOT_HIT_DTYPE.itemsize, "snapshot hits")
    offset += COUNT.size
    snapshot = np.frombuffer(payload, SNAPSHOT_HIT_DTYPE, n_snapshot, offset)
    offset += n_snapshot * SNAPSHOT_HIT_DTYPE.itemsize
    if offset != len(payload):
        raise DAQFormatError(f"hits end at offset {offset}, payload has {len(payload)} bytes")
    return Event(header, counter, mask, overlays, triggered, snapshot, version)


def encode_event(event: Event) -> bytes:
    """The ``IO_EVT`` payload of ``event`` (legacy layout if ``event.version`` is None)."""
    triggered = as_records(event.triggered_hits, TRIGGERED_HIT_DTYPE, "triggered hits")
    snapshot = as_records(event.snapshot_hits, SNAPSHOT_HIT_DTYPE, "snapshot hits")
    length = (
        body_offset(event.version) + _INFO_SIZE + triggered.nbytes + COUNT.size + snapshot.nbytes
    )
    try:
        info = EVENT_INFO.pack(
            event.trigger_counter, event.trigger_mask, event.overlays, len(triggered)
        )
    except struct.error as exc:
        raise DAQFormatError(f"{TAG} event info: {exc}") from None
    return b"".join(
        (
            pack_start(DAQEVENT, length, event.version, event.header),
            info,
            triggered.tobytes(),
            COUNT.pack(len(snapshot)),
            snapshot.tobytes(),
        )
    )


def decode_events_hits(payloads: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """Decode many ``IO_EVT`` payloads at once: ``(events, hits)`` tables.

    ``events`` has one :data:`EVENTS_DTYPE` row per payload; ``hits`` holds all snapshot hits
    (:data:`HITS_DTYPE`, ``event`` = row in ``events``) with the triggered flag and per-hit mask.
    Vectorised over all events: one join of the payloads, then numpy gathers; no Python loop
    per event or hit. Raises :class:`DAQFormatError` naming the first bad payload.
    """
    n = len(payloads)
    lengths = np.fromiter(map(len, payloads), np.int64, n)
    starts = np.zeros(n, np.int64)
    np.cumsum(lengths[:-1], out=starts[1:])
    buf = b"".join(payloads)

    ok = lengths >= _MIN_SIZE
    safe_starts = np.where(ok, starts, 0)
    if len(buf) < _MIN_SIZE:
        buf = bytes(_MIN_SIZE)  # only read under ``ok``, which is all False here
    start = records_at(buf, safe_starts, _START_DTYPE)
    ok &= (start["length"] == lengths) & (start["data_type"] == DAQEVENT)
    version = start["version"]
    current = ok & (version == CLASS_VERSION[DAQEVENT])
    current &= _layout_fits(buf, starts, lengths, current, body_offset(CLASS_VERSION[DAQEVENT]))
    legacy = ok & ~current & _layout_fits(buf, starts, lengths, ok, body_offset(None))
    bad = np.flatnonzero(~(current | legacy))
    if bad.size:
        _raise_for(payloads, int(bad[0]))

    body = starts + np.where(current, body_offset(CLASS_VERSION[DAQEVENT]), body_offset(None))
    info = records_at(buf, body, _BATCH_INFO_DTYPE)
    n_triggered = info["n_triggered"].astype(np.int64)
    first_triggered = body + _INFO_SIZE
    first_snapshot = first_triggered + TRIGGERED_HIT_DTYPE.itemsize * n_triggered + COUNT.size
    n_snapshot = records_at(buf, first_snapshot - COUNT.size, _COUNT_DTYPE).astype(np.int64)

    events = np.empty(n, EVENTS_DTYPE)
    for name in ("det_id", "run", "frame_index", "utc_16ns_cycles", "trigger_counter"):
        events[name] = info[name]
    for name in ("trigger_mask", "overlays"):
        events[name] = info[name]
    events["utc_seconds"] = info["utc_raw"] & UTC_SECONDS_MASK
    events["wr_status"] = info["utc_raw"] >> WR_BIT
    events["n_triggered"] = n_triggered
    events["n_snapshot"] = n_snapshot
    events["legacy"] = legacy

    triggered = records_in_blocks(buf, first_triggered, n_triggered, TRIGGERED_HIT_DTYPE)
    snapshot = records_in_blocks(buf, first_snapshot, n_snapshot, SNAPSHOT_HIT_DTYPE)
    hits = np.zeros(len(snapshot), HITS_DTYPE)
    hits["event"] = np.repeat(np.arange(n, dtype=np.uint32), n_snapshot)
    for name in SNAPSHOT_HIT_DTYPE.names:
        hits[name] = snapshot[name]
    triggered_event = np.repeat(np.arange(n, dtype=np.uint32), n_triggered)
    _flag_triggered(hits, snapshot, triggered, triggered_event)
    return events, hits


def _layout_fits(
    buf: bytes, starts: np.ndarray, lengths: np.ndarray, ok: np.ndarray, body: int
) -> np.ndarray:
    """Which payloads end exactly where an event with its header at ``body`` would end."""
    count_at = body + _INFO_SIZE - COUNT.size
    n_triggered = records_at(buf, np.where(ok, starts + count_at, 0), _COUNT_DTYPE)
    n_triggered = n_triggered.astype(np.int64)
    snapshot_count_at = count_at + COUNT.size + TRIGGERED_HIT_DTYPE.itemsize * n_triggered
    fits = ok & (n_triggered >= 0) & (snapshot_count_at + COUNT.size <= lengths)
    n_snapshot = records_at(buf, np.where(fits, starts + snapshot_count_at, 0), _COUNT_DTYPE)
    end = snapshot_count_at + COUNT.size + SNAPSHOT_HIT_DTYPE.itemsize * n_snapshot
    return fits & (n_snapshot >= 0) & (end == lengths)


def _raise_for(payloads: Sequence[bytes], index: int) -> None:
    """Re-decode a payload the batch rejected, for the precise message of the single decoder."""
    try:
        decode_event(payloads[index])
    except DAQFormatError as exc:
        raise DAQFormatError(f"event {index} of {len(payloads)}: {exc}") from None
    raise DAQFormatError(f"event {index} of {len(payloads)}: inconsistent layout")


def _hit_keys(records: np.ndarray, event: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two uint64 words that identify a hit: its first 8 bytes (DOM id, channel, 3 bytes of
    time) and the last 2 (time, ToT) with the event index above them.

    ``records`` are contiguous wire records (snapshot or triggered): the words are views.
    """
    key = records.view(_KEY_DTYPES[records.dtype.itemsize])
    return key["head"], key["tail"] | event.astype(np.uint64) << np.uint64(16)


def _flag_triggered(
    hits: np.ndarray,
    snapshot: np.ndarray,
    triggered: np.ndarray,
    triggered_event: np.ndarray,
) -> None:
    """Set ``triggered`` and ``trigger_mask`` of the snapshot hits equal to a triggered hit."""
    found = _find(_hit_keys(triggered, triggered_event), _hit_keys(snapshot, hits["event"]))
    matched = found >= 0
    hits["triggered"] = matched
    hits["trigger_mask"][matched] = triggered["trigger_mask"][found[matched]]


def _fingerprint(keys: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Odd (hence non-zero) 64-bit Fibonacci hash of two key words; uint64 wraps around."""
    high, low = keys
    return (high * _GOLDEN ^ low) * _GOLDEN | np.uint64(1)


def _find(
    table_keys: tuple[np.ndarray, np.ndarray], wanted: tuple[np.ndarray, np.ndarray]
) -> np.ndarray:
    """Index of an equal ``table_keys`` entry for each ``wanted`` key, or -1.

    A vectorised hash join instead of a sort (which would dominate the batch decoder): open
    addressing with linear probing in a table at most a quarter full, the slot taken from the
    top bits of a 64-bit fingerprint. Each round moves every unresolved key one slot on and
    compares fingerprints, full keys only where those match; the cost is linear in the number
    of hits. Inputs needing more than :data:`_MAX_PROBE_ROUNDS` rounds (crafted collisions)
    are sorted instead.
    """
    (high_t, low_t), (high_w, low_w) = table_keys, wanted
    found = np.full(len(high_w), -1, np.int64)
    if not len(high_t) or not len(high_w):
        return found
    bits = max(3, (4 * len(high_t)).bit_length())
    shift, size_mask = np.uint64(64 - bits), (1 << bits) - 1
    index = np.full(1 << bits, -1, np.int64)
    fingerprint = _fingerprint(table_keys)
    slot = (fingerprint >> shift).astype(np.int64)
    pending = np.arange(len(high_t))
    rounds = 0
    while pending.size:
        if rounds == _MAX_PROBE_ROUNDS:
            return _find_sorted(table_keys, wanted)
        rounds += 1
        free = index[slot[pending]] < 0
        index[slot[pending[free]]] = pending[free]
        occupant = index[slot[pending]]
        settled = (high_t[occupant] == high_t[pending]) & (low_t[occupant] == low_t[pending])
        pending = pending[~settled]  # placed, or an equal key is already in the table
        slot[pending] = (slot[pending] + 1) & size_mask
    fingerprints = np.zeros(1 << bits, np.uint64)  # 0 marks an empty slot
    used = index >= 0
    fingerprints[used] = fingerprint[index[used]]

    fingerprint = _fingerprint(wanted)
    slot = (fingerprint >> shift).astype(np.int64)
    active = np.arange(len(high_w))
    for _ in range(rounds):  # an entry sits at most ``rounds - 1`` slots past its hash
        stored = fingerprints[slot]
        candidate = np.flatnonzero(stored == fingerprint)
        who, entry = active[candidate], index[slot[candidate]]
        equal = (high_t[entry] == high_w[who]) & (low_t[entry] == low_w[who])
        found[who[equal]] = entry[equal]
        unresolved = stored != 0
        unresolved[candidate[equal]] = False
        keep = np.flatnonzero(unresolved)
        active, fingerprint = active[keep], fingerprint[keep]
        slot = (slot[keep] + 1) & size_mask
    return found


def _find_sorted(
    table_keys: tuple[np.ndarray, np.ndarray], wanted: tuple[np.ndarray, np.ndarray]
) -> np.ndarray:
    """:func:`_find` by sorting both key sets together (table entries first among equals)."""
    n_table = len(table_keys[0])
    high = np.concatenate((table_keys[0], wanted[0]))
    low = np.concatenate((table_keys[1], wanted[1]))
    is_wanted = np.arange(len(high)) >= n_table
    order = np.lexsort((is_wanted, low, high))
    high, low, is_wanted = high[order], low[order], is_wanted[order]
    same = (high[1:] == high[:-1]) & (low[1:] == low[:-1])
    # propagate the first table entry of each run of equal keys to the wanted keys after it
    run_start = np.concatenate(([True], ~same))
    first_of_run = np.maximum.accumulate(np.where(run_start, np.arange(len(high)), 0))
    source = order[first_of_run]
    hit = is_wanted & ~is_wanted[first_of_run]
    found = np.full(len(wanted[0]), -1, np.int64)
    found[order[hit] - n_table] = source[hit]
    return found
