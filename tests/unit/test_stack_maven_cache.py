"""Maven's local repository follows HOPSCOPE_CACHE_DIR: one variable places every download."""

import subprocess
from pathlib import Path
from typing import Any

import pytest

from hopscope.stack import artifacts
from hopscope.stack.java import JavaRuntime


def test_command_line_puts_mavens_repository_in_the_cache() -> None:
    command = artifacts.maven_command("/usr/bin/mvn", ["-f", "pom.xml", "validate"], Path("/c"))
    assert command[0] == "/usr/bin/mvn"
    assert "-Dmaven.repo.local=/c/m2" in command
    assert command[-3:] == ["-f", "pom.xml", "validate"]


def test_every_fetch_uses_the_cache_repository(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both fetches (Kafka's jars, Elasticsearch's zip) run Maven with ``<cache>/m2``."""
    commands: list[list[str]] = []

    def fake_run(command: list[str], **_: Any) -> subprocess.CompletedProcess[str]:
        commands.append(command)
        # What Maven leaves behind for the unpack step: the zip's one top-level folder.
        out = next(a.split("=", 1)[1] for a in command if a.startswith("-DoutputDirectory="))
        if "unpack" in " ".join(command):
            version = artifacts.pinned_versions().elasticsearch
            (Path(out) / f"elasticsearch-{version}" / "bin").mkdir(parents=True)
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(artifacts.shutil, "which", lambda _name: "/usr/bin/mvn")
    monkeypatch.setattr(artifacts.subprocess, "run", fake_run)
    cache = tmp_path / "cache"
    jdk = tmp_path / "jdk"
    java = JavaRuntime(home=jdk, executable=jdk / "bin" / "java", version="17.0.15", major=17)
    fetched = artifacts.fetch_artifacts(cache, java)

    assert len(commands) == 2
    for command in commands:
        assert f"-Dmaven.repo.local={cache / 'm2'}" in command
        assert not any("/.m2" in arg for arg in command)
    assert artifacts.is_cached(fetched)
