"""``hopscope kibana import`` against recorded Kibana 8.x answers, served on loopback.

The server is a real HTTP server (``http.server`` in a thread): the client's request goes over
a socket and is checked as Kibana would receive it; the answers are Kibana's own bodies.
"""

from __future__ import annotations

import base64
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from typer.testing import CliRunner

from hopscope.cli import app
from hopscope.dashboards.kibana import (
    KibanaAuthError,
    KibanaImportError,
    KibanaResponseError,
    KibanaUnreachableError,
    import_saved_objects,
    ndjson,
)

SUCCESS = {
    "successCount": 3, "success": True, "warnings": [],
    "successResults": [
        {"type": "index-pattern", "id": "hopscope-spans", "managed": False, "overwrite": True,
         "meta": {"title": "hopscope-spans-*", "icon": "indexPatternApp"}},
        {"type": "search", "id": "hopscope-search-failovers", "managed": False,
         "meta": {"title": "Failovers", "icon": "discoverApp"}},
        {"type": "dashboard", "id": "hopscope-dashboard-failovers", "managed": False,
         "meta": {"title": "hopscope: Failovers", "icon": "dashboardApp"}},
    ],
}  # fmt: skip
UNAUTHORIZED = {
    "statusCode": 401, "error": "Unauthorized",
    "message": "[security_exception\n\tRoot causes:\n\t\tsecurity_exception: unable to "
    "authenticate with provided credentials and anonymous access is not allowed for this "
    "request]: unable to authenticate with provided credentials and anonymous access is not "
    "allowed for this request",
}  # fmt: skip
CONFLICT = {
    "successCount": 1, "success": False, "warnings": [],
    "successResults": [{"type": "index-pattern", "id": "hopscope-spans", "managed": False,
                        "meta": {"title": "hopscope-spans-*", "icon": "indexPatternApp"}}],
    "errors": [{"id": "hopscope-dashboard-failovers", "type": "dashboard",
                "meta": {"title": "hopscope: Failovers", "icon": "dashboardApp"},
                "error": {"type": "conflict"}}],
}  # fmt: skip
BAD_REQUEST = {
    "statusCode": 400, "error": "Bad Request",
    "message": 'Document "hopscope-search-failovers" belongs to a more recent version of '
    "Kibana [10.5.0] when the last known version is [10.2.0].",
}  # fmt: skip


@dataclass
class Recorded:
    """What the fake Kibana answers, and the requests it received."""

    status: int = 200
    body: bytes = b""
    requests: list[dict[str, Any]] = field(default_factory=list)


