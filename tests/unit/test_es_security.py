"""Elasticsearch credentials and TLS settings: parsing, validation, the client they make, the
messages of refusals, and the roles quoted in docs/SECURITY.md.

No Elasticsearch here: the clients are built, never used (``tests/security/`` runs them
against a secured node). The sink's reaction to refusals is checked with an in-memory client.
"""

from __future__ import annotations

import base64
import json
import re
import ssl
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from elastic_transport import ApiResponseMeta, HttpHeaders, NodeConfig, TlsError
from elasticsearch import AuthenticationException, AuthorizationException, NotFoundError

from hopscope.analysis.loaders.elasticsearch import _RawSearch
from hopscope.core.errors import SettingsError
from hopscope.core.es_security import (
    DERIVED_KINDS,
    ENV_ES_API_KEY,
    ENV_ES_CA_CERTS,
    ENV_ES_PASSWORD,
    ENV_ES_USERNAME,
    ENV_ES_VERIFY_CERTS,
    EsSecurity,
    EsSecurityError,
    access_problem,
    es_client,
    processor_role,
    reader_role,
)
from hopscope.processors.documents import Document
from hopscope.processors.errors import SinkAccessError
from hopscope.processors.settings import ProcessorSettings
from hopscope.processors.sink import ElasticsearchSink
from hopscope.stack.certs import make_server_certs
from hopscope.stack.elasticsearch import pbkdf2_hash

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "pw-Recognisable-7f3a"
API_KEY = base64.b64encode(b"key-id-1:key-Secret-9c2e").decode()


@pytest.fixture
def ca_file(tmp_path: Path) -> Path:
    return make_server_certs(tmp_path / "certs").ca


# -- settings -------------------------------------------------------------------------------


def test_from_env_reads_every_variable(ca_file: Path) -> None:
    env = {ENV_ES_USERNAME: "hopscope-processor", ENV_ES_PASSWORD: PASSWORD,
           ENV_ES_CA_CERTS: str(ca_file), ENV_ES_VERIFY_CERTS: "yes"}  # fmt: skip
    assert EsSecurity.from_env(env) == EsSecurity(
        username="hopscope-processor", password=PASSWORD, ca_certs=ca_file, verify_certs=True
    )
    assert EsSecurity.from_env({ENV_ES_API_KEY: API_KEY}).auth_method == "api_key"
    assert EsSecurity.from_env({ENV_ES_VERIFY_CERTS: "false"}).verify_certs is False


def test_empty_variables_count_as_unset() -> None:
    empty = dict.fromkeys((ENV_ES_API_KEY, ENV_ES_USERNAME, ENV_ES_PASSWORD, ENV_ES_CA_CERTS), "")
    assert EsSecurity.from_env(empty) == EsSecurity()
    assert EsSecurity().auth_method == "none"


def test_repr_never_shows_a_secret() -> None:
    for settings in (EsSecurity(username="u", password=PASSWORD), EsSecurity(api_key=API_KEY)):
        processor = ProcessorSettings(kafka_bootstrap="k:9092", es_url="https://es:9200",
                                      es_security=settings)  # fmt: skip
        for text in (repr(settings), str(settings), repr(processor)):
            assert PASSWORD not in text and API_KEY not in text
            assert "key-Secret" not in text


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({ENV_ES_API_KEY: API_KEY, ENV_ES_USERNAME: "u", ENV_ES_PASSWORD: PASSWORD},
         [ENV_ES_API_KEY, ENV_ES_USERNAME]),
        ({ENV_ES_USERNAME: "u"}, [ENV_ES_PASSWORD]),
        ({ENV_ES_PASSWORD: PASSWORD}, [ENV_ES_USERNAME]),
        ({ENV_ES_API_KEY: "   "}, [ENV_ES_API_KEY]),
        ({ENV_ES_VERIFY_CERTS: "maybe"}, [ENV_ES_VERIFY_CERTS, "maybe"]),
    ],
)  # fmt: skip
def test_invalid_settings_name_the_variable_never_the_secret(
    env: dict[str, str], names: list[str]
) -> None:
    with pytest.raises(EsSecurityError) as raised:
        EsSecurity.from_env(env)
    message = str(raised.value)
    assert all(name in message for name in names)
    assert PASSWORD not in message and API_KEY not in message
    assert isinstance(raised.value, SettingsError)


def test_a_missing_ca_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "ca.pem"
    with pytest.raises(EsSecurityError, match=re.escape(str(missing))):
        EsSecurity.from_env({ENV_ES_CA_CERTS: str(missing)})


# -- client options -------------------------------------------------------------------------


