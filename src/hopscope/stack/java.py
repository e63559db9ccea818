"""Find a Java runtime and read its feature version."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from hopscope.core.env import env_optional
from hopscope.core.settings import ENV_JAVA_HOME
from hopscope.stack.errors import JavaError

# `java -version` prints e.g. `openjdk version "17.0.15" 2025-04-15` or `"1.8.0_402"`.
_VERSION_RE = re.compile(r'version "(?P<v>[^"]+)"')


@dataclass(frozen=True)
class JavaRuntime:
    """A Java installation: ``home`` is what ``JAVA_HOME``/``ES_JAVA_HOME`` should be."""

    home: Path
    executable: Path
    version: str
    major: int


def parse_java_version(output: str) -> tuple[str, int]:
    """Return the version string and feature (major) version from ``java -version`` output.

    >>> parse_java_version('openjdk version "17.0.15" 2025-04-15')
    ('17.0.15', 17)
    >>> parse_java_version('java version "1.8.0_402"')
    ('1.8.0_402', 8)
    """
    match = _VERSION_RE.search(output)
    if not match:
        raise JavaError(f"could not read a Java version from: {output.strip()[:200]!r}")
    version = match.group("v")
    parts = re.split(r"[._+-]", version)
    major = int(parts[1]) if parts[0] == "1" and len(parts) > 1 else int(parts[0])
    return version, major


def find_java(java_home: Path | None = None, *, minimum: int = 17) -> JavaRuntime:
    """Locate Java: the argument, then ``$HOPSCOPE_JAVA_HOME``, ``$JAVA_HOME``, ``java`` on PATH.

    Raises :class:`JavaError` naming what was tried when none is usable or it is too old.
    """
    tried: list[str] = []
    candidates: list[Path] = []
    if java_home is not None:
        candidates.append(java_home)
        tried.append(f"--java-home {java_home}")
    elif value := env_optional(ENV_JAVA_HOME):
        candidates.append(Path(value))
        tried.append(f"{ENV_JAVA_HOME}={value}")
    else:
        if value := env_optional("JAVA_HOME"):
            candidates.append(Path(value))
            tried.append(f"JAVA_HOME={value}")
        if on_path := shutil.which("java"):
            # /usr/bin/java is usually a chain of links into the real JDK's bin/.
            candidates.append(Path(on_path).resolve().parent.parent)
            tried.append(f"java on PATH ({on_path})")

    for home in candidates:
        executable = home / "bin" / "java"
        if not os.access(executable, os.X_OK):
            continue
        try:
            proc = subprocess.run(
                [str(executable), "-version"], capture_output=True, text=True, timeout=30
            )
        except (OSError, subprocess.TimeoutExpired):
            continue
        version, major = parse_java_version(proc.stderr + proc.stdout)
        if major < minimum:
            raise JavaError(
                f"Java {version} at {executable} is too old: Kafka 4 and Elasticsearch 8.19 "
                f"need Java {minimum} or newer (set {ENV_JAVA_HOME} to a newer JDK)"
            )
        return JavaRuntime(home=home, executable=executable, version=version, major=major)

    where = ", ".join(tried) if tried else "no JAVA_HOME and no java on PATH"
    raise JavaError(
        f"no Java runtime found (tried {where}): install a JDK {minimum}+ "
        f"(e.g. `apt-get install openjdk-17-jre-headless`) or set {ENV_JAVA_HOME}"
    )
