"""`km3mon simulate`: a live DAQ without a DAQ, publishing a synthetic detector into a ligier.

For the detector of a DETX file, every 100 ms timeslice of the simulated clock yields one
``IO_SUM`` summary slice (a frame per optical DOM), one ``IO_MONIT`` TMCH packet per CLB (optical
DOMs and base modules), Poisson-many ``IO_EVT`` muon events and now and then ``MSG`` log lines
(to ``--log-port``). The physics and encodings live in :mod:`.sim_optical`, :mod:`.sim_events`
and :mod:`.sim_log`; faults on purpose in :mod:`.scenarios`. With timeslices on (the command's
default), every DataFilter also publishes its ``IO_TSL1`` and ``IO_TSSN`` (:mod:`.sim_timeslices`);
``--calibration-truth FILE`` records the true PMT offsets, efficiencies and widths (JSON).

The clock: timeslice ``k`` starts at ``start_utc + k * 100 ms``; it is published at wall time
``start + k * 100 ms / speed`` (``--max``: as fast as possible); more than ``MAX_LAG_S`` late
(a stalled ligier), the missed timeslices are left out, not sent in a burst. Run numbers go up every
``--run-minutes`` of simulated time, the frame index restarts at 1 with each run and counts
timeslices, every DAQ header carries the simulated UTC time. Everything random comes from
``--seed``: the same command line gives the same stream (up to the start time). ``--duration``
counts wall seconds; SIGTERM/SIGINT stop cleanly (exit 0), a second one at once.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from km3mon.controlhost import Client, ControlHostError, encode_frame
from km3mon.daq.event import Event, encode_event
from km3mon.daq.preamble import DAQHeader
from km3mon.daq.summaryslice import N_CHANNELS
from km3mon.detector import Detector, DetectorError, read_detx
from km3mon.runtime.streaming import tune_garbage_collector
from km3mon.sim.publishing import add_publishing_arguments, speed_of
from km3mon.sim.scenarios import (
    KINDS,
    T0_OFFSET_NS,
    Scenario,
    effects_at,
    parse_scenario_names,
    plan_scenarios,
)
from km3mon.sim.sim_calibration import TrueCalibration
from km3mon.sim.sim_events import (
    NOISE_EVENT_FRACTION,
    MuonEventGenerator,
    SimulatedEvent,
    default_event_rate_hz,
)
from km3mon.sim.sim_log import LogModel
from km3mon.sim.sim_optical import HRV_THRESHOLD_HZ, TIMESLICE_S, OpticalModel
from km3mon.sim.sim_timeslices import TimesliceModel

log = logging.getLogger("km3mon.simulate")

FIRST_RUN = 10_000
DEFAULT_RUN_MINUTES = 10.0
SLICES_PER_S = round(1 / TIMESLICE_S)
CYCLES_PER_SLICE = 6_250_000  # 100 ms in 16 ns cycles
BEHIND_WARNING_S = 1.0
BEHIND_WARNING_INTERVAL_S = 10.0
MAX_LAG_S = 5.0


@dataclass(frozen=True)
class TimesliceOutput:
    """The ControlHost frames of one timeslice: ``data`` for the DAQ ligier, ``log`` for MSG.

    ``n_frames``: summary frames in the ``IO_SUM``; ``n_packets``: ``IO_MONIT`` packets.
    """

    header: DAQHeader
    data: bytes
    log: bytes
    n_frames: int
    n_packets: int
    n_events: int
    n_log_lines: int
    n_timeslice_messages: int = 0

    @property
    def n_messages(self) -> int:
        """Messages in ``data`` and ``log`` together."""
        return 1 + self.n_packets + self.n_events + self.n_log_lines + self.n_timeslice_messages


class Simulator:
    """The detector's data stream, one timeslice per :meth:`step`.

    ``scenarios`` are ``NAME[@START_S[-END_S]]`` strings (see :mod:`.scenarios`); the planned
    targets are in :attr:`scenarios`. ``on_event(header, trigger_counter, event)``, if set,
    sees every event with its truth (the ``--truth`` file, :mod:`.sim_truth`).
    """

    def __init__(
        self,
        detector: Detector,
        *,
        seed: int = 0,
        scenarios: Sequence[str] = (),
        run_minutes: float = DEFAULT_RUN_MINUTES,
        event_rate_hz: float | None = None,
        start_utc_s: float | None = None,
        first_run: int = FIRST_RUN,
        t0_offset_ns: float = T0_OFFSET_NS,
        timeslices: bool = False,
        data_filters: int | None = None,
        upgoing_fraction: float = 0.0,
        noise_event_fraction: float = NOISE_EVENT_FRACTION,
    ) -> None:
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        if run_minutes <= 0:
            raise ValueError(f"run_minutes must be positive, got {run_minutes}")
        self.detector = detector
        self.scenarios: list[Scenario] = plan_scenarios(
            parse_scenario_names(scenarios), detector, seed
        )
        self.scenarios = [
            replace(s, factors=np.array([t0_offset_ns])) if s.name == "t0-offset" else s
            for s in self.scenarios
        ]
        self.on_event: Callable[[DAQHeader, int, SimulatedEvent], None] | None = None
        if not 0 <= upgoing_fraction <= 1:
            raise ValueError(f"upgoing fraction must be in [0, 1], got {upgoing_fraction}")
        #: Share of the muon events that are upgoing, unless the ``upgoing`` scenario says more.
        self.upgoing_fraction = upgoing_fraction
        self.event_rate_hz = (
            default_event_rate_hz(len(detector.dus)) if event_rate_hz is None else event_rate_hz
        )
        if self.event_rate_hz < 0:
            raise ValueError(f"event rate must be >= 0 Hz, got {self.event_rate_hz}")
        self.slices_per_run = max(1, round(run_minutes * 60 * SLICES_PER_S))
        self.first_run = first_run
        start_utc_s = time.time() if start_utc_s is None else start_utc_s
        self.first_slice = int(start_utc_s * SLICES_PER_S)
        self.index = 0
        self.trigger_counter = 0
        self._run: int | None = None
        self._rng = np.random.default_rng([seed, 0])
        self.optical = OpticalModel(detector, np.random.default_rng([seed, 1]))
        #: The true PMT delays the raw hit times are written with (see sim_calibration).
        self.calibration = TrueCalibration(detector)
        self.calibration.draw_pmt_constants(np.random.default_rng([seed, 5]))
        optical_rows = np.flatnonzero(detector.n_pmts > 0)
        self.optical.base_rate_hz[optical_rows] *= self.calibration.efficiency
        #: The DataFilters' IO_TSL1 and IO_TSSN, if asked for.
        self.timeslices = (
            TimesliceModel(
                detector,
                self.calibration,
                np.random.default_rng([seed, 6]),
                data_filters=data_filters,
            )
            if timeslices
            else None
        )
        self.events = MuonEventGenerator(
            detector,
            np.random.default_rng([seed, 2]),
            self.calibration,
            noise_fraction=noise_event_fraction,
        )
        self.log_model = LogModel(detector.optical_dom_ids, np.random.default_rng([seed, 3]))
        self._optical_rows = np.flatnonzero(detector.n_pmts > 0)

    def start_clock(self, utc_s: float) -> None:
        """Let the first timeslice begin at ``utc_s``: the moment publishing starts, so that
        setting up (seconds at 230 DUs) and waiting for the ligiers do not age every DAQ time
        of the stream."""
        if self.index:
            raise RuntimeError("the clock can only be set before the first timeslice")
        self.first_slice = int(utc_s * SLICES_PER_S)

    @property
    def elapsed_s(self) -> float:
        """Simulated seconds from the start to the timeslice :meth:`step` produces next."""
        return self.index * TIMESLICE_S

    def header(self) -> DAQHeader:
        """The DAQ header of the next timeslice."""
        run_index, slice_in_run = divmod(self.index, self.slices_per_run)
        utc_seconds, tenth = divmod(self.first_slice + self.index, SLICES_PER_S)
        return DAQHeader(
            det_id=self.detector.det_id,
            run=self.first_run + run_index,
            frame_index=slice_in_run + 1,
            utc_seconds=utc_seconds,
            utc_16ns_cycles=tenth * CYCLES_PER_SLICE,
        )

    def skip(self, n_slices: int) -> None:
        """Leave out ``n_slices`` timeslices (a gap in the stream, as after a DAQ hiccup)."""
        self.index += n_slices

    def step(self) -> TimesliceOutput:
        """Simulate and encode the next timeslice."""
        elapsed_s = self.elapsed_s
        header = self.header()
        n_clbs = len(self.detector.dom_ids)
        effects = effects_at(self.scenarios, elapsed_s, n_clbs, N_CHANNELS)
        self.optical.update(elapsed_s, effects.rate_factor)

        summaryslice = self.optical.summaryslice(
            header, effects.silent, effects.wr_lost, effects.udp_lossy
        )
        monitoring = self.optical.monitoring_frames(
            header, elapsed_s, effects.silent, effects.wr_lost
        )
        frames = [encode_frame("IO_SUM", summaryslice), monitoring]
        n_events = self._rng.poisson(self.event_rate_hz * TIMESLICE_S * effects.event_rate_factor)
        previous_run, self._run = self._run, header.run
        if header.run != previous_run:
            self.trigger_counter = 0
        alive = ~effects.silent[self._optical_rows]
        dom_rates_hz = self.optical.rates_hz[self._optical_rows].sum(axis=1)
        time_shift_ns = effects.time_shift_ns[self._optical_rows]
        triggered_hits = []
        upgoing = (
            self.upgoing_fraction if effects.upgoing_fraction is None else effects.upgoing_fraction
        )
        for event in self.events.generate(
            n_events, alive, dom_rates_hz, time_shift_ns, upgoing_fraction=upgoing
        ):
            triggered_hits.append(event.triggered_hits)
            self.trigger_counter += 1
            payload = encode_event(
                Event(
                    header,
                    self.trigger_counter,
                    event.trigger_mask,
                    event.overlays,
                    event.triggered_hits,
                    event.snapshot_hits,
                )
            )
            frames.append(encode_frame("IO_EVT", payload))
            if self.on_event is not None:
                self.on_event(header, self.trigger_counter, event)

        timeslice_data, n_timeslice_messages = b"", 0
        if self.timeslices is not None:
            rates_hz = self.optical.rates_hz[self._optical_rows]
            timeslice_data, n_timeslice_messages = self.timeslices.step(
                header,
                effects,
                self.optical.frames,
                rates_hz,
                rates_hz > HRV_THRESHOLD_HZ,
                self.timeslices.burst_hz(self.scenarios, elapsed_s),
                triggered_hits,
            )

        utc_s = header.timestamp
        lines = []
        if header.run != previous_run:
            lines += self.log_model.run_change(utc_s, previous_run, header.run)
        lines += self.log_model.lines(utc_s, TIMESLICE_S, header.run, header.frame_index)
        self.index += 1
        n_clbs_alive = int((~effects.silent).sum())
        return TimesliceOutput(
            header=header,
            data=b"".join(frames) + timeslice_data,
            log=b"".join(encode_frame("MSG", line.encode()) for line in lines),
            n_frames=int(alive.sum()),
            n_packets=n_clbs_alive,
            n_events=len(frames) - 2,
            n_log_lines=len(lines),
            n_timeslice_messages=n_timeslice_messages,
        )


@dataclass
class RunStats:
    timeslices: int = 0
    skipped: int = 0
    messages: int = 0
    events: int = 0
    log_lines: int = 0
    bytes: int = 0
    wall_s: float = 0.0
    cpu_s: float = 0.0


def run_simulation(
    simulator: Simulator,
    send_data: Callable[[bytes], None],
    send_log: Callable[[bytes], None],
    *,
    speed: float | None,
    duration_s: float | None,
    stop: threading.Event,
    max_lag_s: float = MAX_LAG_S,
    simulated_s: float | None = None,
) -> RunStats:
    """Publish timeslices paced at ``speed`` (None: no pacing) until ``stop``, ``duration_s``
    of wall time or ``simulated_s`` of simulated time (left-out timeslices included).

    More than ``max_lag_s`` behind the clock (a stalled ligier connection, a stopped process),
    the missed timeslices are left out, as a DAQ would lose them, instead of sent in a burst.
    """
    stats = RunStats()
    start = time.monotonic()
    cpu_start = time.process_time()
    warned_at = -BEHIND_WARNING_INTERVAL_S
    while not stop.is_set():
        now = time.monotonic()
        if duration_s is not None and now - start >= duration_s:
            break
        if simulated_s is not None and (
            (stats.timeslices + stats.skipped) * TIMESLICE_S >= simulated_s - 1e-9
        ):
            break
        if speed is not None:
            due = start + (stats.timeslices + stats.skipped) * TIMESLICE_S / speed
            delay = due - now
            if delay > 0:
                if duration_s is not None:
                    delay = min(delay, start + duration_s - now)
                stop.wait(delay)
                continue
            if -delay > max_lag_s:
                skipped = int(-delay * speed / TIMESLICE_S)
                simulator.skip(skipped)
                stats.skipped += skipped
                log.warning(
                    "%.1f s behind the simulated clock: left out %d timeslices", -delay, skipped
                )
            elif -delay > BEHIND_WARNING_S and now - warned_at > BEHIND_WARNING_INTERVAL_S:
                warned_at = now
                log.warning("%.1f s behind the simulated clock: cannot keep up", -delay)
        output = simulator.step()
        try:
            send_data(output.data)
            if output.log:
                send_log(output.log)
        except ControlHostError:
            if stop.is_set():  # asked to stop while the ligier was away
                break
            raise
        stats.timeslices += 1
        stats.messages += output.n_messages
        stats.events += output.n_events
        stats.log_lines += output.n_log_lines
        stats.bytes += len(output.data) + len(output.log)
    stats.wall_s = time.monotonic() - start
    stats.cpu_s = time.process_time() - cpu_start
    return stats


def write_calibration_truth(simulator: Simulator, path: str) -> None:
    """The true PMT constants, and the scenarios that change them, as one JSON document."""
    from km3mon.sim.scenarios import PMT_T0_SHIFTS_NS

    truth = simulator.calibration.truth(simulator.detector)
    truth["scenarios"] = [
        {
            "name": scenario.name,
            "dom_id": scenario.dom_ids[0],
            "channel": scenario.channel,
            "offset_shift_ns": PMT_T0_SHIFTS_NS[scenario.name],
            "start_s": scenario.start_s,
            "end_s": scenario.end_s,
        }
        for scenario in simulator.scenarios
        if scenario.name in PMT_T0_SHIFTS_NS
    ]
    optical = np.flatnonzero(simulator.detector.n_pmts > 0)
    present = np.isfinite(simulator.calibration.detx_t0_ns)
    truth["scenarios"] += [
        {
            "name": scenario.name,
            "start_s": scenario.start_s,
            "end_s": scenario.end_s,
            # per optical DOM, its channels: added to the true delay minus DETX t0
            "offset_shift_ns": [
                np.round(scenario.factors[index][present[row]], 3).tolist()
                for row, index in enumerate(optical.tolist())
            ],
        }
        for scenario in simulator.scenarios
        if scenario.name == "t0-spread"
    ]
    Path(path).write_text(json.dumps(truth) + "\n")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "simulate",
        help="publish a simulated detector (IO_SUM, IO_MONIT, IO_EVT, IO_TSL1, IO_TSSN, MSG)",
        description="Simulate the DAQ stream of the detector in a DETX file, in real time "
        "(or faster), with optional faults (scenarios: "
        + ", ".join(KINDS)
        + "; NAME[@START_S[-END_S]], simulated seconds).",
    )
    parser.add_argument("--detx", required=True, help="detector geometry (DETX file)")
    add_publishing_arguments(parser, "clock speed-up")
    parser.add_argument("--log-host", help="host of the log ligier for MSG (default: --host)")
    parser.add_argument("--log-port", type=int, help="port of the log ligier (default: --port)")
    parser.add_argument("--duration", type=float, help="stop after this many wall seconds")
    parser.add_argument(
        "--simulated-seconds", type=float, help="stop after this many simulated seconds"
    )
    parser.add_argument(
        "--max-lag",
        type=float,
        default=MAX_LAG_S,
        help=f"behind the clock by more than this [s], leave the missed timeslices out, as "
        f"the DAQ loses them ({MAX_LAG_S:g}); tests that need every timeslice set it high",
    )
    parser.add_argument(
        "--scenario",
        action="append",
        default=[],
        metavar="NAME",
        help="fault to inject, repeatable or comma separated: " + ", ".join(KINDS),
    )
    parser.add_argument(
        "--run-minutes",
        type=float,
        default=DEFAULT_RUN_MINUTES,
        help=f"simulated minutes per run ({DEFAULT_RUN_MINUTES:g})",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (0)")
    parser.add_argument(
        "--no-timeslices",
        dest="timeslices",
        action="store_false",
        help="leave out the DataFilters' IO_TSL1 and IO_TSSN (the heaviest streams)",
    )
    parser.add_argument(
        "--data-filters", type=int, help="DataFilters publishing timeslices (one per 3 DUs)"
    )
    parser.add_argument(
        "--calibration-truth",
        metavar="FILE",
        help="write the true PMT offsets, efficiencies and widths (JSON) for K40 validation",
    )
    parser.add_argument(
        "--event-rate", type=float, help="mean trigger rate in Hz (default: 10 + 2 per DU)"
    )
    parser.add_argument(
        "--upgoing-fraction",
        type=float,
        default=0.0,
        help="share of the muon events that are upgoing neutrino-induced muons (0)",
    )
    parser.add_argument(
        "--noise-event-fraction",
        type=float,
        default=NOISE_EVENT_FRACTION,
        help=f"share of the events triggered by K40 alone ({NOISE_EVENT_FRACTION:g})",
    )
    parser.add_argument(
        "--truth",
        metavar="FILE",
        help="write the true muon of every event (and the scenarios) to FILE, JSON lines",
    )
    parser.add_argument(
        "--t0-offset-ns",
        type=float,
        default=T0_OFFSET_NS,
        help=f"how late the t0-offset scenario makes its DOM's hits, ns ({T0_OFFSET_NS:g})",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from km3mon.logs import setup_logging

    setup_logging()
    try:
        speed = speed_of(args)
        detector = read_detx(args.detx)
        # a throwaway timeslice compiles the kernels (seconds on a cold cache) before the
        # stream's DAQ clock is set, so the stream starts on the wall clock and in pace
        Simulator(detector, seed=args.seed, timeslices=args.timeslices).step()
        simulator = Simulator(
            detector,
            seed=args.seed,
            scenarios=args.scenario,
            run_minutes=args.run_minutes,
            event_rate_hz=args.event_rate,
            t0_offset_ns=args.t0_offset_ns,
            timeslices=args.timeslices,
            data_filters=args.data_filters,
            upgoing_fraction=args.upgoing_fraction,
            noise_event_fraction=args.noise_event_fraction,
        )
        if args.calibration_truth:
            write_calibration_truth(simulator, args.calibration_truth)
    except (DetectorError, ValueError, OSError) as error:
        log.error("%s", error)
        return 2
    log.info(
        "simulating detector %d: %d DUs, %d CLBs (%d optical), %.0f Hz events, "
        "run %d, seed %d, speed %s",
        detector.det_id,
        len(detector.dus),
        len(detector.dom_ids),
        len(detector.optical_dom_ids),
        simulator.event_rate_hz,
        simulator.first_run,
        args.seed,
        "max" if args.max else f"{args.speed:g}x",
    )
    for scenario in simulator.scenarios:
        log.info("scenario %s", scenario.describe())
    truth = None
    if args.truth:
        from km3mon.sim.sim_truth import TruthWriter

        truth = TruthWriter(args.truth, simulator.scenarios)
        simulator.on_event = truth

    tune_garbage_collector()
    stop = threading.Event()

    def request_stop(*_: object) -> None:
        if stop.is_set():  # a second signal: stuck in a write, give up at once
            raise KeyboardInterrupt
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, request_stop)
    log_address = (args.log_host or args.host, args.log_port or args.port)
    data_client = Client(args.host, args.port, name="simulator", stop=stop)
    log_client = (
        data_client
        if log_address == (args.host, args.port)
        else Client(*log_address, name="simulator-log", stop=stop)
    )
    try:
        try:  # retries with back-off until the ligiers are there, or until asked to stop
            for client in {data_client, log_client}:
                client.connect()
        except ControlHostError:
            return 0
        simulator.start_clock(time.time())
        stats = run_simulation(
            simulator,
            data_client.send_raw,
            log_client.send_raw,
            speed=speed,
            duration_s=args.duration,
            stop=stop,
            max_lag_s=args.max_lag,
            simulated_s=args.simulated_seconds,
        )
    finally:
        data_client.close()
        log_client.close()
        if truth is not None:
            truth.close()
    log.info(
        "stopped after %d timeslices (%d left out, %.1f s simulated) in %.1f s: %d messages, "
        "%d events, %d log lines, %.1f MB, CPU %.0f %%",
        stats.timeslices,
        stats.skipped,
        (stats.timeslices + stats.skipped) * TIMESLICE_S,
        stats.wall_s,
        stats.messages,
        stats.events,
        stats.log_lines,
        stats.bytes / 1e6,
        100 * stats.cpu_s / max(stats.wall_s, 1e-9),
    )
    return 0