def test_client_options(ca_file: Path) -> None:
    assert EsSecurity(api_key=API_KEY).client_options() == {
        "verify_certs": True, "api_key": API_KEY
    }  # fmt: skip
    assert EsSecurity(api_key="key-id-1:key-Secret-9c2e").client_options()["api_key"] == (
        "key-id-1", "key-Secret-9c2e"
    )  # fmt: skip
    basic = EsSecurity(username="u", password=PASSWORD, ca_certs=ca_file).client_options()
    assert basic == {"verify_certs": True, "basic_auth": ("u", PASSWORD),
                     "ca_certs": str(ca_file)}  # fmt: skip
    unverified = EsSecurity(verify_certs=False).client_options()
    assert unverified == {"verify_certs": False, "ssl_show_warn": False}


def test_authorization_header_values() -> None:
    # Both forms of the key give the same header: the encoded one is base64 of id:secret.
    assert EsSecurity(api_key=API_KEY).authorization() == f"ApiKey {API_KEY}"
    assert EsSecurity(api_key="key-id-1:key-Secret-9c2e").authorization() == f"ApiKey {API_KEY}"
    basic = base64.b64encode(f"u:{PASSWORD}".encode()).decode()
    assert EsSecurity(username="u", password=PASSWORD).authorization() == f"Basic {basic}"
    assert EsSecurity().authorization() is None


def test_ssl_contexts_for_probes(ca_file: Path) -> None:
    assert EsSecurity().ssl_context() is None
    trusting = EsSecurity(ca_certs=ca_file).ssl_context()
    assert trusting is not None and trusting.verify_mode == ssl.CERT_REQUIRED
    assert len(trusting.get_ca_certs()) >= 1
    unverified = EsSecurity(verify_certs=False).ssl_context()
    assert unverified is not None and unverified.verify_mode == ssl.CERT_NONE


def test_es_client_sends_credentials_and_trusts_the_ca(ca_file: Path) -> None:
    settings = EsSecurity(api_key=API_KEY, ca_certs=ca_file)
    with es_client("https://127.0.0.1:9200", settings, request_timeout=7) as client:
        assert client._headers["authorization"] == f"ApiKey {API_KEY}"
        node = client.transport.node_pool.get()
        assert node.config.ca_certs == str(ca_file)
        assert node.config.verify_certs is True
        assert client._request_timeout == 7  # the caller's options pass through
        # The loader's raw searches go through the same node pool with the same headers.
        assert _RawSearch(client)._headers["authorization"] == f"ApiKey {API_KEY}"


def test_es_client_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_ES_API_KEY, raising=False)
    monkeypatch.delenv(ENV_ES_CA_CERTS, raising=False)
    monkeypatch.setenv(ENV_ES_USERNAME, "reader")
    monkeypatch.setenv(ENV_ES_PASSWORD, PASSWORD)
    with es_client("http://127.0.0.1:9200") as client:
        expected = base64.b64encode(f"reader:{PASSWORD}".encode()).decode()
        assert client._headers["authorization"] == f"Basic {expected}"


def test_es_client_without_verification_warns_nothing(recwarn: pytest.WarningsRecorder) -> None:
    with es_client("https://127.0.0.1:9200", EsSecurity(verify_certs=False)):
        pass
    assert not recwarn.list


def test_credentials_in_the_url_are_refused_without_echoing_them() -> None:
    with pytest.raises(EsSecurityError) as raised:
        es_client(f"https://admin:{PASSWORD}@es.example:9200", EsSecurity())
    assert PASSWORD not in str(raised.value)
    assert "https://***@es.example:9200" in str(raised.value)


# -- refusals -------------------------------------------------------------------------------


def _api_error(cls: type[Any], status: int, reason: str, extra: str | None = None) -> Any:
    meta = ApiResponseMeta(status=status, http_version="1.1", headers=HttpHeaders(),
                           duration=0.0, node=NodeConfig("https", "127.0.0.1", 9200))  # fmt: skip
    error: dict[str, Any] = {"type": "security_exception", "reason": reason}
    if extra:
        error["additional_unsuccessful_credentials"] = extra
    return cls(message="security_exception", meta=meta, body={"error": error, "status": status})


def test_access_problems_say_what_to_fix() -> None:
    url = "https://es.example:9200"
    tls = access_problem(TlsError("CERTIFICATE_VERIFY_FAILED: unable to get issuer"), url)
    assert tls is not None and ENV_ES_CA_CERTS in tls and url in tls
    refused = access_problem(
        _api_error(AuthenticationException, 401, "unable to authenticate",
                   "API key: apikey authentication for id key-id-1 encountered a failure"),
        url,
    )  # fmt: skip
    assert refused is not None
    assert "rejected the credentials (401" in refused and "for id key-id-1" in refused
    assert ENV_ES_API_KEY in refused and ENV_ES_PASSWORD in refused
    denied = access_problem(
        _api_error(AuthorizationException, 403, "action [indices:data/write/bulk] is unauthorized")
    )
    assert denied is not None and "lacks a privilege" in denied and "docs/SECURITY.md" in denied
    assert access_problem(_api_error(NotFoundError, 404, "no such index")) is None
    assert access_problem(ValueError("unrelated")) is None


