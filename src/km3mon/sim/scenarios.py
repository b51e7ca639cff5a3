"""Faults the simulator injects on purpose, so monitors and alerts can be seen to react.

A scenario is named on the command line as ``NAME[@START_S[-END_S]]`` (simulated seconds after
the start; default from :data:`DEFAULT_START_S` until the end). Its targets (which DOM, DU or
PMT) are drawn from the detector with a generator seeded by ``--seed`` and the scenario's
position in the list, so the same command line breaks the same things every time;
:func:`plan_scenarios` returns them and :meth:`Scenario.describe` says them in words.

While active, a scenario edits the :class:`Effects` of the current timeslice:

==============  ==================================================================================
silent-dom      one optical DOM sends nothing: no summary frame, no TMCH packet, no hits
du-loss         every CLB of one DU (base module included) sends nothing
hot-pmt         one PMT counts :data:`HOT_PMT_FACTOR` x its rate (~0.5 MHz, above any plot range)
hrv-storm       :data:`HRV_STORM_FRACTION` of the optical DOMs glow (bioluminescence), rates x4-8:
                most of their PMTs above the high-rate-veto threshold
trigger-zero    no triggered events (no ``IO_EVT``)
wr-loss         one DOM loses White Rabbit time sync: WR bit 31 cleared in its summary frame
                ``status``, its TMCH ``dom_status[0]`` and its timeslice (``IO_TSL1``, ``IO_TSSN``)
                frames
udp-loss        one DOM loses UDP packets: in ``IO_SUM`` its frames show it in the ``daq`` word and
                the trailer bit, some frames are lost whole (:mod:`.sim_optical`); its incomplete
                frames are left out of ``IO_TSL1``/``IO_TSSN``, as the DataFilter does
pmt-t0          one PMT's true delay exceeds its DETX t0 by :data:`PMT_T0_SHIFT_NS` (its hits
                in every stream come that much earlier): what a K40 calibration must find
pmt-t0-15       the same by :data:`PMT_T0_LARGE_SHIFT_NS`, beyond the L1 window: the PMT keeps
                its singles but loses its K40 coincidences (k40's "no K40 peak")
sn-burst        a Galactic core-collapse supernova: for :data:`SN_BURST_DURATION_S` (unless an end
                is given) every DOM sees more low-multiplicity coincidences; the amplitude and
                time profile are in :mod:`.sim_timeslices`
t0-offset       one optical DOM's hit times are :data:`T0_OFFSET_NS` late against the DETX (its
                t0s are stale: the DOM's true delay is that much shorter than the DETX says)
t0-spread       the DETX t0s are as wrong as a real detector's: every PMT by N(0,
                :data:`T0_SPREAD_NS`), and :data:`T0_SPREAD_BAD_DOMS` DOMs as a whole by
                :data:`T0_SPREAD_BAD_DOM_NS` (either sign) on top
upgoing         :data:`UPGOING_FRACTION` of the muon events are upgoing (neutrino-induced) muons
==============  ==================================================================================
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

from km3mon.daq.summaryslice import N_CHANNELS
from km3mon.detector import Detector

DEFAULT_START_S = 10.0
HOT_PMT_FACTOR = 80.0
HRV_STORM_FRACTION = 0.25
HRV_STORM_FACTOR_RANGE = (4.0, 8.0)
#: ns by which the ``t0-offset`` DOM's calibrated hit times are late (``Simulator`` option).
T0_OFFSET_NS = 8.0
PMT_T0_SHIFT_NS = 3.0
PMT_T0_LARGE_SHIFT_NS = 15.0
#: ns by which each PMT-delay scenario shifts its PMT.
PMT_T0_SHIFTS_NS = {"pmt-t0": PMT_T0_SHIFT_NS, "pmt-t0-15": PMT_T0_LARGE_SHIFT_NS}
SN_BURST_DURATION_S = 10.0
T0_SPREAD_NS = 1.5
T0_SPREAD_BAD_DOMS = 3
T0_SPREAD_BAD_DOM_NS = (4.0, 8.0)
UPGOING_FRACTION = 0.5


@dataclass
class Effects:
    """What the scenarios change in one timeslice, per CLB in detector DOM order."""

    silent: np.ndarray
    wr_lost: np.ndarray
    rate_factor: np.ndarray
    #: Per CLB and channel: ns by which the true PMT delay exceeds the DETX t0 (hits are
    #: written that much earlier; see :mod:`.sim_calibration`).
    time_shift_ns: np.ndarray
    event_rate_factor: float = 1.0
    #: Per CLB: its optical data lose UDP packets (``udp-loss``); None: none do.
    udp_lossy: np.ndarray | None = None
    #: Share of upgoing muon events while a scenario sets it (None: the simulator's own).
    upgoing_fraction: float | None = None

    @classmethod
    def neutral(cls, n_clbs: int, n_channels: int) -> Effects:
        return cls(
            silent=np.zeros(n_clbs, bool),
            wr_lost=np.zeros(n_clbs, bool),
            rate_factor=np.ones((n_clbs, n_channels)),
            time_shift_ns=np.zeros((n_clbs, n_channels)),
        )


@dataclass(frozen=True, eq=False)
class Scenario:
    """One planned fault: its targets as detector DOM indices and ids, and its time span."""

    name: str
    start_s: float
    end_s: float | None
    dom_index: np.ndarray = field(repr=False)
    dom_ids: tuple[int, ...]
    du: int | None = None
    channel: int | None = None
    factors: np.ndarray | None = field(default=None, repr=False)

    def active(self, elapsed_s: float) -> bool:
        return elapsed_s >= self.start_s and (self.end_s is None or elapsed_s < self.end_s)

    def apply(self, effects: Effects) -> None:
        KINDS[self.name].apply(self, effects)

    def describe(self) -> str:
        until = "the end" if self.end_s is None else f"{self.end_s:g} s"
        return f"{self.name}: {KINDS[self.name].target(self)}, from {self.start_s:g} s to {until}"


@dataclass(frozen=True)
class _Kind:
    choose: Callable[[str, float, float | None, Detector, np.random.Generator], Scenario]
    apply: Callable[[Scenario, Effects], None]
    target: Callable[[Scenario], str]


def _one_dom(
    name: str, start_s: float, end_s: float | None, detector: Detector, rng: np.random.Generator
) -> Scenario:
    optical = np.flatnonzero(detector.n_pmts > 0)
    index = int(rng.choice(optical))
    return Scenario(
        name,
        start_s,
        end_s,
        np.array([index]),
        (int(detector.dom_ids[index]),),
        du=int(detector.dom_du[index]),
    )


def _one_du(
    name: str, start_s: float, end_s: float | None, detector: Detector, rng: np.random.Generator
) -> Scenario:
    du = int(rng.choice(detector.dus))
    index = np.flatnonzero(detector.dom_du == du)
    return Scenario(name, start_s, end_s, index, tuple(detector.dom_ids[index].tolist()), du=du)


def _one_pmt(
    name: str, start_s: float, end_s: float | None, detector: Detector, rng: np.random.Generator
) -> Scenario:
    scenario = _one_dom(name, start_s, end_s, detector, rng)
    channel = int(rng.integers(detector.n_pmts[scenario.dom_index[0]]))
    return Scenario(
        name, start_s, end_s, scenario.dom_index, scenario.dom_ids, scenario.du, channel
    )


def _many_doms(
    name: str, start_s: float, end_s: float | None, detector: Detector, rng: np.random.Generator
) -> Scenario:
    optical = np.flatnonzero(detector.n_pmts > 0)
    count = max(1, round(HRV_STORM_FRACTION * len(optical)))
    index = np.sort(rng.choice(optical, count, replace=False))
    factors = rng.uniform(*HRV_STORM_FACTOR_RANGE, size=(count, 1))
    return Scenario(
        name, start_s, end_s, index, tuple(detector.dom_ids[index].tolist()), factors=factors
    )


def _offset_dom(
    name: str, start_s: float, end_s: float | None, detector: Detector, rng: np.random.Generator
) -> Scenario:
    scenario = _one_dom(name, start_s, end_s, detector, rng)
    return Scenario(
        name,
        start_s,
        end_s,
        scenario.dom_index,
        scenario.dom_ids,
        du=scenario.du,
        factors=np.array([T0_OFFSET_NS]),
    )


def _nothing(
    name: str, start_s: float, end_s: float | None, _detector: Detector, _rng: np.random.Generator
) -> Scenario:
    return Scenario(name, start_s, end_s, np.array([], np.int64), ())


def _whole_detector_for_a_burst(
    name: str, start_s: float, end_s: float | None, detector: Detector, _rng: np.random.Generator
) -> Scenario:
    optical = np.flatnonzero(detector.n_pmts > 0)
    end_s = start_s + SN_BURST_DURATION_S if end_s is None else end_s
    return Scenario(name, start_s, end_s, optical, tuple(detector.dom_ids[optical].tolist()))


def _spread_t0s(
    name: str, start_s: float, end_s: float | None, detector: Detector, rng: np.random.Generator
) -> Scenario:
    optical = np.flatnonzero(detector.n_pmts > 0)
    factors = np.zeros((len(detector.dom_ids), N_CHANNELS))
    factors[optical] = rng.normal(0, T0_SPREAD_NS, (len(optical), N_CHANNELS))
    bad = np.sort(rng.choice(optical, min(T0_SPREAD_BAD_DOMS, len(optical)), replace=False))
    sign = rng.choice([-1.0, 1.0], len(bad))
    factors[bad] += (sign * rng.uniform(*T0_SPREAD_BAD_DOM_NS, len(bad)))[:, None]
    return Scenario(
        name, start_s, end_s, bad, tuple(detector.dom_ids[bad].tolist()), factors=factors
    )


def _silence(scenario: Scenario, effects: Effects) -> None:
    effects.silent[scenario.dom_index] = True


def _heat_pmt(scenario: Scenario, effects: Effects) -> None:
    effects.rate_factor[scenario.dom_index[0], scenario.channel] *= HOT_PMT_FACTOR


def _glow(scenario: Scenario, effects: Effects) -> None:
    effects.rate_factor[scenario.dom_index] *= scenario.factors


def _stop_triggers(_scenario: Scenario, effects: Effects) -> None:
    effects.event_rate_factor = 0.0


def _lose_white_rabbit(scenario: Scenario, effects: Effects) -> None:
    effects.wr_lost[scenario.dom_index] = True


def _lose_udp_packets(scenario: Scenario, effects: Effects) -> None:
    if effects.udp_lossy is None:
        effects.udp_lossy = np.zeros(len(effects.silent), bool)
    effects.udp_lossy[scenario.dom_index] = True


def _delay_dom(scenario: Scenario, effects: Effects) -> None:
    # time_shift_ns is true delay minus DETX t0: a shorter true delay makes hits late
    effects.time_shift_ns[scenario.dom_index] -= scenario.factors[0]


def _shift_t0s(scenario: Scenario, effects: Effects) -> None:
    effects.time_shift_ns += scenario.factors


def _more_upgoing(_scenario: Scenario, effects: Effects) -> None:
    effects.upgoing_fraction = UPGOING_FRACTION


def _offset_text(scenario: Scenario) -> str:
    return f"{_dom_text(scenario)}, hit times {scenario.factors[0]:+g} ns against the DETX"


def _shift_pmt_delay(scenario: Scenario, effects: Effects) -> None:
    shift = PMT_T0_SHIFTS_NS[scenario.name]
    effects.time_shift_ns[scenario.dom_index[0], scenario.channel] += shift


def _pmt_delay_text(scenario: Scenario) -> str:
    shift = PMT_T0_SHIFTS_NS[scenario.name]
    return f"channel {scenario.channel} of {_dom_text(scenario)}: delay DETX t0 + {shift:g} ns"


def _burst_in_timeslices(_scenario: Scenario, _effects: Effects) -> None:
    """Nothing per CLB: the timeslice model reads the burst's age from the scenario."""


