"""ControlHost throughput benchmark (issue 2): dispatchers and clients, side by side.

Part 1, dispatchers: ``km3mon ligier`` (asyncio default loop, and with uvloop when it is
importable) against ``bench/naive_ligier.py`` (one ``readexactly`` per frame, one ``write``
per message per subscriber). One publisher process sends pre-built ~1 MB blocks of frames
as fast as the socket takes them; 4 subscriber processes (``w`` = any, ``_Always``) count
received bytes with ``recv_into`` and check, once per read, that a frame prefix sits at
every position where one is expected. Scenario A: 200-byte payloads; scenario B: 228 kB
payloads (an ARCA summary slice).

Part 2, clients: one receiver process subscribed in ``a`` (all) mode to our ligier, so
the ligier and the publisher are throttled by the receiver and leave it the CPU; the
receiver materialises every message (tag and payload bytes) through our
``Client.receive_batch``, km3pipe's ``Client.get_message`` or km3pipe's ``CHPump``
(``next(pump)``, queue limit disabled).

Every process is started here on free 127.0.0.1 ports and stopped here (also on error);
all processes of one run share an absolute time schedule: warm-up, then a measured window
in which CPU time of each process (``/proc/PID/stat``) and of the machine (``/proc/stat``)
is sampled. Each configuration is repeated; the report gives medians.

    .venv/bin/python bench/bench_controlhost.py            # full run, 5-10 minutes
    .venv/bin/python bench/bench_controlhost.py --quick    # smoke test, under a minute
    .venv/bin/python bench/bench_controlhost.py --markdown /tmp/controlhost.md

``--malloc-variant`` adds one with glibc's allocator tuned through ``MALLOC_*_`` variables;
``--only km3mon,naive`` restricts the variants, ``--part dispatcher|client`` the scenarios.
The uvloop variant runs when uvloop is importable (it is not a dependency). The machine is
often shared: before each run the script waits up to ``--quiet-wait`` seconds for it to
be idle, and it reports other processes' CPU share and rates per CPU-second of each process.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

HOST = "127.0.0.1"
PREFIX = struct.Struct(">8siI")
BLOCK_BYTES = 1 << 20
SUBSCRIBERS = 4
SMALL_PAYLOAD = 200
SUMMARY_SLICE_PAYLOAD = 228_000
HERE = Path(__file__).resolve().parent
CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK")

UVLOOP_LIGIER = (
    "import asyncio, sys, uvloop; asyncio.set_event_loop_policy(uvloop.EventLoopPolicy()); "
    "from km3mon.cli import main; sys.exit(main(sys.argv[1:]))"
)


def frame_prefix(tag: str, size: int) -> bytes:
    return PREFIX.pack(tag.encode().ljust(8, b"\x00"), size, 0)


# ---------------------------------------------------------------------------------------
# Worker processes. Each prints "ready" on its protocol pipe, reads the schedule as one
# JSON line from stdin, runs, and prints one JSON result line.
# ---------------------------------------------------------------------------------------


class Protocol:
    """The worker's line protocol on the original stdout; print() goes to stderr."""

    def __init__(self) -> None:
        self.out = os.fdopen(os.dup(1), "w")
        os.dup2(2, 1)
        sys.stdout = sys.stderr

    def ready(self) -> dict:
        self.out.write("ready\n")
        self.out.flush()
        return json.loads(sys.stdin.readline())

    def result(self, **values: object) -> None:
        self.out.write(json.dumps(values) + "\n")
        self.out.flush()