class _BulkClient:
    """Answers every bulk request with one status per document (what Elasticsearch does when
    a role lacks the index privileges: 403 per item, not for the request)."""

    def __init__(self, status: int) -> None:
        self.status = status

    def options(self, **_options: Any) -> _BulkClient:
        return self

    def bulk(self, operations: Iterable[Any], **_params: Any) -> dict[str, Any]:
        error = {"type": "security_exception", "reason": "action [indices:data/write/bulk[s]] "
                 "is unauthorized for user [hs-templates-only]"}  # fmt: skip
        item = {"status": self.status, "error": error}
        # Two bulk lines per document: the action, then the source.
        return {"errors": True, "items": [{"index": item} for _ in list(operations)[::2]]}


def test_documents_denied_by_a_role_stop_the_sink_instead_of_being_dead_lettered() -> None:
    docs = [Document("spans", "hopscope-spans-2026.11.26", str(i), {"a": i}) for i in range(3)]
    sink = ElasticsearchSink(_BulkClient(403), "hopscope", url="https://es.example:9200")
    with pytest.raises(SinkAccessError) as raised:
        sink.write(docs)
    message = str(raised.value)
    assert "denied 3 of 3 documents" in message and "hs-templates-only" in message
    assert "hopscope-*" in message
    # A mapping rejection is the document's own fault: dead-lettered, processing goes on.
    assert len(ElasticsearchSink(_BulkClient(400)).write(docs).rejected) == 3


# -- stack helpers, roles, isolation ---------------------------------------------------------


def test_file_realm_hash_matches_elasticsearch_users() -> None:
    # Written by `elasticsearch-users useradd` 8.19.21 with password_hashing.algorithm pbkdf2.
    expected = ("{PBKDF2}10000$cls9HTXx77W6lcjIVnj6LNli1EOmdr+UumNM33tD6iU="
                "$8vDHnAyRCS/nghEnrDsqI1oSIljB6mZbew8tmJxlthw=")  # fmt: skip
    salt = base64.b64decode("cls9HTXx77W6lcjIVnj6LNli1EOmdr+UumNM33tD6iU=")
    assert pbkdf2_hash("Known-pass1", salt) == expected
    assert pbkdf2_hash("Known-pass1") != expected  # a fresh salt each time


def _json_blocks(markdown: str, heading: str) -> list[Any]:
    section = markdown.split(f"\n{heading}\n", 1)[1].split("\n## ", 1)[0]
    return [json.loads(block) for block in re.findall(r"```json\n(.*?)```", section, re.S)]


def test_security_doc_quotes_the_roles_the_code_defines() -> None:
    blocks = _json_blocks((REPO / "docs" / "SECURITY.md").read_text(), "## Elasticsearch")
    assert blocks[:2] == [processor_role(), reader_role()]
    assert processor_role("prod")["indices"][0]["names"] == ["prod-*"]


def test_the_processor_may_delete_derived_records_but_never_spans_or_logs() -> None:
    from hopscope.processors.schema import INDEX_KINDS

    assert set(DERIVED_KINDS) == set(INDEX_KINDS) - {"spans", "logs"}
    (deletable,) = [
        g["names"] for g in processor_role("prod")["indices"] if "delete" in g["privileges"]
    ]
    assert deletable == [f"prod-{kind}-*" for kind in DERIVED_KINDS]


def test_the_module_does_not_import_the_elasticsearch_client() -> None:
    code = (
        "import sys, hopscope.core.es_security, hopscope.ingest\n"
        "sys.exit(any(m in sys.modules for m in ('elasticsearch', 'elastic_transport')))\n"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_docstring_examples() -> None:
    import doctest

    import hopscope.core.es_security

    assert doctest.testmod(hopscope.core.es_security).failed == 0


def test_a_closed_port_is_unreachable_in_a_few_words() -> None:
    """What the processor logs once per back-off step, and the start-up error's cause."""
    import socket

    from hopscope.core.es_security import EsUnreachableError, wait_reachable
    from hopscope.processors.errors import SinkUnreachableError
    from hopscope.processors.sink import ElasticsearchSink

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    sink = ElasticsearchSink.connect(url, EsSecurity(), "hopscope-test")
    try:
        with pytest.raises(SinkUnreachableError) as caught:
            sink.setup()
        assert str(caught.value) == f"Elasticsearch at {url} unreachable (connection refused)"
        with pytest.raises(EsUnreachableError, match=r"connection refused.*HOPSCOPE_ES_URL"):
            wait_reachable(sink.client, url, timeout_s=0.3)
    finally:
        sink.close()


def test_es_client_takes_every_node_of_a_cluster() -> None:
    urls = "http://127.0.0.1:9200, http://127.0.0.1:9201,http://127.0.0.1:9202"
    with es_client(urls, EsSecurity()) as client:
        ports = sorted(node.config.port for node in client.transport.node_pool.all())
        assert ports == [9200, 9201, 9202]
    with pytest.raises(EsSecurityError, match="carries credentials"):
        es_client(f"http://127.0.0.1:9200,http://user:{PASSWORD}@127.0.0.1:9201")
