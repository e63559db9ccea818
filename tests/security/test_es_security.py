"""Elasticsearch with security on: HTTPS with a private CA, basic auth, API keys, least privilege.

One secured node (``tests/security/es_support.py``) serves the module; Kafka is the plain broker
of the ``services`` fixture. The node's roles are the JSON of :mod:`hopscope.core.es_security`
(quoted by ``docs/SECURITY.md``), its users file-realm users holding them; every test makes its
own topics, group and index prefix:

- a processor holding only the processor role connects with basic auth, trusting the CA file,
  and indexes simulated traffic completely; the loader, holding only the reader role, reads it
  back over TLS (raw sliced searches included); neither can do the other's job;
- an API key reaches the node as an API key: the integ-test-zip cannot store API keys (no
  security index without its ``analysis-common`` module), so the node refuses it by id, and
  the refusal is a clear error without the key's secret;
- without the CA file, with a wrong password, or with a role lacking a privilege, the failure
  is a clear hopscope error that names no secret, and nothing is dropped or committed past;
- secrets never appear in the processor's output, debug logs or Prometheus metrics, nor in
  ``hopscope stack status``.
"""

from __future__ import annotations

import base64
import dataclasses
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import polars as pl
import pytest
from elasticsearch import AuthorizationException, Elasticsearch

from hopscope.analysis.errors import LoaderError
from hopscope.analysis.loaders import count_elasticsearch, load_elasticsearch
from hopscope.core.es_security import (
    ENV_ES_API_KEY,
    ENV_ES_CA_CERTS,
    ENV_ES_PASSWORD,
    ENV_ES_USERNAME,
    ENV_ES_VERIFY_CERTS,
    EsSecurity,
    es_client,
    processor_role,
    reader_role,
)
from hopscope.core.settings import ENV_ES_URL, ENV_KAFKA_BOOTSTRAP, ENV_STATE_DIR, default_state_dir
from hopscope.ingest.simulator import (
    Scenario,
    SimulationConfig,
    SimulationResult,
    default_start_ns,
    simulate_to_kafka,
)
from hopscope.processors.errors import SinkAccessError
from hopscope.processors.runtime import Processor
from hopscope.stack import elasticsearch as stack_es
from hopscope.stack.artifacts import pinned_versions
from hopscope.stack.launcher import ServiceState, StackState
from hopscope.stack.ports import free_port
from tests.conftest import Services
from tests.integration.processor_support import (
    Topics,
    count,
    offsets,
    processor_settings,
    read_topic,
    refresh,
)
from tests.security.es_support import SecuredNode, secured_node

pytestmark = pytest.mark.integration

# Every test's index prefix is <FAMILY>-<random>, so the roles below cover them all.
FAMILY = "hopscope-sec"
PROCESSOR, READER, TEMPLATES_ONLY = "hs-processor", "hs-reader", "hs-templates-only"
ROLES = {
    "hopscope-processor": processor_role(FAMILY),
    "hopscope-reader": reader_role(FAMILY),
    # Templates yes, documents no: a processor holding it fails at its first bulk write.
    "hopscope-templates-only": {
        "cluster": ["manage_index_templates"],
        "indices": [{"names": [f"{FAMILY}-*"], "privileges": ["view_index_metadata"]}],
    },
}
USERS = {
    PROCESSOR: ["hopscope-processor"],
    READER: ["hopscope-reader"],
    TEMPLATES_ONLY: ["hopscope-templates-only"],
}
TRACES = 30
SECRET_VARIABLES = (ENV_ES_API_KEY, ENV_ES_USERNAME, ENV_ES_PASSWORD)
# The processor as a subprocess, with debug logging on for the libraries that see credentials
# (and HOPSCOPE_LOG_LEVEL=debug for everything else).
CLI_WITH_DEBUG_LOGS = (
    "import logging, sys\n"
    "handler = logging.StreamHandler(sys.stderr)\n"
    "for name in ('hopscope', 'elasticsearch', 'elastic_transport', 'elastic_transport.node',\n"
    "             'urllib3'):\n"
    "    logger = logging.getLogger(name)\n"
    "    logger.setLevel(logging.DEBUG)\n"
    "    logger.addHandler(handler)\n"
    "    logger.propagate = False\n"
    "from hopscope.cli import main\n"
    "main()\n"
)
DEBUG = {"HOPSCOPE_LOG_LEVEL": "debug"}


