"""configure(): settings from arguments and HOPSCOPE_* variables, malformed ones explained."""

import logging
from pathlib import Path

import pytest

from hopscope.core.env import env_bool, env_int
from hopscope.core.errors import SettingsError
from hopscope.ingest import configure


def test_malformed_variables_are_logged_and_defaults_used(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("HOPSCOPE_REDACT_PANS", "maybe")
    monkeypatch.setenv("HOPSCOPE_MAX_QUEUE_SIZE", "-5")
    with caplog.at_level(logging.WARNING, logger="hopscope.core.env"):
        assert env_bool("HOPSCOPE_REDACT_PANS", True) is True
        assert env_int("HOPSCOPE_MAX_QUEUE_SIZE", 20_000, minimum=1) == 20_000
    messages = " ".join(r.message for r in caplog.records)
    assert "HOPSCOPE_REDACT_PANS='maybe'" in messages
    assert "HOPSCOPE_MAX_QUEUE_SIZE='-5'" in messages


@pytest.mark.parametrize(("raw", "value"), [("0", False), ("off", False), ("TRUE", True)])
def test_boolean_spellings(monkeypatch: pytest.MonkeyPatch, raw: str, value: bool) -> None:
    monkeypatch.setenv("HOPSCOPE_REDACT_PANS", raw)
    assert env_bool("HOPSCOPE_REDACT_PANS", not value) is value


def test_no_endpoint_anywhere_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("HOPSCOPE_KAFKA_BOOTSTRAP", raising=False)
    monkeypatch.delenv("HOPSCOPE_ES_URL", raising=False)
    monkeypatch.setenv("HOPSCOPE_STATE_DIR", str(tmp_path))
    with pytest.raises(SettingsError, match="HOPSCOPE_KAFKA_BOOTSTRAP"):
        configure("gw", "gw-1", set_global=False)


def test_names_are_required() -> None:
    with pytest.raises(ValueError, match="service_name and node_id"):
        configure("", "gw-1", kafka_bootstrap="127.0.0.1:9", set_global=False)
