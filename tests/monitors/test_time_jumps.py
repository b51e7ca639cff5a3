"""Forward jumps of DAQ time (a replay that skips gaps, a file of selected events) reach the
monitors whole: the time gate holds the first messages of a new time until the following
ones confirm it, and still drops a wild time that nothing confirms."""

from __future__ import annotations

import csv
from pathlib import Path

import km3net_testdata
import numpy as np
import pytest

from km3mon.controlhost import Message, encode_frame
from km3mon.detector import read_detx
from km3mon.runtime.guards import HOLD_S, MAX_AHEAD_OF_WALL_S, TimeGate, TimeGuard
from tests.conftest import read_json, wait_subscribed, wait_until, wait_while_progressing
from tests.monitors.daqfakes import make_event
from tests.monitors.test_trigger_rates import TYPES, summary_slice

ARCA21 = km3net_testdata.data_path("detx/KM3NeT_00000133_20221025.detx")
#: A day in the past (the detector file's): the guard judges by the stream, not the wall clock.
START_S = 1_666_700_000.0
JUMPS = 20
SEGMENT_S = 3.0
EVENT_EVERY_S = 0.2
#: The last segment is longer than ztplot's plot spacing (60 s of event time), so that its
#: last events are drawn and counted too; its summary slices go on for longer than
#: trigger_rates waits for late events, so that it closes its last interval.
LAST_SEGMENT_S = 62.0
TAIL_S = 15.0


def recording(rng: np.random.Generator) -> tuple[list[tuple[str, bytes]], int]:
    """IO_SUM every 100 ms and IO_EVT every ``EVENT_EVERY_S`` in 21 segments, each 100 to
    3000 s after the previous one, in time order (as a recording with gaps skipped); and the
    number of events."""
    optical = read_detx(ARCA21).dom_ids[read_detx(ARCA21).dom_floor > 0]
    messages: list[tuple[str, bytes]] = []
    start_s, events = START_S, 0
    for segment in range(JUMPS + 1):
        length_s = LAST_SEGMENT_S if segment == JUMPS else SEGMENT_S
        tail_s = TAIL_S if segment == JUMPS else 0.0
        for tenth in range(round((length_s + tail_s) * 10)):
            time_s = start_s + tenth / 10
            messages.append(("IO_SUM", summary_slice(time_s, 1000)))
            if tenth % round(EVENT_EVERY_S * 10) == 0 and tenth < length_s * 10:
                events += 1
                payload, _ = make_event(events, 1000, optical, rng, time_s=time_s + 0.05)
                messages.append(("IO_EVT", payload))
        start_s += length_s + float(rng.uniform(100, 3000))
    return messages, events


def as_messages(stream: list[tuple[str, bytes]]) -> list[Message]:
    return [Message(tag, payload) for tag, payload in stream]


def test_gate_delivers_every_message_of_a_stream_with_jumps_in_order() -> None:
    rng = np.random.default_rng(3)
    stream, _ = recording(rng)
    messages = as_messages(stream)
    for tag in ("IO_EVT", "IO_SUM"):  # a monitor of one tag sees every jump of it alone
        mine = [m for m in messages if m.tag == tag]
        # batches of 1 to 8 messages, as a paced replay gives; or all that came while the
        # monitor was busy (reco compiling its kernels) in one batch
        for sizes in (rng.integers(1, 9, len(mine)).tolist(), [3, len(mine)]):
            gate = TimeGate(TimeGuard())
            delivered, position = [], 0
            for size in sizes:
                admitted = gate.admit(mine[position : position + size])
                assert admitted.rejected_s == [], tag
                delivered += admitted.messages
                position += size
            assert delivered == mine, f"{tag}: {len(delivered)} of {len(mine)}, in order"


