"""Other SDKs' telemetry, straight to Kafka: the traffic of the card-number (PAN) audit.

With ``SimulationConfig(foreign_pans=True)`` each issuer call of the bank adapter lands on
``issuer-gateway``, a Java service instrumented with the stock OpenTelemetry Java agent, which
asks ``token-vault`` (Go, OpenTelemetry Go SDK) for a token, writes an audit entry and forwards
the authorization to the issuer's link. Both export through an OpenTelemetry Collector whose
Kafka exporter writes ``otlp_proto`` with ``partition_traces_by_id``: raw OTLP protobuf, one
message per trace and signal, keyed by the trace id in hex. None of it passes hopscope's
redaction.

Their developers are careless with card numbers wherever telemetry has room for one, which is
what the processors' masking must catch:

- span names, a status message, span attributes (strings, a string array, an int64, an int64
  array, a float64 as a Go JSON decoder makes of a number, raw bytes), resource attributes (a
  command line, an argument array), an ``exception`` event (``exception.message``,
  ``exception.stacktrace``), an event name, link attributes;
- ``url.full``, ``http.url``, ``url.query`` and ``url.path`` values, form (``+``) and percent
  (``%20``) encoded as well as plain; ``db.query.text``; ``pan=...;exp=...`` pairs;
- log bodies of every AnyValue shape (string, map, array, int, double, bytes; among the strings
  a JSON text with ``\\u`` escapes and a percent-encoded query) and log attributes.

Every card number is Luhn-valid and drawn for its place; lengths cycle through 13, 16 and 19
digits and formats through plain, spaces and dashes (and the URL encodings where a URL holds
it), so a few issuer calls cover every combination. The ground truth lists every seed: where it
was put, its shape, the exact text, its digits and the span or log record carrying it (a log
record is found by its ``log.record.uid`` attribute).

The spans continue the simulated trace (the gateway's SERVER span is the child of the bank
adapter's CLIENT span) and stay inside that call's time window, so the processors assemble and
derive them like any other span. Their randomness has its own generator: the network's own
telemetry is the same with and without them.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, SeverityNumber
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from hopscope.ingest import conventions as c
from hopscope.ingest.simulator._pans import (
    PAN_LENGTHS,
    PAN_STYLES,
    URL_PAN_STYLES,
    format_pan,
    generate_pan,
)

SPANS: Final = "spans"
LOGS: Final = "logs"

JAVA_SERVICE: Final = "issuer-gateway"
GO_SERVICE: Final = "token-vault"
JAVA_NODES: Final = 2
ISSUER_GATEWAY_HOST: Final = "issuer-gw.cardnet.example"  # the bank adapter's issuer address
ISSUER_LINK_HOST: Final = "issuer-link.cardnet.example"
VAULT_HOST: Final = "token-vault.payments.svc"
VAULT_DB_HOST: Final = "vault-db-1"

# What each SDK calls itself in telemetry.sdk.* and its instrumentation scopes.
_JAVA_SDK: Final = {
    "telemetry.sdk.language": "java",
    "telemetry.sdk.name": "opentelemetry",
    "telemetry.sdk.version": "1.49.0",
    "telemetry.distro.name": "opentelemetry-java-instrumentation",
    "telemetry.distro.version": "2.15.0",
    "process.runtime.name": "OpenJDK Runtime Environment",
    "process.runtime.version": "21.0.6+7-LTS",
}
_GO_SDK: Final = {
    "telemetry.sdk.language": "go",
    "telemetry.sdk.name": "opentelemetry",
    "telemetry.sdk.version": "1.35.0",
    "process.runtime.name": "go",
    "process.runtime.version": "go1.24.2",
}
_JAVA_SERVER_SCOPE: Final = ("io.opentelemetry.spring-webmvc-6.0", "2.15.0-alpha")
_JAVA_CLIENT_SCOPE: Final = ("io.opentelemetry.java-http-client", "2.15.0-alpha")
_JAVA_APP_SCOPE: Final = ("com.example.issuer.AuthorizationController", "")
_GO_SERVER_SCOPE: Final = (
    "go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp",
    "0.60.0",
)
_GO_DB_SCOPE: Final = ("github.com/XSAM/otelsql", "0.38.0")
_GO_LOG_SCOPE: Final = ("token-vault/internal/vault", "")

_SERVER, _CLIENT, _INTERNAL = Span.SPAN_KIND_SERVER, Span.SPAN_KIND_CLIENT, Span.SPAN_KIND_INTERNAL
# Log severities (OTLP SeverityNumber) with the text each SDK writes beside them.
_Severity = tuple[SeverityNumber.ValueType, str]
_DEBUG: Final[_Severity] = (SeverityNumber.SEVERITY_NUMBER_DEBUG, "DEBUG")
_INFO: Final[_Severity] = (SeverityNumber.SEVERITY_NUMBER_INFO, "INFO")
_WARN: Final[_Severity] = (SeverityNumber.SEVERITY_NUMBER_WARN, "WARN")
# Network leg between the bank adapter and the gateway: same zone, as the network's own legs.
_LEG_NS: Final = (250_000, 0.35)
# float64 holds every integer exactly only up to 2**53: 13- and 16-digit numbers, not 19.
_FLOAT_LENGTHS: Final = (13, 16)
_STACK_FRAMES: Final = (
    "\tat com.example.issuer.BinTable.lookup(BinTable.java:88)\n"
    "\tat com.example.issuer.CardValidator.validate(CardValidator.java:41)\n"
    "\tat com.example.issuer.AuthorizationController.authorize(AuthorizationController.java:63)\n"
    "\tat java.base/jdk.internal.reflect.DirectMethodHandleAccessor.invoke("
    "DirectMethodHandleAccessor.java:103)\n"
)


@dataclass(frozen=True)
class ForeignMessage:
    """One Kafka message as the Collector's Kafka exporter writes it.

    ``signal`` is ``"spans"`` or ``"logs"`` (which input topic), ``key`` the trace id in
    lowercase hex, ``value`` an ``ExportTraceServiceRequest`` / ``ExportLogsServiceRequest``.
    """

    signal: str
    key: bytes
    value: bytes


ForeignSink = Callable[[ForeignMessage], None]


def _any(value: Any) -> AnyValue:
    """A Python value as an OTLP AnyValue, each type in its own shape (bool before int)."""
    out = AnyValue()
    if isinstance(value, bool):
        out.bool_value = value
    elif isinstance(value, int):
        out.int_value = value
    elif isinstance(value, float):
        out.double_value = value
    elif isinstance(value, bytes):
        out.bytes_value = value
    elif isinstance(value, str):
        out.string_value = value
    elif isinstance(value, list | tuple):
        out.array_value.values.extend(_any(item) for item in value)
    elif isinstance(value, Mapping):
        out.kvlist_value.values.extend(_key_values(value))
    else:
        raise TypeError(f"no AnyValue shape for {type(value).__name__}: {value!r}")
    return out


def _key_values(attributes: Mapping[str, Any]) -> list[KeyValue]:
    return [KeyValue(key=key, value=_any(value)) for key, value in attributes.items()]


@dataclass
class _Card:
    """One card number drawn for one place: its digits and the text written there."""

    pan: str
    text: str


_UID_LETTERS = "abcdefghijklmnop"


class ForeignServices:
    """The Java issuer gateway and the Go token vault, called once per issuer call.

    Not thread-safe (the simulation is single-threaded). Each call of :meth:`issuer_call`
    hands one spans message and one logs message to ``sink``; :meth:`truth` is the ground truth
    of everything handed so far.
    """

    def __init__(
        self, seed: int, sink: ForeignSink, *, environment: str, region: str, run_id: str
    ) -> None:
        # Its own generator (string seeds hash deterministically), so the network's draws,
        # and with them its telemetry, do not depend on whether these services run. The run id
        # is part of the seed because the span ids drawn here must differ between runs.
        self._rng = random.Random(f"hopscope-simulator-foreign/{seed}/{run_id}")  # noqa: S311
        self._sink = sink
        self._environment = environment
        self._region = region
        self._run_id = run_id
        self._resources: dict[str, list[KeyValue]] = {}
        self._draws = 0
        self._pans: dict[str, None] = {}  # insertion-ordered set
        self._texts: set[str] = set()
        self.seeds: list[dict[str, Any]] = []
        self.calls = 0
        self.spans = 0
        self.log_records = 0
        self.messages = {SPANS: 0, LOGS: 0}

    # -- card numbers ----------------------------------------------------------------------

    def _card(
        self,
        where: str,
        carrier: Mapping[str, str],
        *,
        shape: str = "string",
        styles: Sequence[str] = PAN_STYLES,
        lengths: Sequence[int] = PAN_LENGTHS,
    ) -> _Card:
        """A new card number for ``where``, recorded as a seed of ``carrier`` (the span, log
        record or resource that holds it). Styles and lengths cycle, so every combination
        comes up within a few calls."""
        draw = self._draws
        self._draws += 1
        style = styles[draw % len(styles)]
        length = lengths[(draw // len(styles)) % len(lengths)]
        pan = generate_pan(self._rng, length)
        text = pan if shape != "string" and shape != "bytes" else format_pan(pan, style)
        self._pans[pan] = None
        self._texts.add(text)
        self.seeds.append({**carrier, "where": where, "shape": shape, "text": text, "pan": pan})
        return _Card(pan, text)

    # -- resources -------------------------------------------------------------------------

    def _resource(self, service: str, node: str) -> list[KeyValue]:
        """A node's resource, built on first use (so its card number is seeded only when a
        message carries it)."""
        if node in self._resources:
            return self._resources[node]
        carrier = {"signal": "resource", "service": service, "node": node}
        attributes: dict[str, Any] = {
            c.SERVICE_NAME: service,
            c.SERVICE_INSTANCE_ID: node,
            "service.version": "3.4.1" if service == JAVA_SERVICE else "1.12.0",
            c.DEPLOYMENT_ENVIRONMENT: self._environment,
            c.CLOUD_REGION: self._region,
            c.RUN_ID: self._run_id,
            "host.name": f"{node}.payments.internal",
        }
        if service == JAVA_SERVICE:
            card = self._card("resource.process.command_line", carrier)
            attributes.update(_JAVA_SDK)
            attributes["process.command_line"] = (
                "/usr/lib/jvm/java-21/bin/java -javaagent:/otel/opentelemetry-javaagent.jar "
                f"-Dissuer.smoke-test.card={card.text} -jar /app/issuer-gateway.jar"
            )
        else:
            card = self._card("resource.process.command_args", carrier)
            attributes.update(_GO_SDK)
            attributes["process.command_args"] = [
                "/usr/local/bin/token-vault",
                "--listen=:8080",
                f"--warmup-card={card.text}",
            ]
        self._resources[node] = _key_values(attributes)
        return self._resources[node]

    # -- one issuer call -------------------------------------------------------------------

    def _draw_ns(self, median: int, sigma: float) -> int:
        return max(1, round(self._rng.lognormvariate(0.0, sigma) * median))

    def _span_id(self) -> bytes:
        return (self._rng.getrandbits(64) | 1).to_bytes(8, "big")  # never the invalid id 0

    def _uid(self) -> str:
        # Letters only: a hex id can hold a Luhn-valid run of 13+ digits, which the
        # processors rightly mask as a card number, and the audit finds records by this id.
        return "".join(_UID_LETTERS[int(c, 16)] for c in f"{self._rng.getrandbits(128):032x}")

    def issuer_call(self, trace_id: int, parent_span_id: int, start_ns: int, end_ns: int) -> None:
        """The gateway's handling of one issuer call of the bank adapter.

        ``trace_id`` and ``parent_span_id`` are the bank adapter's CLIENT span's; its start and
        end bound everything the gateway and the vault record. Hands one spans and one logs
        message to the sink.
        """
        self.calls += 1
        rng = self._rng
        trace = trace_id.to_bytes(16, "big")
        # Step 1: the time line, inside the caller's window (network legs at both ends).
        window = max(end_ns - start_ns, 100)
        legs = [min(self._draw_ns(*_LEG_NS), window // 20) for _ in range(2)]
        server = (start_ns + legs[0], end_ns - legs[1])
        span_ns = server[1] - server[0]

        def at(fraction: float) -> int:
            return server[0] + int(span_ns * fraction)

        token = (at(rng.uniform(0.02, 0.04)), at(rng.uniform(0.10, 0.14)))
        token_ns = token[1] - token[0]
        vault = (token[0] + token_ns // 10, token[1] - token_ns // 10)
        db = (vault[0] + token_ns // 10, vault[1] - token_ns // 5)
        issuer = (at(rng.uniform(0.15, 0.17)), at(rng.uniform(0.90, 0.94)))
        audit = (at(0.95), at(0.98))

        # Step 2: the spans, each with the card numbers its code leaks.
        ids = {
            name: self._span_id() for name in ("server", "token", "vault", "db", "issuer", "audit")
        }
        hexes = {name: span_id.hex() for name, span_id in ids.items()}

        def on(name: str) -> dict[str, str]:
            return {"signal": "span", "trace_id": trace.hex(), "span_id": hexes[name]}

        java_node = f"{JAVA_SERVICE}-{rng.randrange(JAVA_NODES) + 1}"
        go_node = f"{GO_SERVICE}-1"
        server_span = self._server_span(trace, ids, server, on("server"), parent_span_id)
        token_span = self._token_span(trace, ids, token, on("token"))
        vault_span = self._vault_span(trace, ids, vault, on("vault"))
        db_span = self._db_span(trace, ids, db, on("db"))
        issuer_span = self._issuer_span(trace, ids, issuer, on("issuer"))
        audit_span = self._audit_span(trace, ids, audit, on("audit"), parent_span_id)

        request = ExportTraceServiceRequest()
        java = request.resource_spans.add()
        java.resource.attributes.extend(self._resource(JAVA_SERVICE, java_node))
        # The audit scope first: its number-typed card.number (last four digits) is then the
        # first value of that key, so the card numbers under it arrive after it, as masked text.
        java_scopes = (
            (_JAVA_APP_SCOPE, [audit_span]),
            (_JAVA_SERVER_SCOPE, [server_span]),
            (_JAVA_CLIENT_SCOPE, [token_span, issuer_span]),
        )
        for scope, spans in java_scopes:
            scope_spans = java.scope_spans.add()
            scope_spans.scope.name, scope_spans.scope.version = scope
            scope_spans.spans.extend(spans)
        go = request.resource_spans.add()
        go.resource.attributes.extend(self._resource(GO_SERVICE, go_node))
        for scope, spans in ((_GO_SERVER_SCOPE, [vault_span]), (_GO_DB_SCOPE, [db_span])):
            scope_spans = go.scope_spans.add()
            scope_spans.scope.name, scope_spans.scope.version = scope
            scope_spans.spans.extend(spans)
        self.spans += 6

        # Step 3: the log records, inside the spans that wrote them.
        logs = ExportLogsServiceRequest()
        java_logs = logs.resource_logs.add()
        java_logs.resource.attributes.extend(self._resource(JAVA_SERVICE, java_node))
        scope_logs = java_logs.scope_logs.add()
        scope_logs.scope.name, scope_logs.scope.version = _JAVA_APP_SCOPE
        scope_logs.log_records.extend(self._java_logs(trace, ids["server"], server))
        go_logs = logs.resource_logs.add()
        go_logs.resource.attributes.extend(self._resource(GO_SERVICE, go_node))
        scope_logs = go_logs.scope_logs.add()
        scope_logs.scope.name, scope_logs.scope.version = _GO_LOG_SCOPE
        scope_logs.log_records.extend(self._go_logs(trace, ids["vault"], vault))

        # Step 4: one message per signal, keyed by the trace id, as the Collector writes them.
        key = trace.hex().encode()
        self._sink(ForeignMessage(SPANS, key, request.SerializeToString()))
        self._sink(ForeignMessage(LOGS, key, logs.SerializeToString()))
        self.messages[SPANS] += 1
        self.messages[LOGS] += 1

    @staticmethod
    def _span(
        trace: bytes,
        span_id: bytes,
        parent: bytes,
        name: str,
        kind: Any,
        window: tuple[int, int],
        attributes: Mapping[str, Any],
    ) -> Span:
        span = Span(
            trace_id=trace,
            span_id=span_id,
            parent_span_id=parent,
            name=name,
            kind=kind,
            start_time_unix_nano=window[0],
            end_time_unix_nano=window[1],
        )
        span.attributes.extend(_key_values(attributes))
        return span

    def _server_span(
        self,
        trace: bytes,
        ids: Mapping[str, bytes],
        window: tuple[int, int],
        carrier: dict[str, str],
        parent_span_id: int,
    ) -> Span:
        """Java: the authorization request, with the card in its URL, query, a captured header
        and a numeric attribute, and a caught ``IllegalArgumentException`` recorded as event."""
        url = self._card("attributes.url.full", carrier, styles=("plain", "percent"))
        query = self._card("attributes.url.query", carrier, styles=URL_PAN_STYLES)
        header = self._card("attributes.http.request.header.x-card-number", carrier)
        number = self._card("attributes.card.number", carrier, shape="int")
        message = self._card("events.attributes.exception.message", carrier)
        stack = self._card("events.attributes.exception.stacktrace", carrier)
        span = self._span(
            trace,
            ids["server"],
            parent_span_id.to_bytes(8, "big"),
            "POST /iso8583/authorize",
            _SERVER,
            window,
            {
                "http.request.method": "POST",
                "http.route": "/iso8583/authorize",
                "url.scheme": "https",
                "url.path": "/iso8583/authorize",
                "url.full": f"https://{ISSUER_GATEWAY_HOST}/iso8583/authorize?pan={url.text}"
                "&exp=12%2F27",
                "url.query": f"pan={query.text}&cvv=%2A%2A%2A",
                c.SERVER_ADDRESS: ISSUER_GATEWAY_HOST,
                c.SERVER_PORT: 443,
                "http.request.header.x-card-number": [header.text],
                "card.number": int(number.pan),
                "http.response.status_code": 200,
            },
        )
        exception = "java.lang.IllegalArgumentException"
        stacktrace = f"{exception}: Invalid card number {stack.text}: BIN not found\n"
        event = span.events.add(name="exception", time_unix_nano=window[0] + 1_000)
        event.attributes.extend(
            _key_values(
                {
                    "exception.type": exception,
                    "exception.message": f"Invalid card number {message.text}: BIN not found",
                    "exception.stacktrace": stacktrace + _STACK_FRAMES,
                    "exception.escaped": False,
                }
            )
        )
        return span

    def _token_span(
        self,
        trace: bytes,
        ids: Mapping[str, bytes],
        window: tuple[int, int],
        carrier: dict[str, str],
    ) -> Span:
        """Java: the HTTP call to the vault, named after its raw path (card number included)."""
        name = self._card("name", carrier)
        url = self._card("attributes.http.url", carrier)
        return self._span(
            trace,
            ids["token"],
            ids["server"],
            f"GET /v1/tokens/{name.text}",
            _CLIENT,
            window,
            {
                "http.request.method": "GET",
                "http.url": f"http://{VAULT_HOST}:8080/v1/tokens/{url.text}",
                c.SERVER_ADDRESS: VAULT_HOST,
                c.SERVER_PORT: 8080,
                "http.response.status_code": 201,
            },
        )

    def _vault_span(
        self,
        trace: bytes,
        ids: Mapping[str, bytes],
        window: tuple[int, int],
        carrier: dict[str, str],
    ) -> Span:
        """Go: the vault's handler: the card in the path, as a float64 (a JSON number decoded
        into ``any``), as raw request bytes, in an int64 array, a ``pan=`` pair and an event
        name."""
        path = self._card("attributes.url.path", carrier)
        number = self._card("attributes.card.pan", carrier, shape="double", lengths=_FLOAT_LENGTHS)
        body = self._card("attributes.rpc.request.body", carrier, shape="bytes")
        numbers = self._card("attributes.card.numbers", carrier, shape="int")
        pair = self._card("attributes.http.request.body", carrier)
        event = self._card("events.name", carrier)
        span = self._span(
            trace,
            ids["vault"],
            ids["token"],
            "GET /v1/tokens/{pan}",
            _SERVER,
            window,
            {
                "http.request.method": "GET",
                "http.route": "/v1/tokens/{pan}",
                "url.path": f"/v1/tokens/{path.text}",
                "card.pan": float(number.pan),
                "rpc.request.body": f'{{"pan":"{body.text}","exp":"12/27"}}'.encode(),
                "card.numbers": [int(numbers.pan)],
                "http.request.body": f"pan={pair.text};exp=12/27",
                "http.response.status_code": 201,
            },
        )
        middle = window[0] + (window[1] - window[0]) // 2
        tokenized = span.events.add(name=f"card {event.text} tokenized", time_unix_nano=middle)
        tokenized.attributes.extend(_key_values({"token.id": f"tok_{self._uid()[:16]}"}))
        return span

    def _db_span(
        self,
        trace: bytes,
        ids: Mapping[str, bytes],
        window: tuple[int, int],
        carrier: dict[str, str],
    ) -> Span:
        """Go: the INSERT of a returning card, with its literal in the statement and in the
        driver's error (status message)."""
        statement = self._card("attributes.db.query.text", carrier)
        error = self._card("status.message", carrier)
        span = self._span(
            trace,
            ids["db"],
            ids["vault"],
            "INSERT vault.tokens",
            _CLIENT,
            window,
            {
                c.DB_SYSTEM: "postgresql",
                "db.system.name": "postgresql",
                c.DB_NAMESPACE: "vault",
                c.DB_OPERATION: "INSERT",
                "db.collection.name": "tokens",
                # Never executed: the literal in the text is the careless driver's doing.
                c.DB_QUERY_TEXT: f"INSERT INTO tokens (pan, token) VALUES ('{statement.text}', "  # noqa: S608
                f"'tok_{self._uid()[:16]}')",
                c.SERVER_ADDRESS: VAULT_DB_HOST,
                c.SERVER_PORT: 5432,
            },
        )
        span.status.CopyFrom(
            Status(
                code=Status.STATUS_CODE_ERROR,
                message='pq: duplicate key value violates unique constraint "tokens_pan_key" '
                f"(Key (pan)=({error.text}) already exists.)",
            )
        )
        return span

    def _issuer_span(
        self,
        trace: bytes,
        ids: Mapping[str, bytes],
        window: tuple[int, int],
        carrier: dict[str, str],
    ) -> Span:
        """Java: the authorization forwarded to the issuer's link (not instrumented)."""
        url = self._card("attributes.url.full", carrier, styles=URL_PAN_STYLES)
        return self._span(
            trace,
            ids["issuer"],
            ids["server"],
            "POST",
            _CLIENT,
            window,
            {
                "http.request.method": "POST",
                "url.full": f"https://{ISSUER_LINK_HOST}/authorize?card={url.text}&amount=1250",
                c.SERVER_ADDRESS: ISSUER_LINK_HOST,
                c.SERVER_PORT: 443,
                c.PEER_SERVICE: "issuer-link",
                "http.response.status_code": 200,
            },
        )

    def _audit_span(
        self,
        trace: bytes,
        ids: Mapping[str, bytes],
        window: tuple[int, int],
        carrier: dict[str, str],
        parent_span_id: int,
    ) -> Span:
        """Java: the audit entry, named after the card, linked to the bank adapter's call with
        the card in the link's attributes; its ``card.number`` is the last four digits, a
        number (the key the server span fills with whole card numbers)."""
        name = self._card("name", carrier)
        text = self._card("links.attributes.audit.card", carrier)
        number = self._card("links.attributes.audit.card_number", carrier, shape="int")
        span = self._span(
            trace,
            ids["audit"],
            ids["server"],
            f"audit card {name.text}",
            _INTERNAL,
            window,
            {"audit.outcome": "recorded", "card.number": int(name.pan[-4:])},
        )
        link = span.links.add(trace_id=trace, span_id=parent_span_id.to_bytes(8, "big"))
        link.attributes.extend(
            _key_values({"audit.card": text.text, "audit.card_number": int(number.pan)})
        )
        return span

    def _log(
        self,
        trace: bytes,
        span_id: bytes,
        time_ns: int,
        severity: _Severity,
        body: Any,
        attributes: Mapping[str, Any],
        uid: str,
        event_name: str = "",
    ) -> LogRecord:
        record = LogRecord(
            time_unix_nano=time_ns,
            observed_time_unix_nano=time_ns,
            severity_number=severity[0],
            severity_text=severity[1],
            trace_id=trace,
            span_id=span_id,
            event_name=event_name,
            flags=1,
        )
        record.body.CopyFrom(_any(body))
        record.attributes.extend(_key_values({**attributes, "log.record.uid": uid}))
        self.log_records += 1
        return record

    def _java_logs(self, trace: bytes, span_id: bytes, window: tuple[int, int]) -> list[LogRecord]:
        """Logback through the Java agent's appender: a line quoting the card, a warning with
        the exception's attributes, a Gson-escaped JSON line, a percent-encoded query."""
        uids = [self._uid() for _ in range(4)]

        def on(uid: str) -> dict[str, str]:
            return {"signal": "log", "trace_id": trace.hex(), "uid": uid}

        line = self._card("body", on(uids[0]))
        attribute = self._card("attributes.card.number", on(uids[0]))
        message = self._card("attributes.exception.message", on(uids[1]))
        stack = self._card("attributes.exception.stacktrace", on(uids[1]))
        json_card = self._card("body", on(uids[2]))
        json_url = self._card("body", on(uids[2]))
        json_note = self._card("body", on(uids[2]))
        query = self._card("body", on(uids[3]))
        search = self._card("body", on(uids[3]), styles=("plain", "percent"))
        exception = "java.lang.IllegalArgumentException"
        start, end = window
        step = max(1, (end - start) // 10)
        thread = {"thread.name": "http-nio-8443-exec-3", "thread.id": 57}
        return [
            self._log(
                trace,
                span_id,
                start + step,
                _INFO,
                f"Authorizing card {line.text} for payment of 12.50 EUR",
                {**thread, "card.number": attribute.text},
                uids[0],
            ),
            self._log(
                trace,
                span_id,
                start + 2 * step,
                _WARN,
                "BIN lookup failed, falling back to the default route",
                {
                    **thread,
                    "exception.type": exception,
                    "exception.message": f"Invalid card number {message.text}",
                    "exception.stacktrace": f"{exception}: Invalid card number "
                    f"{stack.text}\n{_STACK_FRAMES}",
                },
                uids[1],
            ),
            # Gson escapes = and & as \u003d and \u0026 by default; a space as \u0020 here.
            self._log(
                trace,
                span_id,
                start + 3 * step,
                _INFO,
                f'{{"event":"authorize","card":"{json_card.text}","url":"/iso8583/'
                f'authorize?pan\\u003d{json_url.text}\\u0026exp\\u003d1227",'
                f'"note":"card\\u0020{json_note.text}"}}',
                thread,
                uids[2],
            ),
            self._log(
                trace,
                span_id,
                start + 4 * step,
                _DEBUG,
                f"GET /search?q=card%3D{query.text}%26exp%3D1227&ref=card%20{search.text}",
                thread,
                uids[3],
            ),
        ]

    def _go_logs(self, trace: bytes, span_id: bytes, window: tuple[int, int]) -> list[LogRecord]:
        """slog through the otelslog bridge: a structured (map) body, an array body, numeric
        bodies (int64 and a float64) and the raw request as bytes."""
        uids = [self._uid() for _ in range(5)]

        def on(uid: str) -> dict[str, str]:
            return {"signal": "log", "trace_id": trace.hex(), "uid": uid}

        pan = self._card("body", on(uids[0]))
        query = self._card("body", on(uids[0]), styles=URL_PAN_STYLES)
        header = self._card("body", on(uids[0]))
        pair = self._card("attributes.http.request.body", on(uids[0]))
        listed = self._card("body", on(uids[1]))
        nested = self._card("body", on(uids[1]), shape="int")
        number = self._card("body", on(uids[2]), shape="int")
        fraction = self._card("body", on(uids[3]), shape="double", lengths=_FLOAT_LENGTHS)
        raw = self._card("body", on(uids[4]), shape="bytes", styles=URL_PAN_STYLES)
        start, end = window
        step = max(1, (end - start) // 8)
        return [
            self._log(
                trace,
                span_id,
                start + step,
                _INFO,
                {
                    "msg": "token issued",
                    "pan": pan.text,
                    "request": {"query": f"pan={query.text}", "headers": {"x-card": [header.text]}},
                    "attempt": 1,
                },
                {"http.request.body": f"pan={pair.text};exp=12/27"},
                uids[0],
                event_name="vault.token_issued",
            ),
            self._log(
                trace,
                span_id,
                start + 2 * step,
                _WARN,
                ["token miss", listed.text, {"pan": int(nested.pan)}],
                {},
                uids[1],
            ),
            self._log(trace, span_id, start + 3 * step, _DEBUG, int(number.pan), {}, uids[2]),
            self._log(trace, span_id, start + 4 * step, _DEBUG, float(fraction.pan), {}, uids[3]),
            self._log(
                trace,
                span_id,
                start + 5 * step,
                _DEBUG,
                b"POST /v1/tokens HTTP/1.1\r\nContent-Type: application/x-www-form-"
                b"urlencoded\r\n\r\npan=" + raw.text.encode() + b"&exp=1227",
                {},
                uids[4],
            ),
        ]

    def truth(self) -> dict[str, Any]:
        """The ground truth of the foreign telemetry handed to the sink so far."""
        return {
            "services": {
                JAVA_SERVICE: {
                    "language": "java",
                    "nodes": sorted(n for n in self._resources if n.startswith(JAVA_SERVICE)),
                },
                GO_SERVICE: {
                    "language": "go",
                    "nodes": sorted(n for n in self._resources if n.startswith(GO_SERVICE)),
                },
            },
            "issuer_calls": self.calls,
            "spans": self.spans,
            "log_records": self.log_records,
            "messages": dict(self.messages),
            "seeded_pans": list(self._pans),
            "seeded_pan_texts": sorted(self._texts),
            "seeds": list(self.seeds),
        }
