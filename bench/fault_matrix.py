r"""The detection matrix: every kind of fault, injected in turn into the whole suite as it runs
in production, and what reached the shifter.

One working folder as ``km3mon demo`` writes it (setenv.sh, the operator's supervisord
template with k40 switched on, the shore-station stand-in), started with supervisord as
``make start`` does, on a simulated ARCA-21 (or ``--dus N`` synthetic DUs). A webhook
receiver and an SMTP receiver (aiosmtpd) listen on loopback; the ``ALERT (MONITORING)``
lines are read back from ``logs/MSG.log``. After a warm-up and a quiet stretch, each fault
has its own slot: it starts, lasts ``--fault-s`` (longer for the faults a calibration must
find), ends, and the slot goes on for ``--gap-s`` so its "resolved" can arrive.

Faults: every simulator scenario the tree knows (scheduled as ``NAME@START-END`` on the
simulator's command line, simulated seconds = wall seconds at speed 1), a monitor killed
with ``kill -9`` (its supervisord program has ``autorestart=false``, so it stays down until
the slot ends), the mirror stopped (``supervisorctl stop ligiermirror``), a DOM switched off
in the DETX (status ``MODULE_DISABLE``) going silent, a DOM listed in ``[Alerts] known_bad``
going silent. Every notification is attributed to the slot it arrived in.

Holds are shortened (``--hold-s``, production has minutes) so 15 faults fit in about half an
hour; the goal is each fault's rule, once on every sink, within its latency bound
(``latency_bound_s``: hold + 60 s on live data, longer for what a calibration or the fits'
offsets must first collect), resolved once after the fault ends, nothing else, and nothing
at all for the disabled and known-bad DOMs and in the quiet stretch.

    .venv/bin/python bench/fault_matrix.py --json bench/results/fault_matrix.json
    .venv/bin/python bench/fault_matrix.py --faults silent-dom,kill-9 --quiet-s 60 --dus 3

The quiet run is the same suite with no fault (``--faults none``) for a long quiet stretch; its
notifications so far are written to ``<json>.partial.json`` every ``--partial-every-s``, so a
run of many hours shows its state while it goes on and leaves a record if it is cut short:

    .venv/bin/python bench/fault_matrix.py --faults none --dus 3 --speed 6 --k40-period 600 \
        --warmup-s 1200 --quiet-s 43200 --partial-every-s 300 --json bench/results/quiet_run.json

At ``--speed`` S the simulator's DAQ clock runs S times the wall clock: a quiet run covers S
times as many data (trigger, K40, SN and quality statistics) as its wall time, while the
alerts' holds and the processes' freshness still count wall seconds. The work per wall
second grows with S (every timeslice, summary slice and event is S times as frequent), so S
times a detector must fit the machine: on 2 cores, 3 DUs at 6x take 1.2-1.4 cores, while
ARCA-21 at 6x and 6 DUs at 8x take all of both and raise true alerts about the machine
(messages dropped, plots late). ``--warmup-s`` is simulated seconds too: give the start
(kernels loaded, first plots) some 200 wall seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from email import message_from_bytes, policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from benchlib import write_json
from full_suite import DAQ_STAND_IN
from km3mon.alerts.rules import BUILTIN
from km3mon.demo import default_detx, write_folder
from km3mon.detector import read_detx
from km3mon.history.reco import BLOCK_S as RECO_BLOCK_S
from km3mon.ops import start, stop, supervisorctl
from km3mon.sim.scenarios import KINDS, parse_scenario_names, plan_scenarios
from km3mon.sim.sim_geometry import synthetic_detx
from km3mon.supervision import supervisor_states

SEED = 7
#: The monitor that is killed with ``kill -9`` and left down.
KILLED_MONITOR = "dom_rates"
#: Rules whose hold is their own (no wall-clock hold shortened here): an SN alarm is set
#: for a false-alarm rate, a drop counter grows or not, the disk is full or not.
OWN_HOLD = ("sn_alarm", "dropped_messages", "disk_space")


@dataclass
class Fault:
    """One fault of the matrix: how it is injected and the rule(s) that should report it."""

    name: str
    kind: str  # "scenario", "kill", "mirror", "disabled", "known_bad"
    expected: tuple[str, ...]  # rules; empty: nothing must fire
    scenario: str | None = None
    long: bool = False  # found by a calibration over a period: a longer slot
    block: bool = False  # found by reco's offsets over its 10-minute blocks: longer still
    start_s: float = 0.0
    end_s: float = 0.0
    slot_end_s: float = 0.0
    target: str = ""
    available: bool = True
    note: str = ""


def catalogue() -> list[Fault]:
    return [
        Fault("silent-dom", "scenario", ("silent_dom",), "silent-dom"),
        Fault("du-loss", "scenario", ("du_lost",), "du-loss"),
        Fault("hot-pmt", "scenario", ("pmt_hot",), "hot-pmt"),
        Fault("hrv-storm", "scenario", ("pmt_hrv",), "hrv-storm"),
        Fault("trigger-zero", "scenario", ("trigger_rate",), "trigger-zero"),
        Fault("wr-loss", "scenario", ("time_sync",), "wr-loss"),
        Fault("udp-loss", "scenario", ("udp_loss",), "udp-loss"),
        Fault("t0-offset", "scenario", ("reco_t0",), "t0-offset", block=True),
        Fault("pmt-t0", "scenario", ("k40_t0",), "pmt-t0", long=True),
        Fault("pmt-t0-15", "scenario", ("k40_no_peak", "k40_t0"), "pmt-t0-15", long=True),
        Fault("sn-burst", "scenario", ("sn_alarm",), "sn-burst"),
        Fault("kill-9", "kill", ("process_down",)),
        Fault("mirror-stop", "mirror", ("process_down",)),
        Fault("detx-disabled", "disabled", (), "silent-dom"),
        Fault("known-bad", "known_bad", (), "silent-dom"),
    ]


# -- receivers -------------------------------------------------------------------------


class Webhook:
    """Every JSON body POSTed to it, with the wall time it arrived."""

    def __init__(self) -> None:
        received: list[dict] = []
        self.received = received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                received.append({"at": time.time(), "body": body})
                self.send_response(200)
                self.end_headers()

            def log_message(self, *_: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/matrix"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Mailbox:
    """An SMTP server on loopback keeping every subject with its arrival time."""

    def __init__(self, port: int) -> None:
        from aiosmtpd.controller import Controller

        received: list[dict] = []
        self.received = received

        class Handler:
            async def handle_DATA(self, _server, _session, envelope) -> str:
                message = message_from_bytes(envelope.content, policy=policy.default)
                received.append({"at": time.time(), "subject": str(message["Subject"])})
                return "250 OK"

        self.controller = Controller(Handler(), hostname="127.0.0.1", port=port)
        self.controller.start()
        self.address = f"127.0.0.1:{port}"

    def close(self) -> None:
        self.controller.stop()


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- the working folder ----------------------------------------------------------------


def pipeline_text(args: argparse.Namespace, webhook: str, smtp: str, known_bad: str) -> str:
    """pipeline.toml: demo cadences, both sinks, short holds for the rules this tree has."""
    lines = [
        "[WebServer]",
        'username = "matrix"',
        'password = "{password}"',
        "",
        "[PMTRates]",
        "interval = 10",
        "",
        "[TriggerRate]",
        "interval = 10",
        "",
        "[TriggerMap]",
        "max_events = 300",
        "",
        "[CalibrateAHRS]",
        "time_range = 1",
        "",
        "[Alerts]",
        f'webhook_url = "{webhook}"',
        f'smtp = "{smtp}"',
        'mail_from = "km3mon@localhost"',
        'mail_to = ["shifter@localhost"]',
        f"clear_s = {args.clear_s:g}",
    ]
    if known_bad:
        lines.append(f'known_bad = ["{known_bad} fault matrix: known bad"]')
    holds = {rule: args.hold_s for rule in BUILTIN if rule not in OWN_HOLD}
    holds["process_down"] = args.process_hold_s
    for rule, hold in holds.items():
        lines += ["", f"[Alerts.{rule}]", f"hold_s = {hold:g}"]
    return "\n".join(lines) + "\n"


def disable_dom(detx_text: str, dom_id: int) -> str:
    """The DETX (v5) with ``dom_id``'s module status set to MODULE_DISABLE (bit 0)."""
    out = []
    for line in detx_text.splitlines():
        fields = line.split()
        if len(fields) == 13 and fields[0] == str(dom_id):
            fields[11] = str(int(fields[11]) | 1)
            line = " " + " ".join(fields)
        out.append(line)
    return "\n".join(out) + "\n"


