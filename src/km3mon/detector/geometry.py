"""The detector model: DOMs, DUs, floors and PMTs as flat numpy arrays.

Every monitor maps DOM ids from the data stream to (DU, floor) and draws per-DU panels, often for
whole batches of hits or frames at once, so the model keeps one array per attribute and answers
batch questions (:meth:`Detector.locate`, :meth:`Detector.pmt_rows`) with a vectorised hash
lookup (:class:`IdIndex`) instead of a dict lookup per id.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

#: Status bits of the DETX (bit set = disabled), as Jpp's JPMTStatus / JModuleStatus define
#: them; source: km3net-dataformat v3.6.2 ``pmt_status``/``module_status`` (km3io's copy).
PMT_DISABLE = 0
MODULE_DISABLE = 0

#: Gap in median PMT-direction z that separates two rings of PMTs (rings are ~0.25 apart).
RING_GAP = 0.1
#: Where each ring's circle of azimuths is cut open, counted counter-clockwise from the
#: azimuth of channel 0 (the top ring's lowest channel): where km3pipe's ``ORDERED_PMT_IDS``
#: starts its rings, 15° from the nearest PMT (the rings' PMTs sit 30° apart in azimuth).
RING_CUT_DEG = 195.0


@dataclass(frozen=True)
class ChannelOrder:
    """DAQ channels from the top PMT ring to the bottom PMT, each ring by azimuth.

    ``channels[row]`` is the channel drawn in ``row`` (0 = top); ``rank[channel]`` is the inverse;
    ``ring[channel]`` numbers the rings from 0 at the top. Within a ring the channels follow
    the azimuth (counter-clockwise seen from above), so neighbours on the DOM are neighbours
    on the plot. For KM3NeT DOMs this is km3pipe's ``ORDERED_PMT_IDS`` read as the original
    pmt_rates used it (``ORDERED_PMT_IDS[channel]`` = row from the bottom); it is derived
    from the PMT directions so that a DOM design with another channel map is drawn right too.
    """

    channels: np.ndarray
    rank: np.ndarray
    ring: np.ndarray


class IdIndex:
    """Position of each id in a fixed id list, looked up for whole arrays at once.

    An open-addressing hash table (Fibonacci hashing, linear probing, load ≤ 12.5 %): for DOM ids
    in the 800 millions a dense table would take tens of MB, and ``searchsorted`` costs ~11
    random reads per id; here a lookup is a few vectorised gathers. Absent ids give -1.
    """

    _EMPTY = np.iinfo(np.int64).min
    _GOLDEN = np.uint64(0x9E3779B97F4A7C15)

    def __init__(self, ids: np.ndarray) -> None:
        bits = max(4, int(np.ceil(np.log2(8 * max(len(ids), 1)))))
        self._shift = np.uint64(64 - bits)
        self._mask = (1 << bits) - 1
        self._keys = np.full(1 << bits, self._EMPTY, dtype=np.int64)
        self._positions = np.full(1 << bits, -1, dtype=np.int64)
        self._probes = 1
        slots = self._slots(np.asarray(ids, dtype=np.int64)).tolist()
        for position, (key, slot) in enumerate(zip(np.asarray(ids).tolist(), slots, strict=True)):
            probe = 0
            while self._keys[(slot + probe) & self._mask] not in (self._EMPTY, key):
                probe += 1
            if self._keys[(slot + probe) & self._mask] == self._EMPTY:  # first one wins
                self._keys[(slot + probe) & self._mask] = key
                self._positions[(slot + probe) & self._mask] = position
            self._probes = max(self._probes, probe + 1)

    def _slots(self, ids: np.ndarray) -> np.ndarray:
        return ((ids.astype(np.uint64) * self._GOLDEN) >> self._shift).astype(np.int64)

    def lookup(self, ids: np.ndarray) -> np.ndarray:
        """Position of each id in the original list, -1 where absent."""
        ids = np.asarray(ids, dtype=np.int64)
        slots = self._slots(ids)
        keys = self._keys[slots]
        result = np.where(keys == ids, self._positions[slots], -1)
        # only ids that met another key probe further; most are settled by the first slot
        pending = np.flatnonzero((keys != ids) & (keys != self._EMPTY))
        for probe in range(1, self._probes):
            if not len(pending):
                break
            slot = (slots[pending] + probe) & self._mask
            keys = self._keys[slot]
            hit = keys == ids[pending]
            result[pending[hit]] = self._positions[slot[hit]]
            pending = pending[~hit & (keys != self._EMPTY)]
        return result


@dataclass(frozen=True)
class UTMReference:
    """The UTM reference point of the detector coordinate system (DETX v2+)."""

    ellipsoid: str
    grid: str
    easting_m: float
    northing_m: float
    z_m: float


@dataclass(frozen=True)
class DOMLocation:
    """Where a batch of DOM ids sits in the detector; ``known`` is False for foreign ids.

    Unknown ids have ``index == -1``, ``du == -1`` and ``floor == -1``.
    """

    index: np.ndarray
    du: np.ndarray
    floor: np.ndarray
    known: np.ndarray


@dataclass(frozen=True, eq=False)
class Detector:
    """A detector as read from a DETX file or the database.

    DOM arrays are in file order (by DU, then floor); PMT arrays are ordered by DOM, then by DAQ
    channel, so the PMTs of DOM ``i`` are rows ``pmt_offset[i] : pmt_offset[i] + n_pmts[i]``.
    """

    det_id: int
    version: int
    dom_ids: np.ndarray
    dom_du: np.ndarray
    dom_floor: np.ndarray
    dom_pos_m: np.ndarray
    dom_t0_ns: np.ndarray
    n_pmts: np.ndarray
    pmt_ids: np.ndarray
    pmt_pos_m: np.ndarray
    pmt_dir: np.ndarray
    pmt_t0_ns: np.ndarray
    pmt_status: np.ndarray
    #: The DOM's (module's) status word (DETX v5; zeros before): see :data:`MODULE_DISABLE`.
    dom_status: np.ndarray | None = None
    valid_from_s: float = 0.0
    valid_until_s: float = float("inf")
    utm: UTMReference | None = None
    source: str = "<memory>"
    pmt_offset: np.ndarray = field(init=False, repr=False)
    _index: IdIndex = field(init=False, repr=False)
    _du_or_unknown: np.ndarray = field(init=False, repr=False)
    _floor_or_unknown: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        offset = np.zeros(len(self.dom_ids), dtype=np.int64)
        np.cumsum(self.n_pmts[:-1], out=offset[1:])
        if self.dom_status is None:
            object.__setattr__(self, "dom_status", np.zeros(len(self.dom_ids), np.int64))
        for name, value in (
            ("pmt_offset", offset),
            ("_index", IdIndex(self.dom_ids)),
            # one extra -1 at the end, where index -1 (unknown DOM) lands
            ("_du_or_unknown", np.r_[self.dom_du, -1]),
            ("_floor_or_unknown", np.r_[self.dom_floor, -1]),
        ):
            object.__setattr__(self, name, value)

    def __repr__(self) -> str:
        return (
            f"Detector(det_id={self.det_id}, version={self.version}, n_dus={len(self.dus)}, "
            f"n_doms={len(self.dom_ids)}, n_pmts={len(self.pmt_ids)}, source={self.source!r})"
        )

    @property
    def dus(self) -> np.ndarray:
        """Sorted DU numbers."""
        return np.unique(self.dom_du)

    @property
    def floors(self) -> np.ndarray:
        """Sorted floor numbers of optical modules (base modules, floor 0, excluded)."""
        return np.unique(self.dom_floor[self.dom_floor > 0])

    @property
    def n_floors(self) -> int:
        """Highest floor number: the height of a DU × floor grid."""
        return int(self.dom_floor.max(initial=0))

    @cached_property
    def pmt_dom_index(self) -> np.ndarray:
        """Per PMT: the index of its DOM (made on first use: 1 MB at 230 DUs, which most
        processes never need)."""
        return np.repeat(np.arange(len(self.dom_ids)), self.n_pmts)

    @cached_property
    def pmt_channel(self) -> np.ndarray:
        """Per PMT: its DAQ channel in its DOM (made on first use)."""
        return np.arange(len(self.pmt_ids)) - self.pmt_offset[self.pmt_dom_index]

    @cached_property
    def dom_disabled(self) -> np.ndarray:
        """Per DOM: switched off on purpose (``MODULE_DISABLE`` in its DETX status)."""
        return (self.dom_status >> MODULE_DISABLE) & 1 == 1

    @cached_property
    def pmt_disabled(self) -> np.ndarray:
        """Per PMT: switched off on purpose, by its own ``PMT_DISABLE`` bit or its DOM's."""
        own = (self.pmt_status >> PMT_DISABLE) & 1 == 1
        return own | self.dom_disabled[self.pmt_dom_index]

    @property
    def base_dom_ids(self) -> np.ndarray:
        """DOM ids of the base modules (floor 0), one per DU where present."""
        return self.dom_ids[self.dom_floor == 0]

    @property
    def optical_dom_ids(self) -> np.ndarray:
        """DOM ids of the optical modules (floor ≥ 1)."""
        return self.dom_ids[self.dom_floor > 0]

    @cached_property
    def channel_order(self) -> ChannelOrder:
        """Rings from the median PMT direction per channel, top to bottom; within a ring,
        by the azimuth relative to the top ring's lowest channel (averaged over DOMs as
        angles, so that each DOM's own rotation drops out), from ``RING_CUT_DEG`` on.

        Uses the DOMs with the most common PMT count (31 for KM3NeT DOMs).
        """
        optical = self.n_pmts > 0
        n_channels = int(np.bincount(self.n_pmts[optical]).argmax()) if optical.any() else 0
        doms = np.flatnonzero(self.n_pmts == n_channels)
        rows = self.pmt_offset[doms, None] + np.arange(n_channels)
        dir_z = np.median(self.pmt_dir[rows, 2], axis=0)
        channels = np.argsort(-dir_z, kind="stable")
        ring_of_row = np.cumsum(np.r_[0, np.diff(-dir_z[channels]) > RING_GAP])
        ring = np.empty(n_channels, dtype=np.int64)
        ring[channels] = ring_of_row
        azimuth = np.arctan2(self.pmt_dir[rows, 1], self.pmt_dir[rows, 0])
        reference = int(np.flatnonzero(ring == 0).min()) if n_channels else 0
        turn = np.exp(1j * (azimuth - azimuth[:, reference : reference + 1])).mean(axis=0)
        relative = np.mod(np.angle(turn) - np.radians(RING_CUT_DEG), 2 * np.pi)
        channels = np.lexsort((np.arange(n_channels), relative, ring))
        rank = np.empty(n_channels, dtype=np.int64)
        rank[channels] = np.arange(n_channels)
        return ChannelOrder(channels=channels, rank=rank, ring=ring)

    def du_floor(self, dom_id: int) -> tuple[int, int]:
        """(DU, floor) of one DOM; raises KeyError for a foreign id."""
        where = self.locate(np.array([dom_id]))
        if not where.known[0]:
            raise KeyError(f"DOM {dom_id} is not in detector {self.det_id} ({self.source})")
        return int(where.du[0]), int(where.floor[0])

    def dom_index(self, dom_ids: np.ndarray) -> np.ndarray:
        """Index into the DOM arrays for each id, -1 for ids not in the detector."""
        return self._index.lookup(dom_ids)

    def locate(self, dom_ids: np.ndarray) -> DOMLocation:
        """DU, floor and index for a batch of DOM ids; foreign ids are flagged, not raised."""
        index = self.dom_index(dom_ids)
        return DOMLocation(
            index=index,
            du=self._du_or_unknown[index],
            floor=self._floor_or_unknown[index],
            known=index >= 0,
        )

    def pmt_rows(self, dom_ids: np.ndarray, channels: np.ndarray) -> np.ndarray:
        """Row into the PMT arrays for each (DOM id, channel), -1 where there is no such PMT."""
        index = self.dom_index(dom_ids)
        channels = np.asarray(channels, dtype=np.int64)
        safe = np.where(index >= 0, index, 0)
        valid = (index >= 0) & (channels >= 0) & (channels < self.n_pmts[safe])
        return np.where(valid, self.pmt_offset[safe] + channels, -1)
