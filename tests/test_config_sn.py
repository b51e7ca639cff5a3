"""``[SN]`` of pipeline.toml: the supernova monitor's selection, checked at start."""

from __future__ import annotations

from pathlib import Path

import pytest

from km3mon.config import ConfigError, load_pipeline


def test_sn_defaults_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "pipeline.toml"
    path.write_text("[SN]\nmin_multiplicity = 6\nwindow = 1\n")
    sn = load_pipeline(path).sn
    assert (sn.min_multiplicity, sn.max_multiplicity, sn.window_s) == (6, 11, 1.0)
    assert (sn.veto_window_ns, sn.false_alarms_per_week) == (1000.0, 1.0)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[SN]\nmin_multiplicity = "seven"\n', r"\[SN\] min_multiplicity must be an integer"),
        ("[SN]\nmin_multiplicity = 12\nmax_multiplicity = 8\n", "must not be above"),
        ("[SN]\nwindow = 0\n", r"\[SN\] window must be at least"),
        ("[SN]\nmax_multiplicity = 40\n", r"\[SN\] max_multiplicity must be at most 31"),
    ],
)
def test_bad_sn_settings_stop_the_process_naming_the_key(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "pipeline.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_pipeline(path)
