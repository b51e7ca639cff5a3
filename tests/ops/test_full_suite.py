"""bench/full_suite.py on a small detector: the whole production suite keeps up.

Every monitor at its production interval except trigger_rates (300 s, shortened to 20 s
through ``--pipeline-extra`` so that its plot exists within the run); 60 s of warm-up let
the slowest remaining clock (ahrs_calibration, 60 s) draw once before the end.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, wait_until
from tests.ops.test_operations import processes_in

DAQ_STAND_IN = {"daq_ligier", "log_ligier", "simulator", "detector_manager"}
NO_PLOTS = {"ligiermirror", "msg_dumper", "alerts", "history", "quality"}
SHORT_TRIGGER_RATES = "[TriggerRate]\ninterval = 20\n"


def expected_programs() -> set[str]:
    """Every program of the operator's template, the stand-in and supervisord itself."""
    template = (REPO / "supervisord_template.conf").read_text()
    programs = set(re.findall(r"^\[program:(\w+)\]", template, flags=re.MULTILINE))
    return programs | DAQ_STAND_IN | {"supervisord", "k40"}  # k40: switched on as in the demo


@pytest.mark.serial
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_whole_suite_keeps_up_with_a_6_du_detector(tmp_path: Path) -> None:
    report = tmp_path / "full_suite.json"
    # --keep, to see that no process is left in the working folder; removed below.
    command = [sys.executable, str(REPO / "bench" / "full_suite.py"), "--dus", "6",
               "--warmup", "60", "--duration", "30", "--sample-every", "5", "--keep",
               "--pipeline-extra", SHORT_TRIGGER_RATES, "--k40-args", "--period 30 -i 30",
               "--json", str(report)]  # fmt: skip
    bench = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        output, _ = bench.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        bench.send_signal(signal.SIGTERM)  # the script stops supervisord on its way out
        output, _ = bench.communicate(timeout=90)
        pytest.fail(f"bench/full_suite.py did not finish in 240 s:\n{output}")
    assert bench.returncode == 0, output
    result = json.loads(report.read_text())["results"][0]
    folder = Path(result["folder"])
    try:
        wait_until(lambda: not processes_in(folder), 15, "no process of the suite left",
                   show=lambda: processes_in(folder))  # fmt: skip
    finally:
        shutil.rmtree(folder)

    rows, verdict = result["rows"], result["verdict"]
    assert set(rows) == expected_programs(), output
    assert not verdict["dropped"] and result["total_dropped"] == 0, output
    assert not verdict["not_running"], output
    assert not verdict["stale"] and not verdict["missing"], output
    assert not verdict["restarts"] and not verdict["log_errors"], output
    assert verdict["suite_cpu_ok"], output
    for name in ("simulator", "ligiermirror"):
        assert rows[name]["cpu_cores"] > 0, name
    with_records = {name: row for name, row in rows.items() if "messages" in row}
    assert set(with_records) == {"ligiermirror", "msg_dumper", "ahrs_calibration",
                                 "dom_activity", "dom_rates", "pmt_rates",
                                 "trigger_rates", "triggermap", "ztplot", "rttc", "alerts",
                                 "history", "quality", "reco", "timesync", "sn", "k40"}  # fmt: skip
    for name, row in with_records.items():
        assert row["state"] == "running" and row["messages"] > 0, (name, row)
        assert row["decode_errors"] == 0 and row["unknown_doms"] == 0, (name, row)
        assert name in NO_PLOTS or row["outputs"] > 0, (name, row)
    for name, row in rows.items():
        assert row["rss_max_mb"] < 1024, (name, row["rss_max_mb"])
