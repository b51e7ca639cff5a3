"""Every stream monitor on one ligier, fed a simulated ARCA-21 and, for a minute, about
200 messages a second of mutated real payloads of every tag: nobody may crash, freeze, move
a clock or say anything false about it."""

from __future__ import annotations

import csv
import struct
import threading
import time
from collections import Counter
from pathlib import Path

import km3net_testdata
import numpy as np
import pytest

from km3mon.controlhost import Client
from km3mon.daq import decode_summaryslice
from km3mon.daq.files import iter_file
from km3mon.timetext import utc
from tests.conftest import read_json, wait_subscribed, wait_until, wait_while_progressing
from tests.monitors.stamps import png_text

ARCA21 = km3net_testdata.data_path("detx/KM3NeT_00000133_20221025.detx")
DAQ_DIR = Path(km3net_testdata.data_path("daq/IO_EVT.dat")).parent
RECORDINGS = ("IO_EVT.dat", "IO_SUM.dat", "IO_MONIT.dat", "IO_TSSN.dat", "IO_TSL1_1003.dat")
FUZZ_S = 60.0
FUZZ_PER_S = 200
MONITORS = {  # process -> tags it reads
    "dom_activity": ("IO_SUM",),
    "dom_rates": ("IO_SUM",),
    "pmt_rates": ("IO_MONIT",),
    "ahrs_calibration": ("IO_MONIT",),
    "trigger_rates": ("IO_EVT", "IO_SUM"),
    "triggermap": ("IO_EVT",),
    "ztplot": ("IO_EVT",),
    "reco": ("IO_EVT",),
    "timesync": ("IO_SUM", "IO_TSSN"),
    "sn": ("IO_TSSN", "IO_EVT"),
    "k40": ("IO_TSL1", "IO_SUM"),
    "msg_dumper": ("MSG",),
}
#: Flags beyond the common ones.
EXTRA: dict[str, tuple[str, ...]] = {"k40": ("--period", "20")}
#: How old the data of a current plot may be [s]. A K40 plot shows the last calibration: a
#: 20 s period, the fit (niced; 24 s for ARCA-21 with both cores busy) and the period it
#: skipped meanwhile.
OLDEST_S = {"k40": 120}
KINDS = ("bit flips", "truncated", "wild UTC", "UTC bit flip", "wild run", "garbage")
LOG_LINE = b"2026-11-30 12:00:00.000 DataFilter F0 STATUS: run 1, 4023 events written"


