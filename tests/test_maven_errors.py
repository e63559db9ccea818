"""Fetching from Maven Central fails with a clear error that says what was tried."""

from pathlib import Path

import pytest

from hopscope.stack.artifacts import fetch_artifacts
from hopscope.stack.errors import MavenError
from hopscope.stack.java import find_java


def test_missing_maven_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    java = find_java()
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    with pytest.raises(MavenError, match=r"Maven \(`mvn`\) is not on PATH") as info:
        fetch_artifacts(tmp_path / "cache", java)
    assert "deploy/compose.yaml" in str(info.value)


def test_unreachable_repository_says_what_was_tried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A Maven home whose only mirror is a closed loopback port, and an empty local repository:
    # exactly what a machine without access to Maven Central sees.
    home = tmp_path / "home"
    (home / ".m2").mkdir(parents=True)
    (home / ".m2" / "settings.xml").write_text(
        "<settings><mirrors><mirror><id>nowhere</id><mirrorOf>*</mirrorOf>"
        "<url>http://127.0.0.1:9/maven2</url></mirror></mirrors></settings>"
    )
    monkeypatch.setenv("MAVEN_OPTS", f"-Duser.home={home}")
    cache = tmp_path / "cache"
    with pytest.raises(MavenError) as info:
        fetch_artifacts(cache, find_java())
    message = str(info.value)
    assert "could not fetch Apache Kafka" in message
    assert "copy-dependencies" in message  # the command that was tried
    assert "deploy/compose.yaml" in message
    # Nothing half-downloaded is left to look cached.
    assert not any(cache.glob("kafka-*/libs/.complete"))