def test_gate_drops_wild_times_and_delays_no_good_message() -> None:
    now = 1_800_000_000.0
    gate = TimeGate(TimeGuard())
    wild = [now + 1800, now - 40 * 86400, now + 3 * 3600, now + 7200]
    seen_wild, rejected = 0, []
    for step in range(400):
        time_s = now + 0.1 * step
        batch = [Message("IO_SUM", summary_slice(time_s, 7))]
        if step % 50 == 25:
            batch.append(Message("IO_SUM", summary_slice(wild[seen_wild % len(wild)], 7)))
            seen_wild += 1
        admitted = gate.admit(batch, now_s=time_s, now_mono=step * 0.1)
        assert admitted.messages == batch[:1], step  # the good one at once, no wild one
        rejected += admitted.rejected_s
    assert sorted(rejected) == sorted(wild[i % len(wild)] for i in range(seen_wild - 1))
    absurd = Message("IO_SUM", summary_slice(now + 2 * MAX_AHEAD_OF_WALL_S, 7))
    # absurd times pass the gate: the decoders refuse and count them
    assert gate.admit([absurd], now_s=now + 40).messages == [absurd]


def test_a_new_time_that_nothing_confirms_is_dropped_after_a_while() -> None:
    gate = TimeGate(TimeGuard())
    old = [Message("IO_EVT", make_event(i, 5, np.arange(1, 4), np.random.default_rng(i),
                                       time_s=START_S + i)[0]) for i in range(40)]  # fmt: skip
    assert gate.admit(old, now_mono=0).messages == old
    lonely = [Message("IO_SUM", summary_slice(START_S + 5000 + i, 5)) for i in range(3)]
    assert gate.admit(lonely, now_mono=1).messages == []
    assert gate.admit([], now_mono=1 + HOLD_S / 2).messages == []
    assert len(gate.admit([], now_mono=2 + HOLD_S).rejected_s) == 3


def trigger_totals(path: Path) -> int:
    """Events counted in trigger_rates.csv (rates times live time)."""
    if not path.exists():
        return 0
    with path.open() as stream:
        rows = list(csv.DictReader(stream))
    return round(sum(float(r[TYPES[0]] or 0) * float(r["live_s"]) for r in rows))


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_replay_with_twenty_jumps_loses_no_event(ligier, spawn, tmp_path) -> None:
    stream, n_events = recording(np.random.default_rng(21))
    recorded = tmp_path / "jumps.dat"
    recorded.write_bytes(b"".join(encode_frame(tag, payload) for tag, payload in stream))
    plots, data = tmp_path / "plots", tmp_path / "data"
    pipeline = tmp_path / "pipeline.toml"
    pipeline.write_text("[TriggerRate]\ninterval = 1\n[ZTPlot]\nmin_dus = 1\nmin_doms = 1\n")
    common = ["--detx", ARCA21, "-p", ligier.port, "-o", plots, "--data-dir", data,
              "--pipeline", pipeline, "-i", "2"]  # fmt: skip
    names = ("reco", "ztplot", "triggermap", "trigger_rates")
    monitors = {name: spawn(name, *common) for name in names}
    for name in names:
        wait_subscribed(ligier.port, name=name, timeout_s=180)
    replay = spawn("replay", recorded, "-p", ligier.port, "--speed", "5", "--no-progress")
    wait_until(lambda: replay.popen.poll() is not None, 300, "the replay to end",
               show=lambda: replay.log[-500:])  # fmt: skip
    assert replay.popen.returncode == 0, replay.log

    metrics = data / "metrics"
    counted = {
        "reco": lambda: read_json(metrics / "reco.json").get("totals", {}).get("events"),
        "ztplot": lambda: read_json(metrics / "ztplot.json").get("selected_events"),
        "triggermap": lambda: read_json(metrics / "triggermap.json").get("events"),
        "trigger_rates": lambda: trigger_totals(data / "trigger_rates.csv"),
    }
    for name, count in counted.items():  # a busy monitor may count late, a stuck one not at all
        wait_while_progressing(lambda c=count: c() == n_events, count, 60,
                               f"{name} counting {n_events} events", show=count)  # fmt: skip
    for name, process in monitors.items():
        record = read_json(data / "freshness" / f"{name}.json")
        assert record["implausible_times"] == 0, (name, record)
        assert "implausible" not in process.log, process.log[-2000:]
        assert process.alive(), name
