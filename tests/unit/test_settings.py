"""Endpoint resolution: environment first, then the local stack, else a clear error."""

from pathlib import Path

import pytest

from hopscope.errors import SettingsError
from hopscope.settings import Settings, default_cache_dir, default_state_dir


def test_environment_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOPSCOPE_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
    monkeypatch.setenv("HOPSCOPE_ES_URL", "http://127.0.0.1:9200/")
    settings = Settings.from_env()
    assert settings.kafka_bootstrap == "127.0.0.1:9092"
    assert settings.es_url == "http://127.0.0.1:9200"
    assert settings.resolved() is settings


def test_missing_endpoints_explain_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="hopscope stack up") as info:
        Settings(state_dir=tmp_path).resolved()
    assert "HOPSCOPE_KAFKA_BOOTSTRAP" in str(info.value)


def test_directories_are_overridable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOPSCOPE_CACHE_DIR", str(tmp_path / "c"))
    monkeypatch.setenv("HOPSCOPE_STATE_DIR", str(tmp_path / "s"))
    assert default_cache_dir() == tmp_path / "c"
    assert default_state_dir() == tmp_path / "s"