def _dom_text(scenario: Scenario) -> str:
    return f"DOM {scenario.dom_ids[0]} of DU {scenario.du}"


#: Scenario name -> how its targets are chosen, what it does, how its target reads.
KINDS: dict[str, _Kind] = {
    "silent-dom": _Kind(_one_dom, _silence, _dom_text),
    "du-loss": _Kind(_one_du, _silence, lambda s: f"DU {s.du} ({len(s.dom_ids)} CLBs)"),
    "hot-pmt": _Kind(_one_pmt, _heat_pmt, lambda s: f"channel {s.channel} of {_dom_text(s)}"),
    "hrv-storm": _Kind(_many_doms, _glow, lambda s: f"{len(s.dom_ids)} DOMs"),
    "trigger-zero": _Kind(_nothing, _stop_triggers, lambda s: "all triggers"),
    "wr-loss": _Kind(_one_dom, _lose_white_rabbit, _dom_text),
    "udp-loss": _Kind(_one_dom, _lose_udp_packets, _dom_text),
    "t0-offset": _Kind(_offset_dom, _delay_dom, _offset_text),
    "pmt-t0": _Kind(_one_pmt, _shift_pmt_delay, _pmt_delay_text),
    "pmt-t0-15": _Kind(_one_pmt, _shift_pmt_delay, _pmt_delay_text),
    "sn-burst": _Kind(
        _whole_detector_for_a_burst, _burst_in_timeslices, lambda s: f"{len(s.dom_ids)} DOMs"
    ),
    "t0-spread": _Kind(
        _spread_t0s,
        _shift_t0s,
        lambda s: (
            f"every PMT N(0, {T0_SPREAD_NS:g} ns), DOMs {', '.join(map(str, s.dom_ids))} "
            f"by {T0_SPREAD_BAD_DOM_NS[0]:g}-{T0_SPREAD_BAD_DOM_NS[1]:g} ns"
        ),
    ),
    "upgoing": _Kind(_nothing, _more_upgoing, lambda s: f"{UPGOING_FRACTION:.0%} of the muons"),
}


