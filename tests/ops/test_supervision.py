"""What the README promises about supervision, with the operator's supervisord template."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from km3mon import ops
from tests.conftest import REPO, free_port, wait_until
from tests.ops.test_operations import processes_in, setenv

#: Every program of the template that fails at once here: the ligier (its command is
#: `false`) and the monitors (their DETX is not a detector file).
FAILING = ("ligiers:monitoring_ligier", "monitoring_process:dom_rates", "monitoring_process:ztplot")
STARTRETRIES = 10


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_program_that_keeps_failing_is_given_up_after_10_tries_as_fatal(tmp_path: Path) -> None:
    """README: a process that fails before it has run its startsecs (5 s; 2 s for the
    monitoring ligier) is restarted, and given up (FATAL) after 10 such tries in a row.
    supervisord's back-off (1 + 2 + ... + 10 s) makes that about a minute."""
    folder = tmp_path / "shore_station"
    folder.mkdir()
    template = (REPO / "supervisord_template.conf").read_text()
    assert re.search(r"\[program:monitoring_ligier\][^[]*startsecs=2\n", template)
    assert template.count("startretries=10") == template.count("[program:")
    shutil.copy(REPO / "supervisord_template.conf", folder / "supervisord.conf")
    not_a_detector = folder / "broken.detx"
    not_a_detector.write_text("this is not a DETX file\n")
    ports = {name: free_port() for name in ("daq", "log", "monitoring", "web", "logging", "dm")}
    environ = {**os.environ, **setenv(ports), "DETX": str(not_a_detector), "LIGIER_CMD": "false"}
    (folder / "pids").mkdir()
    (folder / "logs").mkdir()
    ops.start(folder, environ)
    try:

        def states() -> dict[str, str]:
            output = ops.supervisorctl(folder, "status").stdout
            return {line.split()[0]: line.split()[1] for line in output.splitlines() if line}

        wait_until(
            lambda: all(states().get(program) == "FATAL" for program in FAILING),
            240,
            "the failing programs to be FATAL",
            show=states,
        )
        log = (folder / "logs" / "supervisord.log").read_text()
        for program in FAILING:
            name = program.split(":")[1]
            # a try that outlived startsecs on a loaded machine resets the count: at least 11
            assert log.count(f"spawned: '{name}'") >= STARTRETRIES + 1, name
            assert f"gave up: {name} entered FATAL state, too many start retries too quickly" in log
        assert "cannot start" in (folder / "logs" / "dom_rates.log").read_text()
    finally:
        ops.stop(folder)
    wait_until(lambda: not processes_in(folder), 15, "no process of ours left")
