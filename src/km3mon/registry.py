"""Which process produces what: supervisord group, input tags and output plots of every program.

Kept as data, below the monitors and the web server, so that the dashboard can say which
process should have drawn a missing plot ("time_residuals: produced by the reconstruction
(`km3mon reco`), which is not running") and which processes write no freshness record (a
ligier is not an alarm for having none), without importing any monitor. A developer who adds
a process adds one entry here; output names are plot file stems, ``*`` matches a DU number.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass


@dataclass(frozen=True)
class Program:
    """One supervisord program of the suite."""

    name: str
    #: supervisord group (``None``: a program outside any group, like the webserver).
    group: str | None
    #: In words, for sentences on the dashboard: "the reconstruction".
    what: str
    command: str
    tags: tuple[str, ...] = ()
    #: Plot names (file stems) it writes; ``pmt_rates_du*`` is one per DU.
    outputs: tuple[str, ...] = ()
    #: One detector-wide summary image per per-DU output pattern, drawn by the same process.
    summaries: tuple[tuple[str, str], ...] = ()
    #: False for programs that write no ``data/freshness`` record (ligiers, web servers, ...).
    writes_freshness: bool = True


PROGRAMS: tuple[Program, ...] = (
    Program("monitoring_ligier", "ligiers", "the monitoring ligier", "$LIGIER_CMD",
            writes_freshness=False),
    Program("ligiermirror", "ligiers", "the ligier mirror", "km3mon ligiermirror",
            tags=("IO_EVT", "IO_SUM", "IO_MONIT")),
    Program("msg_dumper", "logging", "the DAQ log dumper", "km3mon msg_dumper", tags=("MSG",)),
    Program("weblog", "logging", "the live log viewer", "km3mon weblog", writes_freshness=False),
    Program("ahrs_calibration", "monitoring_process", "the AHRS monitor",
            "km3mon ahrs_calibration", tags=("IO_MONIT",),
            outputs=("yaw_calib_du*", "pitch_calib_du*", "roll_calib_du*", "ahrs_summary"),
            summaries=(("yaw_calib_du*", "ahrs_summary"), ("pitch_calib_du*", "ahrs_summary"),
                       ("roll_calib_du*", "ahrs_summary"))),
    Program("dom_activity", "monitoring_process", "the DOM activity monitor",
            "km3mon dom_activity", tags=("IO_SUM",), outputs=("dom_activity",)),
    Program("dom_rates", "monitoring_process", "the DOM rate monitor", "km3mon dom_rates",
            tags=("IO_SUM",), outputs=("dom_rates",)),
    Program("pmt_rates", "monitoring_process", "the PMT rate monitor", "km3mon pmt_rates",
            tags=("IO_MONIT",), outputs=("pmt_rates_du*", "pmt_rates_summary"),
            summaries=(("pmt_rates_du*", "pmt_rates_summary"),
                       ("pmt_hrv_du*", "pmt_rates_summary"))),
    Program("pmt_hrv", "monitoring_process", "the high-rate-veto monitor", "km3mon pmt_hrv",
            tags=("IO_MONIT",), outputs=("pmt_hrv_du*",)),
    Program("trigger_rates", "monitoring_process", "the trigger rate monitor",
            "km3mon trigger_rates", tags=("IO_EVT",),
            outputs=("trigger_rates", "trigger_rates_lin")),
    Program("triggermap", "monitoring_process", "the trigger map monitor", "km3mon triggermap",
            tags=("IO_EVT",), outputs=("hitmap", "triggermap")),
    Program("ztplot", "monitoring_process", "the event display", "km3mon ztplot",
            tags=("IO_EVT",), outputs=("ztplot",)),
    Program("rttc", "monitoring_process", "the cable round-trip-time monitor", "km3mon rttc",
            outputs=("rttc",)),
    Program("k40", "monitoring_process", "the K40 coincidence monitor", "km3mon k40",
            tags=("IO_TSL1",),
            outputs=("intradom", "angular_k40rate_distribution", "k40_summary")),
    Program("sn", "monitoring_process", "the supernova monitor", "km3mon sn", tags=("IO_TSSN",),
            outputs=("sn_bg_histogram", "sn_pk_history")),
    Program("reco", "reconstruction", "the reconstruction", "km3mon reco", tags=("IO_EVT",),
            outputs=("time_residuals", "ztplot_roy", "reco_zenith")),
    Program("timesync", "alerts", "the time-sync monitor", "km3mon timesync",
            tags=("IO_SUM", "IO_TSSN"), outputs=("timesync",)),
    Program("alerts", "alerts", "the alert service", "km3mon alerts"),
    Program("quality", "alerts", "the run-quality record", "km3mon quality",
            tags=("IO_SUM", "IO_EVT", "IO_TSSN")),
    Program("webserver", None, "the dashboard", "km3mon webserver", writes_freshness=False),
    # The demo's stand-in for the shore station (group daq_simulation, not in production).
    Program("daq_ligier", "daq_simulation", "the demo's DAQ ligier", "km3mon ligier",
            writes_freshness=False),
    Program("log_ligier", "daq_simulation", "the demo's log ligier", "km3mon ligier",
            writes_freshness=False),
    Program("simulator", "daq_simulation", "the simulator", "km3mon simulate",
            writes_freshness=False),
    Program("replay", "daq_simulation", "the replay", "km3mon replay", writes_freshness=False),
    Program("detector_manager", "daq_simulation", "the Detector Manager stand-in",
            "km3mon detector-manager", writes_freshness=False),
)  # fmt: skip

#: A DU's own page (``/du/<n>``): rows of its plots, ``{du}`` replaced by its number.
DU_PAGE: tuple[tuple[str, ...], ...] = (
    ("pmt_rates_du{du}", "pmt_hrv_du{du}"),
    ("yaw_calib_du{du}", "pitch_calib_du{du}"),
    ("roll_calib_du{du}", "rttc"),
)

BY_NAME: dict[str, Program] = {program.name: program for program in PROGRAMS}


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


def writes_freshness(name: str) -> bool:
    """Whether program ``name`` should have a freshness record (unknown programs: no)."""
    program = BY_NAME.get(name)
    return program is not None and program.writes_freshness