def parse_scenario_names(values: Iterable[str]) -> list[tuple[str, float, float | None]]:
    """``["silent-dom@30", "hot-pmt,wr-loss@5-20"]`` -> ``[(name, start_s, end_s), ...]``.

    Raises ValueError naming the bad item and the known scenarios.
    """
    parsed = []
    for value in values:
        for item in filter(None, (part.strip() for part in value.split(","))):
            name, _, span = item.partition("@")
            if name not in KINDS:
                raise ValueError(f"unknown scenario {name!r}; known: {', '.join(KINDS)}")
            start, _, end = span.partition("-")
            try:
                start_s = float(start) if start else DEFAULT_START_S
                end_s = float(end) if end else None
            except ValueError:
                raise ValueError(
                    f"scenario {item!r}: expected NAME[@START_S[-END_S]] in seconds"
                ) from None
            if start_s < 0 or (end_s is not None and end_s <= start_s):
                raise ValueError(f"scenario {item!r}: need 0 <= START_S < END_S")
            parsed.append((name, start_s, end_s))
    return parsed


def plan_scenarios(
    specs: Iterable[tuple[str, float, float | None]], detector: Detector, seed: int
) -> list[Scenario]:
    """The scenarios with their targets; scenario ``i`` draws from generator ``(seed, i)``."""
    return [
        KINDS[name].choose(name, start_s, end_s, detector, np.random.default_rng([seed, i]))
        for i, (name, start_s, end_s) in enumerate(specs)
    ]


def effects_at(
    scenarios: Iterable[Scenario], elapsed_s: float, n_clbs: int, n_channels: int
) -> Effects:
    """The combined effects of the scenarios active at ``elapsed_s`` simulated seconds."""
    effects = Effects.neutral(n_clbs, n_channels)
    for scenario in scenarios:
        if scenario.active(elapsed_s):
            scenario.apply(effects)
    return effects
