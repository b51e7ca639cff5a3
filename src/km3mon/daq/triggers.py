"""Trigger-mask bits of KM3NeT events, from one table of definitions.

An event's ``trigger_mask`` (and each triggered hit's own mask) is a uint64 bit field: bit *n* set
means trigger *n* fired. The bit positions come from km3net-dataformat (``trigger.hh``) as shipped
by km3io and KM3io.jl. Bits not listed are undefined in those sources.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class Trigger:
    name: str
    bit: int
    description: str

    @property
    def mask(self) -> int:
        return 1 << self.bit


#: The single source of truth for trigger bits.
TRIGGERS: tuple[Trigger, ...] = (
    Trigger("3DShower", 1, "JTRIGGER3DSHOWER: 3D shower trigger"),
    Trigger("MXShower", 2, "JTRIGGERMXSHOWER: MX shower trigger (L0/L1)"),
    Trigger("3DMuon", 4, "JTRIGGER3DMUON: 3D muon trigger"),
    Trigger("NB", 5, "JTRIGGERNB: nano-beacon trigger"),
    Trigger("FactoryLimit", 31, "FACTORY_LIMIT: maximum number of hits reached in trigger"),
)

TRIGGER_BY_NAME: dict[str, Trigger] = {trigger.name: trigger for trigger in TRIGGERS}


def trigger_mask(*names: str) -> int:
    """The mask with the bits of the named triggers set, e.g. ``trigger_mask("3DMuon")``."""
    try:
        return sum({TRIGGER_BY_NAME[name].mask for name in names})
    except KeyError as exc:
        raise ValueError(f"unknown trigger {exc}; known: {', '.join(TRIGGER_BY_NAME)}") from None


def trigger_names(mask: int) -> list[str]:
    """Names of the known triggers whose bits are set in ``mask``."""
    return [trigger.name for trigger in TRIGGERS if mask & trigger.mask]


def is_triggered_by(masks: np.ndarray | int, name: str) -> np.ndarray | bool:
    """Vectorised test of one trigger bit, for an int or an array of masks."""
    bit = trigger_mask(name)
    if isinstance(masks, int):
        return bool(masks & bit)
    return (np.asarray(masks, dtype=np.uint64) & np.uint64(bit)) != 0