@pytest.fixture(scope="module")
def node() -> Iterator[SecuredNode]:
    with secured_node(ROLES, USERS) as running:
        yield running


@pytest.fixture(scope="module")
def admin(node: SecuredNode) -> Iterator[Elasticsearch]:
    client = node.admin_client()
    yield client
    client.close()


@dataclasses.dataclass(frozen=True)
class Case:
    """One test's topics, consumer group and index prefix, with its simulated traffic."""

    topics: Topics
    group: str
    prefix: str
    run: SimulationResult


@pytest.fixture
def case(services: Services, unique_name: Callable[[str], str]) -> Case:
    topics = Topics(unique_name("spans"), unique_name("logs"), unique_name("dlq"))
    config = SimulationConfig(start_ns=default_start_ns(), scenario=Scenario.BASELINE, seed=5,
                              traces=TRACES)  # fmt: skip
    kafka_run = simulate_to_kafka(config, bootstrap=services.kafka_bootstrap,
                                  spans_topic=topics.spans, logs_topic=topics.logs)  # fmt: skip
    return Case(topics, unique_name("group"), f"{FAMILY}-{uuid.uuid4().hex[:10]}",
                kafka_run.result)  # fmt: skip


def recognisable_api_key() -> EsSecurity:
    """An API key in the encoded form (base64 of ``id:secret``) with a secret to grep for."""
    raw = f"hopscope-test-key:apikey-secret-{uuid.uuid4().hex}"
    return EsSecurity(api_key=base64.b64encode(raw.encode()).decode())


def secrets_of(security: EsSecurity) -> list[str]:
    """The strings that must never be printed: password, encoded API key and its secret."""
    if security.api_key:
        decoded = base64.b64decode(security.api_key).decode()
        return [security.api_key, decoded, decoded.partition(":")[2]]
    assert security.password
    return [security.password]


def cli_env(services: Services, node: SecuredNode, security: EsSecurity) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOPSCOPE_ES_")}
    env.update({ENV_KAFKA_BOOTSTRAP: services.kafka_bootstrap, ENV_ES_URL: node.url,
                "NO_COLOR": "1", "COLUMNS": "200"})  # fmt: skip
    if security.ca_certs:
        env[ENV_ES_CA_CERTS] = str(security.ca_certs)
    if security.api_key:
        env[ENV_ES_API_KEY] = security.api_key
    if security.username and security.password:
        env[ENV_ES_USERNAME], env[ENV_ES_PASSWORD] = security.username, security.password
    return env


