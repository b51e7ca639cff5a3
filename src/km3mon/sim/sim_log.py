"""DAQ log lines (``MSG``) as the DAQ processes write them to the log ligier.

Line format: ``YYYY-MM-DD HH:MM:SS.mmm IP CODE LEVEL text``: the UTC time of the simulated
clock, the IP of the DAQ host, the process code (``F0`` DataFilter, ``Q0`` DataQueue, ``W0``
DataWriter, ``A0`` AcousticDataFilter: the ``" F0"`` markers msg_dumper sorts by), the level
and free text. This is the shape the original km3mon ``log_analyser`` parses (date, IPv4
address, process, level, message); the exact Jpp wording of the texts is not known to us, so
:data:`TEXTS` are plausible stand-ins. Mostly STATUS and INFO, some WARNING, rare ERROR
(:data:`LEVELS`); each run change is announced by every process.
"""

from __future__ import annotations

import time

import numpy as np

LINES_PER_S = 3.0

#: Process code -> (DAQ process name, IP of its host, share of the lines).
PROCESSES: dict[str, tuple[str, str, float]] = {
    "F0": ("DataFilter", "192.168.0.21", 0.40),
    "Q0": ("DataQueue", "192.168.0.11", 0.20),
    "W0": ("DataWriter", "192.168.0.31", 0.25),
    "A0": ("AcousticDataFilter", "192.168.0.41", 0.15),
}

#: Level -> share of the lines.
LEVELS: dict[str, float] = {"STATUS": 0.55, "INFO": 0.35, "WARNING": 0.08, "ERROR": 0.02}

#: Texts per level; ``{run}``, ``{frame}``, ``{dom}``, ``{number}`` are filled in.
TEXTS: dict[str, tuple[str, ...]] = {
    "STATUS": (
        "{name}: run {run}, frame index {frame}, state Running",
        "{name}: run {run}, processed {number} timeslices, queue 0",
        "{name}: run {run}, {number} kB/s in, {number} kB/s out",
    ),
    "INFO": (
        "{name}: run {run} update of trigger parameters acknowledged",
        "{name}: heartbeat, frame index {frame}",
        "{name}: {number} clients connected",
    ),
    "WARNING": (
        "{name}: incomplete timeslice {frame}, DOM {dom} missing",
        "{name}: late UDP packets from DOM {dom} in frame {frame}",
        "{name}: queue depth {number} above limit",
    ),
    "ERROR": (
        "{name}: no data from DOM {dom} for frame {frame}",
        "{name}: write buffer overflow, {number} events dropped",
    ),
}

_CODES = list(PROCESSES)
_CODE_SHARES = np.array([share for _, _, share in PROCESSES.values()])
_LEVEL_NAMES = list(LEVELS)
_LEVEL_SHARES = np.array(list(LEVELS.values()))


def log_line(utc_s: float, code: str, level: str, text: str) -> str:
    """One log line in the DAQ format (millisecond UTC time)."""
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(utc_s))
    millis = round(utc_s % 1 * 1000) % 1000
    return f"{stamp}.{millis:03d} {PROCESSES[code][1]} {code} {level} {text}"


class LogModel:
    """Random DAQ log lines at :data:`LINES_PER_S` on average."""

    def __init__(self, dom_ids: np.ndarray, rng: np.random.Generator) -> None:
        self.dom_ids = dom_ids
        self.rng = rng

    def lines(self, utc_s: float, duration_s: float, run: int, frame: int) -> list[str]:
        """The lines of a time span starting at ``utc_s``."""
        rng = self.rng
        n = rng.poisson(LINES_PER_S * duration_s)
        lines = []
        for offset_s in np.sort(rng.uniform(0, duration_s, n)).tolist():
            code = _CODES[rng.choice(len(_CODES), p=_CODE_SHARES)]
            level = _LEVEL_NAMES[rng.choice(len(_LEVEL_NAMES), p=_LEVEL_SHARES)]
            texts = TEXTS[level]
            text = texts[rng.integers(len(texts))].format(
                name=PROCESSES[code][0],
                run=run,
                frame=frame,
                dom=rng.choice(self.dom_ids),
                number=rng.integers(1, 5000),
            )
            lines.append(log_line(utc_s + offset_s, code, level, text))
        return lines

    @staticmethod
    def run_change(utc_s: float, old_run: int | None, new_run: int) -> list[str]:
        """Every process announces the new run (and the end of the old one)."""
        lines = []
        for code, (name, _, _) in PROCESSES.items():
            if old_run is not None:
                lines.append(log_line(utc_s, code, "STATUS", f"{name}: run {old_run} stopped"))
            lines.append(log_line(utc_s, code, "STATUS", f"{name}: run {new_run} started"))
        return lines