@pytest.fixture
def kibana() -> Iterator[tuple[str, Recorded]]:
    recorded = Recorded()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers["Content-Length"])
            headers = {k.lower(): v for k, v in self.headers.items()}
            body = self.rfile.read(length)
            recorded.requests.append({"path": self.path, "headers": headers, "body": body})
            self.send_response(recorded.status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(recorded.body)))
            self.end_headers()
            self.wfile.write(recorded.body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep pytest's output to the test's own

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", recorded
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _answer(recorded: Recorded, status: int, body: dict[str, Any] | str) -> None:
    recorded.status = status
    recorded.body = (body if isinstance(body, str) else json.dumps(body)).encode()


def test_success_reports_created_and_overwritten(kibana: tuple[str, Recorded]) -> None:
    url, recorded = kibana
    _answer(recorded, 200, SUCCESS)
    text = ndjson()
    result = import_saved_objects(url + "/", text, api_key="c2VjcmV0", space="payments")
    assert [o.id for o in result.overwritten] == ["hopscope-spans"]
    assert [o.title for o in result.created] == ["Failovers", "hopscope: Failovers"]

    (request,) = recorded.requests
    assert request["path"] == "/s/payments/api/saved_objects/_import?overwrite=true"
    headers = request["headers"]
    assert headers["kbn-xsrf"] == "true" and headers["authorization"] == "ApiKey c2VjcmV0"
    boundary = headers["content-type"].split("boundary=")[1]
    body = request["body"].decode()
    assert 'Content-Disposition: form-data; name="file"; filename="hopscope.ndjson"' in body
    assert text in body and body.endswith(f"--{boundary}--\r\n")


def test_basic_auth_and_default_space(kibana: tuple[str, Recorded]) -> None:
    url, recorded = kibana
    _answer(recorded, 200, SUCCESS)
    import_saved_objects(url, ndjson(), user="elastic", password="pw")
    (request,) = recorded.requests
    assert request["path"] == "/api/saved_objects/_import?overwrite=true"
    expected = base64.b64encode(b"elastic:pw").decode()
    assert request["headers"]["authorization"] == f"Basic {expected}"


def test_401_is_an_auth_error_with_kibanas_reason(kibana: tuple[str, Recorded]) -> None:
    url, recorded = kibana
    _answer(recorded, 401, UNAUTHORIZED)
    with pytest.raises(KibanaAuthError) as caught:
        import_saved_objects(url, ndjson(), api_key="wrong")
    message = str(caught.value)
    assert "refused the import (401)" in message
    assert "unable to authenticate with provided credentials" in message
    assert "--api-key or --user" in message


def test_version_conflict_in_the_result_names_the_object(kibana: tuple[str, Recorded]) -> None:
    url, recorded = kibana
    _answer(recorded, 200, CONFLICT)
    with pytest.raises(KibanaImportError) as caught:
        import_saved_objects(url, ndjson())
    message = str(caught.value)
    assert "imported 1 objects and rejected 1" in message
    assert "dashboard 'hopscope-dashboard-failovers' (hopscope: Failovers)" in message
    assert "version conflict" in message
    assert caught.value.errors[0]["error"]["type"] == "conflict"


def test_other_status_and_garbage_bodies(kibana: tuple[str, Recorded]) -> None:
    url, recorded = kibana
    _answer(recorded, 400, BAD_REQUEST)
    with pytest.raises(KibanaResponseError, match=r"answered 400 .*more recent version"):
        import_saved_objects(url, ndjson())
    _answer(recorded, 200, "<html>proxy login</html>")
    with pytest.raises(KibanaResponseError, match="not an import result"):
        import_saved_objects(url, ndjson())


def test_unreachable_kibana_is_a_clear_error() -> None:
    with socket.socket() as sock:  # a port nothing listens on: bound, never listening
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        with pytest.raises(KibanaUnreachableError) as caught:
            import_saved_objects(f"http://127.0.0.1:{port}", ndjson(), timeout_s=5)
    message = str(caught.value)
    assert f"cannot reach Kibana at http://127.0.0.1:{port}" in message
    assert "refused" in message.lower() and "is it running" in message


def test_import_command_prints_what_was_created(kibana: tuple[str, Recorded]) -> None:
    url, recorded = kibana
    _answer(recorded, 200, SUCCESS)
    result = CliRunner().invoke(app, ["kibana", "import", "--url", url, "--space", "ops"])
    assert result.exit_code == 0, result.output
    assert "overwritten index-pattern" in result.stdout
    assert "created     dashboard     hopscope-dashboard-failovers" in result.stdout
    assert "2 created, 1 overwritten" in result.stdout
    assert recorded.requests[0]["path"].startswith("/s/ops/")


def test_import_command_errors_exit_1(kibana: tuple[str, Recorded]) -> None:
    url, recorded = kibana
    _answer(recorded, 401, UNAUTHORIZED)
    runner = CliRunner()
    result = runner.invoke(app, ["kibana", "import", "--url", url, "--api-key", "x"])
    assert result.exit_code == 1 and "KibanaAuthError" in result.output
    _answer(recorded, 200, CONFLICT)
    result = runner.invoke(app, ["kibana", "import", "--url", url])
    assert result.exit_code == 1 and "KibanaImportError" in result.output
    assert "version conflict" in result.output
    bad = runner.invoke(app, ["kibana", "import", "--url", "kibana:5601"])
    assert bad.exit_code == 2 and "http://" in bad.output
