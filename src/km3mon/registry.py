"""Every program of the suite and every `km3mon` command: the one list, kept as data.

Below the monitors, the web server and the CLI, so that each reads it without importing any
monitor:

- the CLI (``km3mon.cli``) builds its subcommands from it and imports only the module of the
  command it runs;
- the dashboard says which process should have drawn a missing plot ("time_residuals:
  produced by the reconstruction (`km3mon reco`), which is not running") and which processes
  write no freshness record (a ligier is not an alarm for having none);
- ``tests/test_registry.py`` checks supervisord_template.conf, the demo's shore-station
  programs, the page layouts, the status page and each module against it, and says what is
  missing where.

Adding a program is one ``Program`` entry here (its module has a ``register(subparsers)``);
a command that is no supervisord program (a tool such as ``km3mon shift-report``) is one ``Command``
entry in ``TOOLS``. Output names are plot file stems, ``*`` matches a DU number.
"""

from __future__ import annotations

import fnmatch
from dataclasses import KW_ONLY, dataclass


@dataclass(frozen=True)
class Program:
    """One supervisord program of the suite."""

    name: str
    #: supervisord group (``None``: a program outside any group, like the webserver).
    group: str | None
    #: In words, for sentences on the dashboard: "the reconstruction".
    what: str
    #: How supervisord starts it; ``km3mon <name>`` makes ``<name>`` a CLI command.
    command: str
    _: KW_ONLY
    #: The module whose ``register(subparsers)`` adds the command's parser.
    module: str
    #: ControlHost tags it subscribes to (the monitor's own ``tags``, checked by the tests).
    tags: tuple[str, ...] = ()
    #: Plot names (file stems) it writes; ``pmt_rates_du*`` is one per DU.
    outputs: tuple[str, ...] = ()
    #: One detector-wide summary image per per-DU output pattern, drawn by the same process.
    summaries: tuple[tuple[str, str], ...] = ()
    #: Dashboard pages showing what it produces: layout slugs (web/layouts.py), ``du`` for
    #: a DU's page, or a page of the web app (``history``: ``/history``).
    pages: tuple[str, ...] = ()
    #: False for programs that write no ``data/freshness`` record (ligiers, web servers, ...).
    writes_freshness: bool = True
    #: Started as a fork of the fork server (``km3mon.runtime.forkserver``), sharing its
    #: imported numpy, matplotlib and numba: the programs that draw or fit.
    forked: bool = False


@dataclass(frozen=True)
class Command:
    """A `km3mon` subcommand: a tool of ``TOOLS``, or made by ``commands()`` for a program."""

    name: str
    #: The module whose ``register(subparsers)`` adds its parser.
    module: str
    #: One line for ``km3mon --help``.
    help: str