def use_env(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    """Put the ``HOPSCOPE_ES_*`` variables of ``env`` into this process's environment."""
    for variable in (ENV_ES_CA_CERTS, *SECRET_VARIABLES):
        monkeypatch.delenv(variable, raising=False)
    for variable, value in env.items():
        if variable.startswith("HOPSCOPE_ES_") and variable != ENV_ES_URL:
            monkeypatch.setenv(variable, value)


def process_args(case: Case, *extra: str) -> list[str]:
    return [
        sys.executable, "-c", CLI_WITH_DEBUG_LOGS, "process", "--group", case.group,
        "--index-prefix", case.prefix, "--spans-topic", case.topics.spans,
        "--logs-topic", case.topics.logs, "--dlq-topic", case.topics.dlq, "--trace-idle", "0.5",
        "--workers", "1", *extra,
    ]  # fmt: skip


def frame_height(frame: pl.LazyFrame) -> int:
    return int(frame.select(pl.len()).collect().item())


def nothing_committed(services: Services, case: Case) -> bool:
    committed, _ends = offsets(services.kafka_bootstrap, case.group, case.topics.inputs)
    return all(c is None for c in committed.values())


def test_least_privilege_processor_and_reader_over_tls_with_basic_auth(
    node: SecuredNode, admin: Elasticsearch, services: Services, case: Case,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    writer = node.users[PROCESSOR]
    settings = processor_settings(services.kafka_bootstrap, node.url, case.topics, case.prefix,
                                  case.group, es_security=writer)  # fmt: skip
    with Processor(settings) as processor:
        counts = processor.run(drain=True)

    run = case.run
    assert counts.dead_letters == 0
    assert counts.indexed["spans"] == run.spans
    assert counts.indexed["traces"] == run.traces
    refresh(admin, case.prefix)
    assert count(admin, case.prefix, "spans") == run.spans
    assert count(admin, case.prefix, "traces") == run.traces
    assert count(admin, case.prefix, "logs") == counts.indexed["logs"] == run.log_records
    committed, ends = offsets(services.kafka_bootstrap, case.group, case.topics.inputs)
    assert committed == ends

    # The reader role is enough for the loader, given a URL and the HOPSCOPE_ES_* variables
    # (the path `hopscope analyze` takes): field caps, point in time, raw sliced searches.
    reader = node.users[READER]
    use_env(monkeypatch, cli_env(services, node, reader))
    data = load_elasticsearch(node.url, index_prefix=case.prefix, slices=2, progress=False)
    assert frame_height(data.spans) == run.spans
    assert frame_height(data.traces) == run.traces
    assert count_elasticsearch(node.url, index_prefix=case.prefix, kinds=["spans"]) == {
        "spans": run.spans
    }

    # Least privilege, both ways: the reader cannot write, the processor cannot read.
    with es_client(node.url, reader) as client, pytest.raises(AuthorizationException):
        client.index(index=f"{case.prefix}-spans-x", document={"a": 1})
    with es_client(node.url, writer) as client, pytest.raises(AuthorizationException):
        client.search(index=f"{case.prefix}-*")


def test_the_processor_deletes_stale_derived_records_and_cannot_delete_spans(
    node: SecuredNode, admin: Elasticsearch
) -> None:
    """A trace derived again deletes what its new derivation no longer gives (a late span,
    docs/DESIGN.md §4): the role allows it on the derived records' indices, never on spans.
    The prefix is the role's own (``FAMILY``), whose ``delete`` patterns name the kinds."""
    from hopscope.processors.documents import Document, deletion
    from hopscope.processors.sink import ElasticsearchSink

    derived, spans = f"{FAMILY}-coordination-2026.11.26", f"{FAMILY}-spans-2026.11.26"
    body = {"@timestamp": "2026-11-26T10:00:00.000Z", "trace.id": "t"}
    try:
        with es_client(node.url, node.users[PROCESSOR]) as client:
            sink = ElasticsearchSink(client, FAMILY)
            sink.install_templates()
            written = sink.write([Document("coordination", derived, "2pc-t-None-tx-1", body),
                                  Document("spans", spans, "t-s", body)])  # fmt: skip
            assert written.acknowledged == 2
            assert sink.write([deletion("coordination", derived, "2pc-t-None-tx-1")]).acknowledged
            with pytest.raises(SinkAccessError):
                sink.write([deletion("spans", spans, "t-s")])
        admin.indices.refresh(index=f"{derived},{spans}")
        assert admin.count(index=derived)["count"] == 0
        assert admin.count(index=spans)["count"] == 1
    finally:
        admin.indices.delete(index=f"{derived},{spans}", ignore_unavailable=True)


def test_an_api_key_reaches_the_node_and_its_refusal_is_clear(
    node: SecuredNode, services: Services, case: Case, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    key = dataclasses.replace(recognisable_api_key(), ca_certs=node.ca)
    settings = processor_settings(services.kafka_bootstrap, node.url, case.topics, case.prefix,
                                  case.group, es_security=key)  # fmt: skip
    with pytest.raises(SinkAccessError) as raised, Processor(settings):
        pass
    # The node names the key by its id: it arrived as an API key (Authorization: ApiKey).
    message = str(raised.value)
    assert "rejected the credentials (401" in message
    assert "for id hopscope-test-key" in message
    assert not any(secret in message for secret in secrets_of(key))

    use_env(monkeypatch, cli_env(services, node, key))
    with pytest.raises(LoaderError) as loading:
        load_elasticsearch(node.url, index_prefix=case.prefix, progress=False)
    assert "for id hopscope-test-key" in str(loading.value)
    assert not any(secret in str(loading.value) for secret in secrets_of(key))


def test_probes_need_the_credentials_and_the_ca(node: SecuredNode) -> None:
    admin = node.admin
    assert stack_es.version(node.url) is None
    assert stack_es.version(node.url, authorization=admin.authorization()) is None  # no CA
    assert stack_es.health(node.url, context=admin.ssl_context()) is None  # 401
    assert stack_es.version(
        node.url, authorization=admin.authorization(), context=admin.ssl_context()
    ) == pinned_versions().elasticsearch  # fmt: skip


def test_without_the_ca_file_verification_fails_clearly(
    node: SecuredNode, services: Services, case: Case
) -> None:
    untrusting = dataclasses.replace(node.users[PROCESSOR], ca_certs=None)
    settings = processor_settings(services.kafka_bootstrap, node.url, case.topics, case.prefix,
                                  case.group, es_security=untrusting)  # fmt: skip
    with pytest.raises(SinkAccessError) as raised, Processor(settings):
        pass
    message = str(raised.value)
    assert "certificate verify failed" in message.lower()
    assert ENV_ES_CA_CERTS in message
    assert not any(secret in message for secret in secrets_of(untrusting))

    with es_client(node.url, untrusting) as client, pytest.raises(LoaderError) as loading:
        load_elasticsearch(client, index_prefix=case.prefix, progress=False)
    assert "certificate verify failed" in str(loading.value).lower()
    assert ENV_ES_CA_CERTS in str(loading.value)


def test_wrong_password_fails_clearly_without_the_secret(
    node: SecuredNode, services: Services, case: Case
) -> None:
    right = node.users[PROCESSOR]
    wrong = dataclasses.replace(right, password=f"wrong-{uuid.uuid4().hex}")
    proc = subprocess.run(process_args(case, "--drain"), env=cli_env(services, node, wrong),
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1, output
    assert re.search(r"^SinkAccessError: .*rejected the credentials \(401", proc.stderr, re.M)
    assert "Traceback" not in output
    assert not any(secret in output for secret in secrets_of(wrong) + secrets_of(right))

    with es_client(node.url, wrong) as client, pytest.raises(LoaderError) as loading:
        load_elasticsearch(client, index_prefix=case.prefix, progress=False)
    assert "401" in str(loading.value)
    assert wrong.password not in str(loading.value)


def test_missing_write_privilege_stops_the_processor_and_loses_nothing(
    node: SecuredNode, admin: Elasticsearch, services: Services, case: Case
) -> None:
    lacking = node.users[TEMPLATES_ONLY]
    settings = processor_settings(services.kafka_bootstrap, node.url, case.topics, case.prefix,
                                  case.group, es_security=lacking)  # fmt: skip
    with pytest.raises(SinkAccessError) as raised, Processor(settings) as processor:
        processor.run(drain=True)
    message = str(raised.value)
    assert "denied" in message and TEMPLATES_ONLY in message and "docs/SECURITY.md" in message
    assert not any(secret in message for secret in secrets_of(lacking))
    # Nothing dead-lettered, nothing committed: the documents are still to be read.
    assert read_topic(services.kafka_bootstrap, case.topics.dlq, idle_ms=1500) == []
    assert nothing_committed(services, case)

    # The same group, now with the processor role, indexes everything.
    settings = dataclasses.replace(settings, es_security=node.users[PROCESSOR])
    with Processor(settings) as processor:
        counts = processor.run(drain=True)
    assert counts.indexed["spans"] == case.run.spans
    refresh(admin, case.prefix)
    assert count(admin, case.prefix, "spans") == case.run.spans
    assert count(admin, case.prefix, "traces") == case.run.traces


def _indexed(metrics: str, kind: str) -> float:
    found = re.search(rf'^hopscope_records_indexed_total{{kind="{kind}"}} (\S+)$', metrics, re.M)
    return float(found.group(1)) if found else 0.0


def test_secrets_never_reach_output_logs_or_metrics(
    node: SecuredNode, services: Services, case: Case, tmp_path: Path
) -> None:
    security = node.users[PROCESSOR]
    port = free_port()
    # Files, not pipes: debug logs would fill a pipe nobody reads until the end, and block.
    with (tmp_path / "stdout").open("w") as out, (tmp_path / "stderr").open("w") as err:
        proc = subprocess.Popen(
            process_args(case, "--metrics-port", str(port)),
            env={**cli_env(services, node, security), **DEBUG}, stdout=out, stderr=err,
        )  # fmt: skip
    metrics = ""
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                    metrics = r.read().decode()
            except OSError:
                metrics = ""
            if _indexed(metrics, "traces") >= case.run.traces:
                break
            time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    stdout, stderr = (tmp_path / "stdout").read_text(), (tmp_path / "stderr").read_text()
    assert proc.returncode == 0, stderr[-3000:]
    assert _indexed(metrics, "spans") == case.run.spans, stderr[-3000:]
    # The request logs were on (there was a log to read): bulk writes over TLS, with the
    # client's header dump (which hides the Authorization value) included.
    # (the sink asks for a filtered answer: the path carries a filter_path query)
    assert re.search(rf'{re.escape(node.url)} "PUT /_bulk(\?\S*)? HTTP/1\.1" 200', stderr)
    assert "> Authorization: " in stderr
    for secret in secrets_of(security):
        assert secret not in stdout
        assert secret not in stderr
        assert secret not in metrics


def test_a_refused_api_key_never_reaches_output_or_logs(
    node: SecuredNode, services: Services, case: Case
) -> None:
    key = dataclasses.replace(recognisable_api_key(), ca_certs=node.ca)
    proc = subprocess.run(
        process_args(case, "--drain", "--metrics-port", str(free_port())),
        env={**cli_env(services, node, key), **DEBUG},
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1, output
    assert "SinkAccessError" in proc.stderr and "Traceback" not in output
    assert "for id hopscope-test-key" in proc.stderr
    assert not any(secret in output for secret in secrets_of(key))


def test_stack_status_never_prints_secret_variables(tmp_path: Path) -> None:
    # The stack records endpoints, pids and paths, never a credential.
    recorded = {f.name for cls in (StackState, ServiceState) for f in dataclasses.fields(cls)}
    assert not {n for n in recorded if re.search("password|secret|token|key|auth", n)}

    planted = {ENV_ES_API_KEY: f"apikey-{uuid.uuid4().hex}",
               ENV_ES_USERNAME: f"user-{uuid.uuid4().hex}",
               ENV_ES_PASSWORD: f"password-{uuid.uuid4().hex}",
               ENV_ES_VERIFY_CERTS: "true"}  # fmt: skip
    # The dev stack when one is named (HOPSCOPE_STATE_DIR), else the default, else none at all.
    state_dir = Path(os.environ.get(ENV_STATE_DIR) or default_state_dir())
    env = {**os.environ, **planted, "NO_COLOR": "1", "COLUMNS": "200"}
    for args in (["stack", "status"], ["stack", "status", "--json"], ["stack", "env"]):
        for where in (state_dir, tmp_path):
            proc = subprocess.run(
                [sys.executable, "-m", "hopscope.cli", *args, "--state-dir", str(where)],
                env=env, capture_output=True, text=True, timeout=60, check=False,
            )  # fmt: skip
            output = proc.stdout + proc.stderr
            assert proc.returncode in (0, 1, 3), output
            assert output.strip()
            for name in SECRET_VARIABLES:
                assert planted[name] not in output
