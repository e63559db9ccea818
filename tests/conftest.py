"""Real Kafka and Elasticsearch for the tests, started once per run.

Endpoints come from, in order:

1. ``HOPSCOPE_KAFKA_BOOTSTRAP`` / ``HOPSCOPE_ES_URL`` when set (a stack the user runs);
2. testcontainers, when a Docker engine answers a ping (a ``docker`` binary alone is not enough);
3. the local stack launcher (Kafka and Elasticsearch fetched from Maven Central), in a state
   directory of its own under /tmp, stopped at the end of the run.

Every test gets its own topic names, consumer groups and index prefix from the factory fixtures,
so tests never see each other's data.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from hopscope.core.settings import ENV_ES_URL, ENV_KAFKA_BOOTSTRAP, Settings, default_cache_dir

ES_IMAGE = "docker.elastic.co/elasticsearch/elasticsearch:8.19.21"
KAFKA_IMAGE = "confluentinc/cp-kafka:7.9.0"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("hopscope fault suite (tests/faults)")
    group.addoption(
        "--quick-faults",
        action="store_true",
        default=os.environ.get("HOPSCOPE_FAULTS_QUICK") == "1",
        help="Shorter outages and waits in the fault suite (every case still runs).",
    )
    group.addoption(
        "--reliability-report",
        metavar="PATH",
        default=None,
        help="Write the fault suite's ledger table to PATH (docs/RELIABILITY.md).",
    )


@dataclass(frozen=True)
class Services:
    kafka_bootstrap: str
    es_url: str
    source: str  # "environment", "testcontainers" or "local stack"

    @property
    def settings(self) -> Settings:
        return Settings(kafka_bootstrap=self.kafka_bootstrap, es_url=self.es_url)


def _docker_engine_answers() -> bool:
    """True when a Docker engine answers ``GET /_ping`` (a docker client alone is not enough)."""
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if host.startswith("unix://"):
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(3)
                sock.connect(host.removeprefix("unix://"))
                sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
                return sock.recv(1024).endswith(b"OK")
        except OSError:
            return False
    try:
        import docker

        client = docker.from_env(timeout=3)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        return False


@contextlib.contextmanager
def _testcontainers() -> Iterator[Services]:
    try:  # testcontainers >= 4.15 moved the modules
        from testcontainers.community.elasticsearch import ElasticSearchContainer
        from testcontainers.community.kafka import KafkaContainer
    except ImportError:
        from testcontainers.elasticsearch import ElasticSearchContainer
        from testcontainers.kafka import KafkaContainer

    with (
        KafkaContainer(KAFKA_IMAGE).with_kraft() as kafka,
        ElasticSearchContainer(ES_IMAGE, mem_limit="2g") as es,
    ):
        yield Services(kafka.get_bootstrap_server(), es.get_url(), "testcontainers")


@contextlib.contextmanager
def _local_stack() -> Iterator[Services]:
    from hopscope import stack

    state_dir = Path(
        os.environ.get("HOPSCOPE_TEST_STATE_DIR") or tempfile.mkdtemp(prefix="hopscope-test-")
    )
    options = stack.StackOptions(cache_dir=default_cache_dir(), state_dir=state_dir)
    try:
        state = stack.up(options)
        yield Services(state.kafka_bootstrap, state.es_url, "local stack")
    finally:
        stack.down(state_dir)
        shutil.rmtree(state_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def services() -> Iterator[Services]:
    """The Kafka broker and Elasticsearch node every integration test talks to."""
    kafka, es = os.environ.get(ENV_KAFKA_BOOTSTRAP), os.environ.get(ENV_ES_URL)
    if kafka and es:
        yield Services(kafka, es.rstrip("/"), "environment")
    elif _docker_engine_answers():
        with _testcontainers() as found:
            yield found
    else:
        with _local_stack() as found:
            yield found


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> Callable[[str], str]:
    """Names unique to this test: ``unique_name("spans")`` -> ``t-<test>-spans-<hex>``."""
    test = "".join(c if c.isalnum() else "-" for c in request.node.name.lower())[:40]
    run = uuid.uuid4().hex[:8]

    def make(suffix: str) -> str:
        return f"t-{test}-{suffix}-{run}"

    return make


@contextlib.contextmanager
def throwaway_index_prefix(es_url: str) -> Iterator[str]:
    """A fresh Elasticsearch index prefix; its indices are deleted on exit."""
    from elasticsearch import Elasticsearch

    prefix = f"hopscope-test-{uuid.uuid4().hex[:10]}"
    yield prefix
    client = Elasticsearch(es_url)
    try:
        client.indices.delete(index=f"{prefix}-*", ignore_unavailable=True, allow_no_indices=True)
    finally:
        client.close()


@pytest.fixture
def index_prefix(services: Services) -> Iterator[str]:
    """An Elasticsearch index prefix for this test; its indices are deleted afterwards."""
    with throwaway_index_prefix(services.es_url) as prefix:
        yield prefix


@pytest.fixture
def es_client(services: Services) -> Iterator[object]:
    """An ``elasticsearch.Elasticsearch`` client for the test node."""
    from elasticsearch import Elasticsearch

    client = Elasticsearch(services.es_url, request_timeout=30)
    yield client
    client.close()