PROGRAMS: tuple[Program, ...] = (
    Program("monitoring_ligier", "ligiers", "the monitoring ligier", "$LIGIER_CMD",
            module="km3mon.controlhost.ligier", writes_freshness=False),
    Program("ligiermirror", "ligiers", "the ligier mirror", "km3mon ligiermirror",
            module="km3mon.controlhost.mirror", tags=("IO_EVT", "IO_SUM", "IO_MONIT")),
    Program("forkserver", None, "the fork server", "km3mon forkserver",
            module="km3mon.runtime.forkserver", writes_freshness=False),
    Program("msg_dumper", "logging", "the DAQ log dumper", "km3mon msg_dumper",
            module="km3mon.monitors.msg_dumper", tags=("MSG",)),
    Program("weblog", "logging", "the live log viewer", "km3mon weblog",
            module="km3mon.web.weblog", pages=("logs",), writes_freshness=False),
    Program("ahrs_calibration", "monitoring_process", "the AHRS monitor",
            "km3mon ahrs_calibration", module="km3mon.monitors.ahrs_calibration",
            tags=("IO_MONIT",),
            outputs=("yaw_calib_du*", "pitch_calib_du*", "roll_calib_du*", "ahrs_summary"),
            summaries=(("yaw_calib_du*", "ahrs_summary"), ("pitch_calib_du*", "ahrs_summary"),
                       ("roll_calib_du*", "ahrs_summary")),
            pages=("ahrs", "du"), forked=True),
    Program("dom_activity", "monitoring_process", "the DOM activity monitor",
            "km3mon dom_activity", module="km3mon.monitors.dom_activity", tags=("IO_SUM",),
            outputs=("dom_activity",), pages=("index", "compact"), forked=True),
    Program("dom_rates", "monitoring_process", "the DOM rate monitor", "km3mon dom_rates",
            module="km3mon.monitors.dom_rates", tags=("IO_SUM",), outputs=("dom_rates",),
            pages=("index", "compact"), forked=True),
    Program("pmt_rates", "monitoring_process", "the PMT rate monitor", "km3mon pmt_rates",
            module="km3mon.monitors.pmt_rates", tags=("IO_MONIT",),
            outputs=("pmt_rates_du*", "pmt_hrv_du*", "pmt_rates_summary"),
            summaries=(("pmt_rates_du*", "pmt_rates_summary"),
                       ("pmt_hrv_du*", "pmt_rates_summary")),
            pages=("index", "pmt", "du"), forked=True),
    Program("trigger_rates", "monitoring_process", "the trigger rate monitor",
            "km3mon trigger_rates", module="km3mon.monitors.trigger_rates",
            tags=("IO_EVT", "IO_SUM"), outputs=("trigger_rates", "trigger_rates_lin"),
            pages=("index", "compact", "trigger")),
    Program("triggermap", "monitoring_process", "the trigger map monitor", "km3mon triggermap",
            module="km3mon.monitors.triggermap", tags=("IO_EVT",),
            outputs=("hitmap", "triggermap"), pages=("index", "compact", "trigger"), forked=True),
    Program("ztplot", "monitoring_process", "the event display", "km3mon ztplot",
            module="km3mon.monitors.ztplot", tags=("IO_EVT",), outputs=("ztplot",),
            pages=("index", "compact"), forked=True),
    Program("rttc", "monitoring_process", "the cable round-trip-time monitor", "km3mon rttc",
            module="km3mon.monitors.rttc", outputs=("rttc",), pages=("rttc", "du"), forked=True),
    # In no group: the template has it commented out, outside monitoring_process's list.
    Program("k40", None, "the K40 coincidence monitor", "km3mon k40",
            module="km3mon.monitors.k40", tags=("IO_TSL1", "IO_SUM"),
            outputs=("intradom", "angular_k40rate_distribution", "k40_summary", "k40_du*"),
            pages=("k40",), forked=True),
    Program("sn", "monitoring_process", "the supernova monitor", "km3mon sn",
            module="km3mon.monitors.sn", tags=("IO_TSSN", "IO_EVT"),
            outputs=("sn_bg_histogram", "sn_pk_history"), pages=("sn",), forked=True),
    Program("reco", "reconstruction", "the reconstruction", "km3mon reco",
            module="km3mon.monitors.reco", tags=("IO_EVT",),
            outputs=("time_residuals", "ztplot_roy", "reco_zenith"), pages=("reco",), forked=True),
    Program("timesync", "alerts", "the time-sync monitor", "km3mon timesync",
            module="km3mon.monitors.timesync", tags=("IO_SUM", "IO_TSSN"), outputs=("timesync",),
            pages=("timesync",), forked=True),
    Program("alerts", "alerts", "the alert service", "km3mon alerts",
            module="km3mon.alerts.alerts", pages=("alerts",)),
    Program("quality", "alerts", "the run-quality record", "km3mon quality",
            module="km3mon.monitors.quality", tags=("IO_SUM", "IO_EVT", "IO_TSSN"),
            pages=("runs",)),
    Program("history", "alerts", "the history store", "km3mon history",
            module="km3mon.history.history", pages=("history",)),
    Program("webserver", None, "the dashboard", "km3mon webserver", module="km3mon.web.server",
            writes_freshness=False),
    # The demo's stand-in for the shore station (group daq_simulation, not in production).
    Program("daq_ligier", "daq_simulation", "the demo's DAQ ligier", "km3mon ligier",
            module="km3mon.controlhost.ligier", writes_freshness=False),
    Program("log_ligier", "daq_simulation", "the demo's log ligier", "km3mon ligier",
            module="km3mon.controlhost.ligier", writes_freshness=False),
    Program("simulator", "daq_simulation", "the simulator", "km3mon simulate",
            module="km3mon.sim.simulator", writes_freshness=False),
    Program("replay", "daq_simulation", "the replay", "km3mon replay",
            module="km3mon.sim.replay", writes_freshness=False),
    Program("detector_manager", "daq_simulation", "the Detector Manager stand-in",
            "km3mon detector-manager", module="km3mon.sim.detector_manager",
            writes_freshness=False),
)  # fmt: skip

