"""Finding Java and gating on its version."""

from pathlib import Path

import pytest

from hopscope.stack.errors import JavaError
from hopscope.stack.java import find_java, parse_java_version


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ('openjdk version "17.0.15" 2025-04-15', ("17.0.15", 17)),
        ('openjdk version "25" 2025-09-16', ("25", 25)),
        ('openjdk version "21.0.2+13-LTS"', ("21.0.2+13-LTS", 21)),
        ('java version "1.8.0_402"', ("1.8.0_402", 8)),
    ],
)
def test_parse_java_version(output: str, expected: tuple[str, int]) -> None:
    assert parse_java_version(output) == expected


def test_parse_java_version_rejects_garbage() -> None:
    with pytest.raises(JavaError, match="could not read a Java version"):
        parse_java_version("bash: java: command not found")


def test_bogus_java_home_names_what_was_tried(tmp_path: Path) -> None:
    bogus = tmp_path / "no-such-jdk"
    with pytest.raises(JavaError) as info:
        find_java(bogus)
    assert str(bogus) in str(info.value)
    assert "no Java runtime found" in str(info.value)


def test_too_old_java_is_refused(tmp_path: Path) -> None:
    # A stand-in launcher that answers like Java 11: only the version gate is under test.
    java = tmp_path / "jdk11" / "bin" / "java"
    java.parent.mkdir(parents=True)
    java.write_text("#!/bin/sh\necho 'openjdk version \"11.0.22\" 2024-01-16' >&2\n")
    java.chmod(0o755)
    with pytest.raises(JavaError, match=r"Java 11\.0\.22 .* too old"):
        find_java(tmp_path / "jdk11")


def test_real_java_on_this_machine_is_found() -> None:
    runtime = find_java()
    assert runtime.major >= 17
    assert runtime.executable.exists()
