"""Fetch Apache Kafka and the Elasticsearch integ-test-zip from Maven Central into a cache.

Both are fetched with Maven, so they come from the same place (and through the same proxy
settings) as any other Java dependency. A fetch writes into a temporary directory and renames it
into place only when complete, so an interrupted download never looks cached.

Maven's own local repository (what it downloads before copying: the Kafka jars, the
Elasticsearch zip, the dependency plugin) is ``<cache dir>/m2`` rather than ``~/.m2``, so one
setting (``HOPSCOPE_CACHE_DIR``) places every download the stack makes. The user's
``~/.m2/settings.xml`` (mirrors, proxies) still applies.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from hopscope.stack.errors import DOCKER_HINT, MavenError
from hopscope.stack.java import JavaRuntime

DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"
ES_ARTIFACT = "org.elasticsearch.distribution.integ-test-zip:elasticsearch:{version}:zip"
_POM_NS = {"m": "http://maven.apache.org/POM/4.0.0"}
# Maven's local repository inside the cache directory (see the module docstring).
MAVEN_REPOSITORY = "m2"


@dataclass(frozen=True)
class StackVersions:
    """The pinned versions, read from the packaged Maven descriptor (the single source)."""

    kafka: str
    elasticsearch: str


@dataclass(frozen=True)
class Artifacts:
    """Where the fetched services live in the cache."""

    versions: StackVersions
    kafka_libs: Path
    es_home: Path


def pom_text() -> str:
    """The packaged Maven descriptor of the local stack."""
    return resources.files("hopscope.stack").joinpath("resources/stack-pom.xml").read_text()


def pinned_versions() -> StackVersions:
    """Read the Kafka and Elasticsearch versions from the Maven descriptor's properties."""
    # Our own packaged file, not untrusted input.
    props = ET.fromstring(pom_text()).find("m:properties", _POM_NS)  # noqa: S314
    if props is None:  # pragma: no cover - the packaged file has them
        raise MavenError("the packaged stack-pom.xml has no <properties>")

    def prop(name: str) -> str:
        node = props.find(f"m:{name}", _POM_NS)
        if node is None or not node.text:  # pragma: no cover
            raise MavenError(f"the packaged stack-pom.xml lacks <{name}>")
        return node.text.strip()

    return StackVersions(kafka=prop("kafka.version"), elasticsearch=prop("elasticsearch.version"))


def cached_artifacts(cache_dir: Path) -> Artifacts:
    """The cache paths for the pinned versions, whether or not they are fetched yet."""
    versions = pinned_versions()
    return Artifacts(
        versions=versions,
        kafka_libs=cache_dir / f"kafka-{versions.kafka}" / "libs",
        es_home=cache_dir / f"elasticsearch-{versions.elasticsearch}",
    )


def is_cached(artifacts: Artifacts) -> bool:
    """True when both services are fully in the cache (no download needed)."""
    return (artifacts.kafka_libs / ".complete").exists() and (
        artifacts.es_home / ".complete"
    ).exists()


def maven_command(mvn: str, args: list[str], cache_dir: Path) -> list[str]:
    """The Maven command line for one fetch: batch mode, quiet, the cache's local repository.

    >>> maven_command("mvn", ["-f", "pom.xml", "validate"], Path("/c"))
    ['mvn', '-B', '-q', '-Dmaven.repo.local=/c/m2', '-f', 'pom.xml', 'validate']
    """
    return [mvn, "-B", "-q", f"-Dmaven.repo.local={cache_dir / MAVEN_REPOSITORY}", *args]


def _mvn(args: list[str], java: JavaRuntime, what: str, cache_dir: Path) -> None:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise MavenError(
            f"Maven (`mvn`) is not on PATH, so {what} cannot be fetched from Maven Central: "
            f"install it (e.g. `apt-get install maven`); {DOCKER_HINT}"
        )
    # Maven runs on the Java we found; the user's Maven settings (mirrors, proxies) still apply.
    env = {**os.environ, "JAVA_HOME": str(java.home)}
    command = maven_command(mvn, args, cache_dir)
    proc = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-12:])
        raise MavenError(
            f"Maven could not fetch {what} from Maven Central "
            f"(tried: {' '.join(command)}; exit {proc.returncode}); is the network or a "
            f"Maven mirror reachable? {DOCKER_HINT}.\n{tail}"
        )


def fetch_artifacts(cache_dir: Path, java: JavaRuntime) -> Artifacts:
    """Download whatever of Kafka and Elasticsearch is not cached yet; return the paths."""
    artifacts = cached_artifacts(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    # Maven writes its bookkeeping (target/, unpack markers) beside the descriptor: give it a
    # copy in the cache rather than the installed package (so pom.parent is the cache directory).
    pom = cache_dir / "stack-pom.xml"
    pom.write_text(pom_text())
    if not (artifacts.kafka_libs / ".complete").exists():
        _fetch_into(artifacts.kafka_libs, lambda out: _copy_kafka(pom, out, java, artifacts))
    if not (artifacts.es_home / ".complete").exists():
        _fetch_into(artifacts.es_home, lambda out: _unpack_es(pom, out, java, artifacts))
    return artifacts


def _copy_kafka(pom: Path, out: Path, java: JavaRuntime, artifacts: Artifacts) -> None:
    _mvn(
        [
            "-f", str(pom), f"{DEPENDENCY_PLUGIN}:copy-dependencies",
            "-DincludeScope=runtime", f"-DoutputDirectory={out}",
        ],
        java,
        f"Apache Kafka {artifacts.versions.kafka}",
        pom.parent,
    )  # fmt: skip


def _unpack_es(pom: Path, out: Path, java: JavaRuntime, artifacts: Artifacts) -> None:
    version = artifacts.versions.elasticsearch
    _mvn(
        [
            "-f", str(pom), f"{DEPENDENCY_PLUGIN}:unpack",
            f"-Dartifact={ES_ARTIFACT.format(version=version)}",
            f"-DoutputDirectory={out}",
            # Without a fresh markers directory Maven skips an artifact it unpacked before.
            f"-DmarkersDirectory={out}/.markers",
        ],
        java,
        f"Elasticsearch {version} (integ-test-zip)",
        pom.parent,
    )  # fmt: skip
    shutil.rmtree(out / ".markers", ignore_errors=True)
    # The zip holds one top-level folder, elasticsearch-<version>/: lift its content up.
    inner = out / f"elasticsearch-{version}"
    for child in inner.iterdir():
        child.rename(out / child.name)
    inner.rmdir()


def _fetch_into(target: Path, fetch: Callable[[Path], None]) -> None:
    """Run ``fetch(tmpdir)`` then move the result to ``target`` atomically."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    # mkdtemp makes it 0700; the cache must stay readable by Elasticsearch's system user.
    tmp.chmod(0o755)
    try:
        fetch(tmp)
        (tmp / ".complete").touch()
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