def worker_publisher(config: dict) -> None:
    protocol = Protocol()
    tag, size = config["tag"], config["payload"]
    frame = frame_prefix(tag, size) + os.urandom(size)
    block = frame * max(1, BLOCK_BYTES // len(frame))
    view = memoryview(block)
    sock = socket.create_connection((HOST, config["port"]))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    schedule = protocol.ready()
    t_start, t_end = schedule["t_start"], schedule["t_end"]
    sock.settimeout(0.1)
    sent = position = 0
    window_bytes = window_s = 0.0
    at_start: tuple[int, float] | None = None
    while True:
        now = time.time()
        if at_start is None and now >= t_start:
            at_start = (sent, now)
        if now >= t_end:
            if at_start is not None and not window_s:
                window_bytes, window_s = sent - at_start[0], now - at_start[1]
            if position == 0 or now > t_end + 10:
                break
        try:
            count = sock.send(view[position:])
        except TimeoutError:
            continue
        sent += count
        position = (position + count) % len(block)
    sock.close()
    protocol.result(
        frame=len(frame),
        window_bytes=window_bytes,
        window_s=window_s,
        total_frames=sent // len(frame),
        incomplete=position != 0,
    )


def worker_subscriber(config: dict) -> None:
    protocol = Protocol()
    tag, size = config["tag"], config["payload"]
    expected = frame_prefix(tag, size)
    frame = len(expected) + size
    sock = socket.create_connection((HOST, config["port"]))
    sock.sendall(
        frame_prefix("_Subscri", len(f" w {tag}"))
        + f" w {tag}".encode()
        + frame_prefix("_Always", 0)
    )
    schedule = protocol.ready()
    t_start, t_end, idle_s = schedule["t_start"], schedule["t_end"], schedule["idle_s"]
    buffer = bytearray(4 << 20)
    view = memoryview(buffer)
    sock.settimeout(0.05)
    total = checks = bad = 0
    last_data = time.time()
    at_start: tuple[int, float] | None = None
    at_end: tuple[int, float] | None = None
    while True:
        try:
            count = sock.recv_into(buffer)
        except TimeoutError:
            count = -1
        now = time.time()
        if count == 0:
            break
        if count > 0:
            offset = -total % frame
            if offset + len(expected) <= count:
                checks += 1
                bad += view[offset : offset + len(expected)] != expected
            total += count
            last_data = now
        if at_start is None and now >= t_start:
            at_start = (total, now)
        if at_end is None and now >= t_end:
            at_end = (total, now)
        if at_end is not None and (now - last_data > idle_s or now > t_end + 30):
            break
    sock.close()
    assert at_start is not None and at_end is not None
    protocol.result(
        window_bytes=at_end[0] - at_start[0],
        window_s=at_end[1] - at_start[1],
        total_bytes=total,
        whole_frames=total % frame == 0,
        checks=checks,
        bad_prefixes=bad,
    )


def worker_receiver(config: dict) -> None:
    """Receive and materialise every message with one of three client libraries."""
    protocol = Protocol()
    kind, tag, size = config["kind"], config["tag"], config["payload"]
    if kind == "km3mon":
        from km3mon.controlhost import Client

        client = Client(HOST, config["port"], reconnect=False)
        client.connect()
        client.subscribe(tag, mode="all")

        def receive() -> list[tuple[str, bytes]]:
            return [(m.tag, m.payload) for m in client.receive_batch(timeout=1.0)]

    elif kind == "km3pipe-Client":
        from km3pipe.controlhost import Client as PipeClient

        pipe_client = PipeClient(HOST, config["port"])
        pipe_client._connect()
        pipe_client.subscribe(tag, mode="all")
        pipe_client.socket.settimeout(2.0)

        def receive() -> list[tuple[str, bytes]]:
            prefix, data = pipe_client.get_message()
            return [(str(prefix.tag), data)]

    elif kind == "km3pipe-CHPump":
        from km3pipe.io.ch import CHPump

        pump = CHPump(
            host=HOST,
            port=config["port"],
            tags=tag,
            max_queue=1 << 40,
            timeout=2,
            subscription_mode="all",
        )

        def receive() -> list[tuple[str, bytes]]:
            blob = next(pump)
            return [(str(blob["CHPrefix"].tag), blob["CHData"])]

    else:
        raise SystemExit(f"unknown receiver {kind}")
    schedule = protocol.ready()
    t_start, t_end = schedule["t_start"], schedule["t_end"]
    messages = payload_bytes = bad = 0
    at_start: tuple[int, int, float] | None = None
    while True:
        try:
            batch = receive()
        except Exception as error:  # a stopped feed ends the run; the result says so
            print(f"receiver stopped: {error!r}", file=sys.stderr)
            break
        for name, payload in batch:
            messages += 1
            payload_bytes += len(payload)
            bad += name != tag or len(payload) != size
        now = time.time()
        if at_start is None and now >= t_start:
            at_start = (messages, payload_bytes, now)
        if now >= t_end:
            break
    if at_start is None:
        at_start = (messages, payload_bytes, time.time())
    protocol.result(
        window_messages=messages - at_start[0],
        window_bytes=payload_bytes - at_start[1],
        window_s=time.time() - at_start[2],
        bad_messages=bad,
    )
    sys.stderr.flush()
    os._exit(0)  # CHPump's reader thread is blocked in recv: do not wait for it


WORKERS = {
    "publisher": worker_publisher,
    "subscriber": worker_subscriber,
    "receiver": worker_receiver,
}


# ---------------------------------------------------------------------------------------
# Orchestration
# ---------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process, all its threads."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return int(fields[11]) / CLOCK_TICKS_PER_S, int(fields[12]) / CLOCK_TICKS_PER_S


def machine_busy_seconds() -> float:
    """Busy (not idle, not iowait) CPU seconds of the whole machine, summed over cores."""
    with open("/proc/stat") as stat:
        values = [int(v) for v in stat.readline().split()[1:]]
    return (sum(values[:8]) - values[3] - values[4]) / CLOCK_TICKS_PER_S


def wait_for_quiet(max_wait_s: float, busy_limit: float = 0.3) -> None:
    """Wait (at most ``max_wait_s``) until the machine is nearly idle: other users' jobs
    (tests running on the same 2 cores) would otherwise take CPU from the run."""
    deadline = time.time() + max_wait_s
    while time.time() < deadline:
        before = machine_busy_seconds()
        time.sleep(0.5)
        if (machine_busy_seconds() - before) / 0.5 < busy_limit:
            return


class Processes:
    """Every process of one run; all of them are gone when the context exits."""

    def __init__(self, logdir: Path) -> None:
        self.logdir = logdir
        self.started: list[tuple[str, subprocess.Popen]] = []

    def __enter__(self) -> Processes:
        return self

    def __exit__(self, *exc_info: object) -> None:
        for _name, process in self.started:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.time() + 5
        for _name, process in self.started:
            try:
                process.wait(max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            for stream in (process.stdin, process.stdout):
                if stream is not None:
                    stream.close()

    def start(
        self, name: str, argv: list[str], env: dict[str, str] | None = None
    ) -> subprocess.Popen:
        log = open(self.logdir / f"{name}.log", "w")  # noqa: SIM115 - closed with the process
        process = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            env=env,
        )
        log.close()
        self.started.append((name, process))
        return process

    def worker(self, name: str, role: str, config: dict, env: dict[str, str] | None = None):
        argv = [sys.executable, str(Path(__file__).resolve()), "--worker", role, json.dumps(config)]
        return self.start(name, argv, env)

    def log_tail(self, name: str) -> str:
        path = self.logdir / f"{name}.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""


def read_line(name: str, process: subprocess.Popen, timeout_s: float, procs: Processes) -> str:
    """One line from a worker's protocol pipe, or an error with the worker's log."""
    import selectors

    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        if not selector.select(timeout_s):
            raise RuntimeError(f"{name}: no answer in {timeout_s} s\n{procs.log_tail(name)}")
    line = process.stdout.readline()
    if not line:
        raise RuntimeError(
            f"{name} exited ({process.poll()})\n{procs.log_tail(name)}\n"
            f"dispatcher log:\n{procs.log_tail('dispatcher')}"
        )
    return line


def wait_for_port(port: int, process: subprocess.Popen, timeout_s: float = 15.0) -> None:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"dispatcher exited with {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"dispatcher did not listen on {port} within {timeout_s} s")


@dataclass
class Variant:
    name: str
    kind: str  # "km3mon", "naive" (dispatchers); receiver kinds for part 2
    uvloop: bool = False
    pythonpath: str | None = None
    extra_env: dict[str, str] = field(default_factory=dict)

    def env(self) -> dict[str, str] | None:
        if self.pythonpath is None and not self.extra_env:
            return None
        env = {**os.environ, **self.extra_env}
        if self.pythonpath is not None:
            env["PYTHONPATH"] = self.pythonpath
        return env


def dispatcher_argv(variant: Variant, port: int, extra: list[str]) -> list[str]:
    if variant.kind == "naive":
        return [sys.executable, str(HERE / "naive_ligier.py"), "--port", str(port), "--host", HOST]
    args = ["ligier", "-P", str(port), "--host", HOST, "-d", "0", *extra]
    if variant.uvloop:
        return [sys.executable, "-c", UVLOOP_LIGIER, *args]
    return [sys.executable, "-m", "km3mon", *args]


@dataclass
class Timing:
    warmup_s: float
    duration_s: float
    idle_s: float
    quiet_wait_s: float


class Window:
    """Shared schedule and CPU sampling of the measured window."""

    def __init__(self, timing: Timing, pids: dict[str, list[int]]) -> None:
        self.pids = pids
        now = time.time()
        self.t_start = now + 0.2 + timing.warmup_s
        self.t_end = self.t_start + timing.duration_s
        self.schedule = json.dumps(
            {"t_start": self.t_start, "t_end": self.t_end, "idle_s": timing.idle_s}
        )
        self.cpu_percent: dict[str, float] = {}

    def measure(self) -> None:
        time.sleep(max(0.0, self.t_start - time.time()))
        before = {g: [cpu_seconds(p) for p in pids] for g, pids in self.pids.items()}
        busy0 = machine_busy_seconds()
        began = time.time()
        time.sleep(max(0.0, self.t_end - time.time()))
        elapsed = time.time() - began
        busy1 = machine_busy_seconds()
        for group, pids in self.pids.items():
            after = [cpu_seconds(p) for p in pids]
            user = sum(a[0] - b[0] for a, b in zip(after, before[group], strict=True))
            system = sum(a[1] - b[1] for a, b in zip(after, before[group], strict=True))
            self.cpu_percent[group] = 100 * (user + system) / elapsed
            self.cpu_percent[f"{group} sys"] = 100 * system / elapsed
        self.cpu_percent["machine"] = 100 * (busy1 - busy0) / max(elapsed, 1e-9)
        ours = sum(self.cpu_percent[group] for group in self.pids)
        self.cpu_percent["others"] = max(0.0, self.cpu_percent["machine"] - ours)


def parse_drops(status: str, tag: str) -> int | None:
    match = re.search(rf"^\s+{tag}\s+in .* dropped (\d+)", status, re.MULTILINE)
    return int(match.group(1)) if match else None


@dataclass
class DispatcherResult:
    scenario: str
    variant: str
    msg_in_per_s: float
    msg_out_per_s: float
    mb_out_per_s: float
    cpu: dict[str, float]
    lost_fraction: float
    ligier_drops: int | None
    frames_ok: bool


def run_dispatcher(
    variant: Variant, scenario: str, payload: int, timing: Timing, logdir: Path
) -> DispatcherResult:
    tag = "IO_EVT" if payload < 10_000 else "IO_SUM"
    port = free_port()
    wait_for_quiet(timing.quiet_wait_s)
    with Processes(logdir) as procs:
        ligier = procs.start("dispatcher", dispatcher_argv(variant, port, []), variant.env())
        wait_for_port(port, ligier)
        config = {"port": port, "tag": tag, "payload": payload}
        subscribers = [
            procs.worker(f"subscriber{i}", "subscriber", config) for i in range(SUBSCRIBERS)
        ]
        publisher = procs.worker("publisher", "publisher", config)
        workers = [(f"subscriber{i}", p) for i, p in enumerate(subscribers)]
        workers.append(("publisher", publisher))
        for name, process in workers:
            if read_line(name, process, 30, procs).strip() != "ready":
                raise RuntimeError(f"{name} did not get ready")
        window = Window(
            timing,
            {
                "dispatcher": [ligier.pid],
                "publisher": [publisher.pid],
                "subscribers": [p.pid for p in subscribers],
            },
        )
        for _name, process in workers:
            process.stdin.write(window.schedule + "\n")
            process.stdin.flush()
        window.measure()
        horizon = timing.duration_s + 60
        sent = json.loads(read_line("publisher", publisher, horizon, procs))
        received = [json.loads(read_line(n, p, horizon, procs)) for n, p in workers[:-1]]
        drops = None
        if variant.kind == "km3mon":
            from km3mon.controlhost import query_status

            drops = parse_drops(query_status(HOST, port), tag)
    frame = sent["frame"]
    msg_in = sent["window_bytes"] / frame / sent["window_s"]
    out_bytes_per_s = sum(r["window_bytes"] / r["window_s"] for r in received)
    delivered = sum(r["total_bytes"] for r in received) / frame
    expected = sent["total_frames"] * SUBSCRIBERS
    return DispatcherResult(
        scenario=scenario,
        variant=variant.name,
        msg_in_per_s=msg_in,
        msg_out_per_s=out_bytes_per_s / frame,
        mb_out_per_s=out_bytes_per_s / 1e6,
        cpu=window.cpu_percent,
        lost_fraction=1 - delivered / expected if expected else 0.0,
        ligier_drops=drops,
        frames_ok=not sent["incomplete"]
        and all(r["whole_frames"] and not r["bad_prefixes"] and r["checks"] for r in received),
    )


@dataclass
class ClientResult:
    scenario: str
    variant: str
    msg_per_s: float
    mb_per_s: float
    cpu: dict[str, float]
    ok: bool


def run_client(
    variant: Variant, scenario: str, payload: int, timing: Timing, logdir: Path
) -> ClientResult:
    tag = "IO_EVT" if payload < 10_000 else "IO_SUM"
    port = free_port()
    wait_for_quiet(timing.quiet_wait_s)
    with Processes(logdir) as procs:
        ligier_variant = Variant(
            "km3mon", "km3mon", pythonpath=variant.pythonpath, extra_env=variant.extra_env
        )
        # A small 'all' backlog keeps the dispatcher's memory low; the receiver sets the pace.
        extra = ["--all-backlog", str(16 << 20), "--all-timeout", "600"]
        ligier = procs.start(
            "dispatcher", dispatcher_argv(ligier_variant, port, extra), variant.env()
        )
        wait_for_port(port, ligier)
        config = {"port": port, "tag": tag, "payload": payload, "kind": variant.kind}
        receiver = procs.worker("receiver", "receiver", config, variant.env())
        if read_line("receiver", receiver, 60, procs).strip() != "ready":
            raise RuntimeError("receiver did not get ready")
        publisher = procs.worker("publisher", "publisher", config)
        if read_line("publisher", publisher, 30, procs).strip() != "ready":
            raise RuntimeError("publisher did not get ready")
        window = Window(
            timing,
            {"dispatcher": [ligier.pid], "publisher": [publisher.pid], "receiver": [receiver.pid]},
        )
        for process in (receiver, publisher):
            process.stdin.write(window.schedule + "\n")
            process.stdin.flush()
        window.measure()
        got = json.loads(read_line("receiver", receiver, timing.duration_s + 60, procs))
    window_s = max(got["window_s"], 1e-9)
    return ClientResult(
        scenario=scenario,
        variant=variant.name,
        msg_per_s=got["window_messages"] / window_s,
        mb_per_s=got["window_bytes"] / window_s / 1e6,
        cpu=window.cpu_percent,
        ok=not got["bad_messages"] and got["window_messages"] > 0,
    )


# ---------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------


@dataclass
class Report:
    dispatcher: dict[tuple[str, str], list[DispatcherResult]] = field(default_factory=dict)
    client: dict[tuple[str, str], list[ClientResult]] = field(default_factory=dict)


def median(values: Iterable[float]) -> float:
    values = list(values)
    return statistics.median(values) if values else float("nan")


def machine_description() -> str:
    model = "unknown CPU"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return (
        f"{os.cpu_count()} cores ({model}), Linux {platform.release()}, "
        f"Python {platform.python_version()}"
    )


def per_cpu_s(rate_per_s: float, cpu_percent: float) -> float:
    """Messages per CPU-second of one process: its cost, little affected by other load."""
    return rate_per_s / (cpu_percent / 100) if cpu_percent > 0 else float("nan")


def dispatcher_rows(report: Report) -> list[list[str]]:
    rows = []
    for (scenario, variant), results in report.dispatcher.items():
        cpu = {k: median([r.cpu[k] for r in results]) for k in results[0].cpu}
        drops = [r.ligier_drops for r in results if r.ligier_drops is not None]
        rows.append(
            [
                scenario,
                variant,
                f"{median([r.msg_in_per_s for r in results]):,.0f}",
                f"{max(r.msg_in_per_s for r in results):,.0f}",
                f"{median([r.msg_out_per_s for r in results]):,.0f}",
                f"{median([r.mb_out_per_s for r in results]):,.0f}",
                f"{max(r.mb_out_per_s for r in results):,.0f}",
                f"{median(per_cpu_s(r.msg_out_per_s, r.cpu['dispatcher']) for r in results):,.0f}",
                f"{cpu['dispatcher']:.0f} ({cpu['dispatcher sys']:.0f})",
                f"{cpu['publisher']:.0f}",
                f"{cpu['subscribers']:.0f}",
                f"{cpu['machine']:.0f}",
                f"{cpu['others']:.0f}",
                f"{100 * median([r.lost_fraction for r in results]):.2f}",
                str(max(drops)) if drops else "n/a",
                "yes" if all(r.frames_ok for r in results) else "NO",
                str(len(results)),
            ]
        )
    return rows


DISPATCHER_HEADER = [
    "scenario",
    "dispatcher",
    "msg/s in",
    "best in",
    "msg/s out",
    "MB/s out",
    "best MB/s out",
    "out msg per disp CPU-s",
    "disp CPU% (sys)",
    "pub CPU%",
    "subs CPU%",
    "machine CPU%",
    "other CPU%",
    "lost %",
    "ligier drops (max)",
    "whole frames",
    "runs",
]


def client_rows(report: Report) -> list[list[str]]:
    rows = []
    for (scenario, variant), results in report.client.items():
        cpu = {k: median([r.cpu[k] for r in results]) for k in results[0].cpu}
        rows.append(
            [
                scenario,
                variant,
                f"{median([r.msg_per_s for r in results]):,.0f}",
                f"{max(r.msg_per_s for r in results):,.0f}",
                f"{median([r.mb_per_s for r in results]):,.1f}",
                f"{median([per_cpu_s(r.msg_per_s, r.cpu['receiver']) for r in results]):,.0f}",
                f"{cpu['receiver']:.0f} ({cpu['receiver sys']:.0f})",
                f"{cpu['dispatcher']:.0f}",
                f"{cpu['publisher']:.0f}",
                f"{cpu['machine']:.0f}",
                f"{cpu['others']:.0f}",
                "yes" if all(r.ok for r in results) else "NO",
                str(len(results)),
            ]
        )
    return rows


CLIENT_HEADER = [
    "messages",
    "receiver",
    "msg/s",
    "best msg/s",
    "MB/s (payload)",
    "msg per recv CPU-s",
    "recv CPU% (sys)",
    "ligier CPU%",
    "pub CPU%",
    "machine CPU%",
    "other CPU%",
    "all intact",
    "runs",
]


def ratio_lines(report: Report) -> list[str]:
    def get(table: dict, scenario: str, variant: str, attr: str) -> float | None:
        results = table.get((scenario, variant))
        return median([getattr(r, attr) for r in results]) if results else None

    def get_eff(table: dict, scenario: str, variant: str) -> float | None:
        results = table.get((scenario, variant))
        if not results:
            return None
        return median([per_cpu_s(r.msg_per_s, r.cpu["receiver"]) for r in results])

    lines = []
    d, c = report.dispatcher, report.client
    a_in = get(d, "A 200 B", "km3mon", "msg_in_per_s")
    a_out = get(d, "A 200 B", "km3mon", "msg_out_per_s")
    naive_in = get(d, "A 200 B", "naive", "msg_in_per_s")
    if a_in is not None and a_out is not None:
        verdict = "met" if a_in >= 250_000 and a_out >= 1_000_000 else "NOT met"
        lines.append(
            f"A: km3mon ligier {a_in:,.0f} msg/s in, {a_out:,.0f} msg/s out "
            f"(target 250,000 in / 1,000,000 out: {verdict})"
        )
    if a_in and naive_in:
        ratio = a_in / naive_in
        verdict = "met" if ratio >= 10 else "NOT met"
        lines.append(f"A: km3mon / naive msg/s in = {ratio:.1f}x (target >= 10x: {verdict})")
    for scenario in ("A 200 B", "B 228 kB"):
        base = get(d, scenario, "km3mon", "msg_out_per_s")
        for name in ("km3mon+uvloop", "km3mon+malloc"):
            other = get(d, scenario, name, "msg_out_per_s")
            lost = get(d, scenario, name, "lost_fraction")
            if other and base:
                lines.append(
                    f"{scenario[0]}: {name} / km3mon msg/s out = {other / base:.2f}x"
                    f" ({100 * (lost or 0):.1f} % of {name}'s deliveries dropped)"
                )
    b_out = get(d, "B 228 kB", "km3mon", "mb_out_per_s")
    naive_b = get(d, "B 228 kB", "naive", "mb_out_per_s")
    if b_out is not None:
        verdict = "met" if b_out >= 1000 else "NOT met"
        lines.append(f"B: km3mon ligier {b_out:,.0f} MB/s out (target >= 1000 MB/s: {verdict})")
        if naive_b:
            lines.append(f"B: km3mon / naive MB/s out = {b_out / naive_b:.1f}x")
    for scenario in ("200 B", "228 kB"):
        ours = get(c, scenario, "km3mon", "msg_per_s")
        pump = get(c, scenario, "km3pipe-CHPump", "msg_per_s")
        client = get(c, scenario, "km3pipe-Client", "msg_per_s")
        for name in ("km3mon+patch", "km3mon+malloc"):
            other = get(c, scenario, name, "msg_per_s")
            if ours and other:
                lines.append(f"client {scenario}: {name} / km3mon msg/s = {other / ours:.2f}x")
        ours_eff = get_eff(c, scenario, "km3mon")
        pump_eff = get_eff(c, scenario, "km3pipe-CHPump")
        client_eff = get_eff(c, scenario, "km3pipe-Client")
        if ours_eff and pump_eff and client_eff:
            lines.append(
                f"client {scenario}: messages per receiver CPU-second, km3mon / CHPump = "
                f"{ours_eff / pump_eff:.1f}x, "
                f"km3mon / km3pipe Client = {ours_eff / client_eff:.1f}x"
            )
        if ours and pump:
            verdict = "met" if ours / pump >= 10 else "NOT met"
            lines.append(
                f"client {scenario}: km3mon / CHPump msg/s = {ours / pump:.1f}x "
                f"(target >= 10x: {verdict})"
            )
        if ours and client:
            target = " (target >= 5x: " if scenario == "228 kB" else ""
            if target:
                target += ("met" if ours / client >= 5 else "NOT met") + ")"
            lines.append(
                f"client {scenario}: km3mon / km3pipe Client = {ours / client:.1f}x{target}"
            )
    return lines


def text_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(x)) for x in column) for column in zip(header, *rows, strict=True)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(lines)


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def render(report: Report, args: argparse.Namespace, markdown: bool) -> str:
    table = markdown_table if markdown else text_table
    parts = [
        f"Machine: {machine_description()}; {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC",
        f"Window {args.duration:g} s after {args.warmup:g} s warm-up, medians of "
        f"{args.repeats} runs; all processes share the machine's cores.",
        "CPU% = share of one core in the window (machine maximum: 100 x cores); (sys) = its "
        "kernel part; other = machine busy time minus our processes (other users, softirq). "
        "best = the best run; per CPU-s = rate / CPU share of that one process.",
        "",
    ]
    if report.dispatcher:
        parts += [
            f"Dispatchers: 1 publisher, {SUBSCRIBERS} subscribers (w, _Always).",
            "",
            table(DISPATCHER_HEADER, dispatcher_rows(report)),
            "",
        ]
    if report.client:
        parts += [
            "Clients: 1 receiver ('a' mode) on km3mon ligier, 1 publisher.",
            "",
            table(CLIENT_HEADER, client_rows(report)),
            "",
        ]
    ratios = ratio_lines(report)
    if ratios:
        parts += [("- " if markdown else "") + line for line in ratios]
    return "\n".join(parts) + "\n"


