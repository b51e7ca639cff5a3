"""Configuration: defaults of the original, typed environment, pipeline.toml validation."""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path

import pytest

from km3mon.config import (
    ConfigError,
    Environment,
    PipelineConfig,
    Secret,
    load_config,
    load_pipeline,
)

REPO = Path(__file__).resolve().parent.parent


def test_defaults_match_the_original() -> None:
    pipeline = PipelineConfig()
    assert (pipeline.dom_rates.lowest_rate_khz, pipeline.dom_rates.highest_rate_khz) == (200, 400)
    assert (pipeline.pmt_rates.lowest_rate_hz, pipeline.pmt_rates.highest_rate_hz) == (5000, 15000)
    assert pipeline.pmt_rates.hrv_ratio_threshold == 0.95
    assert (pipeline.trigger_rate.interval_s, pipeline.trigger_rate.with_minor_ticks) == (
        300,
        False,
    )
    assert pipeline.trigger_map.max_events == 1000
    assert (pipeline.ztplot.ytick_distance_m, pipeline.ztplot.min_dus) == (200, 1)
    assert pipeline.ztplot.min_doms == 4
    assert pipeline.calibrate_ahrs.time_range_h == 72
    assert pipeline.web_server.password is None
    env = Environment.from_environ({})
    assert env.tags_to_mirror == ("IO_EVT", "IO_SUM", "IO_TSSN", "MSG", "IO_MONIT")
    assert (env.monitoring_ligier_port, env.webserver_port, env.logging_port) == (55530, 8081, 8082)
    assert env.detector_id is None and env.detx is None


def test_environment_of_setenv_sh() -> None:
    env = Environment.from_environ(
        {
            "DETECTOR_ID": "43",
            "DAQ_LIGIER_IP": "192.168.0.110",
            "DAQ_LIGIER_PORT": "5553",
            "TAGS_TO_MIRROR": "IO_EVT, IO_SUM,IO_TSSN MSG",
            "LIGIER_CMD": "singularity exec jpp.sif JLigier",
            "DETX": "KM3NeT_00000043.detx",
            "ROYFIT_TIMERES": "data/time_residuals.csv",
            "WEBSERVER_PORT": " ",  # blank means default
        }
    )
    assert env.detector_id == 43 and env.daq_ligier_ip == "192.168.0.110"
    assert env.tags_to_mirror == ("IO_EVT", "IO_SUM", "IO_TSSN", "MSG")
    assert env.ligier_cmd == "singularity exec jpp.sif JLigier"
    assert env.detx == Path("KM3NeT_00000043.detx")
    assert env.webserver_port == 8081


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("DAQ_LIGIER_PORT", "55x", r"\$DAQ_LIGIER_PORT='55x' is not an integer"),
        ("LOGGING_PORT", "70000", r"\$LOGGING_PORT must be at most 65535"),
        ("DETECTOR_ID", "D_ORCA006", r"\$DETECTOR_ID='D_ORCA006' is not an integer"),
    ],
)
def test_bad_environment_names_the_variable(variable: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Environment.from_environ({variable: value})


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pipeline.toml"
    path.write_text(text)
    return path


def test_pipeline_values_and_unknown_keys_warn(tmp_path: Path, caplog) -> None:
    path = write(
        tmp_path,
        """
[DOMRates]
lowest_rate = 150
highest_rate = 350.5

[PMTRates]
lowest_rate = 1000
higest_rate = 20000

[TriggerRate]
with_minor_ticks = true

[Chatbot]
channel = "operations_fr"
""",
    )
    with caplog.at_level(logging.WARNING):
        pipeline = load_pipeline(path)
    assert pipeline.dom_rates.lowest_rate_khz == 150.0
    assert isinstance(pipeline.dom_rates.lowest_rate_khz, float)
    assert pipeline.dom_rates.highest_rate_khz == 350.5
    assert pipeline.pmt_rates.lowest_rate_hz == 1000 and pipeline.pmt_rates.highest_rate_hz == 15000
    assert pipeline.trigger_rate.with_minor_ticks is True
    assert "unknown key [PMTRates] higest_rate ignored" in caplog.text
    assert "unknown section [Chatbot] ignored" in caplog.text
    assert str(path) in caplog.text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[DOMRates]\nlowest_rate = "150"\n',
            r"\[DOMRates\] lowest_rate must be a number, got '150'",
        ),
        ("[TriggerMap]\nmax_events = 10.5\n", r"\[TriggerMap\] max_events must be an integer"),
        ("[TriggerMap]\nmax_events = true\n", r"\[TriggerMap\] max_events must be an integer"),
        ("[TriggerRate]\nwith_minor_ticks = 1\n", r"with_minor_ticks must be true or false"),
        ("[TriggerRate]\ninterval = 0\n", r"\[TriggerRate\] interval must be positive"),
        ("[PMTRates]\nhrv_ratio_threshold = 1.5\n", r"hrv_ratio_threshold must be at most 1"),
        ("[ZTPlot]\nmin_doms = 0\n", r"\[ZTPlot\] min_doms must be at least 1"),
        ("[WebServer]\nusername = 7\n", r"\[WebServer\] username must be a string, got 7"),
        ("ZTPlot = 3\n", r"\[ZTPlot\] must be a table"),
        (
            "[DOMRates]\nlowest_rate = 500\n",
            r"\[DOMRates\] lowest_rate \(500.0\) must be below highest_rate \(400.0\)",
        ),
        ("[DOMRates]\nlowest_rate = = 5\n", r"pipeline.toml: .*line 2"),
    ],
)
def test_wrong_values_fail_naming_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=message) as caught:
        load_pipeline(path)
    assert str(caught.value).startswith(str(path))


