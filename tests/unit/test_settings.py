"""Endpoint resolution: environment first, then the local stack, else a clear error."""

from pathlib import Path

import pytest

from hopscope.core.errors import SettingsError
from hopscope.core.settings import Settings, default_cache_dir, default_state_dir
from hopscope.stack import Endpoints, resolve_settings


def test_environment_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOPSCOPE_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
    monkeypatch.setenv("HOPSCOPE_ES_URL", "http://127.0.0.1:9200/")
    settings = Settings.from_env()
    assert settings.kafka_bootstrap == "127.0.0.1:9092"
    assert settings.es_url == "http://127.0.0.1:9200"
    assert settings.resolved() is settings


def test_missing_endpoints_explain_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="hopscope stack up") as info:
        resolve_settings(Settings(state_dir=tmp_path))
    assert "HOPSCOPE_KAFKA_BOOTSTRAP" in str(info.value)


def test_without_a_fallback_the_dev_stack_is_never_read(tmp_path: Path) -> None:
    # A production process (the SDK, a library caller) names its endpoints; a developer's
    # stack state file must not be picked up behind its back.
    with pytest.raises(SettingsError, match="HOPSCOPE_KAFKA_BOOTSTRAP") as info:
        Settings(state_dir=tmp_path).resolved()
    assert "stack" not in str(info.value)


def test_a_fallback_fills_only_what_is_missing(tmp_path: Path) -> None:
    seen: list[Path] = []

    def fallback(state_dir: Path) -> Endpoints:
        seen.append(state_dir)
        return Endpoints("127.0.0.1:1", "http://127.0.0.1:2")

    settings = Settings(kafka_bootstrap="127.0.0.1:9092", state_dir=tmp_path).resolved(fallback)
    assert (settings.kafka_bootstrap, settings.es_url) == ("127.0.0.1:9092", "http://127.0.0.1:2")
    assert seen == [tmp_path]


def test_directories_are_overridable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOPSCOPE_CACHE_DIR", str(tmp_path / "c"))
    monkeypatch.setenv("HOPSCOPE_STATE_DIR", str(tmp_path / "s"))
    assert default_cache_dir() == tmp_path / "c"
    assert default_state_dir() == tmp_path / "s"