def run_all(args: argparse.Namespace, timing: Timing, workdir: Path) -> Report:
    """Every configuration, interleaved, ``args.repeats`` times."""
    dispatchers = [Variant("km3mon", "km3mon"), Variant("naive", "naive")]
    receivers = [Variant(k, k) for k in ("km3mon", "km3pipe-Client", "km3pipe-CHPump")]
    try:
        import uvloop  # noqa: F401

        if not args.no_uvloop:
            dispatchers.insert(1, Variant("km3mon+uvloop", "km3mon", uvloop=True))
    except ImportError:
        print("uvloop not installed: no uvloop variant", file=sys.stderr)
    if args.malloc_variant:
        # glibc serves blocks >= 128 KiB with a fresh mmap each (page faults, zeroing);
        # this variant keeps them in the heap instead. Environment only, no code change.
        tuned = {
            "MALLOC_MMAP_THRESHOLD_": str(64 << 20),
            "MALLOC_TRIM_THRESHOLD_": str(256 << 20),
            "MALLOC_TOP_PAD_": str(64 << 20),
        }
        dispatchers.insert(1, Variant("km3mon+malloc", "km3mon", extra_env=tuned))
        receivers.insert(1, Variant("km3mon+malloc", "km3mon", extra_env=tuned))
    if args.only:
        wanted = set(args.only.split(","))
        dispatchers = [v for v in dispatchers if v.name in wanted]
        receivers = [v for v in receivers if v.name in wanted]
    scenarios = [("A 200 B", "200 B", SMALL_PAYLOAD), ("B 228 kB", "228 kB", SUMMARY_SLICE_PAYLOAD)]
    report = Report()
    for repeat in range(args.repeats):
        for scenario, client_scenario, payload in scenarios:
            if args.part in ("all", "dispatcher"):
                for variant in dispatchers:
                    result = run_dispatcher(variant, scenario, payload, timing, workdir)
                    report.dispatcher.setdefault((scenario, variant.name), []).append(result)
                    print(
                        f"[{repeat + 1}/{args.repeats}] {scenario:9} {variant.name:14} "
                        f"in {result.msg_in_per_s:>11,.0f} msg/s  "
                        f"out {result.msg_out_per_s:>11,.0f} msg/s "
                        f"{result.mb_out_per_s:>7,.0f} MB/s  "
                        f"CPU% disp {result.cpu['dispatcher']:.0f} "
                        f"subs {result.cpu['subscribers']:.0f} others {result.cpu['others']:.0f}",
                        file=sys.stderr,
                    )
            if args.part in ("all", "client"):
                for variant in receivers:
                    result = run_client(variant, client_scenario, payload, timing, workdir)
                    report.client.setdefault((client_scenario, variant.name), []).append(result)
                    print(
                        f"[{repeat + 1}/{args.repeats}] client {client_scenario:7} "
                        f"{variant.name:15} {result.msg_per_s:>11,.0f} msg/s "
                        f"{result.mb_per_s:>8,.1f} MB/s  "
                        f"CPU% receiver {result.cpu['receiver']:.0f} "
                        f"ligier {result.cpu['dispatcher']:.0f} others {result.cpu['others']:.0f}",
                        file=sys.stderr,
                    )
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description="ControlHost dispatcher and client benchmark")
    parser.add_argument("--quick", action="store_true", help="smoke test: 1 run, short windows")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0, help="measured window (s)")
    parser.add_argument("--warmup", type=float, default=1.0, help="warm-up before window (s)")
    parser.add_argument("--part", choices=["all", "dispatcher", "client"], default="all")
    parser.add_argument("--no-uvloop", action="store_true", help="skip the uvloop variant")
    parser.add_argument(
        "--only", metavar="NAMES", help="comma-separated variant names to run (default: all)"
    )
    parser.add_argument(
        "--quiet-wait",
        type=float,
        metavar="S",
        help="before each run wait up to S s for an idle machine (10; --quick: 0)",
    )
    parser.add_argument(
        "--malloc-variant",
        action="store_true",
        help="also run km3mon with glibc's mmap threshold raised (MALLOC_*_ variables)",
    )
    parser.add_argument("--markdown", metavar="PATH", help="also write the report as markdown")
    parser.add_argument("--worker", nargs=2, metavar=("ROLE", "CONFIG"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        WORKERS[args.worker[0]](json.loads(args.worker[1]))
        return 0
    # SIGTERM unwinds like Ctrl-C, so that every started process is stopped on the way out.
    signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))
    if args.quick:
        args.repeats, args.duration, args.warmup = 1, 1.0, 0.5
    timing = Timing(
        args.warmup,
        args.duration,
        idle_s=0.3 if args.quick else 1.0,
        quiet_wait_s=args.quiet_wait if args.quiet_wait is not None else (0 if args.quick else 10),
    )
    with tempfile.TemporaryDirectory(prefix="bench_controlhost_") as workdir:
        report = run_all(args, timing, Path(workdir))
    print(render(report, args, markdown=False))
    if args.markdown:
        Path(args.markdown).write_text(render(report, args, markdown=True))
        print(f"markdown written to {args.markdown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