def test_password_never_shows(tmp_path: Path, caplog) -> None:
    path = write(tmp_path, '[WebServer]\nusername = "km3net"\npassword = "swordfish"\nfoo = 1\n')
    with caplog.at_level(logging.DEBUG):
        config = load_config(path, environ={})
    web = config.pipeline.web_server
    assert web.password is not None and web.password.reveal() == "swordfish"
    for shown in (repr(config), str(config), repr(web), f"{web.password}", caplog.text):
        assert "swordfish" not in shown
    assert web.password == Secret("swordfish") and web.username == "km3net"
    with pytest.raises(ConfigError) as caught:
        load_pipeline(write(tmp_path, "[WebServer]\npassword = 12345\n"))
    assert "12345" not in str(caught.value) and "password must be a string" in str(caught.value)


def test_missing_file_and_working_folder_default(tmp_path: Path, monkeypatch) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_pipeline(tmp_path / "nope.toml")
    monkeypatch.chdir(tmp_path)
    assert load_pipeline() == PipelineConfig()
    write(tmp_path, "[TriggerMap]\nmax_events = 5000\n")
    assert load_pipeline().trigger_map.max_events == 5000


def test_repository_template_loads_without_warnings(caplog) -> None:
    template = REPO / "pipeline_template.toml"
    with caplog.at_level(logging.WARNING):
        pipeline = load_pipeline(template)
    assert caplog.text == ""
    assert pipeline.web_server.password is None


def test_setenv_template_gives_a_valid_environment() -> None:
    template = REPO / "setenv_template.sh"
    script = f"source {template} && env -0"
    output = subprocess.run(
        ["bash", "-c", script], capture_output=True, check=True, env={}, text=True
    ).stdout
    environ = dict(item.split("=", 1) for item in output.split("\0") if "=" in item)
    env = Environment.from_environ(environ)
    assert env.detector_id == 43 and env.monitoring_ligier_port == 55530
    assert env.tags_to_mirror == ("IO_EVT", "IO_SUM", "IO_TSSN", "MSG", "IO_MONIT")
    assert env.ligier_cmd == "km3mon ligier" and env.detx is not None