#: Commands run by hand (or by several programs, as the ligier), in ``km3mon --help`` order
#: after the programs'.
TOOLS: tuple[Command, ...] = (
    Command("ligier", "km3mon.controlhost.ligier",
            "ControlHost dispatcher (drop-in for Jpp's JLigier)"),
    Command("start", "km3mon.ops", "check the setup, then start supervisord"),
    Command("stop", "km3mon.ops", "stop supervisord and every monitoring process"),
    Command("status", "km3mon.ops", "supervisorctl status"),
    Command("demo", "km3mon.demo", "the whole suite on a simulated detector, in ./demo"),
    Command("shift-report", "km3mon.alerts.report", "a shift's report as Markdown"),
    Command("record", "km3mon.daq.record", "record tags from a ligier into a file"),
    Command("inspect", "km3mon.daq.inspect", "summarise a recording"),
    Command("grl", "km3mon.quality.grl", "the good-run list from data/quality.sqlite3"),
    Command("compile-kernels", "km3mon.kernels", "compile the numba kernels (make install does)"),
)  # fmt: skip

#: A DU's own page (``/du/<n>``): rows of its plots, ``{du}`` replaced by its number.
DU_PAGE: tuple[tuple[str, ...], ...] = (
    ("pmt_rates_du{du}", "pmt_hrv_du{du}"),
    ("yaw_calib_du{du}", "pitch_calib_du{du}"),
    ("roll_calib_du{du}", "rttc"),
)

BY_NAME: dict[str, Program] = {program.name: program for program in PROGRAMS}

#: The environment variable naming the fork server's socket (supervisord_template.conf sets
#: it): with it, ``km3mon <program>`` of a ``forked`` program runs as a fork of the server.
FORKSERVER_ENV = "KM3MON_FORKSERVER"


def commands() -> dict[str, Command]:
    """Every `km3mon` command by name: the programs' (``km3mon <name> ...``), then the tools.

    A command run by several programs (the ligier) is described once, in ``TOOLS``.
    """
    found: dict[str, Command] = {}
    tools = {tool.name for tool in TOOLS}
    for program in PROGRAMS:
        words = program.command.split()
        if words[0] == "km3mon" and words[1] not in tools and words[1] not in found:
            found[words[1]] = Command(words[1], program.module, program.what)
    return found | {tool.name: tool for tool in TOOLS}


def producer_of(plot: str) -> Program | None:
    """The program writing plot ``plot`` (a stem, or a pattern such as ``pmt_rates_du*``)."""
    for program in PROGRAMS:
        for output in program.outputs:
            if plot == output or fnmatch.fnmatchcase(plot, output):
                return program
    return None


def summary_of(pattern: str) -> str | None:
    """The detector-wide summary image drawn for per-DU plots ``pattern``, if there is one."""
    for program in PROGRAMS:
        for per_du, summary in program.summaries:
            if pattern == per_du:
                return summary
    return None


def forked_modules() -> tuple[str, ...]:
    """The modules of the programs started by the fork server, for it to import first."""
    return tuple(dict.fromkeys(program.module for program in PROGRAMS if program.forked))


def writes_freshness(name: str) -> bool:
    """Whether program ``name`` should have a freshness record (unknown programs: no)."""
    program = BY_NAME.get(name)
    return program is not None and program.writes_freshness