class Fuzzer(threading.Thread):
    """Real recorded payloads, their header set to the live stream's detector, run and time
    (of its newest summary slice), then mutated; published at ``FUZZ_PER_S`` and counted per
    tag and kind."""

    def __init__(self, port: int, stop: threading.Event) -> None:
        super().__init__(name="fuzzer", daemon=True)
        self.port, self.stop = port, stop
        self.rng = np.random.default_rng(14)
        self.sent: Counter[tuple[str, str]] = Counter()
        self.live_run: int | None = None
        self.live_time_s = 0.0
        self.samples = [
            (m.tag, m.payload) for name in RECORDINGS for m in iter_file(DAQ_DIR / name)
        ]
        self.samples.append(("MSG", LOG_LINE))

    def run(self) -> None:
        with Client("127.0.0.1", self.port) as watcher, Client("127.0.0.1", self.port) as sender:
            watcher.subscribe("IO_SUM")
            while self.live_run is None and not self.stop.is_set():
                self.watch(watcher, timeout_s=0.5)
            next_s = time.monotonic()
            while not self.stop.is_set():
                self.watch(watcher, timeout_s=0)
                sender.publish_many(self.mutated() for _ in range(FUZZ_PER_S // 20))
                next_s += 0.05
                self.stop.wait(max(0.0, next_s - time.monotonic()))

    def watch(self, watcher: Client, timeout_s: float) -> None:
        """The run and DAQ time of the newest good summary slice."""
        for message in watcher.receive_batch(timeout=timeout_s):
            header = decode_summaryslice(message.payload).header
            if header.det_id == 133:  # the simulator's, not one of ours
                self.live_run, self.live_time_s = header.run, header.timestamp

    def mutated(self) -> tuple[str, bytes]:
        rng = self.rng
        tag, payload = self.samples[int(rng.integers(len(self.samples)))]
        kind = KINDS[int(rng.integers(len(KINDS)))]
        if tag == "MSG" and kind in ("wild UTC", "UTC bit flip", "wild run"):
            kind = "bit flips"
        self.sent[tag, kind] += 1
        data = bytearray(payload)
        live_s = self.live_time_s
        cycles = int((live_s % 1) * 1e9 / 16)
        if tag == "IO_MONIT":
            run_at, utc_at, word = 4, 12, ">I"
            struct.pack_into(">IxxxxII", data, run_at, self.live_run, int(live_s), cycles)
        elif tag != "MSG":
            run_at, utc_at, word = 14, 22, "<I"
            struct.pack_into("<iiiII", data, 10, 133, self.live_run, 0, int(live_s), cycles)
        if kind == "bit flips":
            for bit in rng.integers(0, 8 * len(data), int(rng.integers(1, 9))).tolist():
                data[bit // 8] ^= 1 << (bit % 8)
        elif kind == "truncated":
            data = data[: int(rng.integers(0, len(data)))]
        elif kind == "wild UTC":
            struct.pack_into(word, data, utc_at, int(rng.choice([0x7FFFFFFF, 0xFFFFFFFF])))
        elif kind == "UTC bit flip":
            value = struct.unpack_from(word, data, utc_at)[0] ^ (1 << int(rng.integers(32)))
            struct.pack_into(word, data, utc_at, value)
        elif kind == "wild run":
            struct.pack_into(word, data, run_at, int(rng.integers(0, 2**32)))
        elif kind == "garbage":
            data = bytearray(rng.bytes(int(rng.integers(0, 3000))))
        return tag, bytes(data)

    def count(self, tags: tuple[str, ...], kinds: tuple[str, ...] = KINDS) -> int:
        return sum(n for (tag, kind), n in self.sent.items() if tag in tags and kind in kinds)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_monitors_stay_truthful_under_a_minute_of_fuzzing(ligier, spawn, tmp_path) -> None:
    plots, data = tmp_path / "plots", tmp_path / "data"
    pipeline = tmp_path / "pipeline.toml"
    pipeline.write_text("[TriggerRate]\ninterval = 5\n[PMTRates]\ninterval = 5\n")
    common = ["--detx", ARCA21, "-p", ligier.port, "-o", plots, "--data-dir", data,
              "--pipeline", pipeline, "-i", "5"]  # fmt: skip
    monitors = {
        name: spawn(name, *common, *EXTRA.get(name, ()))
        for name in MONITORS
        if name != "msg_dumper"
    }
    monitors["msg_dumper"] = spawn("msg_dumper", *common, "-f", tmp_path / "logs" / "MSG.log")
    for name in MONITORS:
        record = data / "freshness" / f"{name}.json"
        wait_subscribed(ligier.port, name=name)
    # no --duration: the stream must go on through the warm-up, the fuzzing and the settle
    # wait however slow they are (the fixture stops the simulator at the end)
    simulator = spawn("simulate", "--detx", ARCA21, "-p", ligier.port, "--seed", "14")
    stop = threading.Event()
    fuzzer = Fuzzer(ligier.port, stop)
    fuzzer.start()
    try:
        # generous: a loaded machine takes a minute to start the simulator and its kernels
        wait_until(lambda: fuzzer.live_run is not None, 180, "the simulated stream",
                   show=lambda: simulator.log[-1000:])  # fmt: skip
        fuzz_start = time.monotonic()
        while time.monotonic() - fuzz_start < FUZZ_S:
            time.sleep(1)
            assert all(m.alive() for m in monitors.values()), "a monitor died under fuzzing"
    finally:
        stop.set()
        fuzzer.join(10)
    fuzzed_s = time.monotonic() - fuzz_start
    assert sum(fuzzer.sent.values()) > 0.8 * FUZZ_PER_S * fuzzed_s
    assert simulator.alive() and ligier.process.alive()

    # Records: every monitor running and through the stream as it was when the fuzzing ended
    # (DAQ time of its newest summary slice; wall time for the log). Measured against the
    # stream, not the clock: on a loaded machine the simulator itself falls behind real time.
    stream_s, fuzz_end_s = fuzzer.live_time_s, time.time()
    behind: dict[str, float] = {}  # the newest data of each monitor not yet through

    def unsettled() -> dict[str, str]:
        """Each record that is not running, not written lately or not yet through the stream."""
        now = time.time()
        found = {}
        for name in MONITORS:
            record = read_json(data / "freshness" / f"{name}.json")
            updated_s = now - record.get("updated_at", 0)
            newest = record.get("newest_data_at") or record.get("last_message_at") or 0
            behind_s = (fuzz_end_s if name == "msg_dumper" else stream_s) - newest
            behind.pop(name, None)
            # the last garbage carries no DAQ time: counted once the monitor has consumed it
            tags = MONITORS[name]
            uncounted = name != "msg_dumper" and (
                record.get("decode_errors", 0) < fuzzer.count(tags, ("garbage",))
                or record.get("implausible_times", 0) < fuzzer.count(tags, ("wild UTC",))
            )
            if record.get("state") != "running" or updated_s >= 10 or behind_s >= 5 or uncounted:
                behind[name] = (newest, record.get("decode_errors"), record.get("messages"))
                found[name] = (
                    f"{record.get('state')}, updated {updated_s:.0f} s ago, "
                    f"{behind_s:.0f} s behind the stream at the fuzzing's end, "
                    f"{record.get('decode_errors')} decode errors"
                )
        return found

    # a slow monitor may take long to catch up; only one that stops reading fails
    wait_while_progressing(lambda: not unsettled(), lambda: sorted(behind.items()), 60,
                           "every record running and through the stream",
                           show=unsettled)  # fmt: skip
    now = time.time()
    for name, tags in MONITORS.items():
        record = read_json(data / "freshness" / f"{name}.json")
        assert record["connected"] and record["dropped"] == 0, name
        assert record["newest_data_at"] <= now + 5, f"{name}: {utc(record['newest_data_at'])}"
        if name == "msg_dumper":
            continue  # every line is a log line: nothing to reject
        flagged = record["decode_errors"] + record["implausible_times"]
        assert record["decode_errors"] >= fuzzer.count(tags, ("garbage",)), name
        assert record["implausible_times"] >= fuzzer.count(tags, ("wild UTC",)), name
        assert flagged <= fuzzer.count(tags), f"{name}: good data flagged as bad"

    # Plots: all redrawn from the stream's end (k40: its last calibration), none stale, none
    # stamped with a time ahead of now. Judged against the stream, waiting while they move.
    def behind_plots() -> dict[str, str]:
        """Each plot not yet drawn from the stream's end, with its stamps."""
        found = {}
        for name in MONITORS:
            record = read_json(data / "freshness" / f"{name}.json")
            for filename, output in record.get("outputs", {}).items():
                stamps = png_text(plots / filename)
                oldest = utc(stream_s - OLDEST_S.get(name, 60))
                if output["stale"] or stamps["stale"] != "false" or stamps["data_until"] < oldest:
                    found[filename] = f"stale {output['stale']}, data until {stamps['data_until']}"
        return found

    wait_while_progressing(lambda: not behind_plots(), lambda: sorted(behind_plots().items()), 90,
                           "every plot drawn from the stream's end", show=behind_plots)  # fmt: skip
    now = time.time()
    for name in MONITORS:
        record = read_json(data / "freshness" / f"{name}.json")
        assert name == "msg_dumper" or record["outputs"], f"{name} drew nothing"
        for filename in record["outputs"]:
            assert png_text(plots / filename)["data_until"] <= utc(now + 5), filename

    # History: no row from the future, no torn row, no run change made up.
    with (data / "trigger_rates.csv").open(newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert len(rows) >= FUZZ_S / 5 - 2
    for row in rows:
        assert float(row["timestamp"]) <= now and float(row["live_s"]) <= 5.0, row
    metrics = read_json(data / "metrics" / "trigger_rates.json")
    assert metrics["run"] == fuzzer.live_run and metrics["run_changes"] == []
    for name, process in monitors.items():  # alive, no crash, errors reported rate-limited
        assert process.alive(), name
        assert "Traceback" not in process.log, f"{name}:\n{process.log[-3000:]}"
        assert len(process.log.splitlines()) < 150, f"{name} floods its log"
