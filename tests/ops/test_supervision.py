"""What the README promises about supervision, with the operator's supervisord template."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from km3mon import ops
from tests.conftest import REPO, free_port, wait_until
from tests.ops.test_operations import processes_in, setenv

#: Programs of the template that fail at once here: the ligier (its command is `false`) and
#: two monitors (their DETX is not a detector file).
FAILING = ("monitoring_ligier", "dom_rates", "ztplot")
STARTRETRIES = 10


def template_with_only(programs: tuple[str, ...]) -> str:
    """The operator's template with only these ``[program:...]`` sections, as they are there
    (start seconds, retries), and no groups: the others would crowd the 2 cores with
    restarts, and a slow start outlives startsecs and restarts the count."""
    sections = ("\n" + (REPO / "supervisord_template.conf").read_text()).split("\n[")
    kept = [sections[0]]
    for section in sections[1:]:
        header = section.split("]", 1)[0]
        if header.startswith("group:"):
            continue
        if header.startswith("program:") and header.removeprefix("program:") not in programs:
            continue
        kept.append(section)
    return "\n[".join(kept)


@pytest.mark.serial
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_program_that_keeps_failing_is_given_up_after_10_tries_as_fatal(
    short_folder: Path,
) -> None:
    """README: a process that fails before it has run its startsecs (5 s; 2 s for the
    monitoring ligier) is restarted, and given up (FATAL) after 10 such tries in a row.
    supervisord's back-off (1 + 2 + ... + 10 s) makes that about a minute."""
    folder = short_folder / "shore_station"
    folder.mkdir()
    template = (REPO / "supervisord_template.conf").read_text()
    assert re.search(r"\[program:monitoring_ligier\][^[]*startsecs=2\n", template)
    assert template.count("startretries=10") == template.count("[program:")
    # With the fork server, which the monitors' stand-ins ask for (without it each would wait
    # a minute for it, outliving startsecs, before failing on its own).
    (folder / "supervisord.conf").write_text(template_with_only((*FAILING, "forkserver")))
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
        for name in FAILING:
            # a try that outlived startsecs on a loaded machine resets the count: at least 11
            assert log.count(f"spawned: '{name}'") >= STARTRETRIES + 1, name
            assert f"gave up: {name} entered FATAL state, too many start retries too quickly" in log
        assert "cannot start" in (folder / "logs" / "dom_rates.log").read_text()
    finally:
        ops.stop(folder)
    wait_until(lambda: not processes_in(folder), 15, "no process of ours left")
