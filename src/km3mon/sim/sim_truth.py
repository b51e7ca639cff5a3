"""The simulator's truth, written next to its stream: what a reconstruction must find.

``km3mon simulate --truth FILE`` writes one JSON object per line. First one line per planned
scenario (``{"scenario": "t0-offset", "describe": ..., "dom_ids": [...], ...}``), then one per
triggered event, keyed as the event itself is (run, frame index, trigger counter):

- ``dir_x, dir_y, dir_z``: unit vector of the muon's direction of travel;
  ``zenith_deg``/``azimuth_deg`` in KM3NeT's convention (where it comes from: a down-going
  muon has zenith 0°);
- ``pos_x, pos_y, pos_z`` (m, DETX frame) and ``t`` (ns): a point the muon passes and when,
  ``t`` in the frame of calibrated hit times (see :mod:`.sim_calibration`);
- ``n_signal_hits``: triggered hits of the event's light, a proxy of its energy;
- ``kind`` (``muon``, ``bundle``, ``upgoing``, ``k40``) and ``n_muons``: the leading muon is
  the one given; a ``k40`` event (triggered by K40 alone) has no direction, angles or point.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import IO

import numpy as np

from km3mon.daq.preamble import DAQHeader
from km3mon.sim.scenarios import Scenario
from km3mon.sim.sim_events import SimulatedEvent


def zenith_azimuth_deg(direction: np.ndarray) -> tuple[float, float]:
    """KM3NeT's angles of a direction of travel: where the particle comes from."""
    x, y, z = (float(v) for v in direction)
    zenith = float(np.degrees(np.arccos(np.clip(-z, -1.0, 1.0))))
    azimuth = float(np.degrees(np.arctan2(-y, -x)) % 360.0)
    return zenith, azimuth


def event_record(header: DAQHeader, trigger_counter: int, event: SimulatedEvent) -> dict:
    """The truth of one event, as written to the truth file (a ``k40`` event has no muon: no
    direction, angles or point)."""
    record: dict[str, object] = {
        "run": header.run,
        "frame_index": header.frame_index,
        "trigger_counter": trigger_counter,
        "utc": header.timestamp,
        "kind": event.kind,
        "n_muons": event.n_muons,
    }
    if event.kind != "k40":
        zenith, azimuth = zenith_azimuth_deg(event.track_direction)
        record["zenith_deg"] = round(zenith, 6)
        record["azimuth_deg"] = round(azimuth, 6)
        for axis, value in zip("xyz", event.track_direction.tolist(), strict=True):
            record[f"dir_{axis}"] = round(value, 9)
        for axis, value in zip("xyz", event.track_point_m.tolist(), strict=True):
            record[f"pos_{axis}"] = round(value, 4)
    record["t"] = round(event.track_time_ns, 3)
    record["n_signal_hits"] = event.n_signal_hits
    return record


def scenario_record(scenario: Scenario) -> dict:
    """One planned scenario: its targets and, for sizes, the size."""
    record: dict[str, object] = {
        "scenario": scenario.name,
        "describe": scenario.describe(),
        "dom_ids": list(scenario.dom_ids),
        "du": scenario.du,
        "start_s": scenario.start_s,
        "end_s": scenario.end_s,
    }
    if scenario.name == "t0-offset" and scenario.factors is not None:
        record["offset_ns"] = float(scenario.factors[0])
    if scenario.name == "t0-spread" and scenario.factors is not None:
        # the badly-off DOMs' mean offset (their hits are late by minus it, see scenarios)
        record["dom_offsets_ns"] = np.round(
            scenario.factors[scenario.dom_index].mean(axis=1), 3
        ).tolist()
    return record


class TruthWriter:
    """Appends truth records to a JSON-lines file, line-buffered: every event is on disk before
    it is sent, even if the simulator is killed (a few hundred small writes a second)."""

    def __init__(self, path: str | Path, scenarios: list[Scenario]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._stream: IO[str] = self.path.open("w", encoding="utf-8", buffering=1)
        for scenario in scenarios:
            self._write(scenario_record(scenario))

    def __call__(self, header: DAQHeader, trigger_counter: int, event: SimulatedEvent) -> None:
        self._write(event_record(header, trigger_counter, event))

    def _write(self, record: dict) -> None:
        self._stream.write(json.dumps(record, separators=(",", ":")) + "\n")

    def close(self) -> None:
        self._stream.close()


def read_truth(path: str | Path) -> tuple[list[dict], dict[tuple[int, int, int], dict]]:
    """(scenario records, event records by (run, frame index, trigger counter)); a torn
    last line (the simulator still writing) is skipped."""
    scenarios, events = [], {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if "scenario" in record:
            scenarios.append(record)
        else:
            events[(record["run"], record["frame_index"], record["trigger_counter"])] = record
    return scenarios, events
