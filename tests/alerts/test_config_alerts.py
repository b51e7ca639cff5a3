"""[Alerts] and [History] in pipeline.toml: types checked, the key named, secrets hidden."""

from __future__ import annotations

import pytest

from km3mon.config import ConfigError, PipelineConfig, load_pipeline


def test_alerts_section_with_rules_and_secrets(tmp_path) -> None:
    path = tmp_path / "pipeline.toml"
    path.write_text(
        '[Alerts]\nwebhook_url = "https://chat/hooks/s3cret"\nsmtp = "mail:25"\n'
        'smtp_password = "hunter2"\nmail_to = ["a@b.org"]\n'
        '[Alerts.silent_dom]\nhold_s = 30\n[Alerts.mine]\nmetric = "x.y"\nbelow = 1\n'
        "[History]\nkeep_days = 7\n"
    )
    pipeline = load_pipeline(path)
    alerts = pipeline.alerts
    assert alerts.webhook_url.reveal() == "https://chat/hooks/s3cret"
    assert "s3cret" not in repr(alerts) and "hunter2" not in repr(alerts)
    assert alerts.mail_to == ("a@b.org",) and alerts.rules["silent_dom"].hold_s == 30
    assert alerts.rules["mine"].metric == "x.y" and pipeline.history.keep_days == 7


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ('[Alerts]\nsmtp = "no-port"\n', "smtp"),
        ('[Alerts]\nmail_to = "a@b.org"\n', "[Alerts] mail_to"),
        ("[Alerts.silent_dom]\nhold_s = -1\n", "[Alerts.silent_dom] hold_s"),
        ('[Alerts.silent_dom]\nhold_s = "soon"\n', "[Alerts.silent_dom] hold_s"),
        ("[History]\nkeep_days = 0\n", "[History] keep_days"),
    ],
)
def test_wrong_values_name_the_key(tmp_path, text: str, named: str) -> None:
    path = tmp_path / "pipeline.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=named.replace("[", r"\[").replace("]", r"\]")):
        load_pipeline(path)


def test_defaults() -> None:
    alerts = PipelineConfig().alerts
    assert (alerts.reminder_s, alerts.clear_s, alerts.webhook_url, alerts.rules) == (
        14400,
        60,
        None,
        {},
    )