def schedule(faults: list[Fault], args: argparse.Namespace) -> float:
    """Start, end and slot end of every fault, in simulated (= wall) seconds; the run's end."""
    t = args.warmup_s + args.quiet_s
    for fault in faults:
        fault.start_s = t
        length = args.long_fault_s if fault.long else args.fault_s
        if fault.block:  # a real t0 jump stays: it must outlast the block that shows it
            length = RECO_BLOCK_S + args.hold_s + 60.0
        if fault.scenario == "sn-burst":
            length = 10.0
        fault.end_s = t + length
        # reco's offsets forget a fixed t0 only as its blocks roll over: as long as it took
        gap_s = max(args.gap_s, RECO_BLOCK_S + args.hold_s + 60.0) if fault.block else args.gap_s
        fault.slot_end_s = fault.end_s + gap_s
        t = fault.slot_end_s
    return t


def prewarm(detx: Path) -> None:
    """Run the simulator for a few seconds against a throwaway ligier, so that its compiled
    (numba) code is cached: compiled under load inside the suite, it fell minutes behind."""
    port = free_port()
    ligier = subprocess.Popen(
        ["km3mon", "ligier", "--host", "127.0.0.1", "-P", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        subprocess.run(
            ["km3mon", "simulate", "--detx", str(detx), "-p", str(port), "--duration", "20"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=900, check=False,
        )  # fmt: skip
    finally:
        ligier.terminate()
        ligier.wait()


def sim_clock_start(folder: Path) -> float | None:
    """Wall time at which the simulator logged its scenarios (just before its clock starts)."""
    path = folder / "logs" / "simulator.log"
    if not path.exists():
        return None
    for line in path.read_text(errors="replace").splitlines():
        if " scenario " in line or "simulating detector" in line:
            stamp = datetime.strptime(line[:19], "%Y-%m-%dT%H:%M:%S")
            return stamp.replace(tzinfo=UTC).timestamp()
    return None


# -- the run -----------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, Any]:
    wanted = set(args.faults.split(",")) - {"none"} if args.faults else None
    faults = [f for f in catalogue() if wanted is None or f.name in wanted]
    for fault in faults:
        if fault.scenario and fault.scenario not in KINDS:
            fault.available = False
            fault.note = f"scenario {fault.scenario} not in this tree"
    faults = [f for f in faults if f.available] + [f for f in faults if not f.available]
    active = [f for f in faults if f.available]
    end_s = schedule(active, args)

    folder = Path(tempfile.mkdtemp(prefix="km3mon-matrix-"))
    if args.dus:
        detx_text = synthetic_detx(args.dus, t0_seed=1)
        detector_name = f"synthetic {args.dus} DUs"
    else:
        detx_text = Path(default_detx()).read_text()
        detector_name = "ARCA-21 (KM3NeT_00000133_20221025.detx)"
    detx = folder / "detector.detx"
    detx.write_text(detx_text)
    detector = read_detx(detx)
    specs = [f"{f.scenario}@{f.start_s:g}-{f.end_s:g}" for f in active if f.scenario]
    planned = plan_scenarios(parse_scenario_names(specs), detector, args.seed)
    known_bad = ""
    for fault, scenario in zip([f for f in active if f.scenario], planned, strict=True):
        fault.target = scenario.describe()
        if fault.kind == "disabled":
            detx.write_text(disable_dom(detx.read_text(), scenario.dom_ids[0]))
        elif fault.kind == "known_bad":
            known_bad = str(scenario.dom_ids[0])

    prewarm(detx)
    webhook, mailbox = Webhook(), Mailbox(free_port())
    options = argparse.Namespace(
        detx=detx, replay=None, scenario=",".join(specs), event_rate=args.event_rate
    )
    environment, _ = write_folder(
        folder,
        options,
        pipeline_text(args, webhook.url, mailbox.address, known_bad),
        k40_args=f"--period {args.k40_period:g} -i {args.k40_period:g}",
        k40_reads_daq=args.k40_reads_daq,
    )
    conf = folder / "supervisord.conf"
    text = conf.read_text().replace(
        "km3mon simulate ", f"km3mon simulate --seed {args.seed} --speed {args.speed:g} "
    )
    head, marker, rest = text.partition(f"[program:{KILLED_MONITOR}]")
    conf.write_text(head + marker + rest.replace("autorestart=true", "autorestart=false", 1))
    for fault in active:
        if fault.kind == "kill":
            fault.target = f"{KILLED_MONITOR} (autorestart=false)"
        elif fault.kind == "mirror":
            fault.target = "ligiermirror (supervisorctl stop)"

    print(f"working folder {folder}; {detector_name}; run of {end_s:.0f} s", flush=True)
    for fault in active:
        print(f"  {fault.start_s:6.0f}-{fault.end_s:6.0f} s {fault.name}: {fault.target}")
    actions: list[dict[str, Any]] = []
    started = time.time()
    try:
        start(folder, {**os.environ, **environment})
        t0 = None
        while t0 is None:
            if time.time() - started > 120:
                raise RuntimeError("the simulator did not start within 120 s")
            time.sleep(0.5)
            t0 = sim_clock_start(folder)
        favour_the_daq(folder)
        pending = [(f.start_s, "start", f) for f in active if not f.scenario]
        pending += [(f.end_s, "end", f) for f in active if not f.scenario]
        pending.sort(key=lambda item: item[0])
        partial_at = time.time() + args.partial_every_s
        while time.time() < t0 + end_s / args.speed:
            now = time.time()
            while pending and now >= t0 + pending[0][0] / args.speed:
                _, what, fault = pending.pop(0)
                actions.append(act(folder, fault, what))
            if args.json and now >= partial_at:
                partial_at = now + args.partial_every_s
                write_partial(args, folder, faults, t0, webhook, mailbox)
            time.sleep(0.5)
        states = supervisor_states(folder / "pids" / "supervisor.sock") or {}
    finally:
        stop(folder)
        webhook.close()
        mailbox.close()
    log_lines = read_alert_lines(folder / "logs" / "MSG.log")
    simulator_log = (folder / "logs" / "simulator.log").read_text(errors="replace")
    said = [
        line.split(" scenario ", 1)[1]
        for line in simulator_log.splitlines()
        if " scenario " in line
    ]
    planned_text = [f.target for f in active if f.scenario]
    if said != planned_text:
        print(f"WARNING: the simulator's targets differ from the plan: {said}", file=sys.stderr)
    result = analyse(args, faults, t0, webhook.received, mailbox.received, log_lines)
    return {
        "detector": detector_name,
        "folder": str(folder),
        "started_utc": datetime.fromtimestamp(started, UTC).isoformat(),
        "sim_clock_start": t0,
        "settings": {
            k: getattr(args, k)
            for k in (
                "hold_s",
                "process_hold_s",
                "clear_s",
                "fault_s",
                "long_fault_s",
                "gap_s",
                "warmup_s",
                "quiet_s",
                "k40_period",
                "seed",
                "event_rate",
                "speed",
                "k40_reads_daq",
            )
        },
        "simulator_scenarios": said,
        "simulator_lag": [line for line in simulator_log.splitlines() if "behind" in line],
        "actions": actions,
        "final_states": {name: s["state"] for name, s in states.items()},
        "webhook": webhook.received,
        "mail": mailbox.received,
        "log": log_lines,
        **result,
    }


def favour_the_daq(folder: Path) -> None:
    """The DAQ stand-in (another machine in production) at a higher priority than the suite
    it feeds, so a busy machine shows as the suite falling behind, not as a DAQ that skips
    timeslices (needs root; without it the priorities stay as they are)."""
    states = supervisor_states(folder / "pids" / "supervisor.sock") or {}
    for name in DAQ_STAND_IN:
        if pid := states.get(name, {}).get("pid"):
            try:
                os.setpriority(os.PRIO_PROCESS, pid, -10)
            except PermissionError:
                print(f"  (cannot raise {name}'s priority: not root)", flush=True)
                return


def write_partial(
    args: argparse.Namespace,
    folder: Path,
    faults: list[Fault],
    t0: float,
    webhook: Webhook,
    mailbox: Mailbox,
) -> None:
    """What reached the shifter so far, beside the final JSON: a long run shows its state."""
    lines = read_alert_lines(folder / "logs" / "MSG.log")
    result = analyse(args, faults, t0, list(webhook.received), list(mailbox.received), lines)
    states = supervisor_states(folder / "pids" / "supervisor.sock") or {}
    summary = {
        "folder": str(folder),
        "sim_clock_start": t0,
        "simulated_s": round((time.time() - t0) * args.speed, 1),
        "states": {name: state["state"] for name, state in states.items()},
        "quiet_notifications": result["quiet"]["notifications"],
        "warm_up_notifications": len(result["warm_up"]),
        **result,
    }
    write_json(args.json.with_suffix(".partial.json"), summary, default=str)
    print(
        f"  {summary['simulated_s']:.0f} s: {summary['quiet_notifications']} notifications in "
        "the quiet stretch",
        flush=True,
    )


def qualified(folder: Path, program: str) -> str:
    """``group:program`` as supervisorctl wants a program of a group."""
    group = None
    for line in (folder / "supervisord.conf").read_text().splitlines():
        if line.startswith("[group:"):
            group = line[len("[group:") : -1]
        elif line.startswith("programs=") and program in line[len("programs=") :].split(","):
            return f"{group}:{program}"
    return program


def act(folder: Path, fault: Fault, what: str) -> dict[str, Any]:
    """Inject (``start``) or undo (``end``) an operational fault."""
    if fault.kind == "kill":
        if what == "start":
            pid = (supervisor_states(folder / "pids" / "supervisor.sock") or {})[KILLED_MONITOR][
                "pid"
            ]
            os.kill(pid, signal.SIGKILL)
            done = f"kill -9 {pid}"
        else:
            done = supervisorctl(folder, "start", qualified(folder, KILLED_MONITOR)).stdout.strip()
    else:
        verb = "stop" if what == "start" else "start"
        done = supervisorctl(folder, verb, qualified(folder, "ligiermirror")).stdout.strip()
    print(f"  {fault.name} {what}: {done}", flush=True)
    return {"at": time.time(), "fault": fault.name, "what": what, "done": done}


LINE = re.compile(
    r"ALERT \(MONITORING\) (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC: (RESOLVED |REMINDER )?(\w+): (.*)"
)


def read_alert_lines(path: Path) -> list[dict[str, Any]]:
    """The alerts' own ``ALERT (MONITORING)`` lines in MSG.log (timesync's have no rule)."""
    if not path.exists():
        return []
    lines = []
    for text in path.read_text(errors="replace").splitlines():
        if match := LINE.search(text):
            stamp = datetime.strptime(match[1], "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
            status = "resolved" if match[2] == "RESOLVED " else "firing"
            lines.append(
                {"at": stamp.timestamp(), "status": status, "rule": match[3], "text": match[4]}
            )
    return lines


# -- the analysis ------------------------------------------------------------------------


def analyse(
    args: argparse.Namespace,
    faults: list[Fault],
    t0: float,
    hooks: list[dict],
    mails: list[dict],
    log_lines: list[dict],
) -> dict[str, Any]:
    """Each notification into the slot it arrived in; per fault the verdict."""
    notifications = [
        {"sink": "webhook", "at": h["at"], "status": h["body"]["status"],
         "rule": h["body"]["rule"], "key": h["body"].get("key"),
         "summary": h["body"].get("summary"), "reminder": h["body"].get("reminder")}
        for h in hooks
    ]  # fmt: skip
    mail_pattern = re.compile(r"\[km3mon\] (RESOLVED |REMINDER )?(\w+): (.*)")
    for mail in mails:
        if match := mail_pattern.match(" ".join(mail["subject"].split())):
            status = "resolved" if match[1] == "RESOLVED " else "firing"
            notifications.append({"sink": "mail", "at": mail["at"], "status": status,
                                  "rule": match[2], "summary": match[3]})  # fmt: skip
    notifications += [{"sink": "log", **line, "summary": line["text"]} for line in log_lines]
    for note in notifications:
        note["sim_s"] = round((note["at"] - t0) * args.speed, 1)

    active = [f for f in faults if f.available]
    quiet_from = args.warmup_s

    def slot_of(sim_s: float) -> str:
        if sim_s < quiet_from:
            return "warm-up"
        for fault in active:
            if fault.start_s <= sim_s < fault.slot_end_s:
                return fault.name
        return "quiet" if sim_s < (active[0].start_s if active else 1e12) else "after"

    # A resolution belongs to the slot of its firing (same sink, rule and alert).
    by_slot: dict[str, list[dict]] = {}
    open_alerts: dict[tuple, str] = {}
    for note in sorted(notifications, key=lambda n: n["at"]):
        alert = (note["sink"], note["rule"], identity(note))
        slot = slot_of(note["sim_s"])
        if note["status"] == "firing":
            open_alerts[alert] = slot
        else:
            slot = open_alerts.pop(alert, slot)
        by_slot.setdefault(slot, []).append(note)

    rows = []
    for fault in faults:
        rows.append(judge(fault, by_slot.get(fault.name, []), args))
    quiet = by_slot.get("quiet", [])
    return {
        "rows": rows,
        "quiet": {
            "seconds": args.quiet_s,
            "notifications": len(quiet),
            "items": quiet,
        },
        "warm_up": by_slot.get("warm-up", []),
        "after": by_slot.get("after", []),
        "notifications": notifications,
    }


def identity(note: dict) -> str:
    """Which alert a notification is about: the webhook's key, else the summary's first words
    (a leading count dropped: "2 plot(s) of sn stale" is the same alert as "1 plot(s)...")."""
    if note.get("key"):
        return str(note["key"])
    words = (note.get("summary") or "").split()
    if words and words[0].isdigit():
        words = words[1:]
    return " ".join(words[:3])


def latency_bound_s(rule: str, hold_s: float, args: argparse.Namespace) -> float:
    """How soon ``rule`` can report a fault from its start: its hold + 60 s on live data.
    k40 calibrates once per period (aligned in DAQ time), so a fault that starts within one
    is seen in full only by the next: two periods more. reco's per-DOM offsets are medians
    over its 10-minute blocks: one block more."""
    if rule in ("k40_t0", "k40_no_peak"):
        return hold_s + 2 * args.k40_period + 60.0
    if rule == "reco_t0":
        return hold_s + RECO_BLOCK_S + 60.0
    return hold_s + 60.0


def judge(fault: Fault, notes: list[dict], args: argparse.Namespace) -> dict[str, Any]:
    """One row of the matrix: what fired, on which sinks, how soon, resolved or not."""
    row: dict[str, Any] = {k: v for k, v in asdict(fault).items() if k != "available"}
    row["available"] = fault.available
    if not fault.available:
        row["verdict"] = "not run"
        return row
    counts: dict[str, dict[str, dict[str, int]]] = {}
    for note in notes:
        per_rule = counts.setdefault(note["rule"], {})
        per_sink = per_rule.setdefault(note["sink"], {"firing": 0, "resolved": 0})
        per_sink[note["status"]] += 1
    row["counts"] = counts
    row["fired_rules"] = sorted(counts)
    hits = [r for r in fault.expected if r in counts]
    rule = hits[0] if hits else None
    row["rule"] = rule
    hold = args.process_hold_s if rule == "process_down" else args.hold_s
    hold = BUILTIN[rule].hold_s if rule in OWN_HOLD else hold
    row["hold_s"] = hold
    first = [n for n in notes if n["rule"] == rule and n["status"] == "firing"]
    webhook_firing = [n for n in first if n["sink"] == "webhook"]
    resolved = [n for n in notes if n["rule"] == rule and n["status"] == "resolved"]
    webhook_resolved = [n for n in resolved if n["sink"] == "webhook"]
    row["latency_s"] = (
        round(webhook_firing[0]["sim_s"] - fault.start_s, 1) if webhook_firing else None
    )
    row["resolved_after_end_s"] = (
        round(webhook_resolved[0]["sim_s"] - fault.end_s, 1) if webhook_resolved else None
    )
    row["others"] = sorted(r for r in counts if r != rule)
    if not fault.expected:
        row["verdict"] = "ok (nothing)" if not notes else "WRONG: notified"
        return row
    if rule is None:
        row["verdict"] = "NOT DETECTED" + (" (others fired)" if notes else "")
        return row
    problems = []
    for sink in ("webhook", "mail", "log"):
        seen = counts[rule].get(sink, {"firing": 0, "resolved": 0})
        if seen["firing"] != 1:
            problems.append(f"{seen['firing']} firing on {sink}")
        if seen["resolved"] != 1:
            problems.append(f"{seen['resolved']} resolved on {sink}")
    row["latency_bound_s"] = bound = latency_bound_s(rule, hold, args)
    if row["latency_s"] is not None and row["latency_s"] > bound:
        problems.append(f"late ({row['latency_s']:g} s > its bound {bound:g} s)")
    if row["others"]:
        problems.append("others fired")
    row["verdict"] = "ok" if not problems else "; ".join(problems)
    return row


def markdown(result: dict[str, Any]) -> str:
    """The matrix as a Markdown table, one row per fault."""
    out = [
        "| fault | target | expected | fired (rule: webhook/mail/log firing+resolved) "
        "| latency s (bound) | resolved s after end | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        if not row["available"]:
            out.append(
                f"| {row['name']} | - | {', '.join(row['expected']) or 'nothing'} | - | - | - "
                f"| not run: {row['note']} |"
            )
            continue
        fired = "; ".join(
            f"{rule}: "
            + "/".join(
                f"{c.get(s, {}).get('firing', 0)}+{c.get(s, {}).get('resolved', 0)}"
                for s in ("webhook", "mail", "log")
            )
            for rule, c in row["counts"].items()
        )
        out.append(
            f"| {row['name']} | {row['target']} | {', '.join(row['expected']) or 'nothing'} "
            f"| {fired or '-'} | {_num(row['latency_s'])} ({_num(row.get('latency_bound_s'))}) "
            f"| {_num(row['resolved_after_end_s'])} "
            f"| {row['verdict']} |"
        )
    quiet = result["quiet"]
    out.append("")
    out.append(
        f"Quiet stretch: {quiet['seconds']:g} s, {quiet['notifications']} notifications; "
        f"warm-up: {len(result['warm_up'])}; after the last slot: {len(result['after'])}."
    )
    return "\n".join(out)


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    names = ", ".join(f.name for f in catalogue())
    parser.add_argument(
        "--faults", help=f"comma-separated subset of: {names}; none: a quiet run only"
    )
    parser.add_argument("--dus", type=int, default=0, help="synthetic DUs (0: ARCA-21 DETX)")
    parser.add_argument("--hold-s", type=float, default=20.0, help="hold of the data rules")
    parser.add_argument("--process-hold-s", type=float, default=30.0, help="process_down hold")
    parser.add_argument("--clear-s", type=float, default=15.0)
    parser.add_argument("--fault-s", type=float, default=60.0, help="length of a fault")
    parser.add_argument(
        "--long-fault-s", type=float, default=180.0, help="length of a calibration's fault"
    )
    parser.add_argument("--gap-s", type=float, default=45.0, help="slot time after a fault")
    parser.add_argument("--warmup-s", type=float, default=150.0)
    parser.add_argument("--quiet-s", type=float, default=120.0, help="quiet stretch, no fault")
    parser.add_argument("--k40-period", type=float, default=60.0)
    parser.add_argument("--event-rate", type=float, default=None)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument(
        "--speed",
        type=float,
        default=1.0,
        help="simulator clock speed-up; every --*-s is in simulated seconds (a quiet run)",
    )
    parser.add_argument(
        "--k40-reads-daq",
        action="store_true",
        help="k40 subscribes to the DAQ ligier (the template's layout: IO_TSL1 is not mirrored)",
    )
    parser.add_argument("--json", type=Path, help="write the raw result here")
    parser.add_argument(
        "--partial-every-s", type=float, default=600.0, help="write <json>.partial.json this often"
    )
    args = parser.parse_args()
    if args.faults:
        unknown = set(args.faults.split(",")) - {f.name for f in catalogue()} - {"none"}
        if unknown:
            parser.error(f"unknown faults {sorted(unknown)}; known: {names}")
    # a TERM (a run started in the background ignores INT) still stops the suite it started
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    result = run(args)
    table = markdown(result)
    print(table)
    if args.json:
        write_json(args.json, result, default=str)
        args.json.with_suffix(".md").write_text(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
